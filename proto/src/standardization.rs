//! The standardize phase's sums, exact: each column value is quantized to a public resolution
//! and participants sum whole numbers, so the consortium's means and variances are computed
//! from exact integer sums, without the cancellation of Σx²/n − mean².
//!
//! A column with schema range [min, max] (R = max − min) is quantized as
//! q = round((x − min) · 2^f), with f the largest integer such that R · 2^f ≤ 2^47, so
//! q ∈ [0, L] with L = ceil(R · 2^f) ≤ 2^47 and the resolution δ = 2^−f ≤ R · 2^−46. Each
//! participant sums n, S1 = Σq and S2 = Σq² exactly (u128), and sends each sum as whole-number
//! words that fit f64 and a secure-aggregation word: a *top* word S >> s carrying the top 25
//! bits of the per-record maximum V (L for S1, L² for S2), and 24-bit *limbs* of the low s bits.
//! The coordinator adds the words, recombines S = top · 2^s + Σ limb_k · 2^(24k) in u128, and
//! computes n · Σ(q − q̄)² = n·S2 − S1² exactly in integers ([`StandardizationLayout::moments`]).
//!
//! Error bound: with exact sums, the only errors are the quantization of each value (at most
//! δ/2 plus the f64 rounding of x − min) and the final f64 operations. The standard deviation is
//! a norm of the values, so |sd − sd_true| ≤ δ/2 + 2^−53 · max(|min|, |max|) plus a relative
//! 4 · 2^−53; the mean is within the same absolute bound. A column whose quantized values are all
//! equal has variance exactly 0 and gets scale 1. Budget: every word, summed over the
//! consortium, must stay a whole number an f64 holds (≤ 2^53); a top word grows by less than
//! 2^25 per record, so the sums are exact for up to 2^28 (268 million) records in all. A larger
//! sum is refused, never rounded; so are sums that no records give (Σq² < (Σq)²/n).
//!
//! Input validity: each limb is proven in [0, 2^24) and each top word in
//! [0, ceil(V / 2^s) · n], so a participant's S lies in [0, V·n·(1 + 2^−24) + 2^s]: at most
//! 6e-8 relative above what an honest participant with n records at the range's ends reaches.

use crate::layout::{Bound, LengthMismatch, Relation, UnboundedFeature, check_len, column_ranges};
use crate::v1::Schema;

/// Bits of the quantized values: q ≤ 2^47.
pub const QUANTIZATION_BITS: i32 = 47;

/// Bits of each low limb of a sum.
pub const LIMB_BITS: u32 = 24;

/// Bits of the per-record maximum kept in a sum's top word.
const TOP_BITS: u32 = 25;

/// The largest whole number every f64 holds exactly, 2^53.
const EXACT_F64: f64 = 9_007_199_254_740_992.0;

/// Why the standardization sums cannot be laid out, computed or read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StandardizationError {
    /// A numeric feature without the range its quantization needs.
    #[error(transparent)]
    Unbounded(#[from] UnboundedFeature),
    /// A vector of the wrong length.
    #[error(transparent)]
    Length(#[from] LengthMismatch),
    /// So many records that a top word would not be a whole number f64 holds exactly.
    #[error(
        "{rows} records per participant: the standardization sums stay exact for at most 2^28 \
         (268435456)"
    )]
    TooManyRows {
        /// The records concerned (one participant's limit, or a summed count).
        rows: u64,
    },
    /// A record with a different number of columns than the layout.
    #[error("record {record} has {got} columns, expected {expected}")]
    RecordWidth {
        /// The record's index (0-based).
        record: usize,
        /// The layout's columns.
        expected: usize,
        /// The record's columns.
        got: usize,
    },
    /// A word of a (summed) vector that no sum of honest words is: not a whole number in
    /// [0, 2^53].
    #[error(
        "standardization word {index} ({word}) is {value}, not a whole number in [0, 2^53]: not \
         a sum of honest words, or more than 2^28 records in all"
    )]
    NotWhole {
        /// The word's position in the vector.
        index: usize,
        /// What the word holds (column, sum and limb).
        word: String,
        /// The value received.
        value: f64,
    },
    /// Sums that no records give: Σq² < (Σq)²/n (a negative variance), or beyond 128 bits.
    /// Some participant's input did not come from records.
    #[error(
        "column '{column}': the summed squares are below what the summed values imply for \
         {count} records; some participant's input does not come from records"
    )]
    Inconsistent {
        /// The column.
        column: String,
        /// The summed record count n.
        count: u64,
    },
}

/// How one sum (S1 or S2 of a column) is split into words: limbs of the low `shift` bits, then
/// the top word.
#[derive(Debug, Clone, PartialEq)]
struct Split {
    /// Bits below the top word.
    shift: u32,
    /// The top word's per-record maximum, V / 2^shift rounded up to an f64.
    top_per_record: f64,
}

impl Split {
    /// The split of a sum of records each at most `most`.
    fn new(most: u128) -> Self {
        let bits = 128 - most.leading_zeros();
        let shift = bits.saturating_sub(TOP_BITS);
        // V as f64, rounded up: u128 → f64 rounds to nearest.
        let mut v = most as f64;
        if (v as u128) < most {
            v = v.next_up();
        }
        Self {
            shift,
            top_per_record: v / 2f64.powi(shift as i32),
        }
    }

    fn limbs(&self) -> u32 {
        self.shift.div_ceil(LIMB_BITS)
    }

    /// Words: the limbs (least significant first), then the top word.
    fn words(&self) -> usize {
        self.limbs() as usize + 1
    }

    /// The bits of limb k.
    fn limb_width(&self, k: u32) -> u32 {
        LIMB_BITS.min(self.shift - k * LIMB_BITS)
    }

    fn push_words(&self, sum: u128, out: &mut Vec<f64>) {
        for k in 0..self.limbs() {
            let limb = (sum >> (k * LIMB_BITS)) & ((1u128 << self.limb_width(k)) - 1);
            out.push(limb as f64);
        }
        out.push((sum >> self.shift) as f64);
    }

    /// Σ word · 2^position; None beyond 128 bits.
    fn recombine(&self, words: &[u64]) -> Option<u128> {
        let (top, limbs) = words.split_last()?;
        let mut sum = u128::from(*top).checked_mul(1u128.checked_shl(self.shift)?)?;
        for (k, &limb) in limbs.iter().enumerate() {
            let place = 1u128.checked_shl(k as u32 * LIMB_BITS)?;
            sum = sum.checked_add(u128::from(limb).checked_mul(place)?)?;
        }
        Some(sum)
    }
}

/// How one column is quantized: q = round((x − origin) · 2^fractional_bits), clamped to
/// [0, levels].
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnScale {
    /// The column's name in the schema.
    pub name: String,
    /// The schema's min.
    pub origin: f64,
    /// f: the column is quantized in steps of 2^−f.
    pub fractional_bits: i32,
    /// The largest q: ceil((max − min) · 2^fractional_bits) ≤ 2^47.
    pub levels: u64,
    sum: Split,
    squares: Split,
}

impl ColumnScale {
    fn new(name: String, (min, max): (f64, f64)) -> Self {
        let range = max - min;
        let fractional_bits = if range > 0.0 && range.is_finite() {
            // The largest f with range · 2^f ≤ 2^47 (log2 may be off by one at powers of two).
            let mut f = QUANTIZATION_BITS - range.log2().ceil() as i32;
            while range * 2f64.powi(f + 1) <= 2f64.powi(QUANTIZATION_BITS) {
                f += 1;
            }
            while range * 2f64.powi(f) > 2f64.powi(QUANTIZATION_BITS) {
                f -= 1;
            }
            f
        } else {
            0
        };
        let levels = if range > 0.0 && range.is_finite() {
            (range * 2f64.powi(fractional_bits)).ceil() as u64
        } else {
            0
        };
        let most = u128::from(levels);
        Self {
            name,
            origin: min,
            fractional_bits,
            levels,
            sum: Split::new(most),
            squares: Split::new(most * most),
        }
    }

    /// The resolution δ = 2^−f: every value is within δ/2 of a quantized one.
    pub fn resolution(&self) -> f64 {
        2f64.powi(-self.fractional_bits)
    }

    fn quantize(&self, x: f64) -> u64 {
        let q = ((x - self.origin) * 2f64.powi(self.fractional_bits)).round();
        // NaN and values outside the range land at the nearest end.
        if q.is_nan() {
            0
        } else {
            q.clamp(0.0, self.levels as f64) as u64
        }
    }

    fn words(&self) -> usize {
        self.sum.words() + self.squares.words()
    }
}

/// The exact sums of one participant, or of the consortium: the record count and, per column,
/// S1 = Σq and S2 = Σq² of the quantized values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandardizationSums {
    /// n, the records summed.
    pub count: u64,
    /// S1 = Σq per column.
    pub sums: Vec<u128>,
    /// S2 = Σq² per column.
    pub sums_of_squares: Vec<u128>,
}

/// The layout of the standardize phase's vector for a schema:
/// `[count, per column: Σq limbs, Σq top, Σq² limbs, Σq² top]`, every word a whole number.
#[derive(Debug, Clone, PartialEq)]
pub struct StandardizationLayout {
    columns: Vec<ColumnScale>,
}

impl StandardizationLayout {
    /// The layout of `schema`'s encoded columns, quantized by their ranges.
    ///
    /// # Errors
    /// A numeric feature without both `min` and `max`.
    pub fn new(schema: &Schema) -> Result<Self, UnboundedFeature> {
        let names = crate::layout::encoded_columns(schema);
        let ranges = column_ranges(schema)?;
        Ok(Self {
            columns: names
                .into_iter()
                .zip(ranges)
                .map(|(name, range)| ColumnScale::new(name, range))
                .collect(),
        })
    }

    /// Each column's quantization.
    pub fn columns(&self) -> &[ColumnScale] {
        &self.columns
    }

    /// The number of words in the vector.
    pub fn len(&self) -> usize {
        1 + self.columns.iter().map(ColumnScale::words).sum::<usize>()
    }

    /// Whether the vector has no words (a schema without numeric features).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Each word's name, in vector order.
    fn word_names(&self) -> Vec<String> {
        let mut names = vec!["count".to_owned()];
        for c in &self.columns {
            for (what, split) in [("sum", &c.sum), ("sum of squares", &c.squares)] {
                names.extend((0..split.limbs()).map(|k| format!("{what} {} limb {k}", c.name)));
                names.push(format!("{what} {} top", c.name));
            }
        }
        names
    }

    /// One participant's bounds with at most `max_rows` records: the count, each limb below
    /// 2^24, each top word at most `max_rows` · ceil(V / 2^s).
    ///
    /// # Errors
    /// `max_rows` above 2^28, where a top word would not be a whole f64.
    pub fn bounds(&self, max_rows: u64) -> Result<Vec<Bound>, StandardizationError> {
        let rows = max_rows as f64;
        if max_rows > 1 << 28 {
            return Err(StandardizationError::TooManyRows { rows: max_rows });
        }
        let mut bounds = vec![Bound::new("count", 1, rows, true)];
        for c in &self.columns {
            for (what, split) in [("sum", &c.sum), ("sum of squares", &c.squares)] {
                for k in 0..split.limbs() {
                    let most = ((1u64 << split.limb_width(k)) - 1) as f64;
                    let name = format!("{what} {} limb {k}", c.name);
                    bounds.push(Bound::new(&name, 1, most, true));
                }
                let top = (rows * split.top_per_record.ceil()).max(1.0);
                bounds.push(Bound::new(&format!("{what} {} top", c.name), 1, top, true));
            }
        }
        Ok(bounds)
    }

    /// What one participant's validity proof shows besides the bounds: the count and every limb
    /// are non-negative, and each top word lies in [0, (V / 2^s) · count].
    pub fn relations(&self) -> Vec<Relation> {
        let mut relations = vec![Relation::non_negative(0..1)];
        let mut at = 1;
        for c in &self.columns {
            for split in [&c.sum, &c.squares] {
                let limbs = split.limbs() as usize;
                if limbs > 0 {
                    relations.push(Relation::non_negative(at..at + limbs));
                }
                at += limbs;
                relations.push(Relation::scaled(at..at + 1, 0, 0.0, split.top_per_record));
                at += 1;
            }
        }
        relations
    }

    /// The exact sums of `records` (each the column values in layout order).
    ///
    /// # Errors
    /// A record of another width; more than 2^28 records.
    pub fn sums<R: IntoIterator<Item = f64>>(
        &self,
        records: impl IntoIterator<Item = R>,
    ) -> Result<StandardizationSums, StandardizationError> {
        let d = self.columns.len();
        let mut sums = StandardizationSums {
            count: 0,
            sums: vec![0; d],
            sums_of_squares: vec![0; d],
        };
        for (record, values) in records.into_iter().enumerate() {
            sums.count += 1;
            if sums.count > 1 << 28 {
                return Err(StandardizationError::TooManyRows { rows: sums.count });
            }
            let mut got = 0;
            for x in values {
                let Some(c) = self.columns.get(got) else {
                    got += 1;
                    continue;
                };
                let q = u128::from(c.quantize(x));
                // q ≤ 2^47: 2^28 records of q² ≤ 2^94 stay below 2^128.
                sums.sums[got] += q;
                sums.sums_of_squares[got] += q * q;
                got += 1;
            }
            if got != d {
                return Err(StandardizationError::RecordWidth {
                    record,
                    expected: d,
                    got,
                });
            }
        }
        Ok(sums)
    }

    /// The vector of `sums`: the count, then each column's words.
    pub fn to_vec(&self, sums: &StandardizationSums) -> Vec<f64> {
        let mut v = Vec::with_capacity(self.len());
        v.push(sums.count as f64);
        for (j, c) in self.columns.iter().enumerate() {
            c.sum.push_words(sums.sums[j], &mut v);
            c.squares.push_words(sums.sums_of_squares[j], &mut v);
        }
        v
    }

    /// Reads a (summed) vector back into exact sums.
    ///
    /// # Errors
    /// A wrong length; a word that is not a whole number in [0, 2^53] (named).
    pub fn from_slice(&self, values: &[f64]) -> Result<StandardizationSums, StandardizationError> {
        check_len("standardization", values, self.len())?;
        let names = self.word_names();
        let mut words = Vec::with_capacity(values.len());
        for (index, &value) in values.iter().enumerate() {
            if !(value.fract() == 0.0 && (0.0..=EXACT_F64).contains(&value)) {
                return Err(StandardizationError::NotWhole {
                    index,
                    word: names[index].clone(),
                    value,
                });
            }
            words.push(value as u64);
        }
        let mut sums = StandardizationSums {
            count: words[0],
            sums: Vec::with_capacity(self.columns.len()),
            sums_of_squares: Vec::with_capacity(self.columns.len()),
        };
        let mut at = 1;
        for c in &self.columns {
            for (what, split) in [("sum", &c.sum), ("sum of squares", &c.squares)] {
                let n = split.words();
                // Words ≤ 2^53 at places ≤ 2^70: never beyond 128 bits.
                let sum = split.recombine(&words[at..at + n]).ok_or_else(|| {
                    StandardizationError::Inconsistent {
                        column: c.name.clone(),
                        count: words[0],
                    }
                })?;
                at += n;
                if what == "sum" {
                    sums.sums.push(sum);
                } else {
                    sums.sums_of_squares.push(sum);
                }
            }
        }
        Ok(sums)
    }

    /// Per-column means and population standard deviations of the quantized values, from exact
    /// integer arithmetic (see the module docs for the error bound). A column whose quantized
    /// values are all equal (or with no records) gets standard deviation 1, so standardized
    /// values stay finite.
    ///
    /// # Errors
    /// Sums no records give (S2 < S1²/n), named by column.
    pub fn moments(
        &self,
        sums: &StandardizationSums,
    ) -> Result<(Vec<f64>, Vec<f64>), StandardizationError> {
        let n = sums.count;
        let mut means = Vec::with_capacity(self.columns.len());
        let mut std_devs = Vec::with_capacity(self.columns.len());
        for (j, c) in self.columns.iter().enumerate() {
            let delta = c.resolution();
            let (s1, s2) = (sums.sums[j], sums.sums_of_squares[j]);
            if n == 0 {
                means.push(c.origin);
                std_devs.push(1.0);
                continue;
            }
            let n128 = u128::from(n);
            // S1 = a·n + r with 0 ≤ r < n: the mean is a + r/n and
            // n·Σ(q − q̄)² = n·S2 − S1² = n·D − r², D = S2 − a·(S1 + r).
            let (a, r) = (s1 / n128, s1 % n128);
            means.push(c.origin + (a as f64 + r as f64 / n as f64) * delta);
            // Honest sums have n·S2 ≥ S1² (Cauchy–Schwarz), so D ≥ 0 and n·D ≥ r².
            let variance = s1
                .checked_add(r)
                .and_then(|s| a.checked_mul(s))
                .and_then(|ar| s2.checked_sub(ar))
                .and_then(|d| match d.checked_mul(n128) {
                    // n·D − r², exact; divided by n² in f64.
                    Some(nd) => nd
                        .checked_sub(r * r)
                        .map(|m| m as f64 / (n as f64 * n as f64)),
                    // D > 2^128 / n ≫ r²/n: f64 subtraction loses nothing that matters.
                    None => Some((d as f64 - (r * r) as f64 / n as f64) / n as f64),
                })
                .ok_or_else(|| StandardizationError::Inconsistent {
                    column: c.name.clone(),
                    count: n,
                })?;
            let sd = variance.sqrt() * delta;
            std_devs.push(if sd > 0.0 && sd.is_finite() { sd } else { 1.0 });
        }
        Ok((means, std_devs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Boolean, Feature, Numeric, feature::Kind};

    fn schema(ranges: &[(&str, f64, f64)]) -> Schema {
        Schema {
            features: ranges
                .iter()
                .map(|&(name, min, max)| Feature {
                    name: name.into(),
                    kind: Some(Kind::Numeric(Numeric {
                        min: Some(min),
                        max: Some(max),
                    })),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn wait_seconds() -> StandardizationLayout {
        StandardizationLayout::new(&schema(&[("wait_seconds", 0.0, 86400.0)])).unwrap()
    }

    /// Population SD by the two-pass formula in f64.
    fn two_pass(values: &[f64]) -> f64 {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt()
    }

    #[test]
    fn a_range_quantizes_to_47_bits() {
        let layout = wait_seconds();
        let c = &layout.columns()[0];
        // 86400 · 2^30 ≈ 9.3e13 ≤ 2^47 ≈ 1.4e14 < 86400 · 2^31.
        assert_eq!(c.fractional_bits, 30);
        assert_eq!(c.levels, 86400 << 30);
        assert_eq!(c.resolution(), 2f64.powi(-30));
        // Σq: one limb and a top word; Σq²: three limbs and a top word.
        assert_eq!(layout.len(), 1 + 6);
        let booleans = StandardizationLayout::new(&Schema {
            features: vec![Feature {
                name: "fcr".into(),
                kind: Some(Kind::Boolean(Boolean {})),
            }],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(booleans.columns()[0].fractional_bits, 47);
        assert_eq!(booleans.columns()[0].levels, 1 << 47);
    }

    #[test]
    fn a_constant_column_has_variance_zero_and_scale_1() {
        let layout = wait_seconds();
        let sums = layout.sums(vec![[86399.9]; 1000]).unwrap();
        let (means, std_devs) = layout.moments(&sums).unwrap();
        assert_eq!(std_devs, vec![1.0]);
        assert!((means[0] - 86399.9).abs() <= 2f64.powi(-31), "{}", means[0]);
    }

    #[test]
    fn a_tiny_spread_far_from_the_origin_is_exact_to_the_resolution() {
        let layout = wait_seconds();
        let values = [86000.0, 86000.001, 86000.002];
        let truth = 0.001 * (2.0f64 / 3.0).sqrt();
        let sums = layout.sums(values.iter().map(|&v| [v])).unwrap();
        let (means, std_devs) = layout.moments(&sums).unwrap();
        // The stated bound: δ/2 + 2^-53 · 86400, here 4.7e-10 + 9.6e-12 ≈ 5.8e-7 of 0.000816.
        let bound = 2f64.powi(-31) + 86400.0 * f64::EPSILON / 2.0;
        assert!((std_devs[0] - truth).abs() <= bound, "{}", std_devs[0]);
        assert!((std_devs[0] - truth).abs() / truth < 1e-6);
        assert!((means[0] - 86000.001).abs() <= bound, "{}", means[0]);
    }

    #[test]
    fn moments_match_a_two_pass_reference_within_the_bound() {
        // 10 000 values in [-1000, 1000] with a spread of about 577.
        let layout = StandardizationLayout::new(&schema(&[("x", -1000.0, 1000.0)])).unwrap();
        let values: Vec<f64> = (0..10_000u64)
            .map(|k| ((k * 7919) % 10_007) as f64 / 5.0035 - 1000.0)
            .collect();
        let sums = layout.sums(values.iter().map(|&v| [v])).unwrap();
        let (means, std_devs) = layout.moments(&sums).unwrap();
        let delta = layout.columns()[0].resolution();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert!((means[0] - mean).abs() <= delta, "{} vs {mean}", means[0]);
        let sd = two_pass(&values);
        assert!((std_devs[0] - sd).abs() <= delta, "{} vs {sd}", std_devs[0]);
    }

    #[test]
    fn words_round_trip_and_sum_to_the_sums_of_the_parts() {
        let layout = StandardizationLayout::new(&schema(&[
            ("wait_seconds", 0.0, 86400.0),
            ("sentiment", -1.0, 1.0),
        ]))
        .unwrap();
        let a = layout
            .sums([[86400.0, 1.0], [0.0, -1.0], [12.5, 0.25]])
            .unwrap();
        let b = layout.sums([[86399.9, -0.5]]).unwrap();
        assert_eq!(layout.from_slice(&layout.to_vec(&a)).unwrap(), a);
        // Words add as the aggregation adds them: the sum reads back as the exact total.
        let summed: Vec<f64> = layout
            .to_vec(&a)
            .iter()
            .zip(layout.to_vec(&b))
            .map(|(x, y)| x + y)
            .collect();
        let total = layout.from_slice(&summed).unwrap();
        assert_eq!(total.count, 4);
        assert_eq!(total.sums[0], a.sums[0] + b.sums[0]);
        assert_eq!(
            total.sums_of_squares[1],
            a.sums_of_squares[1] + b.sums_of_squares[1]
        );
        // Every word of one participant stays within its bound for a million records.
        let top = layout.sums(vec![[86400.0, 1.0]; 3]).unwrap();
        for (value, bound) in layout
            .to_vec(&top)
            .iter()
            .zip(layout.bounds(1_000_000).unwrap())
        {
            assert!(*value <= bound.bound, "{}: {value}", bound.name);
        }
    }

    #[test]
    fn words_no_honest_sum_has_are_refused_by_name() {
        let layout = wait_seconds();
        let mut words = layout.to_vec(&layout.sums([[1.0]]).unwrap());
        for bad in [-1.0, 0.5, f64::NAN, 2f64.powi(54)] {
            words[2] = bad;
            let err = layout.from_slice(&words).unwrap_err();
            assert!(
                matches!(&err, StandardizationError::NotWhole { index: 2, word, .. } if word == "sum wait_seconds top"),
                "{bad}: {err:?}"
            );
        }
        assert!(matches!(
            layout.from_slice(&words[..3]),
            Err(StandardizationError::Length(_))
        ));
        assert_eq!(
            layout.sums([[1.0, 2.0]]),
            Err(StandardizationError::RecordWidth {
                record: 0,
                expected: 1,
                got: 2
            })
        );
        assert_eq!(
            layout.bounds((1 << 28) + 1),
            Err(StandardizationError::TooManyRows {
                rows: (1 << 28) + 1
            })
        );
    }

    #[test]
    fn sums_no_records_give_are_refused_naming_the_column() {
        let layout = wait_seconds();
        // Σq² below (Σq)²/n: 2 records summing to 10 have squares summing to at least 50.
        let impossible = StandardizationSums {
            count: 2,
            sums: vec![10],
            sums_of_squares: vec![49],
        };
        let err = layout.moments(&impossible).unwrap_err();
        assert_eq!(
            err,
            StandardizationError::Inconsistent {
                column: "wait_seconds".into(),
                count: 2
            }
        );
        assert!(err.to_string().contains("column 'wait_seconds'"), "{err}");
        // At the bound it is a constant column: (5, 5).
        let constant = StandardizationSums {
            sums_of_squares: vec![50],
            ..impossible
        };
        assert_eq!(layout.moments(&constant).unwrap().1, vec![1.0]);
    }
}

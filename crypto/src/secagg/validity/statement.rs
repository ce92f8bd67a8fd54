//! What a validity proof proves: a phase's segment bounds and relations, translated into integer
//! affine forms over the committed words, each to be shown in [0, 2^n).
//!
//! A word x encodes the integer q = x − B (B the segment's offset), which is round(v · 2^f) for
//! the real value v clipped to the segment's bound. Every word gets a lower and an upper form
//! (its box: the segment bound, tightened by absolute relations), and every scaled relation
//! `L·c ≤ v ≤ U·c` two forms `q_v − L'·c ≥ 0` and `U'·c − q_v ≥ 0` with integer coefficients
//! L' ≤ L·2^f and U' ≥ U·2^f. A box form is left out where a relation already implies it; a
//! count keeps its own, so the implications never run in a circle.
//!
//! Slack. Rounding q to the nearest integer never breaks a form: with c ≥ 0,
//! v·2^f ≤ U·2^f·c ≤ U'·c, an integer, so round(v·2^f) ≤ U'·c too (the same for the lower side).
//! The slack is for the f64 arithmetic in which honest participants compute v from c records:
//! when every multiple k·U with k ≤ c_max is exact in f64 (U's odd mantissa times c_max at most
//! 2^53: clip = 50, 28, 1, integer feature ranges), every partial sum of terms ≤ U is ≤ k·U
//! after rounding (rounding is monotone and k·U is representable), so U' = ceil(U·2^f) and the
//! relation holds exactly. Otherwise (a range such as [-0.3, 0.7]) the computed sum may exceed
//! the real one by Higham's bound γ_{c−1}·Σ|terms| ≤ γ_{c_max}·M·c (M = max(|L|, |U|),
//! γ_k = k·u/(1 − k·u), u = 2^-53), so U' = ceil(U·2^f) + ceil(γ_{c_max}·M·2^f) + 1: a relative
//! slack of about c_max · 1.1e-16 (1.1e-10 at a million records). Absolute bounds get none:
//! floor(L·2^f) ≤ q ≤ ceil(U·2^f).

use super::ValidityError;
use crate::secagg::encoding::FixedPoint;
use accord_proto::layout::Relation;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fmt;

/// f64's unit roundoff, 2^-53.
const UNIT_ROUNDOFF: f64 = 1.0 / 9_007_199_254_740_992.0;

/// The two proof widths, smallest first.
const WIDTHS: [u32; 2] = [32, 64];

/// One committed word: what it encodes and the range of q = x − offset it is proven to lie in.
#[derive(Debug, Clone, PartialEq)]
struct Variable {
    segment: usize,
    offset: i128,
    fractional_bits: u32,
    integer: bool,
    low: i128,
    high: i128,
}

impl Variable {
    /// The least and greatest word.
    fn words(&self) -> (i128, i128) {
        (self.offset + self.low, self.offset + self.high)
    }
}

/// Why a form is part of a statement, for the error naming what an input breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Origin {
    AtLeast(usize),
    AtMost(usize),
    Lower { relation: usize, value: usize },
    Upper { relation: usize, value: usize },
}

/// Σ coefficient · word + constant, shown in [0, 2^bits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Form {
    /// (position, coefficient), by position, no zero coefficient.
    pub(super) terms: Vec<(usize, i128)>,
    pub(super) constant: i128,
    origin: Origin,
}

impl Form {
    fn new(terms: &[(usize, i128)], constant: i128, origin: Origin) -> Self {
        let mut merged: Vec<(usize, i128)> = Vec::with_capacity(terms.len());
        let mut sorted = terms.to_vec();
        sorted.sort_by_key(|&(at, _)| at);
        for (at, coefficient) in sorted {
            match merged.last_mut() {
                Some((last, sum)) if *last == at => *sum += coefficient,
                _ => merged.push((at, coefficient)),
            }
        }
        merged.retain(|&(_, coefficient)| coefficient != 0);
        Self {
            terms: merged,
            constant,
            origin,
        }
    }

    /// The form's value at `words`; None on overflow (never for words within the boxes of a
    /// statement that was built, whose forms' extremes were computed without overflow).
    pub(super) fn value(&self, words: &[u64]) -> Option<i128> {
        self.terms.iter().try_fold(self.constant, |sum, &(at, a)| {
            sum.checked_add(a.checked_mul(i128::from(*words.get(at)?))?)
        })
    }
}

/// Forms shown with one aggregated range proof of width `bits`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Group {
    pub(super) bits: u32,
    pub(super) forms: Vec<Form>,
}

impl Group {
    /// Values in the aggregated proof: the forms padded with zeros to a power of two.
    pub(super) fn padded(&self) -> usize {
        self.forms.len().next_power_of_two()
    }

    /// The serialized range proof's length: A, S, T1, T2, three scalars, log2(bits · padded)
    /// pairs (L, R) and two scalars, 32 bytes each.
    pub(super) fn proof_bytes(&self) -> usize {
        let rounds = (self.bits as usize * self.padded()).trailing_zeros() as usize;
        32 * (9 + 2 * rounds)
    }
}

/// A phase's bounds and relations over one participant's encoded words, as integer affine
/// forms grouped by proof width (32-bit forms, then 64-bit ones). Build it the same way on both
/// sides: the prover and the verifier must agree on every form.
///
/// An aggregated Bulletproof covers a power of two of values, and its cost grows with the
/// values covered, padding included: the forms of one width are split into at most four
/// proofs whose sizes add up to the form count rounded up to a sixteenth of the next power of
/// two (2272 forms: 2048 + 256 rather than 4096), which at the example's fairness settings
/// nearly halves proving and verifying.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    segments: Vec<String>,
    variables: Vec<Variable>,
    relations: Vec<Relation>,
    groups: Vec<Group>,
    digest: [u8; 32],
}

impl Statement {
    /// The statement for vectors encoded with `encoding` (every word in [0, 2B] of its segment)
    /// and the phase's `relations` (from `accord_proto::layout`; positions index the vector).
    ///
    /// # Errors
    /// A relation out of the vector, with a count that is not in an integer segment, with NaN or
    /// crossed bounds, or that leaves a value no honest word; a form that needs more than 64
    /// bits (a sum of one summand in Z_2^64 at full precision).
    pub fn new(encoding: &FixedPoint, relations: &[Relation]) -> Result<Self, ValidityError> {
        let mut segments = Vec::new();
        let mut variables = Vec::with_capacity(encoding.len());
        for (index, code) in encoding.segment_codes().enumerate() {
            segments.push(code.segment.name.clone());
            let offset = i128::from(code.offset);
            variables.extend(std::iter::repeat_n(
                Variable {
                    segment: index,
                    offset,
                    fractional_bits: code.fractional_bits,
                    integer: code.segment.integer,
                    low: -offset,
                    high: offset,
                },
                code.segment.len,
            ));
        }
        Self::build(segments, variables, relations)
    }

    /// The statement for `len` plain counts (words are the counts themselves), each in
    /// [0, `max_count`], and `relations` among them.
    pub fn counts(
        len: usize,
        max_count: u64,
        relations: &[Relation],
    ) -> Result<Self, ValidityError> {
        let variable = Variable {
            segment: 0,
            offset: 0,
            fractional_bits: 0,
            integer: true,
            low: 0,
            high: i128::from(max_count),
        };
        Self::build(vec!["counts".to_owned()], vec![variable; len], relations)
    }

    /// The number of committed words.
    pub fn len(&self) -> usize {
        self.variables.len()
    }

    /// Whether the statement constrains no words.
    pub fn is_empty(&self) -> bool {
        self.variables.is_empty()
    }

    /// The number of forms proven (before padding).
    pub fn forms(&self) -> usize {
        self.groups.iter().map(|g| g.forms.len()).sum()
    }

    /// The (width, forms) of each aggregated range proof, 32-bit first, larger first.
    pub fn proof_widths(&self) -> Vec<(u32, usize)> {
        self.groups
            .iter()
            .map(|g| (g.bits, g.forms.len()))
            .collect()
    }

    pub(super) fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// SHA-256 of every form, bound into each proof's transcript.
    pub(super) fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    fn build(
        segments: Vec<String>,
        mut variables: Vec<Variable>,
        relations: &[Relation],
    ) -> Result<Self, ValidityError> {
        let len = variables.len();
        let mut is_count = vec![false; len];
        for (index, relation) in relations.iter().enumerate() {
            let bad = |reason: String| ValidityError::BadRelation { index, reason };
            if relation.values.start > relation.values.end || relation.values.end > len {
                return Err(bad(format!(
                    "positions {:?} are not within the vector of {len} values",
                    relation.values
                )));
            }
            if relation.lower.is_nan()
                || relation.upper.is_nan()
                || relation.lower > relation.upper
                || relation.lower == f64::INFINITY
                || relation.upper == f64::NEG_INFINITY
            {
                return Err(bad(format!(
                    "bounds [{}, {}] are not an interval",
                    relation.lower, relation.upper
                )));
            }
            if let Some(count) = relation.count {
                let Some(variable) = variables.get(count) else {
                    return Err(bad(format!(
                        "count position {count} is not within the vector of {len} values"
                    )));
                };
                if !variable.integer || variable.fractional_bits != 0 {
                    return Err(bad(format!(
                        "count position {count} is in segment '{}', which is not a count",
                        segments[variable.segment]
                    )));
                }
                is_count[count] = true;
                variables[count].low = variables[count].low.max(0);
            } else {
                for at in relation.values.clone() {
                    let variable = &mut variables[at];
                    let f = variable.fractional_bits;
                    if let Some(low) = units(relation.lower, f, f64::floor) {
                        variable.low = variable.low.max(low);
                    }
                    if let Some(high) = units(relation.upper, f, f64::ceil) {
                        variable.high = variable.high.min(high);
                    }
                }
            }
        }
        if let Some(at) = variables.iter().position(|v| v.low > v.high) {
            return Err(ValidityError::Infeasible(format!(
                "the relations leave value {at} (segment '{}') no value within its bound",
                segments[variables[at].segment]
            )));
        }

        let mut lower_needed = vec![true; len];
        let mut upper_needed = vec![true; len];
        let mut forms = Vec::new();
        for (index, relation) in relations.iter().enumerate() {
            let Some(count) = relation.count else {
                continue;
            };
            let most = variables[count].high;
            let count_offset = variables[count].offset;
            for value in relation.values.clone() {
                let v = &variables[value];
                let (lower, upper) =
                    scaled_bounds(relation, v.fractional_bits, most).ok_or_else(|| {
                        ValidityError::BadRelation {
                            index,
                            reason: "its bounds are too large for the encoding".into(),
                        }
                    })?;
                let implied = !is_count[value] && value != count;
                if let Some(lower) = lower {
                    let constant = lower
                        .checked_mul(count_offset)
                        .and_then(|x| x.checked_sub(v.offset));
                    let constant = constant.ok_or_else(|| too_wide(&segments, v))?;
                    forms.push(Form::new(
                        &[(value, 1), (count, -lower)],
                        constant,
                        Origin::Lower {
                            relation: index,
                            value,
                        },
                    ));
                    if implied && lower.checked_mul(most).is_some_and(|l| l.min(0) >= v.low) {
                        lower_needed[value] = false;
                    }
                }
                if let Some(upper) = upper {
                    let constant = upper
                        .checked_mul(count_offset)
                        .and_then(|x| v.offset.checked_sub(x));
                    let constant = constant.ok_or_else(|| too_wide(&segments, v))?;
                    forms.push(Form::new(
                        &[(count, upper), (value, -1)],
                        constant,
                        Origin::Upper {
                            relation: index,
                            value,
                        },
                    ));
                    if implied && upper.checked_mul(most).is_some_and(|u| u.max(0) <= v.high) {
                        upper_needed[value] = false;
                    }
                }
            }
        }
        for (at, variable) in variables.iter().enumerate() {
            let (least, greatest) = variable.words();
            if lower_needed[at] {
                forms.push(Form::new(&[(at, 1)], -least, Origin::AtLeast(at)));
            }
            if upper_needed[at] {
                forms.push(Form::new(&[(at, -1)], greatest, Origin::AtMost(at)));
            }
        }

        let mut statement = Self {
            segments,
            variables,
            relations: relations.to_vec(),
            groups: Vec::new(),
            digest: [0; 32],
        };
        let mut widths: Vec<Vec<Form>> = vec![Vec::new(); WIDTHS.len()];
        let mut seen = HashSet::new();
        for form in forms {
            if form.terms.is_empty() {
                if form.constant >= 0 {
                    continue;
                }
                return Err(ValidityError::Infeasible(format!(
                    "{} can never hold",
                    statement.describe(&form)
                )));
            }
            if !seen.insert((form.terms.clone(), form.constant)) {
                continue;
            }
            let greatest = statement
                .greatest(&form)
                .ok_or_else(|| ValidityError::TooWide {
                    form: statement.describe(&form),
                })?;
            let group = WIDTHS
                .iter()
                .position(|&bits| greatest < 1i128 << bits)
                .ok_or_else(|| ValidityError::TooWide {
                    form: statement.describe(&form),
                })?;
            widths[group].push(form);
        }
        for (&bits, forms) in WIDTHS.iter().zip(widths) {
            let mut forms = forms.into_iter();
            for size in chunk_sizes(forms.len()) {
                let forms: Vec<Form> = forms.by_ref().take(size).collect();
                if !forms.is_empty() {
                    statement.groups.push(Group { bits, forms });
                }
            }
        }
        statement.digest = statement.hash();
        Ok(statement)
    }

    /// The form's greatest value over every word's box; None on overflow.
    fn greatest(&self, form: &Form) -> Option<i128> {
        form.terms.iter().try_fold(form.constant, |sum, &(at, a)| {
            let (least, greatest) = self.variables[at].words();
            sum.checked_add(a.checked_mul(least)?.max(a.checked_mul(greatest)?))
        })
    }

    fn hash(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(b"accord validity statement v1");
        hasher.update((self.variables.len() as u64).to_le_bytes());
        for group in &self.groups {
            hasher.update(group.bits.to_le_bytes());
            hasher.update((group.forms.len() as u64).to_le_bytes());
            for form in &group.forms {
                hasher.update((form.terms.len() as u64).to_le_bytes());
                for &(at, a) in &form.terms {
                    hasher.update((at as u64).to_le_bytes());
                    hasher.update(a.to_le_bytes());
                }
                hasher.update(form.constant.to_le_bytes());
            }
        }
        hasher.finalize().into()
    }

    fn name(&self, at: usize) -> String {
        format!(
            "value {at} (segment '{}')",
            self.segments[self.variables[at].segment]
        )
    }

    /// The form in words, for an error naming what an input breaks.
    pub(super) fn describe(&self, form: &Form) -> String {
        let relation = |index: usize| &self.relations[index];
        match form.origin {
            Origin::AtLeast(at) => format!("{} at least its lower bound", self.name(at)),
            Origin::AtMost(at) => format!("{} at most its upper bound", self.name(at)),
            Origin::Lower { relation: r, value } => format!(
                "{} ≥ {} × {} (relation {r})",
                self.name(value),
                relation(r).lower,
                self.name(relation(r).count.unwrap_or_default())
            ),
            Origin::Upper { relation: r, value } => format!(
                "{} ≤ {} × {} (relation {r})",
                self.name(value),
                relation(r).upper,
                self.name(relation(r).count.unwrap_or_default())
            ),
        }
    }
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} values, {} forms", self.len(), self.forms())?;
        for group in &self.groups {
            write!(
                f,
                ", {} × {} bits (padded to {})",
                group.forms.len(),
                group.bits,
                group.padded()
            )?;
        }
        Ok(())
    }
}

/// The capacities of the proofs `forms` forms are split into: `forms` rounded up to a
/// sixteenth of its next power of two, in binary, largest first (at most four).
fn chunk_sizes(forms: usize) -> Vec<usize> {
    let granule = (forms.next_power_of_two() / 16).max(1);
    let padded = forms.div_ceil(granule) * granule;
    (0..usize::BITS)
        .rev()
        .map(|bit| 1usize << bit)
        .filter(|size| padded & size != 0)
        .collect()
}

fn too_wide(segments: &[String], variable: &Variable) -> ValidityError {
    ValidityError::TooWide {
        form: format!("a relation of segment '{}'", segments[variable.segment]),
    }
}

/// x · 2^f rounded by `round` to an integer (saturating far beyond any word); None for ±∞.
fn units(x: f64, fractional_bits: u32, round: fn(f64) -> f64) -> Option<i128> {
    // Scaling by a power of two is exact; the cast saturates.
    x.is_finite()
        .then(|| round(x * (1u64 << fractional_bits) as f64) as i128)
}

/// The integer coefficients (L', U') of a scaled relation for a value with `fractional_bits`
/// and a count of at most `most` records (module docs: the slack). None on overflow.
fn scaled_bounds(
    relation: &Relation,
    fractional_bits: u32,
    most: i128,
) -> Option<(Option<i128>, Option<i128>)> {
    let magnitude = [relation.lower, relation.upper]
        .into_iter()
        .filter(|x| x.is_finite())
        .fold(0.0f64, |m, x| m.max(x.abs()));
    let slack = |bound: f64| -> Option<i128> {
        if exact_multiples(bound, most) {
            return Some(0);
        }
        let k = most as f64 * UNIT_ROUNDOFF;
        if k >= 0.5 {
            return None;
        }
        let gamma = k / (1.0 - k);
        let scaled = gamma * magnitude * (1u64 << fractional_bits) as f64 * (1.0 + 1e-12);
        scaled.is_finite().then(|| scaled.ceil() as i128 + 1)
    };
    let limit = 1i128 << 100;
    let lower = match units(relation.lower, fractional_bits, f64::floor) {
        Some(l) if l.abs() < limit => Some(Some(l - slack(relation.lower)?)),
        Some(_) => None,
        None => Some(None),
    }?;
    let upper = match units(relation.upper, fractional_bits, f64::ceil) {
        Some(u) if u.abs() < limit => Some(Some(u + slack(relation.upper)?)),
        Some(_) => None,
        None => Some(None),
    }?;
    Some((lower, upper))
}

/// Whether k · x is exact in f64 for every k ≤ `most`: x's odd mantissa times `most` fits in
/// 53 bits.
fn exact_multiples(x: f64, most: i128) -> bool {
    if x == 0.0 {
        return true;
    }
    let bits = x.abs().to_bits();
    let exponent = (bits >> 52) & 0x7ff;
    let fraction = bits & ((1 << 52) - 1);
    let mantissa = if exponent == 0 {
        fraction
    } else {
        fraction | 1 << 52
    };
    let odd = mantissa >> mantissa.trailing_zeros();
    i128::from(odd)
        .checked_mul(most.max(1))
        .is_some_and(|p| p <= 1 << 53)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_split_into_few_proofs_with_little_padding() {
        assert_eq!(chunk_sizes(2272), vec![2048, 256]);
        assert_eq!(chunk_sizes(410), vec![256, 128, 32]);
        assert_eq!(chunk_sizes(76), vec![64, 16]);
        assert_eq!(chunk_sizes(64), vec![64]);
        assert_eq!(chunk_sizes(6), vec![4, 2]);
        assert_eq!(chunk_sizes(0), Vec::<usize>::new());
        for forms in 1..5000 {
            let sizes = chunk_sizes(forms);
            let total: usize = sizes.iter().sum();
            assert!(sizes.len() <= 4 && total >= forms, "{forms}: {sizes:?}");
            assert!(
                total - forms < forms.next_power_of_two() / 16 + 1,
                "{forms}: {sizes:?}"
            );
        }
    }

    #[test]
    fn exact_multiples_follow_the_odd_mantissa() {
        assert!(exact_multiples(50.0, 1_000_000));
        assert!(exact_multiples(28.0, 1_000_000));
        assert!(exact_multiples(86400.0 * 86400.0, 1_000_000));
        assert!(!exact_multiples(0.3, 2));
        assert!(exact_multiples(0.3, 1));
        // 3 · 2^50 times 2^51 overflows 53 bits of mantissa.
        assert!(!exact_multiples(3.0 * 2f64.powi(50) + 1.0, 4));
        assert!(exact_multiples(0.0, 1 << 60));
    }

    #[test]
    fn rounding_of_scaled_bounds_is_outward() {
        let relation = Relation::scaled(0..1, 1, -0.3, 0.7);
        let (lower, upper) = scaled_bounds(&relation, 10, 1000).unwrap();
        let (lower, upper) = (lower.unwrap(), upper.unwrap());
        assert!((lower as f64) < -0.3 * 1024.0 - 1.0);
        assert!((upper as f64) > 0.7 * 1024.0);
        // Exact bounds get no slack.
        let exact = Relation::scaled(0..1, 1, -50.0, 50.0);
        assert_eq!(
            scaled_bounds(&exact, 24, 1_000_000).unwrap(),
            (Some(-50 << 24), Some(50 << 24))
        );
    }
}

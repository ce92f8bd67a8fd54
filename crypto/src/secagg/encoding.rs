//! Fixed-point encoding of real vectors into the ring Z_2^32 or Z_2^64.
//!
//! Masks cancel only in ring arithmetic, so a participant's vector becomes ring words before
//! it is masked. Each value is clipped to its segment's bound, scaled by 2^f, rounded, and
//! offset by B = ceil(bound · 2^f), so every word lies in [0, 2B]. The fractional bits f are
//! chosen per segment so that `max_summands` words add up to less than 2^bits: the sum in the
//! ring is then the sum of the integers, it never wraps, and decoding is exact up to the
//! rounding of each summand (at most 2^-(f+1)). A word that exceeds what `summands` encoded
//! vectors can add up to is refused rather than decoded into garbage: the sum was not made of
//! that many honest encodings.

use std::fmt;
use std::str::FromStr;

/// The highest precision a segment may ask for: an f64 has 52 fractional mantissa bits.
const MAX_PRECISION_BITS: u32 = 52;

/// The ring the encoded words, masks and sums live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modulus {
    /// Z_2^32: words are below 2^32 (half the bytes, less headroom).
    Z32,
    /// Z_2^64.
    Z64,
}

impl Modulus {
    /// The word width in bits.
    pub fn bits(self) -> u32 {
        match self {
            Modulus::Z32 => 32,
            Modulus::Z64 => 64,
        }
    }

    /// 2^bits - 1: the largest word.
    pub fn mask(self) -> u64 {
        match self {
            Modulus::Z32 => u64::from(u32::MAX),
            Modulus::Z64 => u64::MAX,
        }
    }

    /// The bytes of a word on the wire and of the mask keystream per word.
    pub fn word_bytes(self) -> usize {
        match self {
            Modulus::Z32 => 4,
            Modulus::Z64 => 8,
        }
    }
}

impl fmt::Display for Modulus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Modulus::Z32 => "z32",
            Modulus::Z64 => "z64",
        })
    }
}

impl FromStr for Modulus {
    type Err = EncodingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "z32" => Ok(Modulus::Z32),
            "z64" => Ok(Modulus::Z64),
            _ => Err(EncodingError::UnknownModulus {
                given: s.to_string(),
            }),
        }
    }
}

/// A run of `len` values, each clipped to [-bound, bound]; `integer` segments (counts) are
/// encoded with 0 fractional bits.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// What the run holds, as errors name it.
    pub name: String,
    /// Values in the run.
    pub len: usize,
    /// Every value is clipped to [-bound, bound].
    pub bound: f64,
    /// Counts: whole numbers, encoded with 0 fractional bits and summed exactly.
    pub integer: bool,
}

/// Why an encoding could not be set up, or a vector encoded or a sum decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodingError {
    /// A modulus name other than `z32` or `z64`.
    #[error("unknown modulus '{given}': expected 'z32' or 'z64'")]
    UnknownModulus {
        /// The name given.
        given: String,
    },
    /// A segment bound that is not finite or not above 0.
    #[error("segment '{segment}': the bound must be finite and greater than 0, got {bound}")]
    InvalidBound {
        /// The segment's name.
        segment: String,
        /// The bound given.
        bound: f64,
    },
    /// A code for sums of no vectors.
    #[error("max_summands must be at least 1")]
    ZeroSummands,
    /// More fractional bits asked for than an f64 holds.
    #[error("precision of {precision_bits} fractional bits requested, at most {max} possible")]
    PrecisionTooHigh {
        /// The bits asked for.
        precision_bits: u32,
        /// The most possible (52).
        max: u32,
    },
    /// A segment whose sum over `max_summands` vectors would wrap the ring even at integer precision.
    #[error(
        "segment '{segment}': {max_summands} values of magnitude up to {bound} can add up past \
         the range of {modulus}, even with 0 fractional bits; use z64 or a smaller bound"
    )]
    NoHeadroom {
        /// The segment's name.
        segment: String,
        /// The segment's bound.
        bound: f64,
        /// The most vectors summed.
        max_summands: usize,
        /// The ring.
        modulus: Modulus,
    },
    /// A vector of another length than the code.
    #[error("expected {expected} values, got {got}")]
    LengthMismatch {
        /// The code's length.
        expected: usize,
        /// The vector's length.
        got: usize,
    },
    /// A value that is NaN or infinite.
    #[error("value {index} (segment '{segment}') is {value}, not a finite number")]
    NonFinite {
        /// Its position in the vector.
        index: usize,
        /// The segment it lies in.
        segment: String,
        /// The value.
        value: f64,
    },
    /// A sum said to be of 0 vectors or of more than the code allows.
    #[error("a sum of {summands} vectors cannot be decoded: between 1 and {max_summands} allowed")]
    SummandsOutOfRange {
        /// The vectors said to be summed.
        summands: usize,
        /// The most the code allows.
        max_summands: usize,
    },
    /// A word of a sum above what the declared number of honest encodings can reach.
    #[error(
        "word {index} (segment '{segment}') of the sum is {value}, above {limit}, the most a sum \
         of the declared number of encoded vectors can reach: not a sum of that many encodings"
    )]
    OutOfRange {
        /// Its position in the vector.
        index: usize,
        /// The segment it lies in.
        segment: String,
        /// The word.
        value: u64,
        /// The most an honest sum reaches.
        limit: u64,
    },
}

/// An encoded vector: ring words (each below 2^bits) and how many values were clipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The ring words, each below 2^bits of the modulus.
    pub words: Vec<u64>,
    /// How many values were clipped to their segment's bound.
    pub clipped: usize,
}

/// The fixed-point code of a vector made of segments, for sums of up to `max_summands`
/// encoded vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct FixedPoint {
    modulus: Modulus,
    max_summands: usize,
    len: usize,
    segments: Vec<Layout>,
}

/// How one segment is encoded: its first position, fractional bits f and offset B (the word of
/// 0; every word of the segment lies in [0, 2B]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentCode<'a> {
    /// The segment.
    pub segment: &'a Segment,
    /// Its first position in the vector.
    pub start: usize,
    /// f: values are scaled by 2^f.
    pub fractional_bits: u32,
    /// B: the word of 0, so every word of the segment lies in [0, 2B].
    pub offset: u64,
}

/// Where a segment lies in the vector and how it is scaled.
#[derive(Debug, Clone, PartialEq)]
struct Layout {
    segment: Segment,
    start: usize,
    fractional_bits: u32,
    /// B = ceil(bound · 2^f): the word of 0, and half the largest word.
    offset: u64,
}

impl Layout {
    fn range(&self) -> std::ops::Range<usize> {
        self.start..self.start + self.segment.len
    }

    /// 2^f (exact: f <= 52).
    fn scale(&self) -> f64 {
        (1u64 << self.fractional_bits) as f64
    }
}

impl FixedPoint {
    /// The code for `segments` in `modulus`, with at most `precision_bits` fractional bits per
    /// segment: the most that leave room for `max_summands` summands, 0 for integer segments.
    pub fn new(
        modulus: Modulus,
        segments: Vec<Segment>,
        precision_bits: u32,
        max_summands: usize,
    ) -> Result<Self, EncodingError> {
        if precision_bits > MAX_PRECISION_BITS {
            return Err(EncodingError::PrecisionTooHigh {
                precision_bits,
                max: MAX_PRECISION_BITS,
            });
        }
        if max_summands == 0 {
            return Err(EncodingError::ZeroSummands);
        }
        let mut layout = Vec::with_capacity(segments.len());
        let mut start = 0;
        for segment in segments {
            if !(segment.bound.is_finite() && segment.bound > 0.0) {
                return Err(EncodingError::InvalidBound {
                    segment: segment.name,
                    bound: segment.bound,
                });
            }
            let most = if segment.integer { 0 } else { precision_bits };
            let Some((fractional_bits, offset)) = (0..=most).rev().find_map(|f| {
                offset_if_fits(segment.bound, f, max_summands, modulus).map(|offset| (f, offset))
            }) else {
                return Err(EncodingError::NoHeadroom {
                    segment: segment.name,
                    bound: segment.bound,
                    max_summands,
                    modulus,
                });
            };
            let len = segment.len;
            layout.push(Layout {
                segment,
                start,
                fractional_bits,
                offset,
            });
            start += len;
        }
        Ok(Self {
            modulus,
            max_summands,
            len: start,
            segments: layout,
        })
    }

    /// The number of values in a vector.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the code has no positions.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The ring the words live in.
    pub fn modulus(&self) -> Modulus {
        self.modulus
    }

    /// The most encoded vectors a decodable sum may add up.
    pub fn max_summands(&self) -> usize {
        self.max_summands
    }

    /// The fractional bits chosen for each segment, by name.
    pub fn fractional_bits(&self) -> Vec<(String, u32)> {
        self.segments
            .iter()
            .map(|layout| (layout.segment.name.clone(), layout.fractional_bits))
            .collect()
    }

    /// Each segment's position, fractional bits and offset, in vector order.
    pub fn segment_codes(&self) -> impl Iterator<Item = SegmentCode<'_>> {
        self.segments.iter().map(|layout| SegmentCode {
            segment: &layout.segment,
            start: layout.start,
            fractional_bits: layout.fractional_bits,
            offset: layout.offset,
        })
    }

    /// Encodes `values`, clipping each to its segment's bound; refuses a NaN or infinity.
    pub fn encode(&self, values: &[f64]) -> Result<Encoded, EncodingError> {
        if values.len() != self.len {
            return Err(EncodingError::LengthMismatch {
                expected: self.len,
                got: values.len(),
            });
        }
        let mut words = Vec::with_capacity(self.len);
        let mut clipped = 0;
        for layout in &self.segments {
            let bound = layout.segment.bound;
            let scale = layout.scale();
            for (index, &value) in layout.range().zip(&values[layout.range()]) {
                if !value.is_finite() {
                    return Err(EncodingError::NonFinite {
                        index,
                        segment: layout.segment.name.clone(),
                        value,
                    });
                }
                if value.abs() > bound {
                    clipped += 1;
                }
                // |value| <= bound, so |q| <= round(bound · 2^f) <= B < 2^63 and q + B is in
                // [0, 2B], below 2^bits: the wrapping addition is exact.
                let q = (value.clamp(-bound, bound) * scale).round() as i64;
                words.push(layout.offset.wrapping_add_signed(q));
            }
        }
        Ok(Encoded { words, clipped })
    }

    /// Decodes the ring sum of `summands` encoded vectors into the sum of their values.
    ///
    /// Refuses `summands` outside 1..=max_summands and any word above summands · 2B, which no
    /// sum of `summands` encodings reaches.
    pub fn decode(&self, sum: &[u64], summands: usize) -> Result<Vec<f64>, EncodingError> {
        if summands == 0 || summands > self.max_summands {
            return Err(EncodingError::SummandsOutOfRange {
                summands,
                max_summands: self.max_summands,
            });
        }
        if sum.len() != self.len {
            return Err(EncodingError::LengthMismatch {
                expected: self.len,
                got: sum.len(),
            });
        }
        let mut values = Vec::with_capacity(self.len);
        for layout in &self.segments {
            // summands · 2B <= max_summands · 2B < 2^bits: no overflow.
            let zero = summands as u64 * layout.offset;
            let limit = 2 * zero;
            let scale = layout.scale();
            for (index, &word) in layout.range().zip(&sum[layout.range()]) {
                if word > limit {
                    return Err(EncodingError::OutOfRange {
                        index,
                        segment: layout.segment.name.clone(),
                        value: word,
                        limit,
                    });
                }
                let fixed = if word >= zero {
                    (word - zero) as f64
                } else {
                    -((zero - word) as f64)
                };
                values.push(fixed / scale);
            }
        }
        Ok(values)
    }
}

/// B = ceil(bound · 2^f) if `max_summands` words of up to 2B add up to less than 2^bits.
fn offset_if_fits(bound: f64, f: u32, max_summands: usize, modulus: Modulus) -> Option<u64> {
    // Scaling by a power of two is exact; an overflow to infinity fails the next test.
    let scaled = (bound * (1u64 << f) as f64).ceil();
    if scaled >= 2f64.powi(64) {
        return None;
    }
    let offset = scaled as u64;
    let largest_sum = u128::from(offset)
        .checked_mul(2)?
        .checked_mul(max_summands as u128)?;
    (largest_sum < 1u128 << modulus.bits()).then_some(offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn segment(name: &str, len: usize, bound: f64, integer: bool) -> Segment {
        Segment {
            name: name.to_string(),
            len,
            bound,
            integer,
        }
    }

    /// A model's coefficients in [-4, 4] and a count in [0, 10^6], for sums of 100 vectors.
    fn model_and_count(modulus: Modulus) -> FixedPoint {
        FixedPoint::new(
            modulus,
            vec![
                segment("coefficients", 3, 4.0, false),
                segment("count", 1, 1e6, true),
            ],
            40,
            100,
        )
        .unwrap()
    }

    /// Adds words modulo 2^bits, as the aggregation does.
    fn ring_sum(modulus: Modulus, vectors: &[Vec<u64>]) -> Vec<u64> {
        let mut sum = vec![0u64; vectors[0].len()];
        for vector in vectors {
            for (s, w) in sum.iter_mut().zip(vector) {
                *s = s.wrapping_add(*w) & modulus.mask();
            }
        }
        sum
    }

    #[test]
    fn moduli_have_their_widths() {
        assert_eq!(Modulus::Z32.bits(), 32);
        assert_eq!(Modulus::Z64.bits(), 64);
        assert_eq!(Modulus::Z32.mask(), (1 << 32) - 1);
        assert_eq!(Modulus::Z64.mask(), u64::MAX);
        assert_eq!(Modulus::Z32.word_bytes(), 4);
        assert_eq!(Modulus::Z64.word_bytes(), 8);
    }

    #[test]
    fn moduli_parse_and_display_by_name() {
        for modulus in [Modulus::Z32, Modulus::Z64] {
            assert_eq!(modulus.to_string().parse::<Modulus>(), Ok(modulus));
        }
        assert_eq!("z32".parse(), Ok(Modulus::Z32));
        assert_eq!("z64".parse(), Ok(Modulus::Z64));
        for wrong in ["Z64", "z128", "", " z64"] {
            let err = wrong.parse::<Modulus>().unwrap_err();
            assert_eq!(
                err,
                EncodingError::UnknownModulus {
                    given: wrong.to_string()
                }
            );
            assert!(err.to_string().contains("expected 'z32' or 'z64'"), "{err}");
        }
    }

    #[test]
    fn chooses_the_most_fractional_bits_that_leave_headroom() {
        let code = FixedPoint::new(
            Modulus::Z32,
            vec![
                segment("weights", 2, 1.0, false),
                segment("counts", 1, 1000.0, true),
                segment("capped", 1, 1.0, false),
            ],
            30,
            1000,
        )
        .unwrap();
        // 2 · 1000 · 2^21 < 2^32 <= 2 · 1000 · 2^22.
        assert_eq!(
            code.fractional_bits(),
            vec![
                ("weights".to_string(), 21),
                ("counts".to_string(), 0),
                ("capped".to_string(), 21)
            ]
        );
        assert_eq!(code.len(), 4);
        assert!(!code.is_empty());
        assert_eq!(code.modulus(), Modulus::Z32);
        assert_eq!(code.max_summands(), 1000);

        // The requested precision caps f when there is room to spare.
        let capped =
            FixedPoint::new(Modulus::Z32, vec![segment("w", 1, 1.0, false)], 10, 1000).unwrap();
        assert_eq!(capped.fractional_bits(), vec![("w".to_string(), 10)]);

        // z64: 2 · 1000 · 2^52 < 2^64; with bound 10^6, 2 · 1000 · 10^6 · 2^33 < 2^64 <= ... · 2^34.
        let wide = FixedPoint::new(
            Modulus::Z64,
            vec![segment("a", 1, 1.0, false), segment("b", 1, 1e6, false)],
            52,
            1000,
        )
        .unwrap();
        assert_eq!(
            wide.fractional_bits(),
            vec![("a".to_string(), 52), ("b".to_string(), 33)]
        );
    }

    #[test]
    fn headroom_is_exact_at_the_boundary() {
        // One summand of integers up to 2^31 - 1: words up to 2^32 - 2 fit in z32; 2^31 does not.
        let fits = FixedPoint::new(
            Modulus::Z32,
            vec![segment("n", 1, 2f64.powi(31) - 1.0, true)],
            0,
            1,
        )
        .unwrap();
        let top = fits.encode(&[2f64.powi(31) - 1.0]).unwrap();
        assert_eq!(top.words, vec![(1 << 32) - 2]);
        assert!(matches!(
            FixedPoint::new(
                Modulus::Z32,
                vec![segment("n", 1, 2f64.powi(31), true)],
                0,
                1
            ),
            Err(EncodingError::NoHeadroom { .. })
        ));
    }

    #[test]
    fn refuses_a_bound_too_large_for_z32() {
        let segments = vec![segment("tickets", 5, 1e6, true)];
        let err = FixedPoint::new(Modulus::Z32, segments.clone(), 16, 10_000).unwrap_err();
        assert_eq!(
            err,
            EncodingError::NoHeadroom {
                segment: "tickets".to_string(),
                bound: 1e6,
                max_summands: 10_000,
                modulus: Modulus::Z32
            }
        );
        let message = err.to_string();
        for part in [
            "'tickets'",
            "1000000",
            "10000",
            "z32",
            "use z64 or a smaller bound",
        ] {
            assert!(message.contains(part), "{part} missing from: {message}");
        }
        assert!(FixedPoint::new(Modulus::Z64, segments, 16, 10_000).is_ok());
    }

    #[test]
    fn refuses_invalid_parameters() {
        for bound in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = FixedPoint::new(Modulus::Z64, vec![segment("s", 1, bound, false)], 16, 2)
                .unwrap_err();
            assert!(
                matches!(&err, EncodingError::InvalidBound { segment, .. } if segment == "s"),
                "{bound}: {err:?}"
            );
        }
        assert_eq!(
            FixedPoint::new(Modulus::Z64, vec![segment("s", 1, 1.0, false)], 16, 0),
            Err(EncodingError::ZeroSummands)
        );
        assert_eq!(
            FixedPoint::new(Modulus::Z64, vec![segment("s", 1, 1.0, false)], 53, 1),
            Err(EncodingError::PrecisionTooHigh {
                precision_bits: 53,
                max: 52
            })
        );
    }

    #[test]
    fn a_huge_bound_with_z64_is_refused_not_overflowed() {
        let err = FixedPoint::new(Modulus::Z64, vec![segment("s", 1, f64::MAX, false)], 52, 1);
        assert!(matches!(err, Err(EncodingError::NoHeadroom { .. })));
    }

    #[test]
    fn round_trips_within_half_a_unit_in_the_last_place() {
        for modulus in [Modulus::Z32, Modulus::Z64] {
            let code = model_and_count(modulus);
            let values = [0.123_456_789, -3.999_999, 4.0, 523_017.0];
            let encoded = code.encode(&values).unwrap();
            assert_eq!(encoded.clipped, 0);
            assert!(encoded.words.iter().all(|&w| w <= modulus.mask()));
            let decoded = code.decode(&encoded.words, 1).unwrap();
            let f = code.fractional_bits()[0].1;
            for (d, v) in decoded[..3].iter().zip(&values) {
                assert!(
                    (d - v).abs() <= 2f64.powi(-(f as i32) - 1),
                    "{modulus}: {d} vs {v}"
                );
            }
            assert_eq!(decoded[3], 523_017.0);
        }
    }

    #[test]
    fn zero_encodes_to_the_offset_and_the_extremes_to_0_and_2b() {
        let code = FixedPoint::new(Modulus::Z32, vec![segment("s", 3, 1.0, false)], 8, 4).unwrap();
        let encoded = code.encode(&[0.0, -1.0, 1.0]).unwrap();
        assert_eq!(encoded.words, vec![256, 0, 512]);
    }

    #[test]
    fn counts_clipped_values_and_decodes_them_at_the_bound() {
        let code = model_and_count(Modulus::Z64);
        let encoded = code.encode(&[5.0, -1e300, 1.0, 2e6]).unwrap();
        assert_eq!(encoded.clipped, 3);
        assert_eq!(
            code.decode(&encoded.words, 1).unwrap(),
            vec![4.0, -4.0, 1.0, 1e6]
        );
    }

    #[test]
    fn refuses_to_encode_a_wrong_length() {
        let code = model_and_count(Modulus::Z64);
        assert_eq!(
            code.encode(&[1.0; 3]),
            Err(EncodingError::LengthMismatch {
                expected: 4,
                got: 3
            })
        );
    }

    #[test]
    fn refuses_to_encode_nan_or_infinity_naming_the_index() {
        let code = model_and_count(Modulus::Z64);
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let err = code.encode(&[0.0, 0.0, 0.0, bad]).unwrap_err();
            assert!(
                matches!(&err, EncodingError::NonFinite { index: 3, segment, .. } if segment == "count"),
                "{err:?}"
            );
            assert!(err.to_string().contains("value 3 (segment 'count')"));
        }
    }

    #[test]
    fn refuses_to_decode_a_wrong_number_of_summands_or_words() {
        let code = model_and_count(Modulus::Z64);
        let zero = code.encode(&[0.0; 4]).unwrap().words;
        for summands in [0, 101] {
            assert_eq!(
                code.decode(&zero, summands),
                Err(EncodingError::SummandsOutOfRange {
                    summands,
                    max_summands: 100
                })
            );
        }
        assert_eq!(
            code.decode(&zero[..3], 1),
            Err(EncodingError::LengthMismatch {
                expected: 4,
                got: 3
            })
        );
    }

    #[test]
    fn refuses_a_forged_sum_beyond_the_limit() {
        for modulus in [Modulus::Z32, Modulus::Z64] {
            let code = model_and_count(modulus);
            let top = code.encode(&[4.0, 4.0, 4.0, 1e6]).unwrap().words;
            let sum = ring_sum(modulus, &[top.clone(), top.clone()]);
            // The largest honest sum of two decodes to twice the bounds.
            assert_eq!(code.decode(&sum, 2).unwrap(), vec![8.0, 8.0, 8.0, 2e6]);
            // One more anywhere is refused, naming the word.
            let mut forged = sum.clone();
            forged[3] += 1;
            let err = code.decode(&forged, 2).unwrap_err();
            assert_eq!(
                err,
                EncodingError::OutOfRange {
                    index: 3,
                    segment: "count".to_string(),
                    value: sum[3] + 1,
                    limit: sum[3]
                }
            );
            assert!(err.to_string().contains("word 3 (segment 'count')"));
            // As is a word no sum can reach, such as the top of the ring.
            let mut garbage = sum.clone();
            garbage[0] = modulus.mask();
            assert!(matches!(
                code.decode(&garbage, 2),
                Err(EncodingError::OutOfRange { index: 0, .. })
            ));
            // And a sum of three vectors passed off as two.
            let three = ring_sum(modulus, &[top.clone(), top.clone(), top]);
            assert!(matches!(
                code.decode(&three, 2),
                Err(EncodingError::OutOfRange { index: 0, .. })
            ));
        }
    }

    #[test]
    fn the_largest_sum_of_max_summands_does_not_wrap() {
        for modulus in [Modulus::Z32, Modulus::Z64] {
            let code = FixedPoint::new(
                modulus,
                vec![segment("w", 2, 3.5, false), segment("n", 1, 7.0, true)],
                52,
                1000,
            )
            .unwrap();
            for sign in [1.0, -1.0] {
                let words = code
                    .encode(&[sign * 3.5, sign * 9.0, sign * 7.0])
                    .unwrap()
                    .words;
                let sum = ring_sum(modulus, &vec![words; 1000]);
                assert_eq!(
                    code.decode(&sum, 1000).unwrap(),
                    vec![sign * 3500.0, sign * 3500.0, sign * 7000.0]
                );
            }
        }
    }

    #[test]
    fn an_empty_code_encodes_empty_vectors() {
        let code = FixedPoint::new(Modulus::Z32, vec![], 16, 5).unwrap();
        assert!(code.is_empty());
        assert_eq!(code.len(), 0);
        let encoded = code.encode(&[]).unwrap();
        assert_eq!(
            encoded,
            Encoded {
                words: vec![],
                clipped: 0
            }
        );
        assert_eq!(code.decode(&[], 5), Ok(vec![]));
    }

    /// A code (modulus, segments, precision, max_summands) that has headroom, the number of
    /// summands k <= max_summands, and k vectors of values up to 1.5 times the bounds
    /// (integer-valued in integer segments).
    fn summing_case() -> impl Strategy<Value = (FixedPoint, Vec<Vec<f64>>)> {
        let segments = proptest::collection::vec(
            (0..6usize, -10i32..20, any::<bool>()).prop_map(|(len, exponent, integer)| {
                let bound = if integer {
                    2f64.powi(exponent.clamp(0, 20)).round()
                } else {
                    1.37 * 2f64.powi(exponent)
                };
                (len, bound, integer)
            }),
            1..4,
        );
        (
            prop_oneof![Just(Modulus::Z32), Just(Modulus::Z64)],
            segments,
            0..=52u32,
            1..=64usize,
        )
            .prop_filter_map("no headroom", |(modulus, segments, precision, max)| {
                let segments = segments
                    .into_iter()
                    .enumerate()
                    .map(|(i, (len, bound, integer))| {
                        segment(&format!("s{i}"), len, bound, integer)
                    })
                    .collect();
                FixedPoint::new(modulus, segments, precision, max).ok()
            })
            .prop_flat_map(|code| {
                let max = code.max_summands().min(12);
                let value_strategies: Vec<BoxedStrategy<f64>> = code
                    .segments
                    .iter()
                    .flat_map(|layout| {
                        let bound = layout.segment.bound;
                        let strategy = if layout.segment.integer {
                            (-1.5 * bound..=1.5 * bound).prop_map(f64::round).boxed()
                        } else {
                            (-1.5 * bound..=1.5 * bound).boxed()
                        };
                        std::iter::repeat_n(strategy, layout.segment.len)
                    })
                    .collect();
                (
                    Just(code),
                    proptest::collection::vec(value_strategies, 1..=max),
                )
            })
    }

    proptest! {
        #[test]
        fn ring_sums_of_encodings_decode_to_the_plain_sums((code, vectors) in summing_case()) {
            let modulus = code.modulus();
            let k = vectors.len();
            let encoded: Vec<Vec<u64>> = vectors
                .iter()
                .map(|values| code.encode(values).unwrap().words)
                .collect();
            for words in &encoded {
                prop_assert!(words.iter().all(|&w| w <= modulus.mask()));
            }
            let decoded = code.decode(&ring_sum(modulus, &encoded), k).unwrap();
            for layout in &code.segments {
                let bound = layout.segment.bound;
                let ulp = 2f64.powi(-(layout.fractional_bits as i32));
                for i in layout.range() {
                    let plain: f64 = vectors.iter().map(|v| v[i].clamp(-bound, bound)).sum();
                    if layout.segment.integer {
                        prop_assert_eq!(decoded[i], plain, "index {}", i);
                    } else {
                        // k roundings of at most half a unit each, plus the f64 rounding of the
                        // two sums.
                        let tolerance = k as f64 * ulp / 2.0 + 4.0 * k as f64 * f64::EPSILON * k as f64 * bound;
                        prop_assert!(
                            (decoded[i] - plain).abs() <= tolerance,
                            "index {}: decoded {} vs plain {} (tolerance {})", i, decoded[i], plain, tolerance
                        );
                    }
                }
            }
        }

        #[test]
        fn a_sum_word_above_the_limit_is_always_refused(
            (code, vectors) in summing_case(),
            excess in 1..1000u64,
            pick in any::<prop::sample::Index>(),
        ) {
            if code.is_empty() {
                // No word to forge.
                return Ok(());
            }
            let k = vectors.len();
            let encoded: Vec<Vec<u64>> = vectors
                .iter()
                .map(|values| code.encode(values).unwrap().words)
                .collect();
            let mut sum = ring_sum(code.modulus(), &encoded);
            let index = pick.index(code.len());
            let layout = code.segments.iter().find(|l| l.range().contains(&index)).unwrap();
            let limit = 2 * k as u64 * layout.offset;
            prop_assume!(limit.checked_add(excess).is_some());
            sum[index] = limit + excess;
            prop_assert_eq!(
                code.decode(&sum, k),
                Err(EncodingError::OutOfRange {
                    index,
                    segment: layout.segment.name.clone(),
                    value: limit + excess,
                    limit,
                })
            );
        }
    }
}

//! Shamir t-of-n secret sharing of 32-byte secrets.
//!
//! A participant splits its self-mask seed and its mask key among its share holders so that
//! any `threshold` of them can rebuild either one (to unmask a survivor's input or a dropped
//! participant's pairwise masks), while fewer than `threshold` shares are uniformly random and
//! tell nothing about the secret.
//!
//! The field is GF(p) with p = 2^256 + 297, the smallest prime above 2^256, so every 256-bit
//! secret is a field element as it is and no secret needs reducing. A share's value is a field
//! element, up to 257 bits, stored big-endian in 33 bytes. Arithmetic is `crypto-bigint`'s
//! constant-time modular arithmetic on 320-bit integers; only the Lagrange denominators, which
//! depend on the public evaluation points alone, are inverted in variable time.

use crypto_bigint::{Odd, U320};
use rand::CryptoRng;
use std::collections::HashSet;
use zeroize::Zeroize;

/// p = 2^256 + 297 as a 320-bit integer (80 hex digits).
const P: Odd<U320> = Odd::<U320>::from_be_hex(
    "00000000000000010000000000000000000000000000000000000000000000000000000000000129",
);

/// Bytes of a field element in a share (p needs 257 bits).
const FIELD_BYTES: usize = 33;

/// Bytes of a [`U320`] in big-endian order: a field element fills the last 33, a secret the
/// last 32.
const WIDE_BYTES: usize = 40;

/// One holder's share: the point `(x, y)` of the secret's polynomial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The holder's evaluation point, never 0 (the polynomial at 0 is the secret).
    pub x: u32,
    /// The polynomial at `x`: a big-endian field element, less than p.
    pub y: [u8; 33],
}

impl Share {
    /// Length of [`Share::to_bytes`].
    pub const ENCODED_LEN: usize = 4 + FIELD_BYTES;

    /// `x` as a big-endian u32, then `y`.
    pub fn to_bytes(&self) -> [u8; 37] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[..4].copy_from_slice(&self.x.to_be_bytes());
        out[4..].copy_from_slice(&self.y);
        out
    }

    /// Reads [`Share::to_bytes`]; refuses a wrong length, `x` = 0 and `y` >= p.
    pub fn from_bytes(bytes: &[u8]) -> Result<Share, ShamirError> {
        if bytes.len() != Self::ENCODED_LEN {
            return Err(ShamirError::BadLength {
                got: bytes.len(),
                expected: Self::ENCODED_LEN,
            });
        }
        let x = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes"));
        if x == 0 {
            return Err(ShamirError::ZeroPoint);
        }
        let share = Share {
            x,
            y: bytes[4..].try_into().expect("33 bytes"),
        };
        let mut y = share.field_value()?;
        wipe(&mut y);
        Ok(share)
    }

    /// `y` as a field element; refuses `y` >= p.
    fn field_value(&self) -> Result<U320, ShamirError> {
        let mut wide = [0u8; WIDE_BYTES];
        wide[WIDE_BYTES - FIELD_BYTES..].copy_from_slice(&self.y);
        let y = U320::from_be_slice(&wide);
        wide.zeroize();
        if y < *P.as_ref() {
            Ok(y)
        } else {
            Err(ShamirError::NotAFieldElement { x: self.x })
        }
    }
}

/// Why a secret could not be split or reconstructed, or a share could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShamirError {
    /// A threshold of 0: any secret would be readable from no share.
    #[error("the threshold must be at least 1")]
    ZeroThreshold,
    /// More shares needed than there are holders: the secret could never be rebuilt.
    #[error("threshold {threshold} exceeds the number of share holders ({holders})")]
    ThresholdAboveHolders {
        /// The threshold asked for.
        threshold: usize,
        /// The share holders.
        holders: usize,
    },
    /// A holder at evaluation point 0, whose share would be the secret.
    #[error("evaluation point 0 is the secret itself: share holders need nonzero points")]
    ZeroPoint,
    /// Two holders, or two shares, at the same evaluation point.
    #[error("evaluation point {x} appears more than once")]
    DuplicatePoint {
        /// The point.
        x: u32,
    },
    /// Fewer shares than the threshold.
    #[error("too few shares to reconstruct: have {have}, need {need}")]
    TooFewShares {
        /// The shares given.
        have: usize,
        /// The threshold.
        need: usize,
    },
    /// A share whose value is not below the field prime p.
    #[error("the share for point {x} is not a field element (y >= p)")]
    NotAFieldElement {
        /// The share's evaluation point.
        x: u32,
    },
    /// Shares that interpolate to no 256-bit secret: at least one is wrong.
    #[error("inconsistent shares: they interpolate to a value that is not a 256-bit secret")]
    Inconsistent,
    /// An encoded share of the wrong length.
    #[error("an encoded share is {expected} bytes, got {got}")]
    BadLength {
        /// Its length in bytes.
        got: usize,
        /// The length of an encoded share in bytes.
        expected: usize,
    },
}

/// Splits `secret` (a big-endian 256-bit integer) into one share per holder, in the order of
/// `holders`, any `threshold` of which reconstruct it.
///
/// The polynomial has degree `threshold - 1`, the secret as its constant term and the other
/// coefficients uniform in GF(p) by rejection sampling: 33 random bytes with the top 7 bits
/// cleared are a uniform integer below 2^257, kept if it is below p (about half the time), so
/// the accepted values are exactly uniform. The coefficients are zeroized when done.
pub fn split(
    secret: &[u8; 32],
    threshold: usize,
    holders: &[u32],
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<Vec<Share>, ShamirError> {
    if threshold == 0 {
        return Err(ShamirError::ZeroThreshold);
    }
    if threshold > holders.len() {
        return Err(ShamirError::ThresholdAboveHolders {
            threshold,
            holders: holders.len(),
        });
    }
    check_points(holders.iter().copied())?;

    let mut coefficients = FieldElements(Vec::with_capacity(threshold));
    coefficients.0.push(secret_to_field(secret));
    for _ in 1..threshold {
        coefficients.0.push(random_element(rng));
    }
    Ok(holders
        .iter()
        .map(|&x| {
            let mut y = coefficients.evaluate(x);
            let share = Share {
                x,
                y: field_to_bytes(&y),
            };
            wipe(&mut y);
            share
        })
        .collect())
}

/// Reconstructs the secret from the first `threshold` of `shares` by Lagrange interpolation
/// at 0. Shares beyond the first `threshold` are ignored.
///
/// Shares of different secrets, or altered ones, interpolate to some other field element: it
/// is refused if it exceeds 256 bits, but is otherwise indistinguishable from a secret, so
/// shares must come authenticated.
pub fn reconstruct(shares: &[Share], threshold: usize) -> Result<[u8; 32], ShamirError> {
    if threshold == 0 {
        return Err(ShamirError::ZeroThreshold);
    }
    if shares.len() < threshold {
        return Err(ShamirError::TooFewShares {
            have: shares.len(),
            need: threshold,
        });
    }
    let used = &shares[..threshold];
    check_points(used.iter().map(|share| share.x))?;
    let mut ys = FieldElements(Vec::with_capacity(threshold));
    for share in used {
        ys.0.push(share.field_value()?);
    }

    let p = P.as_nz_ref();
    let xs: Vec<U320> = used.iter().map(|share| U320::from_u32(share.x)).collect();
    let mut secret = U320::ZERO;
    for (j, (x_j, y_j)) in xs.iter().zip(&ys.0).enumerate() {
        // The Lagrange basis polynomial of x_j at 0: the product over m != j of x_m / (x_m - x_j).
        let mut numerator = U320::ONE;
        let mut denominator = U320::ONE;
        for (m, x_m) in xs.iter().enumerate() {
            if m != j {
                numerator = numerator.mul_mod(x_m, p);
                denominator = denominator.mul_mod(&x_m.sub_mod(x_j, p), p);
            }
        }
        let inverse = denominator.invert_odd_mod_vartime(&P).into_option().expect(
            "the points are distinct, nonzero and below p, so the denominator is invertible",
        );
        let mut term = numerator.mul_mod(&inverse, p).mul_mod(y_j, p);
        secret = secret.add_mod(&term, p);
        wipe(&mut term);
    }

    let mut wide = secret.to_be_bytes();
    wipe(&mut secret);
    let bytes = wide.as_mut_slice();
    let fits = bytes[..WIDE_BYTES - 32].iter().all(|&b| b == 0);
    let mut out = [0u8; 32];
    out.copy_from_slice(&bytes[WIDE_BYTES - 32..]);
    bytes.zeroize();
    if fits {
        Ok(out)
    } else {
        out.zeroize();
        Err(ShamirError::Inconsistent)
    }
}

/// Field elements that are zeroized when dropped: a polynomial's coefficients (the constant
/// term is the secret), or the share values being interpolated.
struct FieldElements(Vec<U320>);

impl FieldElements {
    /// The polynomial with these coefficients (constant term first) at `x`, by Horner's rule.
    fn evaluate(&self, x: u32) -> U320 {
        let p = P.as_nz_ref();
        let x = U320::from_u32(x);
        let mut acc = U320::ZERO;
        for coefficient in self.0.iter().rev() {
            acc = acc.mul_mod(&x, p).add_mod(coefficient, p);
        }
        acc
    }
}

impl Drop for FieldElements {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(wipe);
    }
}

fn wipe(value: &mut U320) {
    value.as_mut_words().zeroize();
}

/// Refuses a zero or repeated evaluation point.
fn check_points(points: impl ExactSizeIterator<Item = u32>) -> Result<(), ShamirError> {
    let mut seen = HashSet::with_capacity(points.len());
    for x in points {
        if x == 0 {
            return Err(ShamirError::ZeroPoint);
        }
        if !seen.insert(x) {
            return Err(ShamirError::DuplicatePoint { x });
        }
    }
    Ok(())
}

/// The secret as a field element: every 256-bit integer is below p.
fn secret_to_field(secret: &[u8; 32]) -> U320 {
    let mut wide = [0u8; WIDE_BYTES];
    wide[WIDE_BYTES - 32..].copy_from_slice(secret);
    let value = U320::from_be_slice(&wide);
    wide.zeroize();
    value
}

/// A field element (< p < 2^257) as 33 big-endian bytes.
fn field_to_bytes(value: &U320) -> [u8; 33] {
    let mut wide = value.to_be_bytes();
    let bytes = wide.as_mut_slice();
    let mut out = [0u8; FIELD_BYTES];
    out.copy_from_slice(&bytes[WIDE_BYTES - FIELD_BYTES..]);
    bytes.zeroize();
    out
}

/// A uniform element of GF(p), by rejection sampling below 2^257.
fn random_element(rng: &mut (impl CryptoRng + ?Sized)) -> U320 {
    loop {
        let mut wide = [0u8; WIDE_BYTES];
        rng.fill_bytes(&mut wide[WIDE_BYTES - FIELD_BYTES..]);
        wide[WIDE_BYTES - FIELD_BYTES] &= 0x01;
        let mut candidate = U320::from_be_slice(&wide);
        wide.zeroize();
        if candidate < *P.as_ref() {
            return candidate;
        }
        wipe(&mut candidate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{RngCore, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    fn rng(seed: u64) -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(seed)
    }

    fn share(x: u32, y_hex: &str) -> Share {
        let mut y = [0u8; 33];
        for (i, byte) in y.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&y_hex[2 * i..2 * i + 2], 16).unwrap();
        }
        Share { x, y }
    }

    const SECRET: [u8; 32] = [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff, 0x10, 0x21, 0x32, 0x43, 0x54, 0x65, 0x76, 0x87, 0x98, 0xa9, 0xba, 0xcb, 0xdc, 0xed,
        0xfe, 0x0f,
    ];

    /// p as 33 big-endian bytes.
    fn p_bytes() -> [u8; 33] {
        field_to_bytes(P.as_ref())
    }

    #[test]
    fn the_modulus_is_two_to_the_256_plus_297() {
        let mut expected = [0u8; 33];
        expected[0] = 0x01;
        expected[31] = 0x01;
        expected[32] = 0x29;
        assert_eq!(p_bytes(), expected);
    }

    #[test]
    fn reconstructs_shares_computed_independently() {
        // f(x) = SECRET + (p - 1) x + (2^255 + 12345) x^2 mod p, evaluated with Python's integers.
        let shares = [
            share(
                1,
                "0080112233445566778899aabbccddeeff102132435465768798a9bacbdcee2e47",
            ),
            share(
                7,
                "0080112233445566778899aabbccddeeff102132435465768798a9bacbdcf71d19",
            ),
            share(
                0xffff_ffff,
                "0080112233445566778899aabbccddeeff102132435465a62c18a95b81dcee2e49",
            ),
        ];
        assert_eq!(reconstruct(&shares, 3), Ok(SECRET));
        let mut reversed = shares.clone();
        reversed.reverse();
        assert_eq!(reconstruct(&reversed, 3), Ok(SECRET));
    }

    #[test]
    fn shares_at_or_above_two_to_the_256_reconstruct_the_largest_secret() {
        // f(x) = (2^256 - 1) + x: both shares exceed 2^256 - 1 but are below p.
        let shares = [
            share(
                1,
                "010000000000000000000000000000000000000000000000000000000000000000",
            ),
            share(
                2,
                "010000000000000000000000000000000000000000000000000000000000000001",
            ),
        ];
        assert_eq!(reconstruct(&shares, 2), Ok([0xff; 32]));
    }

    #[test]
    fn any_threshold_of_the_shares_reconstructs_the_secret() {
        let holders = [3, 1, 4_000_000_000, 15, 9];
        let shares = split(&SECRET, 3, &holders, &mut rng(1)).unwrap();
        assert_eq!(shares.len(), 5);
        assert_eq!(shares.iter().map(|s| s.x).collect::<Vec<_>>(), holders);
        for a in 0..5 {
            for b in 0..5 {
                for c in 0..5 {
                    if a == b || b == c || a == c {
                        continue;
                    }
                    let subset = [shares[a].clone(), shares[b].clone(), shares[c].clone()];
                    assert_eq!(reconstruct(&subset, 3), Ok(SECRET), "{a} {b} {c}");
                }
            }
        }
        // More shares than needed: the first three are used.
        assert_eq!(reconstruct(&shares, 3), Ok(SECRET));
    }

    #[test]
    fn the_first_threshold_shares_are_used_and_the_rest_ignored() {
        let mut shares = split(&SECRET, 2, &[1, 2, 3], &mut rng(2)).unwrap();
        shares[2].y = [0xff; 33];
        shares.push(shares[0].clone());
        assert_eq!(reconstruct(&shares, 2), Ok(SECRET));
    }

    #[test]
    fn with_threshold_one_every_share_is_the_secret() {
        let shares = split(&SECRET, 1, &[5, 6, 7], &mut rng(3)).unwrap();
        for share in &shares {
            assert_eq!(share.y[0], 0);
            assert_eq!(share.y[1..], SECRET);
            assert_eq!(reconstruct(std::slice::from_ref(share), 1), Ok(SECRET));
        }
    }

    #[test]
    fn with_threshold_two_the_shares_lie_on_a_line() {
        let shares = split(&SECRET, 2, &[1, 2, 3], &mut rng(4)).unwrap();
        let p = P.as_nz_ref();
        let y: Vec<U320> = shares.iter().map(|s| s.field_value().unwrap()).collect();
        assert_eq!(y[1].sub_mod(&y[0], p), y[2].sub_mod(&y[1], p));
        // The slope is a random coefficient, not 0.
        assert_ne!(y[0], y[1]);
        // And the line meets x = 0 at the secret: 2 y(1) - y(2).
        assert_eq!(
            y[0].add_mod(&y[0], p).sub_mod(&y[1], p),
            secret_to_field(&SECRET)
        );
    }

    #[test]
    fn extreme_secrets_and_points_round_trip() {
        for secret in [[0u8; 32], [0xff; 32], {
            let mut one = [0u8; 32];
            one[31] = 1;
            one
        }] {
            let holders = [u32::MAX, 1, u32::MAX - 1, 2];
            let shares = split(&secret, 4, &holders, &mut rng(5)).unwrap();
            assert_eq!(reconstruct(&shares, 4), Ok(secret));
        }
    }

    #[test]
    fn fewer_than_threshold_shares_do_not_give_the_secret() {
        let mut rng = rng(6);
        for case in 0..200 {
            let threshold = 2 + case % 8;
            let mut secret = [0u8; 32];
            rng.fill_bytes(&mut secret);
            let holders: Vec<u32> = (1..=threshold as u32 + 2).collect();
            let shares = split(&secret, threshold, &holders, &mut rng).unwrap();
            let fewer = &shares[..threshold - 1];
            assert_ne!(reconstruct(fewer, threshold - 1), Ok(secret), "case {case}");
        }
    }

    #[test]
    fn a_single_altered_share_changes_the_result() {
        let shares = split(&SECRET, 3, &[1, 2, 3], &mut rng(7)).unwrap();
        for i in 0..3 {
            let mut altered = shares.clone();
            altered[i].y[32] ^= 1;
            assert_ne!(reconstruct(&altered, 3), Ok(SECRET), "share {i}");
        }
    }

    #[test]
    fn the_same_secret_split_twice_gives_unrelated_shares() {
        let first = split(&SECRET, 2, &[1, 2], &mut rng(8)).unwrap();
        let second = split(&SECRET, 2, &[1, 2], &mut rng(9)).unwrap();
        assert_ne!(first[0].y, second[0].y);
        assert_ne!(first[1].y, second[1].y);
    }

    #[test]
    fn shares_encode_as_x_then_y_and_decode_back() {
        let shares = split(&SECRET, 2, &[0x0102_0304, 9], &mut rng(10)).unwrap();
        for share in &shares {
            let bytes = share.to_bytes();
            assert_eq!(bytes.len(), Share::ENCODED_LEN);
            assert_eq!(bytes[..4], share.x.to_be_bytes());
            assert_eq!(bytes[4..], share.y);
            assert_eq!(Share::from_bytes(&bytes), Ok(share.clone()));
        }
        assert_eq!(shares[0].to_bytes()[..4], [1, 2, 3, 4]);
    }

    #[test]
    fn decoding_refuses_a_wrong_length() {
        let bytes = Share { x: 1, y: [0; 33] }.to_bytes();
        for len in [0, 36, 38] {
            let mut input = bytes.to_vec();
            input.resize(len, 0);
            assert_eq!(
                Share::from_bytes(&input),
                Err(ShamirError::BadLength {
                    got: len,
                    expected: 37
                })
            );
        }
    }

    #[test]
    fn decoding_refuses_point_zero() {
        let bytes = Share { x: 0, y: [0; 33] }.to_bytes();
        assert_eq!(Share::from_bytes(&bytes), Err(ShamirError::ZeroPoint));
    }

    #[test]
    fn decoding_refuses_y_not_below_p() {
        let mut below = p_bytes();
        below[32] -= 1;
        assert!(Share::from_bytes(&Share { x: 2, y: below }.to_bytes()).is_ok());
        for y in [p_bytes(), [0xff; 33]] {
            assert_eq!(
                Share::from_bytes(&Share { x: 2, y }.to_bytes()),
                Err(ShamirError::NotAFieldElement { x: 2 })
            );
        }
    }

    #[test]
    fn split_refuses_threshold_zero() {
        assert_eq!(
            split(&SECRET, 0, &[1, 2], &mut rng(0)),
            Err(ShamirError::ZeroThreshold)
        );
    }

    #[test]
    fn split_refuses_a_threshold_above_the_holders() {
        let err = split(&SECRET, 3, &[1, 2], &mut rng(0)).unwrap_err();
        assert_eq!(
            err,
            ShamirError::ThresholdAboveHolders {
                threshold: 3,
                holders: 2
            }
        );
        assert_eq!(
            err.to_string(),
            "threshold 3 exceeds the number of share holders (2)"
        );
        assert_eq!(
            split(&SECRET, 1, &[], &mut rng(0)),
            Err(ShamirError::ThresholdAboveHolders {
                threshold: 1,
                holders: 0
            })
        );
    }

    #[test]
    fn split_refuses_holder_zero() {
        assert_eq!(
            split(&SECRET, 1, &[1, 0, 2], &mut rng(0)),
            Err(ShamirError::ZeroPoint)
        );
    }

    #[test]
    fn split_refuses_a_repeated_holder() {
        let err = split(&SECRET, 2, &[7, 8, 7], &mut rng(0)).unwrap_err();
        assert_eq!(err, ShamirError::DuplicatePoint { x: 7 });
        assert_eq!(err.to_string(), "evaluation point 7 appears more than once");
    }

    #[test]
    fn reconstruct_refuses_threshold_zero() {
        let shares = split(&SECRET, 1, &[1], &mut rng(0)).unwrap();
        assert_eq!(reconstruct(&shares, 0), Err(ShamirError::ZeroThreshold));
    }

    #[test]
    fn reconstruct_refuses_too_few_shares() {
        let shares = split(&SECRET, 3, &[1, 2, 3], &mut rng(0)).unwrap();
        let err = reconstruct(&shares[..2], 3).unwrap_err();
        assert_eq!(err, ShamirError::TooFewShares { have: 2, need: 3 });
        assert_eq!(
            err.to_string(),
            "too few shares to reconstruct: have 2, need 3"
        );
    }

    #[test]
    fn reconstruct_refuses_a_repeated_point() {
        let shares = split(&SECRET, 2, &[1, 2], &mut rng(0)).unwrap();
        let repeated = [shares[1].clone(), shares[1].clone()];
        assert_eq!(
            reconstruct(&repeated, 2),
            Err(ShamirError::DuplicatePoint { x: 2 })
        );
    }

    #[test]
    fn reconstruct_refuses_point_zero() {
        let mut shares = split(&SECRET, 2, &[1, 2], &mut rng(0)).unwrap();
        shares[0].x = 0;
        assert_eq!(reconstruct(&shares, 2), Err(ShamirError::ZeroPoint));
    }

    #[test]
    fn reconstruct_refuses_y_not_below_p() {
        let mut shares = split(&SECRET, 2, &[1, 2], &mut rng(0)).unwrap();
        shares[1].y = p_bytes();
        assert_eq!(
            reconstruct(&shares, 2),
            Err(ShamirError::NotAFieldElement { x: 2 })
        );
    }

    #[test]
    fn reconstruct_refuses_a_result_beyond_256_bits() {
        // The constant polynomial 2^256: a field element, but not a 32-byte secret.
        let y = share(
            1,
            "010000000000000000000000000000000000000000000000000000000000000000",
        )
        .y;
        assert_eq!(
            reconstruct(&[Share { x: 1, y }], 1),
            Err(ShamirError::Inconsistent)
        );
        let constant = [Share { x: 4, y }, Share { x: 9, y }];
        assert_eq!(reconstruct(&constant, 2), Err(ShamirError::Inconsistent));
    }

    /// A secret, a threshold t >= `min_threshold`, n in t..=20 holders (distinct, nonzero,
    /// some small and some large), a subset of at least t of the share indices in random
    /// order, and an RNG seed.
    fn sharing_case(
        min_threshold: usize,
    ) -> impl Strategy<Value = ([u8; 32], usize, Vec<u32>, Vec<usize>, u64)> {
        (min_threshold..=20usize)
            .prop_flat_map(move |n| {
                let point = prop_oneof![1..=1000u32, 1..=u32::MAX];
                (
                    min_threshold..=n,
                    proptest::collection::btree_set(point, n)
                        .prop_map(|set| set.into_iter().collect::<Vec<u32>>())
                        .prop_shuffle(),
                )
            })
            .prop_flat_map(|(t, holders)| {
                let n = holders.len();
                let indices: Vec<usize> = (0..n).collect();
                (
                    any::<[u8; 32]>(),
                    Just(t),
                    Just(holders),
                    proptest::sample::subsequence(indices, t..=n).prop_shuffle(),
                    any::<u64>(),
                )
            })
    }

    proptest! {
        #[test]
        fn any_subset_of_at_least_threshold_shares_reconstructs(
            (secret, t, holders, subset, seed) in sharing_case(1)
        ) {
            let shares = split(&secret, t, &holders, &mut rng(seed)).unwrap();
            prop_assert_eq!(shares.len(), holders.len());
            let chosen: Vec<Share> = subset.iter().map(|&i| shares[i].clone()).collect();
            prop_assert_eq!(reconstruct(&chosen, t), Ok(secret));
        }

        #[test]
        fn threshold_minus_one_shares_miss_the_secret(
            (secret, t, holders, subset, seed) in sharing_case(2)
        ) {
            let shares = split(&secret, t, &holders, &mut rng(seed)).unwrap();
            let chosen: Vec<Share> = subset.iter().take(t - 1).map(|&i| shares[i].clone()).collect();
            prop_assert_ne!(reconstruct(&chosen, t - 1), Ok(secret));
        }

        #[test]
        fn encoded_shares_decode_to_themselves(
            (secret, t, holders, _subset, seed) in sharing_case(1)
        ) {
            for share in split(&secret, t, &holders, &mut rng(seed)).unwrap() {
                prop_assert_eq!(Share::from_bytes(&share.to_bytes()), Ok(share));
            }
        }

        #[test]
        fn random_coefficients_are_field_elements_spread_over_the_field(seed in any::<u64>()) {
            let mut rng = rng(seed);
            let mut high = 0;
            for _ in 0..64 {
                let value = random_element(&mut rng);
                prop_assert!(value < *P.as_ref());
                high += usize::from(field_to_bytes(&value)[1] >= 0x80);
            }
            // About half should have the top bit of their low 256 bits set; 64 draws all on one
            // side would happen with probability 2^-63.
            prop_assert!(high > 0 && high < 64);
        }
    }
}

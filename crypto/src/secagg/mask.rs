//! Masks expanded from 32-byte seeds with the ChaCha20 keystream.
//!
//! A participant hides its encoded vector under masks that vanish in the sum: pairwise masks,
//! added at one end of a pair and subtracted at the other, and a self mask removed once its
//! seed is reconstructed. The mask of a seed is the ChaCha20 keystream (RFC 8439, from the
//! `chacha20` crate) under key = seed, an all-zero 96-bit nonce and block counter 0, read as
//! little-endian words of the modulus's width (8 bytes in Z_2^64, 4 in Z_2^32) and added to or
//! subtracted from the words modulo 2^bits.
//!
//! The fixed nonce is sound because a seed masks exactly one vector: the protocol derives every
//! seed with HKDF from a key bound to the federation, the round and the phase (or draws it fresh,
//! for the self mask). A seed used twice would reveal the difference of the two vectors to
//! anyone who saw both masked.
//!
//! Each seed also expands into commitment blindings ([`add_blindings`]) for the input-validity
//! proofs ([`super::validity`]): scalars from the keystream of a key derived from the seed with
//! HKDF-SHA256 under its own label, so no mask byte is ever reused as a blinding. A participant
//! adds a seed's blindings exactly where it adds its mask, so the blindings of a sum cancel and
//! are rebuilt from the same secrets as its masks.
//!
//! Masking is the hot path for large vectors, so the keystream is generated into a stack
//! buffer small enough to stay in L1 (8 KiB) and added in a tight loop over whole words, which
//! the compiler vectorizes: no allocation and one cipher call per 8 KiB.

use super::encoding::Modulus;
use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use curve25519_dalek::scalar::Scalar;
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

/// The HKDF label of the key a seed's commitment blindings are expanded from.
const BLINDING_LABEL: &[u8] = b"accord.secagg.v1 commitment blinding";

/// Keystream bytes per blinding: 512 bits reduced modulo the group order ℓ (about 2^252), so
/// the blinding is uniform up to a statistical distance of 2^-259.
const BLINDING_BYTES: usize = 64;

/// Keystream bytes generated at a time (a multiple of the 64-byte ChaCha20 block and of both
/// word widths).
const CHUNK_BYTES: usize = 8 * 1024;

/// The mask of a seed's nonce: each seed masks one vector, so the nonce is fixed.
const NONCE: [u8; 12] = [0; 12];

/// Adds (or, with `subtract`, subtracts) the mask of `seed` to `words`, modulo 2^bits: word i
/// gets the i-th little-endian keystream word of the modulus's width. In Z_2^32 the words are
/// taken modulo 2^32 and the results are below 2^32.
///
/// # Panics
/// If the mask would need more than ChaCha20's 2^32 blocks (256 GiB) of keystream.
pub fn apply_mask(words: &mut [u64], seed: &[u8; 32], subtract: bool, modulus: Modulus) {
    let mut cipher = ChaCha20::new(seed.into(), &NONCE.into());
    let mut buffer = [0u8; CHUNK_BYTES];
    let width = modulus.word_bytes();
    for chunk in words.chunks_mut(CHUNK_BYTES / width) {
        let stream = &mut buffer[..chunk.len() * width];
        stream.fill(0);
        cipher.apply_keystream(stream);
        match (modulus, subtract) {
            (Modulus::Z64, false) => combine64(chunk, stream, u64::wrapping_add),
            (Modulus::Z64, true) => combine64(chunk, stream, u64::wrapping_sub),
            (Modulus::Z32, false) => combine32(chunk, stream, u32::wrapping_add),
            (Modulus::Z32, true) => combine32(chunk, stream, u32::wrapping_sub),
        }
    }
    buffer.zeroize();
}

/// Adds (or, with `subtract`, subtracts) the commitment blindings of `seed` to `acc`, modulo the
/// Ristretto group order: position i gets `Scalar::from_bytes_mod_order_wide` of the i-th 64
/// bytes of the ChaCha20 keystream (nonce 0) under the key HKDF-SHA256(ikm = seed, info =
/// "accord.secagg.v1 commitment blinding"). Use the same seeds and signs as [`apply_mask`], so
/// a participant's blindings ρ are its self seed's plus or minus its pairwise seeds', and the
/// sum of the blindings over the survivors is what the unmasking secrets rebuild.
///
/// # Panics
/// If `acc` needs more than ChaCha20's 2^32 blocks (2^32 scalars).
pub fn add_blindings(acc: &mut [Scalar], seed: &[u8; 32], subtract: bool) {
    let mut key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(None, seed)
        .expand(BLINDING_LABEL, key.as_mut_slice())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    let mut cipher = ChaCha20::new((&*key).into(), &NONCE.into());
    let mut buffer = Zeroizing::new([0u8; CHUNK_BYTES]);
    for chunk in acc.chunks_mut(CHUNK_BYTES / BLINDING_BYTES) {
        let stream = &mut buffer[..chunk.len() * BLINDING_BYTES];
        stream.fill(0);
        cipher.apply_keystream(stream);
        for (blinding, bytes) in chunk.iter_mut().zip(stream.chunks_exact(BLINDING_BYTES)) {
            let wide: &[u8; BLINDING_BYTES] = bytes.try_into().expect("64 bytes");
            let drawn = Zeroizing::new(Scalar::from_bytes_mod_order_wide(wide));
            if subtract {
                *blinding -= *drawn;
            } else {
                *blinding += *drawn;
            }
        }
    }
}

/// The raw keystream of `seed` (the bytes [`apply_mask`] reads its words from) into `out`.
///
/// # Panics
/// If `out` is longer than ChaCha20's 2^32 blocks (256 GiB).
pub fn keystream(out: &mut [u8], seed: &[u8; 32]) {
    out.fill(0);
    ChaCha20::new(seed.into(), &NONCE.into()).apply_keystream(out);
}

#[inline(always)]
fn combine64(words: &mut [u64], stream: &[u8], op: impl Fn(u64, u64) -> u64) {
    for (word, bytes) in words.iter_mut().zip(stream.chunks_exact(8)) {
        *word = op(
            *word,
            u64::from_le_bytes(bytes.try_into().expect("8 bytes")),
        );
    }
}

#[inline(always)]
fn combine32(words: &mut [u64], stream: &[u8], op: impl Fn(u32, u32) -> u32) {
    for (word, bytes) in words.iter_mut().zip(stream.chunks_exact(4)) {
        // Truncating is reducing modulo 2^32.
        let reduced = *word as u32;
        *word = u64::from(op(
            reduced,
            u32::from_le_bytes(bytes.try_into().expect("4 bytes")),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::encoding::{FixedPoint, Segment};
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    const SEED: [u8; 32] = [7; 32];

    fn masked(len: usize, seed: &[u8; 32], modulus: Modulus) -> Vec<u64> {
        let mut words = vec![0u64; len];
        apply_mask(&mut words, seed, false, modulus);
        words
    }

    fn modulus() -> impl Strategy<Value = Modulus> {
        prop_oneof![Just(Modulus::Z32), Just(Modulus::Z64)]
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn the_keystream_is_rfc_8439_chacha20_with_nonce_and_counter_zero() {
        // RFC 8439 appendix A.1, test vectors 1 and 2: all-zero key and nonce, blocks 0 and 1.
        let expected = hex(concat!(
            "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7",
            "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586",
            "9f07e7be5551387a98ba977c732d080dcb0f29a048e3656912c6533e32ee7aed",
            "29b721769ce64e43d57133b074d839d531ed1f28510afb45ace10a1f4b794d6f",
        ));
        let mut out = vec![0xaa; 128];
        keystream(&mut out, &[0; 32]);
        assert_eq!(out, expected);
        assert_eq!(
            masked(2, &[0; 32], Modulus::Z64),
            vec![0x903d_f1a0_ade0_b876, 0x28bd_8653_e56a_5d40]
        );
        assert_eq!(
            masked(2, &[0; 32], Modulus::Z32),
            vec![0xade0_b876, 0x903d_f1a0]
        );
    }

    #[test]
    fn the_mask_is_the_keystream_read_as_little_endian_words() {
        // Several chunks and a partial one.
        for modulus in [Modulus::Z64, Modulus::Z32] {
            let len = 3 * CHUNK_BYTES / modulus.word_bytes() + 5;
            let mut stream = vec![0u8; len * modulus.word_bytes()];
            keystream(&mut stream, &SEED);
            let expected: Vec<u64> = match modulus {
                Modulus::Z64 => stream
                    .chunks_exact(8)
                    .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
                    .collect(),
                Modulus::Z32 => stream
                    .chunks_exact(4)
                    .map(|b| u64::from(u32::from_le_bytes(b.try_into().unwrap())))
                    .collect(),
            };
            assert_eq!(masked(len, &SEED, modulus), expected, "{modulus}");
        }
    }

    #[test]
    fn a_shorter_mask_is_a_prefix_of_a_longer_one() {
        for modulus in [Modulus::Z64, Modulus::Z32] {
            let long = masked(5000, &SEED, modulus);
            for len in [0, 1, 7, 1023, 1024, 1025, 2048, 2049, 4999] {
                assert_eq!(masked(len, &SEED, modulus), long[..len], "{modulus} {len}");
            }
        }
    }

    #[test]
    fn subtracting_the_mask_restores_the_words() {
        for modulus in [Modulus::Z64, Modulus::Z32] {
            let original: Vec<u64> = (0..3000u64)
                .map(|i| (i * 0x9e37_79b9) & modulus.mask())
                .collect();
            let mut words = original.clone();
            apply_mask(&mut words, &SEED, false, modulus);
            assert_ne!(words, original);
            apply_mask(&mut words, &SEED, true, modulus);
            assert_eq!(words, original);
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_mask_and_different_seeds_different_masks() {
        for modulus in [Modulus::Z64, Modulus::Z32] {
            assert_eq!(masked(100, &SEED, modulus), masked(100, &SEED, modulus));
            let mut other = SEED;
            other[31] ^= 1;
            let (a, b) = (masked(100, &SEED, modulus), masked(100, &other, modulus));
            assert!(a.iter().zip(&b).all(|(x, y)| x != y), "{modulus}");
        }
    }

    #[test]
    fn z32_masks_stay_below_two_to_the_32() {
        let mut words = vec![u64::from(u32::MAX); 5000];
        apply_mask(&mut words, &SEED, false, Modulus::Z32);
        assert!(words.iter().all(|&w| w <= u64::from(u32::MAX)));
        let mut words = vec![0; 5000];
        apply_mask(&mut words, &SEED, true, Modulus::Z32);
        assert!(words.iter().all(|&w| w <= u64::from(u32::MAX)));
        // About half of the words of -mask from 0 use the top bit, none beyond it.
        let high = words.iter().filter(|&&w| w >= 1 << 31).count();
        assert!((2000..3000).contains(&high), "{high}");
    }

    #[test]
    fn a_long_mask_is_not_periodic() {
        let len = 1 << 16;
        for modulus in [Modulus::Z64, Modulus::Z32] {
            let mask = masked(len, &SEED, modulus);
            for period in 1..len / 2 {
                assert!(
                    (0..len - period).any(|i| mask[i] != mask[i + period]),
                    "{modulus}: period {period}"
                );
            }
        }
        // In Z_2^64, 2^16 random words are distinct but with probability about 2^-33.
        let words: HashSet<u64> = masked(len, &SEED, Modulus::Z64).into_iter().collect();
        assert_eq!(words.len(), len);
    }

    #[test]
    fn an_empty_vector_is_left_alone() {
        let mut words: Vec<u64> = vec![];
        apply_mask(&mut words, &SEED, false, Modulus::Z64);
        assert!(words.is_empty());
        keystream(&mut [], &SEED);
    }

    #[test]
    fn pairwise_masks_cancel_in_the_sum_of_encodings() {
        for modulus in [Modulus::Z32, Modulus::Z64] {
            let code = FixedPoint::new(
                modulus,
                vec![Segment {
                    name: "w".to_string(),
                    len: 3000,
                    bound: 10.0,
                    integer: false,
                }],
                20,
                3,
            )
            .unwrap();
            let inputs: Vec<Vec<f64>> = (0..3)
                .map(|p| {
                    (0..3000)
                        .map(|i| ((i * 7 + p * 13) % 200) as f64 / 10.0 - 10.0)
                        .collect()
                })
                .collect();
            // Participant p adds the mask it shares with q > p and subtracts that with q < p.
            let seed = |p: usize, q: usize| [(p.min(q) * 3 + p.max(q)) as u8; 32];
            let mut sum = vec![0u64; 3000];
            for (p, values) in inputs.iter().enumerate() {
                let mut words = code.encode(values).unwrap().words;
                for q in (0..3).filter(|&q| q != p) {
                    apply_mask(&mut words, &seed(p, q), q < p, modulus);
                }
                for (s, w) in sum.iter_mut().zip(&words) {
                    *s = s.wrapping_add(*w) & modulus.mask();
                }
            }
            let decoded = code.decode(&sum, 3).unwrap();
            for (i, d) in decoded.iter().enumerate() {
                let plain: f64 = inputs.iter().map(|v| v[i]).sum();
                assert!(
                    (d - plain).abs() <= 3.0 * 2f64.powi(-21) + 1e-12,
                    "{modulus} {i}: {d} vs {plain}"
                );
            }
        }
    }

    fn blindings(len: usize, seed: &[u8; 32]) -> Vec<Scalar> {
        let mut acc = vec![Scalar::ZERO; len];
        add_blindings(&mut acc, seed, false);
        acc
    }

    #[test]
    fn blindings_are_wide_reductions_of_the_keystream_of_a_derived_key() {
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(None, &SEED)
            .expand(b"accord.secagg.v1 commitment blinding", &mut key)
            .unwrap();
        // Several chunks and a partial one.
        let len = 2 * CHUNK_BYTES / BLINDING_BYTES + 3;
        let mut stream = vec![0u8; len * BLINDING_BYTES];
        keystream(&mut stream, &key);
        let expected: Vec<Scalar> = stream
            .chunks_exact(64)
            .map(|b| Scalar::from_bytes_mod_order_wide(b.try_into().unwrap()))
            .collect();
        assert_eq!(blindings(len, &SEED), expected);
        // Never the mask's keystream bytes.
        let mut mask_stream = vec![0u8; 64];
        keystream(&mut mask_stream, &SEED);
        assert_ne!(
            expected[0],
            Scalar::from_bytes_mod_order_wide(mask_stream.as_slice().try_into().unwrap())
        );
    }

    #[test]
    fn blindings_add_subtract_and_cancel_like_masks() {
        let mut other = SEED;
        other[0] ^= 1;
        let (a, b) = (blindings(300, &SEED), blindings(300, &other));
        assert!(a.iter().zip(&b).all(|(x, y)| x != y));
        assert_eq!(blindings(100, &SEED), a[..100]);
        // p adds the pairwise blindings, q subtracts them: their sum is the self blindings'.
        let (mut p, mut q) = (vec![Scalar::ONE; 300], vec![Scalar::ZERO; 300]);
        add_blindings(&mut p, &SEED, false);
        add_blindings(&mut q, &SEED, true);
        add_blindings(&mut q, &other, false);
        let sum: Vec<Scalar> = p.iter().zip(&q).map(|(x, y)| x + y).collect();
        let expected: Vec<Scalar> = b.iter().map(|x| x + Scalar::ONE).collect();
        assert_eq!(sum, expected);
    }

    proptest! {
        #[test]
        fn adding_then_subtracting_restores_any_words(
            modulus in modulus(),
            seed in any::<[u8; 32]>(),
            words in proptest::collection::vec(any::<u64>(), 0..5000),
        ) {
            let original: Vec<u64> = words.iter().map(|w| w & modulus.mask()).collect();
            let mut masked_words = original.clone();
            apply_mask(&mut masked_words, &seed, false, modulus);
            prop_assert!(masked_words.iter().all(|&w| w <= modulus.mask()));
            apply_mask(&mut masked_words, &seed, true, modulus);
            prop_assert_eq!(masked_words, original);
        }

        #[test]
        fn masks_add_up_like_their_words(
            modulus in modulus(),
            first in any::<[u8; 32]>(),
            second in any::<[u8; 32]>(),
            len in 0..3000usize,
        ) {
            // mask(a) + mask(b), applied one after the other, is the word-wise sum mod 2^bits.
            let (a, b) = (masked(len, &first, modulus), masked(len, &second, modulus));
            let mut both = vec![0u64; len];
            apply_mask(&mut both, &first, false, modulus);
            apply_mask(&mut both, &second, false, modulus);
            let expected: Vec<u64> = a.iter().zip(&b).map(|(x, y)| x.wrapping_add(*y) & modulus.mask()).collect();
            prop_assert_eq!(both, expected);
        }

        #[test]
        fn z32_masks_are_the_low_halves_of_pairs_of_keystream_words(
            seed in any::<[u8; 32]>(),
            len in 0..3000usize,
        ) {
            let z64 = masked(len.div_ceil(2), &seed, Modulus::Z64);
            let z32 = masked(len, &seed, Modulus::Z32);
            for (i, w) in z32.iter().enumerate() {
                let expected = if i % 2 == 0 { z64[i / 2] & 0xffff_ffff } else { z64[i / 2] >> 32 };
                prop_assert_eq!(*w, expected, "word {}", i);
            }
        }
    }
}

//! Homomorphic encryption of fairness statistics, on tfhe-rs.
//!
//! The auditor alone holds the tfhe client (decryption) key. Participants encrypt their per-group
//! counts under the auditor's compact public key, with tfhe's zero-knowledge proof that every
//! block is a well-formed encryption of a 2-bit digit (so the coordinator can add without
//! re-encrypting or bootstrapping). Before encrypting, each participant adds its secure-
//! aggregation masks modulo 2^`value_bits` ([`crate::secagg`]), so one participant's ciphertext
//! decrypts to uniform noise even for the auditor. The coordinator, holding only the server key,
//! verifies every proof, sums the ciphertexts, removes the masks with the unmask stage's
//! correction, and applies the disclosure policy (small groups zeroed under encryption) before
//! handing the aggregate to the auditor.
//!
//! Parameters: tfhe's default `PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128` for computation
//! (128-bit security, failure probability ≤ 2^-128) with tfhe's dedicated compact public-key
//! parameters for proven encryption (`PARAM_PKE_…`, the ones tfhe supports zero-knowledge proofs
//! for) and its casting keyswitch; the coordinator casts each block to the computation key with
//! one bootstrap, which also checks nothing lies outside the proven range. Keys cross trust
//! boundaries through tfhe's versioned, size-limited safe serialization; ciphertexts through
//! size-limited bincode and tfhe's conformance checks.

pub mod handoff;
pub mod inputs;
pub mod keys;
pub mod transcript;

pub use inputs::{EncryptedAggregate, EncryptedInputs, FairnessPolicy};
pub use keys::{AuditorKeys, PublicMaterial, ServerMaterial};

use sha2::{Digest, Sha256};
use tfhe::shortint::parameters::{
    ClassicPBSParameters, CompactPublicKeyEncryptionParameters,
    PARAM_KEYSWITCH_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128,
    PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128,
    PARAM_PKE_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128, ShortintKeySwitchingParameters,
};

/// The tfhe parameter set for computation.
pub const PARAMETERS: ClassicPBSParameters = PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128;
/// The compact public-key encryption parameters (with zero-knowledge proof support).
pub const PKE_PARAMETERS: CompactPublicKeyEncryptionParameters =
    PARAM_PKE_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128;
/// The keyswitch from the compact public key's secret to the computation key.
pub const CASTING_PARAMETERS: ShortintKeySwitchingParameters =
    PARAM_KEYSWITCH_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128;

/// Bits per radix block (the message modulus is 4).
pub const BLOCK_BITS: u32 = 2;

/// Blocks one proof covers; a longer list carries several proofs.
pub const PROOF_CAPACITY: usize = 512;

/// Deserialization limit for anything tfhe reads from another party (1 GiB).
pub const SIZE_LIMIT: u64 = 1 << 30;

/// Why keys, ciphertexts or an aggregate were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HeError {
    /// A key file or directory that cannot be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What the operating system said.
        reason: String,
    },
    /// Another party's file, unreadable or over its size limit.
    #[error(transparent)]
    Read(#[from] crate::file::ReadError),
    /// Bytes that do not decode as what they should be (a bundle, key, ciphertext list or
    /// aggregate).
    #[error("{what}: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// Why it does not decode.
        reason: String,
    },
    /// A bundle or aggregate whose auditor signature does not verify with the pinned key.
    #[error("{what}: the auditor's signature does not verify with the pinned key {key}")]
    BadSignature {
        /// What was signed.
        what: String,
        /// The pinned verifying key (hex).
        key: String,
    },
    /// Material made for other tfhe parameters than this party uses.
    #[error(
        "{what}: made for tfhe parameters {got}, but this party uses {expected} ({})",
        describe_parameters()
    )]
    Parameters {
        /// The material.
        what: String,
        /// SHA-256 (hex) of the parameters it was made for.
        got: String,
        /// SHA-256 (hex) of this party's parameters ([`parameters_sha256`]).
        expected: String,
    },
    /// A value width (given) that is odd, below 2 or above 32.
    #[error("value_bits must be even and between 2 and 32, got {0}")]
    ValueBits(u32),
    /// A thread pool for the homomorphic computation that cannot be built.
    #[error("cannot compute on {threads} threads: {reason}")]
    Threads {
        /// The threads asked for.
        threads: usize,
        /// Why the pool cannot be built.
        reason: String,
    },
    /// tfhe refused to make keys, encrypt or prove (its message).
    #[error("encryption failed: {0}")]
    Encryption(String),
}

/// The parameter set in words, as reports state it.
pub fn describe_parameters() -> String {
    let p = PARAMETERS;
    format!(
        "tfhe 1.8 PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128 (lwe_dimension {}, glwe_dimension {}, polynomial_size {}, message_modulus {}, carry_modulus {}); compact public key PARAM_PKE_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128 (encryption_lwe_dimension {}, zk scheme {:?}) cast by PARAM_KEYSWITCH_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128; packed proven lists, CompactPkeCrs of {} messages per proof",
        p.lwe_dimension.0,
        p.glwe_dimension.0,
        p.polynomial_size.0,
        p.message_modulus.0,
        p.carry_modulus.0,
        PKE_PARAMETERS.encryption_lwe_dimension.0,
        PKE_PARAMETERS.zk_scheme,
        PROOF_CAPACITY
    )
}

/// SHA-256 (hex) of [`describe_parameters`]: keys and reports name the parameters by it.
pub fn parameters_sha256() -> String {
    hex::encode(Sha256::digest(describe_parameters().as_bytes()))
}

/// Decompresses a server key, converting its bootstrapping key to the Fourier domain under
/// a fixed FFT algorithm (see [`fix_fft_plan`]).
fn decompress(key: &tfhe::CompressedServerKey) -> tfhe::ServerKey {
    fix_fft_plan();
    key.decompress()
}

/// Fixes tfhe's FFT algorithm for the computation's polynomial size before the first FFT of
/// this process (every FFT follows a server key's decompression). Left alone, tfhe times its
/// algorithms for 10 ms and keeps the fastest, per process; they round differently, so the same
/// bootstrap gives other (equally correct) ciphertext bytes in another process, and a replay
/// could not reproduce the coordinator's aggregate. Dif4 over the whole size is the algorithm
/// tfhe's own `experimental-force_fft_algo_dif4` feature fixes.
fn fix_fft_plan() {
    use tfhe::core_crypto::fft_impl::fft64::math::fft::{
        FftAlgo, Method, Plan, setup_custom_fft_plan,
    };
    static FIXED: std::sync::Once = std::sync::Once::new();
    FIXED.call_once(|| {
        let n = PARAMETERS.polynomial_size.to_fourier_polynomial_size().0;
        setup_custom_fft_plan(Plan::new(
            n,
            Method::UserProvided {
                base_algo: FftAlgo::Dif4,
                base_n: n,
            },
        ));
    });
}

/// Checks a `value_bits` setting: counts live in Z_2^bits, whole radix blocks.
pub fn check_value_bits(bits: u32) -> Result<u32, HeError> {
    if bits == 0 || bits > 32 || !bits.is_multiple_of(BLOCK_BITS) {
        return Err(HeError::ValueBits(bits));
    }
    Ok(bits)
}

/// Writes a tfhe object with versioning and a size limit.
fn serialize<T>(what: &'static str, object: &T) -> Result<Vec<u8>, HeError>
where
    T: serde::Serialize + tfhe::Versionize + tfhe::named::Named,
{
    let mut bytes = Vec::new();
    tfhe::safe_serialization::safe_serialize(object, &mut bytes, SIZE_LIMIT).map_err(|e| {
        HeError::Malformed {
            what,
            reason: e.to_string(),
        }
    })?;
    Ok(bytes)
}

/// The bincode options for tfhe objects without a safe-serialization name (integer-level
/// ciphertexts and lists): fixed-width integers, a size limit, no trailing bytes.
fn bincode_options() -> impl bincode::Options {
    use bincode::Options as _;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(SIZE_LIMIT)
        .reject_trailing_bytes()
}

/// Writes an integer-level tfhe object.
fn encode<T: serde::Serialize>(what: &'static str, object: &T) -> Result<Vec<u8>, HeError> {
    use bincode::Options as _;
    bincode_options()
        .serialize(object)
        .map_err(|e| HeError::Malformed {
            what,
            reason: e.to_string(),
        })
}

/// Reads an integer-level tfhe object written by [`encode`], refusing oversized bytes.
fn decode<T: serde::de::DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, HeError> {
    use bincode::Options as _;
    bincode_options()
        .deserialize(bytes)
        .map_err(|e| HeError::Malformed {
            what,
            reason: e.to_string(),
        })
}

/// Reads a tfhe object written by [`serialize`], refusing oversized or mistyped bytes.
fn deserialize<T>(what: &'static str, bytes: &[u8]) -> Result<T, HeError>
where
    T: serde::de::DeserializeOwned + tfhe::Unversionize + tfhe::named::Named,
{
    tfhe::safe_serialization::safe_deserialize(bytes, SIZE_LIMIT)
        .map_err(|reason| HeError::Malformed { what, reason })
}

/// [`deserialize`] for an object another party made: it must also pass tfhe's conformance check
/// against `parameters` (sizes and parameters of every part), as tfhe advises for keys received
/// from others, so a malformed key is refused here rather than failing an assertion later.
fn deserialize_conformant<T>(
    what: &'static str,
    bytes: &[u8],
    parameters: &T::ParameterSet,
) -> Result<T, HeError>
where
    T: serde::de::DeserializeOwned
        + tfhe::Unversionize
        + tfhe::named::Named
        + tfhe::conformance::ParameterSetConformant,
{
    tfhe::safe_serialization::safe_deserialize_conformant(bytes, SIZE_LIMIT, parameters)
        .map_err(|reason| HeError::Malformed { what, reason })
}

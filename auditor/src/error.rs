//! Why the auditor refused to act: one enum per concern, each variant naming what and where.
//!
//! A variant's message is what this layer knows (the file, the participant, the field); the
//! cause is its [`std::error::Error::source`], so `{:#}` through `anyhow` (the CLI) prints
//! "what: why", and a caller can match on the concern without parsing text.

use accord_crypto::file::ReadError;
use accord_crypto::he::HeError;
use accord_crypto::secagg::validity::ValidityError;
use accord_proto::fairness::FairnessLayoutError;
use std::path::PathBuf;

/// Why `accord auditor keygen` or `accord auditor report` failed. Nothing is written before the
/// coordinator's files, the keys and the aggregate have all been checked.
#[derive(Debug, thiserror::Error)]
pub enum AuditorError {
    /// A file the coordinator handed over (transcript, encrypted aggregate) cannot be read or
    /// is larger than its kind may be.
    #[error(transparent)]
    CoordinatorFile(#[from] ReadError),
    /// The transcript file is not a fairness transcript (JSON of the wrong shape).
    #[error("{path}: not a fairness transcript")]
    TranscriptJson {
        /// The transcript file.
        path: PathBuf,
        /// What the JSON parser found.
        #[source]
        source: serde_json::Error,
    },
    /// The transcript or the aggregate does not hold together; nothing was decrypted.
    #[error(transparent)]
    Transcript(#[from] TranscriptError),
    /// The auditor's keys cannot be made, written or loaded.
    #[error(transparent)]
    Keys(HeError),
    /// The encrypted aggregate is malformed (it does not decode, or not for these keys).
    #[error(transparent)]
    Aggregate(HeError),
    /// The decrypted counts are not the sum of what the participants proved: no report is
    /// written.
    #[error(
        "the decrypted aggregate is not the sum of the participants' proven counts; no report is written"
    )]
    ProvenCounts(#[source] ValidityError),
    /// The report or its folder cannot be written.
    #[error("{path}: cannot write the fairness report")]
    WriteReport {
        /// The file or folder.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The HTML page cannot be written.
    #[error("{path}: cannot write the fairness report's page")]
    WriteHtml {
        /// The page's path.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
}

/// How a transcript handed to the auditor fails to hold together with itself or its aggregate.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    /// Another transcript format.
    #[error("transcript format '{found}', expected '{expected}'")]
    Format {
        /// The format the transcript states.
        found: String,
        /// The format this auditor reads.
        expected: &'static str,
    },
    /// The entries do not hash to the stated head.
    #[error("the transcript's hash chain does not lead to its stated head")]
    Head,
    /// The aggregate file's SHA-256 is not the transcript's last entry.
    #[error("the aggregate file is not the one the transcript's last entry records")]
    AggregateNotLast,
    /// A participant's commitment does not verify.
    #[error("commitment of '{participant}'")]
    Commitment {
        /// The participant named in the commitment.
        participant: String,
        /// Why it does not verify.
        #[source]
        source: CommitmentError,
    },
    /// A participant's commitment is not an entry of the chain.
    #[error("the commitment of '{participant}' is not in the transcript")]
    CommitmentNotInTranscript {
        /// The participant named in the commitment.
        participant: String,
    },
    /// The aggregate is for another federation or round than the transcript.
    #[error(
        "the aggregate is for federation '{aggregate_federation}' round {aggregate_round}, the transcript for '{transcript_federation}' round {transcript_round}"
    )]
    OtherRound {
        /// The aggregate's federation.
        aggregate_federation: String,
        /// The aggregate's round.
        aggregate_round: u32,
        /// The transcript's federation.
        transcript_federation: String,
        /// The transcript's round.
        transcript_round: u32,
    },
    /// The transcript's groups give no layout.
    #[error(transparent)]
    Groups(#[from] FairnessLayoutError),
    /// The aggregate's size does not fit the groups.
    #[error(
        "the aggregate holds {values} values and {flags} flags; the groups need {expected_values} and {expected_flags}"
    )]
    Size {
        /// Values in the aggregate.
        values: usize,
        /// Suppression flags in the aggregate.
        flags: usize,
        /// Values the layout needs.
        expected_values: usize,
        /// Flags the layout needs (one per group).
        expected_flags: usize,
    },
}

/// Why a participant's signed commitment to its ciphertext does not verify.
#[derive(Debug, thiserror::Error)]
pub enum CommitmentError {
    /// `certificate_der` is not hex.
    #[error("certificate is not hex")]
    CertificateHex(#[source] hex::FromHexError),
    /// The certificate holds no Ed25519 key.
    #[error(transparent)]
    Certificate(#[from] accord_crypto::pki::PkiError),
    /// The certificate's key is not a valid Ed25519 point.
    #[error(transparent)]
    Key(#[from] ed25519_dalek::SignatureError),
    /// `ciphertext_sha256` is not 32 bytes of hex.
    #[error("ciphertext_sha256 is not 32 bytes of hex")]
    Digest,
    /// `signature` is not hex.
    #[error("signature is not hex")]
    SignatureHex(#[source] hex::FromHexError),
    /// The signature does not verify.
    #[error("the signature does not verify with the certificate's key")]
    BadSignature,
}

/// An error with its causes, "what: why: why", as `anyhow`'s `{:#}` prints it: for a check's
/// detail, which has no error chain of its own.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

//! Accord's wire protocol and the data layouts every party shares: what may cross a party's
//! boundary, and what each position of it means.
//!
//! Wire types live here and only here, so every party agrees on one definition and a reviewer
//! can check in one place that no message can carry a customer record. The crate has three
//! layers:
//!
//! 1. **Messages** ([`v1`]): the `accord.v1` protobuf messages and the `Federation` gRPC
//!    service, generated at build time from `proto/accord/v1/federation.proto` by a pure-Rust
//!    compiler (protox), so no `protoc` is needed. Anything decoded from a peer is first
//!    limited to [`MAX_MESSAGE_BYTES`].
//! 2. **Layouts** of the flat vectors participants upload, each position a sum over records,
//!    never a record: [`layout`] (standardization sums, model, evaluation counts), [`phase`]
//!    (a phase's bounds and the relations its validity proof shows), [`standardization`]
//!    (exact integer sums for means and variances), [`fairness`] (per-group counts for the
//!    auditor) and [`mitigation`] (fairness-aware training and post-processing statistics).
//!    Participant, coordinator, simulator and auditor all build and read vectors here, so they
//!    cannot disagree about them.
//! 3. **Checks and transport**: [`schema`] checks a federation definition on both sides of the
//!    wire (a coordinator may deviate); [`transport`] is the gRPC channel over mutual TLS with a
//!    meter counting the bytes each party sends and receives.
//!
//! # Non-goals
//!
//! - **Cryptography.** Certificates, TLS configurations, masking and encryption are in
//!   `accord-crypto`; this crate only carries their bytes.
//! - **Behaviour.** No party's logic lives here: the coordinator, participant and simulator
//!   crates decide what to send; this crate says what it looks like.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// The generated `accord.v1` package.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("accord.v1");
}

pub mod artefact;
pub mod fairness;
pub mod layout;
pub mod mitigation;
pub mod phase;
pub mod schema;
pub mod scheme;
pub mod sections;
pub mod standardization;
pub mod transport;

/// Size limits for anything decoded from the wire: a message larger than this is refused
/// before it is decoded. Generous for a model of thousands of parameters, small enough
/// that a hostile peer cannot make a party allocate gigabytes.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

impl v1::Header {
    /// A header outside any session (registration, or a caller that is not a participant).
    pub fn new(federation_id: &str, round: u32) -> Self {
        Self {
            federation_id: federation_id.to_owned(),
            round,
            session: 0,
        }
    }

    /// The same header within the session a registration returned.
    pub fn in_session(self, session: u64) -> Self {
        Self { session, ..self }
    }
}

impl v1::Phase {
    /// The phase's name as users see it in logs and errors.
    pub fn label(self) -> &'static str {
        match self {
            v1::Phase::Unspecified => "none",
            v1::Phase::Standardize => "standardize",
            v1::Phase::Fit => "fit",
            v1::Phase::Evaluate => "evaluate",
            v1::Phase::Finished => "finished",
            v1::Phase::Fairness => "fairness",
            v1::Phase::EvaluateThresholds => "evaluate-thresholds",
        }
    }
}

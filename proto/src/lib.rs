//! Accord's wire protocol: the `accord.v1` messages and the `Federation` gRPC service.
//!
//! Wire types live here and only here, so every party agrees on one definition and a reviewer
//! can check in one place that no message can carry a customer record. Messages are generated
//! at build time from `proto/accord/v1/federation.proto` by a pure-Rust compiler (protox).
#![forbid(unsafe_code)]

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

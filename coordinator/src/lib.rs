//! # accord-coordinator
//!
//! The coordinator of an Accord federation: the service that defines the federation, admits its
//! members, and runs its rounds, learning only the sums the aggregation releases.
//!
//! ## What it does
//!
//! - **Defines the federation** ([`CoordinatorConfig`], [`definition`]): the schema, the
//!   training, evaluation, secure-aggregation, mitigation and fairness parameters, checked at
//!   start (a setting that cannot work is refused naming its key), signed into the one
//!   definition every participant receives and may pin by its SHA-256.
//! - **Admits** ([`run`]): mutual TLS with certificates chaining to the consortium CA and not
//!   revoked, bounded handshakes and connections, one session per registration.
//! - **Runs the round plan** ([`RoundPlan`]): configure each phase, aggregate its sum, without
//!   I/O; the driver runs each phase over gRPC stage by stage, and the simulator runs the same
//!   plan in process. The sum comes from the [`aggregation`] seam: secure aggregation (the
//!   coordinator learns only the sum and names deviating participants) or, with every
//!   participant's consent, plain sums.
//! - **Writes** `rounds.csv` ([`RoundRecord`], [`write_rounds_csv`]) and `model.json`
//!   (`accord_proto::artefact::ModelArtefact`), and after the last round runs the encrypted
//!   fairness phase, handing the auditor only ciphertexts ([`FairnessAudit`]).
//!
//! ## Design
//!
//! The round is written once, in [`RoundPlan`], without I/O; the coordinator's own state
//! (registrations, sessions, the open phase) lives behind one lock in the federation, whose RPC
//! handlers and driver are separate files. Every refusal is a typed [`Refusal`]; every failure a
//! typed error ([`CoordinatorError`], [`FederationError`], [`PlanError`], [`AggregationError`],
//! [`FairnessError`]).
//!
//! ## Non-goals
//!
//! - Holding any decryption key or any participant's values: it computes on masked vectors and
//!   ciphertexts only (docs/threat-model.md).
//! - Surviving its own crash: the federation's state lives in memory (a datastore is future work).
//! - Choosing participants' data or training locally: that is the participant's crate.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod aggregation;
mod artefact;
mod config;
mod fairness;
mod federation;
mod listener;
mod metrics;
mod mitigation;
mod plan;
mod server;
mod service;

pub use aggregation::AggregationError;
pub use artefact::{ArtefactError, ROUNDS_HEADER, RoundRecord, csv_number, write_rounds_csv};
pub use config::{
    Admissible, ConfigError, ConnectionsSection, CoordinatorConfig, FairnessSection,
    FederationSection, Invalid, SecureAggregationSection, SettingError, TlsFiles, check_evaluation,
    check_training,
};
pub use fairness::{FairnessAudit, FairnessError};
pub use federation::{Federation, FederationError, Outcome, Refusal, definition};
pub use listener::{AuthenticatedConnection, Peer};
pub use metrics::{quality, roc_auc};
pub use mitigation::{
    MitigationConfigError, MitigationRun, PostprocessingSection, mitigation_definition,
};
pub use plan::{Evaluation, PhaseAbort, PhaseRequest, PhaseResult, PlanError, RoundPlan};
pub use server::{CoordinatorError, run};
pub use service::FederationService;

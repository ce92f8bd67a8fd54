//! # accord-participant
//!
//! A partner organization's node: it runs next to the organization's customer-service records
//! and takes part in the federation's rounds, sending only sums through the federation's
//! aggregation scheme. No record, identifier or single value leaves this process.
//!
//! ## What it does
//!
//! - **Reads its records** ([`data`]): the CSV export mapped onto the schema the coordinator
//!   sent, every refused cell named, and no more rows than the federation's sums are bounded for.
//! - **Checks the federation** before reading any data: the definition's SHA-256 against the one
//!   pinned, the secure-aggregation threshold against its own floor, the auditor against the one
//!   it trusts ([`ParticipantConfig`]'s `[requirements]` and `[fairness]`).
//! - **Contributes to each phase** ([`Contributor`], the participant's side of the round plan,
//!   without I/O): standardization sums, a model trained locally ([`model`], fairness-aware with
//!   [`mitigation`]) and clipped, evaluation counts, and the fairness audit's per-group counts.
//! - **Protects every upload** ([`run`]): secure aggregation with the federation's neighbours,
//!   refusing (and naming) a peer or coordinator that deviates, never exiting for it; the
//!   fairness counts also encrypted under the auditor's key.
//!
//! ## Design
//!
//! The node is a transport around [`Contributor`]: the simulator drives the same contributor in
//! process, so a simulated participant computes, bounds and clips exactly as a real one. Errors
//! are typed: [`ParticipantError`], [`ContributionError`], [`AuditError`].
//!
//! Dropouts are a test's or a simulation's doing, never a configuration's: [`run_with`] takes
//! [`Interruptions`], asked before each secure-aggregation message whether to send it, withhold
//! it, exit or hang; [`run`] (what `accord participant` runs) has none, and `participant.toml`
//! refuses a `faults` key. The fault plans themselves live in `accord-simulations`.
//!
//! ## Non-goals
//!
//! - Trusting the coordinator: what it relays is checked (signatures, the survivor set, shares
//!   against commitments) and a failed check makes this participant sit the phase out.
//! - Reading other formats than CSV exports (Parquet and databases are future work).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod audit;
mod config;
mod contribution;
pub mod data;
mod interruptions;
pub mod mitigation;
pub mod model;
mod node;
mod rpc;

pub use audit::AuditError;
pub use config::{
    ConfigError, DataSource, FairnessSection, ParticipantConfig, Requirements, SettingError,
    TlsFiles,
};
pub use contribution::{ContributionError, Contributor};
pub use interruptions::{Interruption, Interruptions};
pub use node::{Outcome, ParticipantError, run, run_with};
pub use rpc::describe_status;

//! Accord's participant node.
//!
//! A partner organization runs this next to its customer-service records. It maps its CSV onto
//! the federation's schema ([`data`]), trains the satisfaction model locally ([`model`], fairness-aware with [`mitigation`]) and
//! follows the coordinator's rounds ([`node`]), sending only sums through the federation's
//! aggregation scheme: no record, identifier or single value leaves this process.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod audit;
pub mod config;
pub mod contribution;
pub mod data;
pub mod mitigation;
pub mod model;
pub mod node;
mod rpc;

pub use audit::AuditError;
pub use config::ParticipantConfig;
pub use contribution::{ContributionError, Contributor};
pub use node::{Outcome, ParticipantError, run};
pub use rpc::describe_status;

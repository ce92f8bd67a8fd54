//! Accord's coordinator.
//!
//! It defines the federation (schema and parameters, from `coordinator.toml`), admits only
//! clients whose certificates chain to the consortium CA ([`server`]), runs the rounds
//! ([`federation`]) and learns only the sums the aggregation scheme releases ([`aggregation`]):
//! standardization sums, the FedAvg model and evaluation counts ([`metrics`]). It writes the
//! trained model and a per-round history ([`artefact`]). A federation may train for fairness and
//! post-process its decisions per group ([`mitigation`]), from sums as well.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod aggregation;
pub mod artefact;
pub mod config;
pub mod fairness;
pub mod federation;
pub mod listener;
pub mod metrics;
pub mod mitigation;
pub mod plan;
pub mod server;
pub mod service;

pub use config::CoordinatorConfig;
pub use plan::{PhaseRequest, PhaseResult, PlanError, RoundPlan};
pub use server::{CoordinatorError, run};

//! Accord for researchers: synthetic data and reproducible experiments.
//!
//! Real customer-service records never leave their owners, so everything that has to be
//! checked against a *known* answer — end-to-end tests, demos, benchmarks of the federated
//! analyses — runs on data from this crate instead. [`synth`] generates deterministic,
//! non-IID customer-service records for several participants from a documented
//! ground-truth satisfaction model, optionally with planted unfairness and malformed cells.
//! [`bench`](mod@bench) times the real secure-aggregation protocol and the encrypted fairness
//! path on this machine (`accord bench`). [`faults`] plans a participant node's dropouts
//! (withhold, exit, hold at a given message) for the gRPC simulations and the end-to-end tests.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod faults;
pub mod local;
pub mod simulate;
pub mod synth;

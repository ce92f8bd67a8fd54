//! Accord's end-to-end tests, one binary with a module per concern (as Janus keeps its
//! integration tests): one link step instead of seven, and one place to see what is covered.
//! Every module shares the federation support in `tests/src` (`accord_tests`).
//!
//! Run one concern with its module path, e.g. `cargo test --workspace --test e2e federation::`.
//! The tests of every module run as threads of this one process, so none may set anything
//! process-global: logs are captured with a thread-scoped subscriber
//! (`tracing::subscriber::set_default`), never a global one, and no test changes environment
//! variables or the current directory.

mod admission;
mod csv_input;
mod dropouts;
mod fairness;
mod federation;
mod malicious_coordinator;
mod malicious_participants;

//! The `accord` command-line tool: thin commands over the role libraries (`accord-coordinator`,
//! `accord-participant`, `accord-auditor`, `accord-crypto`, `accord-simulations`) and the demo
//! that starts a whole federation as separate processes on this machine.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod data;
pub mod demo;
pub mod simulate;

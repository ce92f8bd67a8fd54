//! Accord's cryptography.
//!
//! Every Accord node holds a certificate issued by its consortium's own certificate
//! authority, and every connection between nodes is mutually authenticated TLS that
//! trusts that CA alone. This crate provides the pieces for that:
//!
//! - [`pki`]: the consortium CA (create, load, issue, revoke) and reading an
//!   [`pki::Identity`] (name and role) out of a certificate;
//! - [`tls`]: rustls configurations for the coordinator (server) and the participants
//!   and auditors (clients), with handshake failures explained in one clear line;
//! - [`hash`]: content hashes;
//! - [`secagg`]: secure aggregation (double masking over the SecAgg+ graph, dropout recovery).
#![forbid(unsafe_code)]

pub mod hash;
pub mod he;
pub mod pki;
pub mod secagg;
pub mod tls;

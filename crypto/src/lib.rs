//! Accord's cryptography.
//!
//! Every Accord node holds a certificate issued by its consortium's own certificate
//! authority, and every connection between nodes is mutually authenticated TLS that
//! trusts that CA alone. This crate provides the pieces for that:
//!
//! - [`pki`]: the consortium CA (create, load, issue, revoke) and reading an
//!   [`pki::Identity`] (name and role) out of a certificate;
//! - [`crl`]: the consortium's certificate revocation list, checked against the CA and reread
//!   when its file changes;
//! - [`tls`]: rustls configurations for the coordinator (server) and the participants
//!   and auditors (clients), with handshake failures explained in one clear line;
//! - [`hash`]: content hashes;
//! - [`pem`]: reading PEM files, with errors that name the file;
//! - [`file`]: reading files another party wrote, under a size limit;
//! - [`secagg`]: secure aggregation (double masking over the SecAgg+ graph, dropout recovery).
#![forbid(unsafe_code)]

pub mod crl;
pub mod file;
pub mod hash;
pub mod he;
pub mod pem;
pub mod pki;
pub mod secagg;
pub mod tls;

//! Accord's cryptography: who is a member, how members talk, and how their numbers are summed
//! without anyone seeing one.
//!
//! Every other Accord crate takes its cryptography from here, so a reviewer checks one crate
//! for how keys are made, what is signed, what a peer's bytes may do and which paper or
//! standard each part follows. The parts are layers; each is usable alone and the ones above
//! use the ones below:
//!
//! 1. **Identity** ([`pki`], [`crl`]): the consortium's own certificate authority. Members make
//!    their Ed25519 keys on their own machines and send PKCS#10 requests (RFC 2986); a
//!    certificate binds the key to a name and a [`pki::Role`]. Revocation follows RFC 5280: a
//!    CRL counts only if the CA signed it, and a running node rereads it when its file changes.
//! 2. **Transport** ([`tls`]): mutual TLS 1.3 on rustls that trusts the consortium CA alone,
//!    checks revocation at both ends and explains every refused handshake in one log line.
//! 3. **Updates** ([`secagg`]): secure aggregation, Bonawitz et al. (CCS 2017) double masking
//!    over the SecAgg+ neighbour graph (Bell et al., CCS 2020) in its malicious-server form,
//!    with proofs that inputs lie within their bounds. I/O-free state machines: the nodes drive
//!    them over gRPC, tests and simulations in-process.
//! 4. **Statistics** ([`he`]): per-group fairness counts encrypted under the auditor's tfhe
//!    key with tfhe's proof of well-formed encryption, summed by the coordinator on
//!    ciphertexts, and the transcript that lets an auditor replay that sum.
//!
//! Small helpers shared by the layers: [`hash`] (content hashes of artefacts), [`pem`] (PEM
//! files with errors naming the file) and [`file`](mod@file) (reading another party's file under a size
//! limit).
//!
//! Peer input is never trusted: everything decoded from the wire or from another party's file
//! is size-limited before it is read and checked before it is used, and a malformed input is
//! an error naming the sender or the file, never a panic (`crypto/tests/malformed.rs`).
//!
//! # Non-goals
//!
//! - **New primitives.** X25519, HKDF, ChaCha20, ChaCha20-Poly1305, Ed25519, TLS and the
//!   homomorphic scheme come from well-kept crates (dalek, RustCrypto, rustls, tfhe-rs); this
//!   crate composes them.
//! - **Threshold decryption.** tfhe-rs has none and none is hand-rolled here: the auditor
//!   alone holds the decryption key and may only sign what it decrypted.
//! - **Differential privacy.** Noise and its accounting belong to the federation's round, not
//!   to this crate.
//! - **Networking.** Nothing here opens a socket; [`tls`] makes rustls configurations and the
//!   nodes own the connections.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod crl;
pub mod file;
pub mod hash;
pub mod he;
pub mod pem;
pub mod pki;
pub mod secagg;
pub mod tls;

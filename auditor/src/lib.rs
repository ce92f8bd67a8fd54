//! # accord-auditor
//!
//! The compliance auditor of an Accord federation: the one party that holds the tfhe client
//! (decryption) key, and the one whose signature vouches for the federation's fairness report.
//!
//! ## What it does
//!
//! - **Keys** ([`keygen`]): before the federation, the auditor makes its tfhe keys and its
//!   Ed25519 signing key on its own machine and writes the signed bundles to hand out: the
//!   compact public key for participants, the server key for the coordinator, and its verifying
//!   key, which everyone pins.
//! - **Report** ([`write_report`], [`build`]): after the fairness phase, from the files the
//!   coordinator wrote ([`accord_crypto::he::handoff`]), it checks the transcript's hash chain,
//!   every participant's signed commitment and the aggregate's place in the chain, decrypts the
//!   one consortium-wide aggregate, checks the decrypted counts against the sum of what the
//!   participants proved, computes the [`metrics`] and writes the signed `fairness-report.json`
//!   ([`FairnessReport`]) and its page for people, `fairness-report.html`.
//! - **Verify** ([`verify()`], [`conclusion`]): anyone checks a report against what they pin
//!   (the auditor's key, the consortium CA, the model file) and, with [`Recompute`], replays the
//!   coordinator's record of the phase to recompute the aggregate byte for byte. A check that
//!   lacks its anchor is NOT CHECKED, never PASS.
//!
//! ## Design
//!
//! The auditor depends on the wire formats (`accord-proto`, where model.json is defined too) and
//! the cryptography (`accord-crypto`, where the coordinator's hand-off files and their replay are
//! defined), never on the coordinator: what it reads from the coordinator is a contract, so a
//! change inside the coordinator cannot silently change what the auditor trusts. It decrypts
//! only the aggregate whose SHA-256 is the transcript's last entry, after checking everything
//! else, so a malformed or substituted file is named before the keys are even loaded. The report
//! signs a table of per-section digests, so a verifier names the field that was altered. Every
//! failure is a typed error ([`AuditorError`], [`TranscriptError`], [`CommitmentError`]) whose
//! message names the file, participant or field.
//!
//! ## Non-goals
//!
//! - Threshold decryption: tfhe-rs has none, and the auditor does not hand-roll one; the
//!   auditor is trusted to decrypt only the aggregate (see docs/threat-model.md).
//! - Seeing any participant's statistics: each ciphertext carries secure-aggregation masks, so
//!   only the sum decrypts to anything but noise.
//! - Running the federation or the fairness phase: that is the coordinator's and the
//!   participants' work; the encrypted path's cost is measured by `accord bench fairness`
//!   (`accord_simulations::bench::fairness`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod html;
pub mod metrics;
mod report;
mod verify;

pub use error::{AuditorError, CommitmentError, TranscriptError};
pub use report::{
    AggregateGroup, AggregateSection, AuditorSection, FairnessReport, MAX_REPORT_BYTES,
    ModelSection, ParametersSection, REPORT_FORMAT, Section, TranscriptSection, build,
    commitment_verifies, fairness_context, layout_of, sections, sections_digest,
};
pub use verify::{Against, Check, Recompute, Verdict, conclusion, verify};

use accord_crypto::file::{read_limited, read_text_limited};
use accord_crypto::he;
use accord_crypto::he::handoff::{AGGREGATE_FILE, TRANSCRIPT_FILE};
use accord_crypto::he::keys::{self, AuditorKeys};
use accord_crypto::he::transcript::{MAX_TRANSCRIPT_BYTES, RoundTranscript};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The signed report's file name.
pub const REPORT_JSON: &str = "fairness-report.json";
/// The report's page for people.
pub const REPORT_HTML: &str = "fairness-report.html";

/// `accord auditor keygen`: writes the auditor's keys and bundles into `dir` and returns what
/// to keep and what to hand to whom, in words, with the time it took.
///
/// # Errors
/// [`AuditorError::Keys`] when a key cannot be made or a file written.
pub fn keygen(dir: &Path) -> Result<String, AuditorError> {
    let started = Instant::now();
    let generated = AuditorKeys::generate_into(dir).map_err(AuditorError::Keys)?;
    Ok(format!(
        "auditor keys written to {dir} in {:.1} s\n  keep secret: {client}, {signing}\n  participants: {public} (SHA-256 {sha})\n  coordinator: {server}\n  everyone pins the auditor key {key} ({pubfile})",
        started.elapsed().as_secs_f64(),
        dir = dir.display(),
        client = keys::CLIENT_KEY_FILE,
        signing = keys::SIGNING_KEY_FILE,
        public = keys::PUBLIC_BUNDLE_FILE,
        sha = generated.public.bundle_sha256,
        server = keys::SERVER_BUNDLE_FILE,
        key = generated.keys.verifying_key_hex(),
        pubfile = keys::VERIFYING_KEY_FILE,
    ))
}

/// `accord auditor report`: from the coordinator's output folder `from` (its
/// [`TRANSCRIPT_FILE`] and [`AGGREGATE_FILE`]), with the keys in `keys_dir`, decrypts the
/// aggregate and writes [`REPORT_JSON`] and [`REPORT_HTML`] into `out`, flagging groups under
/// `small_group_size` records as small. Returns the two paths.
///
/// # Errors
/// [`AuditorError`]: the coordinator's files are checked first (a malformed one is named before
/// the keys are loaded), then the keys, the aggregate and the proven counts; nothing is written
/// unless all of them hold.
pub fn write_report(
    keys_dir: &Path,
    from: &Path,
    out: &Path,
    small_group_size: u64,
) -> Result<(PathBuf, PathBuf), AuditorError> {
    let transcript_path = from.join(TRANSCRIPT_FILE);
    let text = read_text_limited(
        &transcript_path,
        "a fairness transcript",
        MAX_TRANSCRIPT_BYTES,
    )?;
    let transcript: RoundTranscript =
        serde_json::from_str(&text).map_err(|source| AuditorError::TranscriptJson {
            path: transcript_path,
            source,
        })?;
    let aggregate_path = from.join(AGGREGATE_FILE);
    let aggregate = read_limited(&aggregate_path, "an encrypted aggregate", he::SIZE_LIMIT)?;
    let keys = AuditorKeys::load(keys_dir).map_err(AuditorError::Keys)?;
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a UTC time formats");
    let report = build(&keys, &transcript, &aggregate, small_group_size, now)?;
    let write = |path: &Path, source| AuditorError::WriteReport {
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(out).map_err(|e| write(out, e))?;
    let json = out.join(REPORT_JSON);
    let text = serde_json::to_string_pretty(&report).expect("a report serializes");
    std::fs::write(&json, text).map_err(|e| write(&json, e))?;
    let html = out.join(REPORT_HTML);
    std::fs::write(&html, html::render(&report)).map_err(|source| AuditorError::WriteHtml {
        path: html.clone(),
        source,
    })?;
    Ok((json, html))
}

#[cfg(test)]
mod tests {
    use super::*;
    use accord_crypto::he::transcript::CommitmentRecord;

    /// A coordinator's output folder with a transcript of `text` and no aggregate.
    fn from_dir(text: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TRANSCRIPT_FILE), text).unwrap();
        dir
    }

    #[test]
    fn the_coordinators_files_are_named_by_concern_before_the_keys_are_loaded() {
        // No keys anywhere: every error below comes before they are needed.
        let keys = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let report = |from: &Path| write_report(keys.path(), from, out.path(), 30).unwrap_err();

        let empty = tempfile::tempdir().unwrap();
        let error = report(empty.path());
        assert!(
            matches!(&error, AuditorError::CoordinatorFile(_)),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .starts_with(&empty.path().join(TRANSCRIPT_FILE).display().to_string()),
            "{error}"
        );

        let garbage = from_dir(b"{\"format\": 1}");
        let error = report(garbage.path());
        let AuditorError::TranscriptJson { path, .. } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(path, &garbage.path().join(TRANSCRIPT_FILE));
        assert_eq!(
            error.to_string(),
            format!("{}: not a fairness transcript", path.display())
        );
        // The cause is kept as the source, for "{:#}" to print.
        assert!(std::error::Error::source(&error).is_some());
        // Nothing was written.
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_malformed_commitment_is_named_with_its_field_and_cause() {
        let record = CommitmentRecord {
            participant: "org-a".into(),
            certificate_der: "zz".into(),
            ciphertext_sha256: String::new(),
            signature: String::new(),
        };
        let error = commitment_verifies(&fairness_context("fed", 1), &record).unwrap_err();
        assert!(
            matches!(error, CommitmentError::CertificateHex(_)),
            "{error:?}"
        );
        let error = TranscriptError::Commitment {
            participant: record.participant.clone(),
            source: error,
        };
        assert_eq!(
            error::chain(&error),
            "commitment of 'org-a': certificate is not hex: Invalid character 'z' at position 0"
        );
    }
}

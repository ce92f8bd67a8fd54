//! The compliance auditor: generates the tfhe keys and publishes the signed bundles
//! (`accord auditor keygen`), decrypts only the consortium-wide aggregate the coordinator hands
//! over and writes the signed fairness report (`accord auditor report`), and anyone checks a
//! report (`accord audit verify`).

pub mod bench;
pub mod html;
pub mod metrics;
pub mod report;
pub mod verify;

use accord_crypto::file::{read_limited, read_text_limited};
use accord_crypto::he;
use accord_crypto::he::handoff::{AGGREGATE_FILE, TRANSCRIPT_FILE};
use accord_crypto::he::keys::{self, AuditorKeys};
use accord_crypto::he::transcript::{MAX_TRANSCRIPT_BYTES, RoundTranscript};
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The report's file names.
pub const REPORT_JSON: &str = "fairness-report.json";
pub const REPORT_HTML: &str = "fairness-report.html";

/// `accord auditor keygen`: writes the keys into `dir` and says what to hand to whom.
pub fn keygen(dir: &Path) -> anyhow::Result<String> {
    let started = Instant::now();
    let generated = AuditorKeys::generate_into(dir)?;
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

/// `accord auditor report`: from the coordinator's output directory `from`, decrypts the
/// aggregate and writes both report files into `out`. Returns their paths.
pub fn write_report(
    keys_dir: &Path,
    from: &Path,
    out: &Path,
    small_group_size: u64,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    // The coordinator's files first: a malformed one is named before the keys are loaded.
    let transcript_path = from.join(TRANSCRIPT_FILE);
    let transcript: RoundTranscript = serde_json::from_str(&read_text_limited(
        &transcript_path,
        "a fairness transcript",
        MAX_TRANSCRIPT_BYTES,
    )?)
    .with_context(|| format!("{}: not a fairness transcript", transcript_path.display()))?;
    let aggregate_path = from.join(AGGREGATE_FILE);
    let aggregate = read_limited(&aggregate_path, "an encrypted aggregate", he::SIZE_LIMIT)?;
    let keys = AuditorKeys::load(keys_dir)?;
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a UTC time formats");
    let report = report::build(&keys, &transcript, &aggregate, small_group_size, now)?;
    std::fs::create_dir_all(out).with_context(|| format!("{}", out.display()))?;
    let json = out.join(REPORT_JSON);
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("{}", json.display()))?;
    let html = out.join(REPORT_HTML);
    std::fs::write(&html, html::render(&report)).with_context(|| format!("{}", html.display()))?;
    Ok((json, html))
}

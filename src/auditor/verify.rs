//! `accord audit verify`: checks a fairness report without trusting whoever handed it over.
//!
//! Every check is reported as PASS or FAIL with the field it concerns: the signed sections
//! (naming any altered field), the auditor's signature (against a pinned key when given), the
//! transcript's hash chain, each participant's signed commitment and its place in the chain,
//! the aggregate's place in the chain, the model file's hash, and every metric recomputed from
//! the report's counts.

use super::metrics;
use super::report::{
    FairnessReport, MAX_REPORT_BYTES, REPORT_FORMAT, commitment_verifies, fairness_context,
    layout_of, sections, sections_digest,
};
use accord_coordinator::artefact::ModelArtefact;
use accord_crypto::file::read_text_limited;
use accord_crypto::he::keys::{parse_verifying_key, verify_auditor_signature};
use accord_crypto::he::transcript;
use accord_proto::fairness::GroupStatistics;
use serde_json::Value;
use std::path::Path;

/// One check's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.passed { "PASS" } else { "FAIL" };
        write!(f, "{verdict}  {}: {}", self.name, self.detail)
    }
}

/// What to check the report against.
#[derive(Default, Clone, Copy)]
pub struct Against<'a> {
    /// The model.json the report is about.
    pub model: Option<&'a Path>,
    /// The auditor's verifying key (hex) the verifier trusts.
    pub auditor_key: Option<&'a str>,
    /// The consortium CA certificate (PEM) participants' certificates must chain to.
    pub ca: Option<&'a Path>,
}

struct Checks(Vec<Check>);

impl Checks {
    fn record(&mut self, name: impl Into<String>, result: Result<String, String>) {
        let (passed, detail) = match result {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        };
        self.0.push(Check {
            name: name.into(),
            passed,
            detail,
        });
    }
}

/// The first path at which two JSON values differ.
fn first_difference(path: &str, stated: &Value, recomputed: &Value) -> Option<String> {
    match (stated, recomputed) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in b {
                let inner = format!("{path}.{key}");
                match a.get(key) {
                    Some(stated) => {
                        if let Some(d) = first_difference(&inner, stated, value) {
                            return Some(d);
                        }
                    }
                    None => return Some(inner),
                }
            }
            a.keys()
                .find(|k| !b.contains_key(*k))
                .map(|k| format!("{path}.{k}"))
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Some(format!(
                    "{path} (length {} instead of {})",
                    a.len(),
                    b.len()
                ));
            }
            a.iter()
                .zip(b)
                .enumerate()
                .find_map(|(i, (x, y))| first_difference(&format!("{path}[{i}]"), x, y))
        }
        (a, b) if a == b => None,
        (a, b) => Some(format!("{path} (states {a}, recomputed {b})")),
    }
}

/// Runs every check on the report at `path`.
pub fn verify(path: &Path, against: &Against<'_>) -> Vec<Check> {
    let mut checks = Checks(Vec::new());
    let text = match read_text_limited(path, "a fairness report", MAX_REPORT_BYTES) {
        Ok(text) => text,
        Err(e) => {
            checks.record("report", Err(e.to_string()));
            return checks.0;
        }
    };
    let value: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            checks.record("report", Err(format!("{}: not JSON: {e}", path.display())));
            return checks.0;
        }
    };

    // Signed sections first: they name any altered field even when it no longer parses.
    let stated: Vec<super::report::Section> = value
        .get("signed_sections")
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let actual = sections(&value);
    let mut altered: Vec<String> = actual
        .iter()
        .filter(|s| {
            !stated
                .iter()
                .any(|t| t.path == s.path && t.sha256 == s.sha256)
        })
        .map(|s| s.path.clone())
        .collect();
    altered.extend(
        stated
            .iter()
            .filter(|t| !actual.iter().any(|s| s.path == t.path))
            .map(|t| format!("{} (removed)", t.path)),
    );
    checks.record(
        "signed sections",
        if altered.is_empty() && !stated.is_empty() {
            Ok(format!(
                "all {} sections match what the auditor signed",
                actual.len()
            ))
        } else if stated.is_empty() {
            Err("signed_sections: missing".into())
        } else {
            Err(format!("altered after signing: {}", altered.join(", ")))
        },
    );

    let report: FairnessReport = match serde_json::from_value(value.clone()) {
        Ok(r) => r,
        Err(e) => {
            checks.record("report", Err(format!("not a fairness report: {e}")));
            return checks.0;
        }
    };
    checks.record(
        "format",
        if report.format == REPORT_FORMAT {
            Ok(REPORT_FORMAT.into())
        } else {
            Err(format!(
                "format: '{}', expected '{REPORT_FORMAT}'",
                report.format
            ))
        },
    );

    // The auditor's signature over the sections table, under the pinned key if given.
    let key_hex = against.auditor_key.unwrap_or(&report.auditor.verifying_key);
    let signature = hex::decode(&report.signature).unwrap_or_default();
    checks.record(
        "auditor signature",
        match parse_verifying_key(key_hex) {
            Err(e) => Err(e.to_string()),
            Ok(key) if verify_auditor_signature(&key, &sections_digest(&report.signed_sections), &signature) => {
                if against.auditor_key.is_some() {
                    Ok(format!("signed by the pinned auditor key {key_hex}"))
                } else {
                    Ok(format!("signed by the key the report names ({key_hex}); pass --auditor-key to pin it"))
                }
            }
            Ok(_) => Err(format!("signature: does not verify with auditor key {key_hex}")),
        },
    );

    let head = transcript::head(&report.transcript.entries);
    checks.record(
        "transcript hash chain",
        if head == report.transcript.head {
            Ok(format!(
                "{} entries lead to head {head}",
                report.transcript.entries.len()
            ))
        } else {
            Err(format!(
                "transcript: the entries lead to {head}, the report states {}",
                report.transcript.head
            ))
        },
    );
    checks.record(
        "aggregate in transcript",
        match report.transcript.entries.last() {
            Some(e)
                if e.label == transcript::AGGREGATE_LABEL
                    && e.sha256 == report.aggregate.ciphertext_sha256 =>
            {
                Ok(format!(
                    "the decrypted aggregate {} is the transcript's last entry",
                    report.aggregate.ciphertext_sha256
                ))
            }
            _ => Err("aggregate.ciphertext_sha256: not the transcript's last entry".into()),
        },
    );

    let context = fairness_context(&report.federation_id, report.round);
    let ca = against.ca.map(|p| {
        <rustls_pki_types::CertificateDer as rustls_pki_types::pem::PemObject>::from_pem_file(p)
            .map(|c| c.to_vec())
            .map_err(|e| format!("{}: {e}", p.display()))
    });
    for (i, record) in report.participants.iter().enumerate() {
        let mut result = commitment_verifies(&context, record)
            .map_err(|e| format!("participants[{i}] ('{}'): {e:#}", record.participant))
            .and_then(|()| {
                if report.transcript.entries.contains(&record.entry()) {
                    Ok(format!(
                        "'{}' committed to ciphertext {}",
                        record.participant, record.ciphertext_sha256
                    ))
                } else {
                    Err(format!(
                        "participants[{i}] ('{}'): the commitment is not in the transcript",
                        record.participant
                    ))
                }
            });
        if let (Ok(detail), Some(ca)) = (&result, &ca) {
            result = match ca {
                Err(e) => Err(e.clone()),
                Ok(ca) => hex::decode(&record.certificate_der)
                    .map_err(|e| e.to_string())
                    .and_then(|der| {
                        accord_crypto::pki::verify_issued(ca, &der).map_err(|e| e.to_string())
                    })
                    .and_then(|id| {
                        if id.name == record.participant {
                            Ok(format!("{detail}; certificate issued by the consortium CA"))
                        } else {
                            Err(format!("the certificate is for '{}'", id.name))
                        }
                    })
                    .map_err(|e| format!("participants[{i}].certificate_der: {e}")),
            };
        }
        checks.record(format!("commitment of {}", record.participant), result);
    }

    if let Some(model) = against.model {
        checks.record(
            "model",
            match ModelArtefact::load(model) {
                Err(e) => Err(format!("model.content_hash: {e}")),
                Ok(m) if m.content_hash == report.model.content_hash => Ok(format!(
                    "{} has content hash {}",
                    model.display(),
                    m.content_hash
                )),
                Ok(m) => Err(format!(
                    "model.content_hash: the report is about {}, {} hashes to {}",
                    report.model.content_hash,
                    model.display(),
                    m.content_hash
                )),
            },
        );
    }

    checks.record("metrics", recompute(&report));
    checks.0
}

/// Recomputes every metric from the report's counts and compares.
fn recompute(report: &FairnessReport) -> Result<String, String> {
    let layout = layout_of(&report.groups).map_err(|e| format!("groups: {e}"))?;
    let groups = &report.aggregate.groups;
    if groups.len() != layout.groups() {
        return Err(format!(
            "aggregate.groups: {} groups, the layout has {}",
            groups.len(),
            layout.groups()
        ));
    }
    for (i, ((_, b, g), group)) in layout.offsets().zip(groups).enumerate() {
        if group.group != layout.group_label(b, g) || group.suppressed != group.counts.is_none() {
            return Err(format!(
                "aggregate.groups[{i}]: does not match the layout or its suppression mark"
            ));
        }
    }
    let counts: Vec<Option<GroupStatistics>> = groups.iter().map(|g| g.counts.clone()).collect();
    let recomputed = metrics::compute(&layout, &counts, &report.thresholds);
    let stated = serde_json::to_value(&report.metrics).expect("JSON");
    let recomputed_value = serde_json::to_value(&recomputed).expect("JSON");
    match first_difference("metrics", &stated, &recomputed_value) {
        None => Ok(format!(
            "{} breakdowns, {} groups recomputed from the counts",
            recomputed.len(),
            recomputed.iter().map(|b| b.groups.len()).sum::<usize>()
        )),
        Some(path) => Err(format!("{path} does not follow from the counts")),
    }
}

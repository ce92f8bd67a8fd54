//! `accord audit verify`: checks a fairness report without trusting whoever handed it over.
//!
//! Every check is reported with the field it concerns: the signed sections (naming any altered
//! field), the auditor's signature, the transcript's hash chain, each participant's signed
//! commitment and its place in the chain, the aggregate's place in the chain, the model file's
//! hash, every metric recomputed from the report's counts and, with `--recompute`, the
//! aggregate recomputed from the participants' own signed messages.
//!
//! Nothing the report carries is trusted to vouch for itself: a signature is checked only
//! against a key the verifier pinned, and a certificate only against the CA the verifier gives.
//! A check that lacks its anchor is NOT CHECKED, never PASS, and the report is then not
//! verified: anyone can re-sign a forged report with a fresh key and put that key in it.

use crate::error::chain;
use crate::metrics;
use crate::report::{
    FairnessReport, MAX_REPORT_BYTES, REPORT_FORMAT, Section, commitment_verifies,
    fairness_context, layout_of, sections, sections_digest,
};
use accord_crypto::file::read_text_limited;
use accord_crypto::hash::sha256_hex;
use accord_crypto::he::ServerMaterial;
use accord_crypto::he::handoff::{Recomputed, read_record, recompute};
use accord_crypto::he::keys::{parse_verifying_key, verify_auditor_signature};
use accord_crypto::he::transcript::{self, Entry};
use accord_crypto::secagg::Trust;
use accord_proto::artefact::ModelArtefact;
use accord_proto::fairness::GroupStatistics;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The check ran and holds.
    Pass,
    /// The check ran and does not hold; the detail names the field.
    Fail,
    /// What the check needs was not given (a pinned key, the CA): the report is not verified.
    NotChecked,
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// What was checked ("auditor signature", "commitment of org-a").
    pub name: String,
    /// What the check found.
    pub verdict: Verdict,
    /// What holds, or which field does not and why.
    pub detail: String,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = match self.verdict {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::NotChecked => "NOT CHECKED",
        };
        write!(f, "{verdict}  {}: {}", self.name, self.detail)
    }
}

/// What to check the report against: each anchor left out makes the checks that need it
/// NOT CHECKED.
#[derive(Debug, Default, Clone, Copy)]
pub struct Against<'a> {
    /// The model.json the report is about.
    pub model: Option<&'a Path>,
    /// The auditor's verifying key (hex) the verifier trusts.
    pub auditor_key: Option<&'a str>,
    /// The consortium CA certificate (PEM) participants' certificates must chain to.
    pub ca: Option<&'a Path>,
    /// Recompute the aggregate from the coordinator's record (needs the key and the CA).
    pub recompute: Option<Recompute<'a>>,
}

/// What `--recompute` replays the fairness phase from.
#[derive(Debug, Clone, Copy)]
pub struct Recompute<'a> {
    /// The auditor's server bundle (`auditor-server.bundle`), checked against the pinned key.
    pub server_bundle: &'a Path,
    /// The coordinator's record of the phase (`fairness-record.bin`).
    pub record: &'a Path,
}

/// The last line `accord audit verify` prints, and whether the report is verified: only if
/// every check ran and passed. `recomputed` says whether the aggregate was replayed.
pub fn conclusion(checks: &[Check], recomputed: bool) -> (bool, String) {
    let count = |v: Verdict| checks.iter().filter(|c| c.verdict == v).count();
    let (failed, unchecked) = (count(Verdict::Fail), count(Verdict::NotChecked));
    let total = checks.len();
    if failed > 0 {
        (
            false,
            format!(
                "report NOT verified: {failed} of {total} checks failed, {unchecked} not checked"
            ),
        )
    } else if unchecked > 0 {
        (
            false,
            format!(
                "report NOT verified: {unchecked} of {total} checks could not be done (NOT CHECKED above); nothing failed, but without them the report proves nothing"
            ),
        )
    } else if recomputed {
        (
            true,
            format!(
                "report verified: {total} checks passed, the aggregate recomputed from the participants' messages"
            ),
        )
    } else {
        (
            true,
            format!(
                "report verified: {total} checks passed (the aggregate is the one the auditor signed; --recompute checks it against the participants' messages)"
            ),
        )
    }
}

struct Checks(Vec<Check>);

impl Checks {
    fn record(&mut self, name: impl Into<String>, result: Result<String, String>) {
        let (verdict, detail) = match result {
            Ok(detail) => (Verdict::Pass, detail),
            Err(detail) => (Verdict::Fail, detail),
        };
        self.push(name, verdict, detail);
    }

    fn not_checked(&mut self, name: impl Into<String>, why: String) {
        self.push(name, Verdict::NotChecked, why);
    }

    fn push(&mut self, name: impl Into<String>, verdict: Verdict, detail: String) {
        self.0.push(Check {
            name: name.into(),
            verdict,
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

/// Runs every check on the report at `path` against what the caller pins, in order: the file,
/// the signed sections, the format, the auditor's signature, the transcript's hash chain, the
/// aggregate's place in it, each participant's commitment, the model file, the metrics and,
/// with [`Against::recompute`], the replay. A report that cannot be read or parsed gives one
/// failed check naming why; nothing here panics on what the report holds.
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
    let stated: Vec<Section> = value
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

    auditor_signature(&report, against.auditor_key, &mut checks);

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
    let trust = against
        .ca
        .map(|p| Trust::load(p).map_err(|e| format!("--ca: {e}")));
    for (i, record) in report.participants.iter().enumerate() {
        let name = format!("commitment of {}", record.participant);
        let result = commitment_verifies(&context, record)
            .map_err(|e| {
                format!(
                    "participants[{i}] ('{}'): {}",
                    record.participant,
                    chain(&e)
                )
            })
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
        match (result, &trust) {
            (Err(e), _) => checks.record(name, Err(e)),
            (Ok(detail), None) => checks.not_checked(
                name,
                format!(
                    "{detail}, signed with the key of the certificate the report carries, which was not checked against the consortium CA (--ca ca.pem): anyone can make a certificate"
                ),
            ),
            (Ok(_), Some(Err(e))) => checks.record(name, Err(e.clone())),
            (Ok(detail), Some(Ok(trust))) => checks.record(
                name,
                hex::decode(&record.certificate_der)
                    .map_err(|e| e.to_string())
                    .and_then(|der| {
                        trust
                            .member_key(&record.participant, &der)
                            .map_err(|e| e.to_string())
                    })
                    .map(|_| format!("{detail}; a participant certificate of the consortium CA"))
                    .map_err(|e| format!("participants[{i}].certificate_der: {e}")),
            ),
        }
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

    checks.record("metrics", recompute_metrics(&report));
    if let Some(from) = against.recompute {
        recompute_aggregate(&report, against, from, &mut checks);
    }
    checks.0
}

/// The auditor's signature over the sections table: PASS only under a pinned key.
fn auditor_signature(report: &FairnessReport, pinned: Option<&str>, checks: &mut Checks) {
    let name = "auditor signature";
    let digest = sections_digest(&report.signed_sections);
    let signature = hex::decode(&report.signature).unwrap_or_default();
    let named = parse_verifying_key(&report.auditor.verifying_key);
    let Some(pinned_hex) = pinned else {
        match named {
            Err(e) => checks.record(name, Err(format!("auditor.verifying_key: {e}"))),
            Ok(key) if verify_auditor_signature(&key, &digest, &signature) => checks.not_checked(
                name,
                format!(
                    "no pinned auditor key (--auditor-key auditor.pub): the signature verifies only with the key the report names itself ({}), which whoever forges a report puts there",
                    report.auditor.verifying_key
                ),
            ),
            Ok(_) => checks.record(
                name,
                Err("signature: does not verify even with the key the report names".into()),
            ),
        }
        return;
    };
    checks.record(
        name,
        match parse_verifying_key(pinned_hex) {
            Err(e) => Err(format!("the pinned key: {e}")),
            Ok(key) if !verify_auditor_signature(&key, &digest, &signature) => Err(format!(
                "signature: does not verify with the pinned auditor key {pinned_hex}"
            )),
            Ok(key) if named.as_ref().ok() != Some(&key) => Err(format!(
                "auditor.verifying_key: the report names {}, the pinned key is {pinned_hex}",
                report.auditor.verifying_key
            )),
            Ok(_) => Ok(format!("signed by the pinned auditor key {pinned_hex}")),
        },
    );
}

/// Recomputes every metric from the report's counts and compares.
fn recompute_metrics(report: &FairnessReport) -> Result<String, String> {
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

/// `--recompute`: checks the coordinator's record is the one the report binds, message by
/// message, then replays the fairness phase from it and compares the aggregate, bit for bit
/// (SHA-256), and its contributors with what the report states.
fn recompute_aggregate(
    report: &FairnessReport,
    against: &Against<'_>,
    from: Recompute<'_>,
    checks: &mut Checks,
) {
    let (Some(key), Some(ca)) = (against.auditor_key, against.ca) else {
        checks.record(
            "recompute",
            Err("needs the pinned auditor key (--auditor-key) to check the server bundle, and the CA (--ca) to check the certificate of every recorded message".into()),
        );
        return;
    };
    let (record, sha256) = match read_record(from.record) {
        Ok(read) => read,
        Err(e) => return checks.record("aggregation record", Err(e.to_string())),
    };
    let entries = &report.transcript.entries;
    let bound = entries
        .iter()
        .find(|e| e.label == transcript::RECORD_LABEL)
        .map(|e| e.sha256.as_str());
    let record_bound = bound == Some(sha256.as_str()) && record.round == report.round;
    checks.record(
        "aggregation record",
        if bound != Some(sha256.as_str()) {
            Err(format!(
                "transcript.entries: {} has SHA-256 {sha256}, the transcript binds {}",
                from.record.display(),
                bound.unwrap_or("no record")
            ))
        } else if record.round != report.round {
            Err(format!(
                "round: the record is of round {}, the report of round {}",
                record.round, report.round
            ))
        } else {
            Ok(format!(
                "{} ({} messages) is the record the transcript binds",
                from.record.display(),
                record.messages.len()
            ))
        },
    );
    let messages_bound = recorded_messages_in_transcript(&record, entries);
    let messages_ok = messages_bound.is_ok();
    checks.record("recorded messages", messages_bound);
    if !(record_bound && messages_ok) {
        return checks.not_checked(
            "aggregate recomputed",
            "not replayed: the record is not the one the report binds".into(),
        );
    }
    let started = Instant::now();
    let recomputed = (|| -> Result<Recomputed, String> {
        let pinned = parse_verifying_key(key).map_err(|e| format!("--auditor-key: {e}"))?;
        let material = ServerMaterial::load(from.server_bundle, &pinned)
            .map_err(|e| format!("--server-bundle: {e}"))?;
        let trust = Trust::load(ca).map_err(|e| format!("--ca: {e}"))?;
        recompute(&record, &trust, Arc::new(material)).map_err(|e| e.to_string())
    })();
    let recomputed = match recomputed {
        Ok(r) => r,
        Err(e) => return checks.record("aggregate recomputed", Err(e)),
    };
    let seconds = started.elapsed().as_secs_f64();
    let aggregate = sha256_hex(&recomputed.aggregate);
    checks.record(
        "aggregate recomputed",
        if aggregate == report.aggregate.ciphertext_sha256 {
            Ok(format!(
                "the replay of {} recorded messages gives the aggregate the auditor decrypted, bit for bit (SHA-256 {aggregate}, {seconds:.0} s)",
                record.messages.len()
            ))
        } else {
            Err(format!(
                "aggregate.ciphertext_sha256: the report states {}, the participants' messages give {aggregate}: the aggregate the auditor decrypted is not the sum of what they sent",
                report.aggregate.ciphertext_sha256
            ))
        },
    );
    checks.record(
        "parameters recomputed",
        match &recomputed.secure_aggregation {
            Some(replayed) if *replayed == report.parameters.secure_aggregation => Ok(format!(
                "the replay's secure aggregation ran with the parameters the report states ({replayed})"
            )),
            Some(replayed) => Err(format!(
                "parameters.secure_aggregation: the report states \"{}\", the replay ran with \"{replayed}\"",
                report.parameters.secure_aggregation
            )),
            None => Err("parameters.secure_aggregation: the replay derived no plan".into()),
        },
    );
    checks.record(
        "contributors recomputed",
        if recomputed.participants != report.participants {
            let names = |p: &[transcript::CommitmentRecord]| {
                p.iter()
                    .map(|c| c.participant.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            Err(format!(
                "participants: the report lists [{}], the replay's contributors are [{}]",
                names(&report.participants),
                names(&recomputed.participants)
            ))
        } else if recomputed.dropped != report.dropped {
            Err(format!(
                "dropped: the report states {:?}, the replay {:?}",
                report.dropped, recomputed.dropped
            ))
        } else {
            Ok(format!(
                "{} contributors with the commitments the report lists, {} dropped",
                recomputed.participants.len(),
                recomputed.dropped.len()
            ))
        },
    );
}

/// Checks the record's federation definition and messages are the transcript's: its first
/// entry, and one entry per message from the third on, in order. Names the first that is not.
fn recorded_messages_in_transcript(
    record: &accord_proto::v1::AggregationRecord,
    entries: &[Entry],
) -> Result<String, String> {
    let definition = Entry::of(transcript::DEFINITION_LABEL, &record.federation_definition);
    if entries.first() != Some(&definition) {
        return Err(
            "the record's federation definition is not the transcript's (transcript.entries[0])"
                .into(),
        );
    }
    const FIRST_MESSAGE: usize = 2;
    for (i, recorded) in record.messages.iter().enumerate() {
        let Some(message) = &recorded.message else {
            return Err(format!(
                "recorded message {i} (from '{}') holds no signed message",
                recorded.sender
            ));
        };
        let entry = transcript::message_entry(&recorded.sender, message);
        let at = FIRST_MESSAGE + i;
        if entries.get(at) != Some(&entry) {
            return Err(format!(
                "recorded message {i} ({}) is not the message the transcript records (transcript.entries[{at}]{})",
                entry.label,
                entries
                    .get(at)
                    .map(|e| format!(": {}", e.label))
                    .unwrap_or_default()
            ));
        }
    }
    let after = FIRST_MESSAGE + record.messages.len();
    match entries.get(after) {
        Some(e) if e.label.starts_with("commitment:") || e.label == transcript::RECORD_LABEL => {
            Ok(format!(
                "the federation definition and all {} messages are the ones the transcript records",
                record.messages.len()
            ))
        }
        other => Err(format!(
            "the transcript records a message the record lacks (transcript.entries[{after}]{})",
            other.map(|e| format!(": {}", e.label)).unwrap_or_default()
        )),
    }
}

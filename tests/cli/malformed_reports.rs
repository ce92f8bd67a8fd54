//! Files the auditor and `audit verify` read from others, malformed: a fairness report (from
//! whoever hands it over), the coordinator's transcript and aggregate, a model. Random bytes,
//! byte edits, and structural edits of a real report's JSON re-signed (as a forger with its own
//! key would, so the hostile content reaches every check) never panic and every check still
//! says PASS or FAIL; a file over its size limit is refused with its size named; groups whose
//! intersection would need billions of entries are refused before anything is built.

use accord_auditor::metrics::{self, Thresholds};
use accord_auditor::{
    Against, AggregateGroup, AggregateSection, AuditorSection, Check, FairnessReport,
    MAX_REPORT_BYTES, ModelSection, ParametersSection, REPORT_FORMAT, TranscriptSection, Verdict,
    layout_of, sections, sections_digest, verify,
};
use accord_crypto::he::transcript::{self, Entry, GroupsRecord, MAX_TRANSCRIPT_BYTES};
use accord_proto::fairness::GroupStatistics;
use ed25519_dalek::{Signer as _, SigningKey};
use proptest::prelude::*;
use serde_json::Value;
use std::path::Path;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn key_hex() -> String {
    hex::encode(key().verifying_key().to_bytes())
}

fn groups() -> GroupsRecord {
    GroupsRecord {
        attributes: vec![
            ("gender".into(), vec!["female".into(), "male".into()]),
            ("age_band".into(), vec!["18-59".into(), "60+".into()]),
        ],
        intersections: vec![vec!["gender".into(), "age_band".into()]],
        histogram_bins: 2,
    }
}

fn counts(n: u64) -> GroupStatistics {
    GroupStatistics {
        n,
        positives: n / 2,
        predicted_positives: n / 3,
        true_positives: n / 4,
        bin_counts: vec![n - n / 3, n / 3],
        bin_positives: vec![n / 2 - n / 4, n / 4],
    }
}

/// A report as an auditor signs it (built without tfhe: the counts are given), as JSON.
fn report(count: impl Fn(usize) -> Option<GroupStatistics>) -> Value {
    let layout = layout_of(&groups()).unwrap();
    let counts: Vec<Option<GroupStatistics>> = (0..layout.groups()).map(count).collect();
    let thresholds = Thresholds {
        min_group_size: 10,
        small_group_size: 30,
        four_fifths: 0.8,
        decision_threshold: 0.5,
        confidence: 0.95,
        histogram_bins: 2,
    };
    let entries = vec![Entry::of(transcript::AGGREGATE_LABEL, b"aggregate")];
    let report = FairnessReport {
        format: REPORT_FORMAT.into(),
        federation_id: "fuzz".into(),
        round: 3,
        generated_at: "2026-11-30T00:00:00Z".into(),
        model: ModelSection {
            content_hash: "sha256:00".into(),
            mitigation: "none".into(),
            thresholds_in_force: "none".into(),
        },
        parameters: ParametersSection {
            tfhe: "tfhe".into(),
            tfhe_sha256: "00".into(),
            auditor_bundle_sha256: "00".into(),
            secure_aggregation: "secagg".into(),
            secure_aggregation_sha256: "00".into(),
            value_bits: 16,
            input_validity: "none".into(),
        },
        metrics: metrics::compute(&layout, &counts, &thresholds),
        thresholds,
        groups: groups(),
        participants: vec![],
        dropped: vec![],
        culprits: vec![],
        transcript: TranscriptSection {
            head: transcript::head(&entries),
            entries: entries.clone(),
        },
        aggregate: AggregateSection {
            ciphertext_sha256: entries[0].sha256.clone(),
            groups: layout
                .offsets()
                .zip(&counts)
                .map(|((_, b, g), c)| AggregateGroup {
                    group: layout.group_label(b, g),
                    suppressed: c.is_none(),
                    counts: c.clone(),
                })
                .collect(),
        },
        definitions: metrics::DEFINITIONS
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        auditor: AuditorSection {
            verifying_key: key_hex(),
        },
        signed_sections: vec![],
        signature: String::new(),
    };
    sign(serde_json::to_value(&report).unwrap())
}

fn fixture() -> Value {
    report(|i| (i != 2).then(|| counts(40 + 10 * i as u64)))
}

/// Signs a report's JSON with the fixture key: its sections table and signature are replaced.
fn sign(mut value: Value) -> Value {
    let table = sections(&value);
    let signature = key().sign(&sections_digest(&table));
    if let Some(fields) = value.as_object_mut() {
        fields.insert(
            "signed_sections".into(),
            serde_json::to_value(&table).unwrap(),
        );
        fields.insert("signature".into(), hex::encode(signature.to_bytes()).into());
    }
    value
}

/// `audit verify` on `text` with the fixture key pinned.
fn checks(dir: &Path, text: &[u8]) -> Vec<Check> {
    let path = dir.join("fairness-report.json");
    std::fs::write(&path, text).unwrap();
    let key = key_hex();
    let against = Against {
        auditor_key: Some(&key),
        ..Default::default()
    };
    verify(&path, &against)
}

fn failures(checks: &[Check]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|c| c.to_string())
        .collect()
}

/// A change to a JSON document at the node `path` picks (an index per level, modulo the
/// number of children).
#[derive(Debug, Clone)]
enum Change {
    Number(f64),
    Text(String),
    Remove,
    /// The node repeated `times` times in an array.
    Repeat(u16),
    /// The node wrapped in `depth` arrays.
    Nest(u16),
}

fn change_strategy() -> impl Strategy<Value = Change> {
    prop_oneof![
        prop_oneof![
            Just(u64::MAX as f64),
            Just(-1.0),
            Just(0.0),
            Just(1e308),
            Just(4294967296.0),
            any::<f64>().prop_filter("JSON numbers are finite", |v| v.is_finite()),
        ]
        .prop_map(Change::Number),
        "[a-z=×0-9 ]{0,12}".prop_map(Change::Text),
        Just(Change::Remove),
        (1u16..2000).prop_map(Change::Repeat),
        (1u16..300).prop_map(Change::Nest),
    ]
}

fn change(value: &mut Value, path: &[usize], how: &Change) {
    let (first, rest) = match path.split_first() {
        Some(split) if !rest_is_leaf(value) => split,
        _ => {
            *value = match how {
                Change::Number(n) => {
                    serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
                }
                Change::Text(text) => Value::String(text.clone()),
                Change::Remove => Value::Null,
                Change::Repeat(times) => Value::Array(vec![value.clone(); *times as usize]),
                Change::Nest(depth) => {
                    (0..*depth).fold(value.clone(), |v, _| Value::Array(vec![v]))
                }
            };
            return;
        }
    };
    match value {
        Value::Object(fields) => {
            let Some(key) = fields.keys().nth(first % fields.len()).cloned() else {
                return;
            };
            if rest.is_empty() && matches!(how, Change::Remove) {
                fields.remove(&key);
            } else if let Some(child) = fields.get_mut(&key) {
                change(child, rest, how);
            }
        }
        Value::Array(items) => {
            let n = items.len();
            if rest.is_empty() && matches!(how, Change::Remove) {
                items.remove(first % n);
            } else {
                change(&mut items[first % n], rest, how);
            }
        }
        _ => {}
    }
}

/// Whether `value` has no children to descend into.
fn rest_is_leaf(value: &Value) -> bool {
    match value {
        Value::Object(fields) => fields.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => true,
    }
}

#[test]
fn the_fixture_report_passes_every_check() {
    let dir = tempfile::tempdir().unwrap();
    let checks = checks(dir.path(), &serde_json::to_vec_pretty(&fixture()).unwrap());
    assert_eq!(failures(&checks), Vec::<String>::new());
    assert!(checks.iter().any(|c| c.name == "metrics"));
}

#[test]
fn counts_near_u64_max_are_recomputed_without_overflow() {
    // TP + TN and the unknown groups' total overflowed u64 and panicked in audit verify.
    let dir = tempfile::tempdir().unwrap();
    let hostile = report(|_| {
        Some(GroupStatistics {
            n: u64::MAX,
            positives: 0,
            predicted_positives: u64::MAX,
            true_positives: u64::MAX,
            bin_counts: vec![u64::MAX; 2],
            bin_positives: vec![u64::MAX; 2],
        })
    });
    let checks = checks(dir.path(), &serde_json::to_vec(&hostile).unwrap());
    assert_eq!(failures(&checks), Vec::<String>::new());
}

#[test]
fn an_intersection_of_billions_of_groups_is_refused_before_it_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let mut hostile = fixture();
    let attributes: Vec<Value> = (0..24)
        .map(|i| serde_json::json!([format!("a{i}"), ["x", "y"]]))
        .collect();
    let names: Vec<String> = (0..24).map(|i| format!("a{i}")).collect();
    hostile["groups"] = serde_json::json!({
        "attributes": attributes,
        "intersections": [names],
        "histogram_bins": 2,
    });
    let checks = checks(dir.path(), &serde_json::to_vec(&sign(hostile)).unwrap());
    let failed = failures(&checks);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].starts_with("FAIL  metrics: groups: the fairness breakdowns need at least")
            && failed[0].ends_with("more than the 65536 allowed"),
        "{failed:?}"
    );
}

#[test]
fn files_over_their_size_limit_are_refused_with_their_size() {
    let dir = tempfile::tempdir().unwrap();
    let oversized = |name: &str, size: u64| {
        let path = dir.path().join(name);
        std::fs::File::create(&path).unwrap().set_len(size).unwrap(); // sparse
        path
    };
    let report = oversized("fairness-report.json", MAX_REPORT_BYTES + 1);
    let checks = verify(&report, &Against::default());
    assert_eq!(
        failures(&checks),
        [format!(
            "FAIL  report: {}: {} bytes, more than the {MAX_REPORT_BYTES} bytes accepted for a fairness report",
            report.display(),
            MAX_REPORT_BYTES + 1
        )]
    );

    let model = oversized("model.json", 64 << 20 | 1);
    let fine = dir.path().join("fine.json");
    std::fs::write(&fine, serde_json::to_vec(&fixture()).unwrap()).unwrap();
    let key = key_hex();
    let against = Against {
        model: Some(&model),
        auditor_key: Some(&key),
        ca: None,
        recompute: None,
    };
    let failed = failures(&verify(&fine, &against));
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].starts_with("FAIL  model: model.content_hash: ")
            && failed[0].contains("bytes accepted for a model"),
        "{failed:?}"
    );

    // The auditor names an oversized transcript before it loads its keys (there are none here).
    let from = tempfile::tempdir().unwrap();
    let transcript = from.path().join("fairness-transcript.json");
    std::fs::File::create(&transcript)
        .unwrap()
        .set_len(MAX_TRANSCRIPT_BYTES + 1)
        .unwrap();
    let error = accord_auditor::write_report(dir.path(), from.path(), dir.path(), 30)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("bytes accepted for a fairness transcript"),
        "{error}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_fail_with_a_reason(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let dir = tempfile::tempdir().unwrap();
        let checks = checks(dir.path(), &bytes);
        prop_assert!(!failures(&checks).is_empty());
        // A transcript of random bytes is refused before the auditor's keys are needed.
        let from = tempfile::tempdir().unwrap();
        std::fs::write(from.path().join("fairness-transcript.json"), &bytes).unwrap();
        let error = accord_auditor::write_report(dir.path(), from.path(), dir.path(), 30)
            .unwrap_err()
            .to_string();
        prop_assert!(
            error.contains("not a fairness transcript") || error.contains("not UTF-8 text"),
            "{}",
            error
        );
    }

    /// Bytes of the signed report edited: whatever still passes every check is the same
    /// report (an edit of white space), anything else fails with a reason.
    #[test]
    fn edited_bytes_pass_only_when_nothing_changed(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let original = fixture();
        let mut bytes = serde_json::to_vec_pretty(&original).unwrap();
        for (at, byte, kind) in edits {
            let at = at % (bytes.len() + 1);
            match kind {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.truncate(at),
                _ => bytes.insert(at, byte),
            }
        }
        let checks = checks(dir.path(), &bytes);
        if failures(&checks).is_empty() {
            let read: Value = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(read, original);
        }
    }

    /// A node of the report replaced (huge, negative or fractional numbers, text, removed,
    /// repeated up to 2000 times, nested 300 deep) and the report re-signed with the pinned key:
    /// the hostile content reaches every check, which says PASS or FAIL and never panics.
    #[test]
    fn re_signed_structural_changes_are_checked_without_panic(
        path in proptest::collection::vec(any::<usize>(), 0..6),
        how in change_strategy(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut value = fixture();
        change(&mut value, &path, &how);
        let value = sign(value);
        let checks = checks(dir.path(), &serde_json::to_vec(&value).unwrap());
        prop_assert!(!checks.is_empty());
        let metrics_passed = checks.iter().any(|c| c.name == "metrics" && c.verdict == Verdict::Pass);
        if metrics_passed {
            // The counts, layout and metrics stated agree: recomputed from what was signed.
            let report: FairnessReport = serde_json::from_value(value).unwrap();
            prop_assert_eq!(report.aggregate.groups.len(), layout_of(&report.groups).unwrap().groups());
        }
    }
}

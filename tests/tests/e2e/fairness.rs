//! The encrypted fairness audit end to end: a federation over mutual-TLS gRPC whose participants
//! encrypt per-group statistics under an auditor's tfhe key, the coordinator's homomorphic sum,
//! the auditor's signed report, and `accord audit verify`.
//!
//! On synthetic data with a planted disparity (customers aged 60+ wait three times as long), the
//! report's counts equal the counts computed in the clear on the pooled data, its metrics equal a
//! plain recomputation, the disparity is flagged, an untampered report verifies, and tampering
//! with any field, signature or the model file is caught and named. Without a pinned auditor
//! key the signature is never PASS and the report is not verified. `--recompute` replays the
//! fairness phase from the coordinator's record and reproduces the honest aggregate bit for
//! bit; an aggregate the coordinator substituted, or a recorded message it altered, fails it
//! even when the real auditor signed the report, naming the aggregate or the message.

use accord_auditor::metrics::{self, Thresholds};
use accord_auditor::{
    Against, Check, FairnessReport, REPORT_JSON, Recompute, Verdict, conclusion, layout_of, verify,
    write_report,
};
use accord_coordinator::CoordinatorConfig;
use accord_crypto::he::handoff::{AGGREGATE_FILE, RECORD_FILE, TRANSCRIPT_FILE};
use accord_crypto::he::keys::{self, AuditorKeys};
use accord_crypto::he::transcript::{self, Entry, RoundTranscript};
use accord_participant::data::{InvalidRowPolicy, load_csv};
use accord_participant::model::{LogisticModel, Standardizer};
use accord_proto::artefact::ModelArtefact;
use accord_proto::fairness::GroupStatistics;
use accord_proto::transport::WireMeter;
use accord_proto::v1::AggregationRecord;
use accord_simulations::synth::{SynthSpec, parse_biases};
use accord_tests::TestFederation;
use ndarray::Array1;
use prost::Message;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const ROUNDS: u32 = 3;

/// Runs a planted-bias federation with an auditor; returns the federation, the auditor's
/// directory and the written report's path.
async fn audited_federation() -> (TestFederation, PathBuf, PathBuf) {
    let spec = SynthSpec {
        bias: parse_biases("age_band=60+:wait*3").unwrap(),
        ..SynthSpec::new(3, 700, 5)
    };
    audited(TestFederation::with_data(&spec)).await
}

/// One audited federation at a time: two at once (the tests of this file run in parallel) share
/// two cores for their encrypted phases and miss the stage deadlines.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `federation` with an auditor; returns it, the auditor's directory and the written
/// report's path.
async fn audited(mut federation: TestFederation) -> (TestFederation, PathBuf, PathBuf) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let auditor = federation.dir().join("auditor");
    let generated = AuditorKeys::generate_into(&auditor).unwrap();
    let key = generated.keys.verifying_key_hex();
    let toml_path = |name: &str| toml::Value::String(auditor.join(name).display().to_string());
    federation.coordinator_edits.extend([
        (
            "fairness.auditor_server_bundle",
            toml_path(keys::SERVER_BUNDLE_FILE),
        ),
        ("fairness.auditor_verifying_key", key.clone().into()),
        ("fairness.min_group_size", 15.into()),
        ("fairness.value_bits", 16.into()),
        // Two score bins and no intersection keep the encrypted work small (intersections are
        // covered in crypto/tests/he.rs and the layout's tests); counts and rates are checked.
        ("fairness.histogram_bins", 2.into()),
        ("schema.intersections", toml::Value::Array(vec![])),
        ("secure_aggregation.max_rows_per_participant", 5000.into()),
    ]);
    federation.participant_edits.extend([
        (
            "fairness.auditor_bundle",
            toml_path(keys::PUBLIC_BUNDLE_FILE),
        ),
        ("fairness.auditor_verifying_key", key.into()),
    ]);
    let (address, coordinator) = federation.start_coordinator(ROUNDS, 120).await;
    let participants: Vec<_> = federation
        .layout
        .names
        .iter()
        .map(|name| federation.spawn_participant(name, &address, WireMeter::new()))
        .collect();
    for participant in participants {
        participant.await.unwrap().expect("participant finishes");
    }
    coordinator.await.unwrap().expect("coordinator finishes");
    let out = federation.dir().to_owned();
    let (json, _html) =
        write_report(&auditor, &out, &out, 100).expect("the auditor writes the report");
    (federation, auditor, json)
}

/// The per-group counts of the final model on the pooled data, computed in the clear.
fn pooled_counts(
    federation: &TestFederation,
    model: &ModelArtefact,
    report: &FairnessReport,
) -> Vec<GroupStatistics> {
    let config = CoordinatorConfig::load(&federation.dir().join("coordinator.toml")).unwrap();
    let schema = config.schema().unwrap();
    let layout = layout_of(&report.groups).unwrap();
    let standardizer = Standardizer {
        means: Array1::from(model.standardization.means.clone()),
        std_devs: Array1::from(model.standardization.std_devs.clone()),
    };
    let global = LogisticModel {
        weights: Array1::from(model.weights.clone()),
        intercept: model.intercept,
    };
    let mut values = vec![0u64; layout.len()];
    for name in &federation.layout.names {
        let (data, _) = load_csv(
            &federation.layout.data_file(name),
            &schema,
            &HashMap::new(),
            InvalidRowPolicy::Reject,
        )
        .unwrap();
        let scores = global.predict(standardizer.apply(&data.features).view());
        for (row, (&p, &label)) in scores.iter().zip(data.labels.iter()).enumerate() {
            let categories: Vec<usize> = schema
                .protected_attributes
                .iter()
                .map(|a| data.groups[&a.name][row])
                .collect();
            layout.add(
                &mut values,
                &categories,
                label > 0.5,
                p >= report.thresholds.decision_threshold,
                p,
            );
        }
    }
    layout.read(&values)
}

/// What `audit verify --model MODEL --auditor-key KEY --ca CA` checks a report against.
fn pinned<'a>(model: &'a Path, key: &'a str, ca: &'a Path) -> Against<'a> {
    Against {
        model: Some(model),
        auditor_key: Some(key),
        ca: Some(ca),
        recompute: None,
    }
}

fn failures(report: &Path, against: &Against<'_>) -> Vec<String> {
    failed(&verify(report, against))
}

fn failed(checks: &[Check]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| c.verdict != Verdict::Pass)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_matches_the_pooled_data_finds_the_planted_disparity_and_resists_tampering() {
    let (federation, auditor, report_path) = audited_federation().await;
    let report: FairnessReport =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    let model_path = federation.dir().join("model.json");
    let model = ModelArtefact::load(&model_path).unwrap();
    assert_eq!(report.model.content_hash, model.content_hash);
    assert_eq!(report.participants.len(), 3);

    // Counts: exactly the pooled counts, with groups under the minimum suppressed.
    let pooled = pooled_counts(&federation, &model, &report);
    assert_eq!(report.aggregate.groups.len(), pooled.len());
    let mut compared = 0;
    for (group, clear) in report.aggregate.groups.iter().zip(&pooled) {
        if clear.n < report.thresholds.min_group_size {
            assert!(
                group.suppressed && group.counts.is_none(),
                "{} has {} records: suppressed",
                group.group,
                clear.n
            );
        } else {
            assert_eq!(group.counts.as_ref(), Some(clear), "{}", group.group);
            compared += 1;
        }
    }
    assert!(compared >= 8, "{compared} groups compared");
    assert!(
        report.aggregate.groups.iter().any(|g| g.suppressed),
        "some group is under the minimum"
    );

    // Metrics: a plain recomputation from the pooled counts.
    let layout = layout_of(&report.groups).unwrap();
    let clear: Vec<Option<GroupStatistics>> = pooled
        .iter()
        .map(|g| (g.n >= report.thresholds.min_group_size).then(|| g.clone()))
        .collect();
    let thresholds: Thresholds = report.thresholds.clone();
    assert_eq!(
        metrics::compute(&layout, &clear, &thresholds),
        report.metrics
    );

    // The planted disparity: 60+ is the least selected age band, flagged under four-fifths.
    let breakdown = |name: &str| report.metrics.iter().find(|b| b.breakdown == name).unwrap();
    let age = breakdown("age_band");
    let old = age
        .groups
        .iter()
        .find(|g| g.group == "age_band=60+")
        .unwrap();
    assert_eq!(
        old.four_fifths_flag,
        Some(true),
        "60+ impact ratio {:?}",
        old.impact_ratio
    );
    assert!(
        age.demographic_parity_difference.unwrap() > 0.1,
        "{:?}",
        age.demographic_parity_difference
    );
    let gender = breakdown("gender");
    assert!(
        gender.demographic_parity_difference.unwrap() < age.demographic_parity_difference.unwrap()
    );

    // An untampered report verifies against the model, the pinned key and the CA.
    let key = std::fs::read_to_string(auditor.join(keys::VERIFYING_KEY_FILE)).unwrap();
    let ca = federation.layout.pki.join("ca.pem");
    let against = pinned(&model_path, key.trim(), &ca);
    assert_eq!(failures(&report_path, &against), Vec::<String>::new());

    // Without a pinned key (or without the CA) nothing vouches for the signatures: never PASS,
    // never verified.
    for unpinned in [
        Against {
            auditor_key: None,
            ..against
        },
        Against {
            ca: None,
            ..against
        },
    ] {
        let checks = verify(&report_path, &unpinned);
        let signature = checks
            .iter()
            .find(|c| c.name == "auditor signature")
            .unwrap();
        assert_eq!(
            signature.verdict,
            if unpinned.auditor_key.is_none() {
                Verdict::NotChecked
            } else {
                Verdict::Pass
            },
            "{signature}"
        );
        assert!(
            checks.iter().all(|c| c.verdict != Verdict::Fail),
            "{:?}",
            failed(&checks)
        );
        assert!(checks.iter().any(|c| c.verdict == Verdict::NotChecked));
        let (verified, line) = conclusion(&checks, false);
        assert!(
            !verified && line.starts_with("report NOT verified"),
            "{line}"
        );
    }

    // Tampering with any field is caught and the field named.
    let original: Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    let tampered_path = federation.dir().join("tampered.json");
    type Edit = fn(&mut Value);
    let edits: [(&str, Edit); 10] = [
        ("generated_at", |r| {
            r["generated_at"] = "2020-01-01T00:00:00Z".into()
        }),
        ("federation_id", |r| r["federation_id"] = "another".into()),
        ("round", |r| r["round"] = 99.into()),
        ("model.content_hash", |r| {
            r["model"]["content_hash"] = "sha256:00".into()
        }),
        ("thresholds.min_group_size", |r| {
            r["thresholds"]["min_group_size"] = 1.into()
        }),
        ("participants[0]", |r| {
            r["participants"][0]["ciphertext_sha256"] = "00".repeat(32).into()
        }),
        ("transcript.entries", |r| {
            r["transcript"]["entries"][2]["sha256"] = "11".repeat(32).into()
        }),
        ("aggregate.groups", |r| {
            let n = r["aggregate"]["groups"][0]["counts"]["n"].as_u64().unwrap();
            r["aggregate"]["groups"][0]["counts"]["n"] = (n + 1).into();
        }),
        ("metrics[0]", |r| {
            r["metrics"][0]["demographic_parity_difference"] = 0.0.into()
        }),
        ("dropped", |r| r["dropped"] = serde_json::json!(["org-9"])),
    ];
    for (field, edit) in edits {
        let mut value = original.clone();
        edit(&mut value);
        std::fs::write(
            &tampered_path,
            serde_json::to_string_pretty(&value).unwrap(),
        )
        .unwrap();
        let failed = failures(&tampered_path, &against);
        assert!(
            failed.iter().any(|f| f.contains(field)),
            "tampering with {field} went unnamed: {failed:?}"
        );
    }
    // A tampered field with its digest updated to match: the signature no longer verifies.
    let mut value = original.clone();
    value["generated_at"] = "2020-01-01T00:00:00Z".into();
    let stated: FairnessReport = serde_json::from_value(value.clone()).unwrap();
    value["signed_sections"] = serde_json::to_value(accord_auditor::sections(
        &serde_json::to_value(&stated).unwrap(),
    ))
    .unwrap();
    std::fs::write(
        &tampered_path,
        serde_json::to_string_pretty(&value).unwrap(),
    )
    .unwrap();
    let failed = failures(&tampered_path, &against);
    assert!(
        failed
            .iter()
            .any(|f| f.starts_with("auditor signature: signature")),
        "{failed:?}"
    );
    // A forged signature, and a report re-signed by another key.
    let mut value = original.clone();
    value["signature"] = "00".repeat(64).into();
    std::fs::write(
        &tampered_path,
        serde_json::to_string_pretty(&value).unwrap(),
    )
    .unwrap();
    assert!(
        failures(&tampered_path, &against)
            .iter()
            .any(|f| f.contains("signature"))
    );
    let mut value = original.clone();
    value["auditor"]["verifying_key"] = "ab".repeat(32).into();
    std::fs::write(
        &tampered_path,
        serde_json::to_string_pretty(&value).unwrap(),
    )
    .unwrap();
    assert!(
        failures(&tampered_path, &against)
            .iter()
            .any(|f| f.contains("auditor.verifying_key"))
    );

    // The model file: another model (its hash no longer matches the report).
    let mut other = model.clone();
    other.intercept += 0.5;
    let other = other.seal();
    let other_path = federation.dir().join("other-model.json");
    other.write(&other_path).unwrap();
    let failed = failures(
        &report_path,
        &Against {
            model: Some(&other_path),
            ..against
        },
    );
    assert!(
        failed.iter().any(|f| f.contains("model.content_hash")),
        "{failed:?}"
    );
    // ... or the same file edited by hand (its own content hash fails).
    let text = std::fs::read_to_string(&model_path).unwrap().replacen(
        "\"intercept\": ",
        "\"intercept\": 1",
        1,
    );
    std::fs::write(&other_path, text).unwrap();
    let failed = failures(
        &report_path,
        &Against {
            model: Some(&other_path),
            ..against
        },
    );
    assert!(
        failed.iter().any(|f| f.contains("model.content_hash")),
        "{failed:?}"
    );
    assert_eq!(report_path.file_name().unwrap(), REPORT_JSON);

    recompute_binds_the_aggregate_to_the_participants_messages(
        &federation,
        &auditor,
        &report_path,
        &against,
    );
}

/// `--recompute` on the honest report, on a record with an altered message, and on reports the
/// real auditor signed over what a dishonest coordinator handed it.
fn recompute_binds_the_aggregate_to_the_participants_messages(
    federation: &TestFederation,
    auditor: &Path,
    report_path: &Path,
    against: &Against<'_>,
) {
    let out = federation.dir();
    let bundle = auditor.join(keys::SERVER_BUNDLE_FILE);
    let record_path = out.join(RECORD_FILE);
    let altered_path = out.join("altered-record.bin");
    let recompute = |report: &Path, record: &Path| {
        verify(
            report,
            &Against {
                recompute: Some(Recompute {
                    server_bundle: &bundle,
                    record,
                }),
                ..*against
            },
        )
    };

    // The honest report: the replay gives the very aggregate the auditor decrypted.
    let checks = recompute(report_path, &record_path);
    assert_eq!(failed(&checks), Vec::<String>::new());
    assert!(
        checks
            .iter()
            .any(|c| c.name == "aggregate recomputed" && c.verdict == Verdict::Pass)
    );
    assert!(conclusion(&checks, true).0);

    // One byte of a recorded share-keys message altered: the record is not the one the
    // transcript binds, and the message is named.
    let record_bytes = std::fs::read(&record_path).unwrap();
    let mut record = AggregationRecord::decode(record_bytes.as_slice()).unwrap();
    assert_eq!(
        record.threads as usize,
        accord_crypto::he::inputs::default_threads()
    );
    let sender = record.messages[4].sender.clone();
    let message = record.messages[4].message.as_mut().unwrap();
    assert_eq!(message.stage(), accord_proto::v1::SecAggStage::ShareKeys);
    message.body[10] ^= 0x01;
    let altered_message = message.clone();
    let altered = record.encode_to_vec();
    std::fs::write(&altered_path, &altered).unwrap();
    let failed_checks = failed(&recompute(report_path, &altered_path));
    assert!(
        failed_checks
            .iter()
            .any(|f| f.starts_with("recorded messages: recorded message 4 (share keys:")),
        "{failed_checks:?}"
    );
    assert!(
        failed_checks
            .iter()
            .any(|f| f.starts_with("aggregation record: transcript.entries")),
        "{failed_checks:?}"
    );

    // A coordinator that alters a message, fixes the transcript to match and has the real
    // auditor sign: the replay checks the sender's signature and names the message.
    let forged = forge(out, auditor, "forged-message", |transcript, aggregate| {
        transcript.entries[2 + 4] = transcript::message_entry(&sender, &altered_message);
        rebind(transcript, transcript::RECORD_LABEL, &altered);
        aggregate.to_vec()
    });
    let failed_checks = failed(&recompute(&forged, &altered_path));
    assert_eq!(failed_checks.len(), 1, "{failed_checks:?}");
    assert!(
        failed_checks[0].starts_with(&format!(
            "aggregate recomputed: recorded message 4 (share keys from '{sender}') is refused: the signature of '{sender}' does not verify"
        )),
        "{failed_checks:?}"
    );

    // A coordinator that hands the auditor another aggregate (two groups' statistics swapped,
    // with their commitment and blinding sums, so the auditor's check of the proven counts
    // passes), which the real auditor decrypts and signs: every other check passes, the replay
    // does not.
    let report: FairnessReport =
        serde_json::from_str(&std::fs::read_to_string(report_path).unwrap()).unwrap();
    let layout = layout_of(&report.groups).unwrap();
    let fields = layout.fields();
    let substituted = forge(out, auditor, "substituted", |transcript, aggregate| {
        let mut file = accord_proto::v1::EncryptedAggregate::decode(aggregate).unwrap();
        let swap_points = |bytes: &mut Vec<u8>| {
            for i in 0..fields {
                let (a, b) = (32 * i, 32 * (fields + i));
                for k in 0..32 {
                    bytes.swap(a + k, b + k);
                }
            }
        };
        for i in 0..fields {
            file.values.swap(i, fields + i);
        }
        file.kept.swap(0, 1);
        let sums = file.count_commitments.as_mut().expect("counts are proven");
        swap_points(&mut sums.randomness);
        swap_points(&mut sums.commitments);
        swap_points(&mut file.blinding_sum);
        let bytes = file.encode_to_vec();
        rebind(transcript, transcript::AGGREGATE_LABEL, &bytes);
        bytes
    });
    // The same aggregate with one group's n and positives swapped but not their commitment
    // sums (as if counts were inflated beyond what was proven): the auditor refuses to sign.
    let inflated = try_forge(out, auditor, "inflated", |transcript, aggregate| {
        let mut file = accord_proto::v1::EncryptedAggregate::decode(aggregate).unwrap();
        let kept = (0..layout.groups())
            .find(|g| report.aggregate.groups[*g].counts.is_some())
            .unwrap();
        file.values.swap(kept * fields, kept * fields + 1);
        let bytes = file.encode_to_vec();
        rebind(transcript, transcript::AGGREGATE_LABEL, &bytes);
        bytes
    })
    .unwrap_err();
    assert!(
        format!("{inflated:#}").contains("not the sum of the participants' proven counts"),
        "{inflated:#}"
    );
    assert_eq!(failures(&substituted, against), Vec::<String>::new());
    let failed_checks = failed(&recompute(&substituted, &record_path));
    assert_eq!(failed_checks.len(), 1, "{failed_checks:?}");
    assert!(
        failed_checks[0]
            .starts_with("aggregate recomputed: aggregate.ciphertext_sha256: the report states"),
        "{failed_checks:?}"
    );
    // A coordinator stating stronger secure-aggregation parameters than it ran with (a higher
    // threshold in force): the auditor signs what it is handed, every other check passes, and
    // the replay's plan contradicts the report.
    let misstated = forge(out, auditor, "misstated", |transcript, aggregate| {
        let stated = transcript.secure_aggregation.clone();
        transcript.secure_aggregation = stated.replacen("threshold t = ", "threshold t = 9", 1);
        assert_ne!(transcript.secure_aggregation, stated);
        aggregate.to_vec()
    });
    assert_eq!(failures(&misstated, against), Vec::<String>::new());
    let failed_checks = failed(&recompute(&misstated, &record_path));
    assert_eq!(failed_checks.len(), 1, "{failed_checks:?}");
    assert!(
        failed_checks[0]
            .starts_with("parameters recomputed: parameters.secure_aggregation: the report states"),
        "{failed_checks:?}"
    );
}

/// What a dishonest coordinator hands the auditor: its transcript and aggregate rewritten by
/// `rewrite` (which returns the new aggregate's bytes), in `out/name`; returns the report the
/// real auditor writes and signs from them.
fn forge(
    out: &Path,
    auditor: &Path,
    name: &str,
    rewrite: impl FnOnce(&mut RoundTranscript, &[u8]) -> Vec<u8>,
) -> PathBuf {
    try_forge(out, auditor, name, rewrite).unwrap()
}

/// [`forge`], returning the auditor's refusal instead of panicking on it.
fn try_forge(
    out: &Path,
    auditor: &Path,
    name: &str,
    rewrite: impl FnOnce(&mut RoundTranscript, &[u8]) -> Vec<u8>,
) -> anyhow::Result<PathBuf> {
    let dir = out.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut transcript: RoundTranscript =
        serde_json::from_str(&std::fs::read_to_string(out.join(TRANSCRIPT_FILE)).unwrap()).unwrap();
    let aggregate = rewrite(
        &mut transcript,
        &std::fs::read(out.join(AGGREGATE_FILE)).unwrap(),
    );
    transcript.head = transcript::head(&transcript.entries);
    std::fs::write(
        dir.join(TRANSCRIPT_FILE),
        serde_json::to_string(&transcript).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join(AGGREGATE_FILE), aggregate).unwrap();
    Ok(write_report(auditor, &dir, &dir, 100)?.0)
}

/// Points the transcript's entry labelled `label` at `bytes`.
fn rebind(transcript: &mut RoundTranscript, label: &str, bytes: &[u8]) {
    let entry = transcript
        .entries
        .iter_mut()
        .find(|e| e.label == label)
        .unwrap();
    *entry = Entry::of(label, bytes);
}

/// Sets every record's `csat` to 5 in each participant's CSV: one class only (all satisfied).
fn every_csat_five(federation: &TestFederation) {
    for name in &federation.layout.names {
        let path = federation.layout.data_file(name);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        let columns: Vec<&str> = header.split(',').collect();
        let csat = columns.iter().position(|c| *c == "csat").unwrap();
        let mut out = format!("{header}\n");
        for line in lines {
            let mut cells: Vec<&str> = line.split(',').collect();
            assert_eq!(cells.len(), columns.len(), "an unquoted row: {line}");
            cells[csat] = "5";
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        std::fs::write(&path, out).unwrap();
    }
}

/// Issue 12, points 1 and 4: with one class the model's AUC is undefined, written as `null`, and
/// the untampered model.json is read back by `audit verify --model` (it failed with "invalid
/// type: null, expected f64"); the report's comparisons name the rate that is undefined for every
/// group, and its secure-aggregation line states the threshold and degree in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_class_gives_an_undefined_auc_that_verify_reads_back() {
    let federation = TestFederation::new(3, 300, 12);
    every_csat_five(&federation);
    let (federation, auditor, report_path) = audited(federation).await;
    let model_path = federation.dir().join("model.json");
    let raw: Value = serde_json::from_slice(&std::fs::read(&model_path).unwrap()).unwrap();
    assert_eq!(raw["quality"]["auc"], Value::Null, "{}", raw["quality"]);
    let model = ModelArtefact::load(&model_path).expect("Accord reads its own model.json");
    let quality = model.quality.expect("the final model was evaluated");
    assert_eq!(
        (quality.round, quality.auc, quality.positive_rate),
        (ROUNDS, None, 1.0)
    );
    let rounds = std::fs::read_to_string(federation.dir().join("rounds.csv")).unwrap();
    let header: Vec<&str> = rounds.lines().next().unwrap().split(',').collect();
    let auc = header.iter().position(|c| *c == "auc").unwrap();
    for row in rounds.lines().skip(1) {
        assert_eq!(row.split(',').nth(auc), Some(""), "AUC undefined: {row}");
    }

    let key = std::fs::read_to_string(auditor.join(keys::VERIFYING_KEY_FILE)).unwrap();
    let ca = federation.layout.pki.join("ca.pem");
    let against = pinned(&model_path, key.trim(), &ca);
    assert_eq!(failures(&report_path, &against), Vec::<String>::new());

    let report: FairnessReport =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    // Three members, threshold 0 and neighbours 0 configured: t = 2, the complete graph.
    assert!(
        report.parameters.secure_aggregation.contains(
            "in force: threshold t = 2 of 3 members, 2 neighbours each (the complete graph)"
        ),
        "{}",
        report.parameters.secure_aggregation
    );
    // No actual negative anywhere: every FPR is undefined, so is equalized odds, and the
    // coverage says why for each group compared.
    let gender = report
        .metrics
        .iter()
        .find(|b| b.breakdown == "gender")
        .unwrap();
    assert_eq!(gender.equalized_odds_difference, None);
    let fpr = gender
        .coverage
        .iter()
        .find(|c| c.rate == "false_positive_rate")
        .unwrap();
    assert!(fpr.covers.is_empty(), "{fpr:?}");
    for compared in &gender.compared {
        let left = fpr.left_out.iter().find(|l| &l.group == compared).unwrap();
        assert_eq!(
            left.reason,
            "false_positive_rate undefined: no actual negatives"
        );
    }
}

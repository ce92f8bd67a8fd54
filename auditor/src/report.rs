//! `fairness-report.json`: the auditor's signed statement of how the consortium's model treats
//! customer groups, with everything needed to check it.
//!
//! The auditor signs a table of SHA-256 digests, one per section of the report (a top-level
//! field, or one entry of an object or list at the top level), so a verifier that finds a
//! digest mismatch can name the altered field, and one that finds the table altered sees the
//! signature fail.

use crate::error::{AuditorError, CommitmentError, TranscriptError};
use crate::metrics::{self, BreakdownMetrics, DEFINITIONS, Thresholds};
use accord_crypto::he::inputs::OpenedAggregate;
use accord_crypto::he::keys::AuditorKeys;
use accord_crypto::he::transcript::{self, CommitmentRecord, Entry, GroupsRecord, RoundTranscript};
use accord_crypto::secagg::Context;
use accord_proto::fairness::{FairnessLayout, FairnessLayoutError, GroupStatistics};
use accord_proto::v1::{Intersection, Phase, ProtectedAttribute, Schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The version tag of the report format.
pub const REPORT_FORMAT: &str = "accord.fairness-report.v1";

/// The largest report `audit verify` reads (a report of thousands of groups is a few MiB).
pub const MAX_REPORT_BYTES: u64 = 64 << 20;

/// `fairness-report.json`: what the auditor signs about one federation's final model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FairnessReport {
    /// [`REPORT_FORMAT`].
    pub format: String,
    /// The federation whose model was audited.
    pub federation_id: String,
    /// The round of the fairness phase (after the last training round).
    pub round: u32,
    /// When the auditor wrote the report (RFC 3339, UTC).
    pub generated_at: String,
    /// The model whose decisions were counted.
    pub model: ModelSection,
    /// The cryptographic parameters in force.
    pub parameters: ParametersSection,
    /// The policy thresholds the metrics apply.
    pub thresholds: Thresholds,
    /// The protected attributes, their categories, intersections and histogram bins.
    pub groups: GroupsRecord,
    /// Each contributor with its signed commitment to the ciphertext it submitted.
    pub participants: Vec<CommitmentRecord>,
    /// Selected participants whose statistics are not in the aggregate.
    pub dropped: Vec<String>,
    /// Participants the coordinator named for deviating from the protocol in the fairness
    /// phase ("name (phase, stage): reason"), from the transcript.
    #[serde(default)]
    pub culprits: Vec<String>,
    /// The coordinator's transcript of the phase, as a hash chain.
    pub transcript: TranscriptSection,
    /// The decrypted aggregate, per group.
    pub aggregate: AggregateSection,
    /// The metric names used below and their definitions.
    pub definitions: BTreeMap<String, String>,
    /// The metrics per breakdown (each protected attribute, then each intersection).
    pub metrics: Vec<BreakdownMetrics>,
    /// Who signed.
    pub auditor: AuditorSection,
    /// The digest of every other section ([`sections`]), which the signature covers.
    pub signed_sections: Vec<Section>,
    /// Ed25519 (hex) over [`sections_digest`] of `signed_sections`.
    pub signature: String,
}

/// The model a report is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// model.json's content hash.
    pub content_hash: String,
    /// The fairness-aware training the model was trained with ("none" if plain FedAvg).
    pub mitigation: String,
    /// The per-group decision thresholds in force when the statistics were counted ("none":
    /// `thresholds.decision_threshold` for every group).
    pub thresholds_in_force: String,
}

/// The cryptographic parameters the fairness phase ran with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParametersSection {
    /// The tfhe parameter sets, in words.
    pub tfhe: String,
    /// SHA-256 of the tfhe parameters the coordinator used (from the transcript).
    pub tfhe_sha256: String,
    /// SHA-256 of the auditor's public bundle the participants encrypted under.
    pub auditor_bundle_sha256: String,
    /// The secure-aggregation parameters in force, in words
    /// ([`accord_crypto::he::handoff::InForce::describe`]).
    pub secure_aggregation: String,
    /// SHA-256 of the configured secure-aggregation parameters (protobuf).
    pub secure_aggregation_sha256: String,
    /// Counts are summed modulo 2^`value_bits`.
    pub value_bits: u32,
    /// Whether the participants' counts were proven within their bounds, and what was checked.
    #[serde(default)]
    pub input_validity: String,
}

/// The coordinator's transcript as the report carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscriptSection {
    /// Every entry of the chain, in order.
    pub entries: Vec<Entry>,
    /// The chain's head ([`accord_crypto::he::transcript::head`]).
    pub head: String,
}

/// The decrypted aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateSection {
    /// SHA-256 of the encrypted aggregate the coordinator handed over (the transcript's last entry).
    pub ciphertext_sha256: String,
    /// Per group, in the layout's order.
    pub groups: Vec<AggregateGroup>,
}

/// One group's decrypted counts; none where the policy suppressed the group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateGroup {
    /// The group's label ("gender=female", "gender=female × age_band=60+").
    pub group: String,
    /// The group had fewer than `min_group_size` records and was zeroed before decryption.
    pub suppressed: bool,
    /// The group's counts; None when suppressed.
    pub counts: Option<GroupStatistics>,
}

/// The auditor that signed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditorSection {
    /// The auditor's Ed25519 verifying key (hex), the one participants pinned.
    pub verifying_key: String,
}

/// One signed section: its path in the report and the SHA-256 of its canonical JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// `field`, `field.key` or `field[index]`.
    pub path: String,
    /// SHA-256 (hex) of the section's JSON.
    pub sha256: String,
}

/// The sections of a report's JSON (without `signed_sections` and `signature`), in order: a
/// top-level field, or one entry of a non-empty object or list at the top level (`model.content_hash`,
/// `participants[2]`), each with the SHA-256 (hex) of its JSON.
pub fn sections(report: &Value) -> Vec<Section> {
    let digest = |v: &Value| hex::encode(Sha256::digest(serde_json::to_vec(v).expect("JSON")));
    let mut out = Vec::new();
    let Some(fields) = report.as_object() else {
        return out;
    };
    for (key, value) in fields {
        if key == "signed_sections" || key == "signature" {
            continue;
        }
        match value {
            Value::Object(inner) if !inner.is_empty() => {
                out.extend(inner.iter().map(|(k, v)| Section {
                    path: format!("{key}.{k}"),
                    sha256: digest(v),
                }))
            }
            Value::Array(items) if !items.is_empty() => {
                out.extend(items.iter().enumerate().map(|(i, v)| Section {
                    path: format!("{key}[{i}]"),
                    sha256: digest(v),
                }))
            }
            other => out.push(Section {
                path: key.clone(),
                sha256: digest(other),
            }),
        }
    }
    out
}

/// What the auditor signs: SHA-256 of the domain tag `accord/fairness-report/v1` and the
/// sections table's JSON.
pub fn sections_digest(sections: &[Section]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"accord/fairness-report/v1");
    hasher.update(serde_json::to_vec(sections).expect("JSON"));
    hasher.finalize().into()
}

/// The fairness layout of the schema subset a report's groups record stands for.
///
/// # Errors
/// [`FairnessLayoutError`] when the record names an intersection of unknown attributes or
/// fewer than 2 bins.
pub fn layout_of(groups: &GroupsRecord) -> Result<FairnessLayout, FairnessLayoutError> {
    let schema = Schema {
        protected_attributes: groups
            .attributes
            .iter()
            .map(|(name, categories)| ProtectedAttribute {
                name: name.clone(),
                categories: categories.clone(),
                use_as_feature: false,
            })
            .collect(),
        intersections: groups
            .intersections
            .iter()
            .map(|a| Intersection {
                attributes: a.clone(),
            })
            .collect(),
        ..Default::default()
    };
    FairnessLayout::new(&schema, groups.histogram_bins as usize)
}

/// The context a fairness round's commitments were signed in.
pub fn fairness_context(federation_id: &str, round: u32) -> Context {
    Context {
        federation: federation_id.to_owned(),
        round,
        phase: Phase::Fairness,
    }
}

/// Checks a commitment's signature (Ed25519, in `context`) against the key of the certificate
/// it carries. Whether that certificate belongs to the consortium is the caller's check.
///
/// # Errors
/// [`CommitmentError`] naming the malformed field, or a signature that does not verify.
pub fn commitment_verifies(
    context: &Context,
    record: &CommitmentRecord,
) -> Result<(), CommitmentError> {
    let certificate =
        hex::decode(&record.certificate_der).map_err(CommitmentError::CertificateHex)?;
    let key = accord_crypto::pki::ed25519_public_key(&certificate)?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key)?;
    let commitment = accord_crypto::he::inputs::Commitment {
        participant: record.participant.clone(),
        certificate_der: certificate,
        ciphertext_sha256: hex::decode(&record.ciphertext_sha256)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(CommitmentError::Digest)?,
        signature: hex::decode(&record.signature).map_err(CommitmentError::SignatureHex)?,
    };
    if !accord_crypto::he::inputs::verify_commitment(context, &commitment, &key) {
        return Err(CommitmentError::BadSignature);
    }
    Ok(())
}

/// Builds and signs the report (generated at `generated_at`, RFC 3339) from the coordinator's
/// transcript and encrypted aggregate, flagging groups under `small_group_size` records.
///
/// # Errors
/// [`AuditorError::Transcript`] when the transcript, a commitment or the aggregate's place in it
/// does not hold; [`AuditorError::Aggregate`] for an aggregate that does not decode;
/// [`AuditorError::ProvenCounts`] when the decrypted counts are not what the participants
/// proved. Nothing is decrypted before the transcript holds.
pub fn build(
    keys: &AuditorKeys,
    transcript: &RoundTranscript,
    aggregate_bytes: &[u8],
    small_group_size: u64,
    generated_at: String,
) -> Result<FairnessReport, AuditorError> {
    if transcript.format != transcript::TRANSCRIPT_FORMAT {
        return Err(TranscriptError::Format {
            found: transcript.format.clone(),
            expected: transcript::TRANSCRIPT_FORMAT,
        }
        .into());
    }
    if transcript::head(&transcript.entries) != transcript.head {
        return Err(TranscriptError::Head.into());
    }
    let aggregate_sha256 = hex::encode(Sha256::digest(aggregate_bytes));
    match transcript.entries.last() {
        Some(e) if e.label == transcript::AGGREGATE_LABEL && e.sha256 == aggregate_sha256 => {}
        _ => return Err(TranscriptError::AggregateNotLast.into()),
    }
    let context = fairness_context(&transcript.federation_id, transcript.round);
    for record in &transcript.participants {
        commitment_verifies(&context, record).map_err(|source| TranscriptError::Commitment {
            participant: record.participant.clone(),
            source,
        })?;
        if !transcript.entries.contains(&record.entry()) {
            return Err(TranscriptError::CommitmentNotInTranscript {
                participant: record.participant.clone(),
            }
            .into());
        }
    }
    let opened = OpenedAggregate::from_bytes(aggregate_bytes).map_err(AuditorError::Aggregate)?;
    if opened.federation_id != transcript.federation_id || opened.round != transcript.round {
        return Err(TranscriptError::OtherRound {
            aggregate_federation: opened.federation_id,
            aggregate_round: opened.round,
            transcript_federation: transcript.federation_id.clone(),
            transcript_round: transcript.round,
        }
        .into());
    }
    let layout = layout_of(&transcript.groups).map_err(TranscriptError::Groups)?;
    if opened.values.len() != layout.len() || opened.kept.len() != layout.groups() {
        return Err(TranscriptError::Size {
            values: opened.values.len(),
            flags: opened.kept.len(),
            expected_values: layout.len(),
            expected_flags: layout.groups(),
        }
        .into());
    }
    let (values, kept) = keys.decrypt(&opened.values, &opened.kept);
    // With proven inputs, every disclosed count must be the sum of what the contributors
    // committed to and proved in range: a count inflated past its bound (or any count other
    // than the proven ones) is found here, before anything is published.
    let input_validity = match &opened.proven {
        Some((sum, blindings)) => {
            let fields = layout.fields();
            let disclosed: Vec<(usize, u64)> = values
                .iter()
                .enumerate()
                .filter(|(i, _)| kept.get(i / fields).copied().unwrap_or(false))
                .map(|(i, &v)| (i, v))
                .collect();
            sum.open(keys.count_opening_key(), &disclosed, blindings)
                .map_err(AuditorError::ProvenCounts)?;
            format!(
                "range proofs: every participant's counts proven in [0, max_rows] with the layout's relations; the {} disclosed counts checked against the sum of their commitments",
                disclosed.len()
            )
        }
        None => "none: the participants' counts were not proven (input_validity = \"none\")".into(),
    };
    let counts: Vec<Option<GroupStatistics>> = layout
        .read(&values)
        .into_iter()
        .zip(&kept)
        .map(|(stats, &kept)| kept.then_some(stats))
        .collect();
    let thresholds = Thresholds {
        min_group_size: transcript.min_group_size,
        small_group_size,
        four_fifths: 0.8,
        decision_threshold: transcript.decision_threshold,
        confidence: 0.95,
        histogram_bins: layout.bins,
    };
    let groups = layout
        .offsets()
        .zip(&counts)
        .map(|((_, b, g), c)| AggregateGroup {
            group: layout.group_label(b, g),
            suppressed: c.is_none(),
            counts: c.clone(),
        })
        .collect();
    let mut report = FairnessReport {
        format: REPORT_FORMAT.into(),
        federation_id: transcript.federation_id.clone(),
        round: transcript.round,
        generated_at,
        model: ModelSection {
            content_hash: transcript.model_content_hash.clone(),
            mitigation: transcript.mitigation.clone(),
            thresholds_in_force: transcript.thresholds_in_force.clone(),
        },
        parameters: ParametersSection {
            tfhe: accord_crypto::he::describe_parameters(),
            tfhe_sha256: transcript.tfhe_parameters_sha256.clone(),
            auditor_bundle_sha256: transcript.auditor_bundle_sha256.clone(),
            secure_aggregation: transcript.secure_aggregation.clone(),
            secure_aggregation_sha256: transcript.secure_aggregation_sha256.clone(),
            value_bits: transcript.value_bits,
            input_validity,
        },
        metrics: metrics::compute(&layout, &counts, &thresholds),
        thresholds,
        groups: transcript.groups.clone(),
        participants: transcript.participants.clone(),
        dropped: transcript.dropped.clone(),
        culprits: transcript.culprits.clone(),
        transcript: TranscriptSection {
            entries: transcript.entries.clone(),
            head: transcript.head.clone(),
        },
        aggregate: AggregateSection {
            ciphertext_sha256: aggregate_sha256,
            groups,
        },
        definitions: DEFINITIONS
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        auditor: AuditorSection {
            verifying_key: keys.verifying_key_hex(),
        },
        signed_sections: vec![],
        signature: String::new(),
    };
    report.signed_sections = sections(&serde_json::to_value(&report).expect("a report serializes"));
    report.signature = hex::encode(keys.sign(&sections_digest(&report.signed_sections)));
    Ok(report)
}

//! The encrypted fairness audit: after the last round, participants send per-group statistics
//! of the final model, masked and encrypted under the auditor's key; the coordinator verifies
//! and sums them homomorphically through the same secure-aggregation stages as model updates,
//! applies the disclosure policy on ciphertexts and writes, for the auditor, the encrypted
//! aggregate (`fairness-aggregate.bin`) and the round's transcript (`fairness-transcript.json`).
//! It never holds a key that decrypts anything.

use crate::aggregation::{AggregationError, Closed, PhaseAggregator, PhaseSpec, Submission};
use crate::artefact::ModelArtefact;
use crate::config::{CoordinatorConfig, FairnessSection};
use crate::federation::FederationError;
use accord_crypto::he::inputs::{Commitment, EncryptedAggregate};
use accord_crypto::he::transcript::{
    self, CommitmentRecord, Entry, GroupsRecord, RoundTranscript, TRANSCRIPT_FORMAT,
};
use accord_crypto::he::{EncryptedInputs, FairnessPolicy, ServerMaterial, keys};
use accord_crypto::secagg::coordinator::{CoordinatorSession, StageClosed};
use accord_crypto::secagg::{Culprit, stage_label};
use accord_proto::fairness::FairnessLayout;
use accord_proto::v1::{FairnessParams, FederationDefinition, SecAggRelay, SecAggStage};
use prost::Message;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// File names the coordinator writes for the auditor.
pub const AGGREGATE_FILE: &str = "fairness-aggregate.bin";
pub const TRANSCRIPT_FILE: &str = "fairness-transcript.json";

/// The fairness audit a federation was configured with.
pub struct FairnessAudit {
    pub params: FairnessParams,
    material: Arc<ServerMaterial>,
    layout: FairnessLayout,
    max_rows: u64,
    outcome: Arc<Mutex<Option<Outcome>>>,
    /// Participants named in the fairness phase ("name (phase, stage): reason").
    culprits: Mutex<Vec<String>>,
}

/// What the fairness phase left for the auditor.
struct Outcome {
    aggregate: EncryptedAggregate,
    entries: Vec<Entry>,
    dropped: Vec<String>,
}

impl FairnessAudit {
    /// Loads the auditor's server bundle, checked against the pinned verifying key.
    pub fn load(
        config: &CoordinatorConfig,
        section: &FairnessSection,
    ) -> Result<Self, FederationError> {
        let fail = |e: String| FederationError::Fairness(e);
        let pinned = keys::parse_verifying_key(&section.auditor_verifying_key)
            .map_err(|e| fail(e.to_string()))?;
        let material = ServerMaterial::load(&section.auditor_server_bundle, &pinned)
            .map_err(|e| fail(e.to_string()))?;
        let schema = config
            .schema()
            .map_err(|_| fail("the schema is invalid".into()))?;
        let layout = FairnessLayout::new(&schema, section.histogram_bins as usize)
            .map_err(|e| fail(e.to_string()))?;
        Ok(Self {
            params: FairnessParams {
                auditor_bundle_sha256: material.public.bundle_sha256.clone(),
                auditor_verifying_key: section.auditor_verifying_key.clone(),
                histogram_bins: section.histogram_bins,
                min_group_size: section.min_group_size,
                value_bits: section.value_bits,
            },
            material: Arc::new(material),
            layout,
            max_rows: config.secure_aggregation.max_rows_per_participant,
            outcome: Arc::new(Mutex::new(None)),
            culprits: Mutex::new(Vec::new()),
        })
    }

    /// The fairness phase's aggregator: secure aggregation of encrypted statistics.
    pub fn start(&self, spec: PhaseSpec<'_>) -> Result<Box<dyn PhaseAggregator>, AggregationError> {
        let bits = self.params.value_bits;
        let most = (spec.selected.len() as u128) * u128::from(self.max_rows);
        if most >= 1u128 << bits {
            return Err(AggregationError::Fairness(format!(
                "{} participants of up to {} records could sum to {most}, which does not fit in value_bits = {bits}",
                spec.selected.len(),
                self.max_rows
            )));
        }
        let inputs = EncryptedInputs::new(
            spec.context.clone(),
            self.material.clone(),
            self.layout.len(),
            bits,
            FairnessPolicy {
                fields: self.layout.fields(),
                min_group_size: self.params.min_group_size,
            },
        )
        .map_err(|e| AggregationError::Fairness(e.to_string()))?;
        let session = CoordinatorSession::with_inputs(
            spec.context,
            spec.trust.clone(),
            inputs,
            spec.selected.clone(),
            spec.params.threshold as usize,
            spec.params.neighbours as usize,
        )?;
        Ok(Box::new(EncryptedSum {
            session,
            entries: Vec::new(),
            selected: spec.selected,
            outcome: self.outcome.clone(),
        }))
    }

    /// Records the participants named in the fairness phase, for the transcript.
    pub fn name_culprits(&self, culprits: &[String]) {
        *self.culprits.lock().expect("culprits lock") = culprits.to_vec();
    }

    /// Writes the encrypted aggregate and the transcript into `out_dir`; returns the aggregate's path.
    pub fn write_outcome(
        &self,
        definition: &FederationDefinition,
        round: u32,
        model: &ModelArtefact,
        out_dir: &Path,
    ) -> Result<PathBuf, String> {
        let Outcome {
            aggregate,
            mut entries,
            dropped,
        } = self
            .outcome
            .lock()
            .expect("outcome lock")
            .take()
            .ok_or("the fairness phase left no aggregate")?;
        let bytes = aggregate
            .to_bytes(&definition.federation_id, round)
            .map_err(|e| e.to_string())?;
        let participants: Vec<CommitmentRecord> =
            aggregate.commitments.iter().map(record).collect();
        entries.insert(0, Entry::of("model", model.content_hash.as_bytes()));
        entries.insert(
            0,
            Entry::of("federation definition", &definition.encode_to_vec()),
        );
        entries.extend(participants.iter().map(CommitmentRecord::entry));
        let culprits = self.culprits.lock().expect("culprits lock").clone();
        entries.push(Entry::of("culprits", culprits.join("\n").as_bytes()));
        entries.push(Entry::of(
            accord_crypto::he::transcript::AGGREGATE_LABEL,
            &bytes,
        ));
        let params = definition.secure_aggregation.unwrap_or_default();
        let schema = definition.schema.clone().unwrap_or_default();
        let transcript = RoundTranscript {
            format: TRANSCRIPT_FORMAT.into(),
            federation_id: definition.federation_id.clone(),
            round,
            model_content_hash: model.content_hash.clone(),
            auditor_bundle_sha256: self.params.auditor_bundle_sha256.clone(),
            tfhe_parameters_sha256: accord_crypto::he::parameters_sha256(),
            secure_aggregation: format!(
                "Z_2^{} masks reduced modulo 2^{}, threshold {} (0: more than half), neighbours {} (0: complete graph up to 21)",
                accord_crypto::he::inputs::MASK_RING.bits(),
                self.params.value_bits,
                params.threshold,
                params.neighbours
            ),
            secure_aggregation_sha256: accord_crypto::hash::sha256_hex(&params.encode_to_vec()),
            value_bits: self.params.value_bits,
            min_group_size: self.params.min_group_size,
            decision_threshold: definition
                .evaluation
                .as_ref()
                .map_or(0.5, |e| e.decision_threshold),
            mitigation: describe_mitigation(&model.training.mitigation),
            thresholds_in_force: model
                .postprocessing
                .as_ref()
                .map_or_else(|| "none".into(), |p| p.describe()),
            groups: GroupsRecord {
                attributes: self
                    .layout
                    .attributes
                    .iter()
                    .map(|(a, c)| (a.clone(), c[..c.len() - 1].to_vec()))
                    .collect(),
                intersections: schema
                    .intersections
                    .iter()
                    .map(|i| i.attributes.clone())
                    .collect(),
                histogram_bins: self.params.histogram_bins,
            },
            participants,
            dropped,
            culprits,
            head: transcript::head(&entries),
            entries,
        };
        let aggregate_path = out_dir.join(AGGREGATE_FILE);
        std::fs::write(&aggregate_path, &bytes)
            .map_err(|e| format!("{}: {e}", aggregate_path.display()))?;
        let transcript_path = out_dir.join(TRANSCRIPT_FILE);
        let text = serde_json::to_string_pretty(&transcript).expect("a transcript serializes");
        std::fs::write(&transcript_path, text)
            .map_err(|e| format!("{}: {e}", transcript_path.display()))?;
        Ok(aggregate_path)
    }
}

fn describe_mitigation(m: &crate::mitigation::MitigationSection) -> String {
    if m.kind == "none" {
        return "none".into();
    }
    format!(
        "{} (strength {}, targeting {} over {}, groups of at least {} records)",
        m.kind, m.strength, m.metric, m.attribute, m.min_group_size
    )
}

fn record(c: &Commitment) -> CommitmentRecord {
    CommitmentRecord {
        participant: c.participant.clone(),
        certificate_der: hex::encode(&c.certificate_der),
        ciphertext_sha256: hex::encode(c.ciphertext_sha256),
        signature: hex::encode(&c.signature),
    }
}

/// Secure aggregation of encrypted statistics, recording every accepted message for the transcript.
struct EncryptedSum {
    session: CoordinatorSession<EncryptedInputs>,
    entries: Vec<Entry>,
    selected: BTreeSet<String>,
    outcome: Arc<Mutex<Option<Outcome>>>,
}

impl PhaseAggregator for EncryptedSum {
    fn accept(
        &mut self,
        participant: &str,
        submission: Submission,
    ) -> Result<(), AggregationError> {
        let Submission::Signed {
            certificate_der,
            message,
        } = submission
        else {
            return Err(AggregationError::Fairness(format!(
                "'{participant}' sent plain values; fairness statistics must be encrypted"
            )));
        };
        let stage = self.session.stage();
        let bytes = message.encode_to_vec();
        self.session
            .receive(participant, &certificate_der, message)?;
        self.entries.push(Entry::of(
            format!("{}:{participant}", stage_label(stage)),
            &bytes,
        ));
        Ok(())
    }

    fn stage(&self) -> SecAggStage {
        self.session.stage()
    }

    fn expected(&self) -> BTreeSet<String> {
        self.session.expected()
    }

    fn received(&self) -> BTreeSet<String> {
        self.session.received()
    }

    fn close_stage(&mut self) -> Result<Closed, AggregationError> {
        Ok(match self.session.close_stage()? {
            StageClosed::Next(_) => Closed::Next,
            StageClosed::Done { sum, contributors } => {
                *self.outcome.lock().expect("outcome lock") = Some(Outcome {
                    aggregate: sum,
                    entries: std::mem::take(&mut self.entries),
                    dropped: self.selected.difference(&contributors).cloned().collect(),
                });
                Closed::Done {
                    sum: vec![],
                    contributors,
                }
            }
        })
    }

    fn relay(&self, participant: &str) -> Option<SecAggRelay> {
        Some(self.session.relay_for(participant))
    }

    fn culprits(&self) -> Vec<Culprit> {
        self.session.culprits().to_vec()
    }
}

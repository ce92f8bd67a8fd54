//! The encrypted fairness audit: after the last round, participants send per-group statistics
//! of the final model, masked and encrypted under the auditor's key; the coordinator verifies
//! and sums them homomorphically through the same secure-aggregation stages as model updates,
//! applies the disclosure policy on ciphertexts and writes, for the auditor, the encrypted
//! aggregate (`fairness-aggregate.bin`) and the round's transcript (`fairness-transcript.json`).
//! It never holds a key that decrypts anything.
//!
//! Nobody has to trust that aggregate: the coordinator also writes every message it accepted
//! (`fairness-record.bin`, bound by the transcript), and [`accord_crypto::he::handoff::recompute`] replays them
//! through a fresh session built the same way ([`FairnessPhase::session`]), which checks every
//! signature again and computes the aggregate byte for byte, with the server key alone. The
//! files and the replay are defined once, for coordinator and auditor, in
//! [`accord_crypto::he::handoff`].

use crate::aggregation::{AggregationError, Closed, PhaseAggregator, PhaseSpec, Submission};
use crate::config::{CoordinatorConfig, FairnessSection};
use accord_crypto::he::handoff::{
    AGGREGATE_FILE, FairnessPhase, InForce, RECORD_FILE, SessionError, TRANSCRIPT_FILE,
    commitment_record,
};
use accord_crypto::he::inputs::EncryptedAggregate;
use accord_crypto::he::transcript::{
    self, CommitmentRecord, Entry, GroupsRecord, RoundTranscript, TRANSCRIPT_FORMAT,
};
use accord_crypto::he::{EncryptedInputs, ServerMaterial, keys};
use accord_crypto::secagg::Culprit;
use accord_crypto::secagg::validity::Statement;
use accord_crypto::secagg::{CoordinatorSession, StageClosed};
use accord_proto::artefact::ModelArtefact;
use accord_proto::fairness::FairnessLayout;
use accord_proto::v1::{
    AggregationRecord, FairnessParams, FederationDefinition, Phase, RecordedMessage, Schema,
    SecAggRelay, SecAggStage,
};
use prost::Message;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The fairness audit a federation was configured with.
pub struct FairnessAudit {
    /// The audit's parameters as announced to participants: the auditor's keys and the disclosure
    /// policy.
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
    selected: BTreeSet<String>,
    threads: usize,
    /// Every message the session accepted, in order.
    messages: Vec<RecordedMessage>,
    dropped: Vec<String>,
    /// The secure-aggregation parameters in force, as the session derived them.
    in_force: InForce,
}

/// Why the fairness audit cannot start or its outcome cannot be handed to the auditor.
#[derive(Debug, thiserror::Error)]
pub enum FairnessError {
    /// The pinned auditor key, the server bundle or the aggregate's encoding was refused.
    #[error("fairness: {0}")]
    Keys(#[from] accord_crypto::he::HeError),
    /// The configuration's schema is invalid (its own error is reported at load).
    #[error("fairness: the schema is invalid")]
    Schema,
    /// The schema and `histogram_bins` give no fairness layout.
    #[error("fairness: {0}")]
    Layout(#[from] accord_proto::fairness::FairnessLayoutError),
    /// The fairness phase ended without an aggregate to hand over.
    #[error("fairness: the fairness phase left no aggregate")]
    NoAggregate,
    /// A hand-off file cannot be written.
    #[error("fairness: {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl FairnessError {
    fn write(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Write {
            path: path.to_owned(),
            source,
        }
    }
}

impl FairnessAudit {
    /// Loads the auditor's server bundle, checked against the pinned verifying key.
    pub fn load(
        config: &CoordinatorConfig,
        section: &FairnessSection,
    ) -> Result<Self, FairnessError> {
        let pinned = keys::parse_verifying_key(&section.auditor_verifying_key)?;
        let material = ServerMaterial::load(&section.auditor_server_bundle, &pinned)?;
        let schema = config.schema().map_err(|_| FairnessError::Schema)?;
        let params = FairnessParams {
            auditor_bundle_sha256: material.public.bundle_sha256.clone(),
            auditor_verifying_key: section.auditor_verifying_key.clone(),
            histogram_bins: section.histogram_bins,
            min_group_size: section.min_group_size,
            value_bits: section.value_bits,
        };
        Self::new(
            params,
            Arc::new(material),
            &schema,
            config.secure_aggregation.max_rows_per_participant,
        )
    }

    /// The audit of a federation with `schema` under `params`, computing with `material`.
    fn new(
        params: FairnessParams,
        material: Arc<ServerMaterial>,
        schema: &Schema,
        max_rows: u64,
    ) -> Result<Self, FairnessError> {
        let layout = FairnessLayout::new(schema, params.histogram_bins as usize)?;
        Ok(Self {
            params,
            material,
            layout,
            max_rows,
            outcome: Arc::new(Mutex::new(None)),
            culprits: Mutex::new(Vec::new()),
        })
    }

    /// The fairness phase's aggregator: secure aggregation of encrypted statistics.
    pub fn start(&self, spec: PhaseSpec<'_>) -> Result<Box<dyn PhaseAggregator>, AggregationError> {
        let bits = self.params.value_bits;
        let most = (spec.selected.len() as u128) * u128::from(self.max_rows);
        if most >= 1u128 << bits {
            return Err(AggregationError::CountsOverflow {
                participants: spec.selected.len(),
                max_rows: self.max_rows,
                most,
                bits,
            });
        }
        let threads = accord_crypto::he::inputs::default_threads();
        let selected = spec.selected.clone();
        Ok(Box::new(EncryptedSum {
            session: self.session(spec, threads)?.recording(),
            selected,
            threads,
            outcome: self.outcome.clone(),
        }))
    }

    /// The phase's settings, as [`accord_crypto::he::handoff`] builds its sessions from them.
    fn phase(&self) -> FairnessPhase<'_> {
        FairnessPhase {
            params: &self.params,
            material: &self.material,
            layout: &self.layout,
            max_rows: self.max_rows,
        }
    }

    /// What each participant's counts must be proven to meet: every count in [0, max_rows] and
    /// the fairness layout's relations (e.g. true positives at most positives at most n).
    pub fn count_statement(&self) -> Result<Statement, AggregationError> {
        self.phase()
            .count_statement()
            .map_err(|e| SessionError::Statement(e).into())
    }

    /// Records the participants named in the fairness phase, for the transcript.
    pub fn name_culprits(&self, culprits: &[String]) {
        *self.culprits.lock().expect("culprits lock") = culprits.to_vec();
    }

    /// A fresh session of the fairness phase, built as its replay builds one
    /// ([`FairnessPhase::session`]).
    fn session(
        &self,
        spec: PhaseSpec<'_>,
        threads: usize,
    ) -> Result<CoordinatorSession<EncryptedInputs>, AggregationError> {
        self.phase()
            .session(
                spec.context,
                spec.trust,
                spec.params,
                spec.selected,
                threads,
            )
            .map_err(|e| match e {
                SessionError::SecAgg(e) => AggregationError::SecAgg(e),
                other => AggregationError::FairnessSession(other),
            })
    }

    /// Writes the encrypted aggregate, the record and the transcript into `out_dir`; returns the
    /// aggregate's path.
    pub fn write_outcome(
        &self,
        definition: &FederationDefinition,
        round: u32,
        model: &ModelArtefact,
        out_dir: &Path,
    ) -> Result<PathBuf, FairnessError> {
        let Outcome {
            aggregate,
            selected,
            threads,
            messages,
            dropped,
            in_force,
        } = self
            .outcome
            .lock()
            .expect("outcome lock")
            .take()
            .ok_or(FairnessError::NoAggregate)?;
        let bytes = aggregate.to_bytes(&definition.federation_id, round)?;
        let participants: Vec<CommitmentRecord> = aggregate
            .commitments
            .iter()
            .map(commitment_record)
            .collect();
        let definition_bytes = definition.encode_to_vec();
        let mut entries = vec![
            Entry::of(transcript::DEFINITION_LABEL, &definition_bytes),
            Entry::of("model", model.content_hash.as_bytes()),
        ];
        entries.extend(
            messages
                .iter()
                .filter_map(|m| Some(transcript::message_entry(&m.sender, m.message.as_ref()?))),
        );
        entries.extend(participants.iter().map(CommitmentRecord::entry));
        let record = AggregationRecord {
            federation_definition: definition_bytes,
            round,
            phase: Phase::Fairness as i32,
            selected: selected.into_iter().collect(),
            threads: threads as u32,
            messages,
        }
        .encode_to_vec();
        entries.push(Entry::of(transcript::RECORD_LABEL, &record));
        let culprits = self.culprits.lock().expect("culprits lock").clone();
        entries.push(Entry::of("culprits", culprits.join("\n").as_bytes()));
        entries.push(Entry::of(transcript::AGGREGATE_LABEL, &bytes));
        let params = definition.secure_aggregation.clone().unwrap_or_default();
        let schema = definition.schema.clone().unwrap_or_default();
        let transcript = RoundTranscript {
            format: TRANSCRIPT_FORMAT.into(),
            federation_id: definition.federation_id.clone(),
            round,
            model_content_hash: model.content_hash.clone(),
            auditor_bundle_sha256: self.params.auditor_bundle_sha256.clone(),
            tfhe_parameters_sha256: accord_crypto::he::parameters_sha256(),
            secure_aggregation: in_force.describe(self.params.value_bits, &params),
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
        std::fs::write(&aggregate_path, &bytes).map_err(FairnessError::write(&aggregate_path))?;
        let record_path = out_dir.join(RECORD_FILE);
        std::fs::write(&record_path, &record).map_err(FairnessError::write(&record_path))?;
        let transcript_path = out_dir.join(TRANSCRIPT_FILE);
        let text = serde_json::to_string_pretty(&transcript).expect("a transcript serializes");
        std::fs::write(&transcript_path, text).map_err(FairnessError::write(&transcript_path))?;
        Ok(aggregate_path)
    }
}

fn describe_mitigation(m: &accord_proto::sections::MitigationSection) -> String {
    if m.kind == "none" {
        return "none".into();
    }
    format!(
        "{} (strength {}, targeting {} over {}, groups of at least {} records)",
        m.kind, m.strength, m.metric, m.attribute, m.min_group_size
    )
}

/// Secure aggregation of encrypted statistics, recording every accepted message.
struct EncryptedSum {
    session: CoordinatorSession<EncryptedInputs>,
    selected: BTreeSet<String>,
    threads: usize,
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
            return Err(AggregationError::NotEncrypted {
                participant: participant.to_owned(),
            });
        };
        Ok(self
            .session
            .receive(participant, &certificate_der, message)?)
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
                let plan = self
                    .session
                    .plan_in_force()
                    .expect("an aggregation that finished has a plan");
                let in_force = InForce::of(plan);
                *self.outcome.lock().expect("outcome lock") = Some(Outcome {
                    in_force,
                    aggregate: sum,
                    selected: self.selected.clone(),
                    threads: self.threads,
                    messages: self.session.take_record(),
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

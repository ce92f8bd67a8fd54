//! The participant's side of a federation: register, then follow the coordinator's rounds.
//!
//! Every upload is a vector of sums over local records (standardization sums, a sample-weighted
//! model, evaluation counts), passed through the federation's aggregation scheme before it
//! leaves. The schema arrives from the coordinator and is checked before any data is read.

use crate::config::{Fault, FaultAction, FaultPhase, FaultStage, ParticipantConfig};
use crate::data::{DataError, LoadReport, LocalDataset, load_csv};
use crate::mitigation::{self, FairFedWeight};
use crate::model::{
    Decision, LogisticModel, Standardizer, TrainingParams, round_seed, standardization_sums,
};
use accord_crypto::crl::CrlWatch;
use accord_crypto::he::inputs::{MASK_RING, seal};
use accord_crypto::he::keys::parse_verifying_key;
use accord_crypto::he::{PublicMaterial, check_value_bits};
use accord_crypto::secagg::validity::Statement;
use accord_crypto::secagg::{self, Context, Requirements, SecAggError};
use accord_crypto::secagg::{Masked, ParticipantSession};
use accord_crypto::secagg::{Signer, Trust};
use accord_proto::MAX_MESSAGE_BYTES;
use accord_proto::fairness::FairnessLayout;
use accord_proto::layout::encoded_columns;
use accord_proto::mitigation::{EvaluationStatistics, active_mitigation, label_counts};
use accord_proto::phase::PhaseVector;
use accord_proto::standardization::StandardizationLayout;
use accord_proto::transport::{WireMeter, channel};
use accord_proto::v1::federation_client::FederationClient;
use accord_proto::v1::{
    AwaitRoundRequest, EvaluationUpload, FederationDefinition, GlobalModel, GroupThreshold, Header,
    MitigationFeedback, MitigationKind, ModelRequest, Phase, PlainVector, ProtectedVector,
    RegisterRequest, SecAggAwaitRequest, SecAggParams, SecAggRelay, SecAggStage,
    SignedStageMessage, UpdateUpload, protected_vector,
};
use ndarray::{Array1, Array2};
use prost::Message;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tracing::{info, warn};

/// The plain scheme, which needs this participant's consent.
pub const INSECURE_PLAIN: &str = "insecure-plain";

/// Input validity by range proofs (the federation definition's `input_validity`).
pub const RANGE_PROOFS: &str = "range-proofs";

#[derive(Debug, thiserror::Error)]
pub enum ParticipantError {
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("transport: {0}")]
    Transport(#[from] accord_proto::transport::TransportError),
    #[error("the coordinator refused {rpc}: {message} ({code:?})")]
    Refused {
        rpc: &'static str,
        code: Code,
        message: String,
    },
    #[error("the coordinator sent an invalid federation definition: {0}")]
    InvalidDefinition(String),
    #[error(
        "the federation uses aggregation '{0}', which reveals this participant's own sums to the coordinator; \
         set allow_insecure_plain = true in participant.toml to consent"
    )]
    PlainNotAllowed(String),
    #[error("the federation uses aggregation '{0}', which this participant does not support")]
    UnsupportedAggregation(String),
    #[error("identity for secure aggregation: {0}")]
    Identity(#[from] accord_crypto::secagg::IdentityError),
    #[error("fault injection: exited before sending the {stage} message of round {round} {phase}")]
    FaultExit {
        round: u32,
        phase: &'static str,
        stage: &'static str,
    },
    #[error(transparent)]
    TooManyRows(#[from] crate::data::TooManyRows),
    #[error("the coordinator sent a model with {actual} weights, expected {expected}")]
    ModelShape { expected: usize, actual: usize },
    #[error(
        "the coordinator sent {got} per-group decision thresholds for '{attribute}', which has {expected} groups"
    )]
    Thresholds {
        attribute: String,
        expected: usize,
        got: usize,
    },
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("fairness audit: {0}")]
    Fairness(String),
    #[error(
        "the coordinator's federation definition has SHA-256 {got}, not the {pinned} pinned in \
         [requirements] federation_sha256"
    )]
    DefinitionMismatch { got: String, pinned: String },
    #[error(
        "the federation's {what} is {got}, below this participant's minimum of {minimum} ([requirements])"
    )]
    BelowRequirement {
        what: &'static str,
        got: u64,
        minimum: u64,
    },
}

/// What a finished participation looked like, for the local log.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub load: LoadReport,
    pub rows_used: usize,
    pub rounds_completed: u32,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// The per-group decision thresholds in force for the final model (post-processing).
    pub thresholds: Vec<GroupThreshold>,
}

/// Runs this participant until the federation finishes.
pub async fn run(
    config: &ParticipantConfig,
    meter: WireMeter,
) -> Result<Outcome, ParticipantError> {
    let crl = CrlWatch::open_if_set(config.tls.crl.as_deref(), &config.tls.ca)
        .map_err(|e| ParticipantError::Tls(e.to_string()))?;
    let tls = accord_crypto::tls::client_config(
        &config.tls.ca,
        &config.tls.certificate,
        &config.tls.key,
        crl.clone(),
    )
    .map_err(|e| ParticipantError::Tls(e.to_string()))?;
    let channel = channel(
        &config.coordinator,
        &config.server_name(),
        tls,
        meter.clone(),
    )?;
    let mut node = Node::register(config, channel, crl).await?;
    let rounds_completed = node.follow_rounds().await?;
    Ok(Outcome {
        name: node.name,
        load: node.load,
        rows_used: node.data.len(),
        rounds_completed,
        bytes_sent: meter.sent(),
        bytes_received: meter.received(),
        thresholds: node.feedback.thresholds,
    })
}

/// What a participant needs for secure aggregation: its signing identity, the CA that vouches
/// for the others, and the federation's parameters.
struct SecureAggregation {
    signer: Arc<Signer>,
    trust: Trust,
    params: SecAggParams,
    requirements: Requirements,
}

/// What a participant needs for the encrypted fairness audit: the auditor's public key and
/// proof parameters (checked against the pinned auditor key) and the groups to count.
struct FairnessAudit {
    material: Arc<PublicMaterial>,
    layout: FairnessLayout,
    value_bits: u32,
    /// When the federation requires input validity: what this participant's counts are proven
    /// to meet.
    statement: Option<Statement>,
}

struct Node {
    client: FederationClient<Channel>,
    secagg: Option<SecureAggregation>,
    fairness: Option<FairnessAudit>,
    faults: Vec<Fault>,
    name: String,
    /// The session the coordinator gave this registration, carried in every request.
    session: u64,
    federation: FederationDefinition,
    seed: u64,
    data: LocalDataset,
    load: LoadReport,
    standardized: Option<(Standardizer, Array2<f64>)>,
    /// What the coordinator fed back with the last global model (mitigation sums, thresholds).
    feedback: MitigationFeedback,
    /// The consortium's record count, from the standardization.
    records: f64,
    fairfed: Option<FairFedWeight>,
}

fn refused(rpc: &'static str) -> impl FnOnce(Status) -> ParticipantError {
    move |status| ParticipantError::Refused {
        rpc,
        code: status.code(),
        message: describe_status(&status),
    }
}

/// The status message, or for a failed connection the TLS reason under it (e.g. the
/// coordinator rejected this participant's certificate, or this participant the coordinator's),
/// which gRPC reports only as "transport error" or as rustls's debug text.
pub fn describe_status(status: &Status) -> String {
    match connection_error(status) {
        Some(io) => format!(
            "cannot connect: {}",
            accord_crypto::tls::describe_handshake_error(io)
        ),
        None => status.message().to_owned(),
    }
}

/// The I/O error under a failed connection's status, if any.
fn connection_error(status: &Status) -> Option<&std::io::Error> {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        source = error.source();
    }
    None
}

impl Node {
    async fn register(
        config: &ParticipantConfig,
        channel: Channel,
        crl: Option<Arc<CrlWatch>>,
    ) -> Result<Self, ParticipantError> {
        let client = FederationClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let request = RegisterRequest {
            header: Some(Header::new(&config.federation_id, 0)),
        };
        let response = retry_unavailable(|| {
            let mut client = client.clone();
            let request = request.clone();
            async move { client.register(request).await }
        })
        .await
        .map_err(refused("Register"))?
        .into_inner();
        let federation = response.federation.ok_or_else(|| {
            ParticipantError::InvalidDefinition("no federation definition".into())
        })?;
        let definition_sha256 = hex::encode(Sha256::digest(federation.encode_to_vec()));
        info!(sha256 = %definition_sha256, "federation definition received");
        if let Some(pinned) = &config.requirements.federation_sha256
            && !pinned.trim().eq_ignore_ascii_case(&definition_sha256)
        {
            return Err(ParticipantError::DefinitionMismatch {
                got: definition_sha256,
                pinned: pinned.clone(),
            });
        }
        accord_proto::schema::validate_definition(&federation)
            .map_err(|e| ParticipantError::InvalidDefinition(e.to_string()))?;
        let schema = federation
            .schema
            .as_ref()
            .ok_or_else(|| ParticipantError::InvalidDefinition("no schema".into()))?;
        let secagg = match federation.aggregation.as_str() {
            INSECURE_PLAIN if config.allow_insecure_plain => None,
            INSECURE_PLAIN => {
                return Err(ParticipantError::PlainNotAllowed(
                    federation.aggregation.clone(),
                ));
            }
            secagg::SCHEME => {
                let params = federation.secure_aggregation.clone().ok_or_else(|| {
                    ParticipantError::InvalidDefinition("no secure-aggregation parameters".into())
                })?;
                if !matches!(params.input_validity.as_str(), RANGE_PROOFS | "none") {
                    return Err(ParticipantError::InvalidDefinition(format!(
                        "input_validity '{}' is not one this participant supports ({RANGE_PROOFS}, none)",
                        params.input_validity
                    )));
                }
                let floor = config.requirements.min_threshold;
                if params.threshold != 0 && (params.threshold as usize) < floor {
                    return Err(ParticipantError::BelowRequirement {
                        what: "secure-aggregation threshold",
                        got: params.threshold.into(),
                        minimum: floor as u64,
                    });
                }
                Some(SecureAggregation {
                    signer: Arc::new(Signer::load(&config.tls.certificate, &config.tls.key)?),
                    trust: match crl {
                        Some(crl) => Trust::load(&config.tls.ca)?.with_crl(crl),
                        None => Trust::load(&config.tls.ca)?,
                    },
                    requirements: Requirements::new(
                        &params,
                        federation.min_participants as usize,
                        floor,
                    ),
                    params,
                })
            }
            other => return Err(ParticipantError::UnsupportedAggregation(other.to_owned())),
        };
        if response.replaced {
            warn!(name = %response.participant_name, "this registration replaced an earlier one of the same name (a restart of this node, or another process holding its certificate, which the coordinator now refuses)");
        }
        info!(name = %response.participant_name, federation = %federation.federation_id, "registered");
        let fairness = audit(config, &federation, schema)?;

        let (data, load) = load_csv(
            &config.data.path,
            schema,
            &config.data.columns,
            config.data.invalid_rows,
        )?;
        info!(
            rows = data.len(),
            skipped = load.rows_skipped,
            path = %config.data.path.display(),
            "loaded local data (the skipped count stays here)"
        );
        crate::data::admit(&data, secagg.as_ref().map(|s| &s.params))?;
        if load.rows_skipped > 0 {
            for (column, count) in &load.skipped_by_column {
                warn!(column = %column, rows = count, "skipped rows with a missing or invalid value");
            }
        }
        let fairfed = active_mitigation(federation.mitigation.as_ref())
            .filter(|m| m.kind() == MitigationKind::Fairfed)
            .map(|_| FairFedWeight::new(data.len()));
        Ok(Self {
            client,
            secagg,
            fairness,
            faults: config.faults.clone(),
            name: response.participant_name,
            session: response.session,
            federation,
            seed: config.seed,
            fairfed,
            data,
            load,
            standardized: None,
            feedback: MitigationFeedback::default(),
            records: 0.0,
        })
    }

    fn header(&self, round: u32) -> Option<Header> {
        Some(Header::new(&self.federation.federation_id, round).in_session(self.session))
    }

    async fn follow_rounds(&mut self) -> Result<u32, ParticipantError> {
        let (mut round, mut completed) = (0u32, Phase::Unspecified);
        let mut rounds_completed = 0;
        loop {
            let request = AwaitRoundRequest {
                header: self.header(round),
                completed_phase: completed as i32,
            };
            let announcement = retry_unavailable(|| {
                let mut client = self.client.clone();
                let request = request.clone();
                async move { client.await_round(request).await }
            })
            .await
            .map_err(refused("AwaitRound"))?
            .into_inner();
            if announcement.pending {
                continue;
            }
            let phase = announcement.phase();
            let next_round = announcement.header.as_ref().map_or(0, |h| h.round);
            if phase == Phase::Finished {
                if self.federation.postprocessing.is_some() {
                    // The final model's thresholds, which this participant applies from now on.
                    self.download(next_round).await?;
                    info!(thresholds = ?self.feedback.thresholds, "per-group decision thresholds in force");
                }
                info!(rounds = rounds_completed, "federation finished");
                return Ok(rounds_completed);
            }
            let audited = phase == Phase::Fairness && self.fairness.is_some();
            if announcement.selected
                && (audited || matches!(phase, Phase::Standardize | Phase::Fit | Phase::Evaluate))
            {
                let summed = self.take_part(next_round, phase).await?;
                if summed && phase == Phase::Evaluate {
                    rounds_completed += 1;
                }
            } else {
                info!(
                    round = next_round,
                    phase = phase.label(),
                    "not selected for this phase"
                );
            }
            (round, completed) = (next_round, phase);
        }
    }

    async fn download(
        &mut self,
        round: u32,
    ) -> Result<(LogisticModel, Array2<f64>), ParticipantError> {
        let model: GlobalModel = self
            .client
            .download_model(ModelRequest {
                header: self.header(round),
            })
            .await
            .map_err(refused("DownloadModel"))?
            .into_inner();
        let columns = self.data.features.ncols();
        let standardization = model.standardization.unwrap_or_default();
        for actual in [
            model.weights.len(),
            standardization.means.len(),
            standardization.std_devs.len(),
        ] {
            if actual != columns {
                return Err(ParticipantError::ModelShape {
                    expected: columns,
                    actual,
                });
            }
        }
        if let Some(schema) = &self.federation.schema {
            let expected = encoded_columns(schema);
            if model.columns != expected {
                return Err(ParticipantError::InvalidDefinition(
                    "the model's columns differ from the schema's".into(),
                ));
            }
        }
        let standardizer = Standardizer {
            means: Array1::from(standardization.means),
            std_devs: Array1::from(standardization.std_devs),
        };
        if standardizer
            .std_devs
            .iter()
            .any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(ParticipantError::InvalidDefinition(
                "a standard deviation is not positive".into(),
            ));
        }
        self.records = standardization.count as f64;
        let feedback = model.feedback.unwrap_or_default();
        if let Some(post) = &self.federation.postprocessing
            && !feedback.thresholds.is_empty()
        {
            // One threshold per category and `unknown`; each record's group indexes them.
            let expected = (self.federation.schema.iter())
                .flat_map(|s| &s.protected_attributes)
                .find(|a| a.name == post.attribute)
                .map_or(0, |a| a.categories.len() + 1);
            if feedback.thresholds.len() != expected {
                return Err(ParticipantError::Thresholds {
                    attribute: post.attribute.clone(),
                    expected,
                    got: feedback.thresholds.len(),
                });
            }
        }
        self.feedback = feedback;
        if let (Some(fairfed), Some(m)) =
            (self.fairfed.as_mut(), self.federation.mitigation.as_ref())
        {
            let max_rows = self
                .federation
                .secure_aggregation
                .as_ref()
                .map_or(u64::MAX, |p| p.max_rows_per_participant);
            fairfed.settle(&self.feedback, m.strength, self.records, max_rows);
        }
        let stale = self
            .standardized
            .as_ref()
            .is_none_or(|(s, _)| *s != standardizer);
        if stale {
            let x = standardizer.apply(&self.data.features);
            self.standardized = Some((standardizer, x));
        }
        let x = self
            .standardized
            .as_ref()
            .map(|(_, x)| x.clone())
            .expect("just set");
        Ok((
            LogisticModel {
                weights: Array1::from(model.weights),
                intercept: model.intercept,
            },
            x,
        ))
    }

    /// This participant's vector for a phase: sums over its records, never a record.
    async fn values(&mut self, round: u32, phase: Phase) -> Result<Vec<f64>, ParticipantError> {
        let schema = self.federation.schema.clone().unwrap_or_default();
        let mitigation = self.federation.mitigation.clone();
        if phase == Phase::Standardize {
            let layout = StandardizationLayout::new(&schema)
                .map_err(|e| ParticipantError::InvalidDefinition(e.to_string()))?;
            let sums = standardization_sums(&layout, &self.data.features)
                .map_err(|e| ParticipantError::InvalidDefinition(e.to_string()))?;
            let mut values = layout.to_vec(&sums);
            if let Some(zeros) = label_counts(&schema, mitigation.as_ref()) {
                values.extend(mitigation::label_counts(&self.data, zeros).values);
            }
            return Ok(values);
        }
        let (global, x) = self.download(round).await?;
        if phase == Phase::Fit {
            let params = TrainingParams::from(self.federation.training.unwrap_or_default());
            let objective =
                mitigation::objective(mitigation.as_ref(), &schema, &self.data, &self.feedback);
            let local = global.fit_local(
                x.view(),
                self.data.labels.view(),
                &params,
                round_seed(self.seed, round),
                &objective,
                self.secagg.as_ref().map(|s| s.params.clip),
            );
            if let (Some(fairfed), Some(m)) = (self.fairfed.as_mut(), mitigation.as_ref()) {
                let threshold = self
                    .federation
                    .evaluation
                    .unwrap_or_default()
                    .decision_threshold;
                let gaps = (
                    mitigation::local_gap(m, &schema, &global, x.view(), &self.data, threshold),
                    mitigation::global_gap(m, &schema, &self.feedback),
                );
                return Ok(fairfed
                    .upload(round, &local, gaps, m.strength, self.records)
                    .to_vec());
            }
            return Ok(local.weighted(self.data.len()).to_vec());
        }
        let e = self.federation.evaluation.unwrap_or_default();
        let bins = e.histogram_bins as usize;
        let counts = global.evaluate(
            x.view(),
            self.data.labels.view(),
            bins,
            e.decision_threshold,
        );
        let zeros = EvaluationStatistics::zeros(
            &schema,
            mitigation.as_ref(),
            self.federation.postprocessing.as_ref(),
            bins,
        );
        let statistics = mitigation::evaluation_statistics(
            &global,
            x.view(),
            &self.data,
            zeros,
            e.decision_threshold,
        );
        let mut values = counts.to_vec();
        values.extend(statistics.to_vec());
        Ok(values)
    }

    /// This participant's fairness statistics of the final model: counts per group.
    async fn fairness_statistics(&mut self, round: u32) -> Result<Vec<u64>, ParticipantError> {
        let (global, x) = self.download(round).await?;
        let audit = self.fairness.as_ref().expect("fairness configured");
        let threshold = self
            .federation
            .evaluation
            .unwrap_or_default()
            .decision_threshold;
        let schema = self.federation.schema.clone().unwrap_or_default();
        let columns: Vec<&Vec<usize>> = schema
            .protected_attributes
            .iter()
            .map(|a| &self.data.groups[&a.name])
            .collect();
        // The decisions in force: the per-group thresholds of post-processing, if any.
        let in_force: Vec<u32> = self.feedback.thresholds.iter().map(|t| t.bin).collect();
        let decision = match &self.federation.postprocessing {
            Some(post) if !in_force.is_empty() => Decision::PerGroup {
                groups: &self.data.groups[&post.attribute],
                thresholds: &in_force,
                histogram_bins: self
                    .federation
                    .evaluation
                    .unwrap_or_default()
                    .histogram_bins as usize,
            },
            _ => Decision::Threshold(threshold),
        };
        let mut values = vec![0u64; audit.layout.len()];
        let mut categories = vec![0; columns.len()];
        for (row, (p, &label)) in global
            .predict(x.view())
            .iter()
            .zip(self.data.labels.iter())
            .enumerate()
        {
            for (slot, column) in categories.iter_mut().zip(&columns) {
                *slot = column[row];
            }
            audit.layout.add(
                &mut values,
                &categories,
                label > 0.5,
                decision.positive(row, *p),
                *p,
            );
        }
        Ok(values)
    }

    /// Contributes to a phase under the federation's scheme; false if the phase aborted or
    /// went on without this participant.
    async fn take_part(&mut self, round: u32, phase: Phase) -> Result<bool, ParticipantError> {
        if self.secagg.is_some() {
            return self.secure(round, phase).await;
        }
        let values = self.values(round, phase).await?;
        let vector = Some(ProtectedVector {
            scheme: Some(protected_vector::Scheme::Plain(PlainVector { values })),
        });
        let receipt = if phase == Phase::Evaluate {
            let request = EvaluationUpload {
                header: self.header(round),
                vector,
            };
            self.client
                .upload_evaluation(request)
                .await
                .map_err(refused("UploadEvaluation"))?
        } else {
            let request = UpdateUpload {
                header: self.header(round),
                phase: phase as i32,
                vector,
            };
            self.client
                .upload_update(request)
                .await
                .map_err(refused("UploadUpdate"))?
        }
        .into_inner();
        info!(
            round,
            phase = phase.label(),
            received = receipt.received,
            expected = receipt.expected,
            "uploaded"
        );
        Ok(true)
    }

    /// A phase's vector: its bounds and relations, built as the coordinator builds them.
    fn vector(&self, phase: Phase, params: &SecAggParams) -> Result<PhaseVector, ParticipantError> {
        let schema = self.federation.schema.clone().unwrap_or_default();
        let columns = self.data.features.ncols();
        let rows = params.max_rows_per_participant;
        let mitigation = self.federation.mitigation.as_ref();
        Ok(match phase {
            Phase::Standardize => PhaseVector::standardize(&schema, mitigation, rows)
                .map_err(|e| ParticipantError::InvalidDefinition(e.to_string()))?,
            Phase::Fit => {
                let fairfed = match (active_mitigation(mitigation), &self.fairfed) {
                    (Some(m), Some(_)) => Some((m.strength, self.records)),
                    _ => None,
                };
                PhaseVector::fit(columns, params.clip, rows, fairfed)
            }
            _ => PhaseVector::evaluate(
                &schema,
                mitigation,
                self.federation.postprocessing.as_ref(),
                self.federation
                    .evaluation
                    .unwrap_or_default()
                    .histogram_bins as usize,
                rows,
            ),
        })
    }

    /// Secure aggregation: advertise keys, share keys, send the masked vector, sign the survivor
    /// set, help unmask. A refusal (what the coordinator or a peer sent fails a check) is
    /// logged with its reason and the participant sits the phase out: false, never an exit.
    async fn secure(&mut self, round: u32, phase: Phase) -> Result<bool, ParticipantError> {
        let s = self.secagg.as_ref().expect("secure aggregation configured");
        let (signer, trust, params, requirements) = (
            s.signer.clone(),
            s.trust.clone(),
            s.params.clone(),
            s.requirements,
        );
        let context = Context {
            federation: self.federation.federation_id.clone(),
            round,
            phase,
        };
        let (mut session, advertisement) =
            ParticipantSession::start(signer, trust, context, requirements, &mut rand::rng());
        if !self.inject_fault(round, phase, SecAggStage::Setup).await?
            || !self.submit(advertisement).await?
        {
            return Ok(false);
        }
        let input = if phase == Phase::Fairness {
            Input::Counts(self.fairness_statistics(round).await?)
        } else {
            Input::Values(
                self.values(round, phase).await?,
                self.vector(phase, &params)?,
            )
        };
        let mut selected = 0;
        loop {
            let relay = self.await_stage(round, phase, session.completed()).await?;
            let next = session.completed() as i32 + 1;
            if relay.stage() != SecAggStage::Done && relay.stage() as i32 != next {
                warn!(
                    round,
                    phase = phase.label(),
                    "the aggregation went on without this participant"
                );
                return Ok(false);
            }
            let stage = relay.stage();
            let answered = match stage {
                SecAggStage::ShareKeys => {
                    selected = relay.selected.len();
                    session.share_keys(&relay, &mut rand::rng())
                }
                SecAggStage::MaskedInput => {
                    let masked = match &input {
                        Input::Values(values, vector) => {
                            // The summand count comes from the relay: an encoding (or statement)
                            // it makes impossible is a refusal, like any other relay that fails
                            // a check.
                            secagg::fixed_point(&vector.bounds, &params, selected)
                                .map_err(SecAggError::from)
                                .and_then(|encoding| {
                                    let statement = (params.input_validity == RANGE_PROOFS)
                                        .then(|| Statement::new(&encoding, &vector.relations))
                                        .transpose()
                                        .map_err(SecAggError::from)?;
                                    session.masked_input(
                                        &relay,
                                        values,
                                        &encoding,
                                        statement.as_ref(),
                                    )
                                })
                                .map(|(masked, clipped)| {
                                    if clipped > 0 {
                                        warn!(
                                            round,
                                            phase = phase.label(),
                                            clipped,
                                            "values clipped to the federation's bounds"
                                        );
                                    }
                                    masked
                                })
                        }
                        Input::Counts(counts) => {
                            let (returned, masked) = self
                                .seal_counts(session, &relay, counts.clone(), round)
                                .await?;
                            session = returned;
                            masked
                        }
                    };
                    masked.map(|masked| {
                        for (neighbour, reason) in &masked.excluded {
                            warn!(round, phase = phase.label(), participant = %neighbour, %reason, "left a neighbour out of the masks");
                        }
                        masked.message
                    })
                }
                SecAggStage::ConsistencyCheck => session.consistency_check(&relay),
                SecAggStage::Unmask => session.unmask(&relay).inspect(|_| {
                    for (owner, reason) in session.withheld() {
                        warn!(round, phase = phase.label(), participant = %owner, %reason, "withheld a self-mask share");
                    }
                }),
                SecAggStage::Done | SecAggStage::Unspecified | SecAggStage::Setup => {
                    if !relay.aborted.is_empty() {
                        let consequence = match phase {
                            Phase::Fit => "the previous global model stays",
                            Phase::Evaluate => "the round's model stays in force, unmeasured",
                            _ => "its result is missing",
                        };
                        warn!(round, phase = phase.label(), reason = %relay.aborted, "the phase aborted: {consequence}");
                    }
                    return Ok(
                        relay.aborted.is_empty() && session.completed() == SecAggStage::Unmask
                    );
                }
            };
            let message = match answered {
                Ok(message) => message,
                Err(reason) => {
                    warn!(
                        round,
                        phase = phase.label(),
                        stage = secagg::stage_label(stage),
                        %reason,
                        "refused to go on with this aggregation; sitting the phase out"
                    );
                    return Ok(false);
                }
            };
            if !self.inject_fault(round, phase, stage).await? || !self.submit(message).await? {
                return Ok(false);
            }
        }
    }

    /// Masks and encrypts the fairness counts (encryption with proofs takes seconds: off the
    /// async threads); hands the session back with the outcome.
    async fn seal_counts(
        &self,
        mut session: ParticipantSession,
        relay: &SecAggRelay,
        counts: Vec<u64>,
        round: u32,
    ) -> Result<(ParticipantSession, Result<Masked, SecAggError>), ParticipantError> {
        let audit = self.fairness.as_ref().expect("fairness configured");
        let (material, bits) = (audit.material.clone(), audit.value_bits);
        let statement = audit.statement.clone();
        let relay = relay.clone();
        let (session, masked) = tokio::task::spawn_blocking(move || {
            let context = session.context().clone();
            let masked = session.masked_input_with(&relay, counts, MASK_RING, |sealed| {
                seal(&material, &context, sealed, bits, statement.as_ref())
            });
            (session, masked)
        })
        .await
        .map_err(|e| ParticipantError::Fairness(e.to_string()))?;
        if masked.is_ok() {
            info!(
                round,
                "fairness statistics encrypted under the auditor's key"
            );
        }
        Ok((session, masked))
    }

    /// Applies a configured fault planned for this point; false if the participant sits the
    /// phase out.
    async fn inject_fault(
        &self,
        round: u32,
        phase: Phase,
        stage: SecAggStage,
    ) -> Result<bool, ParticipantError> {
        let planned = self.faults.iter().find(|f| {
            f.round == round
                && matches!(
                    (f.phase, phase),
                    (FaultPhase::Standardize, Phase::Standardize)
                        | (FaultPhase::Fit, Phase::Fit)
                        | (FaultPhase::Evaluate, Phase::Evaluate)
                )
                && matches!(
                    (f.stage, stage),
                    (FaultStage::Setup, SecAggStage::Setup)
                        | (FaultStage::ShareKeys, SecAggStage::ShareKeys)
                        | (FaultStage::MaskedInput, SecAggStage::MaskedInput)
                        | (FaultStage::Unmask, SecAggStage::Unmask)
                )
        });
        let Some(fault) = planned else {
            return Ok(true);
        };
        let stage = secagg::stage_label(stage);
        warn!(round, phase = phase.label(), stage, action = ?fault.action, "fault injection");
        match fault.action {
            FaultAction::Withhold => Ok(false),
            FaultAction::Exit => Err(ParticipantError::FaultExit {
                round,
                phase: phase.label(),
                stage,
            }),
            FaultAction::Hold => {
                eprintln!(
                    "accord participant: fault injection: holding before the {stage} message of round {round} {}",
                    phase.label()
                );
                std::future::pending().await
            }
        }
    }

    /// Sends a signed stage message; false if the stage had already closed without it.
    async fn submit(&mut self, message: SignedStageMessage) -> Result<bool, ParticipantError> {
        match self.client.sec_agg_submit(message).await {
            Ok(_) => Ok(true),
            Err(status) if status.code() == Code::FailedPrecondition => {
                warn!(reason = %status.message(), "too late for this stage; sitting this phase out");
                Ok(false)
            }
            Err(status) => Err(refused("SecAggSubmit")(status)),
        }
    }

    /// Waits for what the next stage needs (the coordinator holds the call until then).
    async fn await_stage(
        &mut self,
        round: u32,
        phase: Phase,
        completed: SecAggStage,
    ) -> Result<SecAggRelay, ParticipantError> {
        loop {
            let request = SecAggAwaitRequest {
                header: self.header(round),
                phase: phase as i32,
                completed_stage: completed as i32,
            };
            let relay = retry_unavailable(|| {
                let mut client = self.client.clone();
                let request = request.clone();
                async move { client.sec_agg_await(request).await }
            })
            .await
            .map_err(refused("SecAggAwait"))?
            .into_inner();
            if !relay.pending {
                return Ok(relay);
            }
        }
    }
}

/// What a participant contributes to a secure aggregation: real values under the phase's
/// bounds, or (for the fairness audit) counts that are encrypted after masking.
enum Input {
    Values(Vec<f64>, PhaseVector),
    Counts(Vec<u64>),
}

/// Checks the participant's auditor configuration against the federation's: the same pinned
/// auditor key, a bundle it signed, and the same bundle the coordinator verifies with.
fn audit(
    config: &ParticipantConfig,
    federation: &FederationDefinition,
    schema: &accord_proto::v1::Schema,
) -> Result<Option<FairnessAudit>, ParticipantError> {
    let local_floor = config.requirements.min_group_size;
    let Some(params) = &federation.fairness else {
        return Ok(None);
    };
    let Some(local) = &config.fairness else {
        warn!(
            "the federation audits fairness under an auditor's key, but this participant has no [fairness] section: it will sit the audit out"
        );
        return Ok(None);
    };
    if params.min_group_size < local_floor {
        warn!(
            min_group_size = params.min_group_size,
            required = local_floor,
            "the federation suppresses only groups smaller than its min_group_size, below this participant's [requirements] min_group_size: it will sit the audit out"
        );
        return Ok(None);
    }
    let fail = |e: String| ParticipantError::Fairness(e);
    let pinned =
        parse_verifying_key(&local.auditor_verifying_key).map_err(|e| fail(e.to_string()))?;
    if hex::encode(pinned.to_bytes()) != params.auditor_verifying_key.trim() {
        return Err(fail(format!(
            "the federation names auditor key {}, this participant trusts {}",
            params.auditor_verifying_key, local.auditor_verifying_key
        )));
    }
    let material =
        PublicMaterial::load(&local.auditor_bundle, &pinned).map_err(|e| fail(e.to_string()))?;
    if material.bundle_sha256 != params.auditor_bundle_sha256 {
        return Err(fail(format!(
            "{} (SHA-256 {}) is not the bundle the federation names ({})",
            local.auditor_bundle.display(),
            material.bundle_sha256,
            params.auditor_bundle_sha256
        )));
    }
    let layout = FairnessLayout::new(schema, params.histogram_bins as usize)
        .map_err(|e| fail(e.to_string()))?;
    let secagg = federation.secure_aggregation.clone().unwrap_or_default();
    let statement = (secagg.input_validity == RANGE_PROOFS)
        .then(|| {
            Statement::counts(
                layout.len(),
                secagg.max_rows_per_participant,
                &layout.relations(),
            )
        })
        .transpose()
        .map_err(|e| fail(e.to_string()))?;
    Ok(Some(FairnessAudit {
        material: Arc::new(material),
        statement,
        layout,
        value_bits: check_value_bits(params.value_bits).map_err(|e| fail(e.to_string()))?,
    }))
}

/// Retries a call while the coordinator is unreachable (it may still be starting), for up to a
/// minute; not when a certificate was refused at the handshake, which a retry cannot change.
async fn retry_unavailable<T, F, Fut>(mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let mut wait = Duration::from_millis(100);
    let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match call().await {
            Err(status)
                if status.code() == Code::Unavailable
                    && !connection_error(&status)
                        .is_some_and(accord_crypto::tls::is_certificate_refusal)
                    && tokio::time::Instant::now() < give_up =>
            {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

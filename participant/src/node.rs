//! The participant's side of a federation: register, then follow the coordinator's rounds.
//!
//! Every upload is a vector of sums over local records (standardization sums, a sample-weighted
//! model, evaluation counts), passed through the federation's aggregation scheme before it
//! leaves. The schema arrives from the coordinator and is checked before any data is read.

use crate::audit::{AuditorTrust, auditor_trust};
use crate::config::ParticipantConfig;
use crate::contribution::Contributor;
use crate::data::{DataError, LoadReport, load_csv};
use crate::interruptions::{Interruption, Interruptions};
use crate::rpc::{compute, refused, retry_transient};
use accord_crypto::crl::CrlWatch;
use accord_crypto::he::inputs::{MASK_RING, seal};
use accord_crypto::secagg::{self, Context, Requirements, SecAggError};
use accord_crypto::secagg::{Masked, ParticipantSession, PhaseEncoding, Signer, Trust};
use accord_proto::MAX_MESSAGE_BYTES;
use accord_proto::phase::PhaseVector;
use accord_proto::scheme::{AggregationScheme, InputValidity};
use accord_proto::transport::{WireMeter, channel};
use accord_proto::v1::federation_client::FederationClient;
use accord_proto::v1::{
    AwaitRoundRequest, EvaluationUpload, FederationDefinition, GlobalModel, GroupThreshold, Header,
    ModelRequest, Phase, PlainVector, ProtectedVector, RegisterRequest, SecAggAwaitRequest,
    SecAggParams, SecAggRelay, SecAggStage, SignedStageMessage, UpdateUpload, protected_vector,
};
use prost::Message;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tonic::Code;
use tonic::transport::Channel;
use tracing::{info, warn};

/// Why a participant stopped before the federation finished.
#[derive(Debug, thiserror::Error)]
pub enum ParticipantError {
    /// The TLS client identity could not be set up.
    #[error("TLS setup: {0}")]
    Tls(#[from] accord_crypto::tls::TlsError),
    /// The certificate revocation list could not be read.
    #[error("TLS setup: {0}")]
    Crl(#[from] accord_crypto::crl::CrlError),
    /// The connection to the coordinator failed.
    #[error("transport: {0}")]
    Transport(#[from] accord_proto::transport::TransportError),
    /// The coordinator refused a request.
    #[error("the coordinator refused {rpc}: {message} ({code:?})")]
    Refused {
        /// The gRPC method refused.
        rpc: &'static str,
        /// The gRPC status code.
        code: Code,
        /// The coordinator's message.
        message: String,
    },
    /// The federation definition the coordinator sent is invalid.
    #[error("the coordinator sent an invalid federation definition: {0}")]
    InvalidDefinition(#[from] accord_proto::schema::DefinitionError),
    /// The federation definition lacks a required part, named.
    #[error("the coordinator sent a federation definition without {0}")]
    IncompleteDefinition(&'static str),
    /// The federation's input-validity mode is not one this participant supports.
    #[error(
        "the federation's input_validity '{0}' is not one this participant supports (range-proofs, none)"
    )]
    UnsupportedInputValidity(String),
    /// The federation aggregates in plain and this participant did not consent
    /// (`allow_insecure_plain`).
    #[error(
        "the federation uses aggregation '{0}', which reveals this participant's own sums to the coordinator; \
         set allow_insecure_plain = true in participant.toml to consent"
    )]
    PlainNotAllowed(String),
    /// The federation's aggregation scheme is unknown to this participant.
    #[error("the federation uses aggregation '{0}', which this participant does not support")]
    UnsupportedAggregation(String),
    /// The signing identity for secure aggregation could not be built.
    #[error("identity for secure aggregation: {0}")]
    Identity(#[from] accord_crypto::secagg::IdentityError),
    /// The run's [`Interruptions`] ended the participant ([`Interruption::Exit`]) where it
    /// would have sent a secure-aggregation message.
    #[error("interrupted: exited before sending the {stage} message of round {round} {phase}")]
    Interrupted {
        /// The round it stopped in.
        round: u32,
        /// The phase it stopped in.
        phase: &'static str,
        /// The stage whose message was not sent.
        stage: &'static str,
    },
    /// The participant holds more records than the federation's secure sums are bounded for.
    #[error(transparent)]
    TooManyRows(#[from] crate::data::TooManyRows),
    /// A contribution could not be computed or encoded.
    #[error(transparent)]
    Contribution(#[from] crate::contribution::ContributionError),
    /// The local data could not be loaded.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The auditor's bundle could not be verified.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// Encrypting the fairness counts stopped (its task panicked or was cancelled).
    #[error("fairness audit: encrypting the counts stopped: {0}")]
    Sealing(#[from] tokio::task::JoinError),
    /// The federation definition is not the one pinned in `[requirements]`.
    #[error(
        "the coordinator's federation definition has SHA-256 {got}, not the {pinned} pinned in \
         [requirements] federation_sha256"
    )]
    DefinitionMismatch {
        /// SHA-256 of the definition received, hex.
        got: String,
        /// SHA-256 pinned in `[requirements] federation_sha256`, hex.
        pinned: String,
    },
    /// A federation parameter is below this participant's `[requirements]` minimum.
    #[error(
        "the federation's {what} is {got}, below this participant's minimum of {minimum} ([requirements])"
    )]
    BelowRequirement {
        /// The parameter.
        what: &'static str,
        /// The federation's value.
        got: u64,
        /// The minimum required.
        minimum: u64,
    },
}

/// What a finished participation looked like, for the local log.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// This participant's name, from its certificate.
    pub name: String,
    /// What loading the local data saw.
    pub load: LoadReport,
    /// Records used for training and evaluation.
    pub rows_used: usize,
    /// Rounds this participant completed.
    pub rounds_completed: u32,
    /// Bytes sent to the coordinator.
    pub bytes_sent: u64,
    /// Bytes received from the coordinator.
    pub bytes_received: u64,
    /// The per-group decision thresholds in force for the final model (post-processing).
    pub thresholds: Vec<GroupThreshold>,
}

/// Runs this participant until the federation finishes.
pub async fn run(
    config: &ParticipantConfig,
    meter: WireMeter,
) -> Result<Outcome, ParticipantError> {
    run_with(config, meter, ()).await
}

/// Runs this participant until the federation finishes or `interruptions` make it drop out:
/// before each secure-aggregation message, it asks them whether to send it. For tests and
/// simulations of dropouts; [`run`] is this without interruptions.
pub async fn run_with(
    config: &ParticipantConfig,
    meter: WireMeter,
    interruptions: impl Interruptions + 'static,
) -> Result<Outcome, ParticipantError> {
    let crl = CrlWatch::open_if_set(config.tls.crl.as_deref(), &config.tls.ca)?;
    let tls = accord_crypto::tls::client_config(
        &config.tls.ca,
        &config.tls.certificate,
        &config.tls.key,
        crl.clone(),
    )?;
    let channel = channel(
        &config.coordinator,
        &config.server_name(),
        tls,
        meter.clone(),
    )?;
    let mut node = Node::register(config, channel, crl, Box::new(interruptions)).await?;
    let rounds_completed = node.follow_rounds().await?;
    Ok(Outcome {
        name: node.name,
        load: node.load,
        rows_used: node.contributor.data().len(),
        rounds_completed,
        bytes_sent: meter.sent(),
        bytes_received: meter.received(),
        thresholds: node.contributor.thresholds().to_vec(),
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

struct Node {
    client: FederationClient<Channel>,
    secagg: Option<SecureAggregation>,
    fairness: Option<AuditorTrust>,
    /// Asked before each secure-aggregation message whether to send it (tests, simulations).
    interruptions: Box<dyn Interruptions>,
    name: String,
    /// The session the coordinator gave this registration, carried in every request.
    session: u64,
    federation: FederationDefinition,
    load: LoadReport,
    /// What this participant computes in each phase (the round plan's participant side).
    contributor: Contributor,
}

impl Node {
    async fn register(
        config: &ParticipantConfig,
        channel: Channel,
        crl: Option<Arc<CrlWatch>>,
        interruptions: Box<dyn Interruptions>,
    ) -> Result<Self, ParticipantError> {
        let client = FederationClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let request = RegisterRequest {
            header: Some(Header::new(&config.federation_id, 0)),
        };
        let response = retry_transient(|| {
            let mut client = client.clone();
            let request = request.clone();
            async move { client.register(request).await }
        })
        .await
        .map_err(refused("Register"))?
        .into_inner();
        let federation = response
            .federation
            .ok_or_else(|| ParticipantError::IncompleteDefinition("a definition"))?;
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
        accord_proto::schema::validate_definition(&federation)?;
        let schema = federation
            .schema
            .as_ref()
            .ok_or(ParticipantError::IncompleteDefinition("a schema"))?;
        let secagg = match AggregationScheme::from_name(&federation.aggregation) {
            Some(AggregationScheme::InsecurePlain) if config.allow_insecure_plain => None,
            Some(AggregationScheme::InsecurePlain) => {
                return Err(ParticipantError::PlainNotAllowed(
                    federation.aggregation.clone(),
                ));
            }
            Some(AggregationScheme::SecAgg) => {
                let params = federation.secure_aggregation.clone().ok_or_else(|| {
                    ParticipantError::IncompleteDefinition("secure-aggregation parameters")
                })?;
                if InputValidity::from_name(&params.input_validity).is_none() {
                    return Err(ParticipantError::UnsupportedInputValidity(
                        params.input_validity.clone(),
                    ));
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
            None => {
                return Err(ParticipantError::UnsupportedAggregation(
                    federation.aggregation.clone(),
                ));
            }
        };
        if response.replaced {
            warn!(name = %response.participant_name, "this registration replaced an earlier one of the same name (a restart of this node, or another process holding its certificate, which the coordinator now refuses)");
        }
        info!(name = %response.participant_name, federation = %federation.federation_id, "registered");
        // Loading the auditor's key material and the records takes seconds on real sizes.
        let fairness = compute(|| auditor_trust(config, &federation, schema))?;
        let (data, load) = compute(|| {
            load_csv(
                &config.data.path,
                schema,
                &config.data.columns,
                config.data.invalid_rows,
            )
        })?;
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
        Ok(Self {
            contributor: Contributor::new(federation.clone(), data, config.seed),
            client,
            secagg,
            fairness,
            interruptions,
            name: response.participant_name,
            session: response.session,
            federation,
            load,
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
            let announcement = retry_transient(|| {
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
                    // The final model's thresholds, which this participant applies from now on
                    // (unless the coordinator altered them: then it keeps those it had).
                    if self.download(next_round, phase).await? {
                        info!(thresholds = ?self.contributor.thresholds(), "per-group decision thresholds in force");
                    }
                }
                info!(rounds = rounds_completed, "federation finished");
                return Ok(rounds_completed);
            }
            let audited = phase == Phase::Fairness && self.fairness.is_some();
            if announcement.selected
                && (audited
                    || matches!(
                        phase,
                        Phase::Standardize
                            | Phase::Fit
                            | Phase::Evaluate
                            | Phase::EvaluateThresholds
                    ))
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

    /// Downloads the global model for `round`'s `phase` and hands it to the contributor, which
    /// checks it against the schema before accepting it. False when it refuses the model (the
    /// coordinator sent one that does not fit: logged with the reason): the participant keeps
    /// the model it had and sits the phase out, never contributing from a stale model.
    async fn download(&mut self, round: u32, phase: Phase) -> Result<bool, ParticipantError> {
        let model: GlobalModel = self
            .client
            .download_model(ModelRequest {
                header: self.header(round),
            })
            .await
            .map_err(refused("DownloadModel"))?
            .into_inner();
        match self.contributor.accept_model(round, model) {
            Ok(()) => Ok(true),
            Err(reason) => {
                warn!(
                    round,
                    phase = phase.label(),
                    peer = "the coordinator",
                    %reason,
                    "refused the global model the coordinator sent; keeping the model this participant had and sitting the phase out"
                );
                Ok(false)
            }
        }
    }

    /// This participant's vector for a phase: sums over its records, never a record. None when
    /// it refused the phase's model.
    async fn values(
        &mut self,
        round: u32,
        phase: Phase,
    ) -> Result<Option<Vec<f64>>, ParticipantError> {
        if phase != Phase::Standardize && !self.download(round, phase).await? {
            return Ok(None);
        }
        let contributor = &mut self.contributor;
        Ok(Some(compute(|| contributor.contribute(round, phase))?))
    }

    /// This participant's fairness statistics of the final model: counts per group. None when
    /// it refused the model.
    async fn fairness_statistics(
        &mut self,
        round: u32,
    ) -> Result<Option<Vec<u64>>, ParticipantError> {
        if !self.download(round, Phase::Fairness).await? {
            return Ok(None);
        }
        let audit = self.fairness.as_ref().expect("fairness configured");
        let contributor = &self.contributor;
        Ok(Some(compute(|| {
            contributor.fairness_counts(&audit.layout)
        })?))
    }

    /// Contributes to a phase under the federation's scheme; false if the phase aborted or
    /// went on without this participant.
    async fn take_part(&mut self, round: u32, phase: Phase) -> Result<bool, ParticipantError> {
        if self.secagg.is_some() {
            return self.secure(round, phase).await;
        }
        let Some(values) = self.values(round, phase).await? else {
            return Ok(false);
        };
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
        if !self.interrupt(round, phase, SecAggStage::Setup).await?
            || !self.submit(advertisement).await?
        {
            return Ok(false);
        }
        // A refused model ends this participant's part after its keys were advertised: the
        // others go on without it, as without any dropout.
        let input = if phase == Phase::Fairness {
            match self.fairness_statistics(round).await? {
                Some(counts) => Input::Counts(counts),
                None => return Ok(false),
            }
        } else {
            match self.values(round, phase).await? {
                Some(values) => Input::Values(values, self.contributor.vector(phase)?),
                None => return Ok(false),
            }
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
                            PhaseEncoding::new(vector, &params, selected)
                                .and_then(|secured| {
                                    session.masked_input(
                                        &relay,
                                        values,
                                        &secured.encoding,
                                        secured.statement.as_ref(),
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
                            Phase::EvaluateThresholds => {
                                "the thresholds stay in force, unmeasured"
                            }
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
            if !self.interrupt(round, phase, stage).await? || !self.submit(message).await? {
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
        .await?;
        if masked.is_ok() {
            info!(
                round,
                "fairness statistics encrypted under the auditor's key"
            );
        }
        Ok((session, masked))
    }

    /// Asks the run's interruptions what to do in place of sending the `stage` message: true
    /// to send it, false if the participant sits the phase out; an exit ends the run, a hold
    /// never returns.
    async fn interrupt(
        &self,
        round: u32,
        phase: Phase,
        stage: SecAggStage,
    ) -> Result<bool, ParticipantError> {
        let action = self.interruptions.before_sending(round, phase, stage);
        if action == Interruption::Send {
            return Ok(true);
        }
        let stage = secagg::stage_label(stage);
        warn!(
            round,
            phase = phase.label(),
            stage,
            ?action,
            "fault injection"
        );
        match action {
            Interruption::Send => Ok(true),
            Interruption::Withhold => Ok(false),
            Interruption::Exit => Err(ParticipantError::Interrupted {
                round,
                phase: phase.label(),
                stage,
            }),
            Interruption::Hold => {
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
            let relay = retry_transient(|| {
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

#[cfg(test)]
mod tests;

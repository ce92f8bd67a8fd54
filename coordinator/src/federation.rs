//! The federation's state and its rounds.
//!
//! Round 0 is the standardization pass; rounds 1..=R each have a fit phase (participants train
//! from the global model and upload a sample-weighted model) and an evaluate phase (participants
//! evaluate the new global model and upload counts). Each phase takes uploads from the
//! participants selected when it opened, closes when all have uploaded or its deadline passes,
//! and hands the sum to the next step. A phase that closes with fewer than `min_participants`
//! contributions aborts its round: the previous global model stays.

use crate::aggregation::{self, AggregationError, Closed, PhaseAggregator, PhaseSpec, Submission};
use crate::artefact::{
    MODEL_FORMAT, ModelArtefact, RoundRecord, StandardizationJson, write_rounds_csv,
};
use crate::config::CoordinatorConfig;
use crate::metrics::{Quality, quality};
use crate::mitigation::{MitigationRun, PostprocessingJson};
use accord_crypto::pki::Role;
use accord_crypto::secagg::Trust;
use accord_crypto::secagg::{Context, stage_label};
use accord_proto::layout::{
    EvaluationCounts, StandardizationLayout, StandardizationSums, encoded_columns,
};
use accord_proto::phase::PhaseVector;
use accord_proto::standardization::StandardizationError;
use accord_proto::transport::WireMeter;
use accord_proto::v1::{
    FederationDefinition, FederationState, GlobalModel, Header, Phase, ProtectedVector,
    RegisterResponse, RoundAnnouncement, RoundSummary, Standardization, StatusResponse,
    UploadReceipt,
};
use accord_proto::v1::{SecAggRelay, SecAggStage, SignedStageMessage};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::{info, warn};

/// Why the coordinator refused a participant's message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("federation '{got}' is not served here (this coordinator serves '{served}')")]
    WrongFederation { got: String, served: String },
    #[error("the request has no header (federation id and round)")]
    MissingHeader,
    #[error(
        "message for round {got_round} ({got_phase}), but the federation is at round {round} ({phase})"
    )]
    WrongRound {
        got_round: u32,
        got_phase: &'static str,
        round: u32,
        phase: &'static str,
    },
    #[error("participant '{0}' is not registered in this federation")]
    NotRegistered(String),
    #[error(
        "participant '{0}' registered again (a restart, or a second process holding its certificate): this session was replaced and is closed"
    )]
    Replaced(String),
    #[error(
        "the request of '{0}' carries no session: send the session the registration returned in the header"
    )]
    NoSession(String),
    #[error("participant '{0}' is not on this federation's roster")]
    NotOnRoster(String),
    #[error("participant '{0}' was not selected for this phase")]
    NotSelected(String),
    #[error("'{0}' is not one of this federation's observers (federation.observers)")]
    NotObserver(String),
    #[error("no global model yet: the federation is at round {0} ({1})")]
    NoModel(u32, &'static str),
    #[error("the federation is over ({0})")]
    Closed(&'static str),
    #[error("the federation failed: {0}")]
    Failed(String),
    #[error("{0}")]
    Aggregation(AggregationError),
}

/// The current task: a round and its phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Task {
    round: u32,
    phase: Phase,
}

impl Task {
    fn order(self) -> (u32, i32) {
        (self.round, rank(self.phase))
    }
}

/// Where a phase falls within its round: the fairness phase follows the last evaluation and
/// precedes the end.
fn rank(phase: Phase) -> i32 {
    match phase {
        Phase::Unspecified => 0,
        Phase::Standardize => 1,
        Phase::Fit => 2,
        Phase::Evaluate => 3,
        Phase::Fairness => 4,
        Phase::Finished => 5,
    }
}

struct State {
    lifecycle: FederationState,
    registered: BTreeSet<String>,
    /// Each registered participant's current session (its latest registration).
    sessions: BTreeMap<String, u64>,
    task: Task,
    selected: BTreeSet<String>,
    aggregator: Option<Box<dyn PhaseAggregator>>,
    deadline: Instant,
    /// Why the last phase that aborted did, for participants still waiting on it.
    aborted: Option<(Task, String)>,
    standardization: Option<Standardization>,
    model: Option<(Vec<f64>, f64)>,
    history: Vec<RoundRecord>,
    failure: Option<String>,
    told_finished: BTreeSet<String>,
    /// A stage of the open phase is being closed (its aggregator is out of the state).
    closing: bool,
    /// Fairness-aware training and post-processing: the sums it feeds back.
    mitigation: MitigationRun,
    /// The per-group thresholds chosen after the last round.
    postprocessing: Option<PostprocessingJson>,
    /// Participants whose own signed messages proved a deviation, with the first reason: left
    /// out of every later phase.
    excluded: BTreeMap<String, String>,
}

/// One federation, shared by the gRPC handlers and the driver that runs its rounds.
pub struct Federation {
    config: CoordinatorConfig,
    definition: FederationDefinition,
    columns: Vec<String>,
    state: Mutex<State>,
    task: watch::Sender<Task>,
    activity: Notify,
    meter: WireMeter,
    trust: Trust,
    fairness: Option<crate::fairness::FairnessAudit>,
}

/// How a federation ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub rounds: Vec<RoundRecord>,
    pub model_path: PathBuf,
    pub rounds_path: PathBuf,
    pub model: ModelArtefact,
}

#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Artefact(#[from] crate::artefact::ArtefactError),
    #[error("fairness: {0}")]
    Fairness(String),
}

/// The federation definition a checked configuration stands for, as every participant receives
/// it at registration (and the simulator runs its experiments on); `fairness` is the audit's
/// parameters, once its keys are loaded.
pub fn definition(
    config: &CoordinatorConfig,
    fairness: Option<accord_proto::v1::FairnessParams>,
) -> FederationDefinition {
    FederationDefinition {
        federation_id: config.federation_id.clone(),
        schema: config.schema().ok(),
        training: Some(config.training_params()),
        evaluation: Some(config.evaluation_params()),
        rounds: config.federation.rounds,
        aggregation: config.federation.aggregation.clone(),
        min_participants: config.federation.min_participants,
        secure_aggregation: (config.federation.aggregation == accord_crypto::secagg::SCHEME)
            .then(|| config.secure_aggregation.params()),
        fairness,
        mitigation: config.mitigation().ok().flatten(),
        postprocessing: config.postprocessing().ok().flatten(),
    }
}

impl Federation {
    /// A federation from a checked configuration; `meter` counts participants' traffic and
    /// `trust` checks the certificates of participants' signed protocol messages.
    /// With a `[fairness]` section, loads the auditor's server bundle (checking its signature
    /// against the pinned key) and decompresses the server key, which takes a few seconds.
    pub fn new(
        config: CoordinatorConfig,
        meter: WireMeter,
        trust: Trust,
    ) -> Result<Self, FederationError> {
        let fairness = config
            .fairness
            .as_ref()
            .map(|section| crate::fairness::FairnessAudit::load(&config, section))
            .transpose()?;
        let definition = definition(&config, fairness.as_ref().map(|f| f.params.clone()));
        let columns = definition
            .schema
            .as_ref()
            .map(encoded_columns)
            .unwrap_or_default();
        info!(
            sha256 = %accord_crypto::hash::sha256_hex(&prost::Message::encode_to_vec(&definition)),
            "federation definition (participants may pin this hash)"
        );
        let mitigation = MitigationRun::new(
            definition.schema.as_ref().unwrap_or(&Default::default()),
            definition.mitigation.as_ref(),
            definition.postprocessing.as_ref(),
            config.evaluation_params(),
        );
        let start = Task {
            round: 0,
            phase: Phase::Unspecified,
        };
        Ok(Self {
            config,
            definition,
            columns,
            fairness,
            state: Mutex::new(State {
                lifecycle: FederationState::Registration,
                registered: BTreeSet::new(),
                sessions: BTreeMap::new(),
                task: start,
                selected: BTreeSet::new(),
                aggregator: None,
                deadline: Instant::now(),
                aborted: None,
                standardization: None,
                model: None,
                history: Vec::new(),
                failure: None,
                told_finished: BTreeSet::new(),
                closing: false,
                mitigation,
                postprocessing: None,
                excluded: BTreeMap::new(),
            }),
            task: watch::Sender::new(start),
            activity: Notify::new(),
            meter,
            trust,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("federation state lock")
    }

    fn check_header(&self, header: Option<&Header>) -> Result<u32, Refusal> {
        let header = header.ok_or(Refusal::MissingHeader)?;
        if header.federation_id != self.definition.federation_id {
            return Err(Refusal::WrongFederation {
                got: header.federation_id.clone(),
                served: self.definition.federation_id.clone(),
            });
        }
        Ok(header.round)
    }

    /// Refuses `name` if the federation has a roster without it.
    fn check_roster(&self, name: &str) -> Result<(), Refusal> {
        let roster = &self.config.federation.roster;
        if roster.is_empty() || roster.iter().any(|r| r == name) {
            Ok(())
        } else {
            Err(Refusal::NotOnRoster(name.to_owned()))
        }
    }

    /// Refuses `name` unless it registered, and a request from a session its later
    /// registration replaced (`session` None: the request is not tied to a session).
    fn check_registered(state: &State, name: &str, session: Option<u64>) -> Result<(), Refusal> {
        match (state.sessions.get(name), session) {
            (None, _) => Err(Refusal::NotRegistered(name.to_owned())),
            (Some(_), Some(0)) => Err(Refusal::NoSession(name.to_owned())),
            (Some(current), Some(session)) if *current != session => {
                Err(Refusal::Replaced(name.to_owned()))
            }
            _ => Ok(()),
        }
    }

    /// The session a request's header names.
    fn session(header: Option<&Header>) -> Option<u64> {
        Some(header.map_or(0, |h| h.session))
    }

    fn wrong_round(state: &State, got_round: u32, got_phase: Phase) -> Refusal {
        Refusal::WrongRound {
            got_round,
            got_phase: got_phase.label(),
            round: state.task.round,
            phase: state.task.phase.label(),
        }
    }

    /// Registers the participant named by its certificate.
    pub fn register(
        &self,
        name: &str,
        header: Option<&Header>,
    ) -> Result<RegisterResponse, Refusal> {
        let round = self.check_header(header)?;
        self.check_roster(name)?;
        let mut state = self.state();
        if round != 0 {
            return Err(Self::wrong_round(&state, round, Phase::Unspecified));
        }
        match state.lifecycle {
            FederationState::Finished => return Err(Refusal::Closed("finished")),
            FederationState::Failed => {
                return Err(Refusal::Failed(state.failure.clone().unwrap_or_default()));
            }
            _ => {}
        }
        // A new session per registration (a number, not a secret: the caller is authenticated
        // by its certificate): a later registration of the same name replaces this one, and
        // the earlier session's next request is refused (Refusal::Replaced).
        let session = state.sessions.values().max().map_or(1, |last| last + 1);
        let replaced = state.sessions.insert(name.to_owned(), session).is_some();
        state.registered.insert(name.to_owned());
        if replaced {
            warn!(
                participant = name,
                "participant registered again (a restart, or a second process holding the same certificate): the earlier session is replaced and will be refused"
            );
        } else {
            info!(
                participant = name,
                registered = state.registered.len(),
                "participant registered"
            );
        }
        drop(state);
        self.activity.notify_waiters();
        if replaced {
            // Wake the long polls, so a replaced session hears it now rather than at its next
            // request.
            self.task.send_modify(|_| {});
        }
        Ok(RegisterResponse {
            federation: Some(self.definition.clone()),
            participant_name: name.to_owned(),
            session,
            replaced,
        })
    }

    /// The next task for a participant that completed `completed` of round `header.round`, or
    /// None if there is none yet.
    fn announcement(
        &self,
        name: &str,
        header: Option<&Header>,
        completed: Phase,
    ) -> Result<Option<RoundAnnouncement>, Refusal> {
        let round = self.check_header(header)?;
        let mut state = self.state();
        Self::check_registered(&state, name, Self::session(header))?;
        if let Some(failure) = &state.failure {
            return Err(Refusal::Failed(failure.clone()));
        }
        if round > state.task.round {
            return Err(Self::wrong_round(&state, round, completed));
        }
        let current = state.task;
        if current.order() <= (round, rank(completed)) || current.phase == Phase::Unspecified {
            return Ok(None);
        }
        // With post-processing a participant is done once it has downloaded the final
        // thresholds (see `model`).
        if current.phase == Phase::Finished && self.definition.postprocessing.is_none() {
            state.told_finished.insert(name.to_owned());
            self.activity.notify_waiters();
        }
        // A participant joins a phase at its first stage, once.
        let selected = state.selected.contains(name)
            && state.aggregator.as_ref().is_some_and(|a| {
                matches!(a.stage(), SecAggStage::Unspecified | SecAggStage::Setup)
                    && !a.received().contains(name)
            });
        let left = state.deadline.saturating_duration_since(Instant::now());
        Ok(Some(RoundAnnouncement {
            header: Some(Header::new(&self.definition.federation_id, current.round)),
            phase: current.phase as i32,
            selected,
            deadline_ms: left.as_millis() as u64,
            pending: false,
        }))
    }

    /// Long poll: the caller's next task, or a pending announcement after `timeout`.
    pub async fn next_announcement(
        &self,
        name: &str,
        header: Option<&Header>,
        completed: Phase,
        timeout: Duration,
    ) -> Result<RoundAnnouncement, Refusal> {
        let give_up = Instant::now() + timeout;
        let mut changes = self.task.subscribe();
        loop {
            changes.borrow_and_update();
            if let Some(announcement) = self.announcement(name, header, completed)? {
                return Ok(announcement);
            }
            if tokio::time::timeout_at(give_up, changes.changed())
                .await
                .is_err()
            {
                return Ok(RoundAnnouncement {
                    header: header.cloned(),
                    pending: true,
                    ..Default::default()
                });
            }
        }
    }

    /// The global model for the current fit or evaluate phase.
    pub fn model(&self, name: &str, header: Option<&Header>) -> Result<GlobalModel, Refusal> {
        let round = self.check_header(header)?;
        let mut state = self.state();
        Self::check_registered(&state, name, Self::session(header))?;
        if round != state.task.round {
            return Err(Self::wrong_round(&state, round, Phase::Unspecified));
        }
        if state.task.phase == Phase::Finished {
            state.told_finished.insert(name.to_owned());
            self.activity.notify_waiters();
        }
        let (Some((weights, intercept)), Some(standardization)) =
            (&state.model, &state.standardization)
        else {
            return Err(Refusal::NoModel(state.task.round, state.task.phase.label()));
        };
        Ok(GlobalModel {
            header: Some(Header::new(&self.definition.federation_id, round)),
            columns: self.columns.clone(),
            weights: weights.clone(),
            intercept: *intercept,
            standardization: Some(standardization.clone()),
            feedback: state.mitigation.feedback(),
        })
    }

    /// Takes a participant's protected vector for the current phase (insecure-plain).
    pub fn upload(
        &self,
        name: &str,
        header: Option<&Header>,
        phase: Phase,
        vector: Option<ProtectedVector>,
    ) -> Result<UploadReceipt, Refusal> {
        self.submit(
            name,
            header,
            Self::session(header),
            phase,
            Submission::Plain(vector.unwrap_or_default()),
        )
    }

    /// Takes a participant's signed secure-aggregation message for the current stage.
    pub fn submit_signed(
        &self,
        name: &str,
        certificate_der: std::sync::Arc<Vec<u8>>,
        message: SignedStageMessage,
    ) -> Result<UploadReceipt, Refusal> {
        let header = message.header.clone();
        let phase = message.phase();
        // A signed stage message is bound to its sender's identity key and to its round, phase
        // and stage (its header is signed, so it carries no session): it is the participant's
        // own whichever process sent it. A replaced process learns so at its next await.
        self.submit(
            name,
            header.as_ref(),
            None,
            phase,
            Submission::Signed {
                certificate_der,
                message,
            },
        )
    }

    fn submit(
        &self,
        name: &str,
        header: Option<&Header>,
        session: Option<u64>,
        phase: Phase,
        submission: Submission,
    ) -> Result<UploadReceipt, Refusal> {
        let round = self.check_header(header)?;
        let mut state = self.state();
        Self::check_registered(&state, name, session)?;
        if round != state.task.round || phase != state.task.phase {
            return Err(Self::wrong_round(&state, round, phase));
        }
        if !state.selected.contains(name) {
            return Err(Refusal::NotSelected(name.to_owned()));
        }
        let aggregator = state
            .aggregator
            .as_mut()
            .ok_or(Refusal::Closed("phase closed"))?;
        aggregator
            .accept(name, submission)
            .map_err(Refusal::Aggregation)?;
        let received = aggregator.received().len() as u32;
        let expected = aggregator.expected().len() as u32;
        drop(state);
        self.activity.notify_waiters();
        Ok(UploadReceipt {
            header: Some(Header::new(&self.definition.federation_id, round)),
            received,
            expected,
        })
    }

    /// The federation's state and history, for a registered participant `name` (so one on the
    /// roster, if there is one) or an observer (`federation.observers`).
    pub fn status(&self, name: &str, role: Role) -> Result<StatusResponse, Refusal> {
        if role == Role::Participant {
            self.check_roster(name)?;
        } else if !self.config.federation.observers.iter().any(|o| o == name) {
            return Err(Refusal::NotObserver(name.to_owned()));
        }
        let state = self.state();
        if role == Role::Participant && !state.registered.contains(name) {
            return Err(Refusal::NotRegistered(name.to_owned()));
        }
        Ok(StatusResponse {
            header: Some(Header::new(
                &self.definition.federation_id,
                state.task.round,
            )),
            state: state.lifecycle as i32,
            phase: state.task.phase as i32,
            total_rounds: self.definition.rounds,
            registered: state.registered.iter().cloned().collect(),
            min_participants: self.definition.min_participants,
            received: state
                .aggregator
                .as_ref()
                .map_or(0, |a| a.received().len() as u32),
            expected: state
                .aggregator
                .as_ref()
                .map_or(0, |a| a.expected().len() as u32),
            history: state.history.iter().map(summary).collect(),
            message: state.failure.clone().unwrap_or_default(),
        })
    }

    /// Waits until `done` holds or `deadline` passes; true if it holds.
    async fn wait_until(&self, deadline: Instant, done: impl Fn(&State) -> bool) -> bool {
        loop {
            let notified = self.activity.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if done(&self.state()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return done(&self.state());
            }
        }
    }

    /// What a participant needs for the next stage of a secure aggregation, once the stage it
    /// completed has closed; a pending relay after `timeout`. If the phase is over, the relay
    /// says DONE (with the reason if it aborted).
    pub async fn stage_relay(
        &self,
        name: &str,
        header: Option<&Header>,
        phase: Phase,
        completed: SecAggStage,
        timeout: Duration,
    ) -> Result<SecAggRelay, Refusal> {
        let round = self.check_header(header)?;
        let give_up = Instant::now() + timeout;
        let mut changes = self.task.subscribe();
        loop {
            changes.borrow_and_update();
            {
                let state = self.state();
                Self::check_registered(&state, name, Self::session(header))?;
                let asked = Task { round, phase };
                if state.task.order() < asked.order() {
                    return Err(Self::wrong_round(&state, round, phase));
                }
                let done = |aborted: String| SecAggRelay {
                    header: Some(Header::new(&self.definition.federation_id, round)),
                    phase: phase as i32,
                    stage: SecAggStage::Done as i32,
                    aborted,
                    ..Default::default()
                };
                let reason = || {
                    state
                        .aborted
                        .as_ref()
                        .filter(|(task, _)| *task == asked)
                        .map(|(_, reason)| reason.clone())
                        .unwrap_or_default()
                };
                match &state.aggregator {
                    // The stage is closing: what comes next is not known yet.
                    None if state.closing && state.task == asked => {}
                    Some(a) if state.task == asked => {
                        if a.stage() as i32 > completed as i32 {
                            return Ok(a.relay(name).unwrap_or_else(|| done(reason())));
                        }
                    }
                    _ => return Ok(done(reason())),
                }
            }
            if tokio::time::timeout_at(give_up, changes.changed())
                .await
                .is_err()
            {
                return Ok(SecAggRelay {
                    header: header.cloned(),
                    phase: phase as i32,
                    stage: completed as i32,
                    pending: true,
                    ..Default::default()
                });
            }
        }
    }

    /// Opens a phase for the registered participants not excluded and runs its stages, each
    /// until every expected participant submitted or the stage deadline passed. Returns the sum
    /// and who contributed, or the reason the phase aborted; and, either way, the participants
    /// named for deviating (logged; those proven by their own messages are excluded from
    /// every later phase).
    async fn run_phase(&self, round: u32, phase: Phase, vector: PhaseVector) -> PhaseOutcome {
        let (result, culprits) = self.run_stages(round, phase, vector).await;
        let mut state = self.state();
        for culprit in &culprits {
            warn!(round, phase = phase.label(), participant = %culprit.participant, stage = stage_label(culprit.stage), reason = %culprit.reason, proven = culprit.proven, "participant named for deviating from the protocol");
            if culprit.proven && !state.excluded.contains_key(&culprit.participant) {
                warn!(participant = %culprit.participant, "excluded from the rest of the federation");
                state
                    .excluded
                    .insert(culprit.participant.clone(), culprit.reason.clone());
            }
        }
        PhaseOutcome {
            result,
            culprits: culprits
                .iter()
                .map(|c| {
                    format!(
                        "{} ({}, {}): {}",
                        c.participant,
                        phase.label(),
                        stage_label(c.stage),
                        c.reason
                    )
                })
                .collect(),
        }
    }

    async fn run_stages(
        &self,
        round: u32,
        phase: Phase,
        vector: PhaseVector,
    ) -> (
        Result<(Vec<f64>, BTreeSet<String>), String>,
        Vec<accord_crypto::secagg::Culprit>,
    ) {
        let stage_time = Duration::from_secs(self.config.federation.phase_timeout_secs);
        let task = Task { round, phase };
        {
            let mut state = self.state();
            let selected: BTreeSet<String> = state
                .registered
                .iter()
                .filter(|r| !state.excluded.contains_key(*r))
                .cloned()
                .collect();
            let default_params = accord_proto::v1::SecAggParams::default();
            let spec = PhaseSpec {
                context: Context {
                    federation: self.definition.federation_id.clone(),
                    round,
                    phase,
                },
                vector,
                selected: selected.clone(),
                params: self
                    .definition
                    .secure_aggregation
                    .as_ref()
                    .unwrap_or(&default_params),
                trust: &self.trust,
            };
            let started = match (&self.fairness, phase) {
                (Some(audit), Phase::Fairness) => audit.start(spec),
                _ => aggregation::start(&self.definition.aggregation, spec),
            };
            let aggregator = match started {
                Ok(aggregator) => aggregator,
                Err(e) => {
                    let reason = e.to_string();
                    state.aborted = Some((task, reason.clone()));
                    return (Err(reason), Vec::new());
                }
            };
            state.task = task;
            state.selected = selected;
            state.aggregator = Some(aggregator);
        }
        self.task.send_replace(task);
        loop {
            let deadline = Instant::now() + stage_time;
            self.state().deadline = deadline;
            let complete = self
                .wait_until(deadline, |s| {
                    s.aggregator
                        .as_ref()
                        .is_some_and(|a| a.received().is_superset(&a.expected()))
                })
                .await;
            let mut aggregator = {
                let mut state = self.state();
                let aggregator = state.aggregator.take().expect("phase aggregator");
                // Closing can be heavy (the fairness phase verifies proofs and sums ciphertexts):
                // it runs without the state lock, on a blocking thread, while participants
                // waiting for the next stage keep waiting and late messages are refused.
                state.closing = true;
                aggregator
            };
            let stage = aggregator.stage();
            if !complete {
                let missing: Vec<_> = aggregator
                    .expected()
                    .difference(&aggregator.received())
                    .cloned()
                    .collect();
                warn!(round, phase = phase.label(), stage = stage_label(stage), missing = ?missing, "stage deadline passed without every participant");
            }
            let (aggregator, closed) = tokio::task::spawn_blocking(move || {
                let closed = aggregator.close_stage();
                (aggregator, closed)
            })
            .await
            .expect("closing a stage does not panic");
            let culprits = aggregator.culprits();
            let mut state = self.state();
            state.closing = false;
            state.aggregator = Some(aggregator);
            let result = match closed {
                Ok(Closed::Next) => None,
                Ok(Closed::Done { sum, contributors }) => Some(Ok((sum, contributors))),
                Err(e) => {
                    let reason = e.to_string();
                    warn!(round, phase = phase.label(), %reason, "phase aborted");
                    state.aborted = Some((task, reason.clone()));
                    Some(Err(reason))
                }
            };
            if result.is_some() {
                state.aggregator = None;
            }
            drop(state);
            // Wake the participants waiting for the next stage (or for the phase's end).
            self.task.send_modify(|_| {});
            if let Some(result) = result {
                return (result, culprits);
            }
        }
    }

    fn fail(&self, message: String) -> FederationError {
        warn!(%message, "federation failed");
        let mut state = self.state();
        state.lifecycle = FederationState::Failed;
        state.failure = Some(message.clone());
        drop(state);
        self.task.send_modify(|_| {});
        FederationError::Failed(message)
    }

    /// Runs registration and every round, writing rounds.csv as rounds finish and model.json at
    /// the end.
    pub async fn drive(&self) -> Result<Outcome, FederationError> {
        let min = self.definition.min_participants;
        let registration =
            Instant::now() + Duration::from_secs(self.config.federation.registration_timeout_secs);
        let roster: BTreeSet<String> = self.config.federation.roster.iter().cloned().collect();
        if self.config.federation.wait_for_roster && !roster.is_empty() {
            // Give every roster member until the registration deadline; then go on with those
            // who came, if they are enough.
            self.wait_until(registration, |s| s.registered.is_superset(&roster))
                .await;
        }
        if !self
            .wait_until(registration, |s| s.registered.len() as u32 >= min)
            .await
        {
            let n = self.state().registered.len();
            return Err(self.fail(format!(
                "only {n} of the {min} participants needed registered within {} s",
                self.config.federation.registration_timeout_secs
            )));
        }
        self.state().lifecycle = FederationState::Running;
        let d = self.columns.len();

        let schema = self.definition.schema.clone().unwrap_or_default();
        let max_rows = self.config.secure_aggregation.max_rows_per_participant;
        let vector =
            PhaseVector::standardize(&schema, self.definition.mitigation.as_ref(), max_rows)
                .map_err(|e| self.fail(e.to_string()))?;
        let standardized = self.run_phase(0, Phase::Standardize, vector).await;
        let named = standardized.named();
        // Named in the standardization: reported with the first round.
        let mut earlier_culprits = standardized.culprits.clone();
        let (sums, contributors) = standardized
            .result
            .map_err(|reason| self.fail(format!("standardization aborted: {reason}{named}")))?;
        let contributors = contributors.len() as u32;
        if contributors < min {
            return Err(self.fail(format!(
                "standardization: {contributors} of the {min} participants needed uploaded their sums"
            )));
        }
        let layout = StandardizationLayout::new(&schema).map_err(|e| self.fail(e.to_string()))?;
        let (sums, extras) = sums.split_at(layout.len().min(sums.len()));
        let sums = layout
            .from_slice(sums)
            .map_err(|e| self.fail(format!("standardization: {e}")))?;
        let standardization = standardization(&layout, &sums)
            .map_err(|e| self.fail(format!("standardization: {e}")))?;
        {
            let mut state = self.state();
            state
                .mitigation
                .absorb_standardization(extras, sums.count as f64)
                .expect("aggregated to the layout's length");
            state.standardization = Some(standardization);
            state.model = Some((vec![0.0; d], 0.0));
        }
        info!(
            samples = sums.count,
            participants = contributors,
            "standardization computed from aggregated sums"
        );

        let rounds_path = self.config.out_dir.join("rounds.csv");
        let bins = self
            .definition
            .evaluation
            .as_ref()
            .map_or(100, |e| e.histogram_bins) as usize;
        // The quality of the model in force (the last one a fit made), measured on that model
        // only: a new model starts unmeasured, so an aborted evaluation leaves it without one.
        let mut model_quality: Option<Quality> = None;
        for round in 1..=self.definition.rounds {
            let started = Instant::now();
            let (up, down) = (self.meter.received(), self.meter.sent());
            let clip = self.config.secure_aggregation.clip;
            let vector = self.state().mitigation.fit_vector(d, clip, max_rows);
            let fit = self.run_phase(round, Phase::Fit, vector).await;
            let mut culprits = std::mem::take(&mut earlier_culprits);
            culprits.extend(fit.culprits);
            let fitted =
                fit.result
                    .map_err(|r| format!("fit: {r}"))
                    .and_then(|(sum, contributors)| {
                        let model = self
                            .state()
                            .mitigation
                            .fitted(round, &sum, d)
                            .expect("aggregated to the layout's length");
                        let contributors = contributors.len() as u32;
                        if contributors < min {
                            Err(format!(
                                "fit: {contributors} of the {min} participants needed contributed"
                            ))
                        } else if model.samples <= 0.0 {
                            Err("fit: the contributions hold no samples".to_owned())
                        } else {
                            Ok((model, contributors))
                        }
                    });
            let mut record = RoundRecord {
                round,
                participants: 0,
                quality: None,
                bytes_up: 0,
                bytes_down: 0,
                seconds: 0.0,
                fit_aborted: false,
                evaluation_aborted: false,
                abort_reason: String::new(),
                culprits: Vec::new(),
            };
            match fitted {
                Err(reason) => {
                    warn!(round, %reason, "round aborted in its fit: the previous global model stays");
                    record.fit_aborted = true;
                    record.abort_reason = reason;
                }
                Ok((sum, fitted)) => {
                    record.participants = fitted;
                    let weights = sum
                        .weighted_weights
                        .iter()
                        .map(|w| w / sum.samples)
                        .collect();
                    {
                        let mut state = self.state();
                        state.model = Some((weights, sum.weighted_intercept / sum.samples));
                        state.mitigation.model_changed();
                    }
                    model_quality = None;
                    let vector = self.state().mitigation.evaluation_vector(max_rows);
                    let evaluation = self.run_phase(round, Phase::Evaluate, vector).await;
                    culprits.extend(evaluation.culprits);
                    let evaluated = evaluation.result.map_err(|r| format!("evaluate: {r}")).and_then(|(counts, evaluated)| {
                        let evaluated = evaluated.len() as u32;
                        if evaluated < min {
                            return Err(format!(
                                "evaluate: {evaluated} of the {min} participants needed contributed"
                            ));
                        }
                        let (counts, extras) = counts.split_at(EvaluationCounts::len(bins));
                        self.state()
                            .mitigation
                            .absorb_evaluation(extras)
                            .expect("layout length");
                        let counts =
                            EvaluationCounts::from_slice(counts, bins).expect("layout length");
                        quality(round, &counts)
                            .ok_or_else(|| "evaluate: no records were evaluated".to_owned())
                    });
                    match evaluated {
                        Ok(q) => {
                            record.quality = Some(q);
                            model_quality = Some(q);
                        }
                        Err(reason) => {
                            warn!(round, %reason, "evaluation aborted: the round's model is in force, unmeasured");
                            record.evaluation_aborted = true;
                            record.abort_reason = reason;
                        }
                    }
                }
            }
            record.culprits = culprits;
            record.bytes_up = self.meter.received() - up;
            record.bytes_down = self.meter.sent() - down;
            record.seconds = started.elapsed().as_secs_f64();
            let mut state = self.state();
            if let Some(q) = &record.quality {
                info!(
                    round,
                    accuracy = q.accuracy,
                    log_loss = q.log_loss,
                    auc = ?q.auc,
                    mitigated_gap = ?state.mitigation.gap(),
                    "round finished"
                );
            }
            state.history.push(record);
            write_rounds_csv(&rounds_path, &state.history)?;
        }

        {
            let mut state = self.state();
            state.postprocessing = state.mitigation.choose_thresholds();
            match &state.postprocessing {
                Some(post) => {
                    info!(thresholds = %post.describe(), "post-processing: per-group thresholds in force")
                }
                None if accord_proto::mitigation::active_postprocessing(
                    self.definition.postprocessing.as_ref(),
                )
                .is_some() =>
                {
                    warn!(
                        "post-processing: no per-group thresholds, the final model was never evaluated; the single decision threshold stays in force"
                    )
                }
                None => {}
            }
        }
        let model = self.artefact(model_quality);
        let model_path = self.config.out_dir.join("model.json");
        model.write(&model_path)?;
        if let Some(audit) = &self.fairness {
            let round = self.definition.rounds;
            let empty = PhaseVector {
                bounds: Vec::new(),
                relations: Vec::new(),
            };
            let audited = self.run_phase(round, Phase::Fairness, empty).await;
            audit.name_culprits(&audited.culprits);
            match audited.result {
                Ok(_) => {
                    let written = audit
                        .write_outcome(&self.definition, round, &model, &self.config.out_dir)
                        .map_err(|e| self.fail(format!("fairness: {e}")))?;
                    info!(aggregate = %written.display(), "encrypted fairness aggregate written for the auditor");
                }
                Err(reason) => {
                    warn!(%reason, "the fairness phase aborted: no aggregate for the auditor")
                }
            }
        }
        let rounds = {
            let mut state = self.state();
            state.lifecycle = FederationState::Finished;
            state.task = Task {
                round: self.definition.rounds,
                phase: Phase::Finished,
            };
            state.selected.clear();
            state.history.clone()
        };
        self.task.send_replace(Task {
            round: self.definition.rounds,
            phase: Phase::Finished,
        });
        info!(path = %model_path.display(), "federation finished; model written");
        Ok(Outcome {
            rounds,
            model_path,
            rounds_path,
            model,
        })
    }

    /// Waits (up to `grace`) until every registered participant has been told the federation is over.
    pub async fn await_farewells(&self, grace: Duration) {
        self.wait_until(Instant::now() + grace, |s| {
            s.told_finished.is_superset(&s.registered)
        })
        .await;
    }

    fn artefact(&self, quality: Option<Quality>) -> ModelArtefact {
        let state = self.state();
        let (weights, intercept) = state.model.clone().unwrap_or_default();
        let standardization = state.standardization.clone().unwrap_or_default();
        ModelArtefact {
            format: MODEL_FORMAT.into(),
            federation_id: self.definition.federation_id.clone(),
            schema: self.config.schema.clone(),
            columns: self.columns.clone(),
            standardization: StandardizationJson {
                count: standardization.count,
                means: standardization.means,
                std_devs: standardization.std_devs,
            },
            weights,
            intercept,
            rounds: self.definition.rounds,
            rounds_completed: state.history.iter().filter(|r| !r.fit_aborted).count() as u32,
            // Those whose fit uploads made the model written: the last round whose fit
            // completed (not everyone who registered).
            participants: state
                .history
                .iter()
                .rev()
                .find(|r| !r.fit_aborted)
                .map_or(0, |r| r.participants),
            aggregation: self.definition.aggregation.clone(),
            training: self.config.training.clone(),
            evaluation: self.config.evaluation.clone(),
            quality,
            postprocessing: state.postprocessing.clone(),
            content_hash: String::new(),
        }
        .seal()
    }
}

/// How a phase ended: its sum and contributors, or why it aborted; and who was named.
struct PhaseOutcome {
    result: Result<(Vec<f64>, BTreeSet<String>), String>,
    /// "name (phase, stage): reason" for each participant named for deviating.
    culprits: Vec<String>,
}

impl PhaseOutcome {
    /// The named participants as a clause for a message ("" if none).
    fn named(&self) -> String {
        if self.culprits.is_empty() {
            String::new()
        } else {
            format!("; named: {}", self.culprits.join("; "))
        }
    }
}

/// The standardization every participant applies, from the consortium's exact sums.
fn standardization(
    layout: &StandardizationLayout,
    sums: &StandardizationSums,
) -> Result<Standardization, StandardizationError> {
    let (means, std_devs) = layout.moments(sums)?;
    Ok(Standardization {
        means,
        std_devs,
        count: sums.count,
    })
}

fn summary(r: &RoundRecord) -> RoundSummary {
    let q = r.quality;
    RoundSummary {
        round: r.round,
        participants: r.participants,
        log_loss: q.map(|q| q.log_loss),
        accuracy: q.map(|q| q.accuracy),
        auc: q.and_then(|q| q.auc),
        brier: q.map(|q| q.brier),
        bytes_up: r.bytes_up,
        bytes_down: r.bytes_down,
        seconds: r.seconds,
        aborted: r.fit_aborted,
        samples: q.map_or(0, |q| q.samples),
        evaluation_aborted: r.evaluation_aborted,
        abort_reason: r.abort_reason.clone(),
    }
}

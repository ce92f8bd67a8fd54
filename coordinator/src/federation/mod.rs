//! The federation's state and its rounds.
//!
//! Round 0 is the standardization pass; rounds 1..=R each have a fit phase (participants train
//! from the global model and upload a sample-weighted model) and an evaluate phase (participants
//! evaluate the new global model and upload counts). Each phase takes uploads from the
//! participants selected when it opened, closes when all have uploaded or its deadline passes,
//! and hands the sum to the next step. A phase that closes with fewer than `min_participants`
//! contributions aborts its round: the previous global model stays.

use crate::aggregation::{self, AggregationError, Closed, PhaseAggregator, PhaseSpec, Submission};
use crate::artefact::{RoundRecord, write_rounds_csv};
use crate::config::CoordinatorConfig;
use crate::plan::{PhaseAbort, PhaseResult, RoundPlan};
use accord_crypto::pki::Role;
use accord_crypto::secagg::Trust;
use accord_crypto::secagg::{Context, stage_label};
use accord_proto::artefact::{MODEL_FORMAT, ModelArtefact, StandardizationJson};
use accord_proto::layout::encoded_columns;
use accord_proto::phase::PhaseVector;
use accord_proto::scheme::AggregationScheme;
use accord_proto::transport::WireMeter;
use accord_proto::v1::{
    FederationDefinition, FederationState, GlobalModel, Header, Phase, ProtectedVector,
    RegisterResponse, RoundAnnouncement, RoundSummary, StatusResponse, UploadReceipt,
};
use accord_proto::v1::{SecAggRelay, SecAggStage, SignedStageMessage};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::{info, warn};

mod driver;
mod handlers;
#[cfg(test)]
mod tests;

/// Why the coordinator refused a participant's message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// The message names another federation than the one served.
    #[error("federation '{got}' is not served here (this coordinator serves '{served}')")]
    WrongFederation {
        /// The federation id the message names.
        got: String,
        /// The federation id served here.
        served: String,
    },
    /// A request without the header naming the federation and round.
    #[error("the request has no header (federation id and round)")]
    MissingHeader,
    /// A message for another round or phase than the one in progress.
    #[error(
        "message for round {got_round} ({got_phase}), but the federation is at round {round} ({phase})"
    )]
    WrongRound {
        /// The round the message is for.
        got_round: u32,
        /// The phase the message is for.
        got_phase: &'static str,
        /// The federation's current round.
        round: u32,
        /// The federation's current phase.
        phase: &'static str,
    },
    /// The sender has not registered.
    #[error("participant '{0}' is not registered in this federation")]
    NotRegistered(String),
    /// The participant registered again; this older session is closed.
    #[error(
        "participant '{0}' registered again (a restart, or a second process holding its certificate): this session was replaced and is closed"
    )]
    Replaced(String),
    /// The request carries no session id.
    #[error(
        "the request of '{0}' carries no session: send the session the registration returned in the header"
    )]
    NoSession(String),
    /// The participant is not on the federation's roster.
    #[error("participant '{0}' is not on this federation's roster")]
    NotOnRoster(String),
    /// The participant was not selected for the current phase.
    #[error("participant '{0}' was not selected for this phase")]
    NotSelected(String),
    /// The caller is not one of the federation's observers.
    #[error("'{0}' is not one of this federation's observers (federation.observers)")]
    NotObserver(String),
    /// No global model exists yet: the current round and phase.
    #[error("no global model yet: the federation is at round {0} ({1})")]
    NoModel(u32, &'static str),
    /// The federation has ended; the reason.
    #[error("the federation is over ({0})")]
    Closed(&'static str),
    /// The federation failed; the reason.
    #[error("the federation failed: {0}")]
    Failed(String),
    /// The phase's aggregation refused the contribution.
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
        Phase::EvaluateThresholds => 4,
        Phase::Fairness => 5,
        Phase::Finished => 6,
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
    /// The round plan: the standardization, the model in force, the rounds so far.
    plan: RoundPlan,
    failure: Option<String>,
    told_finished: BTreeSet<String>,
    /// A stage of the open phase is being closed (its aggregator is out of the state).
    closing: bool,
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
    /// One record per round run, in order.
    pub rounds: Vec<RoundRecord>,
    /// The final model's evaluation with the per-group thresholds in force (post-processing).
    pub thresholded: Option<crate::plan::Evaluation>,
    /// Where the final model was written (model.json).
    pub model_path: PathBuf,
    /// Where the per-round history was written (rounds.csv).
    pub rounds_path: PathBuf,
    /// The final model as written.
    pub model: ModelArtefact,
}

/// Why a federation failed; the coordinator's status says the same to every participant.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// Fewer participants than `min_participants` registered before the deadline.
    #[error("only {registered} of the {min} participants needed registered within {secs} s")]
    Registration {
        /// Participants registered when the deadline passed.
        registered: usize,
        /// The definition's `min_participants`.
        min: u32,
        /// `federation.registration_timeout_secs`.
        secs: u64,
    },
    /// The round plan cannot go on (the standardization failed).
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    /// rounds.csv or model.json cannot be written.
    #[error(transparent)]
    Artefact(#[from] crate::artefact::ArtefactError),
    /// The fairness audit's keys cannot be loaded, or its outcome written.
    #[error(transparent)]
    Fairness(#[from] crate::fairness::FairnessError),
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
        secure_aggregation: (config.aggregation() == AggregationScheme::SecAgg)
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
        let plan = RoundPlan::new(
            definition.clone(),
            columns.clone(),
            config.secure_aggregation.params(),
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
                plan,
                failure: None,
                told_finished: BTreeSet::new(),
                closing: false,
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
}

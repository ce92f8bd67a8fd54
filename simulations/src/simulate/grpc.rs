//! `transport = "grpc"`: the run as a real federation, the coordinator and every participant
//! in this process but speaking mutual-TLS gRPC over loopback, with the experiment's dropouts
//! planted as each participant's [`FaultPlan`] (withholdings, run with
//! [`accord_participant::run_with`]). The round records come from the coordinator itself (the
//! same round plan the in-process transport runs: the same figures, gaps included); stage
//! timings are per round only.

use super::RunError;
use super::config::{ExperimentConfig, Setting};
use super::federation::{
    Postprocessed, RoundOutcome, SimulationResult, draw_dropouts, fault_rng, gap_tuples, node_seed,
};
use crate::faults::{Fault, FaultAction, FaultPhase, FaultPlan, FaultStage};
use crate::local::{LocalError, LocalFederation};
use crate::synth::SynthSpec;
use accord_coordinator::CoordinatorConfig;
use accord_participant::model::LogisticModel;
use accord_proto::scheme::AggregationScheme;
use accord_proto::transport::WireMeter;
use std::path::Path;

/// Why the federation over gRPC could not run or failed.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    /// The federation's folder (PKI, data, configs) could not be laid out.
    #[error(transparent)]
    Local(#[from] LocalError),
    /// The coordinator's config was refused.
    #[error(transparent)]
    CoordinatorConfig(#[from] Box<accord_coordinator::ConfigError>),
    /// A participant's config was refused.
    #[error(transparent)]
    ParticipantConfig(#[from] accord_participant::ConfigError),
    /// The async runtime could not be started.
    #[error("the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The coordinator wrote no address within ten seconds.
    #[error("the coordinator did not start listening within 10 s")]
    NotListening,
    /// A coordinator or participant task panicked.
    #[error("a federation task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A participant failed.
    #[error(transparent)]
    Participant(#[from] accord_participant::ParticipantError),
    /// The coordinator failed.
    #[error(transparent)]
    Coordinator(#[from] accord_coordinator::CoordinatorError),
}

/// Runs the experiment's federation over gRPC in `dir`: one outcome per round, and the
/// thresholds the coordinator put in force.
pub(crate) fn run(config: &ExperimentConfig, dir: &Path) -> Result<SimulationResult, RunError> {
    let spec = config.data.synth_spec(config.seed)?;
    let settings = config.coordinator_settings()?;
    federate(config, dir, &spec, settings).map_err(|e| RunError::Grpc(Box::new(e)))
}

/// [`run`] once the experiment's settings are known.
fn federate(
    config: &ExperimentConfig,
    dir: &Path,
    spec: &SynthSpec,
    settings: Vec<Setting>,
) -> Result<SimulationResult, GrpcError> {
    let federation = LocalFederation::create(dir, spec)?;
    let n = federation.names.len();
    let a = &config.algorithm;
    let p = &config.privacy;
    let deadline = config.faults.deadline_secs.ceil().max(2.0) as i64;
    let mut coordinator_edits = config.simulated_federation();
    coordinator_edits.extend(settings.into_iter().map(|s| (s.coordinator, s.value)));
    let path =
        federation.write_coordinator_config(a.rounds, deadline as u64, &coordinator_edits)?;
    let coordinator = CoordinatorConfig::load(&path).map_err(Box::new)?;

    // Each participant's planned withholdings, drawn as the in-process transport draws them.
    let mut rng = fault_rng(config.seed);
    let mut plans = vec![FaultPlan::default(); n];
    // The phases in the order the round plan configures them; the evaluation with thresholds
    // comes last (and only with post-processing), so drawing for it changes no other phase.
    let phases = std::iter::once((0, FaultPhase::Standardize))
        .chain(
            (1..=a.rounds)
                .flat_map(|round| [(round, FaultPhase::Fit), (round, FaultPhase::Evaluate)]),
        )
        .chain(std::iter::once((a.rounds, FaultPhase::EvaluateThresholds)));
    // Who the experiment made drop in each round's fit, as the in-process transport counts it.
    let mut fit_dropped = vec![0; a.rounds as usize + 1];
    for (round, phase) in phases {
        for (i, stop) in draw_dropouts(&config.faults, n, &mut rng)
            .into_iter()
            .enumerate()
        {
            if let Some(stage) = stop.and_then(FaultStage::of) {
                plans[i].faults.push(Fault {
                    round,
                    phase,
                    stage,
                    action: FaultAction::Withhold,
                });
                if phase == FaultPhase::Fit {
                    fit_dropped[round as usize] += 1;
                }
            }
        }
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(GrpcError::Runtime)?;
    runtime.block_on(async {
        let coordinator = tokio::spawn(accord_coordinator::run(coordinator));
        let file = federation.address_file();
        let mut address = None;
        for _ in 0..1000 {
            if let Ok(text) = std::fs::read_to_string(&file) {
                address = Some(text.trim().to_owned());
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let address = address.ok_or(GrpcError::NotListening)?;
        let mut participants = Vec::new();
        for (i, (name, plan)) in federation.names.iter().zip(plans).enumerate() {
            let mut edits: Vec<(&str, toml::Value)> =
                vec![("seed", (node_seed(config.seed, i) as i64).into())];
            if p.aggregation == AggregationScheme::InsecurePlain.name() {
                edits.push(("allow_insecure_plain", true.into()));
            }
            let path = federation.write_participant_config(name, &address, &edits)?;
            let config = accord_participant::ParticipantConfig::load(&path)?;
            participants.push(tokio::spawn(async move {
                accord_participant::run_with(&config, WireMeter::new(), plan).await
            }));
        }
        for participant in participants {
            participant.await??;
        }
        let outcome = coordinator.await??;
        let rounds = outcome
            .rounds
            .iter()
            .map(|r| RoundOutcome {
                round: r.round,
                completed: r.participants as usize,
                dropped: fit_dropped[r.round as usize],
                aborted: r.fit_aborted,
                evaluation_aborted: r.evaluation_aborted,
                abort_reason: r.abort_reason.clone(),
                quality: r.quality,
                gaps: gap_tuples(&r.gaps),
                bytes_up: r.bytes_up,
                bytes_down: r.bytes_down,
                secs: r.seconds,
                ..Default::default()
            })
            .collect();
        Ok::<_, GrpcError>(SimulationResult {
            rounds,
            model: LogisticModel {
                weights: outcome.model.weights.iter().copied().collect(),
                intercept: outcome.model.intercept,
            },
            postprocessed: outcome
                .model
                .postprocessing
                .map(|thresholds| Postprocessed {
                    quality: thresholds.quality,
                    thresholds,
                    gaps: outcome
                        .thresholded
                        .as_ref()
                        .map_or_else(Vec::new, |e| gap_tuples(&e.gaps)),
                }),
        })
    })
}

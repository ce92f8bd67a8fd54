//! `accord simulate`: a whole experiment, reproducibly, on the production code paths.
//!
//! An experiment ([`ExperimentConfig`]) names the data, how it is split among simulated
//! participants ([`PartitionConfig`]), the algorithm, the privacy layer and the faults; a
//! `[sweep]` turns it into a grid of runs ([`RunPlan`]). Each run is a federation
//! ([`Simulation`]) whose participants use the participant library and, under secure
//! aggregation, the real protocol state machines with real certificates and keys; only the
//! transport is in-process (or, with `transport = "grpc"`, a real federation over loopback).
//! Each run is reported beside the same model trained on the pooled data. [`run_experiment`]
//! writes `rounds.csv` ([`RoundRow`]), `summary.csv` ([`SummaryRow`]), `frontier.csv`
//! ([`FrontierPoint`]) and the plots.
//!
//! The modules are private; what a caller uses is re-exported below.

mod config;
mod federation;
mod grpc;
mod output;
mod partition;
mod plot;

pub use config::{
    AlgorithmConfig, DataConfig, DataSource, ExperimentConfig, ExperimentError, FaultConfig,
    KeyError, PartitionConfig, PartitionKind, PrivacyConfig, RunPlan, Setting, SettingError,
    StageDropout, Strategy, Transport,
};
pub use federation::{
    FinalFigures, Member, Postprocessed, RoundOutcome, Simulation, SimulationResult,
};
pub use grpc::GrpcError;
pub use output::{FrontierPoint, FrontierTarget, OutputError, RoundRow, SummaryRow};
pub use partition::PartitionError;

use accord_coordinator::CoordinatorConfig;
use accord_crypto::pki::{ConsortiumCa, Role};
use accord_crypto::secagg::{Signer, Trust};
use accord_participant::Contributor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// The schema of the repository's example coordinator config, which simulations share with
/// the demo.
pub(crate) const COORDINATOR_EXAMPLE: &str = include_str!("../../../examples/coordinator.toml");

/// Why an experiment could not run or write its results.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// The experiment file could not be read or is invalid.
    #[error(transparent)]
    Config(#[from] config::ExperimentError),
    /// One run of the grid failed.
    #[error("{run}: {source}")]
    Run {
        /// The run's label.
        run: String,
        /// What failed.
        source: Box<RunError>,
    },
    /// What every run shares could not be made.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The results could not be written.
    #[error(transparent)]
    Output(#[from] output::OutputError),
}

/// Why what every run of an experiment shares (output folder, scratch folder, the simulated
/// consortium's certificates, the schema) could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A folder could not be made.
    #[error("{path}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The simulations' schema (examples/coordinator.toml, embedded) is not valid: a defect
    /// of this build.
    #[error("the simulations' schema (examples/coordinator.toml): {0}")]
    Schema(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The simulated consortium's certificates could not be made.
    #[error("the simulated consortium's PKI: {0}")]
    Pki(#[from] accord_crypto::pki::PkiError),
    /// A simulated participant's signing identity or the consortium's trust could not be
    /// loaded.
    #[error("the simulated consortium's identities: {0}")]
    Identity(#[from] accord_crypto::secagg::IdentityError),
}

/// Why one run of an experiment failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A setting the run cannot use (a swept value among them).
    #[error(transparent)]
    Setting(#[from] config::SettingError),
    /// The synthetic data could not be generated or written.
    #[error("the synthetic data: {0}")]
    Synth(#[from] crate::synth::SynthError),
    /// A participant's CSV could not be loaded, as a node would refuse it.
    #[error(transparent)]
    Data(#[from] accord_participant::data::DataError),
    /// The partitioning cannot be done.
    #[error(transparent)]
    Partition(#[from] partition::PartitionError),
    /// A participant's data are refused by the federation's bounds, as a node refuses them.
    #[error("participant {participant}{file}: {source}")]
    Admission {
        /// The participant's name.
        participant: String,
        /// " (its CSV)" when the participant has a file of its own, else "".
        file: String,
        /// The bound exceeded.
        source: accord_participant::data::TooManyRows,
    },
    /// The pooled baseline could not be computed.
    #[error("the pooled baseline: {0}")]
    Baseline(#[from] accord_proto::standardization::StandardizationError),
    /// The round plan refused what it was given.
    #[error(transparent)]
    Plan(#[from] accord_coordinator::PlanError),
    /// A participant could not contribute, as a node could not.
    #[error("{participant}: {source}")]
    Contribution {
        /// The participant's name.
        participant: String,
        /// Why.
        source: accord_participant::ContributionError,
    },
    /// The federation over gRPC failed.
    #[error(transparent)]
    Grpc(Box<grpc::GrpcError>),
}

/// What an experiment wrote.
#[derive(Debug, Clone)]
pub struct ExperimentOutcome {
    /// `rounds.csv`: one row per run and round.
    pub rounds_csv: PathBuf,
    /// `summary.csv`: one row per run.
    pub summary_csv: PathBuf,
    /// `frontier.csv`, when the experiment names an attribute to mitigate for.
    pub frontier_csv: Option<PathBuf>,
    /// The plots written (SVG).
    pub plots: Vec<PathBuf>,
    /// One summary per run.
    pub summary: Vec<SummaryRow>,
    /// The accuracy/fairness points of `frontier.csv`.
    pub frontier: Vec<FrontierPoint>,
}

/// Watches an experiment's progress (a progress bar in the CLI).
pub trait Progress {
    /// Called once before the first run with the number of runs and the rounds in all.
    fn start(&mut self, runs: usize, rounds: u64);
    /// Called after each round of run `run`.
    fn round(&mut self, run: &str, outcome: &RoundOutcome);
}

/// Runs every run of the experiment at `path` with `overrides` ("dotted.key=toml value")
/// applied, writing into `out`.
pub fn run_experiment(
    path: &Path,
    overrides: &[String],
    out: &Path,
    progress: &mut dyn Progress,
) -> Result<ExperimentOutcome, SimulateError> {
    let (_, mut raw) = ExperimentConfig::load(path)?;
    for assignment in overrides {
        config::override_value(&mut raw, assignment).map_err(|source| {
            config::ExperimentError::Key {
                path: path.into(),
                source,
            }
        })?;
    }
    let plans = ExperimentConfig::plan(&raw, path)?;
    let folder = |path: &Path| {
        let path = path.to_owned();
        move |source| SetupError::Folder { path, source }
    };
    std::fs::create_dir_all(out).map_err(folder(out))?;
    let schema = schema()?;

    let most = plans
        .iter()
        .map(|p| participants(&p.config))
        .max()
        .unwrap_or(0);
    let scratch = tempfile::tempdir().map_err(folder(&std::env::temp_dir()))?;
    let (trust, signers) = consortium(scratch.path(), most)?;
    let total_rounds = plans
        .iter()
        .map(|p| u64::from(p.config.algorithm.rounds))
        .sum();
    progress.start(plans.len(), total_rounds);

    let mut rounds = Vec::new();
    let mut summary = Vec::new();
    for plan in &plans {
        let (run_rounds, run_summary) =
            run_one(plan, &schema, &trust, &signers, scratch.path(), progress).map_err(
                |source| SimulateError::Run {
                    run: plan.label.clone(),
                    source: Box::new(source),
                },
            )?;
        rounds.extend(run_rounds);
        summary.push(run_summary);
    }
    let attributes: Vec<String> = schema
        .protected_attributes
        .iter()
        .map(|a| a.name.clone())
        .collect();
    let swept: Vec<String> = plans
        .first()
        .map(|p| p.swept.iter().map(|(k, _)| k.clone()).collect())
        .unwrap_or_default();
    let rounds_csv = out.join("rounds.csv");
    let summary_csv = out.join("summary.csv");
    output::write_rounds(&rounds_csv, &rounds, &swept, &attributes)?;
    output::write_summary(&summary_csv, &summary, &swept, &attributes)?;
    let title = plans
        .first()
        .map_or("experiment", |p| p.config.name.as_str());
    let mut plots = plot::draw(out, title, &rounds, &summary, &attributes)?;
    let target = plans.first().and_then(|p| FrontierTarget::of(&p.config));
    let (frontier_csv, frontier) = match target {
        Some(target) => {
            let points = output::frontier(&summary, &target);
            let path = out.join("frontier.csv");
            output::write_frontier(&path, &points, &target)?;
            plots.push(plot::frontier(out, title, &points, &target)?);
            (Some(path), points)
        }
        None => (None, Vec::new()),
    };
    Ok(ExperimentOutcome {
        rounds_csv,
        summary_csv,
        frontier_csv,
        plots,
        summary,
        frontier,
    })
}

/// The schema simulations run on: the example coordinator config's.
pub fn schema() -> Result<accord_proto::v1::Schema, SetupError> {
    CoordinatorConfig::parse(COORDINATOR_EXAMPLE, Path::new("examples/coordinator.toml"))
        .map_err(|e| SetupError::Schema(e.into()))?
        .schema()
        .map_err(|e| SetupError::Schema(e.into()))
}

fn participants(config: &ExperimentConfig) -> usize {
    config.participants().0
}

/// The certificate name of simulated participant `i` (from 1).
pub fn member_name(i: usize) -> String {
    format!("sim-{i:04}")
}

/// A consortium CA and `n` participant certificates, in a scratch folder.
fn consortium(dir: &Path, n: usize) -> Result<(Trust, Vec<Arc<Signer>>), SetupError> {
    let pki = dir.join("pki");
    let ca = ConsortiumCa::init(&pki, "Simulation")?;
    let signers = (1..=n)
        .map(|i| {
            let files = ca.issue(&pki, &member_name(i), Role::Participant, &[])?;
            Ok(Arc::new(Signer::load(&files.cert, &files.key)?))
        })
        .collect::<Result<_, SetupError>>()?;
    Ok((Trust::load(&ca.ca_cert_path())?, signers))
}

fn run_one(
    plan: &RunPlan,
    schema: &accord_proto::v1::Schema,
    trust: &Trust,
    signers: &[Arc<Signer>],
    scratch: &Path,
    progress: &mut dyn Progress,
) -> Result<(Vec<RoundRow>, SummaryRow), RunError> {
    let started = Instant::now();
    let config = &plan.config;
    let data_dir = scratch.join(&plan.label);
    let sources = partition::load(&config.data, schema, config.seed, &data_dir)?;
    let datasets = partition::partition(
        sources,
        participants(config),
        &config.partition,
        schema,
        config.seed,
    )?;
    // Each participant's data admitted as a node admits its own under the same definition.
    let definition = config.definition()?;
    for (i, data) in datasets.iter().enumerate() {
        accord_participant::data::admit(data, definition.secure_aggregation.as_ref()).map_err(
            |source| RunError::Admission {
                participant: signers[i].name().to_owned(),
                file: match (&config.data.source, config.partition.kind) {
                    (config::DataSource::CsvFiles, config::PartitionKind::Natural) => config
                        .data
                        .files
                        .get(i)
                        .map_or(String::new(), |f| format!(" ({})", f.display())),
                    _ => String::new(),
                },
                source,
            },
        )?;
    }
    let centralized = federation::centralized_accuracy(
        config,
        &definition,
        &datasets.iter().collect::<Vec<_>>(),
    )?;
    let members: Vec<Member> = datasets
        .into_iter()
        .zip(signers)
        .enumerate()
        .map(|(i, (data, signer))| Member {
            signer: signer.clone(),
            contributor: Contributor::new(
                definition.clone(),
                data,
                federation::node_seed(config.seed, i),
            ),
        })
        .collect();
    let n = members.len();
    let result = if config.transport == config::Transport::Grpc {
        let result = grpc::run(config, &scratch.join(format!("{}-grpc", plan.label)))?;
        for outcome in &result.rounds {
            progress.round(&plan.label, outcome);
        }
        result
    } else {
        Simulation::new(config, definition, schema, trust, members)
            .run(|outcome| progress.round(&plan.label, outcome))?
    };
    let outcomes = &result.rounds;
    let rows: Vec<RoundRow> = outcomes
        .iter()
        .map(|o| RoundRow {
            run: plan.label.clone(),
            swept: plan.swept.clone(),
            aggregation: config.privacy.aggregation.clone(),
            participants: n,
            outcome: o.clone(),
        })
        .collect();
    let last = result.last_fit();
    let FinalFigures {
        accuracy: final_accuracy,
        accuracy_before_thresholds: trained_accuracy,
        gaps,
    } = result.final_figures();
    let bytes_up: u64 = outcomes.iter().map(|o| o.bytes_up).sum();
    let summary = SummaryRow {
        run: plan.label.clone(),
        swept: plan.swept.clone(),
        aggregation: config.privacy.aggregation.clone(),
        participants: n,
        rounds: config.algorithm.rounds,
        rounds_aborted: outcomes.iter().filter(|o| o.aborted).count(),
        model_round: last.map_or(0, |o| o.round),
        final_accuracy,
        accuracy_before_thresholds: trained_accuracy,
        centralized_accuracy: centralized,
        gaps,
        mitigation: output::describe_mitigation(config),
        model: result.model.clone(),
        thresholds: result
            .postprocessed
            .as_ref()
            .map_or_else(|| "none".into(), |p| p.thresholds.describe()),
        wall_secs: started.elapsed().as_secs_f64(),
        peak_rss_mb: peak_rss_mb(),
        bytes_up_per_participant: bytes_up as f64 / n.max(1) as f64,
    };
    Ok((rows, summary))
}

/// The process's peak resident memory so far (VmHWM), in MiB; None where /proc is unavailable.
pub fn peak_rss_mb() -> Option<f64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
}

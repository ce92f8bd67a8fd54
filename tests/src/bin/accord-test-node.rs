//! `accord-test-node`: a coordinator or participant process for tests that need real processes
//! (e.g. to SIGKILL participants mid-round), with the participant's dropouts planned from a
//! fault plan file, which production's `accord participant` has no way to take.
//!
//! ```text
//! accord-test-node coordinator --config coordinator.toml
//! accord-test-node participant --config participant.toml [--faults faults.toml]
//! ```
//!
//! It serves both roles because only the root package's tests can run the `accord` binary
//! (`CARGO_BIN_EXE_accord`); the tests of this package run this one
//! (`CARGO_BIN_EXE_accord-test-node`). It logs to stderr as `accord` does (RUST_LOG, "info" by
//! default), and a participant holding at a planned `hold` says so on stderr: "accord
//! participant: fault injection: holding before the {stage} message of round {round} {phase}".

use accord_simulations::faults::FaultPlan;
use anyhow::{Context, anyhow, bail};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: accord-test-node coordinator --config FILE\n       \
                     accord-test-node participant --config FILE [--faults FILE]";

/// The role to run and its files.
enum Role {
    Coordinator {
        config: PathBuf,
    },
    Participant {
        config: PathBuf,
        faults: Option<PathBuf>,
    },
}

fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<Role> {
    let role = args.next().context("no role")?;
    if role != "coordinator" && role != "participant" {
        bail!("unknown role '{role}'");
    }
    let (mut config, mut faults) = (None, None);
    while let Some(flag) = args.next() {
        let slot = match flag.as_str() {
            "--config" => &mut config,
            "--faults" if role == "participant" => &mut faults,
            other => bail!("unexpected argument '{other}'"),
        };
        *slot = Some(PathBuf::from(
            args.next()
                .with_context(|| format!("{flag} needs a file"))?,
        ));
    }
    let config = config.context("--config FILE is required")?;
    Ok(if role == "coordinator" {
        Role::Coordinator { config }
    } else {
        Role::Participant { config, faults }
    })
}

fn run(role: Role) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow!("cannot start the async runtime: {e}"))?;
    match role {
        Role::Coordinator { config } => {
            let config = accord_coordinator::CoordinatorConfig::load(&config)?;
            let outcome = runtime.block_on(accord_coordinator::run(config))?;
            println!("model written to {}", outcome.model_path.display());
            println!("round history written to {}", outcome.rounds_path.display());
        }
        Role::Participant { config, faults } => {
            let config = accord_participant::ParticipantConfig::load(&config)?;
            let plan = match faults {
                Some(path) => FaultPlan::load(&path)?,
                None => FaultPlan::default(),
            };
            let meter = accord_proto::transport::WireMeter::new();
            let outcome = runtime.block_on(accord_participant::run_with(&config, meter, plan))?;
            println!(
                "participant '{}': {} rounds",
                outcome.name, outcome.rounds_completed
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let role = match parse(std::env::args().skip(1)) {
        Ok(role) => role,
        Err(e) => {
            eprintln!("accord-test-node: {e:#}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(role) {
        Ok(()) => ExitCode::SUCCESS,
        // Every error names its cause in its own message (as the libraries' errors do).
        Err(e) => {
            eprintln!("accord-test-node: error: {e}");
            ExitCode::FAILURE
        }
    }
}

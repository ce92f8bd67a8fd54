//! `accord simulate`: runs an experiment file with a progress bar over runs and rounds, then
//! prints where the tables and plots are and the summary.

use accord_proto::artefact::figure;
use accord_simulations::simulate::RoundOutcome;
use accord_simulations::simulate::{Progress, run_experiment};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `accord simulate`.
#[derive(Args)]
pub struct SimulateArgs {
    /// The experiment (see simulations/examples/).
    #[arg(long)]
    config: PathBuf,
    /// Where rounds.csv, summary.csv and the plots go [default: `simulation-<config name>`].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Overrides a parameter, e.g. --set privacy.aggregation=insecure-plain (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

struct Bar(Option<ProgressBar>);

impl Progress for Bar {
    fn start(&mut self, runs: usize, rounds: u64) {
        let bar = ProgressBar::new(rounds);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40} {pos}/{len} rounds of {msg} [{elapsed_precise}, ~{eta} left]",
            )
            .expect("a valid template"),
        );
        bar.set_message(format!("{runs} run(s)"));
        self.0 = Some(bar);
    }

    fn round(&mut self, run: &str, outcome: &RoundOutcome) {
        if let Some(bar) = &self.0 {
            bar.inc(1);
            let accuracy = match (outcome.quality, outcome.aborted) {
                (Some(q), _) => format!("accuracy {:.4}", q.accuracy),
                (None, true) => "fit aborted".to_owned(),
                (None, false) => "evaluation aborted".to_owned(),
            };
            bar.println(format!(
                "{run} round {:>3}: {accuracy}, {} completed, {} dropped",
                outcome.round, outcome.completed, outcome.dropped
            ));
        }
    }
}

/// Runs the experiment and writes its outputs; the exit code.
pub fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let out = args.out.unwrap_or_else(|| {
        let stem = args
            .config
            .file_stem()
            .map_or("experiment".into(), |s| s.to_string_lossy().into_owned());
        PathBuf::from(format!("simulation-{stem}"))
    });
    let mut bar = Bar(None);
    let outcome = run_experiment(&args.config, &args.overrides, &out, &mut bar)?;
    if let Some(bar) = bar.0 {
        bar.finish_and_clear();
    }
    println!(
        "{:<10} {:>12} {:>8} {:>10} {:>12} {:>8} {:>10}",
        "run", "aggregation", "final", "pooled", "gap (pp)", "secs", "peak MiB"
    );
    for s in &outcome.summary {
        println!(
            "{:<10} {:>12} {:>8} {:>10.4} {:>12} {:>8.1} {:>10}   {}",
            s.run,
            s.aggregation,
            figure(s.final_accuracy),
            s.centralized_accuracy,
            s.accuracy_gap_pp()
                .map_or_else(|| "undefined".into(), |pp| format!("{pp:.2}")),
            s.wall_secs,
            s.peak_rss_mb
                .map_or_else(|| "unknown".into(), |mb| format!("{mb:.0}")),
            s.label()
        );
    }
    if !outcome.frontier.is_empty() {
        println!(
            "\n{:<48} {:>6} {:>10} {:>8} {:>10} {:>8}  pareto",
            "frontier point", "seeds", "accuracy", "sd", "gap", "sd"
        );
        for p in &outcome.frontier {
            println!(
                "{:<48} {:>6} {:>10} {:>8} {:>10} {:>8}  {}",
                p.label,
                p.seeds,
                figure(p.accuracy),
                figure(p.accuracy_sd),
                figure(p.gap),
                figure(p.gap_sd),
                p.pareto
            );
        }
    }
    println!("rounds:  {}", outcome.rounds_csv.display());
    println!("summary: {}", outcome.summary_csv.display());
    if let Some(frontier) = &outcome.frontier_csv {
        println!("frontier: {}", frontier.display());
    }
    for plot in &outcome.plots {
        println!("plot:    {}", plot.display());
    }
    Ok(ExitCode::SUCCESS)
}

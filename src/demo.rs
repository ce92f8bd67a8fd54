//! `accord demo`: a whole federation on this machine, as a newcomer's first run.
//!
//! It makes a consortium PKI, synthetic data for each participant and their configs (the
//! repository's example configs with local paths patched in), then starts the coordinator and
//! each participant as separate processes of this binary, speaking gRPC over mutual TLS on
//! loopback. An auditor process makes the tfhe keys first; after the last round the participants
//! send their per-group statistics encrypted under the auditor's key, the auditor process writes
//! the signed fairness report, and the demo checks it with `accord audit verify`. It shows each
//! round as it finishes, then the round table, the drivers of satisfaction and the fairness
//! findings. Every process it started is stopped when it ends, fails or is interrupted.

use crate::data::SynthArgs;
use accord_auditor::{FairnessReport, REPORT_HTML, REPORT_JSON};
use accord_crypto::crl::CrlWatch;
use accord_crypto::he::keys;
use accord_proto::artefact::ModelArtefact;
use accord_proto::transport::{WireMeter, channel};
use accord_proto::v1::federation_client::FederationClient;
use accord_proto::v1::{FederationState, Header, StatusRequest};
use accord_simulations::local::{LocalFederation, MONITOR};
use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Marks a folder as made by the demo, so a re-run may clear it and nothing else is touched.
const MARKER: &str = ".accord-demo";

/// Arguments of `accord demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Folder for everything the demo makes (PKI, data, configs, logs, model.json, rounds.csv).
    #[arg(long, default_value = "accord-demo")]
    out: PathBuf,
    #[arg(long, default_value_t = 3)]
    participants: usize,
    #[arg(long, default_value_t = 10)]
    rounds: u32,
    /// Mean rows of synthetic data per participant.
    #[arg(long, default_value_t = 2000)]
    rows: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// A planted disparity for the synthetic data, e.g. "age_band=60+:penalty=0.8".
    #[arg(long)]
    bias: Option<String>,
}

/// The processes the demo started; dropping it stops every one still running.
struct Processes {
    children: Vec<(String, Child, PathBuf)>,
}

impl Processes {
    fn spawn(&mut self, name: &str, args: &[&str], logs: &Path) -> anyhow::Result<()> {
        let log_path = logs.join(format!("{name}.log"));
        let log = fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let child =
            Command::new(std::env::current_exe().context("cannot find the accord executable")?)
                .arg("--exit-with-parent")
                .args(args)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("cannot start the {name} process"))?;
        self.children.push((name.to_owned(), child, log_path));
        Ok(())
    }

    /// The first process that has exited with a failure, with the end of its log.
    fn failure(&mut self) -> Option<String> {
        self.children
            .iter_mut()
            .find_map(|(name, child, log)| match child.try_wait() {
                Ok(Some(status)) if !status.success() => {
                    Some(format!("{name} exited with {status}\n{}", tail(log, 15)))
                }
                _ => None,
            })
    }

    fn exited(&mut self, index: usize) -> bool {
        matches!(self.children[index].1.try_wait(), Ok(Some(_)))
    }

    /// Waits up to `limit` for every process to exit successfully.
    fn wait_all(&mut self, limit: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + limit;
        for (name, child, log) in &mut self.children {
            loop {
                match child.try_wait()? {
                    Some(status) if status.success() => break,
                    Some(status) => bail!("{name} exited with {status}\n{}", tail(log, 15)),
                    None if Instant::now() > until => {
                        bail!("{name} did not finish in time\n{}", tail(log, 15))
                    }
                    None => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        Ok(())
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.children {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    format!(
        "--- last lines of {} ---\n{}",
        path.display(),
        all[start..].join("\n")
    )
}

/// Makes `out` ready for a run: a new folder is created, an existing empty one is used as it is
/// (e.g. from `mkdir` or `mktemp -d`, so it keeps its owner and permissions), and one a previous
/// demo made (it holds the marker) is emptied; any other folder, or a file, is refused untouched,
/// since clearing it could lose someone's files and writing into it would mix them with ours.
fn prepare(out: &Path) -> anyhow::Result<PathBuf> {
    if out.exists() {
        if !out.is_dir() {
            bail!(
                "--out {} is a file, not a folder; choose a new or empty folder",
                out.display()
            );
        }
        let mut entries = fs::read_dir(out)
            .with_context(|| format!("cannot read --out {}", out.display()))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("cannot read --out {}", out.display()))?;
        if !entries.is_empty() && !out.join(MARKER).exists() {
            bail!(
                "--out {} is not empty and was not made by `accord demo` (no {MARKER} in it); \
                 nothing was changed: choose a new or empty folder",
                out.display()
            );
        }
        // Empty, or a previous demo's: clear what is in it, keeping the folder itself.
        if entries.is_empty() {
            println!(
                "accord demo: writing into the empty folder {}",
                out.display()
            );
        } else {
            println!(
                "accord demo: clearing the previous demo run in {}",
                out.display()
            );
        }
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let removed = if entry.file_type()?.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.with_context(|| format!("cannot clear {}", path.display()))?;
        }
    }
    for dir in ["logs", "run"] {
        fs::create_dir_all(out.join(dir))
            .with_context(|| format!("cannot create {}", out.join(dir).display()))?;
    }
    fs::write(
        out.join(MARKER),
        "made by accord demo; a new run clears this folder\n",
    )?;
    Ok(out.canonicalize()?)
}

/// The most records a demo participant may hold (`max_rows_per_participant`).
const DEMO_MAX_ROWS: u64 = 20_000;

/// The fewest bits (whole 2-bit blocks, at least 16) in which `participants` × the demo's row
/// bound fits, so the fairness counts' sum cannot wrap; 32 at the most, and a coordinator
/// refuses at start any demo too large even for that.
fn demo_value_bits(participants: usize) -> u32 {
    let most = participants as u128 * u128::from(DEMO_MAX_ROWS);
    (16..=32)
        .step_by(2)
        .find(|bits| most < 1u128 << bits)
        .unwrap_or(32)
}

/// Runs the demo federation to the end; its exit code.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if args.participants == 0 || args.rounds == 0 {
        bail!("--participants and --rounds must be at least 1");
    }
    let started = Instant::now();
    let out = prepare(&args.out)?;
    let data = SynthArgs {
        out: out.join("data"),
        participants: args.participants,
        rows: args.rows,
        seed: args.seed,
        bias: args.bias.clone(),
        dirty_rate: 0.0,
    };
    let federation = LocalFederation::create(&out, &data.spec()?)?;
    println!(
        "accord demo: consortium PKI in {}, synthetic data for {} participants in {}",
        federation.pki.display(),
        federation.names.len(),
        out.join("data").display()
    );

    let logs = out.join("logs");
    let auditor = out.join("auditor");
    let keygen = run_to_end(
        "auditor",
        &["auditor", "keygen", "--out", &auditor.display().to_string()],
        &logs,
    )?;
    println!(
        "auditor process: {}",
        keygen.lines().next().unwrap_or_default()
    );
    let auditor_key = fs::read_to_string(auditor.join(keys::VERIFYING_KEY_FILE))?
        .trim()
        .to_owned();
    let path = |p: PathBuf| toml::Value::String(p.display().to_string());
    let coordinator_toml = federation.write_coordinator_config(
        args.rounds,
        60,
        &[
            (
                "fairness.auditor_server_bundle",
                path(auditor.join(keys::SERVER_BUNDLE_FILE)),
            ),
            ("fairness.auditor_verifying_key", auditor_key.clone().into()),
            // Computing on ciphertexts costs bootstraps per 2-bit block per participant (see
            // docs/benchmarks.md): the demo keeps its counts small (at most 20,000 records per
            // participant, and no more bits than the participants' counts can sum to: 16 for
            // up to 3), its score histograms coarse (2 bins) and reports each protected
            // attribute without the example's intersection.
            (
                "fairness.value_bits",
                i64::from(demo_value_bits(args.participants)).into(),
            ),
            ("fairness.histogram_bins", 2.into()),
            ("schema.intersections", toml::Value::Array(vec![])),
            (
                "secure_aggregation.max_rows_per_participant",
                (DEMO_MAX_ROWS as i64).into(),
            ),
        ],
    )?;
    let participant_fairness = [
        (
            "fairness.auditor_bundle",
            path(auditor.join(keys::PUBLIC_BUNDLE_FILE)),
        ),
        ("fairness.auditor_verifying_key", auditor_key.into()),
    ];
    let mut processes = Processes {
        children: Vec::new(),
    };
    processes.spawn(
        "coordinator",
        &[
            "coordinator",
            "--config",
            &coordinator_toml.display().to_string(),
        ],
        &logs,
    )?;
    let address = wait_for_address(&federation.address_file(), &mut processes)?;
    for name in &federation.names {
        let config = federation.write_participant_config(name, &address, &participant_fairness)?;
        processes.spawn(
            name,
            &["participant", "--config", &config.display().to_string()],
            &logs,
        )?;
    }
    println!(
        "started the coordinator on {address} and {} participants as separate processes (logs in {})",
        federation.names.len(),
        logs.display()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let interrupted =
        runtime.block_on(monitor(&federation, &address, args.rounds, &mut processes))?;
    if interrupted {
        eprintln!("accord demo: interrupted; stopped every process it started");
        return Ok(ExitCode::from(130));
    }
    processes.wait_all(Duration::from_secs(30))?;

    print_rounds(&out.join("rounds.csv"))?;
    let model = ModelArtefact::load(&out.join("model.json"))?;
    println!();
    print!("{}", model.describe_drivers(12));
    println!();
    println!(
        "model:  {}  ({})",
        out.join("model.json").display(),
        model.content_hash
    );
    println!("rounds: {}", out.join("rounds.csv").display());

    let out_arg = out.display().to_string();
    run_to_end(
        "auditor",
        &[
            "auditor",
            "report",
            "--keys",
            &auditor.display().to_string(),
            "--from",
            &out_arg,
        ],
        &logs,
    )?;
    println!();
    print_fairness(&out.join(REPORT_JSON))?;
    println!(
        "fairness report: {}  (open in a browser: {})",
        out.join(REPORT_JSON).display(),
        out.join(REPORT_HTML).display()
    );
    println!();
    println!(
        "$ accord audit verify {REPORT_JSON} --model model.json --auditor-key auditor/auditor.pub --ca pki/ca.pem"
    );
    let verification = run_to_end(
        "audit-verify",
        &[
            "audit",
            "verify",
            &out.join(REPORT_JSON).display().to_string(),
            "--model",
            &out.join("model.json").display().to_string(),
            "--auditor-key",
            &auditor.join(keys::VERIFYING_KEY_FILE).display().to_string(),
            "--ca",
            &federation.pki.join("ca.pem").display().to_string(),
        ],
        &logs,
    )?;
    print!("{verification}");
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

/// Runs `accord ARGS` as a separate process to its end; its output, or an error with the end
/// of its log if it failed.
fn run_to_end(name: &str, args: &[&str], logs: &Path) -> anyhow::Result<String> {
    let output =
        Command::new(std::env::current_exe().context("cannot find the accord executable")?)
            .arg("--exit-with-parent")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot start the {name} process"))?;
    let log_path = logs.join(format!("{name}.log"));
    let mut log = fs::read(&log_path).unwrap_or_default();
    log.extend(&output.stdout);
    log.extend(&output.stderr);
    fs::write(&log_path, &log)?;
    if !output.status.success() {
        bail!(
            "the {name} process ({}) exited with {}\n{}{}",
            args[..2].join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The report's findings in a few lines: per breakdown the largest gaps and flagged groups.
fn print_fairness(path: &Path) -> anyhow::Result<()> {
    let report: FairnessReport = serde_json::from_str(
        &fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?,
    )?;
    let gap = |v: Option<f64>| v.map_or("undef.".into(), |v| format!("{v:.3}"));
    println!(
        "fairness of the final model (decrypted by the auditor from encrypted sums of {} participants):",
        report.participants.len()
    );
    println!(
        "{:<22} {:>8} {:>8} {:>8} {:>8}  flagged (four-fifths) / suppressed",
        "breakdown", "DP diff", "DP ratio", "EO diff", "EOdds"
    );
    for b in &report.metrics {
        let flagged: Vec<&str> = b
            .groups
            .iter()
            .filter(|g| g.four_fifths_flag == Some(true))
            .map(|g| g.group.as_str())
            .collect();
        let suppressed = b.groups.iter().filter(|g| g.suppressed).count();
        println!(
            "{:<22} {:>8} {:>8} {:>8} {:>8}  {} / {suppressed} suppressed",
            b.breakdown,
            gap(b.demographic_parity_difference),
            gap(b.demographic_parity_ratio),
            gap(b.equal_opportunity_difference),
            gap(b.equalized_odds_difference),
            if flagged.is_empty() {
                "none".into()
            } else {
                flagged.join(", ")
            },
        );
    }
    let undefined = report.metrics.iter().any(|b| {
        [
            b.demographic_parity_difference,
            b.demographic_parity_ratio,
            b.equal_opportunity_difference,
            b.equalized_odds_difference,
        ]
        .contains(&None)
    });
    if undefined {
        println!(
            "undef.: undefined; the report's coverage names the groups each comparison covers and why the others are left out"
        );
    }
    Ok(())
}

fn wait_for_address(file: &Path, processes: &mut Processes) -> anyhow::Result<String> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(address) = fs::read_to_string(file) {
            return Ok(address.trim().to_owned());
        }
        if let Some(failure) = processes.failure() {
            bail!("the coordinator did not start: {failure}");
        }
        if Instant::now() > until {
            bail!("the coordinator did not start listening within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Shows progress from the coordinator's status until it exits; true if interrupted (Ctrl-C).
async fn monitor(
    federation: &LocalFederation,
    address: &str,
    rounds: u32,
    processes: &mut Processes,
) -> anyhow::Result<bool> {
    let (pki, ca) = (&federation.pki, federation.pki.join("ca.pem"));
    let crl = CrlWatch::open_if_set(federation.crl().as_deref(), &ca)?;
    let tls = accord_crypto::tls::client_config(
        &ca,
        &pki.join(format!("{MONITOR}.pem")),
        &pki.join(format!("{MONITOR}.key")),
        crl,
    )?;
    let mut client = FederationClient::new(channel(address, "localhost", tls, WireMeter::new())?);
    let bar = ProgressBar::new(u64::from(rounds));
    bar.set_style(
        ProgressStyle::with_template("{spinner} round {pos}/{len} [{bar:30}] {msg}")?
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let say = |line: String| {
        if bar.is_hidden() {
            println!("{line}")
        } else {
            bar.println(line)
        }
    };
    let mut shown = 0;
    // Registered now, so Ctrl-C is ours even while a status request is pending.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    loop {
        if processes.exited(0) {
            break;
        }
        if let Some(failure) = processes.failure() {
            bar.abandon();
            bail!("{failure}");
        }
        let request = StatusRequest {
            header: Some(Header::new("", 0)),
        };
        let status = tokio::select! {
            _ = interrupt.recv() => { bar.abandon(); return Ok(true) }
            status = client.status(request) => status,
        };
        if let Ok(status) = status.map(|r| r.into_inner()) {
            for r in status.history.iter().skip(shown) {
                say(match (r.aborted, r.accuracy, r.log_loss) {
                    (true, _, _) => format!(
                        "round {:>3}: fit aborted, the previous model stays ({})",
                        r.round, r.abort_reason
                    ),
                    (false, Some(accuracy), Some(log_loss)) => format!(
                        "round {:>3}: accuracy {accuracy:.4}  AUC {}  log loss {log_loss:.4}  ({} participants, {:.2} s)",
                        r.round,
                        r.auc
                            .map_or("undefined (one class)".into(), |auc| format!("{auc:.4}")),
                        r.participants,
                        r.seconds
                    ),
                    _ => format!(
                        "round {:>3}: evaluation aborted, the round's model is in force unmeasured ({})",
                        r.round, r.abort_reason
                    ),
                });
            }
            shown = status.history.len();
            bar.set_position(shown as u64);
            let phase = status.phase().label();
            bar.set_message(match status.state() {
                FederationState::Registration => format!(
                    "waiting for participants ({} registered)",
                    status.registered.len()
                ),
                FederationState::Running => {
                    format!("{phase}: {}/{} uploads", status.received, status.expected)
                }
                FederationState::Finished => "finished".into(),
                _ => status.message.clone(),
            });
        }
        tokio::select! {
            _ = interrupt.recv() => { bar.abandon(); return Ok(true) }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    bar.finish_and_clear();
    Ok(false)
}

/// Prints rounds.csv as a table (a figure the round did not measure as "-", an AUC of one class
/// as "undefined" with the reason below), then any participants a round named for deviating.
fn print_rounds(path: &Path) -> anyhow::Result<()> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let header = reader
        .headers()
        .with_context(|| format!("{}", path.display()))?
        .iter()
        .collect::<Vec<_>>()
        .join(",");
    if header != accord_coordinator::ROUNDS_HEADER {
        bail!("{}: unexpected header {header:?}", path.display());
    }
    println!();
    println!(
        "{:>5} {:>12} {:>9} {:>9} {:>9} {:>10} {:>10} {:>8}",
        "round", "participants", "loss", "accuracy", "AUC", "bytes up", "bytes down", "seconds"
    );
    let mut named = Vec::new();
    let mut one_class = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("{}", path.display()))?;
        let field = |i: usize| record.get(i).unwrap_or("");
        let short = |v: &str| {
            v.parse::<f64>()
                .map(|x| format!("{x:.4}"))
                .unwrap_or_else(|_| "-".into())
        };
        let auc = if field(5).is_empty() && !field(2).is_empty() {
            one_class.push(field(0).to_owned());
            "undefined".to_owned()
        } else {
            short(field(5))
        };
        let status = match (field(10), field(11)) {
            ("true", _) => format!("  fit aborted: {}", field(12)),
            (_, "true") => format!("  evaluation aborted: {}", field(12)),
            _ => String::new(),
        };
        println!(
            "{:>5} {:>12} {:>9} {:>9} {auc:>9} {:>10} {:>10} {:>8}{status}",
            field(0),
            field(1),
            short(field(3)),
            short(field(4)),
            field(7),
            field(8),
            field(9),
        );
        if !field(13).is_empty() {
            named.push(format!("round {}: {}", field(0), field(13)));
        }
    }
    if !one_class.is_empty() {
        println!(
            "AUC undefined in round {}: the evaluated records hold one class only",
            one_class.join(", ")
        );
    }
    for line in named {
        println!("named for deviating from the protocol, {line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::demo_value_bits;

    /// Three participants of 20,000 records fit 16 bits (60,000 < 65,536); four need 18.
    #[test]
    fn the_demo_counts_get_the_bits_their_sum_needs() {
        assert_eq!(demo_value_bits(1), 16);
        assert_eq!(demo_value_bits(3), 16);
        assert_eq!(demo_value_bits(4), 18);
        assert_eq!(demo_value_bits(13), 18);
        assert_eq!(demo_value_bits(14), 20);
    }
}

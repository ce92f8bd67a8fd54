//! Command-line parsing and dispatch. Each command is a few lines over a library call.

use crate::data::SynthArgs;
use accord_crypto::pki::{self, ConsortiumCa, Role};
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "accord",
    version,
    about = "Privacy-preserving federated analytics for customer-service records"
)]
struct Cli {
    /// Exit when the parent process does (used for the processes `accord demo` starts).
    #[arg(long, hide = true, global = true)]
    exit_with_parent: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole federation on this machine: PKI, data, a coordinator and participants as
    /// separate processes speaking gRPC over mutual TLS.
    Demo(crate::demo::DemoArgs),
    /// Run the coordinator of a federation.
    Coordinator {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run a participant node.
    Participant {
        #[arg(long)]
        config: PathBuf,
    },
    /// Manage the consortium's certificates.
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Data tools.
    #[command(subcommand)]
    Data(DataCommand),
    /// Run a reproducible experiment: many simulated participants, skewed data, dropouts,
    /// real cryptography; writes rounds.csv, summary.csv and plots.
    Simulate(crate::simulate::SimulateArgs),
    /// Benchmarks to run on your own hardware (see docs/benchmarks.md).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The compliance auditor: tfhe keys and signed fairness reports.
    #[command(subcommand)]
    Auditor(AuditorCommand),
    /// Check fairness reports.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Subcommand)]
enum AuditorCommand {
    /// Create the auditor's tfhe keys and Ed25519 signing key in DIR, and the signed bundles
    /// to hand out (auditor-public.bundle to participants, auditor-server.bundle to the
    /// coordinator, auditor.pub for everyone to pin).
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Decrypt the consortium-wide fairness aggregate the coordinator wrote and write the
    /// signed fairness-report.json and fairness-report.html.
    Report {
        /// The directory keygen wrote.
        #[arg(long)]
        keys: PathBuf,
        /// The coordinator's output directory (fairness-aggregate.bin, fairness-transcript.json).
        #[arg(long)]
        from: PathBuf,
        /// Where to write the report [default: --from].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Groups smaller than this are flagged as small.
        #[arg(long, default_value_t = 100)]
        small_group_size: u64,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check every signature, the transcript's hash chain, the commitments, the model's hash
    /// and every metric of a fairness report; prints PASS, FAIL or NOT CHECKED per check. Exits
    /// 0 only if every check ran and passed: without --auditor-key and --ca the signatures are
    /// NOT CHECKED and the report is not verified.
    Verify {
        report: PathBuf,
        /// The model.json the report must be about.
        #[arg(long)]
        model: Option<PathBuf>,
        /// The auditor's verifying key (hex, or a file holding it, e.g. auditor.pub).
        #[arg(long)]
        auditor_key: Option<String>,
        /// The consortium CA certificate participants' certificates must chain to.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Also replay the fairness phase from the participants' signed messages the
        /// coordinator recorded and recompute the encrypted aggregate, bit for bit. Slow: about
        /// as long as the coordinator's fairness phase.
        #[arg(long, requires_all = ["auditor_key", "ca", "server_bundle"])]
        recompute: bool,
        /// The auditor's server bundle (auditor-server.bundle), checked against --auditor-key.
        #[arg(long, requires = "recompute")]
        server_bundle: Option<PathBuf>,
        /// The coordinator's record of the fairness phase [default: fairness-record.bin beside
        /// REPORT].
        #[arg(long, requires = "recompute")]
        record: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Full secure-aggregation rounds (SecAgg+) in this process with the real protocol: the
    /// participants in parallel on this machine's cores, the coordinator on one thread.
    Secagg(SecAggBenchArgs),
    /// The encrypted fairness path in this process with real tfhe keys: participants encrypt
    /// and prove their masked statistics, the coordinator verifies, sums and applies the
    /// disclosure policy, the auditor decrypts and computes the metrics.
    Fairness(FairnessBenchArgs),
}

#[derive(Args)]
struct FairnessBenchArgs {
    /// P: participants.
    #[arg(long)]
    participants: usize,
    /// G: groups (e.g. 24 = gender × age_band with unknowns).
    #[arg(long)]
    groups: usize,
    /// Bits per encrypted count (even, at most 32).
    #[arg(long, default_value_t = 32)]
    value_bits: u32,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SecAggBenchArgs {
    /// N: participants in every round.
    #[arg(long)]
    participants: usize,
    /// d: values per participant (100000, 100k, 1M).
    #[arg(long, value_parser = accord_simulations::bench::parse_count)]
    params: usize,
    /// Neighbours per participant [default: the SecAgg+ choice for N].
    #[arg(long)]
    neighbours: Option<usize>,
    /// Fraction of participants that drop after share keys.
    #[arg(long, default_value_t = 0.0)]
    dropout: f64,
    /// Rounds measured (the median is reported).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Rounds run first and not measured.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// The ring: z32 or z64.
    #[arg(long, default_value = "z64")]
    modulus: accord_crypto::secagg::Modulus,
    /// "range-proofs": every input carries a proof that each value is within its bound, as in
    /// a federation's default; "none": no proofs.
    #[arg(long, default_value = "none", value_parser = ["none", "range-proofs"])]
    input_validity: String,
    /// Seeds the inputs, the dropouts and the simulated participants' randomness.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum PkiCommand {
    /// Create the consortium CA (ca.pem, ca.key) in DIR.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// The consortium's name, shown in every certificate.
        #[arg(long, default_value = "Accord Consortium")]
        consortium: String,
    },
    /// Issue a certificate and key (DIR/NAME.pem, DIR/NAME.key) for a member, both made here.
    ///
    /// For demos and tests only: the member's private key is made in, and stays in, the CA's
    /// directory, so whoever runs the CA holds it. Real members run `accord pki request` on
    /// their own machine and the CA runs `accord pki sign`.
    Issue {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: Role,
        /// Extra DNS names or IP addresses for a coordinator certificate (repeatable).
        #[arg(long = "san")]
        sans: Vec<String>,
    },
    /// On a member's machine: make its own key and a certificate request (DIR/NAME.key, mode
    /// 0600, which never leaves the machine; DIR/NAME.csr, to send to the CA).
    Request {
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: Role,
        /// DNS names or IP addresses the certificate should carry, e.g. the coordinator's
        /// public name (repeatable; a coordinator always gets localhost, 127.0.0.1 and ::1).
        #[arg(long = "san", visible_alias = "dns")]
        sans: Vec<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// At the CA: check a member's certificate request (its signature, an Ed25519 key, a valid
    /// name and role that agree with --name and --role if given) and write its certificate to
    /// OUT, keeping a copy (never a key) in the CA directory so `pki revoke` finds it.
    Sign {
        /// The CA directory (ca.pem, ca.key).
        #[arg(long)]
        ca: PathBuf,
        /// The member's NAME.csr.
        #[arg(long)]
        request: PathBuf,
        /// Where to write the certificate, e.g. NAME.pem; never overwritten.
        #[arg(long)]
        out: PathBuf,
        /// The role the member must have asked for.
        #[arg(long)]
        role: Option<Role>,
        /// The name the member must have asked for.
        #[arg(long)]
        name: Option<String>,
        /// Days the certificate is valid (default 730; never past the CA's own expiry).
        #[arg(long)]
        days: Option<u32>,
    },
    /// Revoke a member's certificate (adds it to DIR/crl.pem).
    Revoke {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Write synthetic customer-service CSVs, one per participant (see docs/data.md).
    Synth(SynthArgs),
}

/// Logs to stderr at `level`; RUST_LOG overrides it.
fn init_logging_at(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn init_logging() {
    init_logging_at("info");
}

/// Ends this process when its parent is gone, so a killed demo leaves nothing running.
fn exit_with_parent() {
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(std::time::Duration::from_millis(300));
            if std::os::unix::process::parent_id() != parent {
                eprintln!("accord: parent process {parent} is gone; exiting");
                std::process::exit(1);
            }
        }
    });
}

/// Parses the command line and runs the command; the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.exit_with_parent {
        exit_with_parent();
    }
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("accord: error: {}", report(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each said once: Accord's errors name what they wrap in
/// their own message ("coordinator.toml: federation.rounds is 0; ..."), which printing the
/// chain (`{:#}`) would repeat.
fn report(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Demo(args) => crate::demo::run(args),
        Command::Coordinator { config } => {
            init_logging();
            let config = accord_coordinator::CoordinatorConfig::load(&config)?;
            let outcome = runtime()?.block_on(accord_coordinator::run(config))?;
            println!("model written to {}", outcome.model_path.display());
            println!("round history written to {}", outcome.rounds_path.display());
            print!("{}", outcome.model.describe_drivers(10));
            Ok(ExitCode::SUCCESS)
        }
        Command::Participant { config } => {
            init_logging();
            let config = accord_participant::ParticipantConfig::load(&config)?;
            let meter = accord_proto::transport::WireMeter::new();
            let outcome = runtime()?.block_on(accord_participant::run(&config, meter))?;
            println!(
                "participant '{}': {} rounds, {} rows used, {} rows skipped (kept local), {} bytes sent, {} received",
                outcome.name,
                outcome.rounds_completed,
                outcome.rows_used,
                outcome.load.rows_skipped,
                outcome.bytes_sent,
                outcome.bytes_received
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Pki(PkiCommand::Init { dir, consortium }) => {
            let ca = ConsortiumCa::init(&dir, &consortium)?;
            println!("consortium CA written to {}", ca.ca_cert_path().display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Pki(PkiCommand::Issue {
            dir,
            name,
            role,
            sans,
        }) => {
            let issued = ConsortiumCa::load(&dir)?.issue(&dir, &name, role, &sans)?;
            println!(
                "{role} certificate for '{name}': {} (key {})",
                issued.cert.display(),
                issued.key.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Pki(PkiCommand::Request {
            name,
            role,
            sans,
            out,
        }) => {
            let files = pki::create_request(&out, &name, role, &sans)?;
            println!(
                "{role} key for '{name}': {} (keep it here, never send it); certificate request for the CA: {}",
                files.key.display(),
                files.request.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Pki(PkiCommand::Sign {
            ca,
            request,
            out,
            role,
            name,
            days,
        }) => {
            let options = pki::SignOptions { name, role, days };
            let signed = ConsortiumCa::load(&ca)?.sign_request(&request, &out, &options)?;
            let sans = if signed.subject_alt_names.is_empty() {
                "none".to_owned()
            } else {
                signed.subject_alt_names.join(", ")
            };
            println!(
                "{} certificate for '{}' (alternative names: {sans}; valid until {}): {} (copy kept in {})",
                signed.identity.role,
                signed.identity.name,
                signed.not_after.date(),
                signed.cert.display(),
                signed.record.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Pki(PkiCommand::Revoke { dir, name }) => {
            let crl = ConsortiumCa::load(&dir)?.revoke(&dir, &name)?;
            println!(
                "'{name}' revoked; give the coordinator the updated list {}",
                crl.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Secagg(args)) => {
            use accord_simulations::bench;
            let spec = bench::SecAggBench {
                participants: args.participants,
                params: args.params,
                neighbours: args.neighbours,
                dropout: args.dropout,
                rounds: args.rounds,
                warmup: args.warmup,
                modulus: args.modulus,
                input_validity: args.input_validity == "range-proofs",
                seed: args.seed,
            };
            let report = bench::run_with_progress(&spec, |r| {
                let kind = if r.warmup { " (warm-up)" } else { "" };
                eprintln!("round {}{kind}: {:.3} s", r.round, r.secs);
            })?;
            if args.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.table());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Fairness(args)) => {
            let spec = accord_simulations::bench::fairness::FairnessBench {
                participants: args.participants,
                groups: args.groups,
                value_bits: args.value_bits,
                seed: args.seed,
            };
            let report =
                accord_simulations::bench::fairness::run(&spec, |line| eprintln!("{line}"))?;
            if args.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.table());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Auditor(AuditorCommand::Keygen { out }) => {
            println!("{}", accord_auditor::keygen(&out)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Auditor(AuditorCommand::Report {
            keys,
            from,
            out,
            small_group_size,
        }) => {
            let out = out.unwrap_or_else(|| from.clone());
            let (json, html) = accord_auditor::write_report(&keys, &from, &out, small_group_size)?;
            println!(
                "fairness report written to {} and {}",
                json.display(),
                html.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Verify {
            report,
            model,
            auditor_key,
            ca,
            recompute,
            server_bundle,
            record,
        }) => {
            use accord_auditor::{Against, Recompute};
            let key = auditor_key.map(|k| match std::fs::read_to_string(&k) {
                Ok(text) => text.trim().to_owned(),
                Err(_) => k,
            });
            let record = record.unwrap_or_else(|| {
                report
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join(accord_crypto::he::handoff::RECORD_FILE)
            });
            let checks = accord_auditor::verify(
                &report,
                &Against {
                    model: model.as_deref(),
                    auditor_key: key.as_deref(),
                    ca: ca.as_deref(),
                    recompute: server_bundle.as_deref().filter(|_| recompute).map(
                        |server_bundle| Recompute {
                            server_bundle,
                            record: &record,
                        },
                    ),
                },
            );
            for check in &checks {
                println!("{check}");
            }
            let (verified, last_line) = accord_auditor::conclusion(&checks, recompute);
            println!("{last_line}");
            Ok(if verified {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Simulate(args) => {
            // Warnings only: a run over gRPC would otherwise log every message of every node.
            init_logging_at("warn");
            crate::simulate::run(args)
        }
        Command::Data(DataCommand::Synth(args)) => {
            for (path, rows) in args.write()? {
                println!("{}: {rows} rows", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::report;
    use std::path::Path;

    #[test]
    fn an_error_is_reported_with_each_cause_once() {
        let example = include_str!("../examples/coordinator.toml");
        let text = example.replacen("\nrounds = 10", "\nrounds = 0", 1);
        let refused = accord_coordinator::CoordinatorConfig::parse(&text, Path::new("c.toml"))
            .expect_err("zero rounds are refused");
        assert_eq!(
            report(&refused.into()),
            "c.toml: federation.rounds is 0; it must be at least 1"
        );
        let context = anyhow::Error::from(std::io::Error::other("disk full"))
            .context("cannot write rounds.csv");
        assert_eq!(report(&context), "cannot write rounds.csv: disk full");
    }
}

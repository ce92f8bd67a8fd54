//! Experiments are reproducible, and the faults they inject are the faults that happen.

use accord_simulations::simulate::RoundOutcome;
use accord_simulations::simulate::{Progress, run_experiment};
use std::path::Path;

struct Quiet;

impl Progress for Quiet {
    fn start(&mut self, _runs: usize, _rounds: u64) {}
    fn round(&mut self, _run: &str, _outcome: &RoundOutcome) {}
}

fn experiment(dir: &Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("experiment.toml");
    std::fs::write(&path, body).unwrap();
    path
}

fn rows(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

#[test]
fn the_same_config_and_seed_give_the_same_rounds_in_every_column_but_the_timings() {
    let dir = tempfile::tempdir().unwrap();
    let path = experiment(
        dir.path(),
        r#"
name = "reproducible"
seed = 3
[data]
source = "synthetic"
participants = 6
rows = 120
[partition]
kind = "quantity"
alpha = 0.5
[algorithm]
rounds = 3
[faults]
dropout = { share_keys = 0.1, masked_input = 0.1 }
[sweep]
"algorithm.learning_rate" = [0.05, 0.2]
"#,
    );
    let first = run_experiment(&path, &[], &dir.path().join("a"), &mut Quiet).unwrap();
    let second = run_experiment(&path, &[], &dir.path().join("b"), &mut Quiet).unwrap();
    let (header, a) = rows(&first.rounds_csv);
    let (_, b) = rows(&second.rounds_csv);
    assert_eq!(a.len(), 6, "two runs of three rounds");
    let timing: Vec<bool> = header.iter().map(|h| h.starts_with("secs_")).collect();
    assert_eq!(timing.iter().filter(|t| **t).count(), 6);
    for (row_a, row_b) in a.iter().zip(&b) {
        for ((x, y), (name, skip)) in row_a.iter().zip(row_b).zip(header.iter().zip(&timing)) {
            if !skip {
                assert_eq!(x, y, "column {name}");
            }
        }
    }
    // The sweep labels every row, and the runs differ where the swept value matters.
    let rate = header
        .iter()
        .position(|h| h == "algorithm.learning_rate")
        .unwrap();
    assert_eq!(a[0][rate], "0.05");
    assert_eq!(a[3][rate], "0.2");
    let accuracy = header.iter().position(|h| h == "accuracy").unwrap();
    assert_ne!(a[2][accuracy], a[5][accuracy]);
    // A different seed gives different numbers.
    let third =
        run_experiment(&path, &["seed=4".into()], &dir.path().join("c"), &mut Quiet).unwrap();
    assert_ne!(rows(&third.rounds_csv).1[0][accuracy], a[0][accuracy]);
}

#[test]
fn injected_dropouts_happen_at_their_rate_and_rounds_below_the_threshold_abort() {
    let dir = tempfile::tempdir().unwrap();
    let (n, rounds, p) = (10usize, 40u32, 0.3);
    let path = experiment(
        dir.path(),
        &format!(
            r#"
name = "dropouts"
seed = 11
[data]
source = "synthetic"
participants = {n}
rows = 60
[algorithm]
rounds = {rounds}
local_epochs = 1
[faults]
dropout = {{ masked_input = {p} }}
"#
        ),
    );
    let outcome = run_experiment(&path, &[], dir.path(), &mut Quiet).unwrap();
    let (header, rows) = rows(&outcome.rounds_csv);
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (completed, dropped, aborted) = (
        column("completed"),
        column("dropped"),
        column("fit_aborted"),
    );
    let mut total_dropped = 0;
    let threshold = n / 2 + 1;
    let mut aborts = 0;
    for row in &rows {
        let d: usize = row[dropped].parse().unwrap();
        total_dropped += d;
        let survivors = n - d;
        if survivors < threshold {
            aborts += 1;
            assert_eq!(
                row[aborted], "true",
                "{survivors} survivors of {n}: {row:?}"
            );
        } else {
            assert_eq!(row[aborted], "false", "{row:?}");
            assert_eq!(row[completed].parse::<usize>().unwrap(), survivors);
        }
    }
    // The observed rate is p within three standard errors.
    let trials = (n * rows.len()) as f64;
    let observed = total_dropped as f64 / trials;
    let se = (p * (1.0 - p) / trials).sqrt();
    assert!(
        (observed - p).abs() < 3.0 * se,
        "observed {observed}, expected {p} ± {}",
        3.0 * se
    );
    // With p = 0.3 of 10, fewer than 6 survive now and then: the protocol's aborts were seen.
    assert!(
        aborts > 0,
        "no round fell below the threshold in {rounds} rounds"
    );
}

#[test]
fn the_grpc_transport_runs_a_real_federation_with_the_planted_dropouts() {
    let dir = tempfile::tempdir().unwrap();
    let path = experiment(
        dir.path(),
        r#"
name = "over-grpc"
seed = 5
transport = "grpc"
[data]
source = "synthetic"
participants = 6
rows = 150
[algorithm]
rounds = 2
[faults]
dropout = { masked_input = 0.2 }
"#,
    );
    let grpc = run_experiment(&path, &[], &dir.path().join("grpc"), &mut Quiet).unwrap();
    let local = run_experiment(
        &path,
        &["transport=\"in-process\"".into()],
        &dir.path().join("local"),
        &mut Quiet,
    )
    .unwrap();
    let (header, grpc_rows) = rows(&grpc.rounds_csv);
    let (_, local_rows) = rows(&local.rounds_csv);
    let dropped = header.iter().position(|h| h == "dropped").unwrap();
    let bytes = header.iter().position(|h| h == "bytes_up").unwrap();
    // The same planted dropouts in the fit phases, whichever the transport.
    for (g, l) in grpc_rows.iter().zip(&local_rows) {
        assert_eq!(g[dropped], l[dropped]);
    }
    // Real connections: bytes counted on the wire include TLS and gRPC framing.
    assert!(
        grpc_rows[0][bytes].parse::<u64>().unwrap() > local_rows[0][bytes].parse::<u64>().unwrap()
    );
    // One definition, one admission, one local fit (seeds and clipping included) under both
    // transports: the same model, to the last bit, and the same accuracy in every round.
    let accuracy = header.iter().position(|h| h == "accuracy").unwrap();
    for (g, l) in grpc_rows.iter().zip(&local_rows) {
        assert_eq!(g[accuracy], l[accuracy], "grpc {g:?} vs in-process {l:?}");
    }
    assert_eq!(grpc.summary[0].model, local.summary[0].model);
    assert!(grpc.summary[0].final_accuracy.is_some());
    assert_eq!(
        grpc.summary[0].final_accuracy,
        local.summary[0].final_accuracy
    );
}

/// `privacy.clip` of -1, NaN, 0 or infinity would stop a federation's coordinator at start; an
/// experiment is refused by the same check, in the same words, naming the experiment's key.
#[test]
fn a_setting_a_coordinator_refuses_is_refused_naming_the_experiment_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = experiment(
        dir.path(),
        "name = \"clip\"\n[data]\nsource = \"synthetic\"\nparticipants = 3\nrows = 50\n",
    );
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/coordinator.toml"
    ))
    .unwrap();
    for (value, toml) in [("-1", "-1.0"), ("NaN", "nan"), ("0", "0.0"), ("inf", "inf")] {
        let coordinator = accord_coordinator::CoordinatorConfig::parse(
            &example.replace("clip = 50.0", &format!("clip = {toml}")),
            Path::new("coordinator.toml"),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            coordinator,
            format!(
                "coordinator.toml: secure_aggregation.clip is {value}; it must be positive and finite"
            )
        );
        let message = run_experiment(
            &path,
            &[format!("privacy.clip={toml}")],
            &dir.path().join("out"),
            &mut Quiet,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            message,
            format!(
                "{}: privacy.clip is {value}; it must be positive and finite",
                path.display()
            )
        );
    }
    // Settings outside [privacy] reach the coordinator's whole configuration check, their keys
    // written as the experiment's.
    let message = run_experiment(
        &path,
        &["algorithm.learning_rate=-0.5".into()],
        &dir.path().join("out"),
        &mut Quiet,
    )
    .unwrap_err()
    .to_string();
    assert!(
        message.starts_with(&format!(
            "{}: refused as a federation's coordinator refuses it: algorithm.learning_rate is -0.5",
            path.display()
        )),
        "{message}"
    );
}

#[test]
fn a_bad_experiment_is_refused_naming_the_file_and_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let base = "name = \"bad\"\n[data]\nsource = \"synthetic\"\n";
    let cases = [
        (
            format!("{base}participants = 0\n"),
            "participants and rows must be at least 1",
        ),
        (
            format!("{base}colour = \"red\"\n"),
            "unknown field `colour`",
        ),
        (
            format!("{base}[partition]\nkind = \"group\"\n"),
            "kind 'group' needs attribute",
        ),
        (
            format!("{base}[partition]\nkind = \"iid\"\nalpha = -1.0\n"),
            "partition.alpha must be positive",
        ),
        (
            format!("{base}[privacy]\naggregation = \"rot13\"\n"),
            "privacy.aggregation 'rot13'",
        ),
        (
            format!("{base}[privacy]\nmodulus = \"z16\"\n"),
            "privacy.modulus is z16; it must be \"z32\" or \"z64\"",
        ),
        (
            format!("{base}participants = 4\n[privacy]\nthreshold = 5\n"),
            "privacy.threshold = 5 contradicts the 4 participants of data.participants: at most 4 can take part",
        ),
        (
            format!("{base}participants = 4\n[privacy]\nthreshold = 2\n"),
            "privacy.threshold = 2 contradicts the 4 participants of data.participants: a phase selects at least 4, and honest participants refuse a threshold below more than half of those selected (3)",
        ),
        (
            format!("{base}[privacy]\nclip = -1.0\n"),
            "privacy.clip is -1; it must be positive and finite",
        ),
        (
            format!("{base}[privacy]\nclip = nan\n"),
            "privacy.clip is NaN; it must be positive and finite",
        ),
        (
            format!("{base}[faults]\ndeadline_secs = -2.0\n"),
            "faults.deadline_secs is -2; it must be finite and not negative",
        ),
        (
            format!("{base}[privacy]\nfairness_encrypted = true\n"),
            "not available yet",
        ),
        (
            format!("{base}[faults]\nstragglers = 1.5\n"),
            "probabilities must be in [0, 1]",
        ),
        (
            format!("transport = \"grpc\"\n{base}[partition]\nkind = \"iid\"\n"),
            "transport = \"grpc\" runs synthetic data as generated",
        ),
    ];
    for (body, expected) in cases {
        let path = experiment(dir.path(), &body);
        let error = run_experiment(&path, &[], &dir.path().join("out"), &mut Quiet).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with(&path.display().to_string()),
            "{message}"
        );
        assert!(message.contains(expected), "{expected:?} not in {message}");
    }
    // A partition by an attribute the schema does not protect, and a malformed --set.
    let path = experiment(
        dir.path(),
        &format!(
            "{base}participants = 3\nrows = 50\n[partition]\nkind = \"group\"\nattribute = \"shoe_size\"\n"
        ),
    );
    let message = run_experiment(&path, &[], &dir.path().join("out"), &mut Quiet)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("'shoe_size' is not a protected attribute"),
        "{message}"
    );
    let message = run_experiment(&path, &["seed".into()], &dir.path().join("out"), &mut Quiet)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("--set 'seed' is not of the form key=value"),
        "{message}"
    );
}

/// The transport's own measures: bytes on the wire (gRPC counts TLS and framing, in-process
/// the encoded messages) and seconds. Every other column is the round plan's.
fn transport_column(name: &str) -> bool {
    name.starts_with("bytes_") || name.starts_with("secs_")
}

/// Runs `body` in process and over gRPC and checks that rounds.csv agrees in every column but
/// the transport's measures, to the last digit written, and that the final model, its
/// figures and the thresholds in force are the same bits.
fn assert_the_transports_agree(
    body: &str,
) -> (
    std::path::PathBuf,
    accord_simulations::simulate::SummaryRow,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = experiment(dir.path(), body);
    let local = run_experiment(&path, &[], &dir.path().join("local"), &mut Quiet).unwrap();
    let grpc = run_experiment(
        &path,
        &["transport=\"grpc\"".into()],
        &dir.path().join("grpc"),
        &mut Quiet,
    )
    .unwrap();
    let (header, local_rows) = rows(&local.rounds_csv);
    let (grpc_header, grpc_rows) = rows(&grpc.rounds_csv);
    assert_eq!(header, grpc_header);
    assert_eq!(local_rows.len(), grpc_rows.len());
    let compared: Vec<usize> = (0..header.len())
        .filter(|&i| !transport_column(&header[i]) && header[i] != "run")
        .collect();
    for (l, g) in local_rows.iter().zip(&grpc_rows) {
        for &i in &compared {
            assert_eq!(
                l[i], g[i],
                "column {}: in-process {l:?}, gRPC {g:?}",
                header[i]
            );
        }
    }
    let (l, g) = (&local.summary[0], &grpc.summary[0]);
    assert_eq!(l.model, g.model);
    assert_eq!(l.final_accuracy, g.final_accuracy);
    assert_eq!(l.accuracy_before_thresholds, g.accuracy_before_thresholds);
    assert_eq!(l.gaps, g.gaps);
    assert_eq!(l.thresholds, g.thresholds);
    assert_eq!(l.rounds_aborted, g.rounds_aborted);
    (local.rounds_csv.clone(), l.clone(), dir)
}

/// The figures compared are there: every round's accuracy and age-band gaps, and thresholds
/// in force with their measured accuracy.
fn assert_measured(rounds_csv: &Path, summary: &accord_simulations::simulate::SummaryRow) {
    let (header, rows) = rows(rounds_csv);
    for name in ["accuracy", "fairness_gap_age_band", "eo_gap_age_band"] {
        let i = header.iter().position(|h| h == name).unwrap();
        assert!(
            rows.iter().all(|r| !r[i].is_empty()),
            "{name} undefined: {rows:?}"
        );
    }
    assert!(
        summary.thresholds.starts_with("equal_opportunity"),
        "{}",
        summary.thresholds
    );
    assert!(summary.final_accuracy.is_some());
}

/// Secure aggregation with dropouts, FairFed and per-group thresholds: one round plan, so the
/// same rounds, gaps and thresholds whichever the transport.
#[test]
fn in_process_and_grpc_write_the_same_rounds_but_for_the_transport_columns() {
    let (rounds_csv, summary, _dir) = assert_the_transports_agree(
        r#"
name = "one-plan"
seed = 9
[data]
source = "synthetic"
participants = 6
rows = 150
bias = "age_band=60+:wait*2"
[algorithm]
rounds = 3
[faults]
dropout = { masked_input = 0.15 }
[mitigation]
kind = "fairfed"
strength = 0.5
attribute = "age_band"
[postprocessing]
thresholds = "equal_opportunity"
attribute = "age_band"
"#,
    );
    assert_measured(&rounds_csv, &summary);
}

/// Without secure aggregation the coordinator sums floating-point vectors: in the
/// participants' name order, so the arrival order over gRPC changes no bit.
#[test]
fn a_plain_federation_sums_in_one_order_whichever_the_transport() {
    assert_the_transports_agree(
        r#"
name = "plain"
seed = 4
[data]
source = "synthetic"
participants = 5
rows = 150
[algorithm]
rounds = 3
[privacy]
aggregation = "insecure-plain"
"#,
    );
}

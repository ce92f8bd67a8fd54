//! A participant's CSV meets the federation's schema: every kind of malformed input is refused
//! with an error naming the file, the row (and line) and the column; the `skip` policy drops
//! exactly the bad rows and counts them locally.

use accord_coordinator::CoordinatorConfig;
use accord_participant::data::{DataError, InvalidRowPolicy, LoadReport, load_csv};
use accord_proto::v1::Schema;
use accord_simulations::synth::{self, DirtKind, SynthSpec};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The schema of the repository's example coordinator config (the one the demo runs).
fn schema() -> Schema {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/coordinator.toml");
    CoordinatorConfig::load(&example).unwrap().schema().unwrap()
}

const HEADER: &str = "interaction_id,customer_id,channel,issue_category,wait_seconds,handle_seconds,\
transfers,contacts_30d,first_contact_resolution,sentiment,agent_tenure_months,ai_assisted,\
customer_tenure_months,age_band,gender,disability,region,language,csat,nps";
const GOOD: &str =
    "i-1,c-1,phone,billing,120,300,0,1,true,0.4,24,false,36,30-44,female,no,north,en,5,9";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn load(path: &Path, policy: InvalidRowPolicy) -> Result<LoadReport, DataError> {
    load_csv(path, &schema(), &HashMap::new(), policy).map(|(_, report)| report)
}

/// A file of good rows with `bad` as data row 3.
fn with_bad_row(dir: &Path, bad: &str) -> PathBuf {
    write(
        dir,
        "org-1.csv",
        &format!("{HEADER}\n{GOOD}\n{GOOD}\n{bad}\n{GOOD}\n"),
    )
}

fn replace_field(column: &str, value: &str) -> String {
    let index = HEADER.split(',').position(|c| c == column).unwrap();
    let mut fields: Vec<&str> = GOOD.split(',').collect();
    fields[index] = value;
    fields.join(",")
}

#[test]
fn each_malformed_value_is_named_by_file_row_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("wait_seconds", "soon", "'soon' is not a number"),
        ("sentiment", "NaN", "'NaN' is not a finite number"),
        ("handle_seconds", "inf", "'inf' is not a finite number"),
        ("transfers", "", "missing value"),
        (
            "channel",
            "fax",
            "'fax' is not one of the categories phone, chat, email, social, app",
        ),
        (
            "first_contact_resolution",
            "maybe",
            "'maybe' is not a boolean (true/false, yes/no, 1/0)",
        ),
        ("csat", "9", "9 is outside the schema's range [1, 5]"),
        (
            "wait_seconds",
            "-5",
            "-5 is outside the schema's range [0, 86400]",
        ),
    ];
    for (column, value, problem) in cases {
        let path = with_bad_row(dir.path(), &replace_field(column, value));
        let error = load(&path, InvalidRowPolicy::Reject).expect_err(column);
        let message = error.to_string();
        assert_eq!(
            message,
            format!(
                "{}: row 3 (line 4), column '{column}': {problem}",
                path.display()
            ),
            "{column} = {value:?}"
        );
        assert!(
            matches!(error, DataError::InvalidValue { row: 3, line: 4, column: ref c, .. } if c == column)
        );
    }
}

#[test]
fn a_missing_or_misnamed_column_is_named_with_the_header_line() {
    let dir = tempfile::tempdir().unwrap();
    let header = HEADER.replace("wait_seconds", "queue_time");
    let path = write(dir.path(), "org-2.csv", &format!("{header}\n{GOOD}\n"));
    let message = load(&path, InvalidRowPolicy::Reject)
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with(&format!(
            "{}: line 1 (header): no column 'wait_seconds' (needed for feature 'wait_seconds'); the header has: interaction_id,",
            path.display()
        )),
        "{message}"
    );

    // The participant's mapping fixes it without touching the file.
    let mapping = HashMap::from([("wait_seconds".to_owned(), "queue_time".to_owned())]);
    let (data, report) = load_csv(&path, &schema(), &mapping, InvalidRowPolicy::Reject).unwrap();
    assert_eq!((data.len(), report.rows_read), (1, 1));

    // A wrong header altogether (e.g. another export), and a duplicated column.
    let path = write(dir.path(), "org-3.csv", "ticket,opened,closed\n1,2,3\n");
    let message = load(&path, InvalidRowPolicy::Reject)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("org-3.csv: line 1 (header): no column 'wait_seconds'"),
        "{message}"
    );
    assert!(
        message.ends_with("the header has: ticket, opened, closed"),
        "{message}"
    );
    let path = write(dir.path(), "org-4.csv", &format!("{HEADER},csat\n"));
    let message = load(&path, InvalidRowPolicy::Reject)
        .unwrap_err()
        .to_string();
    assert!(
        message.ends_with("org-4.csv: line 1 (header): column 'csat' appears twice"),
        "{message}"
    );
}

#[test]
fn empty_files_short_rows_and_unreadable_files_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [("empty.csv", ""), ("blank.csv", "\n\n")] {
        let path = write(dir.path(), name, text);
        let message = load(&path, InvalidRowPolicy::Reject)
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            format!("{}: the file is empty (no header row)", path.display())
        );
    }
    let path = write(dir.path(), "header-only.csv", &format!("{HEADER}\n"));
    let message = load(&path, InvalidRowPolicy::Skip).unwrap_err().to_string();
    assert_eq!(
        message,
        format!("{}: no usable rows (0 skipped)", path.display())
    );

    let short = GOOD.rsplit_once(',').unwrap().0;
    let path = with_bad_row(dir.path(), short);
    let message = load(&path, InvalidRowPolicy::Skip).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!("{}: row 3:", path.display())),
        "{message}"
    );
    assert!(message.contains("19 fields"), "{message}");

    let missing = dir.path().join("absent.csv");
    let message = load(&missing, InvalidRowPolicy::Reject)
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with(&format!("{}: cannot read:", missing.display())),
        "{message}"
    );
}

/// The generator's planted dirt is found where it was planted: `reject` stops at the first dirty
/// cell, naming it; `skip` drops exactly the dirty rows and counts them by column.
#[test]
fn planted_dirt_is_rejected_at_its_cell_or_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SynthSpec {
        dirty_rate: 0.05,
        ..SynthSpec::new(2, 800, 11)
    };
    let data = synth::generate(&spec).unwrap();
    let files = synth::write_csvs(&data, dir.path()).unwrap();
    for (participant, path) in data.iter().zip(&files) {
        assert!(!participant.dirty.is_empty());
        // A dirty cell in a column the schema does not read (region, nps…) is no error.
        let read: Vec<String> = HEADER
            .split(',')
            .filter(|c| {
                !matches!(
                    *c,
                    "interaction_id" | "customer_id" | "region" | "language" | "nps"
                )
            })
            .map(str::to_owned)
            .collect();
        let invalid: Vec<_> = participant
            .dirty
            .iter()
            .filter(|cell| {
                read.iter().any(|c| c == cell.column)
                    && !(["age_band", "gender", "disability"].contains(&cell.column)
                        && matches!(cell.kind, DirtKind::Empty | DirtKind::UnknownCategory))
            })
            .collect();
        let first = invalid
            .first()
            .expect("some dirt in a column the schema reads");

        match load(path, InvalidRowPolicy::Reject).unwrap_err() {
            DataError::InvalidValue {
                path: p,
                row,
                column,
                ..
            } => {
                assert_eq!(
                    (p.as_path(), row, column.as_str()),
                    (path.as_path(), first.row as u64, first.column)
                );
            }
            other => panic!("{other}"),
        }

        let (loaded, report) =
            load_csv(path, &schema(), &HashMap::new(), InvalidRowPolicy::Skip).unwrap();
        assert_eq!(report.rows_read as usize, participant.records.len());
        assert_eq!(report.rows_skipped as usize, invalid.len());
        assert_eq!(loaded.len(), participant.records.len() - invalid.len());
        let mut by_column = std::collections::BTreeMap::new();
        for cell in &invalid {
            *by_column.entry(cell.column.to_owned()).or_insert(0u64) += 1;
        }
        assert_eq!(report.skipped_by_column, by_column);
    }
}

/// Keeps the header and the first `rows` data rows of `path`.
fn truncate(path: &Path, rows: usize) {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().take(rows + 1).collect();
    assert_eq!(lines.len(), rows + 1, "{} is too short", path.display());
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// Files of 116, 469 and 286 rows with `max_rows_per_participant = 100`: a real participant node
/// refuses its file after registering, and `accord simulate` on the same files refuses the same
/// participant with the same words (it once clipped the counts silently and reported an
/// accuracy of 1.033).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_refuses_an_over_long_file_exactly_as_a_participant_does() {
    let mut federation = accord_tests::TestFederation::with_data(&SynthSpec::new(3, 800, 41));
    let names = federation.layout.names.clone();
    let files: Vec<PathBuf> = names
        .iter()
        .map(|n| federation.layout.data_file(n))
        .collect();
    for (file, rows) in files.iter().zip([116, 469, 286]) {
        truncate(file, rows);
    }
    federation
        .coordinator_edits
        .push(("secure_aggregation.max_rows_per_participant", 100.into()));
    let (address, coordinator) = federation.start_coordinator(1, 2).await;
    let refused = federation
        .spawn_participant(&names[0], &address, Default::default())
        .await
        .unwrap()
        .expect_err("a participant with 116 rows refuses a bound of 100")
        .to_string();
    coordinator.abort();
    assert_eq!(
        refused,
        "116 usable rows, more than the federation's max_rows_per_participant (100), which bounds the secure sums"
    );

    let experiment = federation.dir().join("experiment.toml");
    let listed: Vec<String> = files
        .iter()
        .map(|f| format!("{:?}", f.display().to_string()))
        .collect();
    std::fs::write(
        &experiment,
        format!(
            "name = \"over-long\"\n[data]\nsource = \"csv-files\"\nfiles = [{}]\n[privacy]\nmax_rows_per_participant = 100\n",
            listed.join(", ")
        ),
    )
    .unwrap();
    struct Quiet;
    impl accord_simulations::simulate::Progress for Quiet {
        fn start(&mut self, _: usize, _: u64) {}
        fn round(&mut self, _: &str, _: &accord_simulations::simulate::RoundOutcome) {}
    }
    let message = accord_simulations::simulate::run_experiment(
        &experiment,
        &[],
        &federation.dir().join("out"),
        &mut Quiet,
    )
    .expect_err("the simulator refuses what a participant refuses")
    .to_string();
    assert_eq!(
        message,
        format!(
            "run-001: participant sim-0001 ({}): {refused}",
            files[0].display()
        )
    );
}

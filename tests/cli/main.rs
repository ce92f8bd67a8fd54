//! The `accord` binary as a user runs it: the demo end to end, its clean-up on Ctrl-C, and the
//! PKI and data commands' refusals.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn accord(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_accord"))
        .args(args)
        .output()
        .expect("run accord")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Process ids (other than `except`) whose command line mentions `needle`.
fn processes_mentioning(needle: &str, except: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == except {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = text(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push((pid, cmdline));
            }
        }
    }
    found
}

#[test]
fn demo_trains_writes_the_artefacts_and_prints_the_drivers() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let output = accord(&["demo", "--out", out.to_str().unwrap(), "--rounds", "3"]);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );

    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("model.json")).unwrap()).unwrap();
    assert_eq!(model["format"], "accord.model.v1");
    assert_eq!(model["rounds"], 3);
    assert_eq!(model["participants"], 3);
    let rounds = std::fs::read_to_string(out.join("rounds.csv")).unwrap();
    assert_eq!(
        rounds.lines().count(),
        4,
        "a header and three rounds:\n{rounds}"
    );
    let accuracy: f64 = rounds
        .lines()
        .last()
        .and_then(|row| {
            let header: Vec<&str> = rounds.lines().next().unwrap().split(',').collect();
            let column = header.iter().position(|c| *c == "accuracy")?;
            row.split(',').nth(column)?.parse().ok()
        })
        .expect("an accuracy column");
    assert!(accuracy > 0.75, "accuracy {accuracy}");

    assert!(
        stdout.contains("What drives 'satisfied' (csat >= 4)"),
        "{stdout}"
    );
    assert!(stdout.contains("first_contact_resolution"), "{stdout}");
    // Every process the demo started has ended.
    assert!(processes_mentioning(out.to_str().unwrap(), std::process::id()).is_empty());
}

#[test]
fn ctrl_c_stops_every_process_the_demo_started() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("interrupted");
    let out_text = out.to_str().unwrap().to_owned();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_accord"))
        .args(["demo", "--out", &out_text, "--rounds", "100000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(demo.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("started the coordinator") {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the demo ended early"
        );
    }
    // Let the federation get going, and check its processes are there to be stopped.
    std::thread::sleep(Duration::from_millis(800));
    let running = processes_mentioning(&out_text, demo.id());
    assert_eq!(
        running.len(),
        4,
        "coordinator and 3 participants: {running:#?}"
    );

    let kill = Command::new("kill")
        .args(["-INT", &demo.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = demo.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_mentioning(&out_text, std::process::id());
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still running: {left:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn pki_init_refuses_to_overwrite_a_consortium_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let pki = pki.to_str().unwrap();
    assert!(accord(&["pki", "init", "--dir", pki]).status.success());
    let ca = std::fs::read(Path::new(pki).join("ca.key")).unwrap();
    let again = accord(&["pki", "init", "--dir", pki]);
    assert!(!again.status.success());
    let stderr = text(&again.stderr);
    assert!(
        stderr.contains("refusing to overwrite") && stderr.contains("ca.pem"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(Path::new(pki).join("ca.key")).unwrap(),
        ca,
        "the CA key is kept"
    );

    let issued = accord(&[
        "pki",
        "issue",
        "--dir",
        pki,
        "--name",
        "org-1",
        "--role",
        "participant",
    ]);
    assert!(issued.status.success(), "{}", text(&issued.stderr));
    let reserved = accord(&[
        "pki",
        "issue",
        "--dir",
        pki,
        "--name",
        "ca",
        "--role",
        "participant",
    ]);
    assert!(!reserved.status.success());
    assert!(
        text(&reserved.stderr).contains("'ca'"),
        "{}",
        text(&reserved.stderr)
    );
}

#[test]
fn data_synth_writes_one_csv_per_participant_with_the_documented_columns() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data");
    let output = accord(&[
        "data",
        "synth",
        "--out",
        out.to_str().unwrap(),
        "--participants",
        "4",
        "--rows",
        "300",
        "--seed",
        "7",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let mut files: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".csv"))
        .collect();
    files.sort();
    assert_eq!(files, ["org-1.csv", "org-2.csv", "org-3.csv", "org-4.csv"]);
    let header = std::fs::read_to_string(out.join("org-1.csv")).unwrap();
    assert_eq!(
        header.lines().next().unwrap(),
        "interaction_id,customer_id,channel,issue_category,wait_seconds,handle_seconds,transfers,\
         contacts_30d,first_contact_resolution,sentiment,agent_tenure_months,ai_assisted,\
         customer_tenure_months,age_band,gender,disability,region,language,csat,nps"
    );
}

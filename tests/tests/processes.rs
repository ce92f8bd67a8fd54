//! Federations of real processes (`accord-test-node`, the coordinator and participant roles of
//! `accord` plus a fault plan): what only a process can show, such as participants killed by
//! SIGKILL mid-round. A binary of its own, apart from the in-process `e2e` tests: its processes
//! are spawned, waited for and killed from this test's thread.

use accord_simulations::local::LocalFederation;
use accord_simulations::synth::SynthSpec;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Child processes killed when the test ends, whatever happens.
struct Children(Vec<std::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The address the coordinator of `federation` listens on, once it has written it (30 s at most).
fn coordinator_address(federation: &LocalFederation) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(address) = std::fs::read_to_string(federation.address_file()) {
            return address.trim().to_owned();
        }
        assert!(Instant::now() < deadline, "the coordinator did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The fault plan of a participant that hangs before its masked input of round 1's fit.
const HOLD_BEFORE_MASKED_INPUT: &str =
    "faults = [{ round = 1, phase = \"fit\", stage = \"masked-input\", action = \"hold\" }]\n";

/// Ten participant processes; three are SIGKILLed mid-round, after sharing their keys and
/// before sending their masked input. The round completes with the seven others (their masks
/// with the dead are recovered from key shares), and so does the next.
#[test]
fn killing_three_participant_processes_mid_round_leaves_a_complete_round() {
    let dir = tempfile::tempdir().unwrap();
    let data = SynthSpec::new(10, 150, 5);
    let federation = LocalFederation::create(dir.path(), &data).unwrap();
    let config = federation
        // A 3-second stage deadline keeps the waits for the killed short; input-validity proofs
        // (about 1.6 s of CPU per participant in evaluate, ten processes on two cores) would not
        // fit in it. They have their own tests; this one is about processes dying.
        .write_coordinator_config(
            2,
            3,
            &[
                ("federation.min_participants", 6.into()),
                ("secure_aggregation.input_validity", "none".into()),
            ],
        )
        .unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let spawn = |name: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_accord-test-node"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(logs.join(format!("{name}.log"))).unwrap())
            .spawn()
            .unwrap()
    };
    let mut children = Children(vec![spawn(
        "coordinator",
        &["coordinator", "--config", config.to_str().unwrap()],
    )]);
    let address = coordinator_address(&federation);
    let doomed = ["org-2", "org-5", "org-9"];
    let hold = dir.path().join("hold-before-masked-input.toml");
    std::fs::write(&hold, HOLD_BEFORE_MASKED_INPUT).unwrap();
    for name in &federation.names {
        let config = federation
            .write_participant_config(name, &address, &[])
            .unwrap();
        let mut args = vec!["participant", "--config", config.to_str().unwrap()];
        if doomed.contains(&name.as_str()) {
            args.extend(["--faults", hold.to_str().unwrap()]);
        }
        children.0.push(spawn(name, &args));
    }

    // Kill each doomed process once it has shared its keys and stopped before its masked input.
    for name in doomed {
        let index = 1 + federation.names.iter().position(|n| n == name).unwrap();
        let log = logs.join(format!("{name}.log"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("holding before the masked input message of round 1 fit")
        {
            assert!(
                Instant::now() < deadline,
                "{name} never reached masked input"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let child = &mut children.0[index];
        let pid = child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-KILL", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = child.wait().unwrap();
        assert_eq!(status.code(), None, "{name} died by a signal");
    }

    let coordinator = children.0[0].wait().unwrap();
    let log = std::fs::read_to_string(logs.join("coordinator.log")).unwrap();
    assert!(coordinator.success(), "{log}");
    let rounds = std::fs::read_to_string(dir.path().join("rounds.csv")).unwrap();
    let header: Vec<&str> = rounds.lines().next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let rows: Vec<Vec<&str>> = rounds
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    // Both rounds fitted and evaluated by the seven left, and nobody named: dropouts are not
    // deviations.
    let wanted = [
        "round",
        "participants",
        "fit_aborted",
        "evaluation_aborted",
        "culprits",
    ]
    .map(column);
    let summary: Vec<Vec<&str>> = rows
        .iter()
        .map(|r| wanted.iter().map(|&i| r[i]).collect())
        .collect();
    assert_eq!(
        summary,
        [
            ["1", "7", "false", "false", ""],
            ["2", "7", "false", "false", ""]
        ],
        "{rounds}\n{log}"
    );
    for child in &mut children.0[1..] {
        if let Some(status) = child.try_wait().unwrap().or_else(|| child.wait().ok()) {
            assert!(status.success() || status.code().is_none());
        }
    }
}

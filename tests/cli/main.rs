//! The `accord` binary as a user runs it: the demo end to end (with `audit verify` on a forged
//! report, and `--recompute` on its own), its clean-up on Ctrl-C, the PKI and data commands'
//! refusals, a federation of members who made their own keys, and malformed reports,
//! transcripts and models handed to the auditor and `audit verify`.

mod malformed_reports;
mod pki_request;

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
    // As `mkdir demo && accord demo --out demo` gives it: an existing, empty folder.
    std::fs::create_dir(&out).unwrap();
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
    // The auditor's report, written by the auditor process and verified by `audit verify`.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("fairness-report.json")).unwrap()).unwrap();
    assert_eq!(report["format"], "accord.fairness-report.v1");
    assert_eq!(report["model"]["content_hash"], model["content_hash"]);
    assert!(
        std::fs::read_to_string(out.join("fairness-report.html"))
            .unwrap()
            .contains("<svg")
    );
    assert!(stdout.contains("PASS  metrics"), "{stdout}");
    assert!(stdout.contains("report verified"), "{stdout}");
    a_forged_report_is_never_verified(&out, &report);
    // The aggregate, recomputed from the record the coordinator process wrote (beside the report).
    let auditor = out.join("auditor");
    let output = accord(&[
        "audit",
        "verify",
        out.join("fairness-report.json").to_str().unwrap(),
        "--auditor-key",
        auditor.join("auditor.pub").to_str().unwrap(),
        "--ca",
        out.join("pki/ca.pem").to_str().unwrap(),
        "--recompute",
        "--server-bundle",
        auditor.join("auditor-server.bundle").to_str().unwrap(),
    ]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("PASS  aggregate recomputed"), "{stdout}");
    assert!(stdout.contains("PASS  contributors recomputed"), "{stdout}");
    assert!(stdout.contains("PASS  parameters recomputed"), "{stdout}");
    // Every process the demo started has ended.
    assert!(processes_mentioning(out.to_str().unwrap(), std::process::id()).is_empty());
}

/// `--out`: a new folder, an existing empty one and one a previous demo made are used (the
/// message says which); a non-empty folder the demo did not make, or a file, is refused and left
/// as it was. An unparsable `--bias`, read just after `--out` is prepared, ends each run there.
#[test]
fn demo_out_takes_an_empty_or_its_own_folder_and_refuses_anything_else() {
    let dir = tempfile::tempdir().unwrap();
    let demo = |out: &Path| {
        let output = accord(&["demo", "--out", out.to_str().unwrap(), "--bias", "nonsense"]);
        assert!(!output.status.success());
        (text(&output.stdout), text(&output.stderr))
    };
    let marker = |out: &Path| out.join(".accord-demo").exists();

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (stdout, stderr) = demo(&empty);
    assert!(stdout.contains("writing into the empty folder"), "{stdout}");
    assert!(
        stderr.contains("nonsense"),
        "refused for --bias, not --out: {stderr}"
    );
    assert!(marker(&empty));

    std::fs::write(empty.join("logs/old.log"), "a previous run").unwrap();
    let (stdout, _) = demo(&empty);
    assert!(
        stdout.contains("clearing the previous demo run"),
        "{stdout}"
    );
    assert!(!empty.join("logs/old.log").exists());

    let new = dir.path().join("new");
    demo(&new);
    assert!(marker(&new));

    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::write(theirs.join("notes.txt"), "someone's").unwrap();
    let (_, stderr) = demo(&theirs);
    assert!(
        stderr.contains(&format!(
            "--out {} is not empty and was not made by `accord demo` (no .accord-demo in it); nothing was changed",
            theirs.display()
        )),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(&theirs).unwrap().flatten().collect();
    assert_eq!(left.len(), 1);
    assert_eq!(
        std::fs::read_to_string(theirs.join("notes.txt")).unwrap(),
        "someone's"
    );

    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let (_, stderr) = demo(&file);
    assert!(stderr.contains("is a file, not a folder"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
}

/// A coordinator whose settings could never work exits at once naming the file and the key,
/// rather than listening until its registration timeout (an hour here) runs out; so does a
/// participant. The processes are given a minute, far beyond a start and far short of the hour.
#[test]
fn impossible_settings_end_the_process_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let example = include_str!("../../examples/coordinator.toml").replace(
        "registration_timeout_secs = 300",
        "registration_timeout_secs = 3600",
    );
    let cases = [
        (
            "coordinator",
            example.replace(
                "roster = [\"org-1\", \"org-2\", \"org-3\"]",
                "roster = [\"org-1\", \"org-1\", \"org-2\"]",
            ),
            "coordinator.toml: federation.roster lists 'org-1' more than once".to_owned(),
        ),
        (
            "coordinator",
            example.replace("min_participants = 3", "min_participants = 5"),
            "coordinator.toml: federation.min_participants = 5 contradicts federation.roster (3 names)".to_owned(),
        ),
        (
            "participant",
            include_str!("../../examples/participant.toml").replace(":7443\"", "\""),
            "participant.toml: coordinator is 'coordinator.example.org'; it must be \"host:port\"".to_owned(),
        ),
    ];
    for (role, config, expected) in cases {
        let path = dir.path().join(format!("{role}.toml"));
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_accord"))
            .args([role, "--config", path.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let give_up = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > give_up {
                child.kill().unwrap();
                panic!("accord {role} still running a minute after start with: {expected}");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(!status.success());
        assert!(stderr.contains(&expected), "{role}: {stderr}");
    }
}

/// The forgery of issue 11: the demo's report pointed at another model and re-signed with a
/// fresh key, which the report names. Without a pinned key the signature is NOT CHECKED (never
/// PASS) and `audit verify` exits non-zero; with the auditor's pinned key it fails.
fn a_forged_report_is_never_verified(demo: &Path, report: &serde_json::Value) {
    use accord_auditor::{sections, sections_digest};
    use ed25519_dalek::Signer as _;
    let mut other = accord_proto::artefact::ModelArtefact::load(&demo.join("model.json")).unwrap();
    other.intercept += 0.5;
    let other = other.seal();
    let other_path = demo.join("other-model.json");
    other.write(&other_path).unwrap();
    let forger = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let mut forged = report.clone();
    forged["model"]["content_hash"] = other.content_hash.clone().into();
    forged["auditor"]["verifying_key"] = hex::encode(forger.verifying_key().to_bytes()).into();
    let table = sections(&forged);
    forged["signature"] = hex::encode(forger.sign(&sections_digest(&table)).to_bytes()).into();
    forged["signed_sections"] = serde_json::to_value(&table).unwrap();
    let forged_path = demo.join("forged-report.json");
    std::fs::write(&forged_path, serde_json::to_string_pretty(&forged).unwrap()).unwrap();

    let verify = |pinned: &[&str]| {
        let mut args = vec![
            "audit",
            "verify",
            forged_path.to_str().unwrap(),
            "--model",
            other_path.to_str().unwrap(),
            "--ca",
        ];
        let ca = demo.join("pki/ca.pem");
        args.push(ca.to_str().unwrap());
        args.extend(pinned);
        let output = accord(&args);
        (output.status.code(), text(&output.stdout))
    };
    let (code, stdout) = verify(&[]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("NOT CHECKED  auditor signature"),
        "{stdout}"
    );
    assert!(!stdout.contains("PASS  auditor signature"), "{stdout}");
    assert!(!stdout.contains("report verified"), "{stdout}");
    assert!(stdout.contains("report NOT verified"), "{stdout}");
    let key = demo.join("auditor/auditor.pub");
    let (code, stdout) = verify(&["--auditor-key", key.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  auditor signature"), "{stdout}");
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
fn coordinator_address(federation: &accord_simulations::local::LocalFederation) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(address) = std::fs::read_to_string(federation.address_file()) {
            return address.trim().to_owned();
        }
        assert!(Instant::now() < deadline, "the coordinator did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A coordinator process of a fresh local federation (`command` runs the `accord` binary with
/// its arguments), logging to `coordinator.log`.
struct Listening {
    federation: accord_simulations::local::LocalFederation,
    children: Children,
    address: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Listening {
    fn start(edits: &[(&str, toml::Value)], command: impl FnOnce(&[&str]) -> Command) -> Self {
        use accord_simulations::local::LocalFederation;
        use accord_simulations::synth::SynthSpec;

        let dir = tempfile::tempdir().unwrap();
        let federation = LocalFederation::create(dir.path(), &SynthSpec::new(3, 60, 1)).unwrap();
        let config = federation.write_coordinator_config(1, 60, edits).unwrap();
        let log = dir.path().join("coordinator.log");
        let child = command(&["coordinator", "--config", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let address = coordinator_address(&federation);
        Self {
            federation,
            children: Children(vec![child]),
            address,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    fn assert_running(&mut self) {
        let exited = self.children.0[0].try_wait().unwrap();
        assert!(exited.is_none(), "the coordinator exited:\n{}", self.log());
    }

    /// `count` idle TCP connections to the coordinator.
    fn idle_connections(&self, count: usize) -> Vec<std::net::TcpStream> {
        (0..count)
            .map(|i| {
                std::net::TcpStream::connect(&self.address)
                    .unwrap_or_else(|e| panic!("idle connection {i}: {e}\n{}", self.log()))
            })
            .collect()
    }

    /// Registers org-1 over mutual TLS, retrying for up to a minute; the name it was given.
    fn register_member(&self) -> String {
        use accord_proto::v1::federation_client::FederationClient;
        use accord_proto::v1::{Header, RegisterRequest};

        let pki = &self.federation.pki;
        let tls = accord_crypto::tls::client_config(
            &pki.join("ca.pem"),
            &pki.join("org-1.pem"),
            &pki.join("org-1.key"),
            None,
        )
        .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let channel = accord_proto::transport::channel(
                &self.address,
                "localhost",
                tls,
                Default::default(),
            )
            .unwrap();
            let mut client = FederationClient::new(channel);
            let request = RegisterRequest {
                header: Some(Header::new("contact-centre-consortium", 0)),
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                match client.register(request.clone()).await {
                    Ok(response) => break response.into_inner().participant_name,
                    Err(status) if Instant::now() < deadline => {
                        eprintln!("not yet: {status}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(status) => panic!("never served: {status}\n{}", self.log()),
                }
            }
        })
    }
}

/// Three hundred idle TCP connections against a coordinator process limited to 64 file
/// descriptors: it runs out of descriptors, pauses between failed accepts and logs them at most
/// once a second, stays up, and serves a member once the idle connections are gone.
#[test]
fn idle_connections_neither_stop_the_coordinator_nor_flood_its_log() {
    let mut coordinator = Listening::start(&[], |args| {
        let mut command = Command::new("sh");
        command
            .args(["-c", "ulimit -n 64 && exec \"$0\" \"$@\""])
            .arg(env!("CARGO_BIN_EXE_accord"))
            .args(args);
        command
    });
    let idle = coordinator.idle_connections(300);
    // Long enough for the coordinator to run out of descriptors and fail accepts for a while.
    std::thread::sleep(Duration::from_secs(3));
    coordinator.assert_running();
    drop(idle);
    assert_eq!(coordinator.register_member(), "org-1");
    coordinator.assert_running();

    let log = coordinator.log();
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("accept failed"))
        .collect();
    let refused = log
        .lines()
        .filter(|l| l.contains("refused connection"))
        .count();
    println!(
        "{} 'accept failed' lines, {refused} refused connections:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        !failures.is_empty(),
        "the coordinator never ran out of file descriptors, so this test shows nothing:\n{log}"
    );
    assert!(
        failures[0].contains("Too many open files"),
        "{}",
        failures[0]
    );
    assert!(failures.len() < 100, "{} lines", failures.len());
}

/// With `max_handshakes = 8`, a hundred idle connections cost the coordinator process eight
/// file descriptors: the others wait in the listen backlog, unaccepted.
#[test]
fn connections_beyond_the_handshake_cap_wait_unaccepted() {
    let mut coordinator = Listening::start(&[("connections.max_handshakes", 8.into())], |args| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_accord"));
        command.args(args);
        command
    });
    let descriptors = |coordinator: &Listening| {
        let pid = coordinator.children.0[0].id();
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let before = descriptors(&coordinator);
    let idle = coordinator.idle_connections(100);
    // Wait for the eight to be accepted, then give the rest time they should not use.
    let deadline = Instant::now() + Duration::from_secs(10);
    while descriptors(&coordinator) < before + 8 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let during = descriptors(&coordinator);
    println!("descriptors: {before} before, {during} with 100 idle connections");
    assert!(
        (before + 8..=before + 10).contains(&during),
        "{before} descriptors before, {during} with 100 idle connections"
    );
    coordinator.assert_running();
    drop(idle);
    assert_eq!(coordinator.register_member(), "org-1");
}

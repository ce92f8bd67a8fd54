//! Members make their own keys: a CA made with `accord pki init`, a coordinator and three
//! participants that each run `accord pki request` on their own "machine" (a directory of
//! their own), the CA running `accord pki sign` on the requests, and a whole federation with
//! secure aggregation running over mutual TLS with those identities, as separate processes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use accord_simulations::local::LocalFederation;

use super::{Children, accord, coordinator_address, text};

/// Runs `accord ARGS` to its end and returns its stdout; panics with its output on failure.
fn succeed(args: &[&str]) -> String {
    let output = accord(args);
    assert!(
        output.status.success(),
        "accord {}: {}{}",
        args.join(" "),
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[test]
fn identities_made_by_request_and_sign_run_a_whole_federation() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let ca = root.join("ca");
    succeed(&[
        "pki",
        "init",
        "--dir",
        arg(&ca),
        "--consortium",
        "Members Own Keys",
    ]);

    let names = ["org-1", "org-2", "org-3"];
    let machine = |name: &str| root.join("machines").join(name);
    let members = [("coordinator", "coordinator")]
        .into_iter()
        .chain(names.iter().map(|name| (*name, "participant")));
    for (name, role) in members {
        let home = machine(name);
        let said = succeed(&[
            "pki",
            "request",
            "--name",
            name,
            "--role",
            role,
            "--out",
            arg(&home),
        ]);
        assert!(said.contains(&format!("{name}.csr")), "{said}");
        // What travels to the CA is the request; the certificate and ca.pem travel back.
        let said = succeed(&[
            "pki",
            "sign",
            "--ca",
            arg(&ca),
            "--request",
            arg(&home.join(format!("{name}.csr"))),
            "--out",
            arg(&home.join(format!("{name}.pem"))),
            "--name",
            name,
            "--role",
            role,
        ]);
        assert!(
            said.contains(&format!("{role} certificate for '{name}'")),
            "{said}"
        );
        std::fs::copy(ca.join("ca.pem"), home.join("ca.pem")).unwrap();
    }
    succeed(&[
        "data",
        "synth",
        "--out",
        arg(&root.join("data")),
        "--participants",
        "3",
        "--rows",
        "150",
        "--seed",
        "11",
    ]);

    let federation = LocalFederation {
        dir: root.to_owned(),
        pki: ca.clone(),
        names: names.iter().map(|name| name.to_string()).collect(),
    };
    let path = |p: PathBuf| toml::Value::String(p.display().to_string());
    let own_identity = |name: &str| {
        let home = machine(name);
        vec![
            ("tls.ca", path(home.join("ca.pem"))),
            ("tls.certificate", path(home.join(format!("{name}.pem")))),
            ("tls.key", path(home.join(format!("{name}.key")))),
        ]
    };
    let mut coordinator_edits = own_identity("coordinator");
    coordinator_edits.push(("federation.aggregation", "secagg".into()));
    let config = federation
        .write_coordinator_config(2, 60, &coordinator_edits)
        .unwrap();
    let logs = root.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let spawn = |name: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_accord"))
            .args(args)
            .stdout(std::fs::File::create(logs.join(format!("{name}.out"))).unwrap())
            .stderr(std::fs::File::create(logs.join(format!("{name}.log"))).unwrap())
            .spawn()
            .unwrap()
    };
    let mut children = Children(vec![spawn(
        "coordinator",
        &["coordinator", "--config", arg(&config)],
    )]);
    let address = coordinator_address(&federation);
    for name in names {
        let config = federation
            .write_participant_config(name, &address, &own_identity(name))
            .unwrap();
        children
            .0
            .push(spawn(name, &["participant", "--config", arg(&config)]));
    }

    let log = |name: &str| std::fs::read_to_string(logs.join(format!("{name}.log"))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    for (child, name) in children
        .0
        .iter_mut()
        .zip(["coordinator", "org-1", "org-2", "org-3"])
    {
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not finish\n{}",
                log(name)
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "{name} exited with {status}\n{}",
            log(name)
        );
    }
    for name in names {
        let said = std::fs::read_to_string(logs.join(format!("{name}.out"))).unwrap();
        assert!(
            said.contains(&format!("participant '{name}': 2 rounds")),
            "{said}"
        );
    }
    let rounds = std::fs::read_to_string(root.join("rounds.csv")).unwrap();
    let header: Vec<&str> = rounds.lines().next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (fit, evaluation) = (column("fit_aborted"), column("evaluation_aborted"));
    let summary: Vec<(String, String, String)> = rounds
        .lines()
        .skip(1)
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let aborted = format!("{}/{}", fields[fit], fields[evaluation]);
            (fields[0].into(), fields[1].into(), aborted)
        })
        .collect();
    let expected = |round: &str| (round.to_owned(), "3".to_owned(), "false/false".to_owned());
    assert_eq!(summary, [expected("1"), expected("2")], "{rounds}");
    assert!(root.join("model.json").exists());

    // The CA's directory never held a member's key: only its own.
    let keys: Vec<String> = ["coordinator", "org-1", "org-2", "org-3"]
        .iter()
        .map(|name| std::fs::read_to_string(machine(name).join(format!("{name}.key"))).unwrap())
        .collect();
    let ca_files = files_under(&ca);
    for file in &ca_files {
        let contents = std::fs::read_to_string(file).unwrap();
        let private = contents.contains("PRIVATE KEY");
        assert_eq!(private, file.ends_with("ca.key"), "{}", file.display());
        assert!(
            keys.iter().all(|key| !contents.contains(key.trim())),
            "{} holds a member's key",
            file.display()
        );
    }
    let mut names_in_ca: Vec<String> = ca_files
        .iter()
        .map(|file| file.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names_in_ca.sort();
    assert_eq!(
        names_in_ca,
        [
            "ca.key",
            "ca.pem",
            "coordinator.pem",
            "org-1.pem",
            "org-2.pem",
            "org-3.pem"
        ]
    );
}

/// `pki sign` and `pki request` refuse on the command line, naming the file and the reason.
#[test]
fn pki_sign_and_request_refusals_name_the_file_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let ca = root.join("ca");
    succeed(&["pki", "init", "--dir", arg(&ca)]);
    let home = root.join("org-1");
    succeed(&[
        "pki",
        "request",
        "--name",
        "org-1",
        "--role",
        "participant",
        "--out",
        arg(&home),
    ]);
    let request = home.join("org-1.csr");
    let sign = |ca: &Path, out: &str, role: &str| {
        accord(&[
            "pki",
            "sign",
            "--ca",
            arg(ca),
            "--request",
            arg(&request),
            "--out",
            arg(&home.join(out)),
            "--role",
            role,
        ])
    };
    let refused = |output: std::process::Output, needles: &[&str]| {
        assert!(!output.status.success());
        let stderr = text(&output.stderr);
        for needle in needles {
            assert!(stderr.contains(needle), "'{needle}' in {stderr}");
        }
    };

    refused(
        sign(&root.join("nowhere"), "org-1.pem", "participant"),
        &[
            "no consortium CA",
            &*root.join("nowhere/ca.pem").to_string_lossy(),
        ],
    );
    refused(
        sign(&ca, "org-1.pem", "coordinator"),
        &[
            &*request.to_string_lossy(),
            "asks for role 'participant', but the CA operator stated 'coordinator'",
        ],
    );
    assert!(!home.join("org-1.pem").exists());
    succeed(&[
        "pki",
        "sign",
        "--ca",
        arg(&ca),
        "--request",
        arg(&request),
        "--out",
        arg(&home.join("org-1.pem")),
    ]);
    refused(
        sign(&ca, "org-1.pem", "participant"),
        &[
            "refusing to overwrite",
            &*home.join("org-1.pem").to_string_lossy(),
        ],
    );
    refused(
        sign(&ca, "again.pem", "participant"),
        &["'org-1' already holds a certificate that is not revoked"],
    );
    refused(
        accord(&[
            "pki",
            "request",
            "--name",
            "org-2",
            "--role",
            "participant",
            "--out",
            arg(&ca),
        ]),
        &["the CA must never hold a member's private key"],
    );
    assert!(!ca.join("org-2.key").exists());
}

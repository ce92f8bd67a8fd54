//! Who gets in, and which messages are taken: certificates that do not chain to the consortium
//! CA (or are revoked) are refused at the TLS handshake with one log line each; messages for
//! another federation, round or phase, from the wrong role, from unregistered or off-roster
//! participants, replays and malformed vectors are refused without losing what was accepted.

use accord_coordinator::CoordinatorConfig;
use accord_crypto::pki::{ConsortiumCa, Role};
use accord_proto::layout::StandardizationLayout;
use accord_proto::v1::federation_client::FederationClient;
use accord_proto::v1::{
    AwaitRoundRequest, Header, Phase, PlainVector, ProtectedVector, RegisterRequest, StatusRequest,
    UpdateUpload, protected_vector,
};
use accord_tests::TestFederation;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;

const FEDERATION: &str = "contact-centre-consortium";

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    /// Captures this thread's log lines (with a single-threaded runtime, the coordinator's too)
    /// while the guard lives.
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = LogBuffer::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn lines_with(&self, text: &str) -> Vec<String> {
        let log = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        log.lines()
            .filter(|l| l.contains(text))
            .map(str::to_owned)
            .collect()
    }
}

/// `name` registers, and is known by the name in its certificate.
async fn assert_admitted(federation: &TestFederation, name: &str, address: &str) {
    let response = federation
        .client(name, address)
        .register(register(0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.participant_name, name);
}

fn register(round: u32) -> RegisterRequest {
    RegisterRequest {
        header: Some(Header::new(FEDERATION, round)),
    }
}

fn client_with(ca: &Path, cert: &Path, key: &Path, address: &str) -> FederationClient<Channel> {
    let tls = accord_crypto::tls::client_config(ca, cert, key, None).unwrap();
    FederationClient::new(
        accord_proto::transport::channel(address, "localhost", tls, Default::default()).unwrap(),
    )
}

/// A rustls client that trusts the CA but presents no certificate.
fn client_without_certificate(ca: &Path, address: &str) -> FederationClient<Channel> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    FederationClient::new(
        accord_proto::transport::channel(
            address,
            "localhost",
            Arc::new(config),
            Default::default(),
        )
        .unwrap(),
    )
}

/// A self-signed certificate that claims to be a participant.
fn self_signed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "intruder");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationalUnitName, "participant");
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.join("intruder.pem"), dir.join("intruder.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

async fn await_log(logs: &LogBuffer, text: &str) -> Vec<String> {
    for _ in 0..200 {
        let lines = logs.lines_with(text);
        if !lines.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            return logs.lines_with(text);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no log line containing {text:?}");
}

// A single-threaded runtime, so the coordinator's tasks log to this test's subscriber.
#[tokio::test]
async fn each_kind_of_bad_certificate_is_refused_with_one_clear_log_line() {
    let (logs, _guard) = LogBuffer::capture();

    let federation = TestFederation::new(3, 60, 1);
    let pki = federation.layout.pki.clone();
    let ca = pki.join("ca.pem");
    ConsortiumCa::load(&pki)
        .unwrap()
        .revoke(&pki, "org-3")
        .unwrap();
    let (address, coordinator) = federation.start_coordinator(1, 60).await;

    let other = tempfile::tempdir().unwrap();
    let other_ca = ConsortiumCa::init(other.path(), "Other").unwrap();
    let foreign = other_ca
        .issue(other.path(), "org-1", Role::Participant, &[])
        .unwrap();
    let (intruder_cert, intruder_key) = self_signed(other.path());

    let cases: Vec<(&str, FederationClient<Channel>, &str)> = vec![
        (
            "no certificate",
            client_without_certificate(&ca, &address),
            "client presented no certificate",
        ),
        (
            "self-signed",
            client_with(&ca, &intruder_cert, &intruder_key, &address),
            "'CN=intruder, OU=participant' is self-signed",
        ),
        (
            "another CA",
            client_with(&ca, &foreign.cert, &foreign.key, &address),
            "was issued by 'CN=Other Accord CA, O=Other', not by the consortium CA 'CN=Accord Demo Accord CA",
        ),
        (
            "revoked",
            federation.client("org-3", &address),
            "is revoked",
        ),
    ];
    for (kind, mut client, line) in cases {
        let status = client.register(register(0)).await.expect_err(kind);
        // TLS 1.3 finishes the client's side first, so the refusal shows on its first read.
        assert!(
            matches!(status.code(), Code::Unavailable | Code::Unknown),
            "{kind}: {status:?}"
        );
        assert!(
            accord_participant::describe_status(&status).contains("rejected our certificate"),
            "{kind}: {}",
            accord_participant::describe_status(&status)
        );
        let lines = await_log(&logs, line).await;
        assert_eq!(lines.len(), 1, "{kind}: one line, got {lines:#?}");
        println!("{kind}: {}", lines[0].trim());
        assert!(
            lines[0].contains("refused connection from 127.0.0.1:"),
            "{kind}: {}",
            lines[0]
        );
    }

    // A member's certificate still gets in, and its identity comes from the certificate.
    assert_admitted(&federation, "org-1", &address).await;
    coordinator.abort();
}

fn plain(values: Vec<f64>) -> Option<ProtectedVector> {
    Some(ProtectedVector {
        scheme: Some(protected_vector::Scheme::Plain(PlainVector { values })),
    })
}

fn upload(round: u32, session: u64, phase: Phase, values: Vec<f64>) -> UpdateUpload {
    UpdateUpload {
        header: Some(Header::new(FEDERATION, round).in_session(session)),
        phase: phase as i32,
        vector: plain(values),
    }
}

fn refused<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    text: &str,
) {
    let status = result.expect_err(text);
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(text),
        "{:?} should contain {text:?}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_refuses_wrong_federation_round_role_replays_and_strangers() {
    let federation = TestFederation::new(3, 60, 2).insecure_plain();
    let pki = federation.layout.pki.clone();
    ConsortiumCa::load(&pki)
        .unwrap()
        .issue(&pki, "org-9", Role::Participant, &[])
        .unwrap();
    let (address, coordinator) = federation.start_coordinator(1, 60).await;
    let config = CoordinatorConfig::load(&federation.dir().join("coordinator.toml")).unwrap();
    let mut org1 = federation.client("org-1", &address);

    // Unregistered: nothing but Register is open.
    let await_round = AwaitRoundRequest {
        header: Some(Header::new(FEDERATION, 0)),
        completed_phase: 0,
    };
    refused(
        org1.await_round(await_round.clone()).await,
        Code::PermissionDenied,
        "'org-1' is not registered",
    );
    // Another federation, a registration for a later round, another role, a stranger.
    let mut wrong = register(0);
    wrong.header.as_mut().unwrap().federation_id = "elsewhere".into();
    refused(
        org1.register(wrong).await,
        Code::NotFound,
        "federation 'elsewhere' is not served here",
    );
    refused(
        org1.register(register(5)).await,
        Code::FailedPrecondition,
        "message for round 5",
    );
    refused(
        federation
            .client("demo-monitor", &address)
            .register(register(0))
            .await,
        Code::PermissionDenied,
        "with role auditor",
    );
    refused(
        federation
            .client("org-9", &address)
            .register(register(0))
            .await,
        Code::PermissionDenied,
        "'org-9' is not on this federation's roster",
    );

    let mut clients: Vec<_> = ["org-1", "org-2", "org-3"]
        .iter()
        .map(|n| federation.client(n, &address))
        .collect();
    let mut sessions = Vec::new();
    for client in &mut clients {
        sessions.push(
            client
                .register(register(0))
                .await
                .unwrap()
                .into_inner()
                .session,
        );
    }
    // A request outside the session its registration gave is refused.
    refused(
        clients[0].await_round(await_round.clone()).await,
        Code::PermissionDenied,
        "the request of 'org-1' carries no session",
    );
    // Registering again replaces the earlier session, says so, and the earlier one is refused.
    let again = clients[2].register(register(0)).await.unwrap().into_inner();
    assert!(again.replaced && again.session != sessions[2], "{again:?}");
    refused(
        clients[2]
            .download_model(accord_proto::v1::ModelRequest {
                header: Some(Header::new(FEDERATION, 0).in_session(sessions[2])),
            })
            .await,
        Code::PermissionDenied,
        "participant 'org-3' registered again (a restart, or a second process holding its certificate): this session was replaced and is closed",
    );
    sessions[2] = again.session;
    let mut await_round = await_round;
    await_round.header = Some(Header::new(FEDERATION, 0).in_session(sessions[0]));
    let announcement = clients[0]
        .await_round(await_round)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (announcement.phase(), announcement.selected),
        (Phase::Standardize, true)
    );

    let len = StandardizationLayout::new(&config.schema().unwrap())
        .unwrap()
        .len();
    let sums = vec![1.0; len];
    // Wrong round and wrong phase.
    refused(
        clients[0]
            .upload_update(upload(3, sessions[0], Phase::Standardize, sums.clone()))
            .await,
        Code::FailedPrecondition,
        "message for round 3 (standardize), but the federation is at round 0 (standardize)",
    );
    refused(
        clients[0]
            .upload_update(upload(0, sessions[0], Phase::Fit, sums.clone()))
            .await,
        Code::FailedPrecondition,
        "round 0 (fit)",
    );
    // A good upload, then its replay, then malformed vectors from another participant.
    clients[0]
        .upload_update(upload(0, sessions[0], Phase::Standardize, sums.clone()))
        .await
        .unwrap();
    refused(
        clients[0]
            .upload_update(upload(0, sessions[0], Phase::Standardize, sums.clone()))
            .await,
        Code::InvalidArgument,
        "'org-1' already contributed",
    );
    refused(
        clients[1]
            .upload_update(upload(
                0,
                sessions[1],
                Phase::Standardize,
                vec![1.0; len - 1],
            ))
            .await,
        Code::InvalidArgument,
        &format!("expected {len}"),
    );
    let mut nan = sums.clone();
    nan[2] = f64::NAN;
    refused(
        clients[1]
            .upload_update(upload(0, sessions[1], Phase::Standardize, nan))
            .await,
        Code::InvalidArgument,
        "value 2 is not a finite number",
    );
    refused(
        clients[1]
            .download_model(accord_proto::v1::ModelRequest {
                header: Some(Header::new(FEDERATION, 0).in_session(sessions[1])),
            })
            .await,
        Code::FailedPrecondition,
        "no global model yet",
    );

    // What was accepted is still there: one contribution of three.
    let status = clients[2]
        .status(StatusRequest { header: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((status.received, status.expected), (1, 3));
    coordinator.abort();
}

/// Waits until the log has `count` lines containing every one of `texts`; returns them.
async fn await_lines(logs: &LogBuffer, texts: &[&str], count: usize) -> Vec<String> {
    let matching = || {
        logs.lines_with(texts[0])
            .into_iter()
            .filter(|line| texts.iter().all(|t| line.contains(t)))
            .collect::<Vec<_>>()
    };
    for _ in 0..500 {
        if matching().len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    matching()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_with_the_crl_refuse_a_revoked_coordinator() {
    let federation = TestFederation::new(3, 60, 3);
    let pki = federation.layout.pki.clone();
    ConsortiumCa::load(&pki)
        .unwrap()
        .revoke(&pki, "coordinator")
        .unwrap();
    let (address, coordinator) = federation.start_coordinator(1, 60).await;

    // The layout has a CRL now, so the participant's config names it.
    let config = federation.participant_config("org-1", &address);
    assert_eq!(config.tls.crl, Some(pki.join("crl.pem")));
    let error = accord_participant::run(&config, Default::default())
        .await
        .expect_err("a participant checking the CRL refuses the coordinator")
        .to_string();
    println!("org-1 (with the CRL): {error}");
    assert!(
        error.contains(
            "server certificate 'CN=coordinator, OU=coordinator, O=Accord Demo' (serial "
        ) && error.contains(") is revoked"),
        "{error}"
    );

    // A client configured without the CRL does not check revocation, and gets through.
    assert_admitted(&federation, "org-2", &address).await;
    coordinator.abort();
}

// A single-threaded runtime, so the coordinator's tasks log to this test's subscriber.
#[tokio::test]
async fn a_member_revoked_while_the_coordinator_runs_is_refused_and_an_unusable_crl_changes_nothing()
 {
    let (logs, _guard) = LogBuffer::capture();

    let federation = TestFederation::new(3, 60, 4);
    let pki = federation.layout.pki.clone();
    let ca = ConsortiumCa::load(&pki).unwrap();
    // A CRL from the start (revoking a spare certificate), so the coordinator is given one.
    ca.issue(&pki, "org-9", Role::Participant, &[]).unwrap();
    let crl = ca.revoke(&pki, "org-9").unwrap();
    let (address, coordinator) = federation.start_coordinator(1, 60).await;
    let mut org3 = federation.client("org-3", &address);
    org3.register(register(0)).await.unwrap();

    ca.revoke(&pki, "org-3").unwrap();
    let refused_org3 = ["refused connection from", "'CN=org-3,", "is revoked"];
    let status = federation
        .client("org-3", &address)
        .register(register(0))
        .await
        .expect_err("a new connection of org-3 is refused");
    let reason = accord_participant::describe_status(&status);
    assert!(reason.contains("rejected our certificate"), "{reason}");
    let lines = await_lines(&logs, &refused_org3, 1).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    println!("after `pki revoke`: {}", lines[0].trim());
    // The connection org-3 made before its revocation is refused at its next request.
    refused(
        org3.status(StatusRequest { header: None }).await,
        Code::PermissionDenied,
        "the certificate of 'org-3' (serial ",
    );

    // A CRL that no longer parses is logged once, naming the file; the old list stays.
    std::fs::write(
        &crl,
        "-----BEGIN X509 CRL-----\nnot a CRL\n-----END X509 CRL-----\n",
    )
    .unwrap();
    for attempt in 2..=3 {
        let status = federation
            .client("org-3", &address)
            .register(register(0))
            .await
            .expect_err("org-3 stays revoked");
        assert!(accord_participant::describe_status(&status).contains("rejected our certificate"));
        assert_eq!(
            await_lines(&logs, &refused_org3, attempt).await.len(),
            attempt
        );
    }
    let unusable = logs.lines_with("the changed certificate revocation list is unusable");
    assert_eq!(unusable.len(), 1, "{unusable:#?}");
    println!("after garbage over the CRL: {}", unusable[0].trim());
    assert!(unusable[0].contains("ERROR"), "{}", unusable[0]);
    assert!(
        unusable[0].contains(&crl.display().to_string()),
        "{}",
        unusable[0]
    );
    // Members not revoked still get in.
    assert_admitted(&federation, "org-1", &address).await;
    coordinator.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_answers_registered_roster_members_and_listed_observers_only() {
    let federation = TestFederation::new(3, 60, 5);
    let pki = federation.layout.pki.clone();
    let ca = ConsortiumCa::load(&pki).unwrap();
    ca.issue(&pki, "org-9", Role::Participant, &[]).unwrap();
    ca.issue(&pki, "regulator", Role::Auditor, &[]).unwrap();
    let (address, coordinator) = federation.start_coordinator(1, 60).await;
    let status = || StatusRequest { header: None };

    let cases = [
        ("org-9", "'org-9' is not on this federation's roster"),
        ("org-1", "participant 'org-1' is not registered"),
        (
            "regulator",
            "'regulator' is not one of this federation's observers",
        ),
    ];
    for (name, reason) in cases {
        refused(
            federation.client(name, &address).status(status()).await,
            Code::PermissionDenied,
            reason,
        );
    }

    // A registered roster member, and the observer the layout lists (the demo's monitor).
    let mut org1 = federation.client("org-1", &address);
    org1.register(register(0)).await.unwrap();
    let seen = org1.status(status()).await.unwrap().into_inner();
    assert_eq!(seen.registered, ["org-1"]);
    let seen = federation
        .client(accord_simulations::local::MONITOR, &address)
        .status(status())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (seen.registered, seen.total_rounds),
        (vec!["org-1".to_owned()], 1)
    );
    coordinator.abort();
}

/// A participant holds the federation definition to its own `[requirements]`: a pinned
/// definition hash that differs, or a threshold below its floor, is refused at registration
/// naming both values; the hash it pins is the one the coordinator serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_refuse_a_definition_their_requirements_do_not_allow() {
    use accord_proto::transport::WireMeter;
    use prost::Message;
    let mut federation = TestFederation::new(3, 60, 41);
    federation
        .coordinator_edits
        .push(("secure_aggregation.threshold", 2.into()));
    // Stages long enough for three participants' range proofs on two busy cores: this test is
    // about requirements, not deadlines.
    let (address, coordinator) = federation.start_coordinator(1, 30).await;
    let definition = federation
        .client("org-1", &address)
        .register(register(0))
        .await
        .unwrap()
        .into_inner()
        .federation
        .unwrap();
    let served = accord_crypto::hash::sha256_hex(&definition.encode_to_vec());

    let pinned = federation.participant_config_with(
        "org-1",
        &address,
        &[("requirements.federation_sha256", "00".repeat(32).into())],
    );
    let error = accord_participant::run(&pinned, WireMeter::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!(
            "has SHA-256 {served}, not the {}",
            "00".repeat(32)
        )),
        "{error}"
    );
    let floor = federation.participant_config_with(
        "org-2",
        &address,
        &[("requirements.min_threshold", 3.into())],
    );
    let error = accord_participant::run(&floor, WireMeter::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("secure-aggregation threshold is 2, below this participant's minimum of 3"),
        "{error}"
    );
    // Pinned to what the coordinator serves, every participant takes part to the end.
    let tasks: Vec<_> = ["org-1", "org-2", "org-3"]
        .into_iter()
        .map(|name| {
            let config = federation.participant_config_with(
                name,
                &address,
                &[("requirements.federation_sha256", served.clone().into())],
            );
            tokio::spawn(async move { accord_participant::run(&config, WireMeter::new()).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().rounds_completed, 1);
    }
    coordinator.await.unwrap().unwrap();
}

/// A second node started with org-1's certificate replaces the first (the coordinator logs it
/// and tells the second in its registration, as the test above shows on the wire): the first
/// is refused at once and exits naming the replacement, and the federation completes with the
/// second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_with_a_registered_identity_replaces_the_first_and_both_are_told() {
    let federation = TestFederation::new(3, 60, 6);
    let (address, coordinator) = federation.start_coordinator(1, 30).await;
    let monitor = || federation.client(accord_simulations::local::MONITOR, &address);
    let registered = |names: &[&str]| {
        let mut monitor = monitor();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        async move {
            for _ in 0..500 {
                let seen = monitor
                    .status(StatusRequest { header: None })
                    .await
                    .unwrap()
                    .into_inner()
                    .registered;
                if names.iter().all(|n| seen.contains(n)) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("{names:?} never registered");
        }
    };
    let first = federation.spawn_participant("org-1", &address, Default::default());
    registered(&["org-1"]).await;
    let second = federation.spawn_participant("org-1", &address, Default::default());
    let error = first
        .await
        .unwrap()
        .expect_err("the replaced node stops")
        .to_string();
    assert!(
        error.contains(
            "participant 'org-1' registered again (a restart, or a second process holding its certificate): this session was replaced and is closed"
        ),
        "{error}"
    );
    let others: Vec<_> = ["org-2", "org-3"]
        .iter()
        .map(|n| federation.spawn_participant(n, &address, Default::default()))
        .collect();
    assert_eq!(second.await.unwrap().unwrap().rounds_completed, 1);
    for other in others {
        assert_eq!(other.await.unwrap().unwrap().rounds_completed, 1);
    }
    let outcome = coordinator.await.unwrap().unwrap();
    assert_eq!(outcome.rounds[0].participants, 3);
}

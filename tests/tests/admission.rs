//! Who gets in, and which messages are taken: certificates that do not chain to the consortium
//! CA (or are revoked) are refused at the TLS handshake with one log line each; messages for
//! another federation, round or phase, from the wrong role, from unregistered or off-roster
//! participants, replays and malformed vectors are refused without losing what was accepted.

use accord_coordinator::CoordinatorConfig;
use accord_crypto::pki::{ConsortiumCa, Role};
use accord_proto::layout::{StandardizationSums, encoded_columns};
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
    fn lines_with(&self, text: &str) -> Vec<String> {
        let log = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        log.lines()
            .filter(|l| l.contains(text))
            .map(str::to_owned)
            .collect()
    }
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
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

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
            accord_participant::node::describe_status(&status).contains("rejected our certificate"),
            "{kind}: {}",
            accord_participant::node::describe_status(&status)
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
    let response = federation
        .client("org-1", &address)
        .register(register(0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.participant_name, "org-1");
    coordinator.abort();
}

fn plain(values: Vec<f64>) -> Option<ProtectedVector> {
    Some(ProtectedVector {
        scheme: Some(protected_vector::Scheme::Plain(PlainVector { values })),
    })
}

fn upload(round: u32, phase: Phase, values: Vec<f64>) -> UpdateUpload {
    UpdateUpload {
        header: Some(Header::new(FEDERATION, round)),
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
    let columns = encoded_columns(&config.schema().unwrap()).len();
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
    for client in &mut clients {
        client.register(register(0)).await.unwrap();
    }
    let announcement = clients[0]
        .await_round(await_round)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (announcement.phase(), announcement.selected),
        (Phase::Standardize, true)
    );

    let len = StandardizationSums::len(columns);
    let sums = vec![1.0; len];
    // Wrong round and wrong phase.
    refused(
        clients[0]
            .upload_update(upload(3, Phase::Standardize, sums.clone()))
            .await,
        Code::FailedPrecondition,
        "message for round 3 (standardize), but the federation is at round 0 (standardize)",
    );
    refused(
        clients[0]
            .upload_update(upload(0, Phase::Fit, sums.clone()))
            .await,
        Code::FailedPrecondition,
        "round 0 (fit)",
    );
    // A good upload, then its replay, then malformed vectors from another participant.
    clients[0]
        .upload_update(upload(0, Phase::Standardize, sums.clone()))
        .await
        .unwrap();
    refused(
        clients[0]
            .upload_update(upload(0, Phase::Standardize, sums.clone()))
            .await,
        Code::InvalidArgument,
        "'org-1' already contributed",
    );
    refused(
        clients[1]
            .upload_update(upload(0, Phase::Standardize, vec![1.0; len - 1]))
            .await,
        Code::InvalidArgument,
        &format!("expected {len}"),
    );
    let mut nan = sums.clone();
    nan[2] = f64::NAN;
    refused(
        clients[1]
            .upload_update(upload(0, Phase::Standardize, nan))
            .await,
        Code::InvalidArgument,
        "value 2 is not a finite number",
    );
    refused(
        clients[1]
            .download_model(accord_proto::v1::ModelRequest {
                header: Some(Header::new(FEDERATION, 0)),
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

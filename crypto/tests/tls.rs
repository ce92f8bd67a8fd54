//! Real mutual-TLS handshakes over loopback TCP, accepted and refused.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use accord_crypto::crl::CrlWatch;
use accord_crypto::pki::{ConsortiumCa, Identity, IssuedFiles, Role};
use accord_crypto::tls::{
    client_config, describe_handshake_error, is_certificate_refusal, peer_identity, server_config,
};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A consortium "Acme" with a coordinator "hub" and participants "alice" and "bob".
struct Consortium {
    _dir: tempfile::TempDir,
    root: PathBuf,
    ca: ConsortiumCa,
    hub: IssuedFiles,
    alice: IssuedFiles,
    bob: IssuedFiles,
}

impl Consortium {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let ca = ConsortiumCa::init(&root.join("ca"), "Acme").unwrap();
        let nodes = root.join("nodes");
        let hub = ca
            .issue(&nodes, "hub", Role::Coordinator, &["hub.acme.test".into()])
            .unwrap();
        let alice = ca.issue(&nodes, "alice", Role::Participant, &[]).unwrap();
        let bob = ca.issue(&nodes, "bob", Role::Participant, &[]).unwrap();
        Consortium {
            _dir: dir,
            root,
            ca,
            hub,
            alice,
            bob,
        }
    }

    fn crl(&self, crl: &Path) -> Arc<CrlWatch> {
        CrlWatch::open(crl, &self.ca.ca_cert_path()).unwrap()
    }

    fn server(&self, crl: Option<&Path>) -> Arc<ServerConfig> {
        let crl = crl.map(|crl| self.crl(crl));
        server_config(&self.ca.ca_cert_path(), &self.hub.cert, &self.hub.key, crl).unwrap()
    }

    fn client(&self, files: &IssuedFiles) -> Arc<ClientConfig> {
        client_config(&self.ca.ca_cert_path(), &files.cert, &files.key, None).unwrap()
    }

    fn client_checking(&self, files: &IssuedFiles, crl: &Path) -> Arc<ClientConfig> {
        let crl = Some(self.crl(crl));
        client_config(&self.ca.ca_cert_path(), &files.cert, &files.key, crl).unwrap()
    }
}

struct Outcome {
    /// What the server got: the client's identity, or the handshake error.
    server: io::Result<Identity>,
    /// What the client got: the negotiated ALPN protocol, or the handshake/read error.
    client: io::Result<Option<Vec<u8>>>,
}

/// One connection: the server accepts, reads the client's identity and sends "ok"; the
/// client connects to `server_name` and reads the "ok".
async fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    server_name: &str,
) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = TlsAcceptor::from(server).accept(tcp).await?;
        let identity = peer_identity(tls.get_ref().1).expect("identity of an accepted client");
        tls.write_all(b"ok").await?;
        tls.shutdown().await?;
        Ok(identity)
    });
    let server_name = ServerName::try_from(server_name.to_owned()).unwrap();
    let client = async {
        let tcp = TcpStream::connect(addr).await?;
        let mut tls = TlsConnector::from(client).connect(server_name, tcp).await?;
        let mut reply = [0u8; 2];
        tls.read_exact(&mut reply).await?;
        assert_eq!(&reply, b"ok");
        Ok(tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec))
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        let client = client.await;
        let server = server_task.await.unwrap();
        Outcome { server, client }
    })
    .await
    .expect("handshake finished within 10 s")
}

fn server_refusal(outcome: &Outcome) -> String {
    let err = outcome
        .server
        .as_ref()
        .expect_err("the server should refuse");
    assert!(
        outcome.client.is_err(),
        "the client must not get through a refused handshake"
    );
    describe_handshake_error(err)
}

fn write_pem(
    dir: &Path,
    name: &str,
    cert: &rcgen::Certificate,
    key: &rcgen::KeyPair,
) -> IssuedFiles {
    let files = IssuedFiles {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    fs::write(&files.cert, cert.pem()).unwrap();
    fs::write(&files.key, key.serialize_pem()).unwrap();
    files
}

/// The certificate's serial number in lowercase hex, as rejections name it.
fn serial(files: &IssuedFiles) -> String {
    let der = CertificateDer::from_pem_file(&files.cert).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    cert.serial.to_str_radix(16)
}

fn participant_params(name: &str) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationalUnitName, "participant");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params
}

#[tokio::test]
async fn a_consortium_participant_connects_and_is_identified() {
    let acme = Consortium::new();
    let outcome = handshake(acme.server(None), acme.client(&acme.alice), "localhost").await;
    assert_eq!(
        outcome.server.unwrap(),
        Identity {
            name: "alice".into(),
            role: Role::Participant
        }
    );
    assert_eq!(outcome.client.unwrap().as_deref(), Some(&b"h2"[..]));

    // The coordinator's extra name works as well as localhost, and auditors get in too.
    let auditor = acme
        .ca
        .issue(&acme.root.join("nodes"), "regulator", Role::Auditor, &[])
        .unwrap();
    let outcome = handshake(acme.server(None), acme.client(&auditor), "hub.acme.test").await;
    assert_eq!(outcome.server.unwrap().role, Role::Auditor);
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let acme = Consortium::new();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(acme.ca.ca_cert_path()).unwrap())
        .unwrap();
    let mut anonymous =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    anonymous.alpn_protocols = vec![b"h2".to_vec()];

    let outcome = handshake(acme.server(None), Arc::new(anonymous), "localhost").await;
    assert_eq!(server_refusal(&outcome), "client presented no certificate");
    let client_err = outcome.client.unwrap_err();
    assert!(
        describe_handshake_error(&client_err).starts_with("the peer rejected our certificate"),
        "{}",
        describe_handshake_error(&client_err)
    );
}

#[tokio::test]
async fn a_self_signed_client_certificate_is_refused() {
    let acme = Consortium::new();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let cert = participant_params("mallory").self_signed(&key).unwrap();
    let mallory = write_pem(&acme.root, "mallory", &cert, &key);

    let outcome = handshake(acme.server(None), acme.client(&mallory), "localhost").await;
    assert_eq!(
        server_refusal(&outcome),
        "client certificate 'CN=mallory, OU=participant' is self-signed"
    );
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let acme = Consortium::new();
    let other = ConsortiumCa::init(&acme.root.join("other-ca"), "Other").unwrap();
    let eve = other
        .issue(&acme.root.join("other"), "eve", Role::Participant, &[])
        .unwrap();

    let outcome = handshake(acme.server(None), acme.client(&eve), "localhost").await;
    assert_eq!(
        server_refusal(&outcome),
        "client certificate 'CN=eve, OU=participant, O=Other' was issued by \
         'CN=Other Accord CA, O=Other', not by the consortium CA 'CN=Acme Accord CA, O=Acme'"
    );
}

#[tokio::test]
async fn a_certificate_from_a_ca_impersonating_ours_is_refused() {
    let acme = Consortium::new();
    let impostor = ConsortiumCa::init(&acme.root.join("impostor-ca"), "Acme").unwrap();
    let eve = impostor
        .issue(&acme.root.join("impostor"), "eve", Role::Participant, &[])
        .unwrap();

    let outcome = handshake(acme.server(None), acme.client(&eve), "localhost").await;
    assert_eq!(
        server_refusal(&outcome),
        "client certificate 'CN=eve, OU=participant, O=Acme' names the consortium CA \
         'CN=Acme Accord CA, O=Acme' as issuer but is not signed by that CA's key"
    );
}

#[tokio::test]
async fn a_revoked_certificate_is_refused_once_the_crl_is_loaded() {
    let acme = Consortium::new();
    let nodes = acme.root.join("nodes");
    let crl = acme.ca.revoke(&nodes, "bob").unwrap();
    let serial = serial(&acme.bob);

    let outcome = handshake(acme.server(Some(&crl)), acme.client(&acme.bob), "localhost").await;
    assert_eq!(
        server_refusal(&outcome),
        format!("client certificate 'CN=bob, OU=participant, O=Acme' (serial {serial}) is revoked")
    );

    // Without the CRL the server does not know; with it, others still get in.
    let outcome = handshake(acme.server(None), acme.client(&acme.bob), "localhost").await;
    assert_eq!(outcome.server.unwrap().name, "bob");
    let outcome = handshake(
        acme.server(Some(&crl)),
        acme.client(&acme.alice),
        "localhost",
    )
    .await;
    assert_eq!(outcome.server.unwrap().name, "alice");
}

#[tokio::test]
async fn a_running_server_rereads_its_crl_when_the_file_changes() {
    let acme = Consortium::new();
    let nodes = acme.root.join("nodes");
    acme.ca
        .issue(&nodes, "carol", Role::Participant, &[])
        .unwrap();
    let crl = acme.ca.revoke(&nodes, "carol").unwrap();
    // One server config throughout, as in a running coordinator.
    let server = acme.server(Some(&crl));
    let outcome = handshake(server.clone(), acme.client(&acme.bob), "localhost").await;
    assert_eq!(outcome.server.unwrap().name, "bob");

    acme.ca.revoke(&nodes, "bob").unwrap();
    let revoked = format!(
        "client certificate 'CN=bob, OU=participant, O=Acme' (serial {}) is revoked",
        serial(&acme.bob)
    );
    let outcome = handshake(server.clone(), acme.client(&acme.bob), "localhost").await;
    assert_eq!(server_refusal(&outcome), revoked);

    // A CRL file that no longer parses leaves the last good list in force.
    fs::write(
        &crl,
        "-----BEGIN X509 CRL-----\ngarbage\n-----END X509 CRL-----\n",
    )
    .unwrap();
    let outcome = handshake(server.clone(), acme.client(&acme.bob), "localhost").await;
    assert_eq!(server_refusal(&outcome), revoked);
    let outcome = handshake(server, acme.client(&acme.alice), "localhost").await;
    assert_eq!(outcome.server.unwrap().name, "alice");
}

#[tokio::test]
async fn a_client_with_the_crl_refuses_a_revoked_coordinator() {
    let acme = Consortium::new();
    let nodes = acme.root.join("nodes");
    let crl = acme.ca.revoke(&nodes, "hub").unwrap();

    let outcome = handshake(
        acme.server(None),
        acme.client_checking(&acme.alice, &crl),
        "localhost",
    )
    .await;
    let client_err = outcome.client.unwrap_err();
    assert_eq!(
        describe_handshake_error(&client_err),
        format!(
            "server certificate 'CN=hub, OU=coordinator, O=Acme' (serial {}) is revoked",
            serial(&acme.hub)
        )
    );
    assert!(is_certificate_refusal(&client_err));
    assert!(outcome.server.is_err());

    // A client without the CRL does not check revocation: the revoked coordinator gets through.
    let outcome = handshake(acme.server(None), acme.client(&acme.alice), "localhost").await;
    assert_eq!(outcome.server.unwrap().name, "alice");
    assert_eq!(outcome.client.unwrap().as_deref(), Some(&b"h2"[..]));

    // With the CRL, a coordinator that is not revoked is accepted.
    let spare = acme
        .ca
        .issue(&nodes, "spare-hub", Role::Coordinator, &[])
        .unwrap();
    let server = server_config(&acme.ca.ca_cert_path(), &spare.cert, &spare.key, None).unwrap();
    let outcome = handshake(server, acme.client_checking(&acme.alice, &crl), "localhost").await;
    assert_eq!(outcome.server.unwrap().name, "alice");
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let acme = Consortium::new();
    let ca_dir = acme.root.join("ca");
    let ca_key =
        rcgen::KeyPair::from_pem(&fs::read_to_string(ca_dir.join("ca.key")).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &fs::read_to_string(ca_dir.join("ca.pem")).unwrap(),
        ca_key,
    )
    .unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut params = participant_params("old");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let old = write_pem(
        &acme.root,
        "old",
        &params.signed_by(&key, &issuer).unwrap(),
        &key,
    );

    let outcome = handshake(acme.server(None), acme.client(&old), "localhost").await;
    assert_eq!(
        server_refusal(&outcome),
        "client certificate 'CN=old, OU=participant' has expired (it was valid until 2021-01-01T00:00:00Z)"
    );
}

#[tokio::test]
async fn a_client_refuses_a_server_that_is_not_a_coordinator() {
    let acme = Consortium::new();
    let impostor_server = server_config(
        &acme.ca.ca_cert_path(),
        &acme.alice.cert,
        &acme.alice.key,
        None,
    )
    .unwrap();

    let outcome = handshake(impostor_server, acme.client(&acme.bob), "localhost").await;
    let client_err = outcome.client.unwrap_err();
    assert_eq!(
        describe_handshake_error(&client_err),
        "server certificate 'CN=alice, OU=participant, O=Acme' is not a coordinator certificate (role participant)"
    );
    assert!(outcome.server.is_err());
}

#[tokio::test]
async fn a_client_refuses_a_coordinator_of_another_consortium() {
    let acme = Consortium::new();
    let other = ConsortiumCa::init(&acme.root.join("other-ca"), "Other").unwrap();
    let hub = other
        .issue(&acme.root.join("other"), "hub", Role::Coordinator, &[])
        .unwrap();
    let foreign_server = server_config(&other.ca_cert_path(), &hub.cert, &hub.key, None).unwrap();

    let outcome = handshake(foreign_server, acme.client(&acme.alice), "localhost").await;
    assert_eq!(
        describe_handshake_error(&outcome.client.unwrap_err()),
        "server certificate 'CN=hub, OU=coordinator, O=Other' was issued by \
         'CN=Other Accord CA, O=Other', not by the consortium CA 'CN=Acme Accord CA, O=Acme'"
    );
}

#[test]
fn configs_name_the_file_that_is_wrong() {
    let acme = Consortium::new();
    let missing = acme.root.join("missing.pem");
    let err = server_config(&missing, &acme.hub.cert, &acme.hub.key, None).unwrap_err();
    assert!(
        err.to_string().contains(&*missing.to_string_lossy()),
        "{err}"
    );

    // A key that is not the certificate's.
    let err = client_config(
        &acme.ca.ca_cert_path(),
        &acme.alice.cert,
        &acme.bob.key,
        None,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("alice.pem") && err.to_string().contains("bob.key"),
        "{err}"
    );

    // A certificate where the CRL should be.
    let err = CrlWatch::open(&acme.alice.cert, &acme.ca.ca_cert_path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} contains no PEM certificate revocation list",
            acme.alice.cert.display()
        )
    );
}

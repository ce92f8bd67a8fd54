//! The consortium CA on disk: init, load, issue, revoke, and identities read back.

use std::fs;
use std::path::Path;

use accord_crypto::pki::{ConsortiumCa, Identity, PkiError, Role, identity_from_der};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

fn cert_der(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

#[test]
fn issued_certificates_carry_name_and_role() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ConsortiumCa::init(&dir.path().join("ca"), "Acme").unwrap();
    assert_eq!(ca.consortium(), "Acme");
    assert_eq!(ca.ca_cert_path(), dir.path().join("ca/ca.pem"));

    for (name, role) in [
        ("clinic-01", Role::Participant),
        ("hub", Role::Coordinator),
        ("regulator.eu", Role::Auditor),
    ] {
        let files = ca
            .issue(&dir.path().join("nodes"), name, role, &[])
            .unwrap();
        assert_eq!(files.cert, dir.path().join(format!("nodes/{name}.pem")));
        assert_eq!(files.key, dir.path().join(format!("nodes/{name}.key")));
        assert_eq!(
            identity_from_der(&cert_der(&files.cert)).unwrap(),
            Identity {
                name: name.to_owned(),
                role
            }
        );
    }
}

#[cfg(unix)]
#[test]
fn private_keys_are_owner_only_pkcs8_ed25519() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let ca = ConsortiumCa::init(dir.path(), "Acme").unwrap();
    let files = ca
        .issue(dir.path(), "alice", Role::Participant, &[])
        .unwrap();
    for key in [dir.path().join("ca.key"), files.key] {
        let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
        let pem = fs::read_to_string(&key).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
        let pair = rcgen::KeyPair::from_pem(&pem).unwrap();
        assert_eq!(pair.algorithm(), &rcgen::PKCS_ED25519);
    }
}

#[test]
fn certificates_have_the_right_usages_names_and_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ConsortiumCa::init(dir.path(), "Acme").unwrap();
    let coordinator = ca
        .issue(
            dir.path(),
            "hub",
            Role::Coordinator,
            &["hub.acme.example".into(), "10.0.0.7".into()],
        )
        .unwrap();
    let participant = ca
        .issue(dir.path(), "alice", Role::Participant, &[])
        .unwrap();

    let ca_der = cert_der(&ca.ca_cert_path());
    let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
    assert_eq!(ca_cert.subject().to_string(), "CN=Acme Accord CA, O=Acme");
    assert!(ca_cert.is_ca());

    let der = cert_der(&coordinator.cert);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(cert.subject().to_string(), "CN=hub, OU=coordinator, O=Acme");
    assert_eq!(cert.issuer(), ca_cert.subject());
    cert.verify_signature(Some(ca_cert.public_key())).unwrap();
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => dns.to_string(),
            GeneralName::IPAddress(ip) => match ip.len() {
                4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).unwrap()).to_string(),
                _ => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap()).to_string(),
            },
            other => panic!("unexpected SAN {other:?}"),
        })
        .collect();
    assert_eq!(
        sans,
        [
            "localhost",
            "127.0.0.1",
            "::1",
            "hub.acme.example",
            "10.0.0.7"
        ]
    );
    let validity = cert.validity().time_to_expiration().unwrap();
    assert!(validity.whole_days() > 700 && validity.whole_days() <= 730);

    let der = cert_der(&participant.cert);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    assert!(!cert.is_ca());
}

#[test]
fn init_never_overwrites_a_ca() {
    let dir = tempfile::tempdir().unwrap();
    ConsortiumCa::init(dir.path(), "Acme").unwrap();
    let before = fs::read(dir.path().join("ca.key")).unwrap();
    let err = ConsortiumCa::init(dir.path(), "Acme").unwrap_err();
    assert!(
        matches!(&err, PkiError::AlreadyExists { path } if *path == dir.path().join("ca.pem")),
        "{err}"
    );
    assert_eq!(fs::read(dir.path().join("ca.key")).unwrap(), before);
}

#[test]
fn issue_refuses_bad_names_reserved_names_bad_sans_and_existing_files() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ConsortiumCa::init(dir.path(), "Acme").unwrap();
    for bad in ["", "has space", "../escape", "a/b", &"x".repeat(65)] {
        let err = ca
            .issue(dir.path(), bad, Role::Participant, &[])
            .unwrap_err();
        assert!(
            matches!(&err, PkiError::InvalidName { name } if name == bad),
            "{err}"
        );
    }
    let err = ca.issue(dir.path(), "crl", Role::Auditor, &[]).unwrap_err();
    assert!(matches!(err, PkiError::ReservedName { .. }), "{err}");
    let err = ca
        .issue(dir.path(), "hub", Role::Coordinator, &["not a host".into()])
        .unwrap_err();
    assert!(
        matches!(err, PkiError::InvalidSubjectAltName { .. }),
        "{err}"
    );
    assert!(!dir.path().join("hub.pem").exists());

    ca.issue(dir.path(), "alice", Role::Participant, &[])
        .unwrap();
    let err = ca
        .issue(dir.path(), "alice", Role::Auditor, &[])
        .unwrap_err();
    assert!(
        matches!(&err, PkiError::AlreadyExists { path } if *path == dir.path().join("alice.pem")),
        "{err}"
    );
    assert_eq!(
        identity_from_der(&cert_der(&dir.path().join("alice.pem")))
            .unwrap()
            .role,
        Role::Participant
    );
}

#[test]
fn load_reads_back_a_ca_that_can_issue() {
    let dir = tempfile::tempdir().unwrap();
    let created = ConsortiumCa::init(dir.path(), "Acme Health").unwrap();
    let loaded = ConsortiumCa::load(dir.path()).unwrap();
    assert_eq!(loaded.consortium(), "Acme Health");
    let files = loaded
        .issue(dir.path(), "bob", Role::Participant, &[])
        .unwrap();
    let ca_der = cert_der(&created.ca_cert_path());
    let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
    let der = cert_der(&files.cert);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    cert.verify_signature(Some(ca_cert.public_key())).unwrap();
}

#[test]
fn load_errors_name_the_missing_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-ca");
    let err = ConsortiumCa::load(&missing).unwrap_err();
    assert!(matches!(err, PkiError::CaNotFound { .. }), "{err}");
    assert!(
        err.to_string().contains(&*missing.to_string_lossy()),
        "{err}"
    );
}

#[test]
fn load_refuses_a_key_that_is_not_the_cas() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ConsortiumCa::init(&dir.path().join("ca"), "Acme").unwrap();
    let files = ca
        .issue(dir.path(), "alice", Role::Participant, &[])
        .unwrap();
    fs::copy(&files.key, dir.path().join("ca/ca.key")).unwrap();
    let err = ConsortiumCa::load(&dir.path().join("ca")).unwrap_err();
    assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err}");
}

#[test]
fn revoke_creates_then_extends_a_signed_crl() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ConsortiumCa::init(dir.path(), "Acme").unwrap();
    let alice = ca
        .issue(dir.path(), "alice", Role::Participant, &[])
        .unwrap();
    let bob = ca.issue(dir.path(), "bob", Role::Participant, &[]).unwrap();
    let serial_of = |path: &Path| {
        let der = cert_der(path);
        X509Certificate::from_der(&der).unwrap().1.serial.clone()
    };

    let crl_path = ca.revoke(dir.path(), "alice").unwrap();
    assert_eq!(crl_path, dir.path().join("crl.pem"));
    ca.revoke(dir.path(), "bob").unwrap();
    // Revoking again changes nothing.
    let before = fs::read(&crl_path).unwrap();
    ca.revoke(dir.path(), "alice").unwrap();
    assert_eq!(fs::read(&crl_path).unwrap(), before);

    let crl_der = CertificateRevocationListDer::from_pem_file(&crl_path).unwrap();
    let (_, crl) = x509_parser::parse_x509_crl(&crl_der).unwrap();
    let ca_der = cert_der(&ca.ca_cert_path());
    let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
    crl.verify_signature(ca_cert.public_key()).unwrap();
    let revoked: Vec<_> = crl
        .iter_revoked_certificates()
        .map(|entry| entry.serial().clone())
        .collect();
    assert_eq!(revoked, [serial_of(&alice.cert), serial_of(&bob.cert)]);
    assert_eq!(crl.crl_number().unwrap().to_string(), "2");
}

#[test]
fn revoke_refuses_names_never_issued_here_and_foreign_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ConsortiumCa::init(&dir.path().join("ca"), "Acme").unwrap();
    let err = ca.revoke(dir.path(), "ghost").unwrap_err();
    assert!(
        matches!(&err, PkiError::NotIssued { name, .. } if name == "ghost"),
        "{err}"
    );
    assert!(err.to_string().contains("ghost.pem"), "{err}");

    let other = ConsortiumCa::init(&dir.path().join("other"), "Acme").unwrap();
    other
        .issue(dir.path(), "mallory", Role::Participant, &[])
        .unwrap();
    let err = ca.revoke(dir.path(), "mallory").unwrap_err();
    assert!(matches!(err, PkiError::ForeignCertificate { .. }), "{err}");
    assert!(!dir.path().join("crl.pem").exists());
}

#[test]
fn identity_from_der_rejects_garbage_and_certificates_without_a_role() {
    assert!(matches!(
        identity_from_der(b"not a certificate"),
        Err(PkiError::Certificate { .. })
    ));

    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "alice");
    let cert = params.self_signed(&key).unwrap();
    let err = identity_from_der(cert.der()).unwrap_err();
    assert!(
        matches!(err, PkiError::MissingSubjectField { field: "OU", .. }),
        "{err}"
    );

    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationalUnitName, "admin");
    let cert = params.self_signed(&key).unwrap();
    let err = identity_from_der(cert.der()).unwrap_err();
    assert!(
        matches!(&err, PkiError::CertificateRole { value, .. } if value == "admin"),
        "{err}"
    );
}

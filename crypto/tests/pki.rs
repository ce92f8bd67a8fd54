//! The consortium CA on disk: init, load, issue, requests made by members and signed by the
//! CA, revoke, and identities read back.

use std::fs;
use std::path::{Path, PathBuf};

use accord_crypto::file::ReadError;
use accord_crypto::pki::{
    ConsortiumCa, Identity, PkiError, RequestFiles, Role, SignOptions, create_request,
    ed25519_public_key, identity_from_der, verify_issued,
};
use accord_crypto::secagg::Signer;
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
        .map(general_name_text)
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
fn serials_are_random_and_all_of_one_length() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ConsortiumCa::init(dir.path(), "Acme").unwrap();
    let mut serials: Vec<Vec<u8>> = (0..32)
        .map(|i| {
            let files = ca
                .issue(dir.path(), &format!("org-{i}"), Role::Participant, &[])
                .unwrap();
            let der = cert_der(&files.cert);
            let (_, cert) = X509Certificate::from_der(&der).unwrap();
            cert.raw_serial().to_vec()
        })
        .collect();
    // 16 bytes each, without a sign byte, so every participant certificate has one size.
    assert!(
        serials.iter().all(|serial| serial.len() == 16),
        "{serials:?}"
    );
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), 32);
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

// ---------------------------------------------------------------------------------------------
// Members make their own keys: `create_request` on the member's machine, `sign_request` at the CA.

/// A CA in `root/ca` and members' machines in `root/NAME`.
struct RequestFlow {
    _dir: tempfile::TempDir,
    root: PathBuf,
    ca: ConsortiumCa,
}

impl RequestFlow {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let ca = ConsortiumCa::init(&root.join("ca"), "Acme").unwrap();
        RequestFlow {
            _dir: dir,
            root,
            ca,
        }
    }

    fn ca_dir(&self) -> PathBuf {
        self.root.join("ca")
    }

    /// `create_request` run in the member's own directory.
    fn request(&self, name: &str, role: Role, sans: &[&str]) -> RequestFiles {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        create_request(&self.root.join(name), name, role, &sans).unwrap()
    }

    /// Signs `request` into `root/signed/FILE` with `options`.
    fn sign(&self, request: &Path, options: &SignOptions) -> Result<PathBuf, PkiError> {
        let out_dir = self.root.join("signed");
        fs::create_dir_all(&out_dir).unwrap();
        let out = out_dir.join(format!(
            "{}.pem",
            request.file_stem().unwrap().to_string_lossy()
        ));
        self.ca.sign_request(request, &out, options).map(|signed| {
            assert_eq!(signed.cert, out);
            out
        })
    }

    /// Writes a request made from `params` and signed by `key` as `root/crafted/FILE`.
    fn crafted(
        &self,
        file: &str,
        params: &rcgen::CertificateParams,
        key: &impl rcgen::SigningKey,
    ) -> PathBuf {
        let pem = params.serialize_request(key).unwrap().pem().unwrap();
        self.write(file, pem.as_bytes())
    }

    fn write(&self, file: &str, contents: &[u8]) -> PathBuf {
        let dir = self.root.join("crafted");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(file);
        fs::write(&path, contents).unwrap();
        path
    }

    /// Every file under the CA directory, recursively.
    fn ca_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, found);
                } else {
                    found.push(path);
                }
            }
        }
        let mut found = Vec::new();
        walk(&self.ca_dir(), &mut found);
        found.sort();
        found
    }
}

/// The subject, CN and OU of a request: what `create_request` writes.
fn request_params(name: &str, role: &str) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationalUnitName, role);
    params
}

fn ed25519_key() -> rcgen::KeyPair {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap()
}

/// The parts of a certificate the rest of Accord relies on, for comparing two certificates.
#[derive(Debug, PartialEq)]
struct Shape {
    subject: String,
    issuer: String,
    is_ca: bool,
    key_usage: String,
    server_auth: bool,
    client_auth: bool,
    subject_alt_names: Vec<String>,
    has_authority_key_id: bool,
    validity_days: i64,
}

fn shape(path: &Path) -> Shape {
    let der = cert_der(path);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    Shape {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        is_ca: cert.is_ca(),
        key_usage: cert.key_usage().unwrap().unwrap().value.to_string(),
        server_auth: eku.server_auth,
        client_auth: eku.client_auth,
        subject_alt_names: cert
            .subject_alternative_name()
            .unwrap()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .map(general_name_text)
                    .collect()
            })
            .unwrap_or_default(),
        has_authority_key_id: cert.iter_extensions().any(|extension| {
            extension.oid == x509_parser::oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER
        }),
        validity_days: validity_days(path),
    }
}

/// A DNS name or an IP address as text.
fn general_name_text(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DNSName(dns) => dns.to_string(),
        GeneralName::IPAddress(ip) => match ip.len() {
            4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).unwrap()).to_string(),
            _ => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap()).to_string(),
        },
        other => panic!("unexpected SAN {other:?}"),
    }
}

/// Whole days until the certificate at `path` expires.
fn validity_days(path: &Path) -> i64 {
    let der = cert_der(path);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    cert.validity().time_to_expiration().unwrap().whole_days()
}

#[test]
fn a_signed_request_is_a_member_certificate_for_the_members_own_key() {
    let flow = RequestFlow::new();
    let files = flow.request("org-1", Role::Participant, &[]);
    assert_eq!(files.key, flow.root.join("org-1/org-1.key"));
    assert_eq!(files.request, flow.root.join("org-1/org-1.csr"));
    let request = fs::read_to_string(&files.request).unwrap();
    assert!(
        request.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
        "{request}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&files.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    let signed = flow
        .ca
        .sign_request(
            &files.request,
            &flow.root.join("org-1/org-1.pem"),
            &SignOptions {
                name: Some("org-1".into()),
                role: Some(Role::Participant),
                days: None,
            },
        )
        .unwrap();
    assert_eq!(
        signed.identity,
        Identity {
            name: "org-1".into(),
            role: Role::Participant
        }
    );
    assert_eq!(signed.record, flow.ca_dir().join("org-1.pem"));
    let der = cert_der(&signed.cert);
    let ca_der = cert_der(&flow.ca.ca_cert_path());
    assert_eq!(verify_issued(&ca_der, &der).unwrap(), signed.identity);
    assert_eq!(
        fs::read(&signed.record).unwrap(),
        fs::read(&signed.cert).unwrap()
    );
    // The certificate holds the member's key: the protocol's signing code accepts the pair.
    let key = rcgen::KeyPair::from_pem(&fs::read_to_string(&files.key).unwrap()).unwrap();
    assert_eq!(ed25519_public_key(&der).unwrap(), key.public_key_raw());
    assert_eq!(
        Signer::load(&signed.cert, &files.key).unwrap().name(),
        "org-1"
    );
}

#[test]
fn the_ca_directory_never_holds_a_members_key() {
    let flow = RequestFlow::new();
    let members = [
        flow.request("hub", Role::Coordinator, &["hub.acme.example"]),
        flow.request("org-1", Role::Participant, &[]),
        flow.request("org-2", Role::Participant, &[]),
        flow.request("regulator", Role::Auditor, &[]),
    ];
    for member in &members {
        flow.sign(&member.request, &SignOptions::default()).unwrap();
    }
    let keys: Vec<String> = members
        .iter()
        .map(|member| fs::read_to_string(&member.key).unwrap())
        .collect();
    let secrets: Vec<Vec<u8>> = keys
        .iter()
        .map(|pem| {
            rustls_pki_types::PrivateKeyDer::from_pem_slice(pem.as_bytes())
                .unwrap()
                .secret_der()
                .to_vec()
        })
        .collect();
    let files = flow.ca_files();
    let names: Vec<String> = files
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "ca.key",
            "ca.pem",
            "hub.pem",
            "org-1.pem",
            "org-2.pem",
            "regulator.pem"
        ]
    );
    for path in &files {
        let contents = fs::read(path).unwrap();
        for (pem, der) in keys.iter().zip(&secrets) {
            assert!(
                !contents
                    .windows(pem.len())
                    .any(|window| window == pem.as_bytes()),
                "{} holds a member's key",
                path.display()
            );
            assert!(
                !contents.windows(der.len()).any(|window| window == &der[..]),
                "{} holds a member's key (DER)",
                path.display()
            );
        }
        if path.file_name().unwrap() != "ca.key" {
            assert!(
                !String::from_utf8_lossy(&contents).contains("PRIVATE KEY"),
                "{}",
                path.display()
            );
        }
    }
}

#[test]
fn signed_certificates_have_the_shape_of_issued_ones() {
    let flow = RequestFlow::new();
    let issued_dir = flow.root.join("issued");
    for (name, role, sans) in [
        (
            "hub",
            Role::Coordinator,
            vec!["hub.acme.example", "10.0.0.7"],
        ),
        ("org-1", Role::Participant, vec![]),
        ("regulator", Role::Auditor, vec![]),
    ] {
        let owned: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let issued = flow.ca.issue(&issued_dir, name, role, &owned).unwrap();
        let request = flow.request(name, role, &sans);
        let signed = flow
            .sign(&request.request, &SignOptions::default())
            .unwrap();
        assert_eq!(shape(&signed), shape(&issued.cert), "{name}");
    }
    let hub = shape(&flow.root.join("signed/hub.pem"));
    assert_eq!(hub.subject, "CN=hub, OU=coordinator, O=Acme");
    assert_eq!(
        hub.subject_alt_names,
        [
            "localhost",
            "127.0.0.1",
            "::1",
            "hub.acme.example",
            "10.0.0.7"
        ]
    );
    assert!(hub.server_auth && hub.client_auth);
    assert!(hub.validity_days > 700 && hub.validity_days <= 730);
}

#[test]
fn days_set_the_validity_and_zero_is_refused() {
    let flow = RequestFlow::new();
    let request = flow.request("org-1", Role::Participant, &[]);
    let err = flow
        .sign(
            &request.request,
            &SignOptions {
                days: Some(0),
                ..SignOptions::default()
            },
        )
        .unwrap_err();
    assert!(
        matches!(err, PkiError::InvalidValidity { days: 0 }),
        "{err}"
    );
    let signed = flow
        .sign(
            &request.request,
            &SignOptions {
                days: Some(30),
                ..SignOptions::default()
            },
        )
        .unwrap();
    assert_eq!(validity_days(&signed), 29);
    // Beyond the CA's own expiry the certificate ends with the CA.
    let second = flow.request("org-2", Role::Participant, &[]);
    let signed = flow
        .sign(
            &second.request,
            &SignOptions {
                days: Some(u32::MAX),
                ..SignOptions::default()
            },
        )
        .unwrap();
    assert_eq!(
        validity_days(&signed),
        validity_days(&flow.ca.ca_cert_path())
    );
}

/// Signs `request` expecting a refusal; checks that neither the certificate nor a record in
/// the CA directory was written, and that the message names `named`.
fn refused(flow: &RequestFlow, request: &Path, options: &SignOptions, named: &Path) -> PkiError {
    let before = flow.ca_files();
    let err = flow.sign(request, options).unwrap_err();
    assert!(
        err.to_string().contains(&*named.to_string_lossy()),
        "the error names {}: {err}",
        named.display()
    );
    assert_eq!(flow.ca_files(), before, "{err}");
    let out = flow.root.join("signed").join(format!(
        "{}.pem",
        request.file_stem().unwrap().to_string_lossy()
    ));
    assert!(!out.exists() || named == out, "{err}");
    err
}

#[test]
fn sign_refuses_malformed_and_tampered_requests() {
    let flow = RequestFlow::new();
    let options = SignOptions::default();

    let missing = flow.root.join("crafted/missing.csr");
    let err = refused(&flow, &missing, &options, &missing);
    assert!(
        matches!(err, PkiError::MemberFile(ReadError::Io { .. })),
        "{err}"
    );

    let garbage = flow.write("garbage.csr", b"not a certificate request");
    let err = refused(&flow, &garbage, &options, &garbage);
    assert!(matches!(err, PkiError::Pem { .. }), "{err}");

    let not_der = flow.write(
        "not-der.csr",
        b"-----BEGIN CERTIFICATE REQUEST-----\nAAECAwQF\n-----END CERTIFICATE REQUEST-----\n",
    );
    let err = refused(&flow, &not_der, &options, &not_der);
    assert!(matches!(err, PkiError::RequestFile { .. }), "{err}");

    // A genuine request with its name changed after signing: "org-1" becomes "org-9".
    let genuine = flow.request("org-1", Role::Participant, &[]);
    let mut der = rustls_pki_types::CertificateSigningRequestDer::from_pem_file(&genuine.request)
        .unwrap()
        .to_vec();
    let at = der
        .windows(5)
        .position(|window| window == b"org-1")
        .unwrap();
    der[at + 4] = b'9';
    let tampered = flow.write(
        "tampered.csr",
        to_pem("CERTIFICATE REQUEST", &der).as_bytes(),
    );
    let err = refused(&flow, &tampered, &options, &tampered);
    assert!(matches!(err, PkiError::RequestSignature { .. }), "{err}");

    // Bytes appended to the request inside its PEM block.
    let mut der = rustls_pki_types::CertificateSigningRequestDer::from_pem_file(&genuine.request)
        .unwrap()
        .to_vec();
    der.extend_from_slice(&[0, 0]);
    let trailing = flow.write(
        "trailing.csr",
        to_pem("CERTIFICATE REQUEST", &der).as_bytes(),
    );
    let err = refused(&flow, &trailing, &options, &trailing);
    assert!(
        matches!(err, PkiError::RequestTrailingData { bytes: 2, .. }),
        "{err}"
    );
}

fn to_pem(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der))
}

/// Claims one key in its requests and signs them with another.
struct ClaimsOneKeySignsWithAnother {
    claimed: rcgen::KeyPair,
    signer: rcgen::KeyPair,
}

impl rcgen::PublicKeyData for ClaimsOneKeySignsWithAnother {
    fn der_bytes(&self) -> &[u8] {
        self.claimed.der_bytes()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        rcgen::PublicKeyData::algorithm(&self.claimed)
    }
}

impl rcgen::SigningKey for ClaimsOneKeySignsWithAnother {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.signer.sign(msg)
    }
}

/// The Ed25519 identity point as a public key (small order), with the signature
/// R = B (the base point), S = 1: it verifies for every message, since [S]B = R + [k]A.
struct IdentityPointKey;

impl rcgen::PublicKeyData for IdentityPointKey {
    fn der_bytes(&self) -> &[u8] {
        const IDENTITY: [u8; 32] = {
            let mut point = [0; 32];
            point[0] = 1;
            point
        };
        &IDENTITY
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

impl rcgen::SigningKey for IdentityPointKey {
    fn sign(&self, _msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let mut signature = vec![0x66; 32];
        signature[0] = 0x58;
        signature.push(1);
        signature.extend([0; 31]);
        Ok(signature)
    }
}

#[test]
fn sign_refuses_other_keys_than_a_sound_ed25519_key_of_the_requester() {
    let flow = RequestFlow::new();
    let options = SignOptions::default();
    let params = request_params("org-1", "participant");

    let another = ClaimsOneKeySignsWithAnother {
        claimed: ed25519_key(),
        signer: ed25519_key(),
    };
    let path = flow.crafted("another-key.csr", &params, &another);
    let err = refused(&flow, &path, &options, &path);
    assert!(matches!(err, PkiError::RequestSignature { .. }), "{err}");
    assert!(err.to_string().contains("signed by another key"), "{err}");

    let ecdsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let path = flow.crafted("ecdsa.csr", &params, &ecdsa);
    let err = refused(&flow, &path, &options, &path);
    assert!(
        matches!(&err, PkiError::RequestKeyNotEd25519 { algorithm, .. } if algorithm.contains("1.2.840.10045.2.1")),
        "{err}"
    );

    let path = flow.crafted("weak.csr", &params, &IdentityPointKey);
    let err = refused(&flow, &path, &options, &path);
    assert!(matches!(err, PkiError::WeakRequestKey { .. }), "{err}");
}

#[test]
fn sign_refuses_subjects_and_names_accord_does_not_certify() {
    let flow = RequestFlow::new();
    let options = SignOptions::default();
    let key = ed25519_key();
    let content = |err: PkiError| match err {
        PkiError::RequestContent { source, .. } => *source,
        other => panic!("expected RequestContent, got {other}"),
    };

    let mut params = request_params("org-1", "participant");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Evil Corp");
    let path = flow.crafted("organization.csr", &params, &key);
    let err = refused(&flow, &path, &options, &path);
    assert!(
        matches!(&err, PkiError::RequestSubjectAttribute { attribute, .. } if attribute.contains("2.5.4.10")),
        "{err}"
    );

    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "org-1");
    let path = flow.crafted("no-role.csr", &params, &key);
    let err = content(refused(&flow, &path, &options, &path));
    assert!(
        matches!(err, PkiError::MissingSubjectField { field: "OU", .. }),
        "{err}"
    );

    let path = flow.crafted("admin.csr", &request_params("org-1", "admin"), &key);
    let err = content(refused(&flow, &path, &options, &path));
    assert!(
        matches!(&err, PkiError::UnknownRole { value } if value == "admin"),
        "{err}"
    );

    for (file, name) in [("escape.csr", "../escape"), ("reserved.csr", "ca")] {
        let path = flow.crafted(file, &request_params(name, "participant"), &key);
        let err = content(refused(&flow, &path, &options, &path));
        assert!(
            matches!(
                err,
                PkiError::InvalidName { .. } | PkiError::ReservedName { .. }
            ),
            "{err}"
        );
    }

    let mut params = request_params("org-1", "participant");
    params.subject_alt_names = vec![rcgen::SanType::Rfc822Name(
        "a@b.example".try_into().unwrap(),
    )];
    let path = flow.crafted("email.csr", &params, &key);
    let err = refused(&flow, &path, &options, &path);
    assert!(matches!(err, PkiError::RequestExtension { .. }), "{err}");

    let mut params = request_params("hub", "coordinator");
    params.subject_alt_names = vec![rcgen::SanType::DnsName("bad_name!".try_into().unwrap())];
    let path = flow.crafted("bad-dns.csr", &params, &key);
    let err = content(refused(&flow, &path, &options, &path));
    assert!(
        matches!(err, PkiError::InvalidSubjectAltName { .. }),
        "{err}"
    );
}

#[test]
fn sign_refuses_a_request_that_disagrees_with_the_ca_operator() {
    let flow = RequestFlow::new();
    let request = flow.request("org-1", Role::Coordinator, &[]);
    let err = refused(
        &flow,
        &request.request,
        &SignOptions {
            name: Some("org-2".into()),
            ..SignOptions::default()
        },
        &request.request,
    );
    assert!(
        matches!(&err, PkiError::RequestMismatch { field: "name", requested, stated, .. }
            if requested == "org-1" && stated == "org-2"),
        "{err}"
    );
    let err = refused(
        &flow,
        &request.request,
        &SignOptions {
            name: Some("org-1".into()),
            role: Some(Role::Participant),
            days: None,
        },
        &request.request,
    );
    assert!(
        matches!(&err, PkiError::RequestMismatch { field: "role", requested, stated, .. }
            if requested == "coordinator" && stated == "participant"),
        "{err}"
    );
}

#[test]
fn sign_refuses_a_name_still_certified_and_a_revoked_key_but_certifies_a_new_key() {
    let flow = RequestFlow::new();
    let first = flow.request("org-1", Role::Participant, &[]);
    let first_cert = flow.sign(&first.request, &SignOptions::default()).unwrap();
    let record = flow.ca_dir().join("org-1.pem");

    // A second member asking for the same name from another machine.
    let impostor_key = ed25519_key();
    let impostor = flow.crafted(
        "impostor.csr",
        &request_params("org-1", "participant"),
        &impostor_key,
    );
    let err = refused(&flow, &impostor, &SignOptions::default(), &record);
    assert!(
        matches!(&err, PkiError::AlreadyIssued { name, .. } if name == "org-1"),
        "{err}"
    );

    flow.ca.revoke(&flow.ca_dir(), "org-1").unwrap();
    // The revoked key stays revoked under a fresh request.
    let key = rcgen::KeyPair::from_pem(&fs::read_to_string(&first.key).unwrap()).unwrap();
    let again = flow.crafted(
        "org-1-again.csr",
        &request_params("org-1", "participant"),
        &key,
    );
    let err = refused(&flow, &again, &SignOptions::default(), &again);
    assert!(matches!(err, PkiError::RevokedKeyReused { .. }), "{err}");

    // A new key for the revoked name is certified; the revoked certificate is archived.
    let new_cert = flow.sign(&impostor, &SignOptions::default()).unwrap();
    assert_eq!(fs::read(&record).unwrap(), fs::read(&new_cert).unwrap());
    let serial_of = |path: &Path| {
        let der = cert_der(path);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        cert.tbs_certificate.serial.to_bytes_be()
    };
    let archived = flow.ca_dir().join(format!(
        "revoked/org-1.{}.pem",
        hex_lower(&serial_of(&first_cert))
    ));
    assert_eq!(fs::read(&archived).unwrap(), fs::read(&first_cert).unwrap());
    assert_ne!(serial_of(&first_cert), serial_of(&new_cert));
    // And `revoke` by name now revokes the new certificate.
    let crl_path = flow.ca.revoke(&flow.ca_dir(), "org-1").unwrap();
    let crl_der = CertificateRevocationListDer::from_pem_file(&crl_path).unwrap();
    let (_, crl) = x509_parser::parse_x509_crl(&crl_der).unwrap();
    let revoked: Vec<Vec<u8>> = crl
        .iter_revoked_certificates()
        .map(|entry| entry.serial().to_bytes_be())
        .collect();
    assert_eq!(revoked, [serial_of(&first_cert), serial_of(&new_cert)]);
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn sign_refuses_an_existing_output_file() {
    let flow = RequestFlow::new();
    let request = flow.request("org-1", Role::Participant, &[]);
    let out = flow.root.join("signed/org-1.pem");
    fs::create_dir_all(out.parent().unwrap()).unwrap();
    fs::write(&out, "kept").unwrap();
    let err = refused(&flow, &request.request, &SignOptions::default(), &out);
    assert!(
        matches!(&err, PkiError::AlreadyExists { path } if *path == out),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&out).unwrap(), "kept");
}

#[test]
fn request_refuses_existing_files_bad_names_and_the_ca_directory() {
    let flow = RequestFlow::new();
    let files = flow.request("org-1", Role::Participant, &[]);
    let key = fs::read(&files.key).unwrap();
    let err =
        create_request(&flow.root.join("org-1"), "org-1", Role::Participant, &[]).unwrap_err();
    assert!(
        matches!(&err, PkiError::AlreadyExists { path } if *path == files.key),
        "{err}"
    );
    assert_eq!(fs::read(&files.key).unwrap(), key, "the key is kept");

    let err = create_request(&flow.ca_dir(), "org-2", Role::Participant, &[]).unwrap_err();
    assert!(
        matches!(err, PkiError::RequestInCaDirectory { .. }),
        "{err}"
    );
    assert!(!flow.ca_dir().join("org-2.key").exists());

    let elsewhere = flow.root.join("elsewhere");
    for (name, sans) in [
        ("a b", vec![]),
        ("crl", vec![]),
        ("hub", vec!["not a host".to_owned()]),
    ] {
        let err = create_request(&elsewhere, name, Role::Coordinator, &sans).unwrap_err();
        assert!(
            matches!(
                err,
                PkiError::InvalidName { .. }
                    | PkiError::ReservedName { .. }
                    | PkiError::InvalidSubjectAltName { .. }
            ),
            "{err}"
        );
    }
    assert!(!elsewhere.exists());
}

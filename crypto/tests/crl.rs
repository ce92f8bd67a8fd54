//! The consortium's CRL as nodes hold it: refused at start unless the CA signed it, reread when
//! the file changes (an unusable change leaves the last good list in force), and applied to
//! the member certificates relayed with signed protocol messages.

use std::fs;
use std::path::Path;

use accord_crypto::crl::{CrlError, CrlWatch};
use accord_crypto::pem::PemFileError;
use accord_crypto::pki::{ConsortiumCa, IssuedFiles, Role};
use accord_crypto::secagg::Trust;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

fn der(files: &IssuedFiles) -> Vec<u8> {
    CertificateDer::from_pem_file(&files.cert).unwrap().to_vec()
}

fn revoked(watch: &CrlWatch, files: &IssuedFiles) -> bool {
    watch.current().revoked_serial(&der(files)).is_some()
}

/// A CA "Acme" with participants alice, bob and carol; carol revoked.
struct Acme {
    _dir: tempfile::TempDir,
    ca: ConsortiumCa,
    nodes: std::path::PathBuf,
    alice: IssuedFiles,
    bob: IssuedFiles,
    crl: std::path::PathBuf,
}

impl Acme {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = ConsortiumCa::init(&dir.path().join("ca"), "Acme").unwrap();
        let nodes = dir.path().join("nodes");
        let issue = |name| ca.issue(&nodes, name, Role::Participant, &[]).unwrap();
        let (alice, bob) = (issue("alice"), issue("bob"));
        issue("carol");
        let crl = ca.revoke(&nodes, "carol").unwrap();
        Acme {
            _dir: dir,
            ca,
            nodes,
            alice,
            bob,
            crl,
        }
    }

    fn watch(&self) -> std::sync::Arc<CrlWatch> {
        CrlWatch::open(&self.crl, &self.ca.ca_cert_path()).unwrap()
    }
}

/// Another consortium's CA with the same name, so only the signature tells them apart.
fn impostor_crl(dir: &Path) -> Vec<u8> {
    let impostor = ConsortiumCa::init(&dir.join("impostor-ca"), "Acme").unwrap();
    let nodes = dir.join("impostor");
    impostor
        .issue(&nodes, "mallory", Role::Participant, &[])
        .unwrap();
    fs::read(impostor.revoke(&nodes, "mallory").unwrap()).unwrap()
}

#[test]
fn a_crl_the_ca_did_not_sign_is_refused_at_start_naming_the_file() {
    let acme = Acme::new();
    let ca = acme.ca.ca_cert_path();
    let foreign = acme.nodes.join("foreign-crl.pem");
    fs::write(&foreign, impostor_crl(acme._dir.path())).unwrap();
    match CrlWatch::open(&foreign, &ca) {
        Err(error @ CrlError::NotFromCa { .. }) => assert_eq!(
            error.to_string(),
            format!(
                "{}: CRL 1 was not signed by the consortium CA 'CN=Acme Accord CA, O=Acme'",
                foreign.display()
            )
        ),
        other => panic!("{other:?}"),
    }

    let garbage = acme.nodes.join("garbage.pem");
    fs::write(
        &garbage,
        "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
    )
    .unwrap();
    let error = CrlWatch::open(&garbage, &ca).unwrap_err();
    assert!(matches!(error, CrlError::Parse { index: 1, .. }), "{error}");
    assert!(error.to_string().contains("garbage.pem"), "{error}");

    let missing = acme.nodes.join("missing.pem");
    let error = CrlWatch::open(&missing, &ca).unwrap_err();
    assert!(
        matches!(error, CrlError::File(PemFileError::Read { .. })),
        "{error}"
    );
}

#[test]
fn a_changed_crl_is_reread_and_an_unusable_change_keeps_the_last_good_list() {
    let acme = Acme::new();
    let watch = acme.watch();
    assert!(!revoked(&watch, &acme.bob));
    assert_eq!(watch.current().revoked_count(), 1);

    acme.ca.revoke(&acme.nodes, "bob").unwrap();
    assert!(revoked(&watch, &acme.bob), "reread after `pki revoke`");
    assert!(!revoked(&watch, &acme.alice));

    // Not PEM, a CRL from an impostor CA, then no file at all: bob stays revoked throughout.
    let impostor = impostor_crl(acme._dir.path());
    let unusable: [Option<&[u8]>; 3] = [Some(b"not a CRL at all"), Some(&impostor), None];
    for contents in unusable {
        match contents {
            Some(contents) => fs::write(&acme.crl, contents).unwrap(),
            None => fs::remove_file(&acme.crl).unwrap(),
        }
        assert!(revoked(&watch, &acme.bob));
        assert_eq!(watch.current().revoked_count(), 2);
    }

    // A usable list again (the CA writes a fresh one, revoking alice) replaces it.
    acme.ca.revoke(&acme.nodes, "alice").unwrap();
    assert!(revoked(&watch, &acme.alice));
    assert!(!revoked(&watch, &acme.bob));
}

#[test]
fn trust_refuses_a_revoked_members_certificate() {
    let acme = Acme::new();
    acme.ca.revoke(&acme.nodes, "bob").unwrap();
    let plain = Trust::load(&acme.ca.ca_cert_path()).unwrap();
    let checking = plain.clone().with_crl(acme.watch());

    let error = checking.member_key("bob", &der(&acme.bob)).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("certificate of 'bob': the certificate (serial ")
    );
    assert!(
        error
            .to_string()
            .ends_with(&format!("is revoked by {}", acme.crl.display())),
        "{error}"
    );
    assert!(checking.member_key("alice", &der(&acme.alice)).is_ok());
    // Without the CRL, revocation is not checked.
    assert!(plain.member_key("bob", &der(&acme.bob)).is_ok());
}

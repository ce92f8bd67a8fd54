//! The consortium's certificate authority.
//!
//! A consortium runs one CA of its own; it issues a certificate to every node, and the
//! TLS configurations in [`crate::tls`] trust that CA and nothing else. A certificate
//! says who its holder is: subject CN = the node's name, OU = its [`Role`]. Keys are
//! Ed25519 and stored as PKCS#8 PEM, because a participant's certificate key doubles as
//! its protocol signing key. Files never get overwritten: re-running `init` or `issue`
//! must not silently replace a key that others already trust.
//!
//! Layout: the CA directory holds `ca.pem` and `ca.key`; an issue directory holds
//! `NAME.pem` and `NAME.key` for each issued name, and `crl.pem` once something there
//! has been revoked.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PKCS_ED25519, RevokedCertParams, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::oid_registry::{
    OID_X509_COMMON_NAME, OID_X509_ORGANIZATION_NAME, OID_X509_ORGANIZATIONAL_UNIT, Oid,
};
use x509_parser::x509::X509Name;

const CA_CERT_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca.key";
const CRL_FILE: &str = "crl.pem";
/// Names that would collide with the files above when issuing into the CA directory.
const RESERVED_NAMES: [&str; 2] = ["ca", "crl"];
const MAX_NAME_LEN: usize = 64;

const CA_VALIDITY: Duration = Duration::days(10 * 365);
const LEAF_VALIDITY: Duration = Duration::days(2 * 365);
/// How long relying parties may treat a CRL as current; every `revoke` writes a fresh one.
const CRL_VALIDITY: Duration = Duration::days(365);
/// Certificates start a little in the past so that nodes whose clocks lag still accept them.
const BACKDATE: Duration = Duration::minutes(5);

/// Loopback names every coordinator certificate carries, so local deployments and tests work.
const COORDINATOR_LOOPBACK_SANS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// What went wrong in the PKI, naming the file or certificate concerned.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error(
        "invalid name '{name}': a name is 1 to {MAX_NAME_LEN} characters of A-Z, a-z, 0-9, '.', '_' and '-'"
    )]
    InvalidName { name: String },
    #[error("the name '{name}' is reserved: {name}.pem is one of the CA's own files")]
    ReservedName { name: String },
    #[error(
        "invalid consortium name '{name}': it must be 1 to {MAX_NAME_LEN} characters without control characters"
    )]
    InvalidConsortium { name: String },
    #[error("unknown role '{value}': expected participant, coordinator or auditor")]
    UnknownRole { value: String },
    #[error("invalid subject alternative name '{value}': expected a DNS name or an IP address")]
    InvalidSubjectAltName { value: String },
    #[error("refusing to overwrite {path}: it already exists")]
    AlreadyExists { path: PathBuf },
    #[error("no consortium CA in {dir}: {path} does not exist")]
    CaNotFound { dir: PathBuf, path: PathBuf },
    #[error("{path} is not a CA certificate (its basic constraints do not allow issuing)")]
    NotACa { path: PathBuf },
    #[error("the CA key {key} does not belong to the CA certificate {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot create directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{path} is not valid PEM: {source}")]
    Pem {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{path} is not a valid X.509 certificate: {source}")]
    CertificateFile {
        path: PathBuf,
        source: x509_parser::nom::Err<X509Error>,
    },
    #[error("{path} is not a valid certificate revocation list: {source}")]
    CrlFile {
        path: PathBuf,
        source: x509_parser::nom::Err<X509Error>,
    },
    #[error("the certificate revocation list {path} was not signed by the consortium CA '{ca}'")]
    ForeignCrl { path: PathBuf, ca: String },
    #[error("{path} is not an Ed25519 PKCS#8 private key: {source}")]
    KeyFile { path: PathBuf, source: rcgen::Error },
    #[error("cannot generate {what}: {source}")]
    Generate { what: String, source: rcgen::Error },
    #[error("'{name}' was never issued in {dir}: {path} does not exist")]
    NotIssued {
        name: String,
        dir: PathBuf,
        path: PathBuf,
    },
    #[error("{path} was not issued by the consortium CA '{ca}'")]
    ForeignCertificate { path: PathBuf, ca: String },
    #[error("not a valid X.509 certificate: {source}")]
    Certificate {
        source: x509_parser::nom::Err<X509Error>,
    },
    #[error("certificate '{subject}' has no {field} in its subject")]
    MissingSubjectField {
        subject: String,
        field: &'static str,
    },
    #[error("certificate '{subject}' has more than one {field} in its subject")]
    RepeatedSubjectField {
        subject: String,
        field: &'static str,
    },
    #[error("certificate '{subject}' has a {field} that is not a readable string")]
    UnreadableSubjectField {
        subject: String,
        field: &'static str,
    },
    #[error(
        "certificate '{subject}' has role '{value}' (subject OU), expected participant, coordinator or auditor"
    )]
    CertificateRole { subject: String, value: String },
    #[error("certificate '{subject}' names an invalid holder '{name}' (subject CN)")]
    CertificateName { subject: String, name: String },
    #[error("certificate '{subject}' was not issued by the consortium CA '{ca}'")]
    UntrustedCertificate { subject: String, ca: String },
    #[error("certificate '{subject}' is not valid now (valid {not_before} to {not_after})")]
    OutsideValidity {
        subject: String,
        not_before: String,
        not_after: String,
    },
    #[error("certificate '{subject}' does not hold an Ed25519 key")]
    NotEd25519 { subject: String },
}

/// What a node does in the consortium; written as the subject OU of its certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Holds data and takes part in federated rounds.
    Participant,
    /// Runs the rounds; the only role that may act as TLS server.
    Coordinator,
    /// Reads results and audit trails.
    Auditor,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Participant => "participant",
            Role::Coordinator => "coordinator",
            Role::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = PkiError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "participant" => Ok(Role::Participant),
            "coordinator" => Ok(Role::Coordinator),
            "auditor" => Ok(Role::Auditor),
            _ => Err(PkiError::UnknownRole {
                value: value.to_owned(),
            }),
        }
    }
}

/// Who a certificate says its holder is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub role: Role,
}

/// The two files [`ConsortiumCa::issue`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedFiles {
    /// `NAME.pem`: the certificate.
    pub cert: PathBuf,
    /// `NAME.key`: its Ed25519 private key, PKCS#8 PEM, readable by the owner only.
    pub key: PathBuf,
}

/// A consortium CA loaded from its directory, able to issue and revoke.
#[derive(Debug)]
pub struct ConsortiumCa {
    dir: PathBuf,
    consortium: String,
    cert_der: CertificateDer<'static>,
    not_after: OffsetDateTime,
    issuer: Issuer<'static, KeyPair>,
}

impl ConsortiumCa {
    /// Creates `dir` (if needed) with `ca.pem` and `ca.key` (mode 0600) for a new CA with
    /// subject `CN=<consortium> Accord CA, O=<consortium>`. Refuses if either file exists:
    /// a CA is never overwritten.
    pub fn init(dir: &Path, consortium: &str) -> Result<ConsortiumCa, PkiError> {
        if consortium.is_empty()
            || consortium.chars().count() > MAX_NAME_LEN
            || consortium.chars().any(char::is_control)
        {
            return Err(PkiError::InvalidConsortium {
                name: consortium.to_owned(),
            });
        }
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        refuse_existing(&[&cert_path, &key_path])?;
        fs::create_dir_all(dir).map_err(|source| PkiError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;

        let key = generate_key(format!("the CA key for '{consortium}'"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{consortium} Accord CA"));
        params
            .distinguished_name
            .push(DnType::OrganizationName, consortium);
        // Path length 0: the CA signs node certificates only, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        let cert = params
            .self_signed(&key)
            .map_err(|source| PkiError::Generate {
                what: format!("the CA certificate for '{consortium}'"),
                source,
            })?;

        write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write_new(&cert_path, cert.pem().as_bytes(), 0o644)?;
        tracing::info!(dir = %dir.display(), consortium, "created consortium CA");
        Self::load(dir)
    }

    /// Loads the CA from `dir/ca.pem` and `dir/ca.key`, checking that the key belongs to
    /// the certificate.
    pub fn load(dir: &Path) -> Result<ConsortiumCa, PkiError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let pem = fs::read(&cert_path).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                PkiError::CaNotFound {
                    dir: dir.to_owned(),
                    path: cert_path.clone(),
                }
            } else {
                PkiError::Read {
                    path: cert_path.clone(),
                    source,
                }
            }
        })?;
        let cert_der = CertificateDer::from_pem_slice(&pem).map_err(|source| PkiError::Pem {
            path: cert_path.clone(),
            source,
        })?;
        let cert = parse_certificate_file(&cert_path, &cert_der)?;
        if !cert.is_ca() {
            return Err(PkiError::NotACa { path: cert_path });
        }
        let consortium = subject_field(cert.subject(), "O", &OID_X509_ORGANIZATION_NAME)?;
        let not_after = cert.validity().not_after.to_datetime();

        let key_path = dir.join(CA_KEY_FILE);
        let key_pem = fs::read_to_string(&key_path).map_err(|source| PkiError::Read {
            path: key_path.clone(),
            source,
        })?;
        let key =
            KeyPair::from_pkcs8_pem_and_sign_algo(&key_pem, &PKCS_ED25519).map_err(|source| {
                PkiError::KeyFile {
                    path: key_path.clone(),
                    source,
                }
            })?;
        if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
            return Err(PkiError::KeyMismatch {
                cert: cert_path,
                key: key_path,
            });
        }
        let issuer =
            Issuer::from_ca_cert_der(&cert_der, key).map_err(|source| PkiError::KeyFile {
                path: key_path,
                source,
            })?;
        Ok(ConsortiumCa {
            dir: dir.to_owned(),
            consortium,
            cert_der: cert_der.clone(),
            not_after,
            issuer,
        })
    }

    /// The consortium's name (the CA subject's O).
    pub fn consortium(&self) -> &str {
        &self.consortium
    }

    /// `ca.pem` in the CA's directory: what every node trusts.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }

    /// Issues `dir/NAME.pem` and `dir/NAME.key` (mode 0600), signed by the CA, with subject
    /// `CN=NAME, OU=ROLE, O=<consortium>`. Refuses if either file exists.
    ///
    /// Coordinator certificates may serve TLS and authenticate as clients; their subject
    /// alternative names are `localhost`, `127.0.0.1`, `::1` and `extra_sans`. Participant
    /// and auditor certificates may only authenticate as TLS clients; they carry
    /// `extra_sans`, if any, and no automatic names (a client certificate needs none).
    pub fn issue(
        &self,
        dir: &Path,
        name: &str,
        role: Role,
        extra_sans: &[String],
    ) -> Result<IssuedFiles, PkiError> {
        validate_name(name)?;
        if RESERVED_NAMES.contains(&name) {
            return Err(PkiError::ReservedName {
                name: name.to_owned(),
            });
        }
        let subject_alt_names = subject_alt_names(role, extra_sans)?;
        let files = IssuedFiles {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        refuse_existing(&[&files.cert, &files.key])?;
        fs::create_dir_all(dir).map_err(|source| PkiError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;

        let key = generate_key(format!("a key for '{name}'"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, role.as_str());
        params
            .distinguished_name
            .push(DnType::OrganizationName, self.consortium.as_str());
        params.subject_alt_names = subject_alt_names;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match role {
            Role::Coordinator => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Role::Participant | Role::Auditor => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        // A certificate outliving its CA would be useless after the CA expires anyway.
        params.not_after = (now + LEAF_VALIDITY).min(self.not_after);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| PkiError::Generate {
                what: format!("the certificate for '{name}'"),
                source,
            })?;

        write_new(&files.key, key.serialize_pem().as_bytes(), 0o600)?;
        write_new(&files.cert, cert.pem().as_bytes(), 0o644)?;
        tracing::info!(name, %role, cert = %files.cert.display(), "issued certificate");
        Ok(files)
    }

    /// Revokes the certificate `dir/NAME.pem`: adds its serial to `dir/crl.pem`, a CRL
    /// signed by the CA, creating it or re-signing it with a higher CRL number. Revoking
    /// a name twice leaves the CRL as it is. Errors if `NAME` was never issued in `dir`
    /// or its certificate is not from this CA.
    pub fn revoke(&self, dir: &Path, name: &str) -> Result<PathBuf, PkiError> {
        validate_name(name)?;
        let cert_path = dir.join(format!("{name}.pem"));
        let pem = fs::read(&cert_path).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                PkiError::NotIssued {
                    name: name.to_owned(),
                    dir: dir.to_owned(),
                    path: cert_path.clone(),
                }
            } else {
                PkiError::Read {
                    path: cert_path.clone(),
                    source,
                }
            }
        })?;
        let cert_der = CertificateDer::from_pem_slice(&pem).map_err(|source| PkiError::Pem {
            path: cert_path.clone(),
            source,
        })?;
        let cert = parse_certificate_file(&cert_path, &cert_der)?;
        let ca_path = self.ca_cert_path();
        let ca = parse_certificate_file(&ca_path, &self.cert_der)?;
        if cert.issuer().as_raw() != ca.subject().as_raw()
            || cert.verify_signature(Some(ca.public_key())).is_err()
        {
            return Err(PkiError::ForeignCertificate {
                path: cert_path,
                ca: ca.subject().to_string(),
            });
        }
        let serial = cert.tbs_certificate.serial.to_bytes_be();

        let crl_path = dir.join(CRL_FILE);
        let (mut revoked_certs, crl_number) = match fs::read(&crl_path) {
            Ok(pem) => {
                let existing = read_crl(&crl_path, &pem, &ca)?;
                if existing
                    .revoked
                    .iter()
                    .any(|entry| entry.serial_number == SerialNumber::from_slice(&serial))
                {
                    tracing::info!(name, crl = %crl_path.display(), "already revoked");
                    return Ok(crl_path);
                }
                (existing.revoked, existing.next_number)
            }
            Err(source) if source.kind() == io::ErrorKind::NotFound => (Vec::new(), vec![1]),
            Err(source) => {
                return Err(PkiError::Read {
                    path: crl_path,
                    source,
                });
            }
        };
        let now = OffsetDateTime::now_utc();
        revoked_certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&serial),
            revocation_time: now,
            reason_code: None,
            invalidity_date: None,
        });
        let crl = CertificateRevocationListParams {
            this_update: now,
            next_update: now + CRL_VALIDITY,
            crl_number: SerialNumber::from_slice(&crl_number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer)
        .map_err(|source| PkiError::Generate {
            what: format!("the certificate revocation list {}", crl_path.display()),
            source,
        })?;
        let crl_pem = crl.pem().map_err(|source| PkiError::Generate {
            what: format!("the certificate revocation list {}", crl_path.display()),
            source,
        })?;
        replace_file(&crl_path, crl_pem.as_bytes())?;
        tracing::info!(name, serial = %hex::encode(&serial), crl = %crl_path.display(), "revoked certificate");
        Ok(crl_path)
    }
}

/// Reads the holder's identity out of a DER certificate: subject CN = name, subject OU = role.
///
/// This does not check who signed the certificate; use it on certificates that a TLS
/// handshake has already verified against the consortium CA.
pub fn identity_from_der(cert_der: &[u8]) -> Result<Identity, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|source| PkiError::Certificate { source })?;
    let subject = cert.subject();
    let name = subject_field(subject, "CN", &OID_X509_COMMON_NAME)?;
    if validate_name(&name).is_err() {
        return Err(PkiError::CertificateName {
            subject: subject.to_string(),
            name,
        });
    }
    let role_text = subject_field(subject, "OU", &OID_X509_ORGANIZATIONAL_UNIT)?;
    let role = role_text.parse().map_err(|_| PkiError::CertificateRole {
        subject: subject.to_string(),
        value: role_text,
    })?;
    Ok(Identity { name, role })
}

/// The identity in `cert_der` if the consortium CA (`ca_der`) signed it and it is valid now.
/// For certificates that arrive outside a TLS handshake, e.g. relayed with signed messages.
pub fn verify_issued(ca_der: &[u8], cert_der: &[u8]) -> Result<Identity, PkiError> {
    let parse = |der| {
        x509_parser::parse_x509_certificate(der)
            .map(|(_, cert)| cert)
            .map_err(|source| PkiError::Certificate { source })
    };
    let (ca, cert) = (parse(ca_der)?, parse(cert_der)?);
    if cert.issuer() != ca.subject() || cert.verify_signature(Some(ca.public_key())).is_err() {
        return Err(PkiError::UntrustedCertificate {
            subject: cert.subject().to_string(),
            ca: ca.subject().to_string(),
        });
    }
    let validity = cert.validity();
    if !validity.is_valid() {
        return Err(PkiError::OutsideValidity {
            subject: cert.subject().to_string(),
            not_before: validity.not_before.to_string(),
            not_after: validity.not_after.to_string(),
        });
    }
    identity_from_der(cert_der)
}

/// The Ed25519 public key a certificate holds.
pub fn ed25519_public_key(cert_der: &[u8]) -> Result<[u8; 32], PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|source| PkiError::Certificate { source })?;
    let spki = cert.public_key();
    let ed25519 = x509_parser::oid_registry::OID_SIG_ED25519;
    (spki.algorithm.algorithm == ed25519)
        .then(|| spki.subject_public_key.data.as_ref().try_into().ok())
        .flatten()
        .ok_or_else(|| PkiError::NotEd25519 {
            subject: cert.subject().to_string(),
        })
}

/// Node names end up in file names and log lines, so they are kept to a safe alphabet.
fn validate_name(name: &str) -> Result<(), PkiError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(PkiError::InvalidName {
            name: name.to_owned(),
        })
    }
}

fn subject_alt_names(role: Role, extra_sans: &[String]) -> Result<Vec<SanType>, PkiError> {
    let automatic = match role {
        Role::Coordinator => COORDINATOR_LOOPBACK_SANS.as_slice(),
        Role::Participant | Role::Auditor => &[],
    };
    let mut sans: Vec<SanType> = Vec::new();
    for value in automatic
        .iter()
        .copied()
        .chain(extra_sans.iter().map(String::as_str))
    {
        let san = parse_san(value)?;
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    Ok(sans)
}

fn parse_san(value: &str) -> Result<SanType, PkiError> {
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let invalid = || PkiError::InvalidSubjectAltName {
        value: value.to_owned(),
    };
    rustls_pki_types::DnsName::try_from(value).map_err(|_| invalid())?;
    Ok(SanType::DnsName(value.try_into().map_err(|_| invalid())?))
}

/// The one value of a subject attribute; several CNs or OUs would make the identity ambiguous.
fn subject_field(
    subject: &X509Name<'_>,
    field: &'static str,
    oid: &Oid<'static>,
) -> Result<String, PkiError> {
    let mut values = subject.iter_by_oid(oid);
    let value = values.next().ok_or_else(|| PkiError::MissingSubjectField {
        subject: subject.to_string(),
        field,
    })?;
    if values.next().is_some() {
        return Err(PkiError::RepeatedSubjectField {
            subject: subject.to_string(),
            field,
        });
    }
    value
        .as_str()
        .map(str::to_owned)
        .map_err(|_| PkiError::UnreadableSubjectField {
            subject: subject.to_string(),
            field,
        })
}

fn parse_certificate_file<'a>(path: &Path, der: &'a [u8]) -> Result<X509Certificate<'a>, PkiError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|source| PkiError::CertificateFile {
            path: path.to_owned(),
            source,
        })
}

/// The entries of an existing CRL, and the number its successor must carry.
struct ExistingCrl {
    revoked: Vec<RevokedCertParams>,
    next_number: Vec<u8>,
}

fn read_crl(path: &Path, pem: &[u8], ca: &X509Certificate<'_>) -> Result<ExistingCrl, PkiError> {
    let der =
        CertificateRevocationListDer::from_pem_slice(pem).map_err(|source| PkiError::Pem {
            path: path.to_owned(),
            source,
        })?;
    let (_, crl) = x509_parser::parse_x509_crl(&der).map_err(|source| PkiError::CrlFile {
        path: path.to_owned(),
        source,
    })?;
    if crl.issuer().as_raw() != ca.subject().as_raw()
        || crl.verify_signature(ca.public_key()).is_err()
    {
        return Err(PkiError::ForeignCrl {
            path: path.to_owned(),
            ca: ca.subject().to_string(),
        });
    }
    let revoked = crl
        .iter_revoked_certificates()
        .map(|entry| RevokedCertParams {
            serial_number: SerialNumber::from_slice(&entry.serial().to_bytes_be()),
            revocation_time: entry.revocation_date.to_datetime(),
            reason_code: None,
            invalidity_date: None,
        })
        .collect();
    let next_number = crl
        .crl_number()
        .map_or_else(|| vec![1], |number| (number + 1u32).to_bytes_be());
    Ok(ExistingCrl {
        revoked,
        next_number,
    })
}

fn generate_key(what: String) -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&PKCS_ED25519).map_err(|source| PkiError::Generate { what, source })
}

fn refuse_existing(paths: &[&PathBuf]) -> Result<(), PkiError> {
    match paths.iter().find(|path| path.exists()) {
        Some(path) => Err(PkiError::AlreadyExists {
            path: path.to_path_buf(),
        }),
        None => Ok(()),
    }
}

/// Writes a file that must not exist yet (checked atomically by the OS), with `mode` on Unix.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            PkiError::AlreadyExists {
                path: path.to_owned(),
            }
        } else {
            PkiError::Write {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|source| PkiError::Write {
            path: path.to_owned(),
            source,
        })
}

/// Replaces `path` through a temporary file and a rename, so a reader (the coordinator
/// reloading its CRL) never sees a half-written file.
fn replace_file(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let write = |target: &Path| -> io::Result<()> {
        let mut file = fs::File::create(target)?;
        file.write_all(contents)?;
        file.sync_all()
    };
    write(&temporary).map_err(|source| PkiError::Write {
        path: temporary.clone(),
        source,
    })?;
    fs::rename(&temporary, path).map_err(|source| PkiError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_limited_to_a_safe_alphabet_and_length() {
        for good in ["a", "site-01", "Clinic_3.eu", &"x".repeat(64)] {
            assert!(validate_name(good).is_ok(), "{good} should be valid");
        }
        for bad in ["", "a b", "a/b", "../x", "é", &"x".repeat(65)] {
            assert!(
                matches!(validate_name(bad), Err(PkiError::InvalidName { .. })),
                "{bad:?} should be invalid"
            );
        }
    }

    #[test]
    fn roles_round_trip_through_their_text() {
        for role in [Role::Participant, Role::Coordinator, Role::Auditor] {
            assert_eq!(role.to_string().parse::<Role>().unwrap(), role);
        }
        assert!(matches!(
            "admin".parse::<Role>(),
            Err(PkiError::UnknownRole { value }) if value == "admin"
        ));
    }

    #[test]
    fn coordinator_sans_include_loopback_and_extras_without_duplicates() {
        let sans = subject_alt_names(
            Role::Coordinator,
            &[
                "coord.example.org".into(),
                "10.1.2.3".into(),
                "localhost".into(),
            ],
        )
        .unwrap();
        assert_eq!(sans.len(), 5);
        assert!(sans.contains(&SanType::IpAddress("::1".parse().unwrap())));
        assert!(sans.contains(&SanType::IpAddress("10.1.2.3".parse().unwrap())));
        assert!(
            subject_alt_names(Role::Participant, &[])
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            subject_alt_names(Role::Coordinator, &["bad name".into()]),
            Err(PkiError::InvalidSubjectAltName { value }) if value == "bad name"
        ));
    }
}

//! The consortium's certificate authority.
//!
//! A consortium runs one CA of its own; it certifies every node, and the TLS configurations
//! in [`crate::tls`] trust that CA and nothing else. A certificate says who its holder is:
//! subject CN = the node's name, OU = its [`Role`]. Keys are Ed25519 and stored as PKCS#8
//! PEM, because a participant's certificate key doubles as its protocol signing key. Files
//! never get overwritten: re-running a command must not silently replace a key or a
//! certificate that others already trust.
//!
//! Members make their own keys: [`create_request`] runs on the member's machine and writes
//! its key and a PKCS#10 certificate request (RFC 2986); [`ConsortiumCa::sign_request`] runs
//! at the CA, checks the request and certifies the key in it, so the CA never holds a
//! member's private key. [`ConsortiumCa::issue`] makes key and certificate together at the
//! CA: a shortcut for demos and tests.
//!
//! Layout: the CA directory holds `ca.pem`, `ca.key`, a copy `NAME.pem` of every certificate
//! it signed from a request (so it can revoke by name), `crl.pem` once something has been
//! revoked, and `revoked/NAME.SERIAL.pem` for revoked certificates whose name was certified
//! again. An issue directory holds `NAME.pem` and `NAME.key` for each issued name; a request
//! directory holds `NAME.key` and `NAME.csr`.

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
    PKCS_ED25519, PublicKeyData, RevokedCertParams, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, CertificateSigningRequestDer,
};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::error::X509Error;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::objects::{oid_registry, oid2sn};
use x509_parser::oid_registry::{
    OID_SIG_ED25519, OID_X509_COMMON_NAME, OID_X509_ORGANIZATION_NAME,
    OID_X509_ORGANIZATIONAL_UNIT, Oid,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

const CA_CERT_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca.key";
const CRL_FILE: &str = "crl.pem";
/// Where revoked certificates go when their name is certified again.
const REVOKED_DIR: &str = "revoked";
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
    /// A member name outside 1 to 64 of `A-Za-z0-9._-`.
    #[error(
        "invalid name '{name}': a name is 1 to {MAX_NAME_LEN} characters of A-Z, a-z, 0-9, '.', '_' and '-'"
    )]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// A member name that would collide with the CA's own files (`ca`, `crl`).
    #[error("the name '{name}' is reserved: {name}.pem is one of the CA's own files")]
    ReservedName {
        /// The name given.
        name: String,
    },
    /// A consortium name that is empty, too long or has control characters.
    #[error(
        "invalid consortium name '{name}': it must be 1 to {MAX_NAME_LEN} characters without control characters"
    )]
    InvalidConsortium {
        /// The name given.
        name: String,
    },
    /// A role other than participant, coordinator or auditor.
    #[error("unknown role '{value}': expected participant, coordinator or auditor")]
    UnknownRole {
        /// The role given.
        value: String,
    },
    /// A subject alternative name that is neither a DNS name nor an IP address.
    #[error("invalid subject alternative name '{value}': expected a DNS name or an IP address")]
    InvalidSubjectAltName {
        /// The name given.
        value: String,
    },
    /// A file that would be overwritten: keys and certificates are never replaced.
    #[error("refusing to overwrite {path}: it already exists")]
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },
    /// A directory without a consortium CA.
    #[error("no consortium CA in {dir}: {path} does not exist")]
    CaNotFound {
        /// The directory.
        dir: PathBuf,
        /// The CA certificate file it lacks.
        path: PathBuf,
    },
    /// A CA certificate whose basic constraints do not allow issuing.
    #[error("{path} is not a CA certificate (its basic constraints do not allow issuing)")]
    NotACa {
        /// The file.
        path: PathBuf,
    },
    /// A CA key that is not the CA certificate's.
    #[error("the CA key {key} does not belong to the CA certificate {cert}")]
    KeyMismatch {
        /// The CA certificate file.
        cert: PathBuf,
        /// The CA key file.
        key: PathBuf,
    },
    /// A directory that cannot be created.
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A file that cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A member's file (its certificate request) unreadable or larger than accepted.
    #[error(transparent)]
    MemberFile(#[from] crate::file::ReadError),
    /// A file that cannot be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A file that is not well-formed PEM.
    #[error("{path} is not valid PEM: {source}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// The PEM parser's error.
        source: rustls_pki_types::pem::Error,
    },
    /// A certificate file whose certificate does not parse.
    #[error("{path} is not a valid X.509 certificate: {source}")]
    CertificateFile {
        /// The file.
        path: PathBuf,
        /// The X.509 parser's error.
        source: x509_parser::nom::Err<X509Error>,
    },
    /// A CRL file whose CRL does not parse.
    #[error("{path} is not a valid certificate revocation list: {source}")]
    CrlFile {
        /// The file.
        path: PathBuf,
        /// The X.509 parser's error.
        source: x509_parser::nom::Err<X509Error>,
    },
    /// A CRL the consortium CA did not sign.
    #[error("the certificate revocation list {path} was not signed by the consortium CA '{ca}'")]
    ForeignCrl {
        /// The CRL file.
        path: PathBuf,
        /// The consortium CA's name.
        ca: String,
    },
    /// A key file that is not an Ed25519 PKCS#8 key.
    #[error("{path} is not an Ed25519 PKCS#8 private key: {source}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// rcgen's error.
        source: rcgen::Error,
    },
    /// A key, certificate or CRL rcgen could not make.
    #[error("cannot generate {what}: {source}")]
    Generate {
        /// What was being made.
        what: String,
        /// rcgen's error.
        source: rcgen::Error,
    },
    /// A name this CA never certified.
    #[error("'{name}' was never issued in {dir}: {path} does not exist")]
    NotIssued {
        /// The name.
        name: String,
        /// The CA's directory.
        dir: PathBuf,
        /// The certificate file it lacks.
        path: PathBuf,
    },
    /// A certificate another CA issued.
    #[error("{path} was not issued by the consortium CA '{ca}'")]
    ForeignCertificate {
        /// The file.
        path: PathBuf,
        /// The consortium CA's name.
        ca: String,
    },
    /// Certificate bytes (not from a file) that do not parse.
    #[error("not a valid X.509 certificate: {source}")]
    Certificate {
        /// The X.509 parser's error.
        source: x509_parser::nom::Err<X509Error>,
    },
    /// A subject without an attribute Accord needs (CN or OU).
    #[error("subject '{subject}' has no {field}")]
    MissingSubjectField {
        /// The certificate's subject.
        subject: String,
        /// The subject attribute (e.g. "CN").
        field: &'static str,
    },
    /// A subject with an attribute twice.
    #[error("subject '{subject}' has more than one {field}")]
    RepeatedSubjectField {
        /// The certificate's subject.
        subject: String,
        /// The subject attribute (e.g. "CN").
        field: &'static str,
    },
    /// A subject attribute that is not a readable string.
    #[error("subject '{subject}' has a {field} that is not a readable string")]
    UnreadableSubjectField {
        /// The certificate's subject.
        subject: String,
        /// The subject attribute (e.g. "CN").
        field: &'static str,
    },
    /// A certificate whose OU is not an Accord role.
    #[error(
        "certificate '{subject}' has role '{value}' (subject OU), expected participant, coordinator or auditor"
    )]
    CertificateRole {
        /// The certificate's subject.
        subject: String,
        /// The OU it carries.
        value: String,
    },
    /// A certificate whose CN is not a valid member name.
    #[error("certificate '{subject}' names an invalid holder '{name}' (subject CN)")]
    CertificateName {
        /// The certificate's subject.
        subject: String,
        /// The CN it carries.
        name: String,
    },
    /// A certificate the consortium CA did not issue.
    #[error("certificate '{subject}' was not issued by the consortium CA '{ca}'")]
    UntrustedCertificate {
        /// The certificate's subject.
        subject: String,
        /// The consortium CA's name.
        ca: String,
    },
    /// A certificate not valid now.
    #[error("certificate '{subject}' is not valid now (valid {not_before} to {not_after})")]
    OutsideValidity {
        /// The certificate's subject.
        subject: String,
        /// The start of its validity.
        not_before: String,
        /// The end of its validity.
        not_after: String,
    },
    /// A certificate whose key is not Ed25519.
    #[error("certificate '{subject}' does not hold an Ed25519 key")]
    NotEd25519 {
        /// The certificate's subject.
        subject: String,
    },
    /// `pki request` pointed at a CA directory, where a member's key must never be.
    #[error(
        "refusing to make a member's key in {dir}: it holds a consortium CA, and the CA must never hold a member's private key; run `accord pki request` on the member's machine"
    )]
    RequestInCaDirectory {
        /// The directory given.
        dir: PathBuf,
    },
    /// The request file is not DER-encoded PKCS#10.
    #[error("{path} is not a valid PKCS#10 certificate request: {source}")]
    RequestFile {
        /// The request file.
        path: PathBuf,
        /// The X.509 parser's error.
        source: x509_parser::nom::Err<X509Error>,
    },
    /// Bytes follow the request inside its PEM block.
    #[error("{path} has {bytes} bytes after its certificate request")]
    RequestTrailingData {
        /// The request file.
        path: PathBuf,
        /// How many bytes follow.
        bytes: usize,
    },
    /// The requested key is not Ed25519, which Accord identities are.
    #[error(
        "{path} requests a certificate for a key of type {algorithm}; Accord identities are Ed25519 keys"
    )]
    RequestKeyNotEd25519 {
        /// The request file.
        path: PathBuf,
        /// The requested key's algorithm.
        algorithm: String,
    },
    /// The request's signature does not verify with the key it carries.
    #[error(
        "the signature of {path} does not verify with the key it requests a certificate for: the request was altered or signed by another key"
    )]
    RequestSignature {
        /// The request file.
        path: PathBuf,
    },
    /// The requested key is a point of small order, for which anyone can make signatures.
    #[error(
        "{path} requests a certificate for a weak Ed25519 key (a point of small order), for which anyone can forge signatures"
    )]
    WeakRequestKey {
        /// The request file.
        path: PathBuf,
    },
    /// The request's subject carries an attribute other than CN (name) and OU (role).
    #[error(
        "{path} asks for the subject attribute {attribute}; Accord certificates carry only CN (the name) and OU (the role)"
    )]
    RequestSubjectAttribute {
        /// The request file.
        path: PathBuf,
        /// The attribute asked for.
        attribute: String,
    },
    /// A requested extension that cannot be read, or an alternative name that is neither a
    /// DNS name nor an IP address.
    #[error("{path} requests an unusable extension: {detail}")]
    RequestExtension {
        /// The request file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The name, role or alternative names in the request are not acceptable.
    #[error("certificate request {path}: {source}")]
    RequestContent {
        /// The request file.
        path: PathBuf,
        /// Why the content is refused.
        source: Box<PkiError>,
    },
    /// The request disagrees with what the CA operator stated.
    #[error("{path} asks for {field} '{requested}', but the CA operator stated '{stated}'")]
    RequestMismatch {
        /// The request file.
        path: PathBuf,
        /// What disagrees (name or role).
        field: &'static str,
        /// What the request asks for.
        requested: String,
        /// What the operator stated.
        stated: String,
    },
    /// The name holds a certificate from this CA that has not been revoked.
    #[error(
        "'{name}' already holds a certificate that is not revoked ({path}); revoke it first with `accord pki revoke`"
    )]
    AlreadyIssued {
        /// The name.
        name: String,
        /// Its current certificate.
        path: PathBuf,
    },
    /// A revoked certificate's key asked to be certified again under its name.
    #[error(
        "{path} requests a certificate for the key of '{name}' that was revoked ({revoked}); the member must make a new key"
    )]
    RevokedKeyReused {
        /// The request file.
        path: PathBuf,
        /// The name.
        name: String,
        /// The revoked certificate with that key.
        revoked: PathBuf,
    },
    /// A certificate must be valid for at least a day.
    #[error("invalid validity of {days} days: a certificate must be valid for at least 1 day")]
    InvalidValidity {
        /// The days asked for.
        days: u32,
    },
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
    /// The holder's name (subject CN).
    pub name: String,
    /// The holder's role (subject OU).
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

/// The two files [`create_request`] wrote on a member's machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestFiles {
    /// `NAME.key`: the member's Ed25519 private key, PKCS#8 PEM, readable by the owner only.
    /// It stays on the member's machine.
    pub key: PathBuf,
    /// `NAME.csr`: the PKCS#10 certificate request (PEM) to send to the CA.
    pub request: PathBuf,
}

/// What the CA operator states when signing a request; the request must agree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignOptions {
    /// The member's name, if stated: the request's CN must be exactly this.
    pub name: Option<String>,
    /// The member's role, if stated: the request's OU must be exactly this.
    pub role: Option<Role>,
    /// Days the certificate is valid (at least 1); two years if `None`. Never past the CA's
    /// own expiry.
    pub days: Option<u32>,
}

/// A certificate [`ConsortiumCa::sign_request`] made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRequest {
    /// Who the certificate says its holder is.
    pub identity: Identity,
    /// Its subject alternative names (DNS names and IP addresses), in order.
    pub subject_alt_names: Vec<String>,
    /// The certificate written for the member.
    pub cert: PathBuf,
    /// The copy kept in the CA's directory (`NAME.pem`), which revocation reads.
    pub record: PathBuf,
    /// The end of its validity.
    pub not_after: OffsetDateTime,
}

/// A consortium CA loaded from its directory, able to issue, sign requests and revoke.
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
        create_dir(dir)?;

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
    /// `CN=NAME, OU=ROLE, O=<consortium>`, valid for two years (never past the CA's own
    /// expiry). Refuses if either file exists.
    ///
    /// The member's private key is made here, by whoever runs the CA: this is the demo's and
    /// the tests' shortcut. Real members make their own key with [`create_request`] and
    /// have it certified with [`sign_request`](Self::sign_request).
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
        validate_member_name(name)?;
        let subject_alt_names = subject_alt_names(role, extra_sans)?;
        let files = IssuedFiles {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        refuse_existing(&[&files.cert, &files.key])?;
        create_dir(dir)?;

        let key = generate_key(format!("a key for '{name}'"))?;
        let cert = self.certify(&key, name, role, subject_alt_names, LEAF_VALIDITY)?;
        write_new(&files.key, key.serialize_pem().as_bytes(), 0o600)?;
        write_new(&files.cert, cert.pem().as_bytes(), 0o644)?;
        tracing::info!(name, %role, cert = %files.cert.display(), "issued certificate");
        Ok(files)
    }

    /// Certifies the key in a member's certificate request (PKCS#10 PEM, as
    /// [`create_request`] writes it): writes the certificate to `out` and a copy to `NAME.pem`
    /// in the CA's directory, so that [`revoke`](Self::revoke) finds it by name. The
    /// certificate is the one [`issue`](Self::issue) makes for the same name, role and
    /// alternative names, valid for `options.days` (default 730) but never past the CA's own
    /// expiry. Requested extensions other than alternative names (key usages) are ignored:
    /// the role decides them.
    ///
    /// Refuses, naming the file: a request that is not PKCS#10, whose signature does not
    /// verify with the key it carries, whose key is not Ed25519 or is weak, whose subject is
    /// anything but one CN (a valid name) and one OU (a role), or whose alternative names are
    /// not DNS names or IP addresses; a name or role other than the one `options` states; a
    /// name holding a certificate from this CA that is not revoked, or the revoked
    /// certificate's key again; an existing `out`. A revoked certificate whose name is
    /// certified again moves to `revoked/NAME.SERIAL.pem` in the CA's directory.
    pub fn sign_request(
        &self,
        request: &Path,
        out: &Path,
        options: &SignOptions,
    ) -> Result<SignedRequest, PkiError> {
        let validity = match options.days {
            Some(0) => return Err(PkiError::InvalidValidity { days: 0 }),
            Some(days) => Duration::days(i64::from(days)),
            None => LEAF_VALIDITY,
        };
        refuse_existing(&[out])?;
        let member = read_request(request)?;
        let Identity { name, role } = &member.identity;
        let stated = [
            ("name", options.name.as_deref(), name.as_str()),
            ("role", options.role.map(Role::as_str), role.as_str()),
        ];
        for (field, stated, requested) in stated {
            match stated {
                Some(stated) if stated != requested => {
                    return Err(PkiError::RequestMismatch {
                        path: request.to_owned(),
                        field,
                        requested: requested.to_owned(),
                        stated: stated.to_owned(),
                    });
                }
                _ => {}
            }
        }
        let record = self.dir.join(format!("{name}.pem"));
        let retired = self.retire_previous(&record, name, request, &member.public_key)?;

        let cert = self.certify(
            &member.public_key,
            name,
            *role,
            member.subject_alt_names.clone(),
            validity,
        )?;
        let pem = cert.pem();
        if let Some(archive) = retired {
            if let Some(parent) = archive.parent() {
                create_dir(parent)?;
            }
            refuse_existing(&[&archive])?;
            fs::rename(&record, &archive).map_err(|source| PkiError::Write {
                path: archive.clone(),
                source,
            })?;
        }
        write_new(&record, pem.as_bytes(), 0o644)?;
        // `out` may name the record itself; it is then written once.
        let same_file = matches!(
            (fs::canonicalize(out), fs::canonicalize(&record)),
            (Ok(out), Ok(record)) if out == record
        );
        if !same_file {
            write_new(out, pem.as_bytes(), 0o644)?;
        }
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.der())
            .map_err(|source| PkiError::Certificate { source })?;
        let not_after = parsed.validity().not_after.to_datetime();
        tracing::info!(%name, %role, cert = %out.display(), "signed a certificate request");
        Ok(SignedRequest {
            identity: member.identity,
            subject_alt_names: member.subject_alt_names.iter().map(san_text).collect(),
            cert: out.to_owned(),
            record,
            not_after,
        })
    }

    /// Where the certificate on record for `name` goes before the name is certified again:
    /// `None` if there is none. Refuses if it is not revoked, or if the request carries its
    /// key (a revoked key stays revoked).
    fn retire_previous(
        &self,
        record: &Path,
        name: &str,
        request: &Path,
        public_key: &Ed25519PublicKey,
    ) -> Result<Option<PathBuf>, PkiError> {
        if !record.exists() {
            return Ok(None);
        }
        let previous = self.issued_certificate(&self.dir, name)?;
        let revoked = self
            .read_crl(&self.dir.join(CRL_FILE))?
            .is_some_and(|crl| crl.lists(&previous.serial));
        if !revoked {
            return Err(PkiError::AlreadyIssued {
                name: name.to_owned(),
                path: record.to_owned(),
            });
        }
        if previous.public_key == public_key.0 {
            return Err(PkiError::RevokedKeyReused {
                path: request.to_owned(),
                name: name.to_owned(),
                revoked: record.to_owned(),
            });
        }
        Ok(Some(self.dir.join(REVOKED_DIR).join(format!(
            "{name}.{}.pem",
            hex::encode(&previous.serial)
        ))))
    }

    /// The certificate of a member, whoever made its key: subject `CN=NAME, OU=ROLE,
    /// O=<consortium>`, a random serial, key usage and extended key usages by role (see
    /// [`issue`](Self::issue)), `subject_alt_names`, valid from a few minutes ago for
    /// `validity` but never past the CA's own expiry.
    fn certify(
        &self,
        public_key: &impl PublicKeyData,
        name: &str,
        role: Role,
        subject_alt_names: Vec<SanType>,
        validity: Duration,
    ) -> Result<rcgen::Certificate, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, role.as_str());
        params
            .distinguished_name
            .push(DnType::OrganizationName, self.consortium.as_str());
        params.serial_number = Some(random_serial());
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
        params.not_after = now
            .checked_add(validity)
            .map_or(self.not_after, |end| end.min(self.not_after));
        params
            .signed_by(public_key, &self.issuer)
            .map_err(|source| PkiError::Generate {
                what: format!("the certificate for '{name}'"),
                source,
            })
    }

    /// Revokes the certificate `dir/NAME.pem`: adds its serial to `dir/crl.pem`, a CRL
    /// signed by the CA, creating it or re-signing it with a higher CRL number. Revoking
    /// a name twice leaves the CRL as it is. Errors if `NAME` was never issued in `dir`
    /// or its certificate is not from this CA.
    pub fn revoke(&self, dir: &Path, name: &str) -> Result<PathBuf, PkiError> {
        validate_name(name)?;
        let serial = self.issued_certificate(dir, name)?.serial;
        let crl_path = dir.join(CRL_FILE);
        let (mut revoked_certs, crl_number) = match self.read_crl(&crl_path)? {
            Some(existing) if existing.lists(&serial) => {
                tracing::info!(name, crl = %crl_path.display(), "already revoked");
                return Ok(crl_path);
            }
            Some(existing) => (existing.revoked, existing.next_number),
            None => (Vec::new(), vec![1]),
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

    /// `dir/NAME.pem`, checked to be a certificate this CA signed.
    fn issued_certificate(&self, dir: &Path, name: &str) -> Result<IssuedCertificate, PkiError> {
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
        let ca = parse_certificate_file(&self.ca_cert_path(), &self.cert_der)?;
        if cert.issuer().as_raw() != ca.subject().as_raw()
            || cert.verify_signature(Some(ca.public_key())).is_err()
        {
            return Err(PkiError::ForeignCertificate {
                path: cert_path,
                ca: ca.subject().to_string(),
            });
        }
        Ok(IssuedCertificate {
            serial: cert.tbs_certificate.serial.to_bytes_be(),
            public_key: cert.public_key().subject_public_key.data.to_vec(),
        })
    }

    /// The CRL at `path`, checked to be signed by this CA; `None` if there is none yet.
    fn read_crl(&self, path: &Path) -> Result<Option<ExistingCrl>, PkiError> {
        let pem = match fs::read(path) {
            Ok(pem) => pem,
            Err(source) if source.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(PkiError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let ca = parse_certificate_file(&self.ca_cert_path(), &self.cert_der)?;
        parse_crl(path, &pem, &ca).map(Some)
    }
}

/// Makes a member's own Ed25519 key and a PKCS#10 certificate request (RFC 2986) for it, on
/// the member's machine: `dir/NAME.key` (PKCS#8 PEM, mode 0600; it never leaves the machine)
/// and `dir/NAME.csr` (PEM, subject `CN=NAME, OU=ROLE`, signed with the key, requesting the
/// alternative names the certificate will carry: for a coordinator `localhost`, `127.0.0.1`,
/// `::1` and `extra_sans`, otherwise `extra_sans`). The CA certifies it with
/// [`ConsortiumCa::sign_request`].
///
/// Refuses a name or alternative name the CA would refuse, an existing `NAME.key` or
/// `NAME.csr`, and a `dir` that holds a consortium CA.
pub fn create_request(
    dir: &Path,
    name: &str,
    role: Role,
    extra_sans: &[String],
) -> Result<RequestFiles, PkiError> {
    validate_member_name(name)?;
    let subject_alt_names = subject_alt_names(role, extra_sans)?;
    if dir.join(CA_KEY_FILE).exists() {
        return Err(PkiError::RequestInCaDirectory {
            dir: dir.to_owned(),
        });
    }
    let files = RequestFiles {
        key: dir.join(format!("{name}.key")),
        request: dir.join(format!("{name}.csr")),
    };
    refuse_existing(&[&files.key, &files.request])?;
    create_dir(dir)?;

    let key = generate_key(format!("a key for '{name}'"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, role.as_str());
    params.subject_alt_names = subject_alt_names;
    let request = params
        .serialize_request(&key)
        .and_then(|request| request.pem())
        .map_err(|source| PkiError::Generate {
            what: format!("the certificate request for '{name}'"),
            source,
        })?;
    write_new(&files.key, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&files.request, request.as_bytes(), 0o644)?;
    tracing::info!(name, %role, request = %files.request.display(), "made a key and a certificate request");
    Ok(files)
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

/// A certificate serial: 126 random bits, not rcgen's default (a hash of the key), since one
/// key certified twice must not give two certificates one serial, or revoking one would revoke
/// both. The first byte is in 0x40..=0x7f, so the DER integer is positive and always 16 bytes
/// long: certificates of one shape have one size, and the byte counts of simulations that
/// relay them stay reproducible.
fn random_serial() -> SerialNumber {
    let mut serial: [u8; 16] = rand::random();
    serial[0] = serial[0] & 0x3f | 0x40;
    SerialNumber::from_slice(&serial)
}

/// A name the CA may certify: valid, and not one of the CA's own files.
fn validate_member_name(name: &str) -> Result<(), PkiError> {
    validate_name(name)?;
    if RESERVED_NAMES.contains(&name) {
        return Err(PkiError::ReservedName {
            name: name.to_owned(),
        });
    }
    Ok(())
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

impl ExistingCrl {
    /// Whether the certificate with this serial (big-endian, as x509-parser gives it) is listed.
    fn lists(&self, serial: &[u8]) -> bool {
        let serial = SerialNumber::from_slice(serial);
        self.revoked
            .iter()
            .any(|entry| entry.serial_number == serial)
    }
}

/// What [`ConsortiumCa::issued_certificate`] reads from a certificate on record.
struct IssuedCertificate {
    /// Big-endian, without leading zeros.
    serial: Vec<u8>,
    /// The raw subject public key.
    public_key: Vec<u8>,
}

/// An Ed25519 public key taken from a certificate request, to be certified.
struct Ed25519PublicKey([u8; 32]);

impl PublicKeyData for Ed25519PublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &PKCS_ED25519
    }
}

/// A certificate request that passed every check of [`read_request`].
struct MemberRequest {
    identity: Identity,
    /// What the certificate will carry: the role's automatic names and those requested.
    subject_alt_names: Vec<SanType>,
    public_key: Ed25519PublicKey,
}

/// The largest certificate request file the CA reads (a PEM request is under a kilobyte).
pub const MAX_REQUEST_BYTES: u64 = 64 << 10;

/// Reads and checks a member's certificate request: PKCS#10 in PEM, an Ed25519 key that is
/// not weak and verifies the request's signature, a subject of exactly one CN (a valid name)
/// and one OU (a role), alternative names that are DNS names or IP addresses.
fn read_request(path: &Path) -> Result<MemberRequest, PkiError> {
    let pem = crate::file::read_limited(path, "a certificate request", MAX_REQUEST_BYTES)?;
    let der =
        CertificateSigningRequestDer::from_pem_slice(&pem).map_err(|source| PkiError::Pem {
            path: path.to_owned(),
            source,
        })?;
    let (rest, csr) =
        X509CertificationRequest::from_der(&der).map_err(|source| PkiError::RequestFile {
            path: path.to_owned(),
            source,
        })?;
    if !rest.is_empty() {
        return Err(PkiError::RequestTrailingData {
            path: path.to_owned(),
            bytes: rest.len(),
        });
    }
    let info = &csr.certification_request_info;
    let algorithm = &info.subject_pki.algorithm.algorithm;
    if *algorithm != OID_SIG_ED25519 {
        return Err(PkiError::RequestKeyNotEd25519 {
            path: path.to_owned(),
            algorithm: describe_oid(algorithm),
        });
    }
    let bad_signature = || PkiError::RequestSignature {
        path: path.to_owned(),
    };
    csr.verify_signature().map_err(|_| bad_signature())?;
    let key: [u8; 32] = info
        .subject_pki
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| bad_signature())?;
    let verifying_key =
        ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| bad_signature())?;
    if verifying_key.is_weak() {
        return Err(PkiError::WeakRequestKey {
            path: path.to_owned(),
        });
    }

    if let Some(other) = info
        .subject
        .iter_attributes()
        .map(|attribute| attribute.attr_type())
        .find(|oid| **oid != OID_X509_COMMON_NAME && **oid != OID_X509_ORGANIZATIONAL_UNIT)
    {
        return Err(PkiError::RequestSubjectAttribute {
            path: path.to_owned(),
            attribute: describe_oid(other),
        });
    }
    let content = |source| PkiError::RequestContent {
        path: path.to_owned(),
        source: Box::new(source),
    };
    let name = subject_field(&info.subject, "CN", &OID_X509_COMMON_NAME).map_err(content)?;
    validate_member_name(&name).map_err(content)?;
    let role = subject_field(&info.subject, "OU", &OID_X509_ORGANIZATIONAL_UNIT)
        .and_then(|role| role.parse())
        .map_err(content)?;

    let unusable = |detail: String| PkiError::RequestExtension {
        path: path.to_owned(),
        detail,
    };
    let mut requested = Vec::new();
    for extension in csr.requested_extensions().into_iter().flatten() {
        match extension {
            ParsedExtension::SubjectAlternativeName(names) => {
                for general_name in &names.general_names {
                    requested.push(match general_name {
                        GeneralName::DNSName(dns) => (*dns).to_owned(),
                        GeneralName::IPAddress(ip) => ip_text(ip).ok_or_else(|| {
                            unusable(format!("an IP address of {} bytes", ip.len()))
                        })?,
                        other => {
                            return Err(unusable(format!(
                                "the alternative name {other}: expected a DNS name or an IP address"
                            )));
                        }
                    });
                }
            }
            ParsedExtension::ParseError { error } => {
                return Err(unusable(format!(
                    "an extension that does not parse ({error})"
                )));
            }
            // Key usages and the like: the CA decides them from the role.
            _ => {}
        }
    }
    let subject_alt_names = subject_alt_names(role, &requested).map_err(content)?;
    Ok(MemberRequest {
        identity: Identity { name, role },
        subject_alt_names,
        public_key: Ed25519PublicKey(key),
    })
}

/// An IP address from the 4 or 16 bytes of an alternative name.
fn ip_text(bytes: &[u8]) -> Option<String> {
    let ip = match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
        _ => return None,
    };
    Some(ip.to_string())
}

fn san_text(san: &SanType) -> String {
    match san {
        SanType::DnsName(dns) => dns.as_str().to_owned(),
        SanType::IpAddress(ip) => ip.to_string(),
        other => format!("{other:?}"),
    }
}

/// An OID by its short name where x509-parser knows it, with the dotted form.
fn describe_oid(oid: &Oid<'_>) -> String {
    match oid2sn(oid, oid_registry()) {
        Ok(short_name) => format!("{short_name} ({oid})"),
        Err(_) => oid.to_id_string(),
    }
}

fn parse_crl(path: &Path, pem: &[u8], ca: &X509Certificate<'_>) -> Result<ExistingCrl, PkiError> {
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

fn create_dir(dir: &Path) -> Result<(), PkiError> {
    fs::create_dir_all(dir).map_err(|source| PkiError::CreateDir {
        path: dir.to_owned(),
        source,
    })
}

fn generate_key(what: String) -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&PKCS_ED25519).map_err(|source| PkiError::Generate { what, source })
}

fn refuse_existing(paths: &[impl AsRef<Path>]) -> Result<(), PkiError> {
    match paths.iter().map(AsRef::as_ref).find(|path| path.exists()) {
        Some(path) => Err(PkiError::AlreadyExists {
            path: path.to_owned(),
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

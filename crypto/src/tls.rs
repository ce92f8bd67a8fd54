//! Mutual TLS between Accord nodes.
//!
//! The coordinator accepts only clients whose certificate chains to the consortium CA
//! (and is not revoked); participants and auditors trust only that CA and additionally
//! insist that the server is a coordinator. All nodes run Accord, so there is no legacy
//! to serve: TLS 1.3 only, the ring provider, ALPN `h2` for gRPC.
//!
//! rustls's verifiers say *that* a certificate was rejected but not clearly *why* for an
//! operator. The verifiers here delegate to rustls's WebPKI verifiers and, on failure,
//! look at the presented certificate to name the reason ([`CertRejection`]), which
//! [`describe_handshake_error`] turns into one log line.
//!
//! Both ends check revocation when given the consortium's CRL ([`CrlWatch`]): the WebPKI
//! verifier is rebuilt whenever the CRL file changes, so a revocation takes effect at the next
//! handshake without a restart. Session resumption is off on both ends: a resumed TLS 1.3
//! session skips certificate verification, which would let a revoked member back in.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, VerifierBuilderError, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    RootCertStore, ServerConfig, SignatureScheme,
};
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use time::format_description::well_known::Rfc3339;
use x509_parser::time::ASN1Time;

use crate::crl::{CrlWatch, RevocationList};
use crate::pem::{self, PemFileError};
use crate::pki::{Identity, PkiError, Role, identity_from_der};

const ALPN_H2: &[u8] = b"h2";

/// Why a TLS configuration could not be built, or a peer's identity read.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A CA, certificate, key or CRL file that cannot be read or holds nothing of its kind.
    #[error(transparent)]
    File(#[from] PemFileError),
    /// A certificate file whose certificate does not parse.
    #[error("{path} is not a valid X.509 certificate: {source}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// The X.509 parser's error.
        source: x509_parser::nom::Err<x509_parser::error::X509Error>,
    },
    /// A CA certificate rustls cannot use as a trust anchor.
    #[error("the CA certificate in {path} cannot be a trust anchor: {source}")]
    TrustAnchor {
        /// The CA file.
        path: PathBuf,
        /// rustls's error.
        source: rustls::Error,
    },
    /// A CRL rustls cannot use.
    #[error("the certificate revocation list {path} is unusable: {source}")]
    Crl {
        /// The CRL file.
        path: PathBuf,
        /// rustls's error.
        source: rustls::Error,
    },
    /// A certificate verifier rustls cannot build for the CA.
    #[error("cannot build a certificate verifier for the CA in {ca}: {source}")]
    Verifier {
        /// The CA file.
        ca: PathBuf,
        /// rustls's error.
        source: VerifierBuilderError,
    },
    /// A certificate and key that do not belong together, or a key rustls cannot use.
    #[error("the certificate {cert} and the key {key} cannot be used together: {source}")]
    CertificateKey {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's error.
        source: rustls::Error,
    },
    /// The ring provider without TLS 1.3 (never with the rustls this crate is built with).
    #[error("the ring crypto provider cannot do TLS 1.3: {source}")]
    Provider {
        /// rustls's error.
        source: rustls::Error,
    },
    /// A connection whose peer presented no certificate.
    #[error("the peer presented no certificate")]
    NoPeerCertificate,
    /// A peer certificate that carries no Accord identity (name and role).
    #[error("cannot read the peer's identity: {0}")]
    PeerIdentity(#[from] PkiError),
}

/// Which end of the handshake presented a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// The client (a participant, auditor or observer).
    Client,
    /// The server (the coordinator).
    Server,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Peer::Client => "client",
            Peer::Server => "server",
        })
    }
}

/// Why a peer's certificate was refused. Subjects and issuers are written as
/// distinguished names, e.g. `CN=alice, OU=participant, O=Acme`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertRejection {
    /// A self-signed certificate.
    #[error("{peer} certificate '{subject}' is self-signed")]
    SelfSigned {
        /// Which end presented it.
        peer: Peer,
        /// The certificate's subject.
        subject: String,
    },
    /// A certificate from another CA.
    #[error(
        "{peer} certificate '{subject}' was issued by '{issuer}', not by the consortium CA '{expected}'"
    )]
    UnknownIssuer {
        /// Which end presented it.
        peer: Peer,
        /// The certificate's subject.
        subject: String,
        /// Its issuer's name.
        issuer: String,
        /// The consortium CA's name.
        expected: String,
    },
    /// The issuer name is the consortium CA's, but the signature is not from its key.
    #[error(
        "{peer} certificate '{subject}' names the consortium CA '{issuer}' as issuer but is not signed by that CA's key"
    )]
    ForgedIssuer {
        /// Which end presented it.
        peer: Peer,
        /// The certificate's subject.
        subject: String,
        /// The consortium CA's name, as the certificate claims it.
        issuer: String,
    },
    /// A certificate the consortium's CRL revokes.
    #[error("{peer} certificate '{subject}' (serial {serial}) is revoked")]
    Revoked {
        /// Which end presented it.
        peer: Peer,
        /// The certificate's subject.
        subject: String,
        /// Its serial number (hex).
        serial: String,
    },
    /// A certificate past its validity.
    #[error("{peer} certificate '{subject}' has expired (it was valid until {not_after})")]
    Expired {
        /// Which end presented it.
        peer: Peer,
        /// The certificate's subject.
        subject: String,
        /// The end of its validity.
        not_after: String,
    },
    /// A server certificate whose role is not coordinator.
    #[error("server certificate '{subject}' is not a coordinator certificate ({})", describe_role(.role))]
    NotCoordinator {
        /// The certificate's subject.
        subject: String,
        /// The role it carries, if any.
        role: Option<Role>,
    },
    /// Any other reason; `reason` completes the sentence "certificate 'X' ...".
    #[error("{peer} certificate '{subject}' {reason}")]
    Other {
        /// Which end presented it.
        peer: Peer,
        /// The certificate's subject.
        subject: String,
        /// The rest of the sentence (e.g. "is not a well-formed X.509 certificate").
        reason: String,
    },
}

fn describe_role(role: &Option<Role>) -> String {
    match role {
        Some(role) => format!("role {role}"),
        None => "it names no valid role".to_owned(),
    }
}

/// Server side (coordinator): only clients whose certificate chains to the CA in `ca_pem`
/// (and is not in the CRL, when `crl` is given: reread when its file changes) may connect; a
/// client certificate is mandatory. The server presents `cert_pem` with `key_pem`. Sessions are
/// never resumed, so every connection's client certificate is checked against the current CRL.
pub fn server_config(
    ca_pem: &Path,
    cert_pem: &Path,
    key_pem: &Path,
    crl: Option<Arc<CrlWatch>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let anchors = TrustAnchors::load(ca_pem)?;
    let inner = Revocable::new(ca_pem, &anchors, &provider, crl, |roots, provider, crls| {
        WebPkiClientVerifier::builder_with_provider(roots, provider)
            .with_crls(crls)
            .build()
    })?;
    let verifier = ConsortiumClientVerifier {
        root_hints: inner.built().root_hint_subjects().to_vec(),
        inner,
        ca_names: anchors.names,
    };

    let (chain, key) = read_certificate_and_key(cert_pem, key_pem)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Provider { source })?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::CertificateKey {
            cert: cert_pem.to_owned(),
            key: key_pem.to_owned(),
            source,
        })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// Client side (participant, auditor): trusts only the CA in `ca_pem`, presents
/// `cert_pem` with `key_pem`, and requires the server's certificate to say role =
/// coordinator (besides being valid for the server name dialled). With `crl`, a coordinator
/// certificate it lists is refused ([`CertRejection::Revoked`]); without, revocation of the
/// coordinator is not checked. Sessions are never resumed.
pub fn client_config(
    ca_pem: &Path,
    cert_pem: &Path,
    key_pem: &Path,
    crl: Option<Arc<CrlWatch>>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let anchors = TrustAnchors::load(ca_pem)?;
    let inner = Revocable::new(ca_pem, &anchors, &provider, crl, |roots, provider, crls| {
        WebPkiServerVerifier::builder_with_provider(roots, provider)
            .with_crls(crls)
            .build()
    })?;
    let verifier = CoordinatorVerifier {
        root_hints: inner.built().root_hint_subjects().map(<[_]>::to_vec),
        inner,
        ca_names: anchors.names,
    };

    let (chain, key) = read_certificate_and_key(cert_pem, key_pem)?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Provider { source })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(chain, key)
        .map_err(|source| TlsError::CertificateKey {
            cert: cert_pem.to_owned(),
            key: key_pem.to_owned(),
            source,
        })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// Builds a WebPKI verifier from the trust anchors and the CRLs in force.
type BuildVerifier<V> = fn(
    Arc<RootCertStore>,
    Arc<CryptoProvider>,
    Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<V>, VerifierBuilderError>;

/// A rustls WebPKI verifier for the current contents of a CRL file, rebuilt when they change.
struct Revocable<V: ?Sized> {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    crl: Option<Arc<CrlWatch>>,
    build: BuildVerifier<V>,
    /// The verifier, and the list it was built from.
    current: Mutex<(Option<Arc<RevocationList>>, Arc<V>)>,
}

impl<V: ?Sized> fmt::Debug for Revocable<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Revocable")
            .field("crl", &self.crl.as_ref().map(|crl| crl.path()))
            .finish_non_exhaustive()
    }
}

impl<V: ?Sized> Revocable<V> {
    fn new(
        ca_pem: &Path,
        anchors: &TrustAnchors,
        provider: &Arc<CryptoProvider>,
        crl: Option<Arc<CrlWatch>>,
        build: BuildVerifier<V>,
    ) -> Result<Self, TlsError> {
        let list = crl.as_ref().map(|crl| crl.current());
        let crls = list.as_ref().map_or_else(Vec::new, |l| l.ders().to_vec());
        let verifier =
            build(anchors.roots.clone(), provider.clone(), crls).map_err(|source| {
                match (source, &crl) {
                    (VerifierBuilderError::InvalidCrl(source), Some(crl)) => TlsError::Crl {
                        path: crl.path().to_owned(),
                        source: rustls::Error::InvalidCertRevocationList(source),
                    },
                    (source, _) => TlsError::Verifier {
                        ca: ca_pem.to_owned(),
                        source,
                    },
                }
            })?;
        Ok(Self {
            roots: anchors.roots.clone(),
            provider: provider.clone(),
            crl,
            build,
            current: Mutex::new((list, verifier)),
        })
    }

    /// The verifier for the CRL in force now. If rustls cannot use a changed CRL (which
    /// [`CrlWatch`] already checked), the error is logged once and the previous verifier stays.
    fn get(&self) -> Arc<V> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(crl) = &self.crl {
            let list = crl.current();
            if !current
                .0
                .as_ref()
                .is_some_and(|built| Arc::ptr_eq(built, &list))
            {
                match (self.build)(
                    self.roots.clone(),
                    self.provider.clone(),
                    list.ders().to_vec(),
                ) {
                    Ok(verifier) => current.1 = verifier,
                    Err(error) => tracing::error!(
                        crl = %crl.path().display(),
                        "the changed certificate revocation list cannot be used for TLS, the previous one stays in force: {error}"
                    ),
                }
                current.0 = Some(list);
            }
        }
        current.1.clone()
    }

    /// The verifier last built, for what does not depend on the CRL (signatures, hints).
    fn built(&self) -> Arc<V> {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        current.1.clone()
    }
}

/// The identity of the authenticated peer of a finished server-side handshake.
pub fn peer_identity(conn: &rustls::ServerConnection) -> Result<Identity, TlsError> {
    let cert = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or(TlsError::NoPeerCertificate)?;
    Ok(identity_from_der(cert)?)
}

/// The alerts a server sends when it does not accept the client's certificate.
const CERTIFICATE_ALERTS: [&str; 8] = [
    "BadCertificate",
    "UnsupportedCertificate",
    "CertificateRevoked",
    "CertificateExpired",
    "CertificateUnknown",
    "CertificateRequired",
    "UnknownCA",
    "AccessDenied",
];

/// One clear line saying why a handshake failed, for a log: e.g. "client presented no
/// certificate", or the [`CertRejection`] of the peer's certificate.
pub fn describe_handshake_error(err: &io::Error) -> String {
    let Some(tls) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        // h2 flattens the I/O errors it sees into text, so an alert that reached the client
        // through a gRPC channel arrives as rustls's message rather than as a rustls::Error.
        let text = err.to_string();
        if let Some(alert) = text.strip_prefix("received fatal alert: ") {
            return if CERTIFICATE_ALERTS.contains(&alert) {
                format!("the peer rejected our certificate (TLS alert {alert})")
            } else {
                format!("the peer aborted the handshake (TLS alert {alert})")
            };
        }
        return match err.kind() {
            io::ErrorKind::UnexpectedEof => {
                "the peer closed the connection during the TLS handshake".to_owned()
            }
            io::ErrorKind::TimedOut => {
                "the TCP connection and TLS handshake did not finish within the connect timeout"
                    .to_owned()
            }
            _ => format!("TLS handshake failed: {err}"),
        };
    };
    match tls {
        rustls::Error::NoCertificatesPresented => "client presented no certificate".to_owned(),
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(other))) => {
            match other.downcast_ref::<CertRejection>() {
                Some(rejection) => rejection.to_string(),
                None => format!("peer certificate rejected: {other}"),
            }
        }
        rustls::Error::InvalidCertificate(reason) => {
            format!("peer certificate rejected: {reason}")
        }
        rustls::Error::AlertReceived(alert)
            if CERTIFICATE_ALERTS.contains(&format!("{alert:?}").as_str()) =>
        {
            format!("the peer rejected our certificate (TLS alert {alert:?})")
        }
        rustls::Error::AlertReceived(alert) => {
            format!("the peer aborted the handshake (TLS alert {alert:?})")
        }
        other => format!("TLS handshake failed: {other}"),
    }
}

/// Whether a handshake failed over a certificate: the peer's refused by us, or ours by the
/// peer (a certificate alert). Trying the same connection again cannot succeed.
pub fn is_certificate_refusal(err: &io::Error) -> bool {
    match err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::NoCertificatesPresented | rustls::Error::InvalidCertificate(_)) => true,
        Some(rustls::Error::AlertReceived(alert)) => {
            CERTIFICATE_ALERTS.contains(&format!("{alert:?}").as_str())
        }
        Some(_) => false,
        // As in `describe_handshake_error`: an alert that came through h2 arrives as text.
        None => err
            .to_string()
            .strip_prefix("received fatal alert: ")
            .is_some_and(|alert| CERTIFICATE_ALERTS.contains(&alert)),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The consortium CA certificate(s) as rustls roots, with their names for messages.
struct TrustAnchors {
    roots: Arc<RootCertStore>,
    names: Arc<[CaName]>,
}

#[derive(Debug)]
struct CaName {
    /// DER of the subject, to compare with a presented certificate's issuer.
    raw: Vec<u8>,
    display: String,
}

impl TrustAnchors {
    fn load(ca_pem: &Path) -> Result<Self, TlsError> {
        let certs: Vec<CertificateDer<'static>> = pem::read_all(ca_pem, "certificate")?;
        let mut roots = RootCertStore::empty();
        let mut names = Vec::with_capacity(certs.len());
        for cert in certs {
            let (_, parsed) = x509_parser::parse_x509_certificate(&cert).map_err(|source| {
                TlsError::Certificate {
                    path: ca_pem.to_owned(),
                    source,
                }
            })?;
            names.push(CaName {
                raw: parsed.subject().as_raw().to_vec(),
                display: parsed.subject().to_string(),
            });
            roots.add(cert).map_err(|source| TlsError::TrustAnchor {
                path: ca_pem.to_owned(),
                source,
            })?;
        }
        Ok(TrustAnchors {
            roots: Arc::new(roots),
            names: names.into(),
        })
    }
}

fn read_certificate_and_key(
    cert_pem: &Path,
    key_pem: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain = pem::read_all(cert_pem, "certificate")?;
    let key = pem::read_first(key_pem, "private key")?;
    Ok((chain, key))
}

/// The coordinator's client verifier: rustls's WebPKI verifier, with precise rejections.
#[derive(Debug)]
struct ConsortiumClientVerifier {
    inner: Revocable<dyn ClientCertVerifier>,
    /// The CA names the server sends in its certificate request (they depend on the CA only).
    root_hints: Vec<DistinguishedName>,
    ca_names: Arc<[CaName]>,
}

impl ClientCertVerifier for ConsortiumClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.built().offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.built().client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.root_hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .get()
            .verify_client_cert(end_entity, intermediates, now)
            .map_err(|error| match error {
                rustls::Error::InvalidCertificate(reason) => {
                    rejected(classify(Peer::Client, end_entity, &reason, &self.ca_names))
                }
                other => other,
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner
            .built()
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner
            .built()
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.built().supported_verify_schemes()
    }
}

/// The participants' server verifier: rustls's WebPKI verifier, plus role = coordinator.
#[derive(Debug)]
struct CoordinatorVerifier {
    inner: Revocable<WebPkiServerVerifier>,
    root_hints: Option<Vec<DistinguishedName>>,
    ca_names: Arc<[CaName]>,
}

impl ServerCertVerifier for CoordinatorVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let role = identity_from_der(end_entity).ok().map(|id| id.role);
        let not_coordinator = || CertRejection::NotCoordinator {
            subject: subject_of(end_entity),
            role,
        };
        match self.inner.get().verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) if role == Some(Role::Coordinator) => Ok(verified),
            Ok(_) => Err(rejected(not_coordinator())),
            Err(rustls::Error::InvalidCertificate(reason)) => {
                let rejection = classify(Peer::Server, end_entity, &reason, &self.ca_names);
                // A genuine consortium certificate refused for its key usage or names is
                // most clearly explained by its role, if that is not coordinator.
                match rejection {
                    CertRejection::Other { .. } if role != Some(Role::Coordinator) => {
                        Err(rejected(not_coordinator()))
                    }
                    rejection => Err(rejected(rejection)),
                }
            }
            Err(other) => Err(other),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner
            .built()
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner
            .built()
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.built().supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.root_hints.as_deref()
    }
}

fn rejected(rejection: CertRejection) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(rejection))))
}

const UNPARSEABLE_SUBJECT: &str = "(unparseable certificate)";

fn subject_of(cert: &CertificateDer<'_>) -> String {
    x509_parser::parse_x509_certificate(cert).map_or_else(
        |_| UNPARSEABLE_SUBJECT.to_owned(),
        |(_, cert)| cert.subject().to_string(),
    )
}

/// Names the reason WebPKI refused `end_entity`, from the certificate's own fields.
fn classify(
    peer: Peer,
    end_entity: &CertificateDer<'_>,
    error: &CertificateError,
    ca_names: &[CaName],
) -> CertRejection {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(end_entity) else {
        return CertRejection::Other {
            peer,
            subject: UNPARSEABLE_SUBJECT.to_owned(),
            reason: "is not a well-formed X.509 certificate".to_owned(),
        };
    };
    let subject = cert.subject().to_string();
    match error {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            CertRejection::Expired {
                peer,
                subject,
                not_after: format_time(cert.validity().not_after),
            }
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            CertRejection::Other {
                peer,
                subject,
                reason: format!(
                    "is not valid yet (it is valid from {})",
                    format_time(cert.validity().not_before)
                ),
            }
        }
        CertificateError::Revoked => CertRejection::Revoked {
            peer,
            subject,
            serial: cert.tbs_certificate.serial.to_str_radix(16),
        },
        CertificateError::UnknownIssuer | CertificateError::BadSignature => {
            let issuer = cert.issuer();
            if let Some(ca) = ca_names.iter().find(|ca| ca.raw == issuer.as_raw()) {
                CertRejection::ForgedIssuer {
                    peer,
                    subject,
                    issuer: ca.display.clone(),
                }
            } else if issuer.as_raw() == cert.subject().as_raw() {
                CertRejection::SelfSigned { peer, subject }
            } else {
                CertRejection::UnknownIssuer {
                    peer,
                    subject,
                    issuer: issuer.to_string(),
                    expected: ca_names
                        .iter()
                        .map(|ca| ca.display.as_str())
                        .collect::<Vec<_>>()
                        .join("' or '"),
                }
            }
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            CertRejection::Other {
                peer,
                subject,
                reason: format!(
                    "is not allowed for TLS {peer} authentication (extended key usage)"
                ),
            }
        }
        CertificateError::NotValidForNameContext { expected, .. } => CertRejection::Other {
            peer,
            subject,
            reason: format!("is not valid for the server name '{}'", expected.to_str()),
        },
        other => CertRejection::Other {
            peer,
            subject,
            reason: format!("was rejected: {other}"),
        },
    }
}

fn format_time(time: ASN1Time) -> String {
    time.to_datetime()
        .format(&Rfc3339)
        .unwrap_or_else(|_| time.to_string())
}

//! The consortium's certificate revocation list (CRL), kept current while a node runs.
//!
//! Both ends check revocation: the coordinator its clients, participants and auditors the
//! coordinator ([`crate::tls`]), and everyone the member certificates relayed with signed
//! protocol messages ([`crate::secagg::Trust`]). A [`CrlWatch`] holds the list read
//! from one PEM file, every CRL in it checked against the consortium CA (RFC 5280 §6.3.3: a CRL
//! counts only if the CA signed it), and rereads the file whenever its modification time or
//! length changes, so `accord pki revoke` takes effect without a restart. A file that changes
//! into something unusable (unreadable, not PEM, not a CRL, not signed by the CA) is logged as
//! an error naming it and the previous list stays in force: an operator's slip never lifts a
//! revocation, nor stops a node.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use x509_parser::error::X509Error;

use crate::pem::{self, PemFileError};

/// Why a CRL file (or the CA it is checked against) cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CrlError {
    /// The CRL file or the CA file cannot be read, is not PEM, or holds nothing of its kind.
    #[error(transparent)]
    File(#[from] PemFileError),
    /// A certificate of the CA file does not parse.
    #[error("{path} is not a valid X.509 certificate: {source}")]
    Certificate {
        /// The CA file.
        path: PathBuf,
        /// The X.509 parser's error.
        source: x509_parser::nom::Err<X509Error>,
    },
    /// The `index`-th CRL of the file (from 1) does not parse.
    #[error("{path}: CRL {index} is not a valid certificate revocation list: {source}")]
    Parse {
        /// The CRL file.
        path: PathBuf,
        /// Which CRL of the file, from 1.
        index: usize,
        /// The X.509 parser's error.
        source: x509_parser::nom::Err<X509Error>,
    },
    /// The `index`-th CRL of the file (from 1) was not issued and signed by the consortium CA.
    #[error("{path}: CRL {index} was not signed by the consortium CA '{ca}'")]
    NotFromCa {
        /// The CRL file.
        path: PathBuf,
        /// Which CRL of the file, from 1.
        index: usize,
        /// The consortium CA's subject.
        ca: String,
    },
}

/// The certificates one CRL file revokes, every CRL in it signed by the consortium CA.
#[derive(Debug)]
pub struct RevocationList {
    ders: Vec<CertificateRevocationListDer<'static>>,
    /// (issuer's DER distinguished name, serial number as big-endian bytes).
    revoked: BTreeSet<(Vec<u8>, Vec<u8>)>,
}

impl RevocationList {
    /// Reads the PEM CRLs in `path`, each of which must be issued and signed by one of the CA
    /// certificates in the PEM file `ca`.
    pub fn load(path: &Path, ca: &Path) -> Result<Self, CrlError> {
        let ca_ders: Vec<CertificateDer<'static>> = pem::read_all(ca, "certificate")?;
        let cas = ca_ders
            .iter()
            .map(|der| {
                x509_parser::parse_x509_certificate(der)
                    .map(|(_, cert)| cert)
                    .map_err(|source| CrlError::Certificate {
                        path: ca.to_owned(),
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ders: Vec<CertificateRevocationListDer<'static>> =
            pem::read_all(path, "certificate revocation list")?;
        let mut revoked = BTreeSet::new();
        for (i, der) in ders.iter().enumerate() {
            let (_, crl) = x509_parser::parse_x509_crl(der).map_err(|source| CrlError::Parse {
                path: path.to_owned(),
                index: i + 1,
                source,
            })?;
            let signed_by_ca = cas.iter().any(|ca| {
                crl.issuer().as_raw() == ca.subject().as_raw()
                    && crl.verify_signature(ca.public_key()).is_ok()
            });
            if !signed_by_ca {
                return Err(CrlError::NotFromCa {
                    path: path.to_owned(),
                    index: i + 1,
                    ca: cas
                        .iter()
                        .map(|ca| ca.subject().to_string())
                        .collect::<Vec<_>>()
                        .join("' or '"),
                });
            }
            let issuer = crl.issuer().as_raw().to_vec();
            revoked.extend(
                crl.iter_revoked_certificates()
                    .map(|entry| (issuer.clone(), entry.serial().to_bytes_be())),
            );
        }
        Ok(Self { ders, revoked })
    }

    /// The CRLs as DER, for rustls's WebPKI verifiers.
    pub fn ders(&self) -> &[CertificateRevocationListDer<'static>] {
        &self.ders
    }

    /// How many certificates the list revokes.
    pub fn revoked_count(&self) -> usize {
        self.revoked.len()
    }

    /// The serial number (lowercase hex) of `cert_der` if this list revokes it; None if it does
    /// not, or if `cert_der` is not a certificate (whose issuer must then refuse it anyway).
    pub fn revoked_serial(&self, cert_der: &[u8]) -> Option<String> {
        let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
        let key = (cert.issuer().as_raw().to_vec(), cert.serial.to_bytes_be());
        self.revoked
            .contains(&key)
            .then(|| cert.serial.to_str_radix(16))
    }
}

/// What identifies a version of the CRL file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let metadata = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: metadata.modified().ok(),
        len: metadata.len(),
    })
}

/// A CRL file and its current [`RevocationList`], reread when the file changes.
#[derive(Debug)]
pub struct CrlWatch {
    path: PathBuf,
    /// The CA certificate file the CRL is checked against.
    ca: PathBuf,
    state: Mutex<Watched>,
}

#[derive(Debug)]
struct Watched {
    /// The file's stamp when it was last read (None: it could not be examined).
    seen: Option<Stamp>,
    list: Arc<RevocationList>,
}

impl CrlWatch {
    /// Reads the CRL file `crl`, checked against the CA certificate(s) in `ca` (PEM). An
    /// unusable file is refused here, at start; later changes only replace a usable list.
    pub fn open(crl: &Path, ca: &Path) -> Result<Arc<Self>, CrlError> {
        // The stamp is taken before reading, so a change made while reading is seen next time.
        let seen = stamp(crl);
        let list = RevocationList::load(crl, ca)?;
        Ok(Arc::new(Self {
            path: crl.to_owned(),
            ca: ca.to_owned(),
            state: Mutex::new(Watched {
                seen,
                list: Arc::new(list),
            }),
        }))
    }

    /// [`CrlWatch::open`] for a node's optional `crl` setting.
    pub fn open_if_set(crl: Option<&Path>, ca: &Path) -> Result<Option<Arc<Self>>, CrlError> {
        crl.map(|crl| Self::open(crl, ca)).transpose()
    }

    /// The CRL file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The list in force: the file is examined (one `stat`) and reread if its modification
    /// time or length changed since it was last read. A reread that fails is logged once per
    /// change, as an error naming the file, and the previous list stays in force.
    pub fn current(&self) -> Arc<RevocationList> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = stamp(&self.path);
        if now != state.seen {
            state.seen = now;
            match RevocationList::load(&self.path, &self.ca) {
                Ok(list) => {
                    tracing::info!(
                        crl = %self.path.display(),
                        revoked = list.revoked_count(),
                        "reloaded the certificate revocation list"
                    );
                    state.list = Arc::new(list);
                }
                Err(error) => tracing::error!(
                    crl = %self.path.display(),
                    "the changed certificate revocation list is unusable, the previous one stays in force: {error}"
                ),
            }
        }
        state.list.clone()
    }
}

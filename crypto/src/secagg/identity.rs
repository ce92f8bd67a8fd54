//! Who signed a protocol message: a participant's Ed25519 identity key is its certificate's key,
//! so a signature binds a message to a consortium member the CA admitted, not to a name the
//! coordinator could make up.

use super::{Context, SecAggError, stage_label};
use crate::crl::CrlWatch;
use crate::pki::{self, Role};
use accord_proto::v1::{Header, SecAggStage, SignedStageMessage};
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::path::Path;
use std::sync::Arc;

/// A participant's signing identity: its name, certificate and the certificate's private key.
pub struct Signer {
    name: String,
    certificate_der: Vec<u8>,
    key: SigningKey,
}

/// What went wrong loading a signing identity or the CA it is checked against; the file is named.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A key, certificate or CA file that cannot be read or parsed.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A private key that is not the key of the certificate it was given with.
    #[error("{path}: the key does not belong to the certificate")]
    KeyMismatch {
        /// The key file.
        path: String,
    },
    /// A certificate that does not parse or carries no Accord identity.
    #[error("certificate: {0}")]
    Certificate(#[from] pki::PkiError),
}

impl Signer {
    /// Loads a member's certificate (PEM) and its Ed25519 PKCS#8 key (PEM).
    pub fn load(certificate: &Path, key: &Path) -> Result<Self, IdentityError> {
        let file_error = |path: &Path, reason: String| IdentityError::File {
            path: path.display().to_string(),
            reason,
        };
        let cert = CertificateDer::from_pem_file(certificate)
            .map_err(|e| file_error(certificate, format!("not a PEM certificate: {e}")))?;
        let pem = std::fs::read_to_string(key).map_err(|e| file_error(key, e.to_string()))?;
        let key_pair = SigningKey::from_pkcs8_pem(&pem)
            .map_err(|e| file_error(key, format!("not an Ed25519 PKCS#8 key: {e}")))?;
        Self::new(cert.to_vec(), key_pair).map_err(|e| match e {
            IdentityError::KeyMismatch { .. } => IdentityError::KeyMismatch {
                path: key.display().to_string(),
            },
            other => other,
        })
    }

    /// A signer from a DER certificate and its key; checks they belong together.
    pub fn new(certificate_der: Vec<u8>, key: SigningKey) -> Result<Self, IdentityError> {
        let identity = pki::identity_from_der(&certificate_der)?;
        if pki::ed25519_public_key(&certificate_der)? != key.verifying_key().to_bytes() {
            return Err(IdentityError::KeyMismatch {
                path: identity.name,
            });
        }
        Ok(Self {
            name: identity.name,
            certificate_der,
            key,
        })
    }

    /// The member's name, from its certificate's subject CN.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The certificate (DER), sent with signed messages so peers can check it against the CA.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    /// Signs a 32-byte digest with the certificate's key (e.g. a commitment to a ciphertext).
    pub fn sign_digest(&self, digest: &[u8; 32]) -> Vec<u8> {
        self.key.sign(digest).to_bytes().to_vec()
    }

    /// Signs `body` for `stage` of the aggregation `context`.
    pub fn sign(&self, context: &Context, stage: SecAggStage, body: Vec<u8>) -> SignedStageMessage {
        let digest = context.signing_digest(stage, &self.name, &body);
        SignedStageMessage {
            header: Some(Header::new(&context.federation, context.round)),
            phase: context.phase as i32,
            stage: stage as i32,
            body,
            signature: self.key.sign(&digest).to_bytes().to_vec(),
        }
    }
}

/// Checks members' certificates against the consortium CA (and its CRL, if given).
#[derive(Clone)]
pub struct Trust {
    ca_der: Vec<u8>,
    crl: Option<Arc<CrlWatch>>,
}

impl Trust {
    /// Trusts member certificates that the CA certificate `ca_der` (DER) issued; no revocation
    /// checked until [`Trust::with_crl`].
    pub fn new(ca_der: Vec<u8>) -> Self {
        Self { ca_der, crl: None }
    }

    /// Also refuses member certificates that `crl` revokes (reread when its file changes).
    pub fn with_crl(self, crl: Arc<CrlWatch>) -> Self {
        Self {
            crl: Some(crl),
            ..self
        }
    }

    /// Trusts the CA certificate in the PEM file `ca`; errs naming the file if it is unusable.
    pub fn load(ca: &Path) -> Result<Self, IdentityError> {
        let cert = CertificateDer::from_pem_file(ca).map_err(|e| IdentityError::File {
            path: ca.display().to_string(),
            reason: format!("not a PEM certificate: {e}"),
        })?;
        Ok(Self::new(cert.to_vec()))
    }

    /// The verifying key of participant `name`, if `certificate_der` is a participant
    /// certificate for that name issued by the consortium CA, valid now and not revoked.
    pub fn member_key(
        &self,
        name: &str,
        certificate_der: &[u8],
    ) -> Result<VerifyingKey, SecAggError> {
        let bad = |reason: String| SecAggError::Certificate {
            name: name.to_owned(),
            reason,
        };
        let identity =
            pki::verify_issued(&self.ca_der, certificate_der).map_err(|e| bad(e.to_string()))?;
        if let Some(crl) = &self.crl {
            let revoked = crl.current().revoked_serial(certificate_der);
            if let Some(serial) = revoked {
                return Err(bad(format!(
                    "the certificate (serial {serial}) is revoked by {}",
                    crl.path().display()
                )));
            }
        }
        if identity.name != name {
            return Err(bad(format!("the certificate is for '{}'", identity.name)));
        }
        if identity.role != Role::Participant {
            return Err(bad(format!(
                "the certificate's role is {}, not participant",
                identity.role
            )));
        }
        let key = pki::ed25519_public_key(certificate_der).map_err(|e| bad(e.to_string()))?;
        let key = VerifyingKey::from_bytes(&key).map_err(|e| bad(e.to_string()))?;
        if key.is_weak() {
            return Err(bad(
                "the certificate's Ed25519 key is a weak (small-order) key".into(),
            ));
        }
        Ok(key)
    }
}

/// Checks that `message` is `sender`'s, for `stage` of `context`.
pub fn verify(
    message: &SignedStageMessage,
    context: &Context,
    stage: SecAggStage,
    sender: &str,
    key: &VerifyingKey,
) -> Result<(), SecAggError> {
    let header = message.header.clone().unwrap_or_default();
    let got = Context {
        federation: header.federation_id,
        round: header.round,
        phase: message.phase(),
    };
    if &got != context {
        return Err(SecAggError::WrongContext {
            got: describe(&got),
            expected: describe(context),
        });
    }
    if message.stage() != stage {
        return Err(SecAggError::WrongStage {
            got: stage_label(message.stage()),
            expected: stage_label(stage),
        });
    }
    if message.signature.is_empty() {
        return Err(SecAggError::Unsigned(sender.to_owned()));
    }
    let signature = Signature::from_slice(&message.signature)
        .map_err(|_| SecAggError::BadSignature(sender.to_owned()))?;
    let digest = context.signing_digest(stage, sender, &message.body);
    key.verify_strict(&digest, &signature)
        .map_err(|_| SecAggError::BadSignature(sender.to_owned()))
}

/// Checks a detached Ed25519 `signature` of `digest` by `key`, strictly (ed25519-dalek's
/// `verify_strict`: weak keys and malleable signatures are refused, as its documentation
/// advises for signatures that bind protocol decisions).
pub fn verify_digest(key: &VerifyingKey, digest: &[u8; 32], signature: &[u8]) -> bool {
    Signature::from_slice(signature).is_ok_and(|s| key.verify_strict(digest, &s).is_ok())
}

fn describe(context: &Context) -> String {
    format!(
        "federation '{}', round {}, phase {}",
        context.federation,
        context.round,
        context.phase.label()
    )
}

//! The auditor's keys. `accord auditor keygen` makes them once; the client key and the signing
//! key never leave the auditor's directory. What others need is published as two signed
//! bundles: `auditor-public.bundle` (compact public key and proof parameters, for participants)
//! and `auditor-server.bundle` (the same plus the compressed server key, for the coordinator).
//! Both check the auditor's signature against a key they pinned before using anything in them.
//!
//! Besides its tfhe keys the auditor holds a Ristretto key pair for the fairness counts'
//! validity proofs ([`crate::secagg::validity::counts`]): the opening key stays in its directory,
//! the commitment key travels in both bundles, under the same signature.

use super::{
    CASTING_PARAMETERS, HeError, PARAMETERS, PKE_PARAMETERS, PROOF_CAPACITY, SIZE_LIMIT,
    describe_parameters, deserialize, deserialize_conformant, parameters_sha256, serialize,
};
use crate::secagg::validity::counts::{CountCommitmentKey, CountOpeningKey};
use accord_proto::v1::AuditorKeyBundle;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use prost::Message;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tfhe::core_crypto::prelude::LweCiphertextCount;
use tfhe::zk::CompactPkeCrs;
use zeroize::Zeroizing;

/// The bundle format tag.
pub const BUNDLE_FORMAT: &str = "accord.auditor-keys.v1";
/// File names in the auditor's directory.
pub const CLIENT_KEY_FILE: &str = "client-key.bin";
/// The auditor's Ed25519 signing key (hex), in its directory; never leaves it.
pub const SIGNING_KEY_FILE: &str = "signing-key.hex";
/// The opening key of the count commitments (hex), in the auditor's directory.
pub const COUNT_OPENING_KEY_FILE: &str = "count-opening-key.hex";
/// The signed bundle participants encrypt with ([`PublicMaterial`]).
pub const PUBLIC_BUNDLE_FILE: &str = "auditor-public.bundle";
/// The signed bundle the coordinator computes with ([`ServerMaterial`]).
pub const SERVER_BUNDLE_FILE: &str = "auditor-server.bundle";
/// The auditor's Ed25519 verifying key (hex), which every party pins.
pub const VERIFYING_KEY_FILE: &str = "auditor.pub";

const PUBLIC: &str = "public";
const SERVER: &str = "server";

/// The auditor's secrets: the tfhe client key, the Ed25519 signing key and the opening key of
/// the count commitments.
pub struct AuditorKeys {
    pub(crate) client: tfhe::integer::ClientKey,
    signing: SigningKey,
    counts: CountOpeningKey,
}

/// What participants encrypt with.
#[derive(Clone)]
pub struct PublicMaterial {
    pub(crate) public_key: tfhe::integer::CompactPublicKey,
    pub(crate) crs: CompactPkeCrs,
    /// The key participants commit to their fairness counts under.
    pub count_key: CountCommitmentKey,
    /// SHA-256 (hex) of the public bundle, named in the federation definition.
    pub bundle_sha256: String,
}

/// What the coordinator verifies and computes with.
pub struct ServerMaterial {
    /// The public material, which the coordinator also verifies proofs with.
    pub public: PublicMaterial,
    pub(crate) server_key: tfhe::integer::ServerKey,
    /// Keyswitch from the compact public key's secret to the computation key.
    pub(crate) casting: tfhe::integer::key_switching_key::KeySwitchingKeyMaterial,
}

impl ServerMaterial {
    fn from_server_key(public: PublicMaterial, key: tfhe::ServerKey) -> Result<Self, HeError> {
        let (server_key, casting, ..) = key.into_raw_parts();
        Ok(Self {
            public,
            server_key,
            casting: casting.ok_or_else(|| HeError::Malformed {
                what: "compressed server key",
                reason: "it has no casting key for the compact public key".into(),
            })?,
        })
    }

    /// How lists are expanded for computation: cast to the computation key.
    pub(crate) fn expansion(
        &self,
    ) -> tfhe::integer::ciphertext::IntegerCompactCiphertextListExpansionMode<'_> {
        tfhe::integer::ciphertext::IntegerCompactCiphertextListExpansionMode::CastAndUnpackIfNecessary(
            tfhe::integer::key_switching_key::KeySwitchingKeyView::from_keyswitching_key_material(
                self.casting.as_view(),
                &self.server_key,
                None,
            ),
        )
    }
}

/// The tfhe configuration of every key: computation parameters, and the dedicated compact
/// public-key parameters with their casting keyswitch.
fn config() -> tfhe::Config {
    tfhe::ConfigBuilder::with_custom_parameters(PARAMETERS)
        .use_dedicated_compact_public_key_parameters((PKE_PARAMETERS, CASTING_PARAMETERS))
        .build()
}

/// Everything `keygen` made, in memory.
pub struct GeneratedKeys {
    /// The auditor's private keys (tfhe client key, signing key, count opening key).
    pub keys: AuditorKeys,
    /// The client key as written to `client-key.bin`.
    client_key_file: Zeroizing<Vec<u8>>,
    /// What participants encrypt with (the content of `public_bundle`).
    pub public: PublicMaterial,
    /// What the coordinator computes with (the content of `server_bundle`).
    pub server: std::sync::Arc<ServerMaterial>,
    /// The public bundle file's bytes.
    pub public_bundle: Vec<u8>,
    /// The server bundle file's bytes.
    pub server_bundle: Vec<u8>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn bundle_digest(bundle: &AuditorKeyBundle) -> [u8; 32] {
    let mut unsigned = bundle.clone();
    unsigned.signature.clear();
    let mut hasher = Sha256::new();
    hasher.update(b"accord/auditor-bundle/v1");
    hasher.update(unsigned.encode_to_vec());
    hasher.finalize().into()
}

fn file_error(path: &Path, reason: impl ToString) -> HeError {
    HeError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Parses a verifying key written as 64 hex digits.
pub fn parse_verifying_key(hex_key: &str) -> Result<VerifyingKey, HeError> {
    let bad = |reason: String| HeError::Malformed {
        what: "auditor verifying key",
        reason,
    };
    let bytes: [u8; 32] = hex::decode(hex_key.trim())
        .map_err(|e| bad(e.to_string()))?
        .try_into()
        .map_err(|_| bad("expected 32 bytes (64 hex digits)".into()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| bad(e.to_string()))
}

/// Checks an auditor's Ed25519 signature over a digest.
pub fn verify_auditor_signature(key: &VerifyingKey, digest: &[u8; 32], signature: &[u8]) -> bool {
    Signature::from_slice(signature).is_ok_and(|s| key.verify(digest, &s).is_ok())
}

impl AuditorKeys {
    /// Fresh keys and both signed bundles (keygen takes seconds; the server key is the bulk).
    pub fn generate() -> Result<GeneratedKeys, HeError> {
        let client = tfhe::ClientKey::generate(config());
        let compressed_server = tfhe::CompressedServerKey::new(&client);
        let public_key = tfhe::CompactPublicKey::new(&client);
        let crs =
            CompactPkeCrs::from_shortint_params(PKE_PARAMETERS, LweCiphertextCount(PROOF_CAPACITY))
                .map_err(|e| HeError::Encryption(e.to_string()))?;
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rng(), seed.as_mut_slice());
        let client_key_file = Zeroizing::new(serialize("client key", &client)?);
        let keys = AuditorKeys {
            client: client.into_raw_parts().0,
            signing: SigningKey::from_bytes(&seed),
            counts: CountOpeningKey::generate(),
        };
        let count_key = keys.counts.commitment_key();
        let mut public = AuditorKeyBundle {
            format: BUNDLE_FORMAT.into(),
            kind: PUBLIC.into(),
            parameters: describe_parameters(),
            parameters_sha256: parameters_sha256(),
            compact_public_key: serialize("compact public key", &public_key)?,
            crs: serialize("proof parameters", &crs)?,
            verifying_key: keys.signing.verifying_key().to_bytes().to_vec(),
            count_commitment_key: count_key.to_bytes().to_vec(),
            ..Default::default()
        };
        public.signature = keys.sign(&bundle_digest(&public));
        let public_bundle = public.encode_to_vec();
        let public_bundle_sha256 = sha256_hex(&public_bundle);
        let mut server = AuditorKeyBundle {
            kind: SERVER.into(),
            compressed_server_key: serialize("compressed server key", &compressed_server)?,
            public_bundle_sha256: public_bundle_sha256.clone(),
            signature: vec![],
            ..public.clone()
        };
        server.signature = keys.sign(&bundle_digest(&server));
        let server_bundle = server.encode_to_vec();
        let public_material = PublicMaterial {
            public_key: public_key.into_raw_parts().0,
            crs,
            count_key,
            bundle_sha256: public_bundle_sha256,
        };
        let server_material = ServerMaterial::from_server_key(
            public_material.clone(),
            super::decompress(&compressed_server),
        )?;
        Ok(GeneratedKeys {
            keys,
            client_key_file,
            public: public_material,
            server: std::sync::Arc::new(server_material),
            public_bundle,
            server_bundle,
        })
    }

    /// Generates keys into `dir` (created if needed): the secrets readable by the owner only,
    /// the bundles and the verifying key for others. Refuses to overwrite existing keys.
    pub fn generate_into(dir: &Path) -> Result<GeneratedKeys, HeError> {
        let client_path = dir.join(CLIENT_KEY_FILE);
        if client_path.exists() {
            return Err(file_error(
                &client_path,
                "auditor keys exist already; refusing to overwrite them",
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
        let generated = Self::generate()?;
        write_secret(&client_path, &generated.client_key_file)?;
        write_secret(
            &dir.join(SIGNING_KEY_FILE),
            hex::encode(generated.keys.signing.to_bytes()).as_bytes(),
        )?;
        write_secret(
            &dir.join(COUNT_OPENING_KEY_FILE),
            Zeroizing::new(hex::encode(generated.keys.counts.to_bytes())).as_bytes(),
        )?;
        for (name, bytes) in [
            (PUBLIC_BUNDLE_FILE, &generated.public_bundle),
            (SERVER_BUNDLE_FILE, &generated.server_bundle),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(|e| file_error(&path, e))?;
        }
        let path = dir.join(VERIFYING_KEY_FILE);
        std::fs::write(&path, format!("{}\n", generated.keys.verifying_key_hex()))
            .map_err(|e| file_error(&path, e))?;
        Ok(generated)
    }

    /// Loads the auditor's secrets from `dir`.
    pub fn load(dir: &Path) -> Result<Self, HeError> {
        let client_path = dir.join(CLIENT_KEY_FILE);
        let bytes = std::fs::read(&client_path).map_err(|e| file_error(&client_path, e))?;
        let client: tfhe::ClientKey = deserialize("client key", &bytes)?;
        let signing_path = dir.join(SIGNING_KEY_FILE);
        let text = Zeroizing::new(
            std::fs::read_to_string(&signing_path).map_err(|e| file_error(&signing_path, e))?,
        );
        let seed: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| file_error(&signing_path, "not 64 hex digits of an Ed25519 key"))?;
        let counts_path = dir.join(COUNT_OPENING_KEY_FILE);
        let text = Zeroizing::new(
            std::fs::read_to_string(&counts_path).map_err(|e| file_error(&counts_path, e))?,
        );
        let counts = hex::decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| file_error(&counts_path, "not 64 hex digits"))
            .and_then(|b| {
                CountOpeningKey::from_bytes(b).map_err(|e| file_error(&counts_path, e))
            })?;
        Ok(Self {
            client: client.into_raw_parts().0,
            signing: SigningKey::from_bytes(&seed),
            counts,
        })
    }

    /// The auditor's Ed25519 verifying key, which parties pin to check its signatures.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The verifying key as lowercase hex, as written to [`VERIFYING_KEY_FILE`].
    pub fn verifying_key_hex(&self) -> String {
        hex::encode(self.verifying_key().to_bytes())
    }

    /// The opening key of the fairness count commitments.
    pub fn count_opening_key(&self) -> &CountOpeningKey {
        &self.counts
    }

    /// Signs a digest with the auditor's Ed25519 key.
    pub fn sign(&self, digest: &[u8; 32]) -> Vec<u8> {
        self.signing.sign(digest).to_bytes().to_vec()
    }
}

fn write_secret(path: &PathBuf, bytes: &[u8]) -> Result<(), HeError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| file_error(path, e))?;
    file.write_all(bytes).map_err(|e| file_error(path, e))
}

/// Reads and checks a bundle: its format, kind, the auditor's signature under `pinned`, and
/// the parameters. Nothing inside is deserialized before the signature verifies.
fn open_bundle(
    path: &Path,
    bytes: &[u8],
    kind: &str,
    pinned: &VerifyingKey,
) -> Result<AuditorKeyBundle, HeError> {
    let what = path.display().to_string();
    let bundle = AuditorKeyBundle::decode(bytes)
        .map_err(|e| file_error(path, format!("not an auditor key bundle: {e}")))?;
    if bundle.format != BUNDLE_FORMAT || bundle.kind != kind {
        return Err(file_error(
            path,
            format!(
                "a '{}' bundle of format '{}', expected a '{kind}' bundle of format '{BUNDLE_FORMAT}'",
                bundle.kind, bundle.format
            ),
        ));
    }
    if bundle.verifying_key != pinned.to_bytes()
        || !verify_auditor_signature(pinned, &bundle_digest(&bundle), &bundle.signature)
    {
        return Err(HeError::BadSignature {
            what,
            key: hex::encode(pinned.to_bytes()),
        });
    }
    if bundle.parameters_sha256 != parameters_sha256() {
        return Err(HeError::Parameters {
            what,
            got: bundle.parameters_sha256,
            expected: parameters_sha256(),
        });
    }
    Ok(bundle)
}

fn public_from(
    bundle: &AuditorKeyBundle,
    bundle_sha256: String,
) -> Result<PublicMaterial, HeError> {
    let public_key: tfhe::CompactPublicKey = deserialize_conformant(
        "compact public key",
        &bundle.compact_public_key,
        &PKE_PARAMETERS,
    )?;
    let crs_parameters = tfhe::zk::new_compact_pke_crs_conformance_params(
        PKE_PARAMETERS,
        LweCiphertextCount(PROOF_CAPACITY),
    )
    .map_err(|e| HeError::Encryption(e.to_string()))?;
    let count_key = CountCommitmentKey::from_bytes(&bundle.count_commitment_key).map_err(|e| {
        HeError::Malformed {
            what: "count commitment key",
            reason: e.to_string(),
        }
    })?;
    Ok(PublicMaterial {
        public_key: public_key.into_raw_parts().0,
        crs: deserialize_conformant("proof parameters", &bundle.crs, &crs_parameters)?,
        count_key,
        bundle_sha256,
    })
}

impl PublicMaterial {
    /// Loads `auditor-public.bundle`, checking it was signed by the pinned auditor key.
    pub fn load(path: &Path, pinned: &VerifyingKey) -> Result<Self, HeError> {
        let bytes = crate::file::read_limited(path, "an auditor key bundle", SIZE_LIMIT)?;
        let bundle = open_bundle(path, &bytes, PUBLIC, pinned)?;
        public_from(&bundle, sha256_hex(&bytes))
    }
}

impl ServerMaterial {
    /// Loads `auditor-server.bundle`, checking it was signed by the pinned auditor key, and
    /// decompresses the server key.
    pub fn load(path: &Path, pinned: &VerifyingKey) -> Result<Self, HeError> {
        let bytes = crate::file::read_limited(path, "an auditor key bundle", SIZE_LIMIT)?;
        let bundle = open_bundle(path, &bytes, SERVER, pinned)?;
        let compressed: tfhe::CompressedServerKey = deserialize_conformant(
            "compressed server key",
            &bundle.compressed_server_key,
            &config().into(),
        )?;
        Self::from_server_key(
            public_from(&bundle, bundle.public_bundle_sha256.clone())?,
            super::decompress(&compressed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_signed_by_another_key_or_altered_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let generated = AuditorKeys::generate_into(dir.path()).unwrap();
        let pinned = generated.keys.verifying_key();
        let public = dir.path().join(PUBLIC_BUNDLE_FILE);
        let server = dir.path().join(SERVER_BUNDLE_FILE);
        let loaded = PublicMaterial::load(&public, &pinned).unwrap();
        assert_eq!(loaded.bundle_sha256, generated.public.bundle_sha256);
        assert_eq!(
            ServerMaterial::load(&server, &pinned)
                .unwrap()
                .public
                .bundle_sha256,
            generated.public.bundle_sha256
        );
        // Keys are never overwritten.
        assert!(AuditorKeys::generate_into(dir.path()).is_err());

        // Another auditor key pinned: refused before anything is deserialized.
        let other = SigningKey::from_bytes(&[7; 32]).verifying_key();
        let error = PublicMaterial::load(&public, &other).err().unwrap();
        assert!(matches!(error, HeError::BadSignature { .. }), "{error}");

        // One byte of the public key altered: the signature no longer verifies.
        let mut bundle =
            AuditorKeyBundle::decode(std::fs::read(&public).unwrap().as_slice()).unwrap();
        let last = bundle.compact_public_key.len() - 1;
        bundle.compact_public_key[last] ^= 1;
        std::fs::write(&public, bundle.encode_to_vec()).unwrap();
        let error = PublicMaterial::load(&public, &pinned).err().unwrap();
        assert!(matches!(error, HeError::BadSignature { .. }), "{error}");

        // The server bundle handed to a participant: the wrong kind.
        let error = PublicMaterial::load(&server, &pinned).err().unwrap();
        assert!(
            error.to_string().contains("expected a 'public' bundle"),
            "{error}"
        );

        // A bundle without a count commitment key (made before there was one), properly
        // signed: refused, naming the key.
        let mut older = AuditorKeyBundle::decode(generated.public_bundle.as_slice()).unwrap();
        older.count_commitment_key.clear();
        older.signature = generated.keys.sign(&bundle_digest(&older));
        std::fs::write(&public, older.encode_to_vec()).unwrap();
        let error = PublicMaterial::load(&public, &pinned).err().unwrap();
        assert!(
            matches!(
                &error,
                HeError::Malformed {
                    what: "count commitment key",
                    ..
                }
            ),
            "{error}"
        );

        // The auditor's secrets load back and match, the count keys too.
        let keys = AuditorKeys::load(dir.path()).unwrap();
        assert_eq!(keys.verifying_key(), pinned);
        assert_eq!(keys.count_opening_key().commitment_key(), loaded.count_key);
        assert_eq!(loaded.count_key, generated.public.count_key);
    }
}

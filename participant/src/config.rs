//! `participant.toml`: where the coordinator is, this node's certificate, and how the local CSV
//! maps onto the federation's schema. Relative paths are taken from the file's own folder.

use crate::data::InvalidRowPolicy;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// `participant.toml`: where the coordinator is, this node's TLS identity, its data and how it maps
/// onto the federation's schema, and what it consents to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantConfig {
    /// The coordinator's address, "host:port".
    pub coordinator: String,
    /// The name the coordinator's certificate is checked against; defaults to the host of `coordinator`.
    pub server_name: Option<String>,
    /// The federation to join; the coordinator must serve the same id.
    pub federation_id: String,
    /// `[tls]`: this participant's client identity.
    pub tls: TlsFiles,
    /// `[data]`: the local CSV and how to read it.
    pub data: DataSource,
    /// Seed of the local shuffling, so a participant's training is reproducible.
    #[serde(default)]
    pub seed: u64,
    /// Consent to send plain (unmasked) sums when the federation asks for `insecure-plain`
    /// aggregation. Off by default: a participant refuses to reveal its own sums.
    #[serde(default)]
    pub allow_insecure_plain: bool,
    /// The auditor whose key this participant encrypts fairness statistics under.
    pub fairness: Option<FairnessSection>,
    /// What this participant requires of any federation it joins.
    #[serde(default)]
    pub requirements: Requirements,
}

/// `[requirements]`: floors this participant holds the federation definition to, so that a
/// coordinator can lower neither the definition's security parameters nor, in its relays, what
/// the definition says (Bonawitz et al. 2017: each client checks the threshold itself).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    /// The least secure-aggregation threshold t (survivors whose inputs are summed) this
    /// participant takes part with; also never less than more than half of those selected.
    #[serde(default = "default_min_threshold")]
    pub min_threshold: usize,
    /// The least group size below which the fairness audit must suppress counts; a federation
    /// with a smaller `min_group_size` gets no fairness statistics from this participant.
    #[serde(default = "default_min_group_size")]
    pub min_group_size: u64,
    /// The SHA-256 (hex) of the one federation definition this participant accepts, as the
    /// coordinator logs it at start and this participant logs it at registration.
    #[serde(default)]
    pub federation_sha256: Option<String>,
}

fn default_min_threshold() -> usize {
    2
}

fn default_min_group_size() -> u64 {
    10
}

impl Default for Requirements {
    fn default() -> Self {
        Self {
            min_threshold: default_min_threshold(),
            min_group_size: default_min_group_size(),
            federation_sha256: None,
        }
    }
}

/// `[fairness]`: the auditor's published keys and the auditor key this participant trusts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FairnessSection {
    /// The auditor's `auditor-public.bundle`.
    pub auditor_bundle: PathBuf,
    /// The auditor's Ed25519 verifying key (hex, from `auditor.pub`): the bundle must be
    /// signed by it, and the federation must name the same key.
    pub auditor_verifying_key: String,
}

/// `[tls]`: PEM files for the participant's client identity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The consortium CA certificate the coordinator's certificate must chain to.
    pub ca: PathBuf,
    /// This participant's certificate chain; its name is the participant's name.
    pub certificate: PathBuf,
    /// This participant's private key.
    pub key: PathBuf,
    /// The consortium's certificate revocation list: a coordinator whose certificate it lists
    /// is refused at the handshake, and so are relayed certificates of revoked members. Without
    /// it, revocation is not checked. Reread when the file changes.
    pub crl: Option<PathBuf>,
}

/// `[data]`: the local CSV of customer-service records.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSource {
    /// Path of the CSV file.
    pub path: PathBuf,
    /// What to do with rows that cannot be read: fail, or skip them and count.
    #[serde(default)]
    pub invalid_rows: InvalidRowPolicy,
    /// Schema name → CSV column name, for columns whose names differ.
    #[serde(default)]
    pub columns: HashMap<String, String>,
}

/// Why `participant.toml` could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The configuration file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the expected structure.
    #[error("{path}: {message}")]
    Parse {
        /// The configuration file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A setting could never work.
    #[error("{path}: {source}")]
    Setting {
        /// The configuration file.
        path: PathBuf,
        /// The offending setting.
        source: SettingError,
    },
}

/// A setting of `participant.toml` that could never work, named by its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    /// A value outside what it may be.
    #[error("{key} is '{value}'; it must be {allowed}")]
    OutOfRange {
        /// The setting's key.
        key: &'static str,
        /// Its value.
        value: String,
        /// What it may be.
        allowed: &'static str,
    },
}

impl ParticipantConfig {
    /// Reads, parses and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.into(),
            source,
        })?;
        let mut config: Self = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let fairness = config.fairness.as_mut().map(|f| &mut f.auditor_bundle);
        let crl = config.tls.crl.as_mut();
        for file in [
            &mut config.tls.ca,
            &mut config.tls.certificate,
            &mut config.tls.key,
            &mut config.data.path,
        ]
        .into_iter()
        .chain(fairness)
        .chain(crl)
        {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
        config.check().map_err(|source| ConfigError::Setting {
            path: path.into(),
            source,
        })?;
        Ok(config)
    }

    /// Refuses, before any connection, what could never work: a coordinator address without a
    /// port, a pinned federation hash that is not a SHA-256 (it could match no definition), an
    /// auditor key that is not an Ed25519 key.
    pub fn check(&self) -> Result<(), SettingError> {
        let bad = |key, value: &str, allowed| SettingError::OutOfRange {
            key,
            value: value.to_owned(),
            allowed,
        };
        let port = self
            .coordinator
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()));
        if !matches!(port, Some((host, Ok(_))) if !host.is_empty()) {
            return Err(bad("coordinator", &self.coordinator, "\"host:port\""));
        }
        if let Some(pinned) = &self.requirements.federation_sha256 {
            let pinned_hex = pinned.trim();
            if pinned_hex.len() != 64 || !pinned_hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad(
                    "requirements.federation_sha256",
                    pinned,
                    "64 hex digits (the SHA-256 the coordinator logs at start)",
                ));
            }
        }
        if let Some(f) = &self.fairness
            && accord_crypto::he::keys::parse_verifying_key(&f.auditor_verifying_key).is_err()
        {
            return Err(bad(
                "fairness.auditor_verifying_key",
                &f.auditor_verifying_key,
                "an Ed25519 key in 64 hex digits (the auditor's auditor.pub)",
            ));
        }
        Ok(())
    }

    /// The name the coordinator's certificate is checked against: `server_name`, or the host of
    /// `coordinator`.
    pub fn server_name(&self) -> String {
        self.server_name.clone().unwrap_or_else(|| {
            let host = self
                .coordinator
                .rsplit_once(':')
                .map_or(self.coordinator.as_str(), |(h, _)| h);
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../examples/participant.toml");

    fn load(text: &str) -> Result<ParticipantConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("participant.toml");
        std::fs::write(&path, text).unwrap();
        ParticipantConfig::load(&path).map_err(|e| {
            // Name the file as the test knows it, not by its temporary directory.
            match e {
                ConfigError::Setting { source, .. } => ConfigError::Setting {
                    path: "participant.toml".into(),
                    source,
                },
                other => other,
            }
        })
    }

    #[test]
    fn the_example_loads() {
        let config = load(EXAMPLE).unwrap();
        assert_eq!(config.server_name(), "coordinator.example.org");
        let pinned = EXAMPLE.replace(
            "# federation_sha256 = \"<64 hex digits>\"",
            &format!("federation_sha256 = \"{}\"", "aB".repeat(32)),
        );
        assert!(load(&pinned).is_ok());
    }

    #[test]
    fn settings_that_could_never_work_are_refused_naming_the_key() {
        let cases = [
            (
                EXAMPLE.replace(":7443\"", "\""),
                "participant.toml: coordinator is 'coordinator.example.org'; it must be \"host:port\"",
            ),
            (
                EXAMPLE.replace(":7443\"", ":port\""),
                "participant.toml: coordinator is 'coordinator.example.org:port'; it must be \"host:port\"",
            ),
            (
                EXAMPLE.replace(
                    "# federation_sha256 = \"<64 hex digits>\"",
                    "federation_sha256 = \"abc\"",
                ),
                "participant.toml: requirements.federation_sha256 is 'abc'; it must be 64 hex digits (the SHA-256 the coordinator logs at start)",
            ),
            (
                format!(
                    "{EXAMPLE}\n[fairness]\nauditor_bundle = \"a.bundle\"\nauditor_verifying_key = \"00\"\n"
                ),
                "participant.toml: fairness.auditor_verifying_key is '00'; it must be an Ed25519 key in 64 hex digits (the auditor's auditor.pub)",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(load(&text).unwrap_err().to_string(), expected);
        }
    }

    /// Fault injection is no setting of a node: dropouts are planned by the tests and the
    /// simulator (`run_with`), and a `participant.toml` asking for one is refused, naming the key.
    #[test]
    fn a_participant_toml_with_faults_is_refused() {
        let text = format!(
            "faults = [{{ round = 1, phase = \"fit\", stage = \"masked-input\", action = \"exit\" }}]\n{EXAMPLE}"
        );
        let error = load(&text).unwrap_err();
        let ConfigError::Parse { message, .. } = &error else {
            panic!("not a parse error: {error}");
        };
        assert!(
            message.starts_with("TOML parse error at line 1, column 1")
                && message.contains("unknown field `faults`, expected one of `coordinator`"),
            "{message}"
        );
    }
}

//! `participant.toml`: where the coordinator is, this node's certificate, and how the local CSV
//! maps onto the federation's schema. Relative paths are taken from the file's own folder.

use crate::data::InvalidRowPolicy;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantConfig {
    /// The coordinator's address, "host:port".
    pub coordinator: String,
    /// The name the coordinator's certificate is checked against; defaults to the host of `coordinator`.
    pub server_name: Option<String>,
    pub federation_id: String,
    pub tls: TlsFiles,
    pub data: DataSource,
    /// Seed of the local shuffling, so a participant's training is reproducible.
    #[serde(default)]
    pub seed: u64,
    /// Consent to send plain (unmasked) sums when the federation asks for `insecure-plain`
    /// aggregation. Off by default: a participant refuses to reveal its own sums.
    #[serde(default)]
    pub allow_insecure_plain: bool,
    /// The auditor whose key this participant encrypts fairness statistics under.
    pub fairness: Option<FairnessConfig>,
    /// Fault injection, for tests and simulations of dropouts; never set in production.
    #[serde(default)]
    pub faults: Vec<Fault>,
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
pub struct FairnessConfig {
    /// The auditor's `auditor-public.bundle`.
    pub auditor_bundle: PathBuf,
    /// The auditor's Ed25519 verifying key (hex, from `auditor.pub`): the bundle must be
    /// signed by it, and the federation must name the same key.
    pub auditor_verifying_key: String,
}

/// A planned failure: at `round`'s `phase`, just before sending its `stage` message, this
/// participant `exit`s (ends, as if its process died), `withhold`s (sits the phase out and
/// carries on with the next), or `hold`s (hangs there, e.g. for a test to kill the process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub round: u32,
    pub phase: FaultPhase,
    pub stage: FaultStage,
    pub action: FaultAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultPhase {
    Standardize,
    Fit,
    Evaluate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultStage {
    Setup,
    ShareKeys,
    MaskedInput,
    ConsistencyCheck,
    Unmask,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultAction {
    Exit,
    Withhold,
    Hold,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub certificate: PathBuf,
    pub key: PathBuf,
    /// The consortium's certificate revocation list: a coordinator whose certificate it lists
    /// is refused at the handshake, and so are relayed certificates of revoked members. Without
    /// it, revocation is not checked. Reread when the file changes.
    pub crl: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSource {
    pub path: PathBuf,
    #[serde(default)]
    pub invalid_rows: InvalidRowPolicy,
    /// Schema name → CSV column name, for columns whose names differ.
    #[serde(default)]
    pub columns: HashMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
}

impl ParticipantConfig {
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
        Ok(config)
    }

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

//! A federation laid out in one folder on this machine: the consortium PKI, synthetic data and
//! the coordinator's and participants' configs, made from the repository's example configs (so
//! they stay true). `accord demo` runs it as processes, the end-to-end tests and the simulator's
//! gRPC transport run it in-process.

use crate::synth::{self, SynthError, SynthSpec};
use accord_crypto::pki::PkiError;
use accord_crypto::pki::{ConsortiumCa, Role};
use std::fs;
use std::path::{Path, PathBuf};

/// The example configs everything local runs.
const COORDINATOR_EXAMPLE: &str = include_str!("../../examples/coordinator.toml");
const PARTICIPANT_EXAMPLE: &str = include_str!("../../examples/participant.toml");

/// The certificate name of the demo's progress monitor, which reads the federation's status.
pub const MONITOR: &str = "demo-monitor";

/// Why a local federation could not be laid out.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// An example config (embedded from examples/) is not TOML: a defect of this build.
    #[error("the example config is not TOML: {0}")]
    Example(#[source] toml::de::Error),
    /// An edit's dotted key goes through a value that is not a table.
    #[error("cannot set '{key}' in the example config: '{part}' is not a table")]
    NotATable {
        /// The dotted key of the edit.
        key: String,
        /// The part of it that is not a table.
        part: String,
    },
    /// The edited config cannot be written as TOML (a value TOML cannot hold).
    #[error("the edited config cannot be written as TOML: {0}")]
    Serialize(#[from] toml::ser::Error),
    /// The consortium's certificates could not be made.
    #[error("the federation's PKI: {0}")]
    Pki(#[from] PkiError),
    /// The synthetic data could not be generated or written.
    #[error("the synthetic data: {0}")]
    Synth(#[from] SynthError),
    /// A file or folder could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// `example` (a TOML config) with each edit (dotted key, value) applied, headed by a comment
/// saying where it came from.
pub(crate) fn patch(example: &str, edits: &[(&str, toml::Value)]) -> Result<String, LocalError> {
    let mut doc: toml::Table = example.parse().map_err(LocalError::Example)?;
    for (path, value) in edits {
        let mut table = &mut doc;
        let keys: Vec<&str> = path.split('.').collect();
        for key in &keys[..keys.len() - 1] {
            table = table
                .entry(key.to_string())
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .ok_or_else(|| LocalError::NotATable {
                    key: (*path).to_owned(),
                    part: (*key).to_owned(),
                })?;
        }
        table.insert(keys[keys.len() - 1].to_owned(), value.clone());
    }
    Ok(format!(
        "# Written by `accord demo` from examples/*.toml.\n{}",
        toml::to_string(&doc)?
    ))
}

/// Writes `text` to `path`, naming the path in the error.
fn write(path: &Path, text: &str) -> Result<(), LocalError> {
    fs::write(path, text).map_err(|source| LocalError::Write {
        path: path.to_owned(),
        source,
    })
}

fn path_value(path: PathBuf) -> toml::Value {
    toml::Value::String(path.display().to_string())
}

/// A federation laid out in one folder on this machine: PKI, synthetic data and configs made
/// from the example configs. The demo runs it as processes; end-to-end tests run it in-process.
pub struct LocalFederation {
    /// The folder holding the whole federation.
    pub dir: PathBuf,
    /// The PKI folder: CA, certificates and keys.
    pub pki: PathBuf,
    /// Participant names, `org-1` to `org-N`.
    pub names: Vec<String>,
}

impl LocalFederation {
    /// Makes the PKI (CA, coordinator, one participant certificate per name and an auditor
    /// [`MONITOR`], an observer of the federation) and one synthetic CSV per participant under
    /// `dir`.
    pub fn create(dir: &Path, data: &SynthSpec) -> Result<Self, LocalError> {
        let pki = dir.join("pki");
        let names: Vec<String> = (1..=data.participants)
            .map(|i| format!("org-{i}"))
            .collect();
        let ca = ConsortiumCa::init(&pki, "Accord Demo")?;
        ca.issue(&pki, "coordinator", Role::Coordinator, &[])?;
        ca.issue(&pki, MONITOR, Role::Auditor, &[])?;
        for name in &names {
            ca.issue(&pki, name, Role::Participant, &[])?;
        }
        synth::write_csvs(&synth::generate(data)?, &dir.join("data"))?;
        Ok(Self {
            dir: dir.to_owned(),
            pki,
            names,
        })
    }

    /// The consortium's revocation list, once a certificate has been revoked.
    pub fn crl(&self) -> Option<PathBuf> {
        let crl = self.pki.join("crl.pem");
        crl.exists().then_some(crl)
    }

    /// Where the coordinator writes its bound address once it listens.
    pub fn address_file(&self) -> PathBuf {
        self.dir.join("run/coordinator.addr")
    }

    /// Participant `name`'s synthetic CSV.
    pub fn data_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("data/{name}.csv"))
    }

    /// Writes coordinator.toml: the example config, listening on a free loopback port, with
    /// `extra` edits (dotted keys) applied last.
    pub fn write_coordinator_config(
        &self,
        rounds: u32,
        phase_timeout_secs: u64,
        extra: &[(&str, toml::Value)],
    ) -> Result<PathBuf, LocalError> {
        let path = self.dir.join("coordinator.toml");
        let roster = toml::Value::Array(
            self.names
                .iter()
                .map(|n| toml::Value::String(n.clone()))
                .collect(),
        );
        let mut edits = vec![
            ("listen", "127.0.0.1:0".into()),
            ("out_dir", path_value(self.dir.clone())),
            ("address_file", path_value(self.address_file())),
            ("tls.ca", path_value(self.pki.join("ca.pem"))),
            (
                "tls.certificate",
                path_value(self.pki.join("coordinator.pem")),
            ),
            ("tls.key", path_value(self.pki.join("coordinator.key"))),
            ("federation.rounds", i64::from(rounds).into()),
            (
                "federation.min_participants",
                (self.names.len() as i64).into(),
            ),
            ("federation.roster", roster),
            // Lowering min_participants (to tolerate dropouts) must not let the first phase
            // open before everyone who is running has registered.
            ("federation.wait_for_roster", true.into()),
            (
                "federation.observers",
                toml::Value::Array(vec![MONITOR.into()]),
            ),
            ("federation.registration_timeout_secs", 60.into()),
            (
                "federation.phase_timeout_secs",
                (phase_timeout_secs as i64).into(),
            ),
        ];
        edits.extend(self.crl().map(|crl| ("tls.crl", path_value(crl))));
        edits.extend(extra.iter().cloned());
        let text = patch(COORDINATOR_EXAMPLE, &edits)?;
        let run = self.dir.join("run");
        fs::create_dir_all(&run).map_err(|source| LocalError::Write { path: run, source })?;
        write(&path, &text)?;
        Ok(path)
    }

    /// Writes NAME.toml: the example participant config, pointed at `address`, with `extra`
    /// edits applied last.
    pub fn write_participant_config(
        &self,
        name: &str,
        address: &str,
        extra: &[(&str, toml::Value)],
    ) -> Result<PathBuf, LocalError> {
        let path = self.dir.join(format!("{name}.toml"));
        let seed = self
            .names
            .iter()
            .position(|n| n == name)
            .map_or(0, |i| i as i64 + 1);
        let mut edits = vec![
            ("coordinator", address.into()),
            ("server_name", "localhost".into()),
            ("seed", seed.into()),
            ("tls.ca", path_value(self.pki.join("ca.pem"))),
            (
                "tls.certificate",
                path_value(self.pki.join(format!("{name}.pem"))),
            ),
            ("tls.key", path_value(self.pki.join(format!("{name}.key")))),
            ("data.path", path_value(self.data_file(name))),
        ];
        edits.extend(self.crl().map(|crl| ("tls.crl", path_value(crl))));
        edits.extend(extra.iter().cloned());
        let text = patch(PARTICIPANT_EXAMPLE, &edits)?;
        write(&path, &text)?;
        Ok(path)
    }
}

//! A federation laid out in one folder on this machine: the consortium PKI, synthetic data and
//! the coordinator's and participants' configs, made from the repository's example configs (so
//! they stay true). `accord demo` runs it as processes, the end-to-end tests and the simulator's
//! gRPC transport run it in-process.

use crate::synth::{self, SynthSpec};
use accord_crypto::pki::{ConsortiumCa, Role};
use anyhow::Context;
use std::fs;
use std::path::{Path, PathBuf};

/// The example configs everything local runs.
const COORDINATOR_EXAMPLE: &str = include_str!("../../examples/coordinator.toml");
const PARTICIPANT_EXAMPLE: &str = include_str!("../../examples/participant.toml");

/// The certificate name of the demo's progress monitor, which reads the federation's status.
pub const MONITOR: &str = "demo-monitor";

pub(crate) fn patch(example: &str, edits: &[(&str, toml::Value)]) -> anyhow::Result<String> {
    let mut doc: toml::Table = example.parse().context("example config")?;
    for (path, value) in edits {
        let mut table = &mut doc;
        let keys: Vec<&str> = path.split('.').collect();
        for key in &keys[..keys.len() - 1] {
            table = table
                .entry(key.to_string())
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .context("example config shape")?;
        }
        table.insert(keys[keys.len() - 1].to_owned(), value.clone());
    }
    Ok(format!(
        "# Written by `accord demo` from examples/*.toml.\n{}",
        toml::to_string(&doc)?
    ))
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
    pub fn create(dir: &Path, data: &SynthSpec) -> anyhow::Result<Self> {
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
    ) -> anyhow::Result<PathBuf> {
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
        fs::create_dir_all(self.dir.join("run"))?;
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }

    /// Writes NAME.toml: the example participant config, pointed at `address`, with `extra`
    /// edits applied last.
    pub fn write_participant_config(
        &self,
        name: &str,
        address: &str,
        extra: &[(&str, toml::Value)],
    ) -> anyhow::Result<PathBuf> {
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
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}

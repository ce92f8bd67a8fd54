//! Support for Accord's end-to-end tests: a federation laid out in a temporary folder (the same
//! layout `accord demo` makes), its coordinator and participants run in-process over real
//! mutual-TLS gRPC on loopback.

pub mod deviant;

use accord_coordinator::CoordinatorConfig;
use accord_participant::ParticipantConfig;
use accord_proto::transport::{WireMeter, channel};
use accord_proto::v1::federation_client::FederationClient;
use accord_simulations::faults::FaultPlan;
use accord_simulations::local::LocalFederation;
use accord_simulations::synth::SynthSpec;
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub struct TestFederation {
    pub layout: LocalFederation,
    /// Extra coordinator.toml edits (dotted keys), e.g. the aggregation scheme.
    pub coordinator_edits: Vec<(&'static str, toml::Value)>,
    /// Extra participant.toml edits.
    pub participant_edits: Vec<(&'static str, toml::Value)>,
    _dir: TempDir,
}

impl TestFederation {
    /// PKI and synthetic data for `participants` participants of about `rows` rows each.
    pub fn new(participants: usize, rows: usize, seed: u64) -> Self {
        Self::with_data(&SynthSpec::new(participants, rows, seed))
    }

    /// PKI and synthetic data generated from `data` (e.g. with a planted bias).
    pub fn with_data(data: &SynthSpec) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let layout = LocalFederation::create(dir.path(), data).expect("federation layout");
        Self {
            layout,
            coordinator_edits: Vec::new(),
            participant_edits: Vec::new(),
            _dir: dir,
        }
    }

    /// The same federation summing plainly ("insecure-plain", with the participants' consent).
    pub fn insecure_plain(mut self) -> Self {
        self.coordinator_edits
            .push(("federation.aggregation", "insecure-plain".into()));
        self.participant_edits
            .push(("allow_insecure_plain", true.into()));
        self
    }

    pub fn dir(&self) -> &Path {
        &self.layout.dir
    }

    /// Rewrites `column` of every participant's data file: participant p's record r gets
    /// `value(p, r)`.
    pub fn set_column(&self, column: &str, value: impl Fn(usize, usize) -> String) {
        for (p, name) in self.layout.names.iter().enumerate() {
            let path = self.layout.data_file(name);
            let mut reader = csv::Reader::from_path(&path).expect("data file");
            let headers = reader.headers().expect("header").clone();
            let at = headers
                .iter()
                .position(|h| h == column)
                .unwrap_or_else(|| panic!("no column {column} in {}", path.display()));
            let records: Vec<csv::StringRecord> =
                reader.records().map(|r| r.expect("record")).collect();
            let mut writer = csv::Writer::from_path(&path).expect("data file");
            writer.write_record(&headers).expect("header");
            for (r, record) in records.iter().enumerate() {
                let new = value(p, r);
                let fields = record
                    .iter()
                    .enumerate()
                    .map(|(i, f)| if i == at { new.as_str() } else { f });
                writer.write_record(fields).expect("record");
            }
            writer.flush().expect("data file");
        }
    }

    /// Starts the coordinator in this process; returns its address and the task running it.
    pub async fn start_coordinator(
        &self,
        rounds: u32,
        phase_timeout_secs: u64,
    ) -> (
        String,
        JoinHandle<Result<accord_coordinator::Outcome, accord_coordinator::CoordinatorError>>,
    ) {
        let path = self
            .layout
            .write_coordinator_config(rounds, phase_timeout_secs, &self.coordinator_edits)
            .expect("coordinator config");
        let config = CoordinatorConfig::load(&path).expect("coordinator config loads");
        let task = tokio::spawn(accord_coordinator::run(config));
        // The coordinator publishes its address once it is ready to accept connections: after
        // loading the auditor's server key when the federation audits fairness (seconds, more
        // on a loaded machine).
        let file = self.layout.address_file();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        while tokio::time::Instant::now() < deadline {
            if let Ok(address) = std::fs::read_to_string(&file) {
                return (address.trim().to_owned(), task);
            }
            if task.is_finished() {
                let ended = task.await.expect("the coordinator task does not panic");
                panic!("the coordinator ended before listening: {:?}", ended.err());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the coordinator did not start listening within 90 s");
    }

    pub fn participant_config(&self, name: &str, address: &str) -> ParticipantConfig {
        self.participant_config_with(name, address, &[])
    }

    /// A participant's config with `extra` edits (e.g. a pinned federation hash) on top.
    pub fn participant_config_with(
        &self,
        name: &str,
        address: &str,
        extra: &[(&str, toml::Value)],
    ) -> ParticipantConfig {
        let mut edits = self.participant_edits.clone();
        edits.extend(extra.iter().cloned());
        let path = self
            .layout
            .write_participant_config(name, address, &edits)
            .expect("participant config");
        ParticipantConfig::load(&path).expect("participant config loads")
    }

    /// Runs one participant to the end of the federation.
    pub fn spawn_participant(
        &self,
        name: &str,
        address: &str,
        meter: WireMeter,
    ) -> JoinHandle<Result<accord_participant::Outcome, accord_participant::ParticipantError>> {
        let config = self.participant_config(name, address);
        tokio::spawn(async move { accord_participant::run(&config, meter).await })
    }

    /// Runs one participant that drops out as `plan` says (withholds, exits or hangs at the
    /// messages it names), to the end of the federation or its planned exit.
    pub fn spawn_participant_with(
        &self,
        name: &str,
        address: &str,
        meter: WireMeter,
        plan: FaultPlan,
    ) -> JoinHandle<Result<accord_participant::Outcome, accord_participant::ParticipantError>> {
        let config = self.participant_config(name, address);
        tokio::spawn(async move { accord_participant::run_with(&config, meter, plan).await })
    }

    /// A raw gRPC client holding the certificate `name` from this federation's PKI.
    pub fn client(&self, name: &str, address: &str) -> FederationClient<Channel> {
        let pki = &self.layout.pki;
        let tls = accord_crypto::tls::client_config(
            &pki.join("ca.pem"),
            &pki.join(format!("{name}.pem")),
            &pki.join(format!("{name}.key")),
            None,
        )
        .expect("client TLS config");
        FederationClient::new(
            channel(address, "localhost", tls, WireMeter::new()).expect("channel"),
        )
    }
}

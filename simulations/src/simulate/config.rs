//! `experiment.toml`: one experiment (data, partitioning, algorithm, privacy layer, faults,
//! seed), and optionally a `[sweep]` of values for any of its parameters, run as a grid.

use accord_coordinator::ConfigError;
use accord_coordinator::CoordinatorConfig;
use accord_coordinator::PostprocessingSection;
use accord_participant::data::InvalidRowPolicy;
use accord_proto::sections::MitigationSection;
use accord_proto::v1::FederationDefinition;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// An experiment file: the data, its partitioning, the algorithm, the privacy settings, injected
/// faults and the parameters to sweep.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// The experiment's name, used in its outputs.
    pub name: String,
    /// Same config and seed, same numbers.
    #[serde(default)]
    pub seed: u64,
    /// `[data]`: where the participants' records come from.
    pub data: DataConfig,
    /// `[partition]`: how records are split among participants.
    #[serde(default)]
    pub partition: PartitionConfig,
    /// `[algorithm]`: the federated training.
    #[serde(default)]
    pub algorithm: AlgorithmConfig,
    /// `[privacy]`: the aggregation scheme and its parameters.
    #[serde(default)]
    pub privacy: PrivacyConfig,
    /// `[faults]`: dropouts and stragglers.
    #[serde(default)]
    pub faults: FaultConfig,
    /// Fairness-aware training, as `[training.mitigation]` of coordinator.toml: `kind`,
    /// `strength`, `metric`, `attribute`, `min_group_size`.
    #[serde(default)]
    pub mitigation: MitigationSection,
    /// Per-group decision thresholds after the last round, as `[postprocessing]` of
    /// coordinator.toml: `thresholds`, `attribute`, `strength`, `min_group_size`.
    #[serde(default)]
    pub postprocessing: PostprocessingSection,
    /// "in-process" (default): no sockets; "grpc": the real coordinator and participants
    /// over mutual-TLS gRPC on loopback.
    #[serde(default)]
    pub transport: Transport,
    /// Parameter (dotted path, e.g. "algorithm.mu") → the values to run.
    #[serde(default)]
    pub sweep: BTreeMap<String, Vec<toml::Value>>,
}

/// How the simulated federation communicates (kebab-case in the file).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// Calls in one process, no sockets.
    #[default]
    InProcess,
    /// The real coordinator and participants over mutual-TLS gRPC on loopback.
    Grpc,
}

/// Where an experiment's records come from (kebab-case in the file).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DataSource {
    /// `accord data synth` records: `participants` organizations of about `rows` rows.
    Synthetic,
    /// One CSV per participant (`files`).
    CsvFiles,
    /// One CSV (`file`), split into `participants` by the partitioning.
    CsvSplit,
}

/// `[data]`: the participants' records.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Synthetic records, one CSV per participant, or one CSV split.
    pub source: DataSource,
    /// Participants (synthetic or split; ignored for `csv-files`).
    #[serde(default = "default_participants")]
    pub participants: usize,
    /// Mean rows per participant (synthetic).
    #[serde(default = "default_rows")]
    pub rows: usize,
    /// A planted disparity (synthetic), e.g. "age_band=60+:penalty=0.8".
    #[serde(default)]
    pub bias: Option<String>,
    /// One CSV per participant (`csv-files`).
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// The CSV to split (`csv-split`).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// What loading does with a row with a missing or invalid value, as participant.toml's
    /// `data.invalid_rows` (and with the same default: "reject", naming the file, row and
    /// column).
    #[serde(default)]
    pub invalid_rows: InvalidRowPolicy,
}

fn default_participants() -> usize {
    10
}
fn default_rows() -> usize {
    500
}

/// How records are split among participants (kebab-case in the file).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionKind {
    /// As the data come: the generator's organizations (already non-IID), or one file each.
    #[default]
    Natural,
    /// Pooled, shuffled and split evenly.
    Iid,
    /// Label skew: each label's records split by Dirichlet(alpha) proportions.
    DirichletLabel,
    /// Skew by a protected group: each category of `attribute` split by Dirichlet(alpha).
    Group,
    /// Quantity skew: sizes from Dirichlet(alpha), records shuffled.
    Quantity,
}

/// `[partition]`: how records are split among participants.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PartitionConfig {
    /// The kind of split.
    pub kind: PartitionKind,
    /// Dirichlet concentration for the skewed kinds; smaller is more skewed.
    pub alpha: f64,
    /// The protected attribute for `group` skew.
    pub attribute: Option<String>,
}

impl Default for PartitionConfig {
    fn default() -> Self {
        Self {
            kind: PartitionKind::Natural,
            alpha: 0.5,
            attribute: None,
        }
    }
}

/// How the coordinator combines the participants' updates (lowercase in the file).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Federated averaging weighted by records.
    #[default]
    Fedavg,
    /// FedAvg with a proximal term `mu` in local training.
    Fedprox,
}

/// `[algorithm]`: the federated training parameters.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlgorithmConfig {
    /// FedAvg or FedProx.
    pub strategy: Strategy,
    /// FedProx proximal term (used with strategy = "fedprox").
    pub mu: f64,
    /// Local epochs per round.
    pub local_epochs: u32,
    /// Step size of gradient descent.
    pub learning_rate: f64,
    /// L2 regularization strength.
    pub l2: f64,
    /// Records per mini-batch.
    pub batch_size: u32,
    /// Training rounds.
    pub rounds: u32,
}

impl Default for AlgorithmConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::Fedavg,
            mu: 0.01,
            local_epochs: 2,
            learning_rate: 0.1,
            l2: 1e-3,
            batch_size: 32,
            rounds: 10,
        }
    }
}

/// `[privacy]`: the aggregation scheme and its secure-aggregation parameters, as a coordinator's
/// `[secure_aggregation]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// "secagg" (default) or "insecure-plain" (labelled so in every output).
    pub aggregation: String,
    /// The encrypted fairness path; not available until the fairness issue lands.
    pub fairness_encrypted: bool,
    /// t: least participants that must reach unmasking (0: the default for N).
    pub threshold: u32,
    /// Neighbours per participant in the SecAgg+ graph (0: the default for N).
    pub neighbours: u32,
    /// The ring of the encoding, "z32" or "z64".
    pub modulus: String,
    /// Fractional bits of the fixed-point encoding.
    pub precision_bits: u32,
    /// Bound on the model's weights and intercept: clipped to [−clip, clip] in the secure sums.
    pub clip: f64,
    /// Records a participant may hold; bounds every secure sum.
    pub max_rows_per_participant: u64,
    /// "none" (default in experiments: simulated participants are honest, and proofs change no
    /// honest result, only the cost) or "range-proofs" (every input proven, as a coordinator's
    /// default federation requires).
    pub input_validity: String,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        Self {
            aggregation: "secagg".into(),
            fairness_encrypted: false,
            threshold: 0,
            neighbours: 0,
            modulus: "z64".into(),
            precision_bits: 24,
            clip: 50.0,
            max_rows_per_participant: 1_000_000,
            input_validity: "none".into(),
        }
    }
}

/// Independent per-stage dropout probabilities, for each participant in each aggregation.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StageDropout {
    /// Probability of dropping before sending setup.
    pub setup: f64,
    /// Probability of dropping before sending key shares.
    pub share_keys: f64,
    /// Probability of dropping before sending the masked input.
    pub masked_input: f64,
    /// Probability of dropping before revealing shares for unmasking.
    pub unmask: f64,
}

/// `[faults]`: dropouts and stragglers injected into each aggregation.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    /// Per-stage dropout probabilities.
    pub dropout: StageDropout,
    /// The fraction of participants that are slow in each aggregation…
    pub stragglers: f64,
    /// …taking an exponentially distributed extra time with this mean…
    pub straggler_mean_secs: f64,
    /// …and missing the masked-input stage if it exceeds this deadline.
    pub deadline_secs: f64,
}

impl DataConfig {
    /// The generator's parameters for `source = "synthetic"`.
    pub fn synth_spec(&self, seed: u64) -> Result<crate::synth::SynthSpec, SettingError> {
        Ok(crate::synth::SynthSpec {
            bias: crate::synth::parse_biases(self.bias.as_deref().unwrap_or(""))
                .map_err(SettingError::Bias)?,
            ..crate::synth::SynthSpec::new(self.participants, self.rows, seed)
        })
    }
}

impl PrivacyConfig {
    /// The secure-aggregation parameters, exactly as a coordinator config would give them.
    pub fn params(&self) -> accord_proto::v1::SecAggParams {
        self.section().params()
    }

    /// These settings as a coordinator's `[secure_aggregation]`, so both are checked alike.
    fn section(&self) -> accord_coordinator::SecureAggregationSection {
        accord_coordinator::SecureAggregationSection {
            modulus: self.modulus.clone(),
            precision_bits: self.precision_bits,
            clip: self.clip,
            max_rows_per_participant: self.max_rows_per_participant,
            threshold: self.threshold,
            neighbours: self.neighbours,
            input_validity: self.input_validity.clone(),
        }
    }
}

/// Why an experiment file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The experiment file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match an experiment's structure.
    #[error("{path}: {source}")]
    Parse {
        /// The experiment file.
        path: PathBuf,
        /// The parser's error.
        source: toml::de::Error,
    },
    /// A sweep key or a `--set` assignment cannot be applied to the file.
    #[error("{path}: {source}")]
    Key {
        /// The experiment file.
        path: PathBuf,
        /// What cannot be applied.
        source: KeyError,
    },
    /// A setting no run could use.
    #[error("{path}: {source}")]
    Setting {
        /// The experiment file.
        path: PathBuf,
        /// The setting and why.
        source: Box<SettingError>,
    },
}

/// A dotted key (of a `[sweep]` or a `--set key=value`) that cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A `--set` argument without `=`.
    #[error("--set '{0}' is not of the form key=value")]
    NotAnAssignment(String),
    /// An empty key.
    #[error("sweep key '{0}' is empty")]
    Empty(String),
    /// A part of the key names a value that is not a table.
    #[error("sweep key '{key}': '{part}' is not a table")]
    NotATable {
        /// The dotted key.
        key: String,
        /// The part that is not a table.
        part: String,
    },
}

/// A setting no run of the experiment could use, found before any run starts; the coordinator's
/// and the participants' own checks among them, so an experiment never runs what a federation
/// refuses.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    /// Synthetic data with no participant or no record.
    #[error("data: participants and rows must be at least 1")]
    NoSyntheticData,
    /// `source = "csv-files"` without files.
    #[error("data: source 'csv-files' needs files = [...]")]
    NoFiles,
    /// `source = "csv-split"` without a file or participants.
    #[error("data: source 'csv-split' needs file and participants")]
    NoFileToSplit,
    /// `data.bias` is not a bias specification.
    #[error("data.bias: {0}")]
    Bias(#[source] crate::synth::SynthError),
    /// A Dirichlet partition with α ≤ 0.
    #[error("partition.alpha must be positive")]
    Alpha,
    /// A partition by group without the attribute.
    #[error("partition: kind 'group' needs attribute (a protected attribute)")]
    NoGroupAttribute,
    /// The gRPC transport with data it cannot hand to participants.
    #[error(
        "transport = \"grpc\" runs synthetic data as generated (partition.kind = \"natural\"): participants read their own CSVs"
    )]
    GrpcData,
    /// The privacy settings against the participants simulated.
    #[error(transparent)]
    Privacy(accord_coordinator::SettingError),
    /// The definition participants would receive fails their own check.
    #[error("the federation definition: {0}")]
    Definition(#[source] accord_proto::schema::DefinitionError),
    /// The encrypted fairness path requested.
    #[error(
        "privacy.fairness_encrypted: the encrypted fairness path is not available yet (fairness statistics are securely aggregated instead)"
    )]
    EncryptedFairness,
    /// A fault probability outside [0, 1].
    #[error("faults: probabilities must be in [0, 1]")]
    Probability,
    /// A fault duration that is negative or not finite.
    #[error("faults.{key} is {value}; it must be finite and not negative")]
    Duration {
        /// The key under `[faults]`.
        key: &'static str,
        /// Its value.
        value: f64,
    },
    /// A setting that cannot be written into a coordinator config.
    #[error("{setting}: {source}")]
    Serialize {
        /// The experiment's key.
        setting: &'static str,
        /// Why TOML cannot hold it.
        source: toml::ser::Error,
    },
    /// The coordinator config the experiment stands for cannot be made.
    #[error("the coordinator config: {0}")]
    Layout(#[from] crate::local::LocalError),
    /// A federation's coordinator would refuse the experiment's settings: its message with
    /// the keys as the experiment names them.
    #[error("refused as a federation's coordinator refuses it: {message}")]
    Coordinator {
        /// The coordinator's message, its keys rewritten as the experiment's.
        message: String,
        /// The coordinator's error.
        source: Box<ConfigError>,
    },
}

/// One point of the grid: the config with the swept values applied, and those values.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// The run's label, `run-001`, `run-002`, ….
    pub label: String,
    /// Swept parameter (dotted path) → value in this run.
    pub swept: Vec<(String, String)>,
    /// The experiment config with those values applied.
    pub config: ExperimentConfig,
}

impl ExperimentConfig {
    /// Loads an experiment; relative data paths are taken from the file's folder. Returns the
    /// config and its raw document (for [`ExperimentConfig::plan`]).
    pub fn load(path: &Path) -> Result<(Self, toml::Value), ExperimentError> {
        let text = std::fs::read_to_string(path).map_err(|source| ExperimentError::Io {
            path: path.into(),
            source,
        })?;
        let raw: toml::Value = toml::from_str(&text).map_err(|source| ExperimentError::Parse {
            path: path.into(),
            source,
        })?;
        Ok((Self::from_value(&raw, path)?, raw))
    }

    /// What a run cannot do, said before it starts.
    pub fn check(&self) -> Result<(), SettingError> {
        let d = &self.data;
        match d.source {
            DataSource::Synthetic if d.participants == 0 || d.rows == 0 => {
                return Err(SettingError::NoSyntheticData);
            }
            DataSource::CsvFiles if d.files.is_empty() => {
                return Err(SettingError::NoFiles);
            }
            DataSource::CsvSplit if d.file.is_none() || d.participants == 0 => {
                return Err(SettingError::NoFileToSplit);
            }
            _ => {}
        }
        if self.partition.kind != PartitionKind::Natural
            && self.partition.alpha.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
        {
            return Err(SettingError::Alpha);
        }
        if self.partition.kind == PartitionKind::Group && self.partition.attribute.is_none() {
            return Err(SettingError::NoGroupAttribute);
        }
        if self.transport == Transport::Grpc
            && (self.data.source != DataSource::Synthetic
                || self.partition.kind != PartitionKind::Natural)
        {
            return Err(SettingError::GrpcData);
        }
        // The privacy settings against who takes part: every simulated participant is selected
        // for every phase, at most and at least n.
        let (n, who) = self.participants();
        self.privacy
            .section()
            .check(
                "privacy",
                &accord_coordinator::Admissible {
                    most: Some((n, who.clone())),
                    least: (n, who),
                },
            )
            .map_err(SettingError::Privacy)?;
        // Then every setting, by the coordinator's own code, as a federation would check them,
        // and the definition the participants would receive, as they check it.
        let definition = self.definition()?;
        accord_proto::schema::validate_definition(&definition).map_err(SettingError::Definition)?;
        if self.privacy.fairness_encrypted {
            return Err(SettingError::EncryptedFairness);
        }
        let f = &self.faults;
        let probabilities = [
            f.dropout.setup,
            f.dropout.share_keys,
            f.dropout.masked_input,
            f.dropout.unmask,
            f.stragglers,
        ];
        if probabilities.iter().any(|p| !(0.0..=1.0).contains(p)) {
            return Err(SettingError::Probability);
        }
        for (key, value) in [
            ("straggler_mean_secs", f.straggler_mean_secs),
            ("deadline_secs", f.deadline_secs),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(SettingError::Duration { key, value });
            }
        }
        Ok(())
    }

    /// The grid of runs: every combination of the swept values (one run without a sweep).
    pub fn plan(raw: &toml::Value, path: &Path) -> Result<Vec<RunPlan>, ExperimentError> {
        let base = Self::from_value(raw, path)?;
        let mut runs = vec![(raw.clone(), Vec::new())];
        for (key, values) in &base.sweep {
            let mut next = Vec::new();
            for (value, swept) in &runs {
                for v in values {
                    let mut value = value.clone();
                    set(&mut value, key, v.clone()).map_err(|source| ExperimentError::Key {
                        path: path.into(),
                        source,
                    })?;
                    let mut swept = swept.clone();
                    swept.push((key.clone(), display(v)));
                    next.push((value, swept));
                }
            }
            runs = next;
        }
        runs.into_iter()
            .enumerate()
            .map(|(i, (value, swept))| {
                let config = Self::from_value(&value, path)?;
                Ok(RunPlan {
                    label: format!("run-{:03}", i + 1),
                    swept,
                    config,
                })
            })
            .collect()
    }

    fn from_value(value: &toml::Value, path: &Path) -> Result<Self, ExperimentError> {
        let mut config: Self =
            value
                .clone()
                .try_into()
                .map_err(|source| ExperimentError::Parse {
                    path: path.into(),
                    source,
                })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for file in config
            .data
            .files
            .iter_mut()
            .chain(config.data.file.as_mut())
        {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
        config.check().map_err(|source| ExperimentError::Setting {
            path: path.into(),
            source: Box::new(source),
        })?;
        Ok(config)
    }
}

/// One coordinator.toml setting an experiment stands for: its key there, the experiment key it
/// comes from, and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// The key in coordinator.toml.
    pub coordinator: &'static str,
    /// The key in the experiment file.
    pub experiment: &'static str,
    /// The value.
    pub value: toml::Value,
}

/// Where a coordinator.toml section's settings come from in an experiment, for keys that have
/// no setting of their own (a message naming a whole section).
const SECTIONS: [(&str, &str); 3] = [
    ("secure_aggregation", "privacy"),
    ("training.mitigation", "mitigation"),
    ("training", "algorithm"),
];

impl ExperimentConfig {
    /// The coordinator.toml settings of a federation running this experiment (on top of the
    /// example coordinator config, whose schema simulations share).
    pub fn coordinator_settings(&self) -> Result<Vec<Setting>, SettingError> {
        let a = &self.algorithm;
        let p = &self.privacy;
        let mu = if a.strategy == Strategy::Fedprox {
            a.mu
        } else {
            0.0
        };
        let table = |setting: &'static str, value: Result<toml::Value, toml::ser::Error>| {
            value.map_err(|source| SettingError::Serialize { setting, source })
        };
        let setting = |coordinator, experiment, value: toml::Value| Setting {
            coordinator,
            experiment,
            value,
        };
        Ok(vec![
            setting(
                "federation.rounds",
                "algorithm.rounds",
                i64::from(a.rounds).into(),
            ),
            setting(
                "federation.aggregation",
                "privacy.aggregation",
                p.aggregation.as_str().into(),
            ),
            setting(
                "training.local_epochs",
                "algorithm.local_epochs",
                i64::from(a.local_epochs).into(),
            ),
            setting(
                "training.learning_rate",
                "algorithm.learning_rate",
                a.learning_rate.into(),
            ),
            setting("training.l2", "algorithm.l2", a.l2.into()),
            setting(
                "training.batch_size",
                "algorithm.batch_size",
                i64::from(a.batch_size).into(),
            ),
            setting("training.fedprox_mu", "algorithm.mu", mu.into()),
            setting(
                "secure_aggregation.threshold",
                "privacy.threshold",
                i64::from(p.threshold).into(),
            ),
            setting(
                "secure_aggregation.neighbours",
                "privacy.neighbours",
                i64::from(p.neighbours).into(),
            ),
            setting(
                "secure_aggregation.modulus",
                "privacy.modulus",
                p.modulus.as_str().into(),
            ),
            setting(
                "secure_aggregation.precision_bits",
                "privacy.precision_bits",
                i64::from(p.precision_bits).into(),
            ),
            setting("secure_aggregation.clip", "privacy.clip", p.clip.into()),
            setting(
                "secure_aggregation.max_rows_per_participant",
                "privacy.max_rows_per_participant",
                i64::try_from(p.max_rows_per_participant)
                    .unwrap_or(i64::MAX)
                    .into(),
            ),
            setting(
                "secure_aggregation.input_validity",
                "privacy.input_validity",
                p.input_validity.as_str().into(),
            ),
            setting(
                "training.mitigation",
                "mitigation",
                table("mitigation", toml::Value::try_from(&self.mitigation))?,
            ),
            setting(
                "postprocessing",
                "postprocessing",
                table(
                    "postprocessing",
                    toml::Value::try_from(&self.postprocessing),
                )?,
            ),
        ])
    }

    /// The coordinator configuration a federation running this experiment would load, checked
    /// by the coordinator's own code: an experiment is refused whenever that coordinator would
    /// refuse to start, with the keys named as the experiment spells them.
    pub fn coordinator_config(&self) -> Result<CoordinatorConfig, SettingError> {
        let settings = self.coordinator_settings()?;
        // Who takes part: the simulated participants, every one selected for every phase.
        let (n, _) = self.participants();
        let roster: Vec<toml::Value> = (1..=n).map(|i| super::member_name(i).into()).collect();
        let mut edits: Vec<(&str, toml::Value)> = vec![("federation.roster", roster.into())];
        edits.extend(self.simulated_federation());
        edits.extend(settings.iter().map(|s| (s.coordinator, s.value.clone())));
        let text = crate::local::patch(super::COORDINATOR_EXAMPLE, &edits)?;
        CoordinatorConfig::parse(&text, Path::new("coordinator.toml")).map_err(|source| {
            // The coordinator's words without the file name (the experiment has none).
            let message = match &source {
                ConfigError::Parse { message, .. } => message.clone(),
                ConfigError::Setting { source, .. } => source.to_string(),
                ConfigError::Invalid { source, .. } => source.to_string(),
                other => other.to_string(),
            };
            SettingError::Coordinator {
                message: in_experiment_keys(&message, &settings),
                source: Box::new(source),
            }
        })
    }

    /// What every simulated federation sets, under either transport: a phase needs more than
    /// half of the participants (as the default secure-aggregation threshold does), and every
    /// evaluation reports each protected attribute's gaps (`evaluation.group_gaps`), so each
    /// round's fairness gaps are figures the federation itself releases.
    pub fn simulated_federation(&self) -> Vec<(&'static str, toml::Value)> {
        let (n, _) = self.participants();
        vec![
            ("federation.min_participants", ((n / 2 + 1) as i64).into()),
            ("evaluation.group_gaps", true.into()),
        ]
    }

    /// How many participants the experiment simulates, and what says so (for messages).
    pub fn participants(&self) -> (usize, String) {
        let d = &self.data;
        let (n, key) = match d.source {
            DataSource::CsvFiles => (d.files.len(), "data.files"),
            DataSource::Synthetic | DataSource::CsvSplit => (d.participants, "data.participants"),
        };
        (n, format!("the {n} participants of {key}"))
    }

    /// The federation definition participants would receive for this experiment.
    pub fn definition(&self) -> Result<FederationDefinition, SettingError> {
        Ok(accord_coordinator::definition(
            &self.coordinator_config()?,
            None,
        ))
    }
}

/// `message` (naming coordinator.toml keys) with each key written as the experiment's: every
/// word made of key characters whose longest matching coordinator key (or section) is a prefix
/// at a dot is rewritten.
fn in_experiment_keys(message: &str, settings: &[Setting]) -> String {
    let keys: Vec<(&str, &str)> = settings
        .iter()
        .map(|s| (s.coordinator, s.experiment))
        .chain(SECTIONS)
        .collect();
    let rewrite = |word: &str| -> String {
        keys.iter()
            .filter(|(coordinator, _)| {
                word.strip_prefix(coordinator)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
            })
            .max_by_key(|(coordinator, _)| coordinator.len())
            .map_or_else(
                || word.to_owned(),
                |(coordinator, experiment)| format!("{experiment}{}", &word[coordinator.len()..]),
            )
    };
    let mut out = String::new();
    let mut word = String::new();
    for c in message.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            word.push(c);
        } else {
            out.push_str(&rewrite(&word));
            word.clear();
            out.push(c);
        }
    }
    out.push_str(&rewrite(&word));
    out
}

/// Sets `key` (dotted) in a TOML document; the key must name an existing table path.
fn set(document: &mut toml::Value, key: &str, value: toml::Value) -> Result<(), KeyError> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().filter(|last| !last.is_empty());
    let (Some(last), Some(mut table)) = (last, document.as_table_mut()) else {
        // A parsed experiment is always a table: only the key can be at fault.
        return Err(KeyError::Empty(key.to_owned()));
    };
    for part in parts {
        table = table
            .entry(part)
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .ok_or_else(|| KeyError::NotATable {
                key: key.to_owned(),
                part: part.to_owned(),
            })?;
    }
    table.insert(last.to_owned(), value);
    Ok(())
}

/// Applies "dotted.key=value" to a document; the value is TOML ("0.5", "true", "\"z32\"") or,
/// failing that, a bare string.
pub(crate) fn override_value(document: &mut toml::Value, assignment: &str) -> Result<(), KeyError> {
    let (key, value) = assignment
        .split_once('=')
        .ok_or_else(|| KeyError::NotAnAssignment(assignment.to_owned()))?;
    let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    set(document, key.trim(), value)
}

fn display(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

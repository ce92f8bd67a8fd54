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
    pub fn synth_spec(&self, seed: u64) -> Result<crate::synth::SynthSpec, String> {
        Ok(crate::synth::SynthSpec {
            bias: crate::synth::parse_biases(self.bias.as_deref().unwrap_or(""))
                .map_err(|e| e.to_string())?,
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
    /// The file is not valid TOML or its settings are inconsistent.
    #[error("{path}: {message}")]
    Invalid {
        /// The experiment file.
        path: PathBuf,
        /// What is wrong.
        message: String,
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
        let raw: toml::Value = toml::from_str(&text).map_err(|e| ExperimentError::Invalid {
            path: path.into(),
            message: e.to_string(),
        })?;
        Ok((Self::from_value(&raw, path)?, raw))
    }

    /// What a run cannot do, said before it starts.
    pub fn check(&self) -> Result<(), String> {
        let d = &self.data;
        match d.source {
            DataSource::Synthetic if d.participants == 0 || d.rows == 0 => {
                return Err("data: participants and rows must be at least 1".into());
            }
            DataSource::CsvFiles if d.files.is_empty() => {
                return Err("data: source 'csv-files' needs files = [...]".into());
            }
            DataSource::CsvSplit if d.file.is_none() || d.participants == 0 => {
                return Err("data: source 'csv-split' needs file and participants".into());
            }
            _ => {}
        }
        if self.partition.kind != PartitionKind::Natural
            && self.partition.alpha.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
        {
            return Err("partition.alpha must be positive".into());
        }
        if self.partition.kind == PartitionKind::Group && self.partition.attribute.is_none() {
            return Err("partition: kind 'group' needs attribute (a protected attribute)".into());
        }
        if self.transport == Transport::Grpc
            && (self.data.source != DataSource::Synthetic
                || self.partition.kind != PartitionKind::Natural)
        {
            return Err("transport = \"grpc\" runs synthetic data as generated (partition.kind = \"natural\"): participants read their own CSVs".into());
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
            .map_err(|e| e.to_string())?;
        // Then every setting, by the coordinator's own code, as a federation would check them,
        // and the definition the participants would receive, as they check it.
        let definition = self.definition()?;
        accord_proto::schema::validate_definition(&definition)
            .map_err(|e| format!("the federation definition: {e}"))?;
        if self.privacy.fairness_encrypted {
            return Err("privacy.fairness_encrypted: the encrypted fairness path is not available yet (fairness statistics are securely aggregated instead)".into());
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
            return Err("faults: probabilities must be in [0, 1]".into());
        }
        for (key, value) in [
            ("straggler_mean_secs", f.straggler_mean_secs),
            ("deadline_secs", f.deadline_secs),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!(
                    "faults.{key} is {value}; it must be finite and not negative"
                ));
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
                    set(&mut value, key, v.clone()).map_err(|message| {
                        ExperimentError::Invalid {
                            path: path.into(),
                            message,
                        }
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
        let invalid = |message: String| ExperimentError::Invalid {
            path: path.into(),
            message,
        };
        let mut config: Self = value
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| invalid(e.to_string()))?;
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
        config.check().map_err(invalid)?;
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
    pub fn coordinator_settings(&self) -> Result<Vec<Setting>, String> {
        let a = &self.algorithm;
        let p = &self.privacy;
        let mu = if a.strategy == Strategy::Fedprox {
            a.mu
        } else {
            0.0
        };
        let table = |value: Result<toml::Value, toml::ser::Error>| value.map_err(|e| e.to_string());
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
                table(toml::Value::try_from(&self.mitigation))?,
            ),
            setting(
                "postprocessing",
                "postprocessing",
                table(toml::Value::try_from(&self.postprocessing))?,
            ),
        ])
    }

    /// The coordinator configuration a federation running this experiment would load, checked
    /// by the coordinator's own code: an experiment is refused whenever that coordinator would
    /// refuse to start, with the keys named as the experiment spells them.
    pub fn coordinator_config(&self) -> Result<CoordinatorConfig, String> {
        let settings = self.coordinator_settings()?;
        // Who takes part: the simulated participants, every one selected for every phase.
        let (n, _) = self.participants();
        let roster: Vec<toml::Value> = (1..=n).map(|i| super::member_name(i).into()).collect();
        let mut edits: Vec<(&str, toml::Value)> = vec![("federation.roster", roster.into())];
        edits.extend(self.simulated_federation());
        edits.extend(settings.iter().map(|s| (s.coordinator, s.value.clone())));
        let text =
            crate::local::patch(super::COORDINATOR_EXAMPLE, &edits).map_err(|e| e.to_string())?;
        CoordinatorConfig::parse(&text, Path::new("coordinator.toml")).map_err(|e| {
            let message = match e {
                ConfigError::Invalid { message, .. } | ConfigError::Parse { message, .. } => {
                    message
                }
                ConfigError::Setting { source, .. } => source.to_string(),
                other => other.to_string(),
            };
            format!(
                "refused as a federation's coordinator refuses it: {}",
                in_experiment_keys(&message, &settings)
            )
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
    pub fn definition(&self) -> Result<FederationDefinition, String> {
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
fn set(document: &mut toml::Value, key: &str, value: toml::Value) -> Result<(), String> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts
        .pop()
        .ok_or_else(|| format!("sweep key '{key}' is empty"))?;
    let mut table = document
        .as_table_mut()
        .ok_or_else(|| "the experiment is not a table".to_owned())?;
    for part in parts {
        table = table
            .entry(part)
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .ok_or_else(|| format!("sweep key '{key}': '{part}' is not a table"))?;
    }
    table.insert(last.to_owned(), value);
    Ok(())
}

/// Applies "dotted.key=value" to a document; the value is TOML ("0.5", "true", "\"z32\"") or,
/// failing that, a bare string.
pub fn override_value(document: &mut toml::Value, assignment: &str) -> Result<(), String> {
    let (key, value) = assignment
        .split_once('=')
        .ok_or_else(|| format!("--set '{assignment}' is not of the form key=value"))?;
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

//! `coordinator.toml`: the federation's one definition (schema, training and evaluation
//! parameters, who may join) and the coordinator's own files. Relative paths are taken from the
//! file's folder. The schema defined here is what every participant receives.

use crate::mitigation::{PostprocessingSection, mitigation_definition};
use accord_proto::schema::{SchemaError, validate};
use accord_proto::scheme::{AggregationScheme, InputValidity};
use accord_proto::sections::{EvaluationSection, FeatureType, SchemaSection, TrainingSection};
use accord_proto::v1::{
    Boolean, Categorical, Comparison, EvaluationParams, FairnessMitigation, Feature, LabelRule,
    Numeric, ProtectedAttribute, Schema, SecAggParams, ThresholdPostprocessing, TrainingParams,
    feature::Kind,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `coordinator.toml`: the federation's identity, network and TLS settings, round and training
/// parameters, aggregation scheme and schema.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// The federation's id; participants must name the same one.
    pub federation_id: String,
    /// Address to listen on, "host:port" (port 0 picks a free one).
    pub listen: String,
    /// Where model.json and rounds.csv are written.
    pub out_dir: PathBuf,
    /// If set, the bound address is written here once the coordinator listens.
    pub address_file: Option<PathBuf>,
    /// The coordinator's TLS files.
    pub tls: TlsFiles,
    /// Limits on connections, so that clients that never authenticate cannot exhaust the
    /// coordinator's file descriptors or memory.
    #[serde(default)]
    pub connections: ConnectionsSection,
    /// `[federation]`: rounds, admission and timeouts.
    pub federation: FederationSection,
    /// `[training]`: local training parameters sent to participants (defaults when absent).
    #[serde(default)]
    pub training: TrainingSection,
    /// `[evaluation]`: what participants report about each round's model (defaults when absent).
    #[serde(default)]
    pub evaluation: EvaluationSection,
    /// `[secure_aggregation]`: the encoding and graph of secure aggregation (defaults when absent).
    #[serde(default)]
    pub secure_aggregation: SecureAggregationSection,
    /// The encrypted fairness audit of the final model (none: no audit).
    pub fairness: Option<FairnessSection>,
    /// Per-group decision thresholds chosen after the last round.
    #[serde(default)]
    pub postprocessing: PostprocessingSection,
    /// `[schema]`: the features, label and protected attributes of the shared dataset.
    pub schema: SchemaSection,
}

/// `[fairness]`: an auditor's keys and the disclosure policy for the encrypted fairness phase
/// that follows the last round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FairnessSection {
    /// The auditor's `auditor-server.bundle`.
    pub auditor_server_bundle: PathBuf,
    /// The auditor's Ed25519 verifying key (hex, from `auditor.pub`), pinned here.
    pub auditor_verifying_key: String,
    /// Groups with fewer records are suppressed on ciphertexts.
    #[serde(default = "default_min_group_size")]
    pub min_group_size: u64,
    /// Bins of predicted probability per group.
    #[serde(default = "default_fairness_bins")]
    pub histogram_bins: u32,
    /// Counts are encrypted modulo 2^value_bits (even, at most 32); the federation's total
    /// record count must stay below it.
    #[serde(default = "default_value_bits")]
    pub value_bits: u32,
}

fn default_min_group_size() -> u64 {
    20
}

fn default_fairness_bins() -> u32 {
    10
}

fn default_value_bits() -> u32 {
    32
}

/// `[secure_aggregation]`: parameters of the default aggregation, "secagg".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecureAggregationSection {
    /// "z64" or "z32": the ring masked vectors live in.
    pub modulus: String,
    /// Fractional bits of real-valued entries (fewer where headroom requires).
    pub precision_bits: u32,
    /// Model weights are clipped to [-clip, clip] (standardized units) before masking.
    pub clip: f64,
    /// Rows a participant may hold; bounds every count and sum so no sum can wrap.
    pub max_rows_per_participant: u64,
    /// t: participants that must reach unmasking (0: more than half of those selected).
    pub threshold: u32,
    /// k: SecAgg+ neighbours per participant (0: complete graph up to 21, then O(log n)).
    pub neighbours: u32,
    /// "range-proofs" (each input proven within its bounds and relations) or "none".
    pub input_validity: String,
}

impl Default for SecureAggregationSection {
    fn default() -> Self {
        Self {
            modulus: "z64".into(),
            precision_bits: 24,
            clip: 50.0,
            max_rows_per_participant: 1_000_000,
            threshold: 0,
            neighbours: 0,
            input_validity: InputValidity::RangeProofs.name().into(),
        }
    }
}

impl SecureAggregationSection {
    /// The secure-aggregation parameters sent to participants, as configured.
    pub fn params(&self) -> SecAggParams {
        SecAggParams {
            modulus_bits: if self.modulus == "z32" { 32 } else { 64 },
            precision_bits: self.precision_bits,
            clip: self.clip,
            max_rows_per_participant: self.max_rows_per_participant,
            threshold: self.threshold,
            neighbours: self.neighbours,
            input_validity: self.input_validity.clone(),
        }
    }
}

/// `[tls]`: PEM files for the coordinator's server identity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The consortium CA certificate that client certificates must chain to.
    pub ca: PathBuf,
    /// The coordinator's certificate chain.
    pub certificate: PathBuf,
    /// The coordinator's private key.
    pub key: PathBuf,
    /// The consortium's certificate revocation list, if any; reread when the file changes.
    pub crl: Option<PathBuf>,
}

/// `[connections]`: how many clients the listener serves at once. A client waiting for room
/// stays in the kernel's listen backlog, where it costs the coordinator no file descriptor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsSection {
    /// TLS handshakes in progress at once.
    pub max_handshakes: u32,
    /// Connections open at once (in handshake or authenticated).
    pub max_open: u32,
    /// A client that has not completed its TLS handshake within this many seconds is dropped.
    pub handshake_timeout_secs: u64,
}

impl Default for ConnectionsSection {
    fn default() -> Self {
        Self {
            max_handshakes: 64,
            max_open: 512,
            handshake_timeout_secs: 10,
        }
    }
}

/// `[federation]`: how many rounds, who may take part, and how long the coordinator waits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationSection {
    /// Training rounds to run.
    pub rounds: u32,
    /// Rounds start once this many participants have registered; a phase that closes with fewer
    /// uploads aborts its round and the previous global model stays.
    pub min_participants: u32,
    /// If not empty, only these participant names (from their certificates) may register.
    #[serde(default)]
    pub roster: Vec<String>,
    /// Auditor certificates (by name) that may read the federation's status, e.g. a progress
    /// monitor. Participants may read it once registered.
    #[serde(default)]
    pub observers: Vec<String>,
    /// Seconds to wait for `min_participants` (or the roster) to register before giving up.
    #[serde(default = "default_registration_timeout")]
    pub registration_timeout_secs: u64,
    /// Start the first round only once every roster member registered (or the registration
    /// timeout passed), rather than as soon as `min_participants` have.
    #[serde(default)]
    pub wait_for_roster: bool,
    /// Seconds a phase stays open for uploads before it closes with what arrived.
    #[serde(default = "default_phase_timeout")]
    pub phase_timeout_secs: u64,
    /// The aggregation scheme: "insecure-plain" (participants must consent to it).
    #[serde(default = "default_aggregation")]
    pub aggregation: String,
}

fn default_registration_timeout() -> u64 {
    300
}
fn default_phase_timeout() -> u64 {
    120
}
fn default_aggregation() -> String {
    AggregationScheme::SecAgg.name().into()
}

/// Why `coordinator.toml` could not be loaded.
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
    /// The schema section does not define a valid schema.
    #[error("{path}: schema: {source}")]
    Schema {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong with the schema.
        source: SchemaError,
    },
    /// A setting is out of range or contradicts another.
    #[error("{path}: {source}")]
    Setting {
        /// The configuration file.
        path: PathBuf,
        /// The offending setting.
        source: SettingError,
    },
    /// Any other inconsistency between settings.
    #[error("{path}: {source}")]
    Invalid {
        /// The configuration file.
        path: PathBuf,
        /// What is inconsistent.
        source: Invalid,
    },
}

impl CoordinatorConfig {
    /// Reads, parses and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.into(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// A configuration from its text; `path` names it in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut files = vec![
            &mut config.tls.ca,
            &mut config.tls.certificate,
            &mut config.tls.key,
            &mut config.out_dir,
        ];
        files.extend(config.tls.crl.as_mut());
        files.extend(
            config
                .fairness
                .as_mut()
                .map(|f| &mut f.auditor_server_bundle),
        );
        files.extend(config.address_file.as_mut());
        for file in files {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
        config.check().map_err(|e| match e {
            Invalid::Schema(source) => ConfigError::Schema {
                path: path.into(),
                source,
            },
            Invalid::Setting(source) => ConfigError::Setting {
                path: path.into(),
                source,
            },
            source => ConfigError::Invalid {
                path: path.into(),
                source,
            },
        })?;
        Ok(config)
    }

    /// Every check of [`Self::parse`]: the schema, then each section alone, then the
    /// combinations no federation could run with.
    fn check(&self) -> Result<(), Invalid> {
        validate(&self.schema()?).map_err(Invalid::Schema)?;
        self.connections.check()?;
        self.federation.check()?;
        self.secure_aggregation
            .check("secure_aggregation", &self.federation.admissible())?;
        // The standardization sums quantize every numeric feature by its range, and stay exact
        // only up to a row bound, whichever the aggregation.
        accord_proto::layout::StandardizationLayout::new(&self.schema()?)
            .map_err(Invalid::Unbounded)?
            .bounds(self.secure_aggregation.max_rows_per_participant)
            .map_err(Invalid::RowBound)?;
        if AggregationScheme::from_name(&self.federation.aggregation).is_none() {
            return Err(Invalid::Aggregation(self.federation.aggregation.clone()));
        }
        check_training(&self.training, "training")?;
        if let Some(f) = &self.fairness {
            if f.histogram_bins < 2 || f.histogram_bins > 100 {
                return Err(out_of_range(
                    "fairness.histogram_bins".into(),
                    f.histogram_bins,
                    "2..=100",
                )
                .into());
            }
            accord_crypto::he::check_value_bits(f.value_bits).map_err(Invalid::ValueBits)?;
            self.check_counts_fit(f.value_bits)?;
            accord_crypto::he::keys::parse_verifying_key(&f.auditor_verifying_key)
                .map_err(Invalid::VerifyingKey)?;
            if self.aggregation() != AggregationScheme::SecAgg {
                return Err(Invalid::FairnessNeedsSecAgg);
            }
            accord_proto::fairness::FairnessLayout::new(&self.schema()?, f.histogram_bins as usize)
                .map_err(Invalid::Intersections)?;
        }
        self.mitigation()?;
        self.postprocessing()?;
        check_evaluation(&self.evaluation, "evaluation")?;
        Ok(())
    }

    /// The encrypted fairness counts are summed modulo 2^`value_bits`: the most the
    /// participants' records could sum to must fit, or the fairness phase would abort after the
    /// last round. Known at start when a roster bounds who can take part; without one, checked
    /// for the fewest a phase selects (a lower bound), and each fairness phase checks its own
    /// selection.
    fn check_counts_fit(&self, value_bits: u32) -> Result<(), SettingError> {
        let admissible = self.federation.admissible();
        let (participants, who) = admissible.most.unwrap_or(admissible.least);
        let max_rows = self.secure_aggregation.max_rows_per_participant;
        let most = participants as u128 * u128::from(max_rows);
        if most < 1u128 << value_bits {
            return Ok(());
        }
        Err(SettingError::Contradiction {
            key: "fairness.value_bits".into(),
            value: value_bits.to_string(),
            other: format!("secure_aggregation.max_rows_per_participant = {max_rows} with {who}"),
            why: format!(
                "their counts could sum to {most}, which needs {} bits",
                u128::BITS - most.leading_zeros()
            ),
        })
    }

    /// The schema as it goes on the wire.
    pub fn schema(&self) -> Result<Schema, Invalid> {
        let s = &self.schema;
        let features = s
            .features
            .iter()
            .map(|f| {
                let kind = match f.kind {
                    FeatureType::Numeric => Kind::Numeric(Numeric {
                        min: f.min,
                        max: f.max,
                    }),
                    FeatureType::Boolean => Kind::Boolean(Boolean {}),
                    FeatureType::Categorical => Kind::Categorical(Categorical {
                        categories: f.categories.clone(),
                    }),
                };
                if f.kind != FeatureType::Numeric && (f.min.is_some() || f.max.is_some()) {
                    return Err(Invalid::Feature {
                        feature: f.name.clone(),
                        problem: "is not numeric but has a min or max",
                    });
                }
                if f.kind != FeatureType::Categorical && !f.categories.is_empty() {
                    return Err(Invalid::Feature {
                        feature: f.name.clone(),
                        problem: "is not categorical but lists categories",
                    });
                }
                Ok(Feature {
                    name: f.name.clone(),
                    kind: Some(kind),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Schema {
            features,
            label: Some(LabelRule {
                min: s.label_range.map(|[min, _]| min),
                max: s.label_range.map(|[_, max]| max),
                ..parse_label(&s.label, &s.positive_name)?
            }),
            protected_attributes: s
                .protected
                .iter()
                .map(|p| ProtectedAttribute {
                    name: p.name.clone(),
                    categories: p.categories.clone(),
                    use_as_feature: p.use_as_feature,
                })
                .collect(),
            intersections: s
                .intersections
                .iter()
                .map(|a| accord_proto::v1::Intersection {
                    attributes: a.clone(),
                })
                .collect(),
        })
    }

    /// The training parameters participants use in each round's fit.
    pub fn training_params(&self) -> TrainingParams {
        let t = &self.training;
        TrainingParams {
            local_epochs: t.local_epochs,
            learning_rate: t.learning_rate,
            l2: t.l2,
            batch_size: t.batch_size,
            fedprox_mu: t.fedprox_mu,
        }
    }

    /// The mitigation in force (None for kind "none"), checked against the schema.
    pub fn mitigation(&self) -> Result<Option<FairnessMitigation>, Invalid> {
        mitigation_definition(
            &self.training.mitigation,
            &self.schema()?,
            "training.mitigation",
        )
        .map_err(Invalid::Mitigation)
    }

    /// The post-processing in force (None for thresholds "none"), checked against the schema.
    pub fn postprocessing(&self) -> Result<Option<ThresholdPostprocessing>, Invalid> {
        self.postprocessing
            .definition(&self.schema()?, "postprocessing")
            .map_err(Invalid::Mitigation)
    }

    /// The federation's aggregation scheme (`federation.aggregation`, checked at load).
    pub fn aggregation(&self) -> AggregationScheme {
        AggregationScheme::from_name(&self.federation.aggregation)
            .expect("federation.aggregation is checked when the configuration loads")
    }

    /// The evaluation parameters participants use to measure each round's model.
    pub fn evaluation_params(&self) -> EvaluationParams {
        EvaluationParams {
            histogram_bins: self.evaluation.histogram_bins,
            decision_threshold: self.evaluation.decision_threshold,
            group_gaps: self.evaluation.group_gaps,
        }
    }
}

/// Why a configuration is not usable: what [`ConfigError::Invalid`] carries.
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    /// The schema section does not define a valid schema.
    #[error("schema: {0}")]
    Schema(#[source] SchemaError),
    /// A setting is out of range or contradicts another.
    #[error(transparent)]
    Setting(#[from] SettingError),
    /// A feature's settings do not fit its type.
    #[error("schema: feature '{feature}' {problem}")]
    Feature {
        /// The feature's name.
        feature: String,
        /// What does not fit, e.g. "is not numeric but has a min or max".
        problem: &'static str,
    },
    /// `schema.label` is not a rule.
    #[error(
        "schema.label '{0}' is not of the form '<column> <comparison> <number>', e.g. 'csat >= 4'"
    )]
    LabelRule(String),
    /// A numeric feature has no range, so its standardization sums cannot be bounded.
    #[error("schema: {0}")]
    Unbounded(#[source] accord_proto::layout::UnboundedFeature),
    /// The standardization sums of `max_rows_per_participant` records do not fit the encoding.
    #[error("secure_aggregation.max_rows_per_participant: {0}")]
    RowBound(#[source] accord_proto::standardization::StandardizationError),
    /// `federation.aggregation` names no scheme (given).
    #[error("federation.aggregation '{0}' is not supported (supported: secagg, insecure-plain)")]
    Aggregation(String),
    /// `fairness.value_bits` is outside what the encrypted counts allow.
    #[error("fairness.{0}")]
    ValueBits(#[source] accord_crypto::he::HeError),
    /// `fairness.auditor_verifying_key` is not an Ed25519 public key in hex.
    #[error("fairness.auditor_verifying_key: {0}")]
    VerifyingKey(#[source] accord_crypto::he::HeError),
    /// The encrypted fairness statistics need secure aggregation's masks.
    #[error(
        "fairness needs federation.aggregation = \"secagg\": the encrypted statistics carry secure-aggregation masks"
    )]
    FairnessNeedsSecAgg,
    /// The intersections give no fairness layout.
    #[error("schema.intersections: {0}")]
    Intersections(#[source] accord_proto::fairness::FairnessLayoutError),
    /// `[training.mitigation]` or `[postprocessing]` does not fit the schema.
    #[error(transparent)]
    Mitigation(#[from] crate::mitigation::MitigationConfigError),
}

/// A setting no federation could run with, named by its key (`section.key`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingError {
    /// One value outside what it may be.
    #[error("{key} is {value}; it must be {allowed}")]
    OutOfRange {
        /// The setting's key, `section.key`.
        key: String,
        /// Its value.
        value: String,
        /// What it may be.
        allowed: &'static str,
    },
    /// A list that names the same participant twice.
    #[error("{key} lists '{name}' more than once")]
    Repeated {
        /// The list's key, `section.key`.
        key: String,
        /// The name listed twice.
        name: String,
    },
    /// Two settings that cannot both hold.
    #[error("{key} = {value} contradicts {other}: {why}")]
    Contradiction {
        /// The setting's key, `section.key`.
        key: String,
        /// Its value.
        value: String,
        /// The setting it contradicts.
        other: String,
        /// Why they cannot both hold.
        why: String,
    },
}

fn out_of_range(key: String, value: impl ToString, allowed: &'static str) -> SettingError {
    SettingError::OutOfRange {
        key,
        value: value.to_string(),
        allowed,
    }
}

/// Refuses the first of `values` (keys of `section`) that is 0.
fn at_least_one(section: &str, values: &[(&str, u64)]) -> Result<(), SettingError> {
    match values.iter().find(|(_, value)| *value == 0) {
        Some((key, _)) => Err(out_of_range(format!("{section}.{key}"), 0, "at least 1")),
        None => Ok(()),
    }
}

/// How many participants a federation's settings let take part in one aggregation, and the
/// settings that say so (named in errors).
#[derive(Debug, Clone, PartialEq)]
pub struct Admissible {
    /// The most that can register, e.g. `(3, "the 3 names of federation.roster")`; None when
    /// any member of the consortium may.
    pub most: Option<(usize, String)>,
    /// The fewest selected for a phase that can complete, e.g.
    /// `(3, "federation.min_participants = 3")`.
    pub least: (usize, String),
}

impl ConnectionsSection {
    /// Every limit at least 1, and no more handshakes in progress than open connections
    /// (a handshake holds an open connection).
    pub fn check(&self) -> Result<(), SettingError> {
        at_least_one(
            "connections",
            &[
                ("max_handshakes", u64::from(self.max_handshakes)),
                ("max_open", u64::from(self.max_open)),
                ("handshake_timeout_secs", self.handshake_timeout_secs),
            ],
        )?;
        if self.max_handshakes > self.max_open {
            return Err(SettingError::Contradiction {
                key: "connections.max_handshakes".into(),
                value: self.max_handshakes.to_string(),
                other: format!("connections.max_open = {}", self.max_open),
                why: "every handshake in progress holds an open connection".into(),
            });
        }
        Ok(())
    }
}

impl FederationSection {
    /// Refuses what would leave the coordinator waiting for a registration timeout that cannot
    /// end well: no rounds, zero timeouts, a roster naming someone twice or an observer,
    /// `min_participants` of 0 or above the roster's distinct names, waiting for an empty roster.
    pub fn check(&self) -> Result<(), SettingError> {
        at_least_one(
            "federation",
            &[
                ("rounds", u64::from(self.rounds)),
                ("min_participants", u64::from(self.min_participants)),
                ("registration_timeout_secs", self.registration_timeout_secs),
                ("phase_timeout_secs", self.phase_timeout_secs),
            ],
        )?;
        for (key, names) in [("roster", &self.roster), ("observers", &self.observers)] {
            let mut seen = std::collections::BTreeSet::new();
            for name in names {
                if name.trim().is_empty() {
                    return Err(out_of_range(
                        format!("federation.{key}"),
                        format!("{names:?}"),
                        "certificate names, none of them empty",
                    ));
                }
                if !seen.insert(name) {
                    return Err(SettingError::Repeated {
                        key: format!("federation.{key}"),
                        name: name.clone(),
                    });
                }
            }
        }
        if let Some(both) = self.observers.iter().find(|o| self.roster.contains(o)) {
            return Err(SettingError::Contradiction {
                key: "federation.observers".into(),
                value: format!("[.., \"{both}\", ..]"),
                other: "federation.roster".into(),
                why: format!(
                    "'{both}' is in both, but a certificate has one role, participant or auditor"
                ),
            });
        }
        if !self.roster.is_empty() && self.min_participants as usize > self.roster.len() {
            return Err(SettingError::Contradiction {
                key: "federation.min_participants".into(),
                value: self.min_participants.to_string(),
                other: format!("federation.roster ({} names)", self.roster.len()),
                why: "no more participants can register than the roster names".into(),
            });
        }
        if self.wait_for_roster && self.roster.is_empty() {
            return Err(SettingError::Contradiction {
                key: "federation.wait_for_roster".into(),
                value: "true".into(),
                other: "federation.roster = []".into(),
                why: "there is no roster to wait for".into(),
            });
        }
        Ok(())
    }

    /// How many participants these settings let take part (see [`Admissible`]).
    pub fn admissible(&self) -> Admissible {
        let n = self.roster.len();
        Admissible {
            most: (n > 0).then(|| (n, format!("the {n} names of federation.roster"))),
            least: (
                self.min_participants as usize,
                format!("federation.min_participants = {}", self.min_participants),
            ),
        }
    }
}

impl SecureAggregationSection {
    /// Checks each parameter (keys named `section.key`, e.g. `secure_aggregation.clip` or
    /// `privacy.clip`) and the threshold against who can take part: t above the most that can
    /// register means no phase ever completes; t below more than half of the fewest a phase
    /// selects is refused by every honest participant (Bonawitz et al. 2017 in the
    /// malicious-server form; see `accord_crypto::secagg::minimum_threshold`).
    pub fn check(&self, section: &str, admissible: &Admissible) -> Result<(), SettingError> {
        let key = |name: &str| format!("{section}.{name}");
        if !matches!(self.modulus.as_str(), "z32" | "z64") {
            return Err(out_of_range(
                key("modulus"),
                &self.modulus,
                "\"z32\" or \"z64\"",
            ));
        }
        if InputValidity::from_name(&self.input_validity).is_none() {
            return Err(out_of_range(
                key("input_validity"),
                &self.input_validity,
                "\"range-proofs\" or \"none\"",
            ));
        }
        if self.precision_bits > 52 {
            return Err(out_of_range(
                key("precision_bits"),
                self.precision_bits,
                "at most 52",
            ));
        }
        if !(self.clip.is_finite() && self.clip > 0.0) {
            return Err(out_of_range(key("clip"), self.clip, "positive and finite"));
        }
        if self.max_rows_per_participant == 0 {
            return Err(out_of_range(
                key("max_rows_per_participant"),
                0,
                "at least 1",
            ));
        }
        let t = self.threshold as usize;
        if t == 0 {
            return Ok(());
        }
        if let Some((most, who)) = &admissible.most
            && t > *most
        {
            return Err(SettingError::Contradiction {
                key: key("threshold"),
                value: t.to_string(),
                other: who.clone(),
                why: format!("at most {most} can take part, so no phase could reach {t} survivors"),
            });
        }
        let (least, who) = &admissible.least;
        let minimum = accord_crypto::secagg::minimum_threshold(*least);
        if t < minimum {
            return Err(SettingError::Contradiction {
                key: key("threshold"),
                value: t.to_string(),
                other: who.clone(),
                why: format!(
                    "a phase selects at least {least}, and honest participants refuse a threshold below more than half of those selected ({minimum}); 0 picks it"
                ),
            });
        }
        Ok(())
    }
}

/// Positive epochs, batch size and learning rate; finite, non-negative L2 and FedProx μ.
pub fn check_training(training: &TrainingSection, section: &str) -> Result<(), SettingError> {
    let key = |name: &str| format!("{section}.{name}");
    at_least_one(
        section,
        &[
            ("local_epochs", u64::from(training.local_epochs)),
            ("batch_size", u64::from(training.batch_size)),
        ],
    )?;
    if !(training.learning_rate.is_finite() && training.learning_rate > 0.0) {
        return Err(out_of_range(
            key("learning_rate"),
            training.learning_rate,
            "positive and finite",
        ));
    }
    for (name, value) in [("l2", training.l2), ("fedprox_mu", training.fedprox_mu)] {
        if !(value.is_finite() && value >= 0.0) {
            return Err(out_of_range(key(name), value, "finite and not negative"));
        }
    }
    Ok(())
}

/// 2 to 10000 histogram bins and a decision threshold in (0, 1).
pub fn check_evaluation(evaluation: &EvaluationSection, section: &str) -> Result<(), SettingError> {
    if !(2..=accord_proto::schema::MAX_EVALUATION_BINS).contains(&evaluation.histogram_bins) {
        return Err(out_of_range(
            format!("{section}.histogram_bins"),
            evaluation.histogram_bins,
            "in 2..=10000",
        ));
    }
    let t = evaluation.decision_threshold;
    if !(t > 0.0 && t < 1.0) {
        return Err(out_of_range(
            format!("{section}.decision_threshold"),
            t,
            "in (0, 1)",
        ));
    }
    Ok(())
}

/// Parses "`<column> <comparison> <number>`", e.g. "csat >= 4".
fn parse_label(rule: &str, positive_name: &str) -> Result<LabelRule, Invalid> {
    let bad = || Invalid::LabelRule(rule.to_owned());
    let parts: Vec<&str> = rule.split_whitespace().collect();
    let [column, symbol, number] = parts.as_slice() else {
        return Err(bad());
    };
    let comparison = Comparison::from_symbol(symbol).ok_or_else(bad)?;
    let threshold: f64 = number.parse().map_err(|_| bad())?;
    Ok(LabelRule {
        column: (*column).to_owned(),
        comparison: comparison as i32,
        threshold,
        positive_name: positive_name.to_owned(),
        min: None,
        max: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_rules_parse_or_say_why_not() {
        let rule = parse_label("csat >= 4", "satisfied").unwrap();
        assert_eq!(
            (rule.column.as_str(), rule.comparison(), rule.threshold),
            ("csat", Comparison::Ge, 4.0)
        );
        let rule = parse_label("nps > 8", "promoter").unwrap();
        assert_eq!(rule.comparison(), Comparison::Gt);
        for bad in ["csat>=4", "csat >= four", "csat ~ 4", ""] {
            match parse_label(bad, "x") {
                Err(Invalid::LabelRule(rule)) => assert_eq!(rule, bad),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }
}

#[cfg(test)]
mod connections_tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../examples/coordinator.toml");

    #[test]
    fn connection_limits_default_and_refuse_zero_naming_the_key() {
        let config = CoordinatorConfig::parse(EXAMPLE, Path::new("coordinator.toml")).unwrap();
        assert_eq!(config.connections, ConnectionsSection::default());
        for key in ["max_handshakes", "max_open", "handshake_timeout_secs"] {
            let text = EXAMPLE.replace(&format!("\n{key} = "), &format!("\n{key} = 0 # "));
            assert_ne!(text, EXAMPLE, "the example sets {key}");
            let error = CoordinatorConfig::parse(&text, Path::new("coordinator.toml"))
                .expect_err(key)
                .to_string();
            assert_eq!(
                error,
                format!("coordinator.toml: connections.{key} is 0; it must be at least 1")
            );
        }
    }
}

#[cfg(test)]
mod fairness_tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../examples/coordinator.toml");

    fn with_fairness(section: &str) -> Result<CoordinatorConfig, ConfigError> {
        let text =
            format!("{EXAMPLE}\n[fairness]\nauditor_server_bundle = \"a.bundle\"\n{section}\n");
        CoordinatorConfig::parse(&text, Path::new("coordinator.toml"))
    }

    #[test]
    fn a_bad_fairness_section_is_refused_naming_the_key() {
        // The Ed25519 base point: a valid verifying key.
        let key = "auditor_verifying_key = \"58".to_owned() + &"66".repeat(31) + "\"";
        assert!(with_fairness(&key).is_ok());
        let cases = [
            (format!("{key}\nvalue_bits = 15"), "value_bits must be even"),
            (format!("{key}\nvalue_bits = 40"), "value_bits must be even"),
            (
                format!("{key}\nhistogram_bins = 1"),
                "fairness.histogram_bins",
            ),
            (
                "auditor_verifying_key = \"not hex\"".into(),
                "fairness.auditor_verifying_key",
            ),
        ];
        for (section, expected) in cases {
            let error = with_fairness(&section).expect_err(expected).to_string();
            assert!(error.contains(expected), "{error}");
        }
    }

    /// Counts modulo 2^16 cannot hold what the example's roster of three could sum to with a
    /// million records each: refused at start, naming both keys, rather than when the fairness
    /// phase opens after the last round. With 20,000 records each (60,000 < 65,536) they fit;
    /// with a fourth member (80,000) they do not.
    #[test]
    fn value_bits_too_few_for_the_row_bound_are_refused_at_start() {
        let section =
            "auditor_verifying_key = \"58".to_owned() + &"66".repeat(31) + "\"\nvalue_bits = 16";
        let error = with_fairness(&section)
            .expect_err("3 × 1,000,000 records do not fit in 16 bits")
            .to_string();
        assert_eq!(
            error,
            "coordinator.toml: fairness.value_bits = 16 contradicts \
             secure_aggregation.max_rows_per_participant = 1000000 with the 3 names of \
             federation.roster: their counts could sum to 3000000, which needs 22 bits"
        );
        let text =
            format!("{EXAMPLE}\n[fairness]\nauditor_server_bundle = \"a.bundle\"\n{section}\n")
                .replace(
                    "max_rows_per_participant = 1000000",
                    "max_rows_per_participant = 20000",
                );
        assert!(CoordinatorConfig::parse(&text, Path::new("coordinator.toml")).is_ok());
        let four = text.replace(
            "roster = [\"org-1\", \"org-2\", \"org-3\"]",
            "roster = [\"org-1\", \"org-2\", \"org-3\", \"org-4\"]",
        );
        let error = CoordinatorConfig::parse(&four, Path::new("coordinator.toml"))
            .expect_err("4 × 20,000 = 80,000 does not fit in 16 bits")
            .to_string();
        assert!(
            error.contains("with the 4 names of federation.roster: their counts could sum to 80000, which needs 17 bits"),
            "{error}"
        );
    }
}

#[cfg(test)]
mod settings_tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../examples/coordinator.toml");

    /// The example with `key = value` (a key the example sets) replaced, or appended to the
    /// `[section]` if the example does not set it.
    fn with(section: &str, key: &str, value: &str) -> Result<CoordinatorConfig, ConfigError> {
        let line = format!("\n{key} = ");
        let text = if let Some(at) = EXAMPLE
            .find(&format!("\n[{section}]"))
            .and_then(|s| EXAMPLE[s..].find(&line).map(|i| s + i))
        {
            let end = at + 1 + EXAMPLE[at + 1..].find('\n').unwrap();
            format!("{}\n{key} = {value}{}", &EXAMPLE[..at], &EXAMPLE[end..])
        } else {
            EXAMPLE.replace(
                &format!("\n[{section}]\n"),
                &format!("\n[{section}]\n{key} = {value}\n"),
            )
        };
        CoordinatorConfig::parse(&text, Path::new("conf/coordinator.toml"))
    }

    fn refused(section: &str, key: &str, value: &str) -> String {
        with(section, key, value)
            .expect_err(&format!("{section}.{key} = {value}"))
            .to_string()
    }

    #[test]
    fn the_example_and_safe_rosters_are_accepted() {
        assert!(with("federation", "min_participants", "3").is_ok());
        assert!(with("federation", "roster", "[]").is_ok());
        // No roster: any member may register, so no upper bound on t.
        let open = EXAMPLE
            .replace("roster = [\"org-1\", \"org-2\", \"org-3\"]", "roster = []")
            .replace("threshold = 0 ", "threshold = 7 ");
        assert!(CoordinatorConfig::parse(&open, Path::new("c.toml")).is_ok());
        assert!(with("secure_aggregation", "threshold", "3").is_ok());
        assert!(with("secure_aggregation", "threshold", "2").is_ok());
    }

    /// The two rosters, refused at load with the file and the keys named.
    #[test]
    fn impossible_rosters_are_refused_naming_the_key() {
        let cases = [
            (
                "roster",
                "[\"org-1\", \"org-1\", \"org-2\"]",
                "federation.roster lists 'org-1' more than once",
            ),
            (
                "min_participants",
                "5",
                "federation.min_participants = 5 contradicts federation.roster (3 names): no more participants can register than the roster names",
            ),
            (
                "roster",
                "[\"org-1\", \"\"]",
                "federation.roster is [\"org-1\", \"\"]; it must be certificate names, none of them empty",
            ),
            (
                "observers",
                "[\"org-2\"]",
                "federation.observers = [.., \"org-2\", ..] contradicts federation.roster: 'org-2' is in both, but a certificate has one role, participant or auditor",
            ),
            (
                "observers",
                "[\"m\", \"m\"]",
                "federation.observers lists 'm' more than once",
            ),
        ];
        for (key, value, expected) in cases {
            assert_eq!(
                refused("federation", key, value),
                format!("conf/coordinator.toml: {expected}")
            );
        }
        let unrostered_wait = EXAMPLE
            .replace("roster = [\"org-1\", \"org-2\", \"org-3\"]", "roster = []")
            .replace("wait_for_roster = false", "wait_for_roster = true");
        assert_eq!(
            CoordinatorConfig::parse(&unrostered_wait, Path::new("c.toml"))
                .unwrap_err()
                .to_string(),
            "c.toml: federation.wait_for_roster = true contradicts federation.roster = []: there is no roster to wait for"
        );
    }

    #[test]
    fn zero_counts_and_timeouts_are_refused_naming_the_key() {
        for key in [
            "rounds",
            "min_participants",
            "registration_timeout_secs",
            "phase_timeout_secs",
        ] {
            assert_eq!(
                refused("federation", key, "0"),
                format!("conf/coordinator.toml: federation.{key} is 0; it must be at least 1")
            );
        }
        assert_eq!(
            refused("connections", "max_handshakes", "600"),
            "conf/coordinator.toml: connections.max_handshakes = 600 contradicts connections.max_open = 512: every handshake in progress holds an open connection"
        );
    }

    #[test]
    fn impossible_secure_aggregation_settings_are_refused_naming_the_key() {
        let cases = [
            (
                "clip",
                "0.0",
                "secure_aggregation.clip is 0; it must be positive and finite",
            ),
            (
                "clip",
                "-1.0",
                "secure_aggregation.clip is -1; it must be positive and finite",
            ),
            (
                "clip",
                "nan",
                "secure_aggregation.clip is NaN; it must be positive and finite",
            ),
            (
                "clip",
                "inf",
                "secure_aggregation.clip is inf; it must be positive and finite",
            ),
            (
                "max_rows_per_participant",
                "0",
                "secure_aggregation.max_rows_per_participant is 0; it must be at least 1",
            ),
            (
                "precision_bits",
                "53",
                "secure_aggregation.precision_bits is 53; it must be at most 52",
            ),
            (
                "modulus",
                "\"z16\"",
                "secure_aggregation.modulus is z16; it must be \"z32\" or \"z64\"",
            ),
            (
                "threshold",
                "4",
                "secure_aggregation.threshold = 4 contradicts the 3 names of federation.roster: at most 3 can take part, so no phase could reach 4 survivors",
            ),
            (
                "threshold",
                "1",
                "secure_aggregation.threshold = 1 contradicts federation.min_participants = 3: a phase selects at least 3, and honest participants refuse a threshold below more than half of those selected (2); 0 picks it",
            ),
        ];
        for (key, value, expected) in cases {
            assert_eq!(
                refused("secure_aggregation", key, value),
                format!("conf/coordinator.toml: {expected}")
            );
        }
    }

    #[test]
    fn impossible_training_and_evaluation_settings_are_refused_naming_the_key() {
        let cases = [
            (
                "training",
                "local_epochs",
                "0",
                "is 0; it must be at least 1",
            ),
            ("training", "batch_size", "0", "is 0; it must be at least 1"),
            (
                "training",
                "learning_rate",
                "0.0",
                "is 0; it must be positive and finite",
            ),
            (
                "training",
                "learning_rate",
                "nan",
                "is NaN; it must be positive and finite",
            ),
            (
                "training",
                "l2",
                "-0.5",
                "is -0.5; it must be finite and not negative",
            ),
            (
                "training",
                "fedprox_mu",
                "inf",
                "is inf; it must be finite and not negative",
            ),
            (
                "evaluation",
                "histogram_bins",
                "1",
                "is 1; it must be in 2..=10000",
            ),
            (
                "evaluation",
                "decision_threshold",
                "1.0",
                "is 1; it must be in (0, 1)",
            ),
        ];
        for (section, key, value, expected) in cases {
            assert_eq!(
                refused(section, key, value),
                format!("conf/coordinator.toml: {section}.{key} {expected}")
            );
        }
    }
}

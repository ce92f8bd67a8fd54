//! `coordinator.toml`: the federation's one definition (schema, training and evaluation
//! parameters, who may join) and the coordinator's own files. Relative paths are taken from the
//! file's folder. The schema defined here is what every participant receives.

use crate::mitigation::{MitigationSection, PostprocessingSection};
use accord_proto::schema::{SchemaError, validate};
use accord_proto::v1::{
    Boolean, Categorical, Comparison, EvaluationParams, FairnessMitigation, Feature, LabelRule,
    Numeric, ProtectedAttribute, Schema, SecAggParams, ThresholdPostprocessing, TrainingParams,
    feature::Kind,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    pub federation_id: String,
    /// Address to listen on, "host:port" (port 0 picks a free one).
    pub listen: String,
    /// Where model.json and rounds.csv are written.
    pub out_dir: PathBuf,
    /// If set, the bound address is written here once the coordinator listens.
    pub address_file: Option<PathBuf>,
    pub tls: TlsFiles,
    /// Limits on connections, so that clients that never authenticate cannot exhaust the
    /// coordinator's file descriptors or memory.
    #[serde(default)]
    pub connections: ConnectionsSection,
    pub federation: FederationSection,
    #[serde(default)]
    pub training: TrainingSection,
    #[serde(default)]
    pub evaluation: EvaluationSection,
    #[serde(default)]
    pub secure_aggregation: SecureAggregationSection,
    /// The encrypted fairness audit of the final model (none: no audit).
    pub fairness: Option<FairnessSection>,
    /// Per-group decision thresholds chosen after the last round.
    #[serde(default)]
    pub postprocessing: PostprocessingSection,
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

/// Input validity by Bulletproofs range proofs over Pedersen commitments.
pub const RANGE_PROOFS: &str = "range-proofs";

impl Default for SecureAggregationSection {
    fn default() -> Self {
        Self {
            modulus: "z64".into(),
            precision_bits: 24,
            clip: 50.0,
            max_rows_per_participant: 1_000_000,
            threshold: 0,
            neighbours: 0,
            input_validity: RANGE_PROOFS.into(),
        }
    }
}

impl SecureAggregationSection {
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub certificate: PathBuf,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationSection {
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
    #[serde(default = "default_registration_timeout")]
    pub registration_timeout_secs: u64,
    /// Start the first round only once every roster member registered (or the registration
    /// timeout passed), rather than as soon as `min_participants` have.
    #[serde(default)]
    pub wait_for_roster: bool,
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
    accord_crypto::secagg::SCHEME.into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingSection {
    pub local_epochs: u32,
    pub learning_rate: f64,
    pub l2: f64,
    pub batch_size: u32,
    pub fedprox_mu: f64,
    /// `[training.mitigation]`: fairness-aware training (written to model.json when in force).
    #[serde(skip_serializing_if = "MitigationSection::is_none")]
    pub mitigation: MitigationSection,
}

impl Default for TrainingSection {
    fn default() -> Self {
        Self {
            local_epochs: 2,
            learning_rate: 0.1,
            l2: 1e-3,
            batch_size: 32,
            fedprox_mu: 0.0,
            mitigation: MitigationSection::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluationSection {
    pub histogram_bins: u32,
    pub decision_threshold: f64,
}

impl Default for EvaluationSection {
    fn default() -> Self {
        Self {
            histogram_bins: 100,
            decision_threshold: 0.5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaSection {
    /// The label rule, "<column> <comparison> <number>", e.g. "csat >= 4".
    pub label: String,
    #[serde(default = "default_positive_name")]
    pub positive_name: String,
    /// The label column's valid range, e.g. [1, 5] for CSAT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_range: Option<[f64; 2]>,
    pub features: Vec<FeatureEntry>,
    #[serde(default)]
    pub protected: Vec<ProtectedEntry>,
    /// Intersections of protected attributes that fairness reports break down, e.g.
    /// `[["gender", "age_band"]]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intersections: Vec<Vec<String>>,
}

fn default_positive_name() -> String {
    "satisfied".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureEntry {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FeatureType,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// A numeric feature's valid range (either bound optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FeatureType {
    Numeric,
    Boolean,
    Categorical,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectedEntry {
    pub name: String,
    pub categories: Vec<String>,
    #[serde(default)]
    pub use_as_feature: bool,
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
    #[error("{path}: schema: {source}")]
    Schema { path: PathBuf, source: SchemaError },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl CoordinatorConfig {
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
            Invalid::Other(message) => ConfigError::Invalid {
                path: path.into(),
                message,
            },
        })?;
        Ok(config)
    }

    fn check(&self) -> Result<(), Invalid> {
        validate(&self.schema()?).map_err(Invalid::Schema)?;
        let c = &self.connections;
        for (key, value) in [
            ("max_handshakes", u64::from(c.max_handshakes)),
            ("max_open", u64::from(c.max_open)),
            ("handshake_timeout_secs", c.handshake_timeout_secs),
        ] {
            if value == 0 {
                return Err(Invalid::Other(format!(
                    "connections.{key} must be at least 1"
                )));
            }
        }
        let f = &self.federation;
        if f.rounds == 0 {
            return Err(Invalid::Other(
                "federation.rounds must be at least 1".into(),
            ));
        }
        if f.min_participants == 0 {
            return Err(Invalid::Other(
                "federation.min_participants must be at least 1".into(),
            ));
        }
        match f.aggregation.as_str() {
            crate::aggregation::INSECURE_PLAIN => {}
            accord_crypto::secagg::SCHEME => {
                let s = &self.secure_aggregation;
                if !matches!(s.modulus.as_str(), "z32" | "z64") {
                    return Err(Invalid::Other(format!(
                        "secure_aggregation.modulus '{}' is not one of z32, z64",
                        s.modulus
                    )));
                }
                if !matches!(s.input_validity.as_str(), RANGE_PROOFS | "none") {
                    return Err(Invalid::Other(format!(
                        "secure_aggregation.input_validity '{}' is not one of {RANGE_PROOFS}, none",
                        s.input_validity
                    )));
                }
                if !(s.clip.is_finite() && s.clip > 0.0)
                    || s.max_rows_per_participant == 0
                    || s.precision_bits > 52
                {
                    return Err(Invalid::Other(
                        "secure_aggregation: clip and max_rows_per_participant must be positive, precision_bits at most 52".into(),
                    ));
                }
                accord_proto::layout::column_magnitudes(&self.schema()?)
                    .map_err(|e| Invalid::Other(format!("schema: {e}")))?;
            }
            other => {
                return Err(Invalid::Other(format!(
                    "federation.aggregation '{other}' is not supported (supported: secagg, insecure-plain)"
                )));
            }
        }
        let t = &self.training;
        let positive = |v: f64| v.is_finite() && v > 0.0;
        let non_negative = |v: f64| v.is_finite() && v >= 0.0;
        if t.local_epochs == 0 || t.batch_size == 0 || !positive(t.learning_rate) {
            return Err(Invalid::Other(
                "training: local_epochs, batch_size and learning_rate must be positive".into(),
            ));
        }
        if !non_negative(t.l2) || !non_negative(t.fedprox_mu) {
            return Err(Invalid::Other(
                "training: l2 and fedprox_mu must be finite and not negative".into(),
            ));
        }
        if let Some(f) = &self.fairness {
            if f.histogram_bins < 2 || f.histogram_bins > 100 {
                return Err(Invalid::Other(format!(
                    "fairness.histogram_bins must be 2..=100, got {}",
                    f.histogram_bins
                )));
            }
            accord_crypto::he::check_value_bits(f.value_bits)
                .map_err(|e| Invalid::Other(format!("fairness.{e}")))?;
            accord_crypto::he::keys::parse_verifying_key(&f.auditor_verifying_key)
                .map_err(|e| Invalid::Other(format!("fairness.auditor_verifying_key: {e}")))?;
            if self.federation.aggregation != accord_crypto::secagg::SCHEME {
                return Err(Invalid::Other(
                    "fairness needs federation.aggregation = \"secagg\": the encrypted statistics carry secure-aggregation masks".into(),
                ));
            }
            accord_proto::fairness::FairnessLayout::new(&self.schema()?, f.histogram_bins as usize)
                .map_err(|e| Invalid::Other(format!("schema.intersections: {e}")))?;
        }
        self.mitigation()?;
        self.postprocessing()?;
        let e = &self.evaluation;
        let usable = (2..=accord_proto::schema::MAX_EVALUATION_BINS).contains(&e.histogram_bins)
            && e.decision_threshold > 0.0
            && e.decision_threshold < 1.0;
        if !usable {
            return Err(Invalid::Other(
                "evaluation: histogram_bins must be 2..=10000 and decision_threshold in (0, 1)"
                    .into(),
            ));
        }
        Ok(())
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
                    return Err(Invalid::Other(format!(
                        "schema: feature '{}' is not numeric but has a min or max",
                        f.name
                    )));
                }
                if f.kind != FeatureType::Categorical && !f.categories.is_empty() {
                    return Err(Invalid::Other(format!(
                        "schema: feature '{}' is not categorical but lists categories",
                        f.name
                    )));
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
        self.training
            .mitigation
            .definition(&self.schema()?, "training.mitigation")
            .map_err(|e| Invalid::Other(e.to_string()))
    }

    /// The post-processing in force (None for thresholds "none"), checked against the schema.
    pub fn postprocessing(&self) -> Result<Option<ThresholdPostprocessing>, Invalid> {
        self.postprocessing
            .definition(&self.schema()?, "postprocessing")
            .map_err(|e| Invalid::Other(e.to_string()))
    }

    pub fn evaluation_params(&self) -> EvaluationParams {
        EvaluationParams {
            histogram_bins: self.evaluation.histogram_bins,
            decision_threshold: self.evaluation.decision_threshold,
        }
    }
}

/// Why a configuration is not usable.
#[derive(Debug)]
pub enum Invalid {
    Schema(SchemaError),
    Other(String),
}

/// Parses "<column> <comparison> <number>", e.g. "csat >= 4".
fn parse_label(rule: &str, positive_name: &str) -> Result<LabelRule, Invalid> {
    let bad = || {
        Invalid::Other(format!(
            "schema.label '{rule}' is not of the form '<column> <comparison> <number>', e.g. 'csat >= 4'"
        ))
    };
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
                Err(Invalid::Other(message)) => {
                    assert!(message.contains("is not of the form"), "{message}")
                }
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
                format!("coordinator.toml: connections.{key} must be at least 1")
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
}

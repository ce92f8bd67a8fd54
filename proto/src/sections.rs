//! The sections of a federation's definition as people write them in `coordinator.toml` and as
//! `model.json` records them: the schema, local training (with its fairness-aware mitigation)
//! and evaluation. One definition serves the coordinator's configuration, the model file and
//! whoever reads it (the auditor, the demo), so the file formats cannot drift from the
//! configuration. Checking the values against each other is the coordinator's job
//! (`accord_coordinator::config`); these are the formats only.

use serde::{Deserialize, Serialize};

/// `[training]`: local training, the same for every participant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingSection {
    /// Passes over its data each participant makes per round.
    pub local_epochs: u32,
    /// The step size of local gradient descent.
    pub learning_rate: f64,
    /// The L2 penalty on the weights.
    pub l2: f64,
    /// Records per local gradient step.
    pub batch_size: u32,
    /// FedProx μ: the proximal term pulling local weights to the global model (0: FedAvg).
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

/// `[evaluation]`: how the global model is evaluated each round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluationSection {
    /// Bins of the score histograms (ROC AUC is exact up to the bin width).
    pub histogram_bins: u32,
    /// A record is predicted positive when its score is at least this.
    pub decision_threshold: f64,
    /// Participants also sum every protected attribute's per-group counts in each evaluation,
    /// so rounds.csv states each round's demographic-parity and equal-opportunity gaps; the
    /// coordinator then learns those consortium-wide group counts (off by default).
    #[serde(default)]
    pub group_gaps: bool,
}

impl Default for EvaluationSection {
    fn default() -> Self {
        Self {
            histogram_bins: 100,
            decision_threshold: 0.5,
            group_gaps: false,
        }
    }
}

/// `[schema]`: the features, the label rule and the protected attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaSection {
    /// The label rule, `"<column> <comparison> <number>"`, e.g. "csat >= 4".
    pub label: String,
    /// What the positive class is called in outputs (default "satisfied").
    #[serde(default = "default_positive_name")]
    pub positive_name: String,
    /// The label column's valid range, e.g. [1, 5] for CSAT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_range: Option<[f64; 2]>,
    /// The model's features, in order.
    pub features: Vec<FeatureEntry>,
    /// The protected attributes fairness is measured over.
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

/// One feature of the schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureEntry {
    /// The feature's name, which participants map their columns onto.
    pub name: String,
    /// Numeric, boolean or categorical (`type` in the file).
    #[serde(rename = "type")]
    pub kind: FeatureType,
    /// A categorical feature's categories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// A numeric feature's valid range (either bound optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// See `min`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// A feature's type.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FeatureType {
    /// A number, standardized with the consortium's mean and standard deviation.
    Numeric,
    /// true or false.
    Boolean,
    /// One of `categories`.
    Categorical,
}

/// A protected attribute (e.g. gender, age band).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectedEntry {
    /// The attribute's name.
    pub name: String,
    /// Its categories; a value outside them counts as `unknown`.
    pub categories: Vec<String>,
    /// Whether the model may also use it as a feature.
    #[serde(default)]
    pub use_as_feature: bool,
}

/// `[training.mitigation]`: fairness-aware training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MitigationSection {
    /// "none", "fairfed", "regularizer" or "reweighing".
    pub kind: String,
    /// FairFed β, the penalty's λ, or the reweighing interpolation in [0, 1]; 0 is plain FedAvg.
    pub strength: f64,
    /// "demographic_parity" or "equal_opportunity".
    pub metric: String,
    /// The protected attribute whose groups are compared.
    pub attribute: String,
    /// Groups with fewer records are left out of rates and gaps.
    pub min_group_size: u64,
}

impl Default for MitigationSection {
    fn default() -> Self {
        Self {
            kind: "none".into(),
            strength: 1.0,
            metric: "demographic_parity".into(),
            attribute: String::new(),
            min_group_size: 30,
        }
    }
}

impl MitigationSection {
    /// Plain FedAvg: no fairness-aware training.
    pub fn is_none(&self) -> bool {
        self.kind == "none"
    }
}

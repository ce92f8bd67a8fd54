//! `model.json`: the trained model with its schema, standardization, training settings, quality
//! and a content hash, and the model's *drivers of satisfaction* in words a service manager can
//! read.
//!
//! The file is a contract between the coordinator, which writes it, and whoever reads it: the
//! auditor (whose report names the model's content hash), the demo and anyone using the model.
//! It is defined here, beside the wire messages, so none of them depends on the coordinator.
//! The coordinator computes what goes in it (quality, thresholds) and writes rounds.csv.

use crate::sections::{EvaluationSection, SchemaSection, TrainingSection};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The version tag of the model.json format (documented in README.md).
pub const MODEL_FORMAT: &str = "accord.model.v1";

/// `model.json`: the trained model with everything needed to use and check it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelArtefact {
    /// [`MODEL_FORMAT`].
    pub format: String,
    /// The federation that trained the model.
    pub federation_id: String,
    /// The schema the model's columns come from.
    pub schema: SchemaSection,
    /// The encoded feature columns, in the order of `weights`.
    pub columns: Vec<String>,
    /// The consortium-wide means and standard deviations the columns were standardized with.
    pub standardization: StandardizationJson,
    /// Coefficients per standardized column: the change in log-odds of the positive class per
    /// standard deviation of the column.
    pub weights: Vec<f64>,
    /// The intercept, in log-odds.
    pub intercept: f64,
    /// Rounds the federation was configured for.
    pub rounds: u32,
    /// Rounds whose fit made a new model (the others aborted).
    pub rounds_completed: u32,
    /// The participants whose fit uploads made these weights (the last round whose fit
    /// completed); 0 if none did.
    pub participants: u32,
    /// The aggregation scheme the federation used ("secagg" or "insecure-plain").
    pub aggregation: String,
    /// The local training the participants ran.
    pub training: TrainingSection,
    /// How the model was evaluated.
    pub evaluation: EvaluationSection,
    /// The quality of the model written (the weights above), from its aggregated evaluation
    /// with the single decision threshold; `quality.round` is the round that made it. None when
    /// that model's evaluation aborted: an earlier model's figures are never carried over.
    pub quality: Option<Quality>,
    /// Per-group decision thresholds in force, when the federation post-processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postprocessing: Option<PostprocessingJson>,
    /// `"sha256:<hex>"` of this document's canonical JSON with this field empty.
    pub content_hash: String,
}

/// The standardization of the numeric columns, from the consortium's exact sums.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardizationJson {
    /// Records the sums cover.
    pub count: u64,
    /// Per column, in the order of `columns`.
    pub means: Vec<f64>,
    /// Per column (1 for a constant column).
    pub std_devs: Vec<f64>,
}

/// The largest model.json a verifier reads (a model of thousands of columns is a few MiB).
pub const MAX_MODEL_BYTES: u64 = 64 << 20;

/// Why model.json (or another file of a federation's outcome) was not read or written.
#[derive(Debug, thiserror::Error)]
pub enum ArtefactError {
    /// The file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_MODEL_BYTES`].
    #[error("{path}: {size} bytes, more than the {limit} bytes accepted for a model")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes (at least).
        size: u64,
        /// [`MAX_MODEL_BYTES`].
        limit: u64,
    },
    /// The file is not a model.json of this format.
    #[error("{path}: not an Accord model: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The content does not hash to the hash the file states.
    #[error(
        "{path}: content hash mismatch: the file says {stated}, its content hashes to {actual}"
    )]
    HashMismatch {
        /// The file.
        path: PathBuf,
        /// The hash the file states.
        stated: String,
        /// The hash of its content.
        actual: String,
    },
}

impl ModelArtefact {
    /// The hash of the canonical JSON of everything but `content_hash`.
    pub fn compute_hash(&self) -> String {
        let mut body = self.clone();
        body.content_hash = String::new();
        let bytes = serde_json::to_vec(&body).expect("a model serializes");
        format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
    }

    /// The model with its content hash set.
    pub fn seal(mut self) -> Self {
        self.content_hash = self.compute_hash();
        self
    }

    /// Writes the model as pretty JSON, atomically ([`write_atomically`]).
    ///
    /// # Errors
    /// [`ArtefactError::Io`] with the path.
    pub fn write(&self, path: &Path) -> Result<(), ArtefactError> {
        let text = serde_json::to_string_pretty(self).expect("a model serializes");
        write_atomically(path, text.as_bytes())
    }

    /// Reads a model.json of at most [`MAX_MODEL_BYTES`] (the size is checked before and while
    /// reading) and checks its format and content hash.
    ///
    /// # Errors
    /// [`ArtefactError`] naming the file: unreadable, too large, not this format, or a hash
    /// that does not match the content.
    pub fn load(path: &Path) -> Result<Self, ArtefactError> {
        let text = read_model_text(path)?;
        let model: Self = serde_json::from_str(&text).map_err(|e| ArtefactError::Format {
            path: path.into(),
            message: e.to_string(),
        })?;
        if model.format != MODEL_FORMAT {
            return Err(ArtefactError::Format {
                path: path.into(),
                message: format!("format '{}', expected '{MODEL_FORMAT}'", model.format),
            });
        }
        let actual = model.compute_hash();
        if actual != model.content_hash {
            return Err(ArtefactError::HashMismatch {
                path: path.into(),
                stated: model.content_hash,
                actual,
            });
        }
        Ok(model)
    }

    /// The drivers of the positive class, strongest first.
    pub fn drivers(&self) -> Vec<Driver> {
        let mut drivers: Vec<Driver> = self
            .columns
            .iter()
            .zip(&self.weights)
            .zip(&self.standardization.std_devs)
            .map(|((column, &coefficient), &std_dev)| Driver {
                column: column.clone(),
                coefficient,
                std_dev,
            })
            .collect();
        drivers.sort_by(|a, b| b.coefficient.abs().total_cmp(&a.coefficient.abs()));
        drivers
    }

    /// The drivers as a short text for a service manager.
    pub fn describe_drivers(&self, top: usize) -> String {
        let positive = &self.schema.positive_name;
        let mut out = format!(
            "What drives '{positive}' ({}), strongest first. Effect on the odds of a {positive} customer\n\
             when the factor rises by one standard deviation (SD), all else equal:\n",
            self.schema.label
        );
        for d in self.drivers().iter().take(top) {
            let _ = writeln!(out, "  {}", d.sentence());
        }
        out
    }
}

/// One coefficient, in standardized units.
#[derive(Debug, Clone, PartialEq)]
pub struct Driver {
    /// The encoded column ("wait_seconds", "channel=chat").
    pub column: String,
    /// The change in log-odds per standard deviation.
    pub coefficient: f64,
    /// One standard deviation of the column, in its own units.
    pub std_dev: f64,
}

impl Driver {
    /// The driver in words: its direction, strength and effect on the odds.
    pub fn sentence(&self) -> String {
        let odds = self.coefficient.exp();
        let strength = match self.coefficient.abs() {
            a if a >= 1.0 => "strongly",
            a if a >= 0.3 => "clearly",
            a if a >= 0.1 => "slightly",
            _ => "hardly",
        };
        let direction = if self.coefficient >= 0.0 {
            "raises"
        } else {
            "lowers"
        };
        let change = (odds - 1.0).abs() * 100.0;
        let factor = match self.column.split_once('=') {
            Some((name, value)) => format!("{name} is {value}"),
            None => self.column.clone(),
        };
        format!(
            "{sign} {factor:<34} {strength} {direction} the odds ({:+.2} log-odds, {}{change:.0}%; 1 SD = {})",
            self.coefficient,
            if self.coefficient >= 0.0 { "+" } else { "-" },
            format_sd(self.std_dev),
            sign = if self.coefficient >= 0.0 { "+" } else { "-" },
        )
    }
}

fn format_sd(sd: f64) -> String {
    if sd >= 100.0 {
        format!("{sd:.0}")
    } else {
        format!("{sd:.3}")
    }
}

/// One model's quality on the consortium's evaluation data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quality {
    /// The round whose global model was evaluated (its fit phase made the model).
    pub round: u32,
    /// Records evaluated.
    pub samples: u64,
    /// Share of records classified correctly at the decision threshold.
    pub accuracy: f64,
    /// Mean log loss (natural log).
    pub log_loss: f64,
    /// Mean Brier score.
    pub brier: f64,
    /// ROC AUC; None when the evaluated data hold only one class.
    pub auc: Option<f64>,
    /// Share of the positive class (e.g. satisfied) in the evaluated data.
    pub positive_rate: f64,
}

/// A figure for people: four decimals, or "undefined" (the caller states why).
pub fn figure(value: Option<f64>) -> String {
    value.map_or_else(|| "undefined".to_owned(), |v| format!("{v:.4}"))
}

/// The thresholds in force, as model.json records them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostprocessingJson {
    /// "equal_opportunity" or "demographic_parity".
    pub thresholds: String,
    /// The protected attribute whose groups get their own thresholds.
    pub attribute: String,
    /// How far toward equal rates the thresholds move, in [0, 1].
    pub strength: f64,
    /// Groups with fewer records keep the single decision threshold.
    pub min_group_size: u64,
    /// The bins of the score histograms the thresholds sit on the edges of.
    pub histogram_bins: u32,
    /// Per group (categories, then unknown): positive when the predicted probability is in a bin
    /// at or above `bin`, i.e. at least `threshold` = bin / histogram_bins.
    pub groups: Vec<GroupThresholdJson>,
    /// On the final model's aggregated histograms: accuracy and the targeted gap with the
    /// single decision threshold, and with the thresholds in force (`null` when undefined: no
    /// records, or fewer than two groups to compare).
    pub accuracy_before: Option<f64>,
    /// The targeted gap with the single decision threshold.
    pub gap_before: Option<f64>,
    /// Accuracy with the thresholds in force.
    pub accuracy_after: Option<f64>,
    /// The targeted gap with the thresholds in force.
    pub gap_after: Option<f64>,
    /// The final model's quality with these thresholds in force, as the participants'
    /// evaluation with them measured it; `null` when that evaluation aborted.
    #[serde(default)]
    pub quality: Option<Quality>,
}

/// One group's decision threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupThresholdJson {
    /// The group ("gender=female", "gender=unknown").
    pub group: String,
    /// The first histogram bin predicted positive.
    pub bin: u32,
    /// bin / histogram_bins.
    pub threshold: f64,
}

impl PostprocessingJson {
    /// A line per group, for logs and reports.
    pub fn describe(&self) -> String {
        let groups: Vec<String> = self
            .groups
            .iter()
            .map(|g| format!("{} >= {:.2}", g.group, g.threshold))
            .collect();
        format!(
            "{} thresholds by {} (strength {}): {}; accuracy {} -> {}, gap {} -> {}",
            self.thresholds,
            self.attribute,
            self.strength,
            groups.join(", "),
            figure(self.accuracy_before),
            figure(self.accuracy_after),
            figure(self.gap_before),
            figure(self.gap_after),
        )
    }
}

/// The text of the model.json at `path`, refused before reading if larger than
/// [`MAX_MODEL_BYTES`], and again while reading (the file may grow in between).
fn read_model_text(path: &Path) -> Result<String, ArtefactError> {
    let io = |source| ArtefactError::Io {
        path: path.into(),
        source,
    };
    let too_large = |size| ArtefactError::TooLarge {
        path: path.into(),
        size,
        limit: MAX_MODEL_BYTES,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size > MAX_MODEL_BYTES {
        return Err(too_large(size));
    }
    let mut text = String::new();
    file.take(MAX_MODEL_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_MODEL_BYTES {
        return Err(too_large(text.len() as u64));
    }
    Ok(text)
}

/// Writes through a temporary file and a rename, so a reader never sees half a file and a
/// crash never destroys the previous version.
///
/// # Errors
/// [`ArtefactError::Io`] with the path.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ArtefactError> {
    let io = |source| ArtefactError::Io {
        path: path.into(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sections::{FeatureEntry, FeatureType};

    fn model() -> ModelArtefact {
        ModelArtefact {
            format: MODEL_FORMAT.into(),
            federation_id: "fed".into(),
            schema: SchemaSection {
                label: "csat >= 4".into(),
                positive_name: "satisfied".into(),
                label_range: Some([1.0, 5.0]),
                features: vec![FeatureEntry {
                    name: "wait_seconds".into(),
                    kind: FeatureType::Numeric,
                    categories: vec![],
                    min: Some(0.0),
                    max: Some(86400.0),
                }],
                protected: vec![],
                intersections: vec![],
            },
            columns: vec!["wait_seconds".into()],
            standardization: StandardizationJson {
                count: 10,
                means: vec![300.0],
                std_devs: vec![461.0],
            },
            weights: vec![-0.64],
            intercept: 0.5,
            rounds: 2,
            rounds_completed: 2,
            participants: 3,
            aggregation: "secagg".into(),
            training: TrainingSection::default(),
            evaluation: EvaluationSection::default(),
            quality: None,
            postprocessing: None,
            content_hash: String::new(),
        }
        .seal()
    }

    #[test]
    fn a_sealed_model_loads_back_and_any_edit_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.json");
        let sealed = model();
        assert!(sealed.content_hash.starts_with("sha256:"));
        sealed.write(&path).unwrap();
        assert_eq!(ModelArtefact::load(&path).unwrap(), sealed);

        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("0.5", "0.75")).unwrap();
        let error = ModelArtefact::load(&path).unwrap_err();
        assert!(
            matches!(error, ArtefactError::HashMismatch { .. }),
            "{error:?}"
        );
        assert!(
            error.to_string().starts_with(&format!(
                "{}: content hash mismatch: the file says {}",
                path.display(),
                sealed.content_hash
            )),
            "{error}"
        );

        let other = ModelArtefact {
            format: "accord.model.v0".into(),
            ..sealed.clone()
        };
        other.write(&path).unwrap();
        assert_eq!(
            ModelArtefact::load(&path).unwrap_err().to_string(),
            format!(
                "{}: not an Accord model: format 'accord.model.v0', expected 'accord.model.v1'",
                path.display()
            )
        );
    }

    #[test]
    fn a_model_over_the_limit_is_refused_with_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.json");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(MAX_MODEL_BYTES + 1)
            .unwrap();
        assert_eq!(
            ModelArtefact::load(&path).unwrap_err().to_string(),
            format!(
                "{}: 67108865 bytes, more than the 67108864 bytes accepted for a model",
                path.display()
            )
        );
    }

    #[test]
    fn drivers_are_ordered_by_strength_and_read_in_words() {
        let mut m = model();
        m.columns = vec!["sentiment".into(), "channel=chat".into()];
        m.weights = vec![0.2, -1.2];
        m.standardization.std_devs = vec![0.465, 0.3];
        let drivers = m.drivers();
        assert_eq!(drivers[0].column, "channel=chat");
        assert_eq!(
            drivers[0].sentence(),
            "- channel is chat                    strongly lowers the odds (-1.20 log-odds, -70%; 1 SD = 0.300)"
        );
        assert_eq!(drivers[1].column, "sentiment");
        assert_eq!(figure(None), "undefined");
        assert_eq!(figure(Some(0.123456)), "0.1235");
    }
}

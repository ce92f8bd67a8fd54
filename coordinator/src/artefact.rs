//! What a federation leaves behind: `model.json` (the trained model with its schema,
//! standardization and a content hash) and `rounds.csv` (one line of aggregates per round), and
//! the model's *drivers of satisfaction* in words a service manager can read.

use crate::config::{EvaluationSection, SchemaSection, TrainingSection};
use crate::metrics::Quality;
use crate::mitigation::PostprocessingJson;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The version tag of the model.json format (documented in README.md).
pub const MODEL_FORMAT: &str = "accord.model.v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelArtefact {
    pub format: String,
    pub federation_id: String,
    pub schema: SchemaSection,
    /// The encoded feature columns, in the order of `weights`.
    pub columns: Vec<String>,
    pub standardization: StandardizationJson,
    /// Coefficients per standardized column: the change in log-odds of the positive class per
    /// standard deviation of the column.
    pub weights: Vec<f64>,
    pub intercept: f64,
    pub rounds: u32,
    pub rounds_completed: u32,
    /// The participants whose fit uploads made these weights (the last round whose fit
    /// completed); 0 if none did.
    pub participants: u32,
    pub aggregation: String,
    pub training: TrainingSection,
    pub evaluation: EvaluationSection,
    /// The quality of the model written (the weights above), from its aggregated evaluation
    /// with the single decision threshold; `quality.round` is the round that made it. None when
    /// that model's evaluation aborted: an earlier model's figures are never carried over.
    pub quality: Option<Quality>,
    /// Per-group decision thresholds in force, when the federation post-processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postprocessing: Option<PostprocessingJson>,
    /// "sha256:<hex>" of this document's canonical JSON with this field empty.
    pub content_hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardizationJson {
    pub count: u64,
    pub means: Vec<f64>,
    pub std_devs: Vec<f64>,
}

/// The largest model.json a verifier reads (a model of thousands of columns is a few MiB).
pub const MAX_MODEL_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ArtefactError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Read(#[from] accord_crypto::file::ReadError),
    #[error("{path}: not an Accord model: {message}")]
    Format { path: PathBuf, message: String },
    #[error(
        "{path}: content hash mismatch: the file says {stated}, its content hashes to {actual}"
    )]
    HashMismatch {
        path: PathBuf,
        stated: String,
        actual: String,
    },
}

impl ModelArtefact {
    /// The hash of the canonical JSON of everything but `content_hash`.
    pub fn compute_hash(&self) -> String {
        let mut body = self.clone();
        body.content_hash = String::new();
        let bytes = serde_json::to_vec(&body).expect("a model serializes");
        format!("sha256:{}", accord_crypto::hash::sha256_hex(&bytes))
    }

    pub fn seal(mut self) -> Self {
        self.content_hash = self.compute_hash();
        self
    }

    pub fn write(&self, path: &Path) -> Result<(), ArtefactError> {
        let text = serde_json::to_string_pretty(self).expect("a model serializes");
        write_atomically(path, text.as_bytes())
    }

    /// Reads a model.json and checks its content hash.
    pub fn load(path: &Path) -> Result<Self, ArtefactError> {
        let text = accord_crypto::file::read_text_limited(path, "a model", MAX_MODEL_BYTES)?;
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
    pub column: String,
    pub coefficient: f64,
    pub std_dev: f64,
}

impl Driver {
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

/// One line of rounds.csv.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundRecord {
    pub round: u32,
    /// Participants whose fit uploads made the round's model (0 when the fit aborted).
    pub participants: u32,
    /// The quality of this round's model; None when its fit or its evaluation aborted.
    pub quality: Option<Quality>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub seconds: f64,
    /// The fit phase aborted: no new model, the previous global model stays.
    pub fit_aborted: bool,
    /// The fit made a new model but its evaluation aborted: the model is in force, unmeasured.
    pub evaluation_aborted: bool,
    /// Why the phase that aborted did ("" when none did).
    pub abort_reason: String,
    /// Participants named in the round's phases for deviating from the protocol, each as
    /// "name (phase, stage): reason".
    pub culprits: Vec<String>,
    /// The fairness gaps of this round's model per protected attribute, when the evaluation
    /// reports group gaps (`[evaluation] group_gaps`); empty otherwise.
    pub gaps: Vec<accord_proto::mitigation::AttributeGaps>,
}

pub const ROUNDS_HEADER: &str = "round,participants,samples,log_loss,accuracy,auc,brier,bytes_up,bytes_down,seconds,fit_aborted,evaluation_aborted,abort_reason,culprits";

/// A CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// A figure as a CSV cell: six decimals, or empty when undefined.
pub fn csv_number(value: Option<f64>) -> String {
    value.map(|v| format!("{v:.6}")).unwrap_or_default()
}

/// Writes rounds.csv: [`ROUNDS_HEADER`], then, when the evaluation reports group gaps,
/// `dp_gap_<attribute>,eo_gap_<attribute>` per protected attribute (empty cells where a gap is
/// undefined or the round's model unmeasured); a line per round.
///
/// # Errors
/// [`ArtefactError::Io`] when the file cannot be written.
pub fn write_rounds_csv(
    path: &Path,
    rounds: &[RoundRecord],
    attributes: &[String],
) -> Result<(), ArtefactError> {
    let mut text = String::from(ROUNDS_HEADER);
    for a in attributes {
        let _ = write!(text, ",dp_gap_{a},eo_gap_{a}");
    }
    text.push('\n');
    for r in rounds {
        let q = r.quality;
        let _ = write!(
            text,
            "{},{},{},{},{},{},{},{},{},{:.3},{},{},{},{}",
            r.round,
            r.participants,
            q.map(|q| q.samples.to_string()).unwrap_or_default(),
            csv_number(q.map(|q| q.log_loss)),
            csv_number(q.map(|q| q.accuracy)),
            csv_number(q.and_then(|q| q.auc)),
            csv_number(q.map(|q| q.brier)),
            r.bytes_up,
            r.bytes_down,
            r.seconds,
            r.fit_aborted,
            r.evaluation_aborted,
            csv_field(&r.abort_reason),
            csv_field(&r.culprits.join("; "))
        );
        for a in attributes {
            let gap = r.gaps.iter().find(|g| &g.attribute == a);
            let _ = write!(
                text,
                ",{},{}",
                csv_number(gap.and_then(|g| g.demographic_parity)),
                csv_number(gap.and_then(|g| g.equal_opportunity))
            );
        }
        text.push('\n');
    }
    write_atomically(path, text.as_bytes())
}

/// Writes through a temporary file and a rename, so a reader never sees half a file and a
/// crash never destroys the previous version.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ArtefactError> {
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

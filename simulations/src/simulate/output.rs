//! The experiment's tables: `rounds.csv` (per run and round) and `summary.csv` (per run).
//! Every row names its run, the swept values and the aggregation, so an `insecure-plain` run
//! can never pass for a private one. Timing columns are the only ones that vary between two
//! runs of the same config.

use super::federation::RoundOutcome;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct RoundRow {
    pub run: String,
    pub swept: Vec<(String, String)>,
    pub aggregation: String,
    pub participants: usize,
    pub outcome: RoundOutcome,
}

#[derive(Debug, Clone)]
pub struct SummaryRow {
    pub run: String,
    pub swept: Vec<(String, String)>,
    pub aggregation: String,
    pub participants: usize,
    pub rounds: u32,
    pub rounds_aborted: usize,
    pub final_accuracy: f64,
    pub centralized_accuracy: f64,
    /// (attribute, demographic-parity difference, equal-opportunity difference) of the final model.
    pub gaps: Vec<(String, Option<f64>, Option<f64>)>,
    pub wall_secs: f64,
    pub peak_rss_mb: f64,
    pub bytes_up_per_participant: f64,
}

impl SummaryRow {
    /// Federated minus centralized accuracy, in percentage points.
    pub fn accuracy_gap_pp(&self) -> f64 {
        (self.final_accuracy - self.centralized_accuracy) * 100.0
    }

    /// A short label of the run's swept values, for plots.
    pub fn label(&self) -> String {
        if self.swept.is_empty() {
            return self.run.clone();
        }
        self.swept
            .iter()
            .map(|(k, v)| {
                let v = if v.is_empty() { "none" } else { v };
                format!("{}={v}", k.rsplit('.').next().unwrap_or(k))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
}

fn number(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.6}")
    } else {
        String::new()
    }
}

fn optional(value: Option<f64>) -> String {
    value.map_or(String::new(), number)
}

/// `fairness_gap_<attribute>` (demographic parity) and `eo_gap_<attribute>` per attribute.
fn gap_columns(attributes: &[String]) -> Vec<String> {
    attributes
        .iter()
        .flat_map(|a| [format!("fairness_gap_{a}"), format!("eo_gap_{a}")])
        .collect()
}

fn gap_cells(gaps: &[(String, Option<f64>, Option<f64>)], attributes: &[String]) -> Vec<String> {
    attributes
        .iter()
        .flat_map(|a| {
            let g = gaps.iter().find(|(name, _, _)| name == a);
            [optional(g.and_then(|g| g.1)), optional(g.and_then(|g| g.2))]
        })
        .collect()
}

fn write(path: &Path, header: Vec<String>, rows: Vec<Vec<String>>) -> Result<(), OutputError> {
    let failed = |e: &dyn std::fmt::Display| OutputError::Write {
        path: path.into(),
        message: e.to_string(),
    };
    let mut writer = csv::Writer::from_path(path).map_err(|e| failed(&e))?;
    writer.write_record(&header).map_err(|e| failed(&e))?;
    for row in rows {
        writer.write_record(&row).map_err(|e| failed(&e))?;
    }
    writer.flush().map_err(|e| failed(&e))
}

/// `rounds.csv`: run, swept parameters, aggregation, round, participants, completed, dropped,
/// aborted, log_loss, accuracy, auc, per attribute the demographic-parity and equal-opportunity
/// gaps, bytes up and down, seconds per stage and per round.
pub fn write_rounds(
    path: &Path,
    rows: &[RoundRow],
    swept: &[String],
    attributes: &[String],
) -> Result<(), OutputError> {
    let mut header: Vec<String> = vec!["run".into()];
    header.extend(swept.iter().cloned());
    header.extend(
        [
            "aggregation",
            "round",
            "participants",
            "completed",
            "dropped",
            "aborted",
            "log_loss",
            "accuracy",
            "auc",
        ]
        .map(String::from),
    );
    header.extend(gap_columns(attributes));
    header.extend(
        [
            "bytes_up",
            "bytes_down",
            "secs_setup",
            "secs_share_keys",
            "secs_masked_input",
            "secs_unmask",
            "secs_round",
        ]
        .map(String::from),
    );
    let body = rows
        .iter()
        .map(|r| {
            let o = &r.outcome;
            let mut row = vec![r.run.clone()];
            row.extend(r.swept.iter().map(|(_, v)| v.clone()));
            row.extend([
                r.aggregation.clone(),
                o.round.to_string(),
                r.participants.to_string(),
                o.completed.to_string(),
                o.dropped.to_string(),
                o.aborted.to_string(),
                optional(o.quality.map(|q| q.log_loss)),
                optional(o.quality.map(|q| q.accuracy)),
                optional(o.quality.map(|q| q.auc)),
            ]);
            row.extend(gap_cells(&o.gaps, attributes));
            row.extend([o.bytes_up.to_string(), o.bytes_down.to_string()]);
            row.extend(o.stage_secs.iter().map(|s| format!("{s:.4}")));
            row.push(format!("{:.4}", o.secs));
            row
        })
        .collect();
    write(path, header, body)
}

/// `summary.csv`: one row per run.
pub fn write_summary(
    path: &Path,
    rows: &[SummaryRow],
    swept: &[String],
    attributes: &[String],
) -> Result<(), OutputError> {
    let mut header: Vec<String> = vec!["run".into()];
    header.extend(swept.iter().cloned());
    header.extend(
        [
            "aggregation",
            "participants",
            "rounds",
            "rounds_aborted",
            "final_accuracy",
            "centralized_accuracy",
            "accuracy_gap_pp",
        ]
        .map(String::from),
    );
    header.extend(gap_columns(attributes));
    header.extend(["wall_secs", "peak_rss_mb", "bytes_up_per_participant"].map(String::from));
    let body = rows
        .iter()
        .map(|r| {
            let mut row = vec![r.run.clone()];
            row.extend(r.swept.iter().map(|(_, v)| v.clone()));
            row.extend([
                r.aggregation.clone(),
                r.participants.to_string(),
                r.rounds.to_string(),
                r.rounds_aborted.to_string(),
                number(r.final_accuracy),
                number(r.centralized_accuracy),
                number(r.accuracy_gap_pp()),
            ]);
            row.extend(gap_cells(&r.gaps, attributes));
            row.extend([
                format!("{:.3}", r.wall_secs),
                format!("{:.1}", r.peak_rss_mb),
                format!("{:.0}", r.bytes_up_per_participant),
            ]);
            row
        })
        .collect();
    write(path, header, body)
}

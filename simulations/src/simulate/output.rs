//! The experiment's tables: `rounds.csv` (per run and round) and `summary.csv` (per run).
//! Every row names its run, the swept values and the aggregation, so an `insecure-plain` run
//! can never pass for a private one. Timing columns are the only ones that vary between two
//! runs of the same config.

use super::config::ExperimentConfig;
use super::federation::RoundOutcome;
use accord_participant::model::LogisticModel;
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
    /// The final model's accuracy, with the per-group thresholds when they are in force.
    pub final_accuracy: f64,
    /// The final model's accuracy with the single decision threshold.
    pub accuracy_before_thresholds: f64,
    pub centralized_accuracy: f64,
    /// (attribute, demographic-parity difference, equal-opportunity difference) of the final
    /// model, with the per-group thresholds when they are in force.
    pub gaps: Vec<(String, Option<f64>, Option<f64>)>,
    /// The mitigation and its parameters ("none" without).
    pub mitigation: String,
    /// The per-group thresholds in force ("none" without).
    pub thresholds: String,
    /// The final global model.
    pub model: LogisticModel,
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
            "secs_consistency_check",
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
            "mitigation",
            "thresholds",
            "final_accuracy",
            "accuracy_before_thresholds",
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
                r.mitigation.clone(),
                r.thresholds.clone(),
                number(r.final_accuracy),
                number(r.accuracy_before_thresholds),
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

/// The mitigation of an experiment's run and its parameters, as outputs name it.
pub fn describe_mitigation(config: &ExperimentConfig) -> String {
    let m = &config.mitigation;
    if m.is_none() {
        return "none".into();
    }
    format!(
        "{} strength={} metric={} attribute={} min_group_size={}",
        m.kind, m.strength, m.metric, m.attribute, m.min_group_size
    )
}

/// The fairness gap a frontier is drawn against: the mitigation's metric over the groups of its
/// attribute (or of the post-processing's, when only that is set).
#[derive(Debug, Clone, PartialEq)]
pub struct FrontierTarget {
    pub metric: String,
    pub attribute: String,
}

impl FrontierTarget {
    /// None when the experiment names no attribute to mitigate for.
    pub fn of(config: &ExperimentConfig) -> Option<Self> {
        let attribute = [
            &config.mitigation.attribute,
            &config.postprocessing.attribute,
        ]
        .into_iter()
        .find(|a| !a.is_empty())?
        .clone();
        let metric = if config.mitigation.is_none() && !config.postprocessing.is_none() {
            config.postprocessing.thresholds.clone()
        } else {
            config.mitigation.metric.clone()
        };
        Some(Self { metric, attribute })
    }

    fn gap(&self, row: &SummaryRow) -> Option<f64> {
        let (_, dp, eo) = row.gaps.iter().find(|g| g.0 == self.attribute)?;
        if self.metric == "demographic_parity" {
            *dp
        } else {
            *eo
        }
    }
}

/// One point of the accuracy-against-gap frontier: the runs that differ only in their seed,
/// averaged.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontierPoint {
    /// The swept values other than the seed.
    pub label: String,
    pub mitigation: String,
    pub thresholds: String,
    pub seeds: usize,
    pub accuracy: f64,
    pub accuracy_sd: f64,
    pub gap: f64,
    pub gap_sd: f64,
    /// No other point has both a higher accuracy and a smaller gap.
    pub pareto: bool,
}

fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

/// The frontier over the runs of a sweep: runs grouped by every swept value but `seed`, in the
/// order they ran.
pub fn frontier(rows: &[SummaryRow], target: &FrontierTarget) -> Vec<FrontierPoint> {
    let mut groups: Vec<(String, Vec<&SummaryRow>)> = Vec::new();
    for row in rows {
        let label = row
            .swept
            .iter()
            .filter(|(k, _)| k != "seed")
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        match groups.iter_mut().find(|(l, _)| *l == label) {
            Some((_, members)) => members.push(row),
            None => groups.push((label, vec![row])),
        }
    }
    let mut points: Vec<FrontierPoint> = groups
        .into_iter()
        .map(|(label, members)| {
            let accuracies: Vec<f64> = members.iter().map(|r| r.final_accuracy).collect();
            let gaps: Vec<f64> = members
                .iter()
                .map(|r| target.gap(r).unwrap_or(f64::NAN))
                .collect();
            let (accuracy, accuracy_sd) = mean_sd(&accuracies);
            let (gap, gap_sd) = mean_sd(&gaps);
            FrontierPoint {
                label: if label.is_empty() {
                    "all runs".into()
                } else {
                    label
                },
                mitigation: members[0].mitigation.clone(),
                thresholds: members[0]
                    .thresholds
                    .split(':')
                    .next()
                    .unwrap_or("none")
                    .to_owned(),
                seeds: members.len(),
                accuracy,
                accuracy_sd,
                gap,
                gap_sd,
                pareto: false,
            }
        })
        .collect();
    let dominated: Vec<bool> = points
        .iter()
        .map(|p| {
            points.iter().any(|q| {
                q.accuracy >= p.accuracy
                    && q.gap <= p.gap
                    && (q.accuracy > p.accuracy || q.gap < p.gap)
            })
        })
        .collect();
    for (p, dominated) in points.iter_mut().zip(dominated) {
        p.pareto = !dominated && p.accuracy.is_finite() && p.gap.is_finite();
    }
    points
}

/// `frontier.csv`: per frontier point, the mitigation and thresholds, how many seeds, the mean
/// and standard deviation of accuracy and of the targeted gap, and whether it is Pareto-optimal.
pub fn write_frontier(
    path: &Path,
    points: &[FrontierPoint],
    target: &FrontierTarget,
) -> Result<(), OutputError> {
    let gap = format!("{}_gap_{}", target.metric, target.attribute);
    let header = vec![
        "point".into(),
        "mitigation".into(),
        "thresholds".into(),
        "seeds".into(),
        "accuracy".into(),
        "accuracy_sd".into(),
        gap.clone(),
        format!("{gap}_sd"),
        "pareto".into(),
    ];
    let body = points
        .iter()
        .map(|p| {
            vec![
                p.label.clone(),
                p.mitigation.clone(),
                p.thresholds.clone(),
                p.seeds.to_string(),
                number(p.accuracy),
                number(p.accuracy_sd),
                number(p.gap),
                number(p.gap_sd),
                p.pareto.to_string(),
            ]
        })
        .collect();
    write(path, header, body)
}

//! The experiment's tables: `rounds.csv` (per run and round) and `summary.csv` (per run).
//! Every row names its run, the swept values and the aggregation, so an `insecure-plain` run
//! can never pass for a private one. Timing columns are the only ones that vary between two
//! runs of the same config.

use super::config::ExperimentConfig;
use super::federation::RoundOutcome;
use accord_coordinator::csv_number;
use accord_participant::model::LogisticModel;
use std::path::{Path, PathBuf};

/// One row of `rounds.csv`: a run's round.
#[derive(Debug, Clone)]
pub struct RoundRow {
    /// The run's label.
    pub run: String,
    /// Swept parameter (dotted path) → value in this run.
    pub swept: Vec<(String, String)>,
    /// The aggregation scheme, so a plain run is never taken for a private one.
    pub aggregation: String,
    /// Participants in the federation.
    pub participants: usize,
    /// What the round left behind.
    pub outcome: RoundOutcome,
}

/// One row of `summary.csv`: a whole run.
#[derive(Debug, Clone)]
pub struct SummaryRow {
    /// The run's label.
    pub run: String,
    /// Swept parameter (dotted path) → value in this run.
    pub swept: Vec<(String, String)>,
    /// The aggregation scheme, so a plain run is never taken for a private one.
    pub aggregation: String,
    /// Participants in the federation.
    pub participants: usize,
    /// Rounds configured.
    pub rounds: u32,
    /// Rounds whose fit aborted.
    pub rounds_aborted: usize,
    /// The round whose fit made the final model (0: every fit aborted, the initial model).
    pub model_round: u32,
    /// The final model's accuracy, with the per-group thresholds when they are in force; None
    /// when the final model was never evaluated (its evaluation aborted).
    pub final_accuracy: Option<f64>,
    /// The final model's accuracy with the single decision threshold (None as above).
    pub accuracy_before_thresholds: Option<f64>,
    /// Accuracy of the same model trained on the pooled data (see `centralized_accuracy`).
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
    /// Wall-clock seconds of the whole run.
    pub wall_secs: f64,
    /// None where /proc is unavailable.
    pub peak_rss_mb: Option<f64>,
    /// Bytes sent by participants over the run, divided by the number of participants.
    pub bytes_up_per_participant: f64,
}

impl SummaryRow {
    /// Federated minus centralized accuracy, in percentage points; None when the final
    /// accuracy is undefined.
    pub fn accuracy_gap_pp(&self) -> Option<f64> {
        self.final_accuracy
            .map(|a| (a - self.centralized_accuracy) * 100.0)
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

/// Why the results could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A file could not be written.
    #[error("cannot write {path}: {message}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error, as text.
        message: String,
    },
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
            [
                csv_number(g.and_then(|g| g.1)),
                csv_number(g.and_then(|g| g.2)),
            ]
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
/// fit_aborted, evaluation_aborted, abort_reason, log_loss, accuracy, auc, per attribute the demographic-parity and equal-opportunity
/// gaps, bytes up and down, seconds per stage and per round.
pub(crate) fn write_rounds(
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
            "fit_aborted",
            "evaluation_aborted",
            "abort_reason",
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
                o.evaluation_aborted.to_string(),
                o.abort_reason.clone(),
                csv_number(o.quality.map(|q| q.log_loss)),
                csv_number(o.quality.map(|q| q.accuracy)),
                csv_number(o.quality.and_then(|q| q.auc)),
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
pub(crate) fn write_summary(
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
            "model_round",
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
                r.model_round.to_string(),
                r.mitigation.clone(),
                r.thresholds.clone(),
                csv_number(r.final_accuracy),
                csv_number(r.accuracy_before_thresholds),
                csv_number(Some(r.centralized_accuracy)),
                csv_number(r.accuracy_gap_pp()),
            ]);
            row.extend(gap_cells(&r.gaps, attributes));
            row.extend([
                format!("{:.3}", r.wall_secs),
                r.peak_rss_mb.map_or(String::new(), |mb| format!("{mb:.1}")),
                format!("{:.0}", r.bytes_up_per_participant),
            ]);
            row
        })
        .collect();
    write(path, header, body)
}

/// The mitigation of an experiment's run and its parameters, as outputs name it.
pub(crate) fn describe_mitigation(config: &ExperimentConfig) -> String {
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
    /// The fairness metric, `demographic_parity` or `equal_opportunity`.
    pub metric: String,
    /// The protected attribute whose groups are compared.
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
    /// The mitigation and its parameters ("none" without).
    pub mitigation: String,
    /// The per-group thresholds in force ("none" without).
    pub thresholds: String,
    /// Runs averaged (one per seed).
    pub seeds: usize,
    /// Means over the seeds, and sample standard deviations; None when undefined (see
    /// `mean_sd`).
    pub accuracy: Option<f64>,
    /// Sample standard deviation of the accuracy over the seeds.
    pub accuracy_sd: Option<f64>,
    /// Mean fairness gap over the seeds.
    pub gap: Option<f64>,
    /// Sample standard deviation of the gap over the seeds.
    pub gap_sd: Option<f64>,
    /// No other point has both a higher accuracy and a smaller gap (false for a point whose
    /// accuracy or gap is undefined).
    pub pareto: bool,
}

/// The mean and sample standard deviation over seeds: the mean undefined when any seed's value
/// is (an average never quietly drops a seed), the deviation undefined below two seeds.
fn mean_sd(values: &[Option<f64>]) -> (Option<f64>, Option<f64>) {
    let Some(values) = values.iter().copied().collect::<Option<Vec<f64>>>() else {
        return (None, None);
    };
    if values.is_empty() {
        return (None, None);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let sd = (values.len() >= 2)
        .then(|| (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    (Some(mean), sd)
}

/// The frontier over the runs of a sweep: runs grouped by every swept value but `seed`, in the
/// order they ran.
pub(crate) fn frontier(rows: &[SummaryRow], target: &FrontierTarget) -> Vec<FrontierPoint> {
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
            let accuracies: Vec<Option<f64>> = members.iter().map(|r| r.final_accuracy).collect();
            let gaps: Vec<Option<f64>> = members.iter().map(|r| target.gap(r)).collect();
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
    let defined: Vec<Option<(f64, f64)>> = points.iter().map(|p| p.accuracy.zip(p.gap)).collect();
    let pareto: Vec<bool> = defined
        .iter()
        .map(|p| {
            p.is_some_and(|(accuracy, gap)| {
                !defined
                    .iter()
                    .flatten()
                    .any(|&(a, g)| a >= accuracy && g <= gap && (a > accuracy || g < gap))
            })
        })
        .collect();
    for (p, pareto) in points.iter_mut().zip(pareto) {
        p.pareto = pareto;
    }
    points
}

/// `frontier.csv`: per frontier point, the mitigation and thresholds, how many seeds, the mean
/// and standard deviation of accuracy and of the targeted gap, and whether it is Pareto-optimal.
pub(crate) fn write_frontier(
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
                csv_number(p.accuracy),
                csv_number(p.accuracy_sd),
                csv_number(p.gap),
                csv_number(p.gap_sd),
                p.pareto.to_string(),
            ]
        })
        .collect();
    write(path, header, body)
}

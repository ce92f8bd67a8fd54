//! `rounds.csv`: one line of aggregates per round, which the coordinator writes beside
//! `model.json` (whose format, a contract with the auditor, is `accord_proto::artefact`).

pub use accord_proto::artefact::ArtefactError;
use accord_proto::artefact::{Quality, write_atomically};
use std::fmt::Write as _;
use std::path::Path;

/// One line of rounds.csv.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundRecord {
    /// The round number, from 1.
    pub round: u32,
    /// Participants whose fit uploads made the round's model (0 when the fit aborted).
    pub participants: u32,
    /// The quality of this round's model; None when its fit or its evaluation aborted.
    pub quality: Option<Quality>,
    /// Bytes received from participants over the round.
    pub bytes_up: u64,
    /// Bytes sent to participants over the round.
    pub bytes_down: u64,
    /// Wall-clock seconds the round took.
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

/// The header line of rounds.csv: one column per [`RoundRecord`] field, quality split into its
/// metrics.
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

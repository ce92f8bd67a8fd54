//! The coordinator's side of the round plan, without I/O, in Flower's configure / aggregate
//! vocabulary: [`RoundPlan::configure`] says which phase comes next and the vector it asks of
//! participants; [`RoundPlan::aggregate`] turns that phase's sum into the consortium's
//! standardization, the next global model or the evaluation of the model in force. The
//! coordinator's driver runs each phase over gRPC and the simulator in process; both call this
//! plan, so an experiment accepts and reports exactly what a federation does. The participants'
//! side of the same plan is `accord_participant::Contributor`.
//!
//! Round 0 is the standardization; rounds 1..=R each fit a model and evaluate it; with
//! post-processing, the final model is evaluated once more with the per-group thresholds chosen
//! from its evaluation. A phase with fewer than `min_participants` contributions aborts: a fit
//! leaves the previous model in force, an evaluation leaves the new model unmeasured.

use crate::aggregation::AggregationError;
use crate::artefact::RoundRecord;
use crate::metrics::quality;
use crate::mitigation::MitigationRun;
use accord_crypto::secagg::{Culprit, SecAggError, stage_label};
use accord_proto::artefact::{PostprocessingJson, Quality};
use accord_proto::layout::{EvaluationCounts, LengthMismatch, UnboundedFeature};
use accord_proto::mitigation::{AttributeGaps, active_postprocessing};
use accord_proto::phase::PhaseVector;
use accord_proto::standardization::{StandardizationError, StandardizationLayout};
use accord_proto::v1::{
    FederationDefinition, GlobalModel, Header, Phase, Schema, SecAggParams, Standardization,
};
use std::collections::BTreeSet;
use tracing::{info, warn};

/// Why the federation cannot go on: the standardization, which every later phase needs,
/// failed, or a sum does not have its layout's length.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The standardization phase aborted, and who was named for deviating in it.
    #[error("standardization aborted: {reason}{}", named(culprits))]
    StandardizationAborted {
        /// Why.
        #[source]
        reason: Box<PhaseAbort>,
        /// The participants named, each "name (phase, stage): reason".
        culprits: Vec<String>,
    },
    /// Fewer participants than `min_participants` uploaded standardization sums.
    #[error("standardization: {contributors} of the {min} participants needed uploaded their sums")]
    TooFewStandardized {
        /// Participants whose sums were aggregated.
        contributors: u32,
        /// The definition's `min_participants`.
        min: u32,
    },
    /// The schema has no standardization layout (a feature without bounds).
    #[error("standardization: {0}")]
    Layout(#[from] UnboundedFeature),
    /// The consortium's sums give no standardization (e.g. a constant column).
    #[error("standardization: {0}")]
    Moments(#[from] StandardizationError),
    /// A phase's sum is not as long as its vector's layout.
    #[error(transparent)]
    Length(#[from] LengthMismatch),
}

/// What the next phase asks of participants: its round, its phase and the vector (bounds and
/// relations) every participant's contribution is encoded and proven under.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseRequest {
    /// The round (0 for the standardization).
    pub round: u32,
    /// The phase.
    pub phase: Phase,
    /// The bounds and relations of one participant's vector.
    pub vector: PhaseVector,
}

/// Why a phase's aggregation gave no sum, whatever its transport.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PhaseAbort {
    /// The aggregation could not start, a stage failed (too few survivors, a refused message)
    /// or the sum could not be decoded.
    #[error(transparent)]
    Aggregation(#[from] AggregationError),
    /// A participant's input cannot be encoded or proven under the phase's bounds. A node
    /// refuses and sits the phase out; the simulator, whose participants all share one
    /// encoding, stops the phase.
    #[error("{participant}: {source}")]
    Input {
        /// The participant.
        participant: String,
        /// Why its input cannot be secured.
        source: SecAggError,
    },
}

/// How a phase ended, whatever its transport: the sum and who contributed, or why it aborted;
/// and the participants named for deviating, each as "name (phase, stage): reason".
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseResult {
    /// The sum of the contributions and the contributors, or why the phase aborted.
    pub sum: Result<(Vec<f64>, BTreeSet<String>), PhaseAbort>,
    /// Participants named for deviating in this phase.
    pub culprits: Vec<String>,
}

impl PhaseResult {
    /// A participant named for deviating in `phase`, as the round's record states it:
    /// "name (phase, stage): reason".
    pub fn culprit_line(phase: Phase, culprit: &Culprit) -> String {
        format!(
            "{} ({}, {}): {}",
            culprit.participant,
            phase.label(),
            stage_label(culprit.stage),
            culprit.reason
        )
    }
}

/// Named participants as a clause for a message ("" if none).
fn named(culprits: &[String]) -> String {
    if culprits.is_empty() {
        String::new()
    } else {
        format!("; named: {}", culprits.join("; "))
    }
}

/// An evaluation of one model: its quality and every protected attribute's gaps (when the
/// evaluation reports them); the quality is None when the evaluation aborted.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Evaluation {
    /// Accuracy, log loss, AUC... of the evaluated model; None when it is unmeasured.
    pub quality: Option<Quality>,
    /// Demographic-parity and equal-opportunity gaps per protected attribute.
    pub gaps: Vec<AttributeGaps>,
}

/// Where the plan stands: the phase it will configure next.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Next {
    Standardize,
    Fit(u32),
    Evaluate(u32),
    EvaluateThresholds,
    Done,
}

/// One federation's rounds, from the standardization to the final model, without I/O.
#[derive(Debug, Clone)]
pub struct RoundPlan {
    definition: FederationDefinition,
    schema: Schema,
    columns: Vec<String>,
    /// The bounds every phase vector is built with (the coordinator's `[secure_aggregation]`).
    params: SecAggParams,
    mitigation: MitigationRun,
    standardization: Option<Standardization>,
    /// The global model in force: weights and intercept, and the round whose fit made it.
    model: Option<(Vec<f64>, f64)>,
    history: Vec<RoundRecord>,
    /// The evaluation of the model in force (None: unmeasured).
    quality: Option<Quality>,
    postprocessing: Option<PostprocessingJson>,
    /// The final model's evaluation with the per-group thresholds in force.
    thresholded: Option<Evaluation>,
    /// Participants named in the standardization, reported with the first round.
    earlier_culprits: Vec<String>,
    next: Next,
}

impl RoundPlan {
    /// The plan of the federation `definition`, whose schema encodes to `columns`; `params`
    /// bound every phase vector (the coordinator's `[secure_aggregation]`, whichever the
    /// aggregation, so a plain federation's vectors are the ones a secure one would encode).
    pub fn new(
        definition: FederationDefinition,
        columns: Vec<String>,
        params: SecAggParams,
    ) -> Self {
        let schema = definition.schema.clone().unwrap_or_default();
        let mitigation = MitigationRun::new(
            &schema,
            definition.mitigation.as_ref(),
            definition.postprocessing.as_ref(),
            definition.evaluation.unwrap_or_default(),
        );
        Self {
            definition,
            schema,
            columns,
            params,
            mitigation,
            standardization: None,
            model: None,
            history: Vec::new(),
            quality: None,
            postprocessing: None,
            thresholded: None,
            earlier_culprits: Vec::new(),
            next: Next::Standardize,
        }
    }

    /// The next phase and what it asks of participants; None once the plan is done.
    ///
    /// # Errors
    /// [`PlanError::Layout`] when the schema has no standardization layout.
    pub fn configure(&self) -> Result<Option<PhaseRequest>, PlanError> {
        let rows = self.params.max_rows_per_participant;
        let evaluate = || self.mitigation.evaluation_vector(rows);
        let (round, phase, vector) = match self.next {
            Next::Standardize => (
                0,
                Phase::Standardize,
                PhaseVector::standardize(&self.schema, self.definition.mitigation.as_ref(), rows)?,
            ),
            Next::Fit(round) => (
                round,
                Phase::Fit,
                self.mitigation
                    .fit_vector(self.columns.len(), self.params.clip, rows),
            ),
            Next::Evaluate(round) => (round, Phase::Evaluate, evaluate()),
            Next::EvaluateThresholds => (
                self.definition.rounds,
                Phase::EvaluateThresholds,
                evaluate(),
            ),
            Next::Done => return Ok(None),
        };
        Ok(Some(PhaseRequest {
            round,
            phase,
            vector,
        }))
    }

    /// Takes the result of the phase [`Self::configure`] asked for and moves on. Returns the
    /// round that ended, if one did (with its evaluation, or with its fit when that aborted):
    /// its record is the last of [`Self::history`].
    ///
    /// # Errors
    /// [`PlanError`] when the standardization failed (the federation cannot go on) or a sum
    /// has the wrong length.
    pub fn aggregate(&mut self, result: PhaseResult) -> Result<Option<u32>, PlanError> {
        let min = self.definition.min_participants;
        match self.next {
            Next::Standardize => {
                self.standardize(result, min)?;
                self.next = self.after_round(0);
                Ok(None)
            }
            Next::Fit(round) => {
                let mut culprits = std::mem::take(&mut self.earlier_culprits);
                culprits.extend(result.culprits.iter().cloned());
                let fitted = self.fit(round, result, min)?;
                let mut record = RoundRecord {
                    round,
                    participants: 0,
                    quality: None,
                    bytes_up: 0,
                    bytes_down: 0,
                    seconds: 0.0,
                    fit_aborted: false,
                    evaluation_aborted: false,
                    abort_reason: String::new(),
                    culprits,
                    gaps: Vec::new(),
                };
                match fitted {
                    Ok(participants) => {
                        record.participants = participants;
                        self.history.push(record);
                        self.next = Next::Evaluate(round);
                        Ok(None)
                    }
                    Err(reason) => {
                        warn!(round, %reason, "round aborted in its fit: the previous global model stays");
                        record.fit_aborted = true;
                        record.abort_reason = reason;
                        self.history.push(record);
                        self.next = self.after_round(round);
                        Ok(Some(round))
                    }
                }
            }
            Next::Evaluate(round) => {
                let evaluated = self.evaluate(round, result, min)?;
                let record = self.history.last_mut().expect("the round's fit recorded");
                record.culprits.extend(evaluated.1);
                match evaluated.0 {
                    Ok(evaluation) => {
                        self.quality = evaluation.quality;
                        record.quality = evaluation.quality;
                        record.gaps = evaluation.gaps;
                        if let Some(q) = &record.quality {
                            info!(round, accuracy = q.accuracy, log_loss = q.log_loss, auc = ?q.auc, mitigated_gap = ?self.mitigation.gap(), "round finished");
                        }
                    }
                    Err(reason) => {
                        warn!(round, %reason, "evaluation aborted: the round's model is in force, unmeasured");
                        record.evaluation_aborted = true;
                        record.abort_reason = reason;
                    }
                }
                self.next = self.after_round(round);
                Ok(Some(round))
            }
            Next::EvaluateThresholds => {
                let round = self.definition.rounds;
                let (evaluated, culprits) = self.evaluate(round, result, min)?;
                for culprit in culprits {
                    warn!(participant = %culprit, "named in the evaluation with thresholds");
                }
                self.thresholded = Some(match evaluated {
                    Ok(evaluation) => evaluation,
                    Err(reason) => {
                        warn!(%reason, "the evaluation with the per-group thresholds aborted: they stay in force, unmeasured");
                        Evaluation::default()
                    }
                });
                if let Some(post) = &mut self.postprocessing {
                    post.quality = self.thresholded.as_ref().and_then(|e| e.quality);
                }
                self.next = Next::Done;
                Ok(None)
            }
            Next::Done => Ok(None),
        }
    }

    /// What follows `round`: its successor's fit, or after the last round the choice of
    /// per-group thresholds and their evaluation (with post-processing), or the end.
    fn after_round(&mut self, round: u32) -> Next {
        if round < self.definition.rounds {
            return Next::Fit(round + 1);
        }
        self.postprocessing = self.mitigation.choose_thresholds();
        match &self.postprocessing {
            Some(post) => {
                info!(thresholds = %post.describe(), "post-processing: per-group thresholds in force");
                Next::EvaluateThresholds
            }
            None => {
                if active_postprocessing(self.definition.postprocessing.as_ref()).is_some() {
                    warn!(
                        "post-processing: no per-group thresholds, the final model was never evaluated; the single decision threshold stays in force"
                    );
                }
                Next::Done
            }
        }
    }

    fn standardize(&mut self, result: PhaseResult, min: u32) -> Result<(), PlanError> {
        self.earlier_culprits = result.culprits.clone();
        let (sums, contributors) =
            result
                .sum
                .map_err(|reason| PlanError::StandardizationAborted {
                    reason: Box::new(reason),
                    culprits: result.culprits,
                })?;
        let contributors = contributors.len() as u32;
        if contributors < min {
            return Err(PlanError::TooFewStandardized { contributors, min });
        }
        let layout = StandardizationLayout::new(&self.schema)?;
        let (sums, extras) = sums.split_at(layout.len().min(sums.len()));
        let sums = layout.from_slice(sums)?;
        let (means, std_devs) = layout.moments(&sums)?;
        self.mitigation
            .absorb_standardization(extras, sums.count as f64)?;
        self.standardization = Some(Standardization {
            means,
            std_devs,
            count: sums.count,
        });
        self.model = Some((vec![0.0; self.columns.len()], 0.0));
        info!(
            samples = sums.count,
            participants = contributors,
            "standardization computed from aggregated sums"
        );
        Ok(())
    }

    /// The fit's new global model, in force from now on; Err(reason) when the fit aborted.
    fn fit(
        &mut self,
        round: u32,
        result: PhaseResult,
        min: u32,
    ) -> Result<Result<u32, String>, PlanError> {
        let (sum, contributors) = match result.sum {
            Ok(sum) => sum,
            Err(reason) => return Ok(Err(format!("fit: {reason}"))),
        };
        let model = self.mitigation.fitted(round, &sum, self.columns.len())?;
        let contributors = contributors.len() as u32;
        if contributors < min {
            return Ok(Err(format!(
                "fit: {contributors} of the {min} participants needed contributed"
            )));
        }
        if model.samples <= 0.0 {
            return Ok(Err("fit: the contributions hold no samples".to_owned()));
        }
        let weights = model
            .weighted_weights
            .iter()
            .map(|w| w / model.samples)
            .collect();
        self.model = Some((weights, model.weighted_intercept / model.samples));
        self.mitigation.model_changed();
        // A new model starts unmeasured.
        self.quality = None;
        Ok(Ok(contributors))
    }

    /// The evaluation of the model in force from the summed counts; Err(reason) when it
    /// aborted. Returns the culprits named too.
    #[allow(clippy::type_complexity)]
    fn evaluate(
        &mut self,
        round: u32,
        result: PhaseResult,
        min: u32,
    ) -> Result<(Result<Evaluation, String>, Vec<String>), PlanError> {
        let label = match self.next {
            Next::EvaluateThresholds => "evaluate with thresholds",
            _ => "evaluate",
        };
        let (sum, contributors) = match result.sum {
            Ok(sum) => sum,
            Err(reason) => return Ok((Err(format!("{label}: {reason}")), result.culprits)),
        };
        let evaluated = contributors.len() as u32;
        if evaluated < min {
            return Ok((
                Err(format!(
                    "{label}: {evaluated} of the {min} participants needed contributed"
                )),
                result.culprits,
            ));
        }
        let bins = self
            .definition
            .evaluation
            .unwrap_or_default()
            .histogram_bins as usize;
        let split = EvaluationCounts::len(bins).min(sum.len());
        let (counts, extras) = sum.split_at(split);
        let counts = EvaluationCounts::from_slice(counts, bins)?;
        let statistics = self.mitigation.evaluation_layout().with_values(extras)?;
        if self.next != Next::EvaluateThresholds {
            self.mitigation.absorb_evaluation(extras)?;
        }
        let evaluation = match quality(round, &counts) {
            Some(quality) => Ok(Evaluation {
                quality: Some(quality),
                gaps: statistics.gaps(),
            }),
            None => Err(format!("{label}: no records were evaluated")),
        };
        Ok((evaluation, result.culprits))
    }

    /// The global model participants download for `round`: its weights over `columns`, the
    /// consortium's standardization and the mitigation's feedback. None before the
    /// standardization.
    pub fn global_model(&self, round: u32) -> Option<GlobalModel> {
        let ((weights, intercept), standardization) =
            (self.model.as_ref()?, self.standardization.as_ref()?);
        Some(GlobalModel {
            header: Some(Header::new(&self.definition.federation_id, round)),
            columns: self.columns.clone(),
            weights: weights.clone(),
            intercept: *intercept,
            standardization: Some(standardization.clone()),
            feedback: self.mitigation.feedback(),
        })
    }

    /// The rounds so far, one record each.
    pub fn history(&self) -> &[RoundRecord] {
        &self.history
    }

    /// Adds what the transport measured during a phase of `round` (bytes each way, seconds)
    /// to that round's record, if the round has one (the standardization has none).
    pub fn add_transport(&mut self, round: u32, bytes_up: u64, bytes_down: u64, seconds: f64) {
        if let Some(record) = self.history.iter_mut().rev().find(|r| r.round == round) {
            record.bytes_up += bytes_up;
            record.bytes_down += bytes_down;
            record.seconds += seconds;
        }
    }

    /// The model in force: weights and intercept (zeros after the standardization).
    pub fn model(&self) -> Option<&(Vec<f64>, f64)> {
        self.model.as_ref()
    }

    /// The consortium's standardization, once computed.
    pub fn standardization(&self) -> Option<&Standardization> {
        self.standardization.as_ref()
    }

    /// The evaluation of the model in force; None when it is unmeasured.
    pub fn quality(&self) -> Option<Quality> {
        self.quality
    }

    /// The per-group thresholds chosen after the last round (post-processing).
    pub fn postprocessing(&self) -> Option<&PostprocessingJson> {
        self.postprocessing.as_ref()
    }

    /// The final model's evaluation with the per-group thresholds in force.
    pub fn thresholded(&self) -> Option<&Evaluation> {
        self.thresholded.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CoordinatorConfig;
    use crate::federation::definition;
    use accord_proto::layout::{StandardizationSums, WeightedModel};
    use std::path::Path;

    const EXAMPLE: &str = include_str!("../../examples/coordinator.toml");

    /// The example federation with `rounds` rounds, at least `min` participants and `extra`
    /// TOML appended (e.g. a `[postprocessing]` table).
    fn plan(rounds: u32, min: u32, extra: &str) -> RoundPlan {
        let text = EXAMPLE
            .replace("\nrounds = 10", &format!("\nrounds = {rounds}"))
            .replace(
                "\nmin_participants = 3",
                &format!("\nmin_participants = {min}"),
            )
            + extra;
        let config = CoordinatorConfig::parse(&text, Path::new("coordinator.toml")).unwrap();
        let definition = definition(&config, None);
        assert_eq!(
            (definition.rounds, definition.min_participants),
            (rounds, min)
        );
        let columns = accord_proto::layout::encoded_columns(definition.schema.as_ref().unwrap());
        RoundPlan::new(definition, columns, config.secure_aggregation.params())
    }

    fn names(n: usize) -> BTreeSet<String> {
        (1..=n).map(|i| format!("org-{i}")).collect()
    }

    fn done(sum: Vec<f64>, contributors: usize) -> PhaseResult {
        PhaseResult {
            sum: Ok((sum, names(contributors))),
            culprits: Vec::new(),
        }
    }

    /// Standardization sums of 10 records, every column 1
    /// but one record at 0 (so no standard deviation is zero).
    fn standardized(plan: &mut RoundPlan) {
        let layout = StandardizationLayout::new(&plan.schema).unwrap();
        let columns = plan.columns.len();
        let rows: Vec<Vec<f64>> = (0..10)
            .map(|r| {
                (0..columns)
                    .map(|_| if r == 0 { 0.0 } else { 1.0 })
                    .collect()
            })
            .collect();
        let sums: StandardizationSums =
            layout.sums(rows.iter().map(|r| r.iter().copied())).unwrap();
        plan.aggregate(done(layout.to_vec(&sums), 3)).unwrap();
    }

    fn phases(plan: &RoundPlan) -> Option<(u32, Phase)> {
        plan.configure().unwrap().map(|r| (r.round, r.phase))
    }

    #[test]
    fn the_plan_asks_for_each_phase_in_order_and_ends() {
        let mut plan = plan(2, 2, "");
        assert_eq!(phases(&plan), Some((0, Phase::Standardize)));
        assert!(
            plan.global_model(0).is_none(),
            "no model before the standardization"
        );
        standardized(&mut plan);
        let columns = plan.columns.len();
        for round in 1..=2 {
            assert_eq!(phases(&plan), Some((round, Phase::Fit)));
            let request = plan.configure().unwrap().unwrap();
            assert_eq!(request.vector.len(), WeightedModel::len(columns));
            let mut sum = vec![0.0; WeightedModel::len(columns)];
            sum[0] = 3.0; // the first weight, times the samples
            *sum.last_mut().unwrap() = 6.0; // samples
            assert_eq!(plan.aggregate(done(sum, 2)).unwrap(), None);
            assert_eq!(plan.model().unwrap().0[0], 0.5);
            assert_eq!(phases(&plan), Some((round, Phase::Evaluate)));
            let bins = 100;
            let mut counts = EvaluationCounts::zeros(bins);
            (counts.n, counts.tp, counts.tn, counts.fp) = (6.0, 3.0, 2.0, 1.0);
            counts.positive_histogram[80] = 3.0;
            counts.negative_histogram[20] = 2.0;
            counts.negative_histogram[70] = 1.0;
            assert_eq!(
                plan.aggregate(done(counts.to_vec(), 2)).unwrap(),
                Some(round)
            );
            let record = plan.history().last().unwrap();
            assert_eq!(record.participants, 2);
            assert_eq!(record.quality.unwrap().accuracy, 5.0 / 6.0);
            assert_eq!(record.quality.unwrap().round, round);
        }
        assert_eq!(phases(&plan), None);
        assert_eq!(plan.history().len(), 2);
    }

    #[test]
    fn a_fit_below_min_participants_aborts_and_the_previous_model_stays() {
        let mut plan = plan(2, 3, "");
        standardized(&mut plan);
        let columns = plan.columns.len();
        let mut sum = vec![1.0; WeightedModel::len(columns)];
        *sum.last_mut().unwrap() = 4.0;
        assert_eq!(plan.aggregate(done(sum, 2)).unwrap(), Some(1));
        let record = &plan.history()[0];
        assert!(record.fit_aborted);
        assert_eq!(
            record.abort_reason,
            "fit: 2 of the 3 participants needed contributed"
        );
        assert!(record.quality.is_none());
        assert!(
            plan.model().unwrap().0.iter().all(|w| *w == 0.0),
            "the zeros stay"
        );
        // No evaluation of a model that was not made: the next round's fit follows.
        assert_eq!(phases(&plan), Some((2, Phase::Fit)));
    }

    /// A phase that aborted because one participant of two reached `stage`.
    fn below_threshold(stage: &'static str) -> PhaseAbort {
        PhaseAbort::Aggregation(AggregationError::SecAgg(SecAggError::BelowThreshold {
            stage,
            have: 1,
            threshold: 2,
        }))
    }

    #[test]
    fn an_aborted_evaluation_leaves_the_new_model_in_force_unmeasured() {
        let mut plan = plan(1, 2, "");
        standardized(&mut plan);
        let mut sum = vec![2.0; WeightedModel::len(plan.columns.len())];
        *sum.last_mut().unwrap() = 4.0;
        plan.aggregate(done(sum, 2)).unwrap();
        let aborted = PhaseResult {
            sum: Err(below_threshold("unmask")),
            culprits: vec!["org-2 (evaluate, unmask): a wrong share".into()],
        };
        assert_eq!(plan.aggregate(aborted).unwrap(), Some(1));
        let record = &plan.history()[0];
        assert!(!record.fit_aborted && record.evaluation_aborted);
        assert_eq!(
            record.abort_reason,
            "evaluate: secure aggregation: only 1 participants reached unmask, fewer than the threshold 2"
        );
        assert_eq!(record.culprits, ["org-2 (evaluate, unmask): a wrong share"]);
        assert_eq!(plan.model().unwrap().0[0], 0.5, "the new model is in force");
        assert_eq!(plan.quality(), None, "and unmeasured");
    }

    #[test]
    fn a_failed_standardization_stops_the_plan_naming_who_deviated() {
        let mut plan = plan(1, 2, "");
        let aborted = PhaseResult {
            sum: Err(below_threshold("share keys")),
            culprits: vec!["org-3 (standardize, share keys): undecryptable".into()],
        };
        let error = plan.aggregate(aborted).unwrap_err().to_string();
        assert_eq!(
            error,
            "standardization aborted: secure aggregation: only 1 participants reached share keys, fewer than the threshold 2; named: org-3 (standardize, share keys): undecryptable"
        );
        let mut plan = super::tests::plan(1, 3, "");
        let layout = StandardizationLayout::new(&plan.schema).unwrap();
        let zeros = vec![0.0; layout.len()];
        assert!(matches!(
            plan.aggregate(done(zeros, 2)),
            Err(PlanError::TooFewStandardized {
                contributors: 2,
                min: 3
            })
        ));
    }
}

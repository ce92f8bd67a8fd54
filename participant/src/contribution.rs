//! A participant's side of the round plan, without I/O: from the federation definition, its
//! records and the global model the coordinator sends, what it contributes to each phase
//! (standardization sums, a locally trained and clipped model weighted by its records,
//! evaluation counts) and the bounds that vector is encoded under. The participant node
//! ([`crate::run`]) and the simulator both call [`Contributor`], so a simulated participant
//! computes, bounds and clips exactly as a real one: only the transport differs. The
//! coordinator's side of the same plan is `accord_coordinator::RoundPlan`.

use crate::data::LocalDataset;
use crate::mitigation::{self, FairFedWeight};
use crate::model::{
    Decision, LogisticModel, Standardizer, TrainingParams, round_seed, standardization_sums,
};
use accord_proto::fairness::FairnessLayout;
use accord_proto::layout::{UnboundedFeature, encoded_columns};
use accord_proto::mitigation::{EvaluationStatistics, active_mitigation, label_counts};
use accord_proto::phase::PhaseVector;
use accord_proto::standardization::{StandardizationError, StandardizationLayout};
use accord_proto::v1::{
    FederationDefinition, GlobalModel, GroupThreshold, MitigationFeedback, MitigationKind, Phase,
    Schema, SecAggParams,
};
use ndarray::{Array1, Array2};

/// Why a participant cannot contribute what the coordinator asks: what the coordinator sent
/// does not fit this federation's definition or this participant's records.
#[derive(Debug, thiserror::Error)]
pub enum ContributionError {
    /// The definition's schema has no standardization layout (a feature without bounds).
    #[error("the federation's standardization layout: {0}")]
    Layout(#[from] UnboundedFeature),
    /// The sums of this participant's records cannot be formed (a value outside its bounds).
    #[error("the standardization sums: {0}")]
    Standardization(#[from] StandardizationError),
    /// The global model's weights, means or standard deviations are not one per column.
    #[error("the coordinator sent a model with {actual} {what}, expected {expected}")]
    ModelShape {
        /// Which part of the model ("weights", "means", "standard deviations").
        what: &'static str,
        /// The number of encoded feature columns.
        expected: usize,
        /// What the model held.
        actual: usize,
    },
    /// The global model names other columns than the schema encodes.
    #[error("the model's columns differ from the schema's encoded columns")]
    Columns,
    /// A standard deviation of the global model's standardization is not positive and finite.
    #[error("the model's standard deviation of column '{column}' is {value}, not positive")]
    StandardDeviation {
        /// The encoded column.
        column: String,
        /// The value sent.
        value: f64,
    },
    /// The post-processing thresholds are not one per group of the attribute.
    #[error(
        "the coordinator sent {got} per-group decision thresholds for '{attribute}', which has {expected} groups"
    )]
    Thresholds {
        /// The post-processed attribute.
        attribute: String,
        /// Its categories and `unknown`.
        expected: usize,
        /// The thresholds sent.
        got: usize,
    },
    /// A phase that needs the global model came before any model was accepted.
    #[error("the {0} phase needs the global model, and none was received")]
    NoModel(&'static str),
    /// The phase is not one a participant contributes values to.
    #[error("participants contribute no values to the {0} phase")]
    NoContribution(&'static str),
}

/// One participant's part of every round: its records, the consortium's standardization, the
/// global model and feedback it last accepted, and its FairFed weight.
#[derive(Debug, Clone)]
pub struct Contributor {
    definition: FederationDefinition,
    schema: Schema,
    data: LocalDataset,
    /// participant.toml's `seed`: each round's local training shuffles from it.
    seed: u64,
    /// The standardization in force and the records standardized with it.
    standardized: Option<(Standardizer, Array2<f64>)>,
    /// The last global model accepted, and the round it was sent for.
    global: Option<(u32, LogisticModel)>,
    /// What the coordinator fed back with it (mitigation sums, thresholds in force).
    feedback: MitigationFeedback,
    /// The consortium's record count, from the standardization.
    records: f64,
    fairfed: Option<FairFedWeight>,
}

impl Contributor {
    /// A participant of the federation `definition` (already validated), with its records
    /// (loaded under the definition's schema and admitted) and its seed.
    pub fn new(definition: FederationDefinition, data: LocalDataset, seed: u64) -> Self {
        let fairfed = active_mitigation(definition.mitigation.as_ref())
            .filter(|m| m.kind() == MitigationKind::Fairfed)
            .map(|_| FairFedWeight::new(data.len()));
        Self {
            schema: definition.schema.clone().unwrap_or_default(),
            definition,
            data,
            seed,
            standardized: None,
            global: None,
            feedback: MitigationFeedback::default(),
            records: 0.0,
            fairfed,
        }
    }

    /// This participant's records.
    pub fn data(&self) -> &LocalDataset {
        &self.data
    }

    /// The per-group decision thresholds in force (post-processing), as last fed back.
    pub fn thresholds(&self) -> &[GroupThreshold] {
        &self.feedback.thresholds
    }

    /// The bounds the federation encodes every fit and evaluate vector under (its secure
    /// aggregation parameters; defaults for a plain federation, which encodes nothing).
    fn params(&self) -> SecAggParams {
        self.definition
            .secure_aggregation
            .clone()
            .unwrap_or_default()
    }

    /// Accepts the global model the coordinator sent for `round`, after checking it against
    /// the schema: one weight, mean and positive standard deviation per encoded column, and
    /// one threshold per group of the post-processed attribute. Settles the FairFed weight
    /// with the feedback.
    ///
    /// # Errors
    /// [`ContributionError::ModelShape`], [`ContributionError::Columns`],
    /// [`ContributionError::StandardDeviation`], [`ContributionError::Thresholds`]; nothing is
    /// accepted then.
    pub fn accept_model(
        &mut self,
        round: u32,
        model: GlobalModel,
    ) -> Result<(), ContributionError> {
        let columns = encoded_columns(&self.schema);
        let standardization = model.standardization.unwrap_or_default();
        for (what, actual) in [
            ("weights", model.weights.len()),
            ("means", standardization.means.len()),
            ("standard deviations", standardization.std_devs.len()),
        ] {
            if actual != columns.len() {
                return Err(ContributionError::ModelShape {
                    what,
                    expected: columns.len(),
                    actual,
                });
            }
        }
        if model.columns != columns {
            return Err(ContributionError::Columns);
        }
        if let Some((column, &value)) = columns
            .iter()
            .zip(&standardization.std_devs)
            .find(|(_, s)| !(s.is_finite() && **s > 0.0))
        {
            return Err(ContributionError::StandardDeviation {
                column: column.clone(),
                value,
            });
        }
        let feedback = model.feedback.unwrap_or_default();
        if let Some(post) = &self.definition.postprocessing
            && !feedback.thresholds.is_empty()
        {
            // One threshold per category and `unknown`; each record's group indexes them.
            let expected = (self.schema.protected_attributes.iter())
                .find(|a| a.name == post.attribute)
                .map_or(0, |a| a.categories.len() + 1);
            if feedback.thresholds.len() != expected {
                return Err(ContributionError::Thresholds {
                    attribute: post.attribute.clone(),
                    expected,
                    got: feedback.thresholds.len(),
                });
            }
        }
        self.records = standardization.count as f64;
        self.feedback = feedback;
        if let (Some(fairfed), Some(m)) =
            (self.fairfed.as_mut(), self.definition.mitigation.as_ref())
        {
            let max_rows = self
                .definition
                .secure_aggregation
                .as_ref()
                .map_or(u64::MAX, |p| p.max_rows_per_participant);
            fairfed.settle(&self.feedback, m.strength, self.records, max_rows);
        }
        let standardizer = Standardizer {
            means: Array1::from(standardization.means),
            std_devs: Array1::from(standardization.std_devs),
        };
        if self
            .standardized
            .as_ref()
            .is_none_or(|(s, _)| *s != standardizer)
        {
            let x = standardizer.apply(&self.data.features);
            self.standardized = Some((standardizer, x));
        }
        self.global = Some((
            round,
            LogisticModel {
                weights: Array1::from(model.weights),
                intercept: model.intercept,
            },
        ));
        Ok(())
    }

    /// The global model accepted and the standardized records, for a phase that needs them.
    fn model(&self, phase: Phase) -> Result<(&LogisticModel, &Array2<f64>), ContributionError> {
        match (&self.global, &self.standardized) {
            (Some((_, model)), Some((_, x))) => Ok((model, x)),
            _ => Err(ContributionError::NoModel(phase.label())),
        }
    }

    /// This participant's vector for `phase` of `round`: sums over its records, never a
    /// record. Standardize: the [`StandardizationLayout`] sums (and reweighing's group × label
    /// cells). Fit: the model trained locally from the global model (seeded by
    /// [`round_seed`]), clipped to the federation's `clip` under secure aggregation, weighted
    /// by its records ([`FairFedWeight`] under FairFed). Evaluate: the global model's
    /// [`accord_proto::layout::EvaluationCounts`] and [`EvaluationStatistics`]; evaluate with
    /// thresholds: the same with the per-group thresholds in force.
    ///
    /// # Errors
    /// [`ContributionError::NoModel`] before a model was accepted for a phase that needs one;
    /// [`ContributionError::NoContribution`] for a phase without values.
    pub fn contribute(&mut self, round: u32, phase: Phase) -> Result<Vec<f64>, ContributionError> {
        let mitigation = self.definition.mitigation.clone();
        let evaluation = self.definition.evaluation.unwrap_or_default();
        match phase {
            Phase::Standardize => {
                let layout = StandardizationLayout::new(&self.schema)?;
                let sums = standardization_sums(&layout, &self.data.features)?;
                let mut values = layout.to_vec(&sums);
                if let Some(zeros) = label_counts(&self.schema, mitigation.as_ref()) {
                    values.extend(mitigation::label_counts(&self.data, zeros).values);
                }
                Ok(values)
            }
            Phase::Fit => {
                let (global, x) = self.model(phase)?;
                let params = TrainingParams::from(self.definition.training.unwrap_or_default());
                let objective = mitigation::objective(
                    mitigation.as_ref(),
                    &self.schema,
                    &self.data,
                    &self.feedback,
                );
                // FairFed's gaps are of the model trained from (computed before training).
                let gaps = mitigation
                    .as_ref()
                    .filter(|_| self.fairfed.is_some())
                    .map(|m| {
                        (
                            mitigation::local_gap(
                                m,
                                &self.schema,
                                global,
                                x.view(),
                                &self.data,
                                evaluation.decision_threshold,
                            ),
                            mitigation::global_gap(m, &self.schema, &self.feedback),
                        )
                    });
                let local = global.fit_local(
                    x.view(),
                    self.data.labels.view(),
                    &params,
                    round_seed(self.seed, round),
                    &objective,
                    self.definition.secure_aggregation.as_ref().map(|s| s.clip),
                );
                match (self.fairfed.as_mut(), mitigation.as_ref(), gaps) {
                    (Some(fairfed), Some(m), Some(gaps)) => Ok(fairfed
                        .upload(round, &local, gaps, m.strength, self.records)
                        .to_vec()),
                    _ => Ok(local.weighted(self.data.len()).to_vec()),
                }
            }
            Phase::Evaluate | Phase::EvaluateThresholds => {
                let (global, x) = self.model(phase)?;
                let bins = evaluation.histogram_bins as usize;
                let in_force: Vec<u32> = self.feedback.thresholds.iter().map(|t| t.bin).collect();
                let decision = self.decision(phase, &in_force);
                let counts =
                    global.evaluate_with(x.view(), self.data.labels.view(), bins, &decision);
                let zeros = EvaluationStatistics::zeros(
                    &self.schema,
                    mitigation.as_ref(),
                    self.definition.postprocessing.as_ref(),
                    &evaluation,
                );
                let statistics = mitigation::evaluation_statistics(
                    global,
                    x.view(),
                    &self.data,
                    zeros,
                    &decision,
                );
                let mut values = counts.to_vec();
                values.extend(statistics.to_vec());
                Ok(values)
            }
            other => Err(ContributionError::NoContribution(other.label())),
        }
    }

    /// How a probability becomes a decision in `phase`: the per-group thresholds in force
    /// (`in_force`) when post-processing chose them and the phase evaluates with thresholds or
    /// audits fairness; else the federation's single decision threshold.
    fn decision<'a>(&'a self, phase: Phase, in_force: &'a [u32]) -> Decision<'a> {
        let evaluation = self.definition.evaluation.unwrap_or_default();
        match &self.definition.postprocessing {
            Some(post)
                if !in_force.is_empty()
                    && matches!(phase, Phase::EvaluateThresholds | Phase::Fairness) =>
            {
                Decision::PerGroup {
                    groups: &self.data.groups[&post.attribute],
                    thresholds: in_force,
                    histogram_bins: evaluation.histogram_bins as usize,
                }
            }
            _ => Decision::Threshold(evaluation.decision_threshold),
        }
    }

    /// A phase's vector: its bounds and relations, built as the coordinator builds them (from
    /// the definition's secure-aggregation parameters).
    ///
    /// # Errors
    /// [`ContributionError::Standardization`] when the schema has no standardization layout.
    pub fn vector(&self, phase: Phase) -> Result<PhaseVector, ContributionError> {
        let params = self.params();
        let rows = params.max_rows_per_participant;
        let mitigation = self.definition.mitigation.as_ref();
        Ok(match phase {
            Phase::Standardize => PhaseVector::standardize(&self.schema, mitigation, rows)?,
            Phase::Fit => {
                let fairfed = match (active_mitigation(mitigation), &self.fairfed) {
                    (Some(m), Some(_)) => Some((m.strength, self.records)),
                    _ => None,
                };
                PhaseVector::fit(
                    encoded_columns(&self.schema).len(),
                    params.clip,
                    rows,
                    fairfed,
                )
            }
            _ => PhaseVector::evaluate(
                &self.schema,
                mitigation,
                self.definition.postprocessing.as_ref(),
                &self.definition.evaluation.unwrap_or_default(),
                rows,
            ),
        })
    }

    /// This participant's fairness statistics of the final model under the decisions in force
    /// (the per-group thresholds of post-processing, if any): counts per group of `layout`.
    ///
    /// # Errors
    /// [`ContributionError::NoModel`] before the final model was accepted.
    pub fn fairness_counts(&self, layout: &FairnessLayout) -> Result<Vec<u64>, ContributionError> {
        let (global, x) = self.model(Phase::Fairness)?;
        let columns: Vec<&Vec<usize>> = self
            .schema
            .protected_attributes
            .iter()
            .map(|a| &self.data.groups[&a.name])
            .collect();
        let in_force: Vec<u32> = self.feedback.thresholds.iter().map(|t| t.bin).collect();
        let decision = self.decision(Phase::Fairness, &in_force);
        let mut values = vec![0u64; layout.len()];
        let mut categories = vec![0; columns.len()];
        for (row, (p, &label)) in global
            .predict(x.view())
            .iter()
            .zip(self.data.labels.iter())
            .enumerate()
        {
            for (slot, column) in categories.iter_mut().zip(&columns) {
                *slot = column[row];
            }
            layout.add(
                &mut values,
                &categories,
                label > 0.5,
                decision.positive(row, *p),
                *p,
            );
        }
        Ok(values)
    }
}

//! What one participant's vector holds in each phase, described once for every party: the
//! bounds secure aggregation encodes against (so a sum cannot wrap) and the relations a
//! participant's input-validity proof shows (so no participant can move a sum further than an
//! honest one with `max_rows` records could). The participant node, the coordinator and the
//! simulator all build a phase's vector here, so they cannot disagree about it.

use crate::layout::{Bound, EvaluationCounts, Relation, WeightedModel};
use crate::mitigation::{EvaluationStatistics, FairFedUpdate, label_counts};
use crate::standardization::{StandardizationError, StandardizationLayout};
use crate::v1::{EvaluationParams, FairnessMitigation, Schema, ThresholdPostprocessing};

/// One phase's vector: per-position bounds (in order) and the relations over positions.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseVector {
    /// Runs of positions in order, each with the bound one participant's values keep.
    pub bounds: Vec<Bound>,
    /// Relations between positions that one participant's validity proof shows.
    pub relations: Vec<Relation>,
}

impl PhaseVector {
    /// The number of values.
    pub fn len(&self) -> usize {
        self.bounds.iter().map(|b| b.len).sum()
    }

    /// Whether the vector has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Standardize: the [`StandardizationLayout`]'s words, then (reweighing) the label counts
    /// per group.
    ///
    /// Errors: a numeric feature of `schema` without both `min` and `max`; `max_rows` above
    /// 2^28.
    pub fn standardize(
        schema: &Schema,
        mitigation: Option<&FairnessMitigation>,
        max_rows: u64,
    ) -> Result<Self, StandardizationError> {
        let layout = StandardizationLayout::new(schema)?;
        let mut bounds = layout.bounds(max_rows)?;
        let mut relations = layout.relations();
        if let Some(counts) = label_counts(schema, mitigation) {
            let start: usize = bounds.iter().map(|b| b.len).sum();
            bounds.extend(counts.bounds(max_rows));
            relations.extend(counts.relations(start));
        }
        Ok(Self { bounds, relations })
    }

    /// Fit over `columns` encoded features with weights clipped to `clip`: FedAvg's
    /// [`WeightedModel`], or FairFed's update with `fairfed = (beta, records)`.
    pub fn fit(columns: usize, clip: f64, max_rows: u64, fairfed: Option<(f64, f64)>) -> Self {
        match fairfed {
            Some((beta, records)) => Self {
                bounds: FairFedUpdate::bounds(columns, clip, max_rows, beta, records),
                relations: FairFedUpdate::relations(columns, clip),
            },
            None => Self {
                bounds: WeightedModel::bounds(columns, clip, max_rows),
                relations: WeightedModel::relations(columns, clip),
            },
        }
    }

    /// Evaluate: [`EvaluationCounts`] with the evaluation's score bins, then the
    /// [`EvaluationStatistics`] mitigation, post-processing and group gaps need.
    pub fn evaluate(
        schema: &Schema,
        mitigation: Option<&FairnessMitigation>,
        postprocessing: Option<&ThresholdPostprocessing>,
        evaluation: &EvaluationParams,
        max_rows: u64,
    ) -> Self {
        let bins = evaluation.histogram_bins as usize;
        let statistics =
            EvaluationStatistics::zeros(schema, mitigation, postprocessing, evaluation);
        let start = EvaluationCounts::len(bins);
        let mut bounds = EvaluationCounts::bounds(bins, max_rows);
        bounds.extend(statistics.bounds(max_rows));
        let mut relations = EvaluationCounts::relations(bins);
        relations.extend(statistics.relations(start));
        Self { bounds, relations }
    }
}

//! Fairness-aware training and post-processing: the statistics and the arithmetic that
//! participants, the coordinator and the simulator share.
//!
//! Every statistic here is a sum over records that travels through the federation's
//! aggregation (secure aggregation by default), never a record:
//!
//! - the targeted attribute's [`GroupCounts`] of the current global model (evaluate phase), from
//!   which the global group rates and gaps come ([`rates`], [`GroupCounts::gap`]);
//! - its group × label counts (standardize phase), from which the Kamiran–Calders reweighing
//!   weights come ([`reweighing_weights`]);
//! - FairFed's fit vector ([`FairFedUpdate`]), which carries each participant's local gap inside
//!   the secure sum so that the coordinator learns only the mean gap and weighted sums;
//! - per-group score histograms ([`GroupHistograms`]), from which per-group decision thresholds
//!   are chosen at bin edges ([`GroupHistograms::thresholds`]).
//!
//! Strength 0 reproduces plain FedAvg exactly: every weight becomes 1, every penalty 0 and every
//! FairFed correction 0, in arithmetic that leaves the plain values bit for bit unchanged.

use crate::layout::{
    Bound, EvaluationCounts, GroupCounts, GroupTally, LengthMismatch, Relation, WeightedModel,
    check_len,
};
use crate::v1::{
    EvaluationParams, FairnessMetric, FairnessMitigation, MitigationKind, Schema,
    ThresholdPostprocessing, ThresholdRule,
};

impl FairnessMetric {
    /// The name used in configs and outputs.
    pub fn config_name(self) -> &'static str {
        match self {
            FairnessMetric::Unspecified => "unspecified",
            FairnessMetric::DemographicParity => "demographic_parity",
            FairnessMetric::EqualOpportunity => "equal_opportunity",
        }
    }

    /// The metric a config names (`demographic_parity` or `equal_opportunity`); `None` for
    /// any other name.
    pub fn from_config(name: &str) -> Option<Self> {
        match name {
            "demographic_parity" => Some(FairnessMetric::DemographicParity),
            "equal_opportunity" => Some(FairnessMetric::EqualOpportunity),
            _ => None,
        }
    }
}

impl MitigationKind {
    /// The name used in configs and outputs.
    pub fn config_name(self) -> &'static str {
        match self {
            MitigationKind::None => "none",
            MitigationKind::Fairfed => "fairfed",
            MitigationKind::Regularizer => "regularizer",
            MitigationKind::Reweighing => "reweighing",
        }
    }

    /// The kind a config names (the inverse of [`MitigationKind::config_name`]); `None` for
    /// an unknown name.
    pub fn from_config(name: &str) -> Option<Self> {
        [
            MitigationKind::None,
            MitigationKind::Fairfed,
            MitigationKind::Regularizer,
            MitigationKind::Reweighing,
        ]
        .into_iter()
        .find(|k| k.config_name() == name)
    }
}

impl ThresholdRule {
    /// The name used in configs and outputs.
    pub fn config_name(self) -> &'static str {
        match self {
            ThresholdRule::None => "none",
            ThresholdRule::EqualOpportunity => "equal_opportunity",
            ThresholdRule::DemographicParity => "demographic_parity",
        }
    }

    /// The rule a config names (the inverse of [`ThresholdRule::config_name`]); `None` for
    /// an unknown name.
    pub fn from_config(name: &str) -> Option<Self> {
        [
            ThresholdRule::None,
            ThresholdRule::EqualOpportunity,
            ThresholdRule::DemographicParity,
        ]
        .into_iter()
        .find(|k| k.config_name() == name)
    }

    /// The rate the thresholds equalize.
    pub fn metric(self) -> FairnessMetric {
        match self {
            ThresholdRule::DemographicParity => FairnessMetric::DemographicParity,
            _ => FairnessMetric::EqualOpportunity,
        }
    }
}

impl GroupTally {
    /// The group's rate under `metric`: selection rate or true-positive rate.
    pub fn rate(&self, metric: FairnessMetric) -> Option<f64> {
        match metric {
            FairnessMetric::DemographicParity => self.selection_rate(),
            _ => self.true_positive_rate(),
        }
    }

    /// The records `metric` is measured over: all of the group's, or its actual positives.
    pub fn base(&self, metric: FairnessMetric) -> f64 {
        match metric {
            FairnessMetric::DemographicParity => self.n,
            _ => self.positives,
        }
    }
}

impl GroupCounts {
    /// Zeros for one protected attribute of the schema; None if the schema has no such attribute.
    pub fn for_attribute(schema: &Schema, attribute: &str) -> Option<Self> {
        let protected = schema
            .protected_attributes
            .iter()
            .find(|a| a.name == attribute)?
            .clone();
        Some(Self::zeros(&Schema {
            protected_attributes: vec![protected],
            ..Default::default()
        }))
    }

    /// The same groups with `values` (e.g. an aggregated sum), if the length matches.
    pub fn with_values(&self, values: &[f64]) -> Result<Self, LengthMismatch> {
        check_len("group counts", values, self.len())?;
        Ok(Self {
            groups: self.groups.clone(),
            values: values.to_vec(),
        })
    }

    /// The gap under `metric` between the groups of `attribute` with at least `min_size` records.
    pub fn gap(&self, attribute: usize, metric: FairnessMetric, min_size: f64) -> Option<f64> {
        let (dp, eo) = self.gaps(attribute, min_size);
        match metric {
            FairnessMetric::DemographicParity => dp,
            _ => eo,
        }
    }
}

/// A group's global rate and the records it is measured over, for the regularizer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupRate {
    /// Selection rate or true-positive rate.
    pub rate: f64,
    /// Records (demographic parity) or actual positives (equal opportunity) of the group.
    pub base: f64,
}

/// Each group's rate under `metric` for the first attribute of `counts`; None for a group with
/// fewer than `min_size` records or no records to measure the rate on.
pub fn rates(
    counts: &GroupCounts,
    metric: FairnessMetric,
    min_size: f64,
) -> Vec<Option<GroupRate>> {
    counts
        .tallies(0)
        .into_iter()
        .map(|(_, t)| {
            let rate = t.rate(metric)?;
            (t.n >= min_size.max(1.0)).then_some(GroupRate {
                rate,
                base: t.base(metric),
            })
        })
        .collect()
}

/// Kamiran and Calders' reweighing: the weight of a record in group g with label y is
/// P(g)·P(y) / P(g, y), which makes group and label independent in the weighted data. With
/// `strength` s the weight is 1 + s·(that − 1): 0 is unweighted, 1 the full reweighing. Returns
/// `[weight of a negative, weight of a positive]` per group of the first attribute of `counts`
/// (a cell without records gets weight 1).
pub fn reweighing_weights(counts: &GroupCounts, strength: f64) -> Vec<[f64; 2]> {
    let tallies: Vec<GroupTally> = counts.tallies(0).into_iter().map(|(_, t)| t).collect();
    let n: f64 = tallies.iter().map(|t| t.n).sum();
    let positives: f64 = tallies.iter().map(|t| t.positives).sum();
    let cell = |group: f64, label: f64, joint: f64| {
        let full = if joint > 0.0 && n > 0.0 {
            group * label / (n * joint)
        } else {
            1.0
        };
        1.0 + strength * (full - 1.0)
    };
    tallies
        .iter()
        .map(|t| {
            [
                cell(t.n, n - positives, t.n - t.positives),
                cell(t.n, positives, t.positives),
            ]
        })
        .collect()
}

/// FairFed's fit vector (Ezzeldin et al., AAAI 2023), arranged so that the coordinator learns
/// only sums. FairFed updates participant k's aggregation weight each round by
/// ω_k ← ω_k − β·(Δ_k − mean Δ), Δ_k = |F_global − F_k| the distance between its local
/// fairness gap and the global one. The mean is unknown when k uploads, but the update is
/// linear in it, so k uploads with ω'_k = ω_k − β·N·Δ_k (weights in records, N the consortium's
/// record count): `[ω'_k·model, ω'_k, d_k·model, d_k, d_k·Δ_k]`, d_k = 1 when its local gap is
/// defined (0: its weight stays). From the sum, mean Δ = Σ d·Δ / Σ d and the FairFed model is
/// (Σ ω'·model + β·N·mean Δ·Σ d·model) / (Σ ω' + β·N·mean Δ·Σ d). At β = 0, ω'_k = n_k and the
/// correction is 0: exactly FedAvg.
#[derive(Debug, Clone, PartialEq)]
pub struct FairFedUpdate {
    /// ω'·[weights, intercept].
    pub weighted_model: Vec<f64>,
    /// ω'_k, the participant's adjusted aggregation weight in records.
    pub weight: f64,
    /// d·[weights, intercept].
    pub model: Vec<f64>,
    /// d_k: 1 when the participant's local gap is defined, else 0.
    pub defined: f64,
    /// d_k·Δ_k, the distance of its local gap from the global one (0 when undefined).
    pub gap: f64,
}

impl FairFedUpdate {
    /// The vector's length for `columns` features: `2·(columns + 1) + 3`.
    pub fn len(columns: usize) -> usize {
        2 * (columns + 1) + 3
    }

    /// The vector in wire order: `[ω'·model, ω', d·model, d, d·Δ]`.
    pub fn to_vec(&self) -> Vec<f64> {
        let mut v = self.weighted_model.clone();
        v.push(self.weight);
        v.extend_from_slice(&self.model);
        v.push(self.defined);
        v.push(self.gap);
        v
    }

    /// Reads a vector in wire order; errs if it is not [`FairFedUpdate::len`] long.
    pub fn from_slice(values: &[f64], columns: usize) -> Result<Self, LengthMismatch> {
        check_len("FairFed fit", values, Self::len(columns))?;
        let m = columns + 1;
        Ok(Self {
            weighted_model: values[..m].to_vec(),
            weight: values[m],
            model: values[m + 1..2 * m + 1].to_vec(),
            defined: values[2 * m + 1],
            gap: values[2 * m + 2],
        })
    }

    /// The largest FairFed weight a participant may hold: its weight starts at its record count
    /// and is capped at `max_rows`; β·N·Δ subtracts at most β·N.
    pub fn weight_bound(max_rows: u64, beta: f64, records: f64) -> f64 {
        max_rows as f64 + beta * records
    }

    /// One participant's bounds. At β = 0 the weighted model's bound is FedAvg's, so it is
    /// encoded (and summed) exactly as FedAvg's.
    pub fn bounds(columns: usize, clip: f64, max_rows: u64, beta: f64, records: f64) -> Vec<Bound> {
        let weight = Self::weight_bound(max_rows, beta, records);
        let mut bounds = WeightedModel::bounds(columns, clip, max_rows);
        bounds[0].bound = weight * clip;
        bounds[1] = Bound::new("FairFed weight", 1, weight, false);
        bounds.extend([
            Bound::new("FairFed model", columns + 1, clip, false),
            Bound::new("FairFed participants", 1, 1.0, true),
            Bound::new("FairFed local gap", 1, 1.0, false),
        ]);
        bounds
    }

    /// What one participant's validity proof shows besides the bounds: the flag d ≥ 0,
    /// `|d·w_j| ≤ clip·d` for the flagged model and `0 ≤ d·Δ ≤ d` for the gap. The weight ω' may
    /// be negative (β·N·Δ is subtracted), so ω'·model is held only by its segment bound.
    pub fn relations(columns: usize, clip: f64) -> Vec<Relation> {
        let m = columns + 1;
        let defined = 2 * m + 1;
        vec![
            Relation::non_negative(defined..defined + 1),
            Relation::scaled(m + 1..2 * m + 1, defined, -clip, clip),
            Relation::scaled(defined + 1..defined + 2, defined, 0.0, 1.0),
        ]
    }

    /// The FairFed aggregate from the summed vector: the weighted model in FedAvg's layout and
    /// the mean gap (None when no participant had a defined local gap).
    pub fn combine(&self, beta: f64, records: f64) -> (WeightedModel, Option<f64>) {
        let mean = (self.defined > 0.0).then(|| self.gap / self.defined);
        let shift = beta * records * mean.unwrap_or(0.0);
        let columns = self.model.len() - 1;
        let corrected: Vec<f64> = self
            .weighted_model
            .iter()
            .zip(&self.model)
            .map(|(w, m)| w + shift * m)
            .collect();
        let model = WeightedModel {
            weighted_weights: corrected[..columns].to_vec(),
            weighted_intercept: corrected[columns],
            samples: self.weight + shift * self.defined,
        };
        (model, mean)
    }
}

/// For each group of one attribute, histograms of the predicted probability of its actual
/// positives and of its actual negatives (`bins` bins, bin i covering [i/bins, (i+1)/bins)):
/// `[positives per bin, negatives per bin]` per category, then unknown. Sufficient for every
/// group's confusion counts at any threshold on a bin edge.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupHistograms {
    /// The protected attribute the histograms break down.
    pub attribute: String,
    /// The attribute's categories with `unknown` last.
    pub categories: Vec<String>,
    /// Bins per histogram.
    pub bins: usize,
    /// `2·bins` counts per category (positives per bin, then negatives per bin).
    pub values: Vec<f64>,
}

/// The thresholds chosen for one attribute, and what they do on the aggregated histograms.
#[derive(Debug, Clone, PartialEq)]
pub struct ChosenThresholds {
    /// The threshold bin of each group (categories, then unknown): positive when the predicted
    /// probability's bin is at least this.
    pub bins: Vec<u32>,
    /// Accuracy and the targeted gap with one threshold for all groups (each None when
    /// undefined: no records, or fewer than two groups to compare)…
    pub before: (Option<f64>, Option<f64>),
    /// …and with the chosen thresholds.
    pub after: (Option<f64>, Option<f64>),
}

impl GroupHistograms {
    /// Zeros for `attribute` with `bins` bins; `None` when the schema does not protect it.
    pub fn for_attribute(schema: &Schema, attribute: &str, bins: usize) -> Option<Self> {
        let counts = GroupCounts::for_attribute(schema, attribute)?;
        let (attribute, categories) = counts.groups.into_iter().next()?;
        let values = vec![0.0; categories.len() * 2 * bins];
        Some(Self {
            attribute,
            categories,
            bins,
            values,
        })
    }

    /// Positions in the vector: `2·bins` per category.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no positions.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The same layout holding `values` (e.g. an aggregated sum); errs on another length.
    pub fn with_values(&self, values: &[f64]) -> Result<Self, LengthMismatch> {
        check_len("group histograms", values, self.len())?;
        Ok(Self {
            values: values.to_vec(),
            ..self.clone()
        })
    }

    /// Adds one record: its category index, label and predicted probability.
    pub fn add(&mut self, category: usize, positive: bool, probability: f64) {
        let bin = EvaluationCounts::bin(probability, self.bins);
        let at = category * 2 * self.bins + if positive { 0 } else { self.bins } + bin;
        self.values[at] += 1.0;
    }

    /// What one participant's validity proof shows besides the bounds, for these histograms
    /// starting at position `start` of the phase's vector: every count is non-negative.
    pub fn relations(&self, start: usize) -> Vec<Relation> {
        vec![Relation::non_negative(start..start + self.len())]
    }

    /// One participant's bounds: every count at most `max_rows`.
    pub fn bounds(&self, max_rows: u64) -> Vec<Bound> {
        vec![Bound::new(
            "group score histograms",
            self.len(),
            max_rows as f64,
            true,
        )]
    }

    fn histograms(&self, group: usize) -> (&[f64], &[f64]) {
        let at = group * 2 * self.bins;
        (
            &self.values[at..at + self.bins],
            &self.values[at + self.bins..at + 2 * self.bins],
        )
    }

    /// The group counts with group g deciding positive from bin `thresholds[g]` up.
    pub fn counts_at(&self, thresholds: &[u32]) -> GroupCounts {
        let mut values = Vec::with_capacity(self.categories.len() * crate::layout::GROUP_FIELDS);
        for (g, &t) in thresholds.iter().enumerate() {
            let (pos, neg) = self.histograms(g);
            let t = (t as usize).min(self.bins);
            let positives: f64 = pos.iter().sum();
            let tp: f64 = pos[t..].iter().sum();
            let fp: f64 = neg[t..].iter().sum();
            values.extend([positives + neg.iter().sum::<f64>(), positives, tp + fp, tp]);
        }
        GroupCounts {
            groups: vec![(self.attribute.clone(), self.categories.clone())],
            values,
        }
    }

    /// Accuracy over all groups with group g deciding positive from bin `thresholds[g]` up; None
    /// (undefined) when the histograms hold no record.
    pub fn accuracy_at(&self, thresholds: &[u32]) -> Option<f64> {
        let (mut correct, mut n) = (0.0, 0.0);
        for (g, &t) in thresholds.iter().enumerate() {
            let (pos, neg) = self.histograms(g);
            let t = (t as usize).min(self.bins);
            correct += pos[t..].iter().sum::<f64>() + neg[..t].iter().sum::<f64>();
            n += pos.iter().sum::<f64>() + neg.iter().sum::<f64>();
        }
        (n > 0.0).then(|| correct / n)
    }

    /// Per-group thresholds under `rule`. Every group of at least `min_size` records starts at
    /// the common threshold bin `base` and moves to the bin edge whose rate is closest to
    /// rate + `strength`·(target − rate), where the target is the common rate that gives the
    /// best accuracy when every qualifying group is brought to it (Hardt et al.'s equalized
    /// rates, deterministically at bin edges). Smaller groups keep `base`. Strength 0 keeps
    /// `base` for everyone.
    pub fn thresholds(
        &self,
        rule: ThresholdRule,
        strength: f64,
        base: u32,
        min_size: f64,
    ) -> ChosenThresholds {
        let metric = rule.metric();
        let groups = self.categories.len();
        let common = vec![base; groups];
        let measure = |t: &[u32]| {
            (
                self.accuracy_at(t),
                self.counts_at(t).gap(0, metric, min_size),
            )
        };
        let before = measure(&common);
        let base_counts = self.counts_at(&common);
        let qualifying: Vec<bool> = base_counts
            .tallies(0)
            .iter()
            .map(|(_, t)| t.n >= min_size.max(1.0) && t.base(metric) > 0.0)
            .collect();
        if rule == ThresholdRule::None || qualifying.iter().filter(|q| **q).count() < 2 {
            return ChosenThresholds {
                bins: common,
                before,
                after: before,
            };
        }
        // rate_at[g][t]: group g's rate when it decides positive from bin t up.
        let rate_at: Vec<Vec<f64>> = (0..groups)
            .map(|g| {
                let (pos, neg) = self.histograms(g);
                let denominator: f64 = match metric {
                    FairnessMetric::DemographicParity => {
                        pos.iter().sum::<f64>() + neg.iter().sum::<f64>()
                    }
                    _ => pos.iter().sum(),
                };
                (0..=self.bins)
                    .map(|t| {
                        let selected: f64 = match metric {
                            FairnessMetric::DemographicParity => {
                                pos[t..].iter().sum::<f64>() + neg[t..].iter().sum::<f64>()
                            }
                            _ => pos[t..].iter().sum(),
                        };
                        selected / denominator.max(1.0)
                    })
                    .collect()
            })
            .collect();
        // The bin whose rate is closest to `target`; ties go to the bin nearest `base`.
        let closest = |g: usize, target: f64| -> u32 {
            (0..=self.bins as u32)
                .min_by(|&a, &b| {
                    let da = (rate_at[g][a as usize] - target).abs();
                    let db = (rate_at[g][b as usize] - target).abs();
                    da.total_cmp(&db)
                        .then((a.abs_diff(base)).cmp(&b.abs_diff(base)))
                })
                .unwrap_or(base)
        };
        let choose = |target: f64, s: f64| -> Vec<u32> {
            (0..groups)
                .map(|g| {
                    if !qualifying[g] {
                        return base;
                    }
                    let own = rate_at[g][base as usize];
                    closest(g, own + s * (target - own))
                })
                .collect()
        };
        // The common target with the best accuracy, over a grid of rates.
        let target = (0..=200)
            .map(|i| f64::from(i) / 200.0)
            .max_by(|&a, &b| {
                self.accuracy_at(&choose(a, 1.0))
                    .partial_cmp(&self.accuracy_at(&choose(b, 1.0)))
                    .expect("accuracies are finite or undefined")
            })
            .unwrap_or(0.5);
        let bins = if strength == 0.0 {
            common
        } else {
            choose(target, strength)
        };
        let after = measure(&bins);
        ChosenThresholds {
            bins,
            before,
            after,
        }
    }
}

/// The mitigation in force, if any (kind `none` is none).
pub fn active_mitigation(mitigation: Option<&FairnessMitigation>) -> Option<&FairnessMitigation> {
    mitigation.filter(|m| m.kind() != MitigationKind::None)
}

/// The post-processing in force, if any (rule `none` is none).
pub fn active_postprocessing(
    postprocessing: Option<&ThresholdPostprocessing>,
) -> Option<&ThresholdPostprocessing> {
    postprocessing.filter(|p| p.rule() != ThresholdRule::None)
}

/// What reweighing appends to the standardize vector: the targeted attribute's group counts,
/// of which only n and positives (the group × label cells) are filled.
pub fn label_counts(
    schema: &Schema,
    mitigation: Option<&FairnessMitigation>,
) -> Option<GroupCounts> {
    active_mitigation(mitigation)
        .filter(|m| m.kind() == MitigationKind::Reweighing)
        .and_then(|m| GroupCounts::for_attribute(schema, &m.attribute))
}

/// What the evaluate vector carries after the [`EvaluationCounts`]: the mitigation's
/// attribute's group counts of the evaluated model (when it mitigates), the post-processed
/// attribute's group score histograms (when it post-processes), then every protected
/// attribute's group counts (when the evaluation reports group gaps,
/// `EvaluationParams.group_gaps`). Each part is absent when not asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationStatistics {
    /// The mitigated attribute's [`GroupCounts`], for the mitigation's feedback.
    pub counts: Option<GroupCounts>,
    /// The post-processed attribute's score histograms, for choosing per-group thresholds.
    pub histograms: Option<GroupHistograms>,
    /// Every protected attribute's [`GroupCounts`], for the per-round fairness gaps.
    pub all_groups: Option<GroupCounts>,
}

impl EvaluationStatistics {
    /// The layout, zeroed, for a federation's schema, mitigation, post-processing and
    /// evaluation parameters.
    pub fn zeros(
        schema: &Schema,
        mitigation: Option<&FairnessMitigation>,
        postprocessing: Option<&ThresholdPostprocessing>,
        evaluation: &EvaluationParams,
    ) -> Self {
        Self {
            counts: active_mitigation(mitigation)
                .and_then(|m| GroupCounts::for_attribute(schema, &m.attribute)),
            histograms: active_postprocessing(postprocessing).and_then(|p| {
                GroupHistograms::for_attribute(
                    schema,
                    &p.attribute,
                    evaluation.histogram_bins as usize,
                )
            }),
            all_groups: evaluation
                .group_gaps
                .then(|| GroupCounts::zeros(schema))
                .filter(|g| !g.is_empty()),
        }
    }

    fn parts(&self) -> [Option<&[f64]>; 3] {
        [
            self.counts.as_ref().map(|c| c.values.as_slice()),
            self.histograms.as_ref().map(|h| h.values.as_slice()),
            self.all_groups.as_ref().map(|g| g.values.as_slice()),
        ]
    }

    /// The number of values, all parts together.
    pub fn len(&self) -> usize {
        self.parts().iter().flatten().map(|p| p.len()).sum()
    }

    /// True when the evaluation carries nothing after its counts.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values, in layout order.
    pub fn to_vec(&self) -> Vec<f64> {
        self.parts()
            .iter()
            .flatten()
            .flat_map(|p| p.iter().copied())
            .collect()
    }

    /// The same layout with `values` (e.g. an aggregated sum).
    ///
    /// # Errors
    /// [`LengthMismatch`] when `values` is not [`Self::len`] long.
    pub fn with_values(&self, values: &[f64]) -> Result<Self, LengthMismatch> {
        check_len("evaluation statistics", values, self.len())?;
        let split = self.counts.as_ref().map_or(0, GroupCounts::len);
        let split2 = split + self.histograms.as_ref().map_or(0, GroupHistograms::len);
        Ok(Self {
            counts: self
                .counts
                .as_ref()
                .map(|c| c.with_values(&values[..split]))
                .transpose()?,
            histograms: self
                .histograms
                .as_ref()
                .map(|h| h.with_values(&values[split..split2]))
                .transpose()?,
            all_groups: self
                .all_groups
                .as_ref()
                .map(|g| g.with_values(&values[split2..]))
                .transpose()?,
        })
    }

    /// The relations of the group counts and histograms, for statistics starting at position
    /// `start` of the phase's vector (after [`EvaluationCounts`]).
    pub fn relations(&self, start: usize) -> Vec<Relation> {
        let mut relations = Vec::new();
        let mut at = start;
        if let Some(c) = &self.counts {
            relations.extend(c.relations(at));
            at += c.len();
        }
        if let Some(h) = &self.histograms {
            relations.extend(h.relations(at));
            at += h.len();
        }
        if let Some(g) = &self.all_groups {
            relations.extend(g.relations(at));
        }
        relations
    }

    /// One participant's bounds: every count at most `max_rows`.
    pub fn bounds(&self, max_rows: u64) -> Vec<Bound> {
        let mut bounds = self
            .counts
            .as_ref()
            .map_or_else(Vec::new, |c| c.bounds(max_rows));
        if let Some(h) = &self.histograms {
            bounds.extend(h.bounds(max_rows));
        }
        if let Some(g) = &self.all_groups {
            bounds.extend(g.bounds(max_rows));
        }
        bounds
    }

    /// The demographic-parity and equal-opportunity gaps of every protected attribute, from
    /// the summed [`Self::all_groups`] (Fairlearn's differences, groups of at least one record;
    /// see [`GroupCounts::gaps`]); empty when the evaluation does not report group gaps.
    pub fn gaps(&self) -> Vec<AttributeGaps> {
        let Some(groups) = &self.all_groups else {
            return Vec::new();
        };
        groups
            .groups
            .iter()
            .enumerate()
            .map(|(i, (attribute, _))| {
                let (demographic_parity, equal_opportunity) = groups.gaps(i, 1.0);
                AttributeGaps {
                    attribute: attribute.clone(),
                    demographic_parity,
                    equal_opportunity,
                }
            })
            .collect()
    }
}

/// One protected attribute's fairness gaps of an evaluated model: None where undefined (fewer
/// than two groups with a defined rate; docs/metrics.md).
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeGaps {
    /// The protected attribute.
    pub attribute: String,
    /// Demographic-parity difference: max − min selection rate over its groups.
    pub demographic_parity: Option<f64>,
    /// Equal-opportunity difference: max − min true-positive rate over its groups.
    pub equal_opportunity: Option<f64>,
}

/// The threshold bin of a decision threshold on the predicted probability.
pub fn threshold_bin(threshold: f64, bins: usize) -> u32 {
    (threshold * bins as f64).round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::ProtectedAttribute;

    fn schema() -> Schema {
        Schema {
            protected_attributes: vec![ProtectedAttribute {
                name: "age".into(),
                categories: vec!["young".into(), "old".into()],
                use_as_feature: false,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for kind in ["none", "fairfed", "regularizer", "reweighing"] {
            assert_eq!(
                MitigationKind::from_config(kind).unwrap().config_name(),
                kind
            );
        }
        assert_eq!(MitigationKind::from_config("fair-fed"), None);
        assert_eq!(
            FairnessMetric::from_config("equal_opportunity"),
            Some(FairnessMetric::EqualOpportunity)
        );
        assert_eq!(FairnessMetric::from_config("unspecified"), None);
        assert_eq!(
            ThresholdRule::from_config("demographic_parity")
                .unwrap()
                .metric(),
            FairnessMetric::DemographicParity
        );
    }

    #[test]
    fn reweighing_makes_group_and_label_independent_and_strength_zero_is_one() {
        let mut counts = GroupCounts::for_attribute(&schema(), "age").unwrap();
        // Young: 3 positives, 1 negative. Old: 1 positive, 3 negatives.
        for (group, positive) in [(0, true), (0, true), (0, true), (0, false)] {
            counts.add(&[group], positive, false);
        }
        for (group, positive) in [(1, true), (1, false), (1, false), (1, false)] {
            counts.add(&[group], positive, false);
        }
        let full = reweighing_weights(&counts, 1.0);
        // P(young) P(positive) / P(young, positive) = 0.5 · 0.5 / (3/8) = 2/3.
        assert!((full[0][1] - 2.0 / 3.0).abs() < 1e-12);
        assert!((full[1][1] - 2.0).abs() < 1e-12);
        // Weighted positive share is the same in both groups.
        let share = |g: usize, p: f64, q: f64| p * full[g][1] / (p * full[g][1] + q * full[g][0]);
        assert!((share(0, 3.0, 1.0) - share(1, 1.0, 3.0)).abs() < 1e-12);
        assert!(
            reweighing_weights(&counts, 0.0)
                .iter()
                .flatten()
                .all(|w| *w == 1.0)
        );
        assert_eq!(full[2], [1.0, 1.0], "unknown has no records");
    }

    #[test]
    fn fairfed_at_beta_zero_is_fedavg_and_otherwise_shifts_weight_to_the_fairer() {
        // Two participants with one column: models 1 and 3, 100 and 300 records, local gaps
        // 0.1 and 0.3 away from the global one.
        let upload = |model: f64, n: f64, gap: f64, beta: f64| {
            let weight = n - beta * 400.0 * gap;
            FairFedUpdate {
                weighted_model: vec![weight * model, 0.0],
                weight,
                model: vec![model, 0.0],
                defined: 1.0,
                gap,
            }
            .to_vec()
        };
        let sum = |beta: f64| {
            let a = upload(1.0, 100.0, 0.1, beta);
            let b = upload(3.0, 300.0, 0.3, beta);
            let v: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
            FairFedUpdate::from_slice(&v, 1)
                .unwrap()
                .combine(beta, 400.0)
        };
        let (plain, mean) = sum(0.0);
        assert_eq!(plain.weighted_weights, vec![1000.0]);
        assert_eq!(plain.samples, 400.0);
        assert!((mean.unwrap() - 0.2).abs() < 1e-12);
        // β = 0.5: weights 100 + 0.5·400·0.1 = 120 and 300 − 20 = 280.
        let (fair, _) = sum(0.5);
        assert!((fair.samples - 400.0).abs() < 1e-9);
        assert!((fair.weighted_weights[0] - (120.0 + 3.0 * 280.0)).abs() < 1e-9);
        assert_eq!(
            FairFedUpdate::bounds(1, 50.0, 10, 0.0, 400.0)[0].bound,
            500.0
        );
    }

    #[test]
    fn thresholds_equalize_true_positive_rates_at_bin_edges() {
        let mut h = GroupHistograms::for_attribute(&schema(), "age", 10).unwrap();
        // Young positives score high, old positives lower; negatives low in both.
        for p in [0.75, 0.85, 0.95, 0.65] {
            h.add(0, true, p);
        }
        for p in [0.35, 0.45, 0.55, 0.65] {
            h.add(1, true, p);
        }
        for p in [0.05, 0.15, 0.25, 0.35] {
            h.add(0, false, p);
            h.add(1, false, p);
        }
        let chosen = h.thresholds(ThresholdRule::EqualOpportunity, 1.0, 5, 1.0);
        assert_eq!(chosen.before.1, Some(0.5));
        assert_eq!(chosen.after.1, Some(0.0));
        assert!(chosen.after.0.unwrap() >= chosen.before.0.unwrap());
        assert_eq!(chosen.bins[0], 5);
        assert!(chosen.bins[1] <= 3, "{:?}", chosen.bins);
        let none = h.thresholds(ThresholdRule::EqualOpportunity, 0.0, 5, 1.0);
        assert_eq!(none.bins, vec![5, 5, 5]);
        assert_eq!(none.before, none.after);
    }
}

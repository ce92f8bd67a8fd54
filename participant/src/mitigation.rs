//! A participant's side of fairness-aware training: it turns the consortium-wide sums the
//! coordinator feeds back with the global model ([`MitigationFeedback`]) into a local objective
//! or a FairFed weight, and adds its own sums (group counts, group × label cells, per-group
//! score histograms) to the vectors it uploads. The simulator calls the same functions, so a
//! simulated participant mitigates exactly as a real one.
//!
//! - **Reweighing** (Kamiran and Calders): each record's log loss is weighted by its
//!   group × label cell's weight, computed from the summed cell counts.
//! - **Regularizer**: the local objective adds λ·½·Σ_g (R_g − R̄)², R_g the group's soft
//!   selection rate (demographic parity) or soft true-positive rate (equal opportunity) over the
//!   whole consortium, R̄ their mean. Its gradient for a record of group g is
//!   λ·(R_g − R̄)·(N / N_g)·p(1 − p)·x, with R_g − R̄ taken from the summed group counts of the
//!   round's global model (N records overall, N_g those the group's rate is measured on): the
//!   local gradients add up to the consortium's.
//! - **FairFed**: see [`accord_proto::mitigation::FairFedUpdate`]; [`FairFedWeight`] keeps this
//!   participant's weight between rounds.

use crate::data::LocalDataset;
use crate::model::{Decision, LocalObjective, LogisticModel};
use accord_proto::layout::GroupCounts;
use accord_proto::mitigation::{
    EvaluationStatistics, FairFedUpdate, active_mitigation, rates, reweighing_weights,
};
use accord_proto::v1::{
    FairnessMetric, FairnessMitigation, MitigationFeedback, MitigationKind, Schema,
};
use ndarray::{Array1, ArrayView2};

/// Each record's category index of `attribute` (empty if the data has no such attribute).
fn categories<'a>(data: &'a LocalDataset, attribute: &str) -> &'a [usize] {
    data.groups.get(attribute).map_or(&[], Vec::as_slice)
}

/// Fills `counts` (one attribute's group counts) with the records' group × label cells.
pub fn label_counts(data: &LocalDataset, mut counts: GroupCounts) -> GroupCounts {
    let groups = categories(data, &counts.groups[0].0).to_vec();
    for (group, label) in groups.iter().zip(data.labels.iter()) {
        counts.add(&[*group], *label > 0.5, false);
    }
    counts
}

/// The statistics this participant appends to its evaluation vector for `model` with the
/// decisions of `decision`: the layout `zeros` (an [`EvaluationStatistics::zeros`]) filled from
/// its records.
pub fn evaluation_statistics(
    model: &LogisticModel,
    x: ArrayView2<f64>,
    data: &LocalDataset,
    zeros: EvaluationStatistics,
    decision: &Decision,
) -> EvaluationStatistics {
    let counts = zeros.counts.map(|counts| {
        let groups = categories(data, &counts.groups[0].0);
        model.group_counts(x, data.labels.view(), &[groups], decision, counts)
    });
    let histograms = zeros.histograms.map(|mut histograms| {
        let groups = categories(data, &histograms.attribute).to_vec();
        for ((p, label), group) in model.predict(x).iter().zip(&data.labels).zip(groups) {
            histograms.add(group, *label > 0.5, *p);
        }
        histograms
    });
    let all_groups = zeros.all_groups.map(|counts| {
        let groups: Vec<&[usize]> = counts
            .groups
            .iter()
            .map(|(attribute, _)| categories(data, attribute))
            .collect();
        model.group_counts(x, data.labels.view(), &groups, decision, counts)
    });
    EvaluationStatistics {
        counts,
        histograms,
        all_groups,
    }
}

/// The local objective of this round: reweighing weights from the summed group × label cells,
/// or regularizer penalties from the summed group counts of the global model. Before those
/// sums exist (the regularizer's first round), and for other mitigations, plain terms.
pub fn objective(
    mitigation: Option<&FairnessMitigation>,
    schema: &Schema,
    data: &LocalDataset,
    feedback: &MitigationFeedback,
) -> LocalObjective {
    let Some(m) = active_mitigation(mitigation) else {
        return LocalObjective::default();
    };
    let Some(zeros) = GroupCounts::for_attribute(schema, &m.attribute) else {
        return LocalObjective::default();
    };
    let groups = categories(data, &m.attribute);
    let labels = &data.labels;
    match m.kind() {
        MitigationKind::Reweighing => {
            let weights = zeros
                .with_values(&feedback.label_counts)
                .map(|counts| reweighing_weights(&counts, m.strength))
                .unwrap_or_else(|_| vec![[1.0; 2]; zeros.groups[0].1.len()]);
            LocalObjective {
                weights: Some(
                    groups
                        .iter()
                        .zip(labels)
                        .map(|(g, y)| weights[*g][usize::from(*y > 0.5)])
                        .collect(),
                ),
                penalty: None,
            }
        }
        MitigationKind::Regularizer => {
            let coefficients = zeros
                .with_values(&feedback.group_counts)
                .map(|counts| penalty_coefficients(m, &counts))
                .unwrap_or_else(|_| vec![0.0; zeros.groups[0].1.len()]);
            let metric = m.metric();
            let in_scope = |y: f64| metric == FairnessMetric::DemographicParity || y > 0.5;
            let penalty: Array1<f64> = groups
                .iter()
                .zip(labels)
                .map(|(g, y)| if in_scope(*y) { coefficients[*g] } else { 0.0 })
                .collect();
            LocalObjective {
                weights: None,
                penalty: Some(penalty),
            }
        }
        MitigationKind::Fairfed | MitigationKind::None => LocalObjective::default(),
    }
}

/// λ·(R_g − R̄)·N / N_g per group (0 for a group too small to have a rate), from the summed
/// group counts of the global model.
fn penalty_coefficients(m: &FairnessMitigation, counts: &GroupCounts) -> Vec<f64> {
    let rates = rates(counts, m.metric(), m.min_group_size as f64);
    let defined: Vec<f64> = rates.iter().flatten().map(|r| r.rate).collect();
    let records: f64 = counts.tallies(0).iter().map(|(_, t)| t.n).sum();
    if defined.len() < 2 {
        return vec![0.0; rates.len()];
    }
    let mean = defined.iter().sum::<f64>() / defined.len() as f64;
    rates
        .iter()
        .map(|r| r.map_or(0.0, |r| m.strength * (r.rate - mean) * records / r.base))
        .collect()
}

/// The targeted gap of `model` on this participant's records (None where fewer than two of its
/// groups have `min_group_size` records).
pub fn local_gap(
    m: &FairnessMitigation,
    schema: &Schema,
    model: &LogisticModel,
    x: ArrayView2<f64>,
    data: &LocalDataset,
    threshold: f64,
) -> Option<f64> {
    let zeros = EvaluationStatistics {
        counts: GroupCounts::for_attribute(schema, &m.attribute),
        histograms: None,
        all_groups: None,
    };
    let counts =
        evaluation_statistics(model, x, data, zeros, &Decision::Threshold(threshold)).counts?;
    counts.gap(0, m.metric(), m.min_group_size as f64)
}

/// The global gap of the round's model, from the summed group counts fed back.
pub fn global_gap(
    m: &FairnessMitigation,
    schema: &Schema,
    feedback: &MitigationFeedback,
) -> Option<f64> {
    GroupCounts::for_attribute(schema, &m.attribute)?
        .with_values(&feedback.group_counts)
        .ok()?
        .gap(0, m.metric(), m.min_group_size as f64)
}

/// A participant's FairFed aggregation weight, in records: it starts at the participant's
/// record count; each round it uploads ω' = ω − β·N·Δ and, once the coordinator announces the
/// mean gap of that round, settles at ω' + β·N·mean Δ (kept within [0, max_rows]).
#[derive(Debug, Clone, PartialEq)]
pub struct FairFedWeight {
    weight: f64,
    /// The round of the last upload, its ω' and whether its gap was defined.
    pending: Option<(u32, f64, bool)>,
}

impl FairFedWeight {
    /// The starting weight of a participant with `records` records (FedAvg's weight).
    pub fn new(records: usize) -> Self {
        Self {
            weight: records as f64,
            pending: None,
        }
    }

    /// Applies the mean gap the coordinator announced for the round of the last upload; a
    /// round that aborted (no announcement for it) leaves the weight as it was.
    pub fn settle(
        &mut self,
        feedback: &MitigationFeedback,
        beta: f64,
        records: f64,
        max_rows: u64,
    ) {
        let Some((round, after_own, defined)) = self.pending.take() else {
            return;
        };
        if feedback.fairfed_round == round {
            let shift = if defined {
                beta * records * feedback.fairfed_mean_gap
            } else {
                0.0
            };
            self.weight = (after_own + shift).clamp(0.0, max_rows as f64);
        }
    }

    /// This round's fit vector for the locally trained `local` model, with this participant's
    /// local gap and the global gap of the model it trained from.
    pub fn upload(
        &mut self,
        round: u32,
        local: &LogisticModel,
        gaps: (Option<f64>, Option<f64>),
        beta: f64,
        records: f64,
    ) -> FairFedUpdate {
        let delta = match gaps {
            (Some(local), Some(global)) => Some((global - local).abs()),
            _ => None,
        };
        let defined = delta.is_some();
        let after_own = self.weight - beta * records * delta.unwrap_or(0.0);
        self.pending = Some((round, after_own, defined));
        let flag = f64::from(u8::from(defined));
        let mut model = local.weights.to_vec();
        model.push(local.intercept);
        FairFedUpdate {
            weighted_model: model.iter().map(|v| v * after_own).collect(),
            weight: after_own,
            model: model.iter().map(|v| v * flag).collect(),
            defined: flag,
            gap: delta.unwrap_or(0.0),
        }
    }
}

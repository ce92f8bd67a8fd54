//! The satisfaction model: L2-regularized logistic regression on standardized features, trained
//! locally by mini-batch gradient descent, with an optional FedProx proximal term.
//!
//! Also the local sums a participant contributes (standardization sums, evaluation counts):
//! everything here turns records into aggregates, so records never need to leave.

use accord_proto::layout::{EvaluationCounts, GroupCounts, WeightedModel};
use accord_proto::standardization::{
    StandardizationError, StandardizationLayout, StandardizationSums,
};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha20Rng;

/// Per-column means and standard deviations, computed from aggregated sums.
#[derive(Debug, Clone, PartialEq)]
pub struct Standardizer {
    /// Mean of each encoded column over the consortium's records.
    pub means: Array1<f64>,
    /// Standard deviation of each encoded column over the consortium's records.
    pub std_devs: Array1<f64>,
}

impl Standardizer {
    /// From the consortium-wide exact sums laid out by `layout`
    /// ([`StandardizationLayout::moments`], which states the error bound). A column with no
    /// variance keeps scale 1 so it stays finite.
    ///
    /// # Errors
    /// Sums that no records give, named by column.
    pub fn from_sums(
        layout: &StandardizationLayout,
        sums: &StandardizationSums,
    ) -> Result<Self, StandardizationError> {
        let (means, std_devs) = layout.moments(sums)?;
        Ok(Self {
            means: Array1::from(means),
            std_devs: Array1::from(std_devs),
        })
    }

    /// Standardizes `features` (records × encoded columns) column by column.
    pub fn apply(&self, features: &Array2<f64>) -> Array2<f64> {
        (features - &self.means) / &self.std_devs
    }
}

/// The exact sums of one participant's features (records × columns) for the standardization
/// pass, quantized as `layout` says.
///
/// # Errors
/// Features of another width than the layout's; more than 2^28 records.
pub fn standardization_sums(
    layout: &StandardizationLayout,
    features: &Array2<f64>,
) -> Result<StandardizationSums, StandardizationError> {
    layout.sums(features.rows().into_iter().map(|r| r.into_iter().copied()))
}

/// A logistic-regression model over standardized columns.
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticModel {
    /// One weight per standardized encoded column.
    pub weights: Array1<f64>,
    /// The bias term.
    pub intercept: f64,
}

/// How a predicted probability becomes a decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision<'a> {
    /// Positive at or above one threshold.
    Threshold(f64),
    /// Post-processing: positive when the probability's histogram bin (of `histogram_bins`) is at
    /// least the record's group's threshold bin.
    PerGroup {
        /// Each record's group (category index of the post-processed attribute).
        groups: &'a [usize],
        /// Each group's threshold, as a histogram bin index.
        thresholds: &'a [u32],
        /// Bins of the probability histogram, over [0, 1].
        histogram_bins: usize,
    },
}

impl Decision<'_> {
    /// Whether record `row` with predicted `probability` is a positive decision.
    pub fn positive(&self, row: usize, probability: f64) -> bool {
        match self {
            Decision::Threshold(t) => probability >= *t,
            Decision::PerGroup {
                groups,
                thresholds,
                histogram_bins,
            } => {
                EvaluationCounts::bin(probability, *histogram_bins) as u32
                    >= thresholds[groups[row]]
            }
        }
    }
}

/// Per-record terms of a fairness-aware local objective; absent terms leave training plain.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LocalObjective {
    /// Each record's weight in the log loss (reweighing).
    pub weights: Option<Array1<f64>>,
    /// Each record's penalty coefficient c: the penalty adds c·p(1 − p) to the gradient with
    /// respect to the record's logit (the fairness regularizer).
    pub penalty: Option<Array1<f64>>,
}

/// Local training parameters, as the federation defines them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainingParams {
    /// Local epochs per round.
    pub epochs: u32,
    /// Step size of gradient descent.
    pub learning_rate: f64,
    /// L2 regularization strength.
    pub l2: f64,
    /// Records per mini-batch.
    pub batch_size: usize,
    /// FedProx μ: pulls local weights towards the global model; 0 is plain FedAvg.
    pub proximal_mu: f64,
}

impl From<accord_proto::v1::TrainingParams> for TrainingParams {
    /// The federation definition's training parameters, as every participant applies them.
    fn from(t: accord_proto::v1::TrainingParams) -> Self {
        Self {
            epochs: t.local_epochs,
            learning_rate: t.learning_rate,
            l2: t.l2,
            batch_size: t.batch_size as usize,
            proximal_mu: t.fedprox_mu,
        }
    }
}

/// The seed of a participant's local training in `round`, from the participant's own `seed`
/// (participant.toml): a round's shuffling is reproducible and differs between rounds.
pub fn round_seed(seed: u64, round: u32) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(round)
}

/// The logistic function 1 / (1 + e^(−z)), computed without overflow.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

impl LogisticModel {
    /// A model with every weight and the intercept at 0.
    pub fn zeros(columns: usize) -> Self {
        Self {
            weights: Array1::zeros(columns),
            intercept: 0.0,
        }
    }

    /// Predicted probability of the positive class for each (standardized) row.
    pub fn predict(&self, x: ArrayView2<f64>) -> Array1<f64> {
        (x.dot(&self.weights) + self.intercept).mapv(sigmoid)
    }

    /// Trains from `self` (the global model) on local standardized data. The shuffling is drawn
    /// from `seed`, so a participant's round is reproducible.
    pub fn train(
        &self,
        x: ArrayView2<f64>,
        y: ArrayView1<f64>,
        params: &TrainingParams,
        seed: u64,
    ) -> Self {
        self.train_with(x, y, params, seed, &LocalObjective::default())
    }

    /// [`LogisticModel::train`] with a fairness-aware objective: each record's log loss weighted
    /// and a penalty added to its logit's gradient. With weights of 1 and penalties of 0 the
    /// arithmetic is exactly the plain one.
    pub fn train_with(
        &self,
        x: ArrayView2<f64>,
        y: ArrayView1<f64>,
        params: &TrainingParams,
        seed: u64,
        objective: &LocalObjective,
    ) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut model = self.clone();
        let mut order: Vec<usize> = (0..x.nrows()).collect();
        let batch = params.batch_size.max(1);
        for _ in 0..params.epochs {
            order.shuffle(&mut rng);
            for chunk in order.chunks(batch) {
                let xb = x.select(Axis(0), chunk);
                let yb = y.select(Axis(0), chunk);
                let p = model.predict(xb.view());
                let mut residual = &p - &yb;
                if let Some(weights) = &objective.weights {
                    residual *= &weights.select(Axis(0), chunk);
                }
                if let Some(penalty) = &objective.penalty {
                    let slope = p.mapv(|p| p * (1.0 - p));
                    residual += &(&penalty.select(Axis(0), chunk) * &slope);
                }
                let m = chunk.len() as f64;
                let mut grad = xb.t().dot(&residual) / m;
                grad.scaled_add(params.l2, &model.weights);
                if params.proximal_mu > 0.0 {
                    grad.scaled_add(params.proximal_mu, &(&model.weights - &self.weights));
                }
                let grad_b = residual.sum() / m;
                model.weights.scaled_add(-params.learning_rate, &grad);
                model.intercept -= params.learning_rate * grad_b;
            }
        }
        model
    }

    /// A participant's fit in a round: [`LogisticModel::train_with`] from `self` (the global
    /// model), then, when the federation bounds updates (`clip`, secure aggregation), every
    /// weight and the intercept clamped to [-clip, clip]: clipping bounds what one participant
    /// can add to the sum. The node and the simulator both call this.
    pub fn fit_local(
        &self,
        x: ArrayView2<f64>,
        y: ArrayView1<f64>,
        params: &TrainingParams,
        seed: u64,
        objective: &LocalObjective,
        clip: Option<f64>,
    ) -> Self {
        let mut local = self.train_with(x, y, params, seed, objective);
        if let Some(clip) = clip {
            local.weights.mapv_inplace(|w| w.clamp(-clip, clip));
            local.intercept = local.intercept.clamp(-clip, clip);
        }
        local
    }

    /// This model weighted by the local sample count, for FedAvg by summation.
    pub fn weighted(&self, samples: usize) -> WeightedModel {
        let n = samples as f64;
        WeightedModel {
            weighted_weights: (&self.weights * n).to_vec(),
            weighted_intercept: self.intercept * n,
            samples: n,
        }
    }

    /// The FedAvg model from summed weighted models; None when no samples contributed.
    pub fn from_weighted(sum: &WeightedModel) -> Option<Self> {
        (sum.samples > 0.0).then(|| Self {
            weights: sum
                .weighted_weights
                .iter()
                .map(|w| w / sum.samples)
                .collect(),
            intercept: sum.weighted_intercept / sum.samples,
        })
    }

    /// Evaluation counts of this model on local standardized data.
    pub fn evaluate(
        &self,
        x: ArrayView2<f64>,
        y: ArrayView1<f64>,
        bins: usize,
        threshold: f64,
    ) -> EvaluationCounts {
        self.evaluate_with(x, y, bins, &Decision::Threshold(threshold))
    }

    /// Evaluation counts with the decisions of `decision`.
    pub fn evaluate_with(
        &self,
        x: ArrayView2<f64>,
        y: ArrayView1<f64>,
        bins: usize,
        decision: &Decision,
    ) -> EvaluationCounts {
        let mut counts = EvaluationCounts::zeros(bins);
        for (row, (p, &label)) in self.predict(x).iter().zip(y.iter()).enumerate() {
            let positive = label > 0.5;
            let predicted = decision.positive(row, *p);
            counts.n += 1.0;
            match (positive, predicted) {
                (true, true) => counts.tp += 1.0,
                (false, true) => counts.fp += 1.0,
                (false, false) => counts.tn += 1.0,
                (true, false) => counts.fn_ += 1.0,
            }
            let clipped = p.clamp(1e-12, 1.0 - 1e-12);
            counts.log_loss_sum -= if positive {
                clipped.ln()
            } else {
                (1.0 - clipped).ln()
            };
            counts.brier_sum += (p - label).powi(2);
            let bin = EvaluationCounts::bin(*p, bins);
            if positive {
                counts.positive_histogram[bin] += 1.0;
            } else {
                counts.negative_histogram[bin] += 1.0;
            }
        }
        counts
    }
}

impl LogisticModel {
    /// Per-group counts of this model's decisions on local records (`groups` holds each
    /// protected attribute's category index per record, in schema order).
    pub fn group_counts(
        &self,
        x: ArrayView2<f64>,
        y: ArrayView1<f64>,
        groups: &[&[usize]],
        decision: &Decision,
        mut counts: GroupCounts,
    ) -> GroupCounts {
        let mut categories = vec![0; groups.len()];
        for (row, (p, &label)) in self.predict(x).iter().zip(y.iter()).enumerate() {
            for (slot, attribute) in categories.iter_mut().zip(groups) {
                *slot = attribute[row];
            }
            counts.add(&categories, label > 0.5, decision.positive(row, *p));
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn separable() -> (Array2<f64>, Array1<f64>) {
        let x = array![
            [-2.0, 0.1],
            [-1.0, -0.2],
            [-1.5, 0.3],
            [1.0, 0.0],
            [2.0, 0.2],
            [1.5, -0.1]
        ];
        let y = array![0.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        (x, y)
    }

    fn params() -> TrainingParams {
        TrainingParams {
            epochs: 50,
            learning_rate: 0.5,
            l2: 1e-3,
            batch_size: 2,
            proximal_mu: 0.0,
        }
    }

    #[test]
    fn training_learns_the_sign_of_a_driver() {
        let (x, y) = separable();
        let model = LogisticModel::zeros(2).train(x.view(), y.view(), &params(), 7);
        assert!(model.weights[0] > 1.0, "weights {:?}", model.weights);
        let counts = model.evaluate(x.view(), y.view(), 10, 0.5);
        assert_eq!(
            (counts.tp, counts.tn, counts.fp, counts.fn_),
            (3.0, 3.0, 0.0, 0.0)
        );
    }

    #[test]
    fn training_is_reproducible_from_its_seed() {
        let (x, y) = separable();
        let a = LogisticModel::zeros(2).train(x.view(), y.view(), &params(), 1);
        let b = LogisticModel::zeros(2).train(x.view(), y.view(), &params(), 1);
        assert_eq!(a, b);
    }

    #[test]
    fn proximal_term_keeps_the_model_nearer_the_global_one() {
        let (x, y) = separable();
        let global = LogisticModel::zeros(2);
        let free = global.train(x.view(), y.view(), &params(), 3);
        let prox = global.train(
            x.view(),
            y.view(),
            &TrainingParams {
                proximal_mu: 1.0,
                ..params()
            },
            3,
        );
        let norm = |m: &LogisticModel| m.weights.dot(&m.weights).sqrt();
        assert!(
            norm(&prox) < norm(&free) * 0.8,
            "prox {} free {}",
            norm(&prox),
            norm(&free)
        );
    }

    #[test]
    fn fedavg_of_weighted_models_is_the_sample_weighted_mean() {
        let a = LogisticModel {
            weights: array![1.0, 0.0],
            intercept: 1.0,
        }
        .weighted(1);
        let b = LogisticModel {
            weights: array![4.0, 3.0],
            intercept: -2.0,
        }
        .weighted(3);
        let sum = WeightedModel {
            weighted_weights: a
                .weighted_weights
                .iter()
                .zip(&b.weighted_weights)
                .map(|(x, y)| x + y)
                .collect(),
            weighted_intercept: a.weighted_intercept + b.weighted_intercept,
            samples: a.samples + b.samples,
        };
        let avg = LogisticModel::from_weighted(&sum).unwrap();
        assert_eq!(avg.weights, array![3.25, 2.25]);
        assert_eq!(avg.intercept, -1.25);
    }

    #[test]
    fn standardization_from_sums_matches_direct_computation() {
        use accord_proto::v1::{Feature, Numeric, Schema, feature::Kind};
        let numeric = |name: &str| Feature {
            name: name.into(),
            kind: Some(Kind::Numeric(Numeric {
                min: Some(0.0),
                max: Some(10.0),
            })),
        };
        let schema = Schema {
            features: vec![numeric("a"), numeric("b")],
            ..Default::default()
        };
        let layout = StandardizationLayout::new(&schema).unwrap();
        let x = array![[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]];
        let s =
            Standardizer::from_sums(&layout, &standardization_sums(&layout, &x).unwrap()).unwrap();
        assert_eq!(s.means, array![3.0, 5.0]);
        assert!((s.std_devs[0] - (8.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(s.std_devs[1], 1.0, "a constant column keeps scale 1");
        let z = s.apply(&x);
        assert!(z.column(0).sum().abs() < 1e-12);
    }
}

//! Model quality from aggregated evaluation counts: accuracy, log loss, Brier score and ROC AUC.
//! The coordinator never sees a score or a label, only the consortium's counts and histograms.

use accord_proto::layout::EvaluationCounts;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    pub samples: u64,
    pub accuracy: f64,
    pub log_loss: f64,
    pub brier: f64,
    pub auc: f64,
    /// Share of the positive class (e.g. satisfied) in the evaluated data.
    pub positive_rate: f64,
}

/// Quality of a model from its summed evaluation counts; None when nothing was evaluated.
pub fn quality(counts: &EvaluationCounts) -> Option<Quality> {
    if counts.n <= 0.0 {
        return None;
    }
    let n = counts.n;
    Some(Quality {
        samples: n as u64,
        accuracy: (counts.tp + counts.tn) / n,
        log_loss: counts.log_loss_sum / n,
        brier: counts.brier_sum / n,
        auc: roc_auc(&counts.positive_histogram, &counts.negative_histogram),
        positive_rate: (counts.tp + counts.fn_) / n,
    })
}

/// ROC AUC from histograms of predicted probability: the probability that a random positive
/// scores above a random negative, counting pairs in the same bin as ties (one half). Exact up to
/// the bin width. NaN when either class is absent.
pub fn roc_auc(positives: &[f64], negatives: &[f64]) -> f64 {
    let (p, n): (f64, f64) = (positives.iter().sum(), negatives.iter().sum());
    if p <= 0.0 || n <= 0.0 {
        return f64::NAN;
    }
    let mut positives_above = p;
    let mut wins = 0.0;
    for (pos, neg) in positives.iter().zip(negatives) {
        positives_above -= pos;
        wins += neg * (positives_above + 0.5 * pos);
    }
    wins / (p * n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_separated_tied_and_reversed_scores() {
        assert_eq!(roc_auc(&[0.0, 0.0, 5.0], &[3.0, 0.0, 0.0]), 1.0);
        assert_eq!(roc_auc(&[2.0, 2.0], &[1.0, 1.0]), 0.5);
        assert_eq!(roc_auc(&[4.0, 0.0], &[0.0, 4.0]), 0.0);
        assert!(roc_auc(&[0.0, 0.0], &[1.0, 1.0]).is_nan());
    }

    #[test]
    fn auc_matches_pairwise_count() {
        // positives in bins 1,2,2 ; negatives in bins 0,1,2
        let pos = [0.0, 1.0, 2.0];
        let neg = [1.0, 1.0, 1.0];
        // pairs (pos bin, neg bin): wins = 1(1>0) + .5(1=1) + 0(1<2) + 2*(1 + 1 + .5) = 6.5 of 9
        assert!((roc_auc(&pos, &neg) - 6.5 / 9.0).abs() < 1e-12);
    }

    #[test]
    fn quality_from_counts() {
        let counts = EvaluationCounts {
            n: 10.0,
            tp: 4.0,
            fp: 1.0,
            tn: 3.0,
            fn_: 2.0,
            log_loss_sum: 5.0,
            brier_sum: 2.0,
            positive_histogram: vec![1.0, 5.0],
            negative_histogram: vec![3.0, 1.0],
        };
        let q = quality(&counts).unwrap();
        assert_eq!(
            (q.samples, q.accuracy, q.log_loss, q.brier, q.positive_rate),
            (10, 0.7, 0.5, 0.2, 0.6)
        );
        assert!(quality(&EvaluationCounts::zeros(2)).is_none());
    }
}

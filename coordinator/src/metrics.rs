//! Model quality from aggregated evaluation counts: accuracy, log loss, Brier score and ROC AUC.
//! The coordinator never sees a score or a label, only the consortium's counts and histograms.
//!
//! A figure that cannot be computed is `None` (JSON `null`, an empty CSV cell), never NaN or a
//! stand-in: ROC AUC is undefined when the evaluated data hold one class only (see
//! docs/metrics.md). Every [`Quality`] names the round whose model it measured.

use accord_proto::artefact::Quality;
use accord_proto::layout::EvaluationCounts;

/// Quality of round `round`'s model from its summed evaluation counts; None when nothing was
/// evaluated.
pub fn quality(round: u32, counts: &EvaluationCounts) -> Option<Quality> {
    if counts.n <= 0.0 {
        return None;
    }
    let n = counts.n;
    Some(Quality {
        round,
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
/// the bin width. None when either class is absent (no pair to compare), as scikit-learn's
/// `roc_auc_score` refuses one class.
pub fn roc_auc(positives: &[f64], negatives: &[f64]) -> Option<f64> {
    let (p, n): (f64, f64) = (positives.iter().sum(), negatives.iter().sum());
    if p <= 0.0 || n <= 0.0 {
        return None;
    }
    let mut positives_above = p;
    let mut wins = 0.0;
    for (pos, neg) in positives.iter().zip(negatives) {
        positives_above -= pos;
        wins += neg * (positives_above + 0.5 * pos);
    }
    Some(wins / (p * n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_separated_tied_and_reversed_scores() {
        assert_eq!(roc_auc(&[0.0, 0.0, 5.0], &[3.0, 0.0, 0.0]), Some(1.0));
        assert_eq!(roc_auc(&[2.0, 2.0], &[1.0, 1.0]), Some(0.5));
        assert_eq!(roc_auc(&[4.0, 0.0], &[0.0, 4.0]), Some(0.0));
    }

    #[test]
    fn auc_of_one_class_is_undefined_and_the_rest_of_the_quality_is_not() {
        // Every record positive (every csat 5): no negative to rank a positive against.
        assert_eq!(roc_auc(&[0.0, 0.0], &[1.0, 1.0]), None);
        assert_eq!(roc_auc(&[3.0, 7.0], &[0.0, 0.0]), None);
        let counts = EvaluationCounts {
            n: 10.0,
            tp: 8.0,
            fp: 0.0,
            tn: 0.0,
            fn_: 2.0,
            log_loss_sum: 3.0,
            brier_sum: 1.0,
            positive_histogram: vec![3.0, 7.0],
            negative_histogram: vec![0.0, 0.0],
        };
        let q = quality(4, &counts).unwrap();
        assert_eq!(q.auc, None);
        assert_eq!((q.round, q.accuracy, q.positive_rate), (4, 0.8, 1.0));
        let json = serde_json::to_string(&q).unwrap();
        assert!(json.contains("\"auc\":null"), "{json}");
        assert_eq!(serde_json::from_str::<Quality>(&json).unwrap(), q);
    }

    #[test]
    fn auc_matches_pairwise_count() {
        // positives in bins 1,2,2 ; negatives in bins 0,1,2
        let pos = [0.0, 1.0, 2.0];
        let neg = [1.0, 1.0, 1.0];
        // pairs (pos bin, neg bin): wins = 1(1>0) + .5(1=1) + 0(1<2) + 2*(1 + 1 + .5) = 6.5 of 9
        assert!((roc_auc(&pos, &neg).unwrap() - 6.5 / 9.0).abs() < 1e-12);
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
        let q = quality(2, &counts).unwrap();
        assert_eq!(
            (
                q.round,
                q.samples,
                q.accuracy,
                q.log_loss,
                q.brier,
                q.positive_rate
            ),
            (2, 10, 0.7, 0.5, 0.2, 0.6)
        );
        // Positives in bins 0,1 (1, 5), negatives (3, 1): wins 5*3 + 0.5*(1*3 + 5*1) = 19 of 24.
        assert_eq!(q.auc, Some(19.0 / 24.0));
        assert!(quality(2, &EvaluationCounts::zeros(2)).is_none());
    }
}

//! The aggregation seam: how the coordinator turns the participants' protected vectors of one
//! phase into their sum.
//!
//! The federation logic only ever sees [`PhaseAggregator::finish`]'s sum, so replacing the
//! scheme (plain sums today; secure aggregation next) is local to this module and its wire
//! variant in `ProtectedVector`.

use accord_proto::v1::{ProtectedVector, protected_vector::Scheme};
use std::collections::BTreeSet;

/// A scheme's name as it appears in configs, the federation definition and every output.
pub const INSECURE_PLAIN: &str = "insecure-plain";

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AggregationError {
    #[error(
        "participant '{participant}' sent a vector protected by another scheme than {expected}"
    )]
    WrongScheme {
        participant: String,
        expected: &'static str,
    },
    #[error("participant '{participant}': vector has {actual} values, expected {expected}")]
    Length {
        participant: String,
        expected: usize,
        actual: usize,
    },
    #[error("participant '{participant}': value {index} is not a finite number")]
    NotFinite { participant: String, index: usize },
    #[error("participant '{participant}' already contributed to this phase")]
    Duplicate { participant: String },
}

/// Sums one phase's vectors.
pub trait PhaseAggregator: Send {
    /// Takes one participant's contribution; a refused one leaves the aggregate untouched.
    fn accept(
        &mut self,
        participant: &str,
        vector: ProtectedVector,
    ) -> Result<(), AggregationError>;
    /// The participants whose contributions are in the sum.
    fn contributors(&self) -> &BTreeSet<String>;
    /// The sum over the contributors.
    fn finish(self: Box<Self>) -> Vec<f64>;
}

/// Starts a phase aggregator for vectors of `len` values under the named scheme.
pub fn start(scheme: &str, len: usize) -> Option<Box<dyn PhaseAggregator>> {
    match scheme {
        INSECURE_PLAIN => Some(Box::new(PlainSum {
            sum: vec![0.0; len],
            contributors: BTreeSet::new(),
        })),
        _ => None,
    }
}

/// `insecure-plain`: the coordinator sees each participant's vector. For simulations and
/// benchmarks, and only with each participant's consent.
struct PlainSum {
    sum: Vec<f64>,
    contributors: BTreeSet<String>,
}

impl PhaseAggregator for PlainSum {
    fn accept(
        &mut self,
        participant: &str,
        vector: ProtectedVector,
    ) -> Result<(), AggregationError> {
        let Some(Scheme::Plain(plain)) = vector.scheme else {
            return Err(AggregationError::WrongScheme {
                participant: participant.into(),
                expected: INSECURE_PLAIN,
            });
        };
        if self.contributors.contains(participant) {
            return Err(AggregationError::Duplicate {
                participant: participant.into(),
            });
        }
        if plain.values.len() != self.sum.len() {
            return Err(AggregationError::Length {
                participant: participant.into(),
                expected: self.sum.len(),
                actual: plain.values.len(),
            });
        }
        if let Some(index) = plain.values.iter().position(|v| !v.is_finite()) {
            return Err(AggregationError::NotFinite {
                participant: participant.into(),
                index,
            });
        }
        for (total, value) in self.sum.iter_mut().zip(&plain.values) {
            *total += value;
        }
        self.contributors.insert(participant.to_owned());
        Ok(())
    }

    fn contributors(&self) -> &BTreeSet<String> {
        &self.contributors
    }

    fn finish(self: Box<Self>) -> Vec<f64> {
        self.sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use accord_proto::v1::PlainVector;

    fn plain(values: Vec<f64>) -> ProtectedVector {
        ProtectedVector {
            scheme: Some(Scheme::Plain(PlainVector { values })),
        }
    }

    #[test]
    fn plain_sums_and_refuses_bad_contributions_without_losing_good_ones() {
        let mut agg = start(INSECURE_PLAIN, 2).unwrap();
        agg.accept("a", plain(vec![1.0, 2.0])).unwrap();
        assert_eq!(
            agg.accept("a", plain(vec![1.0, 2.0])),
            Err(AggregationError::Duplicate {
                participant: "a".into()
            })
        );
        assert!(matches!(
            agg.accept("b", plain(vec![1.0])),
            Err(AggregationError::Length { .. })
        ));
        assert!(matches!(
            agg.accept("b", plain(vec![f64::NAN, 1.0])),
            Err(AggregationError::NotFinite { index: 0, .. })
        ));
        assert!(matches!(
            agg.accept("b", ProtectedVector { scheme: None }),
            Err(AggregationError::WrongScheme { .. })
        ));
        agg.accept("b", plain(vec![10.0, 20.0])).unwrap();
        assert_eq!(agg.contributors().len(), 2);
        assert_eq!(agg.finish(), vec![11.0, 22.0]);
        assert!(start("rot13", 2).is_none());
    }
}

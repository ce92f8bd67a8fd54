//! The aggregation seam: how the coordinator turns the participants' contributions to one phase
//! into their sum.
//!
//! A scheme is a sequence of stages, each closed when every expected participant has submitted
//! or the stage's deadline passed; the federation logic only ever sees the final sum and who
//! contributed. `secagg` (the default) runs the four stages of secure aggregation in
//! [`accord_crypto::secagg`]; `insecure-plain` takes plain vectors in one stage, for
//! simulations and benchmarks, and only with each participant's consent.

use accord_crypto::secagg::Trust;
use accord_crypto::secagg::{Context, Culprit, PhaseEncoding, SecAggError};
use accord_crypto::secagg::{CoordinatorSession, PlainInputs, StageClosed};
use accord_proto::phase::PhaseVector;
use accord_proto::scheme::AggregationScheme;
use accord_proto::v1::{
    ProtectedVector, SecAggParams, SecAggRelay, SecAggStage, SignedStageMessage,
    protected_vector::Scheme,
};
use std::collections::{BTreeMap, BTreeSet};

/// Why a contribution was refused or a phase's aggregation aborted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AggregationError {
    /// A participant sent a contribution under another aggregation scheme than the federation's.
    #[error(
        "participant '{participant}' sent a {got} contribution, but the federation uses {expected}"
    )]
    WrongScheme {
        /// The sender.
        participant: String,
        /// The scheme of its contribution.
        got: AggregationScheme,
        /// The federation's scheme.
        expected: AggregationScheme,
    },
    /// A contribution whose vector has the wrong number of values for the phase's layout.
    #[error("participant '{participant}': vector has {actual} values, expected {expected}")]
    Length {
        /// The sender.
        participant: String,
        /// Values the phase's layout has.
        expected: usize,
        /// Values received.
        actual: usize,
    },
    /// A contribution holds a NaN or infinite value.
    #[error("participant '{participant}': value {index} is not a finite number")]
    NotFinite {
        /// The sender.
        participant: String,
        /// Position of the first non-finite value.
        index: usize,
    },
    /// A participant contributed twice to the same phase.
    #[error("participant '{participant}' already contributed to this phase")]
    Duplicate {
        /// The sender.
        participant: String,
    },
    /// The secure-aggregation protocol refused a message or could not finish the stage.
    #[error("secure aggregation: {0}")]
    SecAgg(#[from] SecAggError),
    /// The participants' most records could sum past what the encrypted counts hold.
    #[error(
        "fairness: {participants} participants of up to {max_rows} records could sum to {most}, which does not fit in value_bits = {bits}"
    )]
    CountsOverflow {
        /// Participants selected for the fairness phase.
        participants: usize,
        /// `max_rows_per_participant`.
        max_rows: u64,
        /// The largest sum they could reach.
        most: u128,
        /// The federation's `value_bits`.
        bits: u32,
    },
    /// A participant sent plain values to the encrypted fairness phase.
    #[error("fairness: '{participant}' sent plain values; fairness statistics must be encrypted")]
    NotEncrypted {
        /// The sender.
        participant: String,
    },
    /// The fairness phase's session cannot be built (value bits, threads, the counts' statement).
    #[error("fairness: {0}")]
    FairnessSession(#[from] accord_crypto::he::handoff::SessionError),
}

/// One participant's contribution to a stage.
pub enum Submission {
    /// An unmasked vector of sums, under the plain scheme.
    Plain(ProtectedVector),
    /// A signed secure-aggregation message, with the certificate the sender authenticated with.
    Signed {
        /// DER of the TLS client certificate the sender authenticated with.
        certificate_der: std::sync::Arc<Vec<u8>>,
        /// The signed stage message.
        message: SignedStageMessage,
    },
}

/// What closing a stage led to.
#[derive(Debug, Clone, PartialEq)]
pub enum Closed {
    /// Another stage is open.
    Next,
    /// The phase's sum and who contributed to it.
    Done {
        /// The element-wise sum of the contributions, in the phase's layout.
        sum: Vec<f64>,
        /// Participants whose inputs are in the sum.
        contributors: BTreeSet<String>,
    },
}

/// Sums one phase's contributions, stage by stage.
pub trait PhaseAggregator: Send {
    /// Takes one participant's contribution to the open stage; a refused one changes nothing.
    fn accept(&mut self, participant: &str, submission: Submission)
    -> Result<(), AggregationError>;
    /// The open stage (UNSPECIFIED for single-stage schemes).
    fn stage(&self) -> SecAggStage;
    /// Who is expected at the open stage, and who has submitted.
    fn expected(&self) -> BTreeSet<String>;
    /// Who has submitted to the open stage.
    fn received(&self) -> BTreeSet<String>;
    /// Closes the open stage with what arrived; an error aborts the phase.
    fn close_stage(&mut self) -> Result<Closed, AggregationError>;
    /// What a participant needs for the open stage (multi-stage schemes).
    fn relay(&self, participant: &str) -> Option<SecAggRelay>;
    /// The participants named so far for deviating from the protocol, in the order found.
    fn culprits(&self) -> Vec<Culprit> {
        Vec::new()
    }
}

/// What a phase's aggregator is started with.
pub struct PhaseSpec<'a> {
    /// The federation, round and phase every signature and key derivation is bound to.
    pub context: Context,
    /// Each participant's bounds at each position (secure aggregation encodes against them) and
    /// the relations its input-validity proof shows.
    pub vector: PhaseVector,
    /// Participants selected for the phase.
    pub selected: BTreeSet<String>,
    /// Secure-aggregation parameters (threshold, neighbours, fixed-point encoding).
    pub params: &'a SecAggParams,
    /// Who may sign stage messages: the participants' verifying keys.
    pub trust: &'a Trust,
}

/// Starts a phase aggregator under `scheme`.
pub fn start(
    scheme: AggregationScheme,
    spec: PhaseSpec<'_>,
) -> Result<Box<dyn PhaseAggregator>, AggregationError> {
    let len = spec.vector.len();
    match scheme {
        AggregationScheme::InsecurePlain => Ok(Box::new(PlainSum {
            len,
            vectors: BTreeMap::new(),
            expected: spec.selected,
        })),
        AggregationScheme::SecAgg => {
            let PhaseEncoding {
                encoding,
                statement,
            } = PhaseEncoding::new(&spec.vector, spec.params, spec.selected.len())?;
            let inputs = match statement {
                Some(statement) => PlainInputs::proven(encoding, spec.context.clone(), statement),
                None => PlainInputs::new(encoding),
            };
            let session = CoordinatorSession::with_inputs(
                spec.context,
                spec.trust.clone(),
                inputs,
                spec.selected,
                spec.params.threshold as usize,
                spec.params.neighbours as usize,
            )?;
            Ok(Box::new(SecureSum(session)))
        }
    }
}

/// `secagg`: the coordinator learns only the sum.
struct SecureSum(CoordinatorSession);

impl PhaseAggregator for SecureSum {
    fn accept(
        &mut self,
        participant: &str,
        submission: Submission,
    ) -> Result<(), AggregationError> {
        let Submission::Signed {
            certificate_der,
            message,
        } = submission
        else {
            return Err(AggregationError::WrongScheme {
                participant: participant.into(),
                got: AggregationScheme::InsecurePlain,
                expected: AggregationScheme::SecAgg,
            });
        };
        Ok(self.0.receive(participant, &certificate_der, message)?)
    }

    fn stage(&self) -> SecAggStage {
        self.0.stage()
    }

    fn expected(&self) -> BTreeSet<String> {
        self.0.expected()
    }

    fn received(&self) -> BTreeSet<String> {
        self.0.received()
    }

    fn close_stage(&mut self) -> Result<Closed, AggregationError> {
        Ok(match self.0.close_stage()? {
            StageClosed::Next(_) => Closed::Next,
            StageClosed::Done { sum, contributors } => Closed::Done { sum, contributors },
        })
    }

    fn relay(&self, participant: &str) -> Option<SecAggRelay> {
        Some(self.0.relay_for(participant))
    }

    fn culprits(&self) -> Vec<Culprit> {
        self.0.culprits().to_vec()
    }
}

/// `insecure-plain`: the coordinator sees each participant's vector. The vectors are kept until
/// the phase closes and summed in the participants' name order, so the sum (in floating point)
/// does not depend on the order uploads arrived in: a federation is reproducible.
struct PlainSum {
    len: usize,
    vectors: BTreeMap<String, Vec<f64>>,
    expected: BTreeSet<String>,
}

impl PhaseAggregator for PlainSum {
    fn accept(
        &mut self,
        participant: &str,
        submission: Submission,
    ) -> Result<(), AggregationError> {
        let wrong = || AggregationError::WrongScheme {
            participant: participant.into(),
            got: AggregationScheme::SecAgg,
            expected: AggregationScheme::InsecurePlain,
        };
        let Submission::Plain(vector) = submission else {
            return Err(wrong());
        };
        let Some(Scheme::Plain(plain)) = vector.scheme else {
            return Err(wrong());
        };
        if self.vectors.contains_key(participant) {
            return Err(AggregationError::Duplicate {
                participant: participant.into(),
            });
        }
        if plain.values.len() != self.len {
            return Err(AggregationError::Length {
                participant: participant.into(),
                expected: self.len,
                actual: plain.values.len(),
            });
        }
        if let Some(index) = plain.values.iter().position(|v| !v.is_finite()) {
            return Err(AggregationError::NotFinite {
                participant: participant.into(),
                index,
            });
        }
        self.vectors.insert(participant.to_owned(), plain.values);
        Ok(())
    }

    fn stage(&self) -> SecAggStage {
        SecAggStage::Unspecified
    }

    fn expected(&self) -> BTreeSet<String> {
        self.expected.clone()
    }

    fn received(&self) -> BTreeSet<String> {
        self.vectors.keys().cloned().collect()
    }

    fn close_stage(&mut self) -> Result<Closed, AggregationError> {
        let vectors = std::mem::take(&mut self.vectors);
        let mut sum = vec![0.0; self.len];
        for vector in vectors.values() {
            for (total, value) in sum.iter_mut().zip(vector) {
                *total += value;
            }
        }
        Ok(Closed::Done {
            sum,
            contributors: vectors.into_keys().collect(),
        })
    }

    fn relay(&self, _participant: &str) -> Option<SecAggRelay> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use accord_proto::v1::{Phase, PlainVector};

    fn plain(values: Vec<f64>) -> Submission {
        Submission::Plain(ProtectedVector {
            scheme: Some(Scheme::Plain(PlainVector { values })),
        })
    }

    #[test]
    fn plain_sums_and_refuses_bad_contributions_without_losing_good_ones() {
        let trust = Trust::new(Vec::new());
        let params = SecAggParams::default();
        let spec = PhaseSpec {
            context: Context {
                federation: "f".into(),
                round: 1,
                phase: Phase::Fit,
            },
            vector: PhaseVector {
                bounds: vec![accord_proto::layout::Bound {
                    name: "x".into(),
                    len: 2,
                    bound: 1.0,
                    integer: false,
                }],
                relations: Vec::new(),
            },
            selected: ["a".to_owned(), "b".to_owned()].into(),
            params: &params,
            trust: &trust,
        };
        let mut agg = start(AggregationScheme::InsecurePlain, spec).unwrap();
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
            agg.accept("b", Submission::Plain(ProtectedVector { scheme: None })),
            Err(AggregationError::WrongScheme { .. })
        ));
        agg.accept("b", plain(vec![10.0, 20.0])).unwrap();
        assert_eq!(agg.received().len(), 2);
        assert_eq!(
            agg.close_stage(),
            Ok(Closed::Done {
                sum: vec![11.0, 22.0],
                contributors: ["a".to_owned(), "b".to_owned()].into()
            })
        );
    }
}

//! Replaying a recorded aggregation: the messages a coordinator's session accepted
//! ([`CoordinatorSession::recording`]), fed in the recorded order into a fresh session built
//! with the same parameters, closing a stage whenever the next message belongs to a later one
//! and the remaining stages at the end: the close-stage sequence of the original run.
//!
//! The fresh session checks every message again (the sender's certificate against the CA, its
//! signature, the body's form, proofs), so the result is what the coordinator had to compute
//! from what members signed; a message it invented or altered is refused and named. Replaying
//! needs no secret: the round's logic is the session's own, written once.

use super::coordinator::{CoordinatorSession, MaskedInputs, StageClosed};
use super::{SecAggError, stage_label};
use accord_proto::v1::{RecordedMessage, SecAggStage};
use std::collections::BTreeSet;

/// Why a replay did not reach a result.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A recorded entry has no signed message.
    #[error("recorded message {index} (from '{sender}') holds no signed message")]
    Empty {
        /// Which message of the record, from 0.
        index: usize,
        /// The sender's name.
        sender: String,
    },
    /// A message for a stage the replay had already closed, or for no stage at all.
    #[error(
        "recorded message {index} ({stage} from '{sender}') is out of order: the replay had closed that stage or never opens it"
    )]
    OutOfOrder {
        /// Which message of the record, from 0.
        index: usize,
        /// The stage (as logs name it).
        stage: &'static str,
        /// The sender's name.
        sender: String,
    },
    /// The fresh session refused a recorded message.
    #[error("recorded message {index} ({stage} from '{sender}') is refused: {source}")]
    Refused {
        /// Which message of the record, from 0.
        index: usize,
        /// The stage (as logs name it).
        stage: &'static str,
        /// The sender's name.
        sender: String,
        /// Why the session refused it.
        #[source]
        source: SecAggError,
    },
    /// Closing a stage failed (e.g. below the threshold), so the recorded run had no result.
    #[error("the replay aborts when closing the {stage} stage: {source}")]
    Aborted {
        /// The stage whose closing failed.
        stage: &'static str,
        /// Why it could not close.
        #[source]
        source: SecAggError,
    },
}

/// The result of a replay: the unmasked sum and who contributed to it.
pub struct Replayed<S> {
    /// The unmasked sum of the contributors' inputs.
    pub sum: S,
    /// The survivors whose inputs make up `sum`.
    pub contributors: BTreeSet<String>,
    /// The plan the replayed session derived (members, threshold, degree), as the original
    /// run's was.
    pub plan: Option<super::Plan>,
}

/// Feeds `messages` into `session` (fresh, built as the recorded one was) and closes its stages
/// as the original run did; returns the sum, or the first message refused or out of order
/// (by its index in `messages`) or the stage at which the aggregation aborts.
pub fn replay<I: MaskedInputs>(
    mut session: CoordinatorSession<I>,
    messages: &[RecordedMessage],
) -> Result<Replayed<I::Sum>, ReplayError> {
    let mut closed = BTreeSet::new();
    for (index, recorded) in messages.iter().enumerate() {
        let sender = recorded.sender.clone();
        let message = recorded.message.clone().ok_or(ReplayError::Empty {
            index,
            sender: sender.clone(),
        })?;
        let stage = message.stage();
        let out_of_order = |sender: String| ReplayError::OutOfOrder {
            index,
            stage: stage_label(stage),
            sender,
        };
        if matches!(stage, SecAggStage::Unspecified | SecAggStage::Done) {
            return Err(out_of_order(sender));
        }
        while session.stage() != stage {
            if closed.contains(&(stage as i32)) {
                return Err(out_of_order(sender));
            }
            closed.insert(session.stage() as i32);
            if let StageClosed::Done { .. } = close(&mut session)? {
                return Err(out_of_order(sender));
            }
        }
        session
            .receive(&sender, &recorded.certificate_der, message)
            .map_err(|source| ReplayError::Refused {
                index,
                stage: stage_label(stage),
                sender,
                source,
            })?;
    }
    loop {
        if let StageClosed::Done { sum, contributors } = close(&mut session)? {
            let plan = session.plan_in_force().cloned();
            return Ok(Replayed {
                sum,
                contributors,
                plan,
            });
        }
    }
}

fn close<I: MaskedInputs>(
    session: &mut CoordinatorSession<I>,
) -> Result<StageClosed<I::Sum>, ReplayError> {
    let stage = stage_label(session.stage());
    session
        .close_stage()
        .map_err(|source| ReplayError::Aborted { stage, source })
}

//! The seam tests and simulations use to make a node drop out: a hook asked just before each
//! secure-aggregation message is sent. Production runs ([`run`](crate::run)) use none, and
//! `participant.toml` has no way to set one, so a deployed node cannot be told to misbehave
//! by its configuration; fault plans live with the simulator and the tests.

use accord_proto::v1::{Phase, SecAggStage};

/// What a node does in place of sending one secure-aggregation message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Interruption {
    /// No interruption: the message is sent (the default).
    #[default]
    Send,
    /// The node sits this phase out (as a dropout would) and carries on with the next.
    Withhold,
    /// The node ends, as if its process died: [`run_with`](crate::run_with) returns
    /// [`ParticipantError::Interrupted`](crate::ParticipantError::Interrupted), naming where.
    Exit,
    /// The node hangs there for good, e.g. for a test to kill its process. It says so on
    /// stderr first: "accord participant: fault injection: holding before the {stage} message
    /// of round {round} {phase}".
    Hold,
}

/// Decides, before each secure-aggregation message a node sends, whether it is sent
/// ([`Interruption::Send`]) or the node drops out there. Called for the setup, share-keys,
/// masked-input, consistency-check and unmask messages of every phase the node takes part in;
/// never for plain (`insecure-plain`) uploads. `()` interrupts nothing.
pub trait Interruptions: Send + Sync {
    /// What to do in place of sending the `stage` message of `round`'s `phase`.
    fn before_sending(&self, round: u32, phase: Phase, stage: SecAggStage) -> Interruption;
}

/// No interruptions: every message is sent, as in production.
impl Interruptions for () {
    fn before_sending(&self, _round: u32, _phase: Phase, _stage: SecAggStage) -> Interruption {
        Interruption::Send
    }
}

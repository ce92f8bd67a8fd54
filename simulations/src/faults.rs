//! Planned dropouts of one participant node: at a round's phase, just before a
//! secure-aggregation message, the node withholds it, exits or hangs. The simulator's gRPC
//! transport plants an experiment's dropouts this way and the end-to-end tests make nodes die
//! mid-round; a [`FaultPlan`] is the [`Interruptions`] handed to
//! [`accord_participant::run_with`]. It lives here, not in the participant, so that no
//! production configuration can ask a node to misbehave.
//!
//! In TOML (e.g. for `accord-test-node participant --faults FILE`):
//!
//! ```toml
//! faults = [{ round = 1, phase = "fit", stage = "masked-input", action = "hold" }]
//! ```

use accord_participant::{Interruption, Interruptions};
use accord_proto::v1::{Phase, SecAggStage};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The dropouts planned for one participant; the first fault matching a message decides it,
/// and a message no fault matches is sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPlan {
    /// The planned faults.
    #[serde(default)]
    pub faults: Vec<Fault>,
}

/// A planned failure: at `round`'s `phase`, just before sending its `stage` message, the
/// participant `exit`s (ends, as if its process died), `withhold`s (sits the phase out and
/// carries on with the next), or `hold`s (hangs there, e.g. for a test to kill the process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// The round the fault happens in, from 1 (0 for standardization).
    pub round: u32,
    /// The phase the fault happens in.
    pub phase: FaultPhase,
    /// The secure-aggregation stage whose message the fault replaces.
    pub stage: FaultStage,
    /// What the participant does instead of sending.
    pub action: FaultAction,
}

/// The phase a [`Fault`] happens in (kebab-case in TOML).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultPhase {
    /// The standardization sums, before the first round.
    Standardize,
    /// A round's fit (model update).
    Fit,
    /// A round's evaluation.
    Evaluate,
    /// The evaluation with per-group thresholds after the last round.
    EvaluateThresholds,
}

/// The secure-aggregation stage a [`Fault`] happens at (kebab-case in TOML).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultStage {
    /// Advertising keys.
    Setup,
    /// Sending encrypted key shares.
    ShareKeys,
    /// Sending the masked input.
    MaskedInput,
    /// Signing the list of survivors.
    ConsistencyCheck,
    /// Revealing shares for unmasking.
    Unmask,
}

/// What a participant does at a [`Fault`] (kebab-case in TOML).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultAction {
    /// Ends the participant, as if its process died.
    Exit,
    /// Sits the phase out and carries on with the next.
    Withhold,
    /// Hangs, e.g. for a test to kill the process.
    Hold,
}

/// Why a fault plan could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FaultPlanError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The fault plan's file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not valid TOML or not a fault plan.
    #[error("{path}: {source}")]
    Parse {
        /// The fault plan's file.
        path: PathBuf,
        /// The parser's error.
        source: toml::de::Error,
    },
}

impl FaultPhase {
    /// The fault phase of a federation phase; None for the phases no fault names (the
    /// fairness audit).
    pub fn of(phase: Phase) -> Option<Self> {
        match phase {
            Phase::Standardize => Some(Self::Standardize),
            Phase::Fit => Some(Self::Fit),
            Phase::Evaluate => Some(Self::Evaluate),
            Phase::EvaluateThresholds => Some(Self::EvaluateThresholds),
            _ => None,
        }
    }
}

impl FaultStage {
    /// The fault stage of a secure-aggregation stage; None for the stages no message is sent
    /// at.
    pub fn of(stage: SecAggStage) -> Option<Self> {
        match stage {
            SecAggStage::Setup => Some(Self::Setup),
            SecAggStage::ShareKeys => Some(Self::ShareKeys),
            SecAggStage::MaskedInput => Some(Self::MaskedInput),
            SecAggStage::ConsistencyCheck => Some(Self::ConsistencyCheck),
            SecAggStage::Unmask => Some(Self::Unmask),
            SecAggStage::Done | SecAggStage::Unspecified => None,
        }
    }
}

impl FaultPlan {
    /// Reads a fault plan from a TOML file.
    pub fn load(path: &Path) -> Result<Self, FaultPlanError> {
        let text = std::fs::read_to_string(path).map_err(|source| FaultPlanError::Io {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| FaultPlanError::Parse {
            path: path.into(),
            source,
        })
    }
}

impl Interruptions for FaultPlan {
    fn before_sending(&self, round: u32, phase: Phase, stage: SecAggStage) -> Interruption {
        let (phase, stage) = (FaultPhase::of(phase), FaultStage::of(stage));
        self.faults
            .iter()
            .find(|f| f.round == round && Some(f.phase) == phase && Some(f.stage) == stage)
            .map_or(Interruption::Send, |f| match f.action {
                FaultAction::Exit => Interruption::Exit,
                FaultAction::Withhold => Interruption::Withhold,
                FaultAction::Hold => Interruption::Hold,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_reads_from_toml_and_interrupts_only_the_message_it_names() {
        let plan: FaultPlan = toml::from_str(
            r#"faults = [
                { round = 1, phase = "fit", stage = "masked-input", action = "hold" },
                { round = 2, phase = "evaluate-thresholds", stage = "consistency-check", action = "exit" },
                { round = 0, phase = "standardize", stage = "setup", action = "withhold" },
            ]"#,
        )
        .unwrap();
        let at = |round, phase, stage| plan.before_sending(round, phase, stage);
        assert_eq!(
            at(1, Phase::Fit, SecAggStage::MaskedInput),
            Interruption::Hold
        );
        assert_eq!(
            at(2, Phase::EvaluateThresholds, SecAggStage::ConsistencyCheck),
            Interruption::Exit
        );
        assert_eq!(
            at(0, Phase::Standardize, SecAggStage::Setup),
            Interruption::Withhold
        );
        for (round, phase, stage) in [
            (2, Phase::Fit, SecAggStage::MaskedInput),
            (1, Phase::Evaluate, SecAggStage::MaskedInput),
            (1, Phase::Fit, SecAggStage::Unmask),
            (1, Phase::Fairness, SecAggStage::MaskedInput),
        ] {
            assert_eq!(at(round, phase, stage), Interruption::Send);
        }
        assert_eq!(
            FaultPlan::default().before_sending(1, Phase::Fit, SecAggStage::MaskedInput),
            Interruption::Send
        );
    }

    #[test]
    fn a_plan_with_an_unknown_key_or_value_is_refused_naming_it() {
        for (text, named) in [
            (
                r#"faults = [{ round = 1, phase = "fit", stage = "masked-input", action = "crash" }]"#,
                "unknown variant `crash`",
            ),
            (
                r#"faults = [{ round = 1, phase = "fit", stage = "masked-input", action = "exit", after = 2 }]"#,
                "unknown field `after`",
            ),
            (r#"fault = []"#, "unknown field `fault`"),
        ] {
            let error = toml::from_str::<FaultPlan>(text).unwrap_err().to_string();
            assert!(error.contains(named), "{error}");
        }
    }
}

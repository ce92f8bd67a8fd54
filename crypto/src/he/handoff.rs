//! What the coordinator hands to the auditor after a fairness phase, defined once for both
//! sides: the files it writes ([`AGGREGATE_FILE`], [`TRANSCRIPT_FILE`], [`RECORD_FILE`]), how
//! the phase's session is built ([`FairnessPhase::session`]), and the replay of the recorded
//! phase ([`read_record`], [`recompute`]) that lets an auditor or anyone holding the server
//! bundle check the aggregate byte for byte without trusting the coordinator.
//!
//! The coordinator runs the phase with [`FairnessPhase::session`]; the replay builds a fresh
//! session the same way from the federation definition the record carries, so the two cannot
//! drift apart. The transcript's format itself is in [`super::transcript`].

use super::inputs::{Commitment, EncryptedInputs, MASK_RING};
use super::transcript::CommitmentRecord;
use super::{FairnessPolicy, HeError, ServerMaterial};
use crate::secagg::CoordinatorSession;
use crate::secagg::Trust;
use crate::secagg::validity::{Statement, ValidityError};
use crate::secagg::{Context, Plan, SecAggError};
use crate::secagg::{ReplayError, Replayed, replay};
use accord_proto::fairness::{FairnessLayout, FairnessLayoutError};
use accord_proto::scheme::InputValidity;
use accord_proto::v1::{
    AggregationRecord, FairnessParams, FederationDefinition, Phase, SecAggParams,
};
use prost::Message as _;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

/// The encrypted aggregate the coordinator writes for the auditor (an
/// [`super::EncryptedAggregate`] in its file form), in the coordinator's output folder.
pub const AGGREGATE_FILE: &str = "fairness-aggregate.bin";
/// The fairness phase's transcript ([`super::transcript::RoundTranscript`], JSON).
pub const TRANSCRIPT_FILE: &str = "fairness-transcript.json";
/// The record of every message the fairness phase accepted (`accord.v1.AggregationRecord`,
/// protobuf); the transcript binds its SHA-256.
pub const RECORD_FILE: &str = "fairness-record.bin";

/// The largest record [`read_record`] reads: 2 GiB, room for thousands of participants'
/// encrypted statistics (a few hundred kilobytes each) and every other message of the phase.
pub const MAX_RECORD_BYTES: u64 = 2 << 30;

/// One fairness phase's settings, as the coordinator configured it or the replay read it from
/// the recorded federation definition.
pub struct FairnessPhase<'a> {
    /// The federation definition's fairness parameters (value bits, group size, bins).
    pub params: &'a FairnessParams,
    /// The auditor's server bundle, checked against the pinned auditor key by the caller.
    pub material: &'a Arc<ServerMaterial>,
    /// The per-group statistics' layout, from the schema and `params.histogram_bins`.
    pub layout: &'a FairnessLayout,
    /// The most records one participant may hold (`max_rows_per_participant`).
    pub max_rows: u64,
}

/// Why a fairness phase's session could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SessionError {
    /// The encrypted inputs refused the parameters (value bits, thread count).
    #[error(transparent)]
    Inputs(HeError),
    /// No input-validity statement exists for the layout's counts and bound.
    #[error(transparent)]
    Statement(ValidityError),
    /// The secure-aggregation session refused the parameters (threshold, neighbours).
    #[error(transparent)]
    SecAgg(#[from] SecAggError),
}

impl FairnessPhase<'_> {
    /// What each participant's counts must be proven to meet: every count in [0, max_rows] and
    /// the layout's relations (e.g. true positives at most positives at most n).
    ///
    /// # Errors
    /// [`ValidityError`] when the statement cannot be formed (no counts, a relation out of range).
    pub fn count_statement(&self) -> Result<Statement, ValidityError> {
        Statement::counts(self.layout.len(), self.max_rows, &self.layout.relations())
    }

    /// A fresh coordinator session of the fairness phase: encrypted statistics in this layout,
    /// summed on `threads` threads, under the disclosure policy (groups under `min_group_size`
    /// zeroed), with range proofs when `secure_aggregation.input_validity` asks for them. The
    /// coordinator's phase and its replay ([`recompute`]) both start here.
    ///
    /// # Errors
    /// [`SessionError`] naming the parameter refused.
    pub fn session(
        &self,
        context: Context,
        trust: &Trust,
        secure_aggregation: &SecAggParams,
        selected: BTreeSet<String>,
        threads: usize,
    ) -> Result<CoordinatorSession<EncryptedInputs>, SessionError> {
        let inputs = EncryptedInputs::new(
            context.clone(),
            self.material.clone(),
            self.layout.len(),
            self.params.value_bits,
            FairnessPolicy {
                fields: self.layout.fields(),
                min_group_size: self.params.min_group_size,
            },
            threads,
        )
        .map_err(SessionError::Inputs)?;
        let inputs = if secure_aggregation.input_validity == InputValidity::RangeProofs.name() {
            inputs.proven(self.count_statement().map_err(SessionError::Statement)?)
        } else {
            inputs
        };
        Ok(CoordinatorSession::with_inputs(
            context,
            trust.clone(),
            inputs,
            selected,
            secure_aggregation.threshold as usize,
            secure_aggregation.neighbours as usize,
        )?)
    }
}

/// The secure-aggregation parameters a session derived from the configured ones and the
/// members that advertised keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InForce {
    /// t: the least number of members that had to reach unmasking.
    pub threshold: usize,
    /// Members of the aggregation (those that advertised keys in setup).
    pub members: usize,
    /// Neighbours per member in the SecAgg+ graph (members - 1: the complete graph).
    pub degree: usize,
}

impl InForce {
    /// The parameters of `plan`.
    pub fn of(plan: &Plan) -> Self {
        Self {
            threshold: plan.threshold,
            members: plan.members.len(),
            degree: plan.degree(),
        }
    }

    /// The parameters in force in words, as the transcript and the report state them, with the
    /// configured ones they came from (0 meaning "more than half" and "the default degree" for
    /// the members present); masks live in [`MASK_RING`], reduced modulo 2^`value_bits`.
    pub fn describe(self, value_bits: u32, configured: &SecAggParams) -> String {
        let graph = if self.degree + 1 >= self.members {
            "the complete graph"
        } else {
            "a SecAgg+ Harary graph"
        };
        format!(
            "Z_2^{} masks reduced modulo 2^{value_bits}; in force: threshold t = {} of {} members, {} neighbours each ({graph}); configured: threshold {} (0: more than half), neighbours {} (0: the default for the members present)",
            MASK_RING.bits(),
            self.threshold,
            self.members,
            self.degree,
            configured.threshold,
            configured.neighbours
        )
    }
}

/// A participant's commitment as the transcript and the report carry it (hex).
pub fn commitment_record(commitment: &Commitment) -> CommitmentRecord {
    CommitmentRecord {
        participant: commitment.participant.clone(),
        certificate_der: hex::encode(&commitment.certificate_der),
        ciphertext_sha256: hex::encode(commitment.ciphertext_sha256),
        signature: hex::encode(&commitment.signature),
    }
}

/// Why a fairness phase could not be recomputed from its record.
#[derive(Debug, thiserror::Error)]
pub enum RecomputeError {
    /// The record file cannot be read.
    #[error("{path}: {source}")]
    File {
        /// The record's path.
        path: String,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The record file is larger than [`MAX_RECORD_BYTES`].
    #[error("{path}: {size} bytes, more than the {MAX_RECORD_BYTES} a record may hold")]
    TooLarge {
        /// The record's path.
        path: String,
        /// Its size in bytes.
        size: u64,
    },
    /// The record file is not a protobuf `AggregationRecord`.
    #[error("{path}: not an aggregation record: {source}")]
    Decode {
        /// The record's path.
        path: String,
        /// What the decoder found.
        #[source]
        source: prost::DecodeError,
    },
    /// The recorded federation definition is not a protobuf `FederationDefinition`.
    #[error("the record's federation definition: {0}")]
    Definition(#[source] prost::DecodeError),
    /// The recorded federation definition has no fairness audit.
    #[error("the record's federation definition: it has no fairness audit")]
    NoFairness,
    /// The recorded schema gives no fairness layout.
    #[error("the record's federation definition: {0}")]
    Layout(#[source] FairnessLayoutError),
    /// The record is of another phase.
    #[error("the record is of the {0} phase, not the fairness phase")]
    Phase(&'static str),
    /// The server bundle given is not the one the federation used.
    #[error(
        "the record's federation used the auditor bundle {recorded}, the server bundle given goes with {given}"
    )]
    Bundle {
        /// The bundle's SHA-256 in the recorded definition.
        recorded: String,
        /// The SHA-256 of the bundle given.
        given: String,
    },
    /// The replay's session could not be built from the recorded parameters.
    #[error("the replay's session: {0}")]
    Session(#[source] SessionError),
    /// A recorded message was refused or out of order, or the replay aborted.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// The recomputed aggregate could not be written in its file form.
    #[error("the recomputed aggregate: {0}")]
    Aggregate(#[source] HeError),
}

/// What a replay of the fairness phase computes.
#[derive(Debug, Clone, PartialEq)]
pub struct Recomputed {
    /// The encrypted aggregate file's bytes, as the coordinator should have written them.
    pub aggregate: Vec<u8>,
    /// The contributors' commitments, as the transcript should list them.
    pub participants: Vec<CommitmentRecord>,
    /// Selected participants whose statistics are not in the aggregate.
    pub dropped: Vec<String>,
    /// The secure-aggregation parameters in force in the replay, in the report's words
    /// ([`InForce::describe`]); None when the replay derived no plan.
    pub secure_aggregation: Option<String>,
}

/// Reads a record written by the coordinator ([`RECORD_FILE`]), refusing one larger than
/// [`MAX_RECORD_BYTES`]; returns it with the SHA-256 (hex) of its bytes, which the transcript
/// binds.
///
/// # Errors
/// [`RecomputeError::File`], [`RecomputeError::TooLarge`] or [`RecomputeError::Decode`], with
/// the path.
pub fn read_record(path: &Path) -> Result<(AggregationRecord, String), RecomputeError> {
    let file_error = |source| RecomputeError::File {
        path: path.display().to_string(),
        source,
    };
    let size = std::fs::metadata(path).map_err(file_error)?.len();
    if size > MAX_RECORD_BYTES {
        return Err(RecomputeError::TooLarge {
            path: path.display().to_string(),
            size,
        });
    }
    let bytes = std::fs::read(path).map_err(file_error)?;
    let record =
        AggregationRecord::decode(bytes.as_slice()).map_err(|source| RecomputeError::Decode {
            path: path.display().to_string(),
            source,
        })?;
    Ok((record, crate::hash::sha256_hex(&bytes)))
}

/// Replays a fairness phase from its `record`: a fresh session built from the recorded
/// federation definition with `material` (the auditor's server bundle, checked by the caller
/// against the pinned auditor key) checks every message's certificate against `trust` and its
/// signature, proofs and commitments, and computes the aggregate. Slow: as long as the
/// coordinator's own fairness phase.
///
/// # Errors
/// [`RecomputeError`]: a malformed definition, another phase, another bundle, or the first
/// recorded message refused or out of order.
pub fn recompute(
    record: &AggregationRecord,
    trust: &Trust,
    material: Arc<ServerMaterial>,
) -> Result<Recomputed, RecomputeError> {
    let definition = FederationDefinition::decode(record.federation_definition.as_slice())
        .map_err(RecomputeError::Definition)?;
    if record.phase() != Phase::Fairness {
        return Err(RecomputeError::Phase(record.phase().label()));
    }
    let params = definition
        .fairness
        .clone()
        .ok_or(RecomputeError::NoFairness)?;
    if params.auditor_bundle_sha256 != material.public.bundle_sha256 {
        return Err(RecomputeError::Bundle {
            recorded: params.auditor_bundle_sha256,
            given: material.public.bundle_sha256.clone(),
        });
    }
    let secure_aggregation = definition.secure_aggregation.unwrap_or_default();
    let schema = definition.schema.unwrap_or_default();
    let layout = FairnessLayout::new(&schema, params.histogram_bins as usize)
        .map_err(RecomputeError::Layout)?;
    let phase = FairnessPhase {
        params: &params,
        material: &material,
        layout: &layout,
        max_rows: secure_aggregation.max_rows_per_participant,
    };
    let selected: BTreeSet<String> = record.selected.iter().cloned().collect();
    let context = Context {
        federation: definition.federation_id.clone(),
        round: record.round,
        phase: Phase::Fairness,
    };
    let session = phase
        .session(
            context,
            trust,
            &secure_aggregation,
            selected.clone(),
            record.threads as usize,
        )
        .map_err(RecomputeError::Session)?;
    let Replayed {
        sum,
        contributors,
        plan,
    } = replay(session, &record.messages)?;
    Ok(Recomputed {
        secure_aggregation: plan
            .map(|plan| InForce::of(&plan).describe(params.value_bits, &secure_aggregation)),
        aggregate: sum
            .to_bytes(&definition.federation_id, record.round)
            .map_err(RecomputeError::Aggregate)?,
        participants: sum.commitments.iter().map(commitment_record).collect(),
        dropped: selected.difference(&contributors).cloned().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> Context {
        Context {
            federation: "fed".into(),
            round: 3,
            phase: Phase::Fairness,
        }
    }

    #[test]
    fn a_record_is_read_with_the_sha256_of_its_bytes_and_a_bad_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RECORD_FILE);
        let record = AggregationRecord {
            round: 3,
            phase: Phase::Fairness as i32,
            selected: vec!["org-a".into(), "org-b".into()],
            threads: 2,
            ..Default::default()
        };
        let bytes = record.encode_to_vec();
        std::fs::write(&path, &bytes).unwrap();
        let (read, sha256) = read_record(&path).unwrap();
        assert_eq!(read, record);
        assert_eq!(sha256, crate::hash::sha256_hex(&bytes));

        // Not protobuf (a truncated field): refused with the path.
        std::fs::write(&path, [0x0a, 0xff]).unwrap();
        let error = read_record(&path).unwrap_err();
        assert!(matches!(error, RecomputeError::Decode { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("{}: not an aggregation record: ", path.display())),
            "{error}"
        );

        let missing = dir.path().join("missing.bin");
        let error = read_record(&missing).unwrap_err();
        assert!(matches!(error, RecomputeError::File { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .starts_with(&missing.display().to_string()),
            "{error}"
        );
    }

    #[test]
    fn a_record_over_the_limit_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RECORD_FILE);
        // Sparse: no disk is used for the 2 GiB.
        std::fs::File::create(&path)
            .unwrap()
            .set_len(MAX_RECORD_BYTES + 1)
            .unwrap();
        let error = read_record(&path).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "{}: 2147483649 bytes, more than the 2147483648 a record may hold",
                path.display()
            )
        );
    }

    #[test]
    fn the_parameters_in_force_name_the_graph_and_the_configured_values() {
        let members: Vec<String> = (0..5).map(|i| format!("org-{i}")).collect();
        let configured = SecAggParams {
            threshold: 0,
            neighbours: 0,
            ..Default::default()
        };
        let complete = InForce::of(&Plan::new(&context(), &members, 3, 4));
        assert_eq!(
            complete,
            InForce {
                threshold: 3,
                members: 5,
                degree: 4
            }
        );
        assert_eq!(
            complete.describe(16, &configured),
            "Z_2^32 masks reduced modulo 2^16; in force: threshold t = 3 of 5 members, 4 neighbours each (the complete graph); configured: threshold 0 (0: more than half), neighbours 0 (0: the default for the members present)"
        );
        let sparse = InForce::of(&Plan::new(&context(), &members, 3, 2));
        assert_eq!(sparse.degree, 2);
        assert!(
            sparse
                .describe(16, &configured)
                .contains("2 neighbours each (a SecAgg+ Harary graph)"),
            "{}",
            sparse.describe(16, &configured)
        );
    }
}

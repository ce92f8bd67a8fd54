//! The transcript of a fairness round as a hash chain: every signed message the coordinator
//! accepted, every commitment and the aggregate handed to the auditor, each as a labelled
//! SHA-256, folded into one head. The auditor signs the head in its report; a verifier
//! recomputes it from the entries, so no entry can be altered, dropped or reordered unnoticed.

use crate::secagg::stage_label;
use accord_proto::v1::SignedStageMessage;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The chain's domain tag.
const DOMAIN: &[u8] = b"accord/fairness-transcript/v1";

/// One link: what it is and the SHA-256 (hex) of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// What the link records (e.g. `commitment:NAME`).
    pub label: String,
    /// SHA-256 (hex) of its bytes.
    pub sha256: String,
}

impl Entry {
    /// An entry for `bytes`.
    pub fn of(label: impl Into<String>, bytes: &[u8]) -> Self {
        Self {
            label: label.into(),
            sha256: hex::encode(Sha256::digest(bytes)),
        }
    }
}

/// The head of the chain over `entries`: h₀ = SHA-256(domain), hᵢ₊₁ = SHA-256(hᵢ | len | label | sha256).
pub fn head(entries: &[Entry]) -> String {
    let mut h: [u8; 32] = Sha256::digest(DOMAIN).into();
    for entry in entries {
        let mut hasher = Sha256::new();
        hasher.update(h);
        hasher.update((entry.label.len() as u64).to_be_bytes());
        hasher.update(entry.label.as_bytes());
        hasher.update(entry.sha256.as_bytes());
        h = hasher.finalize().into();
    }
    hex::encode(h)
}

/// The label of the transcript's last entry: the encrypted aggregate handed to the auditor.
pub const AGGREGATE_LABEL: &str = "aggregate";
/// The label of the transcript's first entry: the federation definition in force.
pub const DEFINITION_LABEL: &str = "federation definition";
/// The label of the entry before the aggregate: the record of every accepted message.
pub const RECORD_LABEL: &str = "aggregation record";

/// The entry for a signed stage message `sender` sent and the coordinator accepted.
pub fn message_entry(sender: &str, message: &SignedStageMessage) -> Entry {
    Entry::of(
        format!("{}:{sender}", stage_label(message.stage())),
        &message.encode_to_vec(),
    )
}

/// The largest transcript file the auditor reads (a few hundred bytes per accepted message).
pub const MAX_TRANSCRIPT_BYTES: u64 = 64 << 20;

/// The transcript format tag.
pub const TRANSCRIPT_FORMAT: &str = "accord.fairness-transcript.v1";

/// A participant's commitment as the transcript and the report carry it (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitmentRecord {
    /// The participant, by the name in its certificate.
    pub participant: String,
    /// Its certificate (DER, hex).
    pub certificate_der: String,
    /// SHA-256 (hex) of the proven ciphertext list it submitted.
    pub ciphertext_sha256: String,
    /// Its Ed25519 signature over the commitment (hex).
    pub signature: String,
}

impl CommitmentRecord {
    /// The chain entry that records this commitment.
    pub fn entry(&self) -> Entry {
        Entry::of(
            format!("commitment:{}", self.participant),
            format!("{}:{}", self.ciphertext_sha256, self.signature).as_bytes(),
        )
    }
}

/// The groups a fairness round reports on (enough to rebuild its layout).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupsRecord {
    /// Protected attributes with their categories (`unknown` implied).
    pub attributes: Vec<(String, Vec<String>)>,
    /// Intersections, each the attributes it crosses.
    pub intersections: Vec<Vec<String>>,
    /// Bins of the score histograms.
    pub histogram_bins: u32,
}

/// What the coordinator writes beside the encrypted aggregate for the auditor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundTranscript {
    /// [`TRANSCRIPT_FORMAT`].
    pub format: String,
    /// The federation.
    pub federation_id: String,
    /// The round whose fairness phase this records.
    pub round: u32,
    /// model.json's content hash: the model whose decisions were counted.
    pub model_content_hash: String,
    /// SHA-256 (hex) of the auditor's public bundle the participants encrypted with.
    pub auditor_bundle_sha256: String,
    /// SHA-256 (hex) of the tfhe parameters ([`super::parameters_sha256`]).
    pub tfhe_parameters_sha256: String,
    /// The secure-aggregation parameters in force, in words.
    pub secure_aggregation: String,
    /// SHA-256 (hex) of the secure-aggregation parameters' protobuf encoding.
    pub secure_aggregation_sha256: String,
    /// The width of each count: sums are modulo 2^value_bits.
    pub value_bits: u32,
    /// Groups smaller than this were suppressed under encryption.
    pub min_group_size: u64,
    /// The model's decision threshold for all groups (unless `thresholds_in_force` says
    /// otherwise).
    pub decision_threshold: f64,
    /// The fairness-aware training the model was trained with, in words ("none" if plain).
    pub mitigation: String,
    /// The per-group decision thresholds in force, in words ("none": `decision_threshold` for all).
    pub thresholds_in_force: String,
    /// The groups reported on.
    pub groups: GroupsRecord,
    /// The contributors' commitments.
    pub participants: Vec<CommitmentRecord>,
    /// Selected participants whose statistics are not in the aggregate.
    pub dropped: Vec<String>,
    /// Participants named for deviating from the protocol in the fairness phase, each as
    /// "name (phase, stage): reason".
    #[serde(default)]
    pub culprits: Vec<String>,
    /// The chain's links in order: every accepted signed message, every commitment and the
    /// aggregate.
    pub entries: Vec<Entry>,
    /// The chain's [`head`] over `entries`, which the auditor signs.
    pub head: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_changes_with_any_entry_its_order_or_its_length() {
        let entries = vec![Entry::of("a", b"1"), Entry::of("b", b"2")];
        let h = head(&entries);
        assert_eq!(h, head(&entries.clone()));
        assert_ne!(h, head(&[entries[1].clone(), entries[0].clone()]));
        assert_ne!(h, head(&entries[..1]));
        assert_ne!(h, head(&[Entry::of("a", b"1"), Entry::of("b", b"3")]));
        assert_ne!(h, head(&[Entry::of("a", b"1"), Entry::of("c", b"2")]));
    }
}

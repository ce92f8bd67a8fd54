//! Secure aggregation: the coordinator learns the sum of the participants' vectors and nothing
//! else, even when some participants drop out mid-round.
//!
//! The protocol is Bonawitz et al. (CCS 2017) double masking over the SecAgg+ neighbour graph
//! of Bell et al. (CCS 2020), in four stages: setup (advertise keys) → share keys → masked input
//! → unmask. Each participant adds to its encoded input a self mask (from a fresh seed `b`) and,
//! per neighbour, a pairwise mask (agreed by X25519) with opposite signs on the two ends, so
//! pairwise masks cancel in the sum. Shamir shares of `b` and of the mask key let the survivors
//! remove the self masks of survivors and the pairwise masks of dropped participants; an
//! honest participant reveals at most one of the two for anyone, so the coordinator never gets
//! both for the same participant.
//!
//! [`ParticipantSession`] and [`CoordinatorSession`] are I/O-free state machines over the
//! `accord.v1` wire messages: tests drive them in-process, the nodes drive them over gRPC.
//! Primitives come from well-kept crates: X25519 (`x25519-dalek`), HKDF-SHA256 (`hkdf`), the
//! ChaCha20 keystream for masks ([`mask`]), ChaCha20-Poly1305 for the shares the coordinator
//! relays, Ed25519 (`ed25519-dalek`) on every message ([`Signer`], [`Trust`]), Shamir over a
//! 257-bit prime field ([`shamir`]), fixed-point encoding with headroom ([`FixedPoint`]).
//! Input bounds are proven, not trusted ([`validity`]), and a recorded aggregation can be
//! checked after the fact ([`replay`]).
//!
//! The state machines, the encoding, message signing and the replay are implementation
//! modules behind the `pub use` list below; [`mask`], [`shamir`] and [`validity`] are public
//! layers, usable alone.

mod coordinator;
mod encoding;
mod identity;
pub mod mask;
mod participant;
mod replay;
pub mod shamir;
pub mod validity;

pub use coordinator::{CoordinatorSession, Correction, MaskedInputs, PlainInputs, StageClosed};
pub use encoding::{Encoded, EncodingError, FixedPoint, Modulus, Segment, SegmentCode};
pub use identity::{IdentityError, Signer, Trust, verify, verify_digest};
pub use participant::{MaskSeeds, Masked, ParticipantSession, SealInput, pairwise_seed, subtracts};
pub use replay::{ReplayError, Replayed, replay};

use accord_proto::v1::{Phase, SecAggStage};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// Where one aggregation happens: every signature, key derivation and AEAD tag is bound to it,
/// so nothing from one federation, round or phase is accepted in another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The federation id.
    pub federation: String,
    /// The round.
    pub round: u32,
    /// The phase aggregated.
    pub phase: Phase,
}

impl Context {
    /// Feeds the length-prefixed encoding of the context and `parts` to `put`.
    fn encode(&self, label: &str, parts: &[&[u8]], mut put: impl FnMut(&[u8])) {
        let mut field = |bytes: &[u8]| {
            put(&(bytes.len() as u64).to_be_bytes());
            put(bytes);
        };
        field(b"accord.secagg.v1");
        field(label.as_bytes());
        field(self.federation.as_bytes());
        field(&self.round.to_be_bytes());
        field(&(self.phase as i32).to_be_bytes());
        for part in parts {
            field(part);
        }
    }

    /// The encoding as bytes (for associated data).
    fn transcript(&self, label: &str, parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(label, parts, |bytes| out.extend_from_slice(bytes));
        out
    }

    /// SHA-256 of the encoding, streamed: a masked input is hashed where it lies, not copied.
    fn digest(&self, label: &str, parts: &[&[u8]]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        self.encode(label, parts, |bytes| hasher.update(bytes));
        hasher.finalize().into()
    }

    /// What a participant signs for a stage message.
    pub fn signing_digest(&self, stage: SecAggStage, sender: &str, body: &[u8]) -> [u8; 32] {
        self.digest(
            "message",
            &[&(stage as i32).to_be_bytes(), sender.as_bytes(), body],
        )
    }

    /// What `sender` signs to commit to a ciphertext (by its SHA-256) it submitted in this
    /// context; anyone holding the sender's certificate can check it later.
    pub fn commitment_digest(&self, sender: &str, ciphertext_sha256: &[u8; 32]) -> [u8; 32] {
        self.digest(
            "ciphertext commitment",
            &[sender.as_bytes(), ciphertext_sha256],
        )
    }

    /// The bytes an input-validity proof by `sender` is bound to: a proof made for another
    /// federation, round, phase or sender does not verify here.
    pub fn validity_binding(&self, sender: &str) -> Vec<u8> {
        self.transcript("input validity proof", &[sender.as_bytes()])
    }

    /// The bytes a proof of well-formed encryption by `sender` is bound to: a proof made for
    /// another federation, round, phase or sender does not verify here.
    pub fn proof_metadata(&self, sender: &str) -> Vec<u8> {
        self.transcript("encryption proof", &[sender.as_bytes()])
    }

    /// A 32-byte key derived from an X25519 shared secret for a purpose between two parties
    /// (in canonical order, so both ends derive the same key).
    fn derive(&self, shared: &[u8; 32], purpose: &str, a: &str, b: &str) -> [u8; 32] {
        let (first, second) = if a <= b { (a, b) } else { (b, a) };
        let salt = self.digest(purpose, &[first.as_bytes(), second.as_bytes()]);
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(Some(&salt), shared)
            .expand(purpose.as_bytes(), &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        key
    }

    /// The AEAD's associated data for a share from `from` to `to`, dealt under the plan whose
    /// digest is `plan` ([`Context::plan_digest`]).
    fn share_aad(&self, from: &str, to: &str, plan: &[u8; 32]) -> Vec<u8> {
        self.transcript("share", &[from.as_bytes(), to.as_bytes(), plan])
    }

    /// SHA-256 of what share keys fixed for this aggregation: t, the share threshold, the
    /// degree and the members. Shares, their signatures and the signed survivor set are bound
    /// to it, so participants a coordinator showed different member lists (and so different
    /// thresholds) can neither open each other's shares nor add up each other's signatures:
    /// everyone whose shares or signatures count for one participant holds its plan, and
    /// within one plan t is more than half of the members, so only one survivor set can
    /// gather t signatures.
    pub fn plan_digest(&self, plan: &Plan) -> [u8; 32] {
        let numbers =
            [plan.threshold, plan.share_threshold, plan.degree].map(|n| (n as u64).to_be_bytes());
        let parts: Vec<&[u8]> = numbers
            .iter()
            .map(|n| n.as_slice())
            .chain(plan.members.iter().map(|m| m.as_bytes()))
            .collect();
        self.digest("plan", &parts)
    }

    /// The commitment `owner` advertises to its self-mask seed: a seed rebuilt from shares is
    /// checked against it (SHA-256; the seed is 256 uniform bits, so the hash hides it).
    pub fn seed_commitment(&self, owner: &str, seed: &[u8; 32]) -> [u8; 32] {
        self.digest("self-mask seed commitment", &[owner.as_bytes(), seed])
    }

    /// The commitment to the Shamir share (encoded) of `kind` that `owner` dealt to `holder`
    /// (SHA-256; a share's value is uniform in the field, so the hash hides it).
    pub fn share_commitment(
        &self,
        owner: &str,
        holder: &str,
        kind: ShareKind,
        share: &[u8],
    ) -> [u8; 32] {
        self.digest(
            "share commitment",
            &[
                owner.as_bytes(),
                holder.as_bytes(),
                kind.label().as_bytes(),
                share,
            ],
        )
    }

    /// What `owner` signs for each encrypted share: the plan it dealt under
    /// ([`Context::plan_digest`]), the recipient, the two commitments and the ciphertext (nonce
    /// and AEAD output) they travel in.
    #[allow(clippy::too_many_arguments)]
    pub fn share_signing_digest(
        &self,
        plan: &[u8; 32],
        owner: &str,
        holder: &str,
        seed_commitment: &[u8],
        key_commitment: &[u8],
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> [u8; 32] {
        self.digest(
            "encrypted share",
            &[
                plan,
                owner.as_bytes(),
                holder.as_bytes(),
                seed_commitment,
                key_commitment,
                nonce,
                ciphertext,
            ],
        )
    }

    /// What `owner` signs to state the neighbours it masked with (sorted, as on the wire).
    pub fn masking_digest(&self, owner: &str, masked_with: &[String]) -> [u8; 32] {
        let names: Vec<&[u8]> = std::iter::once(owner.as_bytes())
            .chain(masked_with.iter().map(|n| n.as_bytes()))
            .collect();
        self.digest("masking statement", &names)
    }
}

const PAIRWISE_MASK: &str = "pairwise mask";
const SHARE_ENCRYPTION: &str = "share encryption";

/// The encoding of a vector with these per-position `bounds` (from `accord_proto::layout`) for
/// at most `summands` participants, under the federation's parameters: both sides build it the
/// same way.
pub fn fixed_point(
    bounds: &[accord_proto::layout::Bound],
    params: &accord_proto::v1::SecAggParams,
    summands: usize,
) -> Result<encoding::FixedPoint, encoding::EncodingError> {
    let modulus = if params.modulus_bits == 32 {
        encoding::Modulus::Z32
    } else {
        encoding::Modulus::Z64
    };
    let segments = bounds
        .iter()
        .map(|b| encoding::Segment {
            name: b.name.clone(),
            len: b.len,
            bound: b.bound,
            integer: b.integer,
        })
        .collect();
    encoding::FixedPoint::new(modulus, segments, params.precision_bits, summands)
}

/// How one phase's vectors are secured: their fixed-point encoding for the participants
/// selected and, when the federation requires input validity (`range-proofs`), the statement
/// each participant's proof shows. Participants build it from the share-keys relay's selection,
/// the coordinator from its own, by this one rule.
#[derive(Debug, Clone)]
pub struct PhaseEncoding {
    /// The encoding of one participant's vector, with headroom for `summands` of them.
    pub encoding: encoding::FixedPoint,
    /// What each input's validity proof shows; None without input validity.
    pub statement: Option<validity::Statement>,
}

impl PhaseEncoding {
    /// The encoding of `vector` (its bounds and relations) for `summands` participants under
    /// the federation's `params`.
    ///
    /// # Errors
    /// [`SecAggError::Encoding`] when the bounds of `summands` participants do not fit the
    /// ring; [`SecAggError::Validity`] when the relations cannot be proven under the encoding.
    pub fn new(
        vector: &accord_proto::phase::PhaseVector,
        params: &accord_proto::v1::SecAggParams,
        summands: usize,
    ) -> Result<Self, SecAggError> {
        let encoding = fixed_point(&vector.bounds, params, summands)?;
        let statement = (params.input_validity
            == accord_proto::scheme::InputValidity::RangeProofs.name())
        .then(|| validity::Statement::new(&encoding, &vector.relations))
        .transpose()?;
        Ok(Self {
            encoding,
            statement,
        })
    }
}

/// Ring words on the wire: little-endian, 4 bytes each in Z_2^32, 8 in Z_2^64.
pub fn words_to_bytes(words: &[u64], modulus: encoding::Modulus) -> Vec<u8> {
    let width = modulus.word_bytes();
    let mut bytes = Vec::with_capacity(words.len() * width);
    for word in words {
        bytes.extend_from_slice(&word.to_le_bytes()[..width]);
    }
    bytes
}

/// The inverse of [`words_to_bytes`]; None unless `bytes` holds exactly `len` words.
pub fn words_from_bytes(bytes: &[u8], len: usize, modulus: encoding::Modulus) -> Option<Vec<u64>> {
    let width = modulus.word_bytes();
    if len.checked_mul(width) != Some(bytes.len()) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(width)
            .map(|chunk| {
                let mut word = [0u8; 8];
                word[..width].copy_from_slice(chunk);
                u64::from_le_bytes(word)
            })
            .collect(),
    )
}

/// The stage's name as users see it.
pub fn stage_label(stage: SecAggStage) -> &'static str {
    match stage {
        SecAggStage::Unspecified => "none",
        SecAggStage::Setup => "setup",
        SecAggStage::ShareKeys => "share keys",
        SecAggStage::MaskedInput => "masked input",
        SecAggStage::ConsistencyCheck => "consistency check",
        SecAggStage::Unmask => "unmask",
        SecAggStage::Done => "done",
    }
}

/// Why a secure-aggregation message or request was refused, or a phase could not finish.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SecAggError {
    /// A message bound to another federation, round or phase.
    #[error("message for {got}, but this aggregation is {expected}")]
    WrongContext {
        /// The context the message is bound to.
        got: String,
        /// This aggregation's context.
        expected: String,
    },
    /// A message for another stage than the one open.
    #[error("message for stage '{got}', but the aggregation is at stage '{expected}'")]
    WrongStage {
        /// The message's stage.
        got: &'static str,
        /// The stage open.
        expected: &'static str,
    },
    /// A message (from the named sender) that carries no signature.
    #[error("the message from '{0}' is not signed")]
    Unsigned(String),
    /// A signature (of the named sender) that does not verify: forged or altered.
    #[error("the signature of '{0}' does not verify: forged or altered")]
    BadSignature(String),
    /// A sender's certificate that the consortium CA did not issue, is revoked or names someone
    /// else.
    #[error("certificate of '{name}': {reason}")]
    Certificate {
        /// The sender.
        name: String,
        /// Why the certificate is refused.
        reason: String,
    },
    /// A second message from the named sender for the same stage (a replay).
    #[error("'{0}' already sent its message for this stage (a replay is refused)")]
    Duplicate(String),
    /// A message from the named sender, who is not taking part in this stage.
    #[error("'{0}' is not taking part in this stage")]
    NotExpected(String),
    /// A message body that does not decode or does not fit the aggregation.
    #[error("malformed {what} from '{from}': {reason}")]
    Malformed {
        /// The sender.
        from: String,
        /// What was malformed (e.g. "share bundle").
        what: &'static str,
        /// How.
        reason: String,
    },
    /// A threshold t at or below half of those selected, which would let two disjoint survivor
    /// sets both unmask.
    #[error(
        "threshold {threshold} is too low for {selected} selected participants (at least {minimum})"
    )]
    ThresholdTooLow {
        /// The threshold asked for.
        threshold: usize,
        /// The participants selected.
        selected: usize,
        /// The lowest threshold allowed ([`minimum_threshold`]).
        minimum: usize,
    },
    /// Fewer than t participants reached a stage: the phase aborts.
    #[error("only {have} participants reached {stage}, fewer than the threshold {threshold}")]
    BelowThreshold {
        /// The stage.
        stage: &'static str,
        /// The participants that reached it.
        have: usize,
        /// t.
        threshold: usize,
    },
    /// An unmask request that would reveal both secrets of the named participant: refused.
    #[error(
        "refused: the unmask request would reveal both the self-mask share and the key share of '{0}'"
    )]
    BothShares(String),
    /// An unmask request that contradicts what this participant saw (why given): refused.
    #[error("refused: the unmask request is inconsistent: {0}")]
    InconsistentUnmask(String),
    /// A relayed parameter that differs from what the signed federation definition gives.
    #[error(
        "the coordinator relayed {what} = {relayed}, but the federation definition gives {derived}"
    )]
    ParameterMismatch {
        /// The parameter (threshold or degree).
        what: &'static str,
        /// The value the coordinator relayed.
        relayed: usize,
        /// The value derived from the definition.
        derived: usize,
    },
    /// A parameter below this participant's own minimum ([`Requirements`]).
    #[error("{what} is {got}, below this participant's minimum of {minimum}")]
    BelowRequirement {
        /// The parameter.
        what: &'static str,
        /// Its value.
        got: usize,
        /// The participant's minimum.
        minimum: usize,
    },
    /// Too few valid shares from neighbours to keep the input hidden: the input is not sent.
    #[error(
        "refused to send the masked input: valid shares from {have} neighbours, fewer than the {need} \
         needed to keep it hidden; left out: {}",
        describe_exclusions(.excluded)
    )]
    TooFewShares {
        /// Neighbours whose shares are valid.
        have: usize,
        /// The fewest needed.
        need: usize,
        /// The neighbours left out, each with why.
        excluded: Vec<(String, String)>,
    },
    /// A survivor set refused at the consistency check (why given).
    #[error("refused the survivor set: {0}")]
    SurvivorSet(String),
    /// A survivor set signed by fewer than t of its survivors.
    #[error(
        "the survivor set carries {valid} valid signatures of survivors, fewer than the threshold {threshold}"
    )]
    TooFewSignatures {
        /// The valid signatures.
        valid: usize,
        /// t.
        threshold: usize,
    },
    /// Shares that do not rebuild the secret their dealer committed to.
    #[error("'{owner}' dealt shares that do not rebuild {what} it committed to")]
    BadDealing {
        /// The dealer.
        owner: String,
        /// Which secret (self-mask seed or mask key).
        what: &'static str,
    },
    /// A survivor's masked input that differs from the input it proved valid (the sum check
    /// failed); the survivor cannot be named.
    #[error(
        "input validity: {0} (a survivor's masked input differs from the input it proved; it \
         cannot be identified without revealing the others' inputs)"
    )]
    InputMismatch(validity::ValidityError),
    /// An input-validity proof refused, or a statement that cannot be built.
    #[error("input validity: {0}")]
    Validity(#[from] validity::ValidityError),
    /// Too few shares revealed to remove a participant's mask.
    #[error("cannot recover {what} of '{owner}': {have} shares, {need} needed")]
    Unrecoverable {
        /// Which secret.
        what: &'static str,
        /// Whose.
        owner: String,
        /// The shares revealed.
        have: usize,
        /// The shares needed.
        need: usize,
    },
    /// A vector that cannot be encoded, or a sum that cannot be decoded.
    #[error("{0}")]
    Encoding(#[from] encoding::EncodingError),
    /// A secret that cannot be split or rebuilt, or a share that does not decode.
    #[error("Shamir: {0}")]
    Shamir(#[from] shamir::ShamirError),
}

fn describe_exclusions(excluded: &[(String, String)]) -> String {
    if excluded.is_empty() {
        return "none".into();
    }
    excluded
        .iter()
        .map(|(name, reason)| format!("'{name}' ({reason})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The two secrets a participant shares among its neighbours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ShareKind {
    /// The self-mask seed, revealed for survivors.
    SelfMask,
    /// The X25519 mask key, revealed for those who dropped.
    Key,
}

impl ShareKind {
    /// The share's name in messages and commitments.
    pub fn label(self) -> &'static str {
        match self {
            ShareKind::SelfMask => "self-mask",
            ShareKind::Key => "mask-key",
        }
    }

    /// The secret it is a share of.
    pub fn secret(self) -> &'static str {
        match self {
            ShareKind::SelfMask => "the self-mask seed",
            ShareKind::Key => "the mask key",
        }
    }
}

/// A participant named for deviating from the protocol in one aggregation. `proven` when its
/// own signed messages show it (a malformed or out-of-range input, a share that does not match
/// its signed commitment, shares that do not rebuild its committed secret); otherwise another
/// participant's signed accusation (e.g. its shares did not decrypt), which names both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Culprit {
    /// The participant, by the name in its certificate.
    pub participant: String,
    /// The stage in which it deviated.
    pub stage: SecAggStage,
    /// What it did.
    pub reason: String,
    /// Whether its own signed messages prove it (rather than another's accusation).
    pub proven: bool,
}

impl std::fmt::Display for Culprit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at {}: {}",
            self.participant,
            stage_label(self.stage),
            self.reason
        )
    }
}

/// What a participant requires of an aggregation before it takes part: the parameters from the
/// federation definition (which the coordinator cannot lower in its relays) and the floors from
/// the participant's own configuration (which the definition cannot lower either).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Requirements {
    /// t from the definition (0: more than half of those selected).
    pub threshold: usize,
    /// k from the definition (0: [`default_neighbours`] for the number of members).
    pub neighbours: usize,
    /// The definition's `min_participants`: the least number of members of an aggregation.
    pub min_members: usize,
    /// This participant's own floor on t.
    pub min_threshold: usize,
}

impl Requirements {
    /// The requirements of a federation with `params` and `min_members`, under this
    /// participant's floor `min_threshold`.
    pub fn new(
        params: &accord_proto::v1::SecAggParams,
        min_members: usize,
        min_threshold: usize,
    ) -> Self {
        Self {
            threshold: params.threshold as usize,
            neighbours: params.neighbours as usize,
            min_members,
            min_threshold,
        }
    }
}

/// The parameters of one aggregation that every party derives the same way. Neighbourhoods
/// are computed on demand, so a plan is O(n) and a participant keeps only its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// t: the least number of participants that must reach unmasking.
    pub threshold: usize,
    /// The advertised participants, sorted: the nodes of the graph.
    pub members: Vec<String>,
    /// The Shamir threshold for a member's secrets, shared among its neighbours and itself.
    pub share_threshold: usize,
    /// Neighbours per member; n - 1 is the complete graph.
    degree: usize,
    /// The Harary graph's ring: position → member index, and its inverse.
    order: Vec<usize>,
    position: Vec<usize>,
}

/// The smallest threshold an honest participant accepts: more than half of those selected.
pub fn minimum_threshold(selected: usize) -> usize {
    selected / 2 + 1
}

/// The SecAgg+ neighbour count for `n` participants when none is configured: the complete
/// graph up to 20 participants; beyond, an even degree growing with log2(n) (Bell et al. show
/// O(log n) neighbours suffice), at least 20.
pub fn default_neighbours(n: usize) -> usize {
    if n <= 21 {
        return n.saturating_sub(1);
    }
    let log = (n as f64).log2().ceil() as usize;
    let k = (3 * log).max(20);
    (k + k % 2).min(n - 1)
}

impl Plan {
    /// The plan over the advertised `members` (any order) with threshold `threshold` and
    /// `degree` neighbours each (rounded up to even; the complete graph if it reaches n - 1).
    /// The graph is a Harary graph over a permutation of the members seeded by the context and
    /// the member list, so every party computes the same graph and no one picks it.
    pub fn new(context: &Context, members: &[String], threshold: usize, degree: usize) -> Self {
        let mut members = members.to_vec();
        members.sort();
        members.dedup();
        let n = members.len();
        let degree = degree + degree % 2;
        let (degree, order) = if degree + 1 >= n {
            (n.saturating_sub(1), Vec::new())
        } else {
            let names: Vec<&[u8]> = members.iter().map(|m| m.as_bytes()).collect();
            let seed = context.digest("graph", &names);
            let mut order: Vec<usize> = (0..n).collect();
            shuffle(&mut order, &seed);
            (degree, order)
        };
        let mut position = vec![0; order.len()];
        for (at, &member) in order.iter().enumerate() {
            position[member] = at;
        }
        Self {
            threshold,
            share_threshold: share_threshold(threshold, degree + 1, n),
            members,
            degree,
            order,
            position,
        }
    }

    /// Neighbours per member in force: the configured (or default) k rounded up to even, or
    /// n - 1 for the complete graph.
    pub fn degree(&self) -> usize {
        self.degree
    }

    /// A member's Shamir evaluation point: 1 + its position among the sorted members.
    pub fn point(&self, member: &str) -> Option<u32> {
        self.index(member).map(|i| i as u32 + 1)
    }

    fn index(&self, member: &str) -> Option<usize> {
        self.members
            .binary_search_by(|m| m.as_str().cmp(member))
            .ok()
    }

    /// A member's neighbours (none for a stranger).
    pub fn neighbours_of(&self, member: &str) -> BTreeSet<String> {
        let Some(index) = self.index(member) else {
            return BTreeSet::new();
        };
        if self.order.is_empty() {
            return self
                .members
                .iter()
                .filter(|m| m.as_str() != member)
                .cloned()
                .collect();
        }
        let n = self.members.len();
        let at = self.position[index];
        (1..=self.degree / 2)
            .flat_map(|step| [self.order[(at + step) % n], self.order[(at + n - step) % n]])
            .map(|i| self.members[i].clone())
            .collect()
    }
}

/// More than half of a member's share holders, and the global threshold's share of them:
/// ceil(t · holders / n). With the complete graph this is t itself.
fn share_threshold(threshold: usize, holders: usize, n: usize) -> usize {
    if n == 0 {
        return 1;
    }
    let scaled = (threshold * holders).div_ceil(n);
    scaled.max(holders / 2 + 1).min(holders)
}

/// Fisher–Yates driven by the ChaCha20 keystream of `seed` (public randomness: the graph is
/// not secret, only unpredictable to whoever chooses the member list).
fn shuffle(order: &mut [usize], seed: &[u8; 32]) {
    let mut stream = vec![0u8; order.len() * 8];
    mask::keystream(&mut stream, seed);
    for i in (1..order.len()).rev() {
        let word = u64::from_le_bytes(stream[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let j = (word % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> Context {
        Context {
            federation: "f".into(),
            round: 3,
            phase: Phase::Fit,
        }
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("org-{i:03}")).collect()
    }

    #[test]
    fn small_federations_use_the_complete_graph() {
        let plan = Plan::new(&context(), &names(10), 6, default_neighbours(10));
        assert!(names(10).iter().all(|m| plan.neighbours_of(m).len() == 9));
        assert_eq!(plan.share_threshold, 6);
    }

    #[test]
    fn the_secagg_plus_graph_is_regular_symmetric_and_agreed() {
        let members = names(200);
        let k = default_neighbours(200);
        assert_eq!(k, 24);
        let plan = Plan::new(&context(), &members, 101, k);
        for member in &members {
            let neighbours = plan.neighbours_of(member);
            assert_eq!(neighbours.len(), k, "{member}");
            assert!(!neighbours.contains(member));
            for other in &neighbours {
                assert!(plan.neighbours_of(other).contains(member));
            }
        }
        // More than half of each member's k + 1 share holders.
        assert_eq!(plan.share_threshold, 13);
        let mut shuffled = members.clone();
        shuffled.reverse();
        assert_eq!(Plan::new(&context(), &shuffled, 101, k), plan);
        let other_round = Context {
            round: 4,
            ..context()
        };
        let moved = Plan::new(&other_round, &members, 101, k);
        assert!(
            members
                .iter()
                .any(|m| moved.neighbours_of(m) != plan.neighbours_of(m))
        );
    }

    #[test]
    fn signing_digests_bind_every_field() {
        let c = context();
        let base = c.signing_digest(SecAggStage::MaskedInput, "a", b"body");
        assert_ne!(base, c.signing_digest(SecAggStage::Unmask, "a", b"body"));
        assert_ne!(
            base,
            c.signing_digest(SecAggStage::MaskedInput, "b", b"body")
        );
        assert_ne!(
            base,
            c.signing_digest(SecAggStage::MaskedInput, "a", b"bodx")
        );
        for other in [
            Context {
                round: 4,
                ..c.clone()
            },
            Context {
                phase: Phase::Evaluate,
                ..c.clone()
            },
            Context {
                federation: "g".into(),
                ..c.clone()
            },
        ] {
            assert_ne!(
                base,
                other.signing_digest(SecAggStage::MaskedInput, "a", b"body")
            );
        }
        // Length prefixes: moving a byte between fields changes the digest.
        assert_ne!(
            c.signing_digest(SecAggStage::Setup, "ab", b"c"),
            c.signing_digest(SecAggStage::Setup, "a", b"bc")
        );
    }
}

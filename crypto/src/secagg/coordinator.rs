//! The coordinator's side of one secure aggregation, as a state machine: it takes the
//! participants' signed messages stage by stage, relays what each needs for the next stage, and
//! at the end reconstructs exactly the secrets that remove the masks: the self-mask seeds of the
//! survivors and the mask keys of those who dropped after sharing keys, never both for anyone.
//!
//! It checks what it can of every message (signatures, certificates, who may send what), keeps
//! each participant's signed commitments, and names the participant responsible for anything
//! that fails: a masked input refused when its stage closes, a neighbour another survivor left
//! out of its masks, a revealed share that does not match its owner's signed commitment (skipped:
//! the extra shares rebuild the secret), shares that do not rebuild the secret their dealer
//! committed to (the phase aborts). [`CoordinatorSession::culprits`] lists them. Where the masked
//! inputs go is a [`MaskedInputs`]: plain words summed in the ring ([`PlainInputs`]), or
//! ciphertexts summed homomorphically (`crate::he::EncryptedInputs`); the masks are removed the
//! same way for both.

use super::encoding::{FixedPoint, Modulus};
use super::identity::{Trust, verify, verify_digest};
use super::participant::{PeerKeys, pairwise_seed, parse_keys, subtracts};
use super::shamir::{self, Share};
use super::validity::{self, CommitmentSum, Commitments, Statement, ValidityError, ValidityProof};
use super::{
    Context, Culprit, Plan, SecAggError, ShareKind, default_neighbours, mask, minimum_threshold,
    stage_label, words_from_bytes,
};
use accord_proto::v1::{
    Header, MaskedInput, MaskedInputEnvelope, MaskingStatement, MemberAdvertisement, RelayedShare,
    SecAggRelay, SecAggStage, ShareKeys, SignedStageMessage, SurvivorSet, UnmaskShares,
};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::VerifyingKey;
use prost::Message;
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// What closing a stage led to.
#[derive(Debug, Clone, PartialEq)]
pub enum StageClosed<S = Vec<f64>> {
    /// The next stage is open.
    Next(SecAggStage),
    /// The sum over `contributors` (the survivors, whose masked inputs were summed).
    Done {
        /// The unmasked sum of the survivors' inputs, decoded by the [`MaskedInputs`] in use.
        sum: S,
        /// The survivors whose masked inputs make up `sum`.
        contributors: BTreeSet<String>,
    },
}

/// Where the coordinator puts masked inputs: it checks each body and keeps it, then sums the
/// survivors' inputs and removes the masks with the correction the unmask stage yields.
pub trait MaskedInputs: Send {
    /// The unmasked result.
    type Sum;
    /// Words per input.
    fn words(&self) -> usize;
    /// The ring the masks live in.
    fn modulus(&self) -> Modulus;
    /// Checks `sender`'s sealed input (`key`: the verified key of its certificate
    /// `certificate_der`) and keeps it; a refused input changes nothing.
    fn add(
        &mut self,
        sender: &str,
        key: &VerifyingKey,
        certificate_der: &[u8],
        sealed: &[u8],
    ) -> Result<(), SecAggError>;
    /// Checks what `add` only kept, when the masked-input stage closes (heavy checks, kept out
    /// of the path that receives messages); returns the senders refused, with why. Their
    /// inputs are left out and they count as dropped.
    fn settle(&mut self) -> Vec<(String, SecAggError)> {
        Vec::new()
    }
    /// Whether inputs carry commitments whose blindings mirror the masks: then the unmask
    /// stage also computes the survivors' blinding sum ([`Correction::blindings`]).
    fn blinded(&self) -> bool {
        false
    }
    /// The sum of the `contributors`' inputs once `correction` has cancelled every mask left in
    /// it.
    fn finish(
        &mut self,
        contributors: &BTreeSet<String>,
        correction: Correction,
    ) -> Result<Self::Sum, SecAggError>;
}

/// What the unmask stage yields to remove the masks from the survivors' sum.
#[derive(Debug, Clone, PartialEq)]
pub struct Correction {
    /// Words to add, in the ring: minus every survivor's self mask and minus the pairwise masks
    /// survivors share with those who dropped.
    pub words: Vec<u64>,
    /// When the inputs are blinded: the sum of the survivors' commitment blindings (their self
    /// seeds' and the pairwise seeds' they share with those who dropped, with the survivor's
    /// sign; pairwise blindings between survivors cancel).
    pub blindings: Option<Vec<Scalar>>,
}

/// Masked inputs as plain words in the ring of a fixed-point encoding, each with a proof that
/// its unmasked input meets the phase's statement when the aggregation has one.
pub struct PlainInputs {
    encoding: FixedPoint,
    validity: Option<(Context, Statement)>,
    inputs: BTreeMap<String, Vec<u64>>,
    /// Proofs received, waiting to be verified when the stage closes.
    queued: Vec<(String, ValidityProof)>,
    /// Verified commitments, by sender.
    commitments: BTreeMap<String, Commitments>,
}

impl PlainInputs {
    /// Inputs under `encoding`, unproven.
    pub fn new(encoding: FixedPoint) -> Self {
        Self {
            encoding,
            validity: None,
            inputs: BTreeMap::new(),
            queued: Vec::new(),
            commitments: BTreeMap::new(),
        }
    }

    /// Inputs under `encoding`, each proven to meet `statement` for its sender in `context`
    /// (ACORN-style: Bell et al., USENIX Security 2023); the unmasked sum is checked against the
    /// sum of the commitments.
    pub fn proven(encoding: FixedPoint, context: Context, statement: Statement) -> Self {
        Self {
            validity: Some((context, statement)),
            ..Self::new(encoding)
        }
    }
}

impl MaskedInputs for PlainInputs {
    type Sum = Vec<f64>;

    fn words(&self) -> usize {
        self.encoding.len()
    }

    fn modulus(&self) -> Modulus {
        self.encoding.modulus()
    }

    fn add(
        &mut self,
        sender: &str,
        _key: &VerifyingKey,
        _certificate_der: &[u8],
        sealed: &[u8],
    ) -> Result<(), SecAggError> {
        let malformed = |reason: String| SecAggError::Malformed {
            from: sender.to_owned(),
            what: "masked input",
            reason,
        };
        let input = MaskedInput::decode(sealed).map_err(|e| malformed(e.to_string()))?;
        let modulus = self.encoding.modulus();
        let words =
            words_from_bytes(&input.words, self.encoding.len(), modulus).ok_or_else(|| {
                malformed(format!(
                    "{} bytes, expected {} words of {} bytes",
                    input.words.len(),
                    self.encoding.len(),
                    modulus.word_bytes()
                ))
            })?;
        if let Some((_, statement)) = &self.validity {
            let message = input
                .validity
                .as_ref()
                .ok_or_else(|| malformed("no input-validity proof".into()))?;
            let proof = ValidityProof::from_message(statement, message)
                .map_err(|e| malformed(e.to_string()))?;
            self.queued.push((sender.to_owned(), proof));
        }
        self.inputs.insert(sender.to_owned(), words);
        Ok(())
    }

    fn settle(&mut self) -> Vec<(String, SecAggError)> {
        let Some((context, statement)) = &self.validity else {
            return Vec::new();
        };
        let verified: Vec<(String, Result<Commitments, ValidityError>)> =
            std::mem::take(&mut self.queued)
                .into_par_iter()
                .map(|(sender, proof)| {
                    let binding = context.validity_binding(&sender);
                    let result = validity::verify(statement, &proof, &binding);
                    (sender, result)
                })
                .collect();
        let mut refused = Vec::new();
        for (sender, result) in verified {
            match result {
                Ok(commitments) => {
                    self.commitments.insert(sender, commitments);
                }
                Err(e) => {
                    self.inputs.remove(&sender);
                    refused.push((
                        sender.clone(),
                        SecAggError::Malformed {
                            from: sender,
                            what: "input-validity proof",
                            reason: e.to_string(),
                        },
                    ));
                }
            }
        }
        refused
    }

    fn blinded(&self) -> bool {
        self.validity.is_some()
    }

    fn finish(
        &mut self,
        contributors: &BTreeSet<String>,
        correction: Correction,
    ) -> Result<Vec<f64>, SecAggError> {
        let ring = self.encoding.modulus().mask();
        let mut sum = correction.words;
        for contributor in contributors {
            let words = self
                .inputs
                .get(contributor)
                .ok_or_else(|| SecAggError::NotExpected(contributor.clone()))?;
            for (total, word) in sum.iter_mut().zip(words) {
                *total = total.wrapping_add(*word) & ring;
            }
        }
        self.inputs.clear();
        if self.validity.is_some() {
            let mut committed = CommitmentSum::new(sum.len());
            for contributor in contributors {
                let commitments = self
                    .commitments
                    .get(contributor)
                    .ok_or_else(|| SecAggError::NotExpected(contributor.clone()))?;
                committed.add(commitments)?;
            }
            let blindings = correction.blindings.unwrap_or_default();
            committed
                .check(&sum, &blindings)
                .map_err(SecAggError::InputMismatch)?;
        }
        Ok(self.encoding.decode(&sum, contributors.len())?)
    }
}

/// What one participant's masked-input envelope said.
struct Masking {
    masked_with: BTreeSet<String>,
    statement: MaskingStatement,
    excluded: Vec<(String, String)>,
}

/// The coordinator's side of one aggregation: an I/O-free state machine that takes the
/// participants' signed stage messages ([`CoordinatorSession::receive`]), closes each stage
/// ([`CoordinatorSession::close_stage`]) and builds each participant's relay
/// ([`CoordinatorSession::relay_for`]). It checks every signature and never sees an input
/// unmasked: at unmask it learns only the survivors' sum, through `I` ([`PlainInputs`] for
/// vectors, the encrypted inputs of [`crate::he`] for fairness statistics).
pub struct CoordinatorSession<I: MaskedInputs = PlainInputs> {
    context: Context,
    trust: Trust,
    inputs: I,
    selected: BTreeSet<String>,
    threshold: usize,
    neighbours: usize,
    stage: SecAggStage,
    advertisements: BTreeMap<String, (MemberAdvertisement, PeerKeys)>,
    /// The plan share keys fixed, with its digest (`Context::plan_digest`), which shares and
    /// survivor-set signatures are bound to.
    plan: Option<(Plan, [u8; 32])>,
    /// Encrypted shares by recipient.
    inbox: BTreeMap<String, Vec<RelayedShare>>,
    /// Each dealer's signed commitments to the shares it dealt, by (holder, kind).
    commitments: BTreeMap<String, BTreeMap<(String, ShareKind), Vec<u8>>>,
    shared: BTreeSet<String>,
    /// Masked inputs received (and not refused when the stage closed), with their envelopes.
    masked: BTreeMap<String, Masking>,
    /// The survivor set announced at the consistency check.
    survivors: BTreeSet<String>,
    /// The survivors' signed survivor sets.
    signatures: BTreeMap<String, MemberAdvertisement>,
    unmasked: BTreeMap<String, UnmaskShares>,
    culprits: Vec<Culprit>,
    /// Every message `receive` accepted, in order, when recording (see [`Self::recording`]).
    record: Option<Vec<accord_proto::v1::RecordedMessage>>,
}

impl CoordinatorSession<PlainInputs> {
    /// An aggregation of plain vectors under `encoding` over `selected` with threshold
    /// `threshold` (0: the minimum, more than half) and `neighbours` per participant (0:
    /// [`default_neighbours`]).
    pub fn new(
        context: Context,
        trust: Trust,
        encoding: FixedPoint,
        selected: BTreeSet<String>,
        threshold: usize,
        neighbours: usize,
    ) -> Result<Self, SecAggError> {
        Self::with_inputs(
            context,
            trust,
            PlainInputs::new(encoding),
            selected,
            threshold,
            neighbours,
        )
    }
}

impl<I: MaskedInputs> CoordinatorSession<I> {
    /// An aggregation whose masked inputs go to `inputs`; see [`CoordinatorSession::new`].
    pub fn with_inputs(
        context: Context,
        trust: Trust,
        inputs: I,
        selected: BTreeSet<String>,
        threshold: usize,
        neighbours: usize,
    ) -> Result<Self, SecAggError> {
        let minimum = minimum_threshold(selected.len());
        let threshold = if threshold == 0 { minimum } else { threshold };
        if threshold < minimum {
            return Err(SecAggError::ThresholdTooLow {
                threshold,
                selected: selected.len(),
                minimum,
            });
        }
        Ok(Self {
            context,
            trust,
            inputs,
            selected,
            threshold,
            neighbours,
            stage: SecAggStage::Setup,
            advertisements: BTreeMap::new(),
            plan: None,
            inbox: BTreeMap::new(),
            commitments: BTreeMap::new(),
            shared: BTreeSet::new(),
            masked: BTreeMap::new(),
            survivors: BTreeSet::new(),
            signatures: BTreeMap::new(),
            unmasked: BTreeMap::new(),
            culprits: Vec::new(),
            record: None,
        })
    }

    /// Keeps a copy of every message [`Self::receive`] accepts, with its sender and certificate,
    /// in order: replayed into a fresh session with the same close-stage sequence, they give the
    /// same result, so anyone can check it (`crate::secagg::replay`).
    pub fn recording(mut self) -> Self {
        self.record = Some(Vec::new());
        self
    }

    /// The messages recorded so far (none unless [`Self::recording`]), leaving the record empty.
    pub fn take_record(&mut self) -> Vec<accord_proto::v1::RecordedMessage> {
        self.record.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The stage now open.
    pub fn stage(&self) -> SecAggStage {
        self.stage
    }

    /// t: the fewest participants a stage may close with (0 asked at creation gives the minimum,
    /// more than half of those selected).
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// The plan in force (threshold t, members, neighbour degree), once setup has closed.
    pub fn plan_in_force(&self) -> Option<&Plan> {
        self.plan.as_ref().map(|(plan, _)| plan)
    }

    /// The aggregation this session runs.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// Who is expected to send a message at the open stage.
    pub fn expected(&self) -> BTreeSet<String> {
        match self.stage {
            SecAggStage::Setup => self.selected.clone(),
            SecAggStage::ShareKeys => self.advertisements.keys().cloned().collect(),
            SecAggStage::MaskedInput => self.shared.clone(),
            SecAggStage::ConsistencyCheck => self.survivors.clone(),
            SecAggStage::Unmask => self.signatures.keys().cloned().collect(),
            _ => BTreeSet::new(),
        }
    }

    /// Who has sent its message for the open stage.
    pub fn received(&self) -> BTreeSet<String> {
        match self.stage {
            SecAggStage::Setup => self.advertisements.keys().cloned().collect(),
            SecAggStage::ShareKeys => self.shared.clone(),
            SecAggStage::MaskedInput => self.masked.keys().cloned().collect(),
            SecAggStage::ConsistencyCheck => self.signatures.keys().cloned().collect(),
            SecAggStage::Unmask => self.unmasked.keys().cloned().collect(),
            _ => BTreeSet::new(),
        }
    }

    /// The participants named so far for deviating from the protocol, in the order found.
    pub fn culprits(&self) -> &[Culprit] {
        &self.culprits
    }

    fn name(&mut self, participant: &str, reason: String, proven: bool) {
        let culprit = Culprit {
            participant: participant.to_owned(),
            stage: self.stage,
            reason,
            proven,
        };
        if !self.culprits.contains(&culprit) {
            self.culprits.push(culprit);
        }
    }

    fn plan(&self) -> Result<&Plan, SecAggError> {
        self.planned().map(|(plan, _)| plan)
    }

    fn planned(&self) -> Result<&(Plan, [u8; 32]), SecAggError> {
        self.plan.as_ref().ok_or(SecAggError::WrongStage {
            got: stage_label(self.stage),
            expected: "share keys",
        })
    }

    /// Takes `sender`'s message for the open stage. `certificate_der` is the certificate the
    /// sender authenticated with; its key must have signed the message. A refused message
    /// changes nothing, and its sender is named when the message itself shows the deviation.
    pub fn receive(
        &mut self,
        sender: &str,
        certificate_der: &[u8],
        message: SignedStageMessage,
    ) -> Result<(), SecAggError> {
        if !self.expected().contains(sender) {
            return Err(SecAggError::NotExpected(sender.to_owned()));
        }
        if self.received().contains(sender) {
            return Err(SecAggError::Duplicate(sender.to_owned()));
        }
        let key = self.trust.member_key(sender, certificate_der)?;
        verify(&message, &self.context, self.stage, sender, &key)?;
        // From here the message is the sender's own: a refusal names it.
        let copy = self.record.is_some().then(|| message.clone());
        let result = self.take(sender, &key, certificate_der, message);
        match &result {
            Err(e) => self.name(sender, e.to_string(), true),
            Ok(()) => {
                if let (Some(record), Some(message)) = (&mut self.record, copy) {
                    record.push(accord_proto::v1::RecordedMessage {
                        sender: sender.to_owned(),
                        certificate_der: certificate_der.to_vec(),
                        message: Some(message),
                    });
                }
            }
        }
        result
    }

    fn take(
        &mut self,
        sender: &str,
        key: &VerifyingKey,
        certificate_der: &[u8],
        message: SignedStageMessage,
    ) -> Result<(), SecAggError> {
        let malformed = |what: &'static str, reason: String| SecAggError::Malformed {
            from: sender.to_owned(),
            what,
            reason,
        };
        match self.stage {
            SecAggStage::Setup => {
                let keys = parse_keys(sender, &message.body)?;
                let reused = self.advertisements.values().any(|(_, k)| {
                    [k.cipher, k.mask]
                        .iter()
                        .any(|p| *p == keys.cipher || *p == keys.mask)
                });
                if reused {
                    return Err(malformed(
                        "key advertisement",
                        "reuses a public key another participant advertised".into(),
                    ));
                }
                let advertisement = MemberAdvertisement {
                    name: sender.to_owned(),
                    certificate_der: certificate_der.to_vec(),
                    message: Some(message),
                };
                self.advertisements
                    .insert(sender.to_owned(), (advertisement, keys));
            }
            SecAggStage::ShareKeys => {
                let shares = ShareKeys::decode(message.body.as_slice())
                    .map_err(|e| malformed("share keys", e.to_string()))?;
                let plan_digest = self.planned()?.1;
                let neighbours = self.plan()?.neighbours_of(sender);
                let mut recipients = BTreeSet::new();
                let mut commitments = BTreeMap::new();
                for share in &shares.shares {
                    if !neighbours.contains(&share.to) || !recipients.insert(share.to.clone()) {
                        return Err(malformed(
                            "share keys",
                            format!(
                                "a share for '{}', who is not a neighbour or got one already",
                                share.to
                            ),
                        ));
                    }
                    let digest = self.context.share_signing_digest(
                        &plan_digest,
                        sender,
                        &share.to,
                        &share.self_mask_share_commitment,
                        &share.key_share_commitment,
                        &share.nonce,
                        &share.ciphertext,
                    );
                    if share.nonce.len() != 12 || !verify_digest(key, &digest, &share.signature) {
                        return Err(malformed(
                            "share keys",
                            format!("the share for '{}' is not signed or has no nonce", share.to),
                        ));
                    }
                    for (kind, commitment) in [
                        (ShareKind::SelfMask, &share.self_mask_share_commitment),
                        (ShareKind::Key, &share.key_share_commitment),
                    ] {
                        commitments.insert((share.to.clone(), kind), commitment.clone());
                    }
                }
                if recipients.len() != neighbours.len() {
                    return Err(malformed(
                        "share keys",
                        format!(
                            "shares for {} of its {} neighbours",
                            recipients.len(),
                            neighbours.len()
                        ),
                    ));
                }
                for (kind, commitment) in [
                    (ShareKind::SelfMask, shares.own_self_mask_share_commitment),
                    (ShareKind::Key, shares.own_key_share_commitment),
                ] {
                    commitments.insert((sender.to_owned(), kind), commitment);
                }
                for share in shares.shares {
                    self.inbox
                        .entry(share.to.clone())
                        .or_default()
                        .push(RelayedShare {
                            from: sender.to_owned(),
                            share: Some(share),
                        });
                }
                self.commitments.insert(sender.to_owned(), commitments);
                self.shared.insert(sender.to_owned());
            }
            SecAggStage::MaskedInput => {
                let envelope = MaskedInputEnvelope::decode(message.body.as_slice())
                    .map_err(|e| malformed("masked input", e.to_string()))?;
                let neighbours = self.plan()?.neighbours_of(sender);
                let statement = envelope.masking.unwrap_or_default();
                let masked_with: BTreeSet<String> = statement.masked_with.iter().cloned().collect();
                let digest = self.context.masking_digest(sender, &statement.masked_with);
                if statement.participant != sender
                    || masked_with.len() != statement.masked_with.len()
                    || !verify_digest(key, &digest, &statement.signature)
                {
                    return Err(malformed(
                        "masked input",
                        "its masking statement is not its own signed list".into(),
                    ));
                }
                if let Some(other) = masked_with
                    .iter()
                    .find(|n| !neighbours.contains(*n) || !self.shared.contains(*n))
                {
                    return Err(malformed(
                        "masked input",
                        format!("masked with '{other}', who is not a neighbour that shared keys"),
                    ));
                }
                let excluded: Vec<(String, String)> = envelope
                    .excluded
                    .into_iter()
                    .map(|e| (e.participant, e.reason))
                    .collect();
                if let Some((other, _)) = excluded
                    .iter()
                    .find(|(n, _)| !neighbours.contains(n) || masked_with.contains(n))
                {
                    return Err(malformed(
                        "masked input",
                        format!("it excludes '{other}', who is not a neighbour or was masked with"),
                    ));
                }
                self.inputs
                    .add(sender, key, certificate_der, &envelope.input)?;
                self.masked.insert(
                    sender.to_owned(),
                    Masking {
                        masked_with,
                        statement,
                        excluded,
                    },
                );
            }
            SecAggStage::ConsistencyCheck => {
                let set = SurvivorSet::decode(message.body.as_slice())
                    .map_err(|e| malformed("survivor set", e.to_string()))?;
                if !set.survivors.iter().eq(self.survivors.iter()) {
                    return Err(malformed(
                        "survivor set",
                        "it signed another set than the one announced".into(),
                    ));
                }
                if set.plan_sha256 != self.planned()?.1 {
                    return Err(malformed(
                        "survivor set",
                        "it signed under another plan (threshold, degree or members) than the \
                         one announced"
                            .into(),
                    ));
                }
                self.signatures.insert(
                    sender.to_owned(),
                    MemberAdvertisement {
                        name: sender.to_owned(),
                        certificate_der: certificate_der.to_vec(),
                        message: Some(message),
                    },
                );
            }
            SecAggStage::Unmask => {
                let shares = UnmaskShares::decode(message.body.as_slice())
                    .map_err(|e| malformed("unmask shares", e.to_string()))?;
                let plan = self.plan()?;
                let point = plan.point(sender);
                let neighbours = plan.neighbours_of(sender);
                let dropped = self.dropped();
                for (revealed, kind) in [
                    (&shares.self_mask_shares, ShareKind::SelfMask),
                    (&shares.key_shares, ShareKind::Key),
                ] {
                    let mut owners = BTreeSet::new();
                    for share in revealed {
                        let owner = share.owner.as_str();
                        let allowed = match kind {
                            ShareKind::SelfMask => {
                                self.survivors.contains(owner)
                                    && (owner == sender || neighbours.contains(owner))
                            }
                            ShareKind::Key => dropped.contains(owner) && neighbours.contains(owner),
                        };
                        if !allowed || !owners.insert(owner) {
                            return Err(malformed(
                                "unmask shares",
                                format!(
                                    "a {} share of '{owner}', which was not asked for",
                                    kind.label()
                                ),
                            ));
                        }
                        if Some(Share::from_bytes(&share.share)?.x) != point {
                            return Err(malformed(
                                "unmask shares",
                                "a share of another holder".into(),
                            ));
                        }
                    }
                }
                self.unmasked.insert(sender.to_owned(), shares);
            }
            other => {
                return Err(SecAggError::WrongStage {
                    got: stage_label(message.stage()),
                    expected: stage_label(other),
                });
            }
        }
        Ok(())
    }

    /// Those who shared keys but are not among the survivors.
    fn dropped(&self) -> BTreeSet<String> {
        self.shared.difference(&self.survivors).cloned().collect()
    }

    fn require(&self, stage: &'static str, have: usize) -> Result<(), SecAggError> {
        if have < self.threshold {
            Err(SecAggError::BelowThreshold {
                stage,
                have,
                threshold: self.threshold,
            })
        } else {
            Ok(())
        }
    }

    /// The survivor set: the masked inputs that passed their checks, less anyone another of
    /// them left out of its masks (its pairwise masks would not cancel), then, repeatedly, less
    /// anyone none of whose masking neighbours survive (its self mask must not be removed:
    /// honest share holders would refuse, and rightly).
    fn survivor_set(&mut self) -> BTreeSet<String> {
        let mut accusations = Vec::new();
        for (accuser, masking) in &self.masked {
            for (accused, reason) in &masking.excluded {
                if self.masked.contains_key(accused) {
                    accusations.push((
                        accused.clone(),
                        format!("left out by '{accuser}': {reason}"),
                    ));
                }
            }
        }
        let mut survivors: BTreeSet<String> = self.masked.keys().cloned().collect();
        for (accused, reason) in accusations {
            survivors.remove(&accused);
            self.name(&accused, reason, false);
        }
        loop {
            let unprotected: Vec<String> = survivors
                .iter()
                .filter(|s| {
                    self.masked[*s]
                        .masked_with
                        .iter()
                        .all(|n| !survivors.contains(n))
                })
                .cloned()
                .collect();
            if unprotected.is_empty() {
                return survivors;
            }
            for s in unprotected {
                survivors.remove(&s);
            }
        }
    }

    /// Closes the open stage with the messages received so far (everyone's, or those that
    /// came before the deadline). Below the threshold the aggregation aborts with an error.
    pub fn close_stage(&mut self) -> Result<StageClosed<I::Sum>, SecAggError> {
        let next = match self.stage {
            SecAggStage::Setup => {
                self.require("setup", self.advertisements.len())?;
                let members: Vec<String> = self.advertisements.keys().cloned().collect();
                let degree = match self.neighbours {
                    0 => default_neighbours(members.len()),
                    k => k,
                };
                let plan = Plan::new(&self.context, &members, self.threshold, degree);
                let digest = self.context.plan_digest(&plan);
                self.plan = Some((plan, digest));
                SecAggStage::ShareKeys
            }
            SecAggStage::ShareKeys => {
                self.require("share keys", self.shared.len())?;
                SecAggStage::MaskedInput
            }
            SecAggStage::MaskedInput => {
                for (sender, reason) in self.inputs.settle() {
                    self.masked.remove(&sender);
                    self.name(&sender, reason.to_string(), true);
                }
                self.survivors = self.survivor_set();
                self.require("masked input", self.survivors.len())?;
                SecAggStage::ConsistencyCheck
            }
            SecAggStage::ConsistencyCheck => {
                self.require("consistency check", self.signatures.len())?;
                SecAggStage::Unmask
            }
            SecAggStage::Unmask => {
                self.require("unmask", self.unmasked.len())?;
                let correction = self.correction()?;
                let sum = self.inputs.finish(&self.survivors, correction)?;
                self.stage = SecAggStage::Done;
                return Ok(StageClosed::Done {
                    sum,
                    contributors: self.survivors.clone(),
                });
            }
            other => {
                return Err(SecAggError::WrongStage {
                    got: stage_label(other),
                    expected: "an open stage",
                });
            }
        };
        self.stage = next;
        Ok(StageClosed::Next(next))
    }

    /// Rebuilds `owner`'s secret of `kind` from the revealed shares that match the owner's
    /// signed commitments (a share that does not is skipped and its revealer named), and checks
    /// it against what the owner committed to in its advertisement.
    fn recover(
        &mut self,
        owner: &str,
        kind: ShareKind,
    ) -> Result<Zeroizing<[u8; 32]>, SecAggError> {
        let need = self.plan()?.share_threshold;
        let committed = self.commitments.get(owner).cloned().unwrap_or_default();
        let mut shares = Vec::new();
        let mut wrong = Vec::new();
        for (holder, revealed) in &self.unmasked {
            let list = match kind {
                ShareKind::SelfMask => &revealed.self_mask_shares,
                ShareKind::Key => &revealed.key_shares,
            };
            let Some(share) = list.iter().find(|r| r.owner == owner) else {
                continue;
            };
            let expected = committed.get(&(holder.clone(), kind));
            let commitment = self
                .context
                .share_commitment(owner, holder, kind, &share.share);
            match Share::from_bytes(&share.share) {
                Ok(parsed) if expected.is_some_and(|c| c.as_slice() == commitment) => {
                    shares.push(parsed)
                }
                _ => wrong.push(holder.clone()),
            }
        }
        for holder in wrong {
            self.name(
                &holder,
                format!(
                    "revealed a {} share of '{owner}' that does not match its signed commitment",
                    kind.label()
                ),
                true,
            );
        }
        if shares.len() < need {
            return Err(SecAggError::Unrecoverable {
                what: kind.secret(),
                owner: owner.to_owned(),
                have: shares.len(),
                need,
            });
        }
        let secret = Zeroizing::new(shamir::reconstruct(&shares, need).map_err(|_| {
            SecAggError::BadDealing {
                owner: owner.to_owned(),
                what: kind.secret(),
            }
        })?);
        let keys = self.advertisements.get(owner).map(|(_, k)| *k);
        let matches = keys.is_some_and(|keys| match kind {
            ShareKind::SelfMask => {
                keys.seed_commitment == self.context.seed_commitment(owner, &secret)
            }
            ShareKind::Key => PublicKey::from(&StaticSecret::from(*secret)) == keys.mask,
        });
        if !matches {
            let error = SecAggError::BadDealing {
                owner: owner.to_owned(),
                what: kind.secret(),
            };
            self.name(owner, error.to_string(), true);
            return Err(error);
        }
        Ok(secret)
    }

    /// What cancels the masks left in the survivors' sum: minus each survivor's self mask, and
    /// for each dropped participant, minus the pairwise mask of each survivor that says it
    /// masked with it; and, for blinded inputs, the survivors' blinding sum.
    fn correction(&mut self) -> Result<Correction, SecAggError> {
        let modulus = self.inputs.modulus();
        let mut words = vec![0; self.inputs.words()];
        let mut blindings = self
            .inputs
            .blinded()
            .then(|| vec![Scalar::ZERO; self.inputs.words()]);
        for survivor in self.survivors.clone() {
            let seed = self.recover(&survivor, ShareKind::SelfMask)?;
            mask::apply_mask(&mut words, &seed, true, modulus);
            if let Some(blindings) = &mut blindings {
                mask::add_blindings(blindings, &seed, false);
            }
        }
        for dropped in self.dropped() {
            let masked_by: Vec<String> = self
                .survivors
                .iter()
                .filter(|s| self.masked[*s].masked_with.contains(&dropped))
                .cloned()
                .collect();
            if masked_by.is_empty() {
                continue;
            }
            let secret = StaticSecret::from(*self.recover(&dropped, ShareKind::Key)?);
            for survivor in masked_by {
                let peer = &self.advertisements[&survivor].1;
                let seed = pairwise_seed(&self.context, &secret, &peer.mask, &dropped, &survivor);
                // The survivor added (or subtracted) this mask; undo it.
                let subtracted = subtracts(&survivor, &dropped);
                mask::apply_mask(&mut words, &seed, !subtracted, modulus);
                if let Some(blindings) = &mut blindings {
                    mask::add_blindings(blindings, &seed, subtracted);
                }
            }
        }
        Ok(Correction { words, blindings })
    }

    /// What `participant` needs for the open stage.
    pub fn relay_for(&self, participant: &str) -> SecAggRelay {
        let mut relay = SecAggRelay {
            header: Some(Header::new(&self.context.federation, self.context.round)),
            phase: self.context.phase as i32,
            stage: self.stage as i32,
            ..Default::default()
        };
        match self.stage {
            SecAggStage::ShareKeys => {
                relay.selected = self.selected.iter().cloned().collect();
                relay.threshold = self.threshold as u32;
                relay.neighbours = self.neighbours as u32;
                relay.members = self.advertisements.keys().cloned().collect();
                if let Some((plan, _)) = &self.plan {
                    relay.advertisements = plan
                        .neighbours_of(participant)
                        .iter()
                        .map(String::as_str)
                        .chain([participant])
                        .filter_map(|name| self.advertisements.get(name))
                        .map(|(a, _)| a.clone())
                        .collect();
                }
            }
            SecAggStage::MaskedInput => {
                relay.shares = self
                    .inbox
                    .get(participant)
                    .into_iter()
                    .flatten()
                    .filter(|s| self.shared.contains(&s.from))
                    .cloned()
                    .collect();
            }
            SecAggStage::ConsistencyCheck => {
                relay.survivors = self.survivors.iter().cloned().collect();
            }
            SecAggStage::Unmask => {
                relay.survivors = self.survivors.iter().cloned().collect();
                relay.survivor_signatures = self.signatures.values().cloned().collect();
                if let Some((plan, _)) = &self.plan {
                    relay.masking = plan
                        .neighbours_of(participant)
                        .iter()
                        .filter(|n| self.survivors.contains(*n))
                        .filter_map(|n| self.masked.get(n))
                        .map(|m| m.statement.clone())
                        .collect();
                }
            }
            _ => {}
        }
        relay
    }
}

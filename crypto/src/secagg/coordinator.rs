//! The coordinator's side of one secure aggregation, as a state machine: it takes the
//! participants' signed messages stage by stage, relays what each needs for the next stage, and
//! at the end reconstructs exactly the secrets that remove the masks: the self-mask seeds of the
//! survivors and the mask keys of those who dropped after sharing keys, never both for anyone.
//!
//! It keeps a running sum of masked inputs (not each input), and per participant only what its
//! neighbours need, so memory grows with n·k, not n². Where the masked inputs go is a
//! [`MaskedInputs`]: plain words summed in the ring ([`PlainInputs`]), or ciphertexts summed
//! homomorphically (`crate::he::EncryptedInputs`); the masks are removed the same way for both.

use super::encoding::{FixedPoint, Modulus};
use super::identity::{Trust, verify};
use super::participant::{PeerKeys, pairwise_seed, parse_keys, subtracts};
use super::shamir::{self, Share};
use super::{
    Context, Plan, SecAggError, default_neighbours, mask, minimum_threshold, stage_label,
    words_from_bytes,
};
use accord_proto::v1::{
    Header, MaskedInput, MemberAdvertisement, RelayedShare, SecAggRelay, SecAggStage, ShareKeys,
    SignedStageMessage, UnmaskShares,
};
use ed25519_dalek::VerifyingKey;
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// What closing a stage led to.
#[derive(Debug, Clone, PartialEq)]
pub enum StageClosed<S = Vec<f64>> {
    /// The next stage is open.
    Next(SecAggStage),
    /// The sum over `contributors` (the participants whose masked input arrived).
    Done {
        sum: S,
        contributors: BTreeSet<String>,
    },
}

/// Where the coordinator puts masked inputs: it checks each body and folds it into a running
/// sum, then removes the masks with the correction the unmask stage yields.
pub trait MaskedInputs: Send {
    /// The unmasked result.
    type Sum;
    /// Words per input.
    fn words(&self) -> usize;
    /// The ring the masks live in.
    fn modulus(&self) -> Modulus;
    /// Checks `sender`'s masked-input body (`key`: the verified key of its certificate
    /// `certificate_der`) and adds it; a refused body changes nothing.
    fn add(
        &mut self,
        sender: &str,
        key: &VerifyingKey,
        certificate_der: &[u8],
        body: &[u8],
    ) -> Result<(), SecAggError>;
    /// Checks what `add` only queued, when the masked-input stage closes (heavy checks, kept out
    /// of the path that receives messages); returns the senders refused, with why. Their
    /// inputs are left out and they count as dropped.
    fn settle(&mut self) -> Vec<(String, SecAggError)> {
        Vec::new()
    }
    /// The sum of the `summands` inputs once `correction` (words to add, in the ring) has
    /// cancelled every mask left in it.
    fn finish(&mut self, correction: Vec<u64>, summands: usize) -> Result<Self::Sum, SecAggError>;
}

/// Masked inputs as plain words in the ring of a fixed-point encoding.
pub struct PlainInputs {
    encoding: FixedPoint,
    sum: Vec<u64>,
}

impl PlainInputs {
    pub fn new(encoding: FixedPoint) -> Self {
        let sum = vec![0; encoding.len()];
        Self { encoding, sum }
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
        body: &[u8],
    ) -> Result<(), SecAggError> {
        let malformed = |reason: String| SecAggError::Malformed {
            from: sender.to_owned(),
            what: "masked input",
            reason,
        };
        let input = MaskedInput::decode(body).map_err(|e| malformed(e.to_string()))?;
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
        let ring = modulus.mask();
        for (total, word) in self.sum.iter_mut().zip(words) {
            *total = total.wrapping_add(word) & ring;
        }
        Ok(())
    }

    fn finish(&mut self, correction: Vec<u64>, summands: usize) -> Result<Vec<f64>, SecAggError> {
        let ring = self.encoding.modulus().mask();
        let mut sum = std::mem::take(&mut self.sum);
        for (total, c) in sum.iter_mut().zip(correction) {
            *total = total.wrapping_add(c) & ring;
        }
        Ok(self.encoding.decode(&sum, summands)?)
    }
}

pub struct CoordinatorSession<I: MaskedInputs = PlainInputs> {
    context: Context,
    trust: Trust,
    inputs: I,
    selected: BTreeSet<String>,
    threshold: usize,
    neighbours: usize,
    stage: SecAggStage,
    advertisements: BTreeMap<String, (MemberAdvertisement, PeerKeys)>,
    plan: Option<Plan>,
    /// Encrypted shares by recipient.
    inbox: BTreeMap<String, Vec<RelayedShare>>,
    shared: BTreeSet<String>,
    masked: BTreeSet<String>,
    /// Masked inputs refused when the stage closed, with why.
    rejected: Vec<(String, SecAggError)>,
    unmasked: BTreeMap<String, UnmaskShares>,
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
            shared: BTreeSet::new(),
            masked: BTreeSet::new(),
            rejected: Vec::new(),
            unmasked: BTreeMap::new(),
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

    pub fn stage(&self) -> SecAggStage {
        self.stage
    }

    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// Who is expected to send a message at the open stage.
    pub fn expected(&self) -> BTreeSet<String> {
        match self.stage {
            SecAggStage::Setup => self.selected.clone(),
            SecAggStage::ShareKeys => self.advertisements.keys().cloned().collect(),
            SecAggStage::MaskedInput => self.shared.clone(),
            SecAggStage::Unmask => self.masked.clone(),
            _ => BTreeSet::new(),
        }
    }

    /// Who has sent its message for the open stage.
    pub fn received(&self) -> BTreeSet<String> {
        match self.stage {
            SecAggStage::Setup => self.advertisements.keys().cloned().collect(),
            SecAggStage::ShareKeys => self.shared.clone(),
            SecAggStage::MaskedInput => self.masked.clone(),
            SecAggStage::Unmask => self.unmasked.keys().cloned().collect(),
            _ => BTreeSet::new(),
        }
    }

    /// Takes `sender`'s message for the open stage. `certificate_der` is the certificate the
    /// sender authenticated with; its key must have signed the message. A refused message
    /// changes nothing.
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
        let copy = self.record.is_some().then(|| message.clone());
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
                if reused || keys.cipher == keys.mask {
                    return Err(malformed(
                        "key advertisement",
                        "reuses an advertised public key".into(),
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
                let plan = self.plan.as_ref().expect("planned when setup closed");
                let shares = ShareKeys::decode(message.body.as_slice())
                    .map_err(|e| malformed("share keys", e.to_string()))?;
                let neighbours = plan.neighbours_of(sender);
                let neighbours = &neighbours;
                let mut recipients = BTreeSet::new();
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
                self.shared.insert(sender.to_owned());
            }
            SecAggStage::MaskedInput => {
                self.inputs
                    .add(sender, &key, certificate_der, &message.body)?;
                self.masked.insert(sender.to_owned());
            }
            SecAggStage::Unmask => {
                let shares = UnmaskShares::decode(message.body.as_slice())
                    .map_err(|e| malformed("unmask shares", e.to_string()))?;
                let plan = self.plan.as_ref().expect("planned when setup closed");
                let point = plan.point(sender);
                let dropped = self.dropped();
                for (revealed, owners) in [
                    (&shares.self_mask_shares, &self.masked),
                    (&shares.key_shares, &dropped),
                ] {
                    for share in revealed {
                        if !owners.contains(&share.owner) {
                            return Err(malformed(
                                "unmask shares",
                                format!("a share of '{}', which was not asked for", share.owner),
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
        if let (Some(record), Some(message)) = (&mut self.record, copy) {
            record.push(accord_proto::v1::RecordedMessage {
                sender: sender.to_owned(),
                certificate_der: certificate_der.to_vec(),
                message: Some(message),
            });
        }
        Ok(())
    }

    /// Masked inputs refused when their stage closed (see [`MaskedInputs::settle`]).
    pub fn rejected(&self) -> &[(String, SecAggError)] {
        &self.rejected
    }

    /// Those who shared keys but whose masked input did not arrive.
    fn dropped(&self) -> BTreeSet<String> {
        self.shared.difference(&self.masked).cloned().collect()
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
                self.plan = Some(Plan::new(&self.context, &members, self.threshold, degree));
                SecAggStage::ShareKeys
            }
            SecAggStage::ShareKeys => {
                self.require("share keys", self.shared.len())?;
                SecAggStage::MaskedInput
            }
            SecAggStage::MaskedInput => {
                for (sender, reason) in self.inputs.settle() {
                    self.masked.remove(&sender);
                    self.rejected.push((sender, reason));
                }
                self.require("masked input", self.masked.len())?;
                SecAggStage::Unmask
            }
            SecAggStage::Unmask => {
                self.require("unmask", self.unmasked.len())?;
                let sum = self.unmask()?;
                self.stage = SecAggStage::Done;
                return Ok(StageClosed::Done {
                    sum,
                    contributors: self.masked.clone(),
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

    /// Collects the revealed shares of `owner` and reconstructs its secret.
    fn recover(
        &self,
        owner: &str,
        what: &'static str,
        key_shares: bool,
    ) -> Result<Zeroizing<[u8; 32]>, SecAggError> {
        let plan = self.plan.as_ref().expect("planned");
        let shares: Vec<Share> = self
            .unmasked
            .values()
            .flat_map(|u| {
                if key_shares {
                    &u.key_shares
                } else {
                    &u.self_mask_shares
                }
            })
            .filter(|r| r.owner == owner)
            .map(|r| Share::from_bytes(&r.share))
            .collect::<Result<_, _>>()?;
        if shares.len() < plan.share_threshold {
            return Err(SecAggError::Unrecoverable {
                what,
                owner: owner.to_owned(),
                have: shares.len(),
                need: plan.share_threshold,
            });
        }
        Ok(Zeroizing::new(shamir::reconstruct(
            &shares,
            plan.share_threshold,
        )?))
    }

    /// Removes the survivors' self masks and the pairwise masks survivors share with dropped
    /// participants, and decodes the sum.
    fn unmask(&mut self) -> Result<I::Sum, SecAggError> {
        let plan = self.plan.as_ref().expect("planned");
        let modulus = self.inputs.modulus();
        let mut sum = vec![0; self.inputs.words()];
        for survivor in &self.masked {
            let seed = self.recover(survivor, "the self-mask seed", false)?;
            mask::apply_mask(&mut sum, &seed, true, modulus);
        }
        for dropped in self.dropped() {
            let secret = StaticSecret::from(*self.recover(&dropped, "the mask key", true)?);
            let keys = &self.advertisements[&dropped].1;
            if PublicKey::from(&secret) != keys.mask {
                return Err(SecAggError::Unrecoverable {
                    what: "a mask key matching its advertisement",
                    owner: dropped.clone(),
                    have: 0,
                    need: plan.share_threshold,
                });
            }
            for survivor in plan.neighbours_of(&dropped).intersection(&self.masked) {
                let survivor = survivor.as_str();
                let peer = &self.advertisements[survivor].1;
                let seed = pairwise_seed(&self.context, &secret, &peer.mask, &dropped, survivor);
                // The survivor added (or subtracted) this mask; undo it.
                mask::apply_mask(&mut sum, &seed, !subtracts(survivor, &dropped), modulus);
            }
        }
        self.inputs.finish(sum, self.masked.len())
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
                let plan = self.plan.as_ref().expect("planned when setup closed");
                relay.advertisements = plan
                    .neighbours_of(participant)
                    .iter()
                    .map(String::as_str)
                    .chain([participant])
                    .filter_map(|name| self.advertisements.get(name))
                    .map(|(a, _)| a.clone())
                    .collect();
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
            SecAggStage::Unmask => {
                relay.survivors = self.masked.iter().cloned().collect();
                relay.dropped = self.dropped().into_iter().collect();
            }
            _ => {}
        }
        relay
    }
}

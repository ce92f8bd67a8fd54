//! A participant's side of one secure aggregation, as a state machine: each method takes what
//! the coordinator relayed for a stage and returns the signed message to send back.
//!
//! It checks everything it is given: every advertisement's certificate and signature, that the
//! threshold is more than half of those selected, that shares come from its neighbours and
//! decrypt under keys only the two ends can derive, and, before revealing anything, that the
//! unmask request never asks for both secrets of one participant, across requests too.

use super::encoding::{FixedPoint, Modulus};
use super::identity::{Signer, Trust, verify};
use super::shamir::{self, Share};
use super::{
    Context, PAIRWISE_MASK, Plan, SHARE_ENCRYPTION, SecAggError, default_neighbours, mask,
    minimum_threshold,
};
use accord_proto::v1::{
    AdvertiseKeys, EncryptedShare, MaskedInput, RevealedShare, SecAggRelay, SecAggStage,
    ShareBundle, ShareKeys, SignedStageMessage, UnmaskShares,
};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// A neighbour's advertised public keys.
#[derive(Clone, Copy)]
pub(crate) struct PeerKeys {
    pub cipher: PublicKey,
    pub mask: PublicKey,
}

/// Parses an advertisement body into the two X25519 keys.
pub(crate) fn parse_keys(from: &str, body: &[u8]) -> Result<PeerKeys, SecAggError> {
    let malformed = |reason: String| SecAggError::Malformed {
        from: from.to_owned(),
        what: "key advertisement",
        reason,
    };
    let keys = AdvertiseKeys::decode(body).map_err(|e| malformed(e.to_string()))?;
    let key = |bytes: &[u8], which: &str| -> Result<PublicKey, SecAggError> {
        let array: [u8; 32] = bytes.try_into().map_err(|_| {
            malformed(format!(
                "{which} key has {} bytes, expected 32",
                bytes.len()
            ))
        })?;
        Ok(PublicKey::from(array))
    };
    Ok(PeerKeys {
        cipher: key(&keys.cipher_public_key, "cipher")?,
        mask: key(&keys.mask_public_key, "mask")?,
    })
}

/// The seed of the pairwise mask between `a` and `b` from an X25519 agreement.
pub(crate) fn pairwise_seed(
    context: &Context,
    secret: &StaticSecret,
    public: &PublicKey,
    a: &str,
    b: &str,
) -> Zeroizing<[u8; 32]> {
    let shared = Zeroizing::new(secret.diffie_hellman(public).to_bytes());
    Zeroizing::new(context.derive(&shared, PAIRWISE_MASK, a, b))
}

/// `me` adds the pairwise mask with `other` if its name sorts first, subtracts it otherwise.
pub(crate) fn subtracts(me: &str, other: &str) -> bool {
    me > other
}

struct Neighbourhood {
    threshold: usize,
    points: BTreeMap<String, u32>,
}

pub struct ParticipantSession {
    signer: Arc<Signer>,
    trust: Trust,
    context: Context,
    done: SecAggStage,
    cipher_secret: StaticSecret,
    mask_secret: StaticSecret,
    self_seed: Zeroizing<[u8; 32]>,
    /// From share keys on: t and this participant's neighbours with
    /// their evaluation points (its own included): nothing about the rest of the graph.
    neighbourhood: Option<Neighbourhood>,
    peers: BTreeMap<String, PeerKeys>,
    /// Shares this participant holds: its own and its neighbours' (self-mask seed, mask key).
    held: BTreeMap<String, (Share, Share)>,
    /// Neighbours whose shares arrived: the pairwise masks this participant applies.
    masked_with: BTreeSet<String>,
    answered: Option<(BTreeSet<String>, BTreeSet<String>)>,
}

fn random32(rng: &mut (impl rand::CryptoRng + ?Sized)) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    bytes
}

impl ParticipantSession {
    /// Starts an aggregation: fresh keys and self-mask seed; returns the signed advertisement.
    pub fn start(
        signer: Arc<Signer>,
        trust: Trust,
        context: Context,
        rng: &mut (impl rand::CryptoRng + ?Sized),
    ) -> (Self, SignedStageMessage) {
        let cipher_secret = StaticSecret::from(random32(rng));
        let mask_secret = StaticSecret::from(random32(rng));
        let body = AdvertiseKeys {
            cipher_public_key: PublicKey::from(&cipher_secret).as_bytes().to_vec(),
            mask_public_key: PublicKey::from(&mask_secret).as_bytes().to_vec(),
        }
        .encode_to_vec();
        let message = signer.sign(&context, SecAggStage::Setup, body);
        let session = Self {
            signer,
            trust,
            context,
            done: SecAggStage::Setup,
            cipher_secret,
            mask_secret,
            self_seed: Zeroizing::new(random32(rng)),
            neighbourhood: None,
            peers: BTreeMap::new(),
            held: BTreeMap::new(),
            masked_with: BTreeSet::new(),
            answered: None,
        };
        (session, message)
    }

    pub fn name(&self) -> &str {
        self.signer.name()
    }

    /// The aggregation this session takes part in.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// The stage this participant completed last.
    pub fn completed(&self) -> SecAggStage {
        self.done
    }

    fn expect_stage(
        &self,
        relay: &SecAggRelay,
        stage: SecAggStage,
        after: SecAggStage,
    ) -> Result<(), SecAggError> {
        if relay.stage() != stage || self.done != after {
            return Err(SecAggError::WrongStage {
                got: super::stage_label(relay.stage()),
                expected: super::stage_label(stage),
            });
        }
        Ok(())
    }

    /// Share keys: checks every advertisement, then sends each neighbour, encrypted, its
    /// Shamir shares of this participant's self-mask seed and mask key.
    pub fn share_keys(
        &mut self,
        relay: &SecAggRelay,
        rng: &mut (impl rand::CryptoRng + ?Sized),
    ) -> Result<SignedStageMessage, SecAggError> {
        self.expect_stage(relay, SecAggStage::ShareKeys, SecAggStage::Setup)?;
        let selected: BTreeSet<&str> = relay.selected.iter().map(String::as_str).collect();
        let threshold = relay.threshold as usize;
        let minimum = minimum_threshold(selected.len());
        if threshold < minimum || !selected.contains(self.name()) {
            return Err(SecAggError::ThresholdTooLow {
                threshold,
                selected: selected.len(),
                minimum,
            });
        }
        let members: BTreeSet<String> = relay.members.iter().cloned().collect();
        if let Some(stranger) = members.iter().find(|m| !selected.contains(m.as_str())) {
            return Err(SecAggError::NotExpected(stranger.clone()));
        }
        if members.len() < threshold {
            return Err(SecAggError::BelowThreshold {
                stage: "setup",
                have: members.len(),
                threshold,
            });
        }
        let members: Vec<String> = members.into_iter().collect();
        let degree = match relay.neighbours as usize {
            0 => default_neighbours(members.len()),
            k => k,
        };
        let plan = Plan::new(&self.context, &members, threshold, degree);
        let me = self.name().to_owned();
        let neighbours = plan.neighbours_of(&me);
        let mut needed: BTreeSet<&str> = neighbours.iter().map(String::as_str).collect();
        needed.insert(&me);
        let mut peers = BTreeMap::new();
        let mut seen_keys = BTreeSet::new();
        for advertisement in &relay.advertisements {
            let name = advertisement.name.as_str();
            if !needed.contains(name) {
                return Err(SecAggError::NotExpected(name.to_owned()));
            }
            let key = self
                .trust
                .member_key(name, &advertisement.certificate_der)?;
            let message = advertisement.message.clone().unwrap_or_default();
            verify(&message, &self.context, SecAggStage::Setup, name, &key)?;
            let keys = parse_keys(name, &message.body)?;
            if !seen_keys.insert(*keys.cipher.as_bytes())
                || !seen_keys.insert(*keys.mask.as_bytes())
            {
                return Err(SecAggError::Malformed {
                    from: name.to_owned(),
                    what: "key advertisement",
                    reason: "a public key another participant advertised too".into(),
                });
            }
            if peers.insert(name.to_owned(), keys).is_some() {
                return Err(SecAggError::Duplicate(name.to_owned()));
            }
        }
        if let Some(missing) = needed.iter().find(|n| !peers.contains_key(**n)) {
            return Err(SecAggError::Malformed {
                from: "coordinator".into(),
                what: "key list",
                reason: format!("no advertisement of neighbour '{missing}'"),
            });
        }
        let mine = peers.get(&me).ok_or_else(|| SecAggError::Malformed {
            from: "coordinator".into(),
            what: "key list",
            reason: "this participant's own advertisement is missing".into(),
        })?;
        if mine.cipher != PublicKey::from(&self.cipher_secret)
            || mine.mask != PublicKey::from(&self.mask_secret)
        {
            return Err(SecAggError::Malformed {
                from: "coordinator".into(),
                what: "key list",
                reason: "this participant's own keys were replaced".into(),
            });
        }
        let mut holders: Vec<&str> = neighbours.iter().map(String::as_str).collect();
        holders.push(&me);
        let points: Vec<u32> = holders
            .iter()
            .map(|h| plan.point(h).expect("a member"))
            .collect();
        let seed_shares = shamir::split(&self.self_seed, plan.share_threshold, &points, rng)?;
        let key_bytes = Zeroizing::new(self.mask_secret.to_bytes());
        let key_shares = shamir::split(&key_bytes, plan.share_threshold, &points, rng)?;
        let mut shares = Vec::new();
        for ((holder, seed_share), key_share) in holders.iter().zip(seed_shares).zip(key_shares) {
            if *holder == me {
                self.held.insert(me.clone(), (seed_share, key_share));
                continue;
            }
            let bundle = Zeroizing::new(
                ShareBundle {
                    from: me.clone(),
                    to: (*holder).to_owned(),
                    self_mask_share: seed_share.to_bytes().to_vec(),
                    key_share: key_share.to_bytes().to_vec(),
                }
                .encode_to_vec(),
            );
            let mut nonce = [0u8; 12];
            rng.fill_bytes(&mut nonce);
            let cipher = self.share_cipher(&peers[*holder], holder);
            let ciphertext = cipher
                .encrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: &bundle,
                        aad: &self.context.share_aad(&me, holder),
                    },
                )
                .expect("ChaCha20-Poly1305 encrypts any share bundle");
            shares.push(EncryptedShare {
                to: (*holder).to_owned(),
                nonce: nonce.to_vec(),
                ciphertext,
            });
        }
        self.peers = peers;
        self.neighbourhood = Some(Neighbourhood {
            threshold: plan.threshold,
            points: holders
                .iter()
                .zip(&points)
                .map(|(h, p)| ((*h).to_owned(), *p))
                .collect(),
        });
        self.done = SecAggStage::ShareKeys;
        let body = ShareKeys { shares }.encode_to_vec();
        Ok(self
            .signer
            .sign(&self.context, SecAggStage::ShareKeys, body))
    }

    fn share_cipher(&self, peer: &PeerKeys, other: &str) -> ChaCha20Poly1305 {
        let shared = Zeroizing::new(self.cipher_secret.diffie_hellman(&peer.cipher).to_bytes());
        let key =
            Zeroizing::new(
                self.context
                    .derive(&shared, SHARE_ENCRYPTION, self.name(), other),
            );
        ChaCha20Poly1305::new(key.as_ref().into())
    }

    /// Masked input: decrypts the shares addressed here, then sends the encoded `values` plus
    /// the self mask plus a pairwise mask per neighbour whose shares arrived. Returns the signed
    /// message and how many values were clipped.
    pub fn masked_input(
        &mut self,
        relay: &SecAggRelay,
        values: &[f64],
        encoding: &FixedPoint,
    ) -> Result<(SignedStageMessage, usize), SecAggError> {
        let encoded = encoding.encode(values)?;
        let modulus = encoding.modulus();
        let message = self.masked_input_with(relay, encoded.words, modulus, |words, _| {
            Ok(MaskedInput {
                words: super::words_to_bytes(words, modulus),
            }
            .encode_to_vec())
        })?;
        Ok((message, encoded.clipped))
    }

    /// Masked input of words already in the ring of `modulus`: masks them as
    /// [`Self::masked_input`] does, then `seal` turns the masked words into the signed body
    /// (e.g. encrypts them; it may sign with this participant's key too).
    pub fn masked_input_with(
        &mut self,
        relay: &SecAggRelay,
        mut words: Vec<u64>,
        modulus: Modulus,
        seal: impl FnOnce(&[u64], &Signer) -> Result<Vec<u8>, SecAggError>,
    ) -> Result<SignedStageMessage, SecAggError> {
        self.expect_stage(relay, SecAggStage::MaskedInput, SecAggStage::ShareKeys)?;
        let local = self.neighbourhood.as_ref().expect("planned at share keys");
        let me = self.name().to_owned();
        let my_point = local.points.get(&me).copied();
        let mut received = BTreeMap::new();
        for relayed in &relay.shares {
            let from = relayed.from.as_str();
            let malformed = |reason: &str| SecAggError::Malformed {
                from: from.to_owned(),
                what: "encrypted share",
                reason: reason.to_owned(),
            };
            if from == me || !local.points.contains_key(from) {
                return Err(malformed(
                    "the sender is not a neighbour of this participant",
                ));
            }
            let share = relayed.share.clone().unwrap_or_default();
            if share.to != me || share.nonce.len() != 12 {
                return Err(malformed(
                    "addressed to another participant or without a 12-byte nonce",
                ));
            }
            let plaintext = Zeroizing::new(
                self.share_cipher(&self.peers[from], from)
                    .decrypt(
                        Nonce::from_slice(&share.nonce),
                        Payload {
                            msg: &share.ciphertext,
                            aad: &self.context.share_aad(from, &me),
                        },
                    )
                    .map_err(|_| {
                        malformed("does not decrypt: forged, altered or for another round")
                    })?,
            );
            let bundle =
                ShareBundle::decode(plaintext.as_slice()).map_err(|e| malformed(&e.to_string()))?;
            if bundle.from != from || bundle.to != me {
                return Err(malformed("the bundle names other parties"));
            }
            let seed = Share::from_bytes(&bundle.self_mask_share)?;
            let key = Share::from_bytes(&bundle.key_share)?;
            if Some(seed.x) != my_point || Some(key.x) != my_point {
                return Err(malformed("shares for another evaluation point"));
            }
            if received.insert(from.to_owned(), (seed, key)).is_some() {
                return Err(SecAggError::Duplicate(from.to_owned()));
            }
        }
        mask::apply_mask(&mut words, &self.self_seed, false, modulus);
        for other in received.keys() {
            let seed = pairwise_seed(
                &self.context,
                &self.mask_secret,
                &self.peers[other].mask,
                &me,
                other,
            );
            mask::apply_mask(&mut words, &seed, subtracts(&me, other), modulus);
        }
        self.masked_with = received.keys().cloned().collect();
        self.held.extend(received);
        let body = seal(&words, &self.signer)?;
        self.done = SecAggStage::MaskedInput;
        Ok(self
            .signer
            .sign(&self.context, SecAggStage::MaskedInput, body))
    }

    /// Unmask: reveals self-mask shares of the survivors and key shares of the dropped, after
    /// checking no one is in both sets, now or against an earlier request.
    pub fn unmask(&mut self, relay: &SecAggRelay) -> Result<SignedStageMessage, SecAggError> {
        if relay.stage() != super::SecAggStage::Unmask {
            return Err(SecAggError::WrongStage {
                got: super::stage_label(relay.stage()),
                expected: "unmask",
            });
        }
        let survivors: BTreeSet<String> = relay.survivors.iter().cloned().collect();
        let dropped: BTreeSet<String> = relay.dropped.iter().cloned().collect();
        if let Some(both) = survivors.intersection(&dropped).next() {
            return Err(SecAggError::BothShares(both.clone()));
        }
        if let Some((earlier_survivors, earlier_dropped)) = &self.answered {
            let flipped = survivors
                .intersection(earlier_dropped)
                .chain(dropped.intersection(earlier_survivors))
                .next();
            if let Some(name) = flipped {
                return Err(SecAggError::BothShares(name.clone()));
            }
            return Err(SecAggError::InconsistentUnmask(
                "this participant already answered an unmask request for this aggregation".into(),
            ));
        }
        if self.done != SecAggStage::MaskedInput {
            return Err(SecAggError::WrongStage {
                got: "unmask",
                expected: super::stage_label(self.done),
            });
        }
        let local = self.neighbourhood.as_ref().expect("planned at share keys");
        if !survivors.contains(self.name()) {
            return Err(SecAggError::InconsistentUnmask(
                "the request says this participant's own masked input is missing".into(),
            ));
        }
        if survivors.len() < local.threshold {
            return Err(SecAggError::BelowThreshold {
                stage: "unmask",
                have: survivors.len(),
                threshold: local.threshold,
            });
        }
        let reveal =
            |names: &BTreeSet<String>, pick: fn(&(Share, Share)) -> &Share| -> Vec<RevealedShare> {
                names
                    .iter()
                    .filter_map(|owner| {
                        self.held.get(owner).map(|held| RevealedShare {
                            owner: owner.clone(),
                            share: pick(held).to_bytes().to_vec(),
                        })
                    })
                    .collect()
            };
        let body = UnmaskShares {
            self_mask_shares: reveal(&survivors, |held| &held.0),
            key_shares: reveal(&dropped, |held| &held.1),
        }
        .encode_to_vec();
        self.answered = Some((survivors, dropped));
        self.done = SecAggStage::Unmask;
        Ok(self.signer.sign(&self.context, SecAggStage::Unmask, body))
    }

    /// The neighbours this participant masked with (for tests and logs).
    pub fn masked_with(&self) -> &BTreeSet<String> {
        &self.masked_with
    }
}

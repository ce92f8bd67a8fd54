//! A participant's side of one secure aggregation, as a state machine: each method takes what
//! the coordinator relayed for a stage and returns the signed message to send back.
//!
//! The coordinator is not trusted (Bonawitz et al., CCS 2017, the malicious-server variant;
//! Bell et al., CCS 2020, for the SecAgg+ graph). The participant derives the threshold and the
//! neighbour graph itself from the federation definition and refuses a relay that disagrees or
//! falls below its own minimums; it checks every advertisement's certificate and signature,
//! every share's decryption, signature and commitment, and leaves out (and names) a neighbour
//! whose shares fail. It sends its masked input only if it holds valid shares from enough
//! neighbours that its threshold can be met; it signs exactly one survivor set, and before
//! revealing anything it checks that at least t survivors signed that same set. It reveals a
//! neighbour's self-mask share only if that neighbour's own signed statement shows a pairwise
//! mask with another survivor, and never both secrets of anyone.
//!
//! A refusal is an error naming the peer and the reason; the caller logs it and sits the
//! phase out. Nothing a peer sends can make this code panic.

use super::encoding::{FixedPoint, Modulus};
use super::identity::{Signer, Trust, verify, verify_digest};
use super::shamir::{self, Share};
use super::validity::{self, Statement};
use super::{
    Context, PAIRWISE_MASK, Plan, Requirements, SHARE_ENCRYPTION, SecAggError, ShareKind,
    default_neighbours, mask, minimum_threshold, stage_label,
};
use accord_proto::v1::{
    AdvertiseKeys, EncryptedShare, Exclusion, MaskedInput, MaskedInputEnvelope, MaskingStatement,
    RevealedShare, SecAggRelay, SecAggStage, ShareBundle, ShareKeys, SignedStageMessage,
    SurvivorSet, UnmaskShares,
};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::VerifyingKey;
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// A member's advertised keys and commitment.
#[derive(Clone, Copy)]
pub(crate) struct PeerKeys {
    pub cipher: PublicKey,
    pub mask: PublicKey,
    pub seed_commitment: [u8; 32],
}

/// Parses an advertisement body into the two X25519 keys and the seed commitment, refusing a
/// key of the wrong length or of small order (an all-zero Diffie-Hellman output with any
/// secret, which x25519-dalek's documentation says to check with `was_contributory`).
pub(crate) fn parse_keys(from: &str, body: &[u8]) -> Result<PeerKeys, SecAggError> {
    let malformed = |reason: String| SecAggError::Malformed {
        from: from.to_owned(),
        what: "key advertisement",
        reason,
    };
    let keys = AdvertiseKeys::decode(body).map_err(|e| malformed(e.to_string()))?;
    let probe = StaticSecret::from(random32(&mut rand::rng()));
    let key = |bytes: &[u8], which: &str| -> Result<PublicKey, SecAggError> {
        let array: [u8; 32] = bytes.try_into().map_err(|_| {
            malformed(format!(
                "{which} key has {} bytes, expected 32",
                bytes.len()
            ))
        })?;
        let key = PublicKey::from(array);
        if !probe.diffie_hellman(&key).was_contributory() {
            return Err(malformed(format!("{which} key is a small-order point")));
        }
        Ok(key)
    };
    let seed_commitment: [u8; 32] = keys
        .self_mask_seed_commitment
        .as_slice()
        .try_into()
        .map_err(|_| malformed("no 32-byte commitment to the self-mask seed".into()))?;
    let parsed = PeerKeys {
        cipher: key(&keys.cipher_public_key, "cipher")?,
        mask: key(&keys.mask_public_key, "mask")?,
        seed_commitment,
    };
    if parsed.cipher == parsed.mask {
        return Err(malformed("the cipher and mask keys are the same".into()));
    }
    Ok(parsed)
}

/// The seed of the pairwise mask between `a` and `b` from an X25519 agreement (HKDF-SHA256
/// bound to the aggregation and the pair); whoever holds either end's mask secret derives it.
pub fn pairwise_seed(
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
pub fn subtracts(me: &str, other: &str) -> bool {
    me > other
}

/// The seeds a participant's masks come from, for anything that must mirror the masks exactly
/// (commitment blindings): the self-mask seed (added) and one seed per neighbour masked with,
/// with whether its mask is subtracted.
pub struct MaskSeeds {
    /// The self-mask seed `b`.
    pub self_seed: Zeroizing<[u8; 32]>,
    /// Per neighbour masked with, its pairwise seed and whether its mask is subtracted.
    pub pairwise: Vec<(Zeroizing<[u8; 32]>, bool)>,
}

impl MaskSeeds {
    /// The blinding factors that mirror these masks (the self seed's added, each pairwise
    /// seed's with its mask's sign), for commitments to `len` words: what the coordinator's sum
    /// of blindings over the survivors cancels, as the masks cancel in the sum of words.
    pub fn blindings(&self, len: usize) -> Vec<Scalar> {
        let mut blindings = vec![Scalar::ZERO; len];
        mask::add_blindings(&mut blindings, &self.self_seed, false);
        for (seed, subtract) in &self.pairwise {
            mask::add_blindings(&mut blindings, seed, *subtract);
        }
        blindings
    }
}

/// What sealing a masked input is given: the masked words, the unmasked ones (for a proof
/// about the input), the seeds of the masks, and the participant's signer.
pub struct SealInput<'a> {
    /// The masked words to send.
    pub masked: &'a [u64],
    /// The encoded input before masking, which the validity proof speaks about.
    pub unmasked: &'a [u64],
    /// The seeds of the masks added, so commitments mirror them.
    pub seeds: &'a MaskSeeds,
    /// The participant's signing identity.
    pub signer: &'a Signer,
}

/// A masked-input message and the neighbours left out of the masks, with why.
pub struct Masked {
    /// The signed masked-input message.
    pub message: SignedStageMessage,
    /// The neighbours left out of the masks (name, why): their shares did not arrive, came twice
    /// or did not open.
    pub excluded: Vec<(String, String)>,
}

/// What share keys fixed: t, the share threshold, the members, and this participant's
/// neighbours (with their keys and identities) and share holders' evaluation points.
struct Neighbourhood {
    /// [`Context::plan_digest`] of the plan share keys fixed.
    plan: [u8; 32],
    threshold: usize,
    share_threshold: usize,
    members: BTreeSet<String>,
    points: BTreeMap<String, u32>,
    peers: BTreeMap<String, (PeerKeys, VerifyingKey)>,
}

/// A participant's side of one aggregation: an I/O-free state machine that makes each signed
/// stage message from the coordinator's relay of the previous stage. It derives the neighbour
/// graph and threshold itself from the plan (refusing too few neighbours or a threshold below
/// its [`Requirements`]), checks every relayed signature and commitment, and at unmask reveals
/// for anyone at most one of its two secrets, after a consistency check over the signed survivor
/// set. Every refusal is a [`SecAggError`] naming the reason.
pub struct ParticipantSession {
    signer: Arc<Signer>,
    trust: Trust,
    context: Context,
    requirements: Requirements,
    done: SecAggStage,
    cipher_secret: StaticSecret,
    mask_secret: StaticSecret,
    self_seed: Zeroizing<[u8; 32]>,
    /// From share keys on: nothing about the graph beyond this participant's neighbours.
    neighbourhood: Option<Neighbourhood>,
    /// Shares this participant holds: its own and its valid neighbours' (seed, mask key).
    held: BTreeMap<String, (Share, Share)>,
    /// Neighbours whose pairwise masks this participant applied.
    masked_with: BTreeSet<String>,
    /// The survivor set this participant signed (it signs one per aggregation).
    survivors: Option<BTreeSet<String>>,
    /// Self-mask shares it withheld at unmask, by owner, with why.
    withheld: Vec<(String, String)>,
}

fn random32(rng: &mut (impl rand::CryptoRng + ?Sized)) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    bytes
}

fn from_coordinator(what: &'static str, reason: String) -> SecAggError {
    SecAggError::Malformed {
        from: "coordinator".into(),
        what,
        reason,
    }
}

impl ParticipantSession {
    /// Starts an aggregation under `requirements`: fresh keys and self-mask seed; returns the
    /// signed advertisement (the keys and a commitment to the seed).
    pub fn start(
        signer: Arc<Signer>,
        trust: Trust,
        context: Context,
        requirements: Requirements,
        rng: &mut (impl rand::CryptoRng + ?Sized),
    ) -> (Self, SignedStageMessage) {
        let cipher_secret = StaticSecret::from(random32(rng));
        let mask_secret = StaticSecret::from(random32(rng));
        let self_seed = Zeroizing::new(random32(rng));
        let body = AdvertiseKeys {
            cipher_public_key: PublicKey::from(&cipher_secret).as_bytes().to_vec(),
            mask_public_key: PublicKey::from(&mask_secret).as_bytes().to_vec(),
            self_mask_seed_commitment: context.seed_commitment(signer.name(), &self_seed).to_vec(),
        }
        .encode_to_vec();
        let message = signer.sign(&context, SecAggStage::Setup, body);
        let session = Self {
            signer,
            trust,
            context,
            requirements,
            done: SecAggStage::Setup,
            cipher_secret,
            mask_secret,
            self_seed,
            neighbourhood: None,
            held: BTreeMap::new(),
            masked_with: BTreeSet::new(),
            survivors: None,
            withheld: Vec::new(),
        };
        (session, message)
    }

    /// The participant's name, from its certificate.
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
                got: stage_label(relay.stage()),
                expected: stage_label(stage),
            });
        }
        Ok(())
    }

    /// [`Context::plan_digest`] of the plan share keys fixed (None before share keys): what
    /// this participant's shares and survivor-set signature are bound to.
    pub fn plan_digest(&self) -> Option<[u8; 32]> {
        self.neighbourhood.as_ref().map(|local| local.plan)
    }

    fn neighbourhood(&self) -> Result<&Neighbourhood, SecAggError> {
        self.neighbourhood.as_ref().ok_or(SecAggError::WrongStage {
            got: stage_label(self.done),
            expected: "share keys",
        })
    }

    /// Checks the relayed parameters against the definition's and this participant's own
    /// minimums; returns the plan every honest party derives from them.
    fn plan(&self, relay: &SecAggRelay) -> Result<Plan, SecAggError> {
        let me = self.name();
        let selected: BTreeSet<&str> = relay.selected.iter().map(String::as_str).collect();
        let members: BTreeSet<&str> = relay.members.iter().map(String::as_str).collect();
        if !members.contains(me) || !selected.contains(me) {
            return Err(from_coordinator(
                "key list",
                "this participant is not among the members it announced".into(),
            ));
        }
        if let Some(stranger) = members.iter().find(|m| !selected.contains(**m)) {
            return Err(SecAggError::NotExpected((*stranger).to_owned()));
        }
        let req = &self.requirements;
        let minimum = minimum_threshold(selected.len());
        let threshold = if req.threshold == 0 {
            minimum
        } else {
            req.threshold
        };
        if relay.threshold as usize != threshold {
            return Err(SecAggError::ParameterMismatch {
                what: "the threshold t",
                relayed: relay.threshold as usize,
                derived: threshold,
            });
        }
        if relay.neighbours as usize != req.neighbours {
            return Err(SecAggError::ParameterMismatch {
                what: "the configured neighbour count k",
                relayed: relay.neighbours as usize,
                derived: req.neighbours,
            });
        }
        if threshold < minimum {
            return Err(SecAggError::ThresholdTooLow {
                threshold,
                selected: selected.len(),
                minimum,
            });
        }
        if threshold < req.min_threshold {
            return Err(SecAggError::BelowRequirement {
                what: "the threshold t",
                got: threshold,
                minimum: req.min_threshold,
            });
        }
        let least = threshold.max(req.min_members);
        if members.len() < least {
            return Err(SecAggError::BelowRequirement {
                what: "the number of members",
                got: members.len(),
                minimum: least,
            });
        }
        let members: Vec<String> = members.into_iter().map(str::to_owned).collect();
        let degree = match req.neighbours {
            0 => default_neighbours(members.len()),
            k => k,
        };
        Ok(Plan::new(&self.context, &members, threshold, degree))
    }

    /// Share keys: checks the parameters and every neighbour's advertisement, then sends each
    /// neighbour, encrypted and with a signed commitment, its Shamir shares of this
    /// participant's self-mask seed and mask key.
    pub fn share_keys(
        &mut self,
        relay: &SecAggRelay,
        rng: &mut (impl rand::CryptoRng + ?Sized),
    ) -> Result<SignedStageMessage, SecAggError> {
        self.expect_stage(relay, SecAggStage::ShareKeys, SecAggStage::Setup)?;
        let plan = self.plan(relay)?;
        let plan_digest = self.context.plan_digest(&plan);
        let me = self.name().to_owned();
        let neighbours = plan.neighbours_of(&me);
        let mut peers = BTreeMap::new();
        let mut seen_keys = BTreeSet::new();
        for advertisement in &relay.advertisements {
            let name = advertisement.name.as_str();
            if name != me && !neighbours.contains(name) {
                return Err(SecAggError::NotExpected(name.to_owned()));
            }
            let key = self
                .trust
                .member_key(name, &advertisement.certificate_der)?;
            let message = advertisement
                .message
                .as_ref()
                .ok_or_else(|| SecAggError::Unsigned(name.to_owned()))?;
            verify(message, &self.context, SecAggStage::Setup, name, &key)?;
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
            if peers.insert(name.to_owned(), (keys, key)).is_some() {
                return Err(SecAggError::Duplicate(name.to_owned()));
            }
        }
        let mut holders: Vec<String> = neighbours.iter().cloned().collect();
        holders.push(me.clone());
        if let Some(missing) = holders.iter().find(|n| !peers.contains_key(*n)) {
            return Err(from_coordinator(
                "key list",
                format!("no advertisement of '{missing}'"),
            ));
        }
        let mine = peers.remove(&me).map(|(keys, _)| keys);
        if mine.is_none_or(|mine| {
            mine.cipher != PublicKey::from(&self.cipher_secret)
                || mine.mask != PublicKey::from(&self.mask_secret)
                || mine.seed_commitment != self.context.seed_commitment(&me, &self.self_seed)
        }) {
            return Err(from_coordinator(
                "key list",
                "this participant's own advertisement was replaced".into(),
            ));
        }
        let mut points = BTreeMap::new();
        for holder in &holders {
            let point = plan
                .point(holder)
                .ok_or_else(|| SecAggError::NotExpected(holder.clone()))?;
            points.insert(holder.clone(), point);
        }
        let point_list: Vec<u32> = holders.iter().map(|h| points[h]).collect();
        let seed_shares = shamir::split(&self.self_seed, plan.share_threshold, &point_list, rng)?;
        let key_bytes = Zeroizing::new(self.mask_secret.to_bytes());
        let key_shares = shamir::split(&key_bytes, plan.share_threshold, &point_list, rng)?;
        let mut shares = Vec::new();
        let mut own = (Vec::new(), Vec::new());
        for ((holder, seed_share), key_share) in holders.iter().zip(seed_shares).zip(key_shares) {
            let (seed_bytes, key_bytes) = (seed_share.to_bytes(), key_share.to_bytes());
            let seed_commitment =
                self.context
                    .share_commitment(&me, holder, ShareKind::SelfMask, &seed_bytes);
            let key_commitment =
                self.context
                    .share_commitment(&me, holder, ShareKind::Key, &key_bytes);
            if *holder == me {
                own = (seed_commitment.to_vec(), key_commitment.to_vec());
                self.held.insert(me.clone(), (seed_share, key_share));
                continue;
            }
            let bundle = Zeroizing::new(
                ShareBundle {
                    from: me.clone(),
                    to: holder.clone(),
                    self_mask_share: seed_bytes.to_vec(),
                    key_share: key_bytes.to_vec(),
                }
                .encode_to_vec(),
            );
            let mut nonce = [0u8; 12];
            rng.fill_bytes(&mut nonce);
            let ciphertext = self
                .share_cipher(&peers[holder].0, holder)
                .encrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: &bundle,
                        aad: &self.context.share_aad(&me, holder, &plan_digest),
                    },
                )
                .map_err(|_| SecAggError::Malformed {
                    from: me.clone(),
                    what: "share bundle",
                    reason: "ChaCha20-Poly1305 refused to encrypt it".into(),
                })?;
            let signature = self.signer.sign_digest(&self.context.share_signing_digest(
                &plan_digest,
                &me,
                holder,
                &seed_commitment,
                &key_commitment,
                &nonce,
                &ciphertext,
            ));
            shares.push(EncryptedShare {
                to: holder.clone(),
                nonce: nonce.to_vec(),
                ciphertext,
                self_mask_share_commitment: seed_commitment.to_vec(),
                key_share_commitment: key_commitment.to_vec(),
                signature,
            });
        }
        self.neighbourhood = Some(Neighbourhood {
            plan: plan_digest,
            threshold: plan.threshold,
            share_threshold: plan.share_threshold,
            members: plan.members.iter().cloned().collect(),
            points,
            peers,
        });
        self.done = SecAggStage::ShareKeys;
        let body = ShareKeys {
            shares,
            own_self_mask_share_commitment: own.0,
            own_key_share_commitment: own.1,
        }
        .encode_to_vec();
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

    /// Opens and checks one relayed share from neighbour `from`: its signature, decryption,
    /// addressing, evaluation points and commitment.
    fn open_share(&self, from: &str, share: &EncryptedShare) -> Result<(Share, Share), String> {
        let local = self.neighbourhood().map_err(|e| e.to_string())?;
        let me = self.name();
        let (keys, identity) = local
            .peers
            .get(from)
            .ok_or_else(|| "not a neighbour of this participant".to_owned())?;
        if share.to != me {
            return Err("addressed to another participant".into());
        }
        if share.nonce.len() != 12 {
            return Err(format!("a nonce of {} bytes, not 12", share.nonce.len()));
        }
        let digest = self.context.share_signing_digest(
            &local.plan,
            from,
            me,
            &share.self_mask_share_commitment,
            &share.key_share_commitment,
            &share.nonce,
            &share.ciphertext,
        );
        if !verify_digest(identity, &digest, &share.signature) {
            return Err("its signature does not verify: forged or altered".into());
        }
        let plaintext = Zeroizing::new(
            self.share_cipher(keys, from)
                .decrypt(
                    Nonce::from_slice(&share.nonce),
                    Payload {
                        msg: &share.ciphertext,
                        aad: &self.context.share_aad(from, me, &local.plan),
                    },
                )
                .map_err(|_| "does not decrypt: forged, altered or for another round".to_owned())?,
        );
        let bundle = ShareBundle::decode(plaintext.as_slice())
            .map_err(|e| format!("not a share bundle: {e}"))?;
        if bundle.from != from || bundle.to != me {
            return Err("the bundle names other parties".into());
        }
        let seed = Share::from_bytes(&bundle.self_mask_share).map_err(|e| e.to_string())?;
        let key = Share::from_bytes(&bundle.key_share).map_err(|e| e.to_string())?;
        let my_point = local.points.get(me).copied();
        if Some(seed.x) != my_point || Some(key.x) != my_point {
            return Err("shares for another evaluation point".into());
        }
        let seed_commitment =
            self.context
                .share_commitment(from, me, ShareKind::SelfMask, &bundle.self_mask_share);
        let key_commitment =
            self.context
                .share_commitment(from, me, ShareKind::Key, &bundle.key_share);
        if share.self_mask_share_commitment != seed_commitment
            || share.key_share_commitment != key_commitment
        {
            return Err("the shares do not match their signed commitments".into());
        }
        Ok((seed, key))
    }

    /// Masked input: opens the shares addressed here, leaving out (and naming) any neighbour
    /// whose shares fail a check, then sends the encoded `values` plus the self mask plus a
    /// pairwise mask per valid neighbour, with (when the aggregation has a `statement`) a proof
    /// that the unmasked input meets it ([`super::validity`]). Returns the message and how many
    /// values were clipped.
    pub fn masked_input(
        &mut self,
        relay: &SecAggRelay,
        values: &[f64],
        encoding: &FixedPoint,
        statement: Option<&Statement>,
    ) -> Result<(Masked, usize), SecAggError> {
        let encoded = encoding.encode(values)?;
        let modulus = encoding.modulus();
        let binding = self.context.validity_binding(self.name());
        let masked = self.masked_input_with(relay, encoded.words, modulus, |sealed| {
            let validity = statement
                .map(|statement| {
                    let blindings = sealed.seeds.blindings(sealed.unmasked.len());
                    validity::prove(statement, sealed.unmasked, &blindings, &binding)
                })
                .transpose()?
                .map(|proof| proof.to_message());
            Ok(MaskedInput {
                words: super::words_to_bytes(sealed.masked, modulus),
                validity,
            }
            .encode_to_vec())
        })?;
        Ok((masked, encoded.clipped))
    }

    /// Masked input of words already in the ring of `modulus`: masks them as
    /// [`Self::masked_input`] does, then `seal` turns the masked words into the sealed input
    /// (e.g. encrypts them, or adds a proof about the unmasked words).
    ///
    /// Refuses ([`SecAggError::TooFewShares`]) unless valid shares arrived from at least the
    /// share threshold minus one neighbours: with its own share that is enough holders for its
    /// secrets to be rebuilt, and enough pairwise masks that a coordinator that withheld or
    /// spoiled shares cannot leave this input under its self mask alone.
    pub fn masked_input_with(
        &mut self,
        relay: &SecAggRelay,
        mut words: Vec<u64>,
        modulus: Modulus,
        seal: impl FnOnce(SealInput<'_>) -> Result<Vec<u8>, SecAggError>,
    ) -> Result<Masked, SecAggError> {
        self.expect_stage(relay, SecAggStage::MaskedInput, SecAggStage::ShareKeys)?;
        let local = self.neighbourhood()?;
        let me = self.name().to_owned();
        let mut opened = BTreeMap::new();
        let mut excluded: BTreeMap<String, String> = BTreeMap::new();
        for relayed in &relay.shares {
            let from = relayed.from.as_str();
            if !local.peers.contains_key(from) {
                return Err(from_coordinator(
                    "share relay",
                    format!("a share from '{from}', who is not a neighbour of this participant"),
                ));
            }
            if opened.contains_key(from) || excluded.contains_key(from) {
                opened.remove(from);
                excluded.insert(from.to_owned(), "more than one share bundle".into());
                continue;
            }
            let result = relayed
                .share
                .as_ref()
                .ok_or_else(|| "an empty relay entry".to_owned())
                .and_then(|share| self.open_share(from, share));
            match result {
                Ok(shares) => {
                    opened.insert(from.to_owned(), shares);
                }
                Err(reason) => {
                    excluded.insert(from.to_owned(), reason);
                }
            }
        }
        for neighbour in local.peers.keys() {
            if !opened.contains_key(neighbour) && !excluded.contains_key(neighbour) {
                excluded.insert(neighbour.clone(), "its shares did not arrive".into());
            }
        }
        let excluded: Vec<(String, String)> = excluded.into_iter().collect();
        let need = local.share_threshold.saturating_sub(1);
        if opened.len() < need {
            return Err(SecAggError::TooFewShares {
                have: opened.len(),
                need,
                excluded,
            });
        }
        let unmasked = words.clone();
        mask::apply_mask(&mut words, &self.self_seed, false, modulus);
        let mut pairwise = Vec::with_capacity(opened.len());
        for other in opened.keys() {
            let seed = pairwise_seed(
                &self.context,
                &self.mask_secret,
                &local.peers[other].0.mask,
                &me,
                other,
            );
            let subtract = subtracts(&me, other);
            mask::apply_mask(&mut words, &seed, subtract, modulus);
            pairwise.push((seed, subtract));
        }
        let seeds = MaskSeeds {
            self_seed: self.self_seed.clone(),
            pairwise,
        };
        let input = seal(SealInput {
            masked: &words,
            unmasked: &unmasked,
            seeds: &seeds,
            signer: &self.signer,
        })?;
        let masked_with: Vec<String> = opened.keys().cloned().collect();
        let masking = MaskingStatement {
            participant: me.clone(),
            signature: self
                .signer
                .sign_digest(&self.context.masking_digest(&me, &masked_with)),
            masked_with,
        };
        let body = MaskedInputEnvelope {
            masking: Some(masking),
            excluded: excluded
                .iter()
                .map(|(participant, reason)| Exclusion {
                    participant: participant.clone(),
                    reason: reason.clone(),
                })
                .collect(),
            input,
        }
        .encode_to_vec();
        self.masked_with = opened.keys().cloned().collect();
        self.held.extend(opened);
        self.done = SecAggStage::MaskedInput;
        Ok(Masked {
            message: self
                .signer
                .sign(&self.context, SecAggStage::MaskedInput, body),
            excluded,
        })
    }

    /// Consistency check: signs the announced survivor set, once, if it includes this
    /// participant (whose masked input was sent), lies within the members and reaches t.
    pub fn consistency_check(
        &mut self,
        relay: &SecAggRelay,
    ) -> Result<SignedStageMessage, SecAggError> {
        self.expect_stage(
            relay,
            SecAggStage::ConsistencyCheck,
            SecAggStage::MaskedInput,
        )?;
        let local = self.neighbourhood()?;
        let survivors: BTreeSet<String> = relay.survivors.iter().cloned().collect();
        if survivors.len() != relay.survivors.len() {
            return Err(SecAggError::SurvivorSet(
                "it names a participant twice".into(),
            ));
        }
        if !survivors.contains(self.name()) {
            return Err(SecAggError::SurvivorSet(
                "it leaves out this participant, whose masked input was sent".into(),
            ));
        }
        if let Some(stranger) = survivors.iter().find(|s| !local.members.contains(*s)) {
            return Err(SecAggError::SurvivorSet(format!(
                "'{stranger}' is not a member of this aggregation"
            )));
        }
        if survivors.len() < local.threshold {
            return Err(SecAggError::BelowThreshold {
                stage: "consistency check",
                have: survivors.len(),
                threshold: local.threshold,
            });
        }
        if !self.masked_with.iter().any(|n| survivors.contains(n)) {
            return Err(SecAggError::SurvivorSet(
                "it names none of the neighbours this participant masked with, so revealing its \
                 self mask would expose its input"
                    .into(),
            ));
        }
        let body = SurvivorSet {
            survivors: survivors.iter().cloned().collect(),
            plan_sha256: local.plan.to_vec(),
        }
        .encode_to_vec();
        self.survivors = Some(survivors);
        self.done = SecAggStage::ConsistencyCheck;
        Ok(self
            .signer
            .sign(&self.context, SecAggStage::ConsistencyCheck, body))
    }

    /// Counts the valid signatures of distinct survivors on `survivors` (the set this
    /// participant signed): certificate from the consortium CA (a neighbour's key as checked
    /// at share keys), Ed25519 over the same set. Stops at `enough`: t signatures settle the
    /// check, and each costs up to two Ed25519 verifications (certificate and message), so
    /// checking all n would double the work.
    fn count_signatures(
        &self,
        relay: &SecAggRelay,
        survivors: &BTreeSet<String>,
        enough: usize,
    ) -> usize {
        let Ok(local) = self.neighbourhood() else {
            return 0;
        };
        let body = SurvivorSet {
            survivors: survivors.iter().cloned().collect(),
            plan_sha256: local.plan.to_vec(),
        }
        .encode_to_vec();
        let mut signers = BTreeSet::new();
        for signed in &relay.survivor_signatures {
            if signers.len() >= enough {
                break;
            }
            let name = signed.name.as_str();
            if !survivors.contains(name) || signers.contains(name) {
                continue;
            }
            let Some(message) = &signed.message else {
                continue;
            };
            if message.body != body {
                continue;
            }
            // A neighbour's key was checked against the CA when it advertised: reuse it.
            let known = (self.neighbourhood.as_ref())
                .and_then(|local| local.peers.get(name))
                .map(|(_, key)| *key);
            let valid = known
                .map_or_else(|| self.trust.member_key(name, &signed.certificate_der), Ok)
                .and_then(|key| {
                    verify(
                        message,
                        &self.context,
                        SecAggStage::ConsistencyCheck,
                        name,
                        &key,
                    )
                })
                .is_ok();
            if valid {
                signers.insert(name);
            }
        }
        signers.len()
    }

    /// Whether `owner`'s self-mask share may be revealed: its own signed masking statement
    /// names at least one neighbour among the survivors, whose pairwise mask then stays on its
    /// input whatever else is revealed.
    fn keeps_a_mask(&self, owner: &str, relay: &SecAggRelay, survivors: &BTreeSet<String>) -> bool {
        if owner == self.name() {
            return self.masked_with.iter().any(|n| survivors.contains(n));
        }
        let Ok(local) = self.neighbourhood() else {
            return false;
        };
        let Some((_, identity)) = local.peers.get(owner) else {
            return false;
        };
        relay
            .masking
            .iter()
            .filter(|m| m.participant == owner)
            .any(|m| {
                verify_digest(
                    identity,
                    &self.context.masking_digest(owner, &m.masked_with),
                    &m.signature,
                ) && m.masked_with.iter().any(|n| survivors.contains(n))
            })
    }

    /// Unmask: after checking that at least t survivors signed the same survivor set this
    /// participant signed, reveals the self-mask shares of the survivors it holds shares of
    /// (each only if that survivor keeps a pairwise mask with another survivor) and the mask-key
    /// shares of the neighbours it holds shares of that did not survive. What counts as
    /// dropped is derived here from the signed set, never taken from the coordinator.
    pub fn unmask(&mut self, relay: &SecAggRelay) -> Result<SignedStageMessage, SecAggError> {
        if relay.stage() != SecAggStage::Unmask {
            return Err(SecAggError::WrongStage {
                got: stage_label(relay.stage()),
                expected: "unmask",
            });
        }
        if self.done == SecAggStage::Unmask {
            return Err(SecAggError::InconsistentUnmask(
                "this participant already answered an unmask request for this aggregation".into(),
            ));
        }
        let Some(signed) = self.survivors.clone() else {
            return Err(SecAggError::WrongStage {
                got: "unmask",
                expected: stage_label(self.done),
            });
        };
        let survivors: BTreeSet<String> = relay.survivors.iter().cloned().collect();
        if survivors != signed {
            return Err(SecAggError::SurvivorSet(
                "the unmask request names another survivor set than the one this participant signed"
                    .into(),
            ));
        }
        let threshold = self.neighbourhood()?.threshold;
        let valid = self.count_signatures(relay, &survivors, threshold);
        if valid < threshold {
            return Err(SecAggError::TooFewSignatures { valid, threshold });
        }
        let mut self_mask_shares = Vec::new();
        let mut key_shares = Vec::new();
        for (owner, (seed, key)) in &self.held {
            if survivors.contains(owner) {
                if self.keeps_a_mask(owner, relay, &survivors) {
                    self_mask_shares.push(RevealedShare {
                        owner: owner.clone(),
                        share: seed.to_bytes().to_vec(),
                    });
                } else {
                    self.withheld.push((
                        owner.clone(),
                        "no signed statement shows a pairwise mask with another survivor".into(),
                    ));
                }
            } else {
                key_shares.push(RevealedShare {
                    owner: owner.clone(),
                    share: key.to_bytes().to_vec(),
                });
            }
        }
        let body = UnmaskShares {
            self_mask_shares,
            key_shares,
        }
        .encode_to_vec();
        self.done = SecAggStage::Unmask;
        Ok(self.signer.sign(&self.context, SecAggStage::Unmask, body))
    }

    /// The neighbours this participant masked with (for tests and logs).
    pub fn masked_with(&self) -> &BTreeSet<String> {
        &self.masked_with
    }

    /// The survivors whose self-mask shares this participant withheld at unmask, with why:
    /// revealing them could have exposed their inputs (for logs and tests).
    pub fn withheld(&self) -> &[(String, String)] {
        &self.withheld
    }
}

//! A coordinator that deviates on purpose, built on the real state machines: honest
//! `ParticipantSession`s, the real `CoordinatorSession` for everything the attacker does not
//! change, and an attacker that sees every message participants send and tries to rebuild one
//! participant's (the victim's) input from them. In each attack the victim (or the share holders
//! protecting it) refuses, saying why, and the rebuild fails; the same rebuild code recovers the
//! survivors' sum from an honest aggregation, so its failures are the protocol's doing.

use accord_crypto::pki::{ConsortiumCa, Role};
use accord_crypto::secagg::shamir::{self, Share};
use accord_crypto::secagg::{
    Context, Plan, Requirements, SecAggError, default_neighbours, mask, words_from_bytes,
};
use accord_crypto::secagg::{CoordinatorSession, StageClosed};
use accord_crypto::secagg::{FixedPoint, Modulus, Segment};
use accord_crypto::secagg::{ParticipantSession, pairwise_seed, subtracts};
use accord_crypto::secagg::{Signer, Trust};
use accord_proto::v1::{
    AdvertiseKeys, MaskedInput, MaskedInputEnvelope, Phase, SecAggRelay, SecAggStage,
    SignedStageMessage, UnmaskShares,
};
use prost::Message;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
use x25519_dalek::{PublicKey, StaticSecret};

struct Consortium {
    trust: Trust,
    signers: Vec<Arc<Signer>>,
    _dir: tempfile::TempDir,
}

fn consortium() -> &'static Consortium {
    static CONSORTIUM: OnceLock<Consortium> = OnceLock::new();
    CONSORTIUM.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let ca = ConsortiumCa::init(dir.path(), "Adversarial").unwrap();
        let signers = (0..12)
            .map(|i| {
                let files = ca
                    .issue(dir.path(), &format!("org-{i:02}"), Role::Participant, &[])
                    .unwrap();
                Arc::new(Signer::load(&files.cert, &files.key).unwrap())
            })
            .collect();
        Consortium {
            trust: Trust::load(&ca.ca_cert_path()).unwrap(),
            signers,
            _dir: dir,
        }
    })
}

fn context() -> Context {
    Context {
        federation: "consortium".into(),
        round: 4,
        phase: Phase::Standardize,
    }
}

fn encoding(n: usize) -> FixedPoint {
    FixedPoint::new(
        Modulus::Z32,
        vec![Segment {
            name: "sums".into(),
            len: 6,
            bound: 1000.0,
            integer: true,
        }],
        0,
        n,
    )
    .unwrap()
}

/// A participant's input: six distinct whole numbers, so a rebuilt input is recognisable.
fn input(i: usize) -> Vec<f64> {
    (0..6).map(|j| (100 + 37 * i + 11 * j) as f64).collect()
}

/// One aggregation among `n` participants, the coordinator's side in the attacker's hands.
struct Attack {
    n: usize,
    neighbours: usize,
    threshold: usize,
    sessions: BTreeMap<String, ParticipantSession>,
    coordinator: CoordinatorSession,
    /// Every message a participant sent, by stage and sender.
    seen: BTreeMap<(SecAggStage, String), SignedStageMessage>,
    /// Why each participant refused, by name.
    refusals: BTreeMap<String, SecAggError>,
    rng: ChaCha20Rng,
}

impl Attack {
    /// Everyone advertises keys; the setup stage is closed.
    fn new(n: usize, neighbours: usize) -> Self {
        Self::with_threshold(n, neighbours, n / 2 + 1)
    }

    /// [`Attack::new`] with threshold `threshold`, in the definition and the coordinator alike.
    fn with_threshold(n: usize, neighbours: usize, threshold: usize) -> Self {
        let c = consortium();
        let selected: BTreeSet<String> = names(n).into_iter().collect();
        let coordinator = CoordinatorSession::new(
            context(),
            c.trust.clone(),
            encoding(n),
            selected,
            threshold,
            neighbours,
        )
        .unwrap();
        let mut attack = Self {
            n,
            neighbours,
            threshold,
            sessions: BTreeMap::new(),
            coordinator,
            seen: BTreeMap::new(),
            refusals: BTreeMap::new(),
            rng: ChaCha20Rng::seed_from_u64(n as u64),
        };
        let requirements = Requirements {
            neighbours,
            threshold,
            ..Requirements::default()
        };
        for signer in &c.signers[..n] {
            let (session, message) = ParticipantSession::start(
                signer.clone(),
                c.trust.clone(),
                context(),
                requirements,
                &mut attack.rng,
            );
            attack.deliver(signer.name(), SecAggStage::Setup, message, true);
            attack.sessions.insert(signer.name().to_owned(), session);
        }
        attack.coordinator.close_stage().unwrap();
        attack
    }

    /// Records a participant's message; hands it to the honest coordinator if `forward`.
    fn deliver(
        &mut self,
        name: &str,
        stage: SecAggStage,
        message: SignedStageMessage,
        forward: bool,
    ) {
        self.seen.insert((stage, name.to_owned()), message.clone());
        if forward {
            self.coordinator
                .receive(name, certificate(name), message)
                .unwrap();
        }
    }

    /// Each participant answers `relay(name)` at `stage`; refusals are recorded. Messages go
    /// to the honest coordinator when `forward`.
    fn stage(
        &mut self,
        stage: SecAggStage,
        who: &[String],
        forward: bool,
        relay: &dyn Fn(&CoordinatorSession, &str) -> SecAggRelay,
    ) {
        for name in who {
            let relay = relay(&self.coordinator, name);
            let session = self.sessions.get_mut(name).unwrap();
            let answered = match stage {
                SecAggStage::ShareKeys => session.share_keys(&relay, &mut self.rng),
                SecAggStage::MaskedInput => session
                    .masked_input(&relay, &input(index(name)), &encoding(self.n), None)
                    .map(|(masked, _)| masked.message),
                SecAggStage::ConsistencyCheck => session.consistency_check(&relay),
                SecAggStage::Unmask => session.unmask(&relay),
                other => panic!("no participant message at {other:?}"),
            };
            match answered {
                Ok(message) => self.deliver(name, stage, message, forward),
                Err(reason) => {
                    self.refusals.insert(name.clone(), reason);
                }
            }
        }
    }

    /// Share keys with the honest relays, closed.
    fn share_keys(&mut self) {
        let everyone = names(self.n);
        self.stage(SecAggStage::ShareKeys, &everyone, true, &honest);
        self.coordinator.close_stage().unwrap();
    }

    fn plan(&self) -> Plan {
        let degree = match self.neighbours {
            0 => default_neighbours(self.n),
            k => k,
        };
        Plan::new(&context(), &names(self.n), self.threshold, degree)
    }

    fn envelope(&self, name: &str) -> Option<MaskedInputEnvelope> {
        let message = self
            .seen
            .get(&(SecAggStage::MaskedInput, name.to_owned()))?;
        Some(MaskedInputEnvelope::decode(message.body.as_slice()).unwrap())
    }

    fn advertisement(&self, name: &str) -> AdvertiseKeys {
        let message = &self.seen[&(SecAggStage::Setup, name.to_owned())];
        AdvertiseKeys::decode(message.body.as_slice()).unwrap()
    }

    /// The unmask relay for `name` built from what the attacker holds: the survivor set it
    /// chose, every survivor-set signature it collected, and every masking statement it saw.
    fn unmask_relay(&self, name: &str, survivors: &BTreeSet<String>) -> SecAggRelay {
        let mut relay = honest(&self.coordinator, name);
        relay.stage = SecAggStage::Unmask as i32;
        relay.survivors = survivors.iter().cloned().collect();
        relay.survivor_signatures = self
            .seen
            .iter()
            .filter(|((stage, _), _)| *stage == SecAggStage::ConsistencyCheck)
            .map(
                |((_, signer), message)| accord_proto::v1::MemberAdvertisement {
                    name: signer.clone(),
                    certificate_der: certificate(signer).to_vec(),
                    message: Some(message.clone()),
                },
            )
            .collect();
        relay.masking = names(self.n)
            .iter()
            .filter_map(|n| self.envelope(n).and_then(|e| e.masking))
            .collect();
        relay
    }

    /// Rebuilds one of `owner`'s secrets from every share revealed to the attacker; None if
    /// too few were revealed.
    fn rebuild(&self, owner: &str, self_mask: bool) -> Option<[u8; 32]> {
        let shares: Vec<Share> = self
            .seen
            .iter()
            .filter(|((stage, _), _)| *stage == SecAggStage::Unmask)
            .flat_map(|(_, message)| {
                let revealed = UnmaskShares::decode(message.body.as_slice()).unwrap();
                if self_mask {
                    revealed.self_mask_shares
                } else {
                    revealed.key_shares
                }
            })
            .filter(|r| r.owner == owner)
            .map(|r| Share::from_bytes(&r.share).unwrap())
            .collect();
        let need = self.plan().share_threshold;
        (shares.len() >= need).then(|| shamir::reconstruct(&shares, need).unwrap())
    }

    /// Tries to rebuild the sum of the inputs of `targets` from everything the attacker saw:
    /// their masked inputs, minus their self masks, minus their pairwise masks with anyone
    /// outside `targets` (pairs inside cancel). The decoded sum, or why it cannot.
    fn try_rebuild(&self, targets: &BTreeSet<String>) -> Result<Vec<f64>, String> {
        let encoding = encoding(self.n);
        let mut sum = vec![0u64; encoding.len()];
        let ring = encoding.modulus().mask();
        for target in targets {
            let envelope = self
                .envelope(target)
                .ok_or_else(|| format!("'{target}' sent no masked input"))?;
            let words = MaskedInput::decode(envelope.input.as_slice())
                .unwrap()
                .words;
            let words = words_from_bytes(&words, encoding.len(), encoding.modulus()).unwrap();
            for (total, word) in sum.iter_mut().zip(words) {
                *total = total.wrapping_add(word) & ring;
            }
            let seed = self
                .rebuild(target, true)
                .ok_or_else(|| format!("too few shares of the self-mask seed of '{target}'"))?;
            mask::apply_mask(&mut sum, &seed, true, encoding.modulus());
            let masked_with = envelope.masking.unwrap().masked_with;
            for other in masked_with.iter().filter(|o| !targets.contains(*o)) {
                let key = self.rebuild(other, false).ok_or_else(|| {
                    format!("too few shares of the mask key of '{other}', masked with '{target}'")
                })?;
                let secret = StaticSecret::from(key);
                let public = PublicKey::from(
                    <[u8; 32]>::try_from(self.advertisement(target).mask_public_key.as_slice())
                        .unwrap(),
                );
                let seed = pairwise_seed(&context(), &secret, &public, other, target);
                mask::apply_mask(
                    &mut sum,
                    &seed,
                    !subtracts(target, other),
                    encoding.modulus(),
                );
            }
        }
        encoding
            .decode(&sum, targets.len())
            .map_err(|e| format!("the rebuilt words do not decode: {e}"))
    }
}

fn names(n: usize) -> Vec<String> {
    consortium().signers[..n]
        .iter()
        .map(|s| s.name().to_owned())
        .collect()
}

fn index(name: &str) -> usize {
    name.trim_start_matches("org-").parse().unwrap()
}

fn certificate(name: &str) -> &'static [u8] {
    consortium().signers[index(name)].certificate_der()
}

/// The honest relay for everyone but `victim`, whose relay lacks the shares of `cut`.
fn withholding(
    victim: &str,
    cut: BTreeSet<String>,
) -> impl Fn(&CoordinatorSession, &str) -> SecAggRelay {
    let victim = victim.to_owned();
    move |c: &CoordinatorSession, name: &str| {
        let mut relay = c.relay_for(name);
        if name == victim {
            relay.shares.retain(|s| !cut.contains(&s.from));
        }
        relay
    }
}

fn honest(coordinator: &CoordinatorSession, name: &str) -> SecAggRelay {
    coordinator.relay_for(name)
}

fn sum_of(targets: &BTreeSet<String>) -> Vec<f64> {
    let mut sum = vec![0.0; 6];
    for t in targets {
        for (s, v) in sum.iter_mut().zip(input(index(t))) {
            *s += v;
        }
    }
    sum
}

/// The rebuild works where the protocol allows it: from an honest aggregation it recovers the
/// survivors' sum (the coordinator's legitimate output), and nothing about one participant.
#[test]
fn the_attackers_rebuild_recovers_the_sum_of_an_honest_aggregation_but_not_one_input() {
    let mut attack = Attack::new(5, 0);
    attack.share_keys();
    let everyone = names(5);
    attack.stage(SecAggStage::MaskedInput, &everyone, true, &honest);
    attack.coordinator.close_stage().unwrap();
    attack.stage(SecAggStage::ConsistencyCheck, &everyone, true, &honest);
    attack.coordinator.close_stage().unwrap();
    attack.stage(SecAggStage::Unmask, &everyone, true, &honest);
    assert!(attack.refusals.is_empty(), "{:?}", attack.refusals);
    let StageClosed::Done { sum, .. } = attack.coordinator.close_stage().unwrap() else {
        panic!("not done");
    };
    let all: BTreeSet<String> = everyone.iter().cloned().collect();
    assert_eq!(sum, sum_of(&all));
    assert_eq!(attack.try_rebuild(&all).unwrap(), sum_of(&all));
    let victim: BTreeSet<String> = [everyone[2].clone()].into();
    let error = attack.try_rebuild(&victim).unwrap_err();
    assert!(error.contains("mask key"), "{error}");
}

/// Problem 1 of the issue: the coordinator relays no shares to the victim, then lists everyone
/// as a survivor. The victim refuses to send its masked input.
#[test]
fn withholding_shares_from_the_victim_makes_it_refuse_to_send_its_input() {
    let mut attack = Attack::new(5, 0);
    attack.share_keys();
    let everyone = names(5);
    let victim = everyone[1].clone();
    let withhold = withholding(&victim, everyone.iter().cloned().collect());
    attack.stage(SecAggStage::MaskedInput, &everyone, true, &withhold);
    let refusal = attack.refusals[&victim].to_string();
    assert!(
        refusal.contains("refused to send the masked input: valid shares from 0 neighbours")
            && refusal.contains("'org-00' (its shares did not arrive)"),
        "{refusal}"
    );
    // Everyone as a survivor: the others sign and reveal; nothing of the victim can be rebuilt.
    let all: BTreeSet<String> = everyone.iter().cloned().collect();
    let others: Vec<String> = everyone.iter().filter(|n| **n != victim).cloned().collect();
    let listing_all = |c: &CoordinatorSession, name: &str| {
        let mut relay = c.relay_for(name);
        relay.stage = SecAggStage::ConsistencyCheck as i32;
        relay.survivors = names(5);
        relay
    };
    attack.stage(SecAggStage::ConsistencyCheck, &others, false, &listing_all);
    for name in &others {
        let relay = attack.unmask_relay(name, &all);
        attack.stage(
            SecAggStage::Unmask,
            std::slice::from_ref(name),
            false,
            &move |_, _| relay.clone(),
        );
    }
    let error = attack.try_rebuild(&[victim.clone()].into()).unwrap_err();
    assert_eq!(error, format!("'{victim}' sent no masked input"));
}

/// The coordinator withholds from the victim the shares of two of its four neighbours (it
/// still masks with the other two, enough for its threshold), then discards those two
/// neighbours' inputs and lists them as dropped while keeping the victim and everyone else as
/// survivors: their keys and the victim's self mask would expose it. The victim refuses to
/// sign that survivor set, and the neighbours holding its self-mask shares withhold them, since
/// its own signed statement names no survivor it masked with.
#[test]
fn listing_the_victims_masking_neighbours_as_dropped_leaves_its_self_mask_unrevealed() {
    let mut attack = Attack::new(12, 4);
    attack.share_keys();
    let everyone = names(12);
    let victim = everyone[3].clone();
    let neighbours: Vec<String> = attack.plan().neighbours_of(&victim).into_iter().collect();
    let withheld_from: BTreeSet<String> = neighbours[..2].iter().cloned().collect();
    let partial = withholding(&victim, withheld_from.clone());
    attack.stage(SecAggStage::MaskedInput, &everyone, false, &partial);
    assert!(attack.refusals.is_empty(), "{:?}", attack.refusals);
    let masked_with: BTreeSet<String> = attack
        .envelope(&victim)
        .unwrap()
        .masking
        .unwrap()
        .masked_with
        .into_iter()
        .collect();
    assert_eq!(masked_with.len(), 2);
    assert!(masked_with.is_disjoint(&withheld_from));
    let survivors: BTreeSet<String> = everyone
        .iter()
        .filter(|n| !masked_with.contains(*n))
        .cloned()
        .collect();
    let chosen: Vec<String> = survivors.iter().cloned().collect();
    let set = survivors.clone();
    let lie = move |c: &CoordinatorSession, name: &str| {
        let mut relay = c.relay_for(name);
        relay.stage = SecAggStage::ConsistencyCheck as i32;
        relay.survivors = set.iter().cloned().collect();
        relay
    };
    attack.stage(SecAggStage::ConsistencyCheck, &chosen, false, &lie);
    let refusal = attack.refusals[&victim].to_string();
    assert!(
        refusal.contains("names none of the neighbours this participant masked with"),
        "{refusal}"
    );
    let signers: Vec<String> = chosen.iter().filter(|n| **n != victim).cloned().collect();
    assert!(signers.len() >= 7, "t = 7 signatures");
    for name in &signers {
        let relay = attack.unmask_relay(name, &survivors);
        attack.stage(
            SecAggStage::Unmask,
            std::slice::from_ref(name),
            false,
            &move |_, _| relay.clone(),
        );
    }
    assert_eq!(attack.refusals.len(), 1, "{:?}", attack.refusals);
    // The two neighbours that hold the victim's self-mask shares and survived withheld them,
    // saying why.
    for holder in &withheld_from {
        let said = attack.sessions[holder].withheld();
        assert!(
            said.iter()
                .any(|(owner, reason)| owner == &victim && reason.contains("pairwise mask")),
            "{holder}: {said:?}"
        );
    }
    let error = attack.try_rebuild(&[victim.clone()].into()).unwrap_err();
    assert_eq!(
        error,
        format!("too few shares of the self-mask seed of '{victim}'")
    );
}

/// The coordinator lists as survivors participants that dropped before sending a masked
/// input: no one reveals their self-mask shares (no signed masking statement of theirs exists),
/// nor their keys (they are "survivors"), so neither they nor anyone who masked with them can be
/// rebuilt, and the aggregation cannot finish with a wrong sum.
#[test]
fn listing_dropped_participants_as_survivors_reveals_nothing_of_them_or_their_neighbours() {
    let mut attack = Attack::new(6, 0);
    attack.share_keys();
    let everyone = names(6);
    let dropped = everyone[5].clone();
    let senders: Vec<String> = everyone[..5].to_vec();
    attack.stage(SecAggStage::MaskedInput, &senders, false, &honest);
    let all: BTreeSet<String> = everyone.iter().cloned().collect();
    let listing_all = |c: &CoordinatorSession, name: &str| {
        let mut relay = c.relay_for(name);
        relay.stage = SecAggStage::ConsistencyCheck as i32;
        relay.survivors = names(6);
        relay
    };
    attack.stage(SecAggStage::ConsistencyCheck, &senders, false, &listing_all);
    assert!(attack.refusals.is_empty(), "{:?}", attack.refusals);
    for name in &senders {
        let relay = attack.unmask_relay(name, &all);
        attack.stage(
            SecAggStage::Unmask,
            std::slice::from_ref(name),
            false,
            &move |_, _| relay.clone(),
        );
        assert!(
            attack.sessions[name]
                .withheld()
                .iter()
                .any(|(owner, _)| owner == &dropped),
            "{name} revealed a share of the dropped participant's seed"
        );
    }
    assert!(attack.rebuild(&dropped, true).is_none());
    assert!(attack.rebuild(&dropped, false).is_none());
    for victim in &senders {
        let error = attack.try_rebuild(&[victim.clone()].into()).unwrap_err();
        assert!(error.contains("mask key"), "{error}");
    }
}

/// The coordinator shows one survivor set to some participants and another to the rest, to
/// collect the victim's self-mask shares from the first group and its key shares from the
/// second. Each participant signs only the set it was shown; neither set gathers t = 4
/// signatures, so every participant refuses to reveal anything.
#[test]
fn different_survivor_sets_for_different_participants_are_refused_before_anything_is_revealed() {
    let mut attack = Attack::new(6, 0);
    attack.share_keys();
    let everyone = names(6);
    attack.stage(SecAggStage::MaskedInput, &everyone, false, &honest);
    let victim = everyone[0].clone();
    let with_victim: BTreeSet<String> = everyone[..4].iter().cloned().collect();
    let without_victim: BTreeSet<String> = everyone[1..].iter().cloned().collect();
    let (a, b) = (with_victim.clone(), without_victim.clone());
    let split = move |c: &CoordinatorSession, name: &str| {
        let mut relay = c.relay_for(name);
        relay.stage = SecAggStage::ConsistencyCheck as i32;
        let set = if ["org-00", "org-01", "org-02"].contains(&name) {
            &a
        } else {
            &b
        };
        relay.survivors = set.iter().cloned().collect();
        relay
    };
    attack.stage(SecAggStage::ConsistencyCheck, &everyone, false, &split);
    assert!(attack.refusals.is_empty(), "{:?}", attack.refusals);
    for name in &everyone {
        let set = if ["org-00", "org-01", "org-02"].contains(&name.as_str()) {
            &with_victim
        } else {
            &without_victim
        };
        let relay = attack.unmask_relay(name, set);
        attack.stage(
            SecAggStage::Unmask,
            std::slice::from_ref(name),
            false,
            &move |_, _| relay.clone(),
        );
        let refusal = attack.refusals[name].to_string();
        assert!(
            refusal.contains("valid signatures of survivors, fewer than the threshold 4"),
            "{name}: {refusal}"
        );
    }
    let error = attack.try_rebuild(&[victim].into()).unwrap_err();
    assert!(error.contains("too few shares"), "{error}");
}

/// The coordinator lowers the threshold or changes the neighbour count in its relay (to make
/// a smaller, attacker-controlled neighbourhood enough): every participant refuses at share
/// keys, so no share of anything leaves it.
#[test]
fn altering_the_threshold_or_the_degree_is_refused_at_share_keys() {
    for (what, alter) in [
        (
            "the threshold t",
            (|relay: &mut SecAggRelay| relay.threshold = 2) as fn(&mut SecAggRelay),
        ),
        (
            "the configured neighbour count k",
            (|relay: &mut SecAggRelay| relay.neighbours = 2) as fn(&mut SecAggRelay),
        ),
    ] {
        let mut attack = Attack::new(6, 0);
        let everyone = names(6);
        attack.stage(SecAggStage::ShareKeys, &everyone, false, &|c, name| {
            let mut relay = c.relay_for(name);
            alter(&mut relay);
            relay
        });
        assert_eq!(attack.refusals.len(), 6);
        for refusal in attack.refusals.values() {
            assert!(
                matches!(refusal, SecAggError::ParameterMismatch { what: w, .. } if *w == what),
                "{refusal}"
            );
        }
        assert!(
            attack
                .seen
                .keys()
                .all(|(stage, _)| *stage == SecAggStage::Setup)
        );
        let error = attack
            .try_rebuild(&[everyone[0].clone()].into())
            .unwrap_err();
        assert!(error.contains("sent no masked input"), "{error}");
    }
}

/// What the threshold buys against a coordinator colluding with one participant (claim
/// "Collusions" of docs/threat-model.md): the coordinator withholds from the victim the shares
/// of n − t members, so the victim masks with the colluder and the others, then declares the
/// others dropped and keeps the victim, the colluder and the withheld members as survivors. At
/// the default t (4 of 6) everyone signs and reveals, and the only mask left on the victim's
/// input is the colluder's, which the colluder knows: one colluder is enough. At t = 5 the same
/// survivor set is below t, every participant refuses it, and nothing is revealed.
#[test]
fn one_colluder_is_enough_at_the_default_threshold_and_not_above_it() {
    for threshold in [4, 5] {
        let n = 6;
        let mut attack = Attack::with_threshold(n, 0, threshold);
        attack.share_keys();
        let everyone = names(n);
        let (victim, colluder) = (everyone[0].clone(), everyone[1].clone());
        let withheld: BTreeSet<String> = everyone[n - (n - threshold)..].iter().cloned().collect();
        let partial = withholding(&victim, withheld.clone());
        attack.stage(SecAggStage::MaskedInput, &everyone, false, &partial);
        assert!(attack.refusals.is_empty(), "{:?}", attack.refusals);
        let survivors: BTreeSet<String> = [victim.clone(), colluder.clone()]
            .into_iter()
            .chain(withheld.iter().cloned())
            .collect();
        let chosen: Vec<String> = survivors.iter().cloned().collect();
        let set = survivors.clone();
        let lie = move |c: &CoordinatorSession, name: &str| {
            let mut relay = c.relay_for(name);
            relay.stage = SecAggStage::ConsistencyCheck as i32;
            relay.survivors = set.iter().cloned().collect();
            relay
        };
        attack.stage(SecAggStage::ConsistencyCheck, &chosen, false, &lie);
        if threshold == 5 {
            assert_eq!(attack.refusals.len(), chosen.len(), "{:?}", attack.refusals);
            assert!(attack.refusals.values().all(|e| matches!(
                e,
                SecAggError::BelowThreshold {
                    have: 3,
                    threshold: 5,
                    ..
                }
            )));
            let error = attack.try_rebuild(&[victim.clone()].into()).unwrap_err();
            assert_eq!(
                error,
                format!("too few shares of the self-mask seed of '{victim}'")
            );
            continue;
        }
        assert!(attack.refusals.is_empty(), "{:?}", attack.refusals);
        for name in &chosen {
            let relay = attack.unmask_relay(name, &survivors);
            attack.stage(
                SecAggStage::Unmask,
                std::slice::from_ref(name),
                false,
                &move |_, _| relay.clone(),
            );
        }
        assert!(attack.refusals.is_empty(), "{:?}", attack.refusals);
        assert!(
            attack.rebuild(&victim, true).is_some(),
            "the victim's self mask is out"
        );
        for honest in &everyone[2..n - (n - threshold)] {
            assert!(
                attack.rebuild(honest, false).is_some(),
                "{honest}'s key is out"
            );
        }
        let error = attack.try_rebuild(&[victim.clone()].into()).unwrap_err();
        assert_eq!(
            error,
            format!("too few shares of the mask key of '{colluder}', masked with '{victim}'"),
            "every other mask is removable: only the colluder's own stands"
        );
    }
}

/// A different member list for each group of participants (found by an attack on this
/// protocol): with the definition's threshold left to the default (more than half of those
/// selected), the coordinator shows the victim org-00 and org-02 the list {org-00, org-01,
/// org-02} (t = 2) and everyone else {org-00, org-01, org-03, org-04, org-05} (t = 3), hands the
/// victim only org-01's share, then gathers the victim's self-mask shares in the first group and
/// org-01's key shares in the second. Shares are bound to the plan they were dealt under
/// (`Context::plan_digest`), so the victim cannot open org-01's share: it holds no valid share
/// and refuses to send its masked input, naming why, and nothing of its input leaves it.
#[test]
fn member_lists_that_differ_between_participants_cannot_expose_an_input() {
    let c = consortium();
    let everyone = names(6);
    let mut coordinator = CoordinatorSession::new(
        context(),
        c.trust.clone(),
        encoding(6),
        everyone.iter().cloned().collect(),
        0,
        0,
    )
    .unwrap();
    let requirements = Requirements {
        threshold: 0,
        neighbours: 0,
        min_members: 3,
        min_threshold: 2,
    };
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let mut sessions = BTreeMap::new();
    for name in &everyone {
        let signer = c.signers[index(name)].clone();
        let (session, message) =
            ParticipantSession::start(signer, c.trust.clone(), context(), requirements, &mut rng);
        coordinator
            .receive(name, certificate(name), message)
            .unwrap();
        sessions.insert(name.clone(), session);
    }
    assert!(matches!(
        coordinator.close_stage().unwrap(),
        StageClosed::Next(SecAggStage::ShareKeys)
    ));
    let (victim, neighbour, partner) = (&everyone[0], &everyone[1], &everyone[2]);
    let first: Vec<String> = vec![victim.clone(), neighbour.clone(), partner.clone()];
    let second: Vec<String> = [0, 1, 3, 4, 5].map(|i| everyone[i].clone()).to_vec();
    let mut dealt = BTreeMap::new();
    for name in &everyone {
        let view = if name == victim || name == partner {
            &first
        } else {
            &second
        };
        let mut relay = coordinator.relay_for(name);
        relay.selected = view.clone();
        relay.members = view.clone();
        relay.threshold = (view.len() / 2 + 1) as u32;
        relay.advertisements.retain(|a| view.contains(&a.name));
        let message = sessions
            .get_mut(name)
            .unwrap()
            .share_keys(&relay, &mut rng)
            .unwrap_or_else(|e| panic!("{name} accepted its list at share keys: {e}"));
        dealt.insert(
            name.clone(),
            accord_proto::v1::ShareKeys::decode(message.body.as_slice()).unwrap(),
        );
    }
    assert_ne!(
        sessions[victim].plan_digest(),
        sessions[neighbour].plan_digest(),
        "the two groups hold different plans"
    );
    // The victim gets org-01's share only (dealt under the second list).
    let template = coordinator.relay_for(victim);
    let share = dealt[neighbour]
        .shares
        .iter()
        .find(|s| &s.to == victim)
        .cloned()
        .unwrap();
    let relay = SecAggRelay {
        header: template.header.clone(),
        phase: template.phase,
        stage: SecAggStage::MaskedInput as i32,
        shares: vec![accord_proto::v1::RelayedShare {
            from: neighbour.clone(),
            share: Some(share),
        }],
        ..Default::default()
    };
    let refusal = sessions
        .get_mut(victim)
        .unwrap()
        .masked_input(&relay, &input(0), &encoding(6), None)
        .map(|_| ())
        .expect_err("the victim must not mask with a share dealt under another list")
        .to_string();
    assert!(
        refusal.contains("refused to send the masked input: valid shares from 0 neighbours")
            && refusal.contains(&format!("'{neighbour}'")),
        "{refusal}"
    );
}

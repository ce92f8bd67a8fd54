//! The secure-aggregation protocol driven in-process: exact sums under every dropout pattern
//! the threshold allows, clean aborts below it, masked inputs that look uniform whatever the
//! input, and refusals of forged, unsigned, replayed, misdirected and over-revealing messages.

use accord_crypto::pki::{ConsortiumCa, Role};
use accord_crypto::secagg::ParticipantSession;
use accord_crypto::secagg::{Context, Requirements, SecAggError, words_from_bytes};
use accord_crypto::secagg::{CoordinatorSession, StageClosed};
use accord_crypto::secagg::{FixedPoint, Modulus, Segment};
use accord_crypto::secagg::{Signer, Trust};
use accord_proto::v1::{
    MaskedInput, MaskedInputEnvelope, Phase, SecAggRelay, SecAggStage, SignedStageMessage,
};
use proptest::prelude::*;
use prost::Message;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

/// A consortium of 40 participant certificates, made once for all tests.
struct Consortium {
    trust: Trust,
    signers: Vec<Arc<Signer>>,
    outsider: Arc<Signer>,
    _dir: tempfile::TempDir,
}

fn consortium() -> &'static Consortium {
    static CONSORTIUM: OnceLock<Consortium> = OnceLock::new();
    CONSORTIUM.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let ca = ConsortiumCa::init(dir.path(), "Test").unwrap();
        let signers = (0..40)
            .map(|i| {
                let files = ca
                    .issue(dir.path(), &format!("org-{i:02}"), Role::Participant, &[])
                    .unwrap();
                Arc::new(Signer::load(&files.cert, &files.key).unwrap())
            })
            .collect();
        let other = tempfile::tempdir().unwrap();
        let foreign = ConsortiumCa::init(other.path(), "Other").unwrap();
        let files = foreign
            .issue(other.path(), "org-00", Role::Participant, &[])
            .unwrap();
        let outsider = Arc::new(Signer::load(&files.cert, &files.key).unwrap());
        Consortium {
            trust: Trust::load(&ca.ca_cert_path()).unwrap(),
            signers,
            outsider,
            _dir: dir,
        }
    })
}

fn context(round: u32) -> Context {
    Context {
        federation: "consortium".into(),
        round,
        phase: Phase::Fit,
    }
}

fn encoding(len: usize, summands: usize) -> FixedPoint {
    FixedPoint::new(
        Modulus::Z64,
        vec![
            Segment {
                name: "weights".into(),
                len,
                bound: 100.0,
                integer: false,
            },
            Segment {
                name: "count".into(),
                len: 1,
                bound: 1e6,
                integer: true,
            },
        ],
        24,
        summands,
    )
    .unwrap()
}

/// Where a participant stops answering.
type Dropouts = BTreeMap<usize, SecAggStage>;

struct Round {
    requirements: Requirements,
    coordinator: CoordinatorSession,
    participants: BTreeMap<String, ParticipantSession>,
    stops: BTreeMap<String, SecAggStage>,
    inputs: BTreeMap<String, Vec<f64>>,
    encoding: FixedPoint,
    rng: ChaCha20Rng,
}

impl Round {
    fn new(
        n: usize,
        inputs: &[Vec<f64>],
        dropouts: &Dropouts,
        threshold: usize,
        neighbours: usize,
        seed: u64,
    ) -> Self {
        let c = consortium();
        let encoding = encoding(inputs[0].len() - 1, n);
        let selected: BTreeSet<String> =
            c.signers[..n].iter().map(|s| s.name().to_owned()).collect();
        let coordinator = CoordinatorSession::new(
            context(1),
            c.trust.clone(),
            encoding.clone(),
            selected,
            threshold,
            neighbours,
        )
        .unwrap();
        let requirements = Requirements {
            threshold,
            neighbours,
            ..Requirements::default()
        };
        let mut round = Self {
            requirements,
            coordinator,
            participants: BTreeMap::new(),
            stops: dropouts
                .iter()
                .map(|(i, s)| (c.signers[*i].name().to_owned(), *s))
                .collect(),
            inputs: c.signers[..n]
                .iter()
                .map(|s| s.name().to_owned())
                .zip(inputs.iter().cloned())
                .collect(),
            encoding,
            rng: ChaCha20Rng::seed_from_u64(seed),
        };
        for signer in &c.signers[..n] {
            if round.stops.get(signer.name()) == Some(&SecAggStage::Setup) {
                continue;
            }
            let (session, message) = ParticipantSession::start(
                signer.clone(),
                c.trust.clone(),
                context(1),
                round.requirements,
                &mut round.rng,
            );
            round
                .coordinator
                .receive(signer.name(), signer.certificate_der(), message)
                .unwrap();
            round.participants.insert(signer.name().to_owned(), session);
        }
        round
    }

    fn sparse(&self) -> bool {
        self.requirements.neighbours != 0
    }

    fn certificate(name: &str) -> &'static [u8] {
        consortium()
            .signers
            .iter()
            .find(|s| s.name() == name)
            .unwrap()
            .certificate_der()
    }

    /// Runs every remaining stage; the sum, or why it aborted. A participant whose session
    /// refuses a stage sits the rest out, as a node does: only a sparse graph's dropouts may
    /// leave an honest participant too few valid shares to mask with.
    fn finish(mut self) -> Result<(Vec<f64>, BTreeSet<String>), SecAggError> {
        loop {
            let stage = match self.coordinator.close_stage()? {
                StageClosed::Done { sum, contributors } => return Ok((sum, contributors)),
                StageClosed::Next(stage) => stage,
            };
            let names: Vec<String> = self.participants.keys().cloned().collect();
            for name in names {
                if self.stops.get(&name).is_some_and(|s| *s <= stage) {
                    continue;
                }
                let relay = self.coordinator.relay_for(&name);
                let session = self.participants.get_mut(&name).unwrap();
                let message = match stage {
                    SecAggStage::ShareKeys => session.share_keys(&relay, &mut self.rng),
                    SecAggStage::MaskedInput => session
                        .masked_input(&relay, &self.inputs[&name], &self.encoding, None)
                        .map(|(masked, _)| masked.message),
                    SecAggStage::ConsistencyCheck => session.consistency_check(&relay),
                    SecAggStage::Unmask => session.unmask(&relay),
                    other => panic!("unexpected stage {other:?}"),
                };
                let message = match message {
                    Ok(message) => message,
                    Err(SecAggError::TooFewShares { .. }) if self.sparse() => {
                        self.stops.insert(name, stage);
                        continue;
                    }
                    Err(e) => panic!("{name} refused {stage:?}: {e}"),
                };
                self.coordinator
                    .receive(&name, Self::certificate(&name), message)
                    .unwrap();
            }
        }
    }
}

/// The plain fixed-point sum over `contributors`, decoded: what the secure sum must equal exactly.
fn plain_sum(
    encoding: &FixedPoint,
    inputs: &BTreeMap<String, Vec<f64>>,
    contributors: &BTreeSet<String>,
) -> Vec<f64> {
    let ring = encoding.modulus().mask();
    let mut sum = vec![0u64; encoding.len()];
    for name in contributors {
        for (total, word) in sum
            .iter_mut()
            .zip(encoding.encode(&inputs[name]).unwrap().words)
        {
            *total = total.wrapping_add(word) & ring;
        }
    }
    encoding.decode(&sum, contributors.len()).unwrap()
}

fn inputs(n: usize, d: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut v: Vec<f64> = (0..d)
                .map(|_| rand::Rng::random_range(&mut rng, -100.0..100.0))
                .collect();
            v.push(rand::Rng::random_range(&mut rng, 0..1000) as f64);
            v
        })
        .collect()
}

const STAGES: [SecAggStage; 5] = [
    SecAggStage::Setup,
    SecAggStage::ShareKeys,
    SecAggStage::MaskedInput,
    SecAggStage::ConsistencyCheck,
    SecAggStage::Unmask,
];

/// Whether a participant that stops answering at `stage` still contributes: its masked input
/// arrived, and survivors are summed whether or not they sign or reveal.
fn contributes(stage: SecAggStage) -> bool {
    stage as i32 > SecAggStage::MaskedInput as i32
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// For random sizes, inputs, graphs and dropout sets that leave at least t participants
    /// at every stage, the secure sum is exactly the plain sum over those whose input arrived.
    #[test]
    fn the_secure_sum_is_exactly_the_plain_sum(
        n in 3usize..=16,
        d in 1usize..=40,
        sparse in any::<bool>(),
        drops in proptest::collection::vec((0usize..16, 0usize..5), 0..8),
        seed in any::<u64>(),
    ) {
        let threshold = n / 2 + 1;
        let mut dropouts = Dropouts::new();
        for (who, stage) in drops {
            if who < n && n - dropouts.len() > threshold {
                dropouts.entry(who).or_insert(STAGES[stage]);
            }
        }
        let neighbours = if sparse { 4 } else { 0 };
        let values = inputs(n, d, seed);
        let round = Round::new(n, &values, &dropouts, threshold, neighbours, seed);
        let (encoding, named) = (round.encoding.clone(), round.inputs.clone());
        match round.finish() {
            Ok((sum, contributors)) => {
                let expected: BTreeSet<String> = named.keys()
                    .filter(|name| dropouts.iter().all(|(i, s)| consortium().signers[*i].name() != name.as_str() || contributes(*s)))
                    .cloned().collect();
                // In a sparse graph a survivor all of whose masking neighbours dropped is left
                // out (its self mask must not be removed); in the complete graph none is.
                if sparse {
                    prop_assert!(contributors.is_subset(&expected));
                } else {
                    prop_assert_eq!(&contributors, &expected);
                }
                prop_assert_eq!(sum, plain_sum(&encoding, &named, &contributors));
            }
            // A sparse graph can leave a neighbourhood too thin to recover from, or too few
            // protected survivors; the aggregation must then say so, never return a wrong sum.
            Err(SecAggError::Unrecoverable { .. } | SecAggError::BelowThreshold { .. }) if sparse => {}
            Err(other) => prop_assert!(false, "aborted: {other}"),
        }
    }
}

#[test]
fn ten_participants_survive_one_two_or_three_dropouts_at_every_stage() {
    let values = inputs(10, 50, 7);
    for stage in STAGES {
        for dropped in 1..=3 {
            let dropouts: Dropouts = (0..dropped).map(|i| (i * 3, stage)).collect();
            let round = Round::new(10, &values, &dropouts, 0, 0, dropped as u64);
            let (encoding, named) = (round.encoding.clone(), round.inputs.clone());
            let (sum, contributors) = round
                .finish()
                .unwrap_or_else(|e| panic!("{stage:?} × {dropped}: {e}"));
            let expected = if contributes(stage) { 10 } else { 10 - dropped };
            assert_eq!(contributors.len(), expected, "{stage:?} × {dropped}");
            assert_eq!(
                sum,
                plain_sum(&encoding, &named, &contributors),
                "{stage:?} × {dropped}"
            );
        }
    }
}

#[test]
fn below_the_threshold_the_aggregation_aborts_at_the_stage_it_falls_short() {
    let values = inputs(10, 5, 8);
    for stage in STAGES {
        // t = 6 of 10: five dropping leaves five.
        let dropouts: Dropouts = (0..5).map(|i| (i, stage)).collect();
        let error = Round::new(10, &values, &dropouts, 0, 0, 1)
            .finish()
            .unwrap_err();
        assert!(
            matches!(
                error,
                SecAggError::BelowThreshold {
                    have: 5,
                    threshold: 6,
                    ..
                }
            ),
            "{stage:?}: {error}"
        );
    }
}

#[test]
fn a_sparse_secagg_plus_graph_sums_forty_participants_with_dropouts() {
    let values = inputs(40, 20, 9);
    let dropouts: Dropouts = [
        (3, SecAggStage::MaskedInput),
        (17, SecAggStage::ShareKeys),
        (30, SecAggStage::Unmask),
    ]
    .into();
    let round = Round::new(40, &values, &dropouts, 0, 6, 3);
    let (encoding, named) = (round.encoding.clone(), round.inputs.clone());
    let (sum, contributors) = round.finish().unwrap();
    assert_eq!(contributors.len(), 38);
    assert_eq!(sum, plain_sum(&encoding, &named, &contributors));
}

/// Chi-square statistic of the top 4 bits of each word against the uniform distribution.
fn chi_square_top_bits(words: &[u64]) -> f64 {
    let mut bins = [0f64; 16];
    for w in words {
        bins[(w >> 60) as usize] += 1.0;
    }
    let expected = words.len() as f64 / 16.0;
    bins.iter().map(|o| (o - expected).powi(2) / expected).sum()
}

#[test]
fn what_the_coordinator_receives_from_one_participant_is_uniform_whatever_its_input() {
    let c = consortium();
    let d = 20_000;
    let mut statistics = Vec::new();
    for constant in [0.0, 100.0] {
        let values: Vec<Vec<f64>> = (0..5)
            .map(|_| {
                let mut v = vec![constant; d];
                v.push(if constant == 0.0 { 0.0 } else { 1e6 });
                v
            })
            .collect();
        let mut round = Round::new(5, &values, &Dropouts::new(), 0, 0, 11);
        round.coordinator.close_stage().unwrap();
        let names = share_all_keys(&mut round);
        let target = &names[0];
        let relay = round.coordinator.relay_for(target);
        let (masked, _) = round
            .participants
            .get_mut(target)
            .unwrap()
            .masked_input(&relay, &values[0], &round.encoding, None)
            .unwrap();
        let envelope = MaskedInputEnvelope::decode(masked.message.body.as_slice()).unwrap();
        let body = MaskedInput::decode(envelope.input.as_slice()).unwrap();
        let words = words_from_bytes(&body.words, d + 1, Modulus::Z64).unwrap();
        let encoded = round.encoding.encode(&values[0]).unwrap().words;
        // The encoded input itself is anything but uniform…
        assert!(chi_square_top_bits(&encoded) > 1000.0);
        // …what is sent is: below the 0.1% critical value of chi-square with 15 degrees of freedom.
        let statistic = chi_square_top_bits(&words);
        assert!(statistic < 37.7, "input {constant}: chi-square {statistic}");
        statistics.push((words, statistic));
        let _ = c;
    }
    // Two-sample: the masked words for all-zero and all-maximum inputs are indistinguishable
    // by their top-bit histograms (chi-square two-sample test, 15 dof, 0.1%).
    let (a, b) = (&statistics[0].0, &statistics[1].0);
    let mut bins = [[0f64; 16]; 2];
    for (i, words) in [a, b].iter().enumerate() {
        for w in words.iter() {
            bins[i][(w >> 60) as usize] += 1.0;
        }
    }
    let two_sample: f64 = (0..16)
        .map(|k| {
            let (x, y) = (bins[0][k], bins[1][k]);
            if x + y == 0.0 {
                0.0
            } else {
                (x - y).powi(2) / (x + y)
            }
        })
        .sum();
    assert!(two_sample < 37.7, "two-sample chi-square {two_sample}");
}

/// A round at the masked-input stage with everyone's keys shared.
fn at_masked_input(n: usize) -> (Round, Vec<String>) {
    let values = inputs(n, 3, 12);
    let mut round = Round::new(n, &values, &Dropouts::new(), 0, 0, 5);
    round.coordinator.close_stage().unwrap();
    let names = share_all_keys(&mut round);
    (round, names)
}

/// Has everyone share keys (setup closed) and closes that stage; returns the names.
fn share_all_keys(round: &mut Round) -> Vec<String> {
    let names: Vec<String> = round.participants.keys().cloned().collect();
    for name in &names {
        let relay = round.coordinator.relay_for(name);
        let message = round
            .participants
            .get_mut(name)
            .unwrap()
            .share_keys(&relay, &mut round.rng)
            .unwrap();
        round
            .coordinator
            .receive(name, Round::certificate(name), message)
            .unwrap();
    }
    round.coordinator.close_stage().unwrap();
    names
}

fn masked(round: &mut Round, name: &str) -> SignedStageMessage {
    let relay = round.coordinator.relay_for(name);
    let input = round.inputs[name].clone();
    round
        .participants
        .get_mut(name)
        .unwrap()
        .masked_input(&relay, &input, &round.encoding, None)
        .unwrap()
        .0
        .message
}

#[test]
fn forged_unsigned_replayed_and_wrong_round_messages_are_refused_and_change_nothing() {
    let (mut round, names) = at_masked_input(4);
    let (a, b) = (names[0].clone(), names[1].clone());
    let good = masked(&mut round, &a);

    let mut unsigned = good.clone();
    unsigned.signature.clear();
    assert_eq!(
        round
            .coordinator
            .receive(&a, Round::certificate(&a), unsigned),
        Err(SecAggError::Unsigned(a.clone()))
    );

    let mut altered = good.clone();
    altered.body[5] ^= 1;
    assert_eq!(
        round
            .coordinator
            .receive(&a, Round::certificate(&a), altered),
        Err(SecAggError::BadSignature(a.clone()))
    );

    // Signed by someone else's key, presented as a's.
    let forged =
        consortium().signers[5].sign(&context(1), SecAggStage::MaskedInput, good.body.clone());
    assert_eq!(
        round
            .coordinator
            .receive(&a, Round::certificate(&a), forged),
        Err(SecAggError::BadSignature(a.clone()))
    );
    // A certificate from another CA with the same name.
    let outsider =
        consortium()
            .outsider
            .sign(&context(1), SecAggStage::MaskedInput, good.body.clone());
    assert!(matches!(
        round
            .coordinator
            .receive(&a, consortium().outsider.certificate_der(), outsider),
        Err(SecAggError::Certificate { .. })
    ));
    // b's message claimed by a (b's signature does not verify as a's).
    let from_b = masked(&mut round, &b);
    assert_eq!(
        round
            .coordinator
            .receive(&a, Round::certificate(&a), from_b.clone()),
        Err(SecAggError::BadSignature(a.clone()))
    );

    // Another round: a message signed for round 2 (a replay from elsewhere), and the round
    // field changed without re-signing.
    let other_round =
        consortium().signers[0].sign(&context(2), SecAggStage::MaskedInput, good.body.clone());
    assert!(matches!(
        round
            .coordinator
            .receive(&a, Round::certificate(&a), other_round),
        Err(SecAggError::WrongContext { .. })
    ));
    let mut moved = good.clone();
    moved.header.as_mut().unwrap().round = 1;
    moved.stage = SecAggStage::Unmask as i32;
    assert!(matches!(
        round.coordinator.receive(&a, Round::certificate(&a), moved),
        Err(SecAggError::WrongStage { .. })
    ));

    round
        .coordinator
        .receive(&a, Round::certificate(&a), good.clone())
        .unwrap();
    assert_eq!(
        round.coordinator.receive(&a, Round::certificate(&a), good),
        Err(SecAggError::Duplicate(a.clone()))
    );
    round
        .coordinator
        .receive(&b, Round::certificate(&b), from_b)
        .unwrap();

    // Nothing refused left a trace: the round completes with the exact sum.
    let encoding = round.encoding.clone();
    let named = round.inputs.clone();
    let rest: Vec<String> = names[2..].to_vec();
    for name in &rest {
        let message = masked(&mut round, name);
        round
            .coordinator
            .receive(name, Round::certificate(name), message)
            .unwrap();
    }
    round.stops.insert("none".into(), SecAggStage::Done);
    let (sum, contributors) = round.finish().unwrap();
    assert_eq!(sum, plain_sum(&encoding, &named, &contributors));
}

/// A round at the unmask stage: everyone sent its masked input and signed the survivor set.
/// Everyone's masked input received and that stage closed: the consistency check is open.
fn at_consistency_check(n: usize) -> (Round, Vec<String>) {
    let (mut round, names) = at_masked_input(n);
    for name in &names {
        let message = masked(&mut round, name);
        round
            .coordinator
            .receive(name, Round::certificate(name), message)
            .unwrap();
    }
    round.coordinator.close_stage().unwrap();
    (round, names)
}

fn at_unmask(n: usize) -> (Round, Vec<String>) {
    let (mut round, names) = at_consistency_check(n);
    for name in &names {
        let relay = round.coordinator.relay_for(name);
        let message = round
            .participants
            .get_mut(name)
            .unwrap()
            .consistency_check(&relay)
            .unwrap();
        round
            .coordinator
            .receive(name, Round::certificate(name), message)
            .unwrap();
    }
    round.coordinator.close_stage().unwrap();
    (round, names)
}

#[test]
fn participants_reveal_only_after_t_signatures_on_the_survivor_set_they_signed() {
    let (mut round, names) = at_unmask(5);
    let honest = round.coordinator.relay_for(&names[0]);
    assert_eq!(honest.survivor_signatures.len(), 5);
    fn session<'a>(round: &'a mut Round, name: &str) -> &'a mut ParticipantSession {
        round.participants.get_mut(name).unwrap()
    }
    let first = names[0].clone();

    // Another set than the one this participant signed (one survivor left out).
    let mut other_set = honest.clone();
    other_set.survivors.retain(|s| s != &names[1]);
    assert!(matches!(
        session(&mut round, &first).unmask(&other_set),
        Err(SecAggError::SurvivorSet(_))
    ));
    // t = 3 of 5: two signatures are not enough, nor are copies of one, nor a signature from
    // outside the consortium, nor a signature on another set.
    let mut thin = honest.clone();
    thin.survivor_signatures.truncate(2);
    assert_eq!(
        session(&mut round, &first).unmask(&thin),
        Err(SecAggError::TooFewSignatures {
            valid: 2,
            threshold: 3
        })
    );
    let mut copies = honest.clone();
    let one = copies.survivor_signatures[0].clone();
    copies.survivor_signatures = vec![one; 5];
    assert!(matches!(
        session(&mut round, &first).unmask(&copies),
        Err(SecAggError::TooFewSignatures { valid: 1, .. })
    ));
    let mut foreign = thin.clone();
    let mut outsider = foreign.survivor_signatures[0].clone();
    outsider.name = names[4].clone();
    outsider.certificate_der = consortium().outsider.certificate_der().to_vec();
    foreign.survivor_signatures.push(outsider);
    assert!(matches!(
        session(&mut round, &first).unmask(&foreign),
        Err(SecAggError::TooFewSignatures { valid: 2, .. })
    ));
    // Nothing was revealed by the refusals: the honest request is answered, once.
    session(&mut round, &first).unmask(&honest).unwrap();
    assert!(matches!(
        session(&mut round, &first).unmask(&honest),
        Err(SecAggError::InconsistentUnmask(_))
    ));
}

#[test]
fn a_participant_signs_one_survivor_set_that_includes_it_and_reaches_t() {
    let (mut round, names) = at_consistency_check(5);
    let honest = round.coordinator.relay_for(&names[0]);
    let session = round.participants.get_mut(&names[0]).unwrap();
    let mut without_me = honest.clone();
    without_me.survivors.retain(|s| s != &names[0]);
    assert!(matches!(
        session.consistency_check(&without_me),
        Err(SecAggError::SurvivorSet(_))
    ));
    let mut thin = honest.clone();
    thin.survivors = vec![names[0].clone(), names[1].clone()];
    assert!(matches!(
        session.consistency_check(&thin),
        Err(SecAggError::BelowThreshold { have: 2, .. })
    ));
    let mut stranger = honest.clone();
    stranger.survivors.push("org-39".into());
    assert!(matches!(
        session.consistency_check(&stranger),
        Err(SecAggError::SurvivorSet(_))
    ));
    session.consistency_check(&honest).unwrap();
    // It signs once: a second set (or the same one again) is refused.
    assert!(matches!(
        session.consistency_check(&honest),
        Err(SecAggError::WrongStage { .. })
    ));
}

/// A participant that signs the announced survivor set under another plan (as if shown other
/// members or another threshold) is refused by the coordinator and named; its signature cannot
/// count towards anyone's t, and the others' signatures complete the stage.
#[test]
fn a_survivor_set_signed_under_another_plan_is_refused_and_named() {
    let (mut round, names) = at_consistency_check(5);
    let relay = round.coordinator.relay_for(&names[0]);
    let signer = (consortium().signers.iter())
        .find(|s| s.name() == names[0])
        .unwrap();
    let body = accord_proto::v1::SurvivorSet {
        survivors: relay.survivors.clone(),
        plan_sha256: vec![7; 32],
    }
    .encode_to_vec();
    let forged = signer.sign(&context(1), SecAggStage::ConsistencyCheck, body);
    match round
        .coordinator
        .receive(&names[0], Round::certificate(&names[0]), forged)
    {
        Err(SecAggError::Malformed { from, what, reason }) => {
            assert_eq!((from.as_str(), what), (names[0].as_str(), "survivor set"));
            assert!(reason.contains("another plan"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    for name in &names[1..] {
        let relay = round.coordinator.relay_for(name);
        let message = (round.participants.get_mut(name).unwrap())
            .consistency_check(&relay)
            .unwrap();
        round
            .coordinator
            .receive(name, Round::certificate(name), message)
            .unwrap();
    }
    assert!(matches!(
        round.coordinator.close_stage().unwrap(),
        StageClosed::Next(SecAggStage::Unmask)
    ));
}

/// A share-keys relay for `selected` with threshold `threshold`.
fn share_keys_relay(selected: &[Arc<Signer>], threshold: u32) -> SecAggRelay {
    let names: Vec<String> = selected.iter().map(|s| s.name().to_owned()).collect();
    SecAggRelay {
        stage: SecAggStage::ShareKeys as i32,
        selected: names.clone(),
        members: names,
        threshold,
        ..Default::default()
    }
}

#[test]
fn participants_refuse_a_threshold_below_the_definition_half_or_their_own_minimum() {
    let c = consortium();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let start = |requirements: Requirements, rng: &mut ChaCha20Rng| {
        ParticipantSession::start(
            c.signers[0].clone(),
            c.trust.clone(),
            context(1),
            requirements,
            rng,
        )
        .0
    };
    // The definition leaves t to the default (more than half of 10 = 6); the coordinator
    // relays 5.
    let mut session = start(Requirements::default(), &mut rng);
    assert_eq!(
        session.share_keys(&share_keys_relay(&c.signers[..10], 5), &mut rng),
        Err(SecAggError::ParameterMismatch {
            what: "the threshold t",
            relayed: 5,
            derived: 6
        })
    );
    // A definition that says 5 of 10 is refused by the participant all the same.
    let half = Requirements {
        threshold: 5,
        ..Requirements::default()
    };
    let mut session = start(half, &mut rng);
    assert_eq!(
        session.share_keys(&share_keys_relay(&c.signers[..10], 5), &mut rng),
        Err(SecAggError::ThresholdTooLow {
            threshold: 5,
            selected: 10,
            minimum: 6
        })
    );
    // The participant's own floor: t = 2 of 3 is a majority, but this participant wants 3.
    let floor = Requirements {
        min_threshold: 3,
        ..Requirements::default()
    };
    let mut session = start(floor, &mut rng);
    assert_eq!(
        session.share_keys(&share_keys_relay(&c.signers[..3], 2), &mut rng),
        Err(SecAggError::BelowRequirement {
            what: "the threshold t",
            got: 2,
            minimum: 3
        })
    );
    // The coordinator cannot shrink the selection below the definition's minimum either.
    let members = Requirements {
        min_members: 4,
        ..Requirements::default()
    };
    let mut session = start(members, &mut rng);
    assert!(matches!(
        session.share_keys(&share_keys_relay(&c.signers[..3], 2), &mut rng),
        Err(SecAggError::BelowRequirement {
            what: "the number of members",
            ..
        })
    ));
    assert!(matches!(
        CoordinatorSession::new(
            context(1),
            c.trust.clone(),
            encoding(1, 10),
            c.signers[..10]
                .iter()
                .map(|s| s.name().to_owned())
                .collect(),
            5,
            0
        ),
        Err(SecAggError::ThresholdTooLow { .. })
    ));
}

#[test]
fn participants_refuse_keys_the_coordinator_forged_and_leave_out_neighbours_whose_shares_fail() {
    let c = consortium();
    let values = inputs(4, 3, 13);
    let mut round = Round::new(4, &values, &Dropouts::new(), 0, 0, 6);
    round.coordinator.close_stage().unwrap();
    let names: Vec<String> = round.participants.keys().cloned().collect();
    let honest = round.coordinator.relay_for(&names[0]);

    // A neighbour's advertisement re-signed by a key that is not its certificate's.
    let mut substituted = honest.clone();
    let victim = substituted
        .advertisements
        .iter_mut()
        .find(|a| a.name == names[1])
        .unwrap();
    let body = victim.message.as_ref().unwrap().body.clone();
    victim.message = Some(c.signers[7].sign(&context(1), SecAggStage::Setup, body));
    let session = round.participants.get_mut(&names[0]).unwrap();
    assert_eq!(
        session.share_keys(&substituted, &mut round.rng),
        Err(SecAggError::BadSignature(names[1].clone()))
    );

    // The coordinator's own made-up participant, with a certificate from another CA.
    let mut invented = honest.clone();
    let fake = invented
        .advertisements
        .iter_mut()
        .find(|a| a.name == names[1])
        .unwrap();
    fake.certificate_der = c.outsider.certificate_der().to_vec();
    assert!(matches!(
        session.share_keys(&invented, &mut round.rng),
        Err(SecAggError::Certificate { .. })
    ));

    // The honest relay works. Then one neighbour's share altered in transit no longer matches
    // its sender's signature: that neighbour is left out and named, and with two valid neighbours (t = 3 of
    // 4, so two are needed besides itself) the participant still masks and sends.
    share_all_keys(&mut round);
    let mut altered = round.coordinator.relay_for(&names[0]);
    let spoiled = altered.shares[0].from.clone();
    altered.shares[0].share.as_mut().unwrap().ciphertext[0] ^= 1;
    let input = round.inputs[&names[0]].clone();
    let session = round.participants.get_mut(&names[0]).unwrap();
    let (masked, _) = session
        .masked_input(&altered.clone(), &input, &round.encoding, None)
        .unwrap();
    assert_eq!(masked.excluded.len(), 1);
    assert_eq!(masked.excluded[0].0, spoiled);
    assert!(
        masked.excluded[0].1.contains("forged or altered"),
        "{:?}",
        masked.excluded
    );
    assert!(!session.masked_with().contains(&spoiled));

    // A second participant whose relay lost two neighbours' shares refuses to send at all.
    let mut withheld = round.coordinator.relay_for(&names[1]);
    withheld.shares.truncate(1);
    let input = round.inputs[&names[1]].clone();
    let error = round
        .participants
        .get_mut(&names[1])
        .unwrap()
        .masked_input(&withheld, &input, &round.encoding, None)
        .err()
        .unwrap();
    assert!(
        matches!(
            error,
            SecAggError::TooFewShares {
                have: 1,
                need: 2,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("did not arrive"), "{error}");
}

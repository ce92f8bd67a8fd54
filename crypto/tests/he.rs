//! Encrypted statistics through secure aggregation, with real tfhe keys: the coordinator's
//! homomorphic sum equals the plain sum with the disclosure policy applied; one participant's
//! ciphertext decrypted alone (with the auditor's key) is noise, not its statistics; malformed,
//! unproven, misbound or unsigned ciphertexts are refused (malformed or uncommitted ones when they
//! arrive, unproven ones when the stage closes) and the aggregation goes on without them, or
//! aborts cleanly below the threshold; random or mutated ciphertext lists never enter a sum. A
//! replay of the messages the coordinator recorded reproduces its aggregate byte for byte, and
//! names a recorded message that was altered.

use accord_crypto::he::inputs::{EncryptedAggregate, MASK_RING, seal};
use accord_crypto::he::keys::{AuditorKeys, GeneratedKeys};
use accord_crypto::he::{EncryptedInputs, FairnessPolicy};
use accord_crypto::pki::{ConsortiumCa, Role};
use accord_crypto::secagg::MaskedInputs as _;
use accord_crypto::secagg::validity::Statement;
use accord_crypto::secagg::{Context, Requirements, SecAggError};
use accord_crypto::secagg::{CoordinatorSession, StageClosed};
use accord_crypto::secagg::{ParticipantSession, SealInput};
use accord_crypto::secagg::{ReplayError, replay};
use accord_crypto::secagg::{Signer, Trust};
use accord_proto::v1::{
    EncryptedStatistics, Phase, RecordedMessage, SecAggStage, SignedStageMessage,
};
use proptest::prelude::*;
use prost::Message;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

mod mutate;

/// Values per group, as the fairness layout has them with 2 bins: n first.
const FIELDS: usize = 8;
const GROUPS: usize = 3;
const BITS: u32 = 16;
const MIN_GROUP_SIZE: u64 = 20;

struct Setup {
    keys: GeneratedKeys,
    trust: Trust,
    signers: Vec<Arc<Signer>>,
    _dir: tempfile::TempDir,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let ca = ConsortiumCa::init(dir.path(), "Test").unwrap();
        let signers = (0..4)
            .map(|i| {
                let files = ca
                    .issue(dir.path(), &format!("org-{i}"), Role::Participant, &[])
                    .unwrap();
                Arc::new(Signer::load(&files.cert, &files.key).unwrap())
            })
            .collect();
        Setup {
            keys: AuditorKeys::generate().unwrap(),
            trust: Trust::load(&ca.ca_cert_path()).unwrap(),
            signers,
            _dir: dir,
        }
    })
}

fn context() -> Context {
    Context {
        federation: "consortium".into(),
        round: 3,
        phase: Phase::Fairness,
    }
}

/// The coordinator's side of one fairness aggregation.
fn inputs() -> EncryptedInputs {
    inputs_on(2)
}

/// The same, computing on `threads` threads.
fn inputs_on(threads: usize) -> EncryptedInputs {
    EncryptedInputs::new(
        context(),
        setup().keys.server.clone(),
        GROUPS * FIELDS,
        BITS,
        FairnessPolicy {
            fields: FIELDS,
            min_group_size: MIN_GROUP_SIZE,
        },
        threads,
    )
    .unwrap()
}

/// Participant i's statistics: group sizes 40+i, 5 (below the policy's minimum) and 100·i.
fn statistics(i: usize) -> Vec<u64> {
    (0..GROUPS)
        .flat_map(|g| {
            let n = [40 + i as u64, 5, 100 * i as u64][g];
            (0..FIELDS as u64).map(move |f| {
                if f == 0 {
                    n
                } else {
                    (n + f * 7 + i as u64) % (n + 1)
                }
            })
        })
        .collect()
}

/// What a participant sends at the masked-input stage, possibly tampered with by `alter`.
type Alter = fn(usize, Vec<u8>) -> Vec<u8>;

/// The aggregation's outcome (the aggregate and its contributors, or why it aborted) and the
/// coordinator's refusals.
type Outcome = (
    Result<(EncryptedAggregate, BTreeSet<String>), SecAggError>,
    Vec<String>,
);

/// Runs the fairness phase among `n` participants; `alter` may rewrite a participant's
/// encrypted body before it is signed. Returns the aggregate and who contributed, or the
/// abort, plus the coordinator's refusals.
fn run(n: usize, alter: Alter) -> Outcome {
    run_recorded(n, alter).0
}

/// The coordinator's session over the first `n` participants, computing on `threads` threads.
fn session(n: usize, threads: usize) -> CoordinatorSession<EncryptedInputs> {
    let s = setup();
    let names: BTreeSet<String> = s.signers[..n].iter().map(|x| x.name().to_owned()).collect();
    CoordinatorSession::with_inputs(context(), s.trust.clone(), inputs_on(threads), names, 0, 0)
        .unwrap()
}

/// [`run`], also returning every message the coordinator accepted, in order.
fn run_recorded(n: usize, alter: Alter) -> (Outcome, Vec<RecordedMessage>) {
    run_scripted(&Script {
        n,
        alter,
        statistics,
        proven: None,
        encrypted: |_, counts| counts,
    })
}

/// How participants behave in [`run_scripted`]: who takes part, how each one's sealed body is
/// altered, its statistics, the statement its counts are proven to meet (none: unproven), and
/// what it encrypts in place of its statistics (the identity, for an honest participant).
struct Script {
    n: usize,
    alter: Alter,
    statistics: fn(usize) -> Vec<u64>,
    proven: Option<Statement>,
    encrypted: fn(usize, Vec<u64>) -> Vec<u64>,
}

/// The fairness phase under `script`; see [`run`].
fn run_scripted(script: &Script) -> (Outcome, Vec<RecordedMessage>) {
    let (n, alter) = (script.n, script.alter);
    let s = setup();
    let mut coordinator = match &script.proven {
        Some(statement) => {
            let names: BTreeSet<String> =
                s.signers[..n].iter().map(|x| x.name().to_owned()).collect();
            CoordinatorSession::with_inputs(
                context(),
                s.trust.clone(),
                inputs_on(2).proven(statement.clone()),
                names,
                0,
                0,
            )
            .unwrap()
        }
        None => session(n, 2),
    }
    .recording();
    let mut sessions = Vec::new();
    let mut refusals = Vec::new();
    let deliver = |coordinator: &mut CoordinatorSession<EncryptedInputs>,
                   messages: Vec<SignedStageMessage>,
                   refusals: &mut Vec<String>| {
        for (signer, message) in s.signers.iter().zip(messages) {
            if let Err(e) = coordinator.receive(signer.name(), signer.certificate_der(), message) {
                refusals.push(e.to_string());
            }
        }
    };
    let mut messages = Vec::new();
    for signer in &s.signers[..n] {
        let (session, message) = ParticipantSession::start(
            signer.clone(),
            s.trust.clone(),
            context(),
            Requirements::default(),
            &mut rand::rng(),
        );
        sessions.push(session);
        messages.push(message);
    }
    deliver(&mut coordinator, messages, &mut refusals);
    let outcome = (|| {
        coordinator.close_stage()?;
        let messages = sessions
            .iter_mut()
            .map(|p| p.share_keys(&coordinator.relay_for(p.name()), &mut rand::rng()))
            .collect::<Result<Vec<_>, _>>()?;
        deliver(&mut coordinator, messages, &mut refusals);
        coordinator.close_stage()?;
        let public = &s.keys.public;
        let messages = sessions
            .iter_mut()
            .enumerate()
            .map(|(i, p)| {
                let relay = coordinator.relay_for(p.name());
                let context = p.context().clone();
                let honest = (script.statistics)(i);
                let sent = (script.encrypted)(i, honest.clone());
                p.masked_input_with(&relay, sent, MASK_RING, |sealed| {
                    // The proof is of the participant's statistics, whatever it encrypts.
                    let sealed = SealInput {
                        unmasked: &honest,
                        ..sealed
                    };
                    let body = seal(public, &context, sealed, BITS, script.proven.as_ref())?;
                    Ok(alter(i, body))
                })
                .map(|m| m.message)
            })
            .collect::<Result<Vec<_>, _>>()?;
        deliver(&mut coordinator, messages, &mut refusals);
        // Proofs are verified when the stage closes: refused lists count as dropped.
        let named = coordinator.culprits().len();
        let closed = coordinator.close_stage();
        refusals.extend(
            coordinator.culprits()[named..]
                .iter()
                .map(|c| c.reason.clone()),
        );
        closed?;
        let survivors: BTreeSet<String> = coordinator
            .relay_for("org-0")
            .survivors
            .into_iter()
            .collect();
        let senders: Vec<&Arc<Signer>> = s
            .signers
            .iter()
            .filter(|x| survivors.contains(x.name()))
            .collect();
        for stage in [SecAggStage::ConsistencyCheck, SecAggStage::Unmask] {
            let messages: Vec<SignedStageMessage> = sessions
                .iter_mut()
                .filter(|p| survivors.contains(p.name()))
                .map(|p| {
                    let relay = coordinator.relay_for(p.name());
                    if stage == SecAggStage::Unmask {
                        p.unmask(&relay)
                    } else {
                        p.consistency_check(&relay)
                    }
                })
                .collect::<Result<_, _>>()?;
            for (signer, message) in senders.iter().zip(messages) {
                coordinator.receive(signer.name(), signer.certificate_der(), message)?;
            }
            if stage == SecAggStage::ConsistencyCheck {
                coordinator.close_stage()?;
            }
        }
        match coordinator.close_stage()? {
            StageClosed::Done { sum, contributors } => Ok((sum, contributors)),
            StageClosed::Next(stage) => panic!("not done after unmask: {stage:?}"),
        }
    })();
    ((outcome, refusals), coordinator.take_record())
}

/// The plain sum of the given participants' statistics, with the policy applied.
fn expected(contributors: &[usize]) -> (Vec<u64>, Vec<bool>) {
    let ring = (1u64 << BITS) - 1;
    let sum: Vec<u64> = (0..GROUPS * FIELDS)
        .map(|k| contributors.iter().map(|&i| statistics(i)[k]).sum::<u64>() & ring)
        .collect();
    let kept: Vec<bool> = sum.chunks(FIELDS).map(|g| g[0] >= MIN_GROUP_SIZE).collect();
    let values = sum
        .chunks(FIELDS)
        .zip(&kept)
        .flat_map(|(g, &k)| g.iter().map(move |&v| if k { v } else { 0 }))
        .collect();
    (values, kept)
}

fn decrypt(aggregate: &EncryptedAggregate) -> (Vec<u64>, Vec<bool>) {
    setup()
        .keys
        .keys
        .decrypt(&aggregate.values, &aggregate.kept)
}

#[test]
fn the_homomorphic_sum_is_the_plain_sum_with_small_groups_suppressed() {
    let (outcome, refusals) = run(3, |_, body| body);
    assert!(refusals.is_empty(), "{refusals:?}");
    let (aggregate, contributors) = outcome.unwrap();
    assert_eq!(contributors.len(), 3);
    let (values, kept) = decrypt(&aggregate);
    assert_eq!((values, kept.clone()), expected(&[0, 1, 2]));
    // The middle group (3 × 5 records) is below the minimum: zeroed and marked.
    assert_eq!(kept, [true, false, true]);
    assert_eq!(aggregate.commitments.len(), 3);
}

#[test]
fn one_participants_ciphertext_decrypted_alone_is_not_its_statistics() {
    static CAPTURED: OnceLock<Vec<u8>> = OnceLock::new();
    let (outcome, _) = run(3, |i, body| {
        if i == 1 {
            let _ = CAPTURED.set(body.clone());
        }
        body
    });
    outcome.unwrap();
    let body = EncryptedStatistics::decode(CAPTURED.get().unwrap().as_slice()).unwrap();
    let alone = setup()
        .keys
        .keys
        .decrypt_submission(&body.ciphertext_list, &setup().keys.server)
        .unwrap();
    let own = statistics(1);
    assert_eq!(alone.len(), own.len());
    let equal = alone.iter().zip(&own).filter(|(a, b)| a == b).count();
    // Masked words are uniform modulo 2^16: a chance match is about 1 in 65,536 per value.
    assert!(
        equal <= 1,
        "{equal} of {} values decrypt to the participant's own counts",
        own.len()
    );
}

#[test]
fn malformed_unproven_or_unsigned_ciphertexts_are_refused_and_the_rest_are_summed() {
    fn alter(i: usize, body: Vec<u8>) -> Vec<u8> {
        let mut statistics = EncryptedStatistics::decode(body.as_slice()).unwrap();
        match i {
            // Not a ciphertext list at all.
            1 => statistics.ciphertext_list = b"not a ciphertext".to_vec(),
            // A flipped byte near the end (inside a proof or the ciphertext).
            2 => {
                let at = statistics.ciphertext_list.len() - 40;
                statistics.ciphertext_list[at] ^= 0x01;
            }
            _ => {}
        }
        statistics.encode_to_vec()
    }
    let (outcome, refusals) = run(4, alter);
    let reasons = refusals;
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].contains("org-1") && reasons[0].contains("encrypted statistics"),
        "{}",
        reasons[0]
    );
    assert!(reasons[1].contains("org-2"), "{}", reasons[1]);
    // 2 of 4 arrived: below the threshold (3), the aggregation aborts at the stage it fell short.
    assert!(
        matches!(
            outcome,
            Err(SecAggError::BelowThreshold {
                stage: "masked input",
                have: 2,
                threshold: 3
            })
        ),
        "{:?}",
        outcome.as_ref().err()
    );

    // With one bad ciphertext of four, the other three are summed exactly.
    let (outcome, refusals) = run(4, |i, body| if i == 3 { alter(1, body) } else { body });
    assert_eq!(refusals.len(), 1);
    let (aggregate, contributors) = outcome.unwrap();
    assert!(!contributors.contains("org-3"));
    assert_eq!(decrypt(&aggregate), expected(&[0, 1, 2]));
}

#[test]
fn a_ciphertext_other_than_the_committed_one_is_refused() {
    // org-2 swaps in another list after committing: the commitment no longer matches.
    let (outcome, refusals) = run(3, |i, body| {
        if i != 2 {
            return body;
        }
        let list = accord_crypto::he::inputs::encrypt(
            &setup().keys.public,
            &statistics(2),
            BITS,
            &context().proof_metadata("org-2"),
        )
        .unwrap();
        let mut statistics = EncryptedStatistics::decode(body.as_slice()).unwrap();
        statistics.ciphertext_list = list;
        statistics.encode_to_vec()
    });
    let reason = refusals[0].clone();
    assert!(
        reason.contains("org-2") && reason.contains("commitment"),
        "{reason}"
    );
    assert_eq!(outcome.unwrap().1.len(), 2);
}

#[test]
fn a_proof_made_for_another_sender_does_not_verify() {
    use accord_crypto::secagg::MaskedInputs;
    use sha2::Digest;
    let s = setup();
    let mut inputs = inputs();
    let signer = &s.signers[1];
    // org-1 replays a list proven for org-0 (as if copied), with a valid commitment of its own.
    let list = accord_crypto::he::inputs::encrypt(
        &s.keys.public,
        &statistics(1),
        BITS,
        &context().proof_metadata("org-0"),
    )
    .unwrap();
    let digest: [u8; 32] = sha2::Sha256::digest(&list).into();
    let body = EncryptedStatistics {
        commitment_signature: signer.sign_digest(&context().commitment_digest("org-1", &digest)),
        ciphertext_list: list,
        validity: None,
    }
    .encode_to_vec();
    let key = ed25519_dalek::VerifyingKey::from_bytes(
        &accord_crypto::pki::ed25519_public_key(signer.certificate_der()).unwrap(),
    )
    .unwrap();
    // The list is well formed, so it is queued; its proof fails when the stage closes.
    inputs
        .add("org-1", &key, signer.certificate_der(), &body)
        .unwrap();
    let refused = inputs.settle();
    assert_eq!(refused.len(), 1);
    let (sender, error) = &refused[0];
    let error = error.to_string();
    assert_eq!(sender, "org-1");
    assert!(
        error.contains("proof of well-formed encryption does not verify"),
        "{error}"
    );
}

#[test]
fn a_replay_of_the_record_reproduces_the_aggregate_and_names_an_altered_message() {
    let ((outcome, refusals), record) = run_recorded(3, |_, body| body);
    assert!(refusals.is_empty(), "{refusals:?}");
    let (aggregate, contributors) = outcome.unwrap();
    let bytes = aggregate.to_bytes("consortium", 3).unwrap();
    // 3 advertisements, 3 share-keys messages, 3 masked inputs, 3 signed survivor sets, 3
    // unmask messages.
    assert_eq!(record.len(), 15);

    // The same messages in the same order on the same number of threads, in a fresh session
    // (rayon schedules the work differently): the same bytes. (On 4 or more threads tfhe
    // propagates carries in parallel and the bytes differ, hence the recorded thread count.)
    let replayed = replay(session(3, 2), &record).unwrap();
    assert_eq!(replayed.contributors, contributors);
    assert!(replayed.sum.to_bytes("consortium", 3).unwrap() == bytes);

    // One byte of org-1's share-keys message altered: refused, and named.
    let mut altered = record.clone();
    let message = altered[4].message.as_mut().unwrap();
    message.body[10] ^= 0x01;
    match replay(session(3, 2), &altered) {
        Err(ReplayError::Refused {
            index: 4,
            stage: "share keys",
            sender,
            source: SecAggError::BadSignature(_),
        }) => assert_eq!(sender, "org-1"),
        other => panic!("{:?}", other.err()),
    }
    // A setup message repeated after the setup stage closed: out of order.
    let mut reordered = record.clone();
    reordered.insert(4, record[0].clone());
    assert!(
        matches!(
            replay(session(3, 2), &reordered),
            Err(ReplayError::OutOfOrder {
                index: 4,
                stage: "setup",
                ..
            })
        ),
        "a setup message after the setup stage"
    );
    // Without org-2's masked input, the survivors' recorded signatures are on a survivor set
    // (with org-2) that is no longer the one the replay announces.
    let withheld: Vec<RecordedMessage> = record
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 8)
        .map(|(_, m)| m.clone())
        .collect();
    assert!(
        matches!(
            replay(session(3, 2), &withheld),
            Err(ReplayError::Refused {
                stage: "consistency check",
                source: SecAggError::Malformed { .. },
                ..
            })
        ),
        "a record without one masked input"
    );
}

/// A fairness layout of one protected attribute with two categories (three groups with
/// `unknown`) and two score bins: the same shape as the statistics above, with its relations.
fn layout() -> accord_proto::fairness::FairnessLayout {
    let schema = accord_proto::v1::Schema {
        protected_attributes: vec![accord_proto::v1::ProtectedAttribute {
            name: "gender".into(),
            categories: vec!["female".into(), "male".into()],
            use_as_feature: false,
        }],
        ..Default::default()
    };
    let layout = accord_proto::fairness::FairnessLayout::new(&schema, 2).unwrap();
    assert_eq!((layout.groups(), layout.fields()), (GROUPS, FIELDS));
    layout
}

/// Participant i's statistics as real records give them: positives and predicted positives at
/// most n, true positives at most either, each bin's positives at most its count. Group sizes
/// as in [`statistics`].
fn consistent_statistics(i: usize) -> Vec<u64> {
    (0..GROUPS)
        .flat_map(|g| {
            let n = [40 + i as u64, 5, 100 * i as u64][g];
            let (positives, predicted) = (n / 2, n / 3);
            let true_positives = positives.min(predicted) / 2;
            let bins = [n / 2, n - n / 2];
            let first = (positives / 2).min(bins[0]);
            let second = (positives - first).min(bins[1]);
            [
                n,
                positives,
                predicted,
                true_positives,
                bins[0],
                bins[1],
                first,
                second,
            ]
        })
        .collect()
}

/// Opens the disclosed counts of `aggregate` against the participants' proven commitments, as
/// the auditor does before signing anything.
fn auditors_check(aggregate: &EncryptedAggregate) -> Result<(), String> {
    let (values, kept) = decrypt(aggregate);
    let disclosed: Vec<(usize, u64)> = values
        .iter()
        .enumerate()
        .filter(|(i, _)| kept[i / FIELDS])
        .map(|(i, &v)| (i, v))
        .collect();
    let (sum, blindings) = aggregate.proven.as_ref().ok_or("no proven counts")?;
    sum.open(setup().keys.keys.count_opening_key(), &disclosed, blindings)
        .map_err(|e| e.to_string())
}

/// With counts proven in [0, 1000] and the layout's relations: the honest aggregate passes the
/// auditor's check; a participant that encrypts a count beyond its bound (org-2 inflates the
/// small group's n by 2000, so the group escapes suppression) while proving its true counts is
/// caught by the auditor's check on that very count, before anything is disclosed; one that
/// sends no valid proof at all (proven for another participant) is refused when the stage
/// closes, named, and left out of the sum.
#[test]
fn a_count_beyond_what_its_sender_proved_never_reaches_a_disclosed_aggregate() {
    let statement = Statement::counts(GROUPS * FIELDS, 1000, &layout().relations()).unwrap();
    let honest = Script {
        n: 3,
        alter: |_, body| body,
        statistics: consistent_statistics,
        proven: Some(statement.clone()),
        encrypted: |_, counts| counts,
    };
    let ((outcome, refusals), _) = run_scripted(&honest);
    assert!(refusals.is_empty(), "{refusals:?}");
    let (aggregate, _) = outcome.unwrap();
    auditors_check(&aggregate).unwrap();
    let (_, kept) = decrypt(&aggregate);
    assert_eq!(kept, [true, false, true], "the small group is suppressed");

    let inflating = Script {
        encrypted: |i, mut counts| {
            if i == 2 {
                counts[FIELDS] += 2000;
            }
            counts
        },
        ..honest
    };
    let ((outcome, refusals), _) = run_scripted(&inflating);
    assert!(
        refusals.is_empty(),
        "the proof itself is valid: {refusals:?}"
    );
    let (aggregate, _) = outcome.unwrap();
    let (values, kept) = decrypt(&aggregate);
    assert_eq!(
        kept,
        [true, true, true],
        "the inflated group escaped suppression…"
    );
    assert_eq!(values[FIELDS], 15 + 2000);
    let error = auditors_check(&aggregate).unwrap_err();
    assert!(
        error.ends_with(&format!("at position {FIELDS}")),
        "…but the auditor's check names it: {error}"
    );

    let forged = Script {
        alter: |i, body| {
            if i != 2 {
                return body;
            }
            // org-2 swaps in the proof org-0 would make (its own counts, bound to org-0).
            let mut statistics = EncryptedStatistics::decode(body.as_slice()).unwrap();
            let statement =
                Statement::counts(GROUPS * FIELDS, 1000, &layout().relations()).unwrap();
            let blindings = vec![curve25519_dalek::scalar::Scalar::ZERO; GROUPS * FIELDS];
            let proof = accord_crypto::secagg::validity::counts::prove_counts(
                &statement,
                &consistent_statistics(2),
                &blindings,
                &setup().keys.public.count_key,
                &context().validity_binding("org-0"),
            )
            .unwrap();
            statistics.validity = Some(proof.to_message());
            statistics.encode_to_vec()
        },
        encrypted: |_, counts| counts,
        ..inflating
    };
    let ((outcome, refusals), _) = run_scripted(&forged);
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert!(
        refusals[0].contains("org-2")
            && refusals[0].contains("proof of its counts does not verify"),
        "{}",
        refusals[0]
    );
    let (aggregate, contributors) = outcome.unwrap();
    assert!(!contributors.contains("org-2"));
    auditors_check(&aggregate).unwrap();
}

/// Participant 0's sealed statistics (a real proven list, from an honest run's record), made
/// once.
fn sealed_list() -> &'static [u8] {
    static LIST: OnceLock<Vec<u8>> = OnceLock::new();
    LIST.get_or_init(|| {
        let (_, record) = run_recorded(3, |_, body| body);
        let message = record
            .iter()
            .filter(|r| r.sender == "org-0")
            .filter_map(|r| r.message.as_ref())
            .find(|m| m.stage() == SecAggStage::MaskedInput)
            .expect("org-0's masked input is in the record");
        let envelope =
            accord_proto::v1::MaskedInputEnvelope::decode(message.body.as_slice()).unwrap();
        EncryptedStatistics::decode(envelope.input.as_slice())
            .unwrap()
            .ciphertext_list
    })
}

proptest! {
    // Each list that passes the form checks costs a proof verification (about a second).
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    /// A ciphertext list of random bytes, or a real one mutated (bit flips, truncation,
    /// extension, repeated spans that grow its counts), with a valid commitment signature by its
    /// sender: refused when it arrives (bincode under the size limit, tfhe's conformance) or when
    /// its proof is verified, never summed and never a panic.
    #[test]
    fn random_or_mutated_ciphertext_lists_never_enter_the_sum(
        random in proptest::option::weighted(0.2, proptest::collection::vec(any::<u8>(), 0..256)),
        flips in proptest::collection::vec((any::<usize>(), 0u8..8), 1..3),
        framing in proptest::option::weighted(0.3, proptest::collection::vec(mutate::edit_strategy(), 1..3)),
    ) {
        let s = setup();
        let signer = &s.signers[0];
        // Mostly bit flips, which keep the framing and reach the conformance and proof checks.
        let list = random.unwrap_or_else(|| {
            let mut list = sealed_list().to_vec();
            let flips = flips.iter().map(|&(at, bit)| mutate::Edit::Flip { at, bit });
            mutate::apply(&mut list, &flips.collect::<Vec<_>>());
            mutate::apply(&mut list, &framing.unwrap_or_default());
            list
        });
        let digest: [u8; 32] = Sha256::digest(&list).into();
        let body = EncryptedStatistics {
            commitment_signature: signer
                .sign_digest(&context().commitment_digest(signer.name(), &digest)),
            ciphertext_list: list.clone(),
            ..Default::default()
        }
        .encode_to_vec();
        let key = s.trust.member_key(signer.name(), signer.certificate_der()).unwrap();
        let mut coordinator = inputs();
        let arrived = coordinator.add(signer.name(), &key, signer.certificate_der(), &body);
        if arrived.is_ok() && list != sealed_list() {
            let refused = coordinator.settle();
            prop_assert_eq!(refused.len(), 1, "a mutated list passed its proof");
        }
    }
}

//! Encrypted statistics through secure aggregation, with real tfhe keys: the coordinator's
//! homomorphic sum equals the plain sum with the disclosure policy applied; one participant's
//! ciphertext decrypted alone (with the auditor's key) is noise, not its statistics; malformed,
//! unproven, misbound or unsigned ciphertexts are refused (malformed or uncommitted ones when they
//! arrive, unproven ones when the stage closes) and the aggregation goes on without them, or
//! aborts cleanly below the threshold. A replay of the messages the coordinator recorded
//! reproduces its aggregate byte for byte, and names a recorded message that was altered.

use accord_crypto::he::inputs::{EncryptedAggregate, MASK_RING, seal};
use accord_crypto::he::keys::{AuditorKeys, GeneratedKeys};
use accord_crypto::he::{EncryptedInputs, FairnessPolicy};
use accord_crypto::pki::{ConsortiumCa, Role};
use accord_crypto::secagg::coordinator::{CoordinatorSession, StageClosed};
use accord_crypto::secagg::identity::{Signer, Trust};
use accord_crypto::secagg::participant::ParticipantSession;
use accord_crypto::secagg::replay::{ReplayError, replay};
use accord_crypto::secagg::{Context, SecAggError};
use accord_proto::v1::{EncryptedStatistics, Phase, RecordedMessage, SignedStageMessage};
use prost::Message;
use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

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
    Vec<SecAggError>,
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
    let s = setup();
    let mut coordinator = session(n, 2).recording();
    let mut sessions = Vec::new();
    let mut refusals = Vec::new();
    let deliver = |coordinator: &mut CoordinatorSession<EncryptedInputs>,
                   messages: Vec<SignedStageMessage>,
                   refusals: &mut Vec<SecAggError>| {
        for (signer, message) in s.signers.iter().zip(messages) {
            if let Err(e) = coordinator.receive(signer.name(), signer.certificate_der(), message) {
                refusals.push(e);
            }
        }
    };
    let mut messages = Vec::new();
    for signer in &s.signers[..n] {
        let (session, message) =
            ParticipantSession::start(signer.clone(), s.trust.clone(), context(), &mut rand::rng());
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
                p.masked_input_with(&relay, statistics(i), MASK_RING, |masked, signer| {
                    Ok(alter(i, seal(public, &context, signer, masked, BITS)?))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        deliver(&mut coordinator, messages, &mut refusals);
        // Proofs are verified when the stage closes: refused lists count as dropped.
        let closed = coordinator.close_stage();
        refusals.extend(coordinator.rejected().iter().map(|(_, e)| e.clone()));
        closed?;
        let survivors: BTreeSet<String> = coordinator
            .relay_for("org-0")
            .survivors
            .into_iter()
            .collect();
        let messages: Vec<SignedStageMessage> = sessions
            .iter_mut()
            .filter(|p| survivors.contains(p.name()))
            .map(|p| p.unmask(&coordinator.relay_for(p.name())))
            .collect::<Result<_, _>>()?;
        let senders: Vec<&Arc<Signer>> = s
            .signers
            .iter()
            .filter(|x| survivors.contains(x.name()))
            .collect();
        for (signer, message) in senders.into_iter().zip(messages) {
            coordinator.receive(signer.name(), signer.certificate_der(), message)?;
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
    let reasons: Vec<String> = refusals.iter().map(ToString::to_string).collect();
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
    let reason = refusals[0].to_string();
    assert!(
        reason.contains("org-2") && reason.contains("commitment"),
        "{reason}"
    );
    assert_eq!(outcome.unwrap().1.len(), 2);
}

#[test]
fn a_proof_made_for_another_sender_does_not_verify() {
    use accord_crypto::secagg::coordinator::MaskedInputs;
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
    // 3 advertisements, 3 share-keys messages, 3 masked inputs, 3 unmask messages.
    assert_eq!(record.len(), 12);

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
    // Without org-2's masked input, the survivors' shares of its self mask are not asked for.
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
                stage: "unmask",
                source: SecAggError::Malformed { .. },
                ..
            })
        ),
        "a record without one masked input"
    );
}

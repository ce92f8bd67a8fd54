//! Participants that deviate on purpose, over real mutual-TLS gRPC: real honest nodes, the real
//! coordinator, and deviants (tests/src/deviant.rs) that send undecryptable shares or reveal
//! wrong shares with their own signatures. Honest participants never exit; each phase completes
//! without the culprit's deviation, the culprit is named in rounds.csv, and a participant whose
//! own messages prove the deviation is left out of the rest of the federation.

use accord_crypto::secagg::{Signer, Trust};
use accord_proto::transport::WireMeter;
use accord_proto::v1::Phase;
use accord_tests::TestFederation;
use accord_tests::deviant::{self, Deviation, Script};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecryptable_and_wrong_shares_name_their_sender_and_the_federation_goes_on() {
    let mut federation = TestFederation::new(5, 150, 31);
    federation
        .coordinator_edits
        .push(("federation.min_participants", 3.into()));
    let (address, coordinator) = federation.start_coordinator(2, 30).await;
    let names = federation.layout.names.clone();
    let honest: Vec<_> = names[..3]
        .iter()
        .map(|name| federation.spawn_participant(name, &address, WireMeter::new()))
        .collect();
    let deviants: Vec<_> = [
        (
            &names[3],
            [((0, Phase::Standardize), Deviation::UndecryptableShares)],
        ),
        (&names[4], [((1, Phase::Fit), Deviation::WrongShares)]),
    ]
    .into_iter()
    .map(|(name, script)| spawn_deviant(&federation, &address, name, script.into()))
    .collect();

    for task in honest {
        let outcome = task
            .await
            .unwrap()
            .expect("an honest participant never exits");
        assert_eq!(outcome.rounds_completed, 2);
    }
    let outcome = coordinator.await.unwrap().expect("the federation finishes");
    let logs: Vec<_> = futures_join(deviants).await;
    let summary: Vec<(u32, u32, bool)> = outcome
        .rounds
        .iter()
        .map(|r| (r.round, r.participants, r.fit_aborted))
        .collect();
    // Round 1: all five fitted (org-5 cheated only when revealing shares, which were skipped);
    // round 2: org-5 is out; org-4 (accused, not proven) stays in.
    assert_eq!(summary, [(1, 5, false), (2, 4, false)], "{logs:?}");
    let first = outcome.rounds[0].culprits.join("\n");
    assert!(
        first.contains("org-4 (standardize, masked input): left out by 'org-1'")
            && first.contains("does not decrypt"),
        "{first}"
    );
    assert!(
        first.contains("org-5 (fit, unmask): revealed a self-mask share of")
            && first.contains("does not match its signed commitment"),
        "{first}"
    );
    assert!(
        outcome.rounds[1].culprits.is_empty(),
        "{:?}",
        outcome.rounds[1].culprits
    );
    // org-5 was told the phases went on without it after round 1.
    assert!(!logs[1].phases.contains(&(2, Phase::Fit)), "{:?}", logs[1]);
    assert!(outcome.model.weights.iter().all(|w| w.is_finite()));
    // model.json counts those whose uploads made the final model, not the five registered.
    assert_eq!(outcome.model.participants, 4);
    let rounds_csv = std::fs::read_to_string(&outcome.rounds_path).unwrap();
    assert!(rounds_csv.lines().next().unwrap().ends_with(",culprits"));
    assert!(rounds_csv.contains("org-5 (fit, unmask)"), "{rounds_csv}");
}

/// Poisoning the model (n = 1 with every n·w at its bound: weights of max_rows·clip once
/// divided), with the only validity proof the deviant can make (of its honest input) or a proof
/// made for someone else, and an out-of-range evaluation input. The proof made for someone
/// else is refused when the stage closes and its sender named and left out; a masked input
/// that differs from its proven input makes the unmasked sum differ from the sum of the
/// commitments, so the phase aborts (the sender cannot be identified without revealing the
/// others' inputs) and the previous model stays. The final model stays within clip, and honest
/// participants finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poisoned_or_out_of_range_inputs_never_reach_the_model() {
    let mut federation = TestFederation::new(5, 150, 32);
    federation
        .coordinator_edits
        .push(("federation.min_participants", 3.into()));
    let (address, coordinator) = federation.start_coordinator(3, 30).await;
    let names = federation.layout.names.clone();
    let honest: Vec<_> = names[..3]
        .iter()
        .map(|name| federation.spawn_participant(name, &address, WireMeter::new()))
        .collect();
    let scripts: Vec<(String, Script)> = vec![
        (
            names[3].clone(),
            [
                ((1, Phase::Fit), Deviation::Poison),
                ((2, Phase::Evaluate), Deviation::OutOfRange),
            ]
            .into(),
        ),
        (
            names[4].clone(),
            [((2, Phase::Fit), Deviation::ForgedProof)].into(),
        ),
    ];
    let deviants: Vec<_> = scripts
        .into_iter()
        .map(|(name, script)| spawn_deviant(&federation, &address, &name, script))
        .collect();
    for task in honest {
        let outcome = task
            .await
            .unwrap()
            .expect("an honest participant never exits");
        assert_eq!(
            outcome.rounds_completed, 1,
            "rounds 1 and 2 aborted a phase"
        );
    }
    let outcome = coordinator.await.unwrap().expect("the federation finishes");
    let logs = futures_join(deviants).await;
    let summary: Vec<(u32, u32, bool, bool)> = outcome
        .rounds
        .iter()
        .map(|r| (r.round, r.participants, r.fit_aborted, r.quality.is_some()))
        .collect();
    // Round 1: the fit sum did not match the commitments, so it aborted. Round 2: org-5's
    // forged proof refused (four fitted), the evaluation aborted on org-4's out-of-range input.
    // Round 3: four, evaluated.
    assert_eq!(
        summary,
        [
            (1, 0, true, false),
            (2, 4, false, false),
            (3, 4, false, true)
        ],
        "{logs:?}"
    );
    let second = outcome.rounds[1].culprits.join("\n");
    assert!(
        second.contains("org-5 (fit, masked input): malformed input-validity proof from 'org-5'"),
        "{second}"
    );
    assert!(outcome.rounds[0].culprits.is_empty());
    let clip = 50.0;
    assert!(
        outcome
            .model
            .weights
            .iter()
            .chain([&outcome.model.intercept])
            .all(|w| w.abs() <= clip),
        "{:?}",
        outcome.model.weights
    );
    assert!(outcome.model.quality.unwrap().accuracy > 0.6);
}

/// Runs `name` as a deviant following `script`, with its genuine certificate and key.
fn spawn_deviant(
    federation: &TestFederation,
    address: &str,
    name: &str,
    script: Script,
) -> tokio::task::JoinHandle<deviant::DeviantLog> {
    let pki = &federation.layout.pki;
    let client = federation.client(name, address);
    let signer = Arc::new(
        Signer::load(
            &pki.join(format!("{name}.pem")),
            &pki.join(format!("{name}.key")),
        )
        .unwrap(),
    );
    let trust = Trust::load(&pki.join("ca.pem")).unwrap();
    tokio::spawn(async move {
        deviant::run(client, signer, trust, "contact-centre-consortium", script).await
    })
}

async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

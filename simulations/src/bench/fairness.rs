//! `accord bench fairness`: the encrypted fairness path in this process with real keys.
//!
//! P participants with real certificates run the fairness phase's secure aggregation: each
//! masks its per-group statistics (G groups × 24 counts: n, positives, predicted positives,
//! true positives and a 10-bin score histogram with positives per bin) and encrypts them with
//! tfhe's proof of well-formed encryption; the coordinator verifies every proof and commitment,
//! sums the ciphertexts, removes the masks and applies the disclosure policy on ciphertexts;
//! the auditor decrypts and computes every metric. Participants encrypt in parallel on this
//! machine's cores, as they would on their own machines. The decrypted result is checked
//! against the plain sum, so the benchmark never times a broken path. Key generation is timed
//! apart.

use accord_auditor::metrics::{self, Thresholds};
use accord_crypto::he::inputs::{MASK_RING, seal};
use accord_crypto::he::keys::AuditorKeys;
use accord_crypto::he::{EncryptedInputs, FairnessPolicy, HeError};
use accord_crypto::pki::{ConsortiumCa, PkiError, Role};
use accord_crypto::secagg::ParticipantSession;
use accord_crypto::secagg::{Context, Requirements, SecAggError};
use accord_crypto::secagg::{CoordinatorSession, StageClosed};
use accord_crypto::secagg::{IdentityError, Signer, Trust};
use accord_proto::fairness::{FairnessLayout, FairnessLayoutError, GroupStatistics};
use accord_proto::v1::{Phase, ProtectedAttribute, Schema, SecAggRelay, SignedStageMessage};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

/// Histogram bins per group, as a federation's default.
const BINS: usize = 10;

/// What to run.
#[derive(Debug, Clone)]
pub struct FairnessBench {
    /// Participants encrypting group counts.
    pub participants: usize,
    /// Protected-attribute groups, each with its histograms.
    pub groups: usize,
    /// Bits per encrypted value.
    pub value_bits: u32,
    /// Seeds the planted counts and the keys' randomness: a run is repeatable.
    pub seed: u64,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct FairnessBenchReport {
    /// Participants that encrypted.
    pub participants: usize,
    /// Protected-attribute groups.
    pub groups: usize,
    /// Encrypted values each participant sends: the length of the fairness layout.
    pub values_per_participant: usize,
    /// Bits per encrypted value.
    pub value_bits: u32,
    /// Auditor key generation (client, compressed server and compact public keys, proof
    /// parameters), reported apart.
    pub keygen_secs: f64,
    /// Mean per participant: masking, encryption and proof.
    pub encrypt_secs_per_participant: f64,
    /// Proof and commitment verification, homomorphic sum, unmasking and the disclosure policy.
    pub coordinator_secs: f64,
    /// Decryption and metrics.
    pub auditor_secs: f64,
    /// From the first participant's setup to the auditor's metrics (key generation excluded).
    pub total_secs: f64,
    /// Bytes of ciphertext and proof one participant uploads.
    pub ciphertext_bytes_per_participant: usize,
    /// Groups the policy suppressed (planted below the minimum size).
    pub suppressed_groups: usize,
    /// The decrypted aggregate equals the plain sum with the policy applied.
    pub correct: bool,
}

impl FairnessBenchReport {
    /// The report as one JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report serializes")
    }

    /// The report as a two-column text table, one measure per line.
    pub fn table(&self) -> String {
        format!(
            "participants                      {}\ngroups                            {}\nvalues per participant            {} ({} bits each)\nkey generation (apart)            {:.2} s\nencrypt + prove per participant   {:.2} s\ncoordinator (verify, sum, policy) {:.2} s\nauditor (decrypt, metrics)        {:.2} s\ntotal                             {:.2} s\nciphertext per participant        {} bytes\nsuppressed groups                 {}\ncorrect                           {}\n",
            self.participants,
            self.groups,
            self.values_per_participant,
            self.value_bits,
            self.keygen_secs,
            self.encrypt_secs_per_participant,
            self.coordinator_secs,
            self.auditor_secs,
            self.total_secs,
            self.ciphertext_bytes_per_participant,
            self.suppressed_groups,
            self.correct
        )
    }
}

/// Why the fairness benchmark did not produce a figure. The message is what failed; the cause
/// is its source.
#[derive(Debug, thiserror::Error)]
pub enum FairnessBenchError {
    /// Fewer than 2 participants or 2 groups.
    #[error("at least 2 participants and 2 groups are needed")]
    TooSmall,
    /// The groups give no fairness layout.
    #[error("the benchmark's groups")]
    Layout(#[source] FairnessLayoutError),
    /// The temporary folder for the benchmark's certificates.
    #[error("temporary directory for the benchmark's certificates")]
    Io(#[source] std::io::Error),
    /// The benchmark's consortium CA or a participant certificate.
    #[error("benchmark certificates")]
    Pki(#[source] PkiError),
    /// A participant's signing identity or the CA's trust anchor.
    #[error("benchmark identity")]
    Identity(#[source] IdentityError),
    /// Keys, encryption or the aggregate's file form (`step` says which).
    #[error("{step}")]
    Encrypted {
        /// What was being done.
        step: &'static str,
        /// What tfhe or the file form refused.
        #[source]
        source: HeError,
    },
    /// A secure-aggregation stage failed.
    #[error("fairness phase")]
    Protocol(#[source] SecAggError),
    /// The aggregation ended at the wrong stage, or the decrypted aggregate is not the plain
    /// sum: the benchmark never times a broken path.
    #[error("{0}")]
    WrongResult(&'static str),
}

/// A layout with exactly `groups` groups: one protected attribute with groups − 1 categories
/// (plus `unknown`).
fn layout(groups: usize) -> Result<FairnessLayout, FairnessBenchError> {
    let schema = Schema {
        protected_attributes: vec![ProtectedAttribute {
            name: "segment".into(),
            categories: (1..groups).map(|i| format!("s{i}")).collect(),
            use_as_feature: false,
        }],
        ..Default::default()
    };
    FairnessLayout::new(&schema, BINS).map_err(FairnessBenchError::Layout)
}

/// Random but consistent statistics for each group: the last group stays tiny so the policy
/// has something to suppress.
fn statistics(layout: &FairnessLayout, rng: &mut impl Rng) -> Vec<u64> {
    (0..layout.groups())
        .flat_map(|g| {
            let n: u64 = if g + 1 == layout.groups() {
                1
            } else {
                rng.random_range(200..2000)
            };
            let mut bins = vec![0u64; BINS];
            let mut positives = vec![0u64; BINS];
            for _ in 0..n {
                let bin = rng.random_range(0..BINS);
                bins[bin] += 1;
                positives[bin] += u64::from(rng.random_bool((bin as f64 + 0.5) / BINS as f64));
            }
            let high = BINS / 2..BINS;
            GroupStatistics {
                n,
                positives: positives.iter().sum(),
                predicted_positives: bins[high.clone()].iter().sum(),
                true_positives: positives[high].iter().sum(),
                bin_counts: bins,
                bin_positives: positives,
            }
            .to_values()
        })
        .collect()
}

/// Hands each participant's message of a stage to the coordinator; returns the seconds it took.
fn deliver(
    coordinator: &mut CoordinatorSession<EncryptedInputs>,
    signers: &[Arc<Signer>],
    messages: Vec<SignedStageMessage>,
) -> Result<f64, FairnessBenchError> {
    let t = Instant::now();
    for (signer, message) in signers.iter().zip(messages) {
        coordinator
            .receive(signer.name(), signer.certificate_der(), message)
            .map_err(FairnessBenchError::Protocol)?;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Closes a stage that must lead to another.
fn close(coordinator: &mut CoordinatorSession<EncryptedInputs>) -> Result<(), FairnessBenchError> {
    match coordinator
        .close_stage()
        .map_err(FairnessBenchError::Protocol)?
    {
        StageClosed::Next(_) => Ok(()),
        StageClosed::Done { .. } => Err(FairnessBenchError::WrongResult(
            "the aggregation ended early",
        )),
    }
}

/// One stage in which every participant answers the coordinator's relay: the answers delivered
/// (timed) and the stage closed. Returns the coordinator's seconds.
fn exchange(
    coordinator: &mut CoordinatorSession<EncryptedInputs>,
    signers: &[Arc<Signer>],
    sessions: &mut [ParticipantSession],
    answer: impl Fn(&mut ParticipantSession, &SecAggRelay) -> Result<SignedStageMessage, SecAggError>,
) -> Result<f64, FairnessBenchError> {
    let messages = sessions
        .iter_mut()
        .map(|s| answer(s, &coordinator.relay_for(s.name())))
        .collect::<Result<Vec<_>, _>>()
        .map_err(FairnessBenchError::Protocol)?;
    let secs = deliver(coordinator, signers, messages)?;
    close(coordinator)?;
    Ok(secs)
}

/// Runs the benchmark; `progress` hears each step.
///
/// # Errors
/// [`FairnessBenchError`] naming the step that failed, or a decrypted aggregate that differs
/// from the plain sum.
pub fn run(
    spec: &FairnessBench,
    progress: impl Fn(&str),
) -> Result<FairnessBenchReport, FairnessBenchError> {
    let n = spec.participants;
    if n < 2 || spec.groups < 2 {
        return Err(FairnessBenchError::TooSmall);
    }
    let layout = layout(spec.groups)?;
    let min_group_size = 20;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(spec.seed);
    let inputs: Vec<Vec<u64>> = (0..n).map(|_| statistics(&layout, &mut rng)).collect();

    let pki = tempfile::tempdir().map_err(FairnessBenchError::Io)?;
    let ca = ConsortiumCa::init(pki.path(), "Accord Fairness Benchmark")
        .map_err(FairnessBenchError::Pki)?;
    let signers = (0..n)
        .map(|i| {
            let files = ca
                .issue(pki.path(), &format!("org-{i:02}"), Role::Participant, &[])
                .map_err(FairnessBenchError::Pki)?;
            let signer =
                Signer::load(&files.cert, &files.key).map_err(FairnessBenchError::Identity)?;
            Ok(Arc::new(signer))
        })
        .collect::<Result<Vec<_>, FairnessBenchError>>()?;
    let trust = Trust::load(&ca.ca_cert_path()).map_err(FairnessBenchError::Identity)?;
    let encrypted = |step| move |source| FairnessBenchError::Encrypted { step, source };

    progress("generating the auditor's keys");
    let keygen = Instant::now();
    let generated = AuditorKeys::generate().map_err(encrypted("the auditor's keys"))?;
    let keygen_secs = keygen.elapsed().as_secs_f64();
    let (keys, public, server) = (generated.keys, generated.public, generated.server);

    let context = Context {
        federation: "accord-bench".into(),
        round: 1,
        phase: Phase::Fairness,
    };
    let started = Instant::now();
    let mut coordinator_secs = 0.0;
    let names: BTreeSet<String> = signers.iter().map(|s| s.name().to_owned()).collect();
    let inputs_sum = EncryptedInputs::new(
        context.clone(),
        server.clone(),
        layout.len(),
        spec.value_bits,
        FairnessPolicy {
            fields: layout.fields(),
            min_group_size,
        },
        accord_crypto::he::inputs::default_threads(),
    )
    .map_err(encrypted("the coordinator's encrypted inputs"))?;
    let mut coordinator =
        CoordinatorSession::with_inputs(context.clone(), trust.clone(), inputs_sum, names, 0, 0)
            .map_err(FairnessBenchError::Protocol)?;
    let mut sessions = Vec::new();
    let mut messages: Vec<SignedStageMessage> = Vec::new();
    for signer in &signers {
        let (session, message) = ParticipantSession::start(
            signer.clone(),
            trust.clone(),
            context.clone(),
            Requirements::default(),
            &mut rand::rng(),
        );
        sessions.push(session);
        messages.push(message);
    }
    coordinator_secs += deliver(&mut coordinator, &signers, messages)?;
    close(&mut coordinator)?;
    coordinator_secs += exchange(&mut coordinator, &signers, &mut sessions, |s, relay| {
        s.share_keys(relay, &mut rand::rng())
    })?;

    progress("participants mask, encrypt and prove their statistics");
    let relays: Vec<_> = sessions
        .iter()
        .map(|s| coordinator.relay_for(s.name()))
        .collect();
    let bits = spec.value_bits;
    let sealed: Vec<(SignedStageMessage, f64, usize)> = sessions
        .par_iter_mut()
        .zip(relays.par_iter())
        .zip(inputs.par_iter())
        .map(|((session, relay), input)| {
            let t = Instant::now();
            let context = session.context().clone();
            let mut bytes = 0;
            let masked = session.masked_input_with(relay, input.clone(), MASK_RING, |sealed| {
                let body = seal(&public, &context, sealed, bits, None)?;
                bytes = body.len();
                Ok(body)
            })?;
            Ok((masked.message, t.elapsed().as_secs_f64(), bytes))
        })
        .collect::<Result<_, SecAggError>>()
        .map_err(FairnessBenchError::Protocol)?;
    let encrypt_secs_per_participant = sealed.iter().map(|s| s.1).sum::<f64>() / n as f64;
    let ciphertext_bytes_per_participant = sealed.iter().map(|s| s.2).sum::<usize>() / n;

    progress("the coordinator verifies, sums and applies the disclosure policy");
    let sealed = sealed.into_iter().map(|s| s.0).collect();
    coordinator_secs += deliver(&mut coordinator, &signers, sealed)?;
    // Closing the masked-input stage verifies the proofs, expands and sums the lists.
    let t = Instant::now();
    close(&mut coordinator)?;
    coordinator_secs += t.elapsed().as_secs_f64();
    coordinator_secs += exchange(&mut coordinator, &signers, &mut sessions, |s, relay| {
        s.consistency_check(relay)
    })?;
    let messages = sessions
        .iter_mut()
        .map(|s| s.unmask(&coordinator.relay_for(s.name())))
        .collect::<Result<Vec<_>, _>>()
        .map_err(FairnessBenchError::Protocol)?;
    coordinator_secs += deliver(&mut coordinator, &signers, messages)?;
    let t = Instant::now();
    let StageClosed::Done { sum, .. } = coordinator
        .close_stage()
        .map_err(FairnessBenchError::Protocol)?
    else {
        return Err(FairnessBenchError::WrongResult(
            "the aggregation did not finish after unmasking",
        ));
    };
    coordinator_secs += t.elapsed().as_secs_f64();
    let bytes = sum
        .to_bytes(&context.federation, context.round)
        .map_err(encrypted("the aggregate file"))?;
    let aggregate = accord_crypto::he::inputs::OpenedAggregate::from_bytes(&bytes)
        .map_err(encrypted("the aggregate file"))?;

    progress("the auditor decrypts and computes the metrics");
    let t = Instant::now();
    let (values, kept) = keys.decrypt(&aggregate.values, &aggregate.kept);
    let counts: Vec<Option<GroupStatistics>> = layout
        .read(&values)
        .into_iter()
        .zip(&kept)
        .map(|(s, &k)| k.then_some(s))
        .collect();
    let thresholds = Thresholds {
        min_group_size,
        small_group_size: 100,
        four_fifths: 0.8,
        decision_threshold: 0.5,
        confidence: 0.95,
        histogram_bins: BINS,
    };
    let computed = metrics::compute(&layout, &counts, &thresholds);
    let auditor_secs = t.elapsed().as_secs_f64();
    let total_secs = started.elapsed().as_secs_f64();

    // The plain sum with the policy applied.
    let plain: Vec<u64> = (0..layout.len())
        .map(|i| inputs.iter().map(|v| v[i]).sum())
        .collect();
    let expected: Vec<Option<GroupStatistics>> = layout
        .read(&plain)
        .into_iter()
        .map(|s| (s.n >= min_group_size).then_some(s))
        .collect();
    let suppressed_groups = counts.iter().filter(|c| c.is_none()).count();
    let correct = counts == expected && computed.len() == layout.breakdowns.len();
    if !correct {
        return Err(FairnessBenchError::WrongResult(
            "the decrypted aggregate differs from the plain sum",
        ));
    }
    Ok(FairnessBenchReport {
        participants: n,
        groups: layout.groups(),
        values_per_participant: layout.len(),
        value_bits: bits,
        keygen_secs,
        encrypt_secs_per_participant,
        coordinator_secs,
        auditor_secs,
        total_secs,
        ciphertext_bytes_per_participant,
        suppressed_groups,
        correct,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_are_consistent_counts() {
        let layout = layout(3).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let values = statistics(&layout, &mut rng);
        for g in layout.read(&values) {
            assert_eq!(g.bin_counts.iter().sum::<u64>(), g.n);
            assert!(g.true_positives <= g.predicted_positives.min(g.positives));
        }
    }
}

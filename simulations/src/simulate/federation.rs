//! One simulated federation: the coordinator's round plan ([`RoundPlan`]) and every
//! participant's side of it ([`Contributor`]), each phase summed through the coordinator's
//! aggregation seam and, with secure aggregation, the real protocol state machines; only the
//! transport is in-process. Dropouts and stragglers are drawn from the experiment's seed, so
//! the same config gives the same numbers, and the same numbers as over gRPC.

use super::RunError;
use super::config::{ExperimentConfig, FaultConfig};
use accord_coordinator::aggregation::{self, Closed, PhaseSpec, Submission};
use accord_coordinator::{PhaseAbort, PhaseResult, RoundPlan};
use accord_crypto::secagg::{Context, Requirements, SecAggError};
use accord_crypto::secagg::{ParticipantSession, PhaseEncoding};
use accord_crypto::secagg::{Signer, Trust};
use accord_participant::Contributor;
use accord_participant::data::LocalDataset;
use accord_participant::model::{
    LogisticModel, Standardizer, TrainingParams, standardization_sums,
};
use accord_proto::artefact::{PostprocessingJson, Quality};
use accord_proto::layout::{StandardizationLayout, encoded_columns};
use accord_proto::mitigation::AttributeGaps;
use accord_proto::phase::PhaseVector;
use accord_proto::scheme::AggregationScheme;
use accord_proto::standardization::StandardizationError;
use accord_proto::v1::{
    FederationDefinition, Phase, PlainVector, ProtectedVector, Schema, SecAggParams, SecAggRelay,
    SecAggStage, SignedStageMessage, protected_vector::Scheme,
};
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

/// A simulated participant: its identity, and its records behind the participant's side of
/// the round plan.
pub struct Member {
    /// Its identity for secure aggregation (certificate and signing key).
    pub signer: Arc<Signer>,
    /// What it computes in each phase, as a node does.
    pub contributor: Contributor,
}

/// What one round left behind.
#[derive(Debug, Clone, Default)]
pub struct RoundOutcome {
    /// The round, from 1.
    pub round: u32,
    /// Participants whose fit contribution made the model.
    pub completed: usize,
    /// Participants that dropped (or missed the deadline) in the fit phase.
    pub dropped: usize,
    /// The fit aborted: the previous global model stays.
    pub aborted: bool,
    /// The fit made a new model but its evaluation aborted: the model is in force, unmeasured.
    pub evaluation_aborted: bool,
    /// Why the phase that aborted did ("" when none did).
    pub abort_reason: String,
    /// The quality of this round's model; None when its fit or its evaluation aborted.
    pub quality: Option<Quality>,
    /// (attribute, demographic-parity difference, equal-opportunity difference).
    pub gaps: Vec<(String, Option<f64>, Option<f64>)>,
    /// Bytes sent by participants over the round (encoded protocol messages).
    pub bytes_up: u64,
    /// Bytes sent to participants over the round (encoded protocol messages).
    pub bytes_down: u64,
    /// Seconds per stage (setup, share keys, masked input, consistency check, unmask), summed over
    /// the round's phases.
    pub stage_secs: [f64; 5],
    /// Wall-clock seconds the round took.
    pub secs: f64,
}

/// What the transport measured in one aggregation.
#[derive(Debug, Default)]
struct Traffic {
    /// Participants named for deviating, as the round's record states them.
    culprits: Vec<String>,
    dropped: usize,
    bytes_up: u64,
    bytes_down: u64,
    stage_secs: [f64; 5],
}

/// One simulated federation: the coordinator's side in-process, driving each member's contributor
/// round by round.
pub struct Simulation<'a> {
    /// The experiment being run.
    pub config: &'a ExperimentConfig,
    /// The federation's schema.
    pub schema: &'a Schema,
    /// The participants' signing keys, for secure-aggregation messages.
    pub trust: &'a Trust,
    /// The simulated participants.
    pub members: Vec<Member>,
    /// What the participants would receive from the coordinator.
    definition: FederationDefinition,
    /// The bounds the coordinator's phase vectors are built with (its `[secure_aggregation]`,
    /// whichever the aggregation).
    params: SecAggParams,
    /// What every simulated participant requires, as a node with the default
    /// `[requirements]` does.
    requirements: Requirements,
    rng: ChaCha20Rng,
}

/// The stages a participant can drop out at, in order.
const STAGES: [SecAggStage; 4] = [
    SecAggStage::Setup,
    SecAggStage::ShareKeys,
    SecAggStage::MaskedInput,
    SecAggStage::Unmask,
];

/// The seed simulated participant `index` (from 0) is configured with, as its participant.toml
/// `seed` would be, under either transport: drawn from the experiment's seed, and within TOML's
/// integers.
pub(crate) fn node_seed(experiment_seed: u64, index: usize) -> u64 {
    experiment_seed
        .wrapping_mul(0x2545_F491_4F6C_DD1D)
        .wrapping_add(index as u64 + 1)
        & i64::MAX as u64
}

/// The slot of a stage in `stage_secs`: setup, share keys, masked input, consistency check,
/// unmask.
fn slot(stage: SecAggStage) -> usize {
    match stage {
        SecAggStage::Setup => 0,
        SecAggStage::ShareKeys => 1,
        SecAggStage::MaskedInput => 2,
        SecAggStage::ConsistencyCheck => 3,
        _ => 4,
    }
}

impl<'a> Simulation<'a> {
    /// A simulation of `config`'s federation, whose `definition` ([`ExperimentConfig::definition`])
    /// the members' data were admitted under ([`accord_participant::data::admit`]).
    pub fn new(
        config: &'a ExperimentConfig,
        definition: FederationDefinition,
        schema: &'a Schema,
        trust: &'a Trust,
        members: Vec<Member>,
    ) -> Self {
        let p = &config.privacy;
        let params = p.params();
        Self {
            config,
            schema,
            trust,
            members,
            definition,
            requirements: Requirements::new(
                &params,
                0,
                accord_participant::Requirements::default().min_threshold,
            ),
            params,
            rng: fault_rng(config.seed),
        }
    }

    fn secure(&self) -> bool {
        self.config.privacy.aggregation == AggregationScheme::SecAgg.name()
    }

    fn draw_dropouts(&mut self) -> Vec<Option<SecAggStage>> {
        draw_dropouts(&self.config.faults, self.members.len(), &mut self.rng)
    }

    /// Sums `inputs` (one per member) for a phase, as the coordinator would: the sum and its
    /// contributors, or why the phase aborted; `traffic` gets what the transport measured.
    fn aggregate(
        &mut self,
        round: u32,
        phase: Phase,
        vector: PhaseVector,
        inputs: &[Vec<f64>],
        traffic: &mut Traffic,
    ) -> Result<(Vec<f64>, BTreeSet<String>), PhaseAbort> {
        let stops = self.draw_dropouts();
        traffic.dropped = stops.iter().filter(|s| s.is_some()).count();
        let names: BTreeSet<String> = self
            .members
            .iter()
            .map(|m| m.signer.name().to_owned())
            .collect();
        let context = Context {
            federation: self.config.name.clone(),
            round,
            phase,
        };
        let scheme = if self.secure() {
            AggregationScheme::SecAgg
        } else {
            AggregationScheme::InsecurePlain
        };
        let spec = PhaseSpec {
            context: context.clone(),
            vector: vector.clone(),
            selected: names,
            params: &self.params,
            trust: self.trust,
        };
        let mut aggregator = aggregation::start(scheme, spec)?;
        if !self.secure() {
            let started = Instant::now();
            for ((member, input), stop) in self.members.iter().zip(inputs).zip(&stops) {
                if stop.is_some() {
                    continue;
                }
                let vector = ProtectedVector {
                    scheme: Some(Scheme::Plain(PlainVector {
                        values: input.clone(),
                    })),
                };
                traffic.bytes_up += vector.encoded_len() as u64;
                aggregator.accept(member.signer.name(), Submission::Plain(vector))?;
            }
            let closed = aggregator.close_stage()?;
            traffic.stage_secs[2] = started.elapsed().as_secs_f64();
            return match closed {
                Closed::Done { sum, contributors } => Ok((sum, contributors)),
                Closed::Next => unreachable!("insecure-plain has one stage"),
            };
        }

        // Secure aggregation: the participant sessions and the coordinator seam, stage by stage.
        let started = Instant::now();
        let mut sessions: Vec<Option<ParticipantSession>> = Vec::with_capacity(self.members.len());
        for (member, stop) in self.members.iter().zip(&stops) {
            if *stop == Some(SecAggStage::Setup) {
                sessions.push(None);
                continue;
            }
            let (session, message) = ParticipantSession::start(
                member.signer.clone(),
                self.trust.clone(),
                context.clone(),
                self.requirements,
                // Key material from the operating system, as in production; the faults'
                // generator stays untouched, so every transport draws the same dropouts.
                &mut rand::rng(),
            );
            traffic.bytes_up += message.encoded_len() as u64;
            let submitted = aggregator.accept(member.signer.name(), signed(member, message));
            sessions.push(submitted.is_ok().then_some(session));
        }
        traffic.stage_secs[0] += started.elapsed().as_secs_f64();
        let mut summands = 0;
        loop {
            let started = Instant::now();
            let closed = aggregator.close_stage();
            traffic.culprits = aggregator
                .culprits()
                .iter()
                .map(|c| PhaseResult::culprit_line(phase, c))
                .collect();
            if let Closed::Done { sum, contributors } = closed? {
                traffic.stage_secs[4] += started.elapsed().as_secs_f64();
                return Ok((sum, contributors));
            }
            let stage = aggregator.stage();
            let slot = slot(stage);
            let relays: Vec<Option<SecAggRelay>> = self
                .members
                .iter()
                .zip(&sessions)
                .zip(&stops)
                .map(|((member, session), stop)| {
                    let gone = stop.is_some_and(|s| s as i32 <= stage as i32);
                    (session.is_some() && !gone)
                        .then(|| aggregator.relay(member.signer.name()))
                        .flatten()
                })
                .collect();
            if stage == SecAggStage::ShareKeys {
                summands = relays
                    .iter()
                    .flatten()
                    .next()
                    .map_or(0, |r| r.selected.len());
            }
            // One encoding for every member, as each would build it from its relay.
            let secured = PhaseEncoding::new(&vector, &self.params, summands);
            let seeds: Vec<u64> = (0..sessions.len()).map(|_| rand::rng().random()).collect();
            let messages: Vec<Option<Result<SignedStageMessage, SecAggError>>> =
                parallel_map(&mut sessions, |i, session| {
                    let relay = relays[i].as_ref()?;
                    let session = session.as_mut()?;
                    let mut rng = ChaCha20Rng::seed_from_u64(seeds[i]);
                    Some(match stage {
                        SecAggStage::ShareKeys => session.share_keys(relay, &mut rng),
                        SecAggStage::MaskedInput => match &secured {
                            Ok(secured) => session
                                .masked_input(
                                    relay,
                                    &inputs[i],
                                    &secured.encoding,
                                    secured.statement.as_ref(),
                                )
                                .map(|(masked, _)| masked.message),
                            Err(e) => Err(e.clone()),
                        },
                        SecAggStage::ConsistencyCheck => session.consistency_check(relay),
                        _ => session.unmask(relay),
                    })
                });
            for (((member, relay), message), session) in self
                .members
                .iter()
                .zip(&relays)
                .zip(messages)
                .zip(sessions.iter_mut())
            {
                let Some(message) = message else { continue };
                traffic.bytes_down += relay.as_ref().map_or(0, |r| r.encoded_len() as u64);
                match message {
                    Ok(message) => {
                        traffic.bytes_up += message.encoded_len() as u64;
                        // A refused message is the protocol working: that participant drops.
                        let _ = aggregator.accept(member.signer.name(), signed(member, message));
                    }
                    // A participant whose session refuses (as a node would, e.g. too few valid
                    // shares in a sparse graph with dropouts) sits the rest of the phase out.
                    Err(source @ (SecAggError::Encoding(_) | SecAggError::Validity(_))) => {
                        return Err(PhaseAbort::Input {
                            participant: member.signer.name().to_owned(),
                            source,
                        });
                    }
                    Err(_) => *session = None,
                }
            }
            traffic.stage_secs[slot] += started.elapsed().as_secs_f64();
        }
    }
}

impl Simulation<'_> {
    /// The federation's round plan ([`RoundPlan`]) phase by phase: every member contributes
    /// through its [`accord_participant::Contributor`] from the global model the plan hands
    /// out, as a node does from the model it downloads; the contributions are summed through
    /// the aggregation (the transport); the plan takes the sum. `on_round` sees each round as
    /// it finishes.
    pub fn run(
        &mut self,
        mut on_round: impl FnMut(&RoundOutcome),
    ) -> Result<SimulationResult, RunError> {
        let mut plan = RoundPlan::new(
            self.definition.clone(),
            encoded_columns(self.schema),
            self.params.clone(),
        );
        let mut outcomes = Vec::new();
        // What the transport measured for the round under way.
        let mut transport = RoundOutcome::default();
        let mut started = Instant::now();
        while let Some(request) = plan.configure()? {
            if request.phase == Phase::Fit {
                transport = RoundOutcome::default();
                started = Instant::now();
            }
            let model = plan.global_model(request.round);
            let inputs: Vec<Vec<f64>> = self
                .members
                .iter_mut()
                .map(|member| {
                    let contributor = &mut member.contributor;
                    let contributed = match &model {
                        Some(model) if request.phase != Phase::Standardize => contributor
                            .accept_model(request.round, model.clone())
                            .and_then(|()| contributor.contribute(request.round, request.phase)),
                        _ => contributor.contribute(request.round, request.phase),
                    };
                    contributed.map_err(|source| RunError::Contribution {
                        participant: member.signer.name().to_owned(),
                        source,
                    })
                })
                .collect::<Result<_, RunError>>()?;
            let mut aggregate = Traffic::default();
            let sum = self.aggregate(
                request.round,
                request.phase,
                request.vector,
                &inputs,
                &mut aggregate,
            );
            if matches!(request.phase, Phase::Fit | Phase::Evaluate) {
                transport.bytes_up += aggregate.bytes_up;
                transport.bytes_down += aggregate.bytes_down;
                for (total, secs) in transport.stage_secs.iter_mut().zip(aggregate.stage_secs) {
                    *total += secs;
                }
                if request.phase == Phase::Fit {
                    transport.dropped = aggregate.dropped;
                }
            }
            let result = PhaseResult {
                sum,
                culprits: aggregate.culprits,
            };
            if let Some(round) = plan.aggregate(result)? {
                let record = plan.history().last().expect("the closed round's record");
                debug_assert_eq!(record.round, round);
                let outcome = RoundOutcome {
                    round,
                    completed: record.participants as usize,
                    aborted: record.fit_aborted,
                    evaluation_aborted: record.evaluation_aborted,
                    abort_reason: record.abort_reason.clone(),
                    quality: record.quality,
                    gaps: gap_tuples(&record.gaps),
                    secs: started.elapsed().as_secs_f64(),
                    ..std::mem::take(&mut transport)
                };
                on_round(&outcome);
                outcomes.push(outcome);
            }
        }
        let (weights, intercept) = plan.model().cloned().unwrap_or_default();
        Ok(SimulationResult {
            rounds: outcomes,
            model: LogisticModel {
                weights: weights.into(),
                intercept,
            },
            postprocessed: plan.postprocessing().map(|thresholds| {
                let thresholded = plan.thresholded().cloned().unwrap_or_default();
                Postprocessed {
                    thresholds: thresholds.clone(),
                    quality: thresholded.quality,
                    gaps: gap_tuples(&thresholded.gaps),
                }
            }),
        })
    }
}

/// Gaps as the simulator's outputs hold them: (attribute, demographic parity, equal
/// opportunity).
pub(crate) fn gap_tuples(gaps: &[AttributeGaps]) -> Vec<(String, Option<f64>, Option<f64>)> {
    gaps.iter()
        .map(|g| {
            (
                g.attribute.clone(),
                g.demographic_parity,
                g.equal_opportunity,
            )
        })
        .collect()
}

/// The final model with the per-group thresholds in force, as the participants' own
/// evaluation with those thresholds measured it.
#[derive(Debug, Clone)]
pub struct Postprocessed {
    /// The per-group thresholds chosen after the last round.
    pub thresholds: PostprocessingJson,
    /// The final model's quality with those thresholds; None when the evaluation aborted.
    pub quality: Option<Quality>,
    /// (attribute, demographic-parity difference, equal-opportunity difference).
    pub gaps: Vec<(String, Option<f64>, Option<f64>)>,
}

/// What a simulated federation left behind.
#[derive(Debug, Clone)]
pub struct SimulationResult {
    /// One outcome per round, in order.
    pub rounds: Vec<RoundOutcome>,
    /// The final global model.
    pub model: LogisticModel,
    /// The final model with per-group thresholds, when post-processing is configured.
    pub postprocessed: Option<Postprocessed>,
}

/// The final model's figures, as a summary row states them.
#[derive(Debug, Clone, PartialEq)]
pub struct FinalFigures {
    /// The accuracy with the per-group thresholds when they are in force.
    pub accuracy: Option<f64>,
    /// The accuracy with the single decision threshold.
    pub accuracy_before_thresholds: Option<f64>,
    /// (attribute, demographic-parity difference, equal-opportunity difference), with the
    /// thresholds when they are in force.
    pub gaps: Vec<(String, Option<f64>, Option<f64>)>,
}

impl SimulationResult {
    /// The round whose fit made the final model: the last that did not abort.
    pub fn last_fit(&self) -> Option<&RoundOutcome> {
        self.rounds.iter().rev().find(|o| !o.aborted)
    }

    /// The final model's figures: that round's evaluation's, undefined when it aborted (never
    /// an earlier model's); with per-group thresholds in force, the participants' evaluation
    /// with them, undefined when that aborted (the thresholds' own estimate from the
    /// histograms is another figure, never a stand-in).
    pub fn final_figures(&self) -> FinalFigures {
        let last = self.last_fit();
        let trained = last.and_then(|o| o.quality).map(|q| q.accuracy);
        let (accuracy, gaps) = match &self.postprocessed {
            Some(post) => (post.quality.map(|q| q.accuracy), post.gaps.clone()),
            None => (trained, last.map(|o| o.gaps.clone()).unwrap_or_default()),
        };
        FinalFigures {
            accuracy,
            accuracy_before_thresholds: trained,
            gaps,
        }
    }
}

/// The same model trained on the pooled data with the same standardization and as many epochs
/// as the federation's rounds × local epochs: its accuracy on the pooled data.
pub(crate) fn centralized_accuracy(
    config: &ExperimentConfig,
    definition: &FederationDefinition,
    datasets: &[&LocalDataset],
) -> Result<f64, StandardizationError> {
    let views: Vec<_> = datasets.iter().map(|d| d.features.view()).collect();
    let x = ndarray::concatenate(ndarray::Axis(0), &views).expect("same columns");
    let y: ndarray::Array1<f64> = datasets
        .iter()
        .flat_map(|d| d.labels.iter().copied())
        .collect();
    let layout =
        StandardizationLayout::new(definition.schema.as_ref().unwrap_or(&Schema::default()))?;
    let sums = standardization_sums(&layout, &x)?;
    let z = Standardizer::from_sums(&layout, &sums)?.apply(&x);
    let federated = TrainingParams::from(definition.training.unwrap_or_default());
    let params = TrainingParams {
        epochs: federated.epochs * definition.rounds,
        proximal_mu: 0.0,
        ..federated
    };
    let model = LogisticModel::zeros(x.ncols()).train(z.view(), y.view(), &params, config.seed);
    let threshold = definition.evaluation.unwrap_or_default().decision_threshold;
    let counts = model.evaluate(z.view(), y.view(), 2, threshold);
    Ok((counts.tp + counts.tn) / counts.n.max(1.0))
}

/// The stage at which each of `n` participants stops in the next aggregation (None: it
/// finishes): independent per-stage dropouts, and stragglers that miss the masked-input
/// deadline.
pub(crate) fn draw_dropouts(
    f: &FaultConfig,
    n: usize,
    rng: &mut ChaCha20Rng,
) -> Vec<Option<SecAggStage>> {
    let probabilities = [
        f.dropout.setup,
        f.dropout.share_keys,
        f.dropout.masked_input,
        f.dropout.unmask,
    ];
    (0..n)
        .map(|_| {
            let mut stop = None;
            for (stage, p) in STAGES.iter().zip(probabilities) {
                if stop.is_none() && rng.random_bool(p) {
                    stop = Some(*stage);
                }
            }
            let straggles = rng.random_bool(f.stragglers);
            let delay = if f.straggler_mean_secs > 0.0 {
                -f.straggler_mean_secs * (1.0 - rng.random::<f64>()).ln()
            } else {
                0.0
            };
            if stop.is_none() && straggles && delay > f.deadline_secs {
                stop = Some(SecAggStage::MaskedInput);
            }
            stop
        })
        .collect()
}

/// A fresh dropout generator for an experiment's seed.
pub(crate) fn fault_rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed ^ 0xfa17_5eed)
}

fn signed(member: &Member, message: SignedStageMessage) -> Submission {
    Submission::Signed {
        certificate_der: Arc::new(member.signer.certificate_der().to_vec()),
        message,
    }
}

/// `f` over every element, spread over the machine's cores; results in order.
fn parallel_map<T: Send, R: Send>(
    items: &mut [T],
    f: impl Fn(usize, &mut T) -> R + Sync,
) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(1);
    let chunk = items.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks_mut(chunk)
            .enumerate()
            .map(|(c, slice)| {
                let f = &f;
                scope.spawn(move || {
                    slice
                        .iter_mut()
                        .enumerate()
                        .map(|(i, item)| f(c * chunk + i, item))
                        .collect::<Vec<R>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a simulated participant panicked"))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use accord_coordinator::CoordinatorConfig;
    use accord_participant::data::LocalDataset;
    use accord_proto::v1::GlobalModel;
    use ndarray::{Array1, Array2};
    use std::path::Path;

    /// The final figures are the last fitted model's, with its thresholds when they are in
    /// force; an evaluation that aborted leaves them undefined, never another model's or the
    /// histograms' estimate.
    #[test]
    fn final_figures_are_the_last_models_or_undefined() {
        let quality = |round, accuracy| Quality {
            round,
            samples: 100,
            accuracy,
            log_loss: 0.5,
            brier: 0.2,
            auc: Some(0.8),
            positive_rate: 0.4,
        };
        let gaps = |gap| vec![("gender".to_owned(), Some(gap), None)];
        let fitted = |round, measured: Option<f64>| RoundOutcome {
            round,
            evaluation_aborted: measured.is_none(),
            quality: measured.map(|accuracy| quality(round, accuracy)),
            gaps: measured.map(gaps).unwrap_or_default(),
            ..RoundOutcome::default()
        };
        let aborted = RoundOutcome {
            round: 3,
            aborted: true,
            ..RoundOutcome::default()
        };
        let result = |rounds, postprocessed| SimulationResult {
            rounds,
            model: LogisticModel::zeros(1),
            postprocessed,
        };
        // Round 3's fit aborted: round 2's model and figures stand.
        let figures = result(
            vec![fitted(1, Some(0.7)), fitted(2, Some(0.8)), aborted.clone()],
            None,
        )
        .final_figures();
        assert_eq!(figures.accuracy, Some(0.8));
        assert_eq!(figures.accuracy_before_thresholds, Some(0.8));
        assert_eq!(figures.gaps, gaps(0.8));
        // Round 2's evaluation aborted: its model is in force, unmeasured; round 1's figures
        // are not borrowed.
        let figures = result(vec![fitted(1, Some(0.7)), fitted(2, None)], None).final_figures();
        assert_eq!(figures.accuracy, None);
        assert!(figures.gaps.is_empty());
        // Thresholds in force: their evaluation's figures, or none when it aborted, though the
        // histograms estimated an accuracy after them.
        let thresholds = PostprocessingJson {
            thresholds: "equal_opportunity".into(),
            attribute: "gender".into(),
            strength: 1.0,
            min_group_size: 10,
            histogram_bins: 10,
            groups: Vec::new(),
            accuracy_before: Some(0.8),
            gap_before: Some(0.2),
            accuracy_after: Some(0.79),
            gap_after: Some(0.05),
            quality: None,
        };
        let measured = Postprocessed {
            thresholds: thresholds.clone(),
            quality: Some(quality(2, 0.78)),
            gaps: gaps(0.04),
        };
        let figures = result(
            vec![fitted(1, Some(0.7)), fitted(2, Some(0.8))],
            Some(measured),
        )
        .final_figures();
        assert_eq!(figures.accuracy, Some(0.78));
        assert_eq!(figures.accuracy_before_thresholds, Some(0.8));
        assert_eq!(figures.gaps, gaps(0.04));
        let unmeasured = Postprocessed {
            thresholds,
            quality: None,
            gaps: Vec::new(),
        };
        let figures = result(
            vec![fitted(1, Some(0.7)), fitted(2, Some(0.8))],
            Some(unmeasured),
        )
        .final_figures();
        assert_eq!(figures.accuracy, None);
        assert_eq!(figures.accuracy_before_thresholds, Some(0.8));
        assert!(figures.gaps.is_empty());
    }

    /// One participant with FairFed, per-group thresholds and group gaps through a whole
    /// federation, its contributions summed by nobody but itself: in every phase it builds the
    /// vector the coordinator's plan asks for, and the plan takes its contribution.
    #[test]
    fn a_participant_builds_every_phase_vector_as_the_plan_asks_for_it() {
        let text = super::super::COORDINATOR_EXAMPLE
            .replace("\nrounds = 10", "\nrounds = 2")
            .replace("\nmin_participants = 3", "\nmin_participants = 1")
            .replace("[evaluation]\n", "[evaluation]\ngroup_gaps = true\n")
            + "\n[training.mitigation]\nkind = \"fairfed\"\nstrength = 0.5\nattribute = \"age_band\"\n\
               \n[postprocessing]\nthresholds = \"equal_opportunity\"\nattribute = \"age_band\"\n";
        let config = CoordinatorConfig::parse(&text, Path::new("coordinator.toml")).unwrap();
        let definition = accord_coordinator::definition(&config, None);
        let schema = definition.schema.clone().unwrap();
        let columns = encoded_columns(&schema);
        let rows = 40;
        let data = LocalDataset {
            features: Array2::from_shape_fn((rows, columns.len()), |(r, c)| ((r + c) % 2) as f64),
            labels: Array1::from_shape_fn(rows, |r| (r % 3 == 0) as u8 as f64),
            groups: schema
                .protected_attributes
                .iter()
                .map(|a| {
                    (
                        a.name.clone(),
                        (0..rows).map(|r| r % (a.categories.len() + 1)).collect(),
                    )
                })
                .collect(),
        };
        let mut contributor = Contributor::new(definition.clone(), data, 7);
        let mut plan = RoundPlan::new(definition, columns, config.secure_aggregation.params());
        let mut asked = Vec::new();
        while let Some(request) = plan.configure().unwrap() {
            if request.phase != Phase::Standardize {
                let model = plan.global_model(request.round).unwrap();
                contributor.accept_model(request.round, model).unwrap();
            }
            assert_eq!(
                contributor.vector(request.phase).unwrap(),
                request.vector,
                "round {} {}",
                request.round,
                request.phase.label()
            );
            let values = contributor
                .contribute(request.round, request.phase)
                .unwrap();
            assert_eq!(values.len(), request.vector.len());
            asked.push((request.round, request.phase));
            let sum = Ok((values, BTreeSet::from(["org-1".to_owned()])));
            plan.aggregate(PhaseResult {
                sum,
                culprits: Vec::new(),
            })
            .unwrap();
        }
        use Phase::*;
        assert_eq!(
            asked,
            [
                (0, Standardize),
                (1, Fit),
                (1, Evaluate),
                (2, Fit),
                (2, Evaluate),
                (2, EvaluateThresholds)
            ]
        );
        // Every round measured, gaps for every attribute, and the thresholds measured too.
        for record in plan.history() {
            assert!(record.quality.is_some(), "{record:?}");
            assert_eq!(record.gaps.len(), schema.protected_attributes.len());
        }
        assert!(plan.postprocessing().unwrap().quality.is_some());
        assert_eq!(
            contributor.thresholds().len(),
            5,
            "18-29, 30-44, 45-59, 60+, unknown"
        );
    }

    /// A coordinator that alters the global model it sends (a weight missing, other columns, a
    /// NaN standard deviation, thresholds for too few groups) is refused with the reason, and
    /// the participant keeps the model it had.
    #[test]
    fn a_participant_refuses_an_altered_global_model_naming_what_is_wrong() {
        let text = super::super::COORDINATOR_EXAMPLE
            .replace("\nmin_participants = 3", "\nmin_participants = 1")
            + "\n[postprocessing]\nthresholds = \"equal_opportunity\"\nattribute = \"age_band\"\n";
        let config = CoordinatorConfig::parse(&text, Path::new("coordinator.toml")).unwrap();
        let definition = accord_coordinator::definition(&config, None);
        let schema = definition.schema.clone().unwrap();
        let columns = encoded_columns(&schema);
        let rows = 10;
        let data = LocalDataset {
            features: Array2::from_shape_fn((rows, columns.len()), |(r, c)| ((r + c) % 2) as f64),
            labels: Array1::from_shape_fn(rows, |r| (r % 2) as f64),
            groups: schema
                .protected_attributes
                .iter()
                .map(|a| (a.name.clone(), vec![0; rows]))
                .collect(),
        };
        let mut contributor = Contributor::new(definition.clone(), data, 1);
        let mut plan = RoundPlan::new(definition, columns, config.secure_aggregation.params());
        let sums = contributor.contribute(0, Phase::Standardize).unwrap();
        let sum = Ok((sums, BTreeSet::from(["org-1".to_owned()])));
        plan.aggregate(PhaseResult {
            sum,
            culprits: Vec::new(),
        })
        .unwrap();
        let honest = plan.global_model(1).unwrap();
        contributor.accept_model(1, honest.clone()).unwrap();
        let before = contributor.contribute(1, Phase::Evaluate).unwrap();
        let mut nan = honest.clone();
        nan.standardization.as_mut().unwrap().std_devs[0] = f64::NAN;
        let mut thresholds = honest.clone();
        thresholds.feedback = Some(accord_proto::v1::MitigationFeedback {
            thresholds: vec![Default::default(); 2],
            ..Default::default()
        });
        let altered = [
            (
                GlobalModel {
                    weights: honest.weights[1..].to_vec(),
                    ..honest.clone()
                },
                "the coordinator sent a model with",
            ),
            (
                GlobalModel {
                    columns: honest.columns.iter().rev().cloned().collect(),
                    ..honest.clone()
                },
                "the model's columns differ from the schema's encoded columns",
            ),
            (nan, "standard deviation of column"),
            (
                thresholds,
                "2 per-group decision thresholds for 'age_band', which has 5 groups",
            ),
        ];
        for (model, expected) in altered {
            let error = contributor.accept_model(1, model).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
        // Nothing altered was accepted: the same evaluation as before.
        assert_eq!(contributor.contribute(1, Phase::Evaluate).unwrap(), before);
    }
}

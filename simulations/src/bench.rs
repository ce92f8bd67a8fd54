//! Benchmarks anyone can run on their own hardware.
//!
//! [`run`] times full secure-aggregation rounds (SecAgg+ double masking, the real
//! `accord_crypto::secagg` state machines with real certificates, signatures, X25519, Shamir
//! shares and ChaCha20 masks) with every participant and the coordinator in this process: the
//! simulated participants run in parallel on the machine's cores, the coordinator on one thread,
//! as in production. Only the network is missing: messages go through a channel instead of
//! mutual-TLS gRPC, so the times are the protocol's computation, and the byte counts are the
//! encoded protocol messages (without TLS, HTTP/2 or gRPC framing).
//!
//! Besides whole rounds it measures, side by side in the same run, how fast one participant
//! applies its masks (the self mask plus one pairwise mask per neighbour over its vector)
//! against how fast the same ChaCha20 keystream is produced raw: their ratio says how close
//! masking is to what the cipher alone costs.
//!
//! Every round's decoded sum is checked against the plain sum of the inputs, so a benchmark
//! can never report the speed of a broken protocol.
//!
//! [`fairness`] times the encrypted fairness path the same way, from the participants'
//! encryption to the auditor's metrics (`accord bench fairness`).

pub mod fairness;

use accord_crypto::pki::{ConsortiumCa, PkiError, Role};
use accord_crypto::secagg::ParticipantSession;
use accord_crypto::secagg::validity::Statement;
use accord_crypto::secagg::{
    Context, Plan, Requirements, SecAggError, default_neighbours, mask, minimum_threshold,
    stage_label,
};
use accord_crypto::secagg::{CoordinatorSession, PlainInputs, StageClosed};
use accord_crypto::secagg::{EncodingError, FixedPoint, Modulus, Segment};
use accord_crypto::secagg::{IdentityError, Signer, Trust};
use accord_proto::v1::{Phase, SecAggRelay, SecAggStage, SignedStageMessage};
use prost::Message;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::{ChaCha8Rng, ChaCha20Rng};
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Fractional bits asked of the encoding (the segment's bound is 1.0, so this is what it gets).
pub const PRECISION_BITS: u32 = 24;

/// The bound of every input value: inputs are uniform in [-BOUND, BOUND].
pub const BOUND: f64 = 1.0;

/// Keystream bytes each throughput sample covers at least (short vectors repeat the pass).
const SAMPLE_BYTES: usize = 64 << 20;

/// Samples of the masking and keystream throughput, interleaved.
const SAMPLES: usize = 9;

/// One secure-aggregation benchmark: `rounds` measured rounds after `warmup` unmeasured ones,
/// each a fresh run of the whole protocol (new keys, new coordinator session).
#[derive(Debug, Clone, PartialEq)]
pub struct SecAggBench {
    /// N: participants selected for every round.
    pub participants: usize,
    /// d: values per participant's vector.
    pub params: usize,
    /// Neighbours per participant; None: the SecAgg+ default for N ([`default_neighbours`]).
    pub neighbours: Option<usize>,
    /// Fraction of the participants (rounded) that stop after share keys: they never send a
    /// masked input, so the coordinator must remove their pairwise masks.
    pub dropout: f64,
    /// Rounds measured.
    pub rounds: usize,
    /// Rounds run first and not measured.
    pub warmup: usize,
    /// The ring the masked inputs are encoded in (Z_2^32 or Z_2^64).
    pub modulus: Modulus,
    /// Whether every masked input carries an input-validity proof (Pedersen commitments and
    /// Bulletproofs range proofs that each value is within its bound), verified by the
    /// coordinator, whose unmasked sum is then checked against the commitments.
    pub input_validity: bool,
    /// Seeds the inputs, the dropouts and the participants' randomness: a run is repeatable.
    pub seed: u64,
}

impl Default for SecAggBench {
    fn default() -> Self {
        Self {
            participants: 10,
            params: 100_000,
            neighbours: None,
            dropout: 0.0,
            rounds: 5,
            warmup: 1,
            modulus: Modulus::Z64,
            input_validity: false,
            seed: 42,
        }
    }
}

/// What a benchmark measured. Seconds are medians over the measured rounds; GB/s are 10^9
/// bytes per second.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecAggReport {
    /// N: participants selected for every round.
    pub participants: usize,
    /// d: values per participant's vector.
    pub params: usize,
    /// The neighbours each participant actually has (the default or the requested count,
    /// rounded up to even; N - 1 when that reaches the complete graph).
    pub neighbours: usize,
    /// t: the least number of participants that must reach unmasking.
    pub threshold: usize,
    /// Shares of a participant's secrets needed to rebuild them, of `neighbours + 1` holders.
    pub share_threshold: usize,
    /// Fraction of the participants (rounded) that stop after share keys, as requested.
    pub dropout: f64,
    /// Participants that stop after share keys, in every round.
    pub dropped: usize,
    /// The ring the masked inputs are encoded in, "z32" or "z64".
    pub modulus: String,
    /// Whether inputs carried validity proofs (commitments and range proofs).
    pub input_validity: bool,
    /// Fractional bits of the fixed-point encoding.
    pub precision_bits: u32,
    /// Worker threads running the simulated participants (the coordinator has its own).
    pub threads: usize,
    /// Rounds run first and not measured.
    pub warmup: usize,
    /// Rounds measured.
    pub rounds: usize,
    /// The seed of the inputs, dropouts and randomness.
    pub seed: u64,
    /// Median wall time of a whole round (all five stages).
    pub round_secs: f64,
    /// Every measured round's wall time, in order.
    pub round_secs_each: Vec<f64>,
    /// Setup: participants make keys and advertise them; the coordinator checks and plans.
    pub setup_secs: f64,
    /// Share keys: participants check advertisements and send encrypted Shamir shares.
    pub share_keys_secs: f64,
    /// Masked input: participants encode and mask; the coordinator checks and sums.
    pub masked_input_secs: f64,
    /// Consistency check: survivors sign the survivor set.
    pub consistency_check_secs: f64,
    /// Unmask: participants check t signatures on the survivor set and reveal shares; the
    /// coordinator checks each share against its commitment, reconstructs, unmasks and decodes.
    pub unmask_secs: f64,
    /// Median time of one participant's masked-input step (decrypt shares, encode, mask,
    /// serialize, sign), measured inside the rounds.
    pub participant_secs: f64,
    /// Median time of the coordinator's closing of unmask: rebuilding the secrets, removing
    /// the self masks and the dropped participants' pairwise masks, decoding.
    pub coordinator_unmask_secs: f64,
    /// Bytes of signed protocol messages a participant sends in one round (prost encoded
    /// length of every `SignedStageMessage`), averaged over all participants, dropouts included.
    /// Excludes TLS, HTTP/2 and gRPC framing.
    pub bytes_up_per_participant: f64,
    /// The same, averaged over the participants that sent every message.
    pub bytes_up_per_survivor: f64,
    /// Mask bytes one participant applies ((1 + neighbours) masks × d words × word bytes) per
    /// second of applying them, in isolation.
    pub masking_gbps: f64,
    /// The same number of bytes of the raw ChaCha20 keystream per second, measured alongside.
    pub keystream_gbps: f64,
    /// masking_gbps / keystream_gbps.
    pub keystream_ratio: f64,
    /// What the round's masks alone would take at `keystream_gbps`: the participants' masks
    /// spread over `threads` cores, then the masks the coordinator removes on its one thread
    /// (the survivors' self masks, the dropped participants' pairwise masks). A lower bound for
    /// `round_secs` on this machine with this PRG.
    pub keystream_floor_secs: f64,
    /// The largest difference between a decoded secure sum and the plain sum, over all rounds.
    pub max_abs_error: f64,
    /// What encoding allows: half a unit in the last place per summand.
    pub error_bound: f64,
    /// Peak resident memory of the process (VmHWM), when the OS reports it.
    pub peak_memory_mib: Option<f64>,
}

/// Why a benchmark could not run or gave a wrong answer.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The benchmark's parameters cannot run.
    #[error("invalid benchmark: {setting} {value}: {needed}")]
    Invalid {
        /// The parameter, as the command line names it.
        setting: &'static str,
        /// Its value.
        value: String,
        /// What it must be.
        needed: String,
    },
    /// The input-validity statement cannot be formed for these parameters.
    #[error("invalid benchmark: input validity: {0}")]
    Validity(#[from] accord_crypto::secagg::validity::ValidityError),
    /// The benchmark's certificates could not be made.
    #[error("benchmark certificates: {0}")]
    Pki(#[from] PkiError),
    /// A participant's signing identity could not be built.
    #[error("benchmark identity: {0}")]
    Identity(#[from] IdentityError),
    /// The inputs could not be encoded.
    #[error("encoding: {0}")]
    Encoding(#[from] EncodingError),
    /// The temporary directory for the certificates could not be used.
    #[error("temporary directory for the benchmark's certificates: {0}")]
    Io(#[from] std::io::Error),
    /// The secure-aggregation protocol failed in a round.
    #[error("round {round} failed: {source}")]
    Protocol {
        /// The round, 1-based.
        round: u32,
        /// The protocol's error.
        source: SecAggError,
    },
    /// A round's decoded sum differs from the plain sum by more than the encoding allows.
    #[error("round {round} gave a wrong result: {reason}")]
    WrongResult {
        /// The round, 1-based.
        round: u32,
        /// How the result was wrong.
        reason: String,
    },
}

/// A command-line count that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a count such as 100000, 100k or 1M")]
pub struct NotACount(pub String);

/// A count such as `100000`, `100_000`, `100k` or `1M` (k = 10^3, M = 10^6).
pub fn parse_count(s: &str) -> Result<usize, NotACount> {
    let text = s.trim().replace('_', "");
    let (digits, unit) = match text.chars().last() {
        Some('k' | 'K') => (&text[..text.len() - 1], 1_000),
        Some('m' | 'M') => (&text[..text.len() - 1], 1_000_000),
        _ => (text.as_str(), 1),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| NotACount(s.to_owned()))
}

/// Runs the benchmark.
pub fn run(bench: &SecAggBench) -> Result<SecAggReport, BenchError> {
    run_with_progress(bench, |_| {})
}

/// One round as [`run_with_progress`] reports it.
#[derive(Debug, Clone, Copy)]
pub struct RoundProgress {
    /// 1-based, warm-up rounds first.
    pub round: u32,
    /// Whether it was a warm-up round (not measured).
    pub warmup: bool,
    /// The round's wall time, in seconds.
    pub secs: f64,
}

/// Runs the benchmark, calling `progress` after every round.
pub fn run_with_progress(
    bench: &SecAggBench,
    mut progress: impl FnMut(RoundProgress),
) -> Result<SecAggReport, BenchError> {
    let env = Env::new(bench)?;
    let (masking_gbps, keystream_gbps) =
        throughput(bench.params, env.plan.neighbours, bench.modulus, bench.seed);
    let mut measured = Vec::new();
    let mut max_abs_error: f64 = 0.0;
    for index in 0..bench.warmup + bench.rounds {
        let round = index as u32 + 1;
        let outcome = env.round(round)?;
        max_abs_error = max_abs_error.max(env.check(round, &outcome)?);
        let warmup = index < bench.warmup;
        progress(RoundProgress {
            round,
            warmup,
            secs: outcome.total,
        });
        if !warmup {
            measured.push(outcome);
        }
    }
    let column =
        |pick: fn(&RoundOutcome) -> f64| -> f64 { median(measured.iter().map(pick).collect()) };
    let n = bench.participants;
    let survivors = n - env.dropouts;
    let mean_bytes = |survivors_only: bool| -> f64 {
        let (mut total, mut count) = (0usize, 0usize);
        for outcome in &measured {
            for (i, bytes) in outcome.bytes_up.iter().enumerate() {
                if !survivors_only || !outcome.dropped.contains(&i) {
                    total += bytes;
                    count += 1;
                }
            }
        }
        total as f64 / count.max(1) as f64
    };
    let keystream_floor_secs = median(
        measured
            .iter()
            .map(|o| {
                let mask_bytes = (bench.params * bench.modulus.word_bytes()) as f64;
                let rate = keystream_gbps * 1e9;
                o.masks.0 as f64 * mask_bytes / (env.threads as f64 * rate)
                    + o.masks.1 as f64 * mask_bytes / rate
            })
            .collect(),
    );
    let participant_secs = median(
        measured
            .iter()
            .flat_map(|o| o.participant_secs.iter().copied())
            .collect(),
    );
    debug_assert!(survivors >= env.plan.threshold);
    Ok(SecAggReport {
        participants: n,
        params: bench.params,
        neighbours: env.plan.neighbours,
        threshold: env.plan.threshold,
        share_threshold: env.plan.share_threshold,
        dropout: bench.dropout,
        dropped: env.dropouts,
        modulus: bench.modulus.to_string(),
        input_validity: bench.input_validity,
        precision_bits: env.fractional_bits,
        threads: env.threads,
        warmup: bench.warmup,
        rounds: bench.rounds,
        seed: bench.seed,
        round_secs: column(|o| o.total),
        round_secs_each: measured.iter().map(|o| o.total).collect(),
        setup_secs: column(|o| o.stages[0]),
        share_keys_secs: column(|o| o.stages[1]),
        masked_input_secs: column(|o| o.stages[2]),
        consistency_check_secs: column(|o| o.stages[3]),
        unmask_secs: column(|o| o.stages[4]),
        participant_secs,
        coordinator_unmask_secs: column(|o| o.coordinator_unmask),
        bytes_up_per_participant: mean_bytes(false),
        bytes_up_per_survivor: mean_bytes(true),
        masking_gbps,
        keystream_gbps,
        keystream_ratio: masking_gbps / keystream_gbps,
        keystream_floor_secs,
        max_abs_error,
        error_bound: env.error_bound(survivors),
        peak_memory_mib: peak_memory_mib(),
    })
}

impl SecAggReport {
    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report of numbers and strings serializes")
    }

    /// The report as a table for people.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mut line = |label: &str, value: String| {
            let _ = writeln!(out, "{label:<34} {value}");
        };
        line(
            "participants",
            format!(
                "{} ({} stop after share keys: dropout {})",
                self.participants, self.dropped, self.dropout
            ),
        );
        line(
            "parameters per participant",
            format!(
                "{} ({}, {} fractional bits)",
                self.params, self.modulus, self.precision_bits
            ),
        );
        line(
            "neighbours",
            format!(
                "{} (threshold {}; {} of {} shares rebuild a secret)",
                self.neighbours,
                self.threshold,
                self.share_threshold,
                self.neighbours + 1
            ),
        );
        line(
            "input validity",
            if self.input_validity {
                "range proofs (each value within its bound), sum checked against commitments"
            } else {
                "none"
            }
            .to_owned(),
        );
        line(
            "threads",
            format!("{} for the participants + 1 coordinator", self.threads),
        );
        line(
            "rounds",
            format!(
                "{} measured after {} warm-up (medians below)",
                self.rounds, self.warmup
            ),
        );
        line("round", secs(self.round_secs));
        line("  setup", secs(self.setup_secs));
        line("  share keys", secs(self.share_keys_secs));
        line("  masked input", secs(self.masked_input_secs));
        line("  consistency check", secs(self.consistency_check_secs));
        line("  unmask (with reconstruction)", secs(self.unmask_secs));
        line(
            "one participant's masked input",
            secs(self.participant_secs),
        );
        line(
            "coordinator reconstruction+unmask",
            secs(self.coordinator_unmask_secs),
        );
        line(
            "bytes up per participant",
            format!(
                "{:.0} (survivors {:.0}; signed messages, no TLS/gRPC framing)",
                self.bytes_up_per_participant, self.bytes_up_per_survivor
            ),
        );
        line(
            "masking (one participant)",
            format!(
                "{:.2} GB/s ({} masks over {} words)",
                self.masking_gbps,
                self.neighbours + 1,
                self.params
            ),
        );
        line(
            "raw ChaCha20 keystream",
            format!("{:.2} GB/s", self.keystream_gbps),
        );
        line(
            "masking / keystream",
            format!("{:.2}", self.keystream_ratio),
        );
        line(
            "keystream floor of a round",
            format!(
                "{} (the masks alone at the keystream's speed)",
                secs(self.keystream_floor_secs)
            ),
        );
        line(
            "sum check",
            format!(
                "max |error| {:.2e} (allowed {:.2e})",
                self.max_abs_error, self.error_bound
            ),
        );
        if let Some(mib) = self.peak_memory_mib {
            line("peak memory", format!("{mib:.0} MiB"));
        }
        out
    }
}

fn secs(s: f64) -> String {
    format!("{s:.4} s")
}

/// The median (the mean of the middle two for an even count); 0 for none.
fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// SplitMix64 over the seed and two indices: independent, repeatable seeds.
fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z = seed
        .wrapping_add(a.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(b.wrapping_mul(0xd1b5_4a32_d192_ed03));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The graph and thresholds every round uses (they depend only on N and K).
struct PlanSummary {
    neighbours: usize,
    threshold: usize,
    share_threshold: usize,
}

/// What every round shares: the consortium, the inputs and the encoding.
struct Env<'a> {
    bench: &'a SecAggBench,
    trust: Trust,
    signers: Vec<Arc<Signer>>,
    inputs: Vec<Vec<f64>>,
    encoding: FixedPoint,
    /// Each value within ±BOUND, when inputs are proven.
    statement: Option<Statement>,
    fractional_bits: u32,
    plan: PlanSummary,
    /// What every simulated participant requires: the bench's threshold and neighbours.
    requirements: Requirements,
    members: Vec<String>,
    degree: usize,
    dropouts: usize,
    threads: usize,
    _pki: tempfile::TempDir,
}

/// One round's measurements and result.
struct RoundOutcome {
    /// Wall time of setup, share keys, masked input, consistency check, unmask.
    stages: [f64; 5],
    total: f64,
    coordinator_unmask: f64,
    participant_secs: Vec<f64>,
    /// Per participant, by index.
    bytes_up: Vec<usize>,
    dropped: BTreeSet<usize>,
    sum: Vec<f64>,
    contributors: BTreeSet<String>,
    /// Masks (of d words each) the participants applied, and the coordinator removed.
    masks: (usize, usize),
}

/// A simulated participant: its protocol state and its randomness (a real node uses the OS's).
struct Sim {
    session: ParticipantSession,
    rng: ChaCha20Rng,
}

fn context(round: u32) -> Context {
    Context {
        federation: "accord-bench".into(),
        round,
        phase: Phase::Fit,
    }
}

impl<'a> Env<'a> {
    fn new(bench: &'a SecAggBench) -> Result<Self, BenchError> {
        let n = bench.participants;
        let invalid = |setting, value: &dyn std::fmt::Display, needed: String| {
            Err(BenchError::Invalid {
                setting,
                value: value.to_string(),
                needed,
            })
        };
        if n < 2 {
            return invalid("--participants", &n, "at least 2 are needed".into());
        }
        if bench.params == 0 {
            return invalid("--params", &0, "at least 1 is needed".into());
        }
        if bench.rounds == 0 {
            return invalid("--rounds", &0, "at least 1 is needed".into());
        }
        if bench.neighbours == Some(0) {
            return invalid("--neighbours", &0, "at least 1 is needed".into());
        }
        if !(0.0..1.0).contains(&bench.dropout) {
            return invalid("--dropout", &bench.dropout, "a fraction in [0, 1)".into());
        }
        let dropouts = (bench.dropout * n as f64).round() as usize;
        let threshold = minimum_threshold(n);
        if n - dropouts < threshold {
            return invalid(
                "--dropout",
                &bench.dropout,
                format!(
                    "{dropouts} of {n} participants dropping leaves fewer than the threshold {threshold}"
                ),
            );
        }
        let encoding = FixedPoint::new(
            bench.modulus,
            vec![Segment {
                name: "params".into(),
                len: bench.params,
                bound: BOUND,
                integer: false,
            }],
            PRECISION_BITS,
            n,
        )?;
        let fractional_bits = encoding.fractional_bits()[0].1;
        let statement = bench
            .input_validity
            .then(|| Statement::new(&encoding, &[]))
            .transpose()?;

        let pki = tempfile::tempdir()?;
        let ca = ConsortiumCa::init(pki.path(), "Accord Benchmark")?;
        let signers = (0..n)
            .map(|i| {
                let files = ca.issue(pki.path(), &format!("org-{i:04}"), Role::Participant, &[])?;
                Ok(Arc::new(Signer::load(&files.cert, &files.key)?))
            })
            .collect::<Result<Vec<_>, BenchError>>()?;
        let trust = Trust::load(&ca.ca_cert_path())?;

        let degree = bench.neighbours.unwrap_or_else(|| default_neighbours(n));
        let members: Vec<String> = signers.iter().map(|s| s.name().to_owned()).collect();
        let plan = Plan::new(&context(1), &members, threshold, degree);
        let plan = PlanSummary {
            neighbours: members
                .iter()
                .map(|m| plan.neighbours_of(m).len())
                .min()
                .unwrap_or(0),
            threshold,
            share_threshold: plan.share_threshold,
        };

        let threads = std::thread::available_parallelism()
            .map(|t| t.get())
            .unwrap_or(1)
            .min(n);
        let mut inputs = vec![Vec::new(); n];
        let per_thread = n.div_ceil(threads);
        std::thread::scope(|scope| {
            for (chunk, slots) in inputs.chunks_mut(per_thread).enumerate() {
                scope.spawn(move || {
                    for (offset, slot) in slots.iter_mut().enumerate() {
                        let i = (chunk * per_thread + offset) as u64;
                        let mut rng = ChaCha8Rng::seed_from_u64(mix(bench.seed, 0, i));
                        *slot = (0..bench.params)
                            .map(|_| rng.random_range(-BOUND..=BOUND))
                            .collect();
                    }
                });
            }
        });
        let requirements = Requirements {
            threshold,
            neighbours: bench.neighbours.unwrap_or(0),
            ..Requirements::default()
        };
        Ok(Self {
            bench,
            trust,
            requirements,
            signers,
            inputs,
            encoding,
            statement,
            fractional_bits,
            plan,
            members,
            degree,
            dropouts,
            threads,
            _pki: pki,
        })
    }

    /// The participants that stop after share keys in `round`: drawn from the seed.
    fn dropped(&self, round: u32) -> BTreeSet<usize> {
        let mut order: Vec<usize> = (0..self.bench.participants).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(
            self.bench.seed,
            1,
            u64::from(round),
        )));
        order.into_iter().take(self.dropouts).collect()
    }

    /// The most a decoded sum of `summands` vectors may differ from the plain sum: half a unit
    /// in the last place per summand, and the f64 rounding of adding them up.
    fn error_bound(&self, summands: usize) -> f64 {
        let c = summands as f64;
        c * 2f64.powi(-(self.fractional_bits as i32) - 1) + 4.0 * c * c * BOUND * f64::EPSILON
    }

    /// Checks a round's sum against the plain sum of its contributors' inputs; the largest
    /// difference.
    fn check(&self, round: u32, outcome: &RoundOutcome) -> Result<f64, BenchError> {
        let wrong = |reason: String| Err(BenchError::WrongResult { round, reason });
        let expected: BTreeSet<String> = (0..self.bench.participants)
            .filter(|i| !outcome.dropped.contains(i))
            .map(|i| self.signers[i].name().to_owned())
            .collect();
        if outcome.contributors != expected {
            return wrong(format!(
                "{} contributors, expected the {} who did not drop",
                outcome.contributors.len(),
                expected.len()
            ));
        }
        let mut plain = vec![0.0; self.bench.params];
        for i in (0..self.bench.participants).filter(|i| !outcome.dropped.contains(i)) {
            for (total, value) in plain.iter_mut().zip(&self.inputs[i]) {
                *total += value;
            }
        }
        if outcome.sum.len() != plain.len() {
            return wrong(format!(
                "a sum of {} values, expected {}",
                outcome.sum.len(),
                plain.len()
            ));
        }
        let error = outcome
            .sum
            .iter()
            .zip(&plain)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        let bound = self.error_bound(expected.len());
        if error.is_nan() || error > bound {
            return wrong(format!(
                "the secure sum differs from the plain sum by {error:e} (allowed {bound:e})"
            ));
        }
        Ok(error)
    }

    /// Runs round `round` of the protocol; times its stages.
    fn round(&self, round: u32) -> Result<RoundOutcome, BenchError> {
        let n = self.bench.participants;
        let seed = self.bench.seed;
        let threads = self.threads;
        let context = context(round);
        let dropped = self.dropped(round);
        let protocol = move |source: SecAggError| BenchError::Protocol { round, source };
        let expect_next = |closed: StageClosed, stage: SecAggStage| match closed {
            StageClosed::Next(next) if next == stage => Ok(()),
            other => Err(BenchError::WrongResult {
                round,
                reason: format!(
                    "the coordinator closed a stage with {other:?}, expected stage '{}'",
                    stage_label(stage)
                ),
            }),
        };
        let names: Vec<&str> = self.signers.iter().map(|s| s.name()).collect();
        let certificate = |i: usize| self.signers[i].certificate_der();
        let exchange = Exchange {
            threads,
            round,
            names: &names,
            signers: &self.signers,
        };
        let mut bytes_up = vec![0usize; n];
        let mut stages = [0.0; 5];
        let started = Instant::now();

        // Setup.
        let selected: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
        let inputs = match &self.statement {
            Some(statement) => {
                PlainInputs::proven(self.encoding.clone(), context.clone(), statement.clone())
            }
            None => PlainInputs::new(self.encoding.clone()),
        };
        let mut coordinator = CoordinatorSession::with_inputs(
            context.clone(),
            self.trust.clone(),
            inputs,
            selected,
            self.plan.threshold,
            self.bench.neighbours.unwrap_or(0),
        )
        .map_err(protocol)?;
        let mut slots: Vec<Option<Sim>> = (0..n).map(|_| None).collect();
        fan_out(
            threads,
            (0..n).collect(),
            |i| {
                let mut rng = ChaCha20Rng::seed_from_u64(mix(seed, u64::from(round) + 2, i as u64));
                let (session, message) = ParticipantSession::start(
                    self.signers[i].clone(),
                    self.trust.clone(),
                    context.clone(),
                    self.requirements,
                    &mut rng,
                );
                (i, Sim { session, rng }, message)
            },
            |(i, sim, message)| {
                bytes_up[i] += message.encoded_len();
                coordinator
                    .receive(names[i], certificate(i), message)
                    .map_err(protocol)?;
                slots[i] = Some(sim);
                Ok(())
            },
        )?;
        expect_next(
            coordinator.close_stage().map_err(protocol)?,
            SecAggStage::ShareKeys,
        )?;
        let mut sims: Vec<Sim> = slots
            .into_iter()
            .map(|s| s.expect("every participant started"))
            .collect();
        stages[0] = started.elapsed().as_secs_f64();

        // Share keys: everyone, the participants that will drop included.
        let stage = Instant::now();
        let everyone: BTreeSet<usize> = (0..n).collect();
        exchange.run(
            &mut sims,
            &everyone,
            &mut coordinator,
            &mut bytes_up,
            |sim, relay| sim.session.share_keys(relay, &mut sim.rng),
        )?;
        expect_next(
            coordinator.close_stage().map_err(protocol)?,
            SecAggStage::MaskedInput,
        )?;
        stages[1] = stage.elapsed().as_secs_f64();

        // Masked input: the dropped participants are silent from here on.
        let stage = Instant::now();
        let survivors: BTreeSet<usize> = everyone.difference(&dropped).copied().collect();
        let mut participant_secs = Vec::with_capacity(survivors.len());
        fan_out(
            threads,
            work_items(&mut sims, &survivors, &coordinator, &names),
            |(i, sim, relay)| {
                let start = Instant::now();
                let result = sim
                    .session
                    .masked_input(
                        &relay,
                        &self.inputs[i],
                        &self.encoding,
                        self.statement.as_ref(),
                    )
                    .map(|(masked, _clipped)| masked.message);
                (i, result, start.elapsed())
            },
            |(i, message, elapsed): (usize, Result<SignedStageMessage, SecAggError>, Duration)| {
                participant_secs.push(elapsed.as_secs_f64());
                let message = message.map_err(protocol)?;
                bytes_up[i] += message.encoded_len();
                coordinator
                    .receive(names[i], certificate(i), message)
                    .map_err(protocol)
            },
        )?;
        expect_next(
            coordinator.close_stage().map_err(protocol)?,
            SecAggStage::ConsistencyCheck,
        )?;
        stages[2] = stage.elapsed().as_secs_f64();

        // Consistency check: the survivors sign the survivor set.
        let stage = Instant::now();
        exchange.run(
            &mut sims,
            &survivors,
            &mut coordinator,
            &mut bytes_up,
            |sim, relay| sim.session.consistency_check(relay),
        )?;
        expect_next(
            coordinator.close_stage().map_err(protocol)?,
            SecAggStage::Unmask,
        )?;
        stages[3] = stage.elapsed().as_secs_f64();

        // Unmask.
        let stage = Instant::now();
        exchange.run(
            &mut sims,
            &survivors,
            &mut coordinator,
            &mut bytes_up,
            |sim, relay| sim.session.unmask(relay),
        )?;
        let closing = Instant::now();
        let closed = coordinator.close_stage().map_err(protocol)?;
        let coordinator_unmask = closing.elapsed().as_secs_f64();
        stages[4] = stage.elapsed().as_secs_f64();
        let total = started.elapsed().as_secs_f64();
        let StageClosed::Done { sum, contributors } = closed else {
            return Err(BenchError::WrongResult {
                round,
                reason: format!("unmask closed with {closed:?} instead of the sum"),
            });
        };
        // Outside the timing: the masks this round's graph called for.
        let plan = Plan::new(&context, &self.members, self.plan.threshold, self.degree);
        let neighbours = |i: usize| plan.neighbours_of(names[i]);
        let participant_masks = survivors.iter().map(|&i| 1 + neighbours(i).len()).sum();
        let gone: BTreeSet<&str> = dropped.iter().map(|&i| names[i]).collect();
        let coordinator_masks = survivors.len()
            + dropped
                .iter()
                .map(|&i| {
                    neighbours(i)
                        .iter()
                        .filter(|m| !gone.contains(m.as_str()))
                        .count()
                })
                .sum::<usize>();
        Ok(RoundOutcome {
            stages,
            total,
            coordinator_unmask,
            participant_secs,
            bytes_up,
            dropped,
            sum,
            contributors,
            masks: (participant_masks, coordinator_masks),
        })
    }
}

/// The participants in `who` with what the coordinator relays to each for the open stage
/// (built on the coordinator's thread, as a node builds each reply).
fn work_items<'s>(
    sims: &'s mut [Sim],
    who: &BTreeSet<usize>,
    coordinator: &CoordinatorSession,
    names: &[&str],
) -> Vec<(usize, &'s mut Sim, SecAggRelay)> {
    sims.iter_mut()
        .enumerate()
        .filter(|(i, _)| who.contains(i))
        .map(|(i, sim)| (i, sim, coordinator.relay_for(names[i])))
        .collect()
}

/// Who takes part in one measured round, and on how many threads.
struct Exchange<'a> {
    threads: usize,
    round: u32,
    names: &'a [&'a str],
    signers: &'a [Arc<Signer>],
}

impl Exchange<'_> {
    /// One stage: each participant in `who` answers its relay with `step` (spread over the
    /// threads), and the coordinator receives every answer, counted in `bytes_up`.
    fn run(
        &self,
        sims: &mut [Sim],
        who: &BTreeSet<usize>,
        coordinator: &mut CoordinatorSession,
        bytes_up: &mut [usize],
        step: impl Fn(&mut Sim, &SecAggRelay) -> Result<SignedStageMessage, SecAggError> + Sync,
    ) -> Result<(), BenchError> {
        fan_out(
            self.threads,
            work_items(sims, who, coordinator, self.names),
            |(i, sim, relay)| (i, step(sim, &relay)),
            |(i, message)| {
                let protocol = |source| BenchError::Protocol {
                    round: self.round,
                    source,
                };
                let message = message.map_err(protocol)?;
                bytes_up[i] += message.encoded_len();
                coordinator
                    .receive(self.names[i], self.signers[i].certificate_der(), message)
                    .map_err(protocol)
            },
        )
    }
}

/// Runs `work` on `items` on `threads` worker threads (each takes the next item when free) and
/// hands every result to `receive` on this thread, as it comes: the participants compute in
/// parallel while the single-threaded coordinator takes their messages. The first error from
/// `receive` stops the workers and is returned.
fn fan_out<T: Send, R: Send>(
    threads: usize,
    items: Vec<T>,
    work: impl Fn(T) -> R + Sync,
    mut receive: impl FnMut(R) -> Result<(), BenchError>,
) -> Result<(), BenchError> {
    let queue = Mutex::new(items.into_iter());
    let (sender, results) = mpsc::sync_channel(2 * threads);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let sender = sender.clone();
            let (queue, work) = (&queue, &work);
            scope.spawn(move || {
                loop {
                    let next = queue
                        .lock()
                        .expect("no worker panics holding the queue")
                        .next();
                    let Some(item) = next else { break };
                    if sender.send(work(item)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        for result in results {
            receive(result)?;
        }
        Ok(())
    })
}

/// One participant's masking throughput against the raw keystream's, in GB/s: `1 + k` masks
/// over `d` words (what a participant with `k` neighbours applies) and the same bytes of
/// keystream from the same seeds, timed alternately on one thread, the median of
/// [`SAMPLES`] samples each.
fn throughput(d: usize, k: usize, modulus: Modulus, seed: u64) -> (f64, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, 2, 0));
    let seeds: Vec<[u8; 32]> = (0..=k)
        .map(|_| {
            let mut s = [0u8; 32];
            rng.fill_bytes(&mut s);
            s
        })
        .collect();
    let mut words: Vec<u64> = (0..d).map(|_| rng.next_u64() & modulus.mask()).collect();
    let mut stream = vec![0u8; d * modulus.word_bytes()];
    let pass_bytes = seeds.len() * stream.len();
    let passes = SAMPLE_BYTES.div_ceil(pass_bytes).max(1);

    let masking = |words: &mut Vec<u64>| {
        let start = Instant::now();
        for _ in 0..passes {
            for (j, s) in seeds.iter().enumerate() {
                // The self mask is added; pairwise masks are added or subtracted.
                mask::apply_mask(black_box(words), s, j % 2 == 0 && j > 0, modulus);
            }
        }
        black_box(&words);
        start.elapsed().as_secs_f64() / passes as f64
    };
    let keystream = |stream: &mut Vec<u8>| {
        let start = Instant::now();
        for _ in 0..passes {
            for s in &seeds {
                mask::keystream(black_box(stream), s);
            }
        }
        black_box(&stream);
        start.elapsed().as_secs_f64() / passes as f64
    };
    // Warm up caches and page in both buffers.
    masking(&mut words);
    keystream(&mut stream);
    let (mut mask_secs, mut stream_secs) = (Vec::new(), Vec::new());
    for sample in 0..SAMPLES {
        if sample % 2 == 0 {
            mask_secs.push(masking(&mut words));
            stream_secs.push(keystream(&mut stream));
        } else {
            stream_secs.push(keystream(&mut stream));
            mask_secs.push(masking(&mut words));
        }
    }
    let gbps = |secs: f64| pass_bytes as f64 / secs / 1e9;
    (gbps(median(mask_secs)), gbps(median(stream_secs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SecAggBench {
        SecAggBench {
            participants: 5,
            params: 1000,
            neighbours: None,
            dropout: 0.2,
            rounds: 1,
            warmup: 0,
            modulus: Modulus::Z64,
            input_validity: false,
            seed: 7,
        }
    }

    #[test]
    fn a_round_with_proven_inputs_sums_them_and_checks_the_commitments() {
        let bench = SecAggBench {
            params: 48,
            input_validity: true,
            ..small()
        };
        let env = Env::new(&bench).unwrap();
        let outcome = env.round(1).unwrap();
        assert_eq!(outcome.contributors.len(), 4);
        assert!(env.check(1, &outcome).unwrap() <= env.error_bound(4));
    }

    #[test]
    fn a_round_with_a_dropout_sums_the_survivors_inputs() {
        let bench = small();
        let env = Env::new(&bench).unwrap();
        let outcome = env.round(1).unwrap();
        assert_eq!(outcome.dropped.len(), 1);
        assert_eq!(outcome.contributors.len(), 4);
        // The plain sum of the survivors' inputs, computed here independently of `check`.
        let f = env.encoding.fractional_bits()[0].1;
        let tolerance = 4.0 * 2f64.powi(-(f as i32) - 1) + 1e-12;
        let mut compared = 0;
        for (j, secure) in outcome.sum.iter().enumerate() {
            let plain: f64 = (0..5)
                .filter(|i| !outcome.dropped.contains(i))
                .map(|i| env.inputs[i][j])
                .sum();
            assert!(
                (secure - plain).abs() <= tolerance,
                "value {j}: secure {secure} vs plain {plain}"
            );
            compared += 1;
        }
        assert_eq!(compared, 1000);
        // The sum is not trivially zero: the inputs are random in [-1, 1].
        assert!(outcome.sum.iter().any(|v| v.abs() > 0.1));
        // A dropped participant sent setup and share keys only, less than a survivor.
        let dropped = *outcome.dropped.iter().next().unwrap();
        let survivor = (0..5).find(|i| *i != dropped).unwrap();
        assert!(outcome.bytes_up[dropped] > 0);
        assert!(outcome.bytes_up[survivor] > outcome.bytes_up[dropped] + 8 * 1000);
    }

    #[test]
    fn the_benchmark_reports_a_checked_run() {
        let report = run(&small()).unwrap();
        assert_eq!(report.participants, 5);
        assert_eq!(report.dropped, 1);
        assert_eq!(report.neighbours, 4);
        assert_eq!(report.threshold, 3);
        assert_eq!(report.round_secs_each.len(), 1);
        assert!(report.round_secs > 0.0);
        assert!(report.max_abs_error <= report.error_bound);
        assert!(report.masking_gbps > 0.0 && report.keystream_gbps > 0.0);
        assert!(report.bytes_up_per_survivor > report.bytes_up_per_participant);
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        for field in [
            "participants",
            "params",
            "dropout",
            "round_secs",
            "bytes_up_per_participant",
            "masking_gbps",
            "keystream_gbps",
            "keystream_ratio",
        ] {
            assert!(json.get(field).is_some(), "{field}");
        }
        assert!(report.table().contains("masking / keystream"));
    }

    #[test]
    fn refuses_impossible_benchmarks() {
        for bench in [
            SecAggBench {
                dropout: 0.6,
                ..small()
            },
            SecAggBench {
                dropout: 1.0,
                ..small()
            },
            SecAggBench {
                participants: 1,
                ..small()
            },
            SecAggBench {
                neighbours: Some(0),
                ..small()
            },
        ] {
            assert!(
                matches!(run(&bench), Err(BenchError::Invalid { .. })),
                "{bench:?}"
            );
        }
    }

    #[test]
    fn counts_take_k_and_m_suffixes() {
        assert_eq!(parse_count("100000"), Ok(100_000));
        assert_eq!(parse_count("100_000"), Ok(100_000));
        assert_eq!(parse_count("10k"), Ok(10_000));
        assert_eq!(parse_count("1M"), Ok(1_000_000));
        assert!(parse_count("1.5M").is_err());
        assert!(parse_count("lots").is_err());
    }
}

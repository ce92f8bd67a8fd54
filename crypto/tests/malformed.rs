//! Malformed input from peers: every decoder of what another party sends is fed random bytes
//! and mutated valid encodings (bit flips, truncation, extension, repeated spans, fields
//! dropped, repeated, swapped or renamed and re-encoded), the way rustls tests malformed input.
//! Each must refuse or handle the input, never panic, and allocate at most in proportion to it.
//!
//! Where peer data is decoded or indexed (the inventory this file covers; the end-to-end
//! admission tests cover the gRPC handlers above it):
//! - gRPC requests and responses (`coordinator/src/service.rs`, `federation.rs`,
//!   `participant/src/node.rs`): prost messages under tonic's 16 MiB limit
//!   ([`accord_proto::MAX_MESSAGE_BYTES`]), see [`DECODERS`];
//! - every relay field a `ParticipantSession` reads (selected, members, threshold, neighbours,
//!   advertisements and the keys, certificates and signatures inside, shares, survivors,
//!   survivor signatures, masking statements): [`relays_mutated_by_the_coordinator_never_corrupt_a_participant`];
//! - every message body a `CoordinatorSession` reads (AdvertiseKeys, ShareKeys,
//!   MaskedInputEnvelope with MaskedInput, SurvivorSet, UnmaskShares), signed by their sender:
//!   [`bodies_mutated_by_a_participant_are_refused_or_named`];
//! - `Share::from_bytes`, `words_from_bytes`: [`shares_and_words_from_any_bytes`];
//! - the encrypted aggregate the auditor reads (`OpenedAggregate::from_bytes`, size-limited
//!   bincode and tfhe conformance): [`aggregates_from_any_bytes`];
//! - auditor key bundles (`PublicMaterial::load`: size limit, signature, then tfhe's size-limited
//!   deserialization with its conformance check): [`bundles_from_any_bytes`],
//!   [`a_bundle_around_a_public_key_for_other_parameters_is_refused_by_tfhe_conformance`];
//! - a member's certificate request at the CA (`ConsortiumCa::sign_request`; its parsing is
//!   tested in `tests/pki.rs`): [`a_certificate_request_over_the_size_limit_is_refused_with_its_size`].
//!
//! Adding a decoder is one line in [`DECODERS`] (a wire message) or one more case below.
//! "No unbounded allocation" is measured with a counting allocator: a prost message of n bytes
//! decodes into at most about 1.5 × (the largest element's size) × n bytes (prost never
//! reserves from a claimed length), and a claimed length of 2^60 is refused before anything
//! of that size is allocated.

use accord_crypto::he::inputs::OpenedAggregate;
use accord_crypto::he::{self, HeError, PublicMaterial};
use accord_crypto::pki::{ConsortiumCa, Role};
use accord_crypto::secagg::ParticipantSession;
use accord_crypto::secagg::shamir::Share;
use accord_crypto::secagg::{Context, Requirements, SecAggError, words_from_bytes};
use accord_crypto::secagg::{CoordinatorSession, StageClosed};
use accord_crypto::secagg::{FixedPoint, Modulus, Segment};
use accord_crypto::secagg::{Signer, Trust};
use accord_proto::v1::*;
use ed25519_dalek::Signer as _;
use proptest::prelude::*;
use prost::Message;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
use tfhe::integer::IntegerCiphertext as _;

/// Counts the bytes each thread holds, to measure what decoding a message allocates. Test-only:
/// it delegates every call to the system allocator.
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    pub struct Counting;

    fn note(delta: isize) {
        // During a thread's teardown its locals may be gone: those calls are not counted.
        let _ = LIVE.try_with(|live| {
            let now = live.get() + delta;
            live.set(now);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
        });
    }

    // SAFETY: every call is passed unchanged to `System`; only counters are updated around it.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size() as isize);
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            note(-(layout.size() as isize));
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // Counted as if the old and new blocks were held at once, as a moving realloc does.
            note(new_size as isize);
            note(-(layout.size() as isize));
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    /// The result of `f` and the most bytes it held at once on this thread.
    pub fn peak<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let start = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(start));
        let out = f();
        let peak = PEAK.with(Cell::get);
        (out, (peak - start).max(0) as usize)
    }
}

mod mutate;
use mutate::{Edit, apply, edit_strategy};

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

type Decoder = fn(&[u8]) -> bool;

macro_rules! decoders {
    ($($message:ty),* $(,)?) => {
        &[$((stringify!($message), (|bytes: &[u8]| <$message>::decode(bytes).is_ok()) as Decoder)),*]
    };
}

/// Every `accord.v1` message one party decodes from another's bytes: gRPC requests (coordinator),
/// responses and relays (participants), signed bodies (both), bundles and aggregate files
/// (participants, coordinator, auditor).
const DECODERS: &[(&str, Decoder)] = decoders![
    RegisterRequest,
    RegisterResponse,
    AwaitRoundRequest,
    RoundAnnouncement,
    ModelRequest,
    GlobalModel,
    UpdateUpload,
    EvaluationUpload,
    UploadReceipt,
    StatusRequest,
    StatusResponse,
    SecAggAwaitRequest,
    SecAggRelay,
    SignedStageMessage,
    AdvertiseKeys,
    ShareKeys,
    ShareBundle,
    MaskedInput,
    MaskedInputEnvelope,
    SurvivorSet,
    UnmaskShares,
    EncryptedStatistics,
    AuditorKeyBundle,
    EncryptedAggregate,
];

/// The most bytes one element of any repeated field of these messages takes in memory: an
/// element costs at least two wire bytes, a growing Vec holds at most three halves of its
/// final size at once, so n wire bytes decode into at most 1.5 × this × n / 2 × 2 bytes.
const LARGEST_ELEMENT: usize = std::mem::size_of::<MemberAdvertisement>();

/// Decodes `bytes` with every decoder; none may panic, and none may hold more than the
/// proportional bound at once.
fn decode_all_within_bound(bytes: &[u8]) -> Result<(), TestCaseError> {
    for (name, decode) in DECODERS {
        let (_, peak) = counting::peak(|| decode(bytes));
        let bound = 2 * LARGEST_ELEMENT * bytes.len() + 4096;
        prop_assert!(
            peak <= bound,
            "{name}: {} bytes decoded holding {peak} bytes (bound {bound})",
            bytes.len()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_wire_message_from_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        decode_all_within_bound(&bytes)?;
    }

    /// Real relays and stage messages of an honest aggregation, mutated.
    #[test]
    fn every_wire_message_from_mutated_protocol_messages(
        pick in any::<usize>(),
        edits in proptest::collection::vec(edit_strategy(), 1..4),
    ) {
        let samples = honest_transcript();
        let mut bytes = samples[pick % samples.len()].clone();
        apply(&mut bytes, &edits);
        decode_all_within_bound(&bytes)?;
    }

    #[test]
    fn shares_and_words_from_any_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..80),
        len in prop_oneof![0usize..16, Just(usize::MAX), Just(usize::MAX / 4 + 1)],
        wide in any::<bool>(),
    ) {
        match Share::from_bytes(&bytes) {
            Ok(share) => {
                prop_assert_eq!(bytes.len(), Share::ENCODED_LEN);
                prop_assert!(share.x != 0);
                prop_assert_eq!(share.to_bytes().to_vec(), bytes.clone());
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        let modulus = if wide { Modulus::Z64 } else { Modulus::Z32 };
        let words = words_from_bytes(&bytes, len, modulus);
        prop_assert_eq!(words.is_some(), Some(bytes.len()) == len.checked_mul(modulus.word_bytes()));
    }
}

#[test]
fn a_message_decodes_into_memory_proportional_to_its_size_and_claimed_lengths_allocate_nothing() {
    // The most memory per wire byte a message can ask for: a relay of empty advertisements,
    // two bytes each on the wire (tag 9, length 0).
    let n = 1 << 20;
    let relay: Vec<u8> = [0x4a, 0x00].repeat(n / 2);
    let (decoded, peak) = counting::peak(|| SecAggRelay::decode(relay.as_slice()).unwrap());
    assert_eq!(decoded.advertisements.len(), n / 2);
    drop(decoded);
    let per_byte = peak as f64 / n as f64;
    println!(
        "a {n}-byte relay of empty advertisements held at most {peak} bytes while decoding: \
         {per_byte:.0} bytes per wire byte (an advertisement is {LARGEST_ELEMENT} bytes in memory)"
    );
    assert!(peak <= 2 * LARGEST_ELEMENT * n, "{peak}");

    // A bytes field claiming 2^60 bytes, a repeated field claiming 2^60 elements: refused with
    // no allocation of that size.
    let mut claim = vec![0x22]; // SignedStageMessage.body
    let mut length = 1u64 << 60;
    while length >= 0x80 {
        claim.push((length as u8) | 0x80);
        length >>= 7;
    }
    claim.push(length as u8);
    claim.extend_from_slice(b"short");
    for (name, decode) in DECODERS {
        let (ok, peak) = counting::peak(|| decode(&claim));
        assert!(
            peak < 4096,
            "{name}: a claimed 2^60-byte field held {peak} bytes"
        );
        if *name == "SignedStageMessage" {
            assert!(!ok, "a field longer than the message was accepted");
        }
    }
}

/// A consortium of five participants, made once.
struct Consortium {
    trust: Trust,
    signers: Vec<Arc<Signer>>,
    _dir: tempfile::TempDir,
}

fn consortium() -> &'static Consortium {
    static CONSORTIUM: OnceLock<Consortium> = OnceLock::new();
    CONSORTIUM.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let ca = ConsortiumCa::init(dir.path(), "Fuzz").unwrap();
        let signers = (0..N)
            .map(|i| {
                let name = format!("org-{i}");
                let files = ca.issue(dir.path(), &name, Role::Participant, &[]).unwrap();
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

/// Participants of each aggregation (the complete graph; t = 3).
const N: usize = 4;

fn context() -> Context {
    Context {
        federation: "fuzz".into(),
        round: 1,
        phase: Phase::Fit,
    }
}

fn encoding() -> FixedPoint {
    let counts = Segment {
        name: "counts".into(),
        len: 3,
        bound: 1000.0,
        integer: true,
    };
    FixedPoint::new(Modulus::Z64, vec![counts], 16, N).unwrap()
}

fn input(i: usize) -> Vec<f64> {
    vec![i as f64 + 1.0, 10.0 * i as f64, 7.0]
}

fn name(i: usize) -> String {
    consortium().signers[i].name().to_owned()
}

fn certificate(name: &str) -> &'static [u8] {
    let signers = &consortium().signers;
    signers
        .iter()
        .find(|s| s.name() == name)
        .unwrap()
        .certificate_der()
}

const STAGES: [SecAggStage; 4] = [
    SecAggStage::ShareKeys,
    SecAggStage::MaskedInput,
    SecAggStage::ConsistencyCheck,
    SecAggStage::Unmask,
];

/// One aggregation of N sessions, driven stage by stage.
struct Aggregation {
    coordinator: CoordinatorSession,
    sessions: BTreeMap<String, ParticipantSession>,
    rng: ChaCha20Rng,
    /// Messages the coordinator refused: sender, stage, and whether it named the sender.
    refused: Vec<(String, SecAggStage, bool)>,
}

impl Aggregation {
    fn new(seed: u64) -> Self {
        Self::with_setup(seed, |_, advertisement| advertisement)
    }

    /// Starts every session; `send` may replace what each sends at setup.
    fn with_setup(
        seed: u64,
        mut send: impl FnMut(&str, SignedStageMessage) -> SignedStageMessage,
    ) -> Self {
        let c = consortium();
        let selected = (0..N).map(name).collect();
        let coordinator =
            CoordinatorSession::new(context(), c.trust.clone(), encoding(), selected, 0, 0)
                .unwrap();
        let mut agg = Self {
            coordinator,
            sessions: BTreeMap::new(),
            rng: ChaCha20Rng::seed_from_u64(seed),
            refused: Vec::new(),
        };
        for signer in &c.signers {
            let (session, advertisement) = ParticipantSession::start(
                signer.clone(),
                c.trust.clone(),
                context(),
                Requirements::default(),
                &mut agg.rng,
            );
            let message = send(signer.name(), advertisement);
            agg.receive(signer.name(), SecAggStage::Setup, message);
            agg.sessions.insert(signer.name().to_owned(), session);
        }
        agg
    }

    /// The coordinator takes `who`'s message; a refusal is recorded with whether it named `who`.
    fn receive(&mut self, who: &str, stage: SecAggStage, message: SignedStageMessage) {
        if self
            .coordinator
            .receive(who, certificate(who), message)
            .is_err()
        {
            let named = self
                .coordinator
                .culprits()
                .iter()
                .any(|c| c.participant == who);
            self.refused.push((who.to_owned(), stage, named));
        }
    }

    /// `name`'s answer at `stage` to `relay`.
    fn answer(
        &mut self,
        name: &str,
        stage: SecAggStage,
        relay: &SecAggRelay,
    ) -> Result<SignedStageMessage, SecAggError> {
        let i = consortium()
            .signers
            .iter()
            .position(|s| s.name() == name)
            .unwrap();
        let session = self.sessions.get_mut(name).unwrap();
        match stage {
            SecAggStage::ShareKeys => session.share_keys(relay, &mut self.rng),
            SecAggStage::MaskedInput => session
                .masked_input(relay, &input(i), &encoding(), None)
                .map(|(masked, _)| masked.message),
            SecAggStage::ConsistencyCheck => session.consistency_check(relay),
            _ => session.unmask(relay),
        }
    }

    /// Runs the remaining stages (`act` says what each party sends); the sum or why it
    /// aborted, and the refused messages.
    fn finish(
        mut self,
        mut act: impl FnMut(&mut Self, &str, SecAggStage, SecAggRelay) -> Step,
    ) -> (Sum, Vec<(String, SecAggStage, bool)>) {
        loop {
            let stage = match self.coordinator.close_stage() {
                Ok(StageClosed::Done { sum, contributors }) => {
                    return (Ok((sum, contributors)), self.refused);
                }
                Ok(StageClosed::Next(stage)) => stage,
                Err(e) => return (Err(e), self.refused),
            };
            for i in 0..N {
                let who = name(i);
                let relay = self.coordinator.relay_for(&who);
                if let Step::Send(message) = act(&mut self, &who, stage, relay) {
                    self.receive(&who, stage, message);
                }
            }
        }
    }

    /// The honest answer, or sitting out when the session refuses (as a node does).
    fn honest(&mut self, who: &str, stage: SecAggStage, relay: &SecAggRelay) -> Step {
        match self.answer(who, stage, relay) {
            Ok(message) => Step::Send(message),
            Err(_) => Step::SitOut,
        }
    }
}

type Sum = Result<(Vec<f64>, BTreeSet<String>), SecAggError>;

/// What one party does at one stage.
enum Step {
    Send(SignedStageMessage),
    SitOut,
}

/// Every relay and stage message of one honest aggregation, encoded: seeds for mutation.
fn honest_transcript() -> &'static [Vec<u8>] {
    static SAMPLES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let mut samples = Vec::new();
        let (result, refused) = Aggregation::new(1).finish(|agg, who, stage, relay| {
            samples.push(relay.encode_to_vec());
            let message = agg.answer(who, stage, &relay).unwrap();
            samples.push(message.body.clone());
            samples.push(message.encode_to_vec());
            Step::Send(message)
        });
        assert_eq!((result.unwrap().1.len(), refused.len()), (N, 0));
        samples
    })
}

/// The plain sum of the contributors' inputs.
fn plain_sum(contributors: &BTreeSet<String>) -> Vec<f64> {
    let mut sum = vec![0.0; 3];
    for i in (0..N).filter(|i| contributors.contains(&name(*i))) {
        for (total, value) in sum.iter_mut().zip(input(i)) {
            *total += value;
        }
    }
    sum
}

/// A structural change to a relay, re-encoded: lists of names, advertisements, shares,
/// survivor signatures and masking statements have entries dropped, repeated, swapped, renamed
/// or altered inside; the parameters are replaced; or the encoded relay is edited bytewise.
#[derive(Debug, Clone)]
enum RelayEdit {
    Drop {
        list: u8,
        at: usize,
    },
    Repeat {
        list: u8,
        at: usize,
        times: u16,
    },
    Swap {
        list: u8,
        a: usize,
        b: usize,
    },
    Rename {
        list: u8,
        at: usize,
        to: usize,
    },
    FlipInside {
        list: u8,
        at: usize,
        byte: usize,
        bit: u8,
    },
    Parameters {
        threshold: u32,
        neighbours: u32,
    },
    Bytes(Vec<Edit>),
}

fn relay_edit_strategy() -> impl Strategy<Value = RelayEdit> {
    let list = 0u8..7;
    prop_oneof![
        (list.clone(), any::<usize>()).prop_map(|(list, at)| RelayEdit::Drop { list, at }),
        (list.clone(), any::<usize>(), 1u16..300).prop_map(|(list, at, times)| RelayEdit::Repeat {
            list,
            at,
            times
        }),
        (list.clone(), any::<usize>(), any::<usize>()).prop_map(|(list, a, b)| RelayEdit::Swap {
            list,
            a,
            b
        }),
        (list.clone(), any::<usize>(), any::<usize>())
            .prop_map(|(list, at, to)| RelayEdit::Rename { list, at, to }),
        (list, any::<usize>(), any::<usize>(), 0u8..8).prop_map(|(list, at, byte, bit)| {
            RelayEdit::FlipInside {
                list,
                at,
                byte,
                bit,
            }
        }),
        (0u32..6, 0u32..6).prop_map(|(threshold, neighbours)| RelayEdit::Parameters {
            threshold,
            neighbours
        }),
        proptest::collection::vec(edit_strategy(), 1..3).prop_map(RelayEdit::Bytes),
    ]
}

/// A list entry that can be renamed and altered inside.
trait Entry: Clone {
    fn rename(&mut self, name: &str);
    fn flip(&mut self, byte: usize, bit: u8);
}

impl Entry for String {
    fn rename(&mut self, name: &str) {
        *self = name.to_owned();
    }
    fn flip(&mut self, byte: usize, bit: u8) {
        let mut bytes = self.clone().into_bytes();
        apply(&mut bytes, &[Edit::Flip { at: byte, bit }]);
        if let Ok(text) = String::from_utf8(bytes) {
            *self = text;
        }
    }
}

macro_rules! message_entry {
    ($type:ty, $name:ident) => {
        impl Entry for $type {
            fn rename(&mut self, name: &str) {
                self.$name = name.to_owned();
            }
            fn flip(&mut self, byte: usize, bit: u8) {
                let mut bytes = self.encode_to_vec();
                apply(&mut bytes, &[Edit::Flip { at: byte, bit }]);
                if let Ok(altered) = <$type>::decode(bytes.as_slice()) {
                    *self = altered;
                }
            }
        }
    };
}

message_entry!(MemberAdvertisement, name);
message_entry!(RelayedShare, from);
message_entry!(MaskingStatement, participant);

fn edit_list<T: Entry>(list: &mut Vec<T>, edit: &RelayEdit) {
    let n = list.len();
    if n == 0 {
        return;
    }
    match *edit {
        RelayEdit::Drop { at, .. } => {
            list.remove(at % n);
        }
        RelayEdit::Repeat { at, times, .. } => {
            let entry = list[at % n].clone();
            list.extend(std::iter::repeat_n(entry, times as usize));
        }
        RelayEdit::Swap { a, b, .. } => list.swap(a % n, b % n),
        RelayEdit::Rename { at, to, .. } => list[at % n].rename(&name(to % N)),
        RelayEdit::FlipInside { at, byte, bit, .. } => list[at % n].flip(byte, bit),
        _ => {}
    }
}

/// The `pick`-th of the relay's lists that has entries (lists in the order of `edit_relay`).
fn nonempty(relay: &SecAggRelay, pick: u8) -> u8 {
    let lengths = [
        relay.selected.len(),
        relay.members.len(),
        relay.advertisements.len(),
        relay.shares.len(),
        relay.survivors.len(),
        relay.survivor_signatures.len(),
        relay.masking.len(),
    ];
    let filled: Vec<u8> = (0..7).filter(|&i| lengths[i as usize] > 0).collect();
    filled
        .get(pick as usize % filled.len().max(1))
        .copied()
        .unwrap_or(0)
}

fn edit_relay(relay: &SecAggRelay, edits: &[RelayEdit]) -> SecAggRelay {
    let mut relay = relay.clone();
    for edit in edits {
        match edit {
            RelayEdit::Parameters {
                threshold,
                neighbours,
            } => {
                relay.threshold = *threshold;
                relay.neighbours = *neighbours;
            }
            RelayEdit::Bytes(edits) => {
                let mut bytes = relay.encode_to_vec();
                apply(&mut bytes, edits);
                // What does not decode never reaches the session: tonic refuses it.
                if let Ok(decoded) = SecAggRelay::decode(bytes.as_slice()) {
                    relay = decoded;
                }
            }
            RelayEdit::Drop { list, .. }
            | RelayEdit::Repeat { list, .. }
            | RelayEdit::Swap { list, .. }
            | RelayEdit::Rename { list, .. }
            | RelayEdit::FlipInside { list, .. } => match nonempty(&relay, *list) {
                0 => edit_list(&mut relay.selected, edit),
                1 => edit_list(&mut relay.members, edit),
                2 => edit_list(&mut relay.advertisements, edit),
                3 => edit_list(&mut relay.shares, edit),
                4 => edit_list(&mut relay.survivors, edit),
                5 => edit_list(&mut relay.survivor_signatures, edit),
                _ => edit_list(&mut relay.masking, edit),
            },
        }
    }
    relay
}

/// The owners whose self-mask and mask-key shares an unmask message reveals.
fn revealed(message: &SignedStageMessage) -> (BTreeSet<String>, BTreeSet<String>) {
    let shares = UnmaskShares::decode(message.body.as_slice()).unwrap();
    let owners = |list: &[RevealedShare]| list.iter().map(|s| s.owner.clone()).collect();
    (owners(&shares.self_mask_shares), owners(&shares.key_shares))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// One participant gets a mutated relay at one stage. It refuses it and stays where it
    /// was (the genuine relay then completes the aggregation with every input summed), or
    /// accepts it and what it sends is still safe: at unmask it reveals self-mask shares only of
    /// survivors and key shares only of others, never both for anyone; the aggregation ends in
    /// the exact sum of its contributors or a clean abort, never a wrong sum.
    #[test]
    fn relays_mutated_by_the_coordinator_never_corrupt_a_participant(
        seed in any::<u64>(),
        victim in 0..N,
        target in 0..STAGES.len(),
        edits in proptest::collection::vec(relay_edit_strategy(), 1..4),
    ) {
        let victim = name(victim);
        let target = STAGES[target];
        let mut refused = None;
        let mut survivors = BTreeSet::new();
        let (result, _) = Aggregation::new(seed).finish(|agg, who, stage, relay| {
            if stage == SecAggStage::ConsistencyCheck {
                survivors = relay.survivors.iter().cloned().collect();
            }
            if who != victim || stage != target {
                // Others may refuse what the victim's deviation led to (e.g. an accusation).
                return agg.honest(who, stage, &relay);
            }
            let mutated = edit_relay(&relay, &edits);
            let before = agg.sessions[who].completed();
            match agg.answer(who, stage, &mutated) {
                Err(e) => {
                    assert_eq!(agg.sessions[who].completed(), before, "refused but moved on: {e}");
                    refused = Some(e);
                    Step::Send(agg.answer(who, stage, &relay).unwrap())
                }
                Ok(message) => {
                    if stage == SecAggStage::Unmask {
                        let (seeds, keys) = revealed(&message);
                        assert!(seeds.is_subset(&survivors), "self-mask shares of non-survivors");
                        assert!(keys.is_disjoint(&survivors), "key shares of survivors");
                    }
                    Step::Send(message)
                }
            }
        });
        match result {
            Ok((sum, contributors)) => {
                prop_assert_eq!(sum, plain_sum(&contributors));
                if refused.is_some() {
                    prop_assert_eq!(contributors.len(), N, "refused {:?}", refused);
                }
            }
            Err(e) => prop_assert!(refused.is_none(), "aborted ({e}) after a refused relay {:?}", refused),
        }
    }

    /// One participant sends a mutated body at one stage, signed with its own key (a deviating
    /// participant signs what it likes), or another participant's body re-signed. The
    /// coordinator refuses it and names the sender, or accepts it; honest participants never
    /// fail on what it relays; the aggregation ends in the exact sum of the honest contributors
    /// (plus the deviant's, if it contributed, within its bounds) or a clean abort.
    #[test]
    fn bodies_mutated_by_a_participant_are_refused_or_named(
        seed in any::<u64>(),
        deviant in 0..N,
        target in 0..=STAGES.len(),
        copy_from in prop::option::of(0..N),
        edits in proptest::collection::vec(edit_strategy(), 0..4),
    ) {
        let deviant = name(deviant);
        let signer = consortium().signers[..N]
            .iter()
            .find(|s| s.name() == deviant)
            .unwrap()
            .clone();
        let resign = |stage: SecAggStage, mut body: Vec<u8>| {
            apply(&mut body, &edits);
            signer.sign(&context(), stage, body)
        };
        // Setup (target = 0): the deviant's advertisement itself is mutated.
        let agg = Aggregation::with_setup(seed, |who, advertisement| {
            if who == deviant && target == 0 {
                resign(SecAggStage::Setup, advertisement.body)
            } else {
                advertisement
            }
        });
        let target = [SecAggStage::Setup, STAGES[0], STAGES[1], STAGES[2], STAGES[3]][target];
        let mut bodies: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let (result, refused) = agg.finish(|agg, who, stage, relay| {
            let Step::Send(message) = agg.honest(who, stage, &relay) else {
                return Step::SitOut;
            };
            if who != deviant || stage != target {
                bodies.insert(who.to_owned(), message.body.clone());
                return Step::Send(message);
            }
            let copied = copy_from.map(name).and_then(|other| bodies.get(&other).cloned());
            Step::Send(resign(stage, copied.unwrap_or(message.body)))
        });
        for (who, stage, named) in &refused {
            if *who == deviant && *stage == target {
                prop_assert!(named, "the deviant's refused {:?} message did not name it", stage);
            }
        }
        match result {
            Ok((sum, contributors)) if !contributors.contains(&deviant) => {
                prop_assert_eq!(sum, plain_sum(&contributors));
            }
            Ok((sum, _)) => prop_assert!(sum.iter().all(|v| v.is_finite())),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

/// A tfhe client key for the aggregate's parameters (no server key: only ciphertexts are made).
fn aggregate_bytes() -> &'static Vec<u8> {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        use bincode::Options as _;
        let options = bincode::DefaultOptions::new()
            .with_fixint_encoding()
            .with_limit(he::SIZE_LIMIT)
            .reject_trailing_bytes();
        let key = tfhe::integer::ClientKey::new(he::PARAMETERS);
        let value = key.encrypt_radix(5u64, 2);
        let kept = key.encrypt_bool(true);
        EncryptedAggregate {
            federation_id: "fuzz".into(),
            round: 1,
            value_bits: 4,
            values: vec![options.serialize(&value).unwrap()],
            kept: vec![options.serialize(&kept).unwrap()],
            ..Default::default()
        }
        .encode_to_vec()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// An encrypted aggregate file, random or mutated (its protobuf, its bincode ciphertexts):
    /// refused with the reason, or read with every block decryptable under the parameters.
    #[test]
    fn aggregates_from_any_bytes(
        random in proptest::collection::vec(any::<u8>(), 0..512),
        inner in any::<bool>(),
        edits in proptest::collection::vec(edit_strategy(), 1..4),
    ) {
        // Random bytes: refused or read, never a panic.
        let _ = OpenedAggregate::from_bytes(&random);
        let mut file = EncryptedAggregate::decode(aggregate_bytes().as_slice()).unwrap();
        let mut bytes = if inner {
            apply(&mut file.values[0], &edits);
            file.encode_to_vec()
        } else {
            let mut bytes = aggregate_bytes().clone();
            apply(&mut bytes, &edits);
            bytes
        };
        let (opened, peak) = counting::peak(|| OpenedAggregate::from_bytes(&bytes).map(|a| a.values.len()));
        prop_assert!(peak < 4 * bytes.len() + (4 << 20), "{} bytes held {peak}", bytes.len());
        // Read or refused; a read one passed the block checks (see the test below).
        drop(opened);
        bytes.clear();
    }
}

#[test]
fn an_aggregate_is_read_and_one_of_another_dimension_or_claiming_2_60_blocks_is_refused() {
    let opened = OpenedAggregate::from_bytes(aggregate_bytes()).unwrap();
    assert_eq!((opened.values.len(), opened.kept.len()), (1, 1));

    let mut file = EncryptedAggregate::decode(aggregate_bytes().as_slice()).unwrap();
    // The first 8 bytes of a radix ciphertext are its block count (fixed-width bincode).
    file.values[0][..8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let bytes = file.encode_to_vec();
    let (result, peak) = counting::peak(|| OpenedAggregate::from_bytes(&bytes).map(|_| ()));
    assert!(result.is_err());
    assert!(peak < 4 << 20, "a claimed 2^60 blocks held {peak} bytes");

    // A block of another LWE dimension (one word fewer): it would make tfhe's decryption assert.
    let mut file = EncryptedAggregate::decode(aggregate_bytes().as_slice()).unwrap();
    let key = tfhe::integer::ClientKey::new(he::PARAMETERS);
    let mut value = key.encrypt_radix(5u64, 2);
    for block in value.blocks_mut() {
        let mut words = block.ct.clone().into_container();
        words.pop();
        block.ct = tfhe::core_crypto::prelude::LweCiphertext::from_container(
            words,
            block.ct.ciphertext_modulus(),
        );
    }
    use bincode::Options as _;
    file.values[0] = bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .serialize(&value)
        .unwrap();
    let error = OpenedAggregate::from_bytes(&file.encode_to_vec())
        .err()
        .unwrap();
    assert_eq!(
        error.to_string(),
        "encrypted aggregate: value 0 is not 4 bits under the auditor's parameters"
    );
}

/// A public bundle signed by `key` around `compact_public_key` and `crs`.
fn signed_bundle(key: &ed25519_dalek::SigningKey, public_key: Vec<u8>, crs: Vec<u8>) -> Vec<u8> {
    let mut bundle = AuditorKeyBundle {
        format: he::keys::BUNDLE_FORMAT.into(),
        kind: "public".into(),
        parameters: he::describe_parameters(),
        parameters_sha256: he::parameters_sha256(),
        compact_public_key: public_key,
        crs,
        verifying_key: key.verifying_key().to_bytes().to_vec(),
        ..Default::default()
    };
    let digest: [u8; 32] = Sha256::new()
        .chain_update(b"accord/auditor-bundle/v1")
        .chain_update(bundle.encode_to_vec())
        .finalize()
        .into();
    bundle.signature = key.sign(&digest).to_bytes().to_vec();
    bundle.encode_to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// A bundle file of random bytes, or a bundle the pinned auditor key signed around random
    /// or length-bombed tfhe objects: refused with the reason, never a panic.
    #[test]
    fn bundles_from_any_bytes(
        random in proptest::collection::vec(any::<u8>(), 0..512),
        inside in proptest::collection::vec(any::<u8>(), 0..256),
        claim in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let path = dir.path().join("auditor-public.bundle");
        std::fs::write(&path, &random).unwrap();
        prop_assert!(PublicMaterial::load(&path, &key.verifying_key()).is_err());
        let mut object = inside.clone();
        if claim {
            // tfhe's safe serialization starts with length-prefixed strings: claim 2^60 bytes.
            object.splice(0..0, (1u64 << 60).to_le_bytes());
        }
        std::fs::write(&path, signed_bundle(&key, object, inside)).unwrap();
        let (result, peak) = counting::peak(|| PublicMaterial::load(&path, &key.verifying_key()).map(|_| ()));
        prop_assert!(matches!(result, Err(HeError::Malformed { .. })), "{:?}", result);
        prop_assert!(peak < 4 << 20, "held {peak} bytes");
    }
}

#[test]
fn a_bundle_over_the_size_limit_is_refused_with_its_size_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auditor-public.bundle");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(he::SIZE_LIMIT + 1).unwrap(); // sparse: nothing is written
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let (result, peak) =
        counting::peak(|| PublicMaterial::load(&path, &key.verifying_key()).map(|_| ()));
    let error = result.unwrap_err().to_string();
    assert!(
        error.ends_with(&format!(
            "{} bytes, more than the {} bytes accepted for an auditor key bundle",
            he::SIZE_LIMIT + 1,
            he::SIZE_LIMIT
        )),
        "{error}"
    );
    assert!(peak < 1 << 16, "held {peak} bytes");
}

#[test]
fn a_bundle_around_a_public_key_for_other_parameters_is_refused_by_tfhe_conformance() {
    // Signed by the pinned key and well-formed, but a compact public key of tfhe's default
    // parameters, not the auditor's: encrypting with it would not give what the coordinator
    // can verify and sum.
    let client = tfhe::ClientKey::generate(tfhe::ConfigBuilder::default().build());
    let mut public_key = Vec::new();
    tfhe::safe_serialization::safe_serialize(
        &tfhe::CompactPublicKey::new(&client),
        &mut public_key,
        he::SIZE_LIMIT,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auditor-public.bundle");
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    std::fs::write(&path, signed_bundle(&key, public_key, vec![])).unwrap();
    match PublicMaterial::load(&path, &key.verifying_key()) {
        Err(HeError::Malformed { what, reason }) => {
            assert_eq!(what, "compact public key");
            assert!(reason.contains("not conformant"), "{reason}");
        }
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn a_certificate_request_over_the_size_limit_is_refused_with_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ConsortiumCa::init(dir.path(), "Fuzz").unwrap();
    let request = dir.path().join("org-9.csr");
    let file = std::fs::File::create(&request).unwrap();
    file.set_len(accord_crypto::pki::MAX_REQUEST_BYTES + 1)
        .unwrap();
    let options = accord_crypto::pki::SignOptions::default();
    let error = ca
        .sign_request(&request, &dir.path().join("org-9.pem"), &options)
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        format!(
            "{}: 65537 bytes, more than the 65536 bytes accepted for a certificate request",
            request.display()
        )
    );
}

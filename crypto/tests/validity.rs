//! Input-validity proofs over the real phase layouts at the demo's settings: honest inputs at
//! and near every bound pass, an input one unit past any bound or relation is refused, the
//! poisoning input of issue 11 (n = 1 with n·w at its bound) fails the fit statement, proofs
//! bound elsewhere or tampered with fail, and the unmasked sum is checked against the sum of
//! the committed inputs with blindings that follow the masks. The same for the fairness counts
//! committed under the auditor's key, which the auditor opens against the decrypted aggregate.

use accord_crypto::secagg::fixed_point;
use accord_crypto::secagg::mask::{add_blindings, apply_mask};
use accord_crypto::secagg::validity::counts::{
    CountCommitmentKey, CountOpeningKey, CountProof, CountSum, prove_counts, verify_counts,
};
use accord_crypto::secagg::validity::{
    CommitmentSum, Statement, ValidityError, ValidityProof, prove, verify,
};
use accord_crypto::secagg::{FixedPoint, Modulus};
use accord_proto::fairness::FairnessLayout;
use accord_proto::layout::{
    Bound, EvaluationCounts, MAX_LOG_LOSS_PER_RECORD, Relation, StandardizationLayout,
    WeightedModel, encoded_columns,
};
use accord_proto::mitigation::{EvaluationStatistics, FairFedUpdate};
use accord_proto::v1::{
    Boolean, Categorical, EvaluationParams, FairnessMitigation, Feature, Intersection,
    MitigationKind, Numeric, ProtectedAttribute, Schema, SecAggParams, ThresholdPostprocessing,
    ThresholdRule, feature::Kind,
};
use curve25519_dalek::scalar::Scalar;
use proptest::prelude::*;
use std::time::Instant;

/// examples/coordinator.toml's [secure_aggregation] and the demo's three participants.
const MAX_ROWS: u64 = 1_000_000;
const CLIP: f64 = 50.0;
const PARTICIPANTS: usize = 3;
/// examples/coordinator.toml's [evaluation] histogram_bins.
const BINS: usize = 100;

fn params() -> SecAggParams {
    SecAggParams {
        modulus_bits: 64,
        precision_bits: 24,
        clip: CLIP,
        max_rows_per_participant: MAX_ROWS,
        ..Default::default()
    }
}

/// examples/coordinator.toml's schema.
fn schema() -> Schema {
    let numeric = |name: &str, min: f64, max: f64| Feature {
        name: name.into(),
        kind: Some(Kind::Numeric(Numeric {
            min: Some(min),
            max: Some(max),
        })),
    };
    let boolean = |name: &str| Feature {
        name: name.into(),
        kind: Some(Kind::Boolean(Boolean {})),
    };
    let categorical = |name: &str, categories: &[&str]| Feature {
        name: name.into(),
        kind: Some(Kind::Categorical(Categorical {
            categories: categories.iter().map(|c| c.to_string()).collect(),
        })),
    };
    let protected = |name: &str, categories: &[&str]| ProtectedAttribute {
        name: name.into(),
        categories: categories.iter().map(|c| c.to_string()).collect(),
        use_as_feature: false,
    };
    Schema {
        features: vec![
            numeric("wait_seconds", 0.0, 86400.0),
            numeric("handle_seconds", 0.0, 86400.0),
            numeric("transfers", 0.0, 50.0),
            numeric("contacts_30d", 0.0, 100.0),
            boolean("first_contact_resolution"),
            numeric("sentiment", -1.0, 1.0),
            numeric("agent_tenure_months", 0.0, 600.0),
            boolean("ai_assisted"),
            numeric("customer_tenure_months", 0.0, 1200.0),
            categorical("channel", &["phone", "chat", "email", "social", "app"]),
            categorical(
                "issue_category",
                &["billing", "technical", "delivery", "account", "complaint"],
            ),
        ],
        protected_attributes: vec![
            protected("age_band", &["18-29", "30-44", "45-59", "60+"]),
            protected("gender", &["female", "male", "nonbinary"]),
            protected("disability", &["yes", "no"]),
        ],
        ..Default::default()
    }
}

/// A phase's encoding and statement, built as both sides build them.
struct Phase {
    name: &'static str,
    encoding: FixedPoint,
    statement: Statement,
}

impl Phase {
    fn new(name: &'static str, bounds: &[Bound], relations: &[Relation]) -> Self {
        let encoding = fixed_point(bounds, &params(), PARTICIPANTS).unwrap();
        let statement = Statement::new(&encoding, relations).unwrap();
        Self {
            name,
            encoding,
            statement,
        }
    }

    fn words(&self, values: &[f64]) -> Vec<u64> {
        self.encoding.encode(values).unwrap().words
    }
}

fn columns() -> usize {
    encoded_columns(&schema()).len()
}

fn standardize() -> Phase {
    let layout = StandardizationLayout::new(&schema()).unwrap();
    Phase::new(
        "standardize",
        &layout.bounds(MAX_ROWS).unwrap(),
        &layout.relations(),
    )
}

fn fit() -> Phase {
    Phase::new(
        "fit",
        &WeightedModel::bounds(columns(), CLIP, MAX_ROWS),
        &WeightedModel::relations(columns(), CLIP),
    )
}

fn evaluate() -> Phase {
    Phase::new(
        "evaluate",
        &EvaluationCounts::bounds(BINS, MAX_ROWS),
        &EvaluationCounts::relations(BINS),
    )
}

fn blindings(len: usize, seed: u8) -> Vec<Scalar> {
    let mut rho = vec![Scalar::ZERO; len];
    add_blindings(&mut rho, &[seed; 32], false);
    rho
}

const BINDING: &[u8] = b"federation f, round 3, phase fit, sender org-1";

/// Proves and verifies `values` for `phase`.
fn round_trip(phase: &Phase, words: &[u64]) -> Result<(), ValidityError> {
    let rho = blindings(words.len(), 9);
    let proof = prove(&phase.statement, words, &rho, BINDING)?;
    let wire = ValidityProof::from_message(&phase.statement, &proof.to_message())?;
    verify(&phase.statement, &wire, BINDING).map(|_| ())
}

/// A participant's standardization words over `rows` records, computed as participants do.
fn standardization_values<'a>(rows: impl IntoIterator<Item = &'a Vec<f64>>) -> Vec<f64> {
    let layout = StandardizationLayout::new(&schema()).unwrap();
    let sums = layout
        .sums(rows.into_iter().map(|r| r.iter().copied()))
        .unwrap();
    layout.to_vec(&sums)
}

/// Each column's (min, max) in the demo schema's encoding.
fn ranges() -> Vec<(f64, f64)> {
    accord_proto::layout::column_ranges(&schema()).unwrap()
}

/// A record: each column at its minimum, maximum or a point in between.
fn record() -> impl Strategy<Value = Vec<f64>> {
    let strategies: Vec<BoxedStrategy<f64>> = ranges()
        .into_iter()
        .map(|(min, max)| {
            prop_oneof![Just(min), Just(max), min..=max]
                .prop_map(move |v: f64| v.clamp(min, max))
                .boxed()
        })
        .collect();
    strategies
}

#[test]
fn statements_of_the_demo_phases_have_the_expected_shape() {
    let standardize = standardize();
    let fit = fit();
    let evaluate = evaluate();
    // Count ≥ 0 and ≤ R, then per column six words (Σq: one 24-bit limb and its top word;
    // Σq²: three limbs and its top word), each with two forms: its box for a limb, the relation
    // to the count (which implies the box) for a top word.
    assert_eq!(standardize.statement.forms(), 2 + 2 * 6 * columns());
    assert_eq!(fit.statement.forms(), 2 + 2 * (columns() + 1));
    assert_eq!(evaluate.statement.forms(), 2 + 2 * (6 + 2 * BINS));
    // Counts fit in 32-bit forms; real sums need 64.
    assert_eq!(
        evaluate.statement.proof_widths(),
        vec![
            (32, 256),
            (32, 128),
            (32, 2 + 2 * (4 + 2 * BINS) - 384),
            (64, 4)
        ]
    );
    for phase in [standardize, fit, evaluate] {
        println!("{}: {}", phase.name, phase.statement);
    }
}

#[test]
fn honest_inputs_at_every_bound_pass() {
    let rows = MAX_ROWS as f64;
    // Fit: the largest sample count, every weight at ±clip, and no samples at all.
    let fit = fit();
    for (n, w) in [
        (rows, CLIP),
        (rows, -CLIP),
        (1.0, CLIP),
        (0.0, 0.0),
        (7.0, -CLIP),
    ] {
        let mut values: Vec<f64> = (0..=columns())
            .map(|j| (if j % 2 == 0 { w } else { -w }) * n)
            .collect();
        values.push(n);
        round_trip(&fit, &fit.words(&values)).unwrap_or_else(|e| panic!("n = {n}, w = {w}: {e}"));
    }
    // Evaluate: every count at n, log loss at 28 n; and everything 0.
    let evaluate = evaluate();
    for n in [rows, 1.0, 0.0] {
        let mut values = vec![n; EvaluationCounts::len(BINS)];
        values[5] = MAX_LOG_LOSS_PER_RECORD * n;
        round_trip(&evaluate, &evaluate.words(&values)).unwrap();
        round_trip(&evaluate, &evaluate.words(&vec![0.0; values.len()])).unwrap();
    }
    // Standardize: a million records at each column's maximum, then at its minimum.
    let standardize = standardize();
    for pick in [|r: (f64, f64)| r.1, |r: (f64, f64)| r.0] {
        let record: Vec<f64> = ranges().into_iter().map(pick).collect();
        let values = standardization_values(std::iter::repeat_n(&record, MAX_ROWS as usize));
        round_trip(&standardize, &standardize.words(&values)).unwrap();
    }
}

#[test]
fn standardization_words_one_unit_past_their_relations_are_refused() {
    let layout = StandardizationLayout::new(&schema()).unwrap();
    let phase = standardize();
    // 1000 records, every column at its maximum: the largest honest words for n = 1000.
    let record: Vec<f64> = ranges().into_iter().map(|r| r.1).collect();
    let honest = standardization_values(std::iter::repeat_n(&record, 1000));
    round_trip(&phase, &phase.words(&honest)).unwrap();
    let bounds = layout.bounds(MAX_ROWS).unwrap();
    let relations = layout.relations();
    // Word 1 is wait_seconds' Σq limb (its 22 bits below the top word: L < 2^47 leaves 25 for
    // the top), word 2 its top word (at most ceil(L / 2^22) per record).
    assert_eq!(bounds[1].name, "sum wait_seconds limb 0");
    assert_eq!(bounds[1].bound, f64::from((1u32 << 22) - 1));
    assert_eq!(bounds[2].name, "sum wait_seconds top");
    let per_record = relations
        .iter()
        .find(|r| r.values == (2..3))
        .unwrap()
        .upper
        .ceil();
    // At their bounds they pass; one unit more is refused (the limb's word is forged, since
    // encoding clips a value past its segment's bound).
    for (at, top) in [(1, bounds[1].bound), (2, per_record * 1000.0)] {
        let mut values = honest.clone();
        values[at] = top;
        let mut words = phase.words(&values);
        round_trip(&phase, &words).unwrap_or_else(|e| panic!("word {at} at {top}: {e}"));
        words[at] += 1;
        assert!(
            matches!(
                round_trip(&phase, &words),
                Err(ValidityError::Unsatisfied { .. })
            ),
            "word {at} one past {top} passed"
        );
    }
}

/// Issue 12's columns through the real encoding: three participants prove their words, the
/// ring sum of their encodings decodes to exact sums, and the moments are within 1e-6 relative
/// of the truth: a constant wait_seconds of 86399.9 (in [0, 86400]) gets scale 1 and
/// handle_seconds = 86000 + 0.001·k for k = 0, 1, 2 gets SD 0.001·√(2/3) = 0.000816497.
#[test]
fn standardization_through_the_encoding_is_exact_to_the_resolution() {
    let layout = StandardizationLayout::new(&schema()).unwrap();
    let phase = standardize();
    let names = encoded_columns(&schema());
    let wait = names.iter().position(|c| c == "wait_seconds").unwrap();
    let handle = names.iter().position(|c| c == "handle_seconds").unwrap();
    // Participant k holds 100 records with handle_seconds 86000 + 0.001·k.
    let mut encoded = Vec::new();
    for k in 0..PARTICIPANTS {
        let mut record: Vec<f64> = ranges().into_iter().map(|r| r.0).collect();
        record[wait] = 86399.9;
        record[handle] = 86000.0 + 0.001 * k as f64;
        let values = standardization_values(std::iter::repeat_n(&record, 100));
        let words = phase.words(&values);
        round_trip(&phase, &words).unwrap();
        encoded.push(words);
    }
    let mut sum = vec![0u64; layout.len()];
    for words in &encoded {
        for (s, w) in sum.iter_mut().zip(words) {
            *s = s.wrapping_add(*w);
        }
    }
    let decoded = phase.encoding.decode(&sum, PARTICIPANTS).unwrap();
    let sums = layout.from_slice(&decoded).unwrap();
    assert_eq!(sums.count, 300);
    let (means, std_devs) = layout.moments(&sums).unwrap();
    assert_eq!(std_devs[wait], 1.0, "a constant column gets scale 1");
    assert!((means[wait] - 86399.9).abs() < 1e-9, "{}", means[wait]);
    let truth = 0.001 * (2.0f64 / 3.0).sqrt();
    let relative = (std_devs[handle] - truth).abs() / truth;
    println!(
        "handle_seconds SD {:.12} (true {truth:.12}, relative error {relative:.2e}); mean {:.9}",
        std_devs[handle], means[handle]
    );
    assert!(relative < 1e-6, "SD {} vs {truth}", std_devs[handle]);
    assert!(
        (means[handle] - 86000.001).abs() < 1e-9,
        "{}",
        means[handle]
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn honest_standardization_sums_pass(rows in proptest::collection::vec(record(), 0..40)) {
        let phase = standardize();
        prop_assert!(round_trip(&phase, &phase.words(&standardization_values(&rows))).is_ok());
    }

    #[test]
    fn honest_fitted_models_pass(
        n in prop_oneof![Just(0u64), Just(1), Just(MAX_ROWS), 0..=MAX_ROWS],
        weights in proptest::collection::vec(prop_oneof![Just(CLIP), Just(-CLIP), -CLIP..=CLIP], 20),
    ) {
        let phase = fit();
        let n = n as f64;
        // As participants compute it: weights clipped, then multiplied by n.
        let mut values: Vec<f64> = weights.iter().map(|w| w.clamp(-CLIP, CLIP) * n).collect();
        values.push(n);
        prop_assert!(round_trip(&phase, &phase.words(&values)).is_ok());
    }

    #[test]
    fn honest_evaluation_counts_pass(
        records in proptest::collection::vec((0.0f64..=1.0, any::<bool>()), 0..300),
    ) {
        let phase = evaluate();
        let mut counts = EvaluationCounts::zeros(BINS);
        for &(p, positive) in &records {
            let predicted = p >= 0.5;
            let y = f64::from(u8::from(positive));
            counts.n += 1.0;
            match (positive, predicted) {
                (true, true) => counts.tp += 1.0,
                (false, true) => counts.fp += 1.0,
                (false, false) => counts.tn += 1.0,
                (true, false) => counts.fn_ += 1.0,
            }
            let clipped = p.clamp(1e-12, 1.0 - 1e-12);
            counts.log_loss_sum -= if positive { clipped.ln() } else { (1.0 - clipped).ln() };
            counts.brier_sum += (p - y).powi(2);
            let bin = EvaluationCounts::bin(p, BINS);
            if positive {
                counts.positive_histogram[bin] += 1.0;
            } else {
                counts.negative_histogram[bin] += 1.0;
            }
        }
        prop_assert!(round_trip(&phase, &phase.words(&counts.to_vec())).is_ok());
    }

    #[test]
    fn one_unit_past_any_bound_or_relation_is_refused(pick in any::<prop::sample::Index>(), up in any::<bool>()) {
        // Every value at a bound of its relation (n·w at ±clip·n, counts at n or 0), then one
        // word moved one unit outwards.
        let n = 1000.0;
        let phase = fit();
        let sign = if up { 1.0 } else { -1.0 };
        let mut values: Vec<f64> = (0..=columns()).map(|_| sign * CLIP * n).collect();
        values.push(n);
        let mut words = phase.words(&values);
        let at = pick.index(columns() + 1);
        words[at] = if up { words[at] + 1 } else { words[at] - 1 };
        let refused = matches!(round_trip(&phase, &words), Err(ValidityError::Unsatisfied { .. }));
        prop_assert!(refused, "word {} moved one unit out passed", at);

        let phase = evaluate();
        let mut values = vec![if up { n } else { 0.0 }; EvaluationCounts::len(BINS)];
        values[0] = n;
        values[5] = if up { MAX_LOG_LOSS_PER_RECORD * n } else { 0.0 };
        let mut words = phase.words(&values);
        let at = 1 + pick.index(values.len() - 1);
        words[at] = if up { words[at] + 1 } else { words[at] - 1 };
        let refused = matches!(round_trip(&phase, &words), Err(ValidityError::Unsatisfied { .. }));
        prop_assert!(refused, "word {} moved one unit out passed", at);
    }
}

#[test]
fn mitigation_statistics_and_fairfed_vectors_meet_their_relations() {
    // Evaluate with a mitigation's group counts and a post-processing's group histograms.
    let schema = schema();
    let mitigation = FairnessMitigation {
        kind: MitigationKind::Fairfed as i32,
        strength: 0.5,
        attribute: "gender".into(),
        ..Default::default()
    };
    let postprocessing = ThresholdPostprocessing {
        rule: ThresholdRule::EqualOpportunity as i32,
        attribute: "age_band".into(),
        ..Default::default()
    };
    let evaluation = EvaluationParams {
        histogram_bins: BINS as u32,
        ..Default::default()
    };
    let mut extras = EvaluationStatistics::zeros(
        &schema,
        Some(&mitigation),
        Some(&postprocessing),
        &evaluation,
    );
    let start = EvaluationCounts::len(BINS);
    let mut bounds = EvaluationCounts::bounds(BINS, MAX_ROWS);
    bounds.extend(extras.bounds(MAX_ROWS));
    let mut relations = EvaluationCounts::relations(BINS);
    relations.extend(extras.relations(start));
    let phase = Phase::new("evaluate with mitigation", &bounds, &relations);
    let counts = extras.counts.as_mut().unwrap();
    for (group, positive, predicted) in [(0, true, true), (1, true, false), (3, false, true)] {
        counts.add(&[group], positive, predicted);
    }
    extras.histograms.as_mut().unwrap().add(2, true, 0.93);
    let mut values = vec![0.0; start];
    values[0] = 3.0;
    values.extend(extras.to_vec());
    round_trip(&phase, &phase.words(&values)).unwrap();
    // True positives above predicted positives and positives above n in a group, and a
    // negative histogram count, are refused.
    for (at, value) in [
        (start + 4 + 3, 1.0),
        (start + 4 + 1, 2.0),
        (values.len() - 1, -1.0),
    ] {
        let mut bad = values.clone();
        bad[at] = value;
        assert!(
            matches!(
                round_trip(&phase, &phase.words(&bad)),
                Err(ValidityError::Unsatisfied { .. })
            ),
            "position {at} = {value}"
        );
    }

    // FairFed: |d·w| ≤ clip·d and 0 ≤ d·Δ ≤ d; ω'·model only within its segment bound.
    let d = columns();
    let records = 3000.0;
    let phase = Phase::new(
        "fit (FairFed)",
        &FairFedUpdate::bounds(d, CLIP, MAX_ROWS, 0.5, records),
        &FairFedUpdate::relations(d, CLIP),
    );
    let model: Vec<f64> = (0..=d)
        .map(|j| if j % 2 == 0 { CLIP } else { -1.5 })
        .collect();
    let weight = 1000.0 - 0.5 * records * 0.25;
    let update = |defined: f64, gap: f64, model: &[f64]| FairFedUpdate {
        weighted_model: model.iter().map(|m| weight * m).collect(),
        weight,
        model: model.iter().map(|m| defined * m).collect(),
        defined,
        gap,
    };
    round_trip(&phase, &phase.words(&update(1.0, 0.25, &model).to_vec())).unwrap();
    round_trip(&phase, &phase.words(&update(0.0, 0.0, &model).to_vec())).unwrap();
    // A model sent with the flag down; a gap with the flag down; a gap one unit above d = 1.
    let mut flag_down = update(0.0, 0.0, &model).to_vec();
    flag_down[d + 2] = CLIP;
    let gap_without_flag = update(0.0, 0.3, &model).to_vec();
    let mut gap_above = phase.words(&update(1.0, 1.0, &model).to_vec());
    *gap_above.last_mut().unwrap() += 1;
    for words in [
        phase.words(&flag_down),
        phase.words(&gap_without_flag),
        gap_above,
    ] {
        assert!(matches!(
            round_trip(&phase, &words),
            Err(ValidityError::Unsatisfied { .. })
        ));
    }
}

#[test]
fn a_count_below_zero_or_above_max_rows_is_refused() {
    let phase = fit();
    let mut values = vec![0.0; columns() + 2];
    let last = values.len() - 1;
    values[last] = 0.0;
    let mut words = phase.words(&values);
    words[last] -= 1;
    let error = round_trip(&phase, &words).unwrap_err();
    assert!(error.to_string().contains("segment 'samples'"), "{error}");
    values[last] = MAX_ROWS as f64;
    let mut words = phase.words(&values);
    words[last] += 1;
    assert!(matches!(
        round_trip(&phase, &words),
        Err(ValidityError::Unsatisfied { .. })
    ));
}

#[test]
fn the_poisoning_input_fails_the_fit_statement() {
    // Issue 11: n·w = 1e6 per weight (any value up to the segment's bound R·clip) with n = 1.
    let phase = fit();
    for weighted in [1e6, MAX_ROWS as f64 * CLIP, 51.0] {
        let mut values = vec![weighted; columns() + 1];
        values.push(1.0);
        let error = round_trip(&phase, &phase.words(&values)).unwrap_err();
        assert!(
            matches!(&error, ValidityError::Unsatisfied { form } if form.contains("≤ 50 × value 20 (segment 'samples')")),
            "{error}"
        );
    }
}

#[test]
fn a_proof_bound_elsewhere_or_tampered_with_fails() {
    let phase = fit();
    let mut values = vec![CLIP * 10.0; columns() + 1];
    values.push(10.0);
    let words = phase.words(&values);
    let rho = blindings(words.len(), 3);
    let proof = prove(&phase.statement, &words, &rho, BINDING).unwrap();
    let message = proof.to_message();
    verify(&phase.statement, &proof, BINDING).unwrap();

    // Another federation, round, phase or sender.
    assert!(matches!(
        verify(
            &phase.statement,
            &proof,
            b"federation f, round 4, phase fit, sender org-1"
        ),
        Err(ValidityError::Invalid { .. })
    ));

    // A commitment swapped for another valid point (the commitment to another input).
    let other = prove(
        &phase.statement,
        &phase.words(&vec![0.0; values.len()]),
        &rho,
        BINDING,
    )
    .unwrap()
    .to_message();
    let mut swapped = message.clone();
    swapped.commitments[..32].copy_from_slice(&other.commitments[..32]);
    let swapped = ValidityProof::from_message(&phase.statement, &swapped).unwrap();
    assert!(matches!(
        verify(&phase.statement, &swapped, BINDING),
        Err(ValidityError::Invalid { .. })
    ));

    // A commitment that is no canonical point.
    let mut garbage = message.clone();
    garbage.commitments[32..64].fill(0xff);
    let garbage = ValidityProof::from_message(&phase.statement, &garbage).unwrap();
    assert_eq!(
        verify(&phase.statement, &garbage, BINDING).unwrap_err(),
        ValidityError::NonCanonical {
            what: "commitment",
            index: 1
        }
    );

    // Any byte of the range proof flipped.
    for at in [0, 100, 7 * 32 + 5, message.range_proofs[0].len() - 1] {
        let mut flipped = message.clone();
        flipped.range_proofs[0][at] ^= 1;
        let refused = ValidityProof::from_message(&phase.statement, &flipped)
            .and_then(|proof| verify(&phase.statement, &proof, BINDING).map(|_| ()));
        assert!(refused.is_err(), "byte {at}");
    }

    // A proof for another statement (the evaluate phase's) is refused by its lengths.
    let evaluate = evaluate();
    assert!(matches!(
        ValidityProof::from_message(&evaluate.statement, &message),
        Err(ValidityError::Length { .. })
    ));
}

#[test]
fn wrong_lengths_are_refused_before_decoding() {
    let phase = fit();
    let words = phase.words(&vec![0.0; columns() + 2]);
    let message = prove(
        &phase.statement,
        &words,
        &blindings(words.len(), 1),
        BINDING,
    )
    .unwrap()
    .to_message();
    let mut short = message.clone();
    short.commitments.pop();
    assert_eq!(
        ValidityProof::from_message(&phase.statement, &short).unwrap_err(),
        ValidityError::Length {
            what: "bytes of points",
            expected: 32 * words.len(),
            got: 32 * words.len() - 1
        }
    );
    let mut extra = message.clone();
    extra.range_proofs.push(vec![0; 32]);
    assert!(matches!(
        ValidityProof::from_message(&phase.statement, &extra),
        Err(ValidityError::Length {
            what: "range proofs",
            ..
        })
    ));
    let mut long = message.clone();
    long.range_proofs[0].extend_from_slice(&[0; 64]);
    assert!(matches!(
        ValidityProof::from_message(&phase.statement, &long),
        Err(ValidityError::Length {
            what: "range proof bytes",
            ..
        })
    ));
    assert!(matches!(
        prove(
            &phase.statement,
            &words[1..],
            &blindings(words.len() - 1, 1),
            BINDING
        ),
        Err(ValidityError::Length { what: "words", .. })
    ));
}

#[test]
fn relations_that_do_not_fit_the_vector_are_refused() {
    let phase = fit();
    let len = phase.statement.len();
    for (relation, expected) in [
        (
            Relation::scaled(0..len + 1, 0, 0.0, 1.0),
            "not within the vector",
        ),
        (Relation::scaled(0..1, len, 0.0, 1.0), "count position"),
        (
            Relation::scaled(1..2, 0, 0.0, 1.0),
            "'weighted weights', which is not a count",
        ),
        (Relation::scaled(0..1, len - 1, 1.0, 0.0), "not an interval"),
        (
            Relation::scaled(0..1, len - 1, f64::NAN, 0.0),
            "not an interval",
        ),
    ] {
        let error = Statement::new(&phase.encoding, &[relation]).unwrap_err();
        assert!(error.to_string().contains(expected), "{error}");
    }
    // A count forced above the segment's bound admits no input.
    let relation = Relation {
        values: len - 1..len,
        count: None,
        lower: 2.0 * MAX_ROWS as f64,
        upper: f64::INFINITY,
    };
    assert!(matches!(
        Statement::new(&phase.encoding, &[relation]),
        Err(ValidityError::Infeasible(_))
    ));
}

/// Three participants with self seeds and pairwise seeds, masking and blinding alike (the one
/// with the smaller index adds the pairwise mask, the other subtracts it).
struct Federation {
    phase: Phase,
    inputs: Vec<Vec<u64>>,
}

impl Federation {
    fn self_seed(p: usize) -> [u8; 32] {
        [100 + p as u8; 32]
    }

    fn pair_seed(p: usize, q: usize) -> [u8; 32] {
        [(10 * p.min(q) + p.max(q)) as u8; 32]
    }

    /// Participant p's masked words and the commitments it proved.
    fn participant(&self, p: usize, tamper: Option<(usize, u64)>) -> (Vec<u64>, ValidityProof) {
        let modulus = Modulus::Z64;
        let words = &self.inputs[p];
        let mut rho = vec![Scalar::ZERO; words.len()];
        let mut masked = words.clone();
        apply_mask(&mut masked, &Self::self_seed(p), false, modulus);
        add_blindings(&mut rho, &Self::self_seed(p), false);
        for q in (0..self.inputs.len()).filter(|&q| q != p) {
            apply_mask(&mut masked, &Self::pair_seed(p, q), q < p, modulus);
            add_blindings(&mut rho, &Self::pair_seed(p, q), q < p);
        }
        let proof = prove(&self.phase.statement, words, &rho, BINDING).unwrap();
        if let Some((at, delta)) = tamper {
            masked[at] = masked[at].wrapping_add(delta);
        }
        (masked, proof)
    }

    /// The coordinator: verifies, sums the survivors' masked words and commitments, removes
    /// the self masks of the survivors and the pairwise masks towards the dropped, and checks.
    fn aggregate(
        &self,
        dropped: &[usize],
        tamper: Option<(usize, usize, u64)>,
    ) -> Result<(), ValidityError> {
        let len = self.phase.statement.len();
        let mut sum = vec![0u64; len];
        let mut commitments = CommitmentSum::new(len);
        let mut blinding_sum = vec![Scalar::ZERO; len];
        let survivors: Vec<usize> = (0..self.inputs.len())
            .filter(|p| !dropped.contains(p))
            .collect();
        for &p in &survivors {
            let delta = tamper.filter(|t| t.0 == p).map(|t| (t.1, t.2));
            let (masked, proof) = self.participant(p, delta);
            commitments.add(&verify(&self.phase.statement, &proof, BINDING)?)?;
            for (s, w) in sum.iter_mut().zip(&masked) {
                *s = s.wrapping_add(*w);
            }
            apply_mask(&mut sum, &Self::self_seed(p), true, Modulus::Z64);
            add_blindings(&mut blinding_sum, &Self::self_seed(p), false);
            for &d in dropped {
                // p applied +pair (d > p) or -pair (d < p): remove it, and count its blinding.
                apply_mask(&mut sum, &Self::pair_seed(p, d), d > p, Modulus::Z64);
                add_blindings(&mut blinding_sum, &Self::pair_seed(p, d), d < p);
            }
        }
        assert_eq!(commitments.summands(), survivors.len());
        let decoded = self.phase.encoding.decode(&sum, survivors.len());
        commitments.check(&sum, &blinding_sum)?;
        // The check passed: the sum is the survivors' inputs'.
        let mut expected = vec![0u64; len];
        for &p in &survivors {
            for (e, w) in expected.iter_mut().zip(&self.inputs[p]) {
                *e = e.wrapping_add(*w);
            }
        }
        assert_eq!(sum, expected);
        assert!(decoded.is_ok());
        Ok(())
    }
}

fn federation() -> Federation {
    let phase = fit();
    let inputs = [(100.0, 3.5), (2000.0, -50.0), (1.0, 0.25)]
        .iter()
        .map(|&(n, w)| {
            let mut values = vec![w * n; columns() + 1];
            values.push(n);
            phase.words(&values)
        })
        .collect();
    Federation { phase, inputs }
}

#[test]
fn the_sum_check_passes_for_honest_participants_with_or_without_dropouts() {
    let federation = federation();
    federation.aggregate(&[], None).unwrap();
    federation.aggregate(&[2], None).unwrap();
    federation.aggregate(&[0], None).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn the_sum_check_fails_when_a_masked_input_differs_from_its_commitment(
        cheater in 0..3usize,
        pick in any::<prop::sample::Index>(),
        delta in prop_oneof![Just(1u64), Just(u64::MAX), 1..u64::MAX],
        drop_one in any::<bool>(),
    ) {
        let federation = federation();
        let at = pick.index(federation.phase.statement.len());
        let dropped: Vec<usize> = if drop_one { vec![(cheater + 1) % 3] } else { vec![] };
        prop_assert_eq!(
            federation.aggregate(&dropped, Some((cheater, at, delta))),
            Err(ValidityError::SumMismatch { index: at })
        );
    }
}

/// Times `prove` and `verify` (the mean of 3 runs after one to warm the generator cache) and
/// prints them with the statement's shape and the proof's size in bytes.
fn measure<P>(
    name: &str,
    statement: &Statement,
    prove: impl Fn() -> P,
    verify: impl Fn(&P),
    bytes: impl Fn(&P) -> usize,
) {
    prove();
    let runs = 3;
    let started = Instant::now();
    let proofs: Vec<P> = (0..runs).map(|_| prove()).collect();
    let proving = started.elapsed() / runs;
    let started = Instant::now();
    proofs.iter().for_each(&verify);
    let verifying = started.elapsed() / runs;
    println!(
        "{name:<24} {statement}  prove {:>7.1} ms  verify {:>6.1} ms  {} bytes",
        proving.as_secs_f64() * 1e3,
        verifying.as_secs_f64() * 1e3,
        bytes(&proofs[0])
    );
}

#[test]
#[ignore = "measurement: cargo test -p accord-crypto --test validity -- --ignored --nocapture"]
fn prove_and_verify_times_at_the_demo_settings() {
    for phase in [standardize(), fit(), evaluate()] {
        let len = phase.statement.len();
        let words = phase.words(&vec![0.0; len]);
        let rho = blindings(len, 5);
        measure(
            phase.name,
            &phase.statement,
            || prove(&phase.statement, &words, &rho, BINDING).unwrap(),
            |proof| {
                verify(&phase.statement, proof, BINDING).unwrap();
            },
            |proof| {
                let message = proof.to_message();
                message.commitments.len() + message.range_proofs.iter().map(Vec::len).sum::<usize>()
            },
        );
    }
    let (_, key) = auditor();
    for (name, demo) in [("fairness (demo)", true), ("fairness (example)", false)] {
        let (layout, statement) = fairness(demo);
        let counts = vec![0; layout.len()];
        let rho = blindings(layout.len(), 6);
        measure(
            name,
            &statement,
            || prove_counts(&statement, &counts, &rho, &key, BINDING).unwrap(),
            |proof| {
                verify_counts(&statement, proof, &key, BINDING).unwrap();
            },
            |proof| {
                let message = proof.to_message();
                message.randomness.len()
                    + message.commitments.len()
                    + message.range_proofs.iter().map(Vec::len).sum::<usize>()
            },
        );
    }
}

/// The fairness layout of examples/coordinator.toml (three protected attributes and the
/// gender × age_band intersection, 10 bins) or the demo's (no intersection, 2 bins).
fn fairness(demo: bool) -> (FairnessLayout, Statement) {
    let mut schema = schema();
    if !demo {
        schema.intersections = vec![Intersection {
            attributes: vec!["gender".into(), "age_band".into()],
        }];
    }
    let layout = FairnessLayout::new(&schema, if demo { 2 } else { 10 }).unwrap();
    let statement = Statement::counts(layout.len(), MAX_ROWS, &layout.relations()).unwrap();
    (layout, statement)
}

/// `records` (categories per protected attribute, label, score) counted as participants do.
fn fairness_counts(layout: &FairnessLayout, records: &[(Vec<usize>, bool, f64)]) -> Vec<u64> {
    let mut values = vec![0; layout.len()];
    for (categories, positive, score) in records {
        layout.add(&mut values, categories, *positive, *score >= 0.5, *score);
    }
    values
}

fn fairness_record() -> impl Strategy<Value = (Vec<usize>, bool, f64)> {
    (
        (0..5usize, 0..4usize, 0..3usize).prop_map(|(a, g, d)| vec![a, g, d]),
        any::<bool>(),
        0.0f64..=1.0,
    )
}

/// The auditor's keys for the count commitments (no tfhe keys needed).
fn auditor() -> (CountOpeningKey, CountCommitmentKey) {
    let opening = CountOpeningKey::generate();
    let key = opening.commitment_key();
    (opening, key)
}

fn count_round_trip(statement: &Statement, counts: &[u64]) -> Result<(), ValidityError> {
    let (_, key) = auditor();
    let rho = blindings(counts.len(), 4);
    let proof = prove_counts(statement, counts, &rho, &key, BINDING)?;
    let wire = CountProof::from_message(statement, &proof.to_message())?;
    verify_counts(statement, &wire, &key, BINDING).map(|_| ())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn honest_fairness_counts_pass(
        demo in any::<bool>(),
        records in proptest::collection::vec(fairness_record(), 0..200),
    ) {
        let (layout, statement) = fairness(demo);
        prop_assert!(count_round_trip(&statement, &fairness_counts(&layout, &records)).is_ok());
    }
}

#[test]
fn fairness_counts_at_their_bounds_pass_and_one_more_fails() {
    let (layout, statement) = fairness(true);
    // max_rows records alike: positive, predicted positive, in the top bin. Every count of
    // their groups is at max_rows, every relation at equality; the other groups are empty.
    let mut one = vec![0; layout.len()];
    layout.add(&mut one, &[1, 2, 0], true, true, 0.9);
    let counts: Vec<u64> = one.iter().map(|&c| c * MAX_ROWS).collect();
    count_round_trip(&statement, &counts).unwrap();
    let (fields, bins) = (layout.fields(), layout.bins);
    // The least of a count's upper bounds: max_rows for n, n for positives, predicted positives
    // and bin counts, the lesser of positives and predicted positives for true positives, the
    // lesser of the bin's count and the positives for a bin's positives.
    let most = |at: usize| {
        let group = at - at % fields;
        let c = |field: usize| counts[group + field];
        match at % fields {
            0 => MAX_ROWS,
            1 | 2 => c(0),
            3 => c(1).min(c(2)),
            field if field < 4 + bins => c(0),
            field => c(field - bins).min(c(1)),
        }
    };
    for at in 0..counts.len() {
        let mut inflated = counts.clone();
        inflated[at] += 1;
        let result = count_round_trip(&statement, &inflated);
        if counts[at] < most(at) {
            assert!(result.is_ok(), "count {at} has room: {result:?}");
        } else {
            assert!(
                matches!(result, Err(ValidityError::Unsatisfied { .. })),
                "count {at} inflated past {} passed",
                most(at)
            );
        }
    }
}

#[test]
fn a_count_inflated_past_its_bound_or_relation_fails() {
    let (layout, statement) = fairness(true);
    let records: Vec<(Vec<usize>, bool, f64)> = (0..30)
        .map(|i| (vec![i % 5, i % 4, i % 3], i % 2 == 0, (i as f64) / 30.0))
        .collect();
    let honest = fairness_counts(&layout, &records);
    count_round_trip(&statement, &honest).unwrap();
    let fields = layout.fields();
    let group = 2 * fields;
    for (at, value, what) in [
        (group, MAX_ROWS + 1, "n above max_rows"),
        (group + 1, honest[group] + 1, "positives above n"),
        (
            group + 3,
            honest[group + 1] + 1,
            "true positives above positives",
        ),
        (group + 4, honest[group] + 1, "a bin's count above n"),
        (
            group + 4 + layout.bins,
            honest[group + 4] + 1,
            "a bin's positives above its count",
        ),
    ] {
        let mut inflated = honest.clone();
        inflated[at] = value;
        let error = count_round_trip(&statement, &inflated).unwrap_err();
        assert!(
            matches!(error, ValidityError::Unsatisfied { .. }),
            "{what}: {error}"
        );
    }
}

#[test]
fn the_auditor_opens_sums_of_count_commitments_and_catches_a_mismatched_ciphertext() {
    let (layout, statement) = fairness(true);
    let (opening, key) = auditor();
    let inputs: Vec<Vec<u64>> = (0..3)
        .map(|p| {
            let records: Vec<(Vec<usize>, bool, f64)> = (0..10 + p)
                .map(|i| {
                    (
                        vec![(i + p) % 5, i % 4, (i * p) % 3],
                        i % 3 == 0,
                        (i as f64) / 13.0,
                    )
                })
                .collect();
            fairness_counts(&layout, &records)
        })
        .collect();
    let len = layout.len();
    let pair_seed = |p: usize, q: usize| [(10 * p.min(q) + p.max(q)) as u8; 32];
    let self_seed = |p: usize| [200 + p as u8; 32];
    let mut sum = CountSum::new(len);
    let mut blinding_sum = vec![Scalar::ZERO; len];
    for (p, counts) in inputs.iter().enumerate() {
        let mut rho = vec![Scalar::ZERO; len];
        add_blindings(&mut rho, &self_seed(p), false);
        for q in (0..3).filter(|&q| q != p) {
            add_blindings(&mut rho, &pair_seed(p, q), q < p);
        }
        let proof = prove_counts(&statement, counts, &rho, &key, BINDING).unwrap();
        sum.add(&verify_counts(&statement, &proof, &key, BINDING).unwrap())
            .unwrap();
        add_blindings(&mut blinding_sum, &self_seed(p), false);
    }
    // The coordinator hands the sums over the wire.
    let sum = CountSum::from_message(len, &sum.to_message()).unwrap();
    let totals: Vec<u64> = (0..len)
        .map(|j| inputs.iter().map(|c| c[j]).sum())
        .collect();
    let disclosed: Vec<(usize, u64)> = totals.iter().copied().enumerate().collect();
    sum.open(&opening, &disclosed, &blinding_sum).unwrap();
    // A decrypted aggregate one higher in any disclosed count (a ciphertext that did not match
    // its committed count) fails, naming the position.
    for at in [0, 7, len - 1] {
        let mut forged = disclosed.clone();
        forged[at].1 += 1;
        assert_eq!(
            sum.open(&opening, &forged, &blinding_sum),
            Err(ValidityError::SumMismatch { index: at })
        );
    }
    // Another auditor's key opens nothing.
    let (other, _) = auditor();
    assert!(sum.open(&other, &disclosed, &blinding_sum).is_err());
    // Without the blindings (the coordinator's view without a), nothing opens either.
    assert!(
        sum.open(&opening, &disclosed, &vec![Scalar::ZERO; len])
            .is_err()
    );
}

#[test]
fn count_proofs_bound_elsewhere_or_under_another_key_fail() {
    let (layout, statement) = fairness(true);
    let counts = fairness_counts(&layout, &[(vec![0, 1, 2], true, 0.7)]);
    let (_, key) = auditor();
    let (_, other) = auditor();
    let rho = blindings(counts.len(), 1);
    let proof = prove_counts(&statement, &counts, &rho, &key, BINDING).unwrap();
    verify_counts(&statement, &proof, &key, BINDING).unwrap();
    assert!(verify_counts(&statement, &proof, &other, BINDING).is_err());
    assert!(verify_counts(&statement, &proof, &key, b"another sender").is_err());
    let mut message = proof.to_message();
    message.randomness[..32].fill(0xff);
    let garbage = CountProof::from_message(&statement, &message).unwrap();
    assert!(matches!(
        verify_counts(&statement, &garbage, &key, BINDING),
        Err(ValidityError::NonCanonical { .. })
    ));
    message.randomness.truncate(10);
    assert!(matches!(
        CountProof::from_message(&statement, &message),
        Err(ValidityError::Length { .. })
    ));
    assert!(
        CountCommitmentKey::from_bytes(&[0; 32]).is_err(),
        "the identity is refused"
    );
    assert!(CountCommitmentKey::from_bytes(&[1; 31]).is_err());
}

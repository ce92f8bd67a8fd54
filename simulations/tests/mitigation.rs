//! Each mitigation moves the gap it targets in the right direction on synthetic data with a
//! planted disparity, and at strength 0 it is exactly plain FedAvg.

use accord_simulations::simulate::RoundOutcome;
use accord_simulations::simulate::SummaryRow;
use accord_simulations::simulate::{ExperimentOutcome, Progress, run_experiment};
use accord_simulations::synth::{self, SynthSpec};
use std::path::Path;

struct Quiet;

impl Progress for Quiet {
    fn start(&mut self, _runs: usize, _rounds: u64) {}
    fn round(&mut self, _run: &str, _outcome: &RoundOutcome) {}
}

/// Customers aged 60+ wait twice as long: the model, which never sees age, selects them less
/// often.
const PLANTED: &str = r#"
name = "mitigation"
seed = 1
[data]
source = "synthetic"
participants = 6
rows = 1500
bias = "age_band=60+:wait*2"
[algorithm]
rounds = 10
[privacy]
aggregation = "insecure-plain"
"#;

fn run(dir: &Path, body: &str, overrides: &[&str]) -> ExperimentOutcome {
    let path = dir.join("experiment.toml");
    std::fs::write(&path, body).unwrap();
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    run_experiment(&path, &overrides, &dir.join("out"), &mut Quiet).unwrap()
}

/// The final gap by age band: demographic parity or equal opportunity.
fn gap(row: &SummaryRow, metric: &str) -> f64 {
    let (_, dp, eo) = row.gaps.iter().find(|g| g.0 == "age_band").unwrap();
    if metric == "demographic_parity" {
        dp.unwrap()
    } else {
        eo.unwrap()
    }
}

/// The runs of a sweep over [0, strength] × seeds, paired by seed: (strength 0, strength).
fn by_seed(summary: &[SummaryRow]) -> Vec<(&SummaryRow, &SummaryRow)> {
    let (plain, mitigated) = summary.split_at(summary.len() / 2);
    plain.iter().zip(mitigated).collect()
}

/// Runs the planted-bias experiment at strength 0 and `strength` for two seeds, and checks
/// that each seed's gap under `metric` falls.
fn assert_the_gap_falls(overrides: &[&str], metric: &str, strength: f64) {
    let dir = tempfile::tempdir().unwrap();
    let sweep = format!("sweep={{\"mitigation.strength\"=[0.0, {strength:?}], seed=[1, 2]}}");
    let metric_key = format!("mitigation.metric={metric}");
    let mut all = overrides.to_vec();
    all.extend([metric_key.as_str(), "mitigation.attribute=age_band", &sweep]);
    let outcome = run(dir.path(), PLANTED, &all);
    for (plain, mitigated) in by_seed(&outcome.summary) {
        let (before, after) = (gap(plain, metric), gap(mitigated, metric));
        assert!(
            after < before,
            "{overrides:?}: {metric} gap {before} without, {after} at strength {strength}"
        );
    }
}

#[test]
fn at_strength_zero_every_mitigation_is_plain_fedavg_bit_for_bit() {
    // Under secure aggregation: the mitigations' vectors are encoded exactly as FedAvg's.
    let dir = tempfile::tempdir().unwrap();
    let body = r#"
name = "strength-zero"
seed = 5
[data]
source = "synthetic"
participants = 3
rows = 300
bias = "age_band=60+:wait*2"
[algorithm]
rounds = 3
[mitigation]
strength = 0.0
attribute = "age_band"
[postprocessing]
attribute = "age_band"
strength = 0.0
[sweep]
"mitigation.kind" = ["none", "fairfed", "regularizer", "reweighing"]
"#;
    let outcome = run(dir.path(), body, &[]);
    let plain = &outcome.summary[0];
    assert_eq!(plain.mitigation, "none");
    for row in &outcome.summary[1..] {
        let bits = |m: &SummaryRow| {
            let mut b: Vec<u64> = m.model.weights.iter().map(|w| w.to_bits()).collect();
            b.push(m.model.intercept.to_bits());
            b
        };
        assert_eq!(bits(row), bits(plain), "{}", row.mitigation);
        assert_eq!(row.final_accuracy, plain.final_accuracy);
    }

    // Thresholds at strength 0 stay the single decision threshold.
    let outcome = run(
        dir.path(),
        body,
        &["postprocessing.thresholds=equal_opportunity", "sweep={}"],
    );
    let row = &outcome.summary[0];
    assert!(
        row.thresholds.contains("60+ >= 0.50") && row.thresholds.contains("18-29 >= 0.50"),
        "{}",
        row.thresholds
    );
    assert_eq!(row.final_accuracy, row.accuracy_before_thresholds);
}

#[test]
fn the_regularizer_narrows_the_gap_it_targets() {
    assert_the_gap_falls(&["mitigation.kind=regularizer"], "demographic_parity", 16.0);
    assert_the_gap_falls(&["mitigation.kind=regularizer"], "equal_opportunity", 8.0);
}

#[test]
fn reweighing_narrows_the_demographic_parity_gap() {
    assert_the_gap_falls(&["mitigation.kind=reweighing"], "demographic_parity", 1.0);
}

#[test]
fn fairfed_narrows_the_gap_when_one_organization_is_less_fair() {
    // Three organizations with the planted wait disparity, and one whose 60+ customers are in
    // addition less satisfied: FairFed moves aggregation weight away from the organization whose
    // local gap is furthest from the consortium's.
    let dir = tempfile::tempdir().unwrap();
    for (folder, bias, seed) in [
        ("fair", "age_band=60+:wait*3", 3),
        ("unfair", "age_band=60+:wait*3;age_band=60+:penalty=3", 4),
    ] {
        let spec = SynthSpec {
            bias: synth::parse_biases(bias).unwrap(),
            ..SynthSpec::new(4, 1500, seed)
        };
        synth::write_csvs(&synth::generate(&spec).unwrap(), &dir.path().join(folder)).unwrap();
    }
    let body = r#"
name = "fairfed"
[data]
source = "csv-files"
files = ["fair/org-1.csv", "fair/org-2.csv", "fair/org-3.csv", "unfair/org-4.csv"]
[algorithm]
rounds = 10
[privacy]
aggregation = "insecure-plain"
[mitigation]
kind = "fairfed"
metric = "equal_opportunity"
attribute = "age_band"
[sweep]
"mitigation.strength" = [0.0, 1.0]
"#;
    let outcome = run(dir.path(), body, &[]);
    let (plain, fairfed) = (&outcome.summary[0], &outcome.summary[1]);
    let (before, after) = (
        gap(plain, "equal_opportunity"),
        gap(fairfed, "equal_opportunity"),
    );
    assert!(after < before, "equal-opportunity gap {before} -> {after}");
    let (plain_accuracy, fairfed_accuracy) = (
        plain.final_accuracy.expect("the final model was evaluated"),
        fairfed
            .final_accuracy
            .expect("the final model was evaluated"),
    );
    assert!(
        fairfed_accuracy > plain_accuracy - 0.01,
        "accuracy {plain_accuracy} -> {fairfed_accuracy}"
    );
}

#[test]
fn per_group_thresholds_halve_the_gap_they_equalize_and_the_frontier_averages_the_seeds() {
    for metric in ["equal_opportunity", "demographic_parity"] {
        let dir = tempfile::tempdir().unwrap();
        let rule = format!("postprocessing.thresholds={metric}");
        let sweep = "sweep={\"postprocessing.strength\"=[0.0, 1.0], seed=[1, 2]}";
        let outcome = run(
            dir.path(),
            PLANTED,
            &[
                &rule,
                "postprocessing.attribute=age_band",
                &format!("mitigation.metric={metric}"),
                sweep,
            ],
        );
        for (plain, thresholded) in by_seed(&outcome.summary) {
            let (before, after) = (gap(plain, metric), gap(thresholded, metric));
            assert!(after < before / 2.0, "{metric} gap {before} -> {after}");
            assert!(
                thresholded.thresholds.starts_with(metric),
                "{}",
                thresholded.thresholds
            );
        }
        let points = &outcome.frontier;
        assert_eq!(points.len(), 2, "one point per strength");
        assert!(points.iter().all(|p| p.seeds == 2));
        assert!(points[1].gap.unwrap() < points[0].gap.unwrap() / 2.0);
        assert!(points[1].pareto);
        let frontier = std::fs::read_to_string(outcome.frontier_csv.unwrap()).unwrap();
        assert!(
            frontier.starts_with(&format!(
                "point,mitigation,thresholds,seeds,accuracy,accuracy_sd,{metric}_gap_age_band"
            )),
            "{frontier}"
        );
        assert!(dir.path().join("out/frontier.png").exists());
    }
}

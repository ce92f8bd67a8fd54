//! Fairness metrics from the consortium's decrypted per-group counts.
//!
//! Definitions follow Fairlearn's: per group the rates of its confusion matrix; across the
//! groups of a breakdown, *difference* = max − min and *ratio* = min / max; equalized odds
//! difference = the larger of the TPR and FPR differences. Comparisons leave out suppressed
//! groups, groups with no records and any group with an `unknown` category (whose count is
//! always reported). Every rate carries a 95% Wilson score interval. Counts may come from a
//! report anyone handed over, so sums of them saturate rather than overflow.
//!
//! Undefined is `None` (JSON `null`) with the reason stated, never NaN or a stand-in. A rate
//! whose denominator is zero is undefined. Like Fairlearn's `MetricFrame.difference()` and
//! `ratio()` (pandas `min`/`max` skip NaN), a difference or ratio is taken over the compared
//! groups whose rate is defined; unlike Fairlearn, which says nothing, each [`Coverage`] names
//! the groups it covers and every group it leaves out with the reason, and a comparison of
//! fewer than two groups is undefined (Fairlearn gives 0 for one group), as is a ratio whose
//! largest rate is 0 (0/0; NaN in Fairlearn).

use accord_proto::fairness::{FairnessLayout, GroupStatistics};
use accord_proto::layout::UNKNOWN;
use serde::{Deserialize, Serialize};

/// The policy thresholds a report applies, all stated in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Groups below this size were suppressed on ciphertexts before decryption.
    pub min_group_size: u64,
    /// Groups below this size are flagged as small (their rates are uncertain).
    pub small_group_size: u64,
    /// The four-fifths rule: a group whose impact ratio is below this is flagged.
    pub four_fifths: f64,
    /// The model's decision threshold on the predicted probability.
    pub decision_threshold: f64,
    /// Confidence level of the Wilson intervals.
    pub confidence: f64,
    /// Bins of the score histogram each group's counts carry.
    pub histogram_bins: usize,
}

/// z for a two-sided 95% interval.
const Z_95: f64 = 1.959_963_984_540_054;

/// A proportion with its Wilson score interval; all None when the denominator is zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Records counted (e.g. predicted positives).
    pub numerator: u64,
    /// Records counted over (e.g. n).
    pub denominator: u64,
    /// numerator / denominator.
    pub value: Option<f64>,
    /// The Wilson interval's lower end (95%).
    pub low: Option<f64>,
    /// The Wilson interval's upper end (95%).
    pub high: Option<f64>,
}

impl Rate {
    /// numerator / denominator with its 95% Wilson score interval (Newcombe 1998, method 3).
    pub fn new(numerator: u64, denominator: u64) -> Self {
        if denominator == 0 {
            return Self {
                numerator,
                denominator,
                value: None,
                low: None,
                high: None,
            };
        }
        let n = denominator as f64;
        let p = numerator as f64 / n;
        let z2 = Z_95 * Z_95;
        let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
        let half = Z_95 / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
        Self {
            numerator,
            denominator,
            value: Some(p),
            low: Some((centre - half).max(0.0)),
            high: Some((centre + half).min(1.0)),
        }
    }
}

/// One group's counts and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMetrics {
    /// The group's label ("age_band=60+").
    pub group: String,
    /// Suppressed by the disclosure policy: its counts were zeroed on ciphertexts.
    pub suppressed: bool,
    /// Fewer records than `small_group_size`.
    pub small: bool,
    /// Has an `unknown` category: reported, not compared.
    pub unknown: bool,
    /// Records in the group.
    pub n: u64,
    /// Predicted positives / n.
    pub selection_rate: Rate,
    /// TP / actual positives.
    pub true_positive_rate: Rate,
    /// FP / actual negatives.
    pub false_positive_rate: Rate,
    /// FN / actual positives.
    pub false_negative_rate: Rate,
    /// TP / predicted positives.
    pub positive_predictive_value: Rate,
    /// (TP + TN) / n.
    pub accuracy: Rate,
    /// Expected calibration error over the score histogram (bin midpoints as predictions).
    pub calibration_error: Option<f64>,
    /// Selection rate relative to the most favoured compared group; None when undefined (not
    /// compared, no selection rate, or the most favoured group's rate is 0).
    pub impact_ratio: Option<f64>,
    /// The impact ratio is below the four-fifths threshold; None when the impact ratio is
    /// undefined (neither flagged nor cleared).
    pub four_fifths_flag: Option<bool>,
}

/// A compared group a difference or ratio leaves out, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeftOut {
    /// The group's label.
    pub group: String,
    /// Why it is left out.
    pub reason: String,
}

/// The groups the differences and ratios of one rate are taken over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Coverage {
    /// The rate compared, e.g. "selection_rate".
    pub rate: String,
    /// The breakdown's figures taken over this rate's groups.
    pub used_by: Vec<String>,
    /// The compared groups whose rate is defined: the figures are taken over these.
    pub covers: Vec<String>,
    /// Groups of the breakdown not covered, each with the reason (suppressed, an `unknown`
    /// category, no records, or the rate's denominator is zero).
    pub left_out: Vec<LeftOut>,
    /// Why the difference is undefined (None when it is defined).
    pub difference_undefined: Option<String>,
    /// Why the ratio is undefined (None when it is defined; only rates with a ratio).
    pub ratio_undefined: Option<String>,
}

/// A breakdown's groups and the disparities between the compared ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakdownMetrics {
    /// The attribute, or the intersection ("gender × age_band").
    pub breakdown: String,
    /// Every group of the breakdown, suppressed and `unknown` ones included.
    pub groups: Vec<GroupMetrics>,
    /// The groups eligible for comparison (not suppressed, no `unknown` category, some
    /// records); each rate's [`Coverage`] says which of them its figures cover.
    pub compared: Vec<String>,
    /// Per compared rate: the groups its differences and ratios cover and those left out.
    pub coverage: Vec<Coverage>,
    /// Records in groups with an `unknown` category; None (`null`) when one of those groups is
    /// suppressed, whose count is not released (never a zero standing for it).
    pub unknown_count: Option<u64>,
    /// The compared group with the highest selection rate.
    pub most_favoured: Option<String>,
    /// Max - min selection rate over the covered groups.
    pub demographic_parity_difference: Option<f64>,
    /// Min / max selection rate over the covered groups.
    pub demographic_parity_ratio: Option<f64>,
    /// Max - min true positive rate over the covered groups.
    pub equal_opportunity_difference: Option<f64>,
    /// The larger of the TPR and FPR differences.
    pub equalized_odds_difference: Option<f64>,
    /// Max - min positive predictive value over the covered groups.
    pub predictive_parity_difference: Option<f64>,
}

/// The metric names and their definitions, as the report states them.
pub const DEFINITIONS: [(&str, &str); 11] = [
    ("selection_rate", "predicted positives / n"),
    ("true_positive_rate", "TP / actual positives"),
    ("false_positive_rate", "FP / actual negatives"),
    ("false_negative_rate", "FN / actual positives"),
    ("positive_predictive_value", "TP / predicted positives"),
    ("accuracy", "(TP + TN) / n"),
    (
        "calibration_error",
        "sum over non-empty score bins of (bin n / n) * |bin positives / bin n - bin midpoint| (an empty bin's calibration is undefined and carries no weight); undefined for a group with no records",
    ),
    (
        "demographic_parity_difference",
        "Fairlearn: max - min selection rate over the compared groups whose rate is defined (coverage names them and those left out); ratio: min / max; undefined with fewer than two such groups, the ratio also when max is 0",
    ),
    (
        "equal_opportunity_difference",
        "max - min true positive rate over compared groups",
    ),
    (
        "equalized_odds_difference",
        "Fairlearn: max(TPR difference, FPR difference); undefined when either is",
    ),
    (
        "impact_ratio",
        "selection rate / the most favoured group's selection rate; flagged below four_fifths; both undefined (null) when the most favoured rate is 0",
    ),
];

fn calibration_error(g: &GroupStatistics) -> Option<f64> {
    if g.n == 0 {
        return None;
    }
    let bins = g.bin_counts.len() as f64;
    let error = g
        .bin_counts
        .iter()
        .zip(&g.bin_positives)
        .enumerate()
        .filter(|(_, (count, _))| **count > 0)
        .map(|(i, (&count, &positives))| {
            let midpoint = (i as f64 + 0.5) / bins;
            count as f64 / g.n as f64 * (positives as f64 / count as f64 - midpoint).abs()
        })
        .sum();
    Some(error)
}

/// Which compared rate a [`Coverage`] is about: its name, what its denominator counts (for the
/// reason a group is left out), the figures that use it, and whether a ratio is reported.
struct Compared {
    rate: &'static str,
    denominator: &'static str,
    used_by: &'static [&'static str],
    ratio: bool,
    pick: fn(&GroupMetrics) -> &Rate,
}

const COMPARED: [Compared; 4] = [
    Compared {
        rate: "selection_rate",
        denominator: "records",
        used_by: &[
            "demographic_parity_difference",
            "demographic_parity_ratio",
            "impact_ratio",
        ],
        ratio: true,
        pick: |g| &g.selection_rate,
    },
    Compared {
        rate: "true_positive_rate",
        denominator: "actual positives",
        used_by: &["equal_opportunity_difference", "equalized_odds_difference"],
        ratio: false,
        pick: |g| &g.true_positive_rate,
    },
    Compared {
        rate: "false_positive_rate",
        denominator: "actual negatives",
        used_by: &["equalized_odds_difference"],
        ratio: false,
        pick: |g| &g.false_positive_rate,
    },
    Compared {
        rate: "positive_predictive_value",
        denominator: "predicted positives",
        used_by: &["predictive_parity_difference"],
        ratio: false,
        pick: |g| &g.positive_predictive_value,
    },
];

/// Why a group is not eligible for comparison at all (None when it is).
fn not_compared(g: &GroupMetrics) -> Option<&'static str> {
    if g.suppressed {
        Some("suppressed by the disclosure policy")
    } else if g.unknown {
        Some("an unknown category: reported, not compared")
    } else if g.n == 0 {
        Some("no records")
    } else {
        None
    }
}

/// Fairlearn's difference (max − min) and ratio (min / max) of one rate over the eligible
/// groups whose rate is defined, with the coverage stating them and the groups left out.
fn compare(groups: &[GroupMetrics], c: &Compared) -> (Option<f64>, Option<f64>, Coverage) {
    let mut covers = Vec::new();
    let mut left_out = Vec::new();
    let mut values = Vec::new();
    for g in groups {
        let reason = match (not_compared(g), (c.pick)(g).value) {
            (Some(reason), _) => reason.to_owned(),
            (None, None) => format!("{} undefined: no {}", c.rate, c.denominator),
            (None, Some(v)) => {
                covers.push(g.group.clone());
                values.push(v);
                continue;
            }
        };
        left_out.push(LeftOut {
            group: g.group.clone(),
            reason,
        });
    }
    let (difference, ratio, difference_undefined, ratio_undefined) = if values.len() < 2 {
        let why = format!(
            "{} group(s) with a defined {}; a comparison needs two",
            values.len(),
            c.rate
        );
        (None, None, Some(why.clone()), c.ratio.then_some(why))
    } else {
        let max = values.iter().copied().fold(f64::MIN, f64::max);
        let min = values.iter().copied().fold(f64::MAX, f64::min);
        let ratio = (max > 0.0).then(|| min / max);
        let ratio_undefined = (c.ratio && ratio.is_none())
            .then(|| format!("every covered group's {} is 0 (0 / 0)", c.rate));
        (Some(max - min), ratio, None, ratio_undefined)
    };
    let coverage = Coverage {
        rate: c.rate.to_owned(),
        used_by: c.used_by.iter().map(|u| (*u).to_owned()).collect(),
        covers,
        left_out,
        difference_undefined,
        ratio_undefined,
    };
    (difference, ratio, coverage)
}

/// Every breakdown's metrics from the decrypted counts (`None` for a suppressed group).
pub fn compute(
    layout: &FairnessLayout,
    counts: &[Option<GroupStatistics>],
    thresholds: &Thresholds,
) -> Vec<BreakdownMetrics> {
    let mut counts = counts.iter();
    layout
        .breakdowns
        .iter()
        .map(|breakdown| {
            let mut groups: Vec<GroupMetrics> = breakdown
                .groups
                .iter()
                .map(|categories| {
                    let stats = counts.next().expect("one entry per group");
                    let g = stats.clone().unwrap_or_default();
                    let unknown = breakdown
                        .attributes
                        .iter()
                        .zip(categories)
                        .any(|(&a, &c)| layout.attributes[a].1[c] == UNKNOWN);
                    let negatives = g.n.saturating_sub(g.positives);
                    GroupMetrics {
                        group: layout.group_label(breakdown, categories),
                        suppressed: stats.is_none(),
                        small: stats.is_some() && g.n < thresholds.small_group_size,
                        unknown,
                        n: g.n,
                        selection_rate: Rate::new(g.predicted_positives, g.n),
                        true_positive_rate: Rate::new(g.true_positives, g.positives),
                        false_positive_rate: Rate::new(g.false_positives(), negatives),
                        false_negative_rate: Rate::new(g.false_negatives(), g.positives),
                        positive_predictive_value: Rate::new(
                            g.true_positives,
                            g.predicted_positives,
                        ),
                        accuracy: Rate::new(
                            g.true_positives.saturating_add(g.true_negatives()),
                            g.n,
                        ),
                        calibration_error: calibration_error(&g),
                        impact_ratio: None,
                        four_fifths_flag: None,
                    }
                })
                .collect();
            let compared: Vec<usize> = (0..groups.len())
                .filter(|&i| not_compared(&groups[i]).is_none())
                .collect();
            let [
                (dp_difference, dp_ratio, dp),
                (eo_difference, _, eo),
                (fpr_difference, _, fpr),
                (pp_difference, _, pp),
            ] = COMPARED.each_ref().map(|c| compare(&groups, c));
            let favoured = compared
                .iter()
                .copied()
                .filter(|&i| groups[i].selection_rate.value.is_some())
                .max_by(|&a, &b| {
                    groups[a]
                        .selection_rate
                        .value
                        .partial_cmp(&groups[b].selection_rate.value)
                        .expect("finite rates")
                });
            if let Some(best) = favoured
                .and_then(|i| groups[i].selection_rate.value)
                .filter(|&v| v > 0.0)
            {
                for &i in &compared {
                    let ratio = groups[i].selection_rate.value.map(|v| v / best);
                    groups[i].impact_ratio = ratio;
                    groups[i].four_fifths_flag = ratio.map(|r| r < thresholds.four_fifths);
                }
            }
            BreakdownMetrics {
                breakdown: breakdown.name.clone(),
                compared: compared.iter().map(|&i| groups[i].group.clone()).collect(),
                coverage: vec![dp, eo, fpr, pp],
                unknown_count: (groups.iter().filter(|g| g.unknown)).try_fold(0u64, |total, g| {
                    (!g.suppressed).then(|| total.saturating_add(g.n))
                }),
                most_favoured: favoured.map(|i| groups[i].group.clone()),
                demographic_parity_difference: dp_difference,
                demographic_parity_ratio: dp_ratio,
                equal_opportunity_difference: eo_difference,
                equalized_odds_difference: match (eo_difference, fpr_difference) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                },
                predictive_parity_difference: pp_difference,
                groups,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use accord_proto::v1::{ProtectedAttribute, Schema};

    fn thresholds() -> Thresholds {
        Thresholds {
            min_group_size: 10,
            small_group_size: 30,
            four_fifths: 0.8,
            decision_threshold: 0.5,
            confidence: 0.95,
            histogram_bins: 2,
        }
    }

    fn stats(n: u64, positives: u64, predicted: u64, tp: u64) -> GroupStatistics {
        GroupStatistics {
            n,
            positives,
            predicted_positives: predicted,
            true_positives: tp,
            bin_counts: vec![n - predicted, predicted],
            bin_positives: vec![positives - tp, tp],
        }
    }

    #[test]
    fn wilson_interval_matches_a_published_value() {
        // Newcombe (1998), example: 81 of 263 gives 0.2553 to 0.3662.
        let r = Rate::new(81, 263);
        assert!((r.low.unwrap() - 0.2553).abs() < 5e-4, "{r:?}");
        assert!((r.high.unwrap() - 0.3662).abs() < 5e-4, "{r:?}");
        assert_eq!(Rate::new(0, 0).value, None);
    }

    #[test]
    fn fairlearn_differences_ratios_and_the_four_fifths_flag() {
        let schema = Schema {
            protected_attributes: vec![ProtectedAttribute {
                name: "gender".into(),
                categories: vec!["a".into(), "b".into()],
                use_as_feature: false,
            }],
            ..Default::default()
        };
        let layout = FairnessLayout::new(&schema, 2).unwrap();
        let counts = vec![
            Some(stats(100, 50, 60, 40)),
            Some(stats(100, 50, 30, 25)),
            Some(stats(7, 3, 7, 3)),
        ];
        let m = &compute(&layout, &counts, &thresholds())[0];
        assert_eq!(m.compared, ["gender=a", "gender=b"]);
        assert_eq!(m.unknown_count, Some(7));
        // The unknown group suppressed: its count is not released, so neither is the total.
        let suppressed = vec![counts[0].clone(), counts[1].clone(), None];
        let hidden = &compute(&layout, &suppressed, &thresholds())[0];
        assert_eq!(hidden.unknown_count, None);
        assert!(hidden.groups[2].unknown && hidden.groups[2].suppressed);
        assert_eq!(m.most_favoured.as_deref(), Some("gender=a"));
        assert!((m.demographic_parity_difference.unwrap() - 0.3).abs() < 1e-12);
        assert!((m.demographic_parity_ratio.unwrap() - 0.5).abs() < 1e-12);
        assert!((m.equal_opportunity_difference.unwrap() - 0.3).abs() < 1e-12);
        // FPR: a 20/50, b 5/50 → 0.3; equalized odds = max(0.3, 0.3).
        assert!((m.equalized_odds_difference.unwrap() - 0.3).abs() < 1e-12);
        assert!(
            (m.predictive_parity_difference.unwrap() - (25.0 / 30.0 - 40.0 / 60.0)).abs() < 1e-12
        );
        assert_eq!(
            (m.groups[0].four_fifths_flag, m.groups[1].four_fifths_flag),
            (Some(false), Some(true))
        );
        assert!(m.groups[2].small && m.groups[2].unknown && m.groups[2].impact_ratio.is_none());
        assert_eq!(m.groups[2].four_fifths_flag, None);
        let selection = &m.coverage[0];
        assert_eq!(selection.covers, ["gender=a", "gender=b"]);
        assert_eq!(
            selection.left_out,
            [LeftOut {
                group: "gender=unknown".into(),
                reason: "an unknown category: reported, not compared".into()
            }]
        );
    }

    #[test]
    fn suppressed_groups_are_marked_and_left_out() {
        let schema = Schema {
            protected_attributes: vec![ProtectedAttribute {
                name: "disability".into(),
                categories: vec!["yes".into(), "no".into()],
                use_as_feature: false,
            }],
            ..Default::default()
        };
        let layout = FairnessLayout::new(&schema, 2).unwrap();
        let counts = vec![None, Some(stats(100, 50, 60, 40)), Some(stats(0, 0, 0, 0))];
        let m = &compute(&layout, &counts, &thresholds())[0];
        assert!(m.groups[0].suppressed);
        assert_eq!(m.compared, ["disability=no"]);
        assert_eq!(m.demographic_parity_difference, None);
    }

    fn three_groups() -> FairnessLayout {
        let schema = Schema {
            protected_attributes: vec![ProtectedAttribute {
                name: "channel".into(),
                categories: vec!["phone".into(), "chat".into(), "email".into()],
                use_as_feature: false,
            }],
            ..Default::default()
        };
        FairnessLayout::new(&schema, 2).unwrap()
    }

    #[test]
    fn a_rate_with_a_zero_denominator_is_undefined_with_no_interval() {
        let r = Rate::new(0, 0);
        assert_eq!((r.value, r.low, r.high), (None, None, None));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["value"], serde_json::Value::Null);
        assert_eq!(serde_json::from_value::<Rate>(json).unwrap(), r);
    }

    #[test]
    fn a_difference_covers_the_groups_whose_rate_is_defined_and_names_the_one_left_out() {
        // email has 40 records and no actual positive: its TPR is undefined (0 / 0).
        let counts = vec![
            Some(stats(100, 50, 60, 40)),
            Some(stats(100, 50, 30, 25)),
            Some(stats(40, 0, 10, 0)),
            Some(stats(0, 0, 0, 0)),
        ];
        let m = &compute(&three_groups(), &counts, &thresholds())[0];
        assert_eq!(m.groups[2].true_positive_rate.value, None);
        // Fairlearn's difference skips the undefined group: TPR 40/50 - 25/50 = 0.3.
        assert!((m.equal_opportunity_difference.unwrap() - 0.3).abs() < 1e-12);
        let tpr = &m.coverage[1];
        assert_eq!(tpr.rate, "true_positive_rate");
        assert_eq!(tpr.covers, ["channel=phone", "channel=chat"]);
        assert_eq!(
            tpr.left_out,
            [
                LeftOut {
                    group: "channel=email".into(),
                    reason: "true_positive_rate undefined: no actual positives".into()
                },
                LeftOut {
                    group: "channel=unknown".into(),
                    reason: "an unknown category: reported, not compared".into()
                },
            ]
        );
        assert_eq!(tpr.difference_undefined, None);
        // The selection rate is defined for email (10 / 40), so it is covered there:
        // max 0.6 - min 0.25 = 0.35.
        assert_eq!(
            m.coverage[0].covers,
            ["channel=phone", "channel=chat", "channel=email"]
        );
        assert!((m.demographic_parity_difference.unwrap() - 0.35).abs() < 1e-12);
    }

    #[test]
    fn a_ratio_whose_largest_rate_is_zero_is_undefined_and_nothing_is_flagged() {
        // Nobody selected in any group: the differences are 0, the ratios 0 / 0.
        let counts = vec![
            Some(stats(100, 50, 0, 0)),
            Some(stats(80, 20, 0, 0)),
            Some(stats(60, 30, 0, 0)),
            Some(stats(0, 0, 0, 0)),
        ];
        let m = &compute(&three_groups(), &counts, &thresholds())[0];
        assert_eq!(m.demographic_parity_difference, Some(0.0));
        assert_eq!(m.demographic_parity_ratio, None);
        assert_eq!(
            m.coverage[0].ratio_undefined.as_deref(),
            Some("every covered group's selection_rate is 0 (0 / 0)")
        );
        assert!(
            m.groups
                .iter()
                .all(|g| g.impact_ratio.is_none() && g.four_fifths_flag.is_none())
        );
        // No predicted positive anywhere: every PPV is undefined, so is its difference.
        assert_eq!(m.predictive_parity_difference, None);
        assert_eq!(
            m.coverage[3].difference_undefined.as_deref(),
            Some("0 group(s) with a defined positive_predictive_value; a comparison needs two")
        );
    }
}

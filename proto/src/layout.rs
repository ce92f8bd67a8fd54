//! The layouts of the vectors that cross a participant's boundary, and of the encoded features.
//!
//! Participants upload flat vectors of sums; which position means what is part of the protocol,
//! so both sides take it from here. Every position is a sum over records, never a record.

use crate::v1::{Schema, feature::Kind};
use std::fmt;

pub use crate::standardization::{StandardizationLayout, StandardizationSums};

/// The encoded feature columns of a schema, in model order: a numeric or boolean feature is one
/// column named after it; a categorical feature is one indicator column per category,
/// "name=category"; a protected attribute marked `use_as_feature` is encoded like a categorical
/// with its categories plus "unknown".
pub fn encoded_columns(schema: &Schema) -> Vec<String> {
    let mut columns = Vec::new();
    for feature in &schema.features {
        match &feature.kind {
            Some(Kind::Categorical(c)) => {
                columns.extend(c.categories.iter().map(|v| format!("{}={v}", feature.name)))
            }
            _ => columns.push(feature.name.clone()),
        }
    }
    for attribute in schema
        .protected_attributes
        .iter()
        .filter(|a| a.use_as_feature)
    {
        columns.extend(
            attribute
                .categories
                .iter()
                .map(String::as_str)
                .chain(std::iter::once(UNKNOWN))
                .map(|v| format!("{}={v}", attribute.name)),
        );
    }
    columns
}

/// The category every protected attribute has for missing or unlisted values.
pub const UNKNOWN: &str = "unknown";

/// The largest log loss one record contributes: probabilities are clamped to [1e-12, 1 - 1e-12]
/// and -ln(1e-12) < 28.
pub const MAX_LOG_LOSS_PER_RECORD: f64 = 28.0;

/// How large one participant's values can be in a run of positions of a vector. Secure
/// aggregation encodes against these bounds so that a sum over participants can never wrap.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    /// What the run holds, as errors and logs name it (e.g. `"samples"`).
    pub name: String,
    /// Positions in the run.
    pub len: usize,
    /// Every value lies in [-bound, bound].
    pub bound: f64,
    /// Counts: whole numbers, summed exactly.
    pub integer: bool,
}

impl Bound {
    /// A run of `len` positions named `name`, each within [-`bound`, `bound`]; `integer`
    /// marks counts.
    pub fn new(name: &str, len: usize, bound: f64, integer: bool) -> Self {
        Self {
            name: name.to_owned(),
            len,
            bound,
            integer,
        }
    }
}

/// A linear constraint on one participant's values that its input-validity proof shows, beyond
/// the per-segment [`Bound`]s: for every position `i` in `values`,
/// `lower · v[count] ≤ v[i] ≤ upper · v[count]`, or `lower ≤ v[i] ≤ upper` without a count.
///
/// Positions index the phase's whole vector. A count must be a position of an integer segment;
/// the proof then also shows it is non-negative. An infinite side constrains nothing beyond the
/// segment's bound. Relations are what stop a participant from pairing a tiny sample count with
/// sums at their bounds: FedAvg divides by the summed counts, so only `|n·w| ≤ clip·n` keeps the
/// global weights within `clip` whatever one participant sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    /// The positions constrained, `v[i]` for `i` in this range.
    pub values: std::ops::Range<usize>,
    /// The count position the range is scaled by; `None` bounds each value by
    /// `lower ≤ v[i] ≤ upper` alone.
    pub count: Option<usize>,
    /// The lower factor (may be −∞: no lower constraint beyond the segment's bound).
    pub lower: f64,
    /// The upper factor (may be +∞).
    pub upper: f64,
}

impl Relation {
    /// `lower · v[count] ≤ v[i] ≤ upper · v[count]` for every `i` in `values`.
    pub fn scaled(values: std::ops::Range<usize>, count: usize, lower: f64, upper: f64) -> Self {
        Self {
            values,
            count: Some(count),
            lower,
            upper,
        }
    }

    /// `v[i] ≥ 0` for every `i` in `values` (counts).
    pub fn non_negative(values: std::ops::Range<usize>) -> Self {
        Self {
            values,
            count: None,
            lower: 0.0,
            upper: f64::INFINITY,
        }
    }

    /// The same relation for a vector in which this one's starts at position `start`.
    pub fn shifted(self, start: usize) -> Self {
        Self {
            values: self.values.start + start..self.values.end + start,
            count: self.count.map(|c| c + start),
            ..self
        }
    }
}

/// A numeric feature without the range secure aggregation needs to bound its sums.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "numeric feature '{0}' needs both min and max in the schema: secure aggregation bounds every sum by them"
)]
pub struct UnboundedFeature(pub String);

/// The range `(min, max)` of each encoded column: the schema's for a numeric feature, (0, 1) for
/// boolean and indicator columns.
pub fn column_ranges(schema: &Schema) -> Result<Vec<(f64, f64)>, UnboundedFeature> {
    let mut ranges = Vec::new();
    for feature in &schema.features {
        match &feature.kind {
            Some(Kind::Categorical(c)) => {
                ranges.extend(std::iter::repeat_n((0.0, 1.0), c.categories.len()))
            }
            Some(Kind::Numeric(n)) => match (n.min, n.max) {
                (Some(min), Some(max)) => ranges.push((min, max)),
                _ => return Err(UnboundedFeature(feature.name.clone())),
            },
            Some(Kind::Boolean(_)) | None => ranges.push((0.0, 1.0)),
        }
    }
    for attribute in schema
        .protected_attributes
        .iter()
        .filter(|a| a.use_as_feature)
    {
        ranges.extend(std::iter::repeat_n(
            (0.0, 1.0),
            attribute.categories.len() + 1,
        ));
    }
    Ok(ranges)
}

/// The largest magnitude of each encoded column: max(|min|, |max|) for a numeric feature, 1 for
/// boolean and indicator columns.
pub fn column_magnitudes(schema: &Schema) -> Result<Vec<f64>, UnboundedFeature> {
    Ok(column_ranges(schema)?
        .into_iter()
        .map(|(min, max)| min.abs().max(max.abs()).max(1e-300))
        .collect())
}

/// A vector whose length does not match its phase's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LengthMismatch {
    /// The phase or vector concerned (e.g. `"fit"`).
    pub what: &'static str,
    /// The length its layout gives.
    pub expected: usize,
    /// The length received.
    pub actual: usize,
}

impl fmt::Display for LengthMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} vector has {} values, expected {}",
            self.what, self.actual, self.expected
        )
    }
}

impl std::error::Error for LengthMismatch {}

/// Refuses `values` unless it has `expected` entries.
pub fn check_len(
    what: &'static str,
    values: &[f64],
    expected: usize,
) -> Result<(), LengthMismatch> {
    if values.len() == expected {
        Ok(())
    } else {
        Err(LengthMismatch {
            what,
            expected,
            actual: values.len(),
        })
    }
}

/// Fit phase: `[n*w_j for each column, n*b, n]`; the sum over participants divided by the summed
/// n is the sample-weighted FedAvg model.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedModel {
    /// `n·w_j` for each standardized column `j`.
    pub weighted_weights: Vec<f64>,
    /// `n·b`.
    pub weighted_intercept: f64,
    /// `n`, the participant's training records.
    pub samples: f64,
}

impl WeightedModel {
    /// The vector's length for a model of `columns` features: `columns + 2`.
    pub fn len(columns: usize) -> usize {
        columns + 2
    }

    /// The vector in wire order: weights, intercept, samples.
    pub fn to_vec(&self) -> Vec<f64> {
        let mut v = self.weighted_weights.clone();
        v.push(self.weighted_intercept);
        v.push(self.samples);
        v
    }

    /// One participant's bounds: weights and intercept clipped to [-clip, clip], weighted by at
    /// most `max_rows` records.
    pub fn bounds(columns: usize, clip: f64, max_rows: u64) -> Vec<Bound> {
        let rows = max_rows as f64;
        vec![
            Bound::new("weighted weights", columns + 1, rows * clip, false),
            Bound::new("samples", 1, rows, true),
        ]
    }

    /// What one participant's validity proof shows besides the bounds: `n ≥ 0` and
    /// `|n·w_j| ≤ clip·n` for every weight and the intercept. FedAvg's global model is
    /// Σ n·w / Σ n, so these keep it within [-clip, clip] whatever any participant sends.
    pub fn relations(columns: usize, clip: f64) -> Vec<Relation> {
        vec![
            Relation::scaled(0..columns + 1, columns + 1, -clip, clip),
            Relation::non_negative(columns + 1..columns + 2),
        ]
    }

    /// Reads a vector in wire order; errs if it is not `columns + 2` long.
    pub fn from_slice(values: &[f64], columns: usize) -> Result<Self, LengthMismatch> {
        check_len("fit", values, Self::len(columns))?;
        Ok(Self {
            weighted_weights: values[..columns].to_vec(),
            weighted_intercept: values[columns],
            samples: values[columns + 1],
        })
    }
}

/// Evaluate phase: confusion counts at the decision threshold, summed losses, and histograms of
/// predicted probability (bin i covers [i/bins, (i+1)/bins)) for positives and negatives.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationCounts {
    /// Records evaluated.
    pub n: f64,
    /// True positives at the decision threshold.
    pub tp: f64,
    /// False positives.
    pub fp: f64,
    /// True negatives.
    pub tn: f64,
    /// False negatives.
    pub fn_: f64,
    /// Σ log loss over records, each at most [`MAX_LOG_LOSS_PER_RECORD`].
    pub log_loss_sum: f64,
    /// Σ Brier score (squared error of the probability) over records.
    pub brier_sum: f64,
    /// Actual positives per bin of predicted probability.
    pub positive_histogram: Vec<f64>,
    /// Actual negatives per bin of predicted probability.
    pub negative_histogram: Vec<f64>,
}

impl EvaluationCounts {
    /// All counts zero, with `bins` histogram bins.
    pub fn zeros(bins: usize) -> Self {
        Self {
            n: 0.0,
            tp: 0.0,
            fp: 0.0,
            tn: 0.0,
            fn_: 0.0,
            log_loss_sum: 0.0,
            brier_sum: 0.0,
            positive_histogram: vec![0.0; bins],
            negative_histogram: vec![0.0; bins],
        }
    }

    /// The vector's length with `bins` histogram bins: `7 + 2·bins`.
    pub fn len(bins: usize) -> usize {
        7 + 2 * bins
    }

    /// One participant's bounds with at most `max_rows` records.
    pub fn bounds(bins: usize, max_rows: u64) -> Vec<Bound> {
        let rows = max_rows as f64;
        vec![
            Bound::new("confusion counts", 5, rows, true),
            Bound::new("log loss sum", 1, rows * MAX_LOG_LOSS_PER_RECORD, false),
            Bound::new("Brier sum", 1, rows, false),
            Bound::new("score histograms", 2 * bins, rows, true),
        ]
    }

    /// What one participant's validity proof shows besides the bounds, with n (position 0) its
    /// record count: `n ≥ 0`; every confusion count, histogram bin and the Brier sum in [0, n];
    /// the log-loss sum in [0, 28·n] ([`MAX_LOG_LOSS_PER_RECORD`]).
    pub fn relations(bins: usize) -> Vec<Relation> {
        vec![
            Relation::non_negative(0..1),
            Relation::scaled(1..5, 0, 0.0, 1.0),
            Relation::scaled(5..6, 0, 0.0, MAX_LOG_LOSS_PER_RECORD),
            Relation::scaled(6..7, 0, 0.0, 1.0),
            Relation::scaled(7..7 + 2 * bins, 0, 0.0, 1.0),
        ]
    }

    /// The histogram bin of a predicted probability.
    pub fn bin(probability: f64, bins: usize) -> usize {
        ((probability * bins as f64) as usize).min(bins - 1)
    }

    /// The vector in wire order: the seven counts and sums, then the positive and the negative
    /// histogram.
    pub fn to_vec(&self) -> Vec<f64> {
        let mut v = vec![
            self.n,
            self.tp,
            self.fp,
            self.tn,
            self.fn_,
            self.log_loss_sum,
            self.brier_sum,
        ];
        v.extend_from_slice(&self.positive_histogram);
        v.extend_from_slice(&self.negative_histogram);
        v
    }

    /// Reads a vector in wire order; errs if it is not `7 + 2·bins` long.
    pub fn from_slice(values: &[f64], bins: usize) -> Result<Self, LengthMismatch> {
        check_len("evaluation", values, Self::len(bins))?;
        Ok(Self {
            n: values[0],
            tp: values[1],
            fp: values[2],
            tn: values[3],
            fn_: values[4],
            log_loss_sum: values[5],
            brier_sum: values[6],
            positive_histogram: values[7..7 + bins].to_vec(),
            negative_histogram: values[7 + bins..].to_vec(),
        })
    }
}

/// Per-group confusion counts of the current model: for each protected attribute, for each of
/// its categories then `unknown`, `[n, actual positives, predicted positives, true positives]`.
/// Sufficient for selection rates, TPR and the gaps between groups.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupCounts {
    /// (attribute, its categories with `unknown` last).
    pub groups: Vec<(String, Vec<String>)>,
    /// [`GROUP_FIELDS`] counts per group, groups in `groups` order.
    pub values: Vec<f64>,
}

/// Counts per group in [`GroupCounts`].
pub const GROUP_FIELDS: usize = 4;

/// One group's counts.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GroupTally {
    /// Records in the group.
    pub n: f64,
    /// Records whose label is positive.
    pub positives: f64,
    /// Records the model's decision marks positive.
    pub predicted_positives: f64,
    /// Records both labelled and predicted positive.
    pub true_positives: f64,
}

impl GroupTally {
    /// The share of the group the model predicts positive.
    pub fn selection_rate(&self) -> Option<f64> {
        (self.n > 0.0).then(|| self.predicted_positives / self.n)
    }

    /// The share of the group's actual positives the model predicts positive.
    pub fn true_positive_rate(&self) -> Option<f64> {
        (self.positives > 0.0).then(|| self.true_positives / self.positives)
    }
}

impl GroupCounts {
    /// Zeros for the schema's protected attributes.
    pub fn zeros(schema: &Schema) -> Self {
        let groups: Vec<(String, Vec<String>)> = schema
            .protected_attributes
            .iter()
            .map(|a| {
                let mut categories = a.categories.clone();
                categories.push(UNKNOWN.to_owned());
                (a.name.clone(), categories)
            })
            .collect();
        let len = groups.iter().map(|(_, c)| c.len()).sum::<usize>() * GROUP_FIELDS;
        Self {
            groups,
            values: vec![0.0; len],
        }
    }

    /// Positions in the vector: [`GROUP_FIELDS`] per group.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no groups (a schema without protected attributes).
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn offset(&self, attribute: usize, category: usize) -> usize {
        let before: usize = self.groups[..attribute].iter().map(|(_, c)| c.len()).sum();
        (before + category) * GROUP_FIELDS
    }

    /// Adds one record: its category index per attribute (in schema order), its label and the
    /// model's decision.
    pub fn add(&mut self, categories: &[usize], positive: bool, predicted: bool) {
        for (attribute, &category) in categories.iter().enumerate() {
            let at = self.offset(attribute, category);
            self.values[at] += 1.0;
            self.values[at + 1] += f64::from(u8::from(positive));
            self.values[at + 2] += f64::from(u8::from(predicted));
            self.values[at + 3] += f64::from(u8::from(positive && predicted));
        }
    }

    /// Each group of `attribute`: its category name and counts.
    pub fn tallies(&self, attribute: usize) -> Vec<(String, GroupTally)> {
        let (_, categories) = &self.groups[attribute];
        categories
            .iter()
            .enumerate()
            .map(|(i, category)| {
                let at = self.offset(attribute, i);
                let v = &self.values[at..at + GROUP_FIELDS];
                let tally = GroupTally {
                    n: v[0],
                    positives: v[1],
                    predicted_positives: v[2],
                    true_positives: v[3],
                };
                (category.clone(), tally)
            })
            .collect()
    }

    /// Fairlearn's demographic parity difference (max − min selection rate over the groups of
    /// `attribute` with at least `min_size` records) and equal opportunity difference (the same
    /// over true-positive rates). As Fairlearn's `MetricFrame.difference()` skips NaN, a group
    /// whose rate is undefined (no actual positives, for the true-positive rate) is left out;
    /// None (undefined) where fewer than two groups have a defined rate (docs/metrics.md).
    pub fn gaps(&self, attribute: usize, min_size: f64) -> (Option<f64>, Option<f64>) {
        let tallies: Vec<GroupTally> = self
            .tallies(attribute)
            .into_iter()
            .map(|(_, t)| t)
            .filter(|t| t.n >= min_size.max(1.0))
            .collect();
        let spread = |rates: Vec<f64>| {
            (rates.len() >= 2).then(|| {
                let max = rates.iter().cloned().fold(f64::MIN, f64::max);
                let min = rates.iter().cloned().fold(f64::MAX, f64::min);
                max - min
            })
        };
        (
            spread(
                tallies
                    .iter()
                    .filter_map(GroupTally::selection_rate)
                    .collect(),
            ),
            spread(
                tallies
                    .iter()
                    .filter_map(GroupTally::true_positive_rate)
                    .collect(),
            ),
        )
    }

    /// What one participant's validity proof shows besides the bounds, for these counts starting
    /// at position `start` of the phase's vector: per group, `n ≥ 0`, actual and predicted
    /// positives in [0, n], true positives at most either.
    pub fn relations(&self, start: usize) -> Vec<Relation> {
        (0..self.len() / GROUP_FIELDS)
            .flat_map(|group| {
                let at = start + group * GROUP_FIELDS;
                [
                    Relation::non_negative(at..at + 1),
                    Relation::scaled(at + 1..at + 3, at, 0.0, 1.0),
                    Relation::scaled(at + 3..at + 4, at + 1, 0.0, 1.0),
                    Relation::scaled(at + 3..at + 4, at + 2, 0.0, 1.0),
                ]
            })
            .collect()
    }

    /// One participant's bounds: every count at most `max_rows`.
    pub fn bounds(&self, max_rows: u64) -> Vec<Bound> {
        vec![Bound::new(
            "group counts",
            self.len(),
            max_rows as f64,
            true,
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Boolean, Categorical, Feature, Numeric, ProtectedAttribute};

    #[test]
    fn group_counts_tally_each_attribute_and_measure_the_gaps() {
        let schema = Schema {
            protected_attributes: vec![
                ProtectedAttribute {
                    name: "age_band".into(),
                    categories: vec!["18-29".into(), "60+".into()],
                    use_as_feature: false,
                },
                ProtectedAttribute {
                    name: "gender".into(),
                    categories: vec!["female".into()],
                    use_as_feature: false,
                },
            ],
            ..Default::default()
        };
        let mut counts = GroupCounts::zeros(&schema);
        assert_eq!(counts.len(), (3 + 2) * GROUP_FIELDS);
        // Young: 2 records, both positive, both predicted positive. Old: 2 positives, 1 predicted.
        counts.add(&[0, 0], true, true);
        counts.add(&[0, 1], true, true);
        counts.add(&[1, 0], true, true);
        counts.add(&[1, 1], true, false);
        let ages = counts.tallies(0);
        assert_eq!(ages[1].0, "60+");
        assert_eq!(ages[1].1.selection_rate(), Some(0.5));
        assert_eq!(ages[2].0, UNKNOWN);
        assert_eq!(ages[2].1.n, 0.0);
        assert_eq!(counts.gaps(0, 1.0), (Some(0.5), Some(0.5)));
        // Too small groups do not count.
        assert_eq!(counts.gaps(0, 3.0), (None, None));
        assert_eq!(counts.tallies(1)[1].1.n, 2.0, "gender unknown");
    }

    #[test]
    fn columns_expand_categories_and_protected_features() {
        let schema = Schema {
            features: vec![
                Feature {
                    name: "wait".into(),
                    kind: Some(Kind::Numeric(Numeric::default())),
                },
                Feature {
                    name: "channel".into(),
                    kind: Some(Kind::Categorical(Categorical {
                        categories: vec!["phone".into(), "chat".into()],
                    })),
                },
                Feature {
                    name: "fcr".into(),
                    kind: Some(Kind::Boolean(Boolean {})),
                },
            ],
            label: None,
            protected_attributes: vec![
                ProtectedAttribute {
                    name: "age".into(),
                    categories: vec!["young".into()],
                    use_as_feature: true,
                },
                ProtectedAttribute {
                    name: "gender".into(),
                    categories: vec!["f".into()],
                    use_as_feature: false,
                },
            ],
            intersections: vec![],
        };
        assert_eq!(
            encoded_columns(&schema),
            [
                "wait",
                "channel=phone",
                "channel=chat",
                "fcr",
                "age=young",
                "age=unknown"
            ]
        );
    }

    #[test]
    fn layouts_round_trip_and_refuse_wrong_lengths() {
        let e = EvaluationCounts {
            n: 5.0,
            tp: 1.0,
            fp: 2.0,
            tn: 1.0,
            fn_: 1.0,
            log_loss_sum: 3.5,
            brier_sum: 1.25,
            positive_histogram: vec![0.0, 2.0],
            negative_histogram: vec![3.0, 0.0],
        };
        assert_eq!(EvaluationCounts::from_slice(&e.to_vec(), 2).unwrap(), e);
        let err = EvaluationCounts::from_slice(&e.to_vec(), 3).unwrap_err();
        assert_eq!(
            err.to_string(),
            "evaluation vector has 11 values, expected 13"
        );

        let w = WeightedModel {
            weighted_weights: vec![1.0],
            weighted_intercept: 2.0,
            samples: 3.0,
        };
        assert_eq!(WeightedModel::from_slice(&w.to_vec(), 1).unwrap(), w);
        assert!(WeightedModel::from_slice(&[1.0], 1).is_err());
    }

    #[test]
    fn probabilities_fall_in_their_bins() {
        assert_eq!(EvaluationCounts::bin(0.0, 10), 0);
        assert_eq!(EvaluationCounts::bin(0.55, 10), 5);
        assert_eq!(EvaluationCounts::bin(1.0, 10), 9);
    }
}

//! The layouts of the vectors that cross a participant's boundary, and of the encoded features.
//!
//! Participants upload flat vectors of sums; which position means what is part of the protocol,
//! so both sides take it from here. Every position is a sum over records, never a record.

use crate::v1::{Schema, feature::Kind};
use std::fmt;

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
    pub name: String,
    pub len: usize,
    /// Every value lies in [-bound, bound].
    pub bound: f64,
    /// Counts: whole numbers, summed exactly.
    pub integer: bool,
}

impl Bound {
    fn new(name: &str, len: usize, bound: f64, integer: bool) -> Self {
        Self {
            name: name.to_owned(),
            len,
            bound,
            integer,
        }
    }
}

/// A numeric feature without the range secure aggregation needs to bound its sums.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "numeric feature '{0}' needs both min and max in the schema: secure aggregation bounds every sum by them"
)]
pub struct UnboundedFeature(pub String);

/// The largest magnitude of each encoded column: max(|min|, |max|) for a numeric feature, 1 for
/// boolean and indicator columns.
pub fn column_magnitudes(schema: &Schema) -> Result<Vec<f64>, UnboundedFeature> {
    let mut magnitudes = Vec::new();
    for feature in &schema.features {
        match &feature.kind {
            Some(Kind::Categorical(c)) => {
                magnitudes.extend(std::iter::repeat_n(1.0, c.categories.len()))
            }
            Some(Kind::Numeric(n)) => match (n.min, n.max) {
                (Some(min), Some(max)) => magnitudes.push(min.abs().max(max.abs()).max(1e-300)),
                _ => return Err(UnboundedFeature(feature.name.clone())),
            },
            Some(Kind::Boolean(_)) | None => magnitudes.push(1.0),
        }
    }
    for attribute in schema
        .protected_attributes
        .iter()
        .filter(|a| a.use_as_feature)
    {
        magnitudes.extend(std::iter::repeat_n(1.0, attribute.categories.len() + 1));
    }
    Ok(magnitudes)
}

/// A vector whose length does not match its phase's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LengthMismatch {
    pub what: &'static str,
    pub expected: usize,
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

fn check_len(what: &'static str, values: &[f64], expected: usize) -> Result<(), LengthMismatch> {
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

/// Standardize phase: `[count, sum_j for each column, sum_of_squares_j for each column]`.
#[derive(Debug, Clone, PartialEq)]
pub struct StandardizationSums {
    pub count: f64,
    pub sums: Vec<f64>,
    pub sums_of_squares: Vec<f64>,
}

impl StandardizationSums {
    pub fn len(columns: usize) -> usize {
        1 + 2 * columns
    }

    pub fn to_vec(&self) -> Vec<f64> {
        let mut v = Vec::with_capacity(Self::len(self.sums.len()));
        v.push(self.count);
        v.extend_from_slice(&self.sums);
        v.extend_from_slice(&self.sums_of_squares);
        v
    }

    /// Per-column means and (population) standard deviations. A column with no variance gets
    /// scale 1, so standardized values stay finite.
    pub fn moments(&self) -> (Vec<f64>, Vec<f64>) {
        let n = self.count.max(1.0);
        let means: Vec<f64> = self.sums.iter().map(|s| s / n).collect();
        let std_devs = self
            .sums_of_squares
            .iter()
            .zip(&means)
            .map(|(sq, m)| {
                let var = (sq / n - m * m).max(0.0);
                if var > 1e-12 { var.sqrt() } else { 1.0 }
            })
            .collect();
        (means, std_devs)
    }

    /// One participant's bounds with at most `max_rows` records: the count, then per column
    /// rows × |x|max and rows × |x|max².
    pub fn bounds(schema: &Schema, max_rows: u64) -> Result<Vec<Bound>, UnboundedFeature> {
        let rows = max_rows as f64;
        let columns = encoded_columns(schema);
        let magnitudes = column_magnitudes(schema)?;
        let mut bounds = vec![Bound::new("count", 1, rows, true)];
        for (column, m) in columns.iter().zip(&magnitudes) {
            bounds.push(Bound::new(&format!("sum {column}"), 1, rows * m, false));
        }
        for (column, m) in columns.iter().zip(&magnitudes) {
            bounds.push(Bound::new(
                &format!("sum of squares {column}"),
                1,
                rows * m * m,
                false,
            ));
        }
        Ok(bounds)
    }

    pub fn from_slice(values: &[f64], columns: usize) -> Result<Self, LengthMismatch> {
        check_len("standardization", values, Self::len(columns))?;
        Ok(Self {
            count: values[0],
            sums: values[1..=columns].to_vec(),
            sums_of_squares: values[1 + columns..].to_vec(),
        })
    }
}

/// Fit phase: `[n*w_j for each column, n*b, n]`; the sum over participants divided by the summed
/// n is the sample-weighted FedAvg model.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedModel {
    pub weighted_weights: Vec<f64>,
    pub weighted_intercept: f64,
    pub samples: f64,
}

impl WeightedModel {
    pub fn len(columns: usize) -> usize {
        columns + 2
    }

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
    pub n: f64,
    pub tp: f64,
    pub fp: f64,
    pub tn: f64,
    pub fn_: f64,
    pub log_loss_sum: f64,
    pub brier_sum: f64,
    pub positive_histogram: Vec<f64>,
    pub negative_histogram: Vec<f64>,
}

impl EvaluationCounts {
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

    /// The histogram bin of a predicted probability.
    pub fn bin(probability: f64, bins: usize) -> usize {
        ((probability * bins as f64) as usize).min(bins - 1)
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Boolean, Categorical, Feature, Numeric, ProtectedAttribute};

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

        let s = StandardizationSums {
            count: 2.0,
            sums: vec![1.0, 2.0],
            sums_of_squares: vec![3.0, 4.0],
        };
        assert_eq!(StandardizationSums::from_slice(&s.to_vec(), 2).unwrap(), s);
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

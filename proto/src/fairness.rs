//! Fairness statistics: the groups an audit reports on, and the counts per group that each
//! participant computes from the global model on its own records and encrypts for the auditor.
//!
//! A *breakdown* is one protected attribute (e.g. `gender`) or one intersection the schema
//! asks for (e.g. `gender × age_band`); its groups are every category, `unknown` included, or
//! every combination of them. Per group the layout holds [`STATISTICS`] counts plus a score
//! histogram, all non-negative integers, so they can be summed exactly under encryption.
//! FP, TN and FN are not sent: they follow exactly from the four confusion counts sent.

use crate::layout::{Relation, UNKNOWN};
use crate::v1::Schema;

/// The confusion counts per group, in layout order, before the histogram.
pub const STATISTICS: [&str; 4] = ["n", "positives", "predicted_positives", "true_positives"];

/// The most values a fairness statistics vector may hold. Each becomes a tfhe ciphertext that
/// the coordinator sums, so a larger audit is not practical anyway; the bound stops a schema (an
/// intersection multiplies its attributes' category counts) or a report from making a party
/// allocate without limit.
pub const MAX_VALUES: usize = 1 << 16;

/// Why the schema's fairness breakdowns are unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FairnessLayoutError {
    #[error("intersection {0:?} names '{1}', which is not a protected attribute")]
    /// An intersection (its attribute names, then the offending one) names an attribute the
    /// schema does not protect.
    UnknownAttribute(Vec<String>, String),
    #[error("intersection {0:?} must name at least two distinct protected attributes")]
    /// An intersection (its attribute names) crosses fewer than two distinct attributes.
    TooNarrow(Vec<String>),
    #[error("the fairness histogram needs at least 2 bins, got {0}")]
    /// The score histogram has fewer than 2 bins (the number asked for).
    Bins(usize),
    #[error(
        "the fairness breakdowns need at least {values} values ({groups} groups of {fields}), more than the {MAX_VALUES} allowed"
    )]
    /// The statistics vector (or the histogram alone) would exceed [`MAX_VALUES`] values.
    TooLarge {
        /// Groups over all breakdowns.
        groups: usize,
        /// Counts per group ([`FairnessLayout::fields`]).
        fields: usize,
        /// `groups × fields`, the values the vector would need.
        values: usize,
    },
}

/// One breakdown: its name, the attributes it crosses (indexes into the schema's protected
/// attributes) and its groups, each the category index per crossed attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Breakdown {
    /// The breakdown's name: the attribute's, or the crossed attributes' joined by `×`.
    pub name: String,
    /// Indexes into [`FairnessLayout::attributes`] of the attributes crossed.
    pub attributes: Vec<usize>,
    /// Each group as one category index per crossed attribute, in `attributes` order.
    pub groups: Vec<Vec<usize>>,
}

/// Where each breakdown's groups sit in the statistics vector.
#[derive(Debug, Clone, PartialEq)]
pub struct FairnessLayout {
    /// Each protected attribute with its categories, `unknown` last.
    pub attributes: Vec<(String, Vec<String>)>,
    /// The breakdowns in schema order: each protected attribute, then each intersection.
    pub breakdowns: Vec<Breakdown>,
    /// Bins of the score histograms (at least 2).
    pub bins: usize,
}

/// One group's counts, as summed over participants.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct GroupStatistics {
    /// Records in the group.
    pub n: u64,
    /// Records whose label is positive.
    pub positives: u64,
    /// Records the model's decision marks positive (at the decision threshold in force).
    pub predicted_positives: u64,
    /// Records both labelled and predicted positive.
    pub true_positives: u64,
    /// Records per bin of predicted probability (bin i covers [i/bins, (i+1)/bins)).
    pub bin_counts: Vec<u64>,
    /// Actual positives per bin.
    pub bin_positives: Vec<u64>,
}

impl GroupStatistics {
    /// FP = predicted positives − TP (saturating, so inconsistent counts from a
    /// deviating party give 0 rather than a panic).
    pub fn false_positives(&self) -> u64 {
        self.predicted_positives.saturating_sub(self.true_positives)
    }

    /// FN = positives − TP (saturating).
    pub fn false_negatives(&self) -> u64 {
        self.positives.saturating_sub(self.true_positives)
    }

    /// TN = n − positives − FP (saturating).
    pub fn true_negatives(&self) -> u64 {
        self.n
            .saturating_sub(self.positives)
            .saturating_sub(self.false_positives())
    }

    /// The counts in layout order.
    pub fn to_values(&self) -> Vec<u64> {
        let mut values = vec![
            self.n,
            self.positives,
            self.predicted_positives,
            self.true_positives,
        ];
        values.extend(&self.bin_counts);
        values.extend(&self.bin_positives);
        values
    }

    /// Reads one group's counts (`STATISTICS.len() + 2 * bins` values).
    pub fn from_values(values: &[u64], bins: usize) -> Self {
        let histogram = STATISTICS.len();
        Self {
            n: values[0],
            positives: values[1],
            predicted_positives: values[2],
            true_positives: values[3],
            bin_counts: values[histogram..histogram + bins].to_vec(),
            bin_positives: values[histogram + bins..histogram + 2 * bins].to_vec(),
        }
    }
}

impl FairnessLayout {
    /// The breakdowns of `schema`: each protected attribute alone, then each intersection.
    pub fn new(schema: &Schema, bins: usize) -> Result<Self, FairnessLayoutError> {
        if bins < 2 {
            return Err(FairnessLayoutError::Bins(bins));
        }
        let attributes: Vec<(String, Vec<String>)> = schema
            .protected_attributes
            .iter()
            .map(|a| {
                let mut categories = a.categories.clone();
                categories.push(UNKNOWN.to_owned());
                (a.name.clone(), categories)
            })
            .collect();
        let mut crossings: Vec<Vec<usize>> = (0..attributes.len()).map(|a| vec![a]).collect();
        for intersection in &schema.intersections {
            let names = &intersection.attributes;
            let mut crossed = Vec::new();
            for name in names {
                let index = attributes
                    .iter()
                    .position(|(a, _)| a == name)
                    .ok_or_else(|| {
                        FairnessLayoutError::UnknownAttribute(names.clone(), name.clone())
                    })?;
                if !crossed.contains(&index) {
                    crossed.push(index);
                }
            }
            if crossed.len() < 2 {
                return Err(FairnessLayoutError::TooNarrow(names.clone()));
            }
            crossings.push(crossed);
        }
        // Counted before anything is built: an intersection's groups multiply.
        let fields = STATISTICS.len().saturating_add(bins.saturating_mul(2));
        let groups = crossings.iter().fold(0usize, |total, crossed| {
            let product = crossed.iter().fold(1usize, |product, &a| {
                product.saturating_mul(attributes[a].1.len())
            });
            total.saturating_add(product)
        });
        let values = groups.saturating_mul(fields);
        if values > MAX_VALUES || bins > MAX_VALUES {
            return Err(FairnessLayoutError::TooLarge {
                groups,
                fields,
                values,
            });
        }
        let breakdowns = crossings
            .into_iter()
            .map(|crossed| {
                let name = crossed
                    .iter()
                    .map(|&a| attributes[a].0.as_str())
                    .collect::<Vec<_>>()
                    .join(" × ");
                let mut groups = vec![vec![]];
                for &a in &crossed {
                    groups = groups
                        .into_iter()
                        .flat_map(|prefix: Vec<usize>| {
                            (0..attributes[a].1.len()).map(move |c| {
                                let mut g = prefix.clone();
                                g.push(c);
                                g
                            })
                        })
                        .collect();
                }
                Breakdown {
                    name,
                    attributes: crossed,
                    groups,
                }
            })
            .collect();
        Ok(Self {
            attributes,
            breakdowns,
            bins,
        })
    }

    /// Counts per group.
    pub fn fields(&self) -> usize {
        STATISTICS.len() + 2 * self.bins
    }

    /// Groups over all breakdowns.
    pub fn groups(&self) -> usize {
        self.breakdowns.iter().map(|b| b.groups.len()).sum()
    }

    /// Values in the whole statistics vector.
    pub fn len(&self) -> usize {
        self.groups() * self.fields()
    }

    /// Whether the vector has no values (a schema without protected attributes).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A group's name, e.g. `gender=female × age_band=18-24`.
    pub fn group_label(&self, breakdown: &Breakdown, group: &[usize]) -> String {
        breakdown
            .attributes
            .iter()
            .zip(group)
            .map(|(&a, &c)| format!("{}={}", self.attributes[a].0, self.attributes[a].1[c]))
            .collect::<Vec<_>>()
            .join(" × ")
    }

    /// Where each group's counts start, with its breakdown and categories, in layout order.
    pub fn offsets(&self) -> impl Iterator<Item = (usize, &Breakdown, &[usize])> {
        let fields = self.fields();
        self.breakdowns
            .iter()
            .flat_map(|b| b.groups.iter().map(move |g| (b, g.as_slice())))
            .enumerate()
            .map(move |(i, (b, g))| (i * fields, b, g))
    }

    fn group_index(&self, breakdown: &Breakdown, categories: &[usize]) -> usize {
        // Groups enumerate the crossed attributes' categories in mixed radix, last fastest.
        breakdown.attributes.iter().fold(0, |index, &a| {
            index * self.attributes[a].1.len() + categories[a]
        })
    }

    /// Adds one record: its category index per protected attribute (schema order), its label,
    /// the model's decision and predicted probability.
    pub fn add(
        &self,
        values: &mut [u64],
        categories: &[usize],
        positive: bool,
        predicted: bool,
        score: f64,
    ) {
        let fields = self.fields();
        let bin = ((score.clamp(0.0, 1.0) * self.bins as f64) as usize).min(self.bins - 1);
        let mut start = 0;
        for breakdown in &self.breakdowns {
            let at = (start + self.group_index(breakdown, categories)) * fields;
            let counts = &mut values[at..at + fields];
            counts[0] += 1;
            counts[1] += u64::from(positive);
            counts[2] += u64::from(predicted);
            counts[3] += u64::from(positive && predicted);
            counts[STATISTICS.len() + bin] += 1;
            counts[STATISTICS.len() + self.bins + bin] += u64::from(positive);
            start += breakdown.groups.len();
        }
    }

    /// What each participant's count-validity proof shows besides every count lying in
    /// [0, max_rows]: per group, actual and predicted positives at most n, true positives at
    /// most either, each bin's count at most n and its positives at most the bin's count and
    /// the group's positives. Together these keep one participant from inflating a group's n
    /// without the counts that must come with it, and every count within what its records allow.
    pub fn relations(&self) -> Vec<Relation> {
        let (fields, bins) = (self.fields(), self.bins);
        let histogram = STATISTICS.len();
        (0..self.groups())
            .flat_map(|group| {
                let at = group * fields;
                let counts = at + histogram;
                let positives = counts + bins;
                let mut relations = vec![
                    Relation::scaled(at + 1..at + 3, at, 0.0, 1.0),
                    Relation::scaled(at + 3..at + 4, at + 1, 0.0, 1.0),
                    Relation::scaled(at + 3..at + 4, at + 2, 0.0, 1.0),
                    Relation::scaled(counts..counts + bins, at, 0.0, 1.0),
                    Relation::scaled(positives..positives + bins, at + 1, 0.0, 1.0),
                ];
                relations.extend((0..bins).map(|b| {
                    Relation::scaled(positives + b..positives + b + 1, counts + b, 0.0, 1.0)
                }));
                relations
            })
            .collect()
    }

    /// Every group's counts from a statistics vector, in layout order.
    pub fn read(&self, values: &[u64]) -> Vec<GroupStatistics> {
        values
            .chunks(self.fields())
            .map(|c| GroupStatistics::from_values(c, self.bins))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Intersection, ProtectedAttribute};

    fn schema() -> Schema {
        Schema {
            protected_attributes: vec![
                ProtectedAttribute {
                    name: "gender".into(),
                    categories: vec!["female".into(), "male".into()],
                    use_as_feature: false,
                },
                ProtectedAttribute {
                    name: "age_band".into(),
                    categories: vec!["18-34".into(), "35-54".into(), "55+".into()],
                    use_as_feature: false,
                },
            ],
            intersections: vec![Intersection {
                attributes: vec!["gender".into(), "age_band".into()],
            }],
            ..Default::default()
        }
    }

    #[test]
    fn groups_cover_every_category_and_every_combination_with_unknown() {
        let layout = FairnessLayout::new(&schema(), 10).unwrap();
        let sizes: Vec<usize> = layout.breakdowns.iter().map(|b| b.groups.len()).collect();
        assert_eq!(sizes, [3, 4, 12]);
        assert_eq!(layout.breakdowns[2].name, "gender × age_band");
        assert_eq!(layout.fields(), 24);
        assert_eq!(layout.len(), 19 * 24);
        let labels: Vec<String> = layout
            .offsets()
            .map(|(_, b, g)| layout.group_label(b, g))
            .collect();
        assert_eq!(labels[2], "gender=unknown");
        assert_eq!(labels[7], "gender=female × age_band=18-34");
        assert_eq!(labels[18], "gender=unknown × age_band=unknown");
    }

    #[test]
    fn a_record_counts_once_in_each_breakdown_and_in_its_score_bin() {
        let layout = FairnessLayout::new(&schema(), 10).unwrap();
        let mut values = vec![0; layout.len()];
        // male, 55+, satisfied, predicted satisfied at 0.93.
        layout.add(&mut values, &[1, 2], true, true, 0.93);
        // unknown gender, 18-34, not satisfied, predicted satisfied at 0.5.
        layout.add(&mut values, &[2, 0], false, true, 0.5);
        let groups = layout.read(&values);
        let by_label = |label: &str| {
            let i = layout
                .offsets()
                .position(|(_, b, g)| layout.group_label(b, g) == label)
                .unwrap();
            groups[i].clone()
        };
        let male_old = by_label("gender=male × age_band=55+");
        assert_eq!((male_old.n, male_old.true_positives), (1, 1));
        assert_eq!(male_old.bin_counts[9], 1);
        assert_eq!(male_old.bin_positives[9], 1);
        let unknown = by_label("gender=unknown");
        assert_eq!(unknown.false_positives(), 1);
        assert_eq!(unknown.true_negatives(), 0);
        assert_eq!(unknown.bin_counts[5], 1);
        assert_eq!(by_label("age_band=18-34").n, 1);
        assert_eq!(
            values.iter().sum::<u64>(),
            3 * (1 + 1 + 1 + 1 + 1 + 1) + 3 * (1 + 1 + 1)
        );
        assert_eq!(
            GroupStatistics::from_values(&male_old.to_values(), 10),
            male_old
        );
    }

    #[test]
    fn a_layout_too_large_is_refused_before_it_is_built() {
        // 24 attributes of 2 categories crossed in one intersection: 3^24 groups.
        let attributes: Vec<ProtectedAttribute> = (0..24)
            .map(|i| ProtectedAttribute {
                name: format!("a{i}"),
                categories: vec!["x".into(), "y".into()],
                use_as_feature: false,
            })
            .collect();
        let schema = Schema {
            intersections: vec![Intersection {
                attributes: attributes.iter().map(|a| a.name.clone()).collect(),
            }],
            protected_attributes: attributes,
            ..Default::default()
        };
        let error = FairnessLayout::new(&schema, 10).unwrap_err();
        assert_eq!(
            error,
            FairnessLayoutError::TooLarge {
                groups: 24 * 3 + 3usize.pow(24),
                fields: 24,
                values: (24 * 3 + 3usize.pow(24)) * 24,
            }
        );
        assert!(error.to_string().contains("more than the 65536 allowed"));
        assert!(matches!(
            FairnessLayout::new(&Schema::default(), u32::MAX as usize),
            Err(FairnessLayoutError::TooLarge { .. })
        ));
    }

    #[test]
    fn intersections_must_name_two_protected_attributes() {
        let mut s = schema();
        s.intersections[0].attributes = vec!["gender".into(), "gender".into()];
        assert!(matches!(
            FairnessLayout::new(&s, 10),
            Err(FairnessLayoutError::TooNarrow(_))
        ));
        s.intersections[0].attributes = vec!["gender".into(), "channel".into()];
        assert_eq!(
            FairnessLayout::new(&s, 10).unwrap_err().to_string(),
            "intersection [\"gender\", \"channel\"] names 'channel', which is not a protected attribute"
        );
    }
}

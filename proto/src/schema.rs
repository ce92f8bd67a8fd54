//! Checks that a federation's schema is well formed, on both sides of the wire: the coordinator
//! checks its configuration, a participant checks what it received before mapping data onto it
//! ([`validate_definition`]: the schema and every parameter the participant indexes or sizes
//! buffers by, since a coordinator may deviate).

use crate::layout::UNKNOWN;
use crate::v1::{Comparison, FederationDefinition, Schema, feature::Kind};
use std::collections::HashSet;

/// The most bins an evaluation score histogram may have (each is a position of every
/// participant's evaluation vector).
pub const MAX_EVALUATION_BINS: u32 = 10_000;

/// Why a schema is not well formed; each variant names the feature or attribute concerned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchemaError {
    /// No features: there would be nothing to train on.
    #[error("the schema has no features")]
    NoFeatures,
    /// A name (given) used twice among features, label and protected attributes.
    #[error(
        "the name '{0}' is used twice in the schema (features, label and protected attributes need distinct names)"
    )]
    DuplicateName(String),
    /// A feature (named) with neither a numeric nor a categorical type.
    #[error("feature '{0}' has no type")]
    MissingType(String),
    #[error("categorical '{name}' lists no categories")]
    /// A categorical feature or attribute with no categories.
    NoCategories {
        /// The feature or attribute.
        name: String,
    },
    #[error("categorical '{name}' lists category '{category}' twice")]
    /// A category listed twice.
    DuplicateCategory {
        /// The feature or attribute.
        name: String,
        /// The repeated category.
        category: String,
    },
    #[error(
        "protected attribute '{name}' lists '{UNKNOWN}', which every protected attribute has implicitly"
    )]
    /// A protected attribute listing `unknown`, which every attribute has implicitly.
    ExplicitUnknown {
        /// The attribute.
        name: String,
    },
    /// No label rule: nothing says which records are positive.
    #[error("the schema has no label rule")]
    NoLabel,
    /// A label rule without the column it compares.
    #[error("the label rule has no column")]
    LabelWithoutColumn,
    /// A label rule (on the named column) without a comparison.
    #[error("the label rule on '{0}' has no comparison")]
    LabelWithoutComparison(String),
    /// A label rule (on the named column) whose threshold is NaN or infinite.
    #[error("the label rule on '{0}' has a threshold that is not a finite number")]
    LabelThresholdNotFinite(String),
    #[error("'{name}' has an invalid range [{min}, {max}]: bounds must be finite and min <= max")]
    /// A numeric feature whose range is not finite or has `min > max`.
    InvalidRange {
        /// The feature.
        name: String,
        /// The range's lower end as given.
        min: f64,
        /// The range's upper end as given.
        max: f64,
    },
    /// A name (given) that is empty or has characters outside letters, digits, `_-.+`.
    #[error("name '{0}' is empty or has characters other than letters, digits, '_', '-', '.', '+'")]
    InvalidName(String),
}

fn check_name(name: &str) -> Result<(), SchemaError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.+ ".contains(c));
    if ok {
        Ok(())
    } else {
        Err(SchemaError::InvalidName(name.to_owned()))
    }
}

fn check_categories(name: &str, categories: &[String]) -> Result<(), SchemaError> {
    let mut seen = HashSet::new();
    for category in categories {
        check_name(category)?;
        if !seen.insert(category.as_str()) {
            return Err(SchemaError::DuplicateCategory {
                name: name.to_owned(),
                category: category.clone(),
            });
        }
    }
    Ok(())
}

fn check_range(name: &str, min: Option<f64>, max: Option<f64>) -> Result<(), SchemaError> {
    let (lo, hi) = (min.unwrap_or(f64::MIN), max.unwrap_or(f64::MAX));
    if lo.is_finite() && hi.is_finite() && lo <= hi {
        Ok(())
    } else {
        Err(SchemaError::InvalidRange {
            name: name.to_owned(),
            min: lo,
            max: hi,
        })
    }
}

/// Why a federation definition a participant received is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DefinitionError {
    /// The definition carries no schema.
    #[error("no schema")]
    NoSchema,
    /// The schema is not well formed.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("{what} is {got}; it must be {allowed}")]
    /// A parameter outside what a participant can honour.
    OutOfRange {
        /// The parameter's config key (e.g. `"evaluation.histogram_bins"`).
        what: &'static str,
        /// The value received.
        got: String,
        /// The values allowed, in words.
        allowed: &'static str,
    },
    #[error("{what} names '{attribute}', which is not a protected attribute of the schema")]
    /// A mitigation or post-processing that targets an attribute the schema does not protect.
    UnknownAttribute {
        /// The setting that names it.
        what: &'static str,
        /// The attribute named.
        attribute: String,
    },
}

/// Checks a definition received from the coordinator before anything is sized or indexed by
/// it: the schema ([`validate`]), the evaluation histogram (2 to [`MAX_EVALUATION_BINS`] bins,
/// a decision threshold in (0, 1)), the secure-aggregation ring, precision, clip and row bound,
/// and that mitigation and post-processing name protected attributes.
pub fn validate_definition(definition: &FederationDefinition) -> Result<(), DefinitionError> {
    let schema = definition
        .schema
        .as_ref()
        .ok_or(DefinitionError::NoSchema)?;
    validate(schema)?;
    let out_of_range =
        |what, got: String, allowed| DefinitionError::OutOfRange { what, got, allowed };
    let evaluation = definition.evaluation.unwrap_or_default();
    if !(2..=MAX_EVALUATION_BINS).contains(&evaluation.histogram_bins) {
        return Err(out_of_range(
            "evaluation.histogram_bins",
            evaluation.histogram_bins.to_string(),
            "in 2..=10000",
        ));
    }
    let threshold = evaluation.decision_threshold;
    if !(threshold > 0.0 && threshold < 1.0) {
        return Err(out_of_range(
            "evaluation.decision_threshold",
            threshold.to_string(),
            "in (0, 1)",
        ));
    }
    if let Some(p) = &definition.secure_aggregation {
        if !matches!(p.modulus_bits, 32 | 64) {
            let got = p.modulus_bits.to_string();
            return Err(out_of_range(
                "secure_aggregation.modulus_bits",
                got,
                "32 or 64",
            ));
        }
        if p.precision_bits > 52 {
            let got = p.precision_bits.to_string();
            return Err(out_of_range(
                "secure_aggregation.precision_bits",
                got,
                "at most 52",
            ));
        }
        if !(p.clip.is_finite() && p.clip > 0.0) {
            let got = p.clip.to_string();
            return Err(out_of_range(
                "secure_aggregation.clip",
                got,
                "positive and finite",
            ));
        }
        if p.max_rows_per_participant == 0 {
            let what = "secure_aggregation.max_rows_per_participant";
            return Err(out_of_range(what, "0".into(), "at least 1"));
        }
    }
    let protected = |what, attribute: &str| {
        if schema
            .protected_attributes
            .iter()
            .any(|a| a.name == attribute)
        {
            Ok(())
        } else {
            Err(DefinitionError::UnknownAttribute {
                what,
                attribute: attribute.to_owned(),
            })
        }
    };
    if let Some(m) = crate::mitigation::active_mitigation(definition.mitigation.as_ref()) {
        protected("mitigation.attribute", &m.attribute)?;
    }
    if let Some(p) = &definition.postprocessing {
        protected("postprocessing.attribute", &p.attribute)?;
    }
    Ok(())
}

/// Whether `value` lies within the optional bounds.
pub fn in_range(value: f64, min: Option<f64>, max: Option<f64>) -> bool {
    min.is_none_or(|m| value >= m) && max.is_none_or(|m| value <= m)
}

/// Validates a schema: distinct names, typed features, non-empty category lists, a usable label.
pub fn validate(schema: &Schema) -> Result<(), SchemaError> {
    if schema.features.is_empty() {
        return Err(SchemaError::NoFeatures);
    }
    let mut names = HashSet::new();
    let mut claim = |name: &str| {
        check_name(name)?;
        if names.insert(name.to_owned()) {
            Ok(())
        } else {
            Err(SchemaError::DuplicateName(name.to_owned()))
        }
    };
    for feature in &schema.features {
        claim(&feature.name)?;
        match &feature.kind {
            None => return Err(SchemaError::MissingType(feature.name.clone())),
            Some(Kind::Categorical(c)) if c.categories.is_empty() => {
                return Err(SchemaError::NoCategories {
                    name: feature.name.clone(),
                });
            }
            Some(Kind::Categorical(c)) => check_categories(&feature.name, &c.categories)?,
            Some(Kind::Numeric(n)) => check_range(&feature.name, n.min, n.max)?,
            Some(Kind::Boolean(_)) => {}
        }
    }
    let label = schema.label.as_ref().ok_or(SchemaError::NoLabel)?;
    if label.column.is_empty() {
        return Err(SchemaError::LabelWithoutColumn);
    }
    claim(&label.column)?;
    if label.comparison() == Comparison::Unspecified {
        return Err(SchemaError::LabelWithoutComparison(label.column.clone()));
    }
    if !label.threshold.is_finite() {
        return Err(SchemaError::LabelThresholdNotFinite(label.column.clone()));
    }
    check_range(&label.column, label.min, label.max)?;
    for attribute in &schema.protected_attributes {
        claim(&attribute.name)?;
        if attribute.categories.is_empty() {
            return Err(SchemaError::NoCategories {
                name: attribute.name.clone(),
            });
        }
        if attribute.categories.iter().any(|c| c == UNKNOWN) {
            return Err(SchemaError::ExplicitUnknown {
                name: attribute.name.clone(),
            });
        }
        check_categories(&attribute.name, &attribute.categories)?;
    }
    Ok(())
}

impl Comparison {
    /// Whether `value <comparison> threshold` holds.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Ge => value >= threshold,
            Comparison::Gt => value > threshold,
            Comparison::Le => value <= threshold,
            Comparison::Lt => value < threshold,
            Comparison::Eq => value == threshold,
            Comparison::Unspecified => false,
        }
    }

    /// The comparison as written in a label rule (`>=`, `>`, `<=`, `<`, `==`; `?` unspecified).
    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::Ge => ">=",
            Comparison::Gt => ">",
            Comparison::Le => "<=",
            Comparison::Lt => "<",
            Comparison::Eq => "==",
            Comparison::Unspecified => "?",
        }
    }

    /// The comparison a label rule writes (`=` accepted for `==`); `None` for anything else.
    pub fn from_symbol(symbol: &str) -> Option<Self> {
        Some(match symbol {
            ">=" => Comparison::Ge,
            ">" => Comparison::Gt,
            "<=" => Comparison::Le,
            "<" => Comparison::Lt,
            "==" | "=" => Comparison::Eq,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Categorical, Feature, LabelRule, Numeric, ProtectedAttribute};

    fn schema() -> Schema {
        Schema {
            features: vec![
                Feature {
                    name: "wait".into(),
                    kind: Some(Kind::Numeric(Numeric::default())),
                },
                Feature {
                    name: "channel".into(),
                    kind: Some(Kind::Categorical(Categorical {
                        categories: vec!["phone".into()],
                    })),
                },
            ],
            label: Some(LabelRule {
                column: "csat".into(),
                comparison: Comparison::Ge as i32,
                threshold: 4.0,
                positive_name: "satisfied".into(),
                min: Some(1.0),
                max: Some(5.0),
            }),
            protected_attributes: vec![ProtectedAttribute {
                name: "age_band".into(),
                categories: vec!["60+".into()],
                use_as_feature: false,
            }],
            intersections: vec![],
        }
    }

    #[test]
    fn a_good_schema_passes() {
        assert_eq!(validate(&schema()), Ok(()));
    }

    #[test]
    fn a_definition_is_refused_for_each_parameter_a_participant_sizes_or_indexes_by() {
        use crate::v1::{EvaluationParams, SecAggParams, ThresholdPostprocessing};
        let good = FederationDefinition {
            schema: Some(schema()),
            evaluation: Some(EvaluationParams {
                histogram_bins: 10,
                decision_threshold: 0.5,
                group_gaps: false,
            }),
            secure_aggregation: Some(SecAggParams {
                modulus_bits: 64,
                precision_bits: 16,
                clip: 50.0,
                max_rows_per_participant: 1000,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(validate_definition(&good), Ok(()));
        let refused = |change: fn(&mut FederationDefinition)| {
            let mut d = good.clone();
            change(&mut d);
            validate_definition(&d).unwrap_err().to_string()
        };
        assert_eq!(refused(|d| d.schema = None), "no schema");
        assert_eq!(
            refused(|d| d.evaluation.as_mut().unwrap().histogram_bins = 0),
            "evaluation.histogram_bins is 0; it must be in 2..=10000"
        );
        assert!(refused(|d| d.evaluation = None).starts_with("evaluation.histogram_bins is 0"));
        assert_eq!(
            refused(|d| d.evaluation.as_mut().unwrap().decision_threshold = f64::NAN),
            "evaluation.decision_threshold is NaN; it must be in (0, 1)"
        );
        assert_eq!(
            refused(|d| d.secure_aggregation.as_mut().unwrap().clip = f64::NAN),
            "secure_aggregation.clip is NaN; it must be positive and finite"
        );
        assert!(
            refused(|d| d.secure_aggregation.as_mut().unwrap().modulus_bits = 16)
                .starts_with("secure_aggregation.modulus_bits is 16")
        );
        assert_eq!(
            refused(|d| {
                d.postprocessing = Some(ThresholdPostprocessing {
                    attribute: "gender".into(),
                    ..Default::default()
                })
            }),
            "postprocessing.attribute names 'gender', which is not a protected attribute of the schema"
        );
    }

    #[test]
    fn each_defect_is_named() {
        let mut s = schema();
        s.features[1].name = "wait".into();
        assert_eq!(validate(&s), Err(SchemaError::DuplicateName("wait".into())));

        let mut s = schema();
        s.label.as_mut().unwrap().column = "wait".into();
        assert_eq!(validate(&s), Err(SchemaError::DuplicateName("wait".into())));

        let mut s = schema();
        s.protected_attributes[0].categories.push("unknown".into());
        assert_eq!(
            validate(&s),
            Err(SchemaError::ExplicitUnknown {
                name: "age_band".into()
            })
        );

        let mut s = schema();
        s.features[1].kind = Some(Kind::Categorical(Categorical { categories: vec![] }));
        assert_eq!(
            validate(&s),
            Err(SchemaError::NoCategories {
                name: "channel".into()
            })
        );

        let mut s = schema();
        s.label.as_mut().unwrap().threshold = f64::NAN;
        assert_eq!(
            validate(&s),
            Err(SchemaError::LabelThresholdNotFinite("csat".into()))
        );

        let mut s = schema();
        s.features[0].kind = None;
        assert_eq!(validate(&s), Err(SchemaError::MissingType("wait".into())));

        let mut s = schema();
        s.label.as_mut().unwrap().min = Some(6.0);
        assert_eq!(
            validate(&s),
            Err(SchemaError::InvalidRange {
                name: "csat".into(),
                min: 6.0,
                max: 5.0
            })
        );
        let mut s = schema();
        s.features[0].kind = Some(Kind::Numeric(Numeric {
            min: Some(f64::NAN),
            max: None,
        }));
        assert!(
            matches!(validate(&s), Err(SchemaError::InvalidRange { name, .. }) if name == "wait")
        );
    }

    #[test]
    fn comparisons_hold_as_written() {
        assert!(Comparison::Ge.holds(4.0, 4.0));
        assert!(!Comparison::Gt.holds(4.0, 4.0));
        assert!(Comparison::Lt.holds(3.0, 4.0));
        assert_eq!(Comparison::from_symbol(">="), Some(Comparison::Ge));
        assert_eq!(Comparison::from_symbol("~"), None);
    }
}

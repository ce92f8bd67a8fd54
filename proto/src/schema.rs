//! Checks that a federation's schema is well formed, on both sides of the wire: the coordinator
//! checks its configuration, a participant checks what it received before mapping data onto it.

use crate::layout::UNKNOWN;
use crate::v1::{Comparison, Schema, feature::Kind};
use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchemaError {
    #[error("the schema has no features")]
    NoFeatures,
    #[error(
        "the name '{0}' is used twice in the schema (features, label and protected attributes need distinct names)"
    )]
    DuplicateName(String),
    #[error("feature '{0}' has no type")]
    MissingType(String),
    #[error("categorical '{name}' lists no categories")]
    NoCategories { name: String },
    #[error("categorical '{name}' lists category '{category}' twice")]
    DuplicateCategory { name: String, category: String },
    #[error(
        "protected attribute '{name}' lists '{UNKNOWN}', which every protected attribute has implicitly"
    )]
    ExplicitUnknown { name: String },
    #[error("the schema has no label rule")]
    NoLabel,
    #[error("the label rule has no column")]
    LabelWithoutColumn,
    #[error("the label rule on '{0}' has no comparison")]
    LabelWithoutComparison(String),
    #[error("the label rule on '{0}' has a threshold that is not a finite number")]
    LabelThresholdNotFinite(String),
    #[error("'{name}' has an invalid range [{min}, {max}]: bounds must be finite and min <= max")]
    InvalidRange { name: String, min: f64, max: f64 },
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

//! The coordinator's side of fairness-aware training and post-processing.
//!
//! The configuration: `[training.mitigation]` (FairFed, a fairness regularizer or reweighing,
//! with its strength, targeted metric and protected attribute) and `[postprocessing]` (per-group
//! decision thresholds). And what the coordinator does with the sums the mitigation adds
//! ([`MitigationRun`]): it reads the targeted attribute's group × label cells (standardize) and
//! group counts (evaluate) out of the aggregated vectors and feeds them back with the next
//! global model, combines FairFed's fit sum, and after the last round chooses the per-group
//! thresholds from the aggregated score histograms. It never sees one participant's numbers:
//! everything it reads is a sum from the federation's aggregation. The simulator runs the same
//! code.

use accord_proto::artefact::{GroupThresholdJson, PostprocessingJson};
use accord_proto::layout::{GroupCounts, LengthMismatch, WeightedModel};
use accord_proto::mitigation::{
    EvaluationStatistics, FairFedUpdate, GroupHistograms, active_mitigation, active_postprocessing,
    label_counts, threshold_bin,
};
use accord_proto::phase::PhaseVector;
use accord_proto::sections::MitigationSection;
use accord_proto::v1::{
    EvaluationParams, FairnessMetric, FairnessMitigation, GroupThreshold, MitigationFeedback,
    MitigationKind, Schema, ThresholdPostprocessing, ThresholdRule,
};
use serde::{Deserialize, Serialize};

/// `[postprocessing]`: per-group decision thresholds chosen after the last round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostprocessingSection {
    /// "none", "equal_opportunity" (equal true-positive rates) or "demographic_parity" (equal
    /// selection rates).
    pub thresholds: String,
    /// The protected attribute whose groups get their own thresholds.
    pub attribute: String,
    /// How far each group's rate moves towards the common target, in [0, 1].
    pub strength: f64,
    /// Groups with fewer records than this keep the common threshold.
    pub min_group_size: u64,
}

impl Default for PostprocessingSection {
    fn default() -> Self {
        Self {
            thresholds: "none".into(),
            attribute: String::new(),
            strength: 1.0,
            min_group_size: 30,
        }
    }
}

/// A mitigation or post-processing setting that cannot be used, naming its key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MitigationConfigError {
    /// An unknown mitigation kind.
    #[error("{section}.kind '{value}' is not one of none, fairfed, regularizer, reweighing")]
    Kind {
        /// The section, `training.mitigation`.
        section: String,
        /// The configured kind.
        value: String,
    },
    /// An unknown fairness metric.
    #[error("{section}.metric '{value}' is not one of demographic_parity, equal_opportunity")]
    Metric {
        /// The section, `training.mitigation`.
        section: String,
        /// The configured metric.
        value: String,
    },
    /// An unknown post-processing rule.
    #[error(
        "{section}.thresholds '{value}' is not one of none, equal_opportunity, demographic_parity"
    )]
    Rule {
        /// The section, `postprocessing`.
        section: String,
        /// The configured rule.
        value: String,
    },
    /// The attribute is not a protected attribute of the schema.
    #[error(
        "{section}.attribute '{value}' is not a protected attribute of the schema (protected: {known})"
    )]
    Attribute {
        /// The section, `training.mitigation` or `postprocessing`.
        section: String,
        /// The attribute named.
        value: String,
        /// The schema's protected attributes, comma-separated.
        known: String,
    },
    /// The strength is out of its range.
    #[error("{section}.strength {value} must be {range}")]
    Strength {
        /// The section, `training.mitigation` or `postprocessing`.
        section: String,
        /// The configured strength.
        value: f64,
        /// The allowed range.
        range: &'static str,
    },
    /// A minimum group size of 0.
    #[error("{section}.min_group_size must be at least 1")]
    MinGroupSize {
        /// The section, `training.mitigation` or `postprocessing`.
        section: String,
    },
}

/// The settings both sections share: a protected attribute of the schema, a strength (at most 1
/// where `strength.1`) and a positive minimum group size.
fn check_groups(
    schema: &Schema,
    section: &str,
    attribute: &str,
    (strength, at_most_one): (f64, bool),
    min_group_size: u64,
) -> Result<(), MitigationConfigError> {
    let protected = &schema.protected_attributes;
    if !protected.iter().any(|a| a.name == attribute) {
        return Err(MitigationConfigError::Attribute {
            section: section.into(),
            value: attribute.into(),
            known: protected
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let fits = strength.is_finite() && strength >= 0.0 && (!at_most_one || strength <= 1.0);
    if !fits {
        return Err(MitigationConfigError::Strength {
            section: section.into(),
            value: strength,
            range: if at_most_one {
                "in [0, 1]"
            } else {
                "finite and not negative"
            },
        });
    }
    if min_group_size == 0 {
        return Err(MitigationConfigError::MinGroupSize {
            section: section.into(),
        });
    }
    Ok(())
}

/// `[training.mitigation]` as it goes on the wire, after checking it against `schema`;
/// `section` names the table in errors (e.g. "training.mitigation"). None for kind "none".
pub fn mitigation_definition(
    mitigation: &MitigationSection,
    schema: &Schema,
    section: &str,
) -> Result<Option<FairnessMitigation>, MitigationConfigError> {
    let kind = MitigationKind::from_config(&mitigation.kind).ok_or_else(|| {
        MitigationConfigError::Kind {
            section: section.into(),
            value: mitigation.kind.clone(),
        }
    })?;
    let metric = FairnessMetric::from_config(&mitigation.metric).ok_or_else(|| {
        MitigationConfigError::Metric {
            section: section.into(),
            value: mitigation.metric.clone(),
        }
    })?;
    if kind == MitigationKind::None {
        return Ok(None);
    }
    check_groups(
        schema,
        section,
        &mitigation.attribute,
        (mitigation.strength, kind == MitigationKind::Reweighing),
        mitigation.min_group_size,
    )?;
    Ok(Some(FairnessMitigation {
        kind: kind as i32,
        strength: mitigation.strength,
        metric: metric as i32,
        attribute: mitigation.attribute.clone(),
        min_group_size: mitigation.min_group_size,
    }))
}

impl PostprocessingSection {
    /// Whether no post-processing is configured (thresholds "none").
    pub fn is_none(&self) -> bool {
        self.thresholds == "none"
    }

    /// The post-processing as it goes on the wire; None for thresholds "none".
    pub fn definition(
        &self,
        schema: &Schema,
        section: &str,
    ) -> Result<Option<ThresholdPostprocessing>, MitigationConfigError> {
        let rule = ThresholdRule::from_config(&self.thresholds).ok_or_else(|| {
            MitigationConfigError::Rule {
                section: section.into(),
                value: self.thresholds.clone(),
            }
        })?;
        if rule == ThresholdRule::None {
            return Ok(None);
        }
        check_groups(
            schema,
            section,
            &self.attribute,
            (self.strength, true),
            self.min_group_size,
        )?;
        Ok(Some(ThresholdPostprocessing {
            rule: rule as i32,
            attribute: self.attribute.clone(),
            strength: self.strength,
            min_group_size: self.min_group_size,
        }))
    }
}

/// A federation's mitigation and post-processing while it runs: what the coordinator reads out
/// of the aggregated sums and feeds back to participants.
#[derive(Debug, Clone)]
pub struct MitigationRun {
    schema: Schema,
    mitigation: Option<FairnessMitigation>,
    postprocessing: Option<ThresholdPostprocessing>,
    evaluation: EvaluationParams,
    feedback: MitigationFeedback,
    histograms: Option<GroupHistograms>,
    /// The consortium's record count, from the standardization.
    records: f64,
}

impl MitigationRun {
    /// The run for a federation with this schema, mitigation, post-processing and evaluation
    /// parameters.
    pub fn new(
        schema: &Schema,
        mitigation: Option<&FairnessMitigation>,
        postprocessing: Option<&ThresholdPostprocessing>,
        evaluation: EvaluationParams,
    ) -> Self {
        Self {
            schema: schema.clone(),
            mitigation: active_mitigation(mitigation).cloned(),
            postprocessing: active_postprocessing(postprocessing).cloned(),
            evaluation,
            feedback: MitigationFeedback::default(),
            histograms: None,
            records: 0.0,
        }
    }

    fn is_active(&self) -> bool {
        self.mitigation.is_some() || self.postprocessing.is_some()
    }

    fn fairfed_beta(&self) -> Option<f64> {
        self.mitigation
            .as_ref()
            .filter(|m| m.kind() == MitigationKind::Fairfed)
            .map(|m| m.strength)
    }

    /// What reweighing appends to the standardize vector (nothing otherwise).
    pub fn label_counts(&self) -> Option<GroupCounts> {
        label_counts(&self.schema, self.mitigation.as_ref())
    }

    /// Takes the summed standardize extras (after the standardization sums) and the record count.
    pub fn absorb_standardization(
        &mut self,
        extras: &[f64],
        records: f64,
    ) -> Result<(), LengthMismatch> {
        self.records = records;
        if let Some(zeros) = self.label_counts() {
            self.feedback.label_counts = zeros.with_values(extras)?.values;
        }
        Ok(())
    }

    /// One participant's fit vector (bounds and relations).
    pub fn fit_vector(&self, columns: usize, clip: f64, max_rows: u64) -> PhaseVector {
        let fairfed = self.fairfed_beta().map(|beta| (beta, self.records));
        PhaseVector::fit(columns, clip, max_rows, fairfed)
    }

    /// One participant's evaluate vector (bounds and relations).
    pub fn evaluation_vector(&self, max_rows: u64) -> PhaseVector {
        PhaseVector::evaluate(
            &self.schema,
            self.mitigation.as_ref(),
            self.postprocessing.as_ref(),
            &self.evaluation,
            max_rows,
        )
    }

    /// The summed fit vector as FedAvg's weighted model; FairFed's is combined first and its
    /// mean gap fed back for `round`.
    pub fn fitted(
        &mut self,
        round: u32,
        sum: &[f64],
        columns: usize,
    ) -> Result<WeightedModel, LengthMismatch> {
        let Some(beta) = self.fairfed_beta() else {
            return WeightedModel::from_slice(sum, columns);
        };
        let (model, mean) = FairFedUpdate::from_slice(sum, columns)?.combine(beta, self.records);
        self.feedback.fairfed_round = round;
        self.feedback.fairfed_mean_gap = mean.unwrap_or(0.0);
        Ok(model)
    }

    /// What the evaluate vector carries after the evaluation counts.
    pub fn evaluation_layout(&self) -> EvaluationStatistics {
        EvaluationStatistics::zeros(
            &self.schema,
            self.mitigation.as_ref(),
            self.postprocessing.as_ref(),
            &self.evaluation,
        )
    }

    /// A fit made a new global model: the score histograms measured the previous one, so no
    /// thresholds are chosen from them (until the new model's evaluation brings its own).
    pub fn model_changed(&mut self) {
        self.histograms = None;
    }

    /// Takes the summed evaluate extras of the latest global model.
    pub fn absorb_evaluation(&mut self, extras: &[f64]) -> Result<(), LengthMismatch> {
        let statistics = self.evaluation_layout().with_values(extras)?;
        if let Some(counts) = statistics.counts {
            self.feedback.group_counts = counts.values;
        }
        self.histograms = statistics.histograms;
        Ok(())
    }

    /// What goes back to participants with the global model.
    pub fn feedback(&self) -> Option<MitigationFeedback> {
        self.is_active().then(|| self.feedback.clone())
    }

    /// The targeted gap of the latest evaluated model, from its summed group counts.
    pub fn gap(&self) -> Option<f64> {
        let m = self.mitigation.as_ref()?;
        GroupCounts::for_attribute(&self.schema, &m.attribute)?
            .with_values(&self.feedback.group_counts)
            .ok()?
            .gap(0, m.metric(), m.min_group_size as f64)
    }

    /// After the last round: the per-group thresholds from the final model's summed histograms,
    /// put in force (fed back from now on) and described for model.json. None without
    /// post-processing, or when the final model's evaluation aborted (no histograms of it).
    pub fn choose_thresholds(&mut self) -> Option<PostprocessingJson> {
        let p = self.postprocessing.as_ref()?;
        let histograms = self.histograms.as_ref()?;
        let bins = self.evaluation.histogram_bins;
        let base = threshold_bin(self.evaluation.decision_threshold, bins as usize);
        let chosen = histograms.thresholds(p.rule(), p.strength, base, p.min_group_size as f64);
        self.feedback.thresholds = histograms
            .categories
            .iter()
            .zip(&chosen.bins)
            .map(|(group, &bin)| GroupThreshold {
                group: group.clone(),
                bin,
            })
            .collect();
        Some(PostprocessingJson {
            thresholds: p.rule().config_name().into(),
            attribute: p.attribute.clone(),
            strength: p.strength,
            min_group_size: p.min_group_size,
            histogram_bins: bins,
            groups: self
                .feedback
                .thresholds
                .iter()
                .map(|t| GroupThresholdJson {
                    group: t.group.clone(),
                    bin: t.bin,
                    threshold: f64::from(t.bin) / f64::from(bins),
                })
                .collect(),
            accuracy_before: chosen.before.0,
            gap_before: chosen.before.1,
            accuracy_after: chosen.after.0,
            gap_after: chosen.after.1,
            quality: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use accord_proto::v1::ProtectedAttribute;

    fn schema() -> Schema {
        Schema {
            protected_attributes: vec![ProtectedAttribute {
                name: "age_band".into(),
                categories: vec!["18-29".into(), "60+".into()],
                use_as_feature: false,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn bad_settings_are_refused_naming_the_key() {
        let section = |kind: &str, metric: &str, attribute: &str, strength: f64| {
            mitigation_definition(
                &MitigationSection {
                    kind: kind.into(),
                    metric: metric.into(),
                    attribute: attribute.into(),
                    strength,
                    ..Default::default()
                },
                &schema(),
                "training.mitigation",
            )
            .map_err(|e| e.to_string())
        };
        assert_eq!(section("none", "demographic_parity", "", 1.0), Ok(None));
        assert_eq!(
            section("fairflow", "demographic_parity", "age_band", 1.0).unwrap_err(),
            "training.mitigation.kind 'fairflow' is not one of none, fairfed, regularizer, reweighing"
        );
        assert_eq!(
            section("fairfed", "parity", "age_band", 1.0).unwrap_err(),
            "training.mitigation.metric 'parity' is not one of demographic_parity, equal_opportunity"
        );
        assert_eq!(
            section("fairfed", "equal_opportunity", "age", 1.0).unwrap_err(),
            "training.mitigation.attribute 'age' is not a protected attribute of the schema (protected: age_band)"
        );
        assert_eq!(
            section("reweighing", "demographic_parity", "age_band", 1.5).unwrap_err(),
            "training.mitigation.strength 1.5 must be in [0, 1]"
        );
        assert_eq!(
            section("regularizer", "demographic_parity", "age_band", -1.0).unwrap_err(),
            "training.mitigation.strength -1 must be finite and not negative"
        );
        let post = PostprocessingSection {
            thresholds: "equalized_odds".into(),
            ..Default::default()
        };
        assert_eq!(
            post.definition(&schema(), "postprocessing")
                .unwrap_err()
                .to_string(),
            "postprocessing.thresholds 'equalized_odds' is not one of none, equal_opportunity, demographic_parity"
        );
    }
}

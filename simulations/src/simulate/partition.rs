//! The simulated participants' data: loaded through the participant library's CSV reader (the
//! production path), then split the way the experiment asks: as it comes, IID, or skewed by
//! label, by a protected group or by quantity with Dirichlet(α) proportions.

use super::RunError;
use super::config::{DataConfig, DataSource, PartitionConfig, PartitionKind};
use crate::synth;
use accord_participant::data::{LocalDataset, load_csv};
use accord_proto::v1::Schema;
use ndarray::{Array1, Array2, Axis};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rand_distr::{Distribution, Gamma};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Every participant keeps at least this many records, so each can train and evaluate.
const MIN_ROWS: usize = 2;

/// Why records cannot be split as the experiment asks.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// Too few records for every participant to keep two.
    #[error(
        "{records} records cannot be split into {participants} participants of at least {MIN_ROWS}"
    )]
    TooFewRecords {
        /// Records loaded.
        records: usize,
        /// Participants to split them into.
        participants: usize,
    },
    /// `partition.attribute` names no protected attribute of the schema.
    #[error("partition.attribute '{0}' is not a protected attribute of the schema")]
    UnknownAttribute(String),
}

/// Loads the experiment's data as one dataset per source (generator organization or file).
pub(crate) fn load(
    data: &DataConfig,
    schema: &Schema,
    seed: u64,
    scratch: &Path,
) -> Result<Vec<LocalDataset>, RunError> {
    let files = match data.source {
        DataSource::Synthetic => {
            let spec = data.synth_spec(seed)?;
            synth::write_csvs(&synth::generate(&spec)?, scratch)?
        }
        DataSource::CsvFiles => data.files.clone(),
        DataSource::CsvSplit => vec![data.file.clone().expect("checked")],
    };
    files
        .iter()
        .map(|file| {
            Ok(load_csv(file, schema, &HashMap::new(), data.invalid_rows)
                .map(|(dataset, _)| dataset)?)
        })
        .collect()
}

/// Splits the loaded datasets into `participants` as the partitioning says.
pub(crate) fn partition(
    sources: Vec<LocalDataset>,
    participants: usize,
    config: &PartitionConfig,
    schema: &Schema,
    seed: u64,
) -> Result<Vec<LocalDataset>, PartitionError> {
    if config.kind == PartitionKind::Natural && sources.len() == participants.max(1) {
        return Ok(sources);
    }
    let pooled = pool(&sources);
    let n = pooled.len();
    if n < participants * MIN_ROWS {
        return Err(PartitionError::TooFewRecords {
            records: n,
            participants,
        });
    }
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x005e_ed0f_5911);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let mut assignment: Vec<Vec<usize>> = vec![Vec::new(); participants];
    match config.kind {
        PartitionKind::Natural | PartitionKind::Iid => {
            for (i, row) in order.into_iter().enumerate() {
                assignment[i % participants].push(row);
            }
        }
        PartitionKind::Quantity => {
            let shares = dirichlet(participants, config.alpha, &mut rng);
            split_by(&order, &shares, &mut assignment);
        }
        PartitionKind::DirichletLabel | PartitionKind::Group => {
            let class_of: Vec<usize> = if config.kind == PartitionKind::DirichletLabel {
                pooled
                    .labels
                    .iter()
                    .map(|&y| usize::from(y > 0.5))
                    .collect()
            } else {
                let attribute = config.attribute.as_deref().expect("checked");
                if !schema
                    .protected_attributes
                    .iter()
                    .any(|a| a.name == attribute)
                {
                    return Err(PartitionError::UnknownAttribute(attribute.to_owned()));
                }
                pooled.groups[attribute].clone()
            };
            let mut classes: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for row in order {
                classes.entry(class_of[row]).or_default().push(row);
            }
            for rows in classes.values() {
                let shares = dirichlet(participants, config.alpha, &mut rng);
                split_by(rows, &shares, &mut assignment);
            }
        }
    }
    rebalance(&mut assignment, &mut rng);
    Ok(assignment
        .iter()
        .map(|rows| select(&pooled, rows))
        .collect())
}

/// Dirichlet(α, …, α) proportions from Gamma(α, 1) draws.
fn dirichlet(n: usize, alpha: f64, rng: &mut ChaCha20Rng) -> Vec<f64> {
    let gamma = Gamma::new(alpha, 1.0).expect("alpha checked positive");
    let draws: Vec<f64> = (0..n)
        .map(|_| gamma.sample(rng).max(f64::MIN_POSITIVE))
        .collect();
    let total: f64 = draws.iter().sum();
    draws.iter().map(|d| d / total).collect()
}

/// Deals `rows` out in contiguous runs sized by `shares`.
fn split_by(rows: &[usize], shares: &[f64], assignment: &mut [Vec<usize>]) {
    let mut start = 0;
    let mut cumulative = 0.0;
    for (i, share) in shares.iter().enumerate() {
        cumulative += share;
        let end = if i + 1 == shares.len() {
            rows.len()
        } else {
            ((cumulative * rows.len() as f64).round() as usize).min(rows.len())
        };
        assignment[i].extend_from_slice(&rows[start..end.max(start)]);
        start = end.max(start);
    }
}

/// Moves records from the largest participants to any with fewer than [`MIN_ROWS`].
fn rebalance(assignment: &mut [Vec<usize>], rng: &mut ChaCha20Rng) {
    loop {
        let Some(small) = assignment.iter().position(|a| a.len() < MIN_ROWS) else {
            return;
        };
        let large = (0..assignment.len())
            .max_by_key(|&i| assignment[i].len())
            .expect("participants");
        let take = rng.random_range(0..assignment[large].len());
        let row = assignment[large].swap_remove(take);
        assignment[small].push(row);
    }
}

fn pool(sources: &[LocalDataset]) -> LocalDataset {
    let views: Vec<_> = sources.iter().map(|s| s.features.view()).collect();
    let features = ndarray::concatenate(Axis(0), &views).expect("same columns");
    let labels = Array1::from_iter(sources.iter().flat_map(|s| s.labels.iter().copied()));
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for source in sources {
        for (attribute, values) in &source.groups {
            groups.entry(attribute.clone()).or_default().extend(values);
        }
    }
    LocalDataset {
        features,
        labels,
        groups,
    }
}

fn select(pooled: &LocalDataset, rows: &[usize]) -> LocalDataset {
    let features: Array2<f64> = pooled.features.select(Axis(0), rows);
    LocalDataset {
        features,
        labels: rows.iter().map(|&r| pooled.labels[r]).collect(),
        groups: pooled
            .groups
            .iter()
            .map(|(a, values)| (a.clone(), rows.iter().map(|&r| values[r]).collect()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(n: usize) -> LocalDataset {
        LocalDataset {
            features: Array2::from_shape_fn((n, 1), |(i, _)| i as f64),
            labels: (0..n).map(|i| (i % 2) as f64).collect(),
            groups: [("age_band".to_owned(), (0..n).map(|i| i % 3).collect())].into(),
        }
    }

    fn config(kind: PartitionKind, alpha: f64) -> PartitionConfig {
        PartitionConfig {
            kind,
            alpha,
            attribute: Some("age_band".into()),
        }
    }

    fn schema() -> Schema {
        Schema {
            protected_attributes: vec![accord_proto::v1::ProtectedAttribute {
                name: "age_band".into(),
                categories: vec!["a".into(), "b".into()],
                use_as_feature: false,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn every_partition_keeps_every_record_once() {
        for kind in [
            PartitionKind::Iid,
            PartitionKind::Quantity,
            PartitionKind::DirichletLabel,
            PartitionKind::Group,
        ] {
            let parts = partition(
                vec![dataset(300), dataset(100)],
                7,
                &config(kind, 0.3),
                &schema(),
                1,
            )
            .unwrap();
            assert_eq!(parts.len(), 7);
            let mut seen: Vec<f64> = parts
                .iter()
                .flat_map(|p| p.features.column(0).to_vec())
                .collect();
            seen.sort_by(f64::total_cmp);
            assert_eq!(seen.len(), 400, "{kind:?}");
            assert!(parts.iter().all(|p| p.len() >= MIN_ROWS), "{kind:?}");
        }
    }

    #[test]
    fn small_alpha_skews_labels_and_large_alpha_does_not() {
        let positive_share = |alpha: f64| -> f64 {
            let parts = partition(
                vec![dataset(4000)],
                10,
                &config(PartitionKind::DirichletLabel, alpha),
                &schema(),
                3,
            )
            .unwrap();
            let shares: Vec<f64> = parts.iter().map(|p| p.labels.mean().unwrap()).collect();
            let mean = shares.iter().sum::<f64>() / shares.len() as f64;
            shares.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / shares.len() as f64
        };
        assert!(positive_share(0.1) > 10.0 * positive_share(100.0));
    }

    #[test]
    fn the_same_seed_gives_the_same_split() {
        let run = |seed| {
            partition(
                vec![dataset(200)],
                5,
                &config(PartitionKind::Quantity, 0.5),
                &schema(),
                seed,
            )
            .unwrap()
            .iter()
            .map(|p| p.len())
            .collect::<Vec<_>>()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }
}

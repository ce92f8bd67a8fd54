//! Loads a participant's CSV onto the federation's schema.
//!
//! Each schema name is read from the CSV column the participant's mapping names (by default the
//! same name). A missing or invalid value follows the configured policy: `reject` stops with an
//! error naming file, row and column; `skip` drops the row and counts it locally (the count is
//! printed, never sent). The loaded records stay in this process: only sums derived from them
//! are ever uploaded.

use accord_proto::layout::encoded_columns;
use accord_proto::schema::in_range;
use accord_proto::v1::{Schema, SecAggParams, feature::Kind};
use ndarray::{Array1, Array2};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// What to do with a row that has a missing or invalid value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InvalidRowPolicy {
    /// Stop with an error naming the file, row and column.
    #[default]
    Reject,
    /// Drop the row, count it locally.
    Skip,
}

/// Why the local CSV could not be loaded; each names the file and, where it applies, the row and
/// column.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The CSV file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is empty: no header row.
    #[error("{path}: the file is empty (no header row)")]
    Empty {
        /// The CSV file.
        path: PathBuf,
    },
    /// The header lacks a column the schema needs.
    #[error(
        "{path}: line 1 (header): no column '{column}' (needed for {purpose} '{name}'); the header has: {found}"
    )]
    MissingColumn {
        /// The CSV file.
        path: PathBuf,
        /// The CSV column looked for (after `[data] columns` mapping).
        column: String,
        /// What needs it: feature, label or protected attribute.
        purpose: &'static str,
        /// The schema name that needs it.
        name: String,
        /// The header's columns, comma-separated.
        found: String,
    },
    /// The header names a column twice.
    #[error("{path}: line 1 (header): column '{column}' appears twice")]
    DuplicateColumn {
        /// The CSV file.
        path: PathBuf,
        /// The repeated column.
        column: String,
    },
    /// A cell that does not parse or is outside the schema's range (under `invalid_rows = "fail"`).
    #[error("{path}: row {row} (line {line}), column '{column}': {problem}")]
    InvalidValue {
        /// The CSV file.
        path: PathBuf,
        /// The 1-based data row (the header is not counted).
        row: u64,
        /// The file's line where the row starts.
        line: u64,
        /// The CSV column.
        column: String,
        /// What is wrong with the cell.
        problem: String,
    },
    /// A row that is not well-formed CSV or has the wrong number of cells.
    #[error("{path}: row {row}: {problem}")]
    MalformedRow {
        /// The CSV file.
        path: PathBuf,
        /// The 1-based data row.
        row: u64,
        /// What is wrong with it.
        problem: String,
    },
    /// Every row was skipped as invalid.
    #[error("{path}: no usable rows ({skipped} skipped)")]
    NoRows {
        /// The CSV file.
        path: PathBuf,
        /// Rows skipped.
        skipped: u64,
    },
}

/// The participant's records encoded for the model: one row per record, one column per encoded
/// feature column (unstandardized), the label, and each protected attribute's category index
/// (the last index is `unknown`).
#[derive(Debug, Clone)]
pub struct LocalDataset {
    /// Encoded features, records × encoded columns, unstandardized.
    pub features: Array2<f64>,
    /// Labels, one per record: 1.0 satisfied, 0.0 not.
    pub labels: Array1<f64>,
    /// Protected attribute name → each record's category index (the last index is `unknown`).
    pub groups: BTreeMap<String, Vec<usize>>,
}

impl LocalDataset {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// A participant holding more records than the federation's secure sums are bounded for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{rows} usable rows, more than the federation's max_rows_per_participant ({max}), which bounds the secure sums"
)]
pub struct TooManyRows {
    /// Usable rows held.
    pub rows: usize,
    /// The federation's `max_rows_per_participant`.
    pub max: u64,
}

/// Whether a participant may take part with `data` in a federation with secure-aggregation
/// parameters `params` (none: the aggregation is not bounded). Every bound of a secure sum
/// (the record count, each weighted update, each evaluation count) assumes at most
/// `max_rows_per_participant` records; more would be clipped silently into wrong sums, so the
/// participant refuses instead. The node and the simulator both call this.
pub fn admit(data: &LocalDataset, params: Option<&SecAggParams>) -> Result<(), TooManyRows> {
    match params {
        Some(p) if data.len() as u64 > p.max_rows_per_participant => Err(TooManyRows {
            rows: data.len(),
            max: p.max_rows_per_participant,
        }),
        _ => Ok(()),
    }
}

/// What loading saw: for the local log only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Data rows read from the file.
    pub rows_read: u64,
    /// Rows skipped as invalid (under `invalid_rows = "skip"`).
    pub rows_skipped: u64,
    /// Skipped rows by the (CSV) column that made them invalid.
    pub skipped_by_column: BTreeMap<String, u64>,
}

/// How one schema name is parsed out of a CSV cell.
enum Reader {
    Numeric { min: Option<f64>, max: Option<f64> },
    Boolean,
    Categorical(Vec<String>),
}

struct Column {
    csv_index: usize,
    csv_name: String,
    reader: Reader,
}

/// Reads `path` onto `schema`. `mapping` maps schema names to CSV column names.
pub fn load_csv(
    path: &Path,
    schema: &Schema,
    mapping: &HashMap<String, String>,
    policy: InvalidRowPolicy,
) -> Result<(LocalDataset, LoadReport), DataError> {
    let file = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.into(),
        source,
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(file);
    let header = reader.headers().map_err(|e| csv_error(path, e))?.clone();
    if header.is_empty() || (header.len() == 1 && header[0].trim().is_empty()) {
        return Err(DataError::Empty { path: path.into() });
    }
    let mut positions = HashMap::new();
    for (i, name) in header.iter().enumerate() {
        if positions.insert(name.trim().to_owned(), i).is_some() {
            return Err(DataError::DuplicateColumn {
                path: path.into(),
                column: name.into(),
            });
        }
    }
    let found = header.iter().collect::<Vec<_>>().join(", ");
    let locate = |name: &str, purpose: &'static str| -> Result<(usize, String), DataError> {
        let column = mapping
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_owned());
        match positions.get(column.as_str()) {
            Some(&i) => Ok((i, column)),
            None => Err(DataError::MissingColumn {
                path: path.into(),
                column,
                purpose,
                name: name.to_owned(),
                found: found.clone(),
            }),
        }
    };

    let mut columns = Vec::new();
    for feature in &schema.features {
        let (csv_index, csv_name) = locate(&feature.name, "feature")?;
        let reader = match &feature.kind {
            Some(Kind::Numeric(n)) => Reader::Numeric {
                min: n.min,
                max: n.max,
            },
            None => Reader::Numeric {
                min: None,
                max: None,
            },
            Some(Kind::Boolean(_)) => Reader::Boolean,
            Some(Kind::Categorical(c)) => Reader::Categorical(c.categories.clone()),
        };
        columns.push(Column {
            csv_index,
            csv_name,
            reader,
        });
    }
    let label = schema.label.clone().unwrap_or_default();
    let (label_index, label_name) = locate(&label.column, "the label rule")?;
    let label_column = Column {
        csv_index: label_index,
        csv_name: label_name,
        reader: Reader::Numeric {
            min: label.min,
            max: label.max,
        },
    };
    let mut protected = Vec::new();
    for attribute in &schema.protected_attributes {
        let (csv_index, _) = locate(&attribute.name, "protected attribute")?;
        protected.push((attribute, csv_index));
    }

    let width = encoded_columns(schema).len();
    let mut features = Vec::new();
    let mut labels = Vec::new();
    let mut groups: BTreeMap<String, Vec<usize>> = protected
        .iter()
        .map(|(a, _)| (a.name.clone(), Vec::new()))
        .collect();
    let mut report = LoadReport::default();
    let mut encoded = Vec::with_capacity(width);

    for (index, record) in reader.records().enumerate() {
        let row = index as u64 + 1;
        let record = record.map_err(|e| DataError::MalformedRow {
            path: path.into(),
            row,
            problem: e.to_string(),
        })?;
        report.rows_read += 1;
        encoded.clear();
        let parsed = columns
            .iter()
            .try_for_each(|c| encode_cell(c, &record, &mut encoded))
            .and_then(|()| {
                let mut value = Vec::with_capacity(1);
                encode_cell(&label_column, &record, &mut value)?;
                let value = value[0];
                Ok(if label.comparison().holds(value, label.threshold) {
                    1.0
                } else {
                    0.0
                })
            });
        let label_value = match parsed {
            Ok(v) => v,
            Err((column, problem)) => match policy {
                InvalidRowPolicy::Reject => {
                    return Err(DataError::InvalidValue {
                        path: path.into(),
                        row,
                        line: record.position().map_or(row + 1, |p| p.line()),
                        column,
                        problem,
                    });
                }
                InvalidRowPolicy::Skip => {
                    report.rows_skipped += 1;
                    *report.skipped_by_column.entry(column).or_default() += 1;
                    continue;
                }
            },
        };
        for (attribute, csv_index) in &protected {
            let value = record.get(*csv_index).unwrap_or("").trim();
            let category = attribute
                .categories
                .iter()
                .position(|c| c == value)
                .unwrap_or(attribute.categories.len());
            if attribute.use_as_feature {
                let n = attribute.categories.len() + 1;
                encoded.extend((0..n).map(|i| if i == category { 1.0 } else { 0.0 }));
            }
            groups
                .get_mut(&attribute.name)
                .expect("group per attribute")
                .push(category);
        }
        debug_assert_eq!(encoded.len(), width);
        features.extend_from_slice(&encoded);
        labels.push(label_value);
    }
    if report.rows_read == 0 && header.len() <= 1 {
        return Err(DataError::Empty { path: path.into() });
    }
    if labels.is_empty() {
        return Err(DataError::NoRows {
            path: path.into(),
            skipped: report.rows_skipped,
        });
    }
    let rows = labels.len();
    let features = Array2::from_shape_vec((rows, width), features).expect("rows of equal width");
    Ok((
        LocalDataset {
            features,
            labels: Array1::from(labels),
            groups,
        },
        report,
    ))
}

fn encode_cell(
    column: &Column,
    record: &csv::StringRecord,
    out: &mut Vec<f64>,
) -> Result<(), (String, String)> {
    let cell = record.get(column.csv_index).unwrap_or("").trim();
    let fail = |problem: String| (column.csv_name.clone(), problem);
    match &column.reader {
        Reader::Numeric { min, max } => {
            let value = parse_number(cell).map_err(fail)?;
            if !in_range(value, *min, *max) {
                let bound = |b: &Option<f64>| b.map_or("…".to_owned(), |b| b.to_string());
                return Err(fail(format!(
                    "{value} is outside the schema's range [{}, {}]",
                    bound(min),
                    bound(max)
                )));
            }
            out.push(value)
        }
        Reader::Boolean => out.push(match cell.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => 1.0,
            "false" | "no" | "0" => 0.0,
            "" => return Err(fail("missing value".into())),
            _ => {
                return Err(fail(format!(
                    "'{cell}' is not a boolean (true/false, yes/no, 1/0)"
                )));
            }
        }),
        Reader::Categorical(categories) => {
            if cell.is_empty() {
                return Err(fail("missing value".into()));
            }
            let Some(hit) = categories.iter().position(|c| c == cell) else {
                return Err(fail(format!(
                    "'{cell}' is not one of the categories {}",
                    categories.join(", ")
                )));
            };
            out.extend((0..categories.len()).map(|i| if i == hit { 1.0 } else { 0.0 }));
        }
    }
    Ok(())
}

fn parse_number(cell: &str) -> Result<f64, String> {
    let cell = cell.trim();
    if cell.is_empty() {
        return Err("missing value".into());
    }
    match cell.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(format!("'{cell}' is not a finite number")),
        Err(_) => Err(format!("'{cell}' is not a number")),
    }
}

fn csv_error(path: &Path, error: csv::Error) -> DataError {
    match error.into_kind() {
        csv::ErrorKind::Io(source) => DataError::Io {
            path: path.into(),
            source,
        },
        other => DataError::MalformedRow {
            path: path.into(),
            row: 0,
            problem: format!("{other:?}"),
        },
    }
}

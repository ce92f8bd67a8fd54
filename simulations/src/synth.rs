//! Deterministic synthetic customer-service data with a known ground truth.
//!
//! Accord's analyses have to be checked against a true answer, which real data never gives.
//! [`generate`] draws records for several participants — banks, insurers, retailers and
//! telecoms in rotation — that differ in size and in their channel, issue and customer mixes,
//! labels each record from the documented satisfaction model ([`ground_truth_logit`] plus
//! logistic noise), and can plant unfair treatment of a customer group ([`Bias`]).
//! [`write_csvs`] writes one CSV per participant with the malformed cells listed in
//! [`ParticipantData::dirty`]. The same [`SynthSpec`] always gives the same bytes.
//! `docs/data.md` describes the columns, the profiles and the model in full.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rand::distr::Open01;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Exp1, StandardNormal};
use thiserror::Error;

/// The CSV header, in column order.
pub const COLUMNS: [&str; 20] = [
    "interaction_id",
    "customer_id",
    "channel",
    "issue_category",
    "wait_seconds",
    "handle_seconds",
    "transfers",
    "contacts_30d",
    "first_contact_resolution",
    "sentiment",
    "agent_tenure_months",
    "ai_assisted",
    "customer_tenure_months",
    "age_band",
    "gender",
    "disability",
    "region",
    "language",
    "csat",
    "nps",
];

/// Contact channels, `phone` first (the reference of [`truth::CHANNEL_EFFECTS`]).
pub const CHANNELS: [&str; 5] = ["phone", "chat", "email", "social", "app"];
/// Issue categories, `billing` first (the reference of [`truth::ISSUE_EFFECTS`]).
pub const ISSUE_CATEGORIES: [&str; 5] =
    ["billing", "technical", "delivery", "account", "complaint"];
/// Customer age bands.
pub const AGE_BANDS: [&str; 4] = ["18-29", "30-44", "45-59", "60+"];
/// Customer genders, as recorded.
pub const GENDERS: [&str; 4] = ["female", "male", "nonbinary", "unknown"];
/// Whether the customer has a disability, as recorded.
pub const DISABILITIES: [&str; 3] = ["yes", "no", "unknown"];
/// Customer regions.
pub const REGIONS: [&str; 5] = ["north", "south", "east", "west", "central"];
/// Languages of the interaction.
pub const LANGUAGES: [&str; 5] = ["en", "es", "fr", "de", "other"];

/// Attributes a fairness audit looks at. Without a [`Bias`] none of them enters
/// [`ground_truth_logit`], and within a participant they are drawn independently of every
/// service feature.
pub const PROTECTED_ATTRIBUTES: [&str; 5] =
    ["age_band", "gender", "disability", "region", "language"];

/// The categorical columns with their categories, in CSV order. A [`Bias`] targets a group
/// defined by one of them.
pub const CATEGORICAL_COLUMNS: [(&str, &[&str]); 7] = [
    ("channel", &CHANNELS),
    ("issue_category", &ISSUE_CATEGORIES),
    ("age_band", &AGE_BANDS),
    ("gender", &GENDERS),
    ("disability", &DISABILITIES),
    ("region", &REGIONS),
    ("language", &LANGUAGES),
];

/// Every participant gets at least this many rows, however small `SynthSpec::rows` is.
pub const MIN_ROWS_PER_PARTICIPANT: usize = 40;

/// The categories of a categorical column, or `None` for any other name.
pub fn categories(column: &str) -> Option<&'static [&'static str]> {
    CATEGORICAL_COLUMNS
        .iter()
        .find(|(name, _)| *name == column)
        .map(|(_, values)| *values)
}

/// The ground-truth satisfaction model (documented in `docs/data.md`).
///
/// The latent satisfaction of a record is `ground_truth_logit(record) + ε` with `ε` standard
/// logistic noise, so `P(satisfied) = sigmoid(ground_truth_logit(record))`. Durations enter in
/// minutes and tenures in years; categorical effects are relative to `phone` and `billing`.
pub mod truth {
    /// Logit of a record with every feature at zero and the reference categories.
    pub const INTERCEPT: f64 = 0.25;
    /// Per minute of wait.
    pub const WAIT_PER_MINUTE: f64 = -0.10;
    /// Per minute of handling.
    pub const HANDLE_PER_MINUTE: f64 = -0.03;
    /// Per transfer between agents.
    pub const PER_TRANSFER: f64 = -0.50;
    /// Per contact of the customer in the previous 30 days.
    pub const PER_CONTACT_30D: f64 = -0.30;
    /// When resolved at first contact.
    pub const FIRST_CONTACT_RESOLUTION: f64 = 1.60;
    /// Per unit of sentiment, in [-1, 1].
    pub const SENTIMENT: f64 = 2.00;
    /// Per year of the agent's tenure.
    pub const AGENT_TENURE_PER_YEAR: f64 = 0.10;
    /// When the agent was AI-assisted.
    pub const AI_ASSISTED: f64 = 0.05;
    /// Per year of the customer's tenure.
    pub const CUSTOMER_TENURE_PER_YEAR: f64 = 0.04;
    /// Channel → logit effect, relative to `phone`.
    pub const CHANNEL_EFFECTS: [(&str, f64); 5] = [
        ("phone", 0.0),
        ("chat", 0.2),
        ("email", 1.0),
        ("social", -0.3),
        ("app", 0.3),
    ];
    /// Issue category → logit effect, relative to `billing`.
    pub const ISSUE_EFFECTS: [(&str, f64); 5] = [
        ("billing", 0.0),
        ("technical", -0.2),
        ("delivery", -0.1),
        ("account", 0.2),
        ("complaint", -1.2),
    ];
    /// `csat = 1 + #{cut : latent > cut}`; the cut at 0 makes `csat >= 4` exactly when
    /// the latent satisfaction is positive.
    pub const CSAT_CUT_POINTS: [f64; 4] = [-2.5, -1.0, 0.0, 2.0];
    /// `nps = clamp(round(NPS_CENTER + NPS_PER_LATENT * latent + NPS_NOISE_SD * z), 0, 10)`
    /// with `z` standard normal.
    pub const NPS_CENTER: f64 = 6.0;
    /// NPS points per unit of latent satisfaction.
    pub const NPS_PER_LATENT: f64 = 1.2;
    /// Standard deviation of the NPS noise, in points.
    pub const NPS_NOISE_SD: f64 = 1.0;
}

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSpec {
    /// Participants (organizations) to generate.
    pub participants: usize,
    /// Mean rows per participant; actual sizes spread from about 0.4× to 1.6× of it.
    pub rows: usize,
    /// Seeds everything drawn: same spec, same records.
    pub seed: u64,
    /// Unfair treatment planted for groups; empty: none.
    pub bias: Vec<Bias>,
    /// Fraction of each participant's rows that get one malformed cell in the written CSV.
    pub dirty_rate: f64,
}

impl SynthSpec {
    /// A spec without bias and without dirty rows.
    pub fn new(participants: usize, rows: usize, seed: u64) -> Self {
        SynthSpec {
            participants,
            rows,
            seed,
            bias: Vec::new(),
            dirty_rate: 0.0,
        }
    }

    /// Checks the counts, the dirty rate and every bias; [`generate`] calls it first.
    pub fn validate(&self) -> Result<(), SynthError> {
        if self.participants == 0 {
            return Err(SynthError::NoParticipants);
        }
        if self.rows == 0 {
            return Err(SynthError::NoRows);
        }
        if !(0.0..=1.0).contains(&self.dirty_rate) {
            return Err(SynthError::DirtyRate(self.dirty_rate));
        }
        for bias in &self.bias {
            bias.validate()?;
        }
        Ok(())
    }
}

/// Unfair treatment planted for one group, e.g. `age_band=60+:penalty=0.8`.
#[derive(Debug, Clone, PartialEq)]
pub struct Bias {
    /// A column of [`CATEGORICAL_COLUMNS`].
    pub attribute: String,
    /// One of that column's categories.
    pub value: String,
    /// What the group is subjected to.
    pub effect: BiasEffect,
}

/// How a [`Bias`] treats its group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BiasEffect {
    /// The group's waits are multiplied by this factor (> 0) before anything that depends on
    /// the wait is drawn; satisfaction drops through the wait coefficient (and sentiment).
    WaitMultiplier(f64),
    /// Subtracted from the group's [`ground_truth_logit`]; negative amounts favour the group.
    SatisfactionPenalty(f64),
}

impl Bias {
    /// Whether the record belongs to the targeted group.
    pub fn applies_to(&self, record: &Record) -> bool {
        record.category(&self.attribute) == Some(self.value.as_str())
    }

    /// Checks the attribute, the value and the effect's number.
    pub fn validate(&self) -> Result<(), BiasSpecError> {
        let allowed =
            categories(&self.attribute).ok_or_else(|| BiasSpecError::UnknownAttribute {
                bias: self.to_string(),
                attribute: self.attribute.clone(),
            })?;
        if !allowed.contains(&self.value.as_str()) {
            return Err(BiasSpecError::UnknownValue {
                bias: self.to_string(),
                attribute: self.attribute.clone(),
                value: self.value.clone(),
                allowed: allowed.join(", "),
            });
        }
        match self.effect {
            BiasEffect::WaitMultiplier(factor) if !(factor.is_finite() && factor > 0.0) => {
                Err(BiasSpecError::BadMultiplier {
                    bias: self.to_string(),
                    factor,
                })
            }
            BiasEffect::SatisfactionPenalty(amount) if !amount.is_finite() => {
                Err(BiasSpecError::BadPenalty {
                    bias: self.to_string(),
                    amount,
                })
            }
            _ => Ok(()),
        }
    }
}

/// Writes the bias in the grammar [`Bias::from_str`] reads.
impl fmt::Display for Bias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}:", self.attribute, self.value)?;
        match self.effect {
            BiasEffect::WaitMultiplier(factor) => write!(f, "wait*{factor}"),
            BiasEffect::SatisfactionPenalty(amount) => write!(f, "penalty={amount}"),
        }
    }
}

/// Grammar: `ATTRIBUTE=VALUE:wait*FACTOR` or `ATTRIBUTE=VALUE:penalty=AMOUNT`, where ATTRIBUTE
/// is a column of [`CATEGORICAL_COLUMNS`], VALUE one of its categories, FACTOR a finite number
/// > 0 and AMOUNT a finite number. Whitespace around the parts is ignored.
impl FromStr for Bias {
    type Err = BiasSpecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Err(BiasSpecError::Empty);
        }
        let (group, effect) = text
            .split_once(':')
            .ok_or_else(|| BiasSpecError::MissingEffect {
                bias: text.to_owned(),
            })?;
        let (attribute, value) =
            group
                .split_once('=')
                .ok_or_else(|| BiasSpecError::MissingGroup {
                    bias: text.to_owned(),
                    group: group.trim().to_owned(),
                })?;
        let effect = effect.trim();
        let number = |number: &str| {
            number
                .trim()
                .parse::<f64>()
                .map_err(|_| BiasSpecError::BadNumber {
                    bias: text.to_owned(),
                    number: number.trim().to_owned(),
                })
        };
        let effect = if let Some(factor) = effect.strip_prefix("wait*") {
            BiasEffect::WaitMultiplier(number(factor)?)
        } else if let Some(amount) = effect.strip_prefix("penalty=") {
            BiasEffect::SatisfactionPenalty(number(amount)?)
        } else {
            return Err(BiasSpecError::UnknownEffect {
                bias: text.to_owned(),
                effect: effect.to_owned(),
            });
        };
        let bias = Bias {
            attribute: attribute.trim().to_owned(),
            value: value.trim().to_owned(),
            effect,
        };
        bias.validate()?;
        Ok(bias)
    }
}

/// Parses biases separated by `;`. A blank spec means no bias; an empty part between
/// separators is an error.
pub fn parse_biases(spec: &str) -> Result<Vec<Bias>, SynthError> {
    if spec.trim().is_empty() {
        return Ok(Vec::new());
    }
    spec.split(';')
        .map(|part| part.parse::<Bias>().map_err(SynthError::from))
        .collect()
}

/// One customer-service interaction: a row of the CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Unique id of the interaction.
    pub interaction_id: String,
    /// Pseudonymous id of the customer; repeats across their interactions.
    pub customer_id: String,
    /// One of [`CHANNELS`].
    pub channel: &'static str,
    /// One of [`ISSUE_CATEGORIES`].
    pub issue_category: &'static str,
    /// Seconds the customer waited before an agent answered.
    pub wait_seconds: f64,
    /// Seconds the agent spent on the interaction.
    pub handle_seconds: f64,
    /// Transfers between agents.
    pub transfers: u32,
    /// Contacts of the customer in the previous 30 days.
    pub contacts_30d: u32,
    /// Whether the issue was resolved at first contact.
    pub first_contact_resolution: bool,
    /// Customer sentiment in the conversation, in [-1, 1].
    pub sentiment: f64,
    /// Months the agent has been in the job.
    pub agent_tenure_months: f64,
    /// Whether the agent was AI-assisted.
    pub ai_assisted: bool,
    /// Months the customer has been a customer.
    pub customer_tenure_months: f64,
    /// One of [`AGE_BANDS`].
    pub age_band: &'static str,
    /// One of [`GENDERS`].
    pub gender: &'static str,
    /// One of [`DISABILITIES`].
    pub disability: &'static str,
    /// One of [`REGIONS`].
    pub region: &'static str,
    /// One of [`LANGUAGES`].
    pub language: &'static str,
    /// 1–5; `csat >= 4` means satisfied.
    pub csat: u8,
    /// 0–10.
    pub nps: u8,
}

impl Record {
    /// The value of a categorical column, or `None` if `column` is not one.
    pub fn category(&self, column: &str) -> Option<&'static str> {
        match column {
            "channel" => Some(self.channel),
            "issue_category" => Some(self.issue_category),
            "age_band" => Some(self.age_band),
            "gender" => Some(self.gender),
            "disability" => Some(self.disability),
            "region" => Some(self.region),
            "language" => Some(self.language),
            _ => None,
        }
    }

    /// `csat >= 4`.
    pub fn satisfied(&self) -> bool {
        self.csat >= 4
    }

    /// The CSV cells in [`COLUMNS`] order. Numbers are written in their shortest exact form,
    /// so reading a cell back gives the same `f64`.
    pub fn csv_fields(&self) -> [String; 20] {
        [
            self.interaction_id.clone(),
            self.customer_id.clone(),
            self.channel.to_owned(),
            self.issue_category.to_owned(),
            self.wait_seconds.to_string(),
            self.handle_seconds.to_string(),
            self.transfers.to_string(),
            self.contacts_30d.to_string(),
            self.first_contact_resolution.to_string(),
            self.sentiment.to_string(),
            self.agent_tenure_months.to_string(),
            self.ai_assisted.to_string(),
            self.customer_tenure_months.to_string(),
            self.age_band.to_owned(),
            self.gender.to_owned(),
            self.disability.to_owned(),
            self.region.to_owned(),
            self.language.to_owned(),
            self.csat.to_string(),
            self.nps.to_string(),
        ]
    }
}

/// The ground-truth satisfaction logit of a record: the linear model of [`truth`] minus the
/// penalties of every [`BiasEffect::SatisfactionPenalty`] whose group contains the record.
/// Wait multipliers are not applied here: they already changed `wait_seconds`. Categories
/// outside the documented lists contribute nothing.
pub fn ground_truth_logit(r: &Record, bias: &[Bias]) -> f64 {
    use truth::*;
    let effect = |table: &[(&str, f64)], category: &str| {
        table
            .iter()
            .find(|(name, _)| *name == category)
            .map_or(0.0, |(_, effect)| *effect)
    };
    let penalty: f64 = bias
        .iter()
        .filter_map(|b| match b.effect {
            BiasEffect::SatisfactionPenalty(amount) if b.applies_to(r) => Some(amount),
            _ => None,
        })
        .sum();
    INTERCEPT
        + WAIT_PER_MINUTE * r.wait_seconds / 60.0
        + HANDLE_PER_MINUTE * r.handle_seconds / 60.0
        + PER_TRANSFER * f64::from(r.transfers)
        + PER_CONTACT_30D * f64::from(r.contacts_30d)
        + FIRST_CONTACT_RESOLUTION * f64::from(u8::from(r.first_contact_resolution))
        + SENTIMENT * r.sentiment
        + AGENT_TENURE_PER_YEAR * r.agent_tenure_months / 12.0
        + AI_ASSISTED * f64::from(u8::from(r.ai_assisted))
        + CUSTOMER_TENURE_PER_YEAR * r.customer_tenure_months / 12.0
        + effect(&CHANNEL_EFFECTS, r.channel)
        + effect(&ISSUE_EFFECTS, r.issue_category)
        - penalty
}

/// The participant's industry; it sets the mixes the participant's records are drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sector {
    /// A bank.
    Bank,
    /// An insurer.
    Insurer,
    /// A retailer.
    Retailer,
    /// A telecom operator.
    Telecom,
}

impl Sector {
    /// Participant `i` (0-based) has sector `ROTATION[i % 4]`.
    pub const ROTATION: [Sector; 4] = [
        Sector::Bank,
        Sector::Insurer,
        Sector::Retailer,
        Sector::Telecom,
    ];

    /// The sector of participant `index` (0-based), from [`Sector::ROTATION`].
    pub fn of_participant(index: usize) -> Sector {
        Self::ROTATION[index % Self::ROTATION.len()]
    }

    /// The sector's lowercase name, as displayed.
    pub fn name(self) -> &'static str {
        match self {
            Sector::Bank => "bank",
            Sector::Insurer => "insurer",
            Sector::Retailer => "retailer",
            Sector::Telecom => "telecom",
        }
    }

    fn profile(self) -> &'static SectorProfile {
        match self {
            Sector::Bank => &BANK,
            Sector::Insurer => &INSURER,
            Sector::Retailer => &RETAILER,
            Sector::Telecom => &TELECOM,
        }
    }
}

impl fmt::Display for Sector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One participant's generated data.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantData {
    /// `org-1`, `org-2`, …; also the CSV file stem and the id prefix.
    pub name: String,
    /// The participant's industry.
    pub sector: Sector,
    /// Clean records; the dirt is only planted in the written CSV.
    pub records: Vec<Record>,
    /// The cells [`write_csvs`] makes malformed, sorted by row, at most one per row.
    pub dirty: Vec<DirtyCell>,
}

/// How a planted cell is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DirtKind {
    /// The cell is empty.
    Empty,
    /// `n/a` in a numeric column.
    NotANumber,
    /// `NaN` in a numeric column.
    NaN,
    /// `unlisted` in a categorical column, `maybe` in a boolean one.
    UnknownCategory,
    /// `9` as csat, `11` as nps.
    OutOfRange,
}

/// A malformed cell of a written CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct DirtyCell {
    /// 1-based data row (the header is not counted: row 1 is the file's second line).
    pub row: usize,
    /// A name from [`COLUMNS`]; never one of the two id columns.
    pub column: &'static str,
    /// How it is malformed.
    pub kind: DirtKind,
    /// The text written instead of the clean value.
    pub text: &'static str,
}

/// Errors of the generator. Bias errors are [`BiasSpecError`]s.
#[derive(Debug, Error)]
pub enum SynthError {
    /// Zero participants requested.
    #[error("the number of participants must be at least 1, got 0")]
    NoParticipants,
    /// Zero mean rows per participant requested.
    #[error("the mean number of rows per participant must be at least 1, got 0")]
    NoRows,
    /// A dirty rate outside [0, 1].
    #[error("the dirty rate must be a fraction in [0, 1], got {0}")]
    DirtyRate(f64),
    /// A bias is invalid.
    #[error(transparent)]
    Bias(#[from] BiasSpecError),
    /// A planned dirty cell outside the participant's rows or columns.
    #[error(
        "{participant}: dirty cell at data row {row}, column \"{column}\" is not a cell of its {rows} rows"
    )]
    MisplacedDirt {
        /// The participant.
        participant: String,
        /// The cell's 1-based data row.
        row: usize,
        /// The cell's column.
        column: &'static str,
        /// Rows the participant has.
        rows: usize,
    },
    /// The output directory could not be created.
    #[error("cannot create output directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A CSV file could not be written.
    #[error("cannot write CSV file {path}: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The CSV writer's error.
        source: csv::Error,
    },
    /// A file could not be written.
    #[error("cannot write file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// A bias that cannot be parsed or does not name a known group or a valid effect.
#[derive(Debug, Error, PartialEq)]
pub enum BiasSpecError {
    /// An empty bias.
    #[error("empty bias: expected ATTRIBUTE=VALUE:wait*FACTOR or ATTRIBUTE=VALUE:penalty=AMOUNT")]
    Empty,
    /// A bias without its `:EFFECT` part.
    #[error(
        "bias \"{bias}\" has no \":EFFECT\" part: expected ATTRIBUTE=VALUE:wait*FACTOR or ATTRIBUTE=VALUE:penalty=AMOUNT"
    )]
    MissingEffect {
        /// The bias as given.
        bias: String,
    },
    /// A group not of the form `ATTRIBUTE=VALUE`.
    #[error("bias \"{bias}\": group \"{group}\" is not of the form ATTRIBUTE=VALUE")]
    MissingGroup {
        /// The bias as given.
        bias: String,
        /// The group part.
        group: String,
    },
    /// An attribute not among [`CATEGORICAL_COLUMNS`].
    #[error(
        "bias \"{bias}\": unknown attribute \"{attribute}\"; expected one of channel, issue_category, age_band, gender, disability, region, language"
    )]
    UnknownAttribute {
        /// The bias as given.
        bias: String,
        /// The attribute given.
        attribute: String,
    },
    /// A value that is not a category of the attribute.
    #[error(
        "bias \"{bias}\": \"{value}\" is not a {attribute} category; expected one of {allowed}"
    )]
    UnknownValue {
        /// The bias as given.
        bias: String,
        /// The attribute.
        attribute: String,
        /// The value given.
        value: String,
        /// The attribute's categories, comma-separated.
        allowed: String,
    },
    /// An effect other than `wait*FACTOR` or `penalty=AMOUNT`.
    #[error("bias \"{bias}\": unknown effect \"{effect}\"; expected wait*FACTOR or penalty=AMOUNT")]
    UnknownEffect {
        /// The bias as given.
        bias: String,
        /// The effect part.
        effect: String,
    },
    /// An effect's number that does not parse.
    #[error("bias \"{bias}\": \"{number}\" is not a number")]
    BadNumber {
        /// The bias as given.
        bias: String,
        /// The text given as a number.
        number: String,
    },
    /// A wait multiplier that is not finite and positive.
    #[error("bias \"{bias}\": wait multiplier {factor} must be finite and greater than 0")]
    BadMultiplier {
        /// The bias as given.
        bias: String,
        /// The factor given.
        factor: f64,
    },
    /// A penalty that is not finite.
    #[error("bias \"{bias}\": penalty {amount} must be finite")]
    BadPenalty {
        /// The bias as given.
        bias: String,
        /// The amount given.
        amount: f64,
    },
}

/// Generates every participant's records in memory and plans (but does not apply) the dirt.
pub fn generate(spec: &SynthSpec) -> Result<Vec<ParticipantData>, SynthError> {
    spec.validate()?;
    let sizes = participant_sizes(spec);
    Ok(sizes
        .into_iter()
        .enumerate()
        .map(|(index, size)| {
            let sector = Sector::of_participant(index);
            let name = format!("org-{}", index + 1);
            let records = draw_records(spec, index, &name, sector, size);
            let dirty = plan_dirt(spec.seed, spec.dirty_rate, index, size);
            ParticipantData {
                name,
                sector,
                records,
                dirty,
            }
        })
        .collect())
}

/// Writes `out/<name>.csv` for every participant (creating `out`), with the header
/// [`COLUMNS`] and each [`DirtyCell`] written in place of its clean value. Returns the paths
/// in participant order.
pub fn write_csvs(data: &[ParticipantData], out: &Path) -> Result<Vec<PathBuf>, SynthError> {
    fs::create_dir_all(out).map_err(|source| SynthError::CreateDir {
        path: out.to_path_buf(),
        source,
    })?;
    data.iter()
        .map(|participant| write_participant(participant, out))
        .collect()
}

fn write_participant(participant: &ParticipantData, out: &Path) -> Result<PathBuf, SynthError> {
    let rows = participant.records.len();
    let mut dirt = participant
        .dirty
        .iter()
        .map(|cell| {
            COLUMNS
                .iter()
                .position(|column| *column == cell.column)
                .filter(|_| (1..=rows).contains(&cell.row))
                .map(|column| (cell.row, column, cell.text))
                .ok_or_else(|| SynthError::MisplacedDirt {
                    participant: participant.name.clone(),
                    row: cell.row,
                    column: cell.column,
                    rows,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    dirt.sort_unstable();
    let mut dirt = dirt.into_iter().peekable();

    let path = out.join(format!("{}.csv", participant.name));
    let csv_error = |source| SynthError::Csv {
        path: path.clone(),
        source,
    };
    let mut writer = csv::Writer::from_path(&path).map_err(csv_error)?;
    writer.write_record(COLUMNS).map_err(csv_error)?;
    for (index, record) in participant.records.iter().enumerate() {
        let mut fields = record.csv_fields();
        while let Some((_, column, text)) = dirt.next_if(|(row, _, _)| *row == index + 1) {
            fields[column] = text.to_owned();
        }
        writer.write_record(&fields).map_err(csv_error)?;
    }
    writer.flush().map_err(|source| SynthError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

// ---------------------------------------------------------------------------------------------
// Random streams. Every participant has its own record stream and dirt stream, so a
// participant's data does not depend on the others', and dirt does not change the records.

const SIZE_STREAM: u64 = 0;
const RECORD_STREAMS: u64 = 1;
const DIRT_STREAMS: u64 = 1 << 32;

fn stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// Size factors evenly spaced over [0.4, 1.6] (mean 1), shuffled, each jittered by ±5%.
fn participant_sizes(spec: &SynthSpec) -> Vec<usize> {
    let n = spec.participants;
    let mut rng = stream(spec.seed, SIZE_STREAM);
    let mut factors: Vec<f64> = (0..n)
        .map(|i| match n {
            1 => 1.0,
            _ => 0.4 + 1.2 * i as f64 / (n - 1) as f64,
        })
        .collect();
    factors.shuffle(&mut rng);
    factors
        .into_iter()
        .map(|factor| {
            let jitter = 0.95 + 0.1 * rng.random::<f64>();
            ((spec.rows as f64 * factor * jitter).round() as usize).max(MIN_ROWS_PER_PARTICIPANT)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Sector profiles: the mixes that make participants non-IID. Weights are in the order of the
// category lists above.

struct SectorProfile {
    channel: [f64; 5],
    issue: [f64; 5],
    age: [f64; 4],
    gender: [f64; 4],
    disability: [f64; 3],
    /// Base probability that the agent is AI-assisted, scaled per channel.
    ai_rate: f64,
    /// Staffing: multiplies every wait.
    wait_factor: f64,
    customer_tenure_mean_months: f64,
}

const BANK: SectorProfile = SectorProfile {
    channel: [0.40, 0.20, 0.15, 0.05, 0.20],
    issue: [0.25, 0.15, 0.02, 0.43, 0.15],
    age: [0.15, 0.30, 0.30, 0.25],
    gender: [0.49, 0.48, 0.01, 0.02],
    disability: [0.08, 0.84, 0.08],
    ai_rate: 0.30,
    wait_factor: 1.0,
    customer_tenure_mean_months: 72.0,
};

const INSURER: SectorProfile = SectorProfile {
    channel: [0.50, 0.15, 0.25, 0.05, 0.05],
    issue: [0.30, 0.05, 0.02, 0.38, 0.25],
    age: [0.10, 0.25, 0.35, 0.30],
    gender: [0.50, 0.46, 0.01, 0.03],
    disability: [0.10, 0.80, 0.10],
    ai_rate: 0.20,
    wait_factor: 1.3,
    customer_tenure_mean_months: 60.0,
};

const RETAILER: SectorProfile = SectorProfile {
    channel: [0.20, 0.35, 0.15, 0.15, 0.15],
    issue: [0.15, 0.10, 0.45, 0.15, 0.15],
    age: [0.30, 0.35, 0.20, 0.15],
    gender: [0.45, 0.35, 0.02, 0.18],
    disability: [0.04, 0.36, 0.60],
    ai_rate: 0.50,
    wait_factor: 0.8,
    customer_tenure_mean_months: 24.0,
};

const TELECOM: SectorProfile = SectorProfile {
    channel: [0.35, 0.30, 0.05, 0.10, 0.20],
    issue: [0.30, 0.40, 0.05, 0.10, 0.15],
    age: [0.25, 0.35, 0.25, 0.15],
    gender: [0.46, 0.44, 0.02, 0.08],
    disability: [0.06, 0.70, 0.24],
    ai_rate: 0.40,
    wait_factor: 1.5,
    customer_tenure_mean_months: 36.0,
};

/// Participant `i` draws half its customers from region `REGIONS[i % 5]`, the rest evenly.
const HOME_REGION_SHARE: f64 = 0.5;

/// Language mix per region (rows: [`REGIONS`], columns: [`LANGUAGES`]).
const LANGUAGE_BY_REGION: [[f64; 5]; 5] = [
    [0.75, 0.03, 0.05, 0.10, 0.07],
    [0.55, 0.35, 0.03, 0.02, 0.05],
    [0.60, 0.03, 0.05, 0.20, 0.12],
    [0.72, 0.08, 0.12, 0.02, 0.06],
    [0.65, 0.05, 0.15, 0.10, 0.05],
];

// Interaction features, per channel ([`CHANNELS`] order) or per issue ([`ISSUE_CATEGORIES`]).
const AI_CHANNEL_FACTOR: [f64; 5] = [0.5, 1.5, 1.0, 1.0, 1.5];
const MEDIAN_WAIT_MINUTES: [f64; 5] = [3.0, 1.5, 12.0, 6.0, 1.0];
const WAIT_LOG_SD: f64 = 0.6;
const CONTACTS_MEAN: f64 = 0.4;
const CONTACTS_ISSUE_EXTRA: [f64; 5] = [0.3, 0.5, 0.4, 0.1, 0.8];
const TRANSFERS_MEAN: f64 = 0.25;
const TRANSFERS_CHANNEL_EXTRA: [f64; 5] = [0.25, 0.10, 0.05, 0.10, 0.0];
const TRANSFERS_ISSUE_EXTRA: [f64; 5] = [0.10, 0.35, 0.10, 0.05, 0.40];
const FCR_ISSUE_EFFECT: [f64; 5] = [0.2, -0.4, 0.0, 0.3, -0.8];
const MEDIAN_HANDLE_MINUTES: [f64; 5] = [6.0, 9.0, 5.0, 4.0, 3.0];
const HANDLE_ISSUE_FACTOR: [f64; 5] = [1.0, 1.4, 0.8, 0.9, 1.3];
const HANDLE_LOG_SD: f64 = 0.5;
const COMPLAINT: usize = 4;

struct Customer {
    id: String,
    age_band: &'static str,
    gender: &'static str,
    disability: &'static str,
    region: &'static str,
    language: &'static str,
    tenure_months: f64,
}

impl Customer {
    fn draw(rng: &mut ChaCha8Rng, profile: &SectorProfile, home_region: usize, id: String) -> Self {
        let mut region_weights = [(1.0 - HOME_REGION_SHARE) / (REGIONS.len() - 1) as f64; 5];
        region_weights[home_region] = HOME_REGION_SHARE;
        let region = pick(rng, &region_weights);
        Customer {
            id,
            age_band: AGE_BANDS[pick(rng, &profile.age)],
            gender: GENDERS[pick(rng, &profile.gender)],
            disability: DISABILITIES[pick(rng, &profile.disability)],
            region: REGIONS[region],
            language: LANGUAGES[pick(rng, &LANGUAGE_BY_REGION[region])],
            tenure_months: rounded(
                (profile.customer_tenure_mean_months * rng.sample::<f64, _>(Exp1)).min(480.0),
                1,
            ),
        }
    }
}

/// A participant's records. A pool of about 0.75 customers per interaction is drawn first and
/// every interaction picks one uniformly, so customers recur with consistent demographics.
fn draw_records(
    spec: &SynthSpec,
    index: usize,
    name: &str,
    sector: Sector,
    size: usize,
) -> Vec<Record> {
    let profile = sector.profile();
    let mut rng = stream(spec.seed, RECORD_STREAMS + index as u64);
    let home_region = index % REGIONS.len();
    let customers: Vec<Customer> = (0..(size * 3).div_ceil(4))
        .map(|c| {
            Customer::draw(
                &mut rng,
                profile,
                home_region,
                format!("{name}-c{:06}", c + 1),
            )
        })
        .collect();
    (0..size)
        .map(|k| {
            let customer = &customers[rng.random_range(0..customers.len())];
            let id = format!("{name}-i{:06}", k + 1);
            draw_interaction(&mut rng, profile, customer, id, &spec.bias)
        })
        .collect()
}

/// Draws one interaction. The number of random draws does not depend on the bias, so a
/// biased run differs from the unbiased one with the same seed only in the targeted group.
fn draw_interaction(
    rng: &mut ChaCha8Rng,
    profile: &SectorProfile,
    customer: &Customer,
    interaction_id: String,
    bias: &[Bias],
) -> Record {
    let channel = pick(rng, &profile.channel);
    let issue = pick(rng, &profile.issue);
    // The numeric fields are filled in below; the categories are needed first to find the
    // record's bias groups.
    let mut record = Record {
        interaction_id,
        customer_id: customer.id.clone(),
        channel: CHANNELS[channel],
        issue_category: ISSUE_CATEGORIES[issue],
        wait_seconds: 0.0,
        handle_seconds: 0.0,
        transfers: 0,
        contacts_30d: 0,
        first_contact_resolution: false,
        sentiment: 0.0,
        agent_tenure_months: 0.0,
        ai_assisted: false,
        customer_tenure_months: customer.tenure_months,
        age_band: customer.age_band,
        gender: customer.gender,
        disability: customer.disability,
        region: customer.region,
        language: customer.language,
        csat: 0,
        nps: 0,
    };
    let wait_multiplier: f64 = bias
        .iter()
        .filter_map(|b| match b.effect {
            BiasEffect::WaitMultiplier(factor) if b.applies_to(&record) => Some(factor),
            _ => None,
        })
        .product();

    let ai = rng.random::<f64>() < (profile.ai_rate * AI_CHANNEL_FACTOR[channel]).min(0.95);
    let agent_tenure = rounded((24f64.ln() + 0.8 * normal(rng)).exp().min(240.0), 1);
    let wait_minutes = MEDIAN_WAIT_MINUTES[channel]
        * profile.wait_factor
        * (WAIT_LOG_SD * normal(rng)).exp()
        * wait_multiplier;
    let contacts = poisson(rng, CONTACTS_MEAN + CONTACTS_ISSUE_EXTRA[issue]).min(15);
    let transfers_mean =
        TRANSFERS_MEAN + TRANSFERS_CHANNEL_EXTRA[channel] + TRANSFERS_ISSUE_EXTRA[issue]
            - if ai { 0.1 } else { 0.0 };
    let transfers = poisson(rng, transfers_mean).min(6);
    let resolution_logit = 1.2 - 0.9 * f64::from(transfers) - 0.2 * f64::from(contacts)
        + 0.02 * agent_tenure.min(60.0)
        + if ai { 0.3 } else { 0.0 }
        + FCR_ISSUE_EFFECT[issue];
    let resolved = rng.random::<f64>() < sigmoid(resolution_logit);
    let handle_minutes = MEDIAN_HANDLE_MINUTES[channel]
        * HANDLE_ISSUE_FACTOR[issue]
        * (1.0 + 0.3 * f64::from(transfers))
        * if ai { 0.85 } else { 1.0 }
        * (HANDLE_LOG_SD * normal(rng)).exp();
    let sentiment = -0.15 + if resolved { 0.5 } else { 0.0 }
        - 0.12 * f64::from(transfers)
        - if issue == COMPLAINT { 0.3 } else { 0.0 }
        - 0.015 * wait_minutes
        + 0.35 * normal(rng);

    record.wait_seconds = rounded(wait_minutes * 60.0, 1);
    record.handle_seconds = rounded(handle_minutes * 60.0, 1);
    record.transfers = transfers;
    record.contacts_30d = contacts;
    record.first_contact_resolution = resolved;
    record.sentiment = rounded(sentiment.clamp(-1.0, 1.0), 3);
    record.agent_tenure_months = agent_tenure;
    record.ai_assisted = ai;

    let latent = ground_truth_logit(&record, bias) + logistic_noise(rng);
    record.csat = csat_from_latent(latent);
    record.nps = nps_from_latent(latent, normal(rng));
    record
}

fn csat_from_latent(latent: f64) -> u8 {
    1 + truth::CSAT_CUT_POINTS
        .iter()
        .filter(|&&cut| latent > cut)
        .count() as u8
}

fn nps_from_latent(latent: f64, z: f64) -> u8 {
    (truth::NPS_CENTER + truth::NPS_PER_LATENT * latent + truth::NPS_NOISE_SD * z)
        .round()
        .clamp(0.0, 10.0) as u8
}

// ---------------------------------------------------------------------------------------------
// Dirt: which cells become malformed, and how. The id columns stay clean so a loader can name
// the bad row.

const NUMERIC_DIRT: &[(DirtKind, &str)] = &[
    (DirtKind::Empty, ""),
    (DirtKind::NotANumber, "n/a"),
    (DirtKind::NaN, "NaN"),
];
const CATEGORY_DIRT: &[(DirtKind, &str)] = &[
    (DirtKind::Empty, ""),
    (DirtKind::UnknownCategory, "unlisted"),
];
const BOOLEAN_DIRT: &[(DirtKind, &str)] =
    &[(DirtKind::Empty, ""), (DirtKind::UnknownCategory, "maybe")];
const CSAT_DIRT: &[(DirtKind, &str)] = &[
    (DirtKind::Empty, ""),
    (DirtKind::NotANumber, "n/a"),
    (DirtKind::NaN, "NaN"),
    (DirtKind::OutOfRange, "9"),
];
const NPS_DIRT: &[(DirtKind, &str)] = &[
    (DirtKind::Empty, ""),
    (DirtKind::NotANumber, "n/a"),
    (DirtKind::NaN, "NaN"),
    (DirtKind::OutOfRange, "11"),
];

/// The columns that can be dirtied (all but the ids) with their possible dirt.
const DIRTIABLE_COLUMNS: [(&str, &[(DirtKind, &str)]); 18] = [
    ("channel", CATEGORY_DIRT),
    ("issue_category", CATEGORY_DIRT),
    ("wait_seconds", NUMERIC_DIRT),
    ("handle_seconds", NUMERIC_DIRT),
    ("transfers", NUMERIC_DIRT),
    ("contacts_30d", NUMERIC_DIRT),
    ("first_contact_resolution", BOOLEAN_DIRT),
    ("sentiment", NUMERIC_DIRT),
    ("agent_tenure_months", NUMERIC_DIRT),
    ("ai_assisted", BOOLEAN_DIRT),
    ("customer_tenure_months", NUMERIC_DIRT),
    ("age_band", CATEGORY_DIRT),
    ("gender", CATEGORY_DIRT),
    ("disability", CATEGORY_DIRT),
    ("region", CATEGORY_DIRT),
    ("language", CATEGORY_DIRT),
    ("csat", CSAT_DIRT),
    ("nps", NPS_DIRT),
];

/// Exactly `round(dirty_rate × size)` distinct rows, each with one cell: a uniformly chosen
/// column and a uniformly chosen dirt for it.
fn plan_dirt(seed: u64, dirty_rate: f64, index: usize, size: usize) -> Vec<DirtyCell> {
    let mut rng = stream(seed, DIRT_STREAMS + index as u64);
    let count = (dirty_rate * size as f64).round() as usize;
    let mut rows = rand::seq::index::sample(&mut rng, size, count).into_vec();
    rows.sort_unstable();
    rows.into_iter()
        .map(|row| {
            let (column, choices) = DIRTIABLE_COLUMNS[rng.random_range(0..DIRTIABLE_COLUMNS.len())];
            let (kind, text) = choices[rng.random_range(0..choices.len())];
            DirtyCell {
                row: row + 1,
                column,
                kind,
                text,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Sampling helpers.

/// An index drawn with probability proportional to `weights`.
fn pick(rng: &mut ChaCha8Rng, weights: &[f64]) -> usize {
    let mut target = rng.random::<f64>() * weights.iter().sum::<f64>();
    for (index, weight) in weights.iter().enumerate() {
        if target < *weight {
            return index;
        }
        target -= weight;
    }
    weights.len() - 1
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    rng.sample(StandardNormal)
}

/// Poisson by multiplying uniforms (Knuth); the means used here are small.
fn poisson(rng: &mut ChaCha8Rng, mean: f64) -> u32 {
    let threshold = (-mean).exp();
    let mut count = 0;
    let mut product = rng.random::<f64>();
    while product > threshold {
        count += 1;
        product *= rng.random::<f64>();
    }
    count
}

fn logistic_noise(rng: &mut ChaCha8Rng) -> f64 {
    let u: f64 = rng.sample(Open01);
    (u / (1.0 - u)).ln()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `x` rounded to `decimals` places, without negative zero.
fn rounded(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale + 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csat_is_satisfied_exactly_when_latent_is_positive() {
        for step in -4000..=4000 {
            let latent = f64::from(step) / 1000.0;
            let csat = csat_from_latent(latent);
            assert!((1..=5).contains(&csat));
            assert_eq!(csat >= 4, latent > 0.0, "latent {latent} gave csat {csat}");
        }
        assert_eq!(csat_from_latent(-10.0), 1);
        assert_eq!(csat_from_latent(10.0), 5);
        assert_eq!(csat_from_latent(f64::MIN_POSITIVE), 4);
    }

    #[test]
    fn nps_rises_with_latent_and_stays_in_range() {
        assert_eq!(nps_from_latent(-20.0, 0.0), 0);
        assert_eq!(nps_from_latent(20.0, 0.0), 10);
        let nps: Vec<u8> = (-5..=5)
            .map(|l| nps_from_latent(f64::from(l), 0.0))
            .collect();
        assert!(nps.windows(2).all(|w| w[0] <= w[1]), "{nps:?}");
        assert!(nps.first() < nps.last());
    }

    #[test]
    fn helpers_sample_what_they_claim() {
        let mut rng = stream(7, 99);
        let n = 40_000;
        let mean = (0..n)
            .map(|_| f64::from(poisson(&mut rng, 0.8)))
            .sum::<f64>()
            / n as f64;
        assert!((mean - 0.8).abs() < 0.03, "poisson mean {mean}");
        let noise: Vec<f64> = (0..n).map(|_| logistic_noise(&mut rng)).collect();
        let positive = noise.iter().filter(|e| **e > 1.0).count() as f64 / n as f64;
        assert!(
            (positive - (1.0 - sigmoid(1.0))).abs() < 0.01,
            "P(ε > 1) = {positive}"
        );
        let mut counts = [0usize; 3];
        for _ in 0..n {
            counts[pick(&mut rng, &[0.2, 0.0, 0.8])] += 1;
        }
        assert_eq!(counts[1], 0);
        assert!(
            (counts[0] as f64 / n as f64 - 0.2).abs() < 0.01,
            "{counts:?}"
        );
        assert_eq!(rounded(-0.0004, 3).to_string(), "0");
        assert_eq!(rounded(12.345_67, 1), 12.3);
    }

    #[test]
    fn ground_truth_tables_follow_the_category_lists() {
        let channels: Vec<&str> = truth::CHANNEL_EFFECTS.iter().map(|(c, _)| *c).collect();
        let issues: Vec<&str> = truth::ISSUE_EFFECTS.iter().map(|(c, _)| *c).collect();
        assert_eq!(channels, CHANNELS);
        assert_eq!(issues, ISSUE_CATEGORIES);
        assert_eq!(ISSUE_CATEGORIES[COMPLAINT], "complaint");
        let dirtiable: Vec<&str> = DIRTIABLE_COLUMNS.iter().map(|(c, _)| *c).collect();
        assert_eq!(dirtiable, COLUMNS[2..]);
    }
}

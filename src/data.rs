//! `accord data`: synthetic customer-service exports for demos, tests and experiments, with the
//! arguments the demo shares.

use accord_simulations::synth::{self, SynthSpec};
use clap::Args;
use std::path::PathBuf;

/// Arguments of `accord data synth`.
#[derive(Args, Clone)]
pub struct SynthArgs {
    /// Folder the CSVs are written to, one per participant.
    #[arg(long)]
    pub out: PathBuf,
    /// Participants (organizations) to generate.
    #[arg(long, default_value_t = 3)]
    pub participants: usize,
    /// Mean rows per participant.
    #[arg(long, default_value_t = 2000)]
    pub rows: usize,
    /// Seed of the generator: same arguments, same files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Planted disparities, e.g. "age_band=60+:penalty=0.8" or "age_band=60+:wait*2" (';'-separated).
    #[arg(long)]
    pub bias: Option<String>,
    /// Fraction of rows with one malformed cell.
    #[arg(long, default_value_t = 0.0)]
    pub dirty_rate: f64,
}

impl SynthArgs {
    /// The generator's parameters.
    pub fn spec(&self) -> anyhow::Result<SynthSpec> {
        Ok(SynthSpec {
            participants: self.participants,
            rows: self.rows,
            seed: self.seed,
            bias: synth::parse_biases(self.bias.as_deref().unwrap_or(""))?,
            dirty_rate: self.dirty_rate,
        })
    }

    /// Generates and writes the CSVs; returns the files with their row counts.
    pub fn write(&self) -> anyhow::Result<Vec<(PathBuf, usize)>> {
        let data = synth::generate(&self.spec()?)?;
        let files = synth::write_csvs(&data, &self.out)?;
        Ok(files
            .into_iter()
            .zip(data.iter().map(|d| d.records.len()))
            .collect())
    }
}

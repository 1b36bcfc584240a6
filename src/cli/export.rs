//! `export`: events or messages as JSON lines, CSV or Parquet.

use std::path::PathBuf;

use clap::Args;

use crate::cli::{CliError, Global, StatsArgs};

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// jsonl, csv or parquet.
    #[arg(long)]
    format: String,
    /// Output path, or - for stdout (not for parquet).
    #[arg(long)]
    out: PathBuf,
    /// One row per message instead of one per event.
    #[arg(long)]
    messages: bool,
    #[command(flatten)]
    filter: StatsArgs,
}

pub(crate) fn run(_global: &Global, args: &ExportArgs) -> Result<(), CliError> {
    Err(CliError::Usage(format!(
        "export to {:?} is being built",
        args.format
    )))
}

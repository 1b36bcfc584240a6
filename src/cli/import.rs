//! `import --from-sql-export DIR`: the original service's rows, as the events that made them.

use std::path::PathBuf;

use clap::Args;

use crate::cli::{CliError, Global};

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// Directory holding communication_metrics.csv (and financial_impact_metrics.csv).
    #[arg(long)]
    from_sql_export: PathBuf,
    /// Import the good rows and report the bad ones, instead of importing nothing.
    #[arg(long)]
    skip_bad_rows: bool,
}

pub(crate) fn run(_global: &Global, args: &ImportArgs) -> Result<(), CliError> {
    Err(CliError::Usage(format!(
        "import from {} is being built",
        args.from_sql_export.display()
    )))
}

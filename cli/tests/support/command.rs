//! The `commlog` binary as a test runs it.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The binary, with none of the environment variables that change its behavior.
pub fn cli() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_commlog"));
    for name in ["COMMLOG_DIR", "NO_COLOR", "CLICOLOR", "CLICOLOR_FORCE"] {
        command.env_remove(name);
    }
    command.stdin(Stdio::null());
    command
}

/// The binary on the store in `dir`.
pub fn cli_in(dir: &Path) -> Command {
    let mut command = cli();
    command.arg("--dir").arg(dir);
    command
}

/// Runs the binary on the store in `dir` with `args` to its end.
pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    cli_in(dir).args(args).output().expect("run commlog")
}

//! The `commlog` binary as a test runs it.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

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

/// Held while a test binary spawns the CLI: a child process shares the parent's open files
/// between fork and exec, so each test's children are spawned one at a time.
static SPAWNING: Mutex<()> = Mutex::new(());

/// Takes the spawning lock for as long as the guard lives; a panicked holder does not poison it.
pub fn spawning() -> MutexGuard<'static, ()> {
    SPAWNING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

//! The `commlog` command line: the demo, every call from the shell, import and export.

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}

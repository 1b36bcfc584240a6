//! Tests that need a real file-size limit (`ulimit -f`): the bytes up to the limit land, then a
//! write fails with EFBIG. The limit is the process's, so each such test runs again alone in a
//! child process started under it by `sh`, with `SIGXFSZ` ignored (an ignored signal stays
//! ignored across `exec`) so that the write fails instead of killing the process.

/// Set in the child process.
const CHILD_VARIABLE: &str = "COMMLOG_TEST_FILE_SIZE_LIMIT_CHILD";

/// In the child process: true. Else runs the test `name` of this test binary in a child
/// process under a file-size limit of `blocks` (the 512-byte blocks of `ulimit -f`), checks it
/// passed, and returns false.
pub fn in_child_process(name: &str, blocks: u64) -> bool {
    if std::env::var_os(CHILD_VARIABLE).is_some() {
        return true;
    }
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {blocks}; exec \"$0\" \"$@\""
        ))
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", name, "--include-ignored", "--test-threads=1"])
        .env(CHILD_VARIABLE, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{name} in a child process ({:?}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    false
}

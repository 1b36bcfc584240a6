//! What the benches share: the workload's size from the environment.

use commlog::workload::Spec;

/// The environment variable that sets the number of messages.
const MESSAGES_VAR: &str = "COMMLOG_BENCH_MESSAGES";
/// The environment variable that sets the number of users.
const USERS_VAR: &str = "COMMLOG_BENCH_USERS";

/// A positive count from the environment variable `name`, or `default` when it is unset;
/// panics, naming the variable, on any other value. `_` may separate digits.
fn count_from_env(name: &str, default: u64) -> u64 {
    let text = match std::env::var(name) {
        Ok(text) => text,
        Err(std::env::VarError::NotPresent) => return default,
        Err(std::env::VarError::NotUnicode(value)) => {
            panic!("{name} must be a positive whole number, got {value:?}")
        }
    };
    text.trim()
        .replace('_', "")
        .parse::<u64>()
        .ok()
        .filter(|&count| count >= 1)
        .unwrap_or_else(|| {
            panic!(
                "{name} must be a positive whole number (e.g. 1000000 or 1_000_000), got {text:?}"
            )
        })
}

/// The workload spec: the default one, with the sizes the environment sets.
pub fn spec_from_env() -> Spec {
    let default = Spec::default();
    Spec {
        messages: count_from_env(MESSAGES_VAR, default.messages),
        users: count_from_env(USERS_VAR, default.users),
        ..default
    }
}

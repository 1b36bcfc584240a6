//! `commlog-serve`: runs [`commlog_server::serve`] from the command line with the options of
//! `commlog serve` (the server crate's own tests start it; users run `commlog serve`).
//!
//! ```text
//! commlog-serve --dir DIR [--wait SECONDS] [--socket PATH] [--listen ADDR:PORT]
//!               [--token-file PATH] [--sync always|interval|never] [--interval-ms 100]
//!               [--public-url URL]
//!               [--shutdown-grace-ms 30000] [--twilio-token-file PATH]
//!               [--sendgrid-key-file PATH] [--resend-secret-file PATH]
//! ```
//!
//! Without `--token-file`, the token is `$COMMLOG_TOKEN` when set; without a webhook secret's
//! file, its environment variable (docs/SERVER.md). Exit 0 after a clean
//! shutdown, 1 for a bad argument or option, 2 for a storage or socket error.

use std::process::ExitCode;
use std::time::Duration;

use commlog::SyncPolicy;
use commlog_server::{ServeError, ServeOptions, serve};

fn main() -> ExitCode {
    match parse(std::env::args().skip(1)) {
        Ok(options) => match serve(options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("commlog serve: {error}");
                let storage = error.is_storage() || matches!(error, ServeError::Io { .. });
                ExitCode::from(if storage { 2 } else { 1 })
            }
        },
        Err(message) => {
            eprintln!("commlog serve: {message}");
            ExitCode::from(1)
        }
    }
}

fn path(file: &Option<String>) -> Option<&std::path::Path> {
    file.as_deref().map(std::path::Path::new)
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<ServeOptions, String> {
    let mut dir = None;
    let mut options = ServeOptions::new("");
    // As `commlog serve`: wait for another writer's lock up to 10 seconds unless told.
    options.lock_timeout = Duration::from_secs(10);
    let mut sync = "always".to_owned();
    let mut interval_ms = 100u64;
    let mut token_file = None;
    let (mut twilio_file, mut sendgrid_file, mut resend_file) = (None, None, None);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => dir = Some(value()?),
            "--wait" => {
                let text = value()?;
                let seconds = text
                    .parse::<f64>()
                    .ok()
                    .filter(|seconds| *seconds >= 0.0)
                    .ok_or_else(|| format!("--wait {text:?}: expected seconds, 0 or more"))?;
                // Longer than a Duration holds (inf included): as long as it takes.
                options.lock_timeout =
                    Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX);
            }
            "--socket" => options.socket = Some(value()?.into()),
            "--listen" => {
                let text = value()?;
                options.listen = Some(
                    text.parse()
                        .map_err(|_| format!("--listen {text:?}: expected ADDRESS:PORT"))?,
                );
            }
            "--token-file" => token_file = Some(value()?),
            "--twilio-token-file" => twilio_file = Some(value()?),
            "--sendgrid-key-file" => sendgrid_file = Some(value()?),
            "--resend-secret-file" => resend_file = Some(value()?),
            "--sync" => sync = value()?,
            "--interval-ms" => {
                let text = value()?;
                interval_ms =
                    text.parse().ok().filter(|&ms| ms > 0).ok_or_else(|| {
                        format!("--interval-ms {text:?}: expected milliseconds ≥ 1")
                    })?;
            }
            "--public-url" => options.public_url = Some(value()?),
            "--shutdown-grace-ms" => {
                let text = value()?;
                let ms = text
                    .parse()
                    .map_err(|_| format!("--shutdown-grace-ms {text:?}: expected milliseconds"))?;
                options.shutdown_grace = Duration::from_millis(ms);
            }
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    options.dir = dir
        .or_else(|| {
            std::env::var("COMMLOG_DIR")
                .ok()
                .filter(|dir| !dir.is_empty())
        })
        .ok_or("--dir DIR is required (or $COMMLOG_DIR)")?
        .into();
    options.sync = match sync.as_str() {
        "always" => SyncPolicy::Always,
        "interval" => SyncPolicy::Interval(Duration::from_millis(interval_ms)),
        "never" => SyncPolicy::Never,
        _ => {
            return Err(format!(
                "--sync {sync:?}: expected always, interval or never"
            ));
        }
    };
    options.token = ServeOptions::read_token(token_file.as_deref().map(std::path::Path::new))
        .map_err(|error| error.to_string())?;
    options.webhooks = commlog_server::WebhookSecrets::read(
        path(&twilio_file),
        path(&sendgrid_file),
        path(&resend_file),
    )
    .map_err(|error| error.to_string())?;
    Ok(options)
}

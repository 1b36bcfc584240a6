//! `commlog serve`: the store served over HTTP by the `commlog-server` crate (docs/SERVER.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use commlog::SyncPolicy;
use commlog_server::{SHUTDOWN_GRACE_DEFAULT, ServeError, ServeOptions};

use super::{CliError, Global};

/// When a call the server acknowledges is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ServeSync {
    /// A 2xx means the event is fsynced (concurrent requests share the fsyncs).
    Always,
    /// A 2xx comes before the fsync, which follows within --interval-ms.
    Interval,
}

/// `commlog serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// The Unix socket [default: DIR/commlog.sock]; created with mode 0600.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Also listen on TCP at ADDR:PORT; clients then send `Authorization: Bearer TOKEN`.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// The bearer token for TCP, in a file [default: $COMMLOG_TOKEN]; required for an address
    /// other than loopback.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// When an acknowledged call is durable.
    #[arg(long, value_enum, default_value_t = ServeSync::Always)]
    sync: ServeSync,
    /// With --sync interval: the fsync interval.
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    interval_ms: u64,
    /// The public base URL the providers call, for webhook signatures behind a proxy
    /// [default: http:// and the request's Host].
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Twilio's Auth Token, in a file [default: $COMMLOG_TWILIO_AUTH_TOKEN]: enables
    /// /v1/webhooks/twilio.
    #[arg(long, value_name = "FILE")]
    twilio_token_file: Option<PathBuf>,
    /// SendGrid's Event Webhook verification key, in a file [default:
    /// $COMMLOG_SENDGRID_PUBLIC_KEY]: enables /v1/webhooks/sendgrid.
    #[arg(long, value_name = "FILE")]
    sendgrid_key_file: Option<PathBuf>,
    /// Resend's signing secret (whsec_…), in a file [default: $COMMLOG_RESEND_SECRET]: enables
    /// /v1/webhooks/resend.
    #[arg(long, value_name = "FILE")]
    resend_secret_file: Option<PathBuf>,
    /// After SIGTERM or SIGINT, how long open connections may take to finish.
    #[arg(long, value_name = "MS")]
    shutdown_grace_ms: Option<u64>,
}

pub(crate) fn run(global: &Global, args: &ServeArgs) -> Result<(), CliError> {
    global.check_dir_named("serve")?;
    let token = ServeOptions::read_token(args.token_file.as_deref()).map_err(serve_error)?;
    let mut options = ServeOptions::new(&global.dir);
    options.socket = args.socket.clone();
    options.listen = args.listen;
    options.token = token;
    options.sync = match args.sync {
        ServeSync::Always => SyncPolicy::Always,
        ServeSync::Interval => SyncPolicy::Interval(Duration::from_millis(args.interval_ms)),
    };
    options.public_url = args.public_url.clone();
    options.lock_timeout = global.lock_timeout;
    options.webhooks = commlog_server::WebhookSecrets::read(
        args.twilio_token_file.as_deref(),
        args.sendgrid_key_file.as_deref(),
        args.resend_secret_file.as_deref(),
    )
    .map_err(serve_error)?;
    options.shutdown_grace = args
        .shutdown_grace_ms
        .map_or(SHUTDOWN_GRACE_DEFAULT, Duration::from_millis);
    commlog_server::serve(options).map_err(serve_error)
}

/// A server error as the CLI reports it: storage trouble exits 2, a bad option 1.
fn serve_error(error: ServeError) -> CliError {
    match error {
        ServeError::Store(error) => CliError::Store(error),
        ServeError::Config(message) => CliError::Usage(message),
        other => CliError::Store(commlog::Error::Io {
            path: PathBuf::from("commlog serve"),
            source: std::io::Error::other(other.to_string()),
        }),
    }
}

//! [`serve`]: open the store, listen, answer until a signal, then close everything in order.

use std::fmt;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use commlog::{Options, Store, SyncPolicy};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

use crate::api::{self, AppState};
use crate::error::ServeError;
use crate::tracker::Tracker;

/// The socket's file name in the store's directory when [`ServeOptions::socket`] is `None`.
pub const SOCKET_FILE_NAME: &str = "commlog.sock";

/// [`ServeOptions::shutdown_grace`] by default.
pub const SHUTDOWN_GRACE_DEFAULT: Duration = Duration::from_secs(30);

/// How to serve a store.
#[derive(Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// The store's directory (created if missing, as `Store::open_with` does).
    pub dir: PathBuf,
    /// The Unix socket; `None`: `DIR/commlog.sock`. Created with mode 0600, removed at
    /// shutdown.
    pub socket: Option<PathBuf>,
    /// Also listen on TCP at this address (port 0: any free port, printed at startup).
    pub listen: Option<SocketAddr>,
    /// The bearer token TCP clients must send. Required for a non-loopback `listen`. The
    /// caller reads it (from `--token-file` or `$COMMLOG_TOKEN`); it is never printed.
    pub token: Option<String>,
    /// Durability of acknowledged calls. Default: `SyncPolicy::Always`.
    pub sync: SyncPolicy,
    /// The public base URL the providers call (for webhook signatures behind a proxy).
    pub public_url: Option<String>,
    /// Worker threads of the runtime; `None`: tokio's default (one per CPU).
    pub worker_threads: Option<usize>,
    /// The providers' webhook secrets; a provider without one has no webhook route.
    pub webhooks: crate::WebhookSecrets,
    /// After SIGTERM or SIGINT, how long connections may take to finish their requests before
    /// they are cut (a client stuck sending a request must not hold the store open). Store
    /// calls already started always finish. Default: 30 s.
    pub shutdown_grace: Duration,
    /// How long the open waits for another process to close the store
    /// (`commlog::Options::lock_timeout`). Default: not at all.
    pub lock_timeout: Duration,
}

impl ServeOptions {
    /// Serves `dir` on `DIR/commlog.sock` only, with `SyncPolicy::Always`.
    pub fn new(dir: impl Into<PathBuf>) -> ServeOptions {
        ServeOptions {
            dir: dir.into(),
            socket: None,
            listen: None,
            token: None,
            sync: SyncPolicy::Always,
            public_url: None,
            webhooks: crate::WebhookSecrets::default(),
            worker_threads: None,
            shutdown_grace: SHUTDOWN_GRACE_DEFAULT,
            lock_timeout: Duration::ZERO,
        }
    }

    /// The bearer token: [`read_secret`] of `token_file` or `$COMMLOG_TOKEN`.
    pub fn read_token(token_file: Option<&std::path::Path>) -> Result<Option<String>, ServeError> {
        read_secret(token_file, "COMMLOG_TOKEN")
    }

    /// The Unix socket's path.
    pub fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| self.dir.join(SOCKET_FILE_NAME))
    }
}

/// Shows every option but the token's value.
impl fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeOptions")
            .field("dir", &self.dir)
            .field("socket", &self.socket)
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "(hidden)"))
            .field("sync", &self.sync)
            .field("public_url", &self.public_url)
            .field("worker_threads", &self.worker_threads)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("lock_timeout", &self.lock_timeout)
            .finish()
    }
}

/// Serves the store until SIGTERM or SIGINT: then stops accepting, finishes the requests in
/// flight, syncs and closes the store, removes the socket and returns.
///
/// Fails before serving if the options are unsafe (TCP on a non-loopback address without a
/// token), the store cannot be opened (another process holds its lock past
/// [`ServeOptions::lock_timeout`]: `commlog::Error::Locked`), or the socket's path is taken (a
/// server answers there, or it is not a socket).
pub fn serve(options: ServeOptions) -> Result<(), ServeError> {
    check_options(&options)?;
    handle_file_size_limit();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = options.worker_threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime
        .build()
        .map_err(|source| ServeError::io("start the runtime", source))?;
    let opened = Instant::now();
    let store = Arc::new(Store::open_with(
        &options.dir,
        Options {
            sync: options.sync,
            lock_timeout: options.lock_timeout,
            decode_on_demand: true,
            ..Options::default()
        },
    )?);
    let socket = options.socket_path();
    let unix = bind_unix(&socket)?;
    let (stop_decoding, decoder) = decode_rest(Arc::clone(&store), opened);
    let (tracker, committers) = Tracker::start(Arc::clone(&store), options.sync);
    let served = runtime.block_on(run(&options, &socket, unix, Arc::clone(&store), tracker));
    // Dropping the runtime waits for store calls still running on its blocking pool (a client
    // that hung up does not stop its call) and drops the last tracker; the committers then
    // answer the calls already queued and end, so that the store is ours alone after them.
    drop(runtime);
    for committer in committers {
        let _ = committer.join();
    }
    stop_decoding.store(true, Ordering::Relaxed);
    if let Some(decoder) = decoder {
        let _ = decoder.join();
    }
    let _ = std::fs::remove_file(&socket);
    let closed = match Arc::try_unwrap(store) {
        Ok(store) => store.close().map_err(ServeError::from),
        Err(store) => store.sync().map_err(ServeError::from),
    };
    served.and(closed)
}

/// Decodes, on a thread of its own, what the open left in the snapshot's file
/// (`Store::decode_rest`), while the server answers: the open reads only what it must check,
/// so that the server listens within seconds at 100 M messages, and once the thread is done
/// no call decodes anything first. Set the flag to stop it early. If the OS refuses a thread,
/// calls go on decoding what they reach.
fn decode_rest(
    store: Arc<Store>,
    opened: Instant,
) -> (Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let decoder = std::thread::Builder::new()
        .name("commlog-decode".to_owned())
        .spawn(move || {
            let started = Instant::now();
            if store.decode_rest(&stopped) && store.open_report().snapshot.is_some() {
                eprintln!(
                    "commlog serve: the snapshot's messages, users and indexes decoded ({:.1} s after the open began, {:.1} s of decoding)",
                    opened.elapsed().as_secs_f64(),
                    started.elapsed().as_secs_f64()
                );
            }
        });
    (stop, decoder.ok())
}

/// A write past the file-size limit (`ulimit -f`) raises SIGXFSZ, whose default action kills
/// the process at once, acknowledged calls in flight with it. With a handler installed the
/// write fails with EFBIG instead: the store is poisoned and the server answers 503 to every
/// call that writes, until it is restarted. The handler only sets a flag nothing reads.
fn handle_file_size_limit() {
    // Fails only if the OS refuses the handler; the signal then keeps its default action.
    let _ = signal_hook::flag::register(
        signal_hook::consts::SIGXFSZ,
        Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
}

fn check_options(options: &ServeOptions) -> Result<(), ServeError> {
    if let Some(listen) = options.listen
        && options.token.is_none()
        && !listen.ip().is_loopback()
    {
        return Err(ServeError::Config(format!(
            "--listen {listen} is not a loopback address: give a bearer token (--token-file or \
             $COMMLOG_TOKEN), or listen on 127.0.0.1"
        )));
    }
    if options.token.as_deref().is_some_and(str::is_empty) {
        return Err(ServeError::Config("the bearer token is empty".to_owned()));
    }
    Ok(())
}

async fn run(
    options: &ServeOptions,
    socket: &Path,
    unix: std::os::unix::net::UnixListener,
    store: Arc<Store>,
    tracker: Tracker,
) -> Result<(), ServeError> {
    let state = AppState {
        store,
        tracker,
        sync: options.sync,
        public_url: options.public_url.clone(),
        webhook_secrets: std::sync::Arc::new(options.webhooks.clone()),
        webhook_counters: std::sync::Arc::default(),
    };
    let unix = UnixListener::from_std(unix)
        .map_err(|source| ServeError::io(format!("listen on {}", socket.display()), source))?;
    let tcp = match options.listen {
        Some(address) => Some(
            TcpListener::bind(address)
                .await
                .map_err(|source| ServeError::io(format!("listen on {address}"), source))?,
        ),
        None => None,
    };
    eprintln!(
        "commlog serve: {} on unix:{} (mode 0600, no token)",
        options.dir.display(),
        socket.display()
    );
    if let Some(tcp) = &tcp {
        let address = tcp
            .local_addr()
            .map_err(|source| ServeError::io("read the TCP address", source))?;
        let auth = if options.token.is_some() {
            "bearer token required"
        } else {
            "loopback, no token"
        };
        eprintln!("commlog serve: listening on http://{address} ({auth})");
    }
    eprintln!("commlog serve: {}", sync_line(options.sync));

    let (stop, stopped) = watch::channel(false);
    let mut deadline = stopped.clone();
    let signals = tokio::spawn(async move {
        wait_for_signal().await;
        eprintln!("commlog serve: stopping: finishing requests in flight");
        let _ = stop.send(true);
    });
    let shutdown = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let router = api::router(state);
    let unix_server = axum::serve(unix, router.clone())
        .with_graceful_shutdown(shutdown(stopped.clone()))
        .into_future();
    let tcp_server = async {
        match tcp {
            Some(tcp) => {
                let router = match &options.token {
                    Some(token) => api::with_token(router, token),
                    None => router,
                };
                axum::serve(tcp, router)
                    .with_graceful_shutdown(shutdown(stopped))
                    .await
            }
            None => Ok(()),
        }
    };
    let grace = options.shutdown_grace;
    tokio::select! {
        (unix_result, tcp_result) = async { tokio::join!(unix_server, tcp_server) } => {
            unix_result.map_err(|source| ServeError::io("serve the unix socket", source))?;
            tcp_result.map_err(|source| ServeError::io("serve TCP", source))?;
        }
        () = async {
            let _ = deadline.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        } => {
            eprintln!(
                "commlog serve: connections still open {} ms after the signal: cut",
                grace.as_millis()
            );
        }
    }
    signals.abort();
    eprintln!("commlog serve: stopped accepting; syncing and closing the store");
    Ok(())
}

/// What an acknowledgement promises under `sync`.
fn sync_line(sync: SyncPolicy) -> String {
    match sync {
        SyncPolicy::Always => "sync always: a call is acknowledged after its event is fsynced \
                               (concurrent calls share one fsync)"
            .to_owned(),
        SyncPolicy::Interval(interval) => format!(
            "sync interval {} ms: calls are acknowledged BEFORE fsync; a power cut can lose \
             about the last {} ms of acknowledged calls",
            interval.as_millis(),
            interval.as_millis()
        ),
        SyncPolicy::Never => "sync never: calls are acknowledged before fsync and the OS decides \
                              when they reach the disk; a power cut can lose acknowledged calls"
            .to_owned(),
    }
}

/// Binds the socket with mode 0600 from the moment it has its name: it is bound in a new
/// directory of mode 0700 beside `path`, given its mode there, and renamed to `path`, so that
/// no other user can connect in between whatever the umask. A socket file nobody answers on (a
/// server that died) is replaced; one a server answers on is refused and left alone, and so is
/// anything at `path` that is not a socket.
fn bind_unix(path: &Path) -> Result<std::os::unix::net::UnixListener, ServeError> {
    if let Ok(metadata) = std::fs::symlink_metadata(path) {
        if !metadata.file_type().is_socket() {
            return Err(ServeError::Config(format!(
                "{}: exists and is not a socket: give the socket a free path",
                path.display()
            )));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServeError::Config(format!(
                "{}: a server is already listening on this socket",
                path.display()
            )));
        }
    }
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let private = tempfile::Builder::new()
        .prefix(".cl")
        .tempdir_in(parent)
        .map_err(|source| {
            ServeError::io(
                format!("create a private directory in {}", parent.display()),
                source,
            )
        })?;
    let bound = private.path().join("s");
    let listener = std::os::unix::net::UnixListener::bind(&bound)
        .map_err(|source| ServeError::io(format!("bind {}", path.display()), source))?;
    listener
        .set_nonblocking(true)
        .map_err(|source| ServeError::io(format!("listen on {}", path.display()), source))?;
    std::fs::set_permissions(&bound, std::fs::Permissions::from_mode(0o600))
        .map_err(|source| ServeError::io(format!("chmod 0600 {}", path.display()), source))?;
    // Replaces a socket left by a server that died in one step.
    std::fs::rename(&bound, path)
        .map_err(|source| ServeError::io(format!("bind {}", path.display()), source))?;
    Ok(listener)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("install the SIGINT handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}

/// A secret: the content of `file` without its final line break if a file is given (a missing
/// or unreadable file is a [`ServeError::Config`] naming the file, never showing its contents),
/// else the environment variable `env` if set and not empty.
pub fn read_secret(
    file: Option<&std::path::Path>,
    env: &str,
) -> Result<Option<String>, ServeError> {
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|error| ServeError::Config(format!("{}: {error}", path.display())))?;
            Ok(Some(text.trim_end_matches(['\r', '\n']).to_owned()))
        }
        None => Ok(std::env::var(env).ok().filter(|secret| !secret.is_empty())),
    }
}

//! Load generator for `commlog serve`: starts the server in this process (`commlog_server::serve`
//! on its own thread) on a store in a temporary directory (under `$TMPDIR`, else `/tmp`), drives
//! it over keep-alive connections and prints one summary line: calls/s (events/s for `batch`) and
//! the latency percentiles.
//!
//! ```text
//! cargo run --release -p commlog-server --example load -- \
//!     [--call send|mixed|batch|stats] [--transport unix|tcp] [--connections N]
//!     [--sync always|interval] [--seconds 5] [--batch-lines 10000] [--messages N]
//! ```
//!
//! - `--call send` (default): `POST /v1/messages`, sends of the reference workload's shape
//!   (docs/WORKLOAD.md: its users, channels, message types and costs; the server's clock).
//! - `--call mixed`: the reference workload's calls in its proportions, message by message on
//!   each connection: the send, then the follow-ups on the id it answered (`delivered`, `opened`,
//!   `actions`), an outcome when the workload has one, and `failed` for the messages the
//!   workload leaves undelivered.
//! - `--call batch`: `POST /v1/batch` of `--batch-lines` lines of the same mix (`sent` lines
//!   make new messages; the follow-up lines name messages whose sends were stored before the
//!   server started, one per workload message, so that their ids are known). Reports the lines
//!   answered with a 2xx `status` per second and the latency of whole batch requests.
//! - `--call stats`: `GET /v1/stats`, rotating over five filters (none, a user, a message type, a
//!   channel, a 7-day window), on a store that holds the reference workload's first
//!   `--messages` messages (default 1,000,000). Latency percentiles in µs, overall and by
//!   filter.
//!
//! `--messages N` pre-fills the store with the reference workload's first N messages (all their
//! calls, through the library, with `SyncPolicy::Never`) before the server starts; the time it
//! took is printed. Default connections: 64 for `send` and `mixed`, 1 for `batch` and `stats`.
//!
//! The client is one OS thread running a single-threaded tokio runtime, one task per keep-alive
//! connection, with hand-written minimal HTTP/1.1 (requests formatted ahead of the run where
//! they can be). It still shares the machine, and its cores, with the server: the summary gives
//! the CPU each used from the end of the warm-up to the end of the run (in cores; the server's is
//! the process's less the client thread's), so that the client's share can be judged.
//!
//! The first 0.5 s are a warm-up. A request counts if it started after it; each connection
//! starts requests until `--seconds` have passed and it has had one counted (a batch under
//! `--sync always` can outlast the whole window). The rate is the counted requests (or batch
//! lines) over the time from the first counted request's start to the last one's answer; the
//! latencies are those of the counted requests. Answers with an unexpected status are counted
//! in the summary and the first body of each status is printed on stderr.

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::SecondsFormat;
use commlog::workload::{self, Call, Generator, MESSAGE_TYPES, QUERY_CHANNELS, QueryPicks, Spec};
use commlog::{Options, Store, SyncPolicy};
use commlog_server::{ServeOptions, serve};
use tokio::net::{TcpStream, UnixStream};

const WARM_UP: Duration = Duration::from_millis(500);
/// Messages of the reference workload the `send` and `mixed` connections cycle through.
const POOL_MESSAGES: usize = 65_536;
/// The filters of `--call stats`, in rotation order.
const FILTERS: [&str; 5] = ["none", "user", "type", "channel", "window"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Send,
    Mixed,
    Batch,
    Stats,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Send => "send",
            Mode::Mixed => "mixed",
            Mode::Batch => "batch",
            Mode::Stats => "stats",
        }
    }
}

struct Args {
    mode: Mode,
    transport: String,
    connections: usize,
    sync: String,
    seconds: f64,
    batch_lines: usize,
    messages: u64,
}

const USAGE: &str = "usage: load [--call send|mixed|batch|stats] [--transport unix|tcp] \
                     [--connections N] [--sync always|interval] [--seconds S] \
                     [--batch-lines N] [--messages N]";

fn args() -> Args {
    let mut mode = Mode::Send;
    let mut transport = "unix".to_string();
    let mut connections = None;
    let mut sync = "always".to_string();
    let mut seconds = 5.0;
    let mut batch_lines = 10_000;
    let mut messages = None;
    let mut given = std::env::args().skip(1);
    let fail = |message: String| -> ! {
        eprintln!("{message}\n{USAGE}");
        std::process::exit(2)
    };
    while let Some(flag) = given.next() {
        let Some(value) = given.next() else {
            fail(format!("{flag} takes a value"))
        };
        let number = |value: &str| -> u64 {
            value
                .parse()
                .unwrap_or_else(|_| fail(format!("{flag} {value}: not a number")))
        };
        match flag.as_str() {
            "--call" => {
                mode = match value.as_str() {
                    "send" => Mode::Send,
                    "mixed" => Mode::Mixed,
                    "batch" => Mode::Batch,
                    "stats" => Mode::Stats,
                    _ => fail(format!("--call {value}: send, mixed, batch or stats")),
                }
            }
            "--transport" if value == "unix" || value == "tcp" => transport = value,
            "--sync" if value == "always" || value == "interval" => sync = value,
            "--connections" => connections = Some((number(&value) as usize).max(1)),
            "--seconds" => {
                seconds = value
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s > 0.0)
                    .unwrap_or_else(|| fail(format!("--seconds {value}: a positive number")))
            }
            "--batch-lines" => batch_lines = (number(&value) as usize).max(1),
            "--messages" => messages = Some(number(&value)),
            _ => fail(format!("unknown flag or value: {flag} {value}")),
        }
    }
    Args {
        mode,
        transport,
        connections: connections.unwrap_or(match mode {
            Mode::Send | Mode::Mixed => 64,
            Mode::Batch | Mode::Stats => 1,
        }),
        sync,
        seconds,
        batch_lines,
        messages: messages.unwrap_or(if mode == Mode::Stats { 1_000_000 } else { 0 }),
    }
}

// ---------------------------------------------------------------------------------------------
// The store, before the server starts

/// Pre-fills `dir` with the reference workload's first `messages` messages (ids 1..=messages),
/// then with the sends of `extra_sends` (ids following), through the library; closes it. The
/// time it took.
fn prefill(dir: &Path, messages: u64, extra_sends: &[Call]) -> Duration {
    let started = Instant::now();
    let store = Store::open_with(
        dir,
        Options {
            sync: SyncPolicy::Never,
            ..Options::default()
        },
    )
    .expect("open the store to pre-fill it");
    if messages > 0 {
        let spec = Spec {
            messages,
            ..Spec::default()
        };
        for call in Generator::calls(spec) {
            workload::apply(&store, &call).expect("track a workload call");
        }
    }
    for (n, call) in extra_sends.iter().enumerate() {
        let &Call::Sent {
            user,
            channel,
            message_type,
            cost,
            ..
        } = call
        else {
            unreachable!("only sends")
        };
        let sent = store
            .track_message_sent_at(user, channel, message_type, cost, call.at())
            .expect("track a send");
        assert_eq!(sent.id.0, messages + n as u64 + 1, "ids follow each other");
    }
    store.close().expect("close the pre-filled store");
    started.elapsed()
}

/// The first `count` messages of the reference workload, each as its calls.
fn workload_messages(count: usize) -> Vec<Vec<Call>> {
    let mut generator = Generator::new(Spec::default());
    let mut messages = Vec::with_capacity(count);
    for _ in 0..count {
        let mut calls = Vec::with_capacity(5);
        if !generator.next_message(&mut calls) {
            break;
        }
        messages.push(calls);
    }
    messages
}

// ---------------------------------------------------------------------------------------------
// Requests

fn micros(dollars: f64) -> i64 {
    (dollars * 1e6).round() as i64
}

fn request(out: &mut Vec<u8>, method: &str, path: &str, body: &[u8]) {
    out.clear();
    write!(out, "{method} {path} HTTP/1.1\r\nHost: commlog\r\n").expect("to a Vec");
    if method != "GET" {
        write!(
            out,
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        )
        .expect("to a Vec");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// The JSON fields of a send or an outcome (also a batch line's, after its `"call"`).
fn fields(call: &Call) -> String {
    match *call {
        Call::Sent {
            user,
            channel,
            message_type,
            cost,
            ..
        } => format!(
            r#""user_id":{},"channel":"{}","message_type":"{message_type}","cost_micros":{}"#,
            user.0,
            channel.as_str(),
            micros(cost)
        ),
        Call::Outcome {
            user,
            outcome,
            amount,
            ..
        } => format!(
            r#""user_id":{},"outcome":"{outcome}","amount_micros":{}"#,
            user.0,
            micros(amount)
        ),
        _ => unreachable!("sends and outcomes only"),
    }
}

/// One message's HTTP calls for `--call mixed`: the send and the outcome formatted whole, the
/// follow-ups as the path after `/v1/messages/{id}` and their body.
struct MixedMessage {
    send: Vec<u8>,
    follow_ups: Vec<(Kind, &'static str, Vec<u8>)>,
    outcome: Option<Vec<u8>>,
}

#[derive(Clone, Copy)]
enum Kind {
    Sent,
    Delivered,
    Opened,
    Action,
    Failed,
    Outcome,
}

const KINDS: [&str; 6] = [
    "sent",
    "delivered",
    "opened",
    "actions",
    "failed",
    "outcomes",
];

fn mixed_message(calls: &[Call]) -> MixedMessage {
    let mut message = MixedMessage {
        send: Vec::new(),
        follow_ups: Vec::new(),
        outcome: None,
    };
    for call in calls {
        match *call {
            Call::Sent { .. } => {
                let body = format!("{{{}}}", fields(call));
                request(&mut message.send, "POST", "/v1/messages", body.as_bytes());
            }
            Call::Delivered { .. } => {
                message
                    .follow_ups
                    .push((Kind::Delivered, "delivered", Vec::new()))
            }
            Call::Opened { .. } => message
                .follow_ups
                .push((Kind::Opened, "opened", Vec::new())),
            Call::Action { action, .. } => message.follow_ups.push((
                Kind::Action,
                "actions",
                format!(r#"{{"action":"{action}"}}"#).into_bytes(),
            )),
            Call::Outcome { .. } => {
                let body = format!("{{{}}}", fields(call));
                let mut out = Vec::new();
                request(&mut out, "POST", "/v1/outcomes", body.as_bytes());
                message.outcome = Some(out);
            }
        }
    }
    if !calls
        .iter()
        .any(|call| matches!(call, Call::Delivered { .. }))
    {
        message.follow_ups.push((
            Kind::Failed,
            "failed",
            br#"{"reason":"undelivered"}"#.to_vec(),
        ));
    }
    message
}

/// `--call batch`: `bodies` requests of `lines` lines each, from the reference workload's first
/// messages; the sends of the messages the follow-ups name (numbered from 1), to pre-fill with
/// ids following `first_id - 1`.
fn batch_requests(lines: usize, bodies: usize, first_id: u64) -> (Vec<Vec<u8>>, Vec<Call>) {
    let mut generator = Generator::new(Spec::default());
    let mut sends = Vec::new();
    let mut calls = Vec::new();
    let mut requests = Vec::with_capacity(bodies);
    let mut body = String::new();
    let mut in_body = 0;
    while requests.len() < bodies {
        calls.clear();
        generator.next_message(&mut calls);
        let id = first_id + sends.len() as u64;
        sends.push(calls[0]);
        let mut line_of = |call: &Call| match *call {
            Call::Sent { .. } => format!(r#"{{"call":"sent",{}}}"#, fields(call)),
            Call::Outcome { .. } => format!(r#"{{"call":"outcome",{}}}"#, fields(call)),
            Call::Delivered { .. } => format!(r#"{{"call":"delivered","message_id":{id}}}"#),
            Call::Opened { .. } => format!(r#"{{"call":"opened","message_id":{id}}}"#),
            Call::Action { action, .. } => {
                format!(r#"{{"call":"action","message_id":{id},"action":"{action}"}}"#)
            }
        };
        let mut message_lines: Vec<String> = calls.iter().map(&mut line_of).collect();
        if !calls
            .iter()
            .any(|call| matches!(call, Call::Delivered { .. }))
        {
            message_lines.push(format!(
                r#"{{"call":"failed","message_id":{id},"reason":"undelivered"}}"#
            ));
        }
        for line in message_lines {
            body.push_str(&line);
            body.push('\n');
            in_body += 1;
            if in_body == lines {
                let mut out = Vec::new();
                request(&mut out, "POST", "/v1/batch", body.as_bytes());
                requests.push(out);
                body.clear();
                in_body = 0;
                if requests.len() == bodies {
                    break;
                }
            }
        }
    }
    (requests, sends)
}

/// `--call stats`: for each filter of [`FILTERS`], 100 requests.
fn stats_requests(messages: u64) -> Vec<Vec<Vec<u8>>> {
    let picks = QueryPicks::new(Spec {
        messages: messages.max(1),
        ..Spec::default()
    });
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.expect("a window")
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    };
    let get = |query: String| {
        let mut out = Vec::new();
        request(&mut out, "GET", &format!("/v1/stats{query}"), b"");
        out
    };
    (0..FILTERS.len())
        .map(|filter| {
            (0..100)
                .map(|i| match filter {
                    0 => get(String::new()),
                    1 => get(format!("?user={}", picks.q2_users[i].0)),
                    2 => get(format!("?type={}", MESSAGE_TYPES[i % MESSAGE_TYPES.len()])),
                    3 => get(format!(
                        "?channel={}",
                        QUERY_CHANNELS[i % QUERY_CHANNELS.len()].as_str()
                    )),
                    _ => {
                        let window = &picks.q5_filters[i];
                        get(format!(
                            "?start={}&end={}",
                            time(window.start),
                            time(window.end)
                        ))
                    }
                })
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The client: minimal HTTP/1.1 over one keep-alive connection

#[derive(Clone)]
enum Target {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    async fn connect(target: &Target) -> io::Result<Stream> {
        Ok(match target {
            Target::Unix(path) => Stream::Unix(UnixStream::connect(path).await?),
            Target::Tcp(address) => {
                let stream = TcpStream::connect(address).await?;
                stream.set_nodelay(true)?;
                Stream::Tcp(stream)
            }
        })
    }

    async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let written = match self {
                Stream::Unix(stream) => stream.try_write(bytes),
                Stream::Tcp(stream) => stream.try_write(bytes),
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => match self {
                    Stream::Unix(stream) => stream.writable().await?,
                    Stream::Tcp(stream) => stream.writable().await?,
                },
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    async fn read(&self, into: &mut [u8]) -> io::Result<usize> {
        loop {
            let read = match self {
                Stream::Unix(stream) => {
                    stream.readable().await?;
                    stream.try_read(into)
                }
                Stream::Tcp(stream) => {
                    stream.readable().await?;
                    stream.try_read(into)
                }
            };
            match read {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                read => return read,
            }
        }
    }
}

struct Connection {
    stream: Stream,
    /// Bytes read, unparsed ones in `start..end`.
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    /// The last answer's body.
    body: Vec<u8>,
    /// The id at the end of the last answer's `Location` header.
    location: Option<u64>,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn bad(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

impl Connection {
    async fn open(target: &Target) -> io::Result<Connection> {
        Ok(Connection {
            stream: Stream::connect(target).await?,
            buffer: vec![0; 64 * 1024],
            start: 0,
            end: 0,
            body: Vec::new(),
            location: None,
        })
    }

    /// Reads more bytes into `start..end`, making room first.
    async fn fill(&mut self) -> io::Result<()> {
        if self.end == self.buffer.len() {
            if self.start > 0 {
                self.buffer.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buffer.len() {
                self.buffer.resize(self.buffer.len() * 2, 0);
            }
        }
        let read = self.stream.read(&mut self.buffer[self.end..]).await?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        self.end += read;
        Ok(())
    }

    /// The end (exclusive, in `buffer`) of the next CRLF-terminated line from `start`.
    async fn line(&mut self) -> io::Result<usize> {
        loop {
            if let Some(at) = find(&self.buffer[self.start..self.end], b"\r\n") {
                return Ok(self.start + at);
            }
            self.fill().await?;
        }
    }

    async fn at_least(&mut self, bytes: usize) -> io::Result<()> {
        while self.end - self.start < bytes {
            self.fill().await?;
        }
        Ok(())
    }

    /// Sends `request`, reads the answer whole: its status, its body in `self.body`.
    async fn call(&mut self, request: &[u8]) -> io::Result<u16> {
        self.stream.write_all(request).await?;
        let head_end = loop {
            if let Some(at) = find(&self.buffer[self.start..self.end], b"\r\n\r\n") {
                break self.start + at;
            }
            self.fill().await?;
        };
        let head = &self.buffer[self.start..head_end];
        let mut lines = head.split(|&byte| byte == b'\n');
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(|&byte| byte == b' ')
            .nth(1)
            .and_then(|code| std::str::from_utf8(code).ok()?.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {:?}", ascii(status_line))))?;
        let mut length = None;
        let mut chunked = false;
        self.location = None;
        for line in lines {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&byte| byte == b':') else {
                continue;
            };
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            if name.eq_ignore_ascii_case(b"content-length") {
                length = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                if length.is_none() {
                    return Err(bad("bad Content-Length"));
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                chunked = ascii(value).to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case(b"location") {
                self.location = value
                    .rsplit(|&byte| byte == b'/')
                    .next()
                    .and_then(|id| std::str::from_utf8(id).ok()?.parse().ok());
            }
        }
        self.start = head_end + 4;
        self.body.clear();
        if chunked {
            loop {
                let line_end = self.line().await?;
                let size_text = &self.buffer[self.start..line_end];
                let size_text = size_text
                    .split(|&byte| byte == b';')
                    .next()
                    .unwrap_or_default()
                    .trim_ascii();
                let size = std::str::from_utf8(size_text)
                    .ok()
                    .and_then(|hex| usize::from_str_radix(hex, 16).ok())
                    .ok_or_else(|| bad("bad chunk size"))?;
                self.start = line_end + 2;
                if size == 0 {
                    // Trailers, up to an empty line.
                    loop {
                        let line_end = self.line().await?;
                        let empty = line_end == self.start;
                        self.start = line_end + 2;
                        if empty {
                            break;
                        }
                    }
                    break;
                }
                self.at_least(size + 2).await?;
                self.body
                    .extend_from_slice(&self.buffer[self.start..self.start + size]);
                self.start += size + 2;
            }
        } else if let Some(length) = length {
            self.at_least(length).await?;
            self.body
                .extend_from_slice(&self.buffer[self.start..self.start + length]);
            self.start += length;
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(status)
    }

    /// The id of the message the last answer created: its `Location`, else `"id"` in its body.
    fn created_id(&self) -> Option<u64> {
        self.location.or_else(|| {
            let at = find(&self.body, b"\"id\":")? + 5;
            let digits: Vec<u8> = self.body[at..]
                .iter()
                .copied()
                .skip_while(u8::is_ascii_whitespace)
                .take_while(u8::is_ascii_digit)
                .collect();
            std::str::from_utf8(&digits).ok()?.parse().ok()
        })
    }
}

fn ascii(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `"status"` number of a batch result line, at its top level (a nested `"status"`, such
/// as a message's, is skipped whatever the order of the keys).
fn top_level_status(line: &[u8]) -> Option<u16> {
    let mut depth = 0i32;
    let mut at = 0;
    while at < line.len() {
        match line[at] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth -= 1,
            b'"' => {
                let start = at + 1;
                at += 1;
                while at < line.len() && line[at] != b'"' {
                    at += if line[at] == b'\\' { 2 } else { 1 };
                }
                if depth == 1 && line.get(start..at) == Some(b"status") {
                    let rest = line.get(at + 1..)?.trim_ascii_start();
                    if let Some(value) = rest.strip_prefix(b":") {
                        let value = value.trim_ascii_start();
                        let digits = value.iter().take_while(|b| b.is_ascii_digit()).count();
                        if digits > 0 {
                            return std::str::from_utf8(&value[..digits]).ok()?.parse().ok();
                        }
                    }
                }
            }
            _ => {}
        }
        at += 1;
    }
    None
}

// ---------------------------------------------------------------------------------------------
// The run

#[derive(Clone, Copy)]
struct Window {
    from: Instant,
    until: Instant,
}

impl Window {
    /// Whether a connection starts another request: until the window ends, and in any case
    /// until it has had one counted (a batch can outlast the whole window).
    fn goes_on(&self, tally: &Tally) -> bool {
        Instant::now() < self.until || tally.latencies.is_empty()
    }
}

/// What one connection saw in the measured window.
#[derive(Default)]
struct Tally {
    /// Per counted request, µs.
    latencies: Vec<u32>,
    /// `--call stats`: per filter, µs.
    by_filter: [Vec<u32>; 5],
    /// `--call mixed`: counted requests per kind.
    kinds: [u64; 6],
    /// `--call batch`: lines answered 2xx, and the others by status (0: no status found).
    events: u64,
    line_statuses: BTreeMap<u16, u64>,
    /// Answers with another status than the call's, whole run, and the first body of each.
    statuses: BTreeMap<u16, (u64, String)>,
    first_start: Option<Instant>,
    last_done: Option<Instant>,
    error: Option<String>,
}

impl Tally {
    /// Counts the request if it started in the window; true if it did.
    fn record(&mut self, window: &Window, started: Instant, done: Instant) -> bool {
        if started < window.from {
            return false;
        }
        let micros = (done - started).as_micros().min(u128::from(u32::MAX)) as u32;
        self.latencies.push(micros);
        self.first_start.get_or_insert(started);
        self.last_done = Some(self.last_done.map_or(done, |last| last.max(done)));
        true
    }

    fn unexpected(&mut self, status: u16, body: &[u8]) {
        let entry = self.statuses.entry(status).or_insert_with(|| {
            let text = ascii(&body[..body.len().min(300)]);
            (0, text)
        });
        entry.0 += 1;
    }

    fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        for (mine, theirs) in self.by_filter.iter_mut().zip(other.by_filter) {
            mine.extend(theirs);
        }
        for (mine, theirs) in self.kinds.iter_mut().zip(other.kinds) {
            *mine += theirs;
        }
        self.events += other.events;
        for (status, count) in other.line_statuses {
            *self.line_statuses.entry(status).or_default() += count;
        }
        for (status, (count, body)) in other.statuses {
            self.statuses.entry(status).or_insert((0, body)).0 += count;
        }
        self.first_start = match (self.first_start, other.first_start) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_done = match (self.last_done, other.last_done) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if self.error.is_none() {
            self.error = other.error;
        }
    }
}

/// The requests of the run, shared by the connections.
enum Work {
    Send(Vec<Vec<u8>>),
    Mixed(Vec<MixedMessage>),
    Batch(Vec<Vec<u8>>),
    Stats(Vec<Vec<Vec<u8>>>),
}

async fn drive(
    work: Arc<Work>,
    target: Target,
    worker: usize,
    workers: usize,
    window: Window,
) -> Tally {
    let mut tally = Tally::default();
    let outcome = async {
        let mut connection = Connection::open(&target).await?;
        match &*work {
            Work::Send(sends) => {
                let mut next = worker * sends.len() / workers;
                while window.goes_on(&tally) {
                    let started = Instant::now();
                    let status = connection.call(&sends[next % sends.len()]).await?;
                    let done = Instant::now();
                    tally.record(&window, started, done);
                    if status != 201 {
                        tally.unexpected(status, &connection.body);
                    }
                    next += 1;
                }
            }
            Work::Mixed(messages) => {
                let mut next = worker * messages.len() / workers;
                let mut scratch = Vec::new();
                'run: loop {
                    let message = &messages[next % messages.len()];
                    next += 1;
                    let mut id = None;
                    let follow_ups = message.follow_ups.len();
                    for step in 0..1 + follow_ups + usize::from(message.outcome.is_some()) {
                        if !window.goes_on(&tally) {
                            break 'run;
                        }
                        let (kind, status) = if step == 0 {
                            (Kind::Sent, 201)
                        } else if step <= follow_ups {
                            let Some(id) = id else { continue };
                            let (kind, path, body) = &message.follow_ups[step - 1];
                            request(
                                &mut scratch,
                                "POST",
                                &format!("/v1/messages/{id}/{path}"),
                                body,
                            );
                            (*kind, 200)
                        } else {
                            (Kind::Outcome, 201)
                        };
                        let bytes: &[u8] = match step {
                            0 => &message.send,
                            _ if step <= follow_ups => &scratch,
                            _ => message.outcome.as_deref().expect("an outcome"),
                        };
                        let started = Instant::now();
                        let answered = connection.call(bytes).await?;
                        let done = Instant::now();
                        if tally.record(&window, started, done) {
                            tally.kinds[kind as usize] += 1;
                        }
                        if answered != status {
                            tally.unexpected(answered, &connection.body);
                        } else if step == 0 {
                            id = connection.created_id();
                            if id.is_none() {
                                return Err(bad("a 201 to a send without the message's id"));
                            }
                        }
                    }
                }
            }
            Work::Batch(bodies) => {
                let mut next = worker;
                while window.goes_on(&tally) {
                    let started = Instant::now();
                    let status = connection.call(&bodies[next % bodies.len()]).await?;
                    let done = Instant::now();
                    next += 1;
                    if status != 200 {
                        tally.unexpected(status, &connection.body);
                        tally.record(&window, started, done);
                        continue;
                    }
                    if !tally.record(&window, started, done) {
                        continue;
                    }
                    for line in connection.body.split(|&byte| byte == b'\n') {
                        if line.trim_ascii().is_empty() {
                            continue;
                        }
                        match top_level_status(line) {
                            Some(status) if (200..300).contains(&status) => tally.events += 1,
                            other => {
                                *tally.line_statuses.entry(other.unwrap_or(0)).or_default() += 1
                            }
                        }
                    }
                }
            }
            Work::Stats(requests) => {
                let mut next = worker * 37;
                while window.goes_on(&tally) {
                    let filter = next % FILTERS.len();
                    let variant = (next / FILTERS.len()) % requests[filter].len();
                    next += 1;
                    let started = Instant::now();
                    let status = connection.call(&requests[filter][variant]).await?;
                    let done = Instant::now();
                    if tally.record(&window, started, done) {
                        let micros = *tally.latencies.last().expect("just recorded");
                        tally.by_filter[filter].push(micros);
                    }
                    if status != 200 {
                        tally.unexpected(status, &connection.body);
                    }
                }
            }
        }
        Ok::<(), io::Error>(())
    }
    .await;
    if let Err(error) = outcome {
        tally.error = Some(format!("connection {worker}: {error}"));
    }
    tally
}

/// CPU time: of this thread (ns), and of the whole process (clock ticks of 10 ms).
fn cpu() -> (u64, u64) {
    let thread = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let process = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|text| {
            let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    (thread, process)
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(micros: u32) -> String {
    format!("{:.2} ms", f64::from(micros) / 1000.0)
}

fn main() {
    let args = args();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store_dir = dir.path().join("store");

    // The requests, and the store they need, before the server starts.
    let mut built = None;
    let work = match args.mode {
        Mode::Send => Work::Send(
            workload_messages(POOL_MESSAGES)
                .iter()
                .map(|calls| {
                    let mut out = Vec::new();
                    let body = format!("{{{}}}", fields(&calls[0]));
                    request(&mut out, "POST", "/v1/messages", body.as_bytes());
                    out
                })
                .collect(),
        ),
        Mode::Mixed => Work::Mixed(
            workload_messages(POOL_MESSAGES)
                .iter()
                .map(|calls| mixed_message(calls))
                .collect(),
        ),
        Mode::Batch => {
            // Distinct bodies for about a million lines; connections go round them, so a long run
            // repeats follow-ups (as a provider's retries would).
            let bodies = (1_000_000 / args.batch_lines).clamp(1, 100);
            let (bodies, sends) = batch_requests(args.batch_lines, bodies, args.messages + 1);
            built = Some(prefill(&store_dir, args.messages, &sends));
            Work::Batch(bodies)
        }
        Mode::Stats => Work::Stats(stats_requests(args.messages)),
    };
    if args.mode != Mode::Batch && args.messages > 0 {
        built = Some(prefill(&store_dir, args.messages, &[]));
    }
    if let Some(built) = built {
        eprintln!(
            "store pre-filled with {} messages of the reference workload{} in {:.1} s",
            args.messages,
            if args.mode == Mode::Batch {
                " and the sends the batch lines follow up on"
            } else {
                ""
            },
            built.as_secs_f64()
        );
    }

    let mut options = ServeOptions::new(&store_dir);
    options.sync = match args.sync.as_str() {
        "always" => SyncPolicy::Always,
        _ => SyncPolicy::Interval(Duration::from_millis(100)),
    };
    let socket = options.socket_path();
    let target = if args.transport == "tcp" {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let address = probe.local_addr().expect("its address");
        options.listen = Some(address);
        Target::Tcp(address)
    } else {
        Target::Unix(socket.clone())
    };
    let server_started = Instant::now();
    std::thread::spawn(move || serve(options).expect("the server runs"));
    let deadline = Instant::now() + Duration::from_secs(600);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    let server_ready = server_started.elapsed();

    // The client: this thread, one task per connection.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let work = Arc::new(work);
    let begin = Instant::now();
    let window = Window {
        from: begin + WARM_UP,
        until: begin + WARM_UP + Duration::from_secs_f64(args.seconds),
    };
    let (tally, cpu_used) = runtime.block_on(async {
        let meter = tokio::spawn(async move {
            tokio::time::sleep_until(window.from.into()).await;
            (cpu(), Instant::now())
        });
        let workers: Vec<_> = (0..args.connections)
            .map(|worker| {
                tokio::spawn(drive(
                    Arc::clone(&work),
                    target.clone(),
                    worker,
                    args.connections,
                    window,
                ))
            })
            .collect();
        let mut tally = Tally::default();
        for worker in workers {
            tally.merge(worker.await.expect("a connection's task"));
        }
        let (before, at) = meter.await.expect("the CPU meter");
        let (after, wall) = (cpu(), at.elapsed().as_secs_f64());
        let client = (after.0 - before.0) as f64 / 1e9 / wall;
        let process = (after.1 - before.1) as f64 / 100.0 / wall;
        (tally, (client, (process - client).max(0.0)))
    });

    let Tally {
        mut latencies,
        mut by_filter,
        kinds,
        events,
        line_statuses,
        statuses,
        first_start,
        last_done,
        error,
    } = tally;
    let elapsed = match (first_start, last_done) {
        (Some(first), Some(last)) => (last - first).as_secs_f64().max(1e-6),
        _ => 1e-6,
    };
    latencies.sort_unstable();
    let calls = latencies.len();
    let p = |p: f64| percentile(&latencies, p);
    let mut line = format!(
        "call {} transport {} sync {} connections {}",
        args.mode.name(),
        args.transport,
        args.sync,
        args.connections
    );
    match args.mode {
        Mode::Send | Mode::Mixed => {
            line += &format!(
                ": {calls} calls in {elapsed:.1} s = {:.0} calls/s; p50 {}, p99 {}, p99.9 {}",
                calls as f64 / elapsed,
                ms(p(0.5)),
                ms(p(0.99)),
                ms(p(0.999))
            );
            if args.mode == Mode::Mixed {
                let mix: Vec<String> = KINDS
                    .iter()
                    .zip(kinds)
                    .map(|(name, count)| format!("{name} {count}"))
                    .collect();
                line += &format!(" ({})", mix.join(", "));
            }
        }
        Mode::Batch => {
            let other: u64 = line_statuses.values().sum();
            line += &format!(
                " lines {}: {calls} batches, {events} lines applied in {elapsed:.1} s = {:.0} \
                 events/s; per batch p50 {}, p99 {}; lines not 2xx {other}",
                args.batch_lines,
                events as f64 / elapsed,
                ms(p(0.5)),
                ms(p(0.99)),
            );
            if other > 0 {
                line += &format!(" {line_statuses:?}");
            }
        }
        Mode::Stats => {
            line += &format!(
                " messages {}: {calls} calls in {elapsed:.1} s = {:.0} calls/s; p50 {} µs, \
                 p99 {} µs, p99.9 {} µs; by filter p50/p99 µs:",
                args.messages,
                calls as f64 / elapsed,
                p(0.5),
                p(0.99),
                p(0.999)
            );
            for (name, values) in FILTERS.iter().zip(by_filter.iter_mut()) {
                values.sort_unstable();
                line += &format!(
                    " {name} {}/{}",
                    percentile(values, 0.5),
                    percentile(values, 0.99)
                );
            }
        }
    }
    let unexpected: u64 = statuses.values().map(|(count, _)| count).sum();
    line += &format!(
        "; unexpected answers {unexpected}; cpu client {:.2} cores, server {:.2} cores",
        cpu_used.0, cpu_used.1
    );
    if let Some(built) = built {
        line += &format!(
            "; store built in {:.1} s, server ready in {:.1} s",
            built.as_secs_f64(),
            server_ready.as_secs_f64()
        );
    }
    println!("{line}");
    for (status, (count, body)) in &statuses {
        eprintln!("unexpected status {status} x{count}, first body: {body}");
    }
    if let Some(error) = &error {
        eprintln!("error: {error}");
    }
    // The server thread serves until the process ends; the store goes with the directory.
    drop(dir);
    let clean = error.is_none() && unexpected == 0 && calls > 0;
    std::process::exit(if clean { 0 } else { 1 });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_of_a_result_line_is_the_top_level_one() {
        let line = br#"{"kind":"x","line":1,"result":{"id":3,"status":"sent"},"status":201}"#;
        assert_eq!(top_level_status(line), Some(201));
        let line = br#"{"error":"bad \"status\": 7","line": 2, "status" : 400}"#;
        assert_eq!(top_level_status(line), Some(400));
        assert_eq!(top_level_status(br#"{"line":1,"kind":"status"}"#), None);
    }

    #[test]
    fn reads_chunked_and_sized_answers_on_one_connection() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (client, server) = UnixStream::pair().unwrap();
            let mut connection = Connection {
                stream: Stream::Unix(client),
                buffer: vec![0; 8],
                start: 0,
                end: 0,
                body: Vec::new(),
                location: None,
            };
            let server = Stream::Unix(server);
            server
                .write_all(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                      5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\nTrailer: t\r\n\r\n\
                      HTTP/1.1 201 Created\r\nlocation: /v1/messages/42\r\n\
                      Content-Length: 2\r\n\r\n{}",
                )
                .await
                .unwrap();
            assert_eq!(
                connection.call(b"GET / HTTP/1.1\r\n\r\n").await.unwrap(),
                200
            );
            assert_eq!(connection.body, b"hello, world");
            assert_eq!(
                connection.call(b"GET / HTTP/1.1\r\n\r\n").await.unwrap(),
                201
            );
            assert_eq!(connection.body, b"{}");
            assert_eq!(connection.created_id(), Some(42));
            assert_eq!((connection.start, connection.end), (0, 0));
        });
    }
}

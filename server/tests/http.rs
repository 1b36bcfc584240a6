//! The server end to end: the real `commlog-serve` binary on a temporary store, driven over
//! its Unix socket and TCP by a minimal HTTP/1.1 client.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const TOKEN: &str = "s3cret-token-for-tests";

struct Server {
    child: Child,
    dir: Option<tempfile::TempDir>,
    socket: PathBuf,
    tcp: Option<SocketAddr>,
    stderr: mpsc::Receiver<String>,
    /// The stderr lines up to the startup's last.
    startup: Vec<String>,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
        Server::start_in(dir, extra)
    }

    /// A server on `DIR/store` of a directory [`Server::start`] made, e.g. one whose server was
    /// killed.
    fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Server {
        Server::spawn(
            Command::new(env!("CARGO_BIN_EXE_commlog-serve")),
            dir,
            extra,
        )
    }

    /// A server whose files may not grow past `blocks` blocks (`ulimit -f` of `sh`), with
    /// `env` added to its environment.
    fn start_under_file_size_limit(blocks: u64, env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -f {blocks}; exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_commlog-serve"))
            .envs(env.iter().copied());
        Server::spawn(command, dir, &[])
    }

    fn spawn(mut command: Command, dir: tempfile::TempDir, extra: &[&str]) -> Server {
        let token_file = dir.path().join("token");
        let store = dir.path().join("store");
        let mut child = command
            .arg("--dir")
            .arg(&store)
            .arg("--token-file")
            .arg(&token_file)
            .args(extra)
            .env_remove("COMMLOG_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (send, stderr) = mpsc::channel();
        let pipe = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in pipe.lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            socket: store.join("commlog.sock"),
            dir: Some(dir),
            tcp: None,
            stderr,
            startup: Vec::new(),
        };
        // The sync line comes last.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let line = server
                .stderr
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("the server's startup lines");
            assert!(!line.contains(TOKEN), "the token shows in {line:?}");
            if let Some(rest) = line.strip_prefix("commlog serve: listening on http://") {
                server.tcp = Some(rest.split(' ').next().unwrap().parse().unwrap());
            }
            let last = line.starts_with("commlog serve: sync ");
            server.startup.push(line);
            if last {
                break;
            }
        }
        server
    }

    fn store(&self) -> PathBuf {
        self.dir.as_ref().unwrap().path().join("store")
    }

    fn unix(&self, method: &str, path: &str, body: Option<&[u8]>) -> (u16, Vec<u8>) {
        unix(&self.socket, method, path, body)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        call(&self.socket, method, path, body)
    }

    fn tcp(&self, method: &str, path: &str, token: Option<&str>) -> (u16, Vec<u8>) {
        let stream = TcpStream::connect(self.tcp.unwrap()).unwrap();
        request(stream, method, path, None, token)
    }

    /// SIGTERM, then the exit status and the rest of stderr.
    fn stop(mut self) -> (i32, Vec<String>, tempfile::TempDir) {
        let (code, lines) = self.terminate();
        (code, lines, self.dir.take().unwrap())
    }

    fn terminate(&mut self) -> (i32, Vec<String>) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        // The pipe closes when the server exits: every line is in.
        let lines = self.stderr.iter().collect();
        (status.code().unwrap_or(-1), lines)
    }
}

impl Server {
    /// SIGKILL: the server dies at once, in the middle of whatever it was doing.
    fn kill(mut self) -> tempfile::TempDir {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        self.dir.take().unwrap()
    }
}

/// A failed test does not leave its server running.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unix(socket: &Path, method: &str, path: &str, body: Option<&[u8]>) -> (u16, Vec<u8>) {
    let stream = UnixStream::connect(socket).unwrap();
    request(stream, method, path, body, None)
}

fn call(socket: &Path, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|body| serde_json::to_vec(&body).unwrap());
    let (status, response) = unix(socket, method, path, body.as_deref());
    let value = serde_json::from_slice(&response)
        .unwrap_or_else(|_| panic!("JSON: {}", String::from_utf8_lossy(&response)));
    (status, value)
}

/// [`call`] that answers `None` when the server is gone or closed the connection unanswered.
fn try_call(socket: &Path, method: &str, path: &str, body: Value) -> Option<(u16, Value)> {
    let mut stream = UnixStream::connect(socket).ok()?;
    let body = serde_json::to_vec(&body).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(&body).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let end = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")?;
    let status = std::str::from_utf8(&response[..end])
        .ok()?
        .split(' ')
        .nth(1)?
        .parse()
        .ok()?;
    Some((status, serde_json::from_slice(&response[end + 4..]).ok()?))
}

fn request(
    mut stream: impl Read + Write,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    token: Option<&str>,
) -> (u16, Vec<u8>) {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or_default();
    head.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) before reading a body and close: ignore a failed write.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let end = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("a response head: {}", String::from_utf8_lossy(&response)));
    let head = String::from_utf8(response[..end].to_vec()).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = response[end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut bytes: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = bytes.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&bytes[..line_end]).unwrap(), 16).unwrap();
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&bytes[line_end + 2..line_end + 2 + size]);
        bytes = &bytes[line_end + 4 + size..];
    }
}

/// Every file of the store but the socket, with its size.
fn files(dir: &Path) -> BTreeMap<String, u64> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "commlog.sock" {
            files.insert(name, entry.metadata().unwrap().len());
        }
    }
    files
}

fn sent(user: u64) -> Value {
    json!({"user_id": user, "channel": "sms", "message_type": "low_balance", "cost_micros": 50000,
           "sent_at": "2025-01-01T09:00:00Z"})
}

#[test]
fn tracks_reports_and_survives_a_restart() {
    let server = Server::start(&[]);
    let mode = std::fs::metadata(&server.socket).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let (status, health) = server.call("GET", "/healthz", None);
    assert_eq!((status, health), (200, json!({"status": "ok"})));

    let (status, message) = server.call("POST", "/v1/messages", Some(sent(123)));
    assert_eq!(status, 201, "{message}");
    assert_eq!(message["id"], 1);
    assert_eq!(message["cost_micros"], 50000);
    assert_eq!(message["sent_at"], "2025-01-01T09:00:00.000Z");
    let (status, dollars) = server.call(
        "POST",
        "/v1/messages",
        Some(json!({"user_id": 123, "channel": "EMAIL", "message_type": "weekly", "cost": 0.001})),
    );
    assert_eq!((status, &dollars["cost_micros"]), (201, &json!(1000)));

    let (status, message) = server.call(
        "POST",
        "/v1/messages/1/delivered",
        Some(json!({"at": "2025-01-01T09:00:02Z"})),
    );
    assert_eq!(status, 200, "{message}");
    assert_eq!(message["status"], "delivered");
    assert_eq!(message["delivered_at"], "2025-01-01T09:00:02.000Z");
    let (status, message) = server.call(
        "POST",
        "/v1/messages/1/actions",
        Some(json!({"action": "clicked_link", "at": "2025-01-01T09:05:00Z"})),
    );
    assert_eq!(
        (status, &message["action_taken"]),
        (200, &json!("clicked_link"))
    );
    let (status, opened) = server.call("POST", "/v1/messages/2/opened", None);
    assert_eq!((status, &opened["status"]), (200, &json!("opened")));
    let (status, failed) = server.call(
        "POST",
        "/v1/messages/2/failed",
        Some(json!({"reason": "bounced"})),
    );
    assert_eq!(
        (status, &failed["failure_reason"]),
        (200, &json!("bounced"))
    );
    let (status, outcome) = server.call(
        "POST",
        "/v1/outcomes",
        Some(
            json!({"user_id": 123, "outcome": "bill_paid", "amount_micros": 25000000,
                    "at": "2025-01-02T09:00:00Z"}),
        ),
    );
    assert_eq!(status, 201, "{outcome}");
    assert_eq!(outcome["amount_micros"], 25000000);
    let (status, budget) = server.call(
        "PUT",
        "/v1/budgets",
        Some(json!({"scope": "sms", "month": "2025-01", "amount": 1000.0})),
    );
    assert_eq!(status, 200, "{budget}");
    assert_eq!(
        budget,
        json!({"scope": "sms", "month": "2025-01", "amount_micros": 1000000000u64,
               "alert_percent": 90})
    );

    let (status, message) = server.call("GET", "/v1/messages/1", None);
    assert_eq!((status, &message["status"]), (200, &json!("clicked")));
    let (status, history) = server.call("GET", "/v1/users/123/history?limit=1", None);
    assert_eq!(status, 200);
    assert_eq!(history.as_array().unwrap().len(), 1);
    let (status, stats) = server.call("GET", "/v1/stats?user=123&channel=sms", None);
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["total_messages"], 1);
    assert_eq!(stats["delivered_count"], 1);
    assert_eq!(stats["total_cost_micros"], 50000);
    assert_eq!(stats["total_impact_micros"], 25000000);
    for path in [
        "/v1/engagement/123",
        "/v1/channels?period=month",
        "/v1/costs?month=2025-01",
        "/v1/impact?start=2025-01-01&end=2025-01-31",
        "/v1/info",
    ] {
        let (status, report) = server.call("GET", path, None);
        assert_eq!(status, 200, "{path}: {report}");
    }
    let (_, info) = server.call("GET", "/v1/info", None);
    assert_eq!(
        (&info["messages"], &info["sync"]),
        (&json!(2), &json!("always"))
    );

    let (code, lines, dir) = server.stop();
    assert_eq!(code, 0, "{lines:?}");
    let store_dir = dir.path().join("store");
    assert!(!store_dir.join("commlog.sock").exists());
    let store = commlog::Store::open_read_only(&store_dir).unwrap();
    let stats = store
        .get_communication_stats(&commlog::StatsFilter::new())
        .unwrap();
    assert_eq!((stats.total_messages, stats.delivered_count), (2, 2));
    assert_eq!(stats.outcome_count, 1);
    let failed = store.get_message(2).unwrap();
    assert_eq!(failed.failure_reason.as_deref(), Some("bounced"));
    assert_eq!(store.open_report().events, 8);
}

#[test]
fn refuses_bad_input_unknown_messages_and_big_bodies() {
    let server = Server::start(&[]);
    let (status, _) = server.call("POST", "/v1/messages", Some(sent(1)));
    assert_eq!(status, 201);
    let before = files(&server.store());
    let bad = [
        json!({"user_id": 1, "channel": "fax", "message_type": "x"}),
        json!({"user_id": 0, "channel": "sms", "message_type": "x"}),
        json!({"user_id": 1, "channel": "sms", "message_type": "x", "cost_micros": -1}),
        json!({"user_id": 1, "channel": "sms", "message_type": "x", "cost": 1.0, "cost_micros": 1}),
        json!({"user_id": 1, "channel": "sms", "message_type": "x", "sent_at": "yesterday"}),
        json!({"user_id": 1, "channel": "sms", "message_type": "x", "colour": "red"}),
        json!({"channel": "sms", "message_type": "x"}),
    ];
    for body in bad {
        let (status, error) = server.call("POST", "/v1/messages", Some(body.clone()));
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["kind"], "invalid_input", "{body}: {error}");
        assert!(error["error"].as_str().unwrap().len() > 5);
    }
    let (status, error) = server.unix("POST", "/v1/messages", Some(b"{not json"));
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&error));
    let (status, error) = server.call(
        "POST",
        "/v1/messages/1/delivered",
        Some(json!({"at": "2024-12-01T00:00:00Z"})),
    );
    assert_eq!((status, &error["kind"]), (400, &json!("invalid_input")));
    let (status, error) = server.call("GET", "/v1/stats?user=abc", None);
    assert_eq!(status, 400, "{error}");
    let (status, error) = server.call("GET", "/v1/stats?colour=red", None);
    assert_eq!(status, 400, "{error}");
    assert_eq!(
        files(&server.store()),
        before,
        "a refused call changed the files"
    );

    let (status, error) = server.call("POST", "/v1/messages/99/delivered", None);
    assert_eq!((status, &error["kind"]), (404, &json!("unknown_message")));
    let (status, error) = server.call("GET", "/v1/messages/99", None);
    assert_eq!((status, &error["kind"]), (404, &json!("unknown_message")));
    let (status, _) = server.call("GET", "/v1/nothing", None);
    assert_eq!(status, 404);

    let big = format!(
        r#"{{"user_id": 1, "channel": "sms", "message_type": "x", "pad": "{}"}}"#,
        "x".repeat(70 * 1024)
    );
    let (status, error) = server.unix("POST", "/v1/messages", Some(big.as_bytes()));
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&error));
    let error: Value = serde_json::from_slice(&error).unwrap();
    assert_eq!(error["kind"], "too_large");
    // The batch route takes far more.
    let line = serde_json::to_string(&sent(2)).unwrap();
    let lines = format!("{line}\n").repeat(600);
    assert!(lines.len() > 64 * 1024);
    let (status, _) = server.unix("POST", "/v1/batch", Some(lines.as_bytes()));
    assert_eq!(status, 200);
    assert_eq!(files(&server.store()).len(), before.len());

    let (code, lines, _dir) = server.stop();
    assert_eq!(code, 0, "{lines:?}");
}

/// The error of a call refused with 400, whose message names `field`.
fn refused_naming(server: &Server, method: &str, path: &str, body: Option<Value>, field: &str) {
    let (status, error) = server.call(method, path, body.clone());
    assert_eq!(status, 400, "{path} {body:?}: {error}");
    assert_eq!(error["kind"], "invalid_input", "{path} {body:?}: {error}");
    let message = error["error"].as_str().unwrap();
    assert!(
        message.contains(field),
        "{path} {body:?}: {message:?} names no {field}"
    );
}

#[test]
fn amounts_are_exact_or_refused_and_every_refusal_names_its_field() {
    let server = Server::start(&[]);
    let send = |cost_micros: i64| json!({"user_id": 1, "channel": "sms", "message_type": "x", "cost_micros": cost_micros});
    // Every amount of 15 digits, and larger ones an f64 of dollars carries, are kept exactly.
    for cost_micros in [
        999_999_999_999_999,
        1_000_000_000_000_000,
        2_000_000_000_000_000,
    ] {
        let (status, message) = server.call("POST", "/v1/messages", Some(send(cost_micros)));
        assert_eq!(status, 201, "{message}");
        assert_eq!(message["cost_micros"], cost_micros, "{message}");
    }
    let (status, outcome) = server.call(
        "POST",
        "/v1/outcomes",
        Some(json!({"user_id": 1, "outcome": "loss", "amount_micros": -123_456_789_012_345_i64})),
    );
    assert_eq!(status, 201, "{outcome}");
    assert_eq!(outcome["amount_micros"], -123_456_789_012_345_i64);
    let before = files(&server.store());
    // What dollars would round is refused, as are the signs the library refuses; the error
    // names the field given, not the dollars it stands for.
    for cost_micros in [8_834_510_632_916_015, -1] {
        refused_naming(
            &server,
            "POST",
            "/v1/messages",
            Some(send(cost_micros)),
            "cost_micros",
        );
    }
    refused_naming(
        &server,
        "POST",
        "/v1/outcomes",
        Some(json!({"user_id": 1, "outcome": "x", "amount_micros": 9_007_199_254_740_993_i64})),
        "amount_micros",
    );
    for amount_micros in [1_000_000_000_000_000_001_i64, 0, -5] {
        refused_naming(
            &server,
            "PUT",
            "/v1/budgets",
            Some(json!({"scope": "all", "month": "2025-01", "amount_micros": amount_micros})),
            "amount_micros",
        );
    }
    // A value of the wrong type or range is named by its field.
    let wrong_types = [
        (
            "/v1/messages",
            json!({"user_id": "1", "channel": "sms", "message_type": "x"}),
            "user_id",
        ),
        (
            "/v1/messages",
            json!({"user_id": 1, "channel": "sms", "message_type": "x", "cost_micros": 1.5}),
            "cost_micros",
        ),
        (
            "/v1/budgets",
            json!({"scope": "all", "month": "2025-01", "amount_micros": 1, "alert_percent": 300}),
            "alert_percent",
        ),
        ("/v1/messages/1/failed", json!({"reason": 7}), "reason"),
    ];
    for (path, body, field) in wrong_types {
        refused_naming(&server, "POST", path, Some(body), field);
    }
    // A query parameter given twice, and ids of 0.
    refused_naming(&server, "GET", "/v1/stats?user=1&user=2", None, "user");
    refused_naming(&server, "GET", "/v1/stats?user=0", None, "user");
    refused_naming(&server, "GET", "/v1/messages/0", None, "message id");
    refused_naming(
        &server,
        "POST",
        "/v1/messages/0/delivered",
        None,
        "message id",
    );
    refused_naming(&server, "GET", "/v1/users/0/history", None, "user");
    refused_naming(&server, "GET", "/v1/users/1/history?limit=0", None, "limit");
    // A batch line that gives the other follow-up's field is refused, not half-read.
    let lines = [
        json!({"call": "failed", "message_id": 1, "reason": "x", "action": "clicked"}),
        json!({"call": "action", "message_id": 1, "action": "clicked", "reason": "x"}),
    ];
    for line in lines {
        let (status, response) =
            server.unix("POST", "/v1/batch", Some(line.to_string().as_bytes()));
        assert_eq!(status, 200);
        let result: Value = serde_json::from_slice(&response).unwrap();
        assert_eq!(result["status"], 400, "{line}: {result}");
        let other = if line["call"] == "failed" {
            "action"
        } else {
            "reason"
        };
        assert!(
            result["error"].as_str().unwrap().contains(other),
            "{result}"
        );
    }
    assert_eq!(
        files(&server.store()),
        before,
        "a refused call changed the files"
    );
    let (code, lines, _dir) = server.stop();
    assert_eq!(code, 0, "{lines:?}");
}

#[test]
fn tcp_needs_the_token() {
    let server = Server::start(&["--listen", "127.0.0.1:0", "--sync", "interval"]);
    let (status, body) = server.tcp("GET", "/v1/info", None);
    assert_eq!(status, 401);
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["kind"], "unauthorized");
    assert!(!String::from_utf8_lossy(&body).contains(TOKEN));
    let (status, _) = server.tcp("GET", "/v1/info", Some("wrong"));
    assert_eq!(status, 401);
    let (status, body) = server.tcp("GET", "/v1/info", Some(TOKEN));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let info: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (&info["sync"], &info["sync_interval_ms"]),
        (&json!("interval"), &json!(100))
    );
    let (status, _) = server.tcp("GET", "/healthz", None);
    assert_eq!(status, 200);
    // The Unix socket needs none.
    let (status, _) = server.call("GET", "/v1/info", None);
    assert_eq!(status, 200);
    let (code, lines, _dir) = server.stop();
    assert_eq!(code, 0, "{lines:?}");
    assert!(lines.iter().all(|line| !line.contains(TOKEN)));
}

#[test]
fn refuses_a_public_address_without_a_token_and_a_second_server() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_commlog-serve"))
        .args(["--listen", "0.0.0.0:0", "--dir"])
        .arg(dir.path().join("store"))
        .env_remove("COMMLOG_TOKEN")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a loopback address"));

    // A store whose parent is missing is a user error.
    let output = Command::new(env!("CARGO_BIN_EXE_commlog-serve"))
        .arg("--dir")
        .arg(dir.path().join("missing/store"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));

    // A second server on the store waits up to --wait for the first, then is refused.
    let server = Server::start(&[]);
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_commlog-serve"))
        .arg("--dir")
        .arg(server.store())
        .args(["--wait", "0.3"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("locked"));
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Another store on the same socket is refused, and the socket left alone.
    let output = Command::new(env!("CARGO_BIN_EXE_commlog-serve"))
        .arg("--dir")
        .arg(dir.path().join("other"))
        .arg("--socket")
        .arg(&server.socket)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("already listening"));
    assert!(server.socket.exists());
    // So is a path that is not a socket, which is left as it was.
    let taken = dir.path().join("taken");
    std::fs::write(&taken, "another program's file").unwrap();
    let store_file = server.store().join("00000000000000000001.log");
    let store_bytes = std::fs::read(&store_file).unwrap();
    for path in [&taken, &store_file, &dir.path().to_path_buf()] {
        let mut refused = Command::new(env!("CARGO_BIN_EXE_commlog-serve"))
            .arg("--dir")
            .arg(dir.path().join("other"))
            .arg("--socket")
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = refused.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                refused.kill().unwrap();
                panic!("a server started on {path:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        refused
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(status.code(), Some(1), "{path:?}: {stderr}");
        assert!(stderr.contains("not a socket"), "{path:?}: {stderr}");
    }
    assert_eq!(std::fs::read(&taken).unwrap(), b"another program's file");
    assert_eq!(std::fs::read(&store_file).unwrap(), store_bytes);
    // The socket has its mode from the start, and the private directory it was bound in is
    // gone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::symlink_metadata(&server.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let left: Vec<_> = std::fs::read_dir(server.store())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".cl"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // The first one still answers.
    let (status, _) = server.call("GET", "/healthz", None);
    assert_eq!(status, 200);
    let (code, lines, _dir) = server.stop();
    assert_eq!(code, 0, "{lines:?}");
}

#[test]
fn batch_applies_every_good_line() {
    let server = Server::start(&[]);
    let body = [
        json!({"call": "sent", "user_id": 7, "channel": "push", "message_type": "nudge"})
            .to_string(),
        json!({"call": "delivered", "message_id": 1}).to_string(),
        "{broken".to_owned(),
        json!({"call": "opened", "message_id": 42}).to_string(),
        json!({"call": "action", "message_id": 1, "action": "clicked"}).to_string(),
        String::new(),
        json!({"call": "outcome", "user_id": 7, "outcome": "saved", "amount": 5.5}).to_string(),
        json!({"call": "budget", "scope": "all", "month": "2025-02", "amount_micros": 1000000})
            .to_string(),
        // A follow-up by external id of a send earlier in the same batch.
        json!({"call": "sent", "user_id": 8, "channel": "sms", "message_type": "nudge",
               "external_id": "SMbatch1"})
        .to_string(),
        json!({"call": "failed", "external_id": "SMbatch1", "reason": "undelivered"}).to_string(),
        json!({"call": "delivered", "external_id": "SMnever"}).to_string(),
        json!({"call": "delivered", "message_id": 2, "external_id": "SMbatch1"}).to_string(),
        // A repeated send is the same message.
        json!({"call": "sent", "user_id": 8, "channel": "sms", "message_type": "nudge",
               "external_id": "SMbatch1"})
        .to_string(),
    ]
    .join("\n");
    let (status, response) = server.unix("POST", "/v1/batch", Some(body.as_bytes()));
    assert_eq!(status, 200);
    let results: Vec<Value> = String::from_utf8(response)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let statuses: Vec<_> = results
        .iter()
        .map(|result| {
            (
                result["line"].as_u64().unwrap(),
                result["status"].as_u64().unwrap(),
                result["id"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            (1, 201, Some(1)),
            (2, 200, Some(1)),
            (3, 400, None),
            (4, 404, None),
            (5, 200, Some(1)),
            (7, 201, None),
            (8, 200, None),
            (9, 201, Some(2)),
            (10, 200, Some(2)),
            (11, 404, None),
            (12, 400, None),
            (13, 201, Some(2)),
        ]
    );
    assert_eq!(results[2]["kind"], "invalid_input");
    assert_eq!(results[3]["kind"], "unknown_message");
    let (_, stats) = server.call("GET", "/v1/stats", None);
    assert_eq!(
        (
            &stats["total_messages"],
            &stats["clicked_count"],
            &stats["failed_count"],
            &stats["outcome_count"]
        ),
        (&json!(2), &json!(1), &json!(1), &json!(1))
    );
    let (code, lines, _dir) = server.stop();
    assert_eq!(code, 0, "{lines:?}");
}

#[test]
fn messages_by_external_id_are_found_and_followed_up() {
    let server = Server::start(&[]);
    let sid = "SM0123456789abcdef0123456789abcdef";
    let mut send = sent(5);
    send["external_id"] = json!(sid);
    let (status, message) = server.call("POST", "/v1/messages", Some(send));
    assert_eq!(status, 201, "{message}");
    let path = format!("/v1/messages/by-external-id/{sid}");
    let (status, found) = server.call("GET", &path, None);
    assert_eq!((status, &found["id"]), (200, &message["id"]));
    let (status, opened) = server.call("POST", &format!("{path}/opened"), None);
    assert_eq!((status, &opened["status"]), (200, &json!("opened")));
    let (status, clicked) = server.call(
        "POST",
        &format!("{path}/actions"),
        Some(json!({"action": "clicked_link"})),
    );
    assert_eq!((status, &clicked["status"]), (200, &json!("clicked")));
    let (status, error) = server.call("GET", "/v1/messages/by-external-id/SMnone", None);
    assert_eq!((status, &error["kind"]), (404, &json!("unknown_message")));
    // And the other way: the external id a message was sent with.
    let id = message["id"].as_u64().unwrap();
    let (status, of) = server.call("GET", &format!("/v1/messages/{id}/external-id"), None);
    assert_eq!((status, of), (200, json!({"id": id, "external_id": sid})));
    let (status, error) = server.call("GET", "/v1/messages/99/external-id", None);
    assert_eq!((status, &error["kind"]), (404, &json!("unknown_message")));
    let (status, error) = server.call("POST", "/v1/messages/by-external-id/SMnone/delivered", None);
    assert_eq!((status, &error["kind"]), (404, &json!("unknown_message")));
    let (status, _) = server.call("POST", &format!("{path}/archived"), None);
    assert_eq!(status, 404);
    // The same external id with other fields is a conflict naming both.
    let mut other = sent(6);
    other["external_id"] = json!(sid);
    let (status, error) = server.call("POST", "/v1/messages", Some(other));
    assert_eq!(
        (status, &error["kind"]),
        (409, &json!("conflict")),
        "{error}"
    );
    let text = error["error"].as_str().unwrap();
    assert!(text.contains(sid) && text.contains("user"), "{text}");
    // A route without the method.
    let (status, error) = server.call("DELETE", &path, None);
    assert_eq!(
        (status, &error["kind"]),
        (405, &json!("method_not_allowed"))
    );
    // A message sent without one has none.
    let (_, plain) = server.call("POST", "/v1/messages", Some(sent(7)));
    let plain_id = plain["id"].as_u64().unwrap();
    let (status, of) = server.call("GET", &format!("/v1/messages/{plain_id}/external-id"), None);
    assert_eq!(
        (status, of),
        (200, json!({"id": plain_id, "external_id": null}))
    );
    let (status, stats) = server.call("GET", "/v1/stats", None);
    assert_eq!((status, &stats["total_messages"]), (200, &json!(2)));
    let (code, lines, _dir) = server.stop();
    assert_eq!(code, 0, "{lines:?}");
}

#[test]
fn concurrent_clients_lose_nothing() {
    const THREADS: u64 = 8;
    const CALLS: u64 = 40;
    let server = Server::start(&[]);
    let socket = server.socket.clone();
    let socket = socket.as_path();
    let ids: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                scope.spawn(move || {
                    let mut ids = Vec::new();
                    for _ in 0..CALLS {
                        let (status, message) =
                            call(socket, "POST", "/v1/messages", Some(sent(thread + 1)));
                        assert_eq!(status, 201, "{message}");
                        let id = message["id"].as_u64().unwrap();
                        let (status, _) = call(
                            socket,
                            "POST",
                            &format!("/v1/messages/{id}/delivered"),
                            None,
                        );
                        assert_eq!(status, 200);
                        ids.push(id);
                    }
                    ids
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap())
            .collect()
    });
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len() as u64, THREADS * CALLS);
    let (code, lines, dir) = server.stop();
    assert_eq!(code, 0, "{lines:?}");
    let store = commlog::Store::open_read_only(dir.path().join("store")).unwrap();
    let stats = store
        .get_communication_stats(&commlog::StatsFilter::new())
        .unwrap();
    assert_eq!(stats.total_messages, THREADS * CALLS);
    assert_eq!(stats.delivered_count, THREADS * CALLS);
    for id in ids {
        store.get_message(id).unwrap();
    }
}

/// A server opened on a store with a snapshot decodes the snapshot's messages and users on a
/// thread of its own while it answers (saying so on stderr once done), answers as the library
/// does on the same store before and after that, goes on tracking, and its close keeps every
/// call.
#[test]
fn a_server_decodes_its_snapshot_while_it_answers() {
    const USERS: u64 = 400;
    const MESSAGES: u64 = 40_000;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
    let store_dir = dir.path().join("store");
    let options = commlog::Options {
        sync: commlog::SyncPolicy::Never,
        ..commlog::Options::default()
    };
    let store = commlog::Store::open_with(&store_dir, options).unwrap();
    let start = chrono::DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z").unwrap();
    for n in 0..MESSAGES {
        let at = start + chrono::Duration::seconds(n as i64 * 7);
        let channel = [commlog::Channel::Sms, commlog::Channel::Email][n as usize % 2];
        let user = n * 7919 % USERS + 1;
        let message =
            (store.track_message_sent_at(user, channel, "bill_due", 0.01, at.into())).unwrap();
        if n % 3 == 0 {
            store.track_message_delivered(message.id, None).unwrap();
        }
    }
    store.snapshot().unwrap().unwrap();
    store.close().unwrap();
    let library = commlog::Store::open_read_only(&store_dir).unwrap();
    let expected_stats = library
        .get_communication_stats(&commlog::StatsFilter::new())
        .unwrap();
    let histories = |server: &Server| -> Vec<Value> {
        [1, USERS / 2, USERS]
            .iter()
            .map(|user| {
                let path = format!("/v1/users/{user}/history?limit=500");
                let (status, history) = server.call("GET", &path, None);
                assert_eq!(status, 200, "{history}");
                history
            })
            .collect()
    };
    let stats = |server: &Server| {
        let (status, stats) = server.call("GET", "/v1/stats", None);
        assert_eq!(status, 200, "{stats}");
        (
            stats["total_messages"].clone(),
            stats["delivered_count"].clone(),
        )
    };
    drop(library);

    let server = Server::start_in(dir, &[]);
    let first = histories(&server);
    assert_eq!(
        first
            .iter()
            .map(|h| h.as_array().unwrap().len())
            .sum::<usize>() as u64,
        3 * MESSAGES / USERS
    );
    let expected = (
        json!(expected_stats.total_messages),
        json!(expected_stats.delivered_count),
    );
    assert_eq!(stats(&server), expected);
    // The decoding thread starts before the server listens, so its line may come among the
    // startup's.
    let is_decoded = |line: &str| {
        line.starts_with("commlog serve: the snapshot's messages, users and indexes decoded (")
    };
    if !server.startup.iter().any(|line| is_decoded(line)) {
        let line = server
            .stderr
            .recv_timeout(Duration::from_secs(60))
            .expect("the line saying the snapshot is decoded");
        assert!(is_decoded(&line), "{line}");
    }
    assert_eq!(histories(&server), first);
    assert_eq!(stats(&server), expected);
    let (status, message) = server.call("POST", "/v1/messages", Some(sent(1)));
    assert_eq!(status, 201, "{message}");
    assert_eq!(message["id"], MESSAGES + 1);
    let (code, lines, dir) = server.stop();
    assert_eq!(code, 0, "{lines:?}");
    let store = commlog::Store::open_read_only(dir.path().join("store")).unwrap();
    assert_eq!(store.get_message(MESSAGES + 1).unwrap().user_id.0, 1);
    let stats = store
        .get_communication_stats(&commlog::StatsFilter::new())
        .unwrap();
    assert_eq!(stats.total_messages, MESSAGES + 1);
}

#[test]
fn sigterm_under_load_keeps_every_acknowledged_event() {
    let server = Server::start(&[]);
    let socket = server.socket.clone();
    let socket = socket.as_path();
    let (code, lines, dir, acknowledged) = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..4u64)
            .map(|client| {
                scope.spawn(move || {
                    let mut acknowledged = Vec::new();
                    while let Some((status, message)) =
                        try_call(socket, "POST", "/v1/messages", sent(client + 1))
                    {
                        assert_eq!(status, 201, "{message}");
                        acknowledged.push(message["id"].as_u64().unwrap());
                    }
                    acknowledged
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let (code, lines, dir) = server.stop();
        let acknowledged: Vec<u64> = clients
            .into_iter()
            .flat_map(|client| client.join().unwrap())
            .collect();
        (code, lines, dir, acknowledged)
    });
    assert_eq!(code, 0, "{lines:?}");
    assert!(!acknowledged.is_empty());
    let store = commlog::Store::open_read_only(dir.path().join("store")).unwrap();
    for id in &acknowledged {
        store.get_message(*id).unwrap();
    }
    let stats = store
        .get_communication_stats(&commlog::StatsFilter::new())
        .unwrap();
    // Calls in flight at the signal finish: at most one per client is appended unanswered.
    assert!(stats.total_messages >= acknowledged.len() as u64);
    assert!(stats.total_messages <= acknowledged.len() as u64 + 4);
}

#[test]
fn a_stuck_client_does_not_hold_the_shutdown() {
    let server = Server::start(&["--shutdown-grace-ms", "300"]);
    let mut stuck = UnixStream::connect(&server.socket).unwrap();
    stuck
        .write_all(b"POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();
    // The server has read the head and waits for the body.
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let (code, lines, _dir) = server.stop();
    assert_eq!(code, 0, "{lines:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(lines.iter().any(|line| line.contains("cut")), "{lines:?}");
}

/// Set in the environment of the processes [`eight_processes_writing_at_once_lose_nothing`]
/// starts: the socket they call.
const CLIENT_SOCKET: &str = "COMMLOG_TEST_CLIENT_SOCKET";
/// Their user id; they wait for the file [`CLIENT_GO`] names before the first call.
const CLIENT_USER: &str = "COMMLOG_TEST_CLIENT_USER";
const CLIENT_GO: &str = "COMMLOG_TEST_CLIENT_GO";
const PROCESS_CALLS: u64 = 100;

/// The client process: `PROCESS_CALLS` sends, each followed by its delivery, every id
/// acknowledged printed as `<ack ID>`.
fn client_process(socket: &str) {
    let socket = Path::new(socket);
    let user: u64 = std::env::var(CLIENT_USER).unwrap().parse().unwrap();
    let go = PathBuf::from(std::env::var(CLIENT_GO).unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !go.exists() {
        assert!(Instant::now() < deadline, "no go");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut out = std::io::stdout().lock();
    for _ in 0..PROCESS_CALLS {
        let (status, message) = call(socket, "POST", "/v1/messages", Some(sent(user)));
        assert_eq!(status, 201, "{message}");
        assert_eq!(message["user_id"], user, "{message}");
        let id = message["id"].as_u64().unwrap();
        let (status, message) = call(
            socket,
            "POST",
            &format!("/v1/messages/{id}/delivered"),
            None,
        );
        assert_eq!(status, 200, "{message}");
        assert_eq!(
            (&message["id"], &message["status"]),
            (&json!(id), &json!("delivered"))
        );
        writeln!(out, "<ack {id}>").unwrap();
    }
    out.flush().unwrap();
}

#[test]
fn eight_processes_writing_at_once_lose_nothing() {
    if let Ok(socket) = std::env::var(CLIENT_SOCKET) {
        client_process(&socket);
        return;
    }
    const PROCESSES: u64 = 8;
    let server = Server::start(&[]);
    let go = server.dir.as_ref().unwrap().path().join("go");
    let clients: Vec<Child> = (1..=PROCESSES)
        .map(|user| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "eight_processes_writing_at_once_lose_nothing",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(CLIENT_SOCKET, &server.socket)
                .env(CLIENT_USER, user.to_string())
                .env(CLIENT_GO, &go)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Every process is started: they all call at once.
    std::fs::write(&go, b"").unwrap();
    let mut acknowledged: BTreeMap<u64, u64> = BTreeMap::new();
    for (user, client) in (1..=PROCESSES).zip(clients) {
        let output = client.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "client {user}: {:?}\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let ids: Vec<u64> = stdout
            .split("<ack ")
            .skip(1)
            .map(|rest| rest.split('>').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(ids.len() as u64, PROCESS_CALLS, "client {user}: {stdout}");
        for id in ids {
            assert_eq!(
                acknowledged.insert(id, user),
                None,
                "id {id} acknowledged twice"
            );
        }
    }
    let total = PROCESSES * PROCESS_CALLS;
    assert_eq!(acknowledged.len() as u64, total);
    let (code, lines, dir) = server.stop();
    assert_eq!(code, 0, "{lines:?}");
    let store = commlog::Store::open_read_only(dir.path().join("store")).unwrap();
    for (&id, &user) in &acknowledged {
        let message = store.get_message(id).unwrap();
        assert_eq!(message.user_id, commlog::UserId(user), "{message:?}");
        assert_eq!(message.status, commlog::Status::Delivered, "{message:?}");
    }
    let stats = store
        .get_communication_stats(&commlog::StatsFilter::new())
        .unwrap();
    assert_eq!(
        (stats.total_messages, stats.delivered_count),
        (total, total)
    );
    assert_eq!(stats.total_cost.micros(), i128::from(total) * 50000);
    // One event per call: nothing appended twice, nothing unanswered.
    assert_eq!(store.open_report().events, 2 * total);
}

/// What a client of [`kill_9_under_load_then_restart_keeps_every_acknowledged_call`] was
/// answered 2xx.
#[derive(Default)]
struct Acknowledged {
    /// Message id, user, external id.
    sent: Vec<(u64, u64, Option<String>)>,
    delivered: Vec<u64>,
    clicked: Vec<u64>,
}

/// Sends (every other one with an external id), each followed by its delivery and every third
/// by a click, until the server is gone.
fn load_client(socket: &Path, client: u64, sends: &std::sync::atomic::AtomicU64) -> Acknowledged {
    let user = client + 1;
    let mut acknowledged = Acknowledged::default();
    for n in 1.. {
        let external_id = (n % 2 == 0).then(|| format!("load-{client}-{n}"));
        let mut body = sent(user);
        if let Some(external_id) = &external_id {
            body["external_id"] = json!(external_id);
        }
        let Some((status, message)) = try_call(socket, "POST", "/v1/messages", body) else {
            break;
        };
        assert_eq!(status, 201, "{message}");
        let id = message["id"].as_u64().unwrap();
        acknowledged.sent.push((id, user, external_id));
        sends.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = format!("/v1/messages/{id}/delivered");
        let Some((status, message)) = try_call(socket, "POST", &path, json!({})) else {
            break;
        };
        assert_eq!((status, &message["status"]), (200, &json!("delivered")));
        acknowledged.delivered.push(id);
        if n % 3 == 0 {
            let path = format!("/v1/messages/{id}/actions");
            let body = json!({"action": "clicked_link"});
            let Some((status, message)) = try_call(socket, "POST", &path, body) else {
                break;
            };
            assert_eq!((status, &message["status"]), (200, &json!("clicked")));
            acknowledged.clicked.push(id);
        }
    }
    acknowledged
}

#[test]
fn kill_9_under_load_then_restart_keeps_every_acknowledged_call() {
    const CLIENTS: u64 = 4;
    let server = Server::start(&[]);
    let socket = server.socket.clone();
    let socket = socket.as_path();
    let sends = std::sync::atomic::AtomicU64::new(0);
    let sends = &sends;
    let (dir, acknowledged) = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| scope.spawn(move || load_client(socket, client, sends)))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        while sends.load(std::sync::atomic::Ordering::Relaxed) < 300 {
            assert!(Instant::now() < deadline, "the load did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        let dir = server.kill();
        let acknowledged: Vec<Acknowledged> = clients
            .into_iter()
            .map(|client| client.join().unwrap())
            .collect();
        (dir, acknowledged)
    });
    let acknowledged_sends: usize = acknowledged.iter().map(|a| a.sent.len()).sum();
    let acknowledged_calls: usize = acknowledged
        .iter()
        .map(|a| a.sent.len() + a.delivered.len() + a.clicked.len())
        .sum();

    let server = Server::start_in(dir, &[]);
    let (status, info) = server.call("GET", "/v1/info", None);
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["sync"], "always", "{info}");
    // At most one call per client was in flight, appended or not, when the server died.
    let messages = info["messages"].as_u64().unwrap();
    assert!(
        (acknowledged_sends as u64..=acknowledged_sends as u64 + CLIENTS).contains(&messages),
        "{acknowledged_sends} sends acknowledged: {info}"
    );
    let events = info["open_report"]["events"].as_u64().unwrap();
    assert!(
        (acknowledged_calls as u64..=acknowledged_calls as u64 + CLIENTS).contains(&events),
        "{acknowledged_calls} calls acknowledged: {info}"
    );

    let mut stored: BTreeMap<u64, Value> = BTreeMap::new();
    for user in 1..=CLIENTS {
        let (status, history) = server.call(
            "GET",
            &format!("/v1/users/{user}/history?limit=1000000"),
            None,
        );
        assert_eq!(status, 200, "{history}");
        for message in history.as_array().unwrap() {
            stored.insert(message["id"].as_u64().unwrap(), message.clone());
        }
    }
    assert_eq!(stored.len() as u64, messages);
    for client in &acknowledged {
        for (id, user, _) in &client.sent {
            let message = stored
                .get(id)
                .unwrap_or_else(|| panic!("message {id} lost"));
            assert_eq!(message["user_id"], *user, "{message}");
        }
        for id in &client.delivered {
            assert!(stored[id]["delivered_at"].is_string(), "{}", stored[id]);
        }
        for id in &client.clicked {
            let message = &stored[id];
            assert_eq!(
                (&message["status"], &message["action_taken"]),
                (&json!("clicked"), &json!("clicked_link")),
                "{message}"
            );
        }
    }

    // The same send again with an acknowledged external id is the same message, appended once.
    let mut resent = 0;
    for client in &acknowledged {
        for (id, user, external_id) in &client.sent {
            let Some(external_id) = external_id else {
                continue;
            };
            let mut body = sent(*user);
            body["external_id"] = json!(external_id);
            let (status, message) = server.call("POST", "/v1/messages", Some(body));
            assert_eq!((status, &message["id"]), (201, &json!(id)), "{message}");
            resent += 1;
        }
    }
    assert!(resent > 0);
    let (_, info) = server.call("GET", "/v1/info", None);
    assert_eq!(info["messages"], messages, "{info}");

    // And it takes new calls.
    let (status, message) = server.call("POST", "/v1/messages", Some(sent(9)));
    assert_eq!(status, 201, "{message}");
    let id = message["id"].as_u64().unwrap();
    assert!(id > *stored.keys().last().unwrap(), "{message}");
    let path = format!("/v1/messages/{id}/delivered");
    let (status, message) = server.call("POST", &path, None);
    assert_eq!((status, &message["status"]), (200, &json!("delivered")));
    let (code, lines, dir) = server.stop();
    assert_eq!(code, 0, "{lines:?}");
    let store = commlog::Store::open_read_only(dir.path().join("store")).unwrap();
    assert_eq!(
        store.get_message(id).unwrap().status,
        commlog::Status::Delivered
    );
    assert_eq!(store.open_report().events, events + 2);
}

const RESEND_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A Resend (Svix-signed) `email.delivered` for `email_id`: its headers and body.
fn resend_delivered(email_id: &str) -> (String, Vec<u8>) {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use hmac::{KeyInit, Mac};
    let body = json!({"type": "email.delivered", "created_at": "2025-01-01T09:00:05Z",
                      "data": {"email_id": email_id}})
    .to_string();
    let timestamp = chrono::Utc::now().timestamp();
    let key = STANDARD
        .decode(RESEND_SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(format!("msg_1.{timestamp}.{body}").as_bytes());
    let signature = STANDARD.encode(mac.finalize().into_bytes());
    let head = format!(
        "svix-id: msg_1\r\nsvix-timestamp: {timestamp}\r\nsvix-signature: v1,{signature}\r\n"
    );
    (head, body.into_bytes())
}

/// A POST with extra header lines; the status and the body as JSON.
fn post_with_headers(socket: &Path, path: &str, headers: &str, body: &[u8]) -> (u16, Value) {
    let mut stream = UnixStream::connect(socket).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&response[..end])
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    (
        status,
        serde_json::from_slice(&response[end + 4..]).unwrap(),
    )
}

/// A 503 error of one of `kinds` as the API sends it: `{"error", "kind"}`.
fn assert_storage_error(what: &str, kinds: &[&str], status: u16, error: &Value) {
    assert_eq!(status, 503, "{what}: {error}");
    assert!(
        kinds.contains(&error["kind"].as_str().unwrap_or("")),
        "{what}: {error}"
    );
    assert!(
        error["error"].as_str().is_some_and(|text| !text.is_empty()),
        "{what}: {error}"
    );
    assert_eq!(error.as_object().unwrap().len(), 2, "{what}: {error}");
}

#[test]
fn a_write_past_the_file_size_limit_poisons_the_store_writes_503_reads_200() {
    let server =
        Server::start_under_file_size_limit(16, &[("COMMLOG_RESEND_SECRET", RESEND_SECRET)]);
    let mut first = sent(1);
    first["external_id"] = json!("re_poisoned");
    let (status, message) = server.call("POST", "/v1/messages", Some(first));
    assert_eq!((status, &message["id"]), (201, &json!(1)), "{message}");
    let mut acknowledged = 1u64;
    let (status, error) = loop {
        let (status, answer) = server.call("POST", "/v1/messages", Some(sent(2)));
        if status != 201 {
            break (status, answer);
        }
        acknowledged += 1;
        assert_eq!(answer["id"], acknowledged, "{answer}");
        assert!(acknowledged < 100_000, "no write ran into the limit");
    };
    // The call that ran into the limit is refused, never acknowledged.
    assert_storage_error("the first failed write", &["io", "storage"], status, &error);
    assert!(
        error["error"].as_str().unwrap().contains("File too large"),
        "{error}"
    );

    let mut resent = sent(1);
    resent["external_id"] = json!("re_poisoned");
    let writes: [(&str, &str, Value); 9] = [
        ("POST", "/v1/messages", sent(3)),
        // Even the send that would only return the message its external id created.
        ("POST", "/v1/messages", resent),
        ("POST", "/v1/messages/1/delivered", json!({})),
        ("POST", "/v1/messages/1/opened", json!({})),
        (
            "POST",
            "/v1/messages/1/failed",
            json!({"reason": "bounced"}),
        ),
        (
            "POST",
            "/v1/messages/1/actions",
            json!({"action": "clicked_link"}),
        ),
        (
            "POST",
            "/v1/outcomes",
            json!({"user_id": 1, "outcome": "bill_paid", "amount_micros": 1}),
        ),
        (
            "PUT",
            "/v1/budgets",
            json!({"scope": "sms", "month": "2025-01", "amount_micros": 1}),
        ),
        (
            "POST",
            "/v1/budgets",
            json!({"scope": "all", "month": "2025-01", "amount_micros": 1}),
        ),
    ];
    // Every later write fails the same way (the store is poisoned), however often it is
    // retried.
    for _ in 0..2 {
        for (method, path, body) in &writes {
            let (status, error) = server.call(method, path, Some(body.clone()));
            assert_storage_error(&format!("{method} {path}"), &["storage"], status, &error);
        }
        let (headers, body) = resend_delivered("re_poisoned");
        let (status, error) =
            post_with_headers(&server.socket, "/v1/webhooks/resend", &headers, &body);
        assert_storage_error("the Resend webhook", &["storage"], status, &error);
        // A batch answers 200 with each line's own status.
        let lines = format!(
            "{}\n{}\n",
            json!({"call": "sent", "user_id": 4, "channel": "sms", "message_type": "x"}),
            json!({"call": "delivered", "message_id": 1})
        );
        let (status, response) = server.unix("POST", "/v1/batch", Some(lines.as_bytes()));
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&response));
        let results: Vec<Value> = String::from_utf8(response)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(results.len(), 2, "{results:?}");
        for result in &results {
            let error = json!({"error": result["error"], "kind": result["kind"]});
            let status = result["status"].as_u64().unwrap() as u16;
            assert_storage_error("a batch line", &["storage"], status, &error);
        }
    }

    // Reads still answer, from what was acknowledged.
    let (status, stats) = server.call("GET", "/v1/stats", None);
    assert_eq!(status, 200, "{stats}");
    assert_eq!(
        (&stats["total_messages"], &stats["delivered_count"]),
        (&json!(acknowledged), &json!(0)),
        "{stats}"
    );
    let (status, message) = server.call("GET", "/v1/messages/1", None);
    assert_eq!(
        (status, &message["status"]),
        (200, &json!("sent")),
        "{message}"
    );
    let (status, info) = server.call("GET", "/v1/info", None);
    assert_eq!(
        (status, &info["messages"]),
        (200, &json!(acknowledged)),
        "{info}"
    );
    let (status, history) = server.call("GET", "/v1/users/2/history?limit=1", None);
    assert_eq!(status, 200, "{history}");
    let (status, _) = server.call("GET", "/healthz", None);
    assert_eq!(status, 200);

    let (code, lines, dir) = server.stop();
    // It stops on SIGTERM; the close of a poisoned store fails, a storage error.
    assert_eq!(code, 2, "{lines:?}");
    assert!(
        lines.iter().any(|line| line.contains("poisoned")),
        "{lines:?}"
    );
    let store = commlog::Store::open_read_only(dir.path().join("store")).unwrap();
    let stats = store
        .get_communication_stats(&commlog::StatsFilter::new())
        .unwrap();
    assert_eq!(stats.total_messages, acknowledged);
    assert_eq!(store.open_report().events, acknowledged);
}

/// The server's peak resident memory (`VmHWM`), in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn routes_refuse_query_parameters_arrays_and_times_they_do_not_read() {
    let server = Server::start(&[]);
    let (status, _) = server.call("POST", "/v1/messages", Some(sent(1)));
    assert_eq!(status, 201);
    let before = files(&server.store());
    // An idempotency key put in the query, by mistake, is refused rather than ignored.
    let body = json!({"user_id": 7, "channel": "sms", "message_type": "welcome"});
    for (method, path, body) in [
        (
            "POST",
            "/v1/messages?external_id=retry-1",
            Some(body.clone()),
        ),
        ("POST", "/v1/messages/1/delivered?typo=1", None),
        (
            "POST",
            "/v1/outcomes?x=1",
            Some(json!({"user_id": 1, "outcome": "o"})),
        ),
        ("GET", "/v1/messages/1?x=1", None),
        ("GET", "/v1/messages/1/external-id?x=1", None),
        ("GET", "/v1/info?verbose=1", None),
    ] {
        let (status, error) = server.call(method, path, body);
        assert_eq!(status, 400, "{method} {path}: {error}");
        assert_eq!(error["kind"], "invalid_input", "{method} {path}: {error}");
        assert!(
            error["error"]
                .as_str()
                .unwrap()
                .contains("unknown query parameter"),
            "{method} {path}: {error}"
        );
    }
    // A method the route does not take is still 405, whatever the query.
    for (method, path) in [("GET", "/v1/batch?x=1"), ("DELETE", "/v1/info?x=1")] {
        let (status, error) = server.call(method, path, None);
        assert_eq!(status, 405, "{method} {path}: {error}");
    }
    // A JSON array is not read as the fields in order.
    for (method, path, body) in [
        (
            "POST",
            "/v1/messages",
            json!([null, 1, "sms", "welcome", null, null, null, null]),
        ),
        ("POST", "/v1/messages/1/failed", json!(["array_reason"])),
        (
            "POST",
            "/v1/outcomes",
            json!([null, 3, "paid", 1_000_000, null, null]),
        ),
        (
            "PUT",
            "/v1/budgets",
            json!([null, "sms", "2025-04", 5_000_000, null, null]),
        ),
    ] {
        let (status, error) = server.call(method, path, Some(body));
        assert_eq!(status, 400, "{method} {path}: {error}");
        assert!(
            error["error"].as_str().unwrap().contains("object"),
            "{method} {path}: {error}"
        );
    }
    let (status, answer) = server.unix("POST", "/v1/batch", Some(br#"["sent", 1]"#));
    assert_eq!(status, 200);
    let line: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(
        (&line["status"], &line["kind"]),
        (&json!(400), &json!("invalid_input"))
    );
    // Times as the command line reads them, and nothing looser.
    for start in [
        "2025-1-3",
        "%2B2025-01-03",
        "%202025-01-03",
        "2025-01-03T10:00",
    ] {
        let (status, error) = server.call("GET", &format!("/v1/stats?start={start}"), None);
        assert_eq!(status, 400, "{start}: {error}");
        assert!(
            error["error"].as_str().unwrap().contains("invalid start"),
            "{error}"
        );
    }
    let (status, _) = server.call("GET", "/v1/stats?start=2025-01-03", None);
    assert_eq!(status, 200);
    assert_eq!(
        files(&server.store()),
        before,
        "a refused call changed the files"
    );
    // A budget too large is named by the field given.
    for budget in [
        json!({"scope": "email", "month": "2025-03", "amount": 1e15}),
        json!({"scope": "email", "month": "2025-03", "amount": -1.0}),
    ] {
        let (status, error) = server.call("PUT", "/v1/budgets", Some(budget.clone()));
        assert_eq!(status, 400, "{budget}: {error}");
        assert!(
            error["error"]
                .as_str()
                .unwrap()
                .starts_with("invalid amount"),
            "{budget}: {error}"
        );
    }
    let (code, lines, _dir) = server.stop();
    assert_eq!(code, 0, "{lines:?}");
}

#[test]
fn the_bearer_scheme_is_read_in_any_case() {
    let server = Server::start(&["--listen", "127.0.0.1:0"]);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let mut stream = TcpStream::connect(server.tcp.unwrap()).unwrap();
        let head = format!(
            "GET /v1/info HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Authorization: {scheme} {TOKEN}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{scheme}: {response}");
    }
    let mut stream = TcpStream::connect(server.tcp.unwrap()).unwrap();
    let head = format!(
        "GET /v1/info HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Authorization: Basic {TOKEN}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    let (code, lines, _dir) = server.stop();
    assert_eq!(code, 0, "{lines:?}");
}

#[test]
fn a_batch_of_bad_lines_answers_every_line_without_holding_the_answer() {
    let server = Server::start(&[]);
    // 1 Mi lines of two bytes: each answered by an error line of about 100 bytes.
    let lines = 1 << 20;
    let body = b"x\n".repeat(lines);
    let peak_before = peak_kib(server.child.id());
    let (status, answer) = server.unix("POST", "/v1/batch", Some(&body));
    assert_eq!(status, 200);
    let answered: Vec<&[u8]> = answer.split(|&byte| byte == b'\n').collect();
    // Each line once, in order, then the final newline's empty rest.
    assert_eq!(answered.len(), lines + 1);
    assert!(answered[lines].is_empty());
    for (index, line) in answered[..lines].iter().enumerate().step_by(99_991) {
        let line: Value = serde_json::from_slice(line).unwrap();
        assert_eq!(line["line"], json!(index + 1));
        assert_eq!(line["kind"], "invalid_input");
    }
    assert!(answer.len() > 64 * lines, "{} bytes", answer.len());
    // The request and a byte a line are kept while the calls are applied, not the answer.
    let grown_kib = peak_kib(server.child.id()) - peak_before;
    assert!(
        grown_kib < 48 * 1024,
        "the peak grew by {grown_kib} KiB for a {} KiB request and a {} KiB answer",
        body.len() / 1024,
        answer.len() / 1024
    );
    let (code, lines, _dir) = server.stop();
    assert_eq!(code, 0, "{lines:?}");
}

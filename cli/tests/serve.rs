//! `commlog serve` from the command line: it serves the named store on its Unix socket, and a
//! SIGTERM stops it cleanly with every acknowledged event in the store.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use commlog::{StatsFilter, Store};

/// One HTTP/1.1 request over the Unix socket; the status and the body.
fn request(socket: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = UnixStream::connect(socket).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: commlog\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

#[test]
fn serve_answers_on_its_socket_and_a_sigterm_stops_it_with_every_event_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut server = Command::new(env!("CARGO_BIN_EXE_commlog"))
        .args(["--dir", store.to_str().unwrap(), "serve"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let socket = store.join("commlog.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    for user in 1..=5 {
        let (status, body) = request(
            &socket,
            "POST",
            "/v1/messages",
            &format!(
                r#"{{"user_id":{user},"channel":"sms","message_type":"low_balance","cost_micros":50000}}"#
            ),
        );
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = request(&socket, "POST", "/v1/messages/3/delivered", "{}");
    assert_eq!(status, 200, "{body}");
    let (status, body) = request(&socket, "POST", "/v1/messages/99/delivered", "{}");
    assert_eq!(status, 404, "{body}");

    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = server.wait().unwrap();
    let mut stderr = String::new();
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("sync always"), "{stderr}");
    assert!(!socket.exists(), "the socket is removed");

    let store = Store::open_read_only(&store).unwrap();
    let stats = store.get_communication_stats(&StatsFilter::new()).unwrap();
    assert_eq!((stats.total_messages, stats.delivered_count), (5, 1));
}

#[test]
fn serve_needs_a_named_store() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_commlog"))
        .current_dir(dir.path())
        .env_remove("COMMLOG_DIR")
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--dir"));
}

/// Waits until a server answers on `socket`.
fn wait_for_socket(socket: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while UnixStream::connect(socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "no server answered on {socket:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn terminate(server: &mut std::process::Child) -> std::process::ExitStatus {
    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    server.wait().unwrap()
}

#[test]
fn a_second_server_waits_as_long_as_wait_says_for_the_first_to_close() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let serve = |wait: &str| {
        Command::new(env!("CARGO_BIN_EXE_commlog"))
            .args(["--dir", store.to_str().unwrap(), "--wait", wait, "serve"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first = serve("0");
    let socket = store.join("commlog.sock");
    wait_for_socket(&socket);

    let refused = serve("0").wait().unwrap();
    assert_eq!(refused.code(), Some(2), "--wait 0 is refused at once");
    let mut second = serve("60");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        second.try_wait().unwrap().is_none(),
        "the second server waits for the lock"
    );
    assert!(terminate(&mut first).success());
    // The first closed: the second opens the store and serves it.
    wait_for_socket(&socket);
    let (status, body) = request(&socket, "GET", "/v1/info", "");
    assert_eq!(status, 200, "{body}");
    assert!(terminate(&mut second).success());
}

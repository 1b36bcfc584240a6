//! The providers' webhooks through the real server: signed requests apply their events once,
//! whatever the repeats and the order; a bad signature is 401 and appends nothing; an event
//! for an unknown message is 200, appends nothing and is counted in `/v1/info`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};

const RESEND_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TWILIO_TOKEN: &str = "12345";
const PUBLIC_URL: &str = "https://hooks.example.com";

struct Server {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let child = Command::new(env!("CARGO_BIN_EXE_commlog-serve"))
            .arg("--dir")
            .arg(&store)
            .args(["--public-url", PUBLIC_URL])
            .env("COMMLOG_RESEND_SECRET", RESEND_SECRET)
            .env("COMMLOG_TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
            .env_remove("COMMLOG_SENDGRID_PUBLIC_KEY")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let socket = store.join("commlog.sock");
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "the server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server {
            child,
            socket,
            _dir: dir,
        }
    }

    fn post(&self, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, Value) {
        request(&self.socket, "POST", path, headers, body)
    }

    fn get(&self, path: &str) -> Value {
        request(&self.socket, "GET", path, &[], b"").1
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn request(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, Value) {
    let mut stream = UnixStream::connect(socket).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&response[..end]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let value = serde_json::from_slice(&response[end + 4..]).unwrap_or(Value::Null);
    (status, value)
}

fn sent(server: &Server, user: u64, external_id: &str) -> u64 {
    let body = json!({"user_id": user, "channel": "email", "message_type": "low_balance",
                      "cost_micros": 1000, "external_id": external_id});
    let (status, message) = server.post(
        "/v1/messages",
        &[("Content-Type", "application/json".to_string())],
        body.to_string().as_bytes(),
    );
    assert_eq!(status, 201, "{message}");
    message["id"].as_u64().unwrap()
}

/// Svix headers signing `body` now.
fn svix(id: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let key = STANDARD
        .decode(RESEND_SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let signature = STANDARD.encode(mac.finalize().into_bytes());
    vec![
        ("svix-id", id.to_string()),
        ("svix-timestamp", timestamp),
        ("svix-signature", format!("v1,{signature}")),
        ("Content-Type", "application/json".to_string()),
    ]
}

fn resend_event(kind: &str, email_id: &str) -> Vec<u8> {
    json!({"type": kind, "created_at": chrono::Utc::now().to_rfc3339(),
           "data": {"email_id": email_id}})
    .to_string()
    .into_bytes()
}

#[test]
fn resend_events_apply_once_in_any_order_and_bad_signatures_append_nothing() {
    let server = Server::start();
    let id = sent(&server, 7, "re_0001");
    let opened = resend_event("email.opened", "re_0001");
    let delivered = resend_event("email.delivered", "re_0001");
    // Out of order and repeated, as providers send them.
    for (n, body) in [&opened, &delivered, &opened, &delivered]
        .iter()
        .enumerate()
    {
        let (status, result) = server.post(
            "/v1/webhooks/resend",
            &svix(&format!("msg_{n}"), body),
            body,
        );
        assert_eq!(status, 200, "{result}");
        assert_eq!(result["applied"], 1, "{result}");
    }
    let message = server.get(&format!("/v1/messages/{id}"));
    assert_eq!(message["status"], "opened", "{message}");
    let stats = server.get("/v1/stats");
    assert_eq!(
        (
            stats["delivered_count"].as_u64(),
            stats["opened_count"].as_u64()
        ),
        (Some(1), Some(1))
    );

    // A bad signature: 401, nothing appended.
    let events_before = server.get("/v1/info")["open_report"].clone();
    let bounced = resend_event("email.bounced", "re_0001");
    let mut headers = svix("msg_bad", &bounced);
    // One character of the base64 signature changed, whatever it was.
    let signature = &mut headers[2].1;
    let changed = if signature.as_bytes()[3] == b'A' {
        "B"
    } else {
        "A"
    };
    signature.replace_range(3..4, changed);
    let (status, error) = server.post("/v1/webhooks/resend", &headers, &bounced);
    assert_eq!(status, 401, "{error}");
    assert_eq!(error["kind"], "unauthorized");
    let message = server.get(&format!("/v1/messages/{id}"));
    assert!(message["failed_at"].is_null(), "{message}");
    assert_eq!(server.get("/v1/info")["open_report"], events_before);

    // An unknown message: 200, nothing appended, counted.
    let unknown = resend_event("email.delivered", "re_9999");
    let (status, result) = server.post("/v1/webhooks/resend", &svix("msg_u", &unknown), &unknown);
    assert_eq!(status, 200, "{result}");
    assert_eq!(
        (
            result["applied"].as_u64(),
            result["unknown_message"].as_u64()
        ),
        (Some(0), Some(1))
    );
    let info = server.get("/v1/info");
    assert_eq!(
        info["webhook_events_not_applied"]["unknown_message"], 1,
        "{info}"
    );
}

#[test]
fn twilio_status_callbacks_verify_against_the_public_url() {
    let server = Server::start();
    let id = sent(&server, 3, "SM0123456789abcdef");
    let params = [
        ("AccountSid", "AC123"),
        ("MessageSid", "SM0123456789abcdef"),
        ("MessageStatus", "delivered"),
    ];
    let body: String = params
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut signed = format!("{PUBLIC_URL}/v1/webhooks/twilio");
    for (name, value) in &sorted {
        signed.push_str(name);
        signed.push_str(value);
    }
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(TWILIO_TOKEN.as_bytes()).unwrap();
    mac.update(signed.as_bytes());
    let signature = STANDARD.encode(mac.finalize().into_bytes());
    let form = (
        "Content-Type",
        "application/x-www-form-urlencoded".to_string(),
    );
    let (status, result) = server.post(
        "/v1/webhooks/twilio",
        &[form.clone(), ("X-Twilio-Signature", signature.clone())],
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["applied"], 1);
    let message = server.get(&format!("/v1/messages/{id}"));
    assert_eq!(message["status"], "delivered", "{message}");

    let tampered = body.replace("delivered", "failed");
    let (status, _) = server.post(
        "/v1/webhooks/twilio",
        &[form, ("X-Twilio-Signature", signature)],
        tampered.as_bytes(),
    );
    assert_eq!(status, 401);
    // SendGrid has no key here: no route.
    let (status, _) = server.post("/v1/webhooks/sendgrid", &[], b"[]");
    assert_eq!(status, 404);
}

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
    store: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        Server::start_with(Some(PUBLIC_URL), None)
    }

    /// With `/v1/webhooks/sendgrid` when a key is given.
    fn start_with_sendgrid_key(sendgrid_key: Option<&str>) -> Server {
        Server::start_with(Some(PUBLIC_URL), sendgrid_key)
    }

    fn start_with(public_url: Option<&str>, sendgrid_key: Option<&str>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let mut command = Command::new(env!("CARGO_BIN_EXE_commlog-serve"));
        match sendgrid_key {
            Some(key) => command.env("COMMLOG_SENDGRID_PUBLIC_KEY", key),
            None => command.env_remove("COMMLOG_SENDGRID_PUBLIC_KEY"),
        };
        if let Some(public_url) = public_url {
            command.args(["--public-url", public_url]);
        }
        let child = command
            .arg("--dir")
            .arg(&store)
            .env("COMMLOG_RESEND_SECRET", RESEND_SECRET)
            .env("COMMLOG_TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
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
            store,
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
    // The server may answer (413) before reading a body and close: ignore a failed write.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
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
    let signature = twilio_signature(&format!("{PUBLIC_URL}/v1/webhooks/twilio"), &params);
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

#[test]
fn a_webhook_body_past_its_limit_is_refused_naming_that_limit() {
    let server = Server::start();
    // Past the other routes' 64 KiB, within the webhooks' 1 MiB: read, and its signature checked.
    let (status, result) = server.post("/v1/webhooks/resend", &[], &vec![b' '; 200 * 1024]);
    assert_eq!(status, 401, "{result}");
    let (status, result) = server.post("/v1/webhooks/resend", &[], &vec![b' '; 2 * 1024 * 1024]);
    assert_eq!(status, 413, "{result}");
    assert_eq!(result["kind"], "too_large");
    let message = result["error"].as_str().unwrap();
    assert!(message.contains(&(1024 * 1024).to_string()), "{message}");
    let (status, result) = server.post("/v1/messages", &[], &vec![b' '; 70 * 1024]);
    assert_eq!(status, 413, "{result}");
    let message = result["error"].as_str().unwrap();
    assert!(message.contains(&(64 * 1024).to_string()), "{message}");
}

/// Twilio's `X-Twilio-Signature` of a callback to `url` with `params`.
fn twilio_signature(url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut signed = url.to_owned();
    for (name, value) in &sorted {
        signed.push_str(name);
        signed.push_str(value);
    }
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(TWILIO_TOKEN.as_bytes()).unwrap();
    mac.update(signed.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

#[test]
fn twilio_status_callbacks_called_directly_verify_against_the_host_they_named() {
    let server = Server::start_with(None, None);
    let id = sent(&server, 3, "SM0123456789abcdef");
    let params = [
        ("MessageSid", "SM0123456789abcdef"),
        ("MessageStatus", "delivered"),
    ];
    let body = "MessageSid=SM0123456789abcdef&MessageStatus=delivered";
    let form = (
        "Content-Type",
        "application/x-www-form-urlencoded".to_string(),
    );
    // Signed over the path alone, which Twilio never does: refused.
    let (status, _) = server.post(
        "/v1/webhooks/twilio",
        &[
            form.clone(),
            (
                "X-Twilio-Signature",
                twilio_signature("/v1/webhooks/twilio", &params),
            ),
        ],
        body.as_bytes(),
    );
    assert_eq!(status, 401);
    // The request names `Host: localhost`: Twilio signed the URL it called there.
    let signature = twilio_signature("http://localhost/v1/webhooks/twilio", &params);
    let (status, result) = server.post(
        "/v1/webhooks/twilio",
        &[form, ("X-Twilio-Signature", signature)],
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{result}");
    let message = server.get(&format!("/v1/messages/{id}"));
    assert_eq!(message["status"], "delivered", "{message}");
}

/// 2025-01-01T09:00:00Z, when the SendGrid test's messages are sent.
const SENT_AT: i64 = 1_735_722_000;
/// The signature timestamp of every SendGrid request (SendGrid's is not checked for freshness).
const SENDGRID_TIMESTAMP: &str = "1735722300";

/// The test's SendGrid signing key: a fixed scalar, and ECDSA signatures are deterministic
/// (RFC 6979), so every run signs the same bytes.
fn sendgrid_key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[0x5a; 32]).unwrap()
}

/// The verification key as SendGrid's dashboard shows it: base64 SubjectPublicKeyInfo DER.
fn sendgrid_public_key_base64() -> String {
    use p256::pkcs8::EncodePublicKey;
    let der = sendgrid_key().verifying_key().to_public_key_der().unwrap();
    STANDARD.encode(der.as_bytes())
}

fn sendgrid_public_key_pem() -> String {
    use p256::pkcs8::{EncodePublicKey, LineEnding};
    sendgrid_key()
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap()
}

/// The DER signature SendGrid sends: ECDSA P-256/SHA-256 over the timestamp then the body.
fn sendgrid_signature(timestamp: &str, body: &[u8]) -> Vec<u8> {
    use p256::ecdsa::signature::Signer;
    let mut signed = timestamp.as_bytes().to_vec();
    signed.extend_from_slice(body);
    let signature: p256::ecdsa::Signature = sendgrid_key().sign(&signed);
    signature.to_der().as_bytes().to_vec()
}

fn sendgrid_headers(timestamp: &str, signature: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        (
            "X-Twilio-Email-Event-Webhook-Signature",
            STANDARD.encode(signature),
        ),
        (
            "X-Twilio-Email-Event-Webhook-Timestamp",
            timestamp.to_string(),
        ),
        ("Content-Type", "application/json".to_string()),
    ]
}

/// `events` as SendGrid posts them, signed.
fn post_sendgrid(server: &Server, events: &[&Value]) -> (u16, Value) {
    let body = serde_json::to_vec(events).unwrap();
    let signature = sendgrid_signature(SENDGRID_TIMESTAMP, &body);
    server.post(
        "/v1/webhooks/sendgrid",
        &sendgrid_headers(SENDGRID_TIMESTAMP, &signature),
        &body,
    )
}

/// A SendGrid event for the message sent with `x_message_id`, `seconds` after the send.
fn sendgrid_event(event: &str, x_message_id: &str, seconds: i64) -> Value {
    json!({"email": "user@example.com", "timestamp": SENT_AT + seconds, "event": event,
           "sg_event_id": format!("{event}-{x_message_id}-{seconds}"),
           "sg_message_id": format!("{x_message_id}.recvd-5645d9c87f-6r2ch-1-62E2B5D5-2C.0")})
}

fn sent_at_nine(server: &Server, user: u64, external_id: &str) -> u64 {
    let body = json!({"user_id": user, "channel": "email", "message_type": "statement",
                      "cost_micros": 100, "external_id": external_id,
                      "sent_at": "2025-01-01T09:00:00Z"});
    let (status, message) = server.post("/v1/messages", &[], body.to_string().as_bytes());
    assert_eq!(status, 201, "{message}");
    message["id"].as_u64().unwrap()
}

/// Every file of the store but the socket, with its bytes.
fn store_files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            files.insert(name, std::fs::read(entry.path()).unwrap());
        }
    }
    assert!(files.keys().any(|name| name.ends_with(".log")), "{files:?}");
    files
}

fn sendgrid_result(applied: u64, ignored: u64, machine_opens: u64) -> Value {
    json!({"applied": applied, "unknown_message": 0, "refused": 0, "ignored": ignored,
           "machine_opens": machine_opens})
}

#[test]
fn sendgrid_events_apply_once_in_any_order_machine_opens_and_bad_signatures_do_not_count() {
    let server = Server::start_with_sendgrid_key(Some(&sendgrid_public_key_pem()));
    let clicked = sent_at_nine(&server, 1, "sg_clicked");
    let delivered = sent_at_nine(&server, 2, "sg_delivered");
    let bounced = sent_at_nine(&server, 3, "sg_bounced");
    let answers = |server: &Server| -> Vec<Value> {
        let mut answers: Vec<Value> = [clicked, delivered, bounced]
            .iter()
            .map(|id| server.get(&format!("/v1/messages/{id}")))
            .collect();
        answers.push(server.get("/v1/stats"));
        answers.push(server.get("/v1/channels"));
        answers
    };

    let events = [
        sendgrid_event("click", "sg_clicked", 120),
        sendgrid_event("open", "sg_clicked", 60),
        // A machine open (Apple Mail privacy protection) earlier than the real one.
        {
            let mut open = sendgrid_event("open", "sg_clicked", 3);
            open["sg_machine_open"] = json!(true);
            open
        },
        sendgrid_event("delivered", "sg_clicked", 2),
        {
            let mut open = sendgrid_event("open", "sg_delivered", 10);
            open["sg_machine_open"] = json!(true);
            open
        },
        sendgrid_event("delivered", "sg_delivered", 4),
        {
            let mut bounce = sendgrid_event("bounce", "sg_bounced", 5);
            bounce["type"] = json!("bounce");
            bounce["reason"] = json!("550 5.1.1 unknown user");
            bounce
        },
        sendgrid_event("processed", "sg_clicked", 1),
    ];
    // One request per event, the click first, the delivery after the opens.
    let expected = [
        sendgrid_result(1, 0, 0),
        sendgrid_result(1, 0, 0),
        sendgrid_result(0, 0, 1),
        sendgrid_result(1, 0, 0),
        sendgrid_result(0, 0, 1),
        sendgrid_result(1, 0, 0),
        sendgrid_result(1, 0, 0),
        sendgrid_result(0, 1, 0),
    ];
    for (event, expected) in events.iter().zip(&expected) {
        let (status, result) = post_sendgrid(&server, &[event]);
        assert_eq!(status, 200, "{event}: {result}");
        assert_eq!(&result, expected, "{event}");
    }
    let first = answers(&server);
    let message = &first[0];
    assert_eq!(
        [
            &message["status"],
            &message["delivered_at"],
            &message["opened_at"],
            &message["clicked_at"],
            &message["action_taken"],
            &message["failed_at"],
        ],
        [
            &json!("clicked"),
            &json!("2025-01-01T09:00:02.000Z"),
            &json!("2025-01-01T09:01:00.000Z"),
            &json!("2025-01-01T09:02:00.000Z"),
            &json!("clicked_link"),
            &Value::Null,
        ],
        "{message}"
    );
    let message = &first[1];
    assert_eq!(
        [
            &message["status"],
            &message["delivered_at"],
            &message["opened_at"]
        ],
        [
            &json!("delivered"),
            &json!("2025-01-01T09:00:04.000Z"),
            &Value::Null
        ],
        "{message}"
    );
    let message = &first[2];
    assert_eq!(
        [
            &message["status"],
            &message["failed_at"],
            &message["failure_reason"],
            &message["delivered_at"],
        ],
        [
            &json!("failed"),
            &json!("2025-01-01T09:00:05.000Z"),
            &json!("bounce"),
            &Value::Null
        ],
        "{message}"
    );
    let stats = &first[3];
    assert_eq!(
        [
            &stats["total_messages"],
            &stats["delivered_count"],
            &stats["opened_count"],
            &stats["clicked_count"],
            &stats["failed_count"],
        ],
        [&json!(3), &json!(2), &json!(1), &json!(1), &json!(1)],
        "{stats}"
    );

    // Every event twice in one request, in the provider's order.
    let mut twice: Vec<&Value> = events.iter().rev().collect();
    twice.extend(events.iter());
    let (status, result) = post_sendgrid(&server, &twice);
    assert_eq!(status, 200, "{result}");
    assert_eq!(result, sendgrid_result(10, 2, 4));
    assert_eq!(answers(&server), first);
    // And each alone again, the delivery first.
    for event in events.iter().rev() {
        let (status, result) = post_sendgrid(&server, &[event]);
        assert_eq!(status, 200, "{event}: {result}");
    }
    assert_eq!(answers(&server), first);

    // Bad signatures: 401, and the store's files stay byte for byte as they were.
    let files = store_files(&server.store);
    let late_bounce = sendgrid_event("bounce", "sg_delivered", 1);
    let body = serde_json::to_vec(&[&late_bounce]).unwrap();
    let signature = sendgrid_signature(SENDGRID_TIMESTAMP, &body);
    let mut one_byte_off = signature.clone();
    *one_byte_off.last_mut().unwrap() ^= 0x01;
    // The same event a second earlier: one digit of the body differs.
    let mut earlier_bounce = late_bounce.clone();
    earlier_bounce["timestamp"] = json!(SENT_AT);
    let other_body = serde_json::to_vec(&[earlier_bounce]).unwrap();
    assert_eq!(
        (
            body.len(),
            body.iter().zip(&other_body).filter(|(a, b)| a != b).count()
        ),
        (other_body.len(), 1)
    );
    let tampered = [
        (
            "a signature one byte off",
            sendgrid_headers(SENDGRID_TIMESTAMP, &one_byte_off),
            &body,
        ),
        (
            "a body one byte off",
            sendgrid_headers(SENDGRID_TIMESTAMP, &signature),
            &other_body,
        ),
        (
            "another timestamp",
            sendgrid_headers("1735722301", &signature),
            &body,
        ),
        ("no signature", Vec::new(), &body),
    ];
    for (what, headers, body) in &tampered {
        let (status, error) = server.post("/v1/webhooks/sendgrid", headers, body);
        assert_eq!(status, 401, "{what}: {error}");
        assert_eq!(error["kind"], "unauthorized", "{what}: {error}");
    }
    assert!(
        store_files(&server.store) == files,
        "a refused request changed the store"
    );
    assert_eq!(answers(&server), first);
    // The same request signed is applied: the refusals were the signature's.
    let (status, result) = server.post(
        "/v1/webhooks/sendgrid",
        &sendgrid_headers(SENDGRID_TIMESTAMP, &signature),
        &body,
    );
    assert_eq!((status, result), (200, sendgrid_result(1, 0, 0)));
    assert!(
        store_files(&server.store) != files,
        "an applied event appended nothing"
    );
    let message = server.get(&format!("/v1/messages/{delivered}"));
    assert_eq!(
        (&message["status"], &message["failed_at"]),
        (&json!("delivered"), &json!("2025-01-01T09:00:01.000Z")),
        "{message}"
    );

    // Events for a message the store does not know: 200, nothing appended, counted.
    let files = store_files(&server.store);
    let unknown = [
        sendgrid_event("delivered", "sg_unknown", 2),
        sendgrid_event("open", "sg_unknown", 3),
    ];
    let (status, result) = post_sendgrid(&server, &unknown.iter().collect::<Vec<_>>());
    assert_eq!(status, 200, "{result}");
    assert_eq!(
        (&result["applied"], &result["unknown_message"]),
        (&json!(0), &json!(2)),
        "{result}"
    );
    assert!(
        store_files(&server.store) == files,
        "an unknown message changed the store"
    );
    let info = server.get("/v1/info");
    assert_eq!(
        info["webhook_events_not_applied"],
        json!({"unknown_message": 2, "refused": 0}),
        "{info}"
    );
}

#[test]
fn sendgrid_takes_the_dashboard_key_and_refuses_to_start_with_a_bad_one() {
    let server = Server::start_with_sendgrid_key(Some(&sendgrid_public_key_base64()));
    let id = sent_at_nine(&server, 5, "sg_dashboard");
    let (status, result) =
        post_sendgrid(&server, &[&sendgrid_event("delivered", "sg_dashboard", 9)]);
    assert_eq!((status, result), (200, sendgrid_result(1, 0, 0)));
    let message = server.get(&format!("/v1/messages/{id}"));
    assert_eq!(
        message["delivered_at"], "2025-01-01T09:00:09.000Z",
        "{message}"
    );

    let dir = tempfile::tempdir().unwrap();
    // An HMAC secret where the P-256 key belongs.
    let output = Command::new(env!("CARGO_BIN_EXE_commlog-serve"))
        .arg("--dir")
        .arg(dir.path().join("store"))
        .env("COMMLOG_SENDGRID_PUBLIC_KEY", STANDARD.encode([7u8; 32]))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SendGrid verification key"), "{stderr}");
}

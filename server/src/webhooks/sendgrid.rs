//! SendGrid's signed Event Webhook: `X-Twilio-Email-Event-Webhook-Signature` is a base64 DER
//! ECDSA P-256/SHA-256 signature over `X-Twilio-Email-Event-Webhook-Timestamp` followed by the
//! raw body, a JSON array of events.

use chrono::{DateTime, Utc};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde_json::Value;

use super::{
    CLICKED_LINK, MESSAGE_ID_FIELD, MessageKey, Outcome, Parsed, WebhookError, WebhookEvent,
    decode_base64, json_message_id, sanitize_name,
};

/// Reads the verification key as the dashboard shows it (base64 SubjectPublicKeyInfo DER), or
/// as a PEM `PUBLIC KEY` block.
fn verifying_key(public_key: &str) -> Option<VerifyingKey> {
    let body: String = if public_key.contains("-----BEGIN") {
        public_key
            .lines()
            .filter(|line| !line.trim_start().starts_with("-----"))
            .collect()
    } else {
        public_key.to_owned()
    };
    let der = decode_base64(&body)?;
    VerifyingKey::from_public_key_der(&der).ok()
}

/// Checks a configured verification key once (e.g. at startup), so a bad key is reported as
/// configuration rather than as every request's bad signature.
pub fn check_sendgrid_key(public_key_der_b64_or_pem: &str) -> Result<(), WebhookError> {
    verifying_key(public_key_der_b64_or_pem)
        .map(|_| ())
        .ok_or(WebhookError::BadKey)
}

/// Verifies a signed Event Webhook request: the ECDSA P-256/SHA-256 `signature_b64` (DER) over
/// `timestamp` followed by the raw `body`. False for an unusable key or signature.
pub fn verify_sendgrid(
    public_key_der_b64_or_pem: &str,
    timestamp: &str,
    body: &[u8],
    signature_b64: &str,
) -> bool {
    let Some(key) = verifying_key(public_key_der_b64_or_pem) else {
        return false;
    };
    let Some(signature) =
        decode_base64(signature_b64).and_then(|der| Signature::from_der(&der).ok())
    else {
        return false;
    };
    let mut signed = Vec::with_capacity(timestamp.len() + body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.extend_from_slice(body);
    key.verify(&signed, &signature).is_ok()
}

/// Turns a verified body (a JSON array of events) into events: `delivered` is a delivery;
/// `open` an open unless `sg_machine_open` is true (counted in [`Parsed::machine_opens`]);
/// `click` the action [`CLICKED_LINK`]; `bounce` a failure `bounce` (`bounce_blocked` for
/// type `blocked`); `dropped` a failure `dropped_<reason>` (e.g. `dropped_bounced_address`).
/// Every other event, and any event naming no message, is ignored.
///
/// The message is the custom argument `commlog_message_id` (top level or under `custom_args`)
/// when it holds a commlog message id, else `sg_message_id` up to its first '.' as an external
/// id (the `X-Message-Id` returned at send time). The time is `timestamp` (Unix seconds).
pub fn parse_sendgrid(body: &[u8]) -> Result<Parsed, WebhookError> {
    let events: Vec<Value> = serde_json::from_slice(body).map_err(WebhookError::json)?;
    let mut parsed = Parsed::default();
    for event in &events {
        let Some(name) = event.get("event").and_then(Value::as_str) else {
            parsed.ignored += 1;
            continue;
        };
        let outcome = match name {
            "delivered" => Outcome::Delivered,
            "open" => {
                if event.get("sg_machine_open").is_some_and(is_true) {
                    parsed.machine_opens += 1;
                    continue;
                }
                Outcome::Opened
            }
            "click" => Outcome::Action(CLICKED_LINK.to_owned()),
            "bounce" => {
                let kind = text(event, "type").unwrap_or("");
                if kind.is_empty() || kind.eq_ignore_ascii_case("bounce") {
                    Outcome::Failed("bounce".to_owned())
                } else {
                    Outcome::Failed(sanitize_name("bounce", kind))
                }
            }
            "dropped" => Outcome::Failed(sanitize_name(
                "dropped",
                text(event, "reason").unwrap_or(""),
            )),
            _ => {
                parsed.ignored += 1;
                continue;
            }
        };
        let Some(message) = message_key(event) else {
            parsed.ignored += 1;
            continue;
        };
        parsed.events.push(WebhookEvent {
            message,
            outcome,
            at: event_time(event),
        });
    }
    Ok(parsed)
}

fn text<'a>(event: &'a Value, field: &str) -> Option<&'a str> {
    event.get(field).and_then(Value::as_str).map(str::trim)
}

fn is_true(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_u64() == Some(1),
        Value::String(s) => s.eq_ignore_ascii_case("true") || s == "1",
        _ => false,
    }
}

fn message_key(event: &Value) -> Option<MessageKey> {
    let custom = event.get(MESSAGE_ID_FIELD).or_else(|| {
        event
            .get("custom_args")
            .and_then(|args| args.get(MESSAGE_ID_FIELD))
    });
    if let Some(id) = custom.and_then(json_message_id) {
        return Some(MessageKey::Id(id));
    }
    let sg_message_id = text(event, "sg_message_id")?;
    let external = sg_message_id.split('.').next().unwrap_or("").trim();
    (!external.is_empty()).then(|| MessageKey::External(external.to_owned()))
}

fn event_time(event: &Value) -> Option<DateTime<Utc>> {
    let seconds = match event.get("timestamp")? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))?,
        Value::String(s) => s.trim().parse::<i64>().ok()?,
        _ => return None,
    };
    DateTime::from_timestamp(seconds, 0)
}

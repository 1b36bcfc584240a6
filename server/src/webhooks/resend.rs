//! Resend webhooks, signed by Svix: `svix-signature` holds space-separated `v1,<base64>`
//! entries (several during a secret rotation), each an HMAC-SHA256 keyed with the base64
//! secret after `whsec_` over `{svix-id}.{svix-timestamp}.{raw body}`.

use chrono::{DateTime, NaiveDateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;

use super::{
    CLICKED_LINK, MESSAGE_ID_FIELD, MessageKey, Outcome, Parsed, WebhookError, WebhookEvent,
    decode_base64, json_message_id, sanitize_name,
};

/// How far `svix-timestamp` may be from now, either side, in seconds.
pub const SVIX_TOLERANCE_SECONDS: i64 = 5 * 60;

fn secret_key(secret_whsec: &str) -> Option<Vec<u8>> {
    let secret = secret_whsec.trim();
    let secret = secret.strip_prefix("whsec_").unwrap_or(secret);
    decode_base64(secret).filter(|key| !key.is_empty())
}

/// Checks a configured signing secret once (e.g. at startup).
pub fn check_svix_secret(secret_whsec: &str) -> Result<(), WebhookError> {
    secret_key(secret_whsec)
        .map(|_| ())
        .ok_or(WebhookError::BadKey)
}

/// Verifies a Svix-signed request: [`WebhookError::StaleTimestamp`] when `svix_timestamp` is
/// more than [`SVIX_TOLERANCE_SECONDS`] from `now`, [`WebhookError::BadSignature`] when it is
/// not an integer or no `v1` entry of `svix_signature_header` matches,
/// [`WebhookError::BadKey`] when the secret is not base64. Comparison is constant-time.
pub fn verify_svix(
    secret_whsec: &str,
    svix_id: &str,
    svix_timestamp: &str,
    body: &[u8],
    svix_signature_header: &str,
    now: DateTime<Utc>,
) -> Result<(), WebhookError> {
    let timestamp: i64 = svix_timestamp
        .trim()
        .parse()
        .map_err(|_| WebhookError::BadSignature)?;
    if now.timestamp().abs_diff(timestamp) > SVIX_TOLERANCE_SECONDS.unsigned_abs() {
        return Err(WebhookError::StaleTimestamp);
    }
    let key = secret_key(secret_whsec).ok_or(WebhookError::BadKey)?;
    let mut mac =
        <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key).map_err(|_| WebhookError::BadKey)?;
    mac.update(svix_id.as_bytes());
    mac.update(b".");
    mac.update(svix_timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let mut matched = false;
    for entry in svix_signature_header.split_ascii_whitespace() {
        let Some((version, signature)) = entry.split_once(',') else {
            continue;
        };
        if version != "v1" {
            continue;
        }
        let Some(signature) = decode_base64(signature) else {
            continue;
        };
        matched |= mac.clone().verify_slice(&signature).is_ok();
    }
    if matched {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

/// Turns a verified body (one JSON event) into events: `email.delivered` is a delivery,
/// `email.opened` an open, `email.clicked` the action [`CLICKED_LINK`], `email.bounced` a
/// failure `bounced` (`bounced_<type>` when `data.bounce.type` is given, e.g.
/// `bounced_permanent`); every other type is ignored.
///
/// The message is the tag `commlog_message_id` when it holds a commlog message id, else
/// `data.email_id` as an external id. The time is `created_at` (RFC 3339).
pub fn parse_resend(body: &[u8]) -> Result<Parsed, WebhookError> {
    let event: Value = serde_json::from_slice(body).map_err(WebhookError::json)?;
    if !event.is_object() {
        return Err(WebhookError::malformed("not a JSON object"));
    }
    let kind = event
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| WebhookError::malformed("no type"))?;
    let data = event.get("data");
    let outcome = match kind {
        "email.delivered" => Outcome::Delivered,
        "email.opened" => Outcome::Opened,
        "email.clicked" => Outcome::Action(CLICKED_LINK.to_owned()),
        "email.bounced" => {
            let bounce_type = data
                .and_then(|d| d.get("bounce"))
                .and_then(|b| b.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("");
            Outcome::Failed(sanitize_name("bounced", bounce_type))
        }
        _ => {
            return Ok(Parsed {
                ignored: 1,
                ..Parsed::default()
            });
        }
    };
    let Some(message) = data.and_then(message_key) else {
        return Ok(Parsed {
            ignored: 1,
            ..Parsed::default()
        });
    };
    let at = event
        .get("created_at")
        .and_then(Value::as_str)
        .and_then(parse_time);
    Ok(Parsed {
        events: vec![WebhookEvent {
            message,
            outcome,
            at,
        }],
        ..Parsed::default()
    })
}

fn message_key(data: &Value) -> Option<MessageKey> {
    if let Some(id) = tag(data).and_then(json_message_id) {
        return Some(MessageKey::Id(id));
    }
    let email_id = data.get("email_id").and_then(Value::as_str)?.trim();
    (!email_id.is_empty()).then(|| MessageKey::External(email_id.to_owned()))
}

/// The `commlog_message_id` tag: tags come as an object of names to values, or as an array of
/// `{"name": …, "value": …}`.
fn tag(data: &Value) -> Option<&Value> {
    match data.get("tags")? {
        Value::Object(tags) => tags.get(MESSAGE_ID_FIELD),
        Value::Array(tags) => tags
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(MESSAGE_ID_FIELD))
            .and_then(|t| t.get("value")),
        _ => None,
    }
}

/// RFC 3339, also with a space for the 'T' or without an offset (taken as UTC).
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    let with_t = text.replacen(' ', "T", 1);
    if let Ok(at) = DateTime::parse_from_rfc3339(&with_t) {
        return Some(at.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(&with_t, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|at| at.and_utc())
}

//! The message providers' webhooks: each signature verified before its body is parsed, and
//! each provider's events turned into tracking calls.
//!
//! Everything here is a pure function over raw bytes and header values, so the HTTP layer
//! stays thin: it verifies with the provider's `verify_*` function (refusing with
//! [`WebhookError::http_status`] on failure), parses with the matching `parse_*` function, maps
//! each [`MessageKey::External`] to a commlog message id, and applies each event with
//! [`WebhookEvent::apply`].
//!
//! | provider | verify | parse |
//! |---|---|---|
//! | Twilio (SMS status callback) | [`verify_twilio`], [`verify_twilio_with`], [`verify_twilio_form`] | [`parse_twilio`] |
//! | SendGrid (signed Event Webhook) | [`verify_sendgrid`] | [`parse_sendgrid`] |
//! | Resend (Svix) | [`verify_svix`] | [`parse_resend`] |

mod resend;
mod sendgrid;
mod twilio;

use std::fmt;

use chrono::{DateTime, Utc};
use commlog::{Message, MessageId, Store};

pub use resend::{SVIX_TOLERANCE_SECONDS, check_svix_secret, parse_resend, verify_svix};
pub use sendgrid::{check_sendgrid_key, parse_sendgrid, verify_sendgrid};
pub use twilio::{
    TwilioAlgorithm, parse_twilio, twilio_form_params, verify_twilio, verify_twilio_form,
    verify_twilio_with,
};

/// The action name of a tracked link click.
pub const CLICKED_LINK: &str = "clicked_link";

/// The parameter (Twilio: in the status callback URL's query) or custom argument (SendGrid
/// `custom_args`, Resend tags) that carries the commlog message id of a sent message.
pub const MESSAGE_ID_FIELD: &str = "commlog_message_id";

/// The short query parameter of a Twilio status callback URL that carries the commlog message
/// id, e.g. `https://example.com/webhooks/twilio?cl=42`; the signature covers it.
pub const TWILIO_MESSAGE_ID_PARAM: &str = "cl";

/// How a provider's event names its message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageKey {
    /// The commlog message id, echoed back by the provider.
    Id(MessageId),
    /// The provider's own message id (Twilio `MessageSid`, SendGrid `sg_message_id` up to its
    /// first '.', Resend `email_id`), which the caller maps to a commlog message id.
    External(String),
}

/// What happened to a message, in commlog's terms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The provider delivered it ([`Store::track_message_delivered`]).
    Delivered,
    /// The user opened it ([`Store::track_message_opened`]).
    Opened,
    /// The user acted on it, e.g. [`CLICKED_LINK`] ([`Store::track_user_action`]); the name is a
    /// valid commlog name.
    Action(String),
    /// The provider failed to deliver it ([`Store::track_message_failed`]); the reason is a
    /// valid commlog name.
    Failed(String),
}

/// One verified provider event, provider-neutral.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WebhookEvent {
    /// The message it is about.
    pub message: MessageKey,
    /// What happened.
    pub outcome: Outcome,
    /// When the provider says it happened; `None` when the payload gives no usable time (the
    /// store then takes the time of the call).
    pub at: Option<DateTime<Utc>>,
}

impl WebhookEvent {
    /// Applies the event to `store` as the message `message` (the id of [`Self::message`],
    /// or the one the caller mapped its external id to).
    pub fn apply(&self, store: &Store, message: MessageId) -> commlog::Result<Message> {
        match &self.outcome {
            Outcome::Delivered => store.track_message_delivered(message, self.at),
            Outcome::Opened => store.track_message_opened(message, self.at),
            Outcome::Action(action) => store.track_user_action(message, action, self.at),
            Outcome::Failed(reason) => store.track_message_failed(message, reason, self.at),
        }
    }
}

/// The events of one verified webhook request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The events to apply, in payload order.
    pub events: Vec<WebhookEvent>,
    /// Provider events that carry nothing to track: intermediate statuses (Twilio `sent`,
    /// SendGrid `processed`), unknown event types, or events naming no message.
    pub ignored: usize,
    /// SendGrid opens flagged `sg_machine_open` (a mail client fetching images, e.g. Apple
    /// Mail Privacy Protection), not counted as opens; not included in `ignored`.
    pub machine_opens: usize,
}

/// Why a webhook request was refused.
///
/// Neither `Display` nor `Debug` ever shows a secret, a signature or a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookError {
    /// The signature is missing, not decodable, or does not match (HTTP 401).
    BadSignature,
    /// The signed timestamp is too far from now (HTTP 401).
    StaleTimestamp,
    /// The body passed verification but is not the provider's payload format (HTTP 400).
    Malformed(String),
    /// The configured key or secret is unusable, a server configuration error (HTTP 500).
    BadKey,
}

impl WebhookError {
    /// The HTTP status code to answer with.
    pub fn http_status(&self) -> u16 {
        match self {
            WebhookError::BadSignature | WebhookError::StaleTimestamp => 401,
            WebhookError::Malformed(_) => 400,
            WebhookError::BadKey => 500,
        }
    }

    pub(crate) fn malformed(what: impl fmt::Display) -> Self {
        WebhookError::Malformed(what.to_string())
    }

    /// A JSON error by its kind and place only: serde_json's own message can quote the body.
    pub(crate) fn json(error: serde_json::Error) -> Self {
        use serde_json::error::Category;
        let kind = match error.classify() {
            Category::Syntax => "not valid JSON",
            Category::Eof => "truncated JSON",
            Category::Data => "not the expected JSON shape",
            Category::Io => "unreadable JSON",
        };
        WebhookError::Malformed(format!(
            "{kind} (line {}, column {})",
            error.line(),
            error.column()
        ))
    }
}

impl fmt::Display for WebhookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebhookError::BadSignature => f.write_str("webhook signature does not verify"),
            WebhookError::StaleTimestamp => {
                f.write_str("webhook timestamp is too far from the current time")
            }
            WebhookError::Malformed(what) => write!(f, "malformed webhook payload: {what}"),
            WebhookError::BadKey => f.write_str("the configured webhook key or secret is unusable"),
        }
    }
}

impl std::error::Error for WebhookError {}

/// Turns provider text into a commlog name (`[a-z0-9_.-]`, 1 to 64 bytes): `prefix`, then '_'
/// and `raw` lowercased with every other character replaced by '_' (runs collapsed, ends
/// trimmed), truncated to 64 bytes. `prefix` alone when `raw` leaves nothing. `prefix` must be
/// a valid name.
pub fn sanitize_name(prefix: &str, raw: &str) -> String {
    let mut name = String::with_capacity(prefix.len() + 1 + raw.len());
    name.push_str(prefix);
    let mut pending_separator = !prefix.is_empty();
    let mut wrote_any = false;
    for c in raw.chars() {
        let c = c.to_ascii_lowercase();
        if matches!(c, 'a'..='z' | '0'..='9' | '.' | '-') {
            if pending_separator {
                name.push('_');
            }
            name.push(c);
            pending_separator = false;
            wrote_any = true;
        } else if wrote_any || !prefix.is_empty() {
            pending_separator = true;
        }
    }
    if name.is_empty() {
        name.push_str("unknown");
    }
    // Only ASCII was pushed, so any byte index is a char boundary.
    name.truncate(64);
    while name.len() > 1 && name.ends_with('_') {
        name.pop();
    }
    name
}

/// Reads a commlog message id from a JSON string or number.
pub(crate) fn json_message_id(value: &serde_json::Value) -> Option<MessageId> {
    match value {
        serde_json::Value::Number(n) => n.as_u64().map(MessageId),
        serde_json::Value::String(s) => s.trim().parse::<u64>().ok().map(MessageId),
        _ => None,
    }
}

/// Decodes standard base64, ignoring ASCII whitespace (keys pasted across lines).
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .ok()
}

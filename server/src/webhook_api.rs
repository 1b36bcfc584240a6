//! The providers' webhook routes under `/v1/webhooks/`: each request's signature is verified
//! before its body is read, then its events are applied to the store (docs/SERVER.md).
//!
//! An event naming a message the store does not know, or one the store refuses (a time it
//! cannot accept), is answered 200 and counted, so that the provider stops retrying it; a bad
//! or missing signature is 401 and appends nothing; a storage failure is 503, which the
//! provider retries.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use commlog::{Call, MessageRef};
use serde::Serialize;

use crate::api::{AppState, body};
use crate::error::ApiError;
use crate::webhooks::{
    self, MessageKey, Outcome, Parsed, TwilioAlgorithm, WebhookError, WebhookEvent,
};

/// The providers' secrets; a provider without one has no route (404).
#[derive(Clone, Default)]
pub struct WebhookSecrets {
    /// Twilio's Auth Token (or the Webhooks Rule shared key).
    pub twilio_auth_token: Option<String>,
    /// SendGrid's Event Webhook verification key (base64 DER or PEM).
    pub sendgrid_public_key: Option<String>,
    /// Resend's signing secret, `whsec_…`.
    pub resend_secret: Option<String>,
}

impl WebhookSecrets {
    /// Each provider's secret from its file, else from its environment variable
    /// (`COMMLOG_TWILIO_AUTH_TOKEN`, `COMMLOG_SENDGRID_PUBLIC_KEY`, `COMMLOG_RESEND_SECRET`).
    /// A SendGrid key or Resend secret that cannot be used is refused here, at startup.
    pub fn read(
        twilio_token_file: Option<&std::path::Path>,
        sendgrid_key_file: Option<&std::path::Path>,
        resend_secret_file: Option<&std::path::Path>,
    ) -> Result<WebhookSecrets, crate::ServeError> {
        let secrets = WebhookSecrets {
            twilio_auth_token: crate::serve::read_secret(
                twilio_token_file,
                "COMMLOG_TWILIO_AUTH_TOKEN",
            )?,
            sendgrid_public_key: crate::serve::read_secret(
                sendgrid_key_file,
                "COMMLOG_SENDGRID_PUBLIC_KEY",
            )?,
            resend_secret: crate::serve::read_secret(resend_secret_file, "COMMLOG_RESEND_SECRET")?,
        };
        if let Some(key) = &secrets.sendgrid_public_key {
            webhooks::check_sendgrid_key(key).map_err(|_| {
                crate::ServeError::Config(
                    "the SendGrid verification key is not a P-256 public key (base64 DER or PEM)"
                        .to_string(),
                )
            })?;
        }
        if let Some(secret) = &secrets.resend_secret {
            webhooks::check_svix_secret(secret).map_err(|_| {
                crate::ServeError::Config(
                    "the Resend signing secret is not a whsec_ base64 secret".to_string(),
                )
            })?;
        }
        Ok(secrets)
    }
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |secret: &Option<String>| if secret.is_some() { "set" } else { "unset" };
        f.debug_struct("WebhookSecrets")
            .field("twilio_auth_token", &set(&self.twilio_auth_token))
            .field("sendgrid_public_key", &set(&self.sendgrid_public_key))
            .field("resend_secret", &set(&self.resend_secret))
            .finish()
    }
}

/// Webhook events the server answered 200 without appending, since it started.
#[derive(Debug, Default)]
pub(crate) struct WebhookCounters {
    pub unknown_message: AtomicU64,
    pub refused: AtomicU64,
}

/// Counts as `info` reports them.
#[derive(Debug, Serialize)]
pub(crate) struct WebhookCounts {
    pub unknown_message: u64,
    pub refused: u64,
}

impl WebhookCounters {
    pub(crate) fn counts(&self) -> WebhookCounts {
        WebhookCounts {
            unknown_message: self.unknown_message.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

/// What a webhook request did.
#[derive(Debug, Serialize)]
pub(crate) struct WebhookResult {
    applied: usize,
    unknown_message: usize,
    refused: usize,
    ignored: usize,
    machine_opens: usize,
}

fn unauthorized(error: &WebhookError) -> ApiError {
    let status = StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let kind = match error {
        WebhookError::BadSignature | WebhookError::StaleTimestamp => "unauthorized",
        WebhookError::Malformed(_) => "invalid_input",
        WebhookError::BadKey => "configuration",
    };
    ApiError::new(status, kind, error.to_string())
}

fn not_configured(provider: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no {provider} webhook: the server has no {provider} secret"),
    )
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
}

/// Applies verified events in order; an unknown message or an event the store refuses is
/// counted and skipped, a storage failure is 503.
async fn apply(state: &AppState, parsed: Parsed) -> Result<Json<WebhookResult>, ApiError> {
    let mut result = WebhookResult {
        applied: 0,
        unknown_message: 0,
        refused: 0,
        ignored: parsed.ignored,
        machine_opens: parsed.machine_opens,
    };
    // An external id the store could never have been given names no message it knows.
    let (requests, unusable): (Vec<_>, Vec<_>) = parsed
        .events
        .iter()
        .map(|event| match &event.message {
            MessageKey::External(external_id)
                if commlog::validate_external_id(external_id).is_err() =>
            {
                None
            }
            _ => Some(request(event)),
        })
        .partition(Option::is_some);
    result.unknown_message += unusable.len();
    let answers = state
        .tracker
        .track(requests.into_iter().flatten().collect())
        .await?;
    let mut failure = None;
    for answer in answers {
        match answer {
            Ok(_) => result.applied += 1,
            Err(
                commlog::Error::UnknownMessage { .. } | commlog::Error::UnknownExternalId { .. },
            ) => {
                result.unknown_message += 1;
            }
            Err(commlog::Error::InvalidInput { .. }) => result.refused += 1,
            Err(error) => failure = failure.or(Some(error)),
        }
    }
    if let Some(error) = failure {
        return Err(ApiError::from(error));
    }
    let counters = &state.webhook_counters;
    counters
        .unknown_message
        .fetch_add(result.unknown_message as u64, Ordering::Relaxed);
    counters
        .refused
        .fetch_add(result.refused as u64, Ordering::Relaxed);
    Ok(Json(result))
}

/// The tracking call a provider's event stands for.
fn request(event: &WebhookEvent) -> Call<'static> {
    let message = match &event.message {
        MessageKey::Id(id) => MessageRef::Id(*id),
        MessageKey::External(external_id) => MessageRef::External(external_id.clone()),
    };
    let at = event.at;
    match &event.outcome {
        Outcome::Delivered => Call::Delivered { message, at },
        Outcome::Opened => Call::Opened { message, at },
        Outcome::Action(action) => Call::Action {
            message,
            action: action.clone().into(),
            at,
        },
        Outcome::Failed(reason) => Call::Failed {
            message,
            reason: reason.clone().into(),
            at,
        },
    }
}

/// `POST /v1/webhooks/twilio`: a status callback, form-encoded, signed with
/// `X-Twilio-Signature` over the public URL and the sorted parameters.
pub(crate) async fn twilio(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    request: Result<Bytes, BytesRejection>,
) -> Result<Json<WebhookResult>, ApiError> {
    let Some(token) = state.webhook_secrets.twilio_auth_token.clone() else {
        return Err(not_configured("twilio"));
    };
    let body = body(request)?;
    let base = match state.public_url.as_deref() {
        Some(public_url) => public_url.trim_end_matches('/').to_owned(),
        // Called directly: the URL the provider called is the Host it named.
        None => {
            let host = headers
                .get(axum::http::header::HOST)
                .and_then(|host| host.to_str().ok())
                .or_else(|| uri.authority().map(|authority| authority.as_str()))
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "no Host header to rebuild the URL Twilio signed: set --public-url",
                    )
                })?;
            format!("http://{host}")
        }
    };
    let path_and_query = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
    let url = format!("{base}{path_and_query}");
    let algorithm = TwilioAlgorithm::from_settings_header(
        headers
            .get("x-twilio-webhooks-signature-settings")
            .and_then(|value| value.to_str().ok()),
    );
    let params = webhooks::verify_twilio_form(
        algorithm,
        token.as_bytes(),
        &url,
        &body,
        header(&headers, "x-twilio-signature"),
    )
    .map_err(|error| unauthorized(&error))?;
    let parsed = webhooks::parse_twilio(&url, &params).map_err(|error| unauthorized(&error))?;
    apply(&state, parsed).await
}

/// `POST /v1/webhooks/sendgrid`: the Event Webhook, a JSON array signed with ECDSA P-256 over
/// the timestamp header and the body.
pub(crate) async fn sendgrid(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Result<Bytes, BytesRejection>,
) -> Result<Json<WebhookResult>, ApiError> {
    let Some(key) = state.webhook_secrets.sendgrid_public_key.clone() else {
        return Err(not_configured("sendgrid"));
    };
    let body = body(request)?;
    if !webhooks::verify_sendgrid(
        &key,
        header(&headers, "x-twilio-email-event-webhook-timestamp"),
        &body,
        header(&headers, "x-twilio-email-event-webhook-signature"),
    ) {
        return Err(unauthorized(&WebhookError::BadSignature));
    }
    let parsed = webhooks::parse_sendgrid(&body).map_err(|error| unauthorized(&error))?;
    apply(&state, parsed).await
}

/// `POST /v1/webhooks/resend`: Svix-signed JSON (`svix-id`, `svix-timestamp`,
/// `svix-signature`), timestamps more than 5 minutes off refused.
pub(crate) async fn resend(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Result<Bytes, BytesRejection>,
) -> Result<Json<WebhookResult>, ApiError> {
    let Some(secret) = state.webhook_secrets.resend_secret.clone() else {
        return Err(not_configured("resend"));
    };
    let body = body(request)?;
    webhooks::verify_svix(
        &secret,
        header(&headers, "svix-id"),
        header(&headers, "svix-timestamp"),
        &body,
        header(&headers, "svix-signature"),
        chrono::Utc::now(),
    )
    .map_err(|error| unauthorized(&error))?;
    let parsed = webhooks::parse_resend(&body).map_err(|error| unauthorized(&error))?;
    apply(&state, parsed).await
}

//! The JSON API under `/v1` (docs/SERVER.md): routes, the bearer-token check, body limits.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query as QueryParams, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use commlog::{Store, SyncPolicy};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_http::limit::RequestBodyLimitLayer;

use crate::error::ApiError;
use crate::input::{self, Call, Kind, Query};
use crate::webhook_api::{self, WebhookCounters, WebhookCounts, WebhookSecrets};

/// Body limit of every route but `/v1/batch`.
pub(crate) const BODY_LIMIT: usize = 64 * 1024;
/// Body limit of `/v1/batch`.
pub(crate) const BATCH_BODY_LIMIT: usize = 16 * 1024 * 1024;
/// Body limit of the webhook routes (a SendGrid batch holds up to about a thousand events).
pub(crate) const WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;
/// `GET /v1/users/{user}/history` without `limit`.
const HISTORY_LIMIT_DEFAULT: usize = 100;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub store: Arc<Store>,
    pub sync: SyncPolicy,
    /// The base URL the providers call (Twilio signs the full URL).
    pub public_url: Option<String>,
    pub webhook_secrets: Arc<WebhookSecrets>,
    pub webhook_counters: Arc<WebhookCounters>,
}

/// Runs a store call on the blocking pool: calls under `SyncPolicy::Always` wait for their
/// fsync there, and concurrent ones share it.
pub(crate) async fn blocking<T: Send + 'static>(
    state: &AppState,
    call: impl FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = Arc::clone(&state.store);
    tokio::task::spawn_blocking(move || call(&store))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the store call did not finish",
            )
        })?
}

pub(crate) fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::new(status, "invalid_input", rejection.body_text())
        }
    })
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!(
            "request body too large: at most {BODY_LIMIT} bytes ({BATCH_BODY_LIMIT} for /v1/batch)"
        ),
    )
}

fn id(path: Result<Path<u64>, PathRejection>, what: &str) -> Result<u64, ApiError> {
    path.map(|Path(id)| id).map_err(|_| {
        ApiError::invalid(format!(
            "invalid {what}: must be a whole number of at least 1"
        ))
    })
}

fn query(
    params: Result<QueryParams<BTreeMap<String, String>>, QueryRejection>,
    known: &[&str],
) -> Result<Query, ApiError> {
    let QueryParams(params) =
        params.map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
    Query::new(params, known)
}

/// The routes, without authentication (the Unix socket); [`with_token`] adds it for TCP.
pub(crate) fn router(state: AppState) -> Router {
    let small = || RequestBodyLimitLayer::new(BODY_LIMIT);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/info", get(info))
        .route("/v1/messages", post(sent).layer(small()))
        .route("/v1/messages/{id}", get(message))
        .route(
            "/v1/messages/{id}/delivered",
            post(delivered).layer(small()),
        )
        .route("/v1/messages/{id}/opened", post(opened).layer(small()))
        .route("/v1/messages/{id}/failed", post(failed).layer(small()))
        .route("/v1/messages/{id}/actions", post(action).layer(small()))
        .route("/v1/outcomes", post(outcome).layer(small()))
        .route("/v1/budgets", post(budget).put(budget).layer(small()))
        .route(
            "/v1/batch",
            post(batch).layer(RequestBodyLimitLayer::new(BATCH_BODY_LIMIT)),
        )
        .route("/v1/users/{user}/history", get(history))
        .route("/v1/stats", get(stats))
        .route("/v1/engagement/{user}", get(engagement))
        .route("/v1/channels", get(channels))
        .route("/v1/costs", get(costs))
        .route("/v1/impact", get(impact))
        .route(
            "/v1/webhooks/twilio",
            post(webhook_api::twilio).layer(RequestBodyLimitLayer::new(WEBHOOK_BODY_LIMIT)),
        )
        .route(
            "/v1/webhooks/sendgrid",
            post(webhook_api::sendgrid).layer(RequestBodyLimitLayer::new(WEBHOOK_BODY_LIMIT)),
        )
        .route(
            "/v1/webhooks/resend",
            post(webhook_api::resend).layer(RequestBodyLimitLayer::new(WEBHOOK_BODY_LIMIT)),
        )
        .fallback(not_found)
        // The limits above are the ones that apply; axum's own 2 MB default would cut batches.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::map_response(json_errors))
        .with_state(state)
}

/// Requires `Authorization: Bearer TOKEN` on every route but `/healthz`.
pub(crate) fn with_token(router: Router, token: &str) -> Router {
    let digest: Arc<[u8; 32]> = Arc::new(Sha256::digest(token.as_bytes()).into());
    router.layer(middleware::from_fn(move |request: Request, next: Next| {
        let digest = Arc::clone(&digest);
        async move {
            // The providers cannot send the token: their webhooks carry signatures instead.
            let path = request.uri().path();
            if path == "/healthz"
                || path.starts_with("/v1/webhooks/")
                || authorized(&request, &digest)
            {
                next.run(request).await
            } else {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "missing or wrong bearer token (Authorization: Bearer …)",
                )
                .into_response()
            }
        }
    }))
}

/// Compares digests in constant time, so neither the token's bytes nor its length show in the
/// time of a refusal.
fn authorized(request: &Request, digest: &[u8; 32]) -> bool {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return false;
    };
    let Some(given) = value.as_bytes().strip_prefix(b"Bearer ") else {
        return false;
    };
    let given: [u8; 32] = Sha256::digest(given).into();
    bool::from(given.ct_eq(digest))
}

/// Turns the plain-text refusals of the layers (413 from the body limit) into the API's JSON.
async fn json_errors(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json {
        return too_large().into_response();
    }
    if response.status() == StatusCode::METHOD_NOT_ALLOWED && !is_json {
        let allow = response.headers().get(header::ALLOW).cloned();
        let mut response = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this route",
        )
        .into_response();
        if let Some(allow) = allow {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        return response;
    }
    response
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

#[derive(Serialize)]
struct Info {
    version: &'static str,
    dir: String,
    sync: &'static str,
    sync_interval_ms: Option<u128>,
    messages: u64,
    outcomes: u64,
    open_report: commlog::OpenReport,
    /// Webhook events answered 200 without appending since the server started.
    webhook_events_not_applied: WebhookCounts,
}

pub(crate) fn sync_name(sync: SyncPolicy) -> &'static str {
    match sync {
        SyncPolicy::Always => "always",
        SyncPolicy::Interval(_) => "interval",
        SyncPolicy::Never => "never",
    }
}

async fn info(State(state): State<AppState>) -> Result<Json<Info>, ApiError> {
    let sync = state.sync;
    let counters = Arc::clone(&state.webhook_counters);
    let info = blocking(&state, move |store| {
        let stats = store.get_communication_stats(&commlog::StatsFilter::new())?;
        Ok(Info {
            version: env!("CARGO_PKG_VERSION"),
            dir: store.dir().display().to_string(),
            sync: sync_name(sync),
            sync_interval_ms: match sync {
                SyncPolicy::Interval(interval) => Some(interval.as_millis()),
                _ => None,
            },
            messages: stats.total_messages,
            outcomes: stats.outcome_count,
            open_report: store.open_report(),
            webhook_events_not_applied: counters.counts(),
        })
    })
    .await?;
    Ok(Json(info))
}

async fn sent(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    request: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let mut request: input::Sent = input::parse_json(&body(request)?)?;
    // A retried request with the same key returns the message the first one created.
    if request.external_id.is_none()
        && let Some(key) = headers.get("idempotency-key")
    {
        let key = key
            .to_str()
            .map_err(|_| ApiError::invalid("Idempotency-Key must be printable ASCII"))?;
        request.external_id = Some(key.to_owned());
    }
    let message = blocking(&state, move |store| request.apply(store)).await?;
    let location = HeaderValue::from_str(&format!("/v1/messages/{}", message.id))
        .expect("a path of digits is a header value");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(message),
    ))
}

async fn follow_up(
    state: AppState,
    kind: Kind,
    path: Result<Path<u64>, PathRejection>,
    request: Result<Bytes, BytesRejection>,
) -> Result<Json<commlog::Message>, ApiError> {
    let id = id(path, "message id")?;
    let request = body(request)?;
    let (at, name) = match kind {
        Kind::Delivered | Kind::Opened => {
            let request: input::At = input::parse_json_or_default(&request)?;
            (request.at, None)
        }
        Kind::Failed => {
            let request: input::Failed = input::parse_json(&request)?;
            (request.at, Some(request.reason))
        }
        Kind::Action => {
            let request: input::Action = input::parse_json(&request)?;
            (request.at, Some(request.action))
        }
    };
    let message = blocking(&state, move |store| {
        input::follow_up(store, kind, id, at.as_deref(), name.as_deref())
    })
    .await?;
    Ok(Json(message))
}

async fn delivered(
    State(state): State<AppState>,
    path: Result<Path<u64>, PathRejection>,
    request: Result<Bytes, BytesRejection>,
) -> Result<Json<commlog::Message>, ApiError> {
    follow_up(state, Kind::Delivered, path, request).await
}

async fn opened(
    State(state): State<AppState>,
    path: Result<Path<u64>, PathRejection>,
    request: Result<Bytes, BytesRejection>,
) -> Result<Json<commlog::Message>, ApiError> {
    follow_up(state, Kind::Opened, path, request).await
}

async fn failed(
    State(state): State<AppState>,
    path: Result<Path<u64>, PathRejection>,
    request: Result<Bytes, BytesRejection>,
) -> Result<Json<commlog::Message>, ApiError> {
    follow_up(state, Kind::Failed, path, request).await
}

async fn action(
    State(state): State<AppState>,
    path: Result<Path<u64>, PathRejection>,
    request: Result<Bytes, BytesRejection>,
) -> Result<Json<commlog::Message>, ApiError> {
    follow_up(state, Kind::Action, path, request).await
}

async fn outcome(
    State(state): State<AppState>,
    request: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let request: input::Outcome = input::parse_json(&body(request)?)?;
    let outcome = blocking(&state, move |store| request.apply(store)).await?;
    Ok((StatusCode::CREATED, Json(outcome)))
}

async fn budget(
    State(state): State<AppState>,
    request: Result<Bytes, BytesRejection>,
) -> Result<Json<input::BudgetSet>, ApiError> {
    let request: input::Budget = input::parse_json(&body(request)?)?;
    Ok(Json(
        blocking(&state, move |store| request.apply(store)).await?,
    ))
}

/// Applies one batch line; its result line.
fn batch_line(store: &Store, number: usize, line: &[u8]) -> serde_json::Value {
    let result = input::parse_json::<Call>(line).and_then(|call| {
        let (status, value) = match call {
            Call::Sent(sent) => (201, serde_json::to_value(sent.apply(store)?)),
            Call::Outcome(outcome) => (201, serde_json::to_value(outcome.apply(store)?)),
            Call::Budget(budget) => (200, serde_json::to_value(budget.apply(store)?)),
            Call::Delivered(call) => (200, follow_up_line(store, Kind::Delivered, call)?),
            Call::Opened(call) => (200, follow_up_line(store, Kind::Opened, call)?),
            Call::Failed(call) => (200, follow_up_line(store, Kind::Failed, call)?),
            Call::Action(call) => (200, follow_up_line(store, Kind::Action, call)?),
        };
        Ok((status, value.expect("the library's types serialize")))
    });
    match result {
        Ok((status, value)) => {
            serde_json::json!({"line": number, "status": status, "result": value})
        }
        Err(error) => serde_json::json!({
            "line": number,
            "status": error.status.as_u16(),
            "error": error.message,
            "kind": error.kind,
        }),
    }
}

fn follow_up_line(
    store: &Store,
    kind: Kind,
    call: input::FollowUp,
) -> Result<serde_json::Result<serde_json::Value>, ApiError> {
    let name = match kind {
        Kind::Delivered | Kind::Opened => {
            if call.reason.is_some() || call.action.is_some() {
                return Err(ApiError::invalid(
                    "delivered and opened take only message_id and at",
                ));
            }
            None
        }
        Kind::Failed => call.reason,
        Kind::Action => call.action,
    };
    let message = input::follow_up(
        store,
        kind,
        call.message_id,
        call.at.as_deref(),
        name.as_deref(),
    )?;
    Ok(serde_json::to_value(message))
}

async fn batch(
    State(state): State<AppState>,
    request: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let output = blocking(&state, move |store| {
        let mut output = Vec::new();
        for (index, line) in request.split(|&byte| byte == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let result = batch_line(store, index + 1, line);
            serde_json::to_writer(&mut output, &result).expect("JSON values serialize");
            output.push(b'\n');
        }
        Ok(output)
    })
    .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        )],
        output,
    )
        .into_response())
}

async fn message(
    State(state): State<AppState>,
    path: Result<Path<u64>, PathRejection>,
) -> Result<Json<commlog::Message>, ApiError> {
    let id = id(path, "message id")?;
    Ok(Json(
        blocking(&state, move |store| Ok(store.get_message(id)?)).await?,
    ))
}

async fn history(
    State(state): State<AppState>,
    path: Result<Path<u64>, PathRejection>,
    params: Result<QueryParams<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<Vec<commlog::Message>>, ApiError> {
    let user = id(path, "user")?;
    let query = query(params, &["limit"])?;
    let limit = match query.count("limit")? {
        Some(0) => {
            return Err(ApiError::invalid(
                "invalid limit: \"0\" (must be at least 1)",
            ));
        }
        Some(limit) => usize::try_from(limit).unwrap_or(usize::MAX),
        None => HISTORY_LIMIT_DEFAULT,
    };
    Ok(Json(
        blocking(&state, move |store| {
            Ok(store.get_user_communication_history(user, limit)?)
        })
        .await?,
    ))
}

async fn stats(
    State(state): State<AppState>,
    params: Result<QueryParams<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<commlog::CommunicationStats>, ApiError> {
    let filter = query(params, &["user", "type", "channel", "start", "end"])?.stats_filter()?;
    Ok(Json(
        blocking(&state, move |store| {
            Ok(store.get_communication_stats(&filter)?)
        })
        .await?,
    ))
}

async fn engagement(
    State(state): State<AppState>,
    path: Result<Path<u64>, PathRejection>,
    params: Result<QueryParams<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<commlog::UserEngagement>, ApiError> {
    let user = id(path, "user")?;
    let filter = query(params, &["type", "channel", "start", "end"])?.engagement_filter()?;
    Ok(Json(
        blocking(&state, move |store| {
            Ok(store.get_user_engagement(user, &filter)?)
        })
        .await?,
    ))
}

async fn channels(
    State(state): State<AppState>,
    params: Result<QueryParams<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<commlog::ChannelReport>, ApiError> {
    let filter =
        query(params, &["user", "type", "start", "end", "period"])?.effectiveness_filter()?;
    Ok(Json(
        blocking(&state, move |store| {
            Ok(store.get_channel_effectiveness(&filter)?)
        })
        .await?,
    ))
}

async fn costs(
    State(state): State<AppState>,
    params: Result<QueryParams<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<commlog::CostReport>, ApiError> {
    let filter = query(
        params,
        &["month", "user", "type", "channel", "start", "end"],
    )?
    .cost_filter()?;
    Ok(Json(
        blocking(&state, move |store| Ok(store.get_cost_report(&filter)?)).await?,
    ))
}

async fn impact(
    State(state): State<AppState>,
    params: Result<QueryParams<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<commlog::ImpactReport>, ApiError> {
    let filter = query(params, &["user", "type", "channel", "start", "end"])?.impact_filter()?;
    Ok(Json(
        blocking(
            &state,
            move |store| Ok(store.get_financial_impact(&filter)?),
        )
        .await?,
    ))
}

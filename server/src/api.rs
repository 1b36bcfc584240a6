//! The JSON API under `/v1` (docs/SERVER.md): routes, the bearer-token check, body limits.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query as QueryParams, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use commlog::{Call, MessageRef, Store, SyncPolicy, Tracked};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_http::limit::RequestBodyLimitLayer;

use crate::error::ApiError;
use crate::input::{self, Kind, Query};
use crate::tracker::Tracker;
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
    /// Every tracking call goes through it.
    pub tracker: Tracker,
    pub sync: SyncPolicy,
    /// The base URL the providers call (Twilio signs the full URL).
    pub public_url: Option<String>,
    pub webhook_secrets: Arc<WebhookSecrets>,
    pub webhook_counters: Arc<WebhookCounters>,
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

/// A body past the route's limit; [`json_errors`] names the limit of the route asked.
fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        "request body too large",
    )
}

/// The body limit of the route at `path`.
fn body_limit(path: &str) -> usize {
    if path == "/v1/batch" {
        BATCH_BODY_LIMIT
    } else if path.starts_with("/v1/webhooks/") {
        WEBHOOK_BODY_LIMIT
    } else {
        BODY_LIMIT
    }
}

fn id(path: Result<Path<u64>, PathRejection>, what: &str) -> Result<u64, ApiError> {
    path.ok()
        .map(|Path(id)| id)
        .filter(|&id| id >= 1)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "invalid {what}: must be a whole number of at least 1"
            ))
        })
}

fn query(
    params: Result<QueryParams<Vec<(String, String)>>, QueryRejection>,
    known: &[&str],
) -> Result<Query, ApiError> {
    let QueryParams(params) =
        params.map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
    Query::new(params, known)
}

/// The routes, without authentication (the Unix socket); [`with_token`] adds it for TCP.
pub(crate) fn router(state: AppState) -> Router {
    let small = || RequestBodyLimitLayer::new(BODY_LIMIT);
    // The routes that take no query parameter refuse any, as the reports refuse those they
    // do not know: a typo (an idempotency key put in the query) never passes silently. Only
    // their methods' handlers refuse it, so a method a route does not take is still 405.
    let none =
        |handlers: MethodRouter<AppState>| handlers.route_layer(middleware::from_fn(refuse_query));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/info", none(get(info)))
        .route("/v1/messages", none(post(sent)).layer(small()))
        .route("/v1/messages/{id}", none(get(message)))
        .route("/v1/messages/{id}/external-id", none(get(external_id)))
        .route(
            "/v1/messages/{id}/delivered",
            none(post(delivered)).layer(small()),
        )
        .route(
            "/v1/messages/{id}/opened",
            none(post(opened)).layer(small()),
        )
        .route(
            "/v1/messages/{id}/failed",
            none(post(failed)).layer(small()),
        )
        .route(
            "/v1/messages/{id}/actions",
            none(post(action)).layer(small()),
        )
        .route(
            "/v1/messages/by-external-id/{external_id}",
            none(get(message_by_external_id)),
        )
        .route(
            "/v1/messages/by-external-id/{external_id}/{follow_up}",
            none(post(external_follow_up)).layer(small()),
        )
        .route("/v1/outcomes", none(post(outcome)).layer(small()))
        .route("/v1/budgets", none(post(budget).put(budget)).layer(small()))
        .route(
            "/v1/batch",
            none(post(batch)).layer(RequestBodyLimitLayer::new(BATCH_BODY_LIMIT)),
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
        .layer(middleware::from_fn(json_errors))
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
    // The scheme's name is case-insensitive (RFC 9110, 11.1).
    let value = value.as_bytes();
    let Some((scheme, given)) = value.split_at_checked(b"Bearer ".len()) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case(b"Bearer ") {
        return false;
    }
    let given: [u8; 32] = Sha256::digest(given).into();
    bool::from(given.ct_eq(digest))
}

/// Turns the refusals of the layers into the API's JSON: a body past its limit (413, naming the
/// limit of the route asked, whichever refused it), a method the route does not take (405).
async fn json_errors(request: Request, next: Next) -> Response {
    let limit = body_limit(request.uri().path());
    let response = next.run(request).await;
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("request body too large: at most {limit} bytes on this route"),
        )
        .into_response();
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

/// Refuses a request that names any query parameter (400), on the routes that take none.
async fn refuse_query(request: Request, next: Next) -> Response {
    let query = request.uri().query().unwrap_or_default();
    if let Some((name, _)) = form_urlencoded::parse(query.as_bytes()).next() {
        return ApiError::invalid(format!(
            "unknown query parameter {} (this route takes none)",
            commlog::quote_value(&name)
        ))
        .into_response();
    }
    next.run(request).await
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
    let store = &state.store;
    let stats = store.get_communication_stats(&commlog::StatsFilter::new())?;
    Ok(Json(Info {
        version: env!("CARGO_PKG_VERSION"),
        dir: store.dir().display().to_string(),
        sync: sync_name(state.sync),
        sync_interval_ms: match state.sync {
            SyncPolicy::Interval(interval) => Some(interval.as_millis()),
            _ => None,
        },
        messages: stats.total_messages,
        outcomes: stats.outcome_count,
        open_report: store.open_report(),
        webhook_events_not_applied: state.webhook_counters.counts(),
    }))
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
    let message = message_of(&state, state.tracker.track_one(request.request()?).await?)?;
    let location = HeaderValue::from_str(&format!("/v1/messages/{}", message.id))
        .expect("a path of digits is a header value");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(message),
    ))
}

/// The message a message call answered with, as it now stands.
fn message_of(state: &AppState, tracked: Tracked) -> Result<commlog::Message, ApiError> {
    let id = tracked
        .message_id()
        .expect("a message call answers with its message");
    Ok(state.store.get_message(id)?)
}

/// The follow-up a request body asks for.
fn follow_up_request(
    kind: Kind,
    message: MessageRef,
    request: &[u8],
) -> Result<Call<'static>, ApiError> {
    let (at, name) = match kind {
        Kind::Delivered | Kind::Opened => {
            let request: input::At = input::parse_json_or_default(request)?;
            (request.at, None)
        }
        Kind::Failed => {
            let request: input::Failed = input::parse_json(request)?;
            (request.at, Some(request.reason))
        }
        Kind::Action => {
            let request: input::Action = input::parse_json(request)?;
            (request.at, Some(request.action))
        }
    };
    input::follow_up(kind, message, at.as_deref(), name)
}

async fn follow_up(
    state: AppState,
    kind: Kind,
    path: Result<Path<u64>, PathRejection>,
    request: Result<Bytes, BytesRejection>,
) -> Result<Json<commlog::Message>, ApiError> {
    let id = id(path, "message id")?;
    let request = follow_up_request(kind, MessageRef::from(id), &body(request)?)?;
    Ok(Json(message_of(
        &state,
        state.tracker.track_one(request).await?,
    )?))
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

/// `POST /v1/messages/by-external-id/{external_id}/{delivered|opened|failed|actions}`.
async fn external_follow_up(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Result<Bytes, BytesRejection>,
) -> Result<Json<commlog::Message>, ApiError> {
    let Ok(Path((external_id, follow_up))) = path else {
        return Err(ApiError::invalid("invalid external id in the path"));
    };
    let kind = match follow_up.as_str() {
        "delivered" => Kind::Delivered,
        "opened" => Kind::Opened,
        "failed" => Kind::Failed,
        "actions" => Kind::Action,
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route",
            ));
        }
    };
    let request = follow_up_request(kind, MessageRef::External(external_id), &body(request)?)?;
    Ok(Json(message_of(
        &state,
        state.tracker.track_one(request).await?,
    )?))
}

async fn outcome(
    State(state): State<AppState>,
    request: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let request: input::Outcome = input::parse_json(&body(request)?)?;
    match state.tracker.track_one(request.request()?).await? {
        Tracked::Outcome(outcome) => Ok((StatusCode::CREATED, Json(outcome))),
        _ => unreachable!("an outcome call answers with its outcome"),
    }
}

async fn budget(
    State(state): State<AppState>,
    request: Result<Bytes, BytesRejection>,
) -> Result<Json<input::BudgetSet>, ApiError> {
    let request: input::Budget = input::parse_json(&body(request)?)?;
    let (request, set) = request.request()?;
    state.tracker.track_one(request).await?;
    Ok(Json(set))
}

/// A batch line as a call.
fn batch_request(line: &[u8]) -> Result<Call<'static>, ApiError> {
    let follow_up = |kind: Kind, mut call: input::FollowUp| {
        let name = match kind {
            Kind::Delivered | Kind::Opened => {
                if call.reason.is_some() || call.action.is_some() {
                    return Err(ApiError::invalid(
                        "delivered and opened take only message_id (or external_id) and at",
                    ));
                }
                None
            }
            Kind::Failed if call.action.is_some() => {
                return Err(ApiError::invalid(
                    "unknown field `action`: failed takes a reason, not an action",
                ));
            }
            Kind::Action if call.reason.is_some() => {
                return Err(ApiError::invalid(
                    "unknown field `reason`: action takes an action, not a reason",
                ));
            }
            Kind::Failed => call.reason.take(),
            Kind::Action => call.action.take(),
        };
        let message = call.message()?;
        input::follow_up(kind, message, call.at.as_deref(), name)
    };
    let name: input::CallName = input::parse_json(line)?;
    match &*name.call {
        "sent" => input::parse_json::<input::Sent>(line)?.request(),
        "outcome" => input::parse_json::<input::Outcome>(line)?.request(),
        "budget" => Ok(input::parse_json::<input::Budget>(line)?.request()?.0),
        "delivered" => follow_up(Kind::Delivered, input::parse_json(line)?),
        "opened" => follow_up(Kind::Opened, input::parse_json(line)?),
        "failed" => follow_up(Kind::Failed, input::parse_json(line)?),
        "action" => follow_up(Kind::Action, input::parse_json(line)?),
        other => Err(ApiError::invalid(format!(
            "unknown call {}: must be sent, delivered, opened, failed, action, outcome or budget",
            commlog::quote_value(other)
        ))),
    }
}

/// A batch line's result line: the message's id for a message call, the error for a failure.
#[derive(Serialize)]
struct BatchLine<'a> {
    line: usize,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
}

fn write_line(output: &mut Vec<u8>, line: usize, result: Result<(u16, Option<u64>), &ApiError>) {
    let line = match result {
        Ok((status, id)) => BatchLine {
            line,
            status,
            id,
            error: None,
            kind: None,
        },
        Err(error) => BatchLine {
            line,
            status: error.status.as_u16(),
            id: None,
            error: Some(&error.message),
            kind: Some(error.kind),
        },
    };
    serde_json::to_writer(&mut *output, &line).expect("result lines serialize");
    output.push(b'\n');
}

/// What became of a line of a batch, one byte a line: its error is written again from the line
/// when the answer is, so that a batch keeps no error while its calls are applied.
#[derive(Clone, Copy)]
enum LineOutcome {
    Blank,
    Refused,
    /// A call that answers 200 when it succeeds (a follow-up, a budget).
    Applied,
    /// A call that answers 201 when it succeeds (a message sent, an outcome).
    Created,
}

async fn batch(
    State(state): State<AppState>,
    request: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let count = request.iter().filter(|&&byte| byte == b'\n').count() + 1;
    let mut outcomes = Vec::with_capacity(count);
    let mut requests = Vec::new();
    for line in request.split(|&byte| byte == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            outcomes.push(LineOutcome::Blank);
            continue;
        }
        match batch_request(line) {
            Ok(request) => {
                outcomes.push(match request {
                    Call::Sent { .. } | Call::Outcome { .. } => LineOutcome::Created,
                    _ => LineOutcome::Applied,
                });
                requests.push(request);
            }
            Err(_) => outcomes.push(LineOutcome::Refused),
        }
    }
    // A store that could try none of the calls (poisoned) fails each line with its error.
    let calls = requests.len();
    let answers: Box<dyn Iterator<Item = Result<Tracked, ApiError>> + Send> =
        match state.tracker.track(requests).await {
            Ok(answers) => Box::new(
                answers
                    .into_iter()
                    .map(|answer| answer.map_err(ApiError::from)),
            ),
            Err(error) => Box::new(std::iter::repeat_n(Err(error), calls)),
        };
    let answer = BatchAnswer {
        request,
        at: 0,
        outcomes: outcomes.into_iter().enumerate(),
        answers,
    };
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        )],
        Body::from_stream(futures_util::stream::iter(
            answer.map(Ok::<_, std::convert::Infallible>),
        )),
    )
        .into_response())
}

/// A batch's answer, a line a line of the request, in chunks of about [`BATCH_CHUNK_BYTES`]
/// written as they are sent: an answer many times its request's size (a request of short bad
/// lines) is never held whole.
struct BatchAnswer {
    request: Bytes,
    /// Where the next line of the request starts.
    at: usize,
    outcomes: std::iter::Enumerate<std::vec::IntoIter<LineOutcome>>,
    /// The answers of the calls, in the order of their lines.
    answers: Box<dyn Iterator<Item = Result<Tracked, ApiError>> + Send>,
}

/// The size a chunk of a batch's answer grows to before it is sent.
const BATCH_CHUNK_BYTES: usize = 64 * 1024;

impl Iterator for BatchAnswer {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let mut chunk = Vec::new();
        while chunk.len() < BATCH_CHUNK_BYTES {
            let Some((index, outcome)) = self.outcomes.next() else {
                break;
            };
            let rest = &self.request[self.at..];
            let end = rest
                .iter()
                .position(|&byte| byte == b'\n')
                .unwrap_or(rest.len());
            let line = &rest[..end];
            self.at += end + 1;
            match outcome {
                LineOutcome::Blank => {}
                // Reading a line depends on nothing but its bytes: it is refused again alike.
                LineOutcome::Refused => {
                    let error =
                        batch_request(line).expect_err("a line refused once is refused again");
                    write_line(&mut chunk, index + 1, Err(&error));
                }
                LineOutcome::Applied | LineOutcome::Created => {
                    let status = if matches!(outcome, LineOutcome::Created) {
                        201
                    } else {
                        200
                    };
                    let result = self.answers.next().expect("one answer per call");
                    let result = result.as_ref().map(|answer| match answer {
                        Tracked::Message(id) => (status, Some(id.0)),
                        _ => (status, None),
                    });
                    write_line(&mut chunk, index + 1, result);
                }
            }
        }
        (!chunk.is_empty()).then(|| Bytes::from(chunk))
    }
}

async fn message(
    State(state): State<AppState>,
    path: Result<Path<u64>, PathRejection>,
) -> Result<Json<commlog::Message>, ApiError> {
    let id = id(path, "message id")?;
    Ok(Json(state.store.get_message(id)?))
}

/// The external id a message was sent with (`null`: none).
#[derive(Serialize)]
struct ExternalIdOf {
    id: u64,
    external_id: Option<String>,
}

/// `GET /v1/messages/{id}/external-id`.
async fn external_id(
    State(state): State<AppState>,
    path: Result<Path<u64>, PathRejection>,
) -> Result<Json<ExternalIdOf>, ApiError> {
    let id = id(path, "message id")?;
    let external_id = state.store.get_external_id(id)?;
    Ok(Json(ExternalIdOf { id, external_id }))
}

/// `GET /v1/messages/by-external-id/{external_id}`.
async fn message_by_external_id(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<commlog::Message>, ApiError> {
    let Ok(Path(external_id)) = path else {
        return Err(ApiError::invalid("invalid external id in the path"));
    };
    Ok(Json(state.store.get_message(external_id)?))
}

async fn history(
    State(state): State<AppState>,
    path: Result<Path<u64>, PathRejection>,
    params: Result<QueryParams<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Vec<commlog::Message>>, ApiError> {
    let user = id(path, "user")?;
    let query = query(params, &["limit"])?;
    let limit = query
        .count("limit")?
        .map_or(HISTORY_LIMIT_DEFAULT, |limit| {
            usize::try_from(limit).unwrap_or(usize::MAX)
        });
    Ok(Json(
        state.store.get_user_communication_history(user, limit)?,
    ))
}

async fn stats(
    State(state): State<AppState>,
    params: Result<QueryParams<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<commlog::CommunicationStats>, ApiError> {
    let filter = query(params, &["user", "type", "channel", "start", "end"])?.stats_filter()?;
    Ok(Json(state.store.get_communication_stats(&filter)?))
}

async fn engagement(
    State(state): State<AppState>,
    path: Result<Path<u64>, PathRejection>,
    params: Result<QueryParams<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<commlog::UserEngagement>, ApiError> {
    let user = id(path, "user")?;
    let filter = query(params, &["type", "channel", "start", "end"])?.engagement_filter()?;
    Ok(Json(state.store.get_user_engagement(user, &filter)?))
}

async fn channels(
    State(state): State<AppState>,
    params: Result<QueryParams<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<commlog::ChannelReport>, ApiError> {
    let filter =
        query(params, &["user", "type", "start", "end", "period"])?.effectiveness_filter()?;
    Ok(Json(state.store.get_channel_effectiveness(&filter)?))
}

async fn costs(
    State(state): State<AppState>,
    params: Result<QueryParams<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<commlog::CostReport>, ApiError> {
    let filter = query(
        params,
        &["month", "user", "type", "channel", "start", "end"],
    )?
    .cost_filter()?;
    Ok(Json(state.store.get_cost_report(&filter)?))
}

async fn impact(
    State(state): State<AppState>,
    params: Result<QueryParams<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<commlog::ImpactReport>, ApiError> {
    let filter = query(params, &["user", "type", "channel", "start", "end"])?.impact_filter()?;
    Ok(Json(state.store.get_financial_impact(&filter)?))
}

//! Errors: the server's own ([`ServeError`], from [`crate::serve`]) and the API's JSON error
//! responses.

use std::fmt;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Why [`crate::serve`] could not start or did not end cleanly. Messages name paths and
/// addresses, never a token.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServeError {
    /// The options cannot be served as given (e.g. TCP on a public address without a token).
    Config(String),
    /// Opening, syncing or closing the store failed.
    Store(commlog::Error),
    /// A socket or the runtime could not be set up.
    Io {
        /// What was being done, e.g. "bind unix socket /srv/commlog/commlog.sock".
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Config(message) => f.write_str(message),
            ServeError::Store(error) => error.fmt(f),
            ServeError::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServeError::Config(_) => None,
            ServeError::Store(error) => Some(error),
            ServeError::Io { source, .. } => Some(source),
        }
    }
}

impl From<commlog::Error> for ServeError {
    fn from(error: commlog::Error) -> ServeError {
        ServeError::Store(error)
    }
}

impl ServeError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> ServeError {
        ServeError::Io {
            what: what.into(),
            source,
        }
    }

    /// True for errors of the store (corruption, lock, I/O on its files), false for the
    /// options and the sockets.
    pub fn is_storage(&self) -> bool {
        matches!(self, ServeError::Store(error) if !matches!(error, commlog::Error::InvalidInput { .. }))
    }
}

/// An API error: the status and the JSON body `{"error": message, "kind": kind}`.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

#[derive(Serialize)]
pub(crate) struct ErrorBody<'a> {
    pub error: &'a str,
    pub kind: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }

    /// 400: a request the API cannot read (bad JSON, a missing or unknown field, a bad
    /// parameter).
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }
}

impl From<commlog::Error> for ApiError {
    fn from(error: commlog::Error) -> ApiError {
        let (status, kind) = match &error {
            commlog::Error::InvalidInput { .. } => (StatusCode::BAD_REQUEST, "invalid_input"),
            commlog::Error::UnknownMessage { .. } | commlog::Error::UnknownExternalId { .. } => {
                (StatusCode::NOT_FOUND, "unknown_message")
            }
            commlog::Error::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
            commlog::Error::Corruption { .. } => (StatusCode::SERVICE_UNAVAILABLE, "corruption"),
            commlog::Error::Locked { .. } => (StatusCode::SERVICE_UNAVAILABLE, "locked"),
            commlog::Error::Io { .. } => (StatusCode::SERVICE_UNAVAILABLE, "io"),
            commlog::Error::Poisoned { .. } => (StatusCode::SERVICE_UNAVAILABLE, "storage"),
            _ => (StatusCode::SERVICE_UNAVAILABLE, "storage"),
        };
        ApiError::new(status, kind, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: &self.message,
                kind: self.kind,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

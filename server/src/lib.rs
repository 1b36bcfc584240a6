//! `commlog serve`: one process owns a commlog store and serves the app's web workers, task
//! workers and the message providers' webhooks over HTTP (a Unix socket, and TCP when asked).
//!
//! [`serve`] opens the store for writing, listens, answers the JSON API under `/v1`
//! (docs/SERVER.md) until SIGTERM or SIGINT, then stops accepting, finishes the requests in
//! flight, syncs and closes the store.

mod api;
mod error;
mod input;
mod serve;
mod tracker;
mod webhook_api;
pub mod webhooks;

pub use error::ServeError;
pub use serve::{SHUTDOWN_GRACE_DEFAULT, SOCKET_FILE_NAME, ServeOptions, read_secret, serve};
pub use webhook_api::WebhookSecrets;

//! `commlog serve`: one process owns a commlog store and serves the app's web workers, task
//! workers and the message providers' webhooks over HTTP (a Unix socket, and TCP when asked).

pub mod webhooks;

//! Code shared by the CLI's integration tests: each test file declares `mod support;`. The store
//! helpers are the library tests' own, so that one version serves both.
// Each test file uses only some of these items; the rest would warn as dead code there.
#![allow(dead_code)]

pub mod command;
#[path = "../../../tests/support/files.rs"]
pub mod files;
#[path = "../../../tests/support/reports.rs"]
pub mod reports;
#[path = "../../../tests/support/store.rs"]
pub mod store;

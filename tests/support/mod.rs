//! Code shared by the integration tests: each test file declares `mod support;`.
// Each test file uses only some of these items; the rest would warn as dead code there.
#![allow(dead_code)]

pub mod answers;
pub mod brute;
pub mod calls;
pub mod file_size_limit;
pub mod files;
pub mod model;
pub mod reports;
pub mod script;
pub mod store;
pub mod walk;

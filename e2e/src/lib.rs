//! End-to-end test harness: starts real processes (PostgreSQL, Envoy, keysync, an echo
//! backend) on 127.0.0.1 and watches what they log.
//!
//! Everything here is synchronous and `std::process` based, so it works the same from a
//! plain `#[test]` and from a `#[tokio::test]` (call it from `spawn_blocking` when a
//! blocking wait would stall a single-threaded runtime). Failures panic with a message
//! that says what was expected and what the process logged; a [`Process`] dropped while
//! its test panics prints the tail of its log, so CI output shows what each process said.
//! Every wait is a [`poll`] bounded by a deadline that reports what it saw last, never a
//! sleep standing in for an assertion.

// A test harness: an unmet expectation panics with its message, which is the failure
// report the test wants.
#![allow(clippy::expect_used)]

pub mod analytics_job;
pub mod demo_script;
pub mod echo;
pub mod fake_clock;
pub mod faults;
pub mod gateway;
pub mod hot_restart;
pub mod http;
pub mod in_process;
pub mod kafka;
pub mod key_population;
pub mod keysync;
pub mod leak_signer;
mod os;
pub mod paced_load;
pub mod paths;
pub mod pg_dump;
pub mod poll;
pub mod postgres;
pub mod process;
pub mod rate_window;
pub mod recording_backend;
pub mod redis;
pub mod replies;
pub mod rogue_keysync;
pub mod scratch;
pub mod seeded;
mod server_start;
mod spawner;
pub mod stack;
pub mod tcp_proxy;
pub mod test_ca;
pub mod usage_sums;
pub mod webdriver;
pub mod webhook_receiver;

pub use postgres::TestPostgres;
pub use process::{Process, Signal};
pub use scratch::ScratchDir;

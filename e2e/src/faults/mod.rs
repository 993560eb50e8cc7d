//! The fault suite (issue 12): the whole system (real Envoy, keysync, PostgreSQL and
//! Redis, started by the harness) with faults injected by the test itself, each case
//! printing its figures and then checking what the system promises:
//!
//! > A revoked key is refused within one second while everything is healthy. It never
//! > works longer than `max_staleness` (default 15 minutes), whatever fails.
//!
//! Every case runs at two scales: [`Scale::Short`] inside `make test`
//! (`e2e/tests/faults.rs`, all cases in a few minutes) and [`Scale::Full`] with the
//! loads the issue states (`make faults`, the `keysync-faults` binary, whose figures
//! go into RELIABILITY.md).

mod backend_paths;
pub mod clock_step;
pub mod confirmations;
pub mod dump_restore;
pub mod edge_fuzz;
mod edge_requests;
pub mod figures;
pub mod filter_health;
pub mod hot_restart;
pub mod keysync_kills;
pub mod postgres_outage;
pub mod redis_outage;
pub mod rogue_messages;
pub mod rogue_stream;
pub mod soak;
pub mod split_keysyncs;
pub mod vm_crash;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use keysync_proto::v1 as proto;
use sha2::{Digest, Sha256};

use crate::http;
use crate::keysync::CreatedKey;
use crate::poll;

/// How hard a case pushes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// Reduced loads, for `make test`.
    Short,
    /// The loads of the issue's table, for `make faults`.
    Full,
}

impl Scale {
    /// `short` or `full`, by scale.
    pub fn pick<T>(self, short: T, full: T) -> T {
        match self {
            Scale::Short => short,
            Scale::Full => full,
        }
    }
}

/// The bound on a revocation while everything is healthy.
pub const HEALTHY_BOUND: Duration = Duration::from_secs(1);

/// How late past `max_staleness` (counted from the last confirmation) the gateway may
/// stop trusting its store: the sync service writes the age it heard at its tick, a
/// worker notices the write at its own tick and looks at the age at the next (250 ms
/// each, so up to 750 ms by design; about 450 ms seen), and as much again for ticks run
/// late on a shared machine.
pub const STALENESS_SLACK: Duration = Duration::from_millis(1_500);

/// The sync service's shipped defaults: a full refresh every 15 minutes, the watch
/// stream does the work (the harness's usual options refresh every 2 s, which would
/// hide what the stream misses).
pub const SHIPPED_SYNC: &str = r#"{"role":"sync"}"#;

/// Options for a gateway in front of `backend` asking `keysync`, with the shipped sync
/// defaults and, when given, `max_staleness` (else its default, 15 minutes).
pub fn shipped_options(
    keysync: SocketAddr,
    backend: &crate::stack::Backend,
    max_staleness: Option<Duration>,
) -> crate::gateway::GatewayOptions {
    let mut options = crate::gateway::GatewayOptions::new(keysync, backend.backend_urls());
    options.sync_config = SHIPPED_SYNC.into();
    if let Some(max_staleness) = max_staleness {
        options.auth_config = format!(
            r#"{{"role":"auth","max_staleness":"{}s"}}"#,
            max_staleness.as_secs()
        );
    }
    options
}

/// `GET /` with `Authorization: Bearer <key>` on a fresh connection; `None` when no
/// answer came (the gateway is restarting, a VM hangs).
pub fn status_of(gateway: SocketAddr, key: &str) -> Option<u16> {
    let bearer = format!("Bearer {key}");
    http::get(gateway, "/", &[("authorization", bearer.as_bytes())])
        .ok()
        .map(|response| response.status)
}

/// Sends `key` back to back until the answer is `status`; how long that took from
/// `since`, or `None` if it did not happen within `timeout`.
pub fn time_until_status(
    gateway: SocketAddr,
    key: &str,
    status: u16,
    since: Instant,
    timeout: Duration,
) -> Option<Duration> {
    poll::until(since + timeout, Duration::ZERO, || {
        if status_of(gateway, key) == Some(status) {
            Ok(since.elapsed())
        } else {
            Err(())
        }
    })
    .ok()
}

/// What an operator sees of a case, as figures: the filter's counters, keysync's
/// health metrics (while it runs), and the distinct warnings both logged.
pub fn operator_figures(
    figures: &mut figures::Figures,
    gateway: &crate::gateway::Gateway,
    keysync: Option<&crate::keysync::Keysync>,
) {
    let stats = gateway.stats();
    let stat = |name: &str| stats.get(name).copied().unwrap_or(0);
    figures.add(
        &format!(
            "operators: Envoy stats ({}*)",
            gateway.filter.stats_prefix()
        ),
        format!(
            "stale={}, unavailable={}, stale_answers={}, resyncs={}, miss_lookup_errors={}, seconds_since_sync={}",
            stat("stale"),
            stat("unavailable"),
            stat("stale_answers"),
            stat("resyncs"),
            stat("miss_lookup_errors"),
            stat("seconds_since_sync"),
        ),
    );
    figures.add(
        "operators: filter warnings (distinct)",
        distinct_lines(
            &gateway.process.log(),
            &[
                "[warning][wasm]",
                "[error][wasm]",
                "[warning][dynamic_modules]",
                "[error][dynamic_modules]",
                "[critical]",
            ],
        ),
    );
    if let Some(keysync) = keysync {
        let metrics = http::get(keysync.http, "/metrics", &[])
            .map(|response| response.text())
            .unwrap_or_default();
        let metric = |name: &str| {
            metrics
                .lines()
                .find(|line| line.split([' ', '{']).next() == Some(name))
                .and_then(|line| line.rsplit(' ').next())
                .unwrap_or("-")
                .to_string()
        };
        figures.add(
            "operators: keysync metrics",
            format!(
                "keysync_confirmed_age_seconds={}, keysync_change_listener_up={}, keysync_db_errors_total={}, keysync_ready={}",
                metric("keysync_confirmed_age_seconds"),
                metric("keysync_change_listener_up"),
                metric("keysync_db_errors_total"),
                metric("keysync_ready"),
            ),
        );
        figures.add(
            "operators: keysync warnings (distinct)",
            distinct_lines(&keysync.process.log(), &[" WARN ", " ERROR "]),
        );
    }
}

/// The first few log lines holding any of `markers`, one per distinct message (digits
/// ignored), without their timestamps and prefixes.
pub fn distinct_lines(log: &str, markers: &[&str]) -> String {
    let mut seen: Vec<(String, String)> = Vec::new();
    for line in log.lines() {
        if !markers.iter().any(|marker| line.contains(marker)) {
            continue;
        }
        // Envoy: "... wasm log keysync keysync: <message>", or for the native filter
        // "...[dynamic_modules] [:] <message>"; keysync: "... target: <message>".
        let message = line
            .split_once("[dynamic_modules] [:] ")
            .or_else(|| line.rsplit_once("keysync: "))
            .map(|(_, message)| message)
            .or_else(|| line.split_once(": ").map(|(_, message)| message))
            .unwrap_or(line);
        let message: String = message
            .chars()
            .take(150)
            .collect::<String>()
            .replace('|', "/");
        let shape = shape_of(&message);
        if !seen.iter().any(|(known, _)| *known == shape) {
            seen.push((shape, message));
        }
    }
    if seen.is_empty() {
        return "none".to_string();
    }
    let shown: Vec<String> = seen
        .iter()
        .take(5)
        .map(|(_, message)| format!("`{message}`"))
        .collect();
    let more = seen.len().saturating_sub(5);
    if more > 0 {
        format!("{} (and {more} more)", shown.join("; "))
    } else {
        shown.join("; ")
    }
}

/// A log message with its numbers and hashes blanked, so that two lines saying the same
/// of different keys or durations count as one.
fn shape_of(message: &str) -> String {
    let mut shape = String::new();
    let mut word = String::new();
    for c in message.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '.' {
            word.push(c);
            continue;
        }
        if word.chars().any(|w| w.is_ascii_digit()) {
            shape.push('#');
        } else {
            shape.push_str(&word);
        }
        word.clear();
        shape.push(c);
    }
    shape
}

/// The 16 bytes of a UUID in its text form (as the CLI prints ids).
pub fn uuid_bytes(text: &str) -> Vec<u8> {
    let hex: Vec<u8> = text.bytes().filter(|b| *b != b'-').collect();
    assert_eq!(hex.len(), 32, "not a UUID: {text:?}");
    hex.chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).expect("ASCII");
            u8::from_str_radix(pair, 16).unwrap_or_else(|_| panic!("not a UUID: {text:?}"))
        })
        .collect()
}

/// The record keysync serves for a key the CLI created.
pub fn record_of(key: &CreatedKey) -> proto::KeyRecord {
    proto::KeyRecord {
        key_hash: Sha256::digest(key.key.as_bytes()).to_vec(),
        key_id: uuid_bytes(&key.key_id),
        org_id: uuid_bytes(&key.org_id),
        expires_at: 0,
        rate_limit: None,
        scopes: Vec::new(),
        allowed_networks: Vec::new(),
    }
}

/// The revision the database's counter stands at.
pub fn database_revision(postgres: &crate::TestPostgres, database_url: &str) -> u64 {
    let database = crate::postgres::database_of(database_url);
    postgres
        .psql(database, "SELECT revision FROM keysync_revision")
        .trim()
        .parse()
        .expect("the revision counter is a number")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_become_their_sixteen_bytes() {
        let bytes = uuid_bytes("00112233-4455-6677-8899-aabbccddeeff");
        assert_eq!(bytes, (0..16).map(|n| n * 0x11).collect::<Vec<u8>>());
    }

    #[test]
    fn native_log_lines_lose_their_prefix() {
        let log = "[2026-12-07 09:36:59.368][17321][warning][dynamic_modules] [:] watch stream down (closed)\n\
                   [2026-12-07 09:37:09.617][17322][warning][dynamic_modules] [:] watch stream down (closed)\n";
        assert_eq!(
            distinct_lines(log, &["[warning][dynamic_modules]"]),
            "`watch stream down (closed)`"
        );
    }

    #[test]
    fn log_lines_about_different_keys_count_once() {
        let log = "x [warning][wasm] keysync: lookup of key_hash=af77f051 failed\n\
                   y [warning][wasm] keysync: lookup of key_hash=7b521905 failed\n\
                   z [warning][wasm] keysync: watch stream down (closed)\n";
        assert_eq!(
            distinct_lines(log, &["[warning][wasm]"]),
            "`lookup of key_hash=af77f051 failed`; `watch stream down (closed)`"
        );
    }
}

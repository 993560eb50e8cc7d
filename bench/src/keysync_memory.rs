//! keysync's own resident memory with many active keys, and how long it takes to load
//! them (no Envoy involved). Three figures from one PostgreSQL:
//!   (1) keys arriving while keysync runs, in transactions of 100,000 (how `compare`
//!       fills its database: every batch reaches keysync as one catch-up);
//!   (2) a fresh keysync's first full load of the same keys (time to ready, RSS);
//!   (3) the same keysync after a full reload (both key sets existed at once before).
//!
//! RSS is `VmRSS` of `/proc/<pid>/status`, read after a short settle; the peak is
//! `VmHWM`. "ready in" runs from starting the process to its `snapshot loaded` line;
//! "load" is keysync's own `keysync_db_query_duration_seconds` for the full load (the
//! PostgreSQL read together with whatever keysync does with the rows as they arrive).

use crate::bench_keys::{wait_for_keysync, BenchKeys};
use crate::proc_status::status_kib;
use keysync_e2e::keysync::Keysync;
use std::time::{Duration, Instant};
/// The full reload interval of the keysync measured in (2) and (3).
const RELOAD_INTERVAL: &str = "20s";
/// Quiet time before reading RSS, so allocators that return memory over time (and
/// background work after a load) are done.
const SETTLE: Duration = Duration::from_secs(2);
const TIMEOUT: Duration = Duration::from_secs(600);

pub fn run(keys: usize) {
    let mut bench_keys = BenchKeys::start();
    let database_url = bench_keys.database_url.clone();

    // (1) Keys arriving by catch-ups. No full reload meanwhile: a reload would rebuild
    // the key set, which (2) and (3) measure on their own.
    let following = Keysync::start(&database_url, &[("KEYSYNC_FULL_RELOAD_INTERVAL", "24h")]);
    let empty_rss = status_kib(following.process.pid(), "VmRSS");
    bench_keys.fill_to(keys);
    wait_for_keysync(&following, keys, TIMEOUT);
    std::thread::sleep(SETTLE);
    let followed = Memory::of(&following);
    drop(following);

    // (2) A fresh keysync: the first full load.
    let started = Instant::now();
    let keysync = Keysync::start(
        &database_url,
        &[("KEYSYNC_FULL_RELOAD_INTERVAL", RELOAD_INTERVAL)],
    );
    let ready = started.elapsed();
    assert_eq!(keysync.metric("keysync_snapshot_keys", &[]) as usize, keys);
    let load_time = keysync.metric("keysync_db_query_duration_seconds_sum", &["kind=\"full\""]);
    std::thread::sleep(SETTLE);
    let first_load = Memory::of(&keysync);

    // (3) The full reload of the same keys.
    let line = keysync.process.wait_for_log("snapshot reloaded:", TIMEOUT);
    assert!(line.contains(&format!("keys={keys} ")), "{line}");
    let reload_time =
        keysync.metric("keysync_db_query_duration_seconds_sum", &["kind=\"full\""]) - load_time;
    std::thread::sleep(SETTLE);
    let reloaded = Memory::of(&keysync);

    println!("keysync with {keys} active keys (RSS in MiB; peak = VmHWM since start)");
    println!("  {:<42} {:>7.1}", "empty store:", mib(empty_rss));
    let row = |label: &str, memory: &Memory, note: String| {
        println!(
            "  {label:<42} {:>7.1}  peak {:>7.1}{note}",
            mib(memory.rss),
            mib(memory.peak)
        );
    };
    row(
        "(1) after the keys arrived by catch-ups:",
        &followed,
        String::new(),
    );
    row(
        "(2) after the first full load:",
        &first_load,
        format!(
            "  ready in {:.2} s (load {load_time:.2} s)",
            ready.as_secs_f64()
        ),
    );
    row(
        "(3) after a full reload:",
        &reloaded,
        format!("  (load {reload_time:.2} s)"),
    );
}

struct Memory {
    rss: u64,
    peak: u64,
}

impl Memory {
    fn of(keysync: &Keysync) -> Memory {
        let pid = keysync.process.pid();
        Memory {
            rss: status_kib(pid, "VmRSS"),
            peak: status_kib(pid, "VmHWM"),
        }
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

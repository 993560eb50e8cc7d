//! `keys import` of a large file (issue 25: 100,000 imported keys in under 10 s): the
//! wall time of `keysync keys import` (read, check every line, hash the lines that give
//! a key, insert in one transaction) against a real PostgreSQL, with `keysync serve`
//! running on the same database, so the import's one revision is also caught up by a
//! live keysync as in production. Each round imports a fresh file into a fresh
//! organization; afterwards the benchmark checks that the organization holds every key
//! and that keysync's key set took them all.

use std::time::{Duration, Instant};

use keysync_e2e::keysync::{self as ks, Keysync};
use keysync_e2e::poll;
use keysync_e2e::postgres::{database_of, TestPostgres};
use keysync_e2e::ScratchDir;
use sha2::{Digest, Sha256};

use crate::median::median;

/// A JSON Lines file of `keys` keys for round `round`: every other line by hash (as the
/// old gateway exported them), the others by text (hashed on import).
fn import_file(keys: usize, round: usize) -> String {
    let mut text = String::with_capacity(keys * 120);
    for n in 0..keys {
        let key = format!("sk_live_ImportBench{round:03}x{n:014}");
        if n % 2 == 0 {
            let hash: String = Sha256::digest(key.as_bytes())
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            text.push_str(&format!(
                "{{\"key_hash\": \"{hash}\", \"name\": \"imported {n}\", \
                 \"created_at\": \"2024-01-01T00:00:00Z\"}}\n"
            ));
        } else {
            text.push_str(&format!(
                "{{\"key\": \"{key}\", \"name\": \"imported {n}\", \"expires_at\": null}}\n"
            ));
        }
    }
    text
}

pub fn run(rounds: usize, keys: usize) {
    let postgres = TestPostgres::start();
    let database_url = postgres.create_database();
    ks::migrate(&database_url);
    let keysync = Keysync::start(&database_url, &[]);
    let scratch = ScratchDir::new("key-import").expect("scratch dir");
    let database = database_of(&database_url);
    let count = |sql: &str| -> u64 {
        postgres
            .psql(database, sql)
            .trim()
            .parse()
            .expect("a count")
    };

    let mut seconds = Vec::new();
    for round in 0..rounds {
        let org_id = ks::create_org(&database_url, &format!("import {round}"));
        let file = scratch.path().join(format!("keys-{round}.jsonl"));
        std::fs::write(&file, import_file(keys, round)).expect("write the import file");
        let path = file.to_str().expect("a UTF-8 path");
        let started = Instant::now();
        let output = ks::cli(
            &database_url,
            &["keys", "import", "--org-id", &org_id, "--file", path],
        );
        let elapsed = started.elapsed();
        assert!(
            output.status.success(),
            "the import failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stored = count(&format!(
            "SELECT count(*) FROM api_keys WHERE org_id = '{org_id}' AND imported"
        ));
        assert_eq!(stored, keys as u64, "keys stored by round {round}");
        // keysync's key set takes the import's one revision in a catch-up.
        let expected = ((round + 1) * keys) as f64;
        let caught_up = poll::within(Duration::from_secs(60), poll::INTERVAL, || {
            let active = keysync.metric("keysync_snapshot_keys", &[]);
            if active >= expected {
                Ok(active)
            } else {
                Err(active)
            }
        });
        let caught_up = caught_up.unwrap_or_else(|last| {
            panic!("keysync's key set holds {last} keys, expected {expected}")
        });
        println!(
            "round {round}: {keys} keys in {:.2} s ({:.0} keys/s); keysync holds {caught_up}",
            elapsed.as_secs_f64(),
            keys as f64 / elapsed.as_secs_f64()
        );
        seconds.push(elapsed.as_secs_f64());
        std::fs::remove_file(&file).expect("remove the import file");
    }
    let median = median(&mut seconds).expect("at least one round");
    println!(
        "median: {keys} keys in {median:.2} s ({:.0} keys/s); target: under 10 s",
        keys as f64 / median
    );
}

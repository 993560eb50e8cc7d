//! What a key's form costs at the gateway: checksummed keys that exist, keys in the
//! checksummed form whose checksum is wrong (a flood of made-up keys: refused without a
//! lookup), and keys whose checksum is right but that were never issued (someone can
//! compute a CRC: they take the miss path, bounded by its negative cache and limits).
//! Alternating rounds, keysync's filter and ext_authz, one Envoy worker each.

use crate::bench_keys::{wait_for_keysync, BenchKeys};
use crate::gateways::keysync_gateway;
use crate::median::median;
use crate::wrk::{self, Report};
use keysync_contract::key_format;
use keysync_e2e::gateway::Gateway;
use keysync_e2e::keysync::Keysync;
use keysync_e2e::scratch::ScratchDir;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Checksummed keys that exist; the known-key load cycles through them.
const KNOWN: usize = 1_000;
/// Distinct keys in each made-up load: more than a round sends at the miss path's rate,
/// so no never-issued key is answered from the negative cache of an earlier round.
const MADE_UP: usize = 20_000;

/// A checksummed key: `sk_live_`, 32 characters made of `label` and `n`, its checksum.
fn checksummed(label: &str, n: usize) -> String {
    let body = format!("sk_live_{label}{n:0width$}", width = 32 - label.len());
    let checksum = key_format::checksum_for(&body);
    body + &checksum
}

/// The same form with a checksum that does not match.
fn wrong_checksum(label: &str, n: usize) -> String {
    let key = checksummed(label, n);
    let (body, checksum) = key.split_at(key_format::CHECKSUMMED_LEN - key_format::CHECKSUM_LEN);
    let wrong = if checksum == "000000" {
        "000001"
    } else {
        "000000"
    };
    format!("{body}{wrong}")
}

/// Lookups of keys keysync's memory did not hold (the filter's `LookupKey`,
/// ext_authz's `Check`).
fn lookups(keysync: &Keysync) -> f64 {
    ["store", "catch_up"]
        .iter()
        .map(|by| keysync.metric("keysync_misses_total", &[&format!("answered_by=\"{by}\"")]))
        .sum()
}

fn script(dir: &Path, name: &str, keys: &[String]) -> PathBuf {
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, wrk::rotating_keys_script(keys)).expect("write wrk script");
    path
}

pub fn run(rounds: usize, seconds: u64) {
    let dir = ScratchDir::new("bench-key-forms").expect("scratch dir");
    let keys = BenchKeys::start();
    let known: Vec<String> = (0..KNOWN).map(|n| checksummed("Known", n)).collect();
    let literals: Vec<String> = known.iter().map(|key| format!("'{key}'")).collect();
    keys.postgres.psql(
        &keys.database,
        &format!(
            "INSERT INTO api_keys (id, org_id, name, key_hash, key_prefix) \
             SELECT gen_random_uuid(), '{org}', 'bench', sha256(convert_to(k, 'UTF8')), left(k, 12) \
             FROM unnest(ARRAY[{list}]) AS k",
            org = keys.org,
            list = literals.join(",")
        ),
    );
    let keysync = Keysync::start(&keys.database_url, &[]);
    wait_for_keysync(&keysync, KNOWN, Duration::from_secs(60));
    let filter = keysync_gateway(&keysync, "gateway.yaml");
    filter
        .process
        .wait_for_log("cache refresh complete", Duration::from_secs(60));
    let ext_authz = keysync_gateway(&keysync, "ext-authz.yaml");
    for gateway in [&filter, &ext_authz] {
        gateway.wait_for_status("/", &known[0], 200, Duration::from_secs(60));
    }
    let known_script = script(dir.path(), "known", &known);
    let wrong: Vec<String> = (0..MADE_UP).map(|n| wrong_checksum("Typo", n)).collect();
    let wrong_script = script(dir.path(), "wrong-checksum", &wrong);
    let duration = Duration::from_secs(seconds);
    let load = |gateway: &Gateway, script: &Path| -> (Report, f64) {
        let before = lookups(&keysync);
        let report = wrk::run_with(gateway.addr, 16, duration, &[], Some(script));
        (report, lookups(&keysync) - before)
    };

    let modes = [("filter", &filter), ("ext_authz", &ext_authz)];
    // Per mode: wrong-checksum rate over known rate, one value a round.
    let mut ratios = vec![Vec::new(); modes.len()];
    let mut forged_rates = vec![Vec::new(); modes.len()];
    for round in 0..rounds {
        for (index, (mode, gateway)) in modes.iter().enumerate() {
            let (known_report, known_lookups) = load(gateway, &known_script);
            assert_eq!(known_report.non_2xx, 0, "{mode}: a known key was refused");
            let (wrong_report, wrong_lookups) = load(gateway, &wrong_script);
            assert_eq!(
                wrong_report.non_2xx, wrong_report.requests,
                "{mode}: a key with a wrong checksum was let through"
            );
            assert_eq!(
                wrong_lookups, 0.0,
                "{mode}: a key with a wrong checksum was looked up"
            );
            // Fresh never-issued keys for each run: none is in a negative cache yet.
            let forged: Vec<String> = (0..MADE_UP)
                .map(|n| checksummed(&format!("Forged{round}{index}x"), n))
                .collect();
            let forged_script = script(dir.path(), "forged", &forged);
            let (forged_report, forged_lookups) = load(gateway, &forged_script);
            assert_eq!(forged_report.non_2xx, forged_report.requests);
            println!(
                "round {round} {mode}: known {:.0} req/s ({known_lookups} lookups) | wrong checksum {:.0} req/s, all 403, {wrong_lookups} lookups | right checksum, never issued {:.0} req/s, all 403, {forged_lookups} lookups",
                known_report.requests_per_sec,
                wrong_report.requests_per_sec,
                forged_report.requests_per_sec,
            );
            ratios[index].push(wrong_report.requests_per_sec / known_report.requests_per_sec);
            forged_rates[index].push(forged_report.requests_per_sec);
        }
    }
    for (index, (mode, _)) in modes.iter().enumerate() {
        match (median(&mut ratios[index]), median(&mut forged_rates[index])) {
            (Some(ratio), Some(forged)) => println!(
                "{mode}: wrong-checksum flood at {ratio:.3} of the known-key rate (median of {rounds} rounds, {seconds}s each); never-issued keys with a right checksum {forged:.0} req/s"
            ),
            _ => println!("{mode}: no rounds run"),
        }
    }
}

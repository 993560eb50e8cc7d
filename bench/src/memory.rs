//! Envoy's memory after key churn: an Envoy that watched `churn` keys come and go
//! against one that only ever saw the `active` keys that remain, both fed by the same
//! keysync, measured in the same run.

use crate::gateways::SYNC_EVERY_15M;
use crate::proc_status::rss_kib;
use keysync_e2e::gateway::Gateway;
use keysync_e2e::postgres::database_of;
use keysync_e2e::stack::Stack;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(300);
/// Both Envoys get the same quiet time before being measured.
const SETTLE: Duration = Duration::from_secs(5);

pub fn run(churn: usize, rounds: usize, active: usize) {
    let stack = Stack::start(|options| {
        options.sync_config = SYNC_EVERY_15M.into();
    });
    let database = database_of(&stack.database_url);
    let churned = &stack.gateway;
    churned
        .process
        .wait_for_log("watch stream connected", TIMEOUT);
    let empty_rss = rss_kib(churned.process.pid());

    let org = stack.create_org("bench");
    insert_keys(&stack, database, &org, "active", active);
    churned.wait_for_stat("stream_changes", TIMEOUT, |n| n >= active as u64);

    let per_round = churn / rounds.max(1);
    let mut peak_rss = 0;
    for round in 0..rounds {
        let name = format!("churn-{round}");
        let before = churned.stat("stream_changes");
        insert_keys(&stack, database, &org, &name, per_round);
        churned.wait_for_stat("stream_changes", TIMEOUT, |n| {
            n >= before + per_round as u64
        });
        peak_rss = peak_rss.max(rss_kib(churned.process.pid()));
        stack.postgres.psql(
            database,
            &format!(
                "UPDATE api_keys SET active = false, revoked_at = now() WHERE name = '{name}'"
            ),
        );
        churned.wait_for_stat("stream_changes", TIMEOUT, |n| {
            n >= before + 2 * per_round as u64
        });
    }
    std::thread::sleep(SETTLE);
    let churned_rss = rss_kib(churned.process.pid());

    // The baseline: a fresh Envoy that loads only the surviving keys.
    let fresh = stack.start_another_gateway(|options| {
        options.sync_config = SYNC_EVERY_15M.into();
    });
    fresh
        .process
        .wait_for_log("watch stream connected", TIMEOUT);
    assert_eq!(fresh.stat("keys_loaded"), active as u64);
    std::thread::sleep(SETTLE);
    let fresh_rss = rss_kib(fresh.process.pid());

    println!("envoy RSS, empty store:                 {empty_rss} KiB");
    println!("envoy RSS, peak during churn:           {peak_rss} KiB");
    println!("envoy RSS after {churn} keys came and went ({rounds} rounds), {active} active: {churned_rss} KiB");
    println!("envoy RSS of a fresh envoy with the {active} active keys: {fresh_rss} KiB");
    println!(
        "churned / fresh: {:.3}",
        churned_rss as f64 / fresh_rss as f64
    );
    println!("envoy heap (admin /memory), churned: {}", heap(churned));
    println!("envoy heap (admin /memory), fresh:   {}", heap(&fresh));
}

/// Creates `count` keys named `name` in one statement (the CLI would take minutes),
/// with hashes of distinct throwaway secrets.
fn insert_keys(stack: &Stack, database: &str, org: &str, name: &str, count: usize) {
    stack.postgres.psql(
        database,
        &format!(
            "INSERT INTO api_keys (id, org_id, name, key_hash, key_prefix) \
             SELECT gen_random_uuid(), '{org}', '{name}', \
                    sha256(convert_to('{name}-' || i || '-' || gen_random_uuid(), 'UTF8')), 'sk_live_bnch' \
             FROM generate_series(1, {count}) AS i"
        ),
    );
}

/// Envoy's own account of its heap: live bytes versus bytes kept by the allocator.
fn heap(gateway: &Gateway) -> String {
    let memory = keysync_e2e::http::get(gateway.admin, "/memory", &[])
        .expect("envoy /memory")
        .json();
    let field = |name: &str| {
        memory[name]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    format!(
        "allocated={} KiB heap_size={} KiB pageheap_free={} KiB",
        field("allocated"),
        field("heap_size"),
        field("pageheap_free")
    )
}

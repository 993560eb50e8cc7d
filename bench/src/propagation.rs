//! How long a created key takes to work, and a revoked key to stop working, at Envoy,
//! with the full refresh at 15 minutes and the miss path off: the watch stream alone.
//! With several filters (wasm, native), one Envoy of each holds a stream to the same
//! keysync, and each change is timed at one of them, in turn: every Envoy receives every
//! change, and no Envoy's polling delays another's figure.

use crate::gateways::{KeysyncFilter, SYNC_EVERY_15M};
use crate::latency::Samples;
use keysync_e2e::gateway::{Gateway, GatewayOptions};
use keysync_e2e::keysync;
use keysync_e2e::poll::{self, DEADLINE};
use keysync_e2e::stack::Stack;
use std::time::{Duration, Instant};

/// The options of every Envoy here: the stream alone can deliver.
fn stream_only(options: &mut GatewayOptions, filter: KeysyncFilter) {
    options.template = filter.template().into();
    options.sync_config = SYNC_EVERY_15M.into();
    options.auth_config = r#"{"role":"auth","miss_lookup":{"enabled":false}}"#.into();
}

pub fn run(keys: usize, spacing: Duration, filters: &[KeysyncFilter]) {
    let (first, others) = filters.split_first().expect("at least one filter");
    let stack = Stack::start(|options| stream_only(options, *first));
    let mut gateways: Vec<(KeysyncFilter, &Gateway)> = vec![(*first, &stack.gateway)];
    let started: Vec<(KeysyncFilter, Gateway)> = others
        .iter()
        .map(|&filter| {
            (
                filter,
                stack.start_another_gateway(|options| stream_only(options, filter)),
            )
        })
        .collect();
    gateways.extend(started.iter().map(|(filter, gateway)| (*filter, gateway)));
    for (_, gateway) in &gateways {
        gateway
            .process
            .wait_for_log("watch stream connected", DEADLINE);
    }
    let org = stack.create_org("bench");

    let mut create_latency: Vec<Samples> = gateways.iter().map(|_| Samples::new()).collect();
    let mut revoke_latency: Vec<Samples> = gateways.iter().map(|_| Samples::new()).collect();
    let mut created = Vec::with_capacity(keys);
    for i in 0..keys {
        std::thread::sleep(spacing);
        let key = stack.create_key(&org, &[]);
        let at = i % gateways.len();
        create_latency[at].push(time_until(gateways[at].1, &key.key, 200));
        created.push(key);
    }
    for (i, key) in created.iter().enumerate() {
        std::thread::sleep(spacing);
        keysync::revoke_key(&stack.database_url, &key.key_id);
        let at = i % gateways.len();
        revoke_latency[at].push(time_until(gateways[at].1, &key.key, 403));
    }
    println!("{keys} keys, {}ms between changes", spacing.as_millis());
    for (at, (filter, gateway)) in gateways.iter().enumerate() {
        println!(
            "{filter:?}: create -> first 200: {}",
            create_latency[at].summary()
        );
        println!(
            "{filter:?}: revoke -> first 403: {}",
            revoke_latency[at].summary()
        );
        assert_eq!(
            gateway.stat("refresh_ok"),
            1,
            "a refresh ran during the benchmark: the figures would not be the stream's"
        );
    }
}

/// Polls `gateway` until `key` gets `status`; returns how long that took. No pause
/// between requests: a pause would add up to its length to every figure.
fn time_until(gateway: &Gateway, key: &str, status: u16) -> Duration {
    let started = Instant::now();
    poll::within(DEADLINE, Duration::ZERO, || {
        let seen = gateway.get_with_key("/", key).status;
        if seen == status {
            Ok(started.elapsed())
        } else {
            Err(seen)
        }
    })
    .unwrap_or_else(|seen| panic!("key never reached status {status}: still {seen}"))
}

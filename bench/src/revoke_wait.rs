//! How long `keysync keys revoke --wait` takes: from the revocation's commit until every
//! live gateway reports serving it (the receipt's `elapsed_ms`), and the whole command as
//! an operator sees it, over many revocations. One Envoy of each filter asked for holds a
//! stream to the same keysync (full refresh at 15 minutes: the stream alone delivers);
//! each receipt must count every one of them.

use crate::gateways::{KeysyncFilter, SYNC_EVERY_15M};
use crate::latency::Samples;
use keysync_e2e::gateway::Gateway;
use keysync_e2e::keysync;
use keysync_e2e::poll::{self, DEADLINE};
use keysync_e2e::stack::Stack;
use std::time::{Duration, Instant};

pub fn run(revocations: usize, spacing: Duration, filters: &[KeysyncFilter]) {
    let (first, others) = filters.split_first().expect("at least one filter");
    let stack = Stack::start(|options| {
        options.template = first.template().into();
        options.sync_config = SYNC_EVERY_15M.into();
    });
    let started: Vec<Gateway> = others
        .iter()
        .map(|filter| {
            stack.start_another_gateway(|options| {
                options.template = filter.template().into();
                options.sync_config = SYNC_EVERY_15M.into();
            })
        })
        .collect();
    let org = stack.create_org("bench");
    let keys: Vec<_> = (0..revocations)
        .map(|_| stack.create_key(&org, &[]))
        .collect();
    let gateways = filters.len();
    poll::eventually(
        "every gateway in the fleet",
        DEADLINE,
        || keysync::cli_json(&stack.database_url, &["gateways"]),
        |fleet| {
            fleet["gateways"]
                .as_array()
                .is_some_and(|listed| listed.len() == gateways)
        },
    );

    let mut receipts = Samples::new();
    let mut commands = Samples::new();
    for key in &keys {
        std::thread::sleep(spacing);
        let began = Instant::now();
        let receipt = keysync::cli_json(
            &stack.database_url,
            &["keys", "revoke", &key.key_id, "--wait"],
        );
        commands.push(began.elapsed());
        assert_eq!(
            (receipt["confirmed"].as_u64(), receipt["gateways"].as_u64()),
            (Some(gateways as u64), Some(gateways as u64)),
            "{receipt}"
        );
        let elapsed = receipt["elapsed_ms"].as_u64().expect("elapsed_ms");
        receipts.push(Duration::from_millis(elapsed));
    }
    drop(started);
    println!(
        "{revocations} revocations, {}ms apart, {gateways} gateway(s): {filters:?}",
        spacing.as_millis()
    );
    println!(
        "commit -> every gateway serves it (elapsed_ms): {}",
        receipts.summary()
    );
    println!(
        "the whole command (keys revoke --wait): {}",
        commands.summary()
    );
}

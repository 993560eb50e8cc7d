//! Restore of an older dump: the database is put back to a `pg_dump` taken earlier
//! (`pg_restore --clean`), as an operator restoring a backup would, while keysync and
//! the gateway run. Its revision counter now stands below what both have seen. A key
//! revoked after the restore must be refused within 2 s all the same.

use std::time::{Duration, Instant};

use super::figures::{duration, Figures, Verdict};
use super::{database_revision, status_of, time_until_status, Scale};
use crate::gateway::GatewayOptions;
use crate::keysync::{self, CreatedKey};
use crate::pg_dump::Dump;
use crate::poll::DEADLINE;
use crate::postgres::database_of;
use crate::stack::Stack;

/// The bound for this case.
const BOUND: Duration = Duration::from_secs(2);

pub fn run(scale: Scale) -> Figures {
    let changes_after_dump = scale.pick(10, 200);
    let stack = Stack::start(|options: &mut GatewayOptions| {
        // The shipped defaults: only the stream (and the miss path) bring changes.
        options.sync_config = super::SHIPPED_SYNC.into();
    });
    let database = database_of(&stack.database_url).to_string();
    let org = stack.create_org("restore");
    let kept: Vec<CreatedKey> = (0..3).map(|_| stack.create_key(&org, &[])).collect();
    for key in &kept {
        stack.gateway.wait_for_status("/", &key.key, 200, DEADLINE);
    }

    let dump = Dump::take(&stack.postgres, &database);
    let revision_at_dump = database_revision(&stack.postgres, &stack.database_url);
    // Life goes on: keys come and go, the counter climbs.
    let mut later = Vec::new();
    for n in 0..changes_after_dump {
        let key = stack.create_key(&org, &[]);
        if n % 2 == 1 {
            keysync::revoke_key(&stack.database_url, &key.key_id);
        } else {
            later.push(key);
        }
    }
    let newest = later.last().cloned().expect("keys created after the dump");
    stack
        .gateway
        .wait_for_status("/", &newest.key, 200, DEADLINE);
    let revision_before_restore = database_revision(&stack.postgres, &stack.database_url);

    let restore_started = Instant::now();
    dump.restore(&stack.postgres);
    let restore_took = restore_started.elapsed();
    let revision_after_restore = database_revision(&stack.postgres, &stack.database_url);

    // A revocation after the restore, of a key the dump holds.
    keysync::revoke_key(&stack.database_url, &kept[0].key_id);
    let revoked = Instant::now();
    let landed = time_until_status(stack.gateway.addr, &kept[0].key, 403, revoked, DEADLINE);
    // Keys created after the dump no longer exist at all.
    let gone = time_until_status(stack.gateway.addr, &newest.key, 403, revoked, DEADLINE);
    let still_kept = status_of(stack.gateway.addr, &kept[1].key);

    let mut figures = Figures::new("Restore of an older dump");
    figures.add("revision at the dump", revision_at_dump);
    figures.add("revision before the restore", revision_before_restore);
    figures.add("revision after the restore", revision_after_restore);
    figures.add("pg_restore took", duration(restore_took));
    figures.add(
        "revocation after the restore refused after (must be <= 2 s)",
        landed.map_or("not within 30 s".to_string(), duration),
    );
    figures.add(
        "a key created after the dump (gone with the restore) refused after",
        gone.map_or("not within 30 s".to_string(), duration),
    );
    figures.add(
        "a key the dump holds, afterwards",
        format!("{still_kept:?}"),
    );
    figures.add("gateway resyncs", stack.gateway.stat("resyncs"));
    super::operator_figures(&mut figures, &stack.gateway, Some(&stack.keysync));
    figures.print();

    let mut verdict = Verdict::new();
    verdict.check(
        landed.is_some_and(|took| took <= BOUND),
        "a revocation made after the restore reaches Envoy within 2 s",
        || {
            format!(
                "{landed:?}; keysync log tail:\n{}\nenvoy log tail:\n{}",
                stack.keysync.process.log_tail(15),
                stack.gateway.process.log_tail(15)
            )
        },
    );
    verdict.check(
        still_kept == Some(200),
        "keys the dump holds keep working",
        || format!("{still_kept:?}"),
    );
    verdict.finish("restore of an older dump");
    figures
}

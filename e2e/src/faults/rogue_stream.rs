//! Rogue keysync: Envoy's keysync cluster leads (through a proxy the test owns) to a
//! rogue that sends mutated stream messages and lookup answers (see `rogue_messages`),
//! while clients keep asking with known, revoked and never-issued keys. It must show no
//! VM crash, known keys 200 and revoked keys 403 throughout, and once the proxy leads
//! to the real keysync again, a revocation made then refused within 2 s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::figures::{duration, Figures, Verdict};
use super::filter_health::filter_failures;
use super::rogue_messages::{MutationPlan, Mutations};
use super::{database_revision, record_of, time_until_status, Scale};
use crate::gateway::{Gateway, GatewayOptions};
use crate::http::Connection;
use crate::keysync::{self, CreatedKey, Keysync};
use crate::poll::{self, DEADLINE};
use crate::rogue_keysync::{RogueKeysync, Script, DEFAULT_EPOCH};
use crate::seeded::Seeded;
use crate::stack::Backend;
use crate::tcp_proxy::TcpProxy;
use crate::TestPostgres;

const SEED: u64 = 0x726f_6775_6573;
/// The issue's bound for recovery once a real keysync is back.
const RECOVERY_BOUND: Duration = Duration::from_secs(2);

/// What one kind of client expects, and what it got otherwise.
struct Checks {
    made: usize,
    /// When, which key, and what came back.
    wrong: Vec<(Instant, String)>,
}

pub fn run(scale: Scale) -> Figures {
    let (stream_messages, lookup_answers) = scale.pick((200, 100), (7_000, 3_000));
    let max_frame: u32 = scale.pick(4 << 20, 64 << 20);
    let time_limit = scale.pick(Duration::from_secs(150), Duration::from_secs(3600));

    let postgres = TestPostgres::start();
    let database_url = postgres.create_database();
    keysync::migrate(&database_url);
    let keysync = Keysync::start(&database_url, &[]);
    let backend = Backend::start();
    let org = keysync::create_org(&database_url, "rogue");
    let create = |name: &str| keysync::create_key(&database_url, &org, name, &[]);
    let known: Vec<CreatedKey> = (0..4).map(|_| create("known")).collect();
    let revoked: Vec<CreatedKey> = (0..4).map(|_| create("revoked")).collect();
    for key in &revoked {
        keysync::revoke_key(&database_url, &key.key_id);
    }
    let revision = database_revision(&postgres, &database_url);

    let rogue = RogueKeysync::start(Script {
        keys: known.iter().map(record_of).collect(),
        revision,
        first_watch: Vec::new(),
    });
    let proxy = TcpProxy::start(rogue.addr);
    let mut options = GatewayOptions::new(proxy.addr, backend.backend_urls());
    // A stream left hanging is given up after 2 s instead of 15, so that the messages
    // that leave it hanging do not take the whole run.
    options.sync_config = r#"{"role":"sync","refresh_interval":"15m","max_retry_interval":"1s","watch_idle_timeout":"2s"}"#.into();
    let gateway = Gateway::start(options);
    for key in &known {
        gateway.wait_for_status("/", &key.key, 200, DEADLINE);
    }
    for key in &revoked {
        gateway.wait_for_status("/", &key.key, 403, DEADLINE);
    }
    gateway.wait_until_synced(DEADLINE);

    let mutations = Arc::new(Mutex::new(Mutations::new(MutationPlan {
        seed: SEED,
        known: known.iter().map(record_of).collect(),
        revoked: revoked.iter().map(record_of).collect(),
        revision,
        epoch: DEFAULT_EPOCH,
        max_frame,
        stream_messages,
        lookup_answers,
    })));
    let feed = mutations.clone();
    rogue.set_watch_feed(Box::new(move || {
        feed.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stream_batch()
    }));
    let feed = mutations.clone();
    rogue.set_lookup_feed(Box::new(move |asked| {
        feed.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .lookup_answer(asked)
    }));

    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let target = gateway.addr;
    let secrets = |keys: &[CreatedKey]| keys.iter().map(|k| k.key.clone()).collect::<Vec<_>>();
    let known_secrets = secrets(&known);
    let revoked_secrets = secrets(&revoked);
    let check = |keys: Vec<String>, expect: u16, unknown: bool, seed: u64| {
        let done = done.clone();
        let lookups_left = mutations.clone();
        std::thread::spawn(move || {
            let mut connection = Connection::new(target);
            let mut random = Seeded::new(seed);
            let mut checks = Checks {
                made: 0,
                wrong: Vec::new(),
            };
            while !done.load(Ordering::SeqCst) {
                let secret = if unknown {
                    let left = lookups_left
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .lookup_left();
                    if left == 0 {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    format!("sk_live_{}", random.alphanumeric(32))
                } else {
                    keys[checks.made % keys.len()].clone()
                };
                let request = format!(
                    "GET / HTTP/1.1\r\nhost: rogue\r\nauthorization: Bearer {secret}\r\n\r\n"
                );
                let status = connection
                    .exchange(request.as_bytes())
                    .ok()
                    .map(|r| r.status);
                checks.made += 1;
                if status != Some(expect) && checks.wrong.len() < 1000 {
                    checks.wrong.push((
                        Instant::now(),
                        format!(
                            "{} at {:.1}s: {status:?} for a key that must get {expect}",
                            secret.get(..16).unwrap_or_default(),
                            started.elapsed().as_secs_f64()
                        ),
                    ));
                }
                if !unknown {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            checks
        })
    };
    let checkers = vec![
        ("known keys (200)", check(known_secrets, 200, false, 1)),
        (
            "revoked keys (403)",
            check(revoked_secrets.clone(), 403, false, 2),
        ),
        ("never-issued keys (403)", check(Vec::new(), 403, true, 3)),
        ("never-issued keys (403)", check(Vec::new(), 403, true, 4)),
    ];
    let delivered = poll::within(time_limit, Duration::from_millis(200), || {
        let m = mutations.lock().unwrap_or_else(PoisonError::into_inner);
        if m.stream_left() == 0 && m.lookup_left() == 0 {
            Ok(())
        } else {
            Err((m.stream_left(), m.lookup_left()))
        }
    });
    // Let the last messages work (a hanging stream is given up after 2 s).
    std::thread::sleep(Duration::from_secs(3));
    done.store(true, Ordering::SeqCst);
    let took = started.elapsed();
    let mut results: Vec<(&str, Checks)> = checkers
        .into_iter()
        .map(|(name, thread)| (name, thread.join().expect("a checker panicked")))
        .collect();
    results.sort_by_key(|(name, _)| *name);

    // The real keysync comes back behind the same address; a revocation made now.
    proxy.redirect(keysync.grpc);
    let back = Instant::now();
    keysync::revoke_key(&database_url, &known[0].key_id);
    let recovery = time_until_status(gateway.addr, &known[0].key, 403, back, DEADLINE);
    let still_known = super::status_of(gateway.addr, &known[1].key);
    let failures = filter_failures(&gateway.process.log());
    let sent = mutations
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .sent
        .clone();

    let mut figures = Figures::new("Rogue keysync");
    figures.add(
        "mutated messages sent",
        format!(
            "{} (stream {stream_messages}, lookups {lookup_answers} planned)",
            sent.values().sum::<usize>()
        ),
    );
    for (kind, count) in &sent {
        figures.add(&format!("  {kind}"), count);
    }
    figures.add("time to deliver them", duration(took));
    figures.add(
        "rogue calls: ListKeys / WatchKeys / LookupKey",
        format!(
            "{} / {} / {}",
            rogue.list_calls(),
            rogue.watch_calls(),
            rogue.lookup_calls()
        ),
    );
    figures.add("filter resyncs", gateway.stat("resyncs"));
    let mut wrong_total = 0;
    for (name, checks) in &results {
        wrong_total += checks.wrong.len();
        figures.add(
            &format!("checks: {name}"),
            format!("{} made, {} wrong", checks.made, checks.wrong.len()),
        );
    }
    figures.add("wrong answers (must be 0)", wrong_total);
    figures.add("wasm VM failures in Envoy's log (must be 0)", failures);
    figures.add(
        "real keysync back: revocation refused after (must be <= 2 s)",
        recovery.map_or("not within 30 s".to_string(), duration),
    );
    figures.add("a known key after recovery", format!("{still_known:?}"));
    super::operator_figures(&mut figures, &gateway, Some(&keysync));
    figures.print();

    let mut verdict = Verdict::new();
    verdict.check(
        delivered.is_ok(),
        "every mutated message is delivered",
        || {
            format!(
                "(stream, lookups) left after {time_limit:?}: {:?}",
                delivered.err()
            )
        },
    );
    verdict.check(
        wrong_total == 0,
        "known keys 200 and revoked keys 403 throughout",
        || {
            let m = mutations.lock().unwrap_or_else(PoisonError::into_inner);
            let mut wrong: Vec<&(Instant, String)> = results
                .iter()
                .flat_map(|(_, checks)| checks.wrong.iter())
                .collect();
            wrong.sort_by_key(|(at, _)| *at);
            wrong
                .iter()
                .take(12)
                .map(|(at, what)| {
                    format!("{what}; the last messages before: {:?}", m.before(*at, 3))
                })
                .collect::<Vec<_>>()
                .join("\n")
        },
    );
    verdict.check(failures == 0, "no VM crash", || {
        gateway.process.log_tail(60)
    });
    verdict.check(
        recovery.is_some_and(|took| took <= RECOVERY_BOUND),
        "recovery within 2 s once a real keysync is back",
        || {
            format!(
                "a revocation made then: {recovery:?}; envoy log:\n{}",
                gateway.process.log_tail(30)
            )
        },
    );
    verdict.check(
        still_known == Some(200),
        "a known key works after recovery",
        || format!("{still_known:?}"),
    );
    verdict.finish("rogue keysync");
    figures
}

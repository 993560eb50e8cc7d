//! Envoy hot restart: a new Envoy generation (`--restart-epoch`) takes the port over
//! from the running one while clients keep coming, first with keysync up, then with
//! keysync down (started again afterwards). The new generation starts with an empty
//! store. It must show the time to the new generation's first 200, and no 5xx for known
//! keys while keysync is up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::figures::{duration, statuses, Figures, Verdict};
use super::Scale;
use crate::gateway::{ConfigEdit, GatewayOptions};
use crate::hot_restart::HotRestartFamily;
use crate::http;
use crate::key_population::KeyPopulation;
use crate::keysync::{self, Keysync};
use crate::poll::{self, DEADLINE};
use crate::postgres::database_of;
use crate::seeded::Seeded;
use crate::stack::Backend;
use crate::TestPostgres;

/// The response header naming the generation that answered.
const GENERATION: &str = "x-envoy-generation";

/// Each generation adds its epoch to every response, so a client can tell which one
/// answered.
fn generation_header(epoch: u32) -> ConfigEdit {
    let route_config = "          route_config:\n            name: gateway\n";
    ConfigEdit {
        find: route_config.to_string(),
        replace: format!(
            "{route_config}            response_headers_to_add:\n            - header: {{ key: {GENERATION}, value: \"{epoch}\" }}\n"
        ),
    }
}

/// One client request: when, what status, which generation.
struct Seen {
    at: Instant,
    status: Option<u16>,
    generation: Option<u32>,
}

/// Clients on fresh connections with known keys, until stopped.
fn clients(
    target: std::net::SocketAddr,
    secrets: Arc<Vec<String>>,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<Seen>>> {
    (0..3u64)
        .map(|n| {
            let secrets = secrets.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut random = Seeded::new(n);
                let mut seen = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let bearer = format!("Bearer {}", random.pick(&secrets));
                    let at = Instant::now();
                    let response =
                        http::get(target, "/", &[("authorization", bearer.as_bytes())]).ok();
                    seen.push(Seen {
                        at,
                        status: response.as_ref().map(|r| r.status),
                        generation: response
                            .as_ref()
                            .and_then(|r| r.header(GENERATION))
                            .and_then(|g| g.parse().ok()),
                    });
                    std::thread::sleep(Duration::from_millis(10));
                }
                seen
            })
        })
        .collect()
}

pub fn run(scale: Scale) -> Figures {
    let drain = scale.pick(Duration::from_secs(2), Duration::from_secs(5));
    let parent_shutdown = scale.pick(Duration::from_secs(4), Duration::from_secs(10));

    let postgres = TestPostgres::start();
    let database_url = postgres.create_database();
    keysync::migrate(&database_url);
    let org = keysync::create_org(&database_url, "hot-restart");
    let population = KeyPopulation::new(&postgres, database_of(&database_url), &org, "hot");
    population.insert(0..20);
    let secrets: Arc<Vec<String>> = Arc::new((0..20).map(|n| population.secret(n)).collect());
    let mut keysync = Keysync::start(&database_url, &[]);
    let grpc = keysync.grpc.to_string();
    let backend = Backend::start();
    let mut options = super::shipped_options(keysync.grpc, &backend, None);
    options.config_edits.push(generation_header(0));
    let mut family = HotRestartFamily::start(options, drain, parent_shutdown);
    family
        .current
        .wait_for_status("/", &secrets[0], 200, DEADLINE);
    let target = family.current.addr;
    let new_generation = |options: &mut GatewayOptions, epoch: u32| {
        options.config_edits = vec![generation_header(epoch)];
    };
    let parent_gone = |family: &HotRestartFamily| {
        let parent = family.parent().expect("a restarted family has a parent");
        poll::eventually(
            "the old generation to exit",
            drain + parent_shutdown + DEADLINE,
            || parent.process.exit_status().is_some(),
            |&gone| gone,
        );
    };

    let stop = Arc::new(AtomicBool::new(false));
    let threads = clients(target, secrets.clone(), stop.clone());

    // keysync up.
    let up_started = Instant::now();
    family.restart_with(new_generation);
    let up_ready = up_started.elapsed();
    parent_gone(&family);
    let up_ended = Instant::now();

    // keysync down.
    keysync.process.kill();
    let down_started = Instant::now();
    family.restart_with(new_generation);
    let down_ready = down_started.elapsed();
    parent_gone(&family);
    std::thread::sleep(Duration::from_secs(2));
    let keysync_back = Instant::now();
    let keysync_again = Keysync::start_on(&database_url, &grpc, &[]);
    let keysync_ready = keysync_back.elapsed();
    let first_200_after_keysync =
        poll::within(
            DEADLINE + parent_shutdown,
            Duration::ZERO,
            || match super::status_of(target, &secrets[1]) {
                Some(200) => Ok(keysync_back.elapsed()),
                other => Err(other),
            },
        );
    stop.store(true, Ordering::SeqCst);
    let mut seen: Vec<Seen> = threads
        .into_iter()
        .flat_map(|thread| thread.join().expect("a client panicked"))
        .collect();
    seen.sort_by_key(|s| s.at);

    let first_200 = |generation: u32, since: Instant| {
        seen.iter()
            .find(|s| s.at >= since && s.status == Some(200) && s.generation == Some(generation))
            .map(|s| s.at - since)
    };
    let during = |from: Instant, to: Instant| {
        statuses(
            seen.iter()
                .filter(|s| s.at >= from && s.at < to)
                .map(|s| s.status),
        )
    };
    let up_first = first_200(1, up_started);
    let up_5xx = seen
        .iter()
        .filter(|s| s.at >= up_started && s.at < up_ended)
        .filter(|s| s.status.is_none_or(|status| status >= 500))
        .count();
    let show = |took: Option<Duration>| took.map_or("never".to_string(), duration);

    let mut figures = Figures::new("Envoy hot restart");
    figures.add(
        "drain time / parent shutdown time",
        format!("{} / {}", duration(drain), duration(parent_shutdown)),
    );
    figures.add("keysync up: new generation ready after", duration(up_ready));
    figures.add(
        "keysync up: new generation's first 200 after",
        show(up_first),
    );
    figures.add(
        "keysync up: answers during the restart",
        during(up_started, up_ended),
    );
    figures.add(
        "keysync up: 5xx or no answer for known keys (must be 0)",
        up_5xx,
    );
    figures.add(
        "keysync down: new generation ready after",
        duration(down_ready),
    );
    figures.add(
        "keysync down: answers until keysync is back",
        during(down_started, keysync_back),
    );
    figures.add(
        "keysync down: keysync started again, ready after",
        duration(keysync_ready),
    );
    figures.add(
        "keysync down: first 200 after keysync is back",
        first_200_after_keysync.as_ref().map_or_else(
            |last| format!("never (last {last:?})"),
            |took| duration(*took),
        ),
    );
    super::operator_figures(&mut figures, &family.current, Some(&keysync_again));
    figures.print();

    drop(keysync_again);
    let mut verdict = Verdict::new();
    verdict.check(
        up_5xx == 0,
        "no 5xx for known keys while keysync is up",
        || during(up_started, up_ended),
    );
    verdict.check(
        up_first.is_some(),
        "the new generation serves known keys",
        || during(up_started, up_ended),
    );
    verdict.check(
        first_200_after_keysync.is_ok(),
        "a generation started while keysync was down serves once it is back",
        || format!("{first_200_after_keysync:?}"),
    );
    verdict.finish("Envoy hot restart");
    figures
}

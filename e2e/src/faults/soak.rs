//! Soak (full target only, not CI): a gateway with a large key set for a long time,
//! under random never-issued keys at full rate, while keys with limits of their own are
//! rotated again and again (each new key a new per-key rate-limit counter). It must show
//! Envoy's and keysync's memory flat within 10% after the warm-up, and no wrong decision
//! for the keys the checker watches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::figures::{duration, statuses, Figures, Verdict};
use crate::gateway::Gateway;
use crate::key_population::KeyPopulation;
use crate::keysync::{self, Keysync};
use crate::paced_load::{Carried, LoadShape, PacedLoad};
use crate::poll::{self, DEADLINE};
use crate::postgres::database_of;
use crate::stack::Backend;
use crate::TestPostgres;

/// The soak's size.
#[derive(Clone, Debug)]
pub struct Soak {
    pub minutes: u64,
    /// Active keys.
    pub keys: usize,
    pub rotations: usize,
    /// Memory before this is warm-up.
    pub warm_up: Duration,
    /// How often memory is sampled.
    pub sample_every: Duration,
    /// keysync's `KEYSYNC_CHANGELOG_RECORDS`. The changelog grows to this bound by
    /// design (about 90 bytes a record); the rotations must fill it within the warm-up,
    /// or its filling would read as growth.
    pub changelog_records: usize,
}

impl Soak {
    /// The soak: 30 minutes, 1M keys, 100,000 rotations.
    pub fn full() -> Soak {
        Soak {
            minutes: 30,
            keys: 1_000_000,
            rotations: 100_000,
            warm_up: Duration::from_secs(5 * 60),
            sample_every: Duration::from_secs(30),
            // The rotations write about 170 records a second: full after about 2 minutes.
            changelog_records: 20_000,
        }
    }
}

/// Keys with limits of their own, rotated through.
const ROTATING: usize = 1_000;
/// Keys the checker expects to work, and keys it expects refused.
const WATCHED_VALID: usize = 1_000;
const WATCHED_REVOKED: usize = 100;
/// The limit rotated keys carry (high enough never to be reached here).
const OWN_LIMIT: u32 = 100_000;

/// Resident memory of `pid` in KiB.
fn resident_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

pub fn run(soak: &Soak) -> Figures {
    let postgres = TestPostgres::start();
    let database_url = postgres.create_database();
    let database = database_of(&database_url).to_string();
    keysync::migrate(&database_url);
    let org = keysync::create_org(&database_url, "soak");
    let keys = KeyPopulation::new(&postgres, &database, &org, "soak");
    let rotating = KeyPopulation::new(&postgres, &database, &org, "rot");
    let fill_started = Instant::now();
    keys.insert(0..soak.keys);
    rotating.insert(0..ROTATING);
    rotating.set_own_limit(0..ROTATING, OWN_LIMIT);
    postgres.psql(&database, "VACUUM (ANALYZE) api_keys");
    let fill_took = fill_started.elapsed();
    let revoked_from = soak.keys - WATCHED_REVOKED;
    keys.revoke_all(revoked_from..soak.keys);

    let changelog_records = soak.changelog_records.to_string();
    let keysync = Keysync::start(
        &database_url,
        &[("KEYSYNC_CHANGELOG_RECORDS", changelog_records.as_str())],
    );
    let backend = Backend::start();
    let options = super::shipped_options(keysync.grpc, &backend, None);
    let gateway = Gateway::start(options);
    let sync_started = Instant::now();
    gateway.wait_for_status("/", &keys.secret(revoked_from - 1), 200, 4 * DEADLINE);
    gateway.wait_for_status("/", &keys.secret(soak.keys - 1), 403, DEADLINE);
    let sync_took = sync_started.elapsed();

    let watched: Arc<Vec<String>> = Arc::new(
        (0..WATCHED_VALID)
            .chain(revoked_from..soak.keys)
            .map(|n| keys.secret(n))
            .collect(),
    );
    let checker = PacedLoad::start(
        gateway.addr,
        watched,
        &LoadShape {
            rate: Some(100),
            threads: 2,
            unknown_percent: 0,
            seed: 0x736f_616b,
        },
    );
    let flood = PacedLoad::start(
        gateway.addr,
        Arc::new(Vec::new()),
        &LoadShape {
            rate: None,
            threads: 4,
            unknown_percent: 100,
            seed: 0x666c_6f6f,
        },
    );

    let started = Instant::now();
    let end = started + Duration::from_secs(soak.minutes * 60);
    let per_second = soak.rotations.div_ceil((soak.minutes * 60) as usize).max(1);
    let mut rotated = 0;
    let mut samples: Vec<(Duration, u64, u64)> = Vec::new();
    let mut next_sample = started;
    let mut next_rotation = started;
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_sample {
            samples.push((
                now - started,
                resident_kib(gateway.process.pid()),
                resident_kib(keysync.process.pid()),
            ));
            next_sample += soak.sample_every;
        }
        if now >= next_rotation && rotated < soak.rotations {
            // Rotate `per_second` keys: the old ones revoked, new ones with a limit of
            // their own in their place.
            let batch = per_second.min(soak.rotations - rotated);
            rotating.insert(ROTATING + rotated..ROTATING + rotated + batch);
            rotating.set_own_limit(ROTATING + rotated..ROTATING + rotated + batch, OWN_LIMIT);
            rotating.revoke_all(rotated..rotated + batch);
            rotated += batch;
            next_rotation += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let newest = rotating.secret(ROTATING + rotated - 1);
    let newest_works = poll::within(DEADLINE, poll::INTERVAL, || {
        match super::status_of(gateway.addr, &newest) {
            Some(200) => Ok(()),
            other => Err(other),
        }
    });
    let checked = checker.finish();
    let flooded = flood.finish();
    samples.push((
        started.elapsed(),
        resident_kib(gateway.process.pid()),
        resident_kib(keysync.process.pid()),
    ));

    let wrong: Vec<String> = checked
        .iter()
        .filter_map(|o| {
            let Carried::Listed(n) = o.key else {
                return None;
            };
            let expect = if n < WATCHED_VALID { 200 } else { 403 };
            (o.status != Some(expect)).then(|| {
                format!(
                    "{:?} at {:.0}s for a key that must get {expect}",
                    o.status,
                    o.sent.as_secs_f64()
                )
            })
        })
        .collect();
    let changelog_held = keysync.metric("keysync_changelog_records", &[]);
    let after_warm_up: Vec<&(Duration, u64, u64)> = samples
        .iter()
        .filter(|(at, _, _)| *at >= soak.warm_up)
        .collect();
    let growth = |pick: fn(&(Duration, u64, u64)) -> u64| -> f64 {
        let base = after_warm_up.first().map_or(0, |s| pick(s)).max(1);
        let peak = after_warm_up.iter().map(|s| pick(s)).max().unwrap_or(0);
        peak as f64 / base as f64
    };
    let envoy_growth = growth(|s| s.1);
    let keysync_growth = growth(|s| s.2);
    let flood_seconds = flooded
        .last()
        .map_or(1.0, |o| o.sent.as_secs_f64())
        .max(1.0);

    let mut figures = Figures::new("Soak");
    figures.add(
        "length",
        format!(
            "{} minutes (warm-up {})",
            soak.minutes,
            duration(soak.warm_up)
        ),
    );
    figures.add("active keys", soak.keys);
    figures.add(
        "changelog records held at the end / bound",
        format!("{changelog_held} / {}", soak.changelog_records),
    );
    figures.add(
        "key inserts (SQL) took / first sync of the gateway took",
        format!("{} / {}", duration(fill_took), duration(sync_took)),
    );
    figures.add("rotations of keys with their own limits", rotated);
    figures.add("the newest rotated key works", format!("{newest_works:?}"));
    figures.add(
        "never-issued keys sent",
        format!(
            "{} ({:.0}/s)",
            flooded.len(),
            flooded.len() as f64 / flood_seconds
        ),
    );
    figures.add(
        "never-issued keys: answers",
        statuses(flooded.iter().map(|o| o.status)),
    );
    figures.add(
        "checker: answers",
        statuses(checked.iter().map(|o| o.status)),
    );
    figures.add("wrong decisions (must be 0)", wrong.len());
    for (at, envoy, keysync) in samples
        .iter()
        .step_by(((5 * 60) / soak.sample_every.as_secs().max(1)).max(1) as usize)
    {
        figures.add(
            &format!("RSS at {}", duration(*at)),
            format!("Envoy {envoy} KiB, keysync {keysync} KiB"),
        );
    }
    figures.add(
        "Envoy: peak / first after warm-up (must be <= 1.10)",
        format!("{envoy_growth:.3}"),
    );
    figures.add(
        "keysync: peak / first after warm-up (must be <= 1.10)",
        format!("{keysync_growth:.3}"),
    );
    figures.add(
        "keysync LookupKey calls",
        keysync.metric("keysync_grpc_requests_total", &["LookupKey"]),
    );
    super::operator_figures(&mut figures, &gateway, Some(&keysync));
    figures.print();

    let mut verdict = Verdict::new();
    verdict.check(wrong.is_empty(), "0 wrong decisions", || {
        wrong
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    });
    verdict.check(
        envoy_growth <= 1.10,
        "Envoy's memory flat within 10% after warm-up",
        || format!("{envoy_growth:.3}"),
    );
    verdict.check(
        keysync_growth <= 1.10,
        "keysync's memory flat within 10% after warm-up",
        || format!("{keysync_growth:.3}"),
    );
    verdict.check(
        changelog_held >= soak.changelog_records as f64 * 0.9,
        "keysync's changelog at its bound while memory was measured",
        || format!("{changelog_held} of {}", soak.changelog_records),
    );
    verdict.check(newest_works.is_ok(), "rotated keys work", || {
        format!("{newest_works:?}")
    });
    verdict.finish("soak");
    figures
}

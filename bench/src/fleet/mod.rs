//! `fleet`: many gateways against one keysync, as the chart's `central` topology runs
//! them, to measure what a keysync and PostgreSQL spend on a fleet instead of modelling
//! it (deploy/CAPACITY.md uses the figures). Each simulated gateway does what the
//! filter's sync service and Envoy do against keysync:
//!
//! - at start, pages through the key set with `ListKeys` (5,000 a page, the filter's
//!   default) and opens a `WatchKeys` stream after the revision of its first page;
//! - every 0.5 s, a gRPC health check (`envoy/gateway.yaml` and the chart: `interval:
//!   0.5s`, `timeout: 1s`, on a connection of its own, as Envoy's health checker holds);
//! - every 10 s, a `ReportUsage` with the cumulative counters of the keys it serves
//!   (keys that exist; see [`usage_reports`]);
//! - every second, an `AcquireQuota` without claims (the filter's `quota_sync` polls the
//!   list of quotas so whenever usage metering is on, as shipped; no quota is set here,
//!   so nothing is claimed).
//!
//! The streams are read by one task and the periodic calls made by three (not a process
//! or a thread per gateway), in this process, on the same machine as keysync: its own CPU
//! is reported beside keysync's.
//!
//! Phases, each measured as a window ([`window`]): keysync with its keys and no gateway
//! (the baseline: its own confirmations and catch-ups); the fleet connecting; the fleet
//! steady; then keys revoked in PostgreSQL one by one, each timed from the database's
//! clock at the revoking statement to its arrival on every stream.

mod calls;
pub mod grpc;
mod paced;
mod streams;
mod usage_reports;
mod window;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::stream::{self, StreamExt};
use keysync_e2e::faults::figures::{duration, Figures, Latencies};
use keysync_e2e::faults::uuid_bytes;
use keysync_e2e::key_population::KeyPopulation;
use keysync_e2e::keysync::{self as ks, Keysync};
use keysync_e2e::postgres::{database_of, TestPostgres, STAT_STATEMENTS_ENV};
use keysync_e2e::seeded::Seeded;
use keysync_proto::v1::{
    AcquireQuotaRequest, AcquireQuotaResponse, KeyChanges, ReportUsageRequest, ReportUsageResponse,
    WatchKeysRequest,
};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::Streaming;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use calls::CallLog;
use usage_reports::{GatewayUsage, KeyIds};
use window::Probe;

/// What to play.
pub struct Options {
    pub gateways: usize,
    /// Active keys in PostgreSQL (each gateway lists them all at start).
    pub keys: usize,
    /// Keys each gateway serves and reports usage for.
    pub keys_per_gateway: usize,
    /// Length of the idle and the steady measuring windows.
    pub seconds: u64,
    /// Keys revoked one by one at the end, each timed to every stream.
    pub revocations: usize,
    /// Pause between two revocations.
    pub spacing: Duration,
}

/// Organizations the keys are spread over.
const ORGS: usize = 10;
/// The gRPC token (the central topology requires one).
const TOKEN: &str = "fleet-benchmark-token";
/// The sync service's `ListKeys` page (the filter's `page_size` default).
pub const PAGE_SIZE: u32 = 5_000;
/// Gateways connecting at once (a rolling start, not all in the same millisecond).
const CONNECTING_AT_ONCE: usize = 32;
/// Envoy's health checking of the keysync cluster (`envoy/gateway.yaml`, the chart).
const HEALTH_INTERVAL: Duration = Duration::from_millis(500);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// The filter's `request_timeout` for its calls to keysync.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The filter's quota list poll (`quota_sync::LIST_POLL`).
const QUOTA_POLL: Duration = Duration::from_secs(1);
/// How long a revocation may take to reach every stream before it counts as missing.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(30);

/// One simulated gateway's connections.
struct Gateway {
    /// Calls and the watch stream.
    calls: Channel,
    /// Health checks.
    health: Channel,
}

pub fn run(options: &Options) {
    if std::env::var_os(STAT_STATEMENTS_ENV).is_none() {
        // Set before any thread starts: the harness's PostgreSQL then loads
        // pg_stat_statements, whose counts say what the transactions were.
        std::env::set_var(STAT_STATEMENTS_ENV, "1");
    }
    let Options {
        gateways,
        keys,
        keys_per_gateway,
        seconds,
        revocations,
        spacing,
    } = *options;
    assert!(
        gateways > 0 && keys >= ORGS,
        "at least one gateway and {ORGS} keys"
    );
    let window = Duration::from_secs(seconds);

    // PostgreSQL with the keys, spread over organizations; the keys to revoke apart.
    let postgres = TestPostgres::start();
    let database_url = postgres.create_database();
    let database = database_of(&database_url).to_string();
    ks::migrate(&database_url);
    let mut served: Vec<KeyIds> = Vec::with_capacity(keys);
    for org_index in 0..ORGS {
        let org = ks::create_org(&database_url, &format!("fleet {org_index}"));
        let population =
            KeyPopulation::new(&postgres, &database, &org, &format!("fleet{org_index}"));
        let count = keys / ORGS + usize::from(org_index < keys % ORGS);
        population.insert(0..count);
        let org_id = uuid_bytes(&org);
        served.extend(population.ids(0..count).iter().map(|id| KeyIds {
            org_id: org_id.clone(),
            key_id: uuid_bytes(id),
        }));
    }
    let revoked_org = ks::create_org(&database_url, "fleet revocations");
    let to_revoke = KeyPopulation::new(&postgres, &database, &revoked_org, "fleetrevoke");
    to_revoke.insert(0..revocations);
    let total_keys = keys + revocations;

    let mut env = vec![("KEYSYNC_GRPC_TOKEN", TOKEN.to_string())];
    // The shipped bounds hold 1,024 streams and calls in flight; only a bigger fleet
    // needs more (and says so).
    let limit = (gateways + 24).max(1_024).to_string();
    if gateways + 24 > 1_024 {
        env.push(("KEYSYNC_MAX_WATCH_STREAMS", limit.clone()));
        env.push(("KEYSYNC_GRPC_MAX_IN_FLIGHT", limit.clone()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let keysync = Keysync::start(&database_url, &env);
    let probe = Probe {
        postgres: &postgres,
        database: &database,
        keysync_pid: keysync.process.pid(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let _entered = runtime.enter();

    let mut figures = Figures::new(&format!(
        "{gateways} gateways against one keysync ({total_keys} keys, {keys_per_gateway} served by each gateway)"
    ));
    let add_rows = |figures: &mut Figures, rows: Vec<(String, String)>| {
        for (name, value) in rows {
            figures.add(&name, value);
        }
    };

    // 1. keysync with its keys, no gateway.
    eprintln!("fleet: idle keysync for {seconds} s");
    let started = probe.start();
    std::thread::sleep(window);
    add_rows(&mut figures, probe.finish(started).rows("no gateway"));

    // 2. The fleet connects: ListKeys, WatchKeys, a health connection each.
    eprintln!("fleet: {gateways} gateways connecting");
    let started = probe.start();
    let connect_began = Instant::now();
    let (fleet, streams, sync_times) =
        runtime.block_on(connect_fleet(keysync.grpc, gateways, total_keys));
    let connected_in = connect_began.elapsed();
    let connecting = probe.finish(started);
    let watching = streams::spawn_reader(streams);
    figures.add(
        "fleet start: all gateways listed the keys and watch",
        format!(
            "{} ({CONNECTING_AT_ONCE} at a time)",
            duration(connected_in)
        ),
    );
    figures.add(
        "fleet start: one gateway's ListKeys + WatchKeys",
        sync_times.summary(),
    );
    figures.add(
        "fleet start: keysync CPU (% of one core over the start)",
        format!(
            "{:.1} ({:.2} CPU-seconds)",
            connecting.keysync_cpu_percent,
            connecting.keysync_cpu_percent * connecting.seconds / 100.0
        ),
    );

    // 3. Steady: health checks and usage reports on top of the streams.
    let stop = CancellationToken::new();
    let health_log = Arc::new(CallLog::default());
    let report_log = Arc::new(CallLog::default());
    let quota_log = Arc::new(CallLog::default());
    let usage = gateway_usage(gateways, &served, keys_per_gateway);
    let instances: Vec<Vec<u8>> = usage.iter().map(|u| u.instance_id().to_vec()).collect();
    runtime.spawn(health_checks(&fleet, health_log.clone(), stop.clone()));
    runtime.spawn(usage_reports(
        &fleet,
        usage,
        report_log.clone(),
        stop.clone(),
    ));
    runtime.spawn(quota_polls(
        &fleet,
        instances,
        quota_log.clone(),
        stop.clone(),
    ));
    // A whole report interval first: every gateway has reported once.
    eprintln!(
        "fleet: steady for {} s",
        (usage_reports::INTERVAL + window).as_secs()
    );
    std::thread::sleep(usage_reports::INTERVAL + Duration::from_secs(2));
    // The calls are counted over a window of their own around the probe's (whose
    // readings take time themselves).
    let calls_began = Instant::now();
    health_log.take();
    report_log.take();
    quota_log.take();
    let heartbeats_before = watching.counts.heartbeats.load(Ordering::Relaxed);
    let keysync_before = KeysyncCounts::read(&keysync);
    let started = probe.start();
    std::thread::sleep(window);
    let steady = probe.finish(started);
    let keysync_counts = KeysyncCounts::read(&keysync).since(&keysync_before);
    let health = health_log.take();
    let reports = report_log.take();
    let quota_polls = quota_log.take();
    let heartbeats = watching.counts.heartbeats.load(Ordering::Relaxed) - heartbeats_before;
    let calls_seconds = calls_began.elapsed().as_secs_f64();
    figures.add(
        "steady: watch streams open on keysync",
        keysync.metric("keysync_watch_streams", &[]),
    );
    figures.add(
        "steady: heartbeats received a second (all streams)",
        format!("{:.0}", heartbeats as f64 / calls_seconds),
    );
    add_rows(&mut figures, health.rows("health checks", calls_seconds));
    add_rows(&mut figures, reports.rows("ReportUsage", calls_seconds));
    figures.add(
        "steady: ReportUsage time inside keysync (mean, keysync_usage_flush_duration_seconds)",
        duration(keysync_counts.mean_flush()),
    );
    figures.add(
        "steady: calls keysync refused (keysync_grpc_refused_total, by reason)",
        keysync_counts.refusals(),
    );
    add_rows(
        &mut figures,
        quota_polls.rows("AcquireQuota polls", calls_seconds),
    );
    add_rows(&mut figures, steady.rows("steady"));

    // 4. Revocations, one by one, timed to every stream.
    eprintln!("fleet: {revocations} revocations");
    let started = probe.start();
    let mut revoked_at: Vec<SystemTime> = Vec::with_capacity(revocations);
    for n in 0..revocations {
        let hash = Sha256::digest(to_revoke.secret(n).as_bytes()).to_vec();
        watching.expect(hash);
        revoked_at.push(to_revoke.revoke_timed(n));
        std::thread::sleep(spacing);
    }
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    while !watching.all_arrived() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let revoking = probe.finish(started);
    let mut to_all = Latencies::new();
    let mut each = Latencies::new();
    let mut missing = 0;
    for (index, at) in revoked_at.iter().enumerate() {
        let arrivals = watching.arrivals(index);
        let latencies: Vec<Duration> = arrivals
            .iter()
            .flatten()
            .map(|arrived| arrived.duration_since(*at).unwrap_or_default())
            .collect();
        missing += arrivals.len() - latencies.len();
        for latency in &latencies {
            each.push(*latency);
        }
        if latencies.len() == arrivals.len() {
            to_all.push(latencies.iter().copied().max().unwrap_or_default());
        }
    }
    figures.add(
        "revocations",
        format!("{revocations}, one every {}", duration(spacing)),
    );
    figures.add(
        &format!("revocation to all {gateways} streams (each revocation's last stream)"),
        to_all.summary(),
    );
    figures.add(
        &format!("revocation p99 to all {gateways} streams"),
        duration(to_all.percentile(99.0)),
    );
    figures.add(
        "revocation to one stream (every stream, every revocation)",
        each.summary(),
    );
    figures.add(
        &format!(
            "deliveries missing after {} (must be 0)",
            duration(DELIVERY_DEADLINE)
        ),
        missing,
    );
    add_rows(&mut figures, revoking.rows("revocations"));
    let counts = &watching.counts;
    let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    figures.add(
        "streams ended / failed / told to resync over the run (must be 0)",
        format!(
            "{} / {} / {}",
            read(&counts.ended),
            read(&counts.failed),
            read(&counts.resyncs)
        ),
    );
    figures.add(
        "keysync gRPC calls refused over the run (keysync_grpc_refused_total, by reason)",
        KeysyncCounts::read(&keysync).refusals(),
    );
    stop.cancel();
    figures.print();
    drop(fleet);
}

/// keysync's own counters that say how it coped: calls refused, by reason, and the
/// time it spent storing usage flushes.
#[derive(Default)]
struct KeysyncCounts {
    /// `keysync_grpc_refused_total` by its `reason` label.
    refused: std::collections::BTreeMap<String, f64>,
    flush_seconds: f64,
    flushes: f64,
}

impl KeysyncCounts {
    fn read(keysync: &Keysync) -> KeysyncCounts {
        let text = keysync_e2e::http::get(keysync.http, "/metrics", &[])
            .expect("read keysync /metrics")
            .text();
        let mut counts = KeysyncCounts::default();
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let Some((sample, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let value: f64 = value.parse().unwrap_or(0.0);
            if let Some(labels) = sample.strip_prefix("keysync_grpc_refused_total") {
                let reason = labels
                    .trim_start_matches("{reason=\"")
                    .trim_end_matches("\"}");
                counts.refused.insert(reason.to_string(), value);
            } else if sample.starts_with("keysync_usage_flush_duration_seconds_sum") {
                counts.flush_seconds += value;
            } else if sample.starts_with("keysync_usage_flush_duration_seconds_count") {
                counts.flushes += value;
            }
        }
        counts
    }

    /// What grew since `before`.
    fn since(&self, before: &KeysyncCounts) -> KeysyncCounts {
        KeysyncCounts {
            refused: self
                .refused
                .iter()
                .map(|(reason, n)| {
                    (
                        reason.clone(),
                        n - before.refused.get(reason).unwrap_or(&0.0),
                    )
                })
                .collect(),
            flush_seconds: self.flush_seconds - before.flush_seconds,
            flushes: self.flushes - before.flushes,
        }
    }

    fn mean_flush(&self) -> Duration {
        Duration::from_secs_f64(self.flush_seconds / self.flushes.max(1.0))
    }

    fn refusals(&self) -> String {
        self.refused
            .iter()
            .map(|(reason, n)| format!("{reason}: {n:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Connects `gateways` gateways to keysync at `addr`, a few at a time, each listing the
/// `keys` keys and opening its stream; their connections, their streams (in order) and
/// how long each took.
async fn connect_fleet(
    addr: SocketAddr,
    gateways: usize,
    keys: usize,
) -> (Vec<Gateway>, Vec<Streaming<KeyChanges>>, Latencies) {
    let mut connected: Vec<(usize, Gateway, Streaming<KeyChanges>, Duration)> =
        stream::iter(0..gateways)
            .map(|index| async move {
                let began = Instant::now();
                let (gateway, stream) = connect_gateway(addr, keys)
                    .await
                    .unwrap_or_else(|e| panic!("gateway {index} could not sync: {e}"));
                (index, gateway, stream, began.elapsed())
            })
            .buffer_unordered(CONNECTING_AT_ONCE)
            .collect()
            .await;
    connected.sort_by_key(|(index, ..)| *index);
    let mut times = Latencies::new();
    let mut fleet = Vec::with_capacity(gateways);
    let mut streams = Vec::with_capacity(gateways);
    for (_, gateway, stream, took) in connected {
        fleet.push(gateway);
        streams.push(stream);
        times.push(took);
    }
    (fleet, streams, times)
}

/// One gateway's start: its connections, the whole key set listed, its stream opened
/// after the revision of its first page.
async fn connect_gateway(
    addr: SocketAddr,
    keys: usize,
) -> Result<(Gateway, Streaming<KeyChanges>), String> {
    let calls = grpc::connect(addr).await?;
    let health = grpc::connect(addr).await?;
    let (listed, (after_revision, epoch)) =
        grpc::list_all_keys(&calls, PAGE_SIZE, Some(TOKEN)).await?;
    if listed != keys {
        return Err(format!("listed {listed} keys, expected {keys}"));
    }
    let stream = grpc::server_streaming(
        &calls,
        grpc::WATCH_KEYS,
        grpc::request(
            WatchKeysRequest {
                after_revision,
                epoch,
            },
            Some(TOKEN),
        ),
    )
    .await
    .map_err(|status| format!("WatchKeys: {status}"))?;
    Ok((Gateway { calls, health }, stream))
}

/// Every gateway's health checks, until `stop`.
fn health_checks(
    fleet: &[Gateway],
    log: Arc<CallLog>,
    stop: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let channels: Vec<Channel> = fleet.iter().map(|gateway| gateway.health.clone()).collect();
    paced::every_gateway(
        channels.len(),
        HEALTH_INTERVAL,
        HEALTH_TIMEOUT,
        log,
        stop,
        move |index| {
            let channel = channels[index].clone();
            async move {
                let answer: HealthCheckResponse = grpc::unary(
                    &channel,
                    grpc::HEALTH_CHECK,
                    tonic::Request::new(HealthCheckRequest {
                        service: String::new(),
                    }),
                )
                .await
                .map_err(|status| format!("{:?}", status.code()))?;
                if answer.status == ServingStatus::Serving as i32 {
                    Ok(())
                } else {
                    Err(format!("health status {}", answer.status))
                }
            }
        },
    )
}

/// Each gateway's usage: it serves `per_gateway` of `served`.
fn gateway_usage(gateways: usize, served: &[KeyIds], per_gateway: usize) -> Vec<GatewayUsage> {
    let mut random = Seeded::new(0x0066_6c65_6574);
    (0..gateways)
        .map(|index| {
            // Consecutive keys from a random place: each key once per gateway, the
            // gateways' sets overlapping as a load balancer spreads clients.
            let from = random.below(served.len());
            let keys: Vec<KeyIds> = served
                .iter()
                .cycle()
                .skip(from)
                .take(per_gateway.min(served.len()))
                .cloned()
                .collect();
            GatewayUsage::new(index as u64 ^ 0x0075_7361_6765, &keys)
        })
        .collect()
}

/// Every gateway's usage reports, until `stop`.
fn usage_reports(
    fleet: &[Gateway],
    mut usage: Vec<GatewayUsage>,
    log: Arc<CallLog>,
    stop: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let channels: Vec<Channel> = fleet.iter().map(|gateway| gateway.calls.clone()).collect();
    paced::every_gateway(
        channels.len(),
        usage_reports::INTERVAL,
        REQUEST_TIMEOUT,
        log,
        stop,
        move |index| {
            let channel = channels[index].clone();
            let now_ms = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as i64);
            let report: ReportUsageRequest = usage[index].next_report(now_ms);
            async move {
                let _: ReportUsageResponse = grpc::unary(
                    &channel,
                    grpc::REPORT_USAGE,
                    grpc::request(report, Some(TOKEN)),
                )
                .await
                .map_err(|status| format!("{:?}", status.code()))?;
                Ok(())
            }
        },
    )
}

/// Every gateway's quota list polls, until `stop`: no claims, the revision it last
/// heard (keysync answers from memory once the gateway knows the list).
fn quota_polls(
    fleet: &[Gateway],
    instances: Vec<Vec<u8>>,
    log: Arc<CallLog>,
    stop: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let channels: Vec<Channel> = fleet.iter().map(|gateway| gateway.calls.clone()).collect();
    let known: Arc<Vec<AtomicU64>> =
        Arc::new((0..channels.len()).map(|_| AtomicU64::new(0)).collect());
    paced::every_gateway(
        channels.len(),
        QUOTA_POLL,
        REQUEST_TIMEOUT,
        log,
        stop,
        move |index| {
            let channel = channels[index].clone();
            let known = known.clone();
            let request = AcquireQuotaRequest {
                instance_id: instances[index].clone(),
                known_revision: known[index].load(Ordering::Relaxed),
                claims: Vec::new(),
            };
            async move {
                let answer: AcquireQuotaResponse = grpc::unary(
                    &channel,
                    grpc::ACQUIRE_QUOTA,
                    grpc::request(request, Some(TOKEN)),
                )
                .await
                .map_err(|status| format!("{:?}", status.code()))?;
                known[index].store(answer.revision, Ordering::Relaxed);
                Ok(())
            }
        },
    )
}

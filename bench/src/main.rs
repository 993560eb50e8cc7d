//! `keysync-bench`: measures the system as users run it (real PostgreSQL, keysync,
//! Envoy with the filter), each figure against a baseline taken in the same run.
//! See bench/README.md for what each benchmark does and bench/RESULTS.md for figures.

// A measuring tool: a failed expectation aborts the run with its message.
#![allow(clippy::expect_used)]

mod access_log_peer;
mod anomaly_cost;
mod api_create;
mod api_key_auth_config;
mod bench_keys;
mod compare;
mod compare_variant;
mod cpu_pin;
mod cpu_time;
mod envoy_heap;
mod fleet;
mod fleet_overview;
mod gateways;
mod invoice_cost;
mod key_forms;
mod key_import;
mod key_policy;
mod keysync_memory;
mod latency;
mod load;
mod machine_load;
mod median;
mod memory;
mod pg_activity;
mod proc_status;
mod propagation;
mod quota_accuracy;
mod rate_limit;
mod revoke_wait;
mod time_to_ready;
mod usage_accuracy;
mod usage_cost;
mod wrk;

use clap::builder::RangedU64ValueParser;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(about = "keysync benchmarks (see bench/README.md)")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Time from `keysync keys revoke` (or `create`) returning to Envoy's first 403
    /// (or 200), through the watch stream alone.
    Propagation {
        #[arg(long, default_value_t = 200)]
        keys: usize,
        /// Pause between one key's measurement and the next change. keysync runs at
        /// most one catch-up per 50 ms, so back-to-back changes (0) measure that floor.
        #[arg(long, default_value_t = 100)]
        spacing_ms: u64,
        /// keysync's filters, comma-separated: one Envoy of each, each change timed at
        /// one of them in turn.
        #[arg(long, value_delimiter = ',', default_value = "wasm,native")]
        filters: Vec<gateways::KeysyncFilter>,
    },
    /// How long `keysync keys revoke --wait` takes until every gateway confirms, over
    /// many revocations (p50/p99).
    RevokeWait {
        #[arg(long, default_value_t = 200)]
        revocations: usize,
        /// Pause between one revocation's receipt and the next revocation.
        #[arg(long, default_value_t = 100)]
        spacing_ms: u64,
        /// keysync's filters, comma-separated: one Envoy of each.
        #[arg(long, value_delimiter = ',', default_value = "wasm,native")]
        filters: Vec<gateways::KeysyncFilter>,
    },
    /// Envoy's resident memory after keys come and go, against an Envoy that only ever
    /// saw the surviving keys.
    Churn {
        /// Keys created and then revoked, in rounds.
        #[arg(long, default_value_t = 100_000)]
        churn: usize,
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// Keys that stay active throughout.
        #[arg(long, default_value_t = 1_000)]
        active: usize,
    },
    /// Local rate limiting on one Envoy with 2 workers: how many of a burst pass.
    RateLimitLocal {
        #[command(flatten)]
        burst: Burst,
    },
    /// Global rate limiting: several Envoys, one keysync, one Redis.
    RateLimitGlobal {
        #[command(flatten)]
        burst: Burst,
        #[arg(long, default_value_t = 3)]
        envoys: usize,
    },
    /// keysync's filters (wasm and native) against no filter and Envoy's api_key_auth
    /// with the same keys, fresh Envoys each round, alternating; their memory a key and
    /// time to sync; PostgreSQL's query rate under load.
    Compare {
        /// Seconds of wrk per variant and round, at 16 connections and again at one.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 5, value_parser = at_least_one())]
        rounds: usize,
        /// Active key counts, comma-separated: each count is a run of its own rounds.
        #[arg(long, value_delimiter = ',', default_value = "1000000")]
        keys: Vec<usize>,
        /// Add the empty wasm filter (b), the contract's host calls alone (b') and
        /// ext_authz to keysync (d) to the rounds.
        #[arg(long)]
        more: bool,
        /// Race only these variants (tags, comma-separated: `--only "(c),(c'),(n)"`);
        /// (a) and (a'), the baselines, always run.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Seconds per request rate when counting PostgreSQL's queries (0 skips it).
        #[arg(long, default_value_t = 20)]
        query_rate_seconds: u64,
    },
    /// keysync's resident memory and load time with many active keys (no Envoy).
    KeysyncMemory {
        #[arg(long, default_value_t = 1_000_000)]
        keys: usize,
    },
    /// The wasm floor, the contract's host calls alone and keysync's filter, alternating
    /// (quick profiling).
    FloorVsFilter {
        #[arg(long, default_value_t = 5, value_parser = at_least_one())]
        rounds: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Add (b''): the contract's header changes through one read and one write of
        /// the whole header map.
        #[arg(long)]
        whole_map: bool,
        /// Add (e0): keysync's filter from this `.wasm` (another build), to compare two
        /// builds in the same rounds.
        #[arg(long)]
        before_wasm: Option<std::path::PathBuf>,
    },
    /// Key creation through the operator HTTP API (`POST /v1/keys`), with and without an
    /// Idempotency-Key, alternating (wrk; no Envoy).
    ApiCreate {
        #[arg(long, default_value_t = 3, value_parser = at_least_one())]
        rounds: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 16)]
        connections: u32,
    },
    /// `keys import` of a large JSON Lines file (half by hash, half by text) into a
    /// fresh organization each round, with keysync serving the same database.
    KeyImport {
        #[arg(long, default_value_t = 3, value_parser = at_least_one())]
        rounds: usize,
        #[arg(long, default_value_t = 100_000)]
        keys: usize,
    },
    /// Keys by form: checksummed and known, a wrong checksum (refused without a
    /// lookup), a right checksum but never issued (the miss path); filter and ext_authz,
    /// alternating (wrk).
    KeyForms {
        #[arg(long, default_value_t = 3, value_parser = at_least_one())]
        rounds: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// What a scope check (a route that requires scopes) and an allowlist check (a key
    /// with one) add per request, against a plain key on an open route; with
    /// `--before-wasm`, that plain request against an earlier build (wrk, alternating).
    KeyPolicy {
        #[arg(long, default_value_t = 5, value_parser = at_least_one())]
        rounds: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long)]
        before_wasm: Option<std::path::PathBuf>,
        /// Add the contract's calls alone, with each way of reading a route's scopes.
        #[arg(long)]
        contract_calls: bool,
    },
    /// What usage metering adds per request (metering off against on, alternating), and
    /// beside it Envoy's gRPC access log service doing the same counting (wrk).
    UsageCost {
        #[arg(long, default_value_t = 5, value_parser = at_least_one())]
        rounds: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Add keysync's filter from this `.wasm` (another build) to the rounds.
        #[arg(long)]
        before_wasm: Option<std::path::PathBuf>,
        /// Add another build with metering on, as `NAME=PATH.wasm` (repeatable): to
        /// tell which part of metering costs what. A NAME ending in `-off` runs with
        /// metering off (with the shipped `.wasm`: an A/A control).
        #[arg(long = "with-wasm", value_parser = usage_cost::parse_named_wasm)]
        with_wasm: Vec<(String, std::path::PathBuf)>,
    },
    /// Usage metering's accuracy: a fixed number of requests over many keys and several
    /// Envoys, then `keysync usage --by key` must match each key exactly.
    UsageAccuracy {
        #[arg(long, default_value_t = 100_000)]
        requests: usize,
        #[arg(long, default_value_t = 1_000)]
        keys: usize,
        #[arg(long, default_value_t = 3)]
        envoys: usize,
    },
    /// PostgreSQL's transactions a minute with usage metering, idle, at 10 req/s and at
    /// full load (one Envoy).
    UsagePostgres {
        #[arg(long, default_value_t = 1_000)]
        keys: usize,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// One anomaly evaluation at scale: organizations with months of hourly usage in
    /// a real PostgreSQL, judged by `keysync serve` every second.
    AnomalyCost {
        #[arg(long, default_value_t = 1_000)]
        orgs: usize,
        /// Months of history before the current one (the retention's default).
        #[arg(long, default_value_t = 13)]
        months: u32,
        /// Rows an organization has in an hour (keys and outcomes), 1 to 6.
        #[arg(long, default_value_t = 3)]
        rows: usize,
        /// Evaluations measured, after three to warm up.
        #[arg(long, default_value_t = 20)]
        evaluations: u64,
    },
    /// The web console's overview at scale: `GET /v1/usage` over 24 hours, 7 and 30 days
    /// with `orgs` organizations and `months` months of hourly usage.
    FleetOverview {
        #[arg(long, default_value_t = 1_000)]
        orgs: usize,
        /// Months of history before the current one (the retention's default).
        #[arg(long, default_value_t = 13)]
        months: u32,
        /// Requests of each range measured, after one to warm up.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// What pricing costs at scale: `keysync usage --cost` for one organization, and the
    /// close of last month (every organization's invoice) by `keysync serve`.
    InvoiceCost {
        #[arg(long, default_value_t = 1_000)]
        orgs: usize,
        /// Endpoints each organization has rows on, every hour of last month.
        #[arg(long, default_value_t = 5)]
        endpoints: usize,
        /// Runs of `keysync usage --cost` measured.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// A monthly quota across several Envoys driven to exhaustion: what they admitted
    /// together against the bound.
    QuotaAccuracy {
        #[arg(long, default_value_t = 10_000)]
        quota: u64,
        #[arg(long, default_value_t = 3)]
        envoys: usize,
        /// Requests a round; rounds go on until one admits nothing.
        #[arg(long, default_value_t = 3_000)]
        round: usize,
    },
    /// Many gateways against one keysync (the central topology): watch streams, usage
    /// reports every 10 s, health checks every 0.5 s; keysync's CPU and memory,
    /// PostgreSQL's transactions, and the time a revocation takes to reach every stream.
    Fleet {
        #[arg(long, default_value_t = 1_000, value_parser = at_least_one())]
        gateways: usize,
        /// Active keys (each gateway lists them all when it starts).
        #[arg(long, default_value_t = 10_000)]
        keys: usize,
        /// Keys each gateway serves and reports usage for.
        #[arg(long, default_value_t = 50)]
        keys_per_gateway: usize,
        /// Seconds of each measuring window (keysync alone, the fleet steady).
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Keys revoked one by one at the end, each timed to every stream.
        #[arg(long, default_value_t = 50)]
        revocations: usize,
        #[arg(long, default_value_t = 1_000)]
        spacing_ms: u64,
    },
    /// Time from a fresh Envoy's start to ready (the probe port's `/ready` 200: its
    /// store holds a complete sync), against Envoy's own readiness, with many keys.
    TimeToReady {
        #[arg(long, default_value_t = 1_000_000)]
        keys: usize,
        #[arg(long, default_value_t = 3, value_parser = at_least_one())]
        rounds: usize,
        /// keysync's filters, comma-separated: a fresh Envoy of each every round.
        #[arg(long, value_delimiter = ',', default_value = "wasm,native")]
        filters: Vec<gateways::KeysyncFilter>,
    },
    /// What local rate limiting adds per request over authentication alone (wrk).
    RateLimitCost {
        #[arg(long, default_value_t = 3, value_parser = at_least_one())]
        rounds: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

/// The burst the rate-limit accuracy benchmarks send at a limited key.
#[derive(Args)]
struct Burst {
    /// Requests a minute the key's organization may make.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    #[arg(long, default_value_t = 16)]
    connections: usize,
}

/// Round counts: a median of no rounds is no figure.
fn at_least_one() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(1..)
}

fn main() {
    match Cli::parse().bench {
        Bench::Propagation {
            keys,
            spacing_ms,
            filters,
        } => propagation::run(keys, std::time::Duration::from_millis(spacing_ms), &filters),
        Bench::RevokeWait {
            revocations,
            spacing_ms,
            filters,
        } => revoke_wait::run(
            revocations,
            std::time::Duration::from_millis(spacing_ms),
            &filters,
        ),
        Bench::Churn {
            churn,
            rounds,
            active,
        } => memory::run(churn, rounds, active),
        Bench::RateLimitLocal { burst } => {
            rate_limit::accuracy_local(burst.limit, burst.requests, burst.connections)
        }
        Bench::RateLimitGlobal { burst, envoys } => {
            rate_limit::accuracy_global(burst.limit, burst.requests, burst.connections, envoys)
        }
        Bench::KeysyncMemory { keys } => keysync_memory::run(keys),
        Bench::Fleet {
            gateways,
            keys,
            keys_per_gateway,
            seconds,
            revocations,
            spacing_ms,
        } => fleet::run(&fleet::Options {
            gateways,
            keys,
            keys_per_gateway,
            seconds,
            revocations,
            spacing: std::time::Duration::from_millis(spacing_ms),
        }),
        Bench::RateLimitCost { rounds, seconds } => rate_limit::cost(rounds, seconds),
        Bench::TimeToReady {
            keys,
            rounds,
            filters,
        } => time_to_ready::run(keys, rounds, &filters),
        Bench::UsageAccuracy {
            requests,
            keys,
            envoys,
        } => usage_accuracy::accuracy(requests, keys, envoys),
        Bench::UsagePostgres { keys, seconds } => usage_accuracy::postgres(keys, seconds),
        Bench::AnomalyCost {
            orgs,
            months,
            rows,
            evaluations,
        } => anomaly_cost::run(orgs, months, rows, evaluations),
        Bench::FleetOverview { orgs, months, runs } => fleet_overview::run(orgs, months, runs),
        Bench::InvoiceCost {
            orgs,
            endpoints,
            runs,
        } => invoice_cost::run(orgs, endpoints, runs),
        Bench::QuotaAccuracy {
            quota,
            envoys,
            round,
        } => quota_accuracy::run(quota, envoys, round),
        Bench::UsageCost {
            rounds,
            seconds,
            before_wasm,
            with_wasm,
        } => usage_cost::run(rounds, seconds, before_wasm.as_deref(), &with_wasm),
        Bench::KeyForms { rounds, seconds } => key_forms::run(rounds, seconds),
        Bench::KeyPolicy {
            rounds,
            seconds,
            before_wasm,
            contract_calls,
        } => key_policy::run(rounds, seconds, before_wasm.as_deref(), contract_calls),
        Bench::ApiCreate {
            rounds,
            seconds,
            connections,
        } => api_create::run(rounds, seconds, connections),
        Bench::KeyImport { rounds, keys } => key_import::run(rounds, keys),
        Bench::FloorVsFilter {
            rounds,
            seconds,
            whole_map,
            before_wasm,
        } => compare::floor_vs_filter(rounds, seconds, whole_map, before_wasm.as_deref()),
        Bench::Compare {
            seconds,
            rounds,
            keys,
            more,
            only,
            query_rate_seconds,
        } => compare::run(compare::Options {
            seconds,
            rounds,
            key_counts: keys,
            query_rate_seconds,
            more,
            only,
        }),
    }
}

//! Two keysyncs behind one cluster, one cut off from PostgreSQL: Envoy's keysync cluster
//! lists two keysyncs (the way a shared keysync deployment scales out); one reaches
//! PostgreSQL through a proxy the test cuts, and it is the one holding the gateway's
//! watch stream (it starts first; the other joins once the gateway has synced). Keys are
//! then revoked, and each is asked for again and again on fresh connections: whichever
//! keysync the stream, the lookups or the health checks reach, no revoked key may be
//! admitted (2 s after its revocation: the push tests' bound), and a valid key asked
//! between every round must get 200 each time.

use std::time::{Duration, Instant};

use super::figures::{duration, statuses, Figures, Latencies, Verdict};
use super::{status_of, Scale};
use crate::gateway::{ConfigEdit, Gateway};
use crate::key_population::KeyPopulation;
use crate::keysync::{self, Keysync};
use crate::poll::{self, DEADLINE};
use crate::postgres::database_of;
use crate::stack::Backend;
use crate::tcp_proxy::TcpProxy;
use crate::TestPostgres;

/// After this long from its revocation, a 200 for the key is an admission.
const BOUND: Duration = Duration::from_secs(2);
/// How long each revoked key is asked for.
const PROBE: Duration = Duration::from_secs(3);

/// A second endpoint in the `keysync` cluster of the rendered configuration.
pub fn second_keysync_endpoint(
    first: std::net::SocketAddr,
    second: std::net::SocketAddr,
) -> ConfigEdit {
    let endpoint = |addr: std::net::SocketAddr| {
        format!(
            "socket_address: {{ address: {}, port_value: {} }}",
            addr.ip(),
            addr.port()
        )
    };
    ConfigEdit {
        find: endpoint(first),
        replace: format!(
            "{}\n        - endpoint:\n            address:\n              {}",
            endpoint(first),
            endpoint(second)
        ),
    }
}

pub fn run(scale: Scale) -> Figures {
    let (batches, per_batch) = scale.pick((2, 5), (10, 10));
    let revocations = batches * per_batch;
    let valid = revocations + 5;

    let postgres = TestPostgres::start();
    let database_url = postgres.create_database();
    let database = database_of(&database_url).to_string();
    keysync::migrate(&database_url);
    let org = keysync::create_org(&database_url, "split");
    let population = KeyPopulation::new(&postgres, &database, &org, "split");
    population.insert(0..valid + 1);
    let proxy = TcpProxy::start(([127, 0, 0, 1], postgres.port()).into());
    let cut_off_url = format!(
        "postgres://keysync@127.0.0.1:{}/{database}",
        proxy.addr.port()
    );
    // The worst case, made certain: the gateway's stream is held by the keysync that
    // will be cut off. It starts alone; the healthy one joins on its port afterwards.
    let cut_off = Keysync::start(&cut_off_url, &[]);
    let healthy_addr: std::net::SocketAddr = ([127, 0, 0, 1], crate::paths::free_port()).into();
    let backend = Backend::start();
    let mut options = super::shipped_options(cut_off.grpc, &backend, None);
    options
        .config_edits
        .push(second_keysync_endpoint(cut_off.grpc, healthy_addr));
    let gateway = Gateway::start(options);
    for n in [0, valid] {
        gateway.wait_for_status("/", &population.secret(n), 200, DEADLINE);
    }
    gateway.wait_until_synced(DEADLINE);
    let healthy = Keysync::start_on(&database_url, &healthy_addr.to_string(), &[]);
    // Envoy health-checks both (gRPC health); the healthy one passes once it runs.
    let joined = Instant::now();
    let health_flags = || {
        let clusters = crate::http::get(gateway.admin, "/clusters", &[])
            .map(|response| response.text())
            .unwrap_or_default();
        let prefix = format!("keysync::{healthy_addr}::health_flags::");
        clusters
            .lines()
            .find_map(|line| {
                line.trim()
                    .strip_prefix(prefix.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_default()
    };
    let healthy_in_envoy = poll::within(DEADLINE, poll::INTERVAL, || {
        let flags = health_flags();
        if flags == "healthy" {
            Ok(joined.elapsed())
        } else {
            Err(flags)
        }
    });
    let stream_on_cut_off = cut_off.metric("keysync_watch_streams", &[]);

    proxy.cut();
    let cut_at = Instant::now();
    let mut latencies = Latencies::new();
    let mut admitted = Vec::new();
    let mut valid_answers = Vec::new();
    let mut revoked_answers = Vec::new();
    for batch in 0..batches {
        let keys: Vec<usize> = (batch * per_batch..(batch + 1) * per_batch).collect();
        let mut revoked_at = Vec::new();
        for &n in &keys {
            population.revoke(n);
            revoked_at.push(Instant::now());
        }
        let mut first_refusal: Vec<Option<Duration>> = vec![None; keys.len()];
        let probe_end = Instant::now() + PROBE;
        while Instant::now() < probe_end {
            for (i, &n) in keys.iter().enumerate() {
                let status = status_of(gateway.addr, &population.secret(n));
                let since = revoked_at[i].elapsed();
                revoked_answers.push(status);
                if status == Some(200) && since > BOUND {
                    admitted.push(format!(
                        "key {n} admitted {} after its revocation",
                        duration(since)
                    ));
                }
                if status != Some(200) && first_refusal[i].is_none() {
                    first_refusal[i] = Some(since);
                }
            }
            valid_answers.push(status_of(gateway.addr, &population.secret(valid)));
        }
        for took in first_refusal.into_iter().flatten() {
            latencies.push(took);
        }
    }

    let streams = |keysync: &Keysync| keysync.metric("keysync_watch_streams", &[]);
    let lookups = |keysync: &Keysync| keysync.metric("keysync_grpc_requests_total", &["LookupKey"]);
    let mut figures = Figures::new("Two keysyncs behind one cluster, one cut off from PostgreSQL");
    figures.add(
        "revocations",
        format!(
            "{revocations} in {batches} batches, each key asked for {} on fresh connections",
            duration(PROBE)
        ),
    );
    figures.add("time since the cut at the end", duration(cut_at.elapsed()));
    figures.add("revoke -> first refusal", latencies.summary());
    figures.add("revoked keys: answers", statuses(revoked_answers));
    figures.add(
        "revoked keys admitted more than 2 s after revocation (must be 0)",
        admitted.len(),
    );
    figures.add(
        "a valid key meanwhile (must be all 200)",
        statuses(valid_answers.iter().copied()),
    );
    figures.add(
        "the gateway's stream on the keysync cut off, at the cut",
        stream_on_cut_off,
    );
    figures.add(
        "the second keysync healthy in Envoy after it started",
        healthy_in_envoy.map_or_else(|flags| format!("not within 30 s ({flags})"), duration),
    );
    figures.add(
        "watch streams on the healthy / the cut-off keysync at the end",
        format!("{} / {}", streams(&healthy), streams(&cut_off)),
    );
    figures.add(
        "LookupKey calls on the healthy / the cut-off keysync",
        format!("{} / {}", lookups(&healthy), lookups(&cut_off)),
    );
    super::operator_figures(&mut figures, &gateway, Some(&cut_off));
    figures.print();

    let valid_refused: Vec<Option<u16>> = valid_answers
        .iter()
        .copied()
        .filter(|status| *status != Some(200))
        .collect();
    let mut verdict = Verdict::new();
    verdict.check(
        !valid_answers.is_empty() && valid_refused.is_empty(),
        "a valid key gets 200 throughout",
        || {
            format!(
                "{} of {} answers for the valid key were not 200: {}",
                valid_refused.len(),
                valid_answers.len(),
                statuses(valid_refused.iter().copied())
            )
        },
    );
    verdict.check(admitted.is_empty(), "0 revoked keys admitted", || {
        admitted
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    });
    verdict.finish("two keysyncs, one cut off");
    figures
}

//! The composition root of `keysync serve`: wires the key set, the loader, the change
//! feed, the change listener, the gRPC services, the admin port, the usage rollup's
//! upkeep, export, anomaly detection and invoices, webhook delivery, and the metrics of
//! each together on
//! listeners the caller has already bound, and runs until told to stop.

use std::net::SocketAddr;
use std::sync::Arc;

use envoy_types::pb::envoy::service::auth::v3::authorization_server::AuthorizationServer;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use keysync_proto::v1::key_sync_server::KeySyncServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tracing::{info, warn};

use crate::admin_api::{self, ApiState};
use crate::admin_port::{self, AdminState};
use crate::anomaly::announce::Announcer;
use crate::anomaly::detector;
use crate::api_port;
use crate::billing;
use crate::config::ServeConfig;
use crate::database;
use crate::fleet::own_gateway::{ChecksSeen, OwnGateway};
use crate::fleet::registry::GatewayRegistry;
use crate::global_limit::{self, counter::CounterError};
use crate::grpc::ext_authz::ExtAuthzService;
use crate::grpc::guard::GuardLayer;
use crate::grpc::health;
use crate::grpc::key_sync::KeySyncService;
use crate::grpc::rate_limit::GlobalRateLimitService;
use crate::grpc::tls::{self, TlsError};
use crate::grpc::tokens::{self, GrpcTokens};
use crate::grpc::watch::{WatchSettings, Watches};
use crate::key_set::change_feed::ChangeFeed;
use crate::key_set::SharedKeySet;
use crate::leak_reports;
use crate::metrics::Metrics;
use crate::quota::lease::QuotaLeases;
use crate::readiness::Readiness;
use crate::sync::catch_up::CatchUp;
use crate::sync::change_listener::{self, Connector, ListenSettings};
use crate::sync::confirmation::{self, Bounds, Confirmation};
use crate::sync::freshness::Freshness;
use crate::sync::loader::{LoadError, Loader};
use crate::sync::metrics::SyncMetrics;
use crate::sync::miss::Misses;
use crate::sync::reload::{self, Reloader, Schedule};
use crate::sync::revision_probe;
use crate::usage::allowance::Ceiling;
use crate::usage::export::kafka::KafkaSink;
use crate::usage::export::Exporter;
use crate::usage::flush::MAX_MESSAGE_BYTES;
use crate::usage::store::UsageStore;
use crate::usage::{fleet_rollup, partitions};
use crate::webhooks;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot read the listener address: {0}")]
    ListenerAddress(std::io::Error),
    #[error("cannot load the key snapshot: {0}")]
    InitialLoad(LoadError),
    #[error("gRPC server failed: {0}")]
    Grpc(tonic::transport::Error),
    #[error("admin HTTP server failed: {0}")]
    Admin(std::io::Error),
    #[error("operator API server failed: {0}")]
    Api(std::io::Error),
    #[error("cannot set up the rate-limit counters: {0}")]
    RateLimit(CounterError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot set up TLS on the gRPC port: {0}")]
    TlsSetup(tonic::transport::Error),
}

/// What `serve` reaches PostgreSQL through besides the key set's loader: the operator
/// API's state and the store of usage flushes (each with its own pool).
#[derive(Debug, Default)]
pub struct Stores {
    pub api: Option<ApiState>,
    pub usage: Option<UsageStore>,
}

/// The listeners `serve` answers on, bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    pub grpc: TcpListener,
    /// Probes and metrics.
    pub http: TcpListener,
    /// The operator API (with [`Stores::api`]); `None`: not served.
    pub api: Option<TcpListener>,
}

/// Serves until `shutdown` is cancelled, or fails if the first full snapshot cannot be
/// loaded. Logs `keysync listening: grpc=ADDR http=ADDR api=ADDR` (`api=off` without
/// one) with the bound addresses first, so callers that bind port 0 can find the ports.
///
/// The gRPC port carries `keysync.v1.KeySync`, Envoy's
/// `envoy.service.ratelimit.v3.RateLimitService` ([`global_limit`]), Envoy's
/// `envoy.service.auth.v3.Authorization` ([`crate::grpc::ext_authz`]) and
/// `grpc.health.v1.Health` ([`health`]), all behind [`GuardLayer`] (token, calls in
/// progress) and, when configured, TLS. Both ports answer at once: `/readyz` says 503,
/// every `KeySync` method and every ext_authz check of a key `UNAVAILABLE` until the
/// first snapshot is in memory (the rate-limit service needs no snapshot and answers
/// from the start). After that, change notifications (through `notifications`), the
/// periodic confirmation and the periodic poll drive catch-ups; database errors are
/// logged and retried while the last snapshot keeps being served, and the key set's
/// [`Confirmation`] says how long ago it was last confirmed.
pub async fn run<L: Loader, C: Connector>(
    config: &ServeConfig,
    loader: L,
    notifications: C,
    stores: Stores,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let Listeners {
        grpc: grpc_listener,
        http: http_listener,
        api: api_listener,
    } = listeners;
    let grpc_addr: SocketAddr = grpc_listener
        .local_addr()
        .map_err(ServerError::ListenerAddress)?;
    let http_addr: SocketAddr = http_listener
        .local_addr()
        .map_err(ServerError::ListenerAddress)?;
    let Stores { api, usage } = stores;
    // The API is served when it has both a listener and its database.
    let api_served = match (api_listener, api) {
        (Some(listener), Some(api)) => {
            let addr = listener
                .local_addr()
                .map_err(ServerError::ListenerAddress)?;
            Some((listener, addr, api))
        }
        _ => None,
    };
    let api_shown = api_served
        .as_ref()
        .map_or_else(|| "off".to_owned(), |(_, addr, _)| addr.to_string());
    info!("keysync listening: grpc={grpc_addr} http={http_addr} api={api_shown}");
    log_grpc_security(config, grpc_addr);
    if let Some((_, addr, _)) = &api_served {
        if !addr.ip().is_loopback() {
            warn!(
                "operator api reachable beyond loopback on {addr}: admin tokens travel in \
                 clear text unless a TLS proxy fronts this port"
            );
        }
    }

    let metrics = Arc::new(Metrics::new());
    // Whichever part ends first (shutdown, failed start, a server error) stops the rest.
    let stop = shutdown.child_token();
    let (limiter, pings) = global_limit::start(
        config.redis_url.as_ref(),
        config.ratelimit_failure_mode,
        metrics.rate_limit.clone(),
        stop.clone(),
    )
    .map_err(ServerError::RateLimit)?;
    let rate_limits = GlobalRateLimitService::new(limiter, metrics.rate_limit.clone());
    let readiness = Readiness::new();
    let confirmation = Confirmation::new(
        Bounds {
            overdue: config.confirm_interval + config.db_timeout,
            unready_after: config.max_unconfirmed,
            max_staleness: config.max_staleness,
        },
        metrics.sync.clone(),
    );
    let key_set = SharedKeySet::new();
    let feed = Arc::new(ChangeFeed::new(config.changelog_records));
    let reloader = Arc::new(Reloader::new(
        loader,
        key_set.clone(),
        feed.clone(),
        metrics.sync.clone(),
        confirmation.clone(),
    ));
    let freshness = Freshness::confirmed_by(metrics.sync.clone(), confirmation.clone());
    let catch_up = reload::spawn_catch_up(reloader.clone(), freshness.clone());
    let misses = Misses::new(catch_up.clone(), freshness.clone(), metrics.sync.clone());

    let sweep = api_served.as_ref().map(|(_, _, api)| {
        admin_api::idempotency::sweep(
            api.pool().clone(),
            api.settings().idempotency_ttl,
            IDEMPOTENCY_SWEEP_PERIOD,
            stop.clone(),
        )
    });
    let sweep = async {
        if let Some(sweep) = sweep {
            sweep.await;
        }
    };
    let admin_app = admin_port::app(AdminState {
        readiness: readiness.clone(),
        confirmation: confirmation.clone(),
        metrics: metrics.clone(),
    });
    let admin_server = async {
        let served = axum::serve(http_listener, admin_app)
            .with_graceful_shutdown(stop.clone().cancelled_owned())
            .await
            .map_err(ServerError::Admin);
        stop.cancel();
        served
    };
    let api_server = async {
        let Some((listener, _, api)) = api_served else {
            return Ok(());
        };
        // Leak reports act on keys in the database: served beside the API, on its pool.
        let leak_reports = config
            .leak_reports
            .clone()
            .map(|settings| leak_reports::router(api.pool().clone(), settings));
        let app = api_port::app(api, leak_reports);
        // The peer's address: the API slows down addresses that send bad tokens.
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop.clone().cancelled_owned())
        .await
        .map_err(ServerError::Api);
        stop.cancel();
        served
    };

    let watches = Watches::new(
        feed.clone(),
        catch_up.clone(),
        metrics.grpc.clone(),
        confirmation.clone(),
        WatchSettings {
            chunk: config.watch_chunk,
            heartbeat: config.watch_heartbeat,
            max_streams: config.max_watch_streams,
        },
        // Open streams would keep the gRPC server's graceful shutdown waiting.
        stop.clone(),
    );
    let checks = ChecksSeen::default();
    let ext_authz = ExtAuthzService::new(
        key_set.clone(),
        misses.clone(),
        readiness.clone(),
        metrics.ext_authz.clone(),
        confirmation.clone(),
    )
    .accepting_legacy_keys(config.accept_legacy_keys)
    .reading_credentials_from(config.credentials.clone())
    .marking(checks.clone());
    let own_key_set = key_set.clone();
    let mut service = KeySyncService::new(
        key_set,
        misses,
        readiness.clone(),
        metrics.key_sync(),
        watches,
        confirmation.clone(),
        config.max_page_size,
    );
    // The usage partitions are kept from the start, whatever the key set does, and the
    // fleet overview's rollup with them.
    let usage_partitions = usage.as_ref().map(|store| {
        let partitions = partitions::run(
            store.pool().clone(),
            config.usage_retention_months,
            stop.clone(),
        );
        let rollup = fleet_rollup::run(store.pool().clone(), stop.clone());
        async move {
            tokio::join!(partitions, rollup);
        }
    });
    let usage_partitions = async {
        if let Some(maintenance) = usage_partitions {
            maintenance.await;
        }
    };
    let usage_store_pool = usage.as_ref().map(|store| store.pool().clone());
    // The fleet lives beside the usage flushes that carry its reports: same pool.
    let own_gateway = usage_store_pool.as_ref().map(|pool| {
        let registry = GatewayRegistry::new(pool.clone(), config.fleet);
        service = service.clone().keeping_fleet(registry.clone());
        OwnGateway {
            pool: pool.clone(),
            registry,
            key_set: own_key_set,
            checks,
            settings: config.fleet,
            metrics: metrics.fleet.clone(),
        }
        .run(stop.clone())
    });
    let own_gateway = async {
        if let Some(own_gateway) = own_gateway {
            own_gateway.await;
        }
    };
    let mut usage_export = None;
    let mut anomaly_export = None;
    if let Some(store) = usage {
        // Quota leases are reconciled with the usage flushes: same database, same pool.
        service = service
            .granting_quota(
                QuotaLeases::new(store.pool().clone()),
                Ceiling {
                    rate: config.gateway_max_rate,
                },
            )
            .storing_usage(store);
        if let Some(settings) = &config.usage_export {
            info!(
                "usage export: to Kafka topic {} via {} (backlog of {} events; keysync does \
                 not create the topic)",
                settings.topic,
                settings.brokers.join(","),
                settings.backlog
            );
            let exporter = Exporter::new(settings.backlog, metrics.usage_export.clone());
            service = service.exporting_usage(exporter.clone());
            anomaly_export = Some(exporter.clone());
            let sink = KafkaSink::new(settings.brokers.clone(), settings.topic.clone());
            let stop = stop.clone();
            // A task of its own: serializing batches must not hold up the futures
            // joined below.
            usage_export = Some(tokio::spawn(async move { exporter.run(sink, stop).await }));
        }
    }
    // Anomaly alerts go where quota alerts go: the log, the metrics, the export.
    let anomaly_detection = match (&usage_store_pool, config.anomaly) {
        (Some(pool), Some(settings)) => Some(detector::run(
            pool.clone(),
            settings,
            Announcer::new(metrics.anomaly.clone(), anomaly_export.clone()),
            metrics.anomaly.clone(),
            stop.clone(),
        )),
        _ => None,
    };
    let anomaly_detection = async {
        if let Some(detection) = anomaly_detection {
            detection.await;
        }
    };
    // Each month's invoices are events of the export: closed only when it is on.
    let invoicing = match (&usage_store_pool, &anomaly_export) {
        (Some(pool), Some(export)) => Some(billing::close::run(
            pool.clone(),
            export.clone(),
            metrics.billing.clone(),
            stop.clone(),
        )),
        _ => None,
    };
    let invoicing = async {
        if let Some(invoicing) = invoicing {
            invoicing.await;
        }
    };
    // Webhooks are delivered from the outbox the changes write, on a pool of their own.
    let webhook_delivery = usage_store_pool.as_ref().map(|pool| {
        webhooks::run(
            database::webhook_pool(pool, config.db_timeout),
            config.webhooks,
            metrics.webhooks.clone(),
            stop.clone(),
        )
    });
    let webhook_delivery = async {
        if let Some(delivery) = webhook_delivery {
            delivery.await;
        }
    };
    let usage_export = async {
        if let Some(export) = usage_export {
            if let Err(error) = export.await {
                warn!("usage export stopped: {error}");
            }
        }
    };
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health::report(&health_reporter, false).await;
    let monitor = confirmation::run_monitor(
        confirmation.clone(),
        |serving| {
            let reporter = health_reporter.clone();
            async move { health::report(&reporter, serving).await }
        },
        stop.clone(),
    );
    let mut grpc_builder = tonic::transport::Server::builder();
    if let Some(files) = &config.grpc_tls {
        grpc_builder = grpc_builder
            .tls_config(tls::server_config(files)?)
            .map_err(ServerError::TlsSetup)?;
    }
    let grpc_tokens = config.grpc_tokens.any().then(|| {
        let tokens = Arc::new(GrpcTokens::new(config.grpc_tokens.clone()));
        // Read again while the guard holds them: rotations need no restart.
        tokens.watch(tokens::RELOAD_PERIOD);
        tokens
    });
    let guard = GuardLayer::new(grpc_tokens, config.grpc_max_in_flight, metrics.grpc.clone());
    let pings = async {
        if let Some(pings) = pings {
            pings.await;
        }
    };
    let grpc_server = async {
        let served = grpc_builder
            .layer(guard)
            .add_service(health_service)
            // A usage flush of the most counters is larger than tonic's 4 MiB default.
            .add_service(KeySyncServer::new(service).max_decoding_message_size(MAX_MESSAGE_BYTES))
            .add_service(RateLimitServiceServer::new(rate_limits))
            .add_service(AuthorizationServer::new(ext_authz))
            .serve_with_incoming_shutdown(
                TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
                stop.clone().cancelled_owned(),
            )
            .await
            .map_err(ServerError::Grpc);
        stop.cancel();
        served
    };

    let sync = async {
        let following = Following {
            notifications,
            catch_up,
            freshness,
        };
        let synced = keep_in_sync(
            config,
            &reloader,
            following,
            &readiness,
            &metrics.sync,
            &stop,
        )
        .await;
        stop.cancel();
        synced
    };

    let (synced, admin_served, api_result, grpc_served, (), (), (), (), (), (), (), (), ()) = tokio::join!(
        sync,
        admin_server,
        api_server,
        grpc_server,
        pings,
        monitor,
        sweep,
        usage_partitions,
        usage_export,
        anomaly_detection,
        invoicing,
        webhook_delivery,
        own_gateway
    );
    synced?;
    admin_served?;
    api_result?;
    grpc_served?;
    info!("keysync stopped");
    Ok(())
}

/// How often expired idempotency records of the operator API are deleted.
const IDEMPOTENCY_SWEEP_PERIOD: std::time::Duration = std::time::Duration::from_secs(600);

/// Says how the gRPC port authenticates its callers, and warns when a token would cross
/// a network in clear text.
fn log_grpc_security(config: &ServeConfig, grpc_addr: SocketAddr) {
    let token = config.grpc_tokens.any();
    let tls = config.grpc_tls.as_ref();
    let mutual = tls.is_some_and(|tls| tls.client_ca.is_some());
    let (accepted, read_only) = config.grpc_tokens.count();
    let tokens = format!("tokens ({accepted} accepted, {read_only} read-only)");
    let callers = match (token, mutual) {
        (true, true) => format!("{tokens} and client certificates"),
        (true, false) => tokens,
        (false, true) => "client certificates".to_owned(),
        (false, false) => "none (loopback only)".to_owned(),
    };
    let transport = match (tls.is_some(), mutual) {
        (false, _) => "plain text",
        (true, false) => "TLS",
        (true, true) => "mutual TLS",
    };
    info!("grpc authentication: {callers}, {transport}");
    if token && tls.is_none() && !grpc_addr.ip().is_loopback() {
        warn!(
            "grpc token travels in clear text beyond loopback: set KEYSYNC_GRPC_TLS_CERT \
             and KEYSYNC_GRPC_TLS_KEY, or keep keysync's network private"
        );
    }
}

/// How the key set follows the database after the first snapshot.
struct Following<C> {
    /// Where change notifications come from.
    notifications: C,
    /// The worker every catch-up goes through.
    catch_up: CatchUp,
    /// Told by the change listener whether it is caught up.
    freshness: Freshness,
}

/// Loads the first snapshot, opens readiness, then follows the database until `stop`:
/// change notifications and the periodic loop side by side.
async fn keep_in_sync<L: Loader, C: Connector>(
    config: &ServeConfig,
    reloader: &Arc<Reloader<L>>,
    following: Following<C>,
    readiness: &Readiness,
    metrics: &Arc<SyncMetrics>,
    stop: &CancellationToken,
) -> Result<(), ServerError> {
    let loaded = tokio::select! {
        _ = stop.cancelled() => return Ok(()),
        loaded = reloader.full_reload() => loaded,
    };
    let summary = loaded.map_err(ServerError::InitialLoad)?;
    readiness.set_ready();
    info!(
        "snapshot loaded: keys={} revision={} epoch={:016x}",
        summary.keys,
        summary.revision,
        reloader.position().epoch
    );
    let schedule = Schedule {
        poll_interval: config.poll_interval,
        full_reload_interval: config.full_reload_interval,
    };
    // Started after the first snapshot: a catch-up before it would read every key as
    // a change.
    let Following {
        notifications,
        catch_up,
        freshness,
    } = following;
    let listen = change_listener::run(
        notifications,
        catch_up.clone(),
        || reloader.revision(),
        freshness,
        metrics.clone(),
        ListenSettings {
            ping_interval: config.confirm_interval,
            timeout: config.db_timeout,
        },
        stop.clone(),
    );
    let probes = revision_probe::run(
        reloader.clone(),
        catch_up.clone(),
        config.confirm_interval,
        metrics.clone(),
        stop.clone(),
    );
    let poll = reload::run_periodic(reloader.clone(), catch_up, schedule, stop.clone());
    tokio::join!(listen, probes, poll);
    Ok(())
}

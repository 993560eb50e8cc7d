//! The sync service's home: a bootstrap extension (`envoy.bootstrap.dynamic_modules`,
//! `extension_name: keysync-sync`, the sync role's plugin configuration as its
//! `extension_config`), once per Envoy process, on the main thread.
//!
//! Why a bootstrap extension and not the HTTP filter's configuration: it exists once per
//! process whatever the listeners (a configuration exists per listener, and Envoy replaces
//! it on every listener update), it lives as long as the server, it has main-thread timers
//! (the service's tick) and Envoy's init signal: Envoy takes no traffic until the first
//! full sync (`StoreMeta::synced`, the core's readiness rule). What it lacks is a stream to a
//! cluster: the ABI gives bootstrap extensions one-shot callouts only. So the service's calls
//! and its `WatchKeys` stream go out through the newest live configuration of the HTTP filter
//! (`abi::outbound`), whose hooks hand what comes back here (`deliver`).
//!
//! Its timer also hands the stats to Envoy (`metric_table`) and wakes the workers' parked
//! requests (`wakeups`).

use std::cell::RefCell;
use std::time::{Duration, Instant};

use keysync_filter_core::{
    GatewayIdentity, GatewayMode, PluginConfig, SyncConfig, SyncService, SYNC_TICK,
};

use crate::abi::{log, with_live_bootstrap, BootstrapConfig, BootstrapHandle, LogLevel, Timer};
use crate::grpc::calls::Delivery;
use crate::metric_table::{MetricSink, MetricTable};
use crate::native_host::NativeHost;
use crate::panic_guard;
use crate::wakeups;

pub const EXTENSION_NAME: &str = "keysync-sync";

/// The timer's period: the service ticks every `SYNC_TICK`, but Envoy's init is released,
/// and the workers' stats reach Envoy, within this.
const TIMER_PERIOD: Duration = Duration::from_millis(20);

thread_local! {
    /// The process's sync service (main thread only: every hook that reaches it runs there).
    static SERVICE: RefCell<Option<Running>> = const { RefCell::new(None) };
    /// Deliveries that came while the service was busy (a hook inside its own call).
    static PENDING: RefCell<Vec<Delivery>> = const { RefCell::new(Vec::new()) };
}

struct Running {
    service: SyncService<NativeHost>,
    /// To make a fresh one after a panic.
    config: keysync_filter_core::SyncConfig,
    raw_config: Vec<u8>,
}

struct SyncExtension {
    timer: Timer,
    init_released: bool,
    last_tick: Option<Instant>,
}

/// Envoy loads the extension: defines the stats, starts the service and its timer.
pub fn new_sync_extension(
    config: &mut BootstrapHandle<'_>,
    settings: &[u8],
) -> Option<Box<dyn BootstrapConfig>> {
    let sync = match PluginConfig::parse(settings) {
        Ok(PluginConfig::Sync(sync)) => sync,
        Ok(PluginConfig::Auth(_) | PluginConfig::Ready) => {
            log(
                LogLevel::Error,
                "keysync-sync: its configuration must have role \"sync\" (the auth filter is the \
                 HTTP filter keysync-auth)",
            );
            return None;
        }
        Err(e) => {
            log(LogLevel::Error, &format!("keysync-sync: {e}"));
            return None;
        }
    };
    let table = MetricTable::define(|kind, name| match kind {
        keysync_filter_core::MetricKind::Counter => config.define_counter(name).map(|id| id.0),
        keysync_filter_core::MetricKind::Gauge => config.define_gauge(name).map(|id| id.0),
    });
    if !MetricTable::install(table) {
        log(
            LogLevel::Error,
            "keysync-sync: a second keysync-sync extension in one Envoy is refused (one sync \
             service per process)",
        );
        return None;
    }
    let mut timer = config.timer()?;
    timer.enable(millis(TIMER_PERIOD));
    log(
        LogLevel::Info,
        &format!(
            "keysync sync service configured: cluster={}, refresh_interval={}s; Envoy takes no \
             traffic before the first full sync",
            sync.keysync_cluster,
            sync.refresh_interval.as_secs()
        ),
    );
    let service = native_service(sync.clone(), settings);
    SERVICE.with(|slot| {
        *slot.borrow_mut() = Some(Running {
            service,
            config: sync,
            raw_config: settings.to_vec(),
        })
    });
    Some(Box::new(SyncExtension {
        timer,
        init_released: false,
        last_tick: None,
    }))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl BootstrapConfig for SyncExtension {
    fn on_timer(&mut self, config: &mut BootstrapHandle<'_>, timer: usize) {
        if timer != self.timer.token() {
            return;
        }
        let due = self
            .last_tick
            .is_none_or(|last| last.elapsed() >= SYNC_TICK);
        if due {
            self.last_tick = Some(Instant::now());
            with_service(SyncService::on_tick);
            wakeups::wake_all();
        }
        if !self.init_released && with_service(|service| service.store_synced()) == Some(true) {
            self.init_released = true;
            log(
                LogLevel::Info,
                "keysync: the key store holds a complete sync: Envoy's init released (ready)",
            );
            config.signal_init_complete();
        }
        if let Some(table) = MetricTable::process() {
            table.flush(&mut EnvoyStats(config));
        }
        self.timer.enable(millis(TIMER_PERIOD));
    }
}

impl Drop for SyncExtension {
    fn drop(&mut self) {
        SERVICE.with(|slot| slot.borrow_mut().take());
    }
}

struct EnvoyStats<'a, 'h>(&'a mut BootstrapHandle<'h>);

impl MetricSink for EnvoyStats<'_, '_> {
    fn add(&mut self, envoy_id: usize, delta: u64) {
        self.0
            .increment_counter(crate::abi::CounterId(envoy_id), delta);
    }

    fn set(&mut self, envoy_id: usize, value: u64) {
        self.0.set_gauge(crate::abi::GaugeId(envoy_id), value);
    }
}

/// Runs `f` on the service, then whatever was delivered meanwhile. A panic in the service
/// leaves its state unknown: it is replaced by a fresh one, which takes the sync over from
/// the store as it is once the old one's lease has gone silent (the core's takeover, as for
/// a wasm sync VM that died). `None` when there is no service (or it is busy).
fn with_service<R>(f: impl FnOnce(&mut SyncService<NativeHost>) -> R) -> Option<R> {
    let result = on_service(f);
    drain_pending();
    // What the service recorded reaches Envoy now, as the wasm filter's service writes its
    // stats: a test (or an operator) reading them right after a change sees it.
    flush_stats();
    result
}

fn flush_stats() {
    if let Some(table) = MetricTable::process() {
        with_live_bootstrap(|config| table.flush(&mut EnvoyStats(config)));
    }
}

fn on_service<R>(f: impl FnOnce(&mut SyncService<NativeHost>) -> R) -> Option<R> {
    SERVICE.with(|slot| {
        let mut slot = slot.try_borrow_mut().ok()?;
        let running = slot.as_mut()?;
        match panic_guard::run(|| f(&mut running.service)) {
            Ok(result) => Some(result),
            Err(panicked) => {
                log(
                    LogLevel::Error,
                    &format!(
                        "keysync sync service: a panic ({panicked}); starting a fresh one, which \
                         takes over within seconds"
                    ),
                );
                running.service = native_service(running.config.clone(), &running.raw_config);
                None
            }
        }
    })
}

/// The sync service, reporting itself to keysync as a native gateway on this machine.
fn native_service(config: SyncConfig, raw_config: &[u8]) -> SyncService<NativeHost> {
    // The kernel's name for the machine (a pod's name in Kubernetes); empty if unreadable,
    // and keysync then names the gateway by its address.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_default();
    SyncService::singleton(NativeHost, config, raw_config).reporting_as(GatewayIdentity {
        mode: GatewayMode::Native,
        host,
    })
}

/// What the HTTP filter's configuration hooks received for the service's calls.
pub fn deliver(deliveries: Vec<Delivery>) {
    if deliveries.is_empty() {
        return;
    }
    PENDING.with(|pending| pending.borrow_mut().extend(deliveries));
    drain_pending();
    flush_stats();
}

fn drain_pending() {
    loop {
        let busy = SERVICE.with(|slot| slot.try_borrow_mut().is_err());
        if busy {
            return;
        }
        let next = PENDING.with(|pending| {
            let mut pending = pending.borrow_mut();
            (!pending.is_empty()).then(|| pending.remove(0))
        });
        let Some(delivery) = next else {
            return;
        };
        let _ = on_service(|service| match delivery {
            Delivery::Reply { token, reply } => service.on_response(token, reply),
            Delivery::StreamMessage { token, reply } => service.on_stream_message(token, reply),
            Delivery::StreamClosed { token, status } => service.on_stream_close(token, status),
        });
    }
}

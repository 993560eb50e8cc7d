//! The demonstration bootstrap extension: holds Envoy's init (no traffic, `/ready` 503) until
//! the file named by `open_when=` exists, looking every 20 ms on a main-thread timer, the way
//! the sync service will hold it until the first full sync. A thread of its own also sends
//! one event through the bootstrap scheduler.

use std::path::PathBuf;
use std::sync::Arc;

use super::settings::setting;
use crate::abi::{
    log, BootstrapConfig, BootstrapHandle, BootstrapScheduler, CounterId, GaugeId, LogLevel, Timer,
};

pub const INIT_GATE_NAME: &str = "keysync-abi-demo-gate";

const POLL_MS: u64 = 20;

struct InitGate {
    path: PathBuf,
    timer: Timer,
    open: bool,
    polls: CounterId,
    events: CounterId,
    opened: GaugeId,
    /// Kept for as long as the configuration, like a sync thread's would be.
    _scheduler: Arc<BootstrapScheduler>,
}

pub fn new_init_gate(
    config: &mut BootstrapHandle<'_>,
    settings: &[u8],
) -> Option<Box<dyn BootstrapConfig>> {
    let Some(path) = setting(settings, "open_when") else {
        log(
            LogLevel::Error,
            "keysync-abi-demo-gate: settings need open_when=",
        );
        return None;
    };
    let mut timer = config.timer()?;
    timer.enable(POLL_MS);
    let scheduler = Arc::new(config.scheduler()?);
    let from_thread = Arc::clone(&scheduler);
    std::thread::spawn(move || from_thread.commit(1));
    log(
        LogLevel::Info,
        &format!("keysync-abi-demo-gate: holding Envoy's init until {path} exists"),
    );
    Some(Box::new(InitGate {
        path: PathBuf::from(path),
        timer,
        open: false,
        polls: config.define_counter("demo_gate_polls")?,
        events: config.define_counter("demo_gate_events")?,
        opened: config.define_gauge("demo_gate_open")?,
        _scheduler: scheduler,
    }))
}

impl BootstrapConfig for InitGate {
    fn on_timer(&mut self, config: &mut BootstrapHandle<'_>, timer: usize) {
        if self.open || timer != self.timer.token() {
            return;
        }
        config.increment_counter(self.polls, 1);
        if self.path.exists() {
            self.open = true;
            config.set_gauge(self.opened, 1);
            config.signal_init_complete();
            log(LogLevel::Info, "keysync-abi-demo-gate: init complete");
        } else {
            self.timer.enable(POLL_MS);
        }
    }

    fn on_scheduled(&mut self, config: &mut BootstrapHandle<'_>, _event_id: u64) {
        config.increment_counter(self.events, 1);
    }
}

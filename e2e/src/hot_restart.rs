//! Envoy hot restart, as operators roll out a new configuration or binary without
//! closing the port: a new generation of the same Envoy (`--restart-epoch N+1`, the
//! family's `--base-id`) takes the listening sockets over from the running one, which
//! drains its connections (`--drain-time-s`) and exits when the new one tells it to
//! (`--parent-shutdown-time-s`). Each generation is a new process with an empty key
//! store (shared data lives in the process), so it starts without the keys the old one
//! held.

use std::path::PathBuf;
use std::time::Duration;

use crate::gateway::{Gateway, GatewayOptions, HotRestart};
use crate::paths::free_port;
use crate::scratch::ScratchDir;

/// The generations of one hot-restarting Envoy.
pub struct HotRestartFamily {
    /// What the current generation was started with.
    options: GatewayOptions,
    pub current: Gateway,
    /// Earlier generations, draining or gone; kept until the family is dropped so that
    /// their logs stay readable.
    previous: Vec<Gateway>,
    /// Holds the base id file.
    _dir: ScratchDir,
}

impl HotRestartFamily {
    /// Starts generation 0 on a fixed free port (a hot restart hands the socket bound to
    /// the configured address over, so the address cannot be "any port").
    pub fn start(
        mut options: GatewayOptions,
        drain_time: Duration,
        parent_shutdown_time: Duration,
    ) -> HotRestartFamily {
        let dir = ScratchDir::new("envoy-hot-restart")
            .unwrap_or_else(|error| panic!("hot restart: cannot create a temp dir: {error}"));
        if options.port == 0 {
            options.port = free_port();
        }
        options.hot_restart = Some(HotRestart {
            epoch: 0,
            base_id: None,
            base_id_path: dir.path().join("base-id"),
            drain_time,
            parent_shutdown_time,
        });
        let current = Gateway::start(options.clone());
        HotRestartFamily {
            options,
            current,
            previous: Vec::new(),
            _dir: dir,
        }
    }

    /// Starts the next generation and returns once it serves on the port; the previous
    /// one drains and exits on its own.
    pub fn restart(&mut self) -> &Gateway {
        self.restart_with(|_, _| {})
    }

    /// Like [`HotRestartFamily::restart`], with the options adjusted for the new
    /// generation (its epoch given): a new configuration rolled out.
    pub fn restart_with(&mut self, configure: impl FnOnce(&mut GatewayOptions, u32)) -> &Gateway {
        let mut options = self.options.clone();
        configure(&mut options, self.epoch() + 1);
        let hot_restart = options
            .hot_restart
            .as_mut()
            .expect("a family's options always carry hot restart arguments");
        hot_restart.base_id = Some(base_id(&hot_restart.base_id_path));
        hot_restart.epoch += 1;
        let next = Gateway::start(options.clone());
        self.options = options;
        let old = std::mem::replace(&mut self.current, next);
        self.previous.push(old);
        &self.current
    }

    /// The generation before the current one, if any.
    pub fn parent(&self) -> Option<&Gateway> {
        self.previous.last()
    }

    /// The current generation's `--restart-epoch`.
    pub fn epoch(&self) -> u32 {
        self.options.hot_restart.as_ref().map_or(0, |hot| hot.epoch)
    }
}

/// The base id generation 0 picked and wrote.
fn base_id(path: &PathBuf) -> u32 {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("hot restart: no base id in {}: {error}", path.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|error| panic!("hot restart: base id {text:?} is not a number: {error}"))
}

//! Streaming requests to a cluster from wherever the module's code is running: the ABI ties
//! each one to an origin, a stream (on its worker thread) or an HTTP filter configuration (on
//! the main thread), and delivers its events to that origin's hooks.
//!
//! - In a stream's hook, the origin is that stream: the hooks keep a per-thread stack of the
//!   streams whose hooks are running ([`enter_stream`]).
//! - On the main thread outside any stream, the origin is the newest live HTTP filter
//!   configuration of this module: its `filter_config_envoy_ptr` is valid, on the main thread,
//!   from `config_new` to `config_destroy` (the ABI's rule), so a main-thread hook of another
//!   kind (a bootstrap extension's timer) may start a request through it. The hooks register
//!   each configuration when it is made and forget it before it is destroyed.
//!
//! A configuration's requests die with it: Envoy resets them and tells the module nothing
//! (`in_module_config_` is cleared first), so the module must give up on them itself.

use std::cell::RefCell;

use super::filter_config::FilterConfigHandle;
use super::http_stream::StreamRef;
use super::types::{CalloutInitError, EnvoyPtr};

/// Where a request to a cluster was started, and so where its events arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A stream (its `StreamRef::serial`), on its worker thread.
    Stream(u64),
    /// An HTTP filter configuration (its `FilterConfigHandle::serial`), on the main thread.
    Config(u64),
}

/// Why a request could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// Neither a stream's hook nor the main thread with a live configuration.
    NoOrigin,
    /// Envoy refused it.
    Refused(CalloutInitError),
}

thread_local! {
    /// The streams whose hooks are running on this thread, innermost last.
    static RUNNING_STREAMS: RefCell<Vec<StreamRef>> = const { RefCell::new(Vec::new()) };
    /// The live configurations (main thread only): serial and Envoy's pointer, oldest first.
    static LIVE_CONFIGS: RefCell<Vec<(u64, EnvoyPtr)>> = const { RefCell::new(Vec::new()) };
}

/// Marks `stream`'s hook as running on this thread until the guard drops.
pub(super) fn enter_stream(stream: StreamRef) -> RunningStream {
    RUNNING_STREAMS.with(|running| running.borrow_mut().push(stream));
    RunningStream
}

/// A stream's hook is running (see [`enter_stream`]).
pub(super) struct RunningStream;

impl Drop for RunningStream {
    fn drop(&mut self) {
        RUNNING_STREAMS.with(|running| running.borrow_mut().pop());
    }
}

/// `config_new` made a configuration (main thread).
pub(super) fn config_created(serial: u64, ptr: EnvoyPtr) {
    LIVE_CONFIGS.with(|live| live.borrow_mut().push((serial, ptr)));
}

/// `config_destroy` is about to drop a configuration (main thread).
pub(super) fn config_destroyed(serial: u64) {
    LIVE_CONFIGS.with(|live| live.borrow_mut().retain(|(s, _)| *s != serial));
}

fn running_stream() -> Option<StreamRef> {
    RUNNING_STREAMS.with(|running| running.borrow().last().cloned())
}

fn live_config(serial: Option<u64>) -> Option<(u64, EnvoyPtr)> {
    LIVE_CONFIGS.with(|live| {
        let live = live.borrow();
        match serial {
            Some(serial) => live.iter().find(|(s, _)| *s == serial).copied(),
            None => live.last().copied(),
        }
    })
}

/// Starts a streaming request to `cluster` from the current origin (see the module docs)
/// and sends `body` after the headers, ending the request if `end_stream`. Its events come
/// to the origin's `on_*stream_*` hooks under the returned id.
pub fn start_stream(
    cluster: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
    end_stream: bool,
    timeout_ms: u64,
) -> Result<(Origin, u64), StartError> {
    if let Some(stream) = running_stream() {
        return stream
            .start_stream(cluster, headers, body, end_stream, timeout_ms)
            .map(|id| (Origin::Stream(stream.serial()), id))
            .map_err(StartError::Refused);
    }
    let (serial, ptr) = live_config(None).ok_or(StartError::NoOrigin)?;
    // The pointer is live (registered between `config_new` and `config_destroy`) and this is
    // the main thread (the registry is per thread and only the main thread fills it).
    FilterConfigHandle::new(ptr, serial)
        .start_stream(cluster, headers, body, end_stream, timeout_ms)
        .map(|id| (Origin::Config(serial), id))
        .map_err(StartError::Refused)
}

/// Resets request `stream_id` of `origin`, if that origin is reachable from here (the
/// stream's own hook is running, or the configuration is live on this thread). Its reset
/// event follows, from Envoy.
pub fn reset_stream(origin: Origin, stream_id: u64) {
    match origin {
        Origin::Stream(serial) => {
            let found = RUNNING_STREAMS.with(|running| {
                running
                    .borrow()
                    .iter()
                    .find(|stream| stream.serial() == serial)
                    .cloned()
            });
            if let Some(stream) = found {
                stream.reset_stream(stream_id);
            }
        }
        Origin::Config(serial) => {
            if let Some((serial, ptr)) = live_config(Some(serial)) {
                FilterConfigHandle::new(ptr, serial).reset_stream(stream_id);
            }
        }
    }
}

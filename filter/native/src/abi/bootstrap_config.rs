//! A bootstrap extension configuration (`envoy.bootstrap.dynamic_modules`), on the main
//! thread: Envoy's init signal, timers, a scheduler, metrics that need no request.
//!
//! Envoy registers an init target for every bootstrap extension: the listeners take no
//! traffic (and `/ready` answers 503) until the extension calls
//! [`BootstrapHandle::signal_init_complete`]. That is the hook for "no traffic before the
//! first full sync".

use std::cell::RefCell;
use std::marker::PhantomData;

use super::callbacks::*;
use super::types::{CounterId, EnvoyPtr, GaugeId, ModuleBuffer, METRICS_SUCCESS};

thread_local! {
    /// The live extension configurations (main thread only), oldest first: Envoy's pointer
    /// is valid on the main thread from `config_new` to `config_destroy` (the ABI's rule), so
    /// main-thread code outside the extension's own hooks (a filter configuration's hook) may
    /// use it too.
    static LIVE: RefCell<Vec<EnvoyPtr>> = const { RefCell::new(Vec::new()) };
}

pub(super) fn config_created(ptr: EnvoyPtr) {
    LIVE.with(|live| live.borrow_mut().push(ptr));
}

pub(super) fn config_destroyed(ptr: EnvoyPtr) {
    LIVE.with(|live| live.borrow_mut().retain(|p| *p != ptr));
}

/// Runs `f` with the oldest live extension configuration, on the main thread; `None`
/// elsewhere or when there is none. The handle offers what any of its hooks may do.
pub fn with_live_bootstrap<R>(f: impl FnOnce(&mut BootstrapHandle<'_>) -> R) -> Option<R> {
    let ptr = LIVE.with(|live| live.borrow().first().copied())?;
    Some(f(&mut BootstrapHandle::new(ptr)))
}

/// The extension configuration during one (main-thread) hook.
pub struct BootstrapHandle<'h> {
    ptr: EnvoyPtr,
    _hook: PhantomData<&'h mut ()>,
}

impl BootstrapHandle<'_> {
    /// `ptr` is the `extension_config_envoy_ptr` Envoy passed to the running hook.
    pub(super) fn new(ptr: EnvoyPtr) -> Self {
        BootstrapHandle {
            ptr,
            _hook: PhantomData,
        }
    }

    /// Lets Envoy start serving (once; see the module docs).
    pub fn signal_init_complete(&mut self) {
        // SAFETY: config pointer of the running main-thread hook.
        unsafe {
            envoy_dynamic_module_callback_bootstrap_extension_config_signal_init_complete(self.ptr)
        }
    }

    /// A new, disarmed timer; it fires
    /// [`BootstrapConfig::on_timer`](super::BootstrapConfig::on_timer) with its token.
    pub fn timer(&mut self) -> Option<Timer> {
        // SAFETY: config pointer of the running main-thread hook; the module owns the result
        // and frees it on the main thread (`Timer` is not `Send`).
        let ptr = unsafe { envoy_dynamic_module_callback_bootstrap_extension_timer_new(self.ptr) };
        (!ptr.is_null()).then_some(Timer { ptr })
    }

    /// A scheduler to reach this configuration on the main thread from any thread.
    pub fn scheduler(&mut self) -> Option<BootstrapScheduler> {
        // SAFETY: config pointer of the running hook; the module owns the result.
        let ptr = unsafe {
            envoy_dynamic_module_callback_bootstrap_extension_config_scheduler_new(self.ptr)
        };
        (!ptr.is_null()).then_some(BootstrapScheduler { ptr })
    }

    /// Defines a counter (no labels).
    pub fn define_counter(&mut self, name: &str) -> Option<CounterId> {
        let mut id = 0usize;
        // SAFETY: config pointer; name lent and copied; `id` a valid out-pointer; no labels.
        let result = unsafe {
            envoy_dynamic_module_callback_bootstrap_extension_config_define_counter(
                self.ptr,
                ModuleBuffer::new(name.as_bytes()),
                std::ptr::null_mut(),
                0,
                &mut id,
            )
        };
        (result == METRICS_SUCCESS).then_some(CounterId(id))
    }

    /// Defines a gauge (no labels).
    pub fn define_gauge(&mut self, name: &str) -> Option<GaugeId> {
        let mut id = 0usize;
        // SAFETY: as in `define_counter`.
        let result = unsafe {
            envoy_dynamic_module_callback_bootstrap_extension_config_define_gauge(
                self.ptr,
                ModuleBuffer::new(name.as_bytes()),
                std::ptr::null_mut(),
                0,
                &mut id,
            )
        };
        (result == METRICS_SUCCESS).then_some(GaugeId(id))
    }

    /// Adds `value` to a counter of this configuration.
    pub fn increment_counter(&mut self, counter: CounterId, value: u64) -> bool {
        // SAFETY: config pointer; no labels, as defined.
        let result = unsafe {
            envoy_dynamic_module_callback_bootstrap_extension_config_increment_counter(
                self.ptr,
                counter.0,
                std::ptr::null_mut(),
                0,
                value,
            )
        };
        result == METRICS_SUCCESS
    }

    /// Sets a gauge of this configuration.
    pub fn set_gauge(&mut self, gauge: GaugeId, value: u64) -> bool {
        // SAFETY: as in `increment_counter`.
        let result = unsafe {
            envoy_dynamic_module_callback_bootstrap_extension_config_set_gauge(
                self.ptr,
                gauge.0,
                std::ptr::null_mut(),
                0,
                value,
            )
        };
        result == METRICS_SUCCESS
    }
}

/// A main-thread timer of a bootstrap configuration. Not `Send`: Envoy requires it be armed
/// and freed on the main thread, where every bootstrap hook runs.
pub struct Timer {
    ptr: EnvoyPtr,
}

impl Timer {
    /// Fires once, `delay_ms` from now (re-arming replaces the previous delay).
    pub fn enable(&mut self, delay_ms: u64) {
        // SAFETY: `ptr` came from `timer_new`, is freed only by `Drop`, and a `Timer` never
        // leaves the main thread.
        unsafe {
            envoy_dynamic_module_callback_bootstrap_extension_timer_enable(self.ptr, delay_ms)
        }
    }

    /// What [`BootstrapConfig::on_timer`](super::BootstrapConfig::on_timer) receives when this
    /// timer fires.
    pub fn token(&self) -> usize {
        self.ptr as usize
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // SAFETY: freed exactly once, on the main thread (see `enable`).
        unsafe { envoy_dynamic_module_callback_bootstrap_extension_timer_delete(self.ptr) }
    }
}

/// Hands events from any thread to the bootstrap configuration on the main thread.
pub struct BootstrapScheduler {
    ptr: EnvoyPtr,
}

// SAFETY: `commit` posts to the main dispatcher (thread-safe); `Drop` frees once.
unsafe impl Send for BootstrapScheduler {}
// SAFETY: concurrent commits only post to a thread-safe dispatcher.
unsafe impl Sync for BootstrapScheduler {}

impl BootstrapScheduler {
    /// Posts `event_id` to the main thread.
    pub fn commit(&self, event_id: u64) {
        // SAFETY: `ptr` came from `config_scheduler_new` and is freed only by `Drop`.
        unsafe {
            envoy_dynamic_module_callback_bootstrap_extension_config_scheduler_commit(
                self.ptr, event_id,
            )
        }
    }
}

impl Drop for BootstrapScheduler {
    fn drop(&mut self) {
        // SAFETY: freed exactly once, here.
        unsafe {
            envoy_dynamic_module_callback_bootstrap_extension_config_scheduler_delete(self.ptr)
        }
    }
}

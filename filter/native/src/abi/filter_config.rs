//! An HTTP filter configuration on the main thread: metrics definitions, its scheduler, and
//! requests to a cluster that belong to no client request (one-shot callouts, streams: what
//! the sync service needs to reach keysync).
//!
//! A [`FilterConfigHandle`] is lent to the module by the main-thread hooks of a configuration
//! (`config_new`, `config_scheduled`, the callout and stream hooks) for that hook only. A
//! [`FilterConfigScheduler`] is the way from any other thread (a worker, a thread of the
//! module's own) to the main thread.

use std::marker::PhantomData;

use super::callbacks::*;
use super::types::{
    module_headers, CalloutInitError, CounterId, EnvoyPtr, GaugeId, ModuleBuffer, METRICS_SUCCESS,
};

/// The configuration during one main-thread hook.
pub struct FilterConfigHandle<'h> {
    ptr: EnvoyPtr,
    serial: u64,
    _hook: PhantomData<&'h mut ()>,
}

impl FilterConfigHandle<'_> {
    /// `ptr` is the `filter_config_envoy_ptr` of a live configuration, on the main thread
    /// (the running hook's, or one `outbound` keeps); `serial` the module's number for it.
    pub(super) fn new(ptr: EnvoyPtr, serial: u64) -> Self {
        FilterConfigHandle {
            ptr,
            serial,
            _hook: PhantomData,
        }
    }

    /// The module's number for this configuration (see `outbound`).
    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// Defines a counter (no labels); Envoy shows it under the `dynamicmodulescustom.` prefix.
    /// Only from [`Module::new_http_filter_config`](super::Module::new_http_filter_config).
    pub fn define_counter(&mut self, name: &str) -> Option<CounterId> {
        let mut id = 0usize;
        // SAFETY: config pointer of the running hook; name lent and copied; `id` a valid
        // out-pointer; no labels (null, 0).
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_define_counter(
                self.ptr,
                ModuleBuffer::new(name.as_bytes()),
                std::ptr::null_mut(),
                0,
                &mut id,
            )
        };
        (result == METRICS_SUCCESS).then_some(CounterId(id))
    }

    /// Defines a gauge (no labels), like [`FilterConfigHandle::define_counter`].
    pub fn define_gauge(&mut self, name: &str) -> Option<GaugeId> {
        let mut id = 0usize;
        // SAFETY: as in `define_counter`.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_define_gauge(
                self.ptr,
                ModuleBuffer::new(name.as_bytes()),
                std::ptr::null_mut(),
                0,
                &mut id,
            )
        };
        (result == METRICS_SUCCESS).then_some(GaugeId(id))
    }

    /// A scheduler to reach this configuration on the main thread from any thread.
    pub fn scheduler(&mut self) -> Option<FilterConfigScheduler> {
        // SAFETY: config pointer of the running hook; the module owns the result.
        let ptr =
            unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.ptr) };
        (!ptr.is_null()).then_some(FilterConfigScheduler { ptr })
    }

    /// A one-shot request to `cluster`; the answer comes to
    /// [`HttpFilterConfig::on_callout_done`](super::HttpFilterConfig::on_callout_done).
    pub fn callout(
        &mut self,
        cluster: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, CalloutInitError> {
        let mut raw = module_headers(headers);
        let mut id = 0u64;
        // SAFETY: config pointer of the running hook; everything else lent and copied; `id`
        // a valid out-pointer.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_http_callout(
                self.ptr,
                &mut id,
                ModuleBuffer::new(cluster.as_bytes()),
                raw.as_mut_ptr(),
                raw.len(),
                ModuleBuffer::new(body),
                timeout_ms,
            )
        };
        CalloutInitError::from_raw(result).map(|()| id)
    }

    /// Opens a streaming request to `cluster` and sends `body`; with `end_stream` false it
    /// stays open for [`FilterConfigHandle::send_stream_data`]. `timeout_ms` 0: no timeout.
    /// Events come to the `on_stream_*` methods of
    /// [`HttpFilterConfig`](super::HttpFilterConfig) (possibly a reset before this returns:
    /// hold no lock across it).
    pub fn start_stream(
        &mut self,
        cluster: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
        end_stream: bool,
        timeout_ms: u64,
    ) -> Result<u64, CalloutInitError> {
        let mut raw = module_headers(headers);
        let mut id = 0u64;
        // SAFETY: as in `callout`.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_start_http_stream(
                self.ptr,
                &mut id,
                ModuleBuffer::new(cluster.as_bytes()),
                raw.as_mut_ptr(),
                raw.len(),
                ModuleBuffer::new(body),
                end_stream,
                timeout_ms,
            )
        };
        CalloutInitError::from_raw(result).map(|()| id)
    }

    /// Sends request data on an open stream; false if it is not open.
    pub fn send_stream_data(&mut self, stream_id: u64, data: &[u8], end_stream: bool) -> bool {
        // SAFETY: config pointer of the running hook; data lent and copied.
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_stream_send_data(
                self.ptr,
                stream_id,
                ModuleBuffer::new(data),
                end_stream,
            )
        }
    }

    /// Resets an open stream (its reset event follows).
    pub fn reset_stream(&mut self, stream_id: u64) {
        // SAFETY: config pointer of the running hook.
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_reset_http_stream(self.ptr, stream_id)
        }
    }
}

/// Hands events from any thread to the configuration on the main thread
/// ([`HttpFilterConfig::on_scheduled`](super::HttpFilterConfig::on_scheduled)). Dropping it
/// frees Envoy's scheduler; keep it no longer than the configuration.
pub struct FilterConfigScheduler {
    ptr: EnvoyPtr,
}

// SAFETY: `commit` posts to the main dispatcher (thread-safe); `Drop` frees the object once,
// with no commit running.
unsafe impl Send for FilterConfigScheduler {}
// SAFETY: concurrent commits only post to a thread-safe dispatcher.
unsafe impl Sync for FilterConfigScheduler {}

impl FilterConfigScheduler {
    /// Posts `event_id` to the main thread.
    pub fn commit(&self, event_id: u64) {
        // SAFETY: `ptr` came from `config_scheduler_new` and is freed only by `Drop`.
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_scheduler_commit(self.ptr, event_id)
        }
    }
}

impl Drop for FilterConfigScheduler {
    fn drop(&mut self) {
        // SAFETY: freed exactly once, here.
        unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.ptr) }
    }
}

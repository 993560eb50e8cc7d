//! One HTTP stream, as the filter sees it during a hook: request and response headers, a
//! local reply, attributes, route metadata, resuming, a scheduler, a callout, metrics.
//!
//! An [`HttpStream`] is made by a hook from Envoy's `filter_envoy_ptr` and lent to the module
//! for that hook only (its lifetime ends with the hook; it is neither `Send` nor `Sync`, as the
//! pointer is only valid on the stream's worker thread). Header and metadata values borrow the
//! stream immutably and every setter needs it mutably, which is the header's rule in types:
//! Envoy's buffers stay valid until the hook ends or a setter is called.

use std::cell::Cell;
use std::marker::PhantomData;

use super::callbacks::*;
use super::types::{
    module_headers, Attribute, CalloutInitError, CounterId, EnvoyBuffer, EnvoyPtr, GaugeId,
    ModuleBuffer, ModuleHttpHeader, HEADER_MAP_REQUEST_HEADERS, HEADER_MAP_RESPONSE_HEADERS,
    METADATA_SOURCE_ROUTE, METRICS_SUCCESS,
};

/// Which header map of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderMap {
    Request,
    Response,
}

impl HeaderMap {
    fn raw(self) -> u32 {
        match self {
            HeaderMap::Request => HEADER_MAP_REQUEST_HEADERS,
            HeaderMap::Response => HEADER_MAP_RESPONSE_HEADERS,
        }
    }
}

/// The stream during one hook (see the module docs).
pub struct HttpStream<'h> {
    ptr: EnvoyPtr,
    /// Set once a local reply was sent on this stream (kept by the stream's slot across
    /// hooks), so that the panic guard never sends a second one.
    replied: &'h Cell<bool>,
    _hook: PhantomData<&'h mut ()>,
}

impl<'h> HttpStream<'h> {
    /// `ptr` is the `filter_envoy_ptr` Envoy passed to the running hook.
    pub(super) fn new(ptr: EnvoyPtr, replied: &'h Cell<bool>) -> HttpStream<'h> {
        HttpStream {
            ptr,
            replied,
            _hook: PhantomData,
        }
    }

    /// The first value of header `name` (lower case), if any.
    pub fn header(&self, map: HeaderMap, name: &str) -> Option<&[u8]> {
        self.header_at(map, name, 0).0
    }

    /// Every value of header `name`, in order.
    pub fn header_values(&self, map: HeaderMap, name: &str) -> Vec<&[u8]> {
        let (first, count) = self.header_at(map, name, 0);
        let mut values: Vec<&[u8]> = first.into_iter().collect();
        for index in 1..count {
            if let (Some(value), _) = self.header_at(map, name, index) {
                values.push(value);
            }
        }
        values
    }

    fn header_at(&self, map: HeaderMap, name: &str, index: usize) -> (Option<&[u8]>, usize) {
        let mut value = EnvoyBuffer::NULL;
        let mut count = 0usize;
        // SAFETY: `self.ptr` is the running hook's stream on this thread; key is lent for the
        // call; both out-pointers are valid locals.
        let found = unsafe {
            envoy_dynamic_module_callback_http_get_header(
                self.ptr,
                map.raw(),
                ModuleBuffer::new(name.as_bytes()),
                &mut value,
                index,
                &mut count,
            )
        };
        if !found {
            return (None, 0);
        }
        // SAFETY: Envoy's buffer stays valid until the hook ends or a setter runs; the
        // returned slice borrows `self` and every setter borrows it mutably.
        (unsafe { value.bytes() }, count)
    }

    /// Replaces header `name` with `value`. False if the map is not available.
    pub fn set_header(&mut self, map: HeaderMap, name: &str, value: &[u8]) -> bool {
        // SAFETY: as in `header_at`; key and value are lent for the call and copied.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.ptr,
                map.raw(),
                ModuleBuffer::new(name.as_bytes()),
                ModuleBuffer::new(value),
            )
        }
    }

    /// Removes every value of header `name` (a null value). False if the map is not available.
    pub fn remove_header(&mut self, map: HeaderMap, name: &str) -> bool {
        // SAFETY: as in `set_header`; a null value buffer means removal.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.ptr,
                map.raw(),
                ModuleBuffer::new(name.as_bytes()),
                ModuleBuffer::NULL,
            )
        }
    }

    /// Answers the request locally with `status`, `headers` and `body`; `details` is Envoy's
    /// response-code details (access logs: `%RESPONSE_CODE_DETAILS%`). The hook then returns
    /// [`HeadersStatus::StopIteration`](super::HeadersStatus).
    pub fn send_response(
        &mut self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
        details: &str,
    ) {
        let mut raw: Vec<ModuleHttpHeader<'_>> = headers
            .iter()
            .map(|(name, value)| ModuleHttpHeader::new(name.as_bytes(), value.as_bytes()))
            .collect();
        self.replied.set(true);
        // SAFETY: the header array, body and details are lent for the call (Envoy copies
        // them); `raw.len()` is the array's length.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.ptr,
                status,
                raw.as_mut_ptr(),
                raw.len(),
                ModuleBuffer::new(body),
                ModuleBuffer::new(details.as_bytes()),
            )
        }
    }

    /// Whether a local reply was sent on this stream.
    pub fn replied(&self) -> bool {
        self.replied.get()
    }

    /// A string attribute of the stream, copied out of Envoy.
    pub fn attribute(&self, attribute: Attribute) -> Option<Vec<u8>> {
        let mut value = EnvoyBuffer::NULL;
        // SAFETY: stream pointer as above; `value` is a valid out-pointer.
        let found = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.ptr,
                attribute as u32,
                &mut value,
            )
        };
        if !found {
            return None;
        }
        // SAFETY: the buffer is valid at least until our next call into Envoy; copied now.
        unsafe { value.bytes() }.map(<[u8]>::to_vec)
    }

    /// The string at `namespace`/`key` of the matched route's metadata
    /// (`route.metadata.filter_metadata`).
    pub fn route_metadata(&self, namespace: &str, key: &str) -> Option<&[u8]> {
        let mut value = EnvoyBuffer::NULL;
        // SAFETY: stream pointer as above; namespace and key lent for the call.
        let found = unsafe {
            envoy_dynamic_module_callback_http_get_metadata_string(
                self.ptr,
                METADATA_SOURCE_ROUTE,
                ModuleBuffer::new(namespace.as_bytes()),
                ModuleBuffer::new(key.as_bytes()),
                &mut value,
            )
        };
        if !found {
            return None;
        }
        // SAFETY: valid until the hook ends (we never set metadata); borrows `self`.
        unsafe { value.bytes() }
    }

    /// Resumes a request this filter stopped.
    pub fn continue_request(&mut self) {
        // SAFETY: stream pointer as above.
        unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(self.ptr) }
    }

    /// A scheduler that brings work from any thread back to this stream's worker
    /// ([`HttpStreamFilter::on_scheduled`](super::HttpStreamFilter::on_scheduled)).
    pub fn scheduler(&mut self) -> Option<StreamScheduler> {
        // SAFETY: stream pointer as above; the module owns the returned object.
        let ptr = unsafe { envoy_dynamic_module_callback_http_filter_scheduler_new(self.ptr) };
        (!ptr.is_null()).then_some(StreamScheduler { ptr })
    }

    /// Sends a one-shot HTTP request to `cluster` (headers must include `:method`, `:path`,
    /// `host`); the answer comes to
    /// [`HttpStreamFilter::on_callout_done`](super::HttpStreamFilter::on_callout_done) with the
    /// returned id.
    pub fn callout(
        &mut self,
        cluster: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, CalloutInitError> {
        let mut raw = module_headers(headers);
        let mut id = 0u64;
        // SAFETY: stream pointer as above; headers, cluster and body are lent and copied; `id`
        // is a valid out-pointer.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_http_callout(
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

    /// Adds `value` to a counter defined on this stream's configuration. False if Envoy
    /// refused (an id of another configuration).
    pub fn increment_counter(&mut self, counter: CounterId, value: u64) -> bool {
        // SAFETY: stream pointer as above; no labels (null, 0), as defined.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_increment_counter(
                self.ptr,
                counter.0,
                std::ptr::null_mut(),
                0,
                value,
            )
        };
        result == METRICS_SUCCESS
    }

    /// Sets a gauge defined on this stream's configuration.
    pub fn set_gauge(&mut self, gauge: GaugeId, value: u64) -> bool {
        // SAFETY: as in `increment_counter`.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_set_gauge(
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

/// Hands events from any thread back to one stream's worker thread. Dropping it frees Envoy's
/// scheduler; an event committed after the stream ended is dropped by Envoy.
pub struct StreamScheduler {
    ptr: EnvoyPtr,
}

// SAFETY: Envoy's scheduler holds a weak reference to the stream and the worker's dispatcher;
// `commit` only posts to that dispatcher (thread-safe) and `delete` frees the object, which
// `Drop` does once, with no commit running (it needs `&mut self`).
unsafe impl Send for StreamScheduler {}
// SAFETY: concurrent `commit`s each post to the dispatcher, which is thread-safe.
unsafe impl Sync for StreamScheduler {}

impl StreamScheduler {
    /// Posts `event_id` to the stream's worker thread.
    pub fn commit(&self, event_id: u64) {
        // SAFETY: `ptr` came from `scheduler_new` and is freed only by `Drop`.
        unsafe { envoy_dynamic_module_callback_http_filter_scheduler_commit(self.ptr, event_id) }
    }
}

impl Drop for StreamScheduler {
    fn drop(&mut self) {
        // SAFETY: freed exactly once, here.
        unsafe { envoy_dynamic_module_callback_http_filter_scheduler_delete(self.ptr) }
    }
}

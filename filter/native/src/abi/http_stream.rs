//! One HTTP stream: request and response headers, a local reply, attributes, route metadata,
//! resuming, a scheduler, callouts and streams to a cluster, metrics.
//!
//! A [`StreamRef`] names a stream from `filter_new` to `destroy` and makes calls on it from any
//! hook that runs on its worker thread: its own hooks, and (for a worker deciding the requests
//! it parked) another stream's. It is neither `Send` nor `Sync` (Envoy's pointer is only valid
//! on that thread), and once Envoy destroyed the stream every call is a no-op answering "not
//! available", so a handle kept past the stream's end touches nothing. Values read from Envoy
//! are copied at once: Envoy's buffers stay valid only until a setter runs, and a setter may be
//! called through another handle of the same stream.
//!
//! An [`HttpStream`] is what a hook lends the module: the stream's handle for the hook's
//! duration (it derefs to [`StreamRef`]).

use std::cell::Cell;
use std::marker::PhantomData;
use std::ops::Deref;
use std::rc::Rc;

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

/// What the module knows of a stream's life, shared by its slot and its handles.
pub(super) struct StreamLife {
    /// Envoy's `filter_envoy_ptr`, valid until `destroy`.
    ptr: EnvoyPtr,
    /// A number of the module's own for the stream (unique in the process), to tell its
    /// requests to a cluster from another stream's.
    serial: u64,
    /// Cleared when Envoy destroys the stream: every call through a handle stops then.
    alive: Cell<bool>,
    /// Set once a local reply was sent, so that the panic guard never sends a second one.
    replied: Cell<bool>,
}

impl StreamLife {
    pub(super) fn new(ptr: EnvoyPtr, serial: u64) -> Rc<StreamLife> {
        Rc::new(StreamLife {
            ptr,
            serial,
            alive: Cell::new(true),
            replied: Cell::new(false),
        })
    }

    /// Envoy destroyed the stream.
    pub(super) fn end(&self) {
        self.alive.set(false);
    }
}

/// A stream, for calls from any hook on its worker thread while it lives (see the module
/// docs).
#[derive(Clone)]
pub struct StreamRef {
    life: Rc<StreamLife>,
}

impl StreamRef {
    pub(super) fn new(life: Rc<StreamLife>) -> StreamRef {
        StreamRef { life }
    }

    /// Envoy's pointer, while the stream lives.
    fn ptr(&self) -> Option<EnvoyPtr> {
        self.life.alive.get().then_some(self.life.ptr)
    }

    /// The module's number for this stream (see `outbound`).
    pub fn serial(&self) -> u64 {
        self.life.serial
    }

    /// Whether Envoy still has the stream.
    pub fn is_alive(&self) -> bool {
        self.life.alive.get()
    }

    /// The first value of header `name` (lower case), copied.
    pub fn header(&self, map: HeaderMap, name: &str) -> Option<Vec<u8>> {
        self.header_at(map, name, 0).0
    }

    /// Every value of header `name`, in order, copied.
    pub fn header_values(&self, map: HeaderMap, name: &str) -> Vec<Vec<u8>> {
        let (first, count) = self.header_at(map, name, 0);
        let mut values: Vec<Vec<u8>> = first.into_iter().collect();
        for index in 1..count {
            if let (Some(value), _) = self.header_at(map, name, index) {
                values.push(value);
            }
        }
        values
    }

    fn header_at(&self, map: HeaderMap, name: &str, index: usize) -> (Option<Vec<u8>>, usize) {
        let Some(ptr) = self.ptr() else {
            return (None, 0);
        };
        let mut value = EnvoyBuffer::NULL;
        let mut count = 0usize;
        // SAFETY: `ptr` is a live stream of this thread (the handle is not `Send`, `alive` is
        // cleared at `destroy`); the key is lent for the call; both out-pointers are locals.
        let found = unsafe {
            envoy_dynamic_module_callback_http_get_header(
                ptr,
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
        // SAFETY: Envoy's buffer is valid until the next setter on the stream; copied now.
        (unsafe { value.bytes() }.map(<[u8]>::to_vec), count)
    }

    /// Replaces header `name` with `value`. False if the map is not available (or the stream
    /// is gone).
    pub fn set_header(&self, map: HeaderMap, name: &str, value: &[u8]) -> bool {
        let Some(ptr) = self.ptr() else {
            return false;
        };
        // SAFETY: as in `header_at`; key and value are lent for the call and copied.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                ptr,
                map.raw(),
                ModuleBuffer::new(name.as_bytes()),
                ModuleBuffer::new(value),
            )
        }
    }

    /// Removes every value of header `name` (a null value). False if the map is not available.
    pub fn remove_header(&self, map: HeaderMap, name: &str) -> bool {
        let Some(ptr) = self.ptr() else {
            return false;
        };
        // SAFETY: as in `set_header`; a null value buffer means removal.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                ptr,
                map.raw(),
                ModuleBuffer::new(name.as_bytes()),
                ModuleBuffer::NULL,
            )
        }
    }

    /// Answers the request locally with `status`, `headers` and `body`; `details` is Envoy's
    /// response-code details (access logs: `%RESPONSE_CODE_DETAILS%`). From the request's own
    /// headers hook, that hook then returns
    /// [`HeadersStatus::StopIteration`](super::HeadersStatus). False if the stream is gone.
    pub fn send_response(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
        details: &str,
    ) -> bool {
        let Some(ptr) = self.ptr() else {
            return false;
        };
        let mut raw: Vec<ModuleHttpHeader<'_>> = headers
            .iter()
            .map(|(name, value)| ModuleHttpHeader::new(name.as_bytes(), value.as_bytes()))
            .collect();
        self.life.replied.set(true);
        // SAFETY: as in `header_at`; the header array, body and details are lent for the call
        // (Envoy copies them); `raw.len()` is the array's length. Envoy may destroy the stream
        // inside the call: `alive` is cleared then and nothing here touches it again.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                ptr,
                status,
                raw.as_mut_ptr(),
                raw.len(),
                ModuleBuffer::new(body),
                ModuleBuffer::new(details.as_bytes()),
            )
        };
        true
    }

    /// Whether a local reply was sent on this stream.
    pub fn replied(&self) -> bool {
        self.life.replied.get()
    }

    /// A string attribute of the stream, copied out of Envoy.
    pub fn attribute(&self, attribute: Attribute) -> Option<Vec<u8>> {
        let ptr = self.ptr()?;
        let mut value = EnvoyBuffer::NULL;
        // SAFETY: as in `header_at`; `value` is a valid out-pointer.
        let found = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_string(
                ptr,
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

    /// An integer attribute of the stream (`request.size`, `response.size`...).
    pub fn attribute_int(&self, attribute: Attribute) -> Option<u64> {
        let ptr = self.ptr()?;
        let mut value = 0u64;
        // SAFETY: as in `header_at`; `value` is a valid out-pointer.
        let found = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_int(
                ptr,
                attribute as u32,
                &mut value,
            )
        };
        found.then_some(value)
    }

    /// The string at `namespace`/`key` of the matched route's metadata
    /// (`route.metadata.filter_metadata`), copied.
    pub fn route_metadata(&self, namespace: &str, key: &str) -> Option<Vec<u8>> {
        let ptr = self.ptr()?;
        let mut value = EnvoyBuffer::NULL;
        // SAFETY: as in `header_at`; namespace and key lent for the call.
        let found = unsafe {
            envoy_dynamic_module_callback_http_get_metadata_string(
                ptr,
                METADATA_SOURCE_ROUTE,
                ModuleBuffer::new(namespace.as_bytes()),
                ModuleBuffer::new(key.as_bytes()),
                &mut value,
            )
        };
        if !found {
            return None;
        }
        // SAFETY: valid until the hook ends or a metadata setter runs; copied now.
        unsafe { value.bytes() }.map(<[u8]>::to_vec)
    }

    /// Resumes a request this filter stopped. False if the stream is gone.
    pub fn continue_request(&self) -> bool {
        let Some(ptr) = self.ptr() else {
            return false;
        };
        // SAFETY: as in `header_at`.
        unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(ptr) };
        true
    }

    /// A scheduler that brings work from any thread back to this stream's worker
    /// ([`HttpStreamFilter::on_scheduled`](super::HttpStreamFilter::on_scheduled)).
    pub fn scheduler(&self) -> Option<StreamScheduler> {
        let stream = self.ptr()?;
        // SAFETY: as in `header_at`; the module owns the returned object.
        let ptr = unsafe { envoy_dynamic_module_callback_http_filter_scheduler_new(stream) };
        (!ptr.is_null()).then_some(StreamScheduler { ptr })
    }

    /// Sends a one-shot HTTP request to `cluster` (headers must include `:method`, `:path`,
    /// `host`); the answer comes to
    /// [`HttpStreamFilter::on_callout_done`](super::HttpStreamFilter::on_callout_done) with the
    /// returned id.
    pub fn callout(
        &self,
        cluster: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, CalloutInitError> {
        let ptr = self.ptr().ok_or(CalloutInitError::CannotCreateRequest)?;
        let mut raw = module_headers(headers);
        let mut id = 0u64;
        // SAFETY: as in `header_at`; headers, cluster and body are lent and copied; `id` is a
        // valid out-pointer.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_http_callout(
                ptr,
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

    /// Opens a streaming request to `cluster` tied to this stream and sends `body` (with
    /// `end_stream`, the request is complete). Its events come to the `on_http_stream_*`
    /// methods of [`HttpStreamFilter`](super::HttpStreamFilter), possibly a reset before this
    /// returns (hold no borrow across it). `timeout_ms` 0: none. Envoy resets it when the
    /// stream ends, and says nothing to the module then.
    pub fn start_stream(
        &self,
        cluster: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
        end_stream: bool,
        timeout_ms: u64,
    ) -> Result<u64, CalloutInitError> {
        let ptr = self.ptr().ok_or(CalloutInitError::CannotCreateRequest)?;
        let mut raw = module_headers(headers);
        let mut id = 0u64;
        // SAFETY: as in `callout`.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_start_http_stream(
                ptr,
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

    /// Resets a streaming request of this stream (its reset event follows, if Envoy has one
    /// to give).
    pub fn reset_stream(&self, stream_id: u64) {
        if let Some(ptr) = self.ptr() {
            // SAFETY: as in `header_at`.
            unsafe { envoy_dynamic_module_callback_http_filter_reset_http_stream(ptr, stream_id) }
        }
    }

    /// Adds `value` to a counter defined on this stream's configuration. False if Envoy
    /// refused (an id of another configuration).
    pub fn increment_counter(&self, counter: CounterId, value: u64) -> bool {
        let Some(ptr) = self.ptr() else {
            return false;
        };
        // SAFETY: as in `header_at`; no labels (null, 0), as defined.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_increment_counter(
                ptr,
                counter.0,
                std::ptr::null_mut(),
                0,
                value,
            )
        };
        result == METRICS_SUCCESS
    }

    /// Sets a gauge defined on this stream's configuration.
    pub fn set_gauge(&self, gauge: GaugeId, value: u64) -> bool {
        let Some(ptr) = self.ptr() else {
            return false;
        };
        // SAFETY: as in `increment_counter`.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_set_gauge(
                ptr,
                gauge.0,
                std::ptr::null_mut(),
                0,
                value,
            )
        };
        result == METRICS_SUCCESS
    }
}

/// The stream as a hook lends it to the module, for that hook only.
pub struct HttpStream<'h> {
    stream: StreamRef,
    _hook: PhantomData<&'h mut ()>,
}

impl HttpStream<'_> {
    pub(super) fn new(life: &Rc<StreamLife>) -> Self {
        HttpStream {
            stream: StreamRef::new(Rc::clone(life)),
            _hook: PhantomData,
        }
    }

    /// A handle that outlives the hook (see [`StreamRef`]).
    pub fn reference(&self) -> StreamRef {
        self.stream.clone()
    }
}

impl Deref for HttpStream<'_> {
    type Target = StreamRef;

    fn deref(&self) -> &StreamRef {
        &self.stream
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

//! The HTTP filter hooks the module exports (`envoy_dynamic_module_on_http_filter_*`). Envoy
//! 1.40 looks them up when it loads an HTTP filter configuration and refuses it when a
//! required one is missing (seen for `config_destroy`), so all 30 it knows are here, the
//! same names as in the 1.40.0 binary, even those the filter does not use.
//!
//! Each hook turns Envoy's pointers into the safe handles and calls the module inside the
//! panic guard. A panic never crosses back into Envoy: on a request's path it becomes the
//! contract's 500 for that request (unless a reply was already sent) and the stream's filter
//! is dropped from then on; elsewhere it is logged and the hook returns its neutral answer.
//!
//! Objects handed to Envoy: an HTTP filter configuration is a `Box<ConfigSlot>` (freed in
//! `config_destroy`), a stream's filter a `Box<StreamSlot>` (freed in `destroy`). Envoy may
//! call a hook of a stream from inside a callback the module made on that stream (a local
//! reply completing the stream at once); the slot is then busy, the inner hook does not reach
//! the module, and a `destroy` arriving that way is carried out when the outer hook returns.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::filter_config::FilterConfigHandle;
use super::http_stream::{HttpStream, StreamLife, StreamRef};
use super::log::log;
use super::module::{CalloutResponse, HttpFilterConfig, HttpStreamFilter};
use super::outbound;
use super::types::{
    CalloutResult, EnvoyBuffer, EnvoyHttpHeader, EnvoyPtr, HeadersStatus, LogLevel, ModulePtr,
    StreamResetReason, BODY_CONTINUE, LOCAL_REPLY_CONTINUE, TRAILERS_CONTINUE,
};
use crate::panic_guard::{self, Panicked};

/// What the module's pointer to an HTTP filter configuration points at.
struct ConfigSlot {
    config: Box<dyn HttpFilterConfig>,
    /// The module's number for it (see `outbound`).
    serial: u64,
}

/// The module's numbers for configurations and streams, unique in the process.
static SERIALS: AtomicU64 = AtomicU64::new(1);

fn next_serial() -> u64 {
    SERIALS.fetch_add(1, Ordering::Relaxed)
}

/// What the module's pointer to a stream's filter points at.
struct StreamSlot {
    /// `None` once the filter panicked (or could not be made): the stream is not handed to
    /// the module again.
    filter: RefCell<Option<Box<dyn HttpStreamFilter>>>,
    /// Envoy's pointer, the stream's serial, whether it lives and whether it was answered.
    life: Rc<StreamLife>,
    /// A hook of this stream is running (see the module docs).
    busy: Cell<bool>,
    /// Envoy destroyed the stream while a hook was running.
    destroy_pending: Cell<bool>,
}

/// # Safety
/// `ptr` must be a `ConfigSlot` this module returned from `config_new` and Envoy has not yet
/// destroyed (Envoy only passes such pointers).
unsafe fn config_slot<'a>(ptr: ModulePtr) -> Option<&'a ConfigSlot> {
    // SAFETY: by the caller's promise the pointer is a live `ConfigSlot` or null.
    unsafe { ptr.cast::<ConfigSlot>().as_ref() }
}

/// # Safety
/// `ptr` must be a `StreamSlot` this module returned from `filter_new` and not yet freed.
unsafe fn stream_slot<'a>(ptr: ModulePtr) -> Option<&'a StreamSlot> {
    // SAFETY: as in `config_slot`.
    unsafe { ptr.cast::<StreamSlot>().as_ref() }
}

/// # Safety
/// The buffer must be valid for the running hook (Envoy's hook arguments are).
unsafe fn hook_bytes<'a>(buffer: EnvoyBuffer) -> &'a [u8] {
    // SAFETY: by the caller's promise.
    unsafe { buffer.bytes() }.unwrap_or_default()
}

/// Envoy's header array of a hook as borrowed pairs.
///
/// # Safety
/// `headers` must point to `count` headers (or be null) valid for the running hook.
unsafe fn hook_headers<'a>(
    headers: *const EnvoyHttpHeader,
    count: usize,
) -> Vec<(&'a [u8], &'a [u8])> {
    if headers.is_null() {
        return Vec::new();
    }
    // SAFETY: non-null and `count` long, by the caller's promise.
    let raw = unsafe { std::slice::from_raw_parts(headers, count) };
    raw.iter()
        // SAFETY: each header's buffers are valid for the hook.
        .map(|header| unsafe { (hook_bytes(header.key), hook_bytes(header.value)) })
        .collect()
}

/// Envoy's body chunks of a hook as borrowed slices.
///
/// # Safety
/// `chunks` must point to `count` buffers (or be null) valid for the running hook.
unsafe fn hook_chunks<'a>(chunks: *const EnvoyBuffer, count: usize) -> Vec<&'a [u8]> {
    if chunks.is_null() {
        return Vec::new();
    }
    // SAFETY: non-null and `count` long, by the caller's promise.
    let raw = unsafe { std::slice::from_raw_parts(chunks, count) };
    // SAFETY: each chunk is valid for the hook.
    raw.iter()
        .map(|chunk| unsafe { hook_bytes(*chunk) })
        .collect()
}

fn log_panic(hook: &str, panicked: &Panicked, consequence: &str) {
    log(
        LogLevel::Error,
        &format!("keysync native filter: a panic in {hook} ({panicked}); {consequence}"),
    );
}

// ------------------------------------------------------------------ configuration

/// Main thread, when Envoy loads a `DynamicModuleFilter` configuration. `name` and `config`
/// are Envoy's, valid for the call. A null return refuses the configuration.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy_ptr: EnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ModulePtr {
    // SAFETY: hook arguments, valid for the call.
    let (name, settings) = unsafe { (hook_bytes(name), hook_bytes(config)) };
    let serial = next_serial();
    let made = panic_guard::run(|| {
        let mut handle = FilterConfigHandle::new(config_envoy_ptr, serial);
        crate::MODULE.new_http_filter_config(&mut handle, name, settings)
    });
    match made {
        Ok(Some(config)) => {
            outbound::config_created(serial, config_envoy_ptr);
            Box::into_raw(Box::new(ConfigSlot { config, serial })) as ModulePtr
        }
        Ok(None) => std::ptr::null(),
        Err(panicked) => {
            log_panic("http_filter_config_new", &panicked, "configuration refused");
            std::ptr::null()
        }
    }
}

/// Main thread, when Envoy drops the configuration (after every stream made from it).
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config_ptr: ModulePtr) {
    if config_ptr.is_null() {
        return;
    }
    // SAFETY: a `ConfigSlot` from `config_new`, destroyed exactly once, here.
    let slot = unsafe { Box::from_raw(config_ptr.cast::<ConfigSlot>().cast_mut()) };
    outbound::config_destroyed(slot.serial);
    if let Err(panicked) = panic_guard::run(move || drop(slot)) {
        log_panic(
            "http_filter_config_destroy",
            &panicked,
            "configuration dropped",
        );
    }
}

/// Main thread, for a per-route `DynamicModuleFilterPerRoute`: not used by keysync (a null
/// return refuses such a configuration, with this line saying why).
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> ModulePtr {
    log(
        LogLevel::Error,
        "keysync native filter: per-route configuration is not supported",
    );
    std::ptr::null()
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(_config_ptr: ModulePtr) {
}

/// Runs `hook` for a configuration's main-thread event; a panic is logged and the event
/// dropped.
fn with_config(
    config_envoy_ptr: EnvoyPtr,
    config_ptr: ModulePtr,
    hook_name: &str,
    hook: impl FnOnce(&dyn HttpFilterConfig, &mut FilterConfigHandle<'_>),
) {
    // SAFETY: a live configuration pointer from Envoy.
    let Some(slot) = (unsafe { config_slot(config_ptr) }) else {
        return;
    };
    let outcome = panic_guard::run(|| {
        let mut handle = FilterConfigHandle::new(config_envoy_ptr, slot.serial);
        hook(slot.config.as_ref(), &mut handle);
    });
    if let Err(panicked) = outcome {
        log_panic(hook_name, &panicked, "event dropped");
    }
}

/// Main thread: an event committed through a `FilterConfigScheduler`.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    config_envoy_ptr: EnvoyPtr,
    config_ptr: ModulePtr,
    event_id: u64,
) {
    with_config(
        config_envoy_ptr,
        config_ptr,
        "http_filter_config_scheduled",
        |config, handle| config.on_scheduled(handle, event_id),
    );
}

/// Main thread: the answer to a configuration's callout. Headers and chunks are Envoy's, valid
/// for the call; null (with size 0) when the callout failed.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    config_envoy_ptr: EnvoyPtr,
    config_ptr: ModulePtr,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) {
    // SAFETY: hook arguments, valid for the call.
    let (headers, chunks) = unsafe {
        (
            hook_headers(headers, headers_size),
            hook_chunks(body_chunks, body_chunks_size),
        )
    };
    let response = CalloutResponse {
        headers: &headers,
        body_chunks: &chunks,
    };
    let result = CalloutResult::from_raw(result);
    with_config(
        config_envoy_ptr,
        config_ptr,
        "http_filter_config_http_callout_done",
        |config, handle| config.on_callout_done(handle, callout_id, result, &response),
    );
}

/// Main thread: response headers of a configuration's stream.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_headers(
    config_envoy_ptr: EnvoyPtr,
    config_ptr: ModulePtr,
    stream_id: u64,
    headers: *const EnvoyHttpHeader,
    headers_size: usize,
    end_stream: bool,
) {
    // SAFETY: hook arguments, valid for the call.
    let headers = unsafe { hook_headers(headers, headers_size) };
    with_config(
        config_envoy_ptr,
        config_ptr,
        "http_filter_config_http_stream_headers",
        |config, handle| config.on_stream_headers(handle, stream_id, &headers, end_stream),
    );
}

/// Main thread: a chunk of a configuration's stream's response body.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_data(
    config_envoy_ptr: EnvoyPtr,
    config_ptr: ModulePtr,
    stream_id: u64,
    data: *const EnvoyBuffer,
    data_count: usize,
    end_stream: bool,
) {
    // SAFETY: hook arguments, valid for the call.
    let chunks = unsafe { hook_chunks(data, data_count) };
    with_config(
        config_envoy_ptr,
        config_ptr,
        "http_filter_config_http_stream_data",
        |config, handle| config.on_stream_data(handle, stream_id, &chunks, end_stream),
    );
}

/// Main thread: trailers of a configuration's stream (gRPC status lives there).
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_trailers(
    config_envoy_ptr: EnvoyPtr,
    config_ptr: ModulePtr,
    stream_id: u64,
    trailers: *const EnvoyHttpHeader,
    trailers_size: usize,
) {
    // SAFETY: hook arguments, valid for the call.
    let trailers = unsafe { hook_headers(trailers, trailers_size) };
    with_config(
        config_envoy_ptr,
        config_ptr,
        "http_filter_config_http_stream_trailers",
        |config, handle| config.on_stream_trailers(handle, stream_id, &trailers),
    );
}

/// Main thread: a configuration's stream ended well; its id is invalid afterwards.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_complete(
    config_envoy_ptr: EnvoyPtr,
    config_ptr: ModulePtr,
    stream_id: u64,
) {
    with_config(
        config_envoy_ptr,
        config_ptr,
        "http_filter_config_http_stream_complete",
        |config, handle| config.on_stream_complete(handle, stream_id),
    );
}

/// Main thread: a configuration's stream failed or was reset; its id is invalid afterwards.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_reset(
    config_envoy_ptr: EnvoyPtr,
    config_ptr: ModulePtr,
    stream_id: u64,
    reason: u32,
) {
    let reason = StreamResetReason::from_raw(reason);
    with_config(
        config_envoy_ptr,
        config_ptr,
        "http_filter_config_http_stream_reset",
        |config, handle| config.on_stream_reset(handle, stream_id, reason),
    );
}

// ------------------------------------------------------------------ streams

/// Worker thread, for each new HTTP stream. A null return would make Envoy close the stream,
/// so a filter that cannot be made (a panic) becomes an empty slot answering 500.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config_ptr: ModulePtr,
    filter_envoy_ptr: EnvoyPtr,
) -> ModulePtr {
    let slot = Box::new(StreamSlot {
        filter: RefCell::new(None),
        life: StreamLife::new(filter_envoy_ptr, next_serial()),
        busy: Cell::new(false),
        destroy_pending: Cell::new(false),
    });
    // SAFETY: a live configuration pointer from Envoy.
    if let Some(config) = unsafe { config_slot(config_ptr) } {
        let made = panic_guard::run(|| {
            let mut stream = HttpStream::new(&slot.life);
            config.config.new_stream(&mut stream)
        });
        match made {
            Ok(filter) => *slot.filter.borrow_mut() = Some(filter),
            Err(panicked) => log_panic("http_filter_new", &panicked, "the request gets a 500"),
        }
    }
    Box::into_raw(slot) as ModulePtr
}

/// Runs `hook` with the stream's filter, unless the slot is busy (a re-entered hook) or the
/// filter is gone. A panic drops the filter and, if `reply_on_panic` and nothing was sent yet,
/// answers the request with the contract's 500. Returns `None` when the module was not
/// reached (or panicked). While it runs, the stream is the origin of requests to a cluster
/// (`outbound`). Envoy passes the stream's own `filter_envoy_ptr` to every hook; the slot
/// keeps it from `filter_new`.
fn with_filter<R>(
    filter_ptr: ModulePtr,
    hook_name: &str,
    reply_on_panic: bool,
    hook: impl FnOnce(&mut dyn HttpStreamFilter, &mut HttpStream<'_>) -> R,
) -> Option<R> {
    // SAFETY: a live stream slot from `filter_new` (freed only by `destroy`, and never while
    // `busy`, see below).
    let slot = unsafe { stream_slot(filter_ptr) }?;
    if slot.busy.replace(true) {
        return None;
    }
    let result = {
        let mut stream = HttpStream::new(&slot.life);
        let _running = outbound::enter_stream(StreamRef::new(Rc::clone(&slot.life)));
        let outcome = {
            let mut filter = slot.filter.borrow_mut();
            filter
                .as_deref_mut()
                .map(|filter| panic_guard::run(|| hook(filter, &mut stream)))
        };
        match outcome {
            Some(Ok(result)) => Some(result),
            Some(Err(panicked)) => {
                drop(panic_guard::run(|| slot.filter.borrow_mut().take()));
                let consequence = if reply_on_panic && !stream.replied() {
                    reply_internal_error(&stream);
                    "answered 500"
                } else {
                    "filter dropped"
                };
                log_panic(hook_name, &panicked, consequence);
                None
            }
            None => {
                // No filter (it panicked before or could not be made): a request still
                // waiting for an answer gets the 500.
                if reply_on_panic && !stream.replied() && stream.is_alive() {
                    reply_internal_error(&stream);
                }
                None
            }
        }
    };
    slot.busy.set(false);
    if slot.destroy_pending.get() {
        // SAFETY: Envoy destroyed the stream during the hook; nothing refers to the slot now.
        free_stream_slot(filter_ptr);
    }
    result
}

fn reply_internal_error(stream: &HttpStream<'_>) {
    let reply = keysync_contract::reply::internal_error();
    stream.send_response(
        reply.status,
        reply.headers,
        reply.body,
        "keysync_internal_error",
    );
}

fn free_stream_slot(filter_ptr: ModulePtr) {
    // SAFETY: `filter_ptr` is a `StreamSlot` from `filter_new`, freed exactly once: by
    // `destroy`, or by the hook that was running when `destroy` came.
    let slot = unsafe { Box::from_raw(filter_ptr.cast::<StreamSlot>().cast_mut()) };
    if let Err(panicked) = panic_guard::run(move || drop(slot)) {
        log_panic("http_filter_destroy", &panicked, "filter dropped");
    }
}

/// Worker thread: the request headers arrived.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    _filter_envoy_ptr: EnvoyPtr,
    filter_ptr: ModulePtr,
    end_of_stream: bool,
) -> u32 {
    with_filter(
        filter_ptr,
        "http_filter_request_headers",
        true,
        |filter, stream| filter.on_request_headers(stream, end_of_stream),
    )
    .unwrap_or(HeadersStatus::StopIteration) as u32
}

/// Worker thread: the response headers arrived.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    _filter_envoy_ptr: EnvoyPtr,
    filter_ptr: ModulePtr,
    end_of_stream: bool,
) -> u32 {
    with_filter(
        filter_ptr,
        "http_filter_response_headers",
        false,
        |filter, stream| filter.on_response_headers(stream, end_of_stream),
    )
    .unwrap_or(HeadersStatus::Continue) as u32
}

/// Worker thread: an event committed through this stream's scheduler.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _filter_envoy_ptr: EnvoyPtr,
    filter_ptr: ModulePtr,
    event_id: u64,
) {
    with_filter(
        filter_ptr,
        "http_filter_scheduled",
        true,
        |filter, stream| filter.on_scheduled(stream, event_id),
    );
}

/// Worker thread: the answer to this stream's callout (Envoy's buffers, valid for the call).
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _filter_envoy_ptr: EnvoyPtr,
    filter_ptr: ModulePtr,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) {
    // SAFETY: hook arguments, valid for the call.
    let (headers, chunks) = unsafe {
        (
            hook_headers(headers, headers_size),
            hook_chunks(body_chunks, body_chunks_size),
        )
    };
    let response = CalloutResponse {
        headers: &headers,
        body_chunks: &chunks,
    };
    with_filter(
        filter_ptr,
        "http_filter_http_callout_done",
        true,
        |filter, stream| {
            filter.on_callout_done(
                stream,
                callout_id,
                CalloutResult::from_raw(result),
                &response,
            )
        },
    );
}

/// Worker thread: the stream is over, before access logs are flushed.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _filter_envoy_ptr: EnvoyPtr,
    filter_ptr: ModulePtr,
) {
    with_filter(
        filter_ptr,
        "http_filter_stream_complete",
        false,
        |filter, stream| filter.on_stream_complete(stream),
    );
}

/// Worker thread: Envoy is done with the stream; the slot is freed (later, if a hook of this
/// stream is running).
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter_ptr: ModulePtr) {
    // SAFETY: a live stream slot from `filter_new`.
    let Some(slot) = (unsafe { stream_slot(filter_ptr) }) else {
        return;
    };
    // Envoy is done with the stream: no call may use its pointer from now on.
    slot.life.end();
    if slot.busy.get() {
        slot.destroy_pending.set(true);
        return;
    }
    free_stream_slot(filter_ptr);
}

// Hooks keysync does not use: the neutral answer, without reaching the module.

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _filter_envoy_ptr: EnvoyPtr,
    _filter_ptr: ModulePtr,
    _end_of_stream: bool,
) -> u32 {
    BODY_CONTINUE
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _filter_envoy_ptr: EnvoyPtr,
    _filter_ptr: ModulePtr,
) -> u32 {
    TRAILERS_CONTINUE
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _filter_envoy_ptr: EnvoyPtr,
    _filter_ptr: ModulePtr,
    _end_of_stream: bool,
) -> u32 {
    BODY_CONTINUE
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter_envoy_ptr: EnvoyPtr,
    _filter_ptr: ModulePtr,
) -> u32 {
    TRAILERS_CONTINUE
}

/// Called synchronously inside any local reply on the stream (ours included): let it go out.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _filter_envoy_ptr: EnvoyPtr,
    _filter_ptr: ModulePtr,
    _response_code: u32,
    _details: EnvoyBuffer,
    _reset_imminent: bool,
) -> u32 {
    LOCAL_REPLY_CONTINUE
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter_envoy_ptr: EnvoyPtr,
    _filter_ptr: ModulePtr,
) {
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter_envoy_ptr: EnvoyPtr,
    _filter_ptr: ModulePtr,
) {
}

// A stream's own streaming requests (`http_filter_start_http_stream`): their events, on the
// stream's worker thread. Envoy stops sending them once the stream is destroyed. A panic
// answers the request 500 (a request waiting for keysync is on its path).

/// Worker thread: response headers of a stream's streaming request.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy_ptr: EnvoyPtr,
    filter_ptr: ModulePtr,
    stream_id: u64,
    headers: *const EnvoyHttpHeader,
    headers_size: usize,
    end_stream: bool,
) {
    // SAFETY: hook arguments, valid for the call.
    let headers = unsafe { hook_headers(headers, headers_size) };
    with_filter(
        filter_ptr,
        "http_filter_http_stream_headers",
        true,
        |filter, stream| filter.on_http_stream_headers(stream, stream_id, &headers, end_stream),
    );
}

/// Worker thread: a chunk of a stream's streaming request's response body.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy_ptr: EnvoyPtr,
    filter_ptr: ModulePtr,
    stream_id: u64,
    data: *const EnvoyBuffer,
    data_count: usize,
    end_stream: bool,
) {
    // SAFETY: hook arguments, valid for the call.
    let chunks = unsafe { hook_chunks(data, data_count) };
    with_filter(
        filter_ptr,
        "http_filter_http_stream_data",
        true,
        |filter, stream| filter.on_http_stream_data(stream, stream_id, &chunks, end_stream),
    );
}

/// Worker thread: trailers of a stream's streaming request (gRPC status lives there).
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy_ptr: EnvoyPtr,
    filter_ptr: ModulePtr,
    stream_id: u64,
    trailers: *const EnvoyHttpHeader,
    trailers_size: usize,
) {
    // SAFETY: hook arguments, valid for the call.
    let trailers = unsafe { hook_headers(trailers, trailers_size) };
    with_filter(
        filter_ptr,
        "http_filter_http_stream_trailers",
        true,
        |filter, stream| filter.on_http_stream_trailers(stream, stream_id, &trailers),
    );
}

/// Worker thread: a stream's streaming request ended well; its id is invalid afterwards.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter_envoy_ptr: EnvoyPtr,
    filter_ptr: ModulePtr,
    stream_id: u64,
) {
    with_filter(
        filter_ptr,
        "http_filter_http_stream_complete",
        true,
        |filter, stream| filter.on_http_stream_complete(stream, stream_id),
    );
}

/// Worker thread: a stream's streaming request failed or was reset (Envoy 1.40 reports every
/// reset as `LocalReset`); its id is invalid afterwards.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy_ptr: EnvoyPtr,
    filter_ptr: ModulePtr,
    stream_id: u64,
    reason: u32,
) {
    let reason = StreamResetReason::from_raw(reason);
    with_filter(
        filter_ptr,
        "http_filter_http_stream_reset",
        true,
        |filter, stream| filter.on_http_stream_reset(stream, stream_id, reason),
    );
}

//! The callbacks Envoy exports to modules (`envoy_dynamic_module_callback_*`), declared by hand
//! from `abi.h`: only the ones the filter uses. Every one of them is undefined in the `.so` and
//! resolved by the dynamic linker against the Envoy binary; `e2e/tests/native_abi.rs` checks
//! that Envoy 1.40.0 exports each name. Nothing checks a signature: each line below was read
//! off the header (see the module docs of `abi` for the version), parameter by parameter.
//!
//! Pointer conventions of the whole ABI: a `ModuleBuffer` or `ModuleHttpHeader` is the
//! module's memory lent for the duration of the call (Envoy copies what it keeps); an
//! `EnvoyBuffer` written to an out-parameter is Envoy's memory, valid as stated per call; a
//! `filter_envoy_ptr` is valid from `on_http_filter_new` to `on_http_filter_destroy` and only
//! on that stream's worker thread; a `filter_config_envoy_ptr` (and a bootstrap
//! `extension_config_envoy_ptr`) from its `..._config_new` to its `..._config_destroy`, used on
//! the main thread.

use super::types::{EnvoyBuffer, EnvoyPtr, ModuleBuffer, ModuleHttpHeader};

unsafe extern "C" {
    // ---------------------------------------------------------------- logging (any thread)

    /// Logs `message` (copied) under Envoy's `dynamic_modules` logger at `level`
    /// (`envoy_dynamic_module_type_log_level`).
    pub(super) fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer<'_>);

    /// Whether `level` is enabled for that logger: lets the module skip formatting.
    pub(super) fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;

    // ------------------------------------------------- an HTTP stream (its worker thread)

    /// The `index`-th value of header `key` in map `header_type` (0 request headers, 1 request
    /// trailers, 2 response headers, 3 response trailers). Writes the value to `result` (a null
    /// buffer if absent) and, unless `optional_size` is null, the number of values of `key`.
    /// Returns false if the map is not available. The value is Envoy's: valid until the end of
    /// the current hook or the next header setter call, whichever comes first.
    pub(super) fn envoy_dynamic_module_callback_http_get_header(
        filter_envoy_ptr: EnvoyPtr,
        header_type: u32,
        key: ModuleBuffer<'_>,
        result: *mut EnvoyBuffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;

    /// Replaces every value of header `key` with `value`; a null `value.ptr` removes the
    /// header. Both are copied. Returns false if the map is not available.
    pub(super) fn envoy_dynamic_module_callback_http_set_header(
        filter_envoy_ptr: EnvoyPtr,
        header_type: u32,
        key: ModuleBuffer<'_>,
        value: ModuleBuffer<'_>,
    ) -> bool;

    /// Sends a local reply downstream (Envoy's `sendLocalReply`): status, `headers_vector_size`
    /// headers, body and a response-code-details string (may be empty); all copied. Envoy skips
    /// the module's encode hooks for its own local reply; the module then returns
    /// `StopIteration` from the hook it is in.
    pub(super) fn envoy_dynamic_module_callback_http_send_response(
        filter_envoy_ptr: EnvoyPtr,
        status_code: u32,
        headers_vector: *mut ModuleHttpHeader<'_>,
        headers_vector_size: usize,
        body: ModuleBuffer<'_>,
        details: ModuleBuffer<'_>,
    );

    /// A string attribute (`envoy_dynamic_module_type_attribute_id`) of the stream, written to
    /// `result`; false if absent or not a string. The buffer is Envoy's; its lifetime is not
    /// stated by the header, so the wrapper copies it at once.
    pub(super) fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter_envoy_ptr: EnvoyPtr,
        attribute_id: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;

    /// The string at `ns`/`key` of the metadata of `metadata_source` (1: the route's), written
    /// to `result`; false if absent or not a string. Envoy's buffer, valid until the end of the
    /// current hook (or the next metadata setter call).
    pub(super) fn envoy_dynamic_module_callback_http_get_metadata_string(
        filter_envoy_ptr: EnvoyPtr,
        metadata_source: u32,
        ns: ModuleBuffer<'_>,
        key: ModuleBuffer<'_>,
        result: *mut EnvoyBuffer,
    ) -> bool;

    /// Resumes a request the module stopped (`StopIteration`), on the stream's worker thread.
    pub(super) fn envoy_dynamic_module_callback_http_filter_continue_decoding(
        filter_envoy_ptr: EnvoyPtr,
    );

    /// Creates a scheduler for this stream. The module owns the returned object and must free
    /// it with `http_filter_scheduler_delete`. It holds a weak reference to the stream and the
    /// worker's dispatcher: `commit` may be called from any thread, posts
    /// `on_http_filter_scheduled(event_id)` to the stream's worker, and is a no-op there once
    /// the stream is gone.
    pub(super) fn envoy_dynamic_module_callback_http_filter_scheduler_new(
        filter_envoy_ptr: EnvoyPtr,
    ) -> EnvoyPtr;
    pub(super) fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
        scheduler_module_ptr: EnvoyPtr,
        event_id: u64,
    );
    pub(super) fn envoy_dynamic_module_callback_http_filter_scheduler_delete(
        scheduler_module_ptr: EnvoyPtr,
    );

    /// Starts a one-shot HTTP request to `cluster_name` tied to this stream; `headers` must
    /// hold `:method`, `:path` and `host`. Writes the callout id to `callout_id_out` and returns
    /// an `envoy_dynamic_module_type_http_callout_init_result` (0: started). The answer arrives
    /// in `on_http_filter_http_callout_done` on the stream's worker thread (not at all if the
    /// stream is destroyed first: Envoy cancels it).
    pub(super) fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter_envoy_ptr: EnvoyPtr,
        callout_id_out: *mut u64,
        cluster_name: ModuleBuffer<'_>,
        headers: *mut ModuleHttpHeader<'_>,
        headers_size: usize,
        body: ModuleBuffer<'_>,
        timeout_milliseconds: u64,
    ) -> u32;

    /// Starts a streaming HTTP request to `cluster_name` tied to this stream (a gRPC call is
    /// one: the module frames the messages): `headers` must hold `:method`, `:path` and
    /// `host`; `body` goes out after them with `end_stream` (headers alone carry it when the
    /// body is empty). Writes the stream id to `stream_id_out` and returns an
    /// `envoy_dynamic_module_type_http_callout_init_result` (0: started). Response headers,
    /// data, trailers, then complete or reset arrive in the `on_http_filter_http_stream_*`
    /// hooks on the stream's worker thread; a reset may arrive before this returns. Timeout 0:
    /// none. When the stream is destroyed first, Envoy resets it without telling the module.
    pub(super) fn envoy_dynamic_module_callback_http_filter_start_http_stream(
        filter_envoy_ptr: EnvoyPtr,
        stream_id_out: *mut u64,
        cluster_name: ModuleBuffer<'_>,
        headers: *mut ModuleHttpHeader<'_>,
        headers_size: usize,
        body: ModuleBuffer<'_>,
        end_stream: bool,
        timeout_milliseconds: u64,
    ) -> u32;

    /// Resets a streaming request of this stream; its reset hook follows.
    pub(super) fn envoy_dynamic_module_callback_http_filter_reset_http_stream(
        filter_envoy_ptr: EnvoyPtr,
        stream_id: u64,
    );

    /// An integer attribute (`envoy_dynamic_module_type_attribute_id`) of the stream, written
    /// to `result`; false if absent, not an integer, or one this Envoy does not implement as
    /// an integer (it logs "Unsupported attribute ID").
    pub(super) fn envoy_dynamic_module_callback_http_filter_get_attribute_int(
        filter_envoy_ptr: EnvoyPtr,
        attribute_id: u32,
        result: *mut u64,
    ) -> bool;

    /// Adds `value` to counter `id` (defined on the stream's configuration); the label count
    /// must match the definition (we define none). Returns an
    /// `envoy_dynamic_module_type_metrics_result` (0: success).
    pub(super) fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter_envoy_ptr: EnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer<'_>,
        label_values_length: usize,
        value: u64,
    ) -> u32;

    /// Sets gauge `id` (defined on the stream's configuration) to `value`; as above.
    pub(super) fn envoy_dynamic_module_callback_http_filter_set_gauge(
        filter_envoy_ptr: EnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer<'_>,
        label_values_length: usize,
        value: u64,
    ) -> u32;

    // ----------------------------------- an HTTP filter configuration (the main thread)

    /// Defines a counter named `name` (copied) with `label_names_length` labels on the
    /// configuration; writes its id to `counter_id_ptr`. Called from `config_new`.
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        filter_config_envoy_ptr: EnvoyPtr,
        name: ModuleBuffer<'_>,
        label_names: *mut ModuleBuffer<'_>,
        label_names_length: usize,
        counter_id_ptr: *mut usize,
    ) -> u32;

    /// Defines a gauge, like `define_counter`.
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        filter_config_envoy_ptr: EnvoyPtr,
        name: ModuleBuffer<'_>,
        label_names: *mut ModuleBuffer<'_>,
        label_names_length: usize,
        gauge_id_ptr: *mut usize,
    ) -> u32;

    /// Creates a scheduler for the configuration: owned by the module (free it with
    /// `..._config_scheduler_delete`); `commit` from any thread posts
    /// `on_http_filter_config_scheduled(event_id)` to the main thread.
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        filter_config_envoy_ptr: EnvoyPtr,
    ) -> EnvoyPtr;
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler_module_ptr: EnvoyPtr,
        event_id: u64,
    );
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
        scheduler_module_ptr: EnvoyPtr,
    );

    /// A one-shot HTTP request tied to the configuration (no stream): as
    /// `http_filter_http_callout`; the answer arrives in
    /// `on_http_filter_config_http_callout_done` on the main thread.
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        filter_config_envoy_ptr: EnvoyPtr,
        callout_id_out: *mut u64,
        cluster_name: ModuleBuffer<'_>,
        headers: *mut ModuleHttpHeader<'_>,
        headers_size: usize,
        body: ModuleBuffer<'_>,
        timeout_milliseconds: u64,
    ) -> u32;

    /// Starts a streaming HTTP request tied to the configuration (a gRPC stream is one:
    /// HTTP/2 cluster, `content-type: application/grpc`, length-prefixed messages as data).
    /// `end_stream` false keeps the request open for `..._stream_send_data`; timeout 0 means
    /// none. Writes the stream id to `stream_id_out`. Response headers, data, trailers and then
    /// complete or reset arrive in the `on_http_filter_config_http_stream_*` hooks on the main
    /// thread; after complete or reset the id is invalid.
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_start_http_stream(
        filter_config_envoy_ptr: EnvoyPtr,
        stream_id_out: *mut u64,
        cluster_name: ModuleBuffer<'_>,
        headers: *mut ModuleHttpHeader<'_>,
        headers_size: usize,
        body: ModuleBuffer<'_>,
        end_stream: bool,
        timeout_milliseconds: u64,
    ) -> u32;

    /// Sends request data (copied) on a configuration's open stream; false if it is not open.
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_stream_send_data(
        filter_config_envoy_ptr: EnvoyPtr,
        stream_id: u64,
        data: ModuleBuffer<'_>,
        end_stream: bool,
    ) -> bool;

    /// Resets a configuration's stream; `on_http_filter_config_http_stream_reset` follows.
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_reset_http_stream(
        filter_config_envoy_ptr: EnvoyPtr,
        stream_id: u64,
    );

    // --------------------------- a bootstrap extension configuration (the main thread)

    /// Releases Envoy's init target for this extension: until every bootstrap extension has
    /// called this once, Envoy's init manager holds the listeners (no traffic, `/ready` 503).
    /// Main thread only.
    pub(super) fn envoy_dynamic_module_callback_bootstrap_extension_config_signal_init_complete(
        extension_config_envoy_ptr: EnvoyPtr,
    );

    /// Creates a timer on the main thread's dispatcher (disarmed). Owned by the module: free it
    /// with `..._timer_delete`, on the main thread. Fires
    /// `on_bootstrap_extension_timer_fired` on the main thread.
    pub(super) fn envoy_dynamic_module_callback_bootstrap_extension_timer_new(
        extension_config_envoy_ptr: EnvoyPtr,
    ) -> EnvoyPtr;
    /// Arms (or re-arms) a timer to fire once after `delay_milliseconds`. Main thread only.
    pub(super) fn envoy_dynamic_module_callback_bootstrap_extension_timer_enable(
        timer_ptr: EnvoyPtr,
        delay_milliseconds: u64,
    );
    /// Disarms and frees a timer. Main thread only.
    pub(super) fn envoy_dynamic_module_callback_bootstrap_extension_timer_delete(
        timer_ptr: EnvoyPtr,
    );

    /// A scheduler for the extension configuration: owned by the module; `commit` from any
    /// thread posts `on_bootstrap_extension_config_scheduled(event_id)` to the main thread.
    pub(super) fn envoy_dynamic_module_callback_bootstrap_extension_config_scheduler_new(
        extension_config_envoy_ptr: EnvoyPtr,
    ) -> EnvoyPtr;
    pub(super) fn envoy_dynamic_module_callback_bootstrap_extension_config_scheduler_commit(
        scheduler_module_ptr: EnvoyPtr,
        event_id: u64,
    );
    pub(super) fn envoy_dynamic_module_callback_bootstrap_extension_config_scheduler_delete(
        scheduler_module_ptr: EnvoyPtr,
    );

    /// Defines a counter or a gauge on the extension configuration (as the HTTP ones).
    pub(super) fn envoy_dynamic_module_callback_bootstrap_extension_config_define_counter(
        config_envoy_ptr: EnvoyPtr,
        name: ModuleBuffer<'_>,
        label_names: *mut ModuleBuffer<'_>,
        label_names_length: usize,
        counter_id_ptr: *mut usize,
    ) -> u32;
    pub(super) fn envoy_dynamic_module_callback_bootstrap_extension_config_define_gauge(
        config_envoy_ptr: EnvoyPtr,
        name: ModuleBuffer<'_>,
        label_names: *mut ModuleBuffer<'_>,
        label_names_length: usize,
        gauge_id_ptr: *mut usize,
    ) -> u32;
    /// Adds to a counter or sets a gauge of the extension configuration (no stream needed).
    pub(super) fn envoy_dynamic_module_callback_bootstrap_extension_config_increment_counter(
        config_envoy_ptr: EnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer<'_>,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    pub(super) fn envoy_dynamic_module_callback_bootstrap_extension_config_set_gauge(
        config_envoy_ptr: EnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer<'_>,
        label_values_length: usize,
        value: u64,
    ) -> u32;
}

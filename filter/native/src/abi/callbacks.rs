//! The callbacks Envoy exports to modules (`envoy_dynamic_module_callback_*`), declared by hand
//! from `abi.h`: only the ones the filter uses.
//!
//! Each declaration was compared with two headers (see the module docs of `abi`): v0.1.0's
//! (the 1.38 line, what these were written from) and an older, hash-versioned one
//! (envoyproxy/envoy `source/extensions/dynamic_modules/abi.h` at `6d119319a7a7`, whose
//! hooks and callbacks take pointer-and-length pairs, have one header getter per map, and
//! know no streams, configuration schedulers or bootstrap extensions). Where they agree,
//! 1.40.0 (after both) almost certainly does too; where they differ, the `ABI check` line says
//! what 1.40.0 has, from its exported symbols, from which argument registers and stack words
//! its code reads (`objdump -d` of the 1.40.0 binary), and from the smoke test. Every one of them is undefined in the `.so` and
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
    ///
    /// ABI check: Both headers: the older passes `message` as pointer and length, which is the same
    /// two registers as the struct (x86-64 SysV).
    pub(super) fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer<'_>);

    /// Whether `level` is enabled for that logger: lets the module skip formatting.
    ///
    /// ABI check: Both headers agree.
    pub(super) fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;

    // ------------------------------------------------- an HTTP stream (its worker thread)

    /// The `index`-th value of header `key` in map `header_type` (0 request headers, 1 request
    /// trailers, 2 response headers, 3 response trailers). Writes the value to `result` (a null
    /// buffer if absent) and, unless `optional_size` is null, the number of values of `key`.
    /// Returns false if the map is not available. The value is Envoy's: valid until the end of
    /// the current hook or the next header setter call, whichever comes first.
    ///
    /// ABI check: Older header: none (one getter per map, `http_get_request_header`...); 1.40.0
    /// exports no `http_get_request_header` and reads all six registers and the stack here: this
    /// form.
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
    ///
    /// ABI check: Older header: none (`http_set_request_header`... per map); 1.40.0 exports this
    /// one.
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
    ///
    /// ABI check: Older header: six arguments, no `details`; 1.40.0 reads the stack argument
    /// (`details`, the 7th and 8th words): this form.
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
    ///
    /// ABI check: Older header: the result as a pointer and a length out-parameter (4 arguments);
    /// 1.40.0 reads three argument registers, and the smoke test reads the source address and the
    /// route name through this form.
    pub(super) fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter_envoy_ptr: EnvoyPtr,
        attribute_id: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;

    /// The string at `ns`/`key` of the metadata of `metadata_source` (1: the route's), written
    /// to `result`; false if absent or not a string. Envoy's buffer, valid until the end of the
    /// current hook (or the next metadata setter call).
    ///
    /// ABI check: Older header: the result as a pointer and a length out-parameter (8 arguments);
    /// the smoke test reads route metadata through this form (the older one would write through a
    /// stack word).
    pub(super) fn envoy_dynamic_module_callback_http_get_metadata_string(
        filter_envoy_ptr: EnvoyPtr,
        metadata_source: u32,
        ns: ModuleBuffer<'_>,
        key: ModuleBuffer<'_>,
        result: *mut EnvoyBuffer,
    ) -> bool;

    /// Resumes a request the module stopped (`StopIteration`), on the stream's worker thread.
    ///
    /// ABI check: Both headers agree.
    pub(super) fn envoy_dynamic_module_callback_http_filter_continue_decoding(
        filter_envoy_ptr: EnvoyPtr,
    );

    /// Creates a scheduler for this stream. The module owns the returned object and must free
    /// it with `http_filter_scheduler_delete`. It holds a weak reference to the stream and the
    /// worker's dispatcher: `commit` may be called from any thread, posts
    /// `on_http_filter_scheduled(event_id)` to the stream's worker, and is a no-op there once
    /// the stream is gone.
    ///
    /// ABI check: Both headers agree.
    pub(super) fn envoy_dynamic_module_callback_http_filter_scheduler_new(
        filter_envoy_ptr: EnvoyPtr,
    ) -> EnvoyPtr;
    ///
    /// ABI check: Both headers agree.
    pub(super) fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
        scheduler_module_ptr: EnvoyPtr,
        event_id: u64,
    );
    ///
    /// ABI check: Both headers agree.
    pub(super) fn envoy_dynamic_module_callback_http_filter_scheduler_delete(
        scheduler_module_ptr: EnvoyPtr,
    );

    /// Starts a one-shot HTTP request to `cluster_name` tied to this stream; `headers` must
    /// hold `:method`, `:path` and `host`. Writes the callout id to `callout_id_out` and returns
    /// an `envoy_dynamic_module_type_http_callout_init_result` (0: started). The answer arrives
    /// in `on_http_filter_http_callout_done` on the stream's worker thread (not at all if the
    /// stream is destroyed first: Envoy cancels it).
    ///
    /// ABI check: Older header: the callout id is an input `uint32_t`, and the cluster and body
    /// pointer/length pairs; the smoke test (demo only) answers callouts through this form.
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
    ///
    /// ABI check: Older header: none. This form is also that of Envoy's own implementation
    /// (`abi_impl.cc`) the search tools hold; 1.40.0 reads six registers and the stack
    /// (`end_stream`, the timeout).
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
    ///
    /// ABI check: Older header: none; Envoy's implementation has this form.
    pub(super) fn envoy_dynamic_module_callback_http_filter_reset_http_stream(
        filter_envoy_ptr: EnvoyPtr,
        stream_id: u64,
    );

    /// An integer attribute (`envoy_dynamic_module_type_attribute_id`) of the stream, written
    /// to `result`; false if absent, not an integer, or one this Envoy does not implement as
    /// an integer (it logs "Unsupported attribute ID").
    ///
    /// ABI check: Both headers agree (`uint64_t*` result). Which attributes an Envoy implements as
    /// integers varies (those it does not, it logs "Unsupported attribute ID ... as int" and
    /// answers false).
    pub(super) fn envoy_dynamic_module_callback_http_filter_get_attribute_int(
        filter_envoy_ptr: EnvoyPtr,
        attribute_id: u32,
        result: *mut u64,
    ) -> bool;

    /// Adds `value` to counter `id` (defined on the stream's configuration); the label count
    /// must match the definition (we define none). Returns an
    /// `envoy_dynamic_module_type_metrics_result` (0: success).
    ///
    /// ABI check: Older header: three arguments, labels only in `_vec` variants; the smoke test
    /// counts through this form (demo only).
    pub(super) fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter_envoy_ptr: EnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer<'_>,
        label_values_length: usize,
        value: u64,
    ) -> u32;

    /// Sets gauge `id` (defined on the stream's configuration) to `value`; as above.
    ///
    /// ABI check: Older header: none (`increase_gauge`...); demo only.
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
    ///
    /// ABI check: Older header: four arguments (no labels, the id pointer 4th); this form writes
    /// the id through the 6th, and the smoke test and the product (on the bootstrap twin) see the
    /// counters: this form. 1.40.0 reads r8 and r9 here.
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        filter_config_envoy_ptr: EnvoyPtr,
        name: ModuleBuffer<'_>,
        label_names: *mut ModuleBuffer<'_>,
        label_names_length: usize,
        counter_id_ptr: *mut usize,
    ) -> u32;

    /// Defines a gauge, like `define_counter`.
    ///
    /// ABI check: As `define_counter`.
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
    ///
    /// ABI check: Older header: none (configuration schedulers came later); demo only.
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        filter_config_envoy_ptr: EnvoyPtr,
    ) -> EnvoyPtr;
    ///
    /// ABI check: Older header: none; demo only.
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler_module_ptr: EnvoyPtr,
        event_id: u64,
    );
    ///
    /// ABI check: Older header: none; demo only.
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
        scheduler_module_ptr: EnvoyPtr,
    );

    /// A one-shot HTTP request tied to the configuration (no stream): as
    /// `http_filter_http_callout`; the answer arrives in
    /// `on_http_filter_config_http_callout_done` on the main thread.
    ///
    /// ABI check: Older header: none; demo only.
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
    ///
    /// ABI check: Older header: none; Envoy's implementation (`filter_config.cc`) has this form,
    /// and the sync service's gRPC goes through it.
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
    ///
    /// ABI check: Older header: none; demo only.
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_stream_send_data(
        filter_config_envoy_ptr: EnvoyPtr,
        stream_id: u64,
        data: ModuleBuffer<'_>,
        end_stream: bool,
    ) -> bool;

    /// Resets a configuration's stream; `on_http_filter_config_http_stream_reset` follows.
    ///
    /// ABI check: Older header: none.
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_reset_http_stream(
        filter_config_envoy_ptr: EnvoyPtr,
        stream_id: u64,
    );

    // --------------------------- a bootstrap extension configuration (the main thread)

    /// Releases Envoy's init target for this extension: until every bootstrap extension has
    /// called this once, Envoy's init manager holds the listeners (no traffic, `/ready` 503).
    /// Main thread only.
    ///
    /// ABI check: Older header: no bootstrap extensions at all (every `bootstrap_*` declaration
    /// below is v0.1.0's alone, proven by the smoke test and the product in 1.40.0).
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
    ///
    /// ABI check: 1.40.0 reads r8 and r9 (labels, the id pointer): the v0.1.0 form.
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
    ///
    /// ABI check: 1.40.0 reads five argument registers: the v0.1.0 form (labels).
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

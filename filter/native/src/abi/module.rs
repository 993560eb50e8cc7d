//! What a module implements: the safe interface the exported hooks call. The crate root
//! wires one [`Module`] in (`crate::MODULE`); the hooks in `http_hooks.rs` and
//! `bootstrap_hooks.rs` turn Envoy's pointers into the handles below and call these methods,
//! each inside the panic guard.
//!
//! Threads: a [`Module`] and an [`HttpFilterConfig`] are called from the main thread and from
//! every worker (`new_stream`), hence `Sync`; an [`HttpStreamFilter`] only on its stream's
//! worker; a [`BootstrapConfig`] only on the main thread.

use super::bootstrap_config::BootstrapHandle;
use super::filter_config::FilterConfigHandle;
use super::http_stream::HttpStream;
use super::types::{CalloutResult, HeadersStatus, StreamResetReason};

/// The module: builds HTTP filter configurations and bootstrap extensions by name.
pub trait Module: Sync {
    /// `filter_name` and `filter_config` of a `DynamicModuleFilter` (the config's
    /// `StringValue`/`BytesValue` arrives unwrapped, a `Struct` as JSON). `None` refuses the
    /// configuration (Envoy rejects it); say why in a log line first.
    fn new_http_filter_config(
        &self,
        config: &mut FilterConfigHandle<'_>,
        name: &[u8],
        settings: &[u8],
    ) -> Option<Box<dyn HttpFilterConfig>>;

    /// `extension_name` and `extension_config` of a `DynamicModuleBootstrapExtension`.
    /// `None` refuses the extension.
    fn new_bootstrap_config(
        &self,
        config: &mut BootstrapHandle<'_>,
        name: &[u8],
        settings: &[u8],
    ) -> Option<Box<dyn BootstrapConfig>>;
}

/// One HTTP filter configuration: creates the filter of each stream; owns what the streams
/// share. Dropped on the main thread when Envoy destroys the configuration.
pub trait HttpFilterConfig: Send + Sync {
    /// A new stream (worker thread).
    fn new_stream(&self, stream: &mut HttpStream<'_>) -> Box<dyn HttpStreamFilter>;

    /// An event committed through a `FilterConfigScheduler` (main thread).
    fn on_scheduled(&self, _config: &mut FilterConfigHandle<'_>, _event_id: u64) {}

    /// The answer to a configuration's one-shot callout (main thread).
    fn on_callout_done(
        &self,
        _config: &mut FilterConfigHandle<'_>,
        _callout_id: u64,
        _result: CalloutResult,
        _response: &CalloutResponse<'_>,
    ) {
    }

    /// Events of a configuration's streaming request (main thread), in this order: headers,
    /// data (any number of times), trailers (maybe), then complete or reset.
    fn on_stream_headers(
        &self,
        _config: &mut FilterConfigHandle<'_>,
        _stream_id: u64,
        _headers: &[(&[u8], &[u8])],
        _end_stream: bool,
    ) {
    }
    fn on_stream_data(
        &self,
        _config: &mut FilterConfigHandle<'_>,
        _stream_id: u64,
        _chunks: &[&[u8]],
        _end_stream: bool,
    ) {
    }
    fn on_stream_trailers(
        &self,
        _config: &mut FilterConfigHandle<'_>,
        _stream_id: u64,
        _trailers: &[(&[u8], &[u8])],
    ) {
    }
    fn on_stream_complete(&self, _config: &mut FilterConfigHandle<'_>, _stream_id: u64) {}
    fn on_stream_reset(
        &self,
        _config: &mut FilterConfigHandle<'_>,
        _stream_id: u64,
        _reason: StreamResetReason,
    ) {
    }
}

/// The filter of one HTTP stream (its worker thread only).
pub trait HttpStreamFilter {
    fn on_request_headers(
        &mut self,
        stream: &mut HttpStream<'_>,
        end_of_stream: bool,
    ) -> HeadersStatus;

    fn on_response_headers(
        &mut self,
        _stream: &mut HttpStream<'_>,
        _end_of_stream: bool,
    ) -> HeadersStatus {
        HeadersStatus::Continue
    }

    /// An event committed through this stream's `StreamScheduler`, from any thread.
    fn on_scheduled(&mut self, _stream: &mut HttpStream<'_>, _event_id: u64) {}

    /// The answer to this stream's one-shot callout.
    fn on_callout_done(
        &mut self,
        _stream: &mut HttpStream<'_>,
        _callout_id: u64,
        _result: CalloutResult,
        _response: &CalloutResponse<'_>,
    ) {
    }

    /// The stream is over (before access logs and `drop`).
    fn on_stream_complete(&mut self, _stream: &mut HttpStream<'_>) {}

    /// Events of a streaming request this stream started (`StreamRef::start_stream`), in this
    /// order: headers, data (any number of times), trailers (maybe), then complete or reset.
    fn on_http_stream_headers(
        &mut self,
        _stream: &mut HttpStream<'_>,
        _stream_id: u64,
        _headers: &[(&[u8], &[u8])],
        _end_stream: bool,
    ) {
    }
    fn on_http_stream_data(
        &mut self,
        _stream: &mut HttpStream<'_>,
        _stream_id: u64,
        _chunks: &[&[u8]],
        _end_stream: bool,
    ) {
    }
    fn on_http_stream_trailers(
        &mut self,
        _stream: &mut HttpStream<'_>,
        _stream_id: u64,
        _trailers: &[(&[u8], &[u8])],
    ) {
    }
    fn on_http_stream_complete(&mut self, _stream: &mut HttpStream<'_>, _stream_id: u64) {}
    fn on_http_stream_reset(
        &mut self,
        _stream: &mut HttpStream<'_>,
        _stream_id: u64,
        _reason: StreamResetReason,
    ) {
    }
}

/// A callout's response as Envoy hands it over: headers (`:status` among them) and the body
/// in chunks, all Envoy's and valid only during the hook.
pub struct CalloutResponse<'a> {
    pub headers: &'a [(&'a [u8], &'a [u8])],
    pub body_chunks: &'a [&'a [u8]],
}

impl CalloutResponse<'_> {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(key, _)| *key == name.as_bytes())
            .map(|(_, value)| *value)
    }

    /// The body, its chunks joined.
    pub fn body(&self) -> Vec<u8> {
        self.body_chunks.concat()
    }
}

/// One bootstrap extension configuration (main thread only). Dropped when Envoy destroys it.
pub trait BootstrapConfig {
    /// A timer of this configuration fired; `timer` says which (compare with
    /// `Timer::token`).
    fn on_timer(&mut self, _config: &mut BootstrapHandle<'_>, _timer: usize) {}

    /// An event committed through a `BootstrapScheduler`.
    fn on_scheduled(&mut self, _config: &mut BootstrapHandle<'_>, _event_id: u64) {}
}

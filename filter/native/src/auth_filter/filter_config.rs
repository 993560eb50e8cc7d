//! One configuration of the auth filter (Envoy makes one per listener's filter chain, and a
//! new one on each update): its parsed settings, the per-worker state it owns, and the hooks
//! of the sync service's calls to keysync that go out through it (`abi::outbound`).

use std::sync::Arc;

use keysync_filter_core::{AuthConfig, PluginConfig};

use crate::abi::{
    log, FilterConfigHandle, HttpFilterConfig, HttpStream, HttpStreamFilter, LogLevel, Origin,
    StreamResetReason,
};
use crate::auth_filter::auth_stream::AuthStream;
use crate::auth_filter::worker_slot::{ConfigLife, WorkerSlot};
use crate::grpc::calls;
use crate::metric_table::MetricTable;
use crate::sync_extension::{self, EXTENSION_NAME};

pub const FILTER_NAME: &str = "keysync-auth";

pub struct AuthFilterConfig {
    config: AuthConfig,
    /// The module's number for this configuration: its calls' origin.
    serial: u64,
    /// Held while the configuration lives; workers keep their state while it does.
    life: ConfigLife,
}

/// Envoy loads a configuration of the filter: the same JSON as the wasm filter's.
pub fn new_auth_filter_config(
    config: &mut FilterConfigHandle<'_>,
    settings: &[u8],
) -> Option<Box<dyn HttpFilterConfig>> {
    let auth = match PluginConfig::parse(settings) {
        Ok(PluginConfig::Auth(auth)) => auth,
        Ok(PluginConfig::Sync(_)) => {
            log(
                LogLevel::Error,
                &format!(
                    "keysync-auth: a configuration with role \"sync\" is the bootstrap extension \
                     {EXTENSION_NAME}, not the HTTP filter"
                ),
            );
            return None;
        }
        Ok(PluginConfig::Ready) => {
            // Envoy's own /ready is the native gate: the sync extension holds Envoy's init
            // until the store holds a complete sync.
            log(
                LogLevel::Error,
                "keysync-auth: role \"ready\" is the wasm filter's readiness gate; with the \
                 native module Envoy's own /ready answers 503 until the first full sync",
            );
            return None;
        }
        Err(e) => {
            log(LogLevel::Error, &format!("keysync-auth: {e}"));
            return None;
        }
    };
    if MetricTable::process().is_none() {
        // Bootstrap extensions are made before listeners: none means none configured.
        log(
            LogLevel::Error,
            &format!(
                "keysync-auth: no {EXTENSION_NAME} bootstrap extension in this Envoy: nothing \
                 syncs the key store, and requests are refused 503 auth_unavailable"
            ),
        );
    }
    Some(Box::new(AuthFilterConfig {
        config: auth,
        serial: config.serial(),
        life: Arc::new(()),
    }))
}

impl HttpFilterConfig for AuthFilterConfig {
    fn new_stream(&self, stream: &mut HttpStream<'_>) -> Box<dyn HttpStreamFilter> {
        let slot = WorkerSlot::of(&self.life, &self.config);
        Box::new(AuthStream::new(slot, stream.reference()))
    }

    fn on_stream_headers(
        &self,
        _config: &mut FilterConfigHandle<'_>,
        stream_id: u64,
        headers: &[(&[u8], &[u8])],
        end_stream: bool,
    ) {
        let origin = Origin::Config(self.serial);
        sync_extension::deliver(calls::on_headers(origin, stream_id, headers, end_stream));
    }

    fn on_stream_data(
        &self,
        _config: &mut FilterConfigHandle<'_>,
        stream_id: u64,
        chunks: &[&[u8]],
        end_stream: bool,
    ) {
        let origin = Origin::Config(self.serial);
        sync_extension::deliver(calls::on_data(origin, stream_id, chunks, end_stream));
    }

    fn on_stream_trailers(
        &self,
        _config: &mut FilterConfigHandle<'_>,
        stream_id: u64,
        trailers: &[(&[u8], &[u8])],
    ) {
        let origin = Origin::Config(self.serial);
        sync_extension::deliver(calls::on_trailers(origin, stream_id, trailers));
    }

    fn on_stream_complete(&self, _config: &mut FilterConfigHandle<'_>, stream_id: u64) {
        let origin = Origin::Config(self.serial);
        sync_extension::deliver(calls::on_complete(origin, stream_id));
    }

    fn on_stream_reset(
        &self,
        _config: &mut FilterConfigHandle<'_>,
        stream_id: u64,
        _reason: StreamResetReason,
    ) {
        let origin = Origin::Config(self.serial);
        sync_extension::deliver(calls::on_reset(origin, stream_id));
    }
}

impl Drop for AuthFilterConfig {
    /// Main thread, at `config_destroy`: Envoy resets this configuration's streams without a
    /// word to the module, so the sync service hears of them here (and opens new ones through
    /// another configuration).
    fn drop(&mut self) {
        sync_extension::deliver(calls::fail_origin(Origin::Config(self.serial)));
    }
}

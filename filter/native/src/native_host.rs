//! The core's host seam (`keysync_filter_core::Host`) made of the process itself: the store
//! in process memory (`shared_store`), the system clocks, randomness from std, gRPC to keysync
//! over Envoy's HTTP streams (`grpc`), stats in the process's table (`metric_table`). It holds
//! nothing: every worker's auth filter and the sync service use the same process-wide parts,
//! from their own threads.

use std::hash::BuildHasher;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keysync_filter_core::{Entry, Host, HostError, MetricKind, SharedData, WriteError};

use crate::grpc::calls::{self, CallKind};
use crate::metric_table::MetricTable;
use crate::native_request::NativeRequest;
use crate::shared_store::process_store;

#[derive(Clone, Copy, Debug, Default)]
pub struct NativeHost;

impl SharedData for NativeHost {
    fn get(&self, key: &str) -> Entry {
        process_store().get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), WriteError> {
        process_store().set(key, value, cas)
    }

    fn read<T>(&self, key: &str, look: impl FnOnce(Option<&[u8]>) -> T) -> T {
        process_store().read(key, look)
    }
}

fn since_epoch() -> Option<Duration> {
    SystemTime::now().duration_since(UNIX_EPOCH).ok()
}

impl Host for NativeHost {
    type Request = NativeRequest;

    fn now_unix_ms(&self) -> u64 {
        since_epoch().map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn now_unix_us(&self) -> u64 {
        since_epoch().map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    fn random_u64(&self) -> u64 {
        // std seeds its hashers from the operating system's randomness.
        std::collections::hash_map::RandomState::new().hash_one(self.now_unix_us())
    }

    fn dispatch_grpc(
        &self,
        cluster: &str,
        method: &str,
        message: &[u8],
        timeout: Duration,
    ) -> Result<u32, HostError> {
        calls::start(cluster, method, message, CallKind::Unary, Some(timeout))
    }

    fn cancel_grpc(&self, token: u32) {
        calls::cancel(token);
    }

    fn open_grpc_stream(
        &self,
        cluster: &str,
        method: &str,
        message: &[u8],
    ) -> Result<u32, HostError> {
        calls::start(cluster, method, message, CallKind::Streaming, None)
    }

    fn cancel_grpc_stream(&self, token: u32) {
        calls::cancel(token);
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        MetricTable::process()?.id(kind, name)
    }

    fn increment_metric(&self, id: u32, delta: u64) {
        if let Some(table) = MetricTable::process() {
            table.add(id, delta);
        }
    }

    fn record_metric(&self, id: u32, value: u64) {
        if let Some(table) = MetricTable::process() {
            table.record(id, value);
        }
    }
}

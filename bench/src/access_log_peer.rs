//! The peer usage metering is measured against: Envoy's own gRPC access log service
//! (`envoy.access_loggers.http_grpc`) streaming one entry per request to a receiver that
//! does the same counting as the filter (by organization, key and status class, with the
//! duration and body bytes). The receiver runs in this process on a runtime of its own,
//! so the CPU it spends is the benchmark process's.

use envoy_types::pb::envoy::data::accesslog::v3::HttpAccessLogEntry;
use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_server::{
    AccessLogService, AccessLogServiceServer,
};
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::LogEntries;
use envoy_types::pb::envoy::service::accesslog::v3::{
    StreamAccessLogsMessage, StreamAccessLogsResponse,
};
use keysync_contract::{KEY_ID_HEADER, ORG_ID_HEADER};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tonic::{Request, Response, Status, Streaming};

/// What one (org, key, status class) counter holds.
#[derive(Default, Clone, Copy, Debug)]
pub struct Tally {
    pub requests: u64,
    pub duration_us: u64,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

type Counters = HashMap<(String, String, u32), Tally>;

/// A running receiver: its address and what it has counted.
pub struct AccessLogPeer {
    pub addr: SocketAddr,
    counters: Arc<Mutex<Counters>>,
    _runtime: tokio::runtime::Runtime,
}

impl AccessLogPeer {
    /// Listens on 127.0.0.1, port 0, with one runtime thread.
    pub fn start() -> AccessLogPeer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let counters = Arc::new(Mutex::new(Counters::new()));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind the access log receiver");
        let addr = listener.local_addr().expect("its address");
        let service = Receiver {
            counters: Arc::clone(&counters),
        };
        runtime.spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let served = tonic::transport::Server::builder()
                .add_service(AccessLogServiceServer::new(service))
                .serve_with_incoming(incoming)
                .await;
            if let Err(e) = served {
                eprintln!("access log receiver stopped: {e}");
            }
        });
        AccessLogPeer {
            addr,
            counters,
            _runtime: runtime,
        }
    }

    /// Requests counted so far, all counters.
    pub fn requests(&self) -> u64 {
        let counters = self.counters.lock().expect("counters lock");
        counters.values().map(|tally| tally.requests).sum()
    }

    /// How many distinct (org, key, status class) counters exist.
    pub fn counters(&self) -> usize {
        self.counters.lock().expect("counters lock").len()
    }

    /// The HTTP connection manager's `access_log` entry that streams to this receiver
    /// (cluster [`CLUSTER`]), logging the identity headers the filter sets.
    pub fn access_log_config() -> String {
        format!(
            "access_log:
          - name: envoy.access_loggers.http_grpc
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig
              common_config:
                log_name: usage
                transport_api_version: V3
                grpc_service: {{ envoy_grpc: {{ cluster_name: {CLUSTER} }} }}
              additional_request_headers_to_log: [{ORG_ID_HEADER}, {KEY_ID_HEADER}]
          "
        )
    }

    /// The cluster of this receiver, as a static cluster entry.
    pub fn cluster_config(&self) -> String {
        format!(
            "- name: {CLUSTER}
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: {CLUSTER}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {} }}
  ",
            self.addr.port()
        )
    }
}

/// The Envoy cluster name of the receiver.
pub const CLUSTER: &str = "usage_access_log";

struct Receiver {
    counters: Arc<Mutex<Counters>>,
}

#[tonic::async_trait]
impl AccessLogService for Receiver {
    async fn stream_access_logs(
        &self,
        request: Request<Streaming<StreamAccessLogsMessage>>,
    ) -> Result<Response<StreamAccessLogsResponse>, Status> {
        let mut stream = request.into_inner();
        while let Some(message) = stream.message().await? {
            let Some(LogEntries::HttpLogs(logs)) = message.log_entries else {
                continue;
            };
            let mut counters = self.counters.lock().expect("counters lock");
            for entry in &logs.log_entry {
                count(&mut counters, entry);
            }
        }
        Ok(Response::new(StreamAccessLogsResponse {}))
    }
}

/// One entry into its counter: what usage metering does in the filter.
fn count(counters: &mut Counters, entry: &HttpAccessLogEntry) {
    let header = |name: &str| {
        entry
            .request
            .as_ref()
            .and_then(|request| request.request_headers.get(name))
            .cloned()
            .unwrap_or_default()
    };
    let status = entry
        .response
        .as_ref()
        .and_then(|response| response.response_code)
        .map_or(0, |code| code.value);
    let duration_us = entry
        .common_properties
        .as_ref()
        .and_then(|common| common.time_to_last_downstream_tx_byte)
        .map_or(0, |d| {
            u64::try_from(d.seconds).unwrap_or(0) * 1_000_000
                + u64::try_from(d.nanos / 1_000).unwrap_or(0)
        });
    let tally = counters
        .entry((header(ORG_ID_HEADER), header(KEY_ID_HEADER), status / 100))
        .or_default();
    tally.requests += 1;
    tally.duration_us += duration_us;
    tally.request_bytes += entry.request.as_ref().map_or(0, |r| r.request_body_bytes);
    tally.response_bytes += entry.response.as_ref().map_or(0, |r| r.response_body_bytes);
}

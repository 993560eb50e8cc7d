//! `keysync serve` as a child process, and clients for its gRPC API (unary calls and
//! the WatchKeys stream) and admin port, shared by the serve-based tests.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use keysync_e2e::Process;
use keysync_proto::v1::{
    KeyChanges, KeyRecord, ListKeysRequest, ListKeysResponse, LookupKeyRequest, LookupKeyResponse,
    WatchKeysRequest,
};
use tonic::codec::Streaming;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Status;

use super::{command, CreatedKey};

pub const PASSWORD: &str = "hunter2-not-for-logs";

/// A running `keysync serve` and where it listens.
pub struct Serve {
    pub process: Process,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    /// The operator API's listener (`None` with `KEYSYNC_API_ADDR=off`).
    pub api: Option<SocketAddr>,
    pub channel: Channel,
}

/// A running `keysync serve` and where it listens, without a client.
pub struct Started {
    pub process: Process,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub api: Option<SocketAddr>,
}

/// Starts `serve` on ports 0 with a password in its URL (the test cluster trusts
/// everyone, so any password works) and waits for the first snapshot.
pub async fn start_serve(url: &str, env: &[(&str, &str)]) -> Serve {
    let Started {
        process,
        grpc,
        http,
        api,
    } = start_process(url, env);
    let channel = Channel::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Serve {
        process,
        grpc,
        http,
        api,
        channel,
    }
}

/// As [`start_serve`], leaving the client to the caller (TLS, tokens).
pub fn start_process(url: &str, env: &[(&str, &str)]) -> Started {
    let url = url.replacen(
        "postgres://keysync@",
        &format!("postgres://keysync:{PASSWORD}@"),
        1,
    );
    let mut command = command(Some(&url), &["serve"]);
    command
        .env("KEYSYNC_GRPC_ADDR", "127.0.0.1:0")
        .env("KEYSYNC_HTTP_ADDR", "127.0.0.1:0")
        .env("KEYSYNC_API_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info,keysync=debug")
        .envs(env.iter().copied());
    let process = Process::spawn("keysync-serve", command);
    let line = process.wait_for_log("keysync listening:", Duration::from_secs(30));
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(name))
    };
    let address = |name: &str| -> SocketAddr {
        field(name)
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no {name} address in {line:?}"))
    };
    let grpc = address("grpc=");
    let http = address("http=");
    let api = field("api=")
        .filter(|api| *api != "off")
        .map(|_| address("api="));
    assert_ne!(grpc.port(), 0);
    assert_ne!(http.port(), 0);
    process.wait_for_log("snapshot loaded: keys=", Duration::from_secs(30));
    // From here on, every committed change reaches the store without polling.
    process.wait_for_log("change listener connected", Duration::from_secs(30));
    Started {
        process,
        grpc,
        http,
        api,
    }
}

pub async fn call<Request, Response>(
    channel: &Channel,
    path: &'static str,
    request: Request,
) -> Result<Response, Status>
where
    Request: prost::Message + Send + Sync + 'static,
    Response: prost::Message + Default + Send + Sync + 'static,
{
    call_with(channel, path, request, &[]).await
}

/// As [`call`], with gRPC metadata.
pub async fn call_with<Request, Response>(
    channel: &Channel,
    path: &'static str,
    request: Request,
    metadata: &[(&'static str, &str)],
) -> Result<Response, Status>
where
    Request: prost::Message + Send + Sync + 'static,
    Response: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|error| Status::unknown(error.to_string()))?;
    let mut request = tonic::Request::new(request);
    for (key, value) in metadata {
        request.metadata_mut().insert(*key, value.parse().unwrap());
    }
    grpc.unary(
        request,
        PathAndQuery::from_static(path),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

pub async fn list_page(
    channel: &Channel,
    after: &[u8],
    size: u32,
) -> Result<ListKeysResponse, Status> {
    call(
        channel,
        "/keysync.v1.KeySync/ListKeys",
        ListKeysRequest {
            after_hash: after.to_vec(),
            page_size: size,
        },
    )
    .await
}

pub async fn lookup(channel: &Channel, hash: &[u8]) -> Result<LookupKeyResponse, Status> {
    call(
        channel,
        "/keysync.v1.KeySync/LookupKey",
        LookupKeyRequest {
            key_hash: hash.to_vec(),
        },
    )
    .await
}

/// Walks every page; checks order, page bounds and `more` on the way.
pub async fn list_all(channel: &Channel, page_size: u32, max_page: usize) -> Vec<KeyRecord> {
    let mut keys: Vec<KeyRecord> = Vec::new();
    let mut after = Vec::new();
    loop {
        let page = list_page(channel, &after, page_size).await.unwrap();
        assert!(
            page.keys.len() <= max_page,
            "{} keys in a page",
            page.keys.len()
        );
        assert!(page.revision > 0);
        keys.extend(page.keys);
        if !page.more {
            break;
        }
        after = keys.last().unwrap().key_hash.clone();
    }
    for pair in keys.windows(2) {
        assert!(
            pair[0].key_hash < pair[1].key_hash,
            "not strictly ascending"
        );
    }
    keys
}

pub fn hashes(keys: &[KeyRecord]) -> BTreeSet<Vec<u8>> {
    keys.iter().map(|key| key.key_hash.clone()).collect()
}

/// Polls `$check` (an expression that may `.await`) until it holds, failing after
/// `$limit`. A macro rather than a function taking a closure, since the checks borrow
/// the channel across awaits.
#[macro_export]
macro_rules! eventually {
    ($limit:expr, $what:expr, $check:expr) => {{
        let limit: Duration = $limit;
        let deadline = Instant::now() + limit;
        while !$check {
            assert!(Instant::now() < deadline, "not within {limit:?}: {}", $what);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }};
}

/// The hashes of every listed key.
pub async fn listed(channel: &Channel) -> BTreeSet<Vec<u8>> {
    hashes(&list_all(channel, 0, 10_000).await)
}

/// A plain HTTP/1.1 GET; returns status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of one metric sample line, such as `keysync_db_errors_total`.
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {sample} in\n{text}"))
}

/// Fails if the log holds the database password or any full key.
pub fn assert_no_secrets(log: &str, keys: &[&CreatedKey]) {
    assert!(!log.contains(PASSWORD), "password in log:\n{log}");
    for key in keys {
        assert!(!log.contains(&key.key[8..]), "key in log:\n{log}");
    }
}

/// Opens a WatchKeys stream after `after` (in whatever epoch the server has).
pub async fn watch(channel: &Channel, after: u64) -> Streaming<KeyChanges> {
    watch_in(channel, after, 0)
        .await
        .unwrap_or_else(|status| panic!("WatchKeys refused: {status:?}"))
}

/// Opens a WatchKeys stream after `after` in `epoch`.
pub async fn watch_in(
    channel: &Channel,
    after: u64,
    epoch: u64,
) -> Result<Streaming<KeyChanges>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    grpc.server_streaming(
        tonic::Request::new(WatchKeysRequest {
            after_revision: after,
            epoch,
        }),
        PathAndQuery::from_static("/keysync.v1.KeySync/WatchKeys"),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

/// The next message of a stream, which must come within `limit`.
pub async fn next_message(stream: &mut Streaming<KeyChanges>, limit: Duration) -> KeyChanges {
    tokio::time::timeout(limit, stream.message())
        .await
        .unwrap_or_else(|_| panic!("no WatchKeys message within {limit:?}"))
        .expect("the stream did not fail")
        .expect("the stream is still open")
}

/// The gRPC health status keysync reports for `service` ("" for the whole server):
/// 1 SERVING, 2 NOT_SERVING.
pub async fn health(channel: &Channel, service: &str) -> i32 {
    let answer: tonic_health::pb::HealthCheckResponse = call(
        channel,
        "/grpc.health.v1.Health/Check",
        tonic_health::pb::HealthCheckRequest {
            service: service.to_owned(),
        },
    )
    .await
    .unwrap();
    answer.status
}

/// Whether a message is a heartbeat: no changes, no resync.
pub fn is_heartbeat(message: &KeyChanges) -> bool {
    message.upserts.is_empty() && message.removals.is_empty() && !message.resync_required
}

/// The next message that is not a heartbeat, which must come within `limit`.
pub async fn next_change(stream: &mut Streaming<KeyChanges>, limit: Duration) -> KeyChanges {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = next_message(stream, left).await;
        if !is_heartbeat(&message) {
            return message;
        }
    }
}

/// The store's revision, as a ListKeys page reports it.
pub async fn store_revision(channel: &Channel) -> u64 {
    list_page(channel, &[], 1).await.unwrap().revision
}

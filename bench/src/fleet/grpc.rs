//! The fleet's gRPC calls to keysync, made as Envoy makes them: one HTTP/2 connection
//! per gateway for its calls and its stream, another for its health checks (Envoy's
//! health checker holds its own), the token in `authorization`. tonic's generic client
//! over the `keysync.v1` messages: the proto crate generates the server side only.

use std::net::SocketAddr;

use keysync_proto::v1::{ListKeysRequest, ListKeysResponse};
use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status, Streaming};

pub const LIST_KEYS: &str = "/keysync.v1.KeySync/ListKeys";
pub const WATCH_KEYS: &str = "/keysync.v1.KeySync/WatchKeys";
pub const REPORT_USAGE: &str = "/keysync.v1.KeySync/ReportUsage";
pub const ACQUIRE_QUOTA: &str = "/keysync.v1.KeySync/AcquireQuota";
pub const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

/// A new HTTP/2 connection to keysync at `addr`.
pub async fn connect(addr: SocketAddr) -> Result<Channel, String> {
    Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))
}

/// `message` with `authorization: Bearer <token>` when there is a token.
pub fn request<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .expect("a token is ASCII without control characters");
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// The whole key set paged through `ListKeys` on `channel`, `page_size` a page, as the
/// filter's sync service lists it: the keys listed, and the revision and epoch of the
/// first page (where a watch stream starts).
pub async fn list_all_keys(
    channel: &Channel,
    page_size: u32,
    token: Option<&str>,
) -> Result<(usize, (u64, u64)), String> {
    let mut after_hash = Vec::new();
    let mut listed = 0;
    let mut first: Option<(u64, u64)> = None;
    loop {
        let page: ListKeysResponse = unary(
            channel,
            LIST_KEYS,
            request(
                ListKeysRequest {
                    after_hash: after_hash.clone(),
                    page_size,
                },
                token,
            ),
        )
        .await
        .map_err(|status| format!("ListKeys: {status}"))?;
        listed += page.keys.len();
        first.get_or_insert((
            page.revision,
            page.provenance.map_or(0, |provenance| provenance.epoch),
        ));
        match page.keys.last() {
            Some(last) if page.more => after_hash = last.key_hash.clone(),
            _ => break,
        }
    }
    Ok((listed, first.unwrap_or_default()))
}

/// A unary call on `channel`.
pub async fn unary<Req, Resp>(
    channel: &Channel,
    path: &'static str,
    request: Request<Req>,
) -> Result<Resp, Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    ready(channel)
        .await?
        .unary(request, PathAndQuery::from_static(path), codec())
        .await
        .map(tonic::Response::into_inner)
}

/// A server-streaming call on `channel`.
pub async fn server_streaming<Req, Resp>(
    channel: &Channel,
    path: &'static str,
    request: Request<Req>,
) -> Result<Streaming<Resp>, Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    ready(channel)
        .await?
        .server_streaming(request, PathAndQuery::from_static(path), codec())
        .await
        .map(tonic::Response::into_inner)
}

/// A client on `channel` once the channel can take a call.
async fn ready(channel: &Channel) -> Result<Grpc<Channel>, Status> {
    let mut grpc = Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    Ok(grpc)
}

fn codec<Req, Resp>() -> tonic_prost::ProstCodec<Req, Resp>
where
    Req: prost::Message + Send + 'static,
    Resp: prost::Message + Default + Send + 'static,
{
    tonic_prost::ProstCodec::default()
}

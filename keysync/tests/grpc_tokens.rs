//! Several gRPC tokens at once, against a real `keysync serve` and PostgreSQL:
//! `KEYSYNC_GRPC_TOKEN_FILE` and `KEYSYNC_GRPC_TOKENS_FILE` accepted together (a
//! rotation's current and next token), a read-only token that serves keys but may not
//! report usage, take quota or spend rate limits, and both files read again when they
//! change, a bad change keeping the tokens in use. No token ever reaches the log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::serve::*;
use common::usage_flush::*;
use common::*;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use keysync_proto::v1::{
    AcquireQuotaRequest, AcquireQuotaResponse, KeyChanges, ListKeysRequest, ListKeysResponse,
    WatchKeysRequest,
};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Code;
use uuid::Uuid;

const GATEWAY: &str = "gateway-token-0123456789abcdef";
const NEXT: &str = "next-gateway-token-0123456789abcdef";
const READER: &str = "reader-token-0123456789abcdef";

/// A folder of token files for one test, removed at the end.
struct TokenFiles(PathBuf);

impl TokenFiles {
    fn new(name: &str) -> TokenFiles {
        let dir = std::env::temp_dir().join(format!("keysync-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TokenFiles(dir)
    }

    /// Writes `file` as Kubernetes updates a Secret's file: whole, by a rename.
    fn write(&self, file: &str, text: &str) -> String {
        let path = self.0.join(file);
        let next = self.0.join(format!(".{file}.next"));
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, &path).unwrap();
        path.to_string_lossy().into_owned()
    }
}

impl Drop for TokenFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn list_as(channel: &Channel, token: &str) -> Code {
    let answer: Result<ListKeysResponse, _> = call_with(
        channel,
        "/keysync.v1.KeySync/ListKeys",
        ListKeysRequest {
            after_hash: vec![],
            page_size: 1,
        },
        &[("authorization", &bearer(token))],
    )
    .await;
    answer.map_or_else(|status| status.code(), |_| Code::Ok)
}

/// Opens a WatchKeys stream with `token` and reads its first message.
async fn watch_as(channel: &Channel, token: &str) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(WatchKeysRequest {
        after_revision: 0,
        epoch: 0,
    });
    request
        .metadata_mut()
        .insert("authorization", bearer(token).parse().unwrap());
    let opened: Result<tonic::Response<tonic::codec::Streaming<KeyChanges>>, _> = grpc
        .server_streaming(
            request,
            PathAndQuery::from_static("/keysync.v1.KeySync/WatchKeys"),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    match opened {
        Err(status) => status.code(),
        Ok(stream) => {
            let first =
                tokio::time::timeout(Duration::from_secs(10), stream.into_inner().message())
                    .await
                    .unwrap();
            match first {
                Ok(Some(_)) => Code::Ok,
                Ok(None) => Code::Unknown,
                Err(status) => status.code(),
            }
        }
    }
}

fn refused(serve: &Serve, reason: &str) -> f64 {
    let (_, text) = http_get(serve.http, "/metrics");
    metric(
        &text,
        &format!("keysync_grpc_refused_total{{reason=\"{reason}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_token_can_watch_but_not_report() {
    let (_postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let key = create_key(&url, &org, "main", &[]);
    let files = TokenFiles::new("read-only");
    let list = files.write(
        "accepted-tokens",
        &format!("# the gateways\n{GATEWAY}\n# dashboards\n{READER} read-only\n"),
    );
    let serve = start_serve(&url, &[("KEYSYNC_GRPC_TOKENS_FILE", &list)]).await;
    let channel = &serve.channel;

    assert_eq!(list_as(channel, READER).await, Code::Ok);
    assert_eq!(watch_as(channel, READER).await, Code::Ok);

    let usage = flush(Uuid::new_v4(), vec![counter(&org, &key.key_id, 2, 9)]);
    let denied = report_with(
        channel,
        usage.clone(),
        &[("authorization", &bearer(READER))],
    )
    .await
    .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert_eq!(total(&url, &org), 0);
    let quota: Result<AcquireQuotaResponse, _> = call_with(
        channel,
        "/keysync.v1.KeySync/AcquireQuota",
        AcquireQuotaRequest {
            instance_id: Uuid::new_v4().as_bytes().to_vec(),
            known_revision: 0,
            claims: vec![],
        },
        &[("authorization", &bearer(READER))],
    )
    .await;
    assert_eq!(quota.unwrap_err().code(), Code::PermissionDenied);
    let limited: Result<RateLimitResponse, _> = call_with(
        channel,
        "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
        RateLimitRequest::default(),
        &[("authorization", &bearer(READER))],
    )
    .await;
    assert_eq!(limited.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(refused(&serve, "permission_denied"), 3.0);
    assert_eq!(refused(&serve, "unauthenticated"), 0.0);

    // The gateway's token reports.
    report_with(channel, usage, &[("authorization", &bearer(GATEWAY))])
        .await
        .unwrap();
    assert_eq!(total(&url, &org), 9);
    let log = serve.process.log();
    assert!(
        log.contains("grpc call refused: a read-only token may not call it from 127.0.0.1:"),
        "{log}"
    );
    for token in [GATEWAY, READER] {
        assert!(!log.contains(token), "a token in the log:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_gateways_send_and_the_next_one_are_accepted_at_once() {
    let (_postgres, url) = migrated_database();
    let files = TokenFiles::new("two-tokens");
    let single = files.write("token", &format!("{GATEWAY}\n"));
    let list = files.write("accepted-tokens", &format!("{NEXT}\n"));
    let serve = start_serve(
        &url,
        &[
            ("KEYSYNC_GRPC_TOKEN_FILE", &single),
            ("KEYSYNC_GRPC_TOKENS_FILE", &list),
        ],
    )
    .await;
    assert_eq!(list_as(&serve.channel, GATEWAY).await, Code::Ok);
    assert_eq!(list_as(&serve.channel, NEXT).await, Code::Ok);
    assert_eq!(watch_as(&serve.channel, NEXT).await, Code::Ok);
    assert_eq!(list_as(&serve.channel, READER).await, Code::Unauthenticated);
    let log = serve.process.log();
    assert!(
        log.contains("grpc authentication: tokens (2 accepted, 0 read-only), plain text"),
        "{log}"
    );
}

/// Polls until `token` gets `expected` from ListKeys.
async fn wait_for(channel: &Channel, token: &str, expected: Code, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let code = list_as(channel, token).await;
        if code == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: still {code:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_files_are_read_again_when_they_change() {
    let (_postgres, url) = migrated_database();
    let files = TokenFiles::new("reloaded");
    let single = files.write("token", &format!("{GATEWAY}\n"));
    let list = files.write("accepted-tokens", "");
    let serve = start_serve(
        &url,
        &[
            ("KEYSYNC_GRPC_TOKEN_FILE", &single),
            ("KEYSYNC_GRPC_TOKENS_FILE", &list),
        ],
    )
    .await;
    let channel = &serve.channel;
    assert_eq!(list_as(channel, NEXT).await, Code::Unauthenticated);

    // A rotation: the next token accepted too; then sent by the gateways, the old one
    // still accepted; then the old one dropped.
    files.write("accepted-tokens", &format!("{NEXT}\n"));
    wait_for(channel, NEXT, Code::Ok, "the next token accepted").await;
    assert_eq!(list_as(channel, GATEWAY).await, Code::Ok);
    files.write("token", &format!("{NEXT}\n"));
    files.write("accepted-tokens", &format!("{GATEWAY}\n"));
    serve.process.wait_for_log(
        "grpc: tokens reloaded: a new token from",
        Duration::from_secs(20),
    );
    assert_eq!(list_as(channel, GATEWAY).await, Code::Ok);
    assert_eq!(list_as(channel, NEXT).await, Code::Ok);

    // A bad file keeps the tokens in use, and says so once, without a token.
    files.write(
        "accepted-tokens",
        &format!("{GATEWAY}\n{READER} read-write\n"),
    );
    let line = serve.process.wait_for_log(
        "grpc: cannot reload the tokens from KEYSYNC_GRPC_TOKENS_FILE",
        Duration::from_secs(20),
    );
    assert!(line.contains("line 2: expected"), "{line}");
    assert!(
        line.contains("keeping the 1 tokens (0 read-only) in use"),
        "{line}"
    );
    assert_eq!(list_as(channel, GATEWAY).await, Code::Ok);
    assert_eq!(list_as(channel, READER).await, Code::Unauthenticated);

    files.write("accepted-tokens", "# rotated\n");
    wait_for(
        channel,
        GATEWAY,
        Code::Unauthenticated,
        "the old token dropped",
    )
    .await;
    assert_eq!(list_as(channel, NEXT).await, Code::Ok);
    let log = serve.process.log();
    assert_eq!(
        log.matches("cannot reload the tokens").count(),
        1,
        "one line for one bad file:\n{log}"
    );
    for token in [GATEWAY, NEXT, READER] {
        assert!(!log.contains(token), "a token in the log:\n{log}");
    }
}

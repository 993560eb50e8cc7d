//! Who may call keysync's gRPC port, against a real `keysync serve`: beyond loopback it
//! refuses to start without authentication; with a token, calls without it (or with a
//! wrong one) are `UNAUTHENTICATED`, counted and logged without the token, while health
//! checks pass; with mutual TLS, only clients holding a certificate of the configured CA
//! get through the handshake.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::serve::*;
use common::*;
use keysync_proto::v1::{ListKeysRequest, ListKeysResponse};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const TOKEN: &str = "test-token-0123456789abcdef";
const LIST: &str = "/keysync.v1.KeySync/ListKeys";

async fn list_with(channel: &Channel, metadata: &[(&'static str, &str)]) -> tonic::Code {
    let answer: Result<ListKeysResponse, _> = call_with(
        channel,
        LIST,
        ListKeysRequest {
            after_hash: vec![],
            page_size: 1,
        },
        metadata,
    )
    .await;
    answer.map_or_else(|status| status.code(), |_| tonic::Code::Ok)
}

#[test]
fn beyond_loopback_serve_refuses_to_start_without_authentication() {
    let run: Run = command(Some("postgres://keysync@127.0.0.1:1/keysync"), &["serve"])
        .env("KEYSYNC_GRPC_ADDR", "0.0.0.0:50051")
        .output()
        .unwrap()
        .into();
    assert_one_line_error(
        &run,
        "invalid KEYSYNC_GRPC_ADDR='0.0.0.0:50051': not a loopback",
    );
    for needed in ["KEYSYNC_GRPC_TOKEN", "KEYSYNC_GRPC_TLS_CLIENT_CA"] {
        assert!(run.stderr.contains(needed), "{}", run.stderr);
    }
    // A weak token is refused, and not shown.
    let run: Run = command(Some("postgres://keysync@127.0.0.1:1/keysync"), &["serve"])
        .env("KEYSYNC_GRPC_ADDR", "0.0.0.0:50051")
        .env("KEYSYNC_GRPC_TOKEN", "hunter2")
        .output()
        .unwrap()
        .into();
    assert_one_line_error(&run, "invalid KEYSYNC_GRPC_TOKEN='***'");
    assert!(!run.stderr.contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_every_call_must_carry_it() {
    let (_postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let key = create_key(&url, &org, "existing", &[]);
    let serve = start_serve(&url, &[("KEYSYNC_GRPC_TOKEN", TOKEN)]).await;
    let channel = &serve.channel;
    let bearer = format!("Bearer {TOKEN}");

    assert_eq!(
        list_with(channel, &[("authorization", &bearer)]).await,
        tonic::Code::Ok
    );
    assert_eq!(list_with(channel, &[]).await, tonic::Code::Unauthenticated);
    assert_eq!(
        list_with(
            channel,
            &[("authorization", "Bearer test-token-0123456789abcdeX")]
        )
        .await,
        tonic::Code::Unauthenticated
    );
    // Every service on the port: the rate-limit service and ext_authz too.
    let rate_limited: Result<
        envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse,
        tonic::Status,
    > = call(
        channel,
        "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
        envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest::default(),
    )
    .await;
    assert_eq!(
        rate_limited.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    // Health checks need no token.
    assert_eq!(health(channel, "").await, 1);

    let (_, text) = http_get(serve.http, "/metrics");
    assert_eq!(
        metric(
            &text,
            "keysync_grpc_refused_total{reason=\"unauthenticated\"}"
        ),
        3.0
    );
    let log = serve.process.log();
    assert!(
        log.contains("grpc call refused: no bearer token from 127.0.0.1:"),
        "{log}"
    );
    assert!(!log.contains(TOKEN), "token in the log:\n{log}");
    assert!(
        !log.contains("0123456789abcdeX"),
        "presented token in the log:\n{log}"
    );
    assert_no_secrets(&log, &[&key]);
}

/// A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate,
/// written as PEM files into `dir`; returns the CA's PEM.
fn write_certificates(dir: &Path) -> String {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["envoy".to_owned()])
        .unwrap()
        .signed_by(&client_key, &ca)
        .unwrap();
    let write = |name: &str, pem: String| std::fs::write(dir.join(name), pem).unwrap();
    write("ca.pem", ca.pem());
    write("server.pem", server.pem());
    write("server.key", server_key.serialize_pem());
    write("client.pem", client.pem());
    write("client.key", client_key.serialize_pem());
    ca.pem()
}

async fn tls_channel(
    grpc: std::net::SocketAddr,
    ca: &str,
    identity: Option<Identity>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    Channel::from_shared(format!("https://localhost:{}", grpc.port()))
        .unwrap()
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mutual_tls_only_clients_with_a_certificate_get_through() {
    let (_postgres, url) = migrated_database();
    let dir = std::env::temp_dir().join(format!("keysync-mtls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = write_certificates(&dir);
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let (cert, key, client_ca) = (path("server.pem"), path("server.key"), path("ca.pem"));
    let started = start_process(
        &url,
        &[
            ("KEYSYNC_GRPC_TLS_CERT", &cert),
            ("KEYSYNC_GRPC_TLS_KEY", &key),
            ("KEYSYNC_GRPC_TLS_CLIENT_CA", &client_ca),
        ],
    );

    let identity = Identity::from_pem(
        std::fs::read(dir.join("client.pem")).unwrap(),
        std::fs::read(dir.join("client.key")).unwrap(),
    );
    let trusted = tls_channel(started.grpc, &ca, Some(identity))
        .await
        .unwrap();
    assert_eq!(list_with(&trusted, &[]).await, tonic::Code::Ok);

    // No client certificate: the handshake (or the first call) fails.
    let refused = match tls_channel(started.grpc, &ca, None).await {
        Err(_) => true,
        Ok(channel) => list_with(&channel, &[]).await != tonic::Code::Ok,
    };
    assert!(refused, "a client without a certificate got through");
    // Plain text gets nowhere either.
    let plain = match Channel::from_shared(format!("http://{}", started.grpc))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
    {
        Err(_) => true,
        Ok(channel) => list_with(&channel, &[]).await != tonic::Code::Ok,
    };
    assert!(plain, "a plain-text client got through");
    std::fs::remove_dir_all(&dir).unwrap();
}

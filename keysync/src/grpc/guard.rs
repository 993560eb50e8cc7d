//! What every gRPC call passes before it reaches a service: the token check (when
//! tokens are configured; see [`crate::grpc::tokens`]), the token's rights
//! ([`crate::grpc::rights`]) and the bound on calls in progress. A tower layer in front
//! of all of keysync's gRPC services, so the KeySync API, the rate-limit service and
//! ext_authz are guarded alike.
//!
//! - A call without a token, or with one keysync does not accept, is answered
//!   `UNAUTHENTICATED`, counted in `keysync_grpc_refused_total{reason="unauthenticated"}`,
//!   and logged (at most once every 10 s: `grpc call refused: no bearer token from
//!   10.0.0.7:51234 ...`), never with what it presented. The gRPC health service
//!   (`grpc.health.v1.Health`) is exempt: it tells nothing secret, and probes
//!   (Kubernetes') cannot send metadata.
//! - A read-only token calling a method that needs a gateway token (`ReportUsage`,
//!   `AcquireQuota`, `ShouldRateLimit`) is answered `PERMISSION_DENIED`, counted with
//!   `reason="permission_denied"` and logged the same way.
//! - Beyond `max_in_flight` calls in progress at once, a call is answered
//!   `RESOURCE_EXHAUSTED` at once rather than queued (Envoy then answers from its own
//!   failure handling, and a keysync already overloaded gets no further behind). A
//!   streaming call counts until its stream is open; open WatchKeys streams have their
//!   own bound ([`crate::grpc::watch`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;
use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;
use tower::{Layer, Service};
use tracing::warn;

use crate::grpc::metrics::{GrpcMetrics, RefusalReason};
use crate::grpc::token::HEADER;
use crate::grpc::tokens::GrpcTokens;
use crate::log_throttle::{held_back_note, LogThrottle, LOG_PERIOD};

/// Calls under this path prefix need no token.
const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";
/// Longest part of a refused call's path a log line repeats.
const SHOWN_PATH: usize = 80;

/// The layer; cheap to clone.
#[derive(Debug, Clone)]
pub struct GuardLayer(Arc<Guarding>);

#[derive(Debug)]
struct Guarding {
    /// `None`: no token configured, every caller has a gateway's rights (loopback, or
    /// client certificates).
    tokens: Option<Arc<GrpcTokens>>,
    in_flight: Arc<Semaphore>,
    metrics: Arc<GrpcMetrics>,
    refusals: LogThrottle,
}

impl GuardLayer {
    pub fn new(
        tokens: Option<Arc<GrpcTokens>>,
        max_in_flight: usize,
        metrics: Arc<GrpcMetrics>,
    ) -> Self {
        GuardLayer(Arc::new(Guarding {
            tokens,
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
            metrics,
            refusals: LogThrottle::new(LOG_PERIOD),
        }))
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            guarding: self.0.clone(),
        }
    }
}

/// The guarded service.
#[derive(Debug, Clone)]
pub struct Guard<S> {
    inner: S,
    guarding: Arc<Guarding>,
}

impl Guarding {
    /// `Err` with the answer for a call whose token does not pass, or whose token may
    /// not call its method.
    fn authenticate<B>(&self, request: &http::Request<B>) -> Result<(), Status> {
        let Some(tokens) = &self.tokens else {
            return Ok(());
        };
        let path = request.uri().path();
        if path.starts_with(HEALTH_PREFIX) {
            return Ok(());
        }
        let presented = request.headers().get(HEADER).map(|value| value.as_bytes());
        match tokens.check(presented) {
            Ok(rights) if rights.allow(path) => Ok(()),
            Ok(rights) => {
                self.refused(request, RefusalReason::PermissionDenied, || {
                    format!("a {} token may not call it", rights.as_str())
                });
                Err(Status::permission_denied(format!(
                    "this token is read-only: {} needs a gateway token",
                    shown(path)
                )))
            }
            Err(refusal) => {
                self.refused(request, RefusalReason::Unauthenticated, || {
                    refusal.describe().to_owned()
                });
                Err(Status::unauthenticated(
                    "keysync needs `authorization: Bearer <token>` (KEYSYNC_GRPC_TOKEN)",
                ))
            }
        }
    }

    /// Counts a refused call, and logs it unless one was logged within the period.
    fn refused<B>(
        &self,
        request: &http::Request<B>,
        reason: RefusalReason,
        why: impl Fn() -> String,
    ) {
        self.metrics.record_refusal(reason);
        if let Some(held_back) = self.refusals.admit(std::time::Instant::now()) {
            warn!(
                "grpc call refused: {} from {} ({:?}){}",
                why(),
                peer(request),
                shown(request.uri().path()),
                held_back_note(held_back)
            );
        }
    }
}

/// The part of a call's path a log line or an answer repeats.
fn shown(path: &str) -> String {
    path.chars().take(SHOWN_PATH).collect()
}

/// The caller's address, as far as the connection tells.
fn peer<B>(request: &http::Request<B>) -> String {
    let extensions = request.extensions();
    extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.get_ref().remote_addr())
        })
        .map_or_else(|| "an unknown peer".to_owned(), |addr| addr.to_string())
}

type Answer<E> = Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, E>> + Send>>;

impl<S, B> Service<http::Request<B>> for Guard<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Answer<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if let Err(status) = self.guarding.authenticate(&request) {
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let Ok(permit) = self.guarding.in_flight.clone().try_acquire_owned() else {
            self.guarding
                .metrics
                .record_refusal(RefusalReason::InFlight);
            let status = Status::resource_exhausted("keysync has too many calls in progress");
            return Box::pin(async move { Ok(status.into_http()) });
        };
        // The clone that was made ready is the one to call (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let answer = inner.call(request).await;
            drop(permit);
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::ServiceExt;

    use super::*;
    use crate::grpc::tokens::{AcceptedTokens, TokenSettings};
    use crate::metrics::Metrics;

    const TOKEN: &str = "0123456789abcdef-not-a-real-one";

    /// The tokens of a tokens file's `text`.
    fn tokens(text: &str) -> Arc<GrpcTokens> {
        Arc::new(GrpcTokens::new(TokenSettings {
            tokens_file: Some((
                "/nonexistent".into(),
                AcceptedTokens::parse(text, false).unwrap(),
            )),
            ..TokenSettings::default()
        }))
    }

    /// A service that answers OK, once it gets a permit from `gate` when one is given.
    fn service(
        gate: Option<Arc<Semaphore>>,
    ) -> impl Service<
        http::Request<()>,
        Response = http::Response<tonic::body::Body>,
        Error = Infallible,
        Future = impl Send,
    > + Clone
           + Send
           + 'static {
        tower::service_fn(move |_: http::Request<()>| {
            let gate = gate.clone();
            async move {
                if let Some(gate) = gate {
                    gate.acquire().await.unwrap().forget();
                }
                Ok::<_, Infallible>(http::Response::new(tonic::body::Body::default()))
            }
        })
    }

    fn request(path: &str, authorization: Option<&str>) -> http::Request<()> {
        let mut builder = http::Request::builder().uri(path);
        if let Some(value) = authorization {
            builder = builder.header(HEADER, value);
        }
        builder.body(()).unwrap()
    }

    /// The grpc-status of an answer (0 when the service answered).
    fn status(response: &http::Response<tonic::body::Body>) -> i32 {
        response
            .headers()
            .get("grpc-status")
            .map_or(0, |value| value.to_str().unwrap().parse().unwrap())
    }

    fn refused(metrics: &Metrics, reason: &str) -> String {
        let text = metrics.encode();
        let sample = format!("keysync_grpc_refused_total{{reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(sample.as_str()).map(str::to_owned))
            .unwrap()
    }

    #[tokio::test]
    async fn calls_need_the_token_but_health_checks_do_not() {
        let metrics = Arc::new(Metrics::new());
        let layer = GuardLayer::new(Some(tokens(&format!("{TOKEN}\n"))), 8, metrics.grpc.clone());
        let guarded = layer.layer(service(None));
        let bearer = format!("Bearer {TOKEN}");
        let path = "/keysync.v1.KeySync/ListKeys";
        let answer = guarded
            .clone()
            .oneshot(request(path, Some(&bearer)))
            .await
            .unwrap();
        assert_eq!(status(&answer), 0);
        for authorization in [None, Some("Bearer nope-nope-nope-nope"), Some(TOKEN)] {
            let answer = guarded
                .clone()
                .oneshot(request(path, authorization))
                .await
                .unwrap();
            assert_eq!(
                status(&answer),
                tonic::Code::Unauthenticated as i32,
                "{authorization:?}"
            );
        }
        let health = guarded
            .clone()
            .oneshot(request("/grpc.health.v1.Health/Check", None))
            .await
            .unwrap();
        assert_eq!(status(&health), 0);
        assert_eq!(refused(&metrics, "unauthenticated"), "3");
    }

    #[tokio::test]
    async fn a_read_only_token_serves_keys_but_reports_nothing() {
        let metrics = Arc::new(Metrics::new());
        let layer = GuardLayer::new(
            Some(tokens(&format!("{TOKEN} read-only\n"))),
            8,
            metrics.grpc.clone(),
        );
        let guarded = layer.layer(service(None));
        let bearer = format!("Bearer {TOKEN}");
        for path in [
            "/keysync.v1.KeySync/ListKeys",
            "/keysync.v1.KeySync/WatchKeys",
            "/envoy.service.auth.v3.Authorization/Check",
        ] {
            let answer = guarded
                .clone()
                .oneshot(request(path, Some(&bearer)))
                .await
                .unwrap();
            assert_eq!(status(&answer), 0, "{path}");
        }
        for path in [
            "/keysync.v1.KeySync/ReportUsage",
            "/keysync.v1.KeySync/AcquireQuota",
            "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
        ] {
            let answer = guarded
                .clone()
                .oneshot(request(path, Some(&bearer)))
                .await
                .unwrap();
            assert_eq!(
                status(&answer),
                tonic::Code::PermissionDenied as i32,
                "{path}"
            );
        }
        assert_eq!(refused(&metrics, "permission_denied"), "3");
        assert_eq!(refused(&metrics, "unauthenticated"), "0");
    }

    #[tokio::test]
    async fn without_a_token_everyone_passes() {
        let metrics = Arc::new(Metrics::new());
        let guarded = GuardLayer::new(None, 8, metrics.grpc.clone()).layer(service(None));
        let answer = guarded
            .oneshot(request("/keysync.v1.KeySync/ListKeys", None))
            .await
            .unwrap();
        assert_eq!(status(&answer), 0);
        assert_eq!(refused(&metrics, "unauthenticated"), "0");
    }

    #[tokio::test]
    async fn calls_beyond_the_bound_are_refused_at_once() {
        let metrics = Arc::new(Metrics::new());
        let gate = Arc::new(Semaphore::new(0));
        let guarded =
            GuardLayer::new(None, 2, metrics.grpc.clone()).layer(service(Some(gate.clone())));
        let path = "/keysync.v1.KeySync/LookupKey";
        let first = tokio::spawn(guarded.clone().oneshot(request(path, None)));
        let second = tokio::spawn(guarded.clone().oneshot(request(path, None)));
        while guarded.guarding.in_flight.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let third = guarded.clone().oneshot(request(path, None)).await.unwrap();
        assert_eq!(status(&third), tonic::Code::ResourceExhausted as i32);
        assert_eq!(refused(&metrics, "in_flight"), "1");
        gate.add_permits(2);
        assert_eq!(status(&first.await.unwrap().unwrap()), 0);
        assert_eq!(status(&second.await.unwrap().unwrap()), 0);
        // The permits came back.
        let fourth = tokio::spawn(guarded.clone().oneshot(request(path, None)));
        while guarded.guarding.in_flight.available_permits() > 1 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(1);
        assert_eq!(status(&fourth.await.unwrap().unwrap()), 0);
    }
}

//! `envoy.service.auth.v3.Authorization/Check`, served next to `keysync.v1.KeySync` on
//! the gRPC port and answered from the same in-memory key set `LookupKey` reads.
//!
//! A request without a credential is refused (401) and a malformed one (403) without
//! touching the key set. A well-formed key is hashed and looked up; a key the key set
//! does not hold (it may have been created since the key set last changed) waits, like
//! `LookupKey`, until the key set has caught up with it ([`crate::sync::miss`]: at most
//! for a catch-up already in flight while change notifications keep the key set
//! current, else for a coalesced catch-up that starts after it arrived), for at most
//! [`CATCH_UP_WAIT`]; if the catch-up fails or takes longer, the key set decides alone
//! (a snapshot is the best knowledge there is: an absent key is invalid, never a 5xx).
//! A key found valid then answers to its policy ([`key_policy_check`]): its allowlist
//! against the client's address, then the route's required scopes; a refusal there is
//! the contract's 403 (`ip_not_allowed`, `insufficient_scope`) and never reaches the
//! rate-limit descriptors, so it consumes no rate limit.
//! Before the first snapshot there is nothing to decide from: `UNAVAILABLE`, which
//! Envoy turns into its `status_on_error` (503). The same goes for a key set that has
//! not been confirmed against PostgreSQL for longer than `KEYSYNC_MAX_STALENESS`
//! (15 minutes by default, the filter's own `max_staleness`): a revoked key must not
//! keep working however long keysync is cut off from the database. A readiness check
//! ([`readiness_check`]) is answered from the first alone: OK once the snapshot is
//! loaded, for good.

use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::auth::v3::authorization_server::Authorization;
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};
use keysync_contract::credential_sources::{CredentialSources, Offered};
use keysync_contract::key_format::{self, KeyForm};
use keysync_contract::key_hash::KeyHash;
use keysync_contract::reply::Denial;
use keysync_proto::v1::Provenance;
use tonic::{Request, Response, Status};
use tracing::{debug, warn};

use super::check_response;
use super::credential_headers::CredentialHeaders;
use super::key_policy_check::{self, MalformedRoute};
use super::metrics::ExtAuthzMetrics;
use super::readiness_check;
use super::verdict::{CredentialRemoval, Verdict};
use crate::clock::now_unix;
use crate::fleet::own_gateway::ChecksSeen;

use crate::key_set::key_entry::KeyEntry;
use crate::key_set::SharedKeySet;
use crate::log_throttle::{held_back_note, LogThrottle, LOG_PERIOD};
use crate::readiness::Readiness;
use crate::sync::confirmation::Confirmation;
use crate::sync::miss::Misses;

/// How long a check for a key the key set does not hold waits for a catch-up: well
/// under the 0.5 s Envoy gives a check in `envoy/ext-authz.yaml`, so an unreachable
/// database still yields a 403 for an unknown key rather than Envoy's 503.
pub const CATCH_UP_WAIT: Duration = Duration::from_millis(300);

/// The service; cheap to clone, all state is shared.
#[derive(Debug, Clone)]
pub struct ExtAuthzService {
    key_set: SharedKeySet,
    misses: Misses,
    readiness: Readiness,
    metrics: Arc<ExtAuthzMetrics>,
    /// Past its staleness bound, keys are not decided.
    confirmation: Confirmation,
    /// Unix seconds now; a field so tests can stand at a key's expiry.
    clock: fn() -> i64,
    /// Bound on waiting for a catch-up ([`CATCH_UP_WAIT`]).
    catch_up_wait: Duration,
    /// Keys issued before checksums are looked up (the filter's `accept_legacy_keys`).
    accept_legacy_keys: bool,
    /// Where a request's key may be (`KEYSYNC_CREDENTIALS`, the filter's `credentials`).
    credentials: Arc<CredentialSources>,
    /// A malformed route refuses every request: one warning a period, not one each.
    route_warnings: Arc<LogThrottle>,
    /// Marked on every check: while it answers checks, this replica is a gateway of
    /// the fleet (`fleet::own_gateway`).
    checks: ChecksSeen,
}

impl ExtAuthzService {
    pub fn new(
        key_set: SharedKeySet,
        misses: Misses,
        readiness: Readiness,
        metrics: Arc<ExtAuthzMetrics>,
        confirmation: Confirmation,
    ) -> Self {
        ExtAuthzService {
            key_set,
            misses,
            readiness,
            metrics,
            confirmation,
            clock: now_unix,
            catch_up_wait: CATCH_UP_WAIT,
            accept_legacy_keys: true,
            credentials: Arc::new(CredentialSources::default()),
            route_warnings: Arc::new(LogThrottle::new(LOG_PERIOD)),
            checks: ChecksSeen::default(),
        }
    }

    /// Marks `checks` on every check it answers.
    pub fn marking(mut self, checks: ChecksSeen) -> Self {
        self.checks = checks;
        self
    }

    /// Whether keys issued before checksums are still accepted (`KEYSYNC_ACCEPT_LEGACY_KEYS`).
    pub fn accepting_legacy_keys(mut self, accept: bool) -> Self {
        self.accept_legacy_keys = accept;
        self
    }

    /// Where keys are read from (`KEYSYNC_CREDENTIALS`).
    pub fn reading_credentials_from(mut self, credentials: CredentialSources) -> Self {
        self.credentials = Arc::new(credentials);
        self
    }

    /// A checksummed key whose checksum is wrong is a typo or made up: refused without
    /// a lookup (and without waiting for a catch-up).
    fn form_accepted(&self, key: &[u8]) -> bool {
        match key_format::classify(key) {
            KeyForm::Checksummed => true,
            KeyForm::BadChecksum => false,
            KeyForm::Legacy => self.accept_legacy_keys,
        }
    }

    /// Decides about the request Envoy describes.
    pub async fn judge(&self, request: &CheckRequest) -> Verdict {
        if readiness_check::is_readiness_check(request) {
            // A latch, like the filter's: a database outage later is served from the
            // snapshot, and must not take the gateways out of their load balancers.
            return if self.readiness.is_ready() {
                Verdict::Ready
            } else {
                Verdict::Deny(Denial::Unavailable)
            };
        }
        let headers = CredentialHeaders::of(request);
        let extraction = self
            .credentials
            .extract(|name| headers.get(name).map(|value| value.into_owned()));
        let hash = match extraction.offered {
            Offered::Missing => return Verdict::Deny(Denial::MissingKey),
            Offered::Malformed | Offered::Disagreeing => return Verdict::Deny(Denial::InvalidKey),
            Offered::Key(key) if !self.form_accepted(&key) => {
                return Verdict::Deny(Denial::InvalidKey)
            }
            Offered::Key(key) => KeyHash::of_key(&key),
        };
        // Every credential goes, also one beside the key that decided (`Basic sk_live_...`).
        let removal = CredentialRemoval::of(&self.credentials, extraction.strip);
        let verdict = self.judge_key(&hash, removal).await;
        self.apply_policy(verdict, request)
    }

    /// A valid key's verdict after its policy: allowlist first, then the route's scopes.
    /// Keys without a policy on routes without requirements pass with one map lookup.
    fn apply_policy(&self, verdict: Verdict, request: &CheckRequest) -> Verdict {
        let Verdict::Allow { entry, .. } = &verdict else {
            return verdict;
        };
        match key_policy_check::check(entry.policy.as_deref(), request) {
            Ok(()) => verdict,
            Err((denial, malformed)) => {
                if let Some(MalformedRoute(why)) = malformed {
                    // The route's configuration is at fault, not the key: no key here.
                    if let Some(held_back) = self.route_warnings.admit(Instant::now()) {
                        warn!(
                            "ext_authz: a route's keysync.scopes is malformed ({why}); it \
                             refuses every key{}",
                            held_back_note(held_back)
                        );
                    }
                }
                Verdict::Deny(denial)
            }
        }
    }

    async fn judge_key(&self, hash: &KeyHash, removal: CredentialRemoval) -> Verdict {
        if !self.readiness.is_ready() || self.confirmation.is_stale() {
            return Verdict::Deny(Denial::Unavailable);
        }
        if let Some(entry) = self.stored(hash) {
            return Verdict::of_entry(entry, removal, (self.clock)());
        }
        // The key may have been created since the key set last changed: decide once the
        // key set has caught up with it, like `LookupKey`, or after the wait.
        let caught_up = tokio::time::timeout(self.catch_up_wait, self.misses.settle()).await;
        let found = self.stored(hash);
        let key_hash = hash.short();
        match caught_up {
            Ok(Ok(answered_by)) => debug!(
                "ext_authz cache miss: key_hash={key_hash}... {} ({})",
                if found.is_some() {
                    "found"
                } else {
                    "not found"
                },
                answered_by.describe()
            ),
            Ok(Err(error)) => debug!(
                "ext_authz cache miss: key_hash={key_hash}... {error}, decided from the key set"
            ),
            Err(_) => debug!(
                "ext_authz cache miss: key_hash={key_hash}... no catch-up within {:?}, \
                 decided from the key set",
                self.catch_up_wait
            ),
        }
        match found {
            Some(entry) => Verdict::of_entry(entry, removal, (self.clock)()),
            None => Verdict::Deny(Denial::InvalidKey),
        }
    }

    /// The key set's entry for `hash`, expired or not: expiry is judged by
    /// [`Verdict::of_entry`] against the clock, and a key the key set holds needs no
    /// catch-up even when it has expired. (At the epoch no key has expired yet, so the
    /// key set's own filter lets every entry through.)
    fn stored(&self, hash: &KeyHash) -> Option<KeyEntry> {
        self.key_set.read().get(hash.as_bytes(), 0)
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthzService {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let started = Instant::now();
        self.checks.mark();
        let verdict = self.judge(request.get_ref()).await;
        self.metrics
            .record_check(verdict.result(), started.elapsed());
        let provenance = Provenance {
            epoch: self.key_set.read().epoch(),
            confirmed_age_ms: self.confirmation.age_ms(),
        };
        check_response::answer(&verdict)
            .map(|response| Response::new(check_response::with_provenance(response, provenance)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
        HttpRequest, Request as AttributeRequest,
    };
    use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
    use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
    use envoy_types::pb::google::rpc;
    use tonic::Code;
    use uuid::Uuid;

    use super::*;
    use crate::metrics::Metrics;
    use crate::sync::confirmation::{testing, Bounds};
    use crate::sync::fake_catch_up::{self, Behaviour};
    use crate::sync::freshness::Freshness;

    const KEY: &str = "sk_live_0123456789abcdefABCDEF0123456789";
    const NEW_KEY: &str = "sk_live_CreatedAfterTheLastCatchUp000000";
    const UNKNOWN_KEY: &str = "sk_live_NobodyWasEverGivenThisKey0000000";

    fn entry(key: &str, expires_at: i64) -> KeyEntry {
        KeyEntry {
            key_hash: KeyHash::of_key(key.as_bytes()),
            key_id: Uuid::from_u128(0x11),
            org_id: Uuid::from_u128(0x22),
            expires_at,
            rate_limit: None,
            policy: None,
        }
    }

    struct Fixture {
        service: ExtAuthzService,
        readiness: Readiness,
        metrics: Arc<Metrics>,
        catch_ups: Arc<AtomicUsize>,
        /// Not current (the change listener is down) until a test says otherwise.
        freshness: Freshness,
        /// Confirmed when the fixture is made; stale after a minute.
        confirmation: Confirmation,
    }

    /// A ready service over `keys`, whose catch-ups behave as told, at unix second 1000.
    fn fixture(keys: Vec<KeyEntry>, behaviour: Behaviour) -> Fixture {
        let (key_set, catch_up, catch_ups) = fake_catch_up::key_set_and_catch_up(keys, behaviour);
        let readiness = Readiness::new();
        readiness.set_ready();
        let metrics = Arc::new(Metrics::new());
        let freshness = Freshness::new(metrics.sync.clone());
        let misses = Misses::new(catch_up, freshness.clone(), metrics.sync.clone());
        let confirmation = testing::confirmed(
            Bounds {
                max_staleness: Duration::from_secs(60),
                ..testing::BOUNDS
            },
            &metrics,
        );
        let mut service = ExtAuthzService::new(
            key_set,
            misses,
            readiness.clone(),
            metrics.ext_authz.clone(),
            confirmation.clone(),
        );
        service.clock = || 1000;
        Fixture {
            service,
            readiness,
            metrics,
            catch_ups,
            freshness,
            confirmation,
        }
    }

    fn check_request(headers: &[(&str, &str)]) -> CheckRequest {
        let headers: HashMap<String, String> = headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(AttributeRequest {
                    time: None,
                    http: Some(HttpRequest {
                        method: "GET".into(),
                        path: "/orders".into(),
                        headers,
                        ..HttpRequest::default()
                    }),
                }),
                ..AttributeContext::default()
            }),
        }
    }

    fn bearer(key: &str) -> CheckRequest {
        check_request(&[("authorization", &format!("Bearer {key}"))])
    }

    async fn check(service: &ExtAuthzService, request: CheckRequest) -> CheckResponse {
        service
            .check(Request::new(request))
            .await
            .unwrap()
            .into_inner()
    }

    fn rpc_code(response: &CheckResponse) -> rpc::Code {
        rpc::Code::try_from(response.status.as_ref().unwrap().code).unwrap()
    }

    /// The denied HTTP status and the body's `error`.
    fn denial(response: &CheckResponse) -> (i32, String) {
        match &response.http_response {
            Some(HttpResponse::DeniedResponse(denied)) => {
                let body: serde_json::Value = serde_json::from_str(&denied.body).unwrap();
                (
                    denied.status.as_ref().unwrap().code,
                    body["error"].as_str().unwrap().to_owned(),
                )
            }
            other => panic!("not denied: {other:?}"),
        }
    }

    /// The headers set and removed by an OK response.
    fn forwarded(response: &CheckResponse) -> (HashMap<String, String>, Vec<String>) {
        assert_eq!(rpc_code(response), rpc::Code::Ok);
        match &response.http_response {
            Some(HttpResponse::OkResponse(ok)) => (
                ok.headers
                    .iter()
                    .map(|option| {
                        let header = option.header.clone().unwrap();
                        (header.key, header.value)
                    })
                    .collect(),
                ok.headers_to_remove.clone(),
            ),
            other => panic!("not OK: {other:?}"),
        }
    }

    fn counted(metrics: &Metrics, result: &str) -> bool {
        metrics.encode().contains(&format!(
            "keysync_ext_authz_checks_total{{result=\"{result}\"}} 1\n"
        ))
    }

    #[tokio::test]
    async fn a_stored_key_is_allowed_with_its_identity() {
        let fixture = fixture(vec![entry(KEY, 0)], Behaviour::Fails);
        let response = check(&fixture.service, bearer(KEY)).await;
        let metadata = response.dynamic_metadata.clone().unwrap().fields;
        assert!(metadata.contains_key("keysync_epoch"));
        assert!(metadata.contains_key("keysync_confirmed_age_ms"));
        let (set, removed) = forwarded(&response);
        assert_eq!(set["x-org-id"], Uuid::from_u128(0x22).to_string());
        assert_eq!(set["x-api-key-id"], Uuid::from_u128(0x11).to_string());
        assert_eq!(
            removed[..2],
            ["authorization", "x-api-key"],
            "both credentials go"
        );
        assert_eq!(fixture.catch_ups.load(Ordering::SeqCst), 0);
        assert!(counted(&fixture.metrics, "allowed"));
        assert!(fixture
            .metrics
            .encode()
            .contains("keysync_ext_authz_duration_seconds_count 1\n"));
    }

    fn checksummed(random: &str) -> String {
        let body = format!("sk_live_{random}");
        format!("{body}{}", key_format::checksum_for(&body))
    }

    #[tokio::test]
    async fn a_mistyped_checksummed_key_is_refused_without_a_catch_up() {
        let good = checksummed("0123456789abcdefABCDEF0123456789");
        let fixture = fixture(vec![entry(&good, 0)], Behaviour::Fails);
        forwarded(&check(&fixture.service, bearer(&good)).await);

        let typo = good.replacen("sk_live_0", "sk_live_1", 1);
        let response = check(&fixture.service, bearer(&typo)).await;
        assert_eq!(denial(&response), (403, "invalid_api_key".to_owned()));
        assert_eq!(fixture.catch_ups.load(Ordering::SeqCst), 0, "no lookup");
        // Decided by its form alone, so even before the first snapshot.
        let unready = ExtAuthzService {
            readiness: Readiness::new(),
            ..fixture.service.clone()
        };
        let response = check(&unready, bearer(&typo)).await;
        assert_eq!(denial(&response).0, 403);
    }

    #[tokio::test]
    async fn legacy_keys_are_refused_once_turned_off() {
        let good = checksummed("0123456789abcdefABCDEF0123456789");
        let fixture = fixture(vec![entry(KEY, 0), entry(&good, 0)], Behaviour::Fails);
        forwarded(&check(&fixture.service, bearer(KEY)).await);
        let strict = fixture.service.clone().accepting_legacy_keys(false);
        let response = check(&strict, bearer(KEY)).await;
        assert_eq!(denial(&response), (403, "invalid_api_key".to_owned()));
        forwarded(&check(&strict, bearer(&good)).await);
    }

    #[tokio::test]
    async fn x_api_key_works_and_is_the_header_removed() {
        let fixture = fixture(vec![entry(KEY, 0)], Behaviour::Fails);
        let response = check(&fixture.service, check_request(&[("x-api-key", KEY)])).await;
        let (_, removed) = forwarded(&response);
        assert_eq!(removed[0], "x-api-key");
        // Another scheme in Authorization falls back to x-api-key.
        let response = check(
            &fixture.service,
            check_request(&[("authorization", "Basic dXNlcjpwYXNz"), ("x-api-key", KEY)]),
        )
        .await;
        let removed = forwarded(&response).1;
        assert_eq!(removed[0], "x-api-key");
        assert!(
            !removed.contains(&"authorization".to_string()),
            "Basic is the backend's"
        );
        // A key of ours under another scheme is a credential all the same.
        let smuggled = format!("Basic {KEY}");
        let response = check(
            &fixture.service,
            check_request(&[("authorization", &smuggled), ("x-api-key", KEY)]),
        )
        .await;
        assert_eq!(forwarded(&response).1[..2], ["authorization", "x-api-key"]);
    }

    /// `KEYSYNC_CREDENTIALS` with a query parameter and a cookie: the key is found there,
    /// taken off `:path` and `Cookie`, and two that disagree are refused.
    #[tokio::test]
    async fn query_and_cookie_keys_are_found_and_taken_off() {
        let raw: Vec<keysync_contract::credential_sources::RawSource> = serde_json::from_str(
            r#"[{"header":"x-api-key"},{"query":"api_key"},{"cookie":"session"}]"#,
        )
        .unwrap();
        let mut fixture = fixture(vec![entry(KEY, 0)], Behaviour::Fails);
        fixture.service = fixture
            .service
            .reading_credentials_from(CredentialSources::new(&raw).unwrap());
        let with_path = |path: &str, headers: &[(&str, &str)]| {
            let mut request = check_request(headers);
            let attributes = request.attributes.as_mut().unwrap();
            attributes
                .request
                .as_mut()
                .unwrap()
                .http
                .as_mut()
                .unwrap()
                .path = path.to_owned();
            request
        };
        let path = format!("/orders?b=2&api_key={}&&a=%2F", KEY.replace('_', "%5F"));
        let response = check(&fixture.service, with_path(&path, &[])).await;
        let (set, removed) = forwarded(&response);
        assert_eq!(set[":path"], "/orders?b=2&&a=%2F");
        assert!(!removed.contains(&"cookie".to_owned()));

        let cookie = format!("theme=dark; session={KEY}");
        let response = check(
            &fixture.service,
            with_path("/orders", &[("cookie", &cookie)]),
        )
        .await;
        let (set, _) = forwarded(&response);
        assert_eq!(set["cookie"], "theme=dark");
        assert!(!set.contains_key(":path"));

        let path = format!("/orders?api_key={KEY}");
        let other = format!("session={UNKNOWN_KEY}");
        let response = check(&fixture.service, with_path(&path, &[("cookie", &other)])).await;
        assert_eq!(denial(&response).0, 403);
    }

    /// A request with `key` from `source`, to a route that requires `scopes`.
    fn policed(key: &str, source: &str, scopes: Option<&str>) -> CheckRequest {
        use envoy_types::pb::envoy::config::core::v3::{address, Address, Metadata, SocketAddress};
        use envoy_types::pb::envoy::service::auth::v3::attribute_context::Peer;
        use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
        let mut request = bearer(key);
        let attributes = request.attributes.as_mut().unwrap();
        attributes.source = Some(Peer {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: source.to_owned(),
                    ..SocketAddress::default()
                })),
            }),
            ..Peer::default()
        });
        attributes.route_metadata_context = scopes.map(|scopes| Metadata {
            filter_metadata: HashMap::from([(
                "keysync".to_owned(),
                Struct {
                    fields: HashMap::from([(
                        "scopes".to_owned(),
                        Value {
                            kind: Some(Kind::StringValue(scopes.to_owned())),
                        },
                    )]),
                },
            )]),
            ..Metadata::default()
        });
        request
    }

    #[tokio::test]
    async fn a_key_s_policy_answers_like_the_filter_and_sets_no_rate_limit_headers() {
        let policy = crate::key_set::key_policy::PolicyColumns {
            scopes: vec!["orders:read".to_owned()],
            allowed_networks: vec!["203.0.113.0/24".to_owned()],
        }
        .resolve(Uuid::nil());
        let limited = KeyEntry {
            policy,
            rate_limit: Some(keysync_contract::limit::KeyLimit {
                limit: keysync_contract::limit::Limit {
                    requests_per_minute: 1,
                    burst: 0,
                },
                per_key: true,
            }),
            ..entry(KEY, 0)
        };
        let fixture = fixture(vec![limited], Behaviour::Fails);
        let service = &fixture.service;

        let (set, _) =
            forwarded(&check(service, policed(KEY, "203.0.113.5", Some("orders:read"))).await);
        assert!(set.contains_key("x-keysync-rl-subject"), "allowed: counted");

        let response = check(service, policed(KEY, "198.51.100.5", Some("orders:read"))).await;
        assert_eq!(rpc_code(&response), rpc::Code::PermissionDenied);
        assert_eq!(denial(&response), (403, "ip_not_allowed".to_owned()));

        let response = check(service, policed(KEY, "203.0.113.5", Some("orders:write"))).await;
        assert_eq!(denial(&response), (403, "insufficient_scope".to_owned()));
        let Some(HttpResponse::DeniedResponse(denied)) = &response.http_response else {
            panic!("not denied");
        };
        let challenge: Vec<_> = denied
            .headers
            .iter()
            .filter_map(|option| option.header.as_ref())
            .filter(|header| header.key == "www-authenticate")
            .map(|header| header.value.as_str())
            .collect();
        assert_eq!(challenge, ["Bearer error=\"insufficient_scope\""]);
        assert!(
            !denied.headers.iter().any(|option| option
                .header
                .as_ref()
                .is_some_and(|header| header.key.starts_with("x-keysync-rl"))),
            "a refused request is not counted"
        );
        // Outside the allowlist and lacking the scope: the allowlist answers.
        let response = check(service, policed(KEY, "198.51.100.5", Some("billing:read"))).await;
        assert_eq!(denial(&response), (403, "ip_not_allowed".to_owned()));
        // A malformed route refuses the key whatever it grants.
        let response = check(service, policed(KEY, "203.0.113.5", Some("Orders:Read"))).await;
        assert_eq!(denial(&response), (403, "insufficient_scope".to_owned()));
        assert!(counted(&fixture.metrics, "allowed"));
        for (result, count) in [("ip_not_allowed", 2), ("insufficient_scope", 2)] {
            assert!(
                fixture.metrics.encode().contains(&format!(
                    "keysync_ext_authz_checks_total{{result=\"{result}\"}} {count}\n"
                )),
                "{result}"
            );
        }
    }

    #[tokio::test]
    async fn keys_without_policy_pass_routes_without_scopes_only() {
        let fixture = fixture(vec![entry(KEY, 0)], Behaviour::Fails);
        forwarded(&check(&fixture.service, policed(KEY, "198.51.100.5", None)).await);
        forwarded(&check(&fixture.service, policed(KEY, "not an address", Some(" "))).await);
        let response = check(
            &fixture.service,
            policed(KEY, "198.51.100.5", Some("orders:read")),
        )
        .await;
        assert_eq!(denial(&response), (403, "insufficient_scope".to_owned()));
    }

    #[tokio::test]
    async fn no_credential_is_401_even_before_the_first_snapshot() {
        let fixture = fixture(vec![], Behaviour::Fails);
        let service = ExtAuthzService {
            readiness: Readiness::new(),
            ..fixture.service.clone()
        };
        for request in [
            check_request(&[]),
            check_request(&[("authorization", "")]),
            check_request(&[("authorization", "Bearer")]),
            check_request(&[("authorization", "Basic dXNlcjpwYXNz")]),
            CheckRequest::default(),
        ] {
            let response = check(&service, request).await;
            assert_eq!(rpc_code(&response), rpc::Code::Unauthenticated);
            assert_eq!(denial(&response), (401, "missing_api_key".to_owned()));
        }
        assert_eq!(fixture.catch_ups.load(Ordering::SeqCst), 0);
        assert!(fixture
            .metrics
            .encode()
            .contains("keysync_ext_authz_checks_total{result=\"missing\"} 5\n"));
    }

    #[tokio::test]
    async fn malformed_credentials_are_403_without_a_lookup() {
        let fixture = fixture(vec![entry(KEY, 0)], Behaviour::Fails);
        let joined = format!("Bearer {KEY},Bearer {KEY}");
        let double_space = format!("Bearer  {KEY}");
        let tab = format!("Bearer \t{KEY}");
        for value in [
            joined.as_str(),
            double_space.as_str(),
            tab.as_str(),
            "Bearer sk_live_short",
        ] {
            let response =
                check(&fixture.service, check_request(&[("authorization", value)])).await;
            assert_eq!(rpc_code(&response), rpc::Code::PermissionDenied, "{value}");
            assert_eq!(denial(&response), (403, "invalid_api_key".to_owned()));
        }
        assert_eq!(fixture.catch_ups.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_new_key_waits_for_a_catch_up_and_is_allowed() {
        let fixture = fixture(vec![entry(KEY, 0)], Behaviour::Adds(entry(NEW_KEY, 0)));
        let response = check(&fixture.service, bearer(NEW_KEY)).await;
        forwarded(&response);
        assert_eq!(fixture.catch_ups.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_unknown_key_is_invalid_after_the_catch_up() {
        let fixture = fixture(vec![entry(KEY, 0)], Behaviour::Adds(entry(NEW_KEY, 0)));
        let response = check(&fixture.service, bearer(UNKNOWN_KEY)).await;
        assert_eq!(denial(&response), (403, "invalid_api_key".to_owned()));
        assert_eq!(fixture.catch_ups.load(Ordering::SeqCst), 1);
        assert!(counted(&fixture.metrics, "invalid"));
    }

    #[tokio::test(start_paused = true)]
    async fn while_notifications_keep_the_store_current_unknown_keys_cost_no_catch_up() {
        let fixture = fixture(vec![entry(KEY, 0)], Behaviour::Hangs);
        fixture.freshness.set_listening(true);
        let asked = tokio::time::Instant::now();
        for _ in 0..5 {
            let response = check(&fixture.service, bearer(UNKNOWN_KEY)).await;
            assert_eq!(denial(&response), (403, "invalid_api_key".to_owned()));
        }
        assert_eq!(
            asked.elapsed(),
            crate::sync::miss::NOTIFY_GRACE * 5,
            "only the grace for a late notification"
        );
        assert_eq!(fixture.catch_ups.load(Ordering::SeqCst), 0);
        assert!(fixture
            .metrics
            .encode()
            .contains("keysync_misses_total{answered_by=\"store\"} 5\n"));
        forwarded(&check(&fixture.service, bearer(KEY)).await);
    }

    #[tokio::test]
    async fn a_failed_catch_up_leaves_the_store_to_decide() {
        let fixture = fixture(vec![entry(KEY, 0)], Behaviour::Fails);
        let response = check(&fixture.service, bearer(UNKNOWN_KEY)).await;
        assert_eq!(denial(&response), (403, "invalid_api_key".to_owned()));
        assert_eq!(fixture.catch_ups.load(Ordering::SeqCst), 1);
        // Known keys are unaffected.
        forwarded(&check(&fixture.service, bearer(KEY)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_catch_up_that_never_ends_is_waited_for_only_so_long() {
        let fixture = fixture(vec![entry(KEY, 0)], Behaviour::Hangs);
        let asked = tokio::time::Instant::now();
        let response = check(&fixture.service, bearer(UNKNOWN_KEY)).await;
        assert_eq!(denial(&response), (403, "invalid_api_key".to_owned()));
        assert_eq!(asked.elapsed(), CATCH_UP_WAIT);
    }

    #[tokio::test]
    async fn expiry_is_checked_against_the_clock_of_the_request() {
        let fixture = fixture(vec![entry(KEY, 1000)], Behaviour::Fails);
        let mut service = fixture.service.clone();
        service.clock = || 999;
        forwarded(&check(&service, bearer(KEY)).await);
        service.clock = || 1000;
        let response = check(&service, bearer(KEY)).await;
        assert_eq!(denial(&response), (403, "invalid_api_key".to_owned()));
        assert_eq!(
            fixture.catch_ups.load(Ordering::SeqCst),
            0,
            "an expired key the key set holds needs no catch-up"
        );
    }

    #[tokio::test]
    async fn a_key_before_the_first_snapshot_is_unavailable() {
        let fixture = fixture(vec![entry(KEY, 0)], Behaviour::Fails);
        let service = ExtAuthzService {
            readiness: Readiness::new(),
            ..fixture.service.clone()
        };
        let error = service.check(Request::new(bearer(KEY))).await.unwrap_err();
        assert_eq!(error.code(), Code::Unavailable);
        assert!(counted(&fixture.metrics, "unavailable"));
        assert!(fixture.readiness.is_ready(), "only the copy was not ready");
        assert_eq!(fixture.catch_ups.load(Ordering::SeqCst), 0);
    }

    fn readiness_check(headers: &[(&str, &str)]) -> CheckRequest {
        let mut request = check_request(headers);
        if let Some(attributes) = request.attributes.as_mut() {
            attributes
                .context_extensions
                .insert("keysync".into(), "readiness".into());
        }
        request
    }

    #[tokio::test(start_paused = true)]
    async fn a_readiness_check_is_unavailable_until_the_first_snapshot_then_ok_for_good() {
        let fixture = fixture(vec![entry(KEY, 0)], Behaviour::Fails);
        let unready = ExtAuthzService {
            readiness: Readiness::new(),
            ..fixture.service.clone()
        };
        let error = unready
            .check(Request::new(readiness_check(&[])))
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::Unavailable);
        assert!(counted(&fixture.metrics, "unavailable"));

        // Ready: passed on untouched, with or without a credential, and no key judged.
        for headers in [&[][..], &[("authorization", "Bearer sk_live_junk")][..]] {
            let response = check(&fixture.service, readiness_check(headers)).await;
            assert_eq!(rpc_code(&response), rpc::Code::Ok);
            let Some(HttpResponse::OkResponse(ok)) = &response.http_response else {
                panic!("not an OK response: {response:?}");
            };
            assert!(ok.headers.is_empty() && ok.headers_to_remove.is_empty());
        }
        assert!(fixture
            .metrics
            .encode()
            .contains("keysync_ext_authz_checks_total{result=\"ready\"} 2\n"));
        // Cut off from PostgreSQL past KEYSYNC_MAX_STALENESS: keys are not decided, but
        // the gateway stays in its load balancer.
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(
            rpc_code(&check(&fixture.service, readiness_check(&[])).await),
            rpc::Code::Ok
        );
        // Without the route's mark, /health would be an ordinary request: 401.
        let response = check(&fixture.service, check_request(&[])).await;
        assert_eq!(denial(&response).0, 401);
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_not_decided_once_the_key_set_is_stale() {
        let fixture = fixture(vec![entry(KEY, 0)], Behaviour::Fails);
        forwarded(&check(&fixture.service, bearer(KEY)).await);
        // Cut off from PostgreSQL longer than KEYSYNC_MAX_STALENESS: a revoked key might
        // still be in the key set, so no key is decided.
        tokio::time::advance(Duration::from_secs(61)).await;
        let error = fixture
            .service
            .check(Request::new(bearer(KEY)))
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::Unavailable);
        assert!(counted(&fixture.metrics, "unavailable"));
        // A missing credential is still a 401: nothing stale about that.
        let response = check(&fixture.service, check_request(&[])).await;
        assert_eq!(denial(&response), (401, "missing_api_key".to_owned()));
        // Confirmed again: decided again.
        fixture.confirmation.confirm(tokio::time::Instant::now());
        forwarded(&check(&fixture.service, bearer(KEY)).await);
    }
}

//! Envoy's rate-limit service (`envoy.service.ratelimit.v3.RateLimitService`) on the
//! gRPC port of a real `keysync serve`, counting in a real Redis: exact budgets and
//! their headers, subjects counted apart, counts that outlive a keysync restart and are
//! shared by several keysync processes, and Redis outages (fail open by default, fail
//! closed when asked, counting again once Redis is back).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::serve::*;
use common::*;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use keysync_e2e::redis::TestRedis;
use tonic::transport::Channel;
use uuid::Uuid;

/// How long Redis coming back may take to show (PINGs every 5 s; calls retry after 1 s).
const RECOVERY: Duration = Duration::from_secs(15);

fn org_subject() -> String {
    format!("org:{}", Uuid::new_v4())
}

fn key_subject() -> String {
    format!("key:{}", Uuid::new_v4())
}

fn descriptor(entries: &[(&str, &str)]) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(key, value)| Entry {
                key: (*key).to_owned(),
                value: (*value).to_owned(),
            })
            .collect(),
        ..RateLimitDescriptor::default()
    }
}

async fn should_rate_limit(
    channel: &Channel,
    descriptors: Vec<RateLimitDescriptor>,
) -> RateLimitResponse {
    RateLimitServiceClient::new(channel.clone())
        .should_rate_limit(RateLimitRequest {
            domain: "keysync".to_owned(),
            descriptors,
            hits_addend: 0,
        })
        .await
        .expect("ShouldRateLimit answers")
        .into_inner()
}

/// One request counted against `subject` with limit `limit` (`<rpm>+<burst>`).
async fn hit(channel: &Channel, subject: &str, limit: &str) -> RateLimitResponse {
    should_rate_limit(
        channel,
        vec![descriptor(&[
            ("keysync_subject", subject),
            ("keysync_limit", limit),
        ])],
    )
    .await
}

/// Hits `subject` until keysync answers OVER_LIMIT (Redis counting again), within
/// `RECOVERY`; `what` names the wait in the failure.
async fn until_over_limit(
    channel: &Channel,
    subject: &str,
    limit: &str,
    what: &str,
) -> RateLimitResponse {
    let deadline = Instant::now() + RECOVERY;
    loop {
        let response = hit(channel, subject, limit).await;
        if code(&response) == Code::OverLimit {
            return response;
        }
        assert!(Instant::now() < deadline, "{what} within {RECOVERY:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn code(response: &RateLimitResponse) -> Code {
    Code::try_from(response.overall_code).unwrap()
}

fn header<'a>(response: &'a RateLimitResponse, name: &str) -> Option<&'a str> {
    response
        .response_headers_to_add
        .iter()
        .find(|header| header.key == name)
        .map(|header| header.value.as_str())
}

/// One member (`limit`, `remaining`, `reset`) of the `ratelimit` header.
fn ratelimit_member(response: &RateLimitResponse, name: &str) -> u64 {
    let value = header(response, "ratelimit").expect("a ratelimit header");
    value
        .split(", ")
        .find_map(|member| member.strip_prefix(name)?.strip_prefix('='))
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {value:?}"))
}

fn remaining_and_reset(response: &RateLimitResponse) -> (u64, u64) {
    (
        ratelimit_member(response, "remaining"),
        ratelimit_member(response, "reset"),
    )
}

/// Waits, when the current minute has less than `needed` left, for the next one, so
/// the calls of a test that follow all land in one window.
async fn in_one_window(needed: Duration) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into_minute = Duration::from_millis(u64::try_from(now.as_millis() % 60_000).unwrap());
    let left = Duration::from_secs(60) - into_minute;
    if left < needed {
        tokio::time::sleep(left + Duration::from_millis(200)).await;
    }
}

fn metrics(serve: &Serve) -> String {
    let (status, text) = http_get(serve.http, "/metrics");
    assert_eq!(status, 200);
    text
}

async fn start_with_redis(url: &str, redis: &TestRedis, env: &[(&str, &str)]) -> Serve {
    let redis_url = redis.url();
    let mut all = vec![("REDIS_URL", redis_url.as_str())];
    all.extend_from_slice(env);
    let serve = start_serve(url, &all).await;
    serve.process.wait_for_log(
        &format!("global rate limiting on: redis={redis_url} failure_mode="),
        Duration::from_secs(10),
    );
    serve
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_budget_then_over_limit_with_headers() {
    let (_postgres, url) = migrated_database();
    let redis = TestRedis::start();
    let serve = start_with_redis(&url, &redis, &[]).await;
    serve
        .process
        .wait_for_log("redis reachable", Duration::from_secs(10));
    let channel = &serve.channel;
    let org = org_subject();

    in_one_window(Duration::from_secs(10)).await;
    for n in 1..=100u64 {
        let response = hit(channel, &org, "80+20").await;
        assert_eq!(code(&response), Code::Ok, "request {n}");
        assert_eq!(ratelimit_member(&response, "limit"), 100);
        // The policy comes with refusals only.
        assert_eq!(header(&response, "ratelimit-policy"), None);
        let (remaining, reset) = remaining_and_reset(&response);
        assert_eq!(remaining, 100 - n);
        assert!((1..=60).contains(&reset), "{reset}");
        assert_eq!(header(&response, "retry-after"), None);
        let status = &response.statuses[0];
        assert_eq!(status.code, Code::Ok as i32);
        assert_eq!(u64::from(status.limit_remaining), 100 - n);
        let limit = status.current_limit.as_ref().unwrap();
        assert_eq!(limit.requests_per_unit, 100);
        assert_eq!(limit.unit, Unit::Minute as i32);
        assert_eq!(
            u64::try_from(status.duration_until_reset.unwrap().seconds).unwrap(),
            reset
        );
    }
    let refused = hit(channel, &org, "80+20").await;
    assert_eq!(code(&refused), Code::OverLimit);
    assert_eq!(refused.statuses[0].code, Code::OverLimit as i32);
    assert_eq!(refused.statuses[0].limit_remaining, 0);
    let (remaining, reset) = remaining_and_reset(&refused);
    assert_eq!(remaining, 0);
    assert_eq!(
        header(&refused, "retry-after"),
        Some(reset.to_string().as_str())
    );
    assert_eq!(header(&refused, "ratelimit-policy"), Some("100;w=60"));

    // Another subject has its own count.
    let key = key_subject();
    let response = hit(channel, &key, "5+0").await;
    assert_eq!(code(&response), Code::Ok);
    assert_eq!(remaining_and_reset(&response).0, 4);
    assert_eq!(ratelimit_member(&response, "limit"), 5);

    // Descriptors that are not ours are allowed and not counted.
    let response = should_rate_limit(
        channel,
        vec![
            descriptor(&[("generic_key", "anything")]),
            descriptor(&[("keysync_subject", &org)]),
            descriptor(&[("keysync_subject", "org:"), ("keysync_limit", "1+0")]),
        ],
    )
    .await;
    assert_eq!(code(&response), Code::Ok);
    assert_eq!(response.statuses.len(), 3);
    assert!(response.response_headers_to_add.is_empty());
    serve.process.wait_for_log(
        "rate limit descriptor ignored: keysync_subject \"org:\"",
        Duration::from_secs(5),
    );

    // In Redis: one counter per subject and window, expiring within two windows.
    let mut connection = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut counters: Vec<String> = redis::cmd("KEYS")
        .arg("keysync:ratelimit:*")
        .query(&mut connection)
        .unwrap();
    counters.sort();
    assert_eq!(counters.len(), 2, "{counters:?}");
    let org_counter = counters
        .iter()
        .find(|name| name.contains(&org))
        .unwrap_or_else(|| panic!("no counter for {org} in {counters:?}"));
    let window = org_counter.rsplit(':').next().unwrap();
    assert_eq!(*org_counter, format!("keysync:ratelimit:{org}:{window}"));
    let count: u64 = redis::cmd("GET")
        .arg(org_counter)
        .query(&mut connection)
        .unwrap();
    assert_eq!(count, 101);
    let ttl: i64 = redis::cmd("TTL")
        .arg(org_counter)
        .query(&mut connection)
        .unwrap();
    assert!((60..=120).contains(&ttl), "ttl {ttl}");

    let text = metrics(&serve);
    assert_eq!(
        metric(&text, "keysync_ratelimit_requests_total{result=\"ok\"}"),
        102.0
    );
    assert_eq!(
        metric(
            &text,
            "keysync_ratelimit_requests_total{result=\"over_limit\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(&text, "keysync_ratelimit_requests_total{result=\"error\"}"),
        0.0
    );
    assert_eq!(metric(&text, "keysync_ratelimit_redis_errors_total"), 0.0);
    assert_eq!(metric(&text, "keysync_ratelimit_redis_up"), 1.0);
    assert_eq!(
        metric(&text, "keysync_ratelimit_duration_seconds_count"),
        103.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_outlive_a_restart_and_are_shared_by_several_processes() {
    let (_postgres, url) = migrated_database();
    let redis = TestRedis::start();
    let org = org_subject();
    // Two keysync starts and some 100 calls must fit in one window.
    in_one_window(Duration::from_secs(40)).await;

    let mut first = start_with_redis(&url, &redis, &[]).await;
    for _ in 0..30 {
        assert_eq!(code(&hit(&first.channel, &org, "100+0").await), Code::Ok);
    }
    first.process.terminate();
    let restarted = start_with_redis(&url, &redis, &[]).await;
    let response = hit(&restarted.channel, &org, "100+0").await;
    assert_eq!(
        remaining_and_reset(&response).0,
        69,
        "the restart lost the count"
    );

    // A second process on the same Redis draws on the same budget.
    let second = start_with_redis(&url, &redis, &[]).await;
    let mut remaining = 69;
    for round in 0..69 {
        let channel = if round % 2 == 0 {
            &second.channel
        } else {
            &restarted.channel
        };
        let response = hit(channel, &org, "100+0").await;
        remaining -= 1;
        assert_eq!(code(&response), Code::Ok, "round {round}");
        assert_eq!(remaining_and_reset(&response).0, remaining);
    }
    for channel in [&second.channel, &restarted.channel] {
        assert_eq!(code(&hit(channel, &org, "100+0").await), Code::OverLimit);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_open_and_limiting_resumes_when_it_is_back() {
    let (_postgres, url) = migrated_database();
    let mut redis = TestRedis::start();
    let serve = start_with_redis(&url, &redis, &[]).await;
    serve
        .process
        .wait_for_log("failure_mode=open", Duration::from_secs(1));
    let channel = &serve.channel;
    let org = org_subject();

    in_one_window(Duration::from_secs(10)).await;
    for _ in 0..3 {
        assert_eq!(code(&hit(channel, &org, "3+0").await), Code::Ok);
    }
    assert_eq!(code(&hit(channel, &org, "3+0").await), Code::OverLimit);

    let offset = serve.process.log_len();
    redis.stop();
    // Over its budget, yet allowed: nothing can be counted, so nothing is refused.
    for _ in 0..5 {
        let response = hit(channel, &org, "3+0").await;
        assert_eq!(code(&response), Code::Ok);
        assert!(response.response_headers_to_add.is_empty());
    }
    let text = metrics(&serve);
    assert!(
        metric(&text, "keysync_ratelimit_redis_errors_total") >= 1.0,
        "{text}"
    );
    assert_eq!(metric(&text, "keysync_ratelimit_redis_up"), 0.0);
    assert_eq!(
        metric(&text, "keysync_ratelimit_requests_total{result=\"error\"}"),
        5.0
    );
    let line = serve
        .process
        .wait_for_log_after(offset, "redis error: ", Duration::from_secs(5));
    assert!(line.contains("failing open"), "{line}");

    // Back (empty: the test Redis keeps nothing): counting and refusing resume.
    let offset = serve.process.log_len();
    redis.start_again();
    let response = until_over_limit(channel, &org, "3+0", "limiting did not resume").await;
    assert!(header(&response, "retry-after").is_some());
    serve
        .process
        .wait_for_log_after(offset, "redis reachable", Duration::from_secs(1));
    assert_eq!(metric(&metrics(&serve), "keysync_ratelimit_redis_up"), 1.0);
    // Said once when it went, and not on every failed call.
    let log = serve.process.log();
    assert!(log.matches("redis error: ").count() <= 3, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed_when_configured() {
    let (_postgres, url) = migrated_database();
    let mut redis = TestRedis::start();
    let serve = start_with_redis(
        &url,
        &redis,
        &[("KEYSYNC_RATELIMIT_FAILURE_MODE", "closed")],
    )
    .await;
    serve
        .process
        .wait_for_log("failure_mode=closed", Duration::from_secs(1));
    let channel = &serve.channel;
    let org = org_subject();
    assert_eq!(code(&hit(channel, &org, "100+0").await), Code::Ok);

    redis.stop();
    let response = hit(channel, &org, "100+0").await;
    assert_eq!(code(&response), Code::OverLimit);
    assert_eq!(response.statuses[0].code, Code::OverLimit as i32);
    assert!(response.response_headers_to_add.is_empty());
    // A request with nothing of ours is never refused.
    let response = should_rate_limit(channel, vec![descriptor(&[("generic_key", "x")])]).await;
    assert_eq!(code(&response), Code::Ok);
    let line = serve
        .process
        .wait_for_log("redis error: ", Duration::from_secs(5));
    assert!(line.contains("failing closed"), "{line}");
    assert_eq!(metric(&metrics(&serve), "keysync_ratelimit_redis_up"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_url_every_call_is_ok() {
    let (_postgres, url) = migrated_database();
    let serve = start_serve(&url, &[]).await;
    serve.process.wait_for_log(
        "global rate limiting off: REDIS_URL not set",
        Duration::from_secs(1),
    );
    let org = org_subject();
    for _ in 0..3 {
        let response = hit(&serve.channel, &org, "1+0").await;
        assert_eq!(code(&response), Code::Ok);
        assert!(response.response_headers_to_add.is_empty());
    }
    let text = metrics(&serve);
    assert_eq!(
        metric(&text, "keysync_ratelimit_requests_total{result=\"ok\"}"),
        3.0
    );
    assert_eq!(metric(&text, "keysync_ratelimit_redis_up"), 0.0);
    // KeySync answers on the same port.
    list_page(&serve.channel, &[], 1).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_password_never_shows_and_a_refused_auth_heals() {
    const SECRET: &str = "redis-secret-not-for-logs";
    let (_postgres, url) = migrated_database();
    // The test Redis has no password, so AUTH fails: a Redis error with the password in
    // play, answered by failing open.
    let redis = TestRedis::start();
    let redis_url = format!("redis://:{SECRET}@127.0.0.1:{}/0", redis.port());
    let serve = start_serve(&url, &[("REDIS_URL", &redis_url)]).await;
    serve.process.wait_for_log(
        &format!(
            "global rate limiting on: redis=redis://:***@127.0.0.1:{}/0 failure_mode=open",
            redis.port()
        ),
        Duration::from_secs(1),
    );
    serve
        .process
        .wait_for_log("redis error: ", Duration::from_secs(10));
    let org = org_subject();
    let response = hit(&serve.channel, &org, "1+0").await;
    assert_eq!(code(&response), Code::Ok);
    assert!(response.response_headers_to_add.is_empty());

    // Once Redis wants that password, keysync gets in (a refused AUTH does not leave
    // it stuck on the failed connection) and counts.
    let mut connection = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(SECRET)
        .query(&mut connection)
        .unwrap();
    until_over_limit(&serve.channel, &org, "1+0", "not counting").await;
    let log = serve.process.log();
    assert!(!log.contains(SECRET), "password in log:\n{log}");
    assert_no_secrets(&log, &[]);

    // A malformed URL is refused at start, without repeating it.
    let mut bad = command(Some(&url), &["serve"]);
    bad.env("REDIS_URL", format!("http://:{SECRET}@127.0.0.1:1/0"));
    let run: Run = bad.output().unwrap().into();
    assert_one_line_error(&run, "invalid REDIS_URL='http://:***@127.0.0.1:1/0': ");
    assert!(!run.stderr.contains(SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_comes_up_after_keysync_is_used_once_up() {
    let (_postgres, url) = migrated_database();
    let mut redis = TestRedis::start();
    redis.stop();
    let serve = start_with_redis(&url, &redis, &[]).await;
    serve
        .process
        .wait_for_log("redis error: ", Duration::from_secs(10));
    let org = org_subject();
    let response = hit(&serve.channel, &org, "1+0").await;
    assert_eq!(code(&response), Code::Ok);
    assert!(response.response_headers_to_add.is_empty());

    redis.start_again();
    until_over_limit(&serve.channel, &org, "1+0", "Redis not used").await;
    serve
        .process
        .wait_for_log("redis reachable", Duration::from_secs(1));
}

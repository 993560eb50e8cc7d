//! Quota leases against a real PostgreSQL and a real `keysync serve`: grants to several
//! gateway instances never add up past the quota; the usage flushes move what was
//! granted into use (so a flush neither frees nor double-counts quota); a lease idle
//! past its life is released to others; the list of quotas is sent when it changed;
//! malformed calls are refused; a claim PostgreSQL fails is unavailable with a fixed
//! message (the database's text stays in keysync's log); a claim asks for at most what a gateway admits in a
//! lease's life, and one for a subject that does not exist gets nothing (both counted);
//! the 80% and 100% alerts are told once each.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Utc;
use common::serve::*;
use common::*;
use keysync_e2e::TestPostgres;
use keysync_proto::v1::{
    AcquireQuotaRequest, AcquireQuotaResponse, QuotaClaim, QuotaState, ReportUsageRequest,
    ReportUsageResponse, UsageCounter,
};
use tonic::transport::Channel;
use tonic::{Code, Status};
use uuid::Uuid;

const ACQUIRE: &str = "/keysync.v1.KeySync/AcquireQuota";
const REPORT: &str = "/keysync.v1.KeySync/ReportUsage";

fn bytes(text: &str) -> Vec<u8> {
    Uuid::parse_str(text).unwrap().as_bytes().to_vec()
}

async fn acquire(
    channel: &Channel,
    instance: Uuid,
    known_revision: u64,
    claims: Vec<QuotaClaim>,
) -> Result<AcquireQuotaResponse, Status> {
    let request = AcquireQuotaRequest {
        instance_id: instance.as_bytes().to_vec(),
        known_revision,
        claims,
    };
    call(channel, ACQUIRE, request).await
}

fn org_claim(org: &str, want: u64) -> QuotaClaim {
    QuotaClaim {
        subject_kind: 1,
        subject_id: bytes(org),
        want,
    }
}

/// The state of `org` in an answer.
fn state_of(answer: &AcquireQuotaResponse, org: &str) -> QuotaState {
    answer
        .quotas
        .iter()
        .find(|state| state.subject_kind == 1 && state.subject_id == bytes(org))
        .cloned()
        .unwrap_or_else(|| panic!("{org} not in {answer:?}"))
}

/// A cumulative flush of `requests` forwarded (2xx) requests of `key` in `org`.
async fn flush(channel: &Channel, instance: Uuid, org: &str, key: &str, requests: u64) {
    let request = ReportUsageRequest {
        instance_id: instance.as_bytes().to_vec(),
        cut_at_ms: Utc::now().timestamp_millis(),
        counters: vec![
            UsageCounter {
                org_id: bytes(org),
                key_id: bytes(key),
                outcome: 2,
                requests,
                duration_us: 0,
                duration_buckets: vec![requests, 0, 0, 0],
                request_bytes: 0,
                response_bytes: 0,
                endpoint: "-".into(),
            },
            // Refused requests use no quota.
            UsageCounter {
                org_id: bytes(org),
                key_id: bytes(key),
                outcome: 7,
                requests: 5,
                duration_us: 0,
                duration_buckets: vec![5, 0, 0, 0],
                request_bytes: 0,
                response_bytes: 0,
                endpoint: "-".into(),
            },
        ],
        unattributed_requests: 0,
        dropped_requests: 0,
        gateway: None,
    };
    let _: ReportUsageResponse = call(channel, REPORT, request).await.unwrap();
}

fn set_quota(postgres: &TestPostgres, url: &str, org: &str, limit: u64) {
    sql(
        postgres,
        url,
        &format!(
            "INSERT INTO quotas (subject_kind, subject_id, org_id, monthly_limit, reset_day) \
             VALUES (1, '{org}', '{org}', {limit}, 1) ON CONFLICT (subject_kind, subject_id) \
             DO UPDATE SET monthly_limit = EXCLUDED.monthly_limit; \
             SELECT nextval('quota_revision');"
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_to_all_instances_never_pass_the_quota_and_flushes_reconcile_them() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Metered");
    let key = create_key(&url, &org, "main", &[]);
    set_quota(&postgres, &url, &org, 100);
    let serve = start_serve(&url, &[]).await;
    let channel = &serve.channel;
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());

    // The list first: a gateway that knows no revision gets every quota.
    let listed = acquire(channel, a, 0, vec![]).await.unwrap();
    assert!(listed.full_list);
    assert!(listed.revision > 0);
    let state = state_of(&listed, &org);
    assert_eq!((state.monthly_limit, state.granted), (100, 0));
    assert!(state.resets_at_ms > Utc::now().timestamp_millis());
    // Known revision: no list again.
    let again = acquire(channel, a, listed.revision, vec![]).await.unwrap();
    assert!(!again.full_list);
    assert!(again.quotas.is_empty());

    // Three instances claim in turn, more than there is: together exactly the quota.
    let mut granted = [0u64; 3];
    let mut exhausted = false;
    for round in 0..100 {
        for (i, instance) in [a, b, c].into_iter().enumerate() {
            let answer = acquire(
                channel,
                instance,
                listed.revision,
                vec![org_claim(&org, 1000)],
            )
            .await
            .unwrap();
            let state = state_of(&answer, &org);
            assert!(state.granted >= granted[i], "grants are cumulative");
            granted[i] = state.granted;
            exhausted = state.exhausted;
        }
        if exhausted && granted.iter().sum::<u64>() == 100 {
            assert!(round > 2, "the last of the quota goes in smaller grants");
            break;
        }
    }
    assert_eq!(granted.iter().sum::<u64>(), 100, "{granted:?}");
    assert!(exhausted);
    let more = acquire(channel, a, listed.revision, vec![org_claim(&org, 1)])
        .await
        .unwrap();
    assert_eq!(state_of(&more, &org).granted, granted[0], "nothing more");

    // A flushes what it admitted (all its grant): used moves up, its lease down; still
    // nothing to grant to anyone.
    flush(channel, a, &org, &key.key_id, granted[0]).await;
    let used = sql(
        &postgres,
        &url,
        &format!("SELECT used FROM quota_usage WHERE subject_id = '{org}'"),
    );
    assert_eq!(
        used.trim(),
        granted[0].to_string(),
        "2xx only, not the refusals"
    );
    let flushed = sql(
        &postgres,
        &url,
        &format!("SELECT flushed FROM quota_leases WHERE instance_id = '{a}'"),
    );
    assert_eq!(flushed.trim(), granted[0].to_string());
    let none = acquire(channel, c, listed.revision, vec![org_claim(&org, 5)])
        .await
        .unwrap();
    assert_eq!(state_of(&none, &org).granted, granted[2]);

    // B went quiet for longer than a lease lives: what it never used is released.
    sql(
        &postgres,
        &url,
        &format!(
            "UPDATE quota_leases SET updated_at = now() - interval '2 minutes' \
             WHERE instance_id = '{b}'"
        ),
    );
    let released = acquire(channel, c, listed.revision, vec![org_claim(&org, 1000)])
        .await
        .unwrap();
    let got = state_of(&released, &org).granted - granted[2];
    assert!(
        got >= 1 && got <= granted[1],
        "got {got} of B's {}",
        granted[1]
    );

    // A quota raised: the list is sent again, and there is more to grant.
    set_quota(&postgres, &url, &org, 1000);
    let raised = acquire(channel, a, listed.revision, vec![org_claim(&org, 50)])
        .await
        .unwrap();
    assert!(raised.full_list);
    let state = state_of(&raised, &org);
    assert_eq!(state.monthly_limit, 1000);
    assert_eq!(state.granted, granted[0] + 50);
    assert!(!state.exhausted);

    // A subject without a quota: limit 0, nothing granted.
    let other = create_org(&url, "Free");
    let free = acquire(channel, a, raised.revision, vec![org_claim(&other, 10)])
        .await
        .unwrap();
    let state = state_of(&free, &other);
    assert_eq!((state.monthly_limit, state.granted), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_calls_are_refused_whole() {
    let (_postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let serve = start_serve(&url, &[]).await;
    let channel = &serve.channel;
    let instance = Uuid::new_v4();
    for claims in [
        vec![QuotaClaim {
            subject_kind: 9,
            subject_id: bytes(&org),
            want: 1,
        }],
        vec![QuotaClaim {
            subject_kind: 1,
            subject_id: vec![1; 3],
            want: 1,
        }],
        vec![org_claim(&org, 1), org_claim(&org, 2)],
    ] {
        let refused = acquire(channel, instance, 0, claims).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    }
    let (_, metrics) = http_get(serve.http, "/metrics");
    assert_eq!(
        metric(&metrics, "keysync_quota_calls_total{result=\"invalid\"}"),
        3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_the_database_refuses_is_unavailable_without_the_database_s_text() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    set_quota(&postgres, &url, &org, 1_000);
    let serve = start_serve(&url, &[]).await;
    let channel = &serve.channel;
    let instance = Uuid::new_v4();
    acquire(channel, instance, 0, vec![org_claim(&org, 10)])
        .await
        .unwrap();

    // Every claim now fails inside PostgreSQL, with PostgreSQL's own words
    // (`relation "quota_leases" does not exist`).
    sql(
        &postgres,
        &url,
        "ALTER TABLE quota_leases RENAME TO quota_leases_away",
    );
    let refused = acquire(channel, instance, 0, vec![org_claim(&org, 10)])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    // The caller (any holder of a gateway token) gets a fixed message; the cause is
    // keysync's log's.
    assert_eq!(refused.message(), "cannot grant quota now; ask again later");
    let log = serve.process.log();
    assert!(
        log.contains("quota claim not answered") && log.contains("quota_leases"),
        "{log}"
    );
    let (_, metrics) = http_get(serve.http, "/metrics");
    assert_eq!(
        metric(
            &metrics,
            "keysync_quota_calls_total{result=\"unavailable\"}"
        ),
        1.0
    );

    // The database whole again, the gateway's next claim is answered.
    sql(
        &postgres,
        &url,
        "ALTER TABLE quota_leases_away RENAME TO quota_leases",
    );
    let answer = acquire(channel, instance, 0, vec![org_claim(&org, 10)])
        .await
        .unwrap();
    // The instance's lease: the first claim's 10 and these; the failed claim added none.
    assert_eq!(state_of(&answer, &org).granted, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_bounded_and_unknown_subjects_get_nothing() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Big");
    set_quota(&postgres, &url, &org, 1_000_000_000_000);
    // 100 requests a second: a lease's minute is 6,000.
    let serve = start_serve(&url, &[("KEYSYNC_GATEWAY_MAX_RATE", "100")]).await;
    let channel = &serve.channel;
    let instance = Uuid::new_v4();

    let answer = acquire(channel, instance, 0, vec![org_claim(&org, 1_000_000_000)])
        .await
        .unwrap();
    assert_eq!(state_of(&answer, &org).granted, 6_000);
    // No organization has this id: no quota, nothing granted, nothing written.
    let ghost = Uuid::new_v4().to_string();
    let answer = acquire(channel, instance, 0, vec![org_claim(&ghost, 50)])
        .await
        .unwrap();
    let state = state_of(&answer, &ghost);
    assert_eq!((state.monthly_limit, state.granted), (0, 0));
    let key_claim = QuotaClaim {
        subject_kind: 2,
        subject_id: bytes(&Uuid::new_v4().to_string()),
        want: 7,
    };
    acquire(channel, instance, 0, vec![key_claim])
        .await
        .unwrap();
    assert_eq!(
        sql(
            &postgres,
            &url,
            &format!("SELECT count(*) FROM quota_leases WHERE subject_id = '{ghost}'")
        ),
        "0"
    );
    let (_, metrics) = http_get(serve.http, "/metrics");
    assert_eq!(
        metric(
            &metrics,
            "keysync_quota_refused_requests_total{reason=\"over_ceiling\"}"
        ),
        (1_000_000_000 - 6_000) as f64
    );
    assert_eq!(
        metric(
            &metrics,
            "keysync_quota_refused_requests_total{reason=\"unknown_subject\"}"
        ),
        57.0
    );
    assert_eq!(
        metric(&metrics, "keysync_quota_granted_requests_total"),
        6_000.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossing_80_and_100_percent_is_told_once_each() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Alerted");
    let key = create_key(&url, &org, "main", &[]);
    set_quota(&postgres, &url, &org, 100);
    let serve = start_serve(&url, &[]).await;
    let channel = &serve.channel;
    let instance = Uuid::new_v4();
    for (requests, eighty, hundred) in [
        (79, 0.0, 0.0),
        (80, 1.0, 0.0),
        (95, 1.0, 0.0),
        (100, 1.0, 1.0),
        (130, 1.0, 1.0),
    ] {
        flush(channel, instance, &org, &key.key_id, requests).await;
        let (_, metrics) = http_get(serve.http, "/metrics");
        assert_eq!(
            metric(&metrics, "keysync_quota_alerts_total{threshold=\"80\"}"),
            eighty,
            "after {requests}"
        );
        assert_eq!(
            metric(&metrics, "keysync_quota_alerts_total{threshold=\"100\"}"),
            hundred,
            "after {requests}"
        );
    }
    let log = serve.process.log();
    assert_eq!(log.matches("quota alert: org").count(), 2, "{log}");
    assert!(
        log.contains("used 100 of its monthly quota of 100 (100% reached"),
        "{log}"
    );
}

//! One alert per organization, kind and hour: however often an hour is judged, and
//! however many keysync replicas judge it.

use keysync::anomaly::evaluation::LOCK_KEY;
use keysync::usage::Outcome;

use super::*;
use crate::common::migrated_database;

/// An organization of 1,000 requests an hour for six weeks before `from`, then 9,000
/// an hour (a spike) from `from` for `hours` hours.
async fn surging(pool: &PgPool, org: Uuid, from: DateTime<Utc>, hours: i64) {
    let mut history = History::default();
    history.every_hour(org, weeks_before(from, 6), from, |_| {
        vec![(Outcome::Status2xx, 1_000)]
    });
    history.every_hour(org, from, from + TimeDelta::hours(hours), |_| {
        vec![(Outcome::Status2xx, 9_000)]
    });
    history.write(pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lasting_anomaly_is_one_alert_an_hour_however_often_it_is_judged() {
    let (_postgres, url) = migrated_database();
    let pool = pool(&url).await;
    let org = org(&url, "surging");
    let now = judged_at();
    let first = complete_hour(now);
    // The spike started an hour ago and goes on in the running hour.
    surging(&pool, org, first, 2).await;

    let mut raised = Vec::new();
    for minutes in [0, 1, 2, 10, 29] {
        let judged = judge(&pool, now + TimeDelta::minutes(minutes)).await;
        raised.extend(identities(&judged.raised));
    }
    let second = hour_of(now);
    assert_eq!(
        raised,
        [
            (org, "spike".to_owned(), first),
            (org, "spike".to_owned(), second)
        ],
        "the hour over, and the running one as soon as it passed the threshold"
    );
    // An hour later: the second hour judged whole is the alert raised while it ran.
    let judged = judge(&pool, now + TimeDelta::hours(1)).await;
    assert!(judged.raised.is_empty(), "{:?}", judged.raised);
    assert_eq!(stored(&pool).await, raised);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_evaluators_raise_an_alert_once() {
    let (_postgres, url) = migrated_database();
    // Each replica has its own pool, as two keysync processes would.
    let (replica_a, replica_b) = (pool(&url).await, pool(&url).await);
    let org = org(&url, "surging");
    let now = judged_at();
    let hour = complete_hour(now);
    surging(&replica_a, org, hour, 1).await;
    let settings = AnomalySettings::default();

    // Side by side: whichever comes second finds the lock taken (skipped) or the alert
    // stored (nothing raised); between them, one alert.
    let (a, b) = tokio::join!(
        evaluate(&replica_a, &settings, now),
        evaluate(&replica_b, &settings, now)
    );
    let raised: Vec<_> = [a.unwrap(), b.unwrap()]
        .into_iter()
        .flat_map(|evaluation| match evaluation {
            Evaluation::Judged(judged) => identities(&judged.raised),
            Evaluation::Skipped => Vec::new(),
        })
        .collect();
    assert_eq!(raised, [(org, "spike".to_owned(), hour)]);
    assert_eq!(stored(&replica_a).await, raised);

    // While another holds the evaluator's lock, an evaluation reads and stores nothing.
    let next = now + TimeDelta::hours(1);
    let mut spike = History::default();
    spike.add(org, complete_hour(next), Outcome::Status2xx, 9_000);
    spike.write(&replica_a).await;
    let mut other = replica_b.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *other)
        .await
        .unwrap();
    assert_eq!(
        evaluate(&replica_a, &settings, next).await.unwrap(),
        Evaluation::Skipped
    );
    assert_eq!(stored(&replica_a).await.len(), 1);
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *other)
        .await
        .unwrap();
    let judged = judge(&replica_a, next).await;
    assert_eq!(
        identities(&judged.raised),
        [(org, "spike".to_owned(), complete_hour(next))]
    );
    // And the other replica, coming after it, raises nothing.
    assert!(judge(&replica_b, next).await.raised.is_empty());
    assert_eq!(stored(&replica_b).await.len(), 2);
}

//! What one evaluation raises, and what it leaves alone, for seeded histories.

use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc, Weekday};
use keysync::anomaly::event::event_id;
use keysync::anomaly::kind::AnomalyKind;
use keysync::usage::Outcome;

use super::*;
use crate::common::migrated_database;

/// About 1,000 requests an hour, the same in the same hour of every week (so the
/// baseline's median is the value of any week before).
fn steady(hour: DateTime<Utc>) -> i64 {
    1_000 + i64::from(hour.hour()) * 3 + i64::from(hour.weekday().num_days_from_monday()) * 7
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spike_raises_exactly_one_alert() {
    let (_postgres, url) = migrated_database();
    let pool = pool(&url).await;
    let (spiking, steady_org) = (org(&url, "spiking"), org(&url, "steady"));
    let now = judged_at();
    let hour = complete_hour(now);
    let mut history = History::default();
    for org in [spiking, steady_org] {
        history.every_hour(org, weeks_before(hour, 6), hour, |at| {
            vec![(Outcome::Status2xx, steady(at))]
        });
    }
    // The steady one has a busy hour (under five times its median), the other a spike.
    history.add(steady_org, hour, Outcome::Status2xx, 4 * steady(hour));
    history.add(spiking, hour, Outcome::Status2xx, 7_000);
    history.add(spiking, hour, Outcome::Status4xx, 2_000);
    history.write(&pool).await;

    let judged = judge(&pool, now).await;
    assert_eq!((judged.organizations, judged.too_new), (2, 0));
    assert_eq!(judged.complete_hour, hour);
    assert_eq!(
        identities(&judged.raised),
        [(spiking, "spike".to_owned(), hour)]
    );
    let alert = &judged.raised[0];
    let median = steady(hour) as f64;
    assert!(alert.hour_complete);
    assert_eq!(alert.observed, 9_000.0);
    assert_eq!(alert.baseline, median);
    assert_eq!(alert.threshold, 5.0 * median);
    assert_eq!((alert.requests, alert.matching_requests), (9_000, 9_000));
    assert_eq!(alert.baseline_weeks, 4);
    assert_eq!(alert.event_id, event_id(spiking, AnomalyKind::Spike, hour));
    assert!(alert.raised_at > hour);
    assert_eq!(stored(&pool).await, identities(&judged.raised));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spike_is_raised_while_its_hour_runs_and_not_again_at_its_close() {
    let (_postgres, url) = migrated_database();
    let pool = pool(&url).await;
    let org = org(&url, "surging");
    let now = judged_at();
    let running = hour_of(now);
    let mut history = History::default();
    history.every_hour(org, weeks_before(running, 6), running, |at| {
        vec![(Outcome::Status2xx, steady(at))]
    });
    // Half an hour in, four times the usual hour: not yet a spike.
    history.add(org, running, Outcome::Status2xx, 4 * steady(running));
    history.write(&pool).await;
    assert!(judge(&pool, now).await.raised.is_empty());

    // Ten minutes later, past five times: raised at once, the hour still running.
    let mut more = History::default();
    more.add(org, running, Outcome::Status2xx, 2 * steady(running));
    more.write(&pool).await;
    let judged = judge(&pool, now + TimeDelta::minutes(10)).await;
    assert_eq!(
        identities(&judged.raised),
        [(org, "spike".to_owned(), running)]
    );
    let alert = &judged.raised[0];
    assert!(!alert.hour_complete);
    assert_eq!(alert.observed, 6.0 * steady(running) as f64);

    // The hour ends with more still; judged whole, it is the same alert: not again.
    more.write(&pool).await;
    let judged = judge(&pool, running + TimeDelta::minutes(90)).await;
    assert_eq!(judged.complete_hour, running);
    assert!(judged.raised.is_empty(), "{:?}", judged.raised);
    assert_eq!(stored(&pool).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_of_a_busy_hour_raises_one_alert() {
    let (_postgres, url) = migrated_database();
    let pool = pool(&url).await;
    let (stopped, quiet, slower) = (
        org(&url, "stopped"),
        org(&url, "quiet"),
        org(&url, "slower"),
    );
    let now = judged_at();
    let hour = complete_hour(now);
    let mut history = History::default();
    for org in [stopped, slower] {
        history.every_hour(org, weeks_before(hour, 6), hour, |_| {
            vec![(Outcome::Status2xx, 2_000)]
        });
    }
    // Quiet: its hours are never busy (a median of 300), so nothing is judged a drop.
    history.every_hour(quiet, weeks_before(hour, 6), hour, |_| {
        vec![(Outcome::Status2xx, 300)]
    });
    // `stopped` has no row at all in the hour; `slower` a quarter of its usual.
    history.add(slower, hour, Outcome::Status2xx, 500);
    history.write(&pool).await;

    let judged = judge(&pool, now).await;
    assert_eq!(
        identities(&judged.raised),
        [(stopped, "drop".to_owned(), hour)]
    );
    let alert = &judged.raised[0];
    assert_eq!(alert.observed, 0.0);
    assert_eq!(alert.baseline, 2_000.0);
    assert_eq!(alert.threshold, 100.0);
    assert_eq!(alert.requests, 0);
    assert!(alert.hour_complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jump_in_refusals_raises_one_alert() {
    let (_postgres, url) = migrated_database();
    let pool = pool(&url).await;
    let (refused, usual, upstream_4xx) = (
        org(&url, "refused"),
        org(&url, "usual"),
        org(&url, "upstream 4xx"),
    );
    let now = judged_at();
    let hour = complete_hour(now);
    let mut history = History::default();
    for org in [refused, usual, upstream_4xx] {
        // 1% refused by a rate limit, usually.
        history.every_hour(org, weeks_before(hour, 6), hour, |_| {
            vec![(Outcome::Status2xx, 990), (Outcome::RateLimited, 10)]
        });
    }
    // Rate limits, a quota and key policies together: 300 of 1,300.
    history
        .add(refused, hour, Outcome::Status2xx, 1_000)
        .add(refused, hour, Outcome::RateLimited, 150)
        .add(refused, hour, Outcome::QuotaExceeded, 100)
        .add(refused, hour, Outcome::PolicyDenied, 50);
    // More refused than the floor of 100, but under 5%: 120 of 2,620.
    history
        .add(usual, hour, Outcome::Status2xx, 2_500)
        .add(usual, hour, Outcome::RateLimited, 120);
    // The upstream's own 4xx are not the gateway's refusals.
    history
        .add(upstream_4xx, hour, Outcome::Status2xx, 500)
        .add(upstream_4xx, hour, Outcome::Status4xx, 500);
    history.write(&pool).await;

    let judged = judge(&pool, now).await;
    assert_eq!(
        identities(&judged.raised),
        [(refused, "refusals".to_owned(), hour)]
    );
    let alert = &judged.raised[0];
    assert_eq!(alert.observed, 300.0 / 1_300.0);
    assert_eq!(alert.baseline, 0.01);
    assert_eq!(alert.threshold, 0.05);
    assert_eq!((alert.requests, alert.matching_requests), (1_300, 300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jump_in_upstream_5xx_raises_one_alert() {
    let (_postgres, url) = migrated_database();
    let pool = pool(&url).await;
    let (failing, few) = (org(&url, "failing"), org(&url, "few"));
    let now = judged_at();
    let hour = complete_hour(now);
    let mut history = History::default();
    for org in [failing, few] {
        history.every_hour(org, weeks_before(hour, 6), hour, |_| {
            vec![(Outcome::Status2xx, 995), (Outcome::Status5xx, 5)]
        });
    }
    history
        .add(failing, hour, Outcome::Status2xx, 700)
        .add(failing, hour, Outcome::Status5xx, 300);
    // 6% is above the share, but 60 answers are under the floor of 100.
    history
        .add(few, hour, Outcome::Status2xx, 940)
        .add(few, hour, Outcome::Status5xx, 60);
    history.write(&pool).await;

    let judged = judge(&pool, now).await;
    assert_eq!(
        identities(&judged.raised),
        [(failing, "upstream_5xx".to_owned(), hour)]
    );
    let alert = &judged.raised[0];
    assert_eq!(alert.observed, 0.3);
    assert_eq!(alert.baseline, 0.005);
    assert_eq!((alert.requests, alert.matching_requests), (1_000, 300));
}

/// Busy working hours on weekdays, quieter nights, quiet weekends, a few percent more or
/// less from one week to the next; about 1% refused and 0.1% 5xx throughout.
fn weekly(hour: DateTime<Utc>) -> Vec<(Outcome, i64)> {
    let weekend = matches!(hour.weekday(), Weekday::Sat | Weekday::Sun);
    let base: i64 = match (weekend, hour.hour()) {
        (true, _) => 100,
        (false, 9..=17) => 20_000,
        (false, _) => 2_000,
    };
    // -8% to +8% by the week (a week is 168 hours).
    let week = hour.timestamp().div_euclid(3_600 * 168);
    let requests = base * (92 + week.rem_euclid(5) * 4) / 100;
    vec![
        (
            Outcome::Status2xx,
            requests - requests / 100 - requests / 1_000,
        ),
        (Outcome::RateLimited, requests / 100),
        (Outcome::Status5xx, requests / 1_000),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weekly_pattern_is_not_an_anomaly() {
    let (_postgres, url) = migrated_database();
    let pool = pool(&url).await;
    let org = org(&url, "office hours");
    let now = judged_at();
    let running = hour_of(now);
    let mut history = History::default();
    history.every_hour(org, weeks_before(running, 8), running, weekly);
    history.write(&pool).await;
    // What a detector comparing an hour with the hour before it would flag: every
    // working day's first hour is ten times the night before, Monday's night twenty
    // times Sunday's, every evening a tenth of its afternoon.
    let total = |at: DateTime<Utc>| weekly(at).iter().map(|(_, n)| n).sum::<i64>();
    let mut jumps = 0;
    let mut at = weeks_before(running, 1);
    while at < running {
        let (before, after) = (total(at - TimeDelta::hours(1)), total(at));
        if after >= 5 * before || after * 5 <= before {
            jumps += 1;
        }
        at += TimeDelta::hours(1);
    }
    assert!(jumps >= 10, "the pattern has {jumps} jumps");

    // Judged at every hour of the last week: nothing, ever.
    let mut at = weeks_before(now, 1);
    let mut evaluations = 0;
    while at <= now {
        let judged = judge(&pool, at).await;
        assert_eq!((judged.organizations, judged.too_new), (1, 0), "at {at}");
        assert!(judged.raised.is_empty(), "at {at}: {:?}", judged.raised);
        at += TimeDelta::hours(1);
        evaluations += 1;
    }
    assert_eq!(evaluations, 169);
    assert!(stored(&pool).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_too_new_to_judge_is_not_judged() {
    let (_postgres, url) = migrated_database();
    let pool = pool(&url).await;
    let (new, almost, old) = (org(&url, "new"), org(&url, "almost"), org(&url, "old"));
    let now = judged_at();
    let hour = complete_hour(now);
    let mut history = History::default();
    // Ten days of history; four weeks less an hour; five weeks. The baseline's oldest
    // hour is four weeks before the hour judged.
    history.every_hour(new, hour - TimeDelta::days(10), hour, |_| {
        vec![(Outcome::Status2xx, 100)]
    });
    history.every_hour(
        almost,
        weeks_before(hour, 4) + TimeDelta::hours(1),
        hour,
        |_| vec![(Outcome::Status2xx, 100)],
    );
    history.every_hour(old, weeks_before(hour, 5), hour, |_| {
        vec![(Outcome::Status2xx, 100)]
    });
    // The same surge for all three: 500 times their usual hour.
    for org in [new, almost, old] {
        history.add(org, hour, Outcome::Status2xx, 50_000);
    }
    history.write(&pool).await;

    let judged = judge(&pool, now).await;
    assert_eq!((judged.organizations, judged.too_new), (1, 2));
    assert_eq!(
        identities(&judged.raised),
        [(old, "spike".to_owned(), hour)]
    );
}

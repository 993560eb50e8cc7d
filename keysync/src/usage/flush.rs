//! A `ReportUsage` request, checked: every id 16 bytes, every outcome known, every
//! endpoint a route name, `-` or `(other)` (contract: `usage_endpoint`), at most
//! [`MAX_ENDPOINTS`] distinct named endpoints, four duration buckets, no counter twice,
//! every value within PostgreSQL's `bigint`, at most [`MAX_COUNTERS`] counters; and the
//! hour its increments count in, taken from the gateway's cut time but kept within
//! [`MAX_CLOCK_SKEW`] of keysync's clock, so a gateway with a wild clock cannot write
//! into another month.

use std::collections::HashSet;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use keysync_contract::usage_endpoint::{self, MAX_ENDPOINTS, NO_NAME, OTHER};
use keysync_proto::v1::{ReportUsageRequest, UsageCounter};
use uuid::Uuid;

use super::Outcome;

/// The most counters one flush may carry (a gateway has at most this many slots).
pub const MAX_COUNTERS: usize = 50_000;
/// Duration buckets of a counter: <=10ms, <=100ms, <=1s, more.
pub const BUCKETS: usize = 4;
/// How far a flush's cut time may be from keysync's clock before it is clamped.
pub const MAX_CLOCK_SKEW: TimeDelta = TimeDelta::hours(1);
/// The largest gRPC message the KeySync service reads: [`MAX_COUNTERS`] counters of the
/// largest encoding (about 195 bytes each, a 64-character endpoint included) fit.
pub const MAX_MESSAGE_BYTES: usize = 12 << 20;

/// The cumulative values of one counter, in the order of the database columns:
/// requests, duration_us, le_10ms, le_100ms, le_1s, over_1s, request_bytes,
/// response_bytes.
pub type Values = [i64; 8];

/// One counter of a flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    pub org_id: Uuid,
    pub key_id: Uuid,
    /// The route's name, `-` (no name) or `(other)`.
    pub endpoint: String,
    pub outcome: Outcome,
    pub values: Values,
}

/// A checked flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flush {
    pub instance_id: Uuid,
    /// The gateway's cut time, kept within [`MAX_CLOCK_SKEW`] of keysync's clock: the
    /// end of the window its increments cover (the usage export's events say so).
    pub cut_at: DateTime<Utc>,
    /// The start of the (UTC) hour its increments count in: `cut_at`'s hour.
    pub hour: DateTime<Utc>,
    pub counters: Vec<Counter>,
    pub unattributed_requests: i64,
    pub dropped_requests: i64,
}

/// Why a flush was refused (`INVALID_ARGUMENT`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidFlush(String);

fn invalid(message: impl Into<String>) -> InvalidFlush {
    InvalidFlush(message.into())
}

fn uuid(what: &str, bytes: &[u8]) -> Result<Uuid, InvalidFlush> {
    Uuid::from_slice(bytes)
        .map_err(|_| invalid(format!("{what} is {} bytes, expected 16", bytes.len())))
}

fn value(what: &str, value: u64) -> Result<i64, InvalidFlush> {
    i64::try_from(value).map_err(|_| invalid(format!("{what} {value} is beyond 2^63-1")))
}

/// `cut_at_ms`, clamped to `now` ± [`MAX_CLOCK_SKEW`].
pub fn clamped_cut(cut_at_ms: i64, now: DateTime<Utc>) -> DateTime<Utc> {
    let now_ms = now.timestamp_millis();
    let skew_ms = MAX_CLOCK_SKEW.num_milliseconds();
    let cut_at_ms = cut_at_ms.clamp(
        now_ms.saturating_sub(skew_ms),
        now_ms.saturating_add(skew_ms),
    );
    DateTime::from_timestamp_millis(cut_at_ms).unwrap_or(now)
}

/// The hour of `cut_at_ms`, clamped to `now` ± [`MAX_CLOCK_SKEW`].
pub fn hour_of(cut_at_ms: i64, now: DateTime<Utc>) -> DateTime<Utc> {
    let cut = clamped_cut(cut_at_ms, now);
    // Only fails for instants near the ends of chrono's range, which the clamp rules out.
    cut.duration_trunc(TimeDelta::hours(1)).unwrap_or(cut)
}

impl Flush {
    /// Checks `request`, received at `now`.
    pub fn check(request: &ReportUsageRequest, now: DateTime<Utc>) -> Result<Flush, InvalidFlush> {
        let instance_id = uuid("instance_id", &request.instance_id)?;
        if request.counters.len() > MAX_COUNTERS {
            return Err(invalid(format!(
                "{} counters in one flush, at most {MAX_COUNTERS} allowed",
                request.counters.len()
            )));
        }
        let mut seen = HashSet::with_capacity(request.counters.len());
        let mut named = HashSet::new();
        let mut counters = Vec::with_capacity(request.counters.len());
        for (index, counter) in request.counters.iter().enumerate() {
            let checked = check_counter(counter)
                .map_err(|InvalidFlush(message)| invalid(format!("counter {index}: {message}")))?;
            // Borrowed from the request: `checked` moves on. (Empty is `-`.)
            let endpoint = match counter.endpoint.as_str() {
                "" => NO_NAME,
                named => named,
            };
            if !seen.insert((checked.org_id, checked.key_id, endpoint, checked.outcome)) {
                return Err(invalid(format!(
                    "counter {index}: org {} key {} endpoint {} outcome {} appears twice",
                    checked.org_id,
                    checked.key_id,
                    checked.endpoint,
                    checked.outcome.code()
                )));
            }
            if endpoint != NO_NAME && endpoint != OTHER {
                named.insert(endpoint);
                if named.len() > MAX_ENDPOINTS {
                    return Err(invalid(format!(
                        "more than {MAX_ENDPOINTS} distinct endpoints in one flush"
                    )));
                }
            }
            counters.push(checked);
        }
        Ok(Flush {
            instance_id,
            cut_at: clamped_cut(request.cut_at_ms, now),
            hour: hour_of(request.cut_at_ms, now),
            counters,
            unattributed_requests: value("unattributed_requests", request.unattributed_requests)?,
            dropped_requests: value("dropped_requests", request.dropped_requests)?,
        })
    }
}

fn check_counter(counter: &UsageCounter) -> Result<Counter, InvalidFlush> {
    let org_id = uuid("org_id", &counter.org_id)?;
    let key_id = uuid("key_id", &counter.key_id)?;
    let outcome = Outcome::from_code(i64::from(counter.outcome))
        .ok_or_else(|| invalid(format!("outcome {} is not 1 to 8", counter.outcome)))?;
    // A gateway from before endpoints sends none: its routes are not named.
    let endpoint = match counter.endpoint.as_str() {
        "" => NO_NAME,
        endpoint if usage_endpoint::is_reported(endpoint) => endpoint,
        endpoint => {
            let shown: String = endpoint.chars().take(80).collect();
            return Err(invalid(format!(
                "endpoint {:?} is not 1 to 64 of [A-Za-z0-9._:/-], \"-\" or \"(other)\"",
                shown
            )));
        }
    };
    let [le_10ms, le_100ms, le_1s, over_1s] =
        <[u64; BUCKETS]>::try_from(counter.duration_buckets.as_slice()).map_err(|_| {
            invalid(format!(
                "{} duration buckets, expected {BUCKETS}",
                counter.duration_buckets.len()
            ))
        })?;
    Ok(Counter {
        org_id,
        key_id,
        endpoint: endpoint.to_owned(),
        outcome,
        values: [
            value("requests", counter.requests)?,
            value("duration_us", counter.duration_us)?,
            value("duration bucket", le_10ms)?,
            value("duration bucket", le_100ms)?,
            value("duration bucket", le_1s)?,
            value("duration bucket", over_1s)?,
            value("request_bytes", counter.request_bytes)?,
            value("response_bytes", counter.response_bytes)?,
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-31T23:30:00Z")
            .unwrap()
            .to_utc()
    }

    fn counter(key: u128, outcome: u32) -> UsageCounter {
        UsageCounter {
            org_id: Uuid::from_u128(1).as_bytes().to_vec(),
            key_id: Uuid::from_u128(key).as_bytes().to_vec(),
            outcome,
            requests: 10,
            duration_us: 5000,
            duration_buckets: vec![7, 2, 1, 0],
            request_bytes: 100,
            response_bytes: 2000,
            endpoint: "orders".into(),
        }
    }

    fn request(counters: Vec<UsageCounter>) -> ReportUsageRequest {
        ReportUsageRequest {
            instance_id: Uuid::from_u128(99).as_bytes().to_vec(),
            cut_at_ms: now().timestamp_millis(),
            counters,
            unattributed_requests: 3,
            dropped_requests: 0,
            gateway: None,
        }
    }

    #[test]
    fn a_good_flush_is_taken_as_it_is() {
        let flush = Flush::check(&request(vec![counter(2, 2), counter(2, 6)]), now()).unwrap();
        assert_eq!(flush.instance_id, Uuid::from_u128(99));
        assert_eq!(flush.hour.to_rfc3339(), "2026-03-31T23:00:00+00:00");
        assert_eq!(flush.cut_at, now());
        assert_eq!(flush.counters.len(), 2);
        assert_eq!(flush.counters[1].outcome, Outcome::RateLimited);
        assert_eq!(flush.counters[0].values, [10, 5000, 7, 2, 1, 0, 100, 2000]);
        assert_eq!(flush.counters[0].endpoint, "orders");
        assert_eq!(flush.unattributed_requests, 3);
    }

    #[test]
    fn endpoints_are_names_a_dash_or_other_and_bounded() {
        let on = |key: u128, endpoint: &str| UsageCounter {
            endpoint: endpoint.into(),
            ..counter(key, 2)
        };
        // One key's endpoints are counters of their own; none (an older gateway) is "-".
        let flush = Flush::check(
            &request(vec![
                on(2, "orders"),
                on(2, "search"),
                on(2, "-"),
                on(2, "(other)"),
                on(3, ""),
            ]),
            now(),
        )
        .unwrap();
        let endpoints: Vec<&str> = flush.counters.iter().map(|c| c.endpoint.as_str()).collect();
        assert_eq!(endpoints, ["orders", "search", "-", "(other)", "-"]);
        let refused =
            |request: ReportUsageRequest| Flush::check(&request, now()).unwrap_err().to_string();
        for bad in ["two words", "(others)", &"a".repeat(65), "é"] {
            let message = refused(request(vec![on(2, bad)]));
            assert!(
                message.starts_with("counter 0: endpoint") && message.contains("is not 1 to 64"),
                "{message}"
            );
        }
        // "" and "-" are the same endpoint: one counter.
        let twice = refused(request(vec![on(2, ""), on(2, "-")]));
        assert!(
            twice.contains("endpoint - outcome 2 appears twice"),
            "{twice}"
        );
        // At most MAX_ENDPOINTS distinct names (besides the two reserved ones).
        let names = |n: usize| -> Vec<UsageCounter> {
            (0..n)
                .map(|i| on(2, &format!("e{i}")))
                .chain([on(2, "-"), on(2, "(other)")])
                .collect()
        };
        assert!(Flush::check(&request(names(MAX_ENDPOINTS)), now()).is_ok());
        assert_eq!(
            refused(request(names(MAX_ENDPOINTS + 1))),
            "more than 1000 distinct endpoints in one flush"
        );
    }

    #[test]
    fn a_wild_clock_cannot_reach_another_month() {
        let hour = |cut_at_ms| hour_of(cut_at_ms, now()).to_rfc3339();
        // Two hours ahead would be April: clamped to an hour ahead, then truncated.
        let ahead = (now() + TimeDelta::hours(2)).timestamp_millis();
        assert_eq!(hour(ahead), "2026-04-01T00:00:00+00:00");
        assert_eq!(hour(0), "2026-03-31T22:00:00+00:00");
        assert_eq!(hour(i64::MIN), "2026-03-31T22:00:00+00:00");
        assert_eq!(hour(i64::MAX), "2026-04-01T00:00:00+00:00");
        let recent = (now() - TimeDelta::minutes(40)).timestamp_millis();
        assert_eq!(hour(recent), "2026-03-31T22:00:00+00:00");
        // The cut itself is kept to the millisecond, and clamped the same way.
        assert_eq!(
            clamped_cut(recent, now()).timestamp_millis(),
            recent,
            "a cut within the skew is kept"
        );
        assert_eq!(clamped_cut(0, now()), now() - MAX_CLOCK_SKEW);
    }

    #[test]
    fn bad_flushes_are_refused_with_the_reason() {
        let refused =
            |request: ReportUsageRequest| Flush::check(&request, now()).unwrap_err().to_string();
        let mut short_instance = request(vec![]);
        short_instance.instance_id = vec![1; 15];
        assert_eq!(
            refused(short_instance),
            "instance_id is 15 bytes, expected 16"
        );
        let mut bad = counter(2, 2);
        bad.key_id = vec![];
        assert_eq!(
            refused(request(vec![counter(3, 2), bad])),
            "counter 1: key_id is 0 bytes, expected 16"
        );
        for outcome in [0, 9, u32::MAX] {
            let message = refused(request(vec![counter(2, outcome)]));
            assert!(message.contains("is not 1 to 8"), "{message}");
        }
        let mut buckets = counter(2, 2);
        buckets.duration_buckets = vec![1, 2, 3];
        assert_eq!(
            refused(request(vec![buckets])),
            "counter 0: 3 duration buckets, expected 4"
        );
        let mut huge = counter(2, 2);
        huge.response_bytes = u64::MAX;
        assert!(refused(request(vec![huge])).contains("beyond 2^63-1"));
        let twice = refused(request(vec![counter(2, 2), counter(2, 2)]));
        assert!(twice.contains("appears twice"), "{twice}");
        let many = (0..=MAX_COUNTERS as u128)
            .map(|key| counter(key, 2))
            .collect();
        assert_eq!(
            refused(request(many)),
            "50001 counters in one flush, at most 50000 allowed"
        );
    }

    #[test]
    fn the_largest_flush_fits_the_message_limit() {
        use prost::Message;
        let counters = (0..MAX_COUNTERS as u128)
            .map(|key| UsageCounter {
                org_id: vec![0xff; 16],
                key_id: Uuid::from_u128(key).as_bytes().to_vec(),
                outcome: 8,
                requests: u64::MAX,
                duration_us: u64::MAX,
                duration_buckets: vec![u64::MAX; 4],
                request_bytes: u64::MAX,
                response_bytes: u64::MAX,
                endpoint: "e".repeat(keysync_contract::usage_endpoint::MAX_NAME_LEN),
            })
            .collect();
        let mut largest = request(counters);
        largest.unattributed_requests = u64::MAX;
        largest.dropped_requests = u64::MAX;
        largest.cut_at_ms = i64::MIN;
        assert!(
            largest.encoded_len() < MAX_MESSAGE_BYTES,
            "{}",
            largest.encoded_len()
        );
    }
}

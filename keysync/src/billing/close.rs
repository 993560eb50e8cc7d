//! Closing a period: once a month is over (and [`CLOSE_DELAY`] has let the gateways'
//! last flushes of it in), `keysync serve` prices the month for every organization that
//! had a plan in it, stores each invoice in `invoices` and publishes its
//! `io.keysync.invoice.v1` event on the usage export ([`super::event`]).
//!
//! Like the anomaly evaluator: one keysync replica closes at a time (an advisory lock
//! taken without waiting, a batch of organizations a transaction; a replica that does
//! not get it skips its turn), and the
//! table's primary key `(org_id, period_start)` keeps one invoice per organization and
//! period however often the period is closed; only the invoices a close stored are
//! published, so each is published once (at least once while the export runs; a
//! consumer drops a repeat by its id). Requests flushed after the close are in the
//! rollup and `keysync usage --cost --period`, not in the invoice already issued.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

use super::event::{event_id, invoice_event};
use super::invoice::Invoice;
use super::metrics::{BillingMetrics, CloseResult};
use super::period::BillingPeriod;
use super::store::{invoice_of, StoreError};
use crate::database::describe_sqlx;
use crate::log_throttle::{held_back_note, LogThrottle, LOG_PERIOD};
use crate::usage::export::Exporter;

/// How long after a period's end it is closed: the gateways flush every few seconds,
/// and a flush lands in the hour it is stored in.
pub const CLOSE_DELAY: Duration = Duration::from_secs(15 * 60);
/// How often `serve` looks for a period to close.
pub const CHECK_PERIOD: Duration = Duration::from_secs(5 * 60);
/// Organizations a close prices in one transaction.
pub const BATCH: usize = 100;
/// The advisory lock of closing (`pg_try_advisory_xact_lock`): one close at a time
/// across keysync replicas. The number spells "invoice" in ASCII.
pub const LOCK_KEY: i64 = 0x0069_6e76_6f69_6365;

/// What a close did.
#[derive(Debug, Clone, PartialEq)]
pub enum Closing {
    /// Another replica holds the lock: nothing read or stored.
    Skipped,
    Closed(Closed),
}

/// What a close that ran did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Closed {
    /// The month closed.
    pub period: Option<BillingPeriod>,
    /// The invoices this close stored (not those stored before), by organization.
    pub issued: Vec<Invoice>,
    /// Organizations whose invoice could not be made, and why (retried next time).
    pub failed: Vec<(Uuid, String)>,
}

/// The month a close at `now` closes: the last one over at least [`CLOSE_DELAY`] ago.
pub fn period_to_close(now: DateTime<Utc>) -> BillingPeriod {
    let delay = TimeDelta::from_std(CLOSE_DELAY).unwrap_or(TimeDelta::zero());
    BillingPeriod::containing(now - delay).previous()
}

/// Closes [`period_to_close`]`(now)`: stores the invoices not issued yet, `batch`
/// organizations a transaction (so that a close of many organizations holds no
/// transaction for long), hands each batch's to `issued` once it is committed, and
/// returns them all. A database failure stops the close; the batches committed before it
/// were handed over, and the rest is closed next time.
pub async fn close(
    pool: &PgPool,
    now: DateTime<Utc>,
    batch: usize,
    issued: &mut (dyn FnMut(&[Invoice]) + Send),
) -> Result<Closing, StoreError> {
    let period = period_to_close(now);
    let batch = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
    let mut closed = Closed {
        period: Some(period),
        ..Closed::default()
    };
    // Organizations are taken in id order, each batch after the last one seen, so that
    // one whose invoice cannot be made is not taken again in the same close.
    let mut after = Uuid::nil();
    loop {
        let mut transaction = pool.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(LOCK_KEY)
            .fetch_one(&mut *transaction)
            .await?;
        if !locked {
            transaction.rollback().await?;
            // Another replica closes (what is left of) the period.
            return Ok(if after.is_nil() {
                Closing::Skipped
            } else {
                Closing::Closed(closed)
            });
        }
        // Organizations with a plan in effect at some time of the period (a plan stays
        // in effect until the next change) and no invoice for it yet.
        let orgs: Vec<Uuid> = sqlx::query_scalar(
            "SELECT DISTINCT p.org_id FROM org_plans p WHERE p.effective_from < $1 \
             AND p.org_id > $3 \
             AND NOT EXISTS (SELECT 1 FROM invoices i \
                             WHERE i.org_id = p.org_id AND i.period_start = $2) \
             ORDER BY p.org_id LIMIT $4",
        )
        .bind(period.end)
        .bind(period.start)
        .bind(after)
        .bind(batch)
        .fetch_all(&mut *transaction)
        .await?;
        let mut stored_now = Vec::new();
        for &org_id in &orgs {
            after = org_id;
            let invoice = match invoice_of(&mut transaction, org_id, period, now).await {
                Ok(invoice) => invoice,
                Err(StoreError::Database(error)) => return Err(StoreError::Database(error)),
                Err(error) => {
                    closed.failed.push((org_id, error.to_string()));
                    continue;
                }
            };
            let document = serde_json::to_string(&invoice).unwrap_or_default();
            let stored = sqlx::query(
                "INSERT INTO invoices (org_id, period_start, event_id, currency, total_minor, \
                                       document) \
                 VALUES ($1, $2, $3, $4, $5, $6::jsonb) ON CONFLICT DO NOTHING",
            )
            .bind(org_id)
            .bind(period.start)
            .bind(event_id(org_id, period.start))
            .bind(invoice.currency.code())
            .bind(invoice.total_minor)
            .bind(document)
            .execute(&mut *transaction)
            .await?;
            if stored.rows_affected() == 1 {
                stored_now.push(invoice);
            }
        }
        transaction.commit().await?;
        issued(&stored_now);
        closed.issued.extend(stored_now);
        if i64::try_from(orgs.len()).unwrap_or(i64::MAX) < batch {
            return Ok(Closing::Closed(closed));
        }
    }
}

/// Closes every [`CHECK_PERIOD`] until `stop`, publishing what each close issued.
pub async fn run(
    pool: PgPool,
    export: Exporter,
    metrics: std::sync::Arc<BillingMetrics>,
    stop: CancellationToken,
) {
    let failures = LogThrottle::new(LOG_PERIOD);
    loop {
        let started = Instant::now();
        let mut publish = |invoices: &[Invoice]| {
            metrics.record_issued(invoices.len());
            export.publish_all(invoices.iter().map(invoice_event));
        };
        let closing = tokio::select! {
            () = stop.cancelled() => return,
            closing = close(&pool, Utc::now(), BATCH, &mut publish) => closing,
        };
        match closing {
            Ok(Closing::Closed(closed)) => {
                metrics.record_close(CloseResult::Ok);
                metrics.record_not_issued(closed.failed.len());
                if let (Some(period), false) = (closed.period, closed.issued.is_empty()) {
                    info!(
                        "invoices issued for {period}: {} organizations in {} ms",
                        closed.issued.len(),
                        started.elapsed().as_millis()
                    );
                }
                for (org_id, error) in &closed.failed {
                    warn!("invoice of organization {org_id} not issued: {error}");
                }
            }
            Ok(Closing::Skipped) => metrics.record_close(CloseResult::Skipped),
            Err(error) => {
                metrics.record_close(CloseResult::Failed);
                if let Some(held_back) = failures.admit(Instant::now()) {
                    let error = match &error {
                        StoreError::Database(error) => describe_sqlx(error),
                        other => other.to_string(),
                    };
                    warn!(
                        "closing the billing period failed (tried again in {}s): {error}{}",
                        CHECK_PERIOD.as_secs(),
                        held_back_note(held_back)
                    );
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(CHECK_PERIOD) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_is_closed_a_quarter_hour_after_it_ends() {
        let at = |text: &str| text.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            period_to_close(at("2027-01-01T00:14:59Z")).to_string(),
            "2026-11"
        );
        assert_eq!(
            period_to_close(at("2027-01-01T00:15:00Z")).to_string(),
            "2026-12"
        );
        assert_eq!(
            period_to_close(at("2027-01-20T10:00:00Z")).to_string(),
            "2026-12"
        );
    }
}

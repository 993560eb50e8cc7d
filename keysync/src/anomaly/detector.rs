//! The task `keysync serve` runs: an [`evaluate`] at start and every period, the alerts
//! it stored announced, failures logged (one line a period) and tried again next
//! period.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::announce::Announcer;
use super::evaluation::{evaluate, Evaluation};
use super::metrics::{AnomalyMetrics, EvaluationResult};
use super::settings::AnomalySettings;
use crate::database::describe_sqlx;
use crate::log_throttle::{held_back_note, LogThrottle, LOG_PERIOD};

/// Evaluates every `settings.interval` until `stop`.
pub async fn run(
    pool: PgPool,
    settings: AnomalySettings,
    announcer: Announcer,
    metrics: Arc<AnomalyMetrics>,
    stop: CancellationToken,
) {
    let failures = LogThrottle::new(LOG_PERIOD);
    loop {
        let started = Instant::now();
        let evaluated = tokio::select! {
            () = stop.cancelled() => return,
            evaluated = evaluate(&pool, &settings, Utc::now()) => evaluated,
        };
        match evaluated {
            Ok(Evaluation::Judged(judged)) => {
                metrics.record_evaluation(EvaluationResult::Ok, started.elapsed());
                announcer.announce(&judged.raised);
                debug!(
                    "anomaly evaluation: hours {} and {} (running), {} organizations judged, \
                     {} too new, {} alerts raised in {} ms",
                    judged.complete_hour.to_rfc3339(),
                    judged.running_hour.to_rfc3339(),
                    judged.organizations,
                    judged.too_new,
                    judged.raised.len(),
                    started.elapsed().as_millis()
                );
            }
            Ok(Evaluation::Skipped) => {
                metrics.record_evaluation(EvaluationResult::Skipped, started.elapsed());
                debug!("anomaly evaluation skipped: another keysync is evaluating");
            }
            Err(error) => {
                metrics.record_evaluation(EvaluationResult::Failed, started.elapsed());
                if let Some(held_back) = failures.admit(Instant::now()) {
                    warn!(
                        "anomaly evaluation failed (tried again in {}s): {}{}",
                        settings.interval.as_secs(),
                        describe_sqlx(&error),
                        held_back_note(held_back)
                    );
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(settings.interval) => {}
        }
    }
}

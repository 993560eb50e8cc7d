//! `AcquireQuota` on keysync's side: the call checked, handed to
//! [`crate::quota::lease`], answered; and the quota alerts a usage flush raised, told
//! (a log line and a metric each; the usage export sends them on when it is on).
//!
//! A claim asks for at most what one gateway can admit in a lease's life
//! (`KEYSYNC_GATEWAY_MAX_RATE` requests a second for [`LEASE_IDLE`]); a larger `want` is
//! cut to that. A claim for an organization or key that does not exist is answered
//! with no quota and grants nothing. Both are counted
//! (`keysync_quota_refused_requests_total`).

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use keysync_contract::subject::SubjectKind;
use keysync_proto::v1::{AcquireQuotaRequest, AcquireQuotaResponse, QuotaState};
use tonic::Status;
use tracing::{info, warn};
use uuid::Uuid;

use crate::database::describe_sqlx;
use crate::log_throttle::{held_back_note, LogThrottle, LOG_PERIOD};
use crate::quota::alert::Crossing;
use crate::quota::lease::{Answer, Claim, QuotaLeases, State, LEASE_IDLE, MAX_CLAIMS};
use crate::quota::metrics::{ClaimRefusal, QuotaCallResult, QuotaMetrics, QuotaThreshold};
use crate::usage::allowance::Ceiling;
use crate::usage::cloud_event::{derived_id, rfc3339, CloudEvent, DATA_CONTENT_TYPE, SPEC_VERSION};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct QuotaService {
    leases: QuotaLeases,
    /// The most one claim may ask for.
    max_want: u64,
    failures: Arc<LogThrottle>,
}

/// The most one gateway can admit in a lease's life at `ceiling`'s rate.
pub fn max_want(ceiling: Ceiling) -> u64 {
    u64::from(ceiling.rate).saturating_mul(LEASE_IDLE.as_secs())
}

/// Why a call was refused (`INVALID_ARGUMENT`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidCall(String);

/// A checked call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub instance_id: Uuid,
    pub known_revision: i64,
    pub claims: Vec<Claim>,
    /// What the claims asked for beyond `max_want` each (cut off).
    pub over_ceiling: u64,
}

impl Call {
    /// Checks `request`, cutting each claim's `want` to `max_want`.
    pub fn check(request: &AcquireQuotaRequest, max_want: u64) -> Result<Call, InvalidCall> {
        let instance_id = Uuid::from_slice(&request.instance_id).map_err(|_| {
            InvalidCall(format!(
                "instance_id is {} bytes, expected 16",
                request.instance_id.len()
            ))
        })?;
        if request.claims.len() > MAX_CLAIMS {
            return Err(InvalidCall(format!(
                "{} claims, at most {MAX_CLAIMS}",
                request.claims.len()
            )));
        }
        let mut claims = Vec::with_capacity(request.claims.len());
        let mut over_ceiling: u64 = 0;
        let mut seen = std::collections::HashSet::new();
        for claim in &request.claims {
            let kind = SubjectKind::from_code(i64::from(claim.subject_kind)).ok_or_else(|| {
                InvalidCall(format!("subject_kind {} is not 1 or 2", claim.subject_kind))
            })?;
            let subject_id = Uuid::from_slice(&claim.subject_id).map_err(|_| {
                InvalidCall(format!(
                    "subject_id is {} bytes, expected 16",
                    claim.subject_id.len()
                ))
            })?;
            let want = claim.want.min(max_want);
            over_ceiling = over_ceiling.saturating_add(claim.want - want);
            if !seen.insert((kind, subject_id)) {
                return Err(InvalidCall(format!(
                    "{} {subject_id} claimed twice",
                    kind.as_str()
                )));
            }
            claims.push(Claim {
                kind,
                subject_id,
                want: i64::try_from(want).unwrap_or(i64::MAX),
            });
        }
        Ok(Call {
            instance_id,
            known_revision: i64::try_from(request.known_revision).unwrap_or(-1),
            claims,
            over_ceiling,
        })
    }
}

impl QuotaService {
    /// Grants from `leases`, each claim asking for at most [`max_want`] of `ceiling`.
    pub fn new(leases: QuotaLeases, ceiling: Ceiling) -> QuotaService {
        QuotaService {
            leases,
            max_want: max_want(ceiling),
            failures: Arc::new(LogThrottle::new(LOG_PERIOD)),
        }
    }

    pub async fn acquire(
        &self,
        request: &AcquireQuotaRequest,
        metrics: &QuotaMetrics,
    ) -> Result<AcquireQuotaResponse, Status> {
        let call = match Call::check(request, self.max_want) {
            Ok(call) => call,
            Err(error) => {
                metrics.record_call(QuotaCallResult::Invalid, 0);
                return Err(Status::invalid_argument(error.to_string()));
            }
        };
        metrics.record_refused(ClaimRefusal::OverCeiling, call.over_ceiling);
        let answer = self
            .leases
            .acquire(
                call.instance_id,
                call.known_revision,
                &call.claims,
                Utc::now(),
            )
            .await;
        match answer {
            Ok(answer) => {
                let unknown = u64::try_from(answer.unknown_subject_requests).unwrap_or(0);
                metrics.record_refused(ClaimRefusal::UnknownSubject, unknown);
                let granted: i64 = answer.quotas.iter().map(|state| state.added).sum();
                let granted = u64::try_from(granted).unwrap_or(0);
                metrics.record_call(QuotaCallResult::Ok, granted);
                Ok(to_response(answer))
            }
            Err(error) => {
                metrics.record_call(QuotaCallResult::Unavailable, 0);
                let cause = describe_sqlx(&error);
                if let Some(held_back) = self.failures.admit(Instant::now()) {
                    warn!(
                        "quota claim not answered (the gateway asks again): {cause}{}",
                        held_back_note(held_back)
                    );
                }
                // The cause stays in keysync's log: database text is not the caller's.
                Err(Status::unavailable(
                    "cannot grant quota now; ask again later",
                ))
            }
        }
    }
}

fn to_response(answer: Answer) -> AcquireQuotaResponse {
    AcquireQuotaResponse {
        revision: u64::try_from(answer.revision).unwrap_or(0),
        full_list: answer.full_list,
        quotas: answer.quotas.into_iter().map(to_state).collect(),
    }
}

fn to_state(state: State) -> QuotaState {
    let millis = |at: Option<DateTime<Utc>>| at.map_or(0, |at| at.timestamp_millis());
    QuotaState {
        subject_kind: u32::from(state.kind.code()),
        subject_id: state.subject_id.as_bytes().to_vec(),
        monthly_limit: u64::try_from(state.monthly_limit).unwrap_or(0),
        period_start_ms: millis(state.period.map(|p| p.start)),
        resets_at_ms: millis(state.period.map(|p| p.end)),
        granted: u64::try_from(state.granted).unwrap_or(0),
        exhausted: state.exhausted,
    }
}

/// The type of the usage export's quota alert events.
pub const ALERT_EVENT_TYPE: &str = "io.keysync.quota.threshold.v1";

/// The CloudEvent of a crossing, for the usage export. Its id is derived from the
/// subject, the period and the threshold: the same alert is the same event.
pub fn alert_event(crossing: &Crossing, at: DateTime<Utc>) -> CloudEvent {
    let mut hash = Sha256::new();
    hash.update(b"keysync.quota.threshold.v1\0");
    // The code as two bytes, as the ids have always been made (a smallint).
    hash.update(i16::from(crossing.kind.code()).to_be_bytes());
    hash.update(crossing.subject_id.as_bytes());
    hash.update(crossing.period_start.timestamp_millis().to_be_bytes());
    hash.update(crossing.threshold.to_be_bytes());
    let org_id = crossing.org_id.to_string();
    CloudEvent {
        specversion: SPEC_VERSION,
        id: derived_id(hash).to_string(),
        source: "keysync/quota".to_owned(),
        event_type: ALERT_EVENT_TYPE.to_owned(),
        subject: org_id.clone(),
        time: rfc3339(at),
        datacontenttype: DATA_CONTENT_TYPE,
        data: crossing.data(),
        partition_key: org_id,
    }
}

/// Tells the thresholds a flush crossed: one log line and the metric each.
pub fn announce(crossings: &[Crossing], metrics: &QuotaMetrics) {
    for crossing in crossings {
        let threshold = if crossing.threshold >= 100 {
            QuotaThreshold::Hundred
        } else {
            QuotaThreshold::Eighty
        };
        metrics.record_alert(threshold);
        info!(
            "quota alert: {} {} used {} of its monthly quota of {} ({}% reached; period from {})",
            crossing.kind.as_str(),
            crossing.subject_id,
            crossing.used,
            crossing.limit,
            crossing.threshold,
            crossing.period_start.to_rfc3339()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keysync_proto::v1::QuotaClaim;

    fn claim(kind: u32, id: Vec<u8>, want: u64) -> QuotaClaim {
        QuotaClaim {
            subject_kind: kind,
            subject_id: id,
            want,
        }
    }

    fn request(claims: Vec<QuotaClaim>) -> AcquireQuotaRequest {
        AcquireQuotaRequest {
            instance_id: vec![7; 16],
            known_revision: 3,
            claims,
        }
    }

    #[test]
    fn an_alert_event_names_its_subject_and_is_the_same_event_when_sent_again() {
        let crossing = Crossing {
            kind: SubjectKind::Key,
            subject_id: Uuid::from_bytes([2; 16]),
            org_id: Uuid::from_bytes([1; 16]),
            period_start: "2026-12-01T00:00:00Z".parse().unwrap(),
            threshold: 80,
            used: 8_000,
            limit: 10_000,
        };
        let at = "2026-12-09T10:00:00Z".parse().unwrap();
        let event = alert_event(&crossing, at);
        // Consumers drop repeats by id: its derivation never changes (the subject kind
        // code hashed as two bytes).
        assert_eq!(event.id, "acdbf3d3-83cf-8544-b044-89fc44f4b6b5");
        assert_eq!(event.event_type, ALERT_EVENT_TYPE);
        assert_eq!(event.subject, Uuid::from_bytes([1; 16]).to_string());
        assert_eq!(event.partition_key, event.subject);
        assert_eq!(event.data["subject_kind"], "key");
        assert_eq!(event.data["key_id"], Uuid::from_bytes([2; 16]).to_string());
        assert_eq!(event.data["threshold_percent"], 80);
        assert_eq!(event.data["monthly"], 10_000);
        assert_eq!(event.data["period_start"], "2026-12-01T00:00:00.000Z");
        let later = alert_event(&crossing, "2026-12-09T10:00:05Z".parse().unwrap());
        assert_eq!(later.id, event.id, "the same alert, sent again");
        let hundred = alert_event(
            &Crossing {
                threshold: 100,
                ..crossing.clone()
            },
            at,
        );
        assert_ne!(hundred.id, event.id);
        let json: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
        assert_eq!(json["type"], ALERT_EVENT_TYPE);
        assert_eq!(json["specversion"], "1.0");
    }

    const MAX_WANT: u64 = 6_000;

    #[test]
    fn calls_are_checked_whole() {
        let ok = Call::check(
            &request(vec![claim(1, vec![1; 16], 16), claim(2, vec![1; 16], 1)]),
            MAX_WANT,
        )
        .unwrap();
        assert_eq!(ok.claims.len(), 2);
        assert_eq!(ok.known_revision, 3);
        assert_eq!(ok.over_ceiling, 0);
        for bad in [
            request(vec![claim(3, vec![1; 16], 1)]),
            request(vec![claim(1, vec![1; 15], 1)]),
            request(vec![claim(1, vec![1; 16], 1), claim(1, vec![1; 16], 2)]),
            AcquireQuotaRequest {
                instance_id: vec![1; 3],
                ..request(vec![])
            },
        ] {
            assert!(Call::check(&bad, MAX_WANT).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_claim_asks_for_at_most_what_a_gateway_admits_in_a_lease() {
        assert_eq!(max_want(Ceiling { rate: 100 }), 6_000, "a minute's worth");
        let call = Call::check(
            &request(vec![
                claim(1, vec![1; 16], 1_000_000_000),
                claim(2, vec![1; 16], MAX_WANT),
                claim(2, vec![2; 16], u64::MAX),
            ]),
            MAX_WANT,
        )
        .unwrap();
        let wants: Vec<i64> = call.claims.iter().map(|claim| claim.want).collect();
        assert_eq!(wants, [6_000, 6_000, 6_000]);
        // What was cut off, saturating.
        assert_eq!(call.over_ceiling, u64::MAX);
        let call = Call::check(&request(vec![claim(1, vec![1; 16], 10_000)]), MAX_WANT).unwrap();
        assert_eq!(call.over_ceiling, 4_000);
    }
}

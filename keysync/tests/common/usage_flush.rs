//! Usage flushes as a gateway sends them (`ReportUsage`), and what `keysync usage`
//! reports of them, for the tests of usage metering.

use chrono::Utc;
use keysync_proto::v1::{ReportUsageRequest, ReportUsageResponse, UsageCounter};
use serde_json::Value;
use tonic::transport::Channel;
use tonic::Status;
use uuid::Uuid;

use super::json;
use super::serve::call_with;

pub const REPORT: &str = "/keysync.v1.KeySync/ReportUsage";

pub fn id(text: &str) -> Vec<u8> {
    Uuid::parse_str(text).unwrap().as_bytes().to_vec()
}

/// A counter with `requests` requests, each 2 ms, 100 bytes in and 1000 out, on a
/// route without a name.
pub fn counter(org: &str, key: &str, outcome: u32, requests: u64) -> UsageCounter {
    UsageCounter {
        org_id: id(org),
        key_id: id(key),
        outcome,
        requests,
        duration_us: requests * 2000,
        duration_buckets: vec![requests, 0, 0, 0],
        request_bytes: requests * 100,
        response_bytes: requests * 1000,
        endpoint: "-".into(),
    }
}

/// The same counter on the route named `endpoint`.
pub fn on(endpoint: &str, counter: UsageCounter) -> UsageCounter {
    UsageCounter {
        endpoint: endpoint.into(),
        ..counter
    }
}

/// A flush of `counters` by `instance`, cut now.
pub fn flush(instance: Uuid, counters: Vec<UsageCounter>) -> ReportUsageRequest {
    ReportUsageRequest {
        instance_id: instance.as_bytes().to_vec(),
        cut_at_ms: Utc::now().timestamp_millis(),
        counters,
        unattributed_requests: 0,
        dropped_requests: 0,
        gateway: None,
    }
}

/// Sends a flush; the counters keysync took.
pub async fn report(channel: &Channel, request: ReportUsageRequest) -> Result<u32, Status> {
    report_with(channel, request, &[]).await
}

/// As [`report`], with gRPC metadata (a token).
pub async fn report_with(
    channel: &Channel,
    request: ReportUsageRequest,
    metadata: &[(&'static str, &str)],
) -> Result<u32, Status> {
    let answer: ReportUsageResponse = call_with(channel, REPORT, request, metadata).await?;
    Ok(answer.accepted)
}

/// `keysync usage --json <args>`.
pub fn usage_json(url: &str, args: &[&str]) -> Value {
    let mut all = vec!["usage", "--json"];
    all.extend_from_slice(args);
    json(url, &all)
}

/// The requests `keysync usage` reports for `org` over the last day.
pub fn total(url: &str, org: &str) -> i64 {
    usage_json(url, &["--org-id", org, "--since", "1d"])["total_requests"]
        .as_i64()
        .unwrap()
}

//! The rate-limit service's answers: the overall code, one status per descriptor, and
//! the headers Envoy adds to the response (to the upstream's response when the request
//! is allowed, to the 429 when it is not).
//!
//! Headers, in the form the filter's local mode sends (`keysync_contract::rate_limit_headers`):
//! - `ratelimit: limit=<budget>, remaining=<n>, reset=<seconds until the window ends>`,
//!   for the descriptor of ours with the fewest requests left;
//! - on a refusal also `ratelimit-policy: <budget>;w=60` (one item per descriptor of
//!   ours) and `retry-after: <seconds until the window ends>`.
//!
//! (Names are sent in lower case, as HTTP/2 spells them; Envoy lower-cases them anyway.)

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit as CurrentLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;
use envoy_types::pb::google::protobuf::Duration as ProtoDuration;

use keysync_contract::rate_limit_headers::{
    self, POLICY_HEADER, RATELIMIT_HEADER, RETRY_AFTER_HEADER,
};

use super::descriptor::Descriptor;
use super::window::{Usage, Window};

/// One of our descriptors after its hits were counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub descriptor: Descriptor,
    pub usage: Usage,
}

/// The answer once every descriptor of ours was counted in `window`; `counted[i]` is
/// `None` for the request's descriptors that are not ours (they are always `OK`).
pub fn counted(counted: &[Option<Counted>], window: Window) -> RateLimitResponse {
    let over = counted.iter().flatten().any(|c| c.usage.over_limit());
    let statuses = counted
        .iter()
        .map(|counted| match counted {
            None => status(Code::Ok),
            Some(counted) => DescriptorStatus {
                code: if counted.usage.over_limit() {
                    Code::OverLimit
                } else {
                    Code::Ok
                } as i32,
                current_limit: Some(CurrentLimit {
                    name: counted.descriptor.subject.kind().to_owned(),
                    requests_per_unit: u32::try_from(counted.usage.budget).unwrap_or(u32::MAX),
                    unit: Unit::Minute as i32,
                }),
                limit_remaining: u32::try_from(counted.usage.remaining()).unwrap_or(u32::MAX),
                duration_until_reset: Some(ProtoDuration {
                    seconds: i64::try_from(window.seconds_left).unwrap_or(i64::MAX),
                    nanos: 0,
                }),
                quota: None,
            },
        })
        .collect();
    let ours: Vec<&Counted> = counted.iter().flatten().collect();
    let mut headers = Vec::new();
    // The first of those closest to their limit: what the client runs into first.
    if let Some(nearest) = ours.iter().min_by_key(|c| c.usage.remaining()) {
        headers.push(header(
            RATELIMIT_HEADER,
            rate_limit_headers::ratelimit(
                nearest.usage.budget,
                nearest.usage.remaining(),
                window.seconds_left,
            ),
        ));
        if over {
            let policies: Vec<String> = ours
                .iter()
                .map(|c| rate_limit_headers::policy_item(c.usage.budget))
                .collect();
            headers.push(header(POLICY_HEADER, policies.join(", ")));
            headers.push(header(RETRY_AFTER_HEADER, window.seconds_left.to_string()));
        }
    }
    RateLimitResponse {
        overall_code: if over { Code::OverLimit } else { Code::Ok } as i32,
        statuses,
        response_headers_to_add: headers,
        ..RateLimitResponse::default()
    }
}

/// The answer without counting: `OK` for descriptors that are not ours, `code` for ours
/// (`OK` when there is nothing to count with, the failure mode's code when Redis
/// failed). No headers: there are no counts to report.
pub fn uncounted(ours: &[bool], code: Code) -> RateLimitResponse {
    let overall = if code == Code::OverLimit && ours.contains(&true) {
        Code::OverLimit
    } else {
        Code::Ok
    };
    RateLimitResponse {
        overall_code: overall as i32,
        statuses: ours
            .iter()
            .map(|&ours| status(if ours { code } else { Code::Ok }))
            .collect(),
        ..RateLimitResponse::default()
    }
}

fn status(code: Code) -> DescriptorStatus {
    DescriptorStatus {
        code: code as i32,
        ..DescriptorStatus::default()
    }
}

fn header(key: &str, value: String) -> HeaderValue {
    HeaderValue {
        key: key.to_owned(),
        value,
        ..HeaderValue::default()
    }
}

#[cfg(test)]
mod tests {
    use keysync_contract::id::Id;
    use keysync_contract::limit::Limit;
    use keysync_contract::subject::Subject;
    use uuid::Uuid;

    use super::*;

    /// A descriptor of ours counted `count` times, for a subject of `kind`
    /// (`Subject::Org` or `Subject::Key`).
    fn ours(kind: fn(Id) -> Subject, rpm: u32, burst: u32, count: u64) -> Option<Counted> {
        let limit = Limit {
            requests_per_minute: rpm,
            burst,
        };
        Some(Counted {
            descriptor: Descriptor {
                subject: kind(Id(Uuid::from_u128(1).into_bytes())),
                limit,
            },
            usage: Usage {
                budget: u64::from(limit.budget()),
                count,
            },
        })
    }

    fn headers(response: &RateLimitResponse) -> Vec<(&str, &str)> {
        response
            .response_headers_to_add
            .iter()
            .map(|h| (h.key.as_str(), h.value.as_str()))
            .collect()
    }

    // 1_700_000_000 is 20 s into its minute: 40 s left.
    const WINDOW_AT: u64 = 1_700_000_000;

    #[test]
    fn within_the_budget_says_what_is_left() {
        let window = Window::at(WINDOW_AT);
        let response = counted(&[ours(Subject::Org, 100, 20, 30)], window);
        assert_eq!(response.overall_code, Code::Ok as i32);
        assert_eq!(
            headers(&response),
            [("ratelimit", "limit=120, remaining=90, reset=40")]
        );
        let status = &response.statuses[0];
        assert_eq!(status.code, Code::Ok as i32);
        let limit = status.current_limit.as_ref().unwrap();
        assert_eq!(limit.requests_per_unit, 120);
        assert_eq!(limit.unit, Unit::Minute as i32);
        assert_eq!(limit.name, "org");
        assert_eq!(status.limit_remaining, 90);
        assert_eq!(status.duration_until_reset.unwrap().seconds, 40);
    }

    #[test]
    fn the_last_allowed_and_the_first_refused() {
        let window = Window::at(WINDOW_AT + 39);
        let last = counted(&[ours(Subject::Key, 100, 0, 100)], window);
        assert_eq!(last.overall_code, Code::Ok as i32);
        assert_eq!(
            headers(&last),
            [("ratelimit", "limit=100, remaining=0, reset=1")]
        );

        let refused = counted(&[ours(Subject::Key, 100, 0, 101)], window);
        assert_eq!(refused.overall_code, Code::OverLimit as i32);
        assert_eq!(refused.statuses[0].code, Code::OverLimit as i32);
        assert_eq!(refused.statuses[0].limit_remaining, 0);
        assert_eq!(
            headers(&refused),
            [
                ("ratelimit", "limit=100, remaining=0, reset=1"),
                ("ratelimit-policy", "100;w=60"),
                ("retry-after", "1"),
            ]
        );
    }

    #[test]
    fn descriptors_not_ours_are_ok_and_any_over_is_over() {
        let window = Window::at(WINDOW_AT);
        let response = counted(
            &[
                None,
                ours(Subject::Org, 10, 0, 3),
                ours(Subject::Key, 1, 1, 5),
            ],
            window,
        );
        assert_eq!(response.overall_code, Code::OverLimit as i32);
        let codes: Vec<i32> = response.statuses.iter().map(|s| s.code).collect();
        assert_eq!(
            codes,
            [Code::Ok as i32, Code::Ok as i32, Code::OverLimit as i32]
        );
        assert_eq!(response.statuses[0].current_limit, None);
        assert_eq!(
            headers(&response),
            [
                ("ratelimit", "limit=2, remaining=0, reset=40"),
                ("ratelimit-policy", "10;w=60, 2;w=60"),
                ("retry-after", "40"),
            ]
        );
    }

    #[test]
    fn nothing_of_ours_means_ok_without_headers() {
        let response = counted(&[None, None], Window::at(WINDOW_AT));
        assert_eq!(response.overall_code, Code::Ok as i32);
        assert_eq!(response.statuses.len(), 2);
        assert!(response.response_headers_to_add.is_empty());
    }

    #[test]
    fn uncounted_answers_follow_the_failure_code() {
        let open = uncounted(&[false, true], Code::Ok);
        assert_eq!(open.overall_code, Code::Ok as i32);
        assert!(open.response_headers_to_add.is_empty());
        assert_eq!(open.statuses.len(), 2);

        let closed = uncounted(&[false, true], Code::OverLimit);
        assert_eq!(closed.overall_code, Code::OverLimit as i32);
        assert_eq!(closed.statuses[0].code, Code::Ok as i32);
        assert_eq!(closed.statuses[1].code, Code::OverLimit as i32);
        assert!(closed.response_headers_to_add.is_empty());

        // Closed never refuses a request with nothing of ours in it.
        let none = uncounted(&[false], Code::OverLimit);
        assert_eq!(none.overall_code, Code::Ok as i32);
    }
}

//! The rate-limit service's answers: the overall code, one status per descriptor, and
//! the headers Envoy adds to the response (to the upstream's response when the request
//! is allowed, to the 429 when it is not).
//!
//! Headers, one list item per descriptor of ours (IETF RateLimit header fields):
//! - `ratelimit-policy: "org";q=<budget>;w=60`
//! - `ratelimit: "org";r=<remaining>;t=<seconds until the window ends>`
//! - `retry-after: <seconds until the window ends>`, only when over the limit.
//!
//! (Names are sent in lower case, as HTTP/2 spells them; Envoy lower-cases them anyway.)

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit as CurrentLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;
use envoy_types::pb::google::protobuf::Duration as ProtoDuration;

use super::descriptor::Descriptor;
use super::window::{Usage, Window, WINDOW_SECONDS};

pub const POLICY_HEADER: &str = "ratelimit-policy";
pub const RATELIMIT_HEADER: &str = "ratelimit";
pub const RETRY_AFTER_HEADER: &str = "retry-after";

/// One of our descriptors after its hits were counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub descriptor: Descriptor,
    pub usage: Usage,
}

impl Counted {
    fn policy_item(&self) -> String {
        format!(
            "\"{}\";q={};w={WINDOW_SECONDS}",
            self.descriptor.subject.kind.as_str(),
            self.usage.budget
        )
    }

    fn ratelimit_item(&self, window: Window) -> String {
        format!(
            "\"{}\";r={};t={}",
            self.descriptor.subject.kind.as_str(),
            self.usage.remaining(),
            window.seconds_left
        )
    }
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
                    name: counted.descriptor.subject.kind.as_str().to_owned(),
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
    if !ours.is_empty() {
        headers.push(header(POLICY_HEADER, list(&ours, |c| c.policy_item())));
        headers.push(header(
            RATELIMIT_HEADER,
            list(&ours, |c| c.ratelimit_item(window)),
        ));
        if over {
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

fn list(counted: &[&Counted], item: impl Fn(&Counted) -> String) -> String {
    counted
        .iter()
        .map(|counted| item(counted))
        .collect::<Vec<_>>()
        .join(", ")
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
    use uuid::Uuid;

    use super::super::descriptor::{Limit, Subject, SubjectKind};
    use super::*;

    fn ours(kind: SubjectKind, rpm: u32, burst: u32, count: u64) -> Option<Counted> {
        let limit = Limit {
            requests_per_minute: rpm,
            burst,
        };
        Some(Counted {
            descriptor: Descriptor {
                subject: Subject {
                    kind,
                    id: Uuid::from_u128(1),
                },
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
        let response = counted(&[ours(SubjectKind::Org, 100, 20, 30)], window);
        assert_eq!(response.overall_code, Code::Ok as i32);
        assert_eq!(
            headers(&response),
            [
                ("ratelimit-policy", "\"org\";q=120;w=60"),
                ("ratelimit", "\"org\";r=90;t=40"),
            ]
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
        let last = counted(&[ours(SubjectKind::Key, 100, 0, 100)], window);
        assert_eq!(last.overall_code, Code::Ok as i32);
        assert_eq!(headers(&last)[1], ("ratelimit", "\"key\";r=0;t=1"));

        let refused = counted(&[ours(SubjectKind::Key, 100, 0, 101)], window);
        assert_eq!(refused.overall_code, Code::OverLimit as i32);
        assert_eq!(refused.statuses[0].code, Code::OverLimit as i32);
        assert_eq!(refused.statuses[0].limit_remaining, 0);
        assert_eq!(
            headers(&refused),
            [
                ("ratelimit-policy", "\"key\";q=100;w=60"),
                ("ratelimit", "\"key\";r=0;t=1"),
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
                ours(SubjectKind::Org, 10, 0, 3),
                ours(SubjectKind::Key, 1, 1, 5),
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
                ("ratelimit-policy", "\"org\";q=10;w=60, \"key\";q=2;w=60"),
                ("ratelimit", "\"org\";r=7;t=40, \"key\";r=0;t=40"),
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

//! Readiness checks: the gateway's `/health` and its probe port's `/ready` ask keysync
//! whether the gateway can decide keys, which in ext_authz mode means whether keysync
//! has loaded its key snapshot (its readiness latch, [`crate::readiness`]). Envoy marks
//! those routes with an ext_authz context extension (`keysync: readiness`, set in the
//! route configuration, out of any client's reach); keysync then answers OK once ready
//! and `UNAVAILABLE` (Envoy's 503) before, whatever the request carries, and judges no
//! key. A keysync Envoy cannot reach gets the same 503: in this mode the gateway can
//! decide nothing without it.

use envoy_types::pb::envoy::service::auth::v3::CheckRequest;

/// The context extension that marks a readiness check, and its value.
pub const CONTEXT_EXTENSION: (&str, &str) = ("keysync", "readiness");

/// Whether Envoy's route marked `request` as a readiness check.
pub fn is_readiness_check(request: &CheckRequest) -> bool {
    let (name, value) = CONTEXT_EXTENSION;
    request
        .attributes
        .as_ref()
        .and_then(|attributes| attributes.context_extensions.get(name))
        .is_some_and(|marked| marked == value)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use envoy_types::pb::envoy::service::auth::v3::AttributeContext;

    use super::*;

    fn with_extensions(extensions: &[(&str, &str)]) -> CheckRequest {
        CheckRequest {
            attributes: Some(AttributeContext {
                context_extensions: extensions
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<HashMap<_, _>>(),
                ..AttributeContext::default()
            }),
        }
    }

    #[test]
    fn only_the_routes_mark_tells() {
        assert!(is_readiness_check(&with_extensions(&[(
            "keysync",
            "readiness"
        )])));
        assert!(!is_readiness_check(&with_extensions(&[])));
        assert!(!is_readiness_check(&with_extensions(&[(
            "keysync", "other"
        )])));
        assert!(!is_readiness_check(&with_extensions(&[(
            "readiness",
            "keysync"
        )])));
        assert!(!is_readiness_check(&CheckRequest::default()));
    }
}

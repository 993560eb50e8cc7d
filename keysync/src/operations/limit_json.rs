//! How a rate limit reads in serialized results: an object with `requests_per_minute`
//! and `burst`, plus `per_key` where whose budget it is can differ (a key's limit may
//! be its own or its organization's), or `null` for no limit. For `serialize_with`.

use keysync_contract::limit::{KeyLimit, Limit};
use serde::{Serialize, Serializer};

/// An organization's limit: `requests_per_minute + burst` requests in each clock-aligned
/// one-minute window, shared by all its keys.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OrgLimitJson {
    #[schema(minimum = 1, maximum = 2147483647)]
    pub requests_per_minute: u32,
    #[schema(minimum = 0, maximum = 2147483647)]
    pub burst: u32,
}

/// The limit a key runs under; `per_key`: its own (counted for it alone), else its
/// organization's (shared).
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyLimitJson {
    #[schema(minimum = 1, maximum = 2147483647)]
    pub requests_per_minute: u32,
    #[schema(minimum = 0, maximum = 2147483647)]
    pub burst: u32,
    pub per_key: bool,
}

/// An organization's limit (always shared by its keys, so no `per_key`).
pub fn org_limit<S: Serializer>(limit: &Option<Limit>, serializer: S) -> Result<S::Ok, S::Error> {
    limit
        .map(|limit| OrgLimitJson {
            requests_per_minute: limit.requests_per_minute,
            burst: limit.burst,
        })
        .serialize(serializer)
}

/// The limit a key runs under.
pub fn key_limit<S: Serializer>(
    limit: &Option<KeyLimit>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    limit
        .map(|key_limit| KeyLimitJson {
            requests_per_minute: key_limit.limit.requests_per_minute,
            burst: key_limit.limit.burst,
            per_key: key_limit.per_key,
        })
        .serialize(serializer)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[derive(Serialize)]
    struct Both {
        #[serde(serialize_with = "org_limit")]
        org: Option<Limit>,
        #[serde(serialize_with = "key_limit")]
        key: Option<KeyLimit>,
    }

    #[test]
    fn limits_are_objects_or_null() {
        let limit = Limit {
            requests_per_minute: 100,
            burst: 20,
        };
        let both = Both {
            org: Some(limit),
            key: Some(KeyLimit {
                limit,
                per_key: true,
            }),
        };
        assert_eq!(
            serde_json::to_value(both).unwrap(),
            json!({
                "org": {"requests_per_minute": 100, "burst": 20},
                "key": {"requests_per_minute": 100, "burst": 20, "per_key": true},
            })
        );
        let neither = Both {
            org: None,
            key: None,
        };
        assert_eq!(
            serde_json::to_value(neither).unwrap(),
            json!({"org": null, "key": null})
        );
    }
}

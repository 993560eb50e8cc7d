//! `REDIS_URL`: where the rate-limit counters live, checked once at start and never
//! shown with its password.

use std::fmt;

use crate::url_redaction;

/// A Redis URL the client accepts, such as `redis://127.0.0.1:6379/0` or
/// `redis://:password@redis.internal:6379/0`. Its `Debug` and `Display` hide the
/// password, so it can sit in logged settings.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// Checks `url` the way the Redis client will read it. The error never repeats the
    /// URL.
    pub fn parse(url: &str) -> Result<RedisUrl, String> {
        let url = url.trim();
        redis::Client::open(url).map_err(|error| {
            format!(
                "not a Redis URL such as redis://127.0.0.1:6379/0 ({})",
                error.to_string().replace(url, "<url>")
            )
        })?;
        Ok(RedisUrl(url.to_owned()))
    }

    /// The URL itself, password included: only for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        redacted(&self.0)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisUrl").field(&self.redacted()).finish()
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `url` with the password of its user-info part and of the `pass`/`password` query
/// parameters (Unix-socket URLs) replaced by `***`.
pub fn redacted(url: &str) -> String {
    url_redaction::redact(url.trim(), |name| {
        name == "pass" || name.eq_ignore_ascii_case("password")
    })
    .unwrap_or_else(|| "<unparseable Redis URL>".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_urls_are_accepted_and_shown_as_given() {
        let url = RedisUrl::parse(" redis://127.0.0.1:6379/0 ").unwrap();
        assert_eq!(url.expose(), "redis://127.0.0.1:6379/0");
        assert_eq!(url.to_string(), "redis://127.0.0.1:6379/0");
    }

    #[test]
    fn passwords_never_show() {
        let url = RedisUrl::parse("redis://:s3cret@10.0.0.5:6379/2").unwrap();
        assert_eq!(url.expose(), "redis://:s3cret@10.0.0.5:6379/2");
        assert_eq!(url.to_string(), "redis://:***@10.0.0.5:6379/2");
        assert!(!format!("{url:?}").contains("s3cret"));
        let user = RedisUrl::parse("redis://app:p%40ss@h:1/0").unwrap();
        assert_eq!(user.redacted(), "redis://app:***@h:1/0");
        let socket = redacted("redis+unix:///run/redis.sock?db=1&pass=s3cret");
        assert!(!socket.contains("s3cret"), "{socket}");
        assert!(socket.contains("db=1"), "{socket}");
        assert_eq!(redacted("not a url s3cret"), "<unparseable Redis URL>");
    }

    #[test]
    fn bad_urls_are_refused_without_repeating_them() {
        for url in [
            "postgres://u:s3cret@h/db",
            "s3cret",
            "redis://:s3cret@0.0.0.0:6379",
            "rediss://:s3cret@h:6379",
        ] {
            let reason = RedisUrl::parse(url).unwrap_err();
            assert!(!reason.contains("s3cret"), "{url}: {reason}");
            assert!(reason.starts_with("not a Redis URL"), "{url}: {reason}");
        }
    }
}

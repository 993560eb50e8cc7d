//! `REDIS_URL`: where the rate-limit counters live, checked once at start and never
//! shown with its password; with `rediss://`, TLS, checked against the system's roots
//! or the CA `KEYSYNC_REDIS_TLS_CA` names.

use std::fmt;

use crate::ca_file::CaFile;
use crate::url_redaction;

/// A Redis URL the client accepts, such as `redis://127.0.0.1:6379/0`,
/// `redis://:password@redis.internal:6379/0` or `rediss://redis.internal:6380/0`, and
/// for TLS the CA Redis's certificate must chain to. Its `Debug` and `Display` hide the
/// password, so it can sit in logged settings.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    url: String,
    /// `None`: the system's trusted roots.
    ca: Option<CaFile>,
}

impl RedisUrl {
    /// Checks `url` the way the Redis client will read it. The error never repeats the
    /// URL.
    pub fn parse(url: &str) -> Result<RedisUrl, String> {
        let url = url.trim();
        let client = redis::Client::open(url).map_err(|error| {
            format!(
                "not a Redis URL such as redis://127.0.0.1:6379/0 ({})",
                error.to_string().replace(url, "<url>")
            )
        })?;
        if let redis::ConnectionAddr::TcpTls { insecure: true, .. } =
            client.get_connection_info().addr()
        {
            return Err(
                "rediss://...#insecure (TLS without checking the certificate) is not \
                        supported: name Redis's CA with KEYSYNC_REDIS_TLS_CA"
                    .to_owned(),
            );
        }
        Ok(RedisUrl {
            url: url.to_owned(),
            ca: None,
        })
    }

    /// This URL, with Redis's certificate checked against `ca` instead of the system's
    /// roots; only for a TLS URL (`rediss://`).
    pub fn with_ca(self, ca: CaFile) -> Result<RedisUrl, String> {
        if !self.is_tls() {
            return Err("REDIS_URL is not a TLS URL (rediss://...)".to_owned());
        }
        Ok(RedisUrl {
            ca: Some(ca),
            ..self
        })
    }

    /// `rediss://` (or `valkeys://`): TLS.
    pub fn is_tls(&self) -> bool {
        redis::Client::open(self.url.as_str()).is_ok_and(|client| {
            matches!(
                client.get_connection_info().addr(),
                redis::ConnectionAddr::TcpTls { .. }
            )
        })
    }

    /// The CA that Redis's certificate must chain to; `None`: the system's roots.
    pub fn ca(&self) -> Option<&CaFile> {
        self.ca.as_ref()
    }

    /// Where the certificates that vouch for Redis come from, for error messages.
    pub fn trusted(&self) -> String {
        match &self.ca {
            Some(ca) => format!("KEYSYNC_REDIS_TLS_CA \"{}\"", ca.path().display()),
            None => "the system's trusted roots".to_owned(),
        }
    }

    /// The host Redis's certificate is checked against.
    pub fn host(&self) -> String {
        url::Url::parse(&self.url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The URL itself, password included: only for connecting.
    pub fn expose(&self) -> &str {
        &self.url
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        redacted(&self.url)
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
    fn tls_urls_are_accepted_and_may_name_a_ca() {
        let url = RedisUrl::parse("rediss://:s3cret@redis.internal:6380/0").unwrap();
        assert!(url.is_tls());
        assert_eq!(url.host(), "redis.internal");
        assert_eq!(url.trusted(), "the system's trusted roots");
        assert_eq!(url.to_string(), "rediss://:***@redis.internal:6380/0");

        let dir = std::env::temp_dir().join(format!("keysync-redis-url-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca".to_owned()]).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.cert.pem()).unwrap();
        let ca = CaFile::read(&dir.join("ca.pem")).unwrap();
        let with_ca = url.with_ca(ca.clone()).unwrap();
        assert_eq!(with_ca.ca(), Some(&ca));
        assert_eq!(
            with_ca.trusted(),
            format!("KEYSYNC_REDIS_TLS_CA \"{}\"", dir.join("ca.pem").display())
        );
        let plain = RedisUrl::parse("redis://h:6379/0").unwrap();
        assert!(!plain.is_tls());
        assert_eq!(
            plain.with_ca(ca).unwrap_err(),
            "REDIS_URL is not a TLS URL (rediss://...)"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tls_without_checking_the_certificate_is_refused() {
        let reason = RedisUrl::parse("rediss://:s3cret@h:6380/#insecure").unwrap_err();
        assert!(reason.contains("KEYSYNC_REDIS_TLS_CA"), "{reason}");
        assert!(!reason.contains("s3cret"), "{reason}");
    }

    #[test]
    fn bad_urls_are_refused_without_repeating_them() {
        for url in [
            "postgres://u:s3cret@h/db",
            "s3cret",
            "redis://:s3cret@0.0.0.0:6379",
            "http://:s3cret@h:6379",
        ] {
            let reason = RedisUrl::parse(url).unwrap_err();
            assert!(!reason.contains("s3cret"), "{url}: {reason}");
            assert!(reason.starts_with("not a Redis URL"), "{url}: {reason}");
        }
    }
}

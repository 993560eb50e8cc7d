//! How the worker ends a request's way through the filter: forwarded upstream with the
//! gateway's identity headers and without any credential, or answered with the
//! contract's reply (a refusal, a 429 for a rate limit or a quota).

use crate::auth::admission::Carried;
use crate::auth::record_cache::CachedRecord;
use crate::auth::worker::AuthWorker;
use crate::config::RateLimitMode;
use crate::host::{Action, Host, HostError, HttpRequest};
use crate::limits::local_rate_limit::WindowState;
use crate::limits::quota::Refusal;
use crate::stats::Counter;
use keysync_contract::credential_sources;
use keysync_contract::rate_limit_headers::{
    self, POLICY_HEADER, RATELIMIT_HEADER, RETRY_AFTER_HEADER,
};
use keysync_contract::reply::{self as response, Denial, QUOTA_EXCEEDED_BODY, RATE_LIMITED_BODY};
use keysync_contract::{
    KEY_ID_HEADER, ORG_ID_HEADER, RATE_LIMIT_LIMIT_HEADER, RATE_LIMIT_SUBJECT_HEADER,
};
use log::warn;

impl<H: Host> AuthWorker<H> {
    /// Forwards an accepted request with the gateway's identity headers, without any
    /// credential (unless `forward_credential`): also one the filter did not use, such
    /// as an `x-api-key` beside the `Authorization` that decided.
    pub fn forward(
        &self,
        request: &H::Request,
        identity: &CachedRecord,
        carried: &Carried,
    ) -> Action {
        let written = request
            .set_request_header(ORG_ID_HEADER, &identity.org_id)
            .and_then(|()| request.set_request_header(KEY_ID_HEADER, &identity.key_id))
            .and_then(|()| self.strip_credentials(request, carried));
        if written.is_err() {
            // Never forward with a client's own identity headers possibly left in place.
            return self.reply(request, Denial::Unavailable);
        }
        self.stats.bump(Counter::Allowed);
        Action::Continue
    }

    /// Takes the credentials `carried` names off the request (unless
    /// `forward_credential`): one host call for each header, and one for the `:path` or
    /// the `Cookie` only when a credential was found there.
    pub fn strip_credentials(
        &self,
        request: &H::Request,
        carried: &Carried,
    ) -> Result<(), HostError> {
        if self.config.forward_credential {
            return Ok(());
        }
        for header in self.config.credentials.headers_to_remove(carried) {
            request.remove_request_header(header)?;
        }
        if let Some(path) = carried.path() {
            request.set_request_header(credential_sources::PATH, path)?;
        }
        match carried.cookie() {
            Some(Some(cookies)) => {
                request.set_request_header(credential_sources::COOKIE, cookies)?
            }
            Some(None) => request.remove_request_header(credential_sources::COOKIE)?,
            None => {}
        }
        Ok(())
    }

    /// Global mode: a client must not choose whose budget its request is counted on.
    pub fn strip_rate_limit_headers(&self, request: &H::Request) -> bool {
        self.config.rate_limit != RateLimitMode::Global
            || (request
                .remove_request_header(RATE_LIMIT_SUBJECT_HEADER)
                .is_ok()
                && request
                    .remove_request_header(RATE_LIMIT_LIMIT_HEADER)
                    .is_ok())
    }

    /// Answers the request with the contract's reply for `denial`.
    pub fn reply(&self, request: &H::Request, denial: Denial) -> Action {
        self.stats.bump(match denial {
            Denial::MissingKey => Counter::Missing,
            Denial::InvalidKey => Counter::Invalid,
            Denial::Unavailable => Counter::Unavailable,
            Denial::InsufficientScope => Counter::InsufficientScope,
            Denial::IpNotAllowed => Counter::IpNotAllowed,
        });
        let reply = response::reply(denial, self.config.invalid_key_status);
        if let Err(e) = request.send_reply(reply.status, reply.headers, reply.body) {
            warn!("cannot send the {} reply: {e}", reply.status);
        }
        Action::Pause
    }

    /// The 429 of a request over its rate limit.
    pub fn reply_rate_limited(&self, request: &H::Request, window: &WindowState) {
        self.stats.bump(Counter::RateLimited);
        let headers = window.refusal_headers();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        if let Err(e) = request.send_reply(429, &headers, RATE_LIMITED_BODY) {
            warn!("cannot send the 429 reply: {e}");
        }
    }

    /// The 429 of a request over a monthly quota.
    pub fn reply_quota_exceeded(&self, request: &H::Request, refusal: &Refusal) {
        self.stats.bump(Counter::QuotaExceeded);
        let (json_name, json_value) = response::JSON;
        let retry_after = refusal.retry_after_secs.to_string();
        let policy = rate_limit_headers::policy_item_over(refusal.limit, refusal.window_secs);
        let ratelimit = rate_limit_headers::ratelimit(refusal.limit, 0, refusal.reset_secs);
        let headers = [
            (json_name, json_value),
            (RETRY_AFTER_HEADER, retry_after.as_str()),
            (POLICY_HEADER, policy.as_str()),
            (RATELIMIT_HEADER, ratelimit.as_str()),
        ];
        if let Err(e) = request.send_reply(429, &headers, QUOTA_EXCEEDED_BODY) {
            warn!("cannot send the 429 reply: {e}");
        }
    }
}

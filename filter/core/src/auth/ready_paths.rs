//! The auth filter's ready paths (`ready_paths`, `/health` unless set): keyless like
//! public paths once the store holds a complete sync ([`crate::readiness`]), answered
//! 503 `auth_unavailable` before, whatever the request carries. Only requests before
//! that pay for the check (the metadata and `:path` reads); after it, none.

use crate::auth::worker::AuthWorker;
use crate::host::{Action, Host, HttpRequest};
use keysync_contract::reply::Denial;

impl<H: Host> AuthWorker<H> {
    /// Until the store's first complete sync, answers a request on a ready path with
    /// 503 (`Some`); `None` for any other request, and for every request once ready.
    pub(super) fn refuse_unready(&self, request: &H::Request) -> Option<Action> {
        let paths = &self.config.ready_paths;
        if self.readiness.seen_ready() || paths.is_empty() {
            return None;
        }
        let path = request.request_header(":path")?;
        if !paths.iter().any(|rule| rule.matches(&path)) || self.readiness.is_ready(&self.store()) {
            return None;
        }
        Some(self.reply(request, Denial::Unavailable))
    }
}

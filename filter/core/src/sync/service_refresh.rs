//! The sync service's full refresh: starting one when it is due or wanted, sending its
//! pages' requests, applying keysync's pages (`full_refresh`), and what a completed or
//! failed refresh means for the schedule, the store's freshness and the stream.

use crate::host::Host;
use crate::keysync_api::provenance::NEVER;
use crate::keysync_api::{self, Reply};
use crate::steady_clock::millis;
use crate::sync::full_refresh::{Page, Progress, Refresh, Summary};
use crate::sync::service::{Running, Stream, SyncService};
use keysync_proto::v1 as proto;
use log::{info, warn};

impl<H: Host> SyncService<H> {
    pub(super) fn tick_refresh(&mut self, now: u64) {
        if let Some(running) = &self.running {
            // Envoy answers every call, if only with a timeout; this is a last resort.
            let deadline = millis(self.config.request_timeout).saturating_mul(2);
            if now.saturating_sub(running.sent_at_ms) > deadline {
                let token = running.token;
                self.running = None;
                self.host.cancel_grpc(token);
                self.refresh_failed(now, "no answer from keysync");
            }
            return;
        }
        if self.resync_wanted || self.schedule.is_due(now) {
            self.resync_wanted = false;
            let refresh = Refresh::new(self.config.page_size, self.reset_wanted);
            let request = refresh.first_request();
            let stream_up = self.stream_connected();
            self.send_page_request(refresh, &request, now, stream_up);
        }
    }

    /// A `ListKeys` page or a `ReportUsage` answer arrived (or its call failed).
    pub fn on_response(&mut self, token: u32, reply: Reply) {
        if !self.active {
            return;
        }
        if let Some(usage) = self.usage.as_mut().filter(|usage| usage.owns(token)) {
            let now = self.clock.read(self.host.now_unix_ms());
            usage.on_response(&self.host, &self.config.keysync_cluster, now, token, reply);
            return;
        }
        if let Some(quota) = self.quota.as_mut().filter(|quota| quota.owns(token)) {
            quota.on_response(&self.host, token, reply);
            return;
        }
        if let Some(report) = self.report.as_mut().filter(|report| report.owns(token)) {
            let now = self.clock.read(self.host.now_unix_ms());
            report.on_response(now, token, reply);
            return;
        }
        let Some(mut running) = self.running.take() else {
            return;
        };
        if running.token != token {
            self.running = Some(running);
            return;
        }
        let now = self.now();
        let page = match keysync_api::decode::<proto::ListKeysResponse>(reply)
            .map_err(|e| e.to_string())
            .and_then(|page| Page::decode(page).map_err(|e| e.to_string()))
        {
            Ok(page) => page,
            Err(reason) => return self.refresh_failed(now, &reason),
        };
        if running.refresh.is_first_page() {
            if let Some(reason) = self.behind_the_store(&page) {
                return self.refresh_failed(now, &reason);
            }
            let age = page.provenance.confirmed_age_ms;
            running.first_confirmed_at = (age != NEVER).then(|| now.saturating_sub(age));
        }
        let applied = running.refresh.apply(&self.store(), page);
        match applied {
            Ok(Progress::More(request)) => {
                let stream_up = running.stream_up_throughout;
                let confirmed = running.first_confirmed_at;
                self.send_page_request(running.refresh, &request, now, stream_up);
                if let Some(next) = &mut self.running {
                    next.first_confirmed_at = confirmed;
                }
            }
            Ok(Progress::Done(summary)) => {
                self.refresh_succeeded(now, &running, summary);
            }
            Err(e) => self.refresh_failed(now, &e.to_string()),
        }
    }

    /// A periodic refresh must not take a snapshot older than what the store already
    /// holds (a keysync lagging behind another, or cut off from PostgreSQL): its pages
    /// would undo newer changes. A resync takes keysync's word (see `Refresh::new`).
    fn behind_the_store(&self, first: &Page) -> Option<String> {
        let complete = self.complete?;
        let meta = self.store().meta();
        (!self.reset_wanted && first.provenance.epoch == meta.epoch && first.revision < complete)
            .then(|| {
                format!(
                    "keysync is behind the store (revision {} < {complete}); not taking its pages",
                    first.revision
                )
            })
    }

    pub(super) fn send_page_request(
        &mut self,
        refresh: Refresh,
        request: &proto::ListKeysRequest,
        now: u64,
        stream_up_throughout: bool,
    ) {
        match keysync_api::dispatch(
            &self.host,
            &self.config.keysync_cluster,
            keysync_api::LIST_KEYS,
            request,
            self.config.request_timeout,
        ) {
            Ok(token) => {
                self.running = Some(Running {
                    refresh,
                    token,
                    sent_at_ms: now,
                    first_confirmed_at: None,
                    stream_up_throughout,
                })
            }
            Err(e) => self.refresh_failed(now, &e.to_string()),
        }
    }

    fn refresh_succeeded(&mut self, now: u64, running: &Running, summary: Summary) {
        info!(
            "cache refresh complete: updated={}, removed={}, total={}",
            summary.updated, summary.removed, summary.total
        );
        if running.stream_up_throughout && summary.updated + summary.removed > 0 {
            warn!(
                "cache refresh repaired drift the watch stream had not delivered: updated={}, removed={}",
                summary.updated, summary.removed
            );
        }
        self.schedule.succeeded(now);
        self.metrics.refresh_ok.add(&self.host, 1);
        self.metrics.keys_loaded.record(&self.host, summary.total);
        let revision = self.store().meta().revision;
        self.metrics.store_revision.record(&self.host, revision);
        if let Some(at) = running.first_confirmed_at {
            // Not behind the store (checked at the first page), so the store now holds
            // everything keysync had confirmed then.
            self.confirmed(now, now.saturating_sub(at));
        }
        if running.refresh.replaces_baseline() {
            // A new baseline: what the store was complete up to before no longer counts.
            self.reset_wanted = false;
            if running.refresh.is_reset() {
                // Nor do the lookups' revisions: the new ones may restart lower.
                if let Err(e) = self.store().prune_lookups(0, None) {
                    warn!("cannot clear the lookup ledger: {e}");
                }
            }
            self.complete = running.refresh.first_revision();
            if let (true, Stream::Down { .. }, Some(after)) =
                (self.config.watch, &self.stream, self.complete)
            {
                self.open_stream(after, now);
            }
            return;
        }
        // With the stream down, the store is now complete up to the refresh's first page;
        // the stream resumes from there. With it up, it already tracks completeness.
        if !self.stream_connected() {
            // The stream may have delivered more than the pages before it dropped.
            if let Some(first) = running.refresh.first_revision() {
                self.complete = Some(self.complete.map_or(first, |c| c.max(first)));
            }
            if let (true, Stream::Down { .. }, Some(after)) =
                (self.config.watch, &self.stream, self.complete)
            {
                self.open_stream(after, now);
            }
        }
    }

    fn refresh_failed(&mut self, now: u64, reason: &str) {
        let delay = self.schedule.failed(now);
        warn!(
            "cache refresh failed: {reason}; retry {} in {}s; the last known keys keep serving",
            self.schedule.consecutive_failures(),
            delay.as_secs_f32()
        );
        self.metrics.refresh_failed.add(&self.host, 1);
    }
}

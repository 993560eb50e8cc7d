//! The sync service's `WatchKeys` stream: opening it from the revision the store is
//! complete up to, applying what each message says (`watch_client` checks it first),
//! and dropping a stream that went silent, stopped confirming, or went wrong, to resync
//! or reopen it with backoff.

use crate::host::Host;
use crate::keysync_api::provenance::{Provenance, NEVER};
use crate::keysync_api::{self, Reply};
use crate::steady_clock::millis;
use crate::store::key_store::Change;
use crate::sync::service::{Stream, SyncService};
use crate::sync::watch_client::{Step, Watch};
use keysync_proto::v1 as proto;
use log::{info, warn};

impl<H: Host> SyncService<H> {
    pub(super) fn tick_stream(&mut self, now: u64) {
        if !self.config.watch {
            return;
        }
        let timeout = millis(self.config.watch_idle_timeout);
        match &self.stream {
            Stream::Open {
                token,
                last_message_ms,
                partial_since_ms,
                watch,
                ..
            } => {
                let token = *token;
                let idle = now.saturating_sub(*last_message_ms);
                if idle > timeout {
                    self.host.cancel_grpc_stream(token);
                    self.stream_down(now, &format!("no message for {}s", idle / 1000));
                } else if partial_since_ms.is_some_and(|since| now.saturating_sub(since) > timeout)
                {
                    warn!(
                        "watch stream: a split change set after revision {} did not complete \
                         within {}s; resyncing, the current keys keep serving",
                        watch.complete(),
                        timeout / 1000
                    );
                    self.resync(token, now);
                }
            }
            Stream::Down { retry_at_ms } => {
                // Without a complete store there is nothing to resume from: the refresh
                // in progress opens the stream when it completes.
                if let Some(after) = self.complete {
                    if now >= *retry_at_ms && !self.resync_pending() {
                        self.open_stream(after, now);
                    }
                }
            }
        }
    }

    pub(super) fn open_stream(&mut self, after: u64, now: u64) {
        let epoch = self.store().meta().epoch;
        let request = proto::WatchKeysRequest {
            after_revision: after,
            epoch,
        };
        match keysync_api::open_stream(
            &self.host,
            &self.config.keysync_cluster,
            keysync_api::WATCH_KEYS,
            &request,
        ) {
            Ok(token) => {
                self.stream = Stream::Open {
                    token,
                    watch: Watch::new(epoch, after),
                    last_message_ms: now,
                    connected: false,
                    partial_since_ms: None,
                };
            }
            Err(e) => self.stream_down(now, &e.to_string()),
        }
    }

    /// A message arrived on the watch stream `token` (or could not be read).
    pub fn on_stream_message(&mut self, token: u32, reply: Reply) {
        if !self.active {
            return;
        }
        let now = self.now();
        let Stream::Open {
            token: open,
            watch,
            last_message_ms,
            connected,
            partial_since_ms,
        } = &mut self.stream
        else {
            return;
        };
        if *open != token {
            return;
        }
        *last_message_ms = now;
        if !*connected {
            *connected = true;
            info!(
                "watch stream connected: resuming after revision {}",
                watch.complete()
            );
            self.stream_backoff.reset();
            self.metrics.stream_connected.record(&self.host, 1);
        }
        let step = keysync_api::decode::<proto::KeyChanges>(reply)
            .map_err(|e| e.to_string())
            .and_then(|message| watch.on_message(message).map_err(|e| e.to_string()));
        let complete = watch.complete();
        let in_partial = watch.in_partial();
        *partial_since_ms = match (in_partial, *partial_since_ms) {
            (false, _) => None,
            (true, since) => since.or(Some(now)),
        };
        match step {
            Ok(Step::Apply {
                revision,
                changes,
                provenance,
            }) => {
                self.apply(revision, &changes);
                self.complete = Some(complete);
                self.stream_confirmed(token, now, provenance, in_partial);
            }
            Ok(Step::Heartbeat { provenance }) => {
                self.complete = Some(complete);
                self.stream_confirmed(token, now, provenance, in_partial);
            }
            Ok(Step::Resync) => {
                info!("keysync cannot replay the changes after revision {complete}: full resync");
                self.resync(token, now);
            }
            Err(reason) => {
                warn!("watch stream: {reason}; resyncing, the current keys keep serving");
                self.resync(token, now);
            }
        }
    }

    /// What a stream message says of keysync's confirmation. A stream whose keysync has
    /// not confirmed anything for `max_unconfirmed` (cut off from PostgreSQL) is as good
    /// as a silent one: it is reopened, perhaps to a keysync that is not cut off.
    fn stream_confirmed(&mut self, token: u32, now: u64, provenance: Provenance, in_partial: bool) {
        let age = provenance.confirmed_age_ms;
        if age > millis(self.config.max_unconfirmed) {
            self.host.cancel_grpc_stream(token);
            let reason = if age == NEVER {
                "keysync has never confirmed its keys against PostgreSQL".to_string()
            } else {
                format!(
                    "keysync has not confirmed its keys against PostgreSQL for {}s",
                    age / 1000
                )
            };
            self.stream_down(now, &reason);
        } else if !in_partial {
            self.confirmed(now, age);
        }
    }

    fn apply(&mut self, revision: u64, changes: &[Change]) {
        // Announce the revision before touching buckets (see `KeyStore::cache_lookup`).
        let store = self.store();
        let mut meta = store.meta();
        meta.revision = meta.revision.max(revision);
        if let Err(e) = store.write_meta(&meta) {
            warn!("cannot write the store metadata: {e}");
        }
        match store.apply_changes(changes) {
            Ok(diff) => {
                info!(
                    "watch applied revision {revision}: updated={}, removed={}",
                    diff.updated, diff.removed
                );
                self.metrics
                    .stream_changes
                    .add(&self.host, changes.len() as u64);
            }
            Err(e) => {
                warn!("cannot apply revision {revision}: {e}; resyncing");
                self.resync_wanted = true;
            }
        }
        if let Some(running) = &mut self.running {
            for change in changes {
                running.refresh.note(change);
            }
        }
        self.metrics
            .store_revision
            .record(&self.host, meta.revision);
    }

    /// The watch stream `token` ended.
    pub fn on_stream_close(&mut self, token: u32, status: u32) {
        if matches!(self.stream, Stream::Open { token: open, .. } if open == token) {
            let now = self.now();
            self.stream_down(now, &format!("closed with gRPC status {status}"));
        }
    }

    fn resync(&mut self, token: u32, now: u64) {
        self.host.cancel_grpc_stream(token);
        self.metrics.resyncs.add(&self.host, 1);
        self.stream = Stream::Down { retry_at_ms: now };
        self.metrics.stream_connected.record(&self.host, 0);
        self.resync_wanted = true;
        self.reset_wanted = true;
    }

    fn stream_down(&mut self, now: u64, reason: &str) {
        let delay = self.stream_backoff.failed();
        warn!(
            "watch stream down ({reason}); reconnecting in {}s",
            delay.as_secs_f32()
        );
        self.stream = Stream::Down {
            retry_at_ms: now.saturating_add(millis(delay)),
        };
        self.metrics.stream_connected.record(&self.host, 0);
        if let Some(running) = &mut self.running {
            running.stream_up_throughout = false;
        }
    }
}

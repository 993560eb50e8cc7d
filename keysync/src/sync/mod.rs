//! Syncing from PostgreSQL: reading the key set out of the database ([`loader`]),
//! keeping the in-memory copy in step with it by full reloads and incremental catch-ups
//! ([`reload`], one catch-up at a time through [`catch_up`]), starting a catch-up as
//! soon as PostgreSQL announces a change ([`change_listener`]), confirming the copy
//! against the database every few seconds ([`revision_probe`]) and tracking when it last
//! was ([`confirmation`]), telling revision histories apart ([`history`]), knowing
//! whether change announcements keep the copy current ([`freshness`]), and deciding
//! what a lookup of a key the copy does not hold waits for ([`miss`]).

use std::time::Duration;

use keysync_backoff::Backoff;

pub mod catch_up;
pub mod change_listener;
pub mod confirmation;
#[cfg(test)]
pub(crate) mod fake_catch_up;
pub mod freshness;
pub mod history;
pub mod loader;
pub mod metrics;
pub mod miss;
pub mod reload;
pub mod revision_probe;

/// First wait after a database error: short, so a blip heals fast.
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between attempts while the database stays away.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Retry spacing after database errors: 1 s doubling to 30 s, jittered so that many
/// keysync processes that lost the same database do not all come back at once.
fn database_backoff() -> Backoff {
    Backoff::new(RETRY_FIRST, RETRY_MAX, rand::random())
}

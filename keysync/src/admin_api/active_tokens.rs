//! Which admin tokens were active when last read: what lets a valid token through from
//! an address that [`super::failed_tokens`] is slowing down, without letting that
//! address's guesses reach the database.
//!
//! A throttled address's token is looked up only when its hash is among the active
//! tokens' (read whole, at most once every [`REREAD_AFTER`]): a guess costs a hash-set
//! lookup in memory and gets 429, a valid token is then looked up as usual (so a
//! revocation still counts from the next request on). A token made in the last second
//! may wait for the next read.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use keysync_contract::key_hash::KeyHash;
use sqlx::PgPool;
use tokio::sync::Mutex;
use tracing::warn;

use crate::database::describe_sqlx;
use crate::operations::admin_tokens;

/// The longest a token made meanwhile waits to be known: the active tokens are read at
/// most this often, however many unknown hashes throttled addresses send.
pub const REREAD_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct ActiveTokens {
    /// Held across a read, so concurrent askers wait for one read instead of each
    /// making their own.
    known: Mutex<Known>,
}

#[derive(Debug, Default)]
struct Known {
    hashes: HashSet<KeyHash>,
    read_at: Option<Instant>,
}

impl ActiveTokens {
    pub fn new() -> Self {
        ActiveTokens::default()
    }

    /// Whether `hash` is an active token's, as far as the last read (made now, if the
    /// last is older than [`REREAD_AFTER`]) says. A failed read says no.
    pub async fn may_be_active(&self, pool: &PgPool, hash: &KeyHash, now: Instant) -> bool {
        let mut known = self.known.lock().await;
        if known.hashes.contains(hash) {
            return true;
        }
        let fresh = known
            .read_at
            .is_some_and(|at| now.saturating_duration_since(at) < REREAD_AFTER);
        if fresh {
            return false;
        }
        known.read_at = Some(now);
        match admin_tokens::active_hashes(pool).await {
            Ok(hashes) => known.hashes = hashes,
            Err(error) => warn!(
                "database error: admin api: cannot read the active admin tokens: {}",
                describe_sqlx(&error)
            ),
        }
        known.hashes.contains(hash)
    }
}

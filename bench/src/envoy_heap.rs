//! Where an Envoy's memory is: its resident set (`/proc`) beside its allocator's own
//! account (the admin `/memory`: tcmalloc's live bytes, and the free pages it keeps),
//! so that bytes a key can be split into what the store holds and what the allocator
//! kept after the sync that filled it. A dynamic module's `malloc` is Envoy's (Envoy
//! exports it), so the native filter's store is in the same account.

use crate::proc_status::rss_kib;
use keysync_e2e::gateway::Gateway;
use keysync_e2e::http;

/// One Envoy's memory at one moment, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct EnvoyMemory {
    pub rss: u64,
    /// Bytes the program holds (tcmalloc's `allocated`).
    pub allocated: u64,
    /// Heap pages tcmalloc keeps mapped, free, for later (`pageheap_free`), and its
    /// threads' caches (`total_thread_cache`): freed by the program, still resident.
    pub kept_free: u64,
}

impl EnvoyMemory {
    pub fn of(gateway: &Gateway) -> EnvoyMemory {
        let response =
            http::get(gateway.admin, "/memory", &[]).expect("read Envoy's admin /memory");
        let json: serde_json::Value =
            serde_json::from_slice(&response.body).expect("Envoy's /memory is JSON");
        let field = |name: &str| figure(&json, name);
        EnvoyMemory {
            rss: rss_kib(gateway.process.pid()) * 1024,
            allocated: field("allocated"),
            kept_free: field("pageheap_free") + field("total_thread_cache"),
        }
    }

    /// Bytes a key of each figure of `self` over `base` (an Envoy that holds no keys).
    pub fn per_key_over(&self, base: &EnvoyMemory, keys: usize) -> BytesAKey {
        let per_key = |full: u64, empty: u64| (full as f64 - empty as f64) / keys.max(1) as f64;
        BytesAKey {
            rss: per_key(self.rss, base.rss),
            allocated: per_key(self.allocated, base.allocated),
            kept_free: per_key(self.kept_free, base.kept_free),
        }
    }
}

/// [`EnvoyMemory`]'s figures as growth a key over an Envoy that holds none.
#[derive(Clone, Copy, Debug)]
pub struct BytesAKey {
    pub rss: f64,
    pub allocated: f64,
    pub kept_free: f64,
}

/// A figure of `/memory` (Envoy writes them as strings of digits); 0 when absent.
fn figure(json: &serde_json::Value, name: &str) -> u64 {
    match &json[name] {
        serde_json::Value::String(text) => text.parse().unwrap_or(0),
        value => value.as_u64().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_read_from_strings_or_numbers() {
        let json = serde_json::json!({"allocated": "1048576", "pageheap_free": 4096});
        assert_eq!(figure(&json, "allocated"), 1_048_576);
        assert_eq!(figure(&json, "pageheap_free"), 4096);
        assert_eq!(figure(&json, "total_thread_cache"), 0);
    }

    #[test]
    fn bytes_a_key_are_the_growth_over_the_empty_envoy() {
        let empty = EnvoyMemory {
            rss: 100_000_000,
            allocated: 20_000_000,
            kept_free: 1_000_000,
        };
        let full = EnvoyMemory {
            rss: 190_000_000,
            allocated: 100_000_000,
            kept_free: 9_000_000,
        };
        let per_key = full.per_key_over(&empty, 1_000_000);
        assert_eq!(
            (per_key.rss, per_key.allocated, per_key.kept_free),
            (90.0, 80.0, 8.0)
        );
    }
}

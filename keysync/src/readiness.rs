//! The readiness latch: closed until the first full key snapshot is loaded, then open
//! for good. The gRPC API refuses to answer before it opens, since an empty store would
//! wrongly deny every key. It is half of what `/readyz` reports: the other half is a
//! recent confirmation of the key set against PostgreSQL
//! ([`crate::sync::confirmation`]), which does come and go.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn new() -> Self {
        Readiness::default()
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Opens the latch; it never closes again (a later database outage is served from
    /// the last snapshot, with its growing age on every answer).
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_closed_and_opens_for_every_clone() {
        let readiness = Readiness::new();
        let clone = readiness.clone();
        assert!(!clone.is_ready());
        readiness.set_ready();
        assert!(clone.is_ready());
    }
}

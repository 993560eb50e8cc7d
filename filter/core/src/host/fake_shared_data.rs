//! An in-memory stand-in for shared data with Envoy's semantics: a cas per entry, bumped
//! on every write; a hook lets a test interleave another writer between a read and a
//! write.
// Test support: a failed expectation is a panic.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use crate::host::{Entry, SharedData, WriteError};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// Runs after a get, to interleave another writer.
pub type AfterGet = Box<dyn FnMut(&FakeSharedData, &str)>;

#[derive(Default)]
pub struct FakeSharedData {
    pub entries: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
    pub writes: Cell<usize>,
    /// Called after every get: lets a test interleave another writer.
    pub after_get: RefCell<Option<AfterGet>>,
}

impl FakeSharedData {
    pub fn value(&self, key: &str) -> Option<Vec<u8>> {
        self.entries.borrow().get(key).map(|(v, _)| v.clone())
    }

    pub fn put(&self, key: &str, value: &[u8]) {
        self.set(key, value, 0).unwrap();
    }
}

impl SharedData for FakeSharedData {
    fn get(&self, key: &str) -> Entry {
        let entry = match self.entries.borrow().get(key) {
            Some((value, cas)) => Entry {
                value: Some(value.clone()),
                cas: *cas,
            },
            None => Entry {
                value: None,
                cas: 0,
            },
        };
        let hook = self.after_get.borrow_mut().take();
        if let Some(mut hook) = hook {
            hook(self, key);
            *self.after_get.borrow_mut() = Some(hook);
        }
        entry
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), WriteError> {
        let mut entries = self.entries.borrow_mut();
        if let Some((_, current)) = entries.get(key) {
            if cas != 0 && cas != *current {
                return Err(WriteError::CasMismatch);
            }
        }
        self.next_cas.set(self.next_cas.get() + 1);
        entries.insert(key.to_string(), (value.to_vec(), self.next_cas.get()));
        self.writes.set(self.writes.get() + 1);
        Ok(())
    }
}

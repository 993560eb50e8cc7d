//! Envoy's shared data (one key-value namespace per `vm_id`, visible to every worker):
//! the part of the [`crate::host::Host`] seam the store and the rate-limit counters need,
//! so they take only this.

/// An entry as read: its value (if any) and the version to pass back for compare-and-swap.
pub struct Entry {
    pub value: Option<Vec<u8>>,
    /// 0 when the entry does not exist; a write with cas 0 is unconditional.
    pub cas: u32,
}

#[derive(Debug, PartialEq, Eq)]
pub enum WriteError {
    /// Someone wrote the entry since we read it.
    CasMismatch,
    Host(u32),
}

pub trait SharedData {
    fn get(&self, key: &str) -> Entry;
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), WriteError>;
}

/// A borrowed store of shared data is one too: a worker hands `&host` to the key store.
impl<T: SharedData + ?Sized> SharedData for &T {
    fn get(&self, key: &str) -> Entry {
        (**self).get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), WriteError> {
        (**self).set(key, value, cas)
    }
}

#[cfg(test)]
pub mod fake {
    //! An in-memory stand-in with Envoy's semantics: a cas per entry, bumped on write.
    use super::*;
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
}

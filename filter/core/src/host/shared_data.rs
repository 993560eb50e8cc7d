//! The store every worker sees: proxy-wasm's shared data (one key-value namespace per
//! `vm_id`, visible to every worker), or whatever a host keeps in its place (process
//! memory shared by worker threads). The part of the seam the key store, the rate-limit
//! counters, the quota states and the usage counters need, so they take only this.

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

    /// Reads an entry's value where it lies, for readers that only look (the request
    /// path's bucket read). Through [`SharedData::get`] unless the host can lend its
    /// bytes without copying them.
    fn read<T>(&self, key: &str, look: impl FnOnce(Option<&[u8]>) -> T) -> T {
        look(self.get(key).value.as_deref())
    }
}

/// A borrowed store of shared data is one too: a worker hands `&host` to the key store.
impl<T: SharedData + ?Sized> SharedData for &T {
    fn get(&self, key: &str) -> Entry {
        (**self).get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), WriteError> {
        (**self).set(key, value, cas)
    }

    fn read<U>(&self, key: &str, look: impl FnOnce(Option<&[u8]>) -> U) -> U {
        (**self).read(key, look)
    }
}

//! The key store every worker reads: key records in a fixed set of buckets of shared
//! data, rewritten whole, so that memory follows the keys that exist (proxy-wasm's shared
//! data never frees an entry). The sync service writes it, the miss path adds to it, the
//! request path reads one bucket.
//!
//! - [`key_store`]: reads and writes, with the rules that keep writers from undoing each
//!   other's newer changes;
//! - [`key_bucket`], [`bucket_index`]: a bucket's layout, and which bucket a hash is in;
//! - [`key_record`], [`key_policy`]: one key as stored;
//! - [`org_table`]: each organization id once, which records refer to;
//! - [`store_meta`], [`store_age`]: which revision the store holds, and how old it is;
//! - [`lookup_ledger`]: the records the miss path vouched for, until a sync covers them.

pub mod bucket_index;
pub mod key_bucket;
pub mod key_policy;
pub mod key_record;
pub mod key_store;
pub mod lookup_ledger;
pub mod org_table;
pub mod store_age;
pub mod store_meta;

//! freshet-state: the RocksDB state store.
//!
//! Owns the on-disk layout: which keyspace a key belongs to, the order-preserving key codec
//! ([`key_codec`]), the row value codec ([`row_codec`]), atomic write batches and consistent read
//! snapshots ([`Store`], [`Snapshot`]). It knows nothing of SQL, DataFusion or pgwire.
//!
//! Invariant: every logical change (a DDL statement, a DML statement, later an epoch) is one
//! [`WriteBatch`] committed with one [`Store::write`], so a crash exposes all of it or none.

mod batch;
pub mod changelog;
mod error;
pub mod key_codec;
mod keyspace;
pub mod row_codec;
mod store;

pub use batch::WriteBatch;
pub use error::{Error, Result};
pub use keyspace::{
    aggregate_view_prefix, contents_log_prefix, meta_key, operator_prefix, source_prefix,
    source_watermark_key,
    table_prefix, table_row_key, view_prefix, view_state_prefix, Keyspace,
};
pub use store::{
    counted, data_entries_read, next_key, Entries, MemoryUse, Snapshot, StateConfig, Store,
    COUNT_LEN, FORMAT_VERSION,
};

//! Keyspaces: the first byte of every key says what it holds.
//!
//! ```text
//! 'm' <name bytes>                          catalog metadata (see freshet-catalog)
//! 'd' <table id: u64 BE> <row key>          one table row; value = row_codec encoding
//! 'd' <unique id: u64 BE> <values key>      one entry of a UNIQUE constraint's index: the
//!                                           constrained values (key_codec); value = the row key
//! 'v' <view id: u64 BE> <row key>           one distinct row of a materialized view, keyed by
//!                                           the row's memcomparable encoding (key_codec);
//!                                           value = multiplicity (i64 BE) ++ row (row_codec);
//!                                           in a view whose first k columns are a unique key
//!                                           (an aggregate's groups) keyed by those k only;
//!                                           in an append-only view (projections and filters
//!                                           of sources) one arriving row: its first column's
//!                                           key encoding ++ epoch (u64 BE: the snapshot
//!                                           sequence number) ++ place in the epoch (u32 BE)
//! 'a' <view id: u64 BE> <group key>        one row of a view whose rows are its root
//!                                           aggregate's groups, keyed by the group columns;
//!                                           value = 1 (i64 BE) ++ row (row_codec) ++ the
//!                                           group's accumulator (row_codec)
//! 'l' <view id: u64 BE> <epoch: u64 BE>     the 'a' entries one epoch changed, not yet
//!                                           written to their keys (see freshet-dataflow's
//!                                           contents_log.rs): a sequence of (u32 LE length,
//!                                           group key after the view prefix, u32 LE length or
//!                                           u32::MAX for a deleted group, value)
//! 'c' <view id: u64 BE> <epoch: u64 BE>     one epoch's changes of a view that retains them
//!                                           (see changelog.rs): commit time, rows, weights
//! 'o' <view id: u64 BE> <op id: u32 BE> …   the state of one operator of a view's dataflow
//! 's' <source id: u64 BE> 'p' <partition: i32 BE>
//!                                           a source's progress in one partition: start offset
//!                                           (i64 BE) ++ next offset to read (i64 BE)
//! 's' <source id: u64 BE> 'e' <partition: i32 BE> <offset: i64 BE>
//!                                           a message that could not be decoded
//! ```
//! Each keyspace is a RocksDB column family of its own (see `store.rs`). Values that hold a
//! count first (view contents, join state, aggregate multisets: i64 BE ++ payload) are
//! "counted entries": writers add to them with a merge instead of reading them.
//!
//! The row key is the memcomparable encoding of the primary key columns ([`crate::key_codec`]),
//! or for a table without a primary key a u64 BE row id allocated in insertion order.

use freshet_common::TableId;

/// The keyspaces of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Keyspace {
    /// Catalog metadata.
    Meta = b'm',
    /// Table rows.
    TableData = b'd',
    /// Materialized view contents.
    ViewData = b'v',
    /// Contents of views whose rows are their root aggregate's groups, holding the groups'
    /// accumulators: rewritten in place at scattered keys, like operator state.
    AggregateViewData = b'a',
    /// Per-epoch logs of changed aggregate-view entries, folded into `AggregateViewData`
    /// later: written in key (epoch) order, deleted soon after.
    ContentsLog = b'l',
    /// Per-epoch changes of views, retained for subscribers resuming from an epoch: written
    /// in key (epoch) order, deleted by range once past their retention.
    Changelog = b'c',
    /// Operator state of view dataflows.
    Operator = b'o',
    /// Source progress (offsets) and bad-message records.
    Source = b's',
}

/// The prefix of everything source `source` keeps.
pub fn source_prefix(source: TableId) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(Keyspace::Source as u8);
    k.extend_from_slice(&source.0.to_be_bytes());
    k
}

/// Where source `source` keeps its committed watermark (microseconds, i64 BE), for sources
/// declared with `WATERMARK FOR`.
pub fn source_watermark_key(source: TableId) -> Vec<u8> {
    let mut k = source_prefix(source);
    k.push(b'W');
    k
}

/// The prefix of every row of materialized view `view`.
pub fn view_prefix(view: TableId) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(Keyspace::ViewData as u8);
    k.extend_from_slice(&view.0.to_be_bytes());
    k
}

/// The prefix of every row of materialized view `view` when its root aggregate keeps its
/// accumulators in the rows.
pub fn aggregate_view_prefix(view: TableId) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(Keyspace::AggregateViewData as u8);
    k.extend_from_slice(&view.0.to_be_bytes());
    k
}

/// The prefix of view `view`'s log of contents changes not yet folded into its entries.
pub fn contents_log_prefix(view: TableId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(Keyspace::ContentsLog as u8);
    k.extend_from_slice(&view.0.to_be_bytes());
    k
}

/// The prefix of all operator state of view `view`.
pub fn view_state_prefix(view: TableId) -> Vec<u8> {
    let mut k = Vec::with_capacity(13);
    k.push(Keyspace::Operator as u8);
    k.extend_from_slice(&view.0.to_be_bytes());
    k
}

/// The prefix of operator `op` of view `view`.
pub fn operator_prefix(view: TableId, op: u32) -> Vec<u8> {
    let mut k = view_state_prefix(view);
    k.extend_from_slice(&op.to_be_bytes());
    k
}

/// The key of a metadata entry.
pub fn meta_key(name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(Keyspace::Meta as u8);
    k.extend_from_slice(name);
    k
}

/// The prefix shared by every row of `table`.
pub fn table_prefix(table: TableId) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(Keyspace::TableData as u8);
    k.extend_from_slice(&table.0.to_be_bytes());
    k
}

/// The full key of one row of `table`.
pub fn table_row_key(table: TableId, row_key: &[u8]) -> Vec<u8> {
    let mut k = table_prefix(table);
    k.extend_from_slice(row_key);
    k
}

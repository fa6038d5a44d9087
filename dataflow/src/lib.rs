//! freshet-dataflow: incremental maintenance of materialized views.
//!
//! A view's optimized DataFusion `LogicalPlan` is lowered ([`lower`]) into a tree of operators
//! ([`ops`]). Changes flow between them as Arrow batches with a signed multiplicity per row
//! ([`delta::Delta`]). Each commit of base-table changes is one epoch ([`epoch`]): every
//! dependent view's dataflow runs once, bottom-up, reading operator state as of the previous
//! epoch from a RocksDB snapshot and writing new state and view contents into the same write
//! batch as the base-table changes, so tables, operator state and every view commit
//! atomically ([`dataflows::Dataflows::process`]).
//!
//! This crate knows DataFusion and the state store, not pgwire, sessions or the catalog.

pub mod backfill;
pub mod columnar;
pub mod contents_log;
pub mod dataflows;
pub mod bound;
pub mod delta;
mod deterministic;
pub mod encode;
pub mod epoch;
pub mod event_time;
pub mod lower;
pub mod ops;
pub mod reads;
pub mod runner;
pub mod view;

pub use dataflows::Dataflows;
pub use deterministic::check_deterministic;
pub use epoch::{EpochChanges, EpochCtx};
pub use lower::{nullable, storable, unsupported, Lowering, Relations};
pub use view::{contents_key, decode_contents, read_table_rows, read_view_rows, MaterializedView};

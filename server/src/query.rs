//! DataFusion integration: our catalog as DataFusion catalog and schema providers, tables as
//! `TableProvider`s that scan RocksDB snapshots and write through the engine.
//!
//! This is the only module of the server besides `session` that names DataFusion types.

mod copy;
pub mod dml;
mod internal;
pub mod pending;
mod pg_attribute;
mod provider;
mod scan;
mod source;
mod table;
mod view;
mod write;

pub use copy::CopyIn;
pub use internal::{InternalSchema, INTERNAL_SCHEMA};
pub use pg_attribute::PgCatalogOverlay;
pub use provider::{FreshetCatalogProvider, StatementSnapshot};
pub use source::SourceTable;
pub use table::{table_schema, StoredTable};
pub use view::ViewTable;
pub use write::truncate;

/// Name of our DataFusion catalog; also the database name clients connect to.
pub const DATABASE_NAME: &str = "freshet";

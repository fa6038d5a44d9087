//! freshet-sql: the SQL front.
//!
//! Parses SQL (PostgreSQL dialect, with the compatibility rewrites psql and drivers need),
//! classifies statements into typed [`Statement`]s, binds DDL into plain plans
//! ([`CreateTablePlan`]), maps column types between PostgreSQL and Arrow ([`types`]), converts
//! between Arrow arrays and [`freshet_common::Datum`] rows ([`df_convert`]) and maps DataFusion
//! errors to SQLSTATEs ([`error`]). It must not depend on the catalog, the state store or the
//! server: the server hands it what it needs.

pub mod arith;
mod array_subquery;
mod ast_parse;
pub mod by_oid;
pub mod checked_sum;
pub mod copy;
pub mod copy_binary;
pub mod create_table;
pub mod cursor;
pub mod df_convert;
pub mod dml;
mod emit;
pub mod empty_catalogs;
pub mod error;
pub mod expand_array;
pub mod index;
pub mod insert;
pub mod interval_arith;
mod isolation;
pub mod jsonb_build;
pub mod jsonb_functions;
pub mod limits;
pub mod name_subscript;
pub mod names;
pub mod numeric_div;
mod parse;
pub mod pg_array_in;
pub mod pg_array_out;
pub mod pg_bytea;
pub mod pg_datetime_in;
pub mod pg_input;
pub mod pg_interval_in;
pub mod pg_jsonb;
pub mod pg_text;
pub mod pg_uuid;
pub mod plain_view;
mod plan_rewrite;
pub mod point;
mod precedence;
pub mod role;
pub mod scalar_subquery;
mod session_functions;
pub mod session_window;
mod set_returning;
pub mod sink;
pub mod source;
mod source_config;
mod statement;
pub mod subquery_oids;
pub mod subscribe;
mod system_columns;
pub mod text_casts;
pub mod type_introspection;
pub mod type_planner;
pub mod types;
pub mod untyped_array;
pub mod vector_subscript;
mod visibility;
pub mod window_tvf;
mod words;

pub use ast_parse::parse;
pub use copy::{CopyFormat, CopyFrom, CopyOptions, CopyTo};
pub use create_table::{ColumnPlan, CreateTablePlan, IdentityKind};
pub use cursor::FetchCount;
pub use dml::{DmlKind, DmlPlan, ExplainDml};
pub use index::CreateIndexPlan;
pub use insert::{ConflictAction, InsertPlan, OnConflict, ReturningItem};
pub use isolation::Isolation;
pub use parse::{classify_parsed, parse_statements, Parsed};
pub use plain_view::CreatePlainViewPlan;
pub use sink::CreateSinkPlan;
pub use source::CreateSourcePlan;
pub use statement::{
    classify, CreateViewPlan, SetValue, Statement, TransactionOp, DML_TARGET_SCHEMA,
};
pub use subscribe::SubscribePlan;

/// The one schema (`public`).
pub const DEFAULT_SCHEMA_NAME: &str = "public";

/// Re-exports of the DataFusion SQL AST, so the server names one sqlparser.
pub use datafusion::sql::sqlparser::ast;

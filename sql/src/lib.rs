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
pub mod pg_array_in;
pub mod pg_array_out;
pub mod pg_bytea;
pub mod pg_datetime_in;
pub mod pg_input;
pub mod pg_jsonb;
pub mod pg_interval_in;
pub mod pg_text;
pub mod pg_uuid;
pub mod scalar_subquery;
pub mod subquery_oids;
mod precedence;
mod session_functions;
mod set_returning;
mod system_columns;
mod visibility;
pub mod session_window;
pub mod window_tvf;
pub mod checked_sum;
pub mod copy;
pub mod copy_binary;
pub mod by_oid;
pub mod cursor;
pub mod create_table;
pub mod df_convert;
pub mod dml;
mod emit;
pub mod empty_catalogs;
pub mod error;
pub mod expand_array;
pub mod index;
pub mod jsonb_build;
pub mod jsonb_functions;
pub mod insert;
pub mod interval_arith;
mod isolation;
pub mod limits;
pub mod name_subscript;
pub mod names;
pub mod numeric_div;
pub mod plain_view;
pub mod point;
pub mod role;
pub mod sink;
pub mod source;
mod source_config;
pub mod subscribe;
mod parse;
mod plan_rewrite;
mod statement;
pub mod type_introspection;
pub mod type_planner;
pub mod text_casts;
pub mod types;
pub mod vector_subscript;
pub mod untyped_array;
mod words;

pub use create_table::{ColumnPlan, CreateTablePlan, IdentityKind};
pub use dml::{DmlKind, DmlPlan, ExplainDml};
pub use index::CreateIndexPlan;
pub use insert::{ConflictAction, InsertPlan, OnConflict, ReturningItem};
pub use plain_view::CreatePlainViewPlan;
pub use sink::CreateSinkPlan;
pub use source::CreateSourcePlan;
pub use copy::{CopyFormat, CopyFrom, CopyOptions, CopyTo};
pub use cursor::FetchCount;
pub use subscribe::SubscribePlan;
pub use isolation::Isolation;
pub use ast_parse::parse;
pub use parse::{classify_parsed, parse_statements, Parsed};
pub use statement::{
    CreateViewPlan,
    classify, SetValue,
    Statement, TransactionOp, DML_TARGET_SCHEMA,
};

/// The one schema (`public`).
pub const DEFAULT_SCHEMA_NAME: &str = "public";

/// Re-exports of the DataFusion SQL AST, so the server names one sqlparser.
pub use datafusion::sql::sqlparser::ast;

//! Table definitions.

use freshet_common::{SqlType, TableId};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    /// Column name, already normalized (unquoted identifiers are lower-cased).
    pub name: String,
    /// Declared type.
    pub ty: SqlType,
    /// `NOT NULL` (always true for primary key columns).
    pub not_null: bool,
}

/// A table: its id, name, columns and primary key. Persisted as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    /// Assigned by the catalog at creation.
    pub id: TableId,
    /// Schema name (`public`).
    pub schema: String,
    /// Table name, normalized.
    pub name: String,
    /// Columns in declaration order.
    pub columns: Vec<ColumnDef>,
    /// Indexes into `columns` of the primary key, in key order; empty when there is none.
    pub primary_key: Vec<usize>,
}

impl TableDef {
    /// Whether rows are keyed by a primary key (otherwise by a hidden row id).
    pub fn has_primary_key(&self) -> bool {
        !self.primary_key.is_empty()
    }

    /// The index of the column called `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        for (i, c) in self.columns.iter().enumerate() {
            if self.columns[..i].iter().any(|o| o.name == c.name) {
                return Err(Error::DuplicateColumn(c.name.clone()));
            }
        }
        for &k in &self.primary_key {
            let col = self.columns.get(k).ok_or(Error::Corrupt)?;
            if !col.ty.is_keyable() {
                return Err(Error::UnkeyableType(col.name.clone(), col.ty.pg_name()));
            }
        }
        Ok(())
    }
}

/// A materialized view: its defining query and output columns. The dataflow is rebuilt from
/// `sql` at startup; its state and contents live under the view's id (see freshet-state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewDef {
    /// Assigned by the catalog at creation, from the same counter as tables.
    pub id: TableId,
    pub schema: String,
    pub name: String,
    /// The defining SELECT, as written.
    pub sql: String,
    /// Output columns (types as declared to clients).
    pub columns: Vec<ColumnDef>,
    /// Tables and views it reads.
    pub inputs: Vec<TableId>,
    /// Its root aggregate keeps the groups' accumulators inside the contents entries (views
    /// created before this layout existed keep theirs under the operator's keys).
    #[serde(default)]
    pub aggregate_in_contents: bool,
    /// Its aggregates keep one entry per occurrence of a MIN/MAX value, written with a put
    /// (views created before keep one counted entry per distinct value, written with a merge).
    #[serde(default)]
    pub min_max_occurrences: bool,
}

/// A source: a Kafka topic read into the dataflow. Its progress (offsets per partition) and
/// bad-message records live under its id in the `'s'` keyspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceDef {
    /// Assigned by the catalog at creation, from the same counter as tables.
    pub id: TableId,
    pub schema: String,
    pub name: String,
    /// Payload columns, then the `INCLUDE`d metadata columns.
    pub columns: Vec<ColumnDef>,
    /// Which metadata each trailing column holds (`columns` ends with these, in order).
    pub include: Vec<freshet_common::IncludeKind>,
    /// The `WITH (…)` options.
    pub options: std::collections::BTreeMap<String, String>,
    pub format: freshet_common::SourceFormat,
    /// The statement as written.
    pub sql: String,
}

impl SourceDef {
    /// The payload (decoded) columns.
    pub fn payload_columns(&self) -> &[ColumnDef] {
        &self.columns[..self.columns.len() - self.include.len()]
    }
}

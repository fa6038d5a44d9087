//! Where a sink's rows go: the columns it writes and, with `partition_by`, the Hive-style
//! directories (`col=value/…`, as Spark's `partitionBy` writes them and pyarrow, DuckDB and
//! Spark read them back) its rows are split into.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use freshet_common::{FileSinkConfig, PgError, SinkMode, SqlState};

/// How a sink's rows go into files: the columns it writes, and which of them name the
/// directories (`partition_by`) instead of being written inside the files.
pub struct Layout {
    pub(crate) mode: SinkMode,
    /// Every output column (a changelog's two columns first).
    pub(crate) schema: SchemaRef,
    /// Positions in `schema` of the partition columns, in `partition_by`'s order.
    partition: Vec<usize>,
    /// The columns inside each file: `schema` without the partition columns.
    pub(crate) data: SchemaRef,
}

impl Layout {
    /// The layout of `cfg`'s files for a view of `view`'s columns; refuses partition columns
    /// the view lacks, names twice, or cannot name a directory by.
    pub fn new(view: &SchemaRef, cfg: &FileSinkConfig) -> Result<Layout, PgError> {
        let schema = output_schema(view, cfg.mode);
        let offset = schema.fields().len() - view.fields().len();
        let mut partition = Vec::new();
        for name in &cfg.partition_by {
            let at = view
                .fields()
                .iter()
                .position(|f| f.name() == name)
                .or_else(|| {
                    let lower = name.to_lowercase();
                    view.fields().iter().position(|f| *f.name() == lower)
                })
                .ok_or_else(|| {
                    PgError::new(
                        SqlState::UNDEFINED_COLUMN,
                        format!("column \"{name}\" named in partition_by is not a column of the sink's view"),
                    )
                })?;
            let field = view.field(at);
            if !partition_type(field.data_type()) {
                return Err(PgError::new(
                    SqlState::INVALID_PARAMETER_VALUE,
                    format!(
                        "partition_by column \"{name}\" is of a type whose values cannot name directories"
                    ),
                ));
            }
            if partition.contains(&(offset + at)) {
                return Err(PgError::new(
                    SqlState::INVALID_PARAMETER_VALUE,
                    format!("partition_by names column \"{name}\" twice"),
                ));
            }
            partition.push(offset + at);
        }
        if !partition.is_empty() && partition.len() == view.fields().len() {
            return Err(PgError::new(
                SqlState::INVALID_PARAMETER_VALUE,
                "partition_by cannot name every column of the view: the files would hold none",
            ));
        }
        let data = Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .enumerate()
                .filter(|(i, _)| !partition.contains(i))
                .map(|(_, f)| f.as_ref().clone())
                .collect::<Vec<_>>(),
        ));
        Ok(Layout {
            mode: cfg.mode,
            schema,
            partition,
            data,
        })
    }

    /// `batch` (of every output column) split by the partition columns' values: each part's
    /// directory (relative, empty without partitions) and its rows' data columns.
    pub(crate) fn split(&self, batch: &RecordBatch) -> std::io::Result<Vec<(PathBuf, RecordBatch)>> {
        if self.partition.is_empty() {
            return Ok(vec![(PathBuf::new(), batch.clone())]);
        }
        let options = FormatOptions::default();
        let formatters = self
            .partition
            .iter()
            .map(|&i| ArrayFormatter::try_new(batch.column(i).as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(std::io::Error::other)?;
        // Column names escaped once; per row, its directory built in one reused buffer (a
        // map entry is allocated per partition, not per row).
        let names: Vec<String> = self
            .partition
            .iter()
            .map(|&i| hive_escape(self.schema.field(i).name()))
            .collect();
        let mut parts: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
        let (mut dir, mut value) = (String::new(), String::new());
        for row in 0..batch.num_rows() {
            dir.clear();
            for ((f, &i), name) in formatters.iter().zip(&self.partition).zip(&names) {
                value.clear();
                if !batch.column(i).is_null(row) {
                    use std::fmt::Write;
                    let _ = write!(value, "{}", f.value(row));
                }
                if !dir.is_empty() {
                    dir.push('/');
                }
                dir.push_str(name);
                dir.push('=');
                dir.push_str(&partition_value(&value));
            }
            match parts.get_mut(&dir) {
                Some(rows) => rows.push(row as u32),
                None => {
                    parts.insert(dir.clone(), vec![row as u32]);
                }
            }
        }
        let data_columns: Vec<usize> = (0..self.schema.fields().len())
            .filter(|i| !self.partition.contains(i))
            .collect();
        parts
            .into_iter()
            .map(|(dir, rows)| {
                let indices = UInt32Array::from(rows);
                let columns = data_columns
                    .iter()
                    .map(|&c| take(batch.column(c).as_ref(), &indices, None))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(std::io::Error::other)?;
                let part = RecordBatch::try_new(Arc::clone(&self.data), columns)
                    .map_err(std::io::Error::other)?;
                Ok((PathBuf::from(dir), part))
            })
            .collect()
    }
}

/// The columns a sink writes.
pub fn output_schema(view: &SchemaRef, mode: SinkMode) -> SchemaRef {
    match mode {
        SinkMode::Changelog => {
            let mut fields = vec![
                Field::new("freshet_epoch", DataType::Int64, false),
                Field::new("freshet_diff", DataType::Int64, false),
            ];
            fields.extend(view.fields().iter().map(|f| f.as_ref().clone()));
            Arc::new(Schema::new(fields))
        }
        _ => Arc::clone(view),
    }
}

/// Types whose values name a directory readably (Hive's partition column types).
fn partition_type(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Date32
            | DataType::Timestamp(_, _)
            | DataType::Decimal128(_, _)
    )
}

/// A partition value as a directory name: Hive's escaping; NULL and the empty string are
/// Hive's default partition.
fn partition_value(v: &str) -> String {
    if v.is_empty() {
        "__HIVE_DEFAULT_PARTITION__".into()
    } else {
        hive_escape(v)
    }
}

/// Hive's `escapePathName`: control characters and `"#%'*/:=?\{[]^` and DEL as `%XX`.
fn hive_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if c.is_ascii_control() || "\"#%'*/:=?\\{[]^".contains(c) {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_directories_escape_as_hive_does() {
        assert_eq!(partition_value("fr"), "fr");
        assert_eq!(partition_value(""), "__HIVE_DEFAULT_PARTITION__");
        assert_eq!(partition_value("a/b=c"), "a%2Fb%3Dc");
        assert_eq!(
            partition_value("2026-12-03 10:00:00"),
            "2026-12-03 10%3A00%3A00"
        );
        assert_eq!(partition_value("x\ny%"), "x%0Ay%25");
        assert_eq!(partition_value("é"), "é");
    }
}

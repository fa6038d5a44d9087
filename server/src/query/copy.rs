//! `COPY table FROM STDIN`: the fields of the client's data (text, CSV or binary) become typed
//! rows and go through the same insert path as INSERT (one statement, one epoch, all or
//! nothing).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::DataType;
use freshet_catalog::TableDef;
use freshet_common::{Datum, PgError, SqlState};
use freshet_sql::copy::{parse_copy, CopyRow};
use freshet_sql::df_convert::datum_at;
use freshet_sql::CopyFrom;

use super::pending::StatementWrites;
use crate::coord::engine::table_schema;
use crate::coord::engine::Engine;

/// A COPY in progress on a connection: the statement and the data received so far.
#[derive(Debug)]
pub struct CopyIn {
    pub def: Arc<TableDef>,
    /// Table column index of each copied column, in the data's order.
    pub columns: Vec<usize>,
    pub opts: CopyFrom,
    pub data: Vec<u8>,
    /// More data came than one statement may hold (`--query-memory-mb`): what came past it
    /// was dropped, and the COPY fails with 54000 when it ends.
    pub overflowed: bool,
}

impl CopyIn {
    /// Checks the target of `opts`.
    pub fn start(engine: &Engine, opts: CopyFrom) -> Result<CopyIn, PgError> {
        let def = super::dml::target_table(engine, &opts.table, "copy to")?;
        let columns = if opts.columns.is_empty() {
            (0..def.columns.len()).collect()
        } else {
            opts.columns
                .iter()
                .map(|c| {
                    def.columns
                        .iter()
                        .position(|d| d.name == *c)
                        .ok_or_else(|| {
                            PgError::new(
                                SqlState::UNDEFINED_COLUMN,
                                format!(
                                    "column \"{c}\" of relation \"{}\" does not exist",
                                    def.name
                                ),
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        Ok(CopyIn {
            def,
            columns,
            opts,
            data: Vec::new(),
            overflowed: false,
        })
    }

    /// Parses, converts and inserts everything received (columns not copied take their
    /// defaults), or stages it in the transaction block's `block` writes. Returns the number
    /// of rows.
    pub async fn finish(
        self,
        engine: &Arc<Engine>,
        state: datafusion::execution::SessionState,
        block: Option<Arc<StatementWrites>>,
    ) -> Result<u64, PgError> {
        let mut rows = if self.opts.options.format == freshet_sql::CopyFormat::Binary {
            self.binary_rows()?
        } else {
            let fields = parse_copy(&self.data, &self.opts.options, self.columns.len())?;
            self.typed_rows(&fields)?
        };
        // jsonb values must be JSON, and are kept in jsonb's canonical text.
        let jsonb: Vec<usize> = (self.columns.iter().copied())
            .filter(|&c| self.def.columns[c].ty == freshet_common::SqlType::Jsonb)
            .collect();
        for row in &mut rows {
            for &c in &jsonb {
                if let Datum::Text(text) = &row[c] {
                    row[c] = Datum::Text(freshet_sql::pg_jsonb::normalize(text)?);
                }
            }
        }
        super::insert::copy_rows(engine, state, &self.def, &self.columns, rows, block).await
    }

    /// Decodes binary COPY data into the copied columns' types; columns not copied are NULL.
    fn binary_rows(&self) -> Result<Vec<Vec<Datum>>, PgError> {
        let types: Vec<_> = self.columns.iter().map(|&c| self.def.columns[c].ty.clone()).collect();
        let decoded = freshet_sql::copy_binary::parse_binary(&self.data, &types)?;
        Ok(decoded
            .into_iter()
            .map(|values| {
                let mut row = vec![Datum::Null; self.def.columns.len()];
                for (&col, v) in self.columns.iter().zip(values) {
                    row[col] = v;
                }
                row
            })
            .collect())
    }

    /// Converts text fields to the table's types; columns not copied are NULL.
    fn typed_rows(&self, fields: &[CopyRow]) -> Result<Vec<Vec<Datum>>, PgError> {
        let schema = table_schema(&self.def);
        let mut rows = vec![vec![Datum::Null; self.def.columns.len()]; fields.len()];
        let opts = CastOptions {
            safe: false,
            ..Default::default()
        };
        for (i, &col) in self.columns.iter().enumerate() {
            let field = schema.field(col);
            if matches!(
                field.data_type(),
                DataType::List(_) | DataType::LargeList(_)
            ) {
                return Err(PgError::not_supported(format!(
                    "COPY into the array column \"{}\"",
                    field.name()
                )));
            }
            let text: ArrayRef = Arc::new(StringArray::from_iter(
                fields.iter().map(|r| r[i].as_deref()),
            ));
            let typed = cast_with_options(&text, field.data_type(), &opts).map_err(|e| {
                PgError::new(
                    SqlState::INVALID_TEXT_REPRESENTATION,
                    format!("invalid input syntax for column \"{}\": {e}", field.name()),
                )
            })?;
            for (r, row) in rows.iter_mut().enumerate() {
                if typed.is_valid(r) {
                    row[col] =
                        datum_at(&typed, r).map_err(|e| freshet_sql::error::map_df_error(&e))?;
                }
            }
        }
        Ok(rows)
    }
}

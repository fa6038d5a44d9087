//! Arrow batches → DataRows, with PostgreSQL type OIDs.

use std::sync::Arc;

use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use datafusion::arrow::datatypes::Schema;
use datafusion::execution::SendableRecordBatchStream;
use freshet_common::PgError;
use freshet_sql::error::map_df_error;
use freshet_sql::types::PG_TYPE_METADATA_KEY;
use futures::StreamExt;
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldInfo, QueryResponse};
use pgwire::api::Type;
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;

use super::to_wire_error;

/// Result column descriptions for `schema` in the client's requested `format`.
pub fn fields(schema: &Schema, format: &Format) -> Result<Vec<FieldInfo>, PgError> {
    let mut fields = arrow_schema_to_pg_fields(schema, format, None)
        .map_err(|e| PgError::not_supported(format!("result type: {e}")))?;
    for (fi, f) in fields.iter_mut().zip(schema.fields()) {
        if f.metadata().get(PG_TYPE_METADATA_KEY).is_some_and(|t| t == "jsonb") && format.format_for(0) == pgwire::api::results::FieldFormat::Text {
            *fi = FieldInfo::new(fi.name().to_owned(), None, None, Type::JSONB, fi.format());
        }
    }
    Ok(fields)
}

/// A streaming query response over `stream`.
pub fn query_response(schema: &Schema, stream: SendableRecordBatchStream, format: &Format) -> Result<QueryResponse, PgError> {
    let fields = Arc::new(fields(schema, format)?);
    let f = Arc::clone(&fields);
    let rows = stream
        .map(move |batch| {
            let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> = match batch {
                Ok(b) => encode_recordbatch(Arc::clone(&f), b),
                Err(e) => Box::new(std::iter::once(Err(to_wire_error(map_df_error(&e))))),
            };
            futures::stream::iter(rows)
        })
        .flatten();
    Ok(QueryResponse::new(fields, rows))
}

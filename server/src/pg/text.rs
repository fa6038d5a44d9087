//! Result columns sent in text format get PostgreSQL's text form of timestamps
//! ([`freshet_sql::pg_text`]), which pgwire's encoder does not give (it always prints six
//! fraction digits). Binary format is left to pgwire.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use freshet_sql::pg_text::{has_text_form, timestamps_text};
use pgwire::api::portal::Format;
use pgwire::api::results::FieldFormat;

/// `batch` with each timestamp column that goes out in text format as PostgreSQL's text.
pub fn timestamps_as_text(batch: RecordBatch, format: &Format) -> RecordBatch {
    let schema = batch.schema();
    let wanted = |i: usize, f: &Field| {
        has_text_form(f.data_type()) && format.format_for(i) == FieldFormat::Text
    };
    if !schema
        .fields()
        .iter()
        .enumerate()
        .any(|(i, f)| wanted(i, f))
    {
        return batch;
    }
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (i, (f, c)) in schema.fields().iter().zip(batch.columns()).enumerate() {
        if wanted(i, f) {
            fields.push(Arc::new(Field::new(
                f.name(),
                DataType::Utf8,
                f.is_nullable(),
            )));
            columns.push(timestamps_text(c));
        } else {
            fields.push(Arc::clone(f));
            columns.push(Arc::clone(c));
        }
    }
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    RecordBatch::try_new(schema, columns).unwrap_or(batch)
}

//! Result columns sent in text format get PostgreSQL's text form of timestamps, floats and
//! intervals ([`freshet_sql::pg_text`]), which pgwire's encoder does not give (it always
//! prints six fraction digits, and `1e-5`, `inf`), and of `int2vector`/`oidvector` columns. Binary format is left to
//! pgwire, but for `jsonb`'s version byte.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use freshet_sql::pg_text::{has_text_form, text_form};
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::api::Type;

/// `batch` with the columns `wanted` picks replaced by what `convert` makes of them (given
/// each one's index; the batch itself when it picks none).
fn replace_columns(
    batch: RecordBatch,
    wanted: impl Fn(usize) -> bool,
    convert: impl Fn(usize, &ArrayRef) -> ArrayRef,
) -> RecordBatch {
    if !(0..batch.num_columns()).any(&wanted) {
        return batch;
    }
    let schema = batch.schema();
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (i, (f, c)) in schema.fields().iter().zip(batch.columns()).enumerate() {
        if wanted(i) {
            let converted = convert(i, c);
            fields.push(Arc::new(Field::new(
                f.name(),
                converted.data_type().clone(),
                f.is_nullable(),
            )));
            columns.push(converted);
        } else {
            fields.push(Arc::clone(f));
            columns.push(Arc::clone(c));
        }
    }
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    RecordBatch::try_new(schema, columns).unwrap_or(batch)
}

/// `batch` with each timestamp, float and interval column that goes out in text format as
/// PostgreSQL prints it, which pgwire's encoder does not.
pub fn text_forms(batch: RecordBatch, format: &Format) -> RecordBatch {
    let schema = batch.schema();
    let wanted = |i: usize| {
        has_text_form(schema.field(i).data_type()) && format.format_for(i) == FieldFormat::Text
    };
    replace_columns(batch, wanted, |_, c| text_form(c))
}

/// Columns sent as `int2vector` / `oidvector` in text (see [`super::encode::fields`]) as
/// PostgreSQL prints them: the elements separated by spaces.
pub fn vectors_as_text(batch: RecordBatch, fields: &[FieldInfo]) -> RecordBatch {
    let schema = batch.schema();
    let wanted = |i: usize| {
        fields.get(i).is_some_and(|f| {
            let oid = f.datatype().oid();
            oid == Type::INT2_VECTOR.oid() || oid == Type::OID_VECTOR.oid()
        }) && matches!(schema.field(i).data_type(), DataType::List(_))
    };
    replace_columns(batch, wanted, |_, c| {
        let lists = c.as_list::<i32>();
        let texts: StringArray = (0..lists.len())
            .map(|r| {
                if lists.is_null(r) {
                    return None;
                }
                let items =
                    datafusion::arrow::compute::cast(&lists.value(r), &DataType::Utf8).ok()?;
                let items = items.as_string::<i32>();
                Some(
                    items
                        .iter()
                        .map(|v| v.unwrap_or("0"))
                        .collect::<Vec<_>>()
                        .join(" "),
                )
            })
            .collect();
        Arc::new(texts)
    })
}

/// Columns sent as binary `jsonb` (see [`super::encode::fields`]): PostgreSQL's binary form is
/// a version byte (1) and the text.
pub fn jsonb_binary(batch: RecordBatch, fields: &[FieldInfo]) -> RecordBatch {
    let schema = batch.schema();
    let wanted = |i: usize| {
        fields
            .get(i)
            .is_some_and(|f| *f.datatype() == Type::JSONB && f.format() == FieldFormat::Binary)
            && schema.field(i).data_type() == &DataType::Utf8
    };
    replace_columns(batch, wanted, |_, c| {
        let texts = c.as_string::<i32>();
        let bytes: BinaryArray = (0..texts.len())
            .map(|r| {
                (!texts.is_null(r)).then(|| {
                    let mut v = Vec::with_capacity(texts.value(r).len() + 1);
                    v.push(1u8);
                    v.extend_from_slice(texts.value(r).as_bytes());
                    v
                })
            })
            .collect();
        Arc::new(bytes)
    })
}

/// Columns sent as binary `uuid`: its 16 bytes (it is held as its canonical text).
pub fn uuid_binary(batch: RecordBatch, fields: &[FieldInfo]) -> RecordBatch {
    let schema = batch.schema();
    let wanted = |i: usize| {
        fields
            .get(i)
            .is_some_and(|f| *f.datatype() == Type::UUID && f.format() == FieldFormat::Binary)
            && schema.field(i).data_type() == &DataType::Utf8
    };
    replace_columns(batch, wanted, |_, c| {
        let texts = c.as_string::<i32>();
        let bytes: BinaryArray = texts
            .iter()
            .map(|t| t.and_then(freshet_sql::pg_uuid::bytes))
            .map(|b| b.map(|b| b.to_vec()))
            .collect();
        Arc::new(bytes)
    })
}

/// Each column's `character(n)` length, if it is one (what [`bpchar_padded`] takes), read
/// from the plan's schema: batches need not carry the field metadata.
pub fn bpchar_lengths(schema: &Schema) -> Vec<Option<u32>> {
    schema
        .fields()
        .iter()
        .map(|f| freshet_sql::types::bpchar_length(f))
        .collect()
}

/// `character(n)` columns (`lengths[i]` is column i's `n`) padded with spaces to `n`
/// characters, as PostgreSQL sends them in both formats (they are stored without padding).
pub fn bpchar_padded(batch: RecordBatch, lengths: &[Option<u32>]) -> RecordBatch {
    let schema = batch.schema();
    let wanted = |i: usize| {
        lengths.get(i).copied().flatten().is_some()
            && schema.field(i).data_type() == &DataType::Utf8
    };
    replace_columns(batch, wanted, |i, c| {
        let n = lengths[i].unwrap_or(0) as usize;
        let texts = c.as_string::<i32>();
        let padded: StringArray = texts
            .iter()
            .map(|v| {
                v.map(|s| {
                    let missing = n.saturating_sub(s.chars().count());
                    let mut out = String::with_capacity(s.len() + missing);
                    out.push_str(s);
                    out.extend(std::iter::repeat_n(' ', missing));
                    out
                })
            })
            .collect();
        Arc::new(padded)
    })
}

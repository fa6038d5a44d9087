//! Arrow batches → DataRows, with PostgreSQL type OIDs; cancellation of streaming results.

use std::sync::Arc;

use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use freshet_common::{PgError, SqlState};
use freshet_sql::error::map_df_error;
use freshet_sql::types::{bpchar_length, varchar_length, PG_TYPE_METADATA_KEY};
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::{Stream, StreamExt};
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldInfo, QueryResponse};
use pgwire::api::{ClientInfo, ConnectionHandle, Type};
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;

use super::to_wire_error;

/// Resolves to why the statement whose rows are streaming must stop (a CancelRequest, or its
/// `statement_timeout`), or to `None` when the connection moved on to another statement.
pub type CancelSignal = Shared<BoxFuture<'static, Option<&'static str>>>;

/// pgwire only races a statement's `do_query` future against CancelRequest; rows are
/// pulled after that future returns. This installs a fresh cancel receiver on the
/// connection (the old one, already consumed by pgwire's race, is retired) so that the
/// row streams can be interrupted too, also when `deadline` passes. Must be the last await
/// of a `do_query`: the replaced sender wakes pgwire's race, which still sees `do_query`
/// finish first.
pub async fn cancel_signal<C: ClientInfo>(
    client: &C,
    deadline: Option<tokio::time::Instant>,
) -> Option<CancelSignal> {
    let user = match client.session_extensions().get::<Arc<ConnectionHandle>>() {
        Some(handle) => {
            let rx = handle.start_query().await;
            Some(rx.map(|r| {
                r.is_ok()
                    .then_some("canceling statement due to user request")
            }))
        }
        None => None,
    };
    let timeout = deadline.map(|d| {
        tokio::time::sleep_until(d).map(|()| Some("canceling statement due to statement timeout"))
    });
    match (user, timeout) {
        (Some(u), Some(t)) => Some(
            async move {
                tokio::select! {
                    r = u => r,
                    r = t => r,
                }
            }
            .boxed()
            .shared(),
        ),
        (Some(u), None) => Some(u.boxed().shared()),
        (None, Some(t)) => Some(t.boxed().shared()),
        (None, None) => None,
    }
}

/// Result column descriptions for `schema` in the client's requested `format`.
pub fn fields(schema: &Schema, format: &Format) -> Result<Vec<FieldInfo>, PgError> {
    let mut fields = arrow_schema_to_pg_fields(schema, format, None)
        .map_err(|e| PgError::not_supported(format!("result type: {e}")))?;
    for (i, (fi, f)) in fields.iter_mut().zip(schema.fields()).enumerate() {
        let kind = f.metadata().get(PG_TYPE_METADATA_KEY).map(String::as_str);
        if bpchar_length(f).is_some() {
            *fi = FieldInfo::new(fi.name().to_owned(), None, None, Type::BPCHAR, fi.format());
            continue;
        }
        if varchar_length(f).is_some() {
            *fi = FieldInfo::new(fi.name().to_owned(), None, None, Type::VARCHAR, fi.format());
            continue;
        }
        if format.format_for(i) != pgwire::api::results::FieldFormat::Text {
            // Binary jsonb: its version byte, then the text (see `text::jsonb_binary`).
            if kind == Some("jsonb") {
                *fi = FieldInfo::new(fi.name().to_owned(), None, None, Type::JSONB, fi.format());
            }
            // Binary uuid: its 16 bytes (see `text::uuid_binary`).
            if kind == Some("uuid") {
                *fi = FieldInfo::new(fi.name().to_owned(), None, None, Type::UUID, fi.format());
            }
            continue;
        }
        let pg_type = match kind {
            Some("jsonb") => Type::JSONB,
            Some("uuid") => Type::UUID,
            // PostgreSQL's OIDs, as simple types so the text is not quoted as an array's.
            Some("int2vector") => vector_type(&Type::INT2_VECTOR),
            Some("oidvector") => vector_type(&Type::OID_VECTOR),
            _ => continue,
        };
        *fi = FieldInfo::new(fi.name().to_owned(), None, None, pg_type, fi.format());
    }
    for (fi, f) in fields.iter_mut().zip(schema.fields()) {
        if let Some(typmod) = type_modifier(f) {
            *fi = fi.clone().with_type_modifier(typmod);
        }
    }
    Ok(fields)
}

/// PostgreSQL's type modifier of a result column, as drivers read precision and length from
/// it (pgJDBC's `getPrecision`): `numeric(p, s)`, `character(n)` and `varchar(n)`.
fn type_modifier(f: &datafusion::arrow::datatypes::Field) -> Option<i32> {
    const VARHDRSZ: i32 = 4;
    if let Some(n) = bpchar_length(f).or_else(|| varchar_length(f).flatten()) {
        return i32::try_from(n).ok()?.checked_add(VARHDRSZ);
    }
    match f.data_type() {
        datafusion::arrow::datatypes::DataType::Decimal128(p, s) if *s >= 0 => {
            Some(((i32::from(*p) << 16) | i32::from(*s)) + VARHDRSZ)
        }
        _ => None,
    }
}

/// `vector` (int2vector or oidvector) as a simple type of the same name and OID.
pub(super) fn vector_type(vector: &Type) -> Type {
    Type::new(
        vector.name().to_owned(),
        vector.oid(),
        postgres_types::Kind::Simple,
        vector.schema().to_owned(),
    )
}

/// A streaming query response over `stream`, ended with 57014 if `cancel` fires first.
pub fn query_response(
    schema: &Schema,
    stream: SendableRecordBatchStream,
    format: &Format,
    cancel: Option<CancelSignal>,
) -> Result<QueryResponse, PgError> {
    let fields = Arc::new(fields(schema, format)?);
    let f = Arc::clone(&fields);
    let format = format.clone();
    let lengths = super::text::bpchar_lengths(schema);
    let rows = stream
        .map(move |batch| {
            let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> = match batch {
                Ok(b) => Box::new(data_rows(b, &f, &lengths, &format)),
                Err(e) => Box::new(std::iter::once(Err(to_wire_error(map_df_error(&e))))),
            };
            futures::stream::iter(rows)
        })
        .flatten();
    Ok(match cancel {
        Some(cancel) => QueryResponse::new(fields, cancellable(rows, cancel)),
        None => QueryResponse::new(fields, rows),
    })
}

/// One batch's rows as DataRows in `format`, as PostgreSQL sends them: `character(n)` padded,
/// timestamps, floats, intervals and vectors in PostgreSQL's text, binary `jsonb` with its version byte.
/// `lengths` is [`super::text::bpchar_lengths`] of the batch's schema.
pub fn data_rows(
    batch: RecordBatch,
    fields: &Arc<Vec<FieldInfo>>,
    lengths: &[Option<u32>],
    format: &Format,
) -> impl Iterator<Item = PgWireResult<DataRow>> + Send + Sync + use<> {
    use super::text::{bpchar_padded, jsonb_binary, text_forms, uuid_binary, vectors_as_text};
    let batch = text_forms(bpchar_padded(batch, lengths), format);
    let batch = jsonb_binary(vectors_as_text(batch, fields), fields);
    encode_recordbatch(Arc::clone(fields), uuid_binary(batch, fields))
}

/// `rows` until `cancel` fires; then one 57014 error and the end (dropping `rows` stops the
/// DataFusion plan and its spawned tasks).
fn cancellable<S>(rows: S, cancel: CancelSignal) -> impl Stream<Item = PgWireResult<DataRow>> + Send
where
    S: Stream<Item = PgWireResult<DataRow>> + Send + 'static,
{
    enum State<S> {
        Running(std::pin::Pin<Box<S>>, Option<CancelSignal>),
        Done,
    }
    futures::stream::unfold(
        State::Running(Box::pin(rows), Some(cancel)),
        |state| async move {
            let State::Running(mut rows, cancel) = state else {
                return None;
            };
            let Some(signal) = cancel else {
                return rows.next().await.map(|r| (r, State::Running(rows, None)));
            };
            tokio::select! {
                biased;
                canceled = signal.clone() => {
                    if let Some(why) = canceled {
                        let e = PgError::new(SqlState::QUERY_CANCELED, why);
                        Some((Err(to_wire_error(e)), State::Done))
                    } else {
                        rows.next().await.map(|r| (r, State::Running(rows, None)))
                    }
                }
                row = rows.next() => row.map(|r| (r, State::Running(rows, Some(signal)))),
            }
        },
    )
}

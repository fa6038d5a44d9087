//! Arrow batches → DataRows, with PostgreSQL type OIDs; cancellation of streaming results.

use std::sync::Arc;

use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use datafusion::arrow::datatypes::Schema;
use datafusion::execution::SendableRecordBatchStream;
use freshet_common::{PgError, SqlState};
use freshet_sql::error::map_df_error;
use freshet_sql::types::PG_TYPE_METADATA_KEY;
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::{Stream, StreamExt};
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldInfo, QueryResponse};
use pgwire::api::{ClientInfo, ConnectionHandle, Type};
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;

use super::to_wire_error;

/// Resolves to `true` when the client sent a CancelRequest for the statement whose rows
/// are streaming, `false` when the connection moved on to another statement.
pub type CancelSignal = Shared<BoxFuture<'static, bool>>;

/// pgwire only races a statement's `do_query` future against CancelRequest; rows are
/// pulled after that future returns. This installs a fresh cancel receiver on the
/// connection (the old one, already consumed by pgwire's race, is retired) so that the
/// row streams can be interrupted too. Must be the last await of a `do_query`: the
/// replaced sender wakes pgwire's race, which still sees `do_query` finish first.
pub async fn cancel_signal<C: ClientInfo>(client: &C) -> Option<CancelSignal> {
    let handle = client.session_extensions().get::<Arc<ConnectionHandle>>()?;
    let rx = handle.start_query().await;
    Some(rx.map(|r| r.is_ok()).boxed().shared())
}

/// Result column descriptions for `schema` in the client's requested `format`.
pub fn fields(schema: &Schema, format: &Format) -> Result<Vec<FieldInfo>, PgError> {
    let mut fields = arrow_schema_to_pg_fields(schema, format, None)
        .map_err(|e| PgError::not_supported(format!("result type: {e}")))?;
    for (fi, f) in fields.iter_mut().zip(schema.fields()) {
        if f.metadata()
            .get(PG_TYPE_METADATA_KEY)
            .is_some_and(|t| t == "jsonb")
            && format.format_for(0) == pgwire::api::results::FieldFormat::Text
        {
            *fi = FieldInfo::new(fi.name().to_owned(), None, None, Type::JSONB, fi.format());
        }
    }
    Ok(fields)
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
    let rows = stream
        .map(move |batch| {
            let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> = match batch {
                Ok(b) => encode_recordbatch(Arc::clone(&f), b),
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
                    if canceled {
                        let e = PgError::new(SqlState::QUERY_CANCELED, "canceling statement due to user request");
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

//! A SUBSCRIBE streamed as COPY data in PostgreSQL's text format, one line per row, flushed as
//! each epoch's rows are ready — what `COPY (SUBSCRIBE …) TO STDOUT` prints in psql.
//!
//! pgwire's own COPY-out path buffers its messages until the stream ends, so the messages are
//! written here, straight to the connection. The stream ends at `UP TO`, with an error
//! response when the subscription fails (cut off, relation dropped), or when the client
//! cancels (pgwire races the statement against CancelRequest and answers 57014).

use std::fmt::Debug;
use std::sync::Arc;

use futures::{Sink, SinkExt};
use pgwire::api::portal::Format;
use pgwire::api::results::{Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyOutResponse};
use pgwire::messages::PgWireBackendMessage;

use super::{encode, error_info, to_wire_error};
use crate::coord::Subscription;

/// Streams `sub` to `client` until it ends; the response to finish the statement with.
pub async fn stream_copy<C>(client: &mut C, mut sub: Box<Subscription>) -> PgWireResult<Response>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let columns = sub.schema.fields().len();
    let fields =
        Arc::new(encode::fields(&sub.schema, &Format::UnifiedText).map_err(to_wire_error)?);
    client
        .send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
            0,
            columns as i16,
            vec![0; columns],
        )))
        .await?;
    let lengths = super::text::bpchar_lengths(&sub.schema);
    let mut sent = 0usize;
    loop {
        match sub.next_batch(usize::MAX, None).await {
            Ok(Some(batch)) => {
                for row in encode::data_rows(batch, &fields, &lengths, &Format::UnifiedText) {
                    let line = super::copy_out::text_line(&row?);
                    client
                        .feed(PgWireBackendMessage::CopyData(CopyData::new(line)))
                        .await?;
                    sent += 1;
                }
                client.flush().await?;
            }
            Ok(None) => break,
            Err(e) => return Ok(Response::Error(Box::new(error_info(e)))),
        }
    }
    client
        .send(PgWireBackendMessage::CopyDone(CopyDone::new()))
        .await?;
    Ok(Response::Execution(Tag::new("COPY").with_rows(sent)))
}

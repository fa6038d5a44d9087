//! A SUBSCRIBE streamed as COPY data in PostgreSQL's text format, one line per row, flushed as
//! each epoch's rows are ready — what `COPY (SUBSCRIBE …) TO STDOUT` prints in psql.
//!
//! pgwire's own COPY-out path buffers its messages until the stream ends, so the messages are
//! written here, straight to the connection. The stream ends at `UP TO`, with an error
//! response when the subscription fails (cut off, relation dropped), or when the client
//! cancels (pgwire races the statement against CancelRequest and answers 57014).

use std::fmt::Debug;
use std::sync::Arc;

use arrow_pg::datatypes::encode_recordbatch;
use bytes::{BufMut, Bytes, BytesMut};
use futures::{Sink, SinkExt};
use pgwire::api::portal::Format;
use pgwire::api::results::{Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyOutResponse};
use pgwire::messages::data::DataRow;
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
                let batch = super::text::bpchar_padded(batch, &lengths);
                let batch = super::text::timestamps_as_text(batch, &Format::UnifiedText);
                for row in encode_recordbatch(Arc::clone(&fields), batch) {
                    let line = copy_line(&row?);
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

/// One row of COPY's text format from a text-format DataRow: fields separated by tabs,
/// `\N` for NULL, backslash, tab, newline and carriage return escaped, a newline at the end.
fn copy_line(row: &DataRow) -> Bytes {
    let mut out = BytesMut::with_capacity(row.data.len() + 8);
    let mut data: &[u8] = &row.data;
    for i in 0..row.field_count {
        if i > 0 {
            out.put_u8(b'\t');
        }
        let Some((len, rest)) = data.split_first_chunk::<4>() else {
            break;
        };
        let len = i32::from_be_bytes(*len);
        data = rest;
        if len < 0 {
            out.put_slice(b"\\N");
            continue;
        }
        let (value, rest) = data.split_at((len as usize).min(data.len()));
        data = rest;
        for &b in value {
            match b {
                b'\\' => out.put_slice(b"\\\\"),
                b'\t' => out.put_slice(b"\\t"),
                b'\n' => out.put_slice(b"\\n"),
                b'\r' => out.put_slice(b"\\r"),
                b => out.put_u8(b),
            }
        }
    }
    out.put_u8(b'\n');
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format_escapes() {
        let mut data = BytesMut::new();
        for f in [Some(&b"1"[..]), None, Some(b"a\tb\\c\nd")] {
            match f {
                Some(v) => {
                    data.put_i32(v.len() as i32);
                    data.put_slice(v);
                }
                None => data.put_i32(-1),
            }
        }
        let row = DataRow::new(data, 3);
        assert_eq!(&copy_line(&row)[..], b"1\t\\N\ta\\tb\\\\c\\nd\n");
    }
}

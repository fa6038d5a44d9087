//! `COPY … TO STDOUT`: a query's rows as COPY data in PostgreSQL's text, CSV or binary format,
//! written to the connection as they stream. The text format is also what
//! `COPY (SUBSCRIBE …) TO STDOUT` prints ([`text_line`]).
//!
//! pgwire's COPY-out path counts every message as a row and answers an error in the middle
//! with CopyFail, a message only clients send; so the messages are written here, and an
//! error after the first row is an ErrorResponse, as PostgreSQL sends it.

use std::fmt::Debug;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use freshet_common::{PgError, SqlState};
use freshet_sql::error::map_df_error;
use freshet_sql::{CopyFormat, CopyOptions};
use futures::{Sink, SinkExt, Stream, StreamExt};
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyResponse, FieldInfo, Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyOutResponse};
use pgwire::messages::data::DataRow;
use pgwire::messages::PgWireBackendMessage;

use super::{encode, error_info, to_wire_error};

/// What goes out: the header (binary signature or column names), rows, the binary trailer.
enum Piece {
    Header(Bytes),
    Row(Bytes),
    Trailer(Bytes),
}

/// A query's rows to be written as COPY data.
pub struct CopyOut {
    format: i8,
    columns: usize,
    pieces: std::pin::Pin<Box<dyn Stream<Item = Result<Piece, PgError>> + Send>>,
}

impl CopyOut {
    pub fn new(
        schema: &SchemaRef,
        stream: SendableRecordBatchStream,
        options: CopyOptions,
    ) -> Result<CopyOut, PgError> {
        let binary = options.format == CopyFormat::Binary;
        let format = if binary {
            Format::UnifiedBinary
        } else {
            Format::UnifiedText
        };
        let fields = Arc::new(encode::fields(schema, &format)?);
        let force: Vec<bool> = schema
            .fields()
            .iter()
            .map(|f| options.force_quote.iter().any(|c| c == f.name()))
            .collect();
        if let Some(c) = options
            .force_quote
            .iter()
            .find(|c| schema.fields().iter().all(|f| f.name() != *c))
        {
            return Err(PgError::new(
                SqlState::UNDEFINED_COLUMN,
                format!("column \"{c}\" does not exist"),
            ));
        }
        let header = match options.format {
            CopyFormat::Binary => Some(binary_header()),
            _ if options.header => Some(header_line(&fields, &options)),
            _ => None,
        };
        let lengths = super::text::bpchar_lengths(schema);
        let encoder = LineEncoder {
            options,
            force,
            single: fields.len() == 1,
        };
        let rows = stream
            .map(move |batch| {
                let pieces: Vec<Result<Piece, PgError>> = match batch {
                    Ok(b) => encode::data_rows(b, &fields, &lengths, &format)
                        .map(|row| match row {
                            Ok(row) => Ok(Piece::Row(encoder.line(&row))),
                            Err(e) => Err(PgError::new(SqlState::INTERNAL_ERROR, e.to_string())),
                        })
                        .collect(),
                    Err(e) => vec![Err(map_df_error(&e))],
                };
                futures::stream::iter(pieces)
            })
            .flatten();
        let trailer = binary.then(|| Ok(Piece::Trailer(Bytes::from_static(&[0xff, 0xff]))));
        // PostgreSQL sends the binary signature in one message with the first row (or the
        // trailer), and clients read it that way (psycopg parses each message as one row).
        let pieces = futures::stream::iter(header.map(|h| Ok(Piece::Header(h))))
            .chain(rows)
            .chain(futures::stream::iter(trailer))
            .scan(None::<Bytes>, move |held, piece| {
                let prefixed = |held: &mut Option<Bytes>, b: Bytes| match held.take() {
                    Some(h) => Bytes::from([h, b].concat()),
                    None => b,
                };
                let out = match piece {
                    Ok(Piece::Header(h)) if binary => {
                        *held = Some(h);
                        None
                    }
                    Ok(Piece::Row(r)) => Some(Ok(Piece::Row(prefixed(held, r)))),
                    Ok(Piece::Trailer(t)) => Some(Ok(Piece::Trailer(prefixed(held, t)))),
                    other => Some(other),
                };
                futures::future::ready(Some(out))
            })
            .filter_map(futures::future::ready);
        Ok(CopyOut {
            format: i8::from(binary),
            columns: schema.fields().len(),
            pieces: Box::pin(pieces),
        })
    }

    /// Writes everything to `client` and answers `COPY n`, or the error that ended it (57014
    /// when `deadline`, the statement's timeout, passes first).
    pub async fn send<C>(
        mut self,
        client: &mut C,
        deadline: Option<tokio::time::Instant>,
    ) -> PgWireResult<Response>
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        client
            .send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
                self.format,
                self.columns as i16,
                vec![i16::from(self.format); self.columns],
            )))
            .await?;
        let mut rows = 0usize;
        loop {
            let next = match deadline {
                Some(d) => match tokio::time::timeout_at(d, self.pieces.next()).await {
                    Ok(next) => next,
                    Err(_) => Some(Err(PgError::new(
                        SqlState::QUERY_CANCELED,
                        "canceling statement due to statement timeout",
                    ))),
                },
                None => self.pieces.next().await,
            };
            let data = match next {
                None => break,
                Some(Err(e)) => return Ok(Response::Error(Box::new(error_info(e)))),
                Some(Ok(Piece::Row(data))) => {
                    rows += 1;
                    data
                }
                Some(Ok(Piece::Header(data) | Piece::Trailer(data))) => data,
            };
            client
                .feed(PgWireBackendMessage::CopyData(CopyData::new(data)))
                .await?;
        }
        client
            .send(PgWireBackendMessage::CopyDone(CopyDone::new()))
            .await?;
        Ok(Response::Execution(Tag::new("COPY").with_rows(rows)))
    }

    /// As a response pgwire writes, for a COPY that follows other statements in one simple
    /// query (their responses go first). pgwire counts messages as rows (but for a bare
    /// binary trailer), so a header line travels with the first row.
    pub fn into_response(self) -> Response {
        let mut header = None;
        let pieces = self.pieces.filter_map(move |piece| {
            let out = match piece {
                Ok(Piece::Header(h)) => {
                    header = Some(h);
                    None
                }
                Ok(Piece::Row(r) | Piece::Trailer(r)) => {
                    Some(Ok(CopyData::new(match header.take() {
                        Some(h) => [h, r].concat().into(),
                        None => r,
                    })))
                }
                Err(e) => Some(Err(to_wire_error(e))),
            };
            futures::future::ready(out)
        });
        // Not `CopyResponse::new`'s stream, which would get a second binary trailer.
        let mut resp = CopyResponse::new(self.format, self.columns, futures::stream::empty());
        *resp.data_stream() = Box::pin(pieces);
        Response::CopyOut(resp)
    }
}

/// PGCOPY's signature, flags and header extension length.
fn binary_header() -> Bytes {
    let mut out = BytesMut::with_capacity(19);
    out.put_slice(b"PGCOPY\n\xff\r\n\0");
    out.put_i32(0);
    out.put_i32(0);
    out.freeze()
}

/// The column names, as a row of the format.
fn header_line(fields: &[FieldInfo], options: &CopyOptions) -> Bytes {
    let encoder = LineEncoder {
        options: options.clone(),
        force: vec![false; fields.len()],
        single: fields.len() == 1,
    };
    let mut out = BytesMut::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            put_char(&mut out, options.delimiter);
        }
        encoder.field(&mut out, i, f.name().as_bytes());
    }
    out.put_u8(b'\n');
    out.freeze()
}

fn put_char(out: &mut BytesMut, c: char) {
    let mut buf = [0u8; 4];
    out.put_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// Turns DataRows into lines of the text or CSV format, or tuples of the binary format.
struct LineEncoder {
    options: CopyOptions,
    /// CSV: the columns whose values are always quoted.
    force: Vec<bool>,
    /// One column: a CSV value `\.` is quoted, lest it read as the end of the data.
    single: bool,
}

impl LineEncoder {
    fn line(&self, row: &DataRow) -> Bytes {
        let mut out = BytesMut::with_capacity(row.data.len() + 8);
        if self.options.format == CopyFormat::Binary {
            out.put_i16(row.field_count);
            out.put_slice(&row.data);
            return out.freeze();
        }
        let mut data: &[u8] = &row.data;
        for i in 0..row.field_count as usize {
            if i > 0 {
                put_char(&mut out, self.options.delimiter);
            }
            let Some((len, rest)) = data.split_first_chunk::<4>() else {
                break;
            };
            let len = i32::from_be_bytes(*len);
            data = rest;
            if len < 0 {
                out.put_slice(self.options.null.as_bytes());
                continue;
            }
            let (value, rest) = data.split_at((len as usize).min(data.len()));
            data = rest;
            self.field(&mut out, i, value);
        }
        out.put_u8(b'\n');
        out.freeze()
    }

    /// One non-NULL value of column `i`, escaped (text) or quoted where needed (CSV).
    fn field(&self, out: &mut BytesMut, i: usize, value: &[u8]) {
        let o = &self.options;
        // The delimiter, quote and escape are single bytes (checked when the statement is bound).
        let delimiter = o.delimiter as u8;
        if o.format != CopyFormat::Csv {
            for &b in value {
                match b {
                    b'\\' => out.put_slice(b"\\\\"),
                    b'\t' => out.put_slice(b"\\t"),
                    b'\n' => out.put_slice(b"\\n"),
                    b'\r' => out.put_slice(b"\\r"),
                    0x08 => out.put_slice(b"\\b"),
                    0x0c => out.put_slice(b"\\f"),
                    0x0b => out.put_slice(b"\\v"),
                    b if b == delimiter => {
                        out.put_u8(b'\\');
                        out.put_u8(b);
                    }
                    b => out.put_u8(b),
                }
            }
            return;
        }
        let (quote, escape) = (o.quote as u8, o.escape as u8);
        let quoted = self.force.get(i).copied().unwrap_or(false)
            || value == o.null.as_bytes()
            || (self.single && value == b"\\.")
            || value
                .iter()
                .any(|&b| b == delimiter || b == quote || b == b'\n' || b == b'\r');
        if !quoted {
            out.put_slice(value);
            return;
        }
        out.put_u8(quote);
        for &b in value {
            if b == quote || b == escape {
                out.put_u8(escape);
            }
            out.put_u8(b);
        }
        out.put_u8(quote);
    }
}

/// One row of COPY's text format with the default options, from a text-format DataRow.
pub fn text_line(row: &DataRow) -> Bytes {
    thread_local! {
        static TEXT: LineEncoder = LineEncoder {
            options: CopyOptions::new(CopyFormat::Text),
            force: Vec::new(),
            single: false,
        };
    }
    TEXT.with(|e| e.line(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(fields: &[Option<&[u8]>]) -> DataRow {
        let mut data = BytesMut::new();
        for f in fields {
            match f {
                Some(v) => {
                    data.put_i32(v.len() as i32);
                    data.put_slice(v);
                }
                None => data.put_i32(-1),
            }
        }
        DataRow::new(data, fields.len() as i16)
    }

    #[test]
    fn text_format_escapes() {
        let r = row(&[Some(b"1"), None, Some(b"a\tb\\c\nd\x08")]);
        assert_eq!(&text_line(&r)[..], b"1\t\\N\ta\\tb\\\\c\\nd\\b\n");
        let mut o = CopyOptions::new(CopyFormat::Text);
        o.delimiter = '|';
        o.null = String::new();
        let e = LineEncoder {
            options: o,
            force: vec![],
            single: false,
        };
        assert_eq!(&e.line(&row(&[Some(b"a|b\tc"), None]))[..], b"a\\|b\\tc|\n");
    }

    #[test]
    fn csv_quotes_where_postgresql_does() {
        let e = LineEncoder {
            options: CopyOptions::new(CopyFormat::Csv),
            force: vec![false, false, false, true, false],
            single: false,
        };
        let r = row(&[
            Some(b"plain"),
            Some(b""),
            None,
            Some(b"x"),
            Some(b"a,\"b\"\nc"),
        ]);
        assert_eq!(&e.line(&r)[..], b"plain,\"\",,\"x\",\"a,\"\"b\"\"\nc\"\n");
        let single = LineEncoder {
            options: CopyOptions::new(CopyFormat::Csv),
            force: vec![false],
            single: true,
        };
        assert_eq!(&single.line(&row(&[Some(b"\\.")]))[..], b"\"\\.\"\n");
    }

    #[test]
    fn binary_tuples() {
        let e = LineEncoder {
            options: CopyOptions::new(CopyFormat::Binary),
            force: vec![],
            single: false,
        };
        let r = row(&[Some(&[0, 0, 0, 7]), None]);
        assert_eq!(
            &e.line(&r)[..],
            &[0, 2, 0, 0, 0, 4, 0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(binary_header().len(), 19);
    }
}

//! One write per response instead of one per message. pgwire flushes the socket after every
//! backend message it sends, so a prepared point read costs four `send` calls (BindComplete,
//! DataRow, CommandComplete, ReadyForQuery) where PostgreSQL makes one. [`Coalesced`] holds
//! the bytes of messages that are never the last of a response (rows, row descriptions,
//! command completions, parse/bind completions, parameter statuses) and writes them with the
//! next message that may be the last (ReadyForQuery, errors, notices, COPY data,
//! authentication, notifications) — or before the server next waits for the client, or once
//! 16 KiB are held — so nothing the client waits for is ever held back.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes held at most before they are written anyway.
const HOLD_LIMIT: usize = 16 * 1024;

/// Backend message types after which the server always sends more before the client has to
/// answer: their bytes may wait for the next message.
const FOLLOWED: &[u8] = b"DTC123tnsISK";

/// An IO whose writes are coalesced per response (see the module doc).
#[derive(Debug)]
pub struct Coalesced<S> {
    inner: S,
    out: Vec<u8>,
    /// Bytes of `out` already written to `inner`.
    written: usize,
    /// Offset in `out` of the first message not yet looked at.
    scanned: usize,
    /// Type of the last complete message in `out`.
    last: Option<u8>,
}

impl<S> Coalesced<S> {
    pub fn new(inner: S) -> Self {
        Coalesced {
            inner,
            out: Vec::new(),
            written: 0,
            scanned: 0,
            last: None,
        }
    }

    /// Follows the framing of `out` up to its last complete message.
    fn scan(&mut self) {
        while self.out.len() - self.scanned >= 5 {
            let at = self.scanned;
            let len = u32::from_be_bytes([
                self.out[at + 1],
                self.out[at + 2],
                self.out[at + 3],
                self.out[at + 4],
            ]) as usize;
            if at + 1 + len > self.out.len() {
                break;
            }
            self.last = Some(self.out[at]);
            self.scanned = at + 1 + len;
        }
    }

    /// Whether the held bytes may wait: each ends a message that is always followed.
    fn may_hold(&self) -> bool {
        self.scanned == self.out.len()
            && self.out.len() - self.written < HOLD_LIMIT
            && self.last.is_some_and(|t| FOLLOWED.contains(&t))
    }
}

impl<S: AsyncWrite + Unpin> Coalesced<S> {
    /// Writes every held byte, then flushes `inner`.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.out.clear();
        self.written = 0;
        self.scanned = 0;
        self.last = None;
        Pin::new(&mut self.inner).poll_flush(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Coalesced<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Before waiting for the client, everything it may be waiting for goes out.
        if !this.out.is_empty() {
            ready!(this.poll_drain(cx))?;
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesced<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.scan();
        if this.may_hold() {
            return Poll::Ready(Ok(()));
        }
        this.poll_drain(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn msg(t: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![t];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[tokio::test]
    async fn a_response_goes_out_at_once_with_its_last_message() {
        let (server, mut client) = tokio::io::duplex(1 << 16);
        let mut s = Coalesced::new(server);
        for m in [msg(b'2', b""), msg(b'D', b"row"), msg(b'C', b"SELECT 1")] {
            s.write_all(&m).await.unwrap();
            s.flush().await.unwrap();
        }
        let mut probe = [0u8; 1];
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(50), client.read(&mut probe)).await;
        assert!(waited.is_err(), "rows and completions are held");
        s.write_all(&msg(b'Z', b"I")).await.unwrap();
        s.flush().await.unwrap();
        let mut got = vec![0u8; 5 + 8 + 13 + 6];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got[0], b'2');
        assert_eq!(got[got.len() - 6], b'Z');
    }

    #[tokio::test]
    async fn held_bytes_go_out_before_the_server_reads() {
        let (server, mut client) = tokio::io::duplex(1 << 16);
        let mut s = Coalesced::new(server);
        s.write_all(&msg(b'T', b"desc")).await.unwrap();
        s.flush().await.unwrap();
        client.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        let mut got = vec![0u8; 9];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got[0], b'T');
    }
}

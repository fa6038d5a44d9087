//! A ceiling on the size of the messages a client may send. pgwire buffers a whole message
//! before decoding it and accepts up to 1 GB, so a client announcing a huge message could
//! make the server hold that much. [`Limited`] follows the message framing of the bytes it
//! reads and fails the read as soon as a header announces more than the limit, or more than
//! what is left of a [`Budget`] all connections share for large messages being received.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Codes of the untyped requests after which another untyped message follows.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

/// Where the reader is in the client's message stream.
#[derive(Debug, Clone, Copy)]
enum Framing {
    /// In the header of a startup-phase message: length (4 bytes) and code (4 bytes).
    Untyped { have: usize, header: [u8; 8] },
    /// In the header of a regular message: type (1 byte) and length (4 bytes).
    Typed { have: usize, header: [u8; 5] },
    /// In a body, with this many bytes left; `untyped_next` after an SSL/GSSENC request.
    Body { left: usize, untyped_next: bool },
}

impl Framing {
    /// At the start of the next message's header.
    fn header(untyped: bool) -> Framing {
        if untyped {
            Framing::Untyped {
                have: 0,
                header: [0; 8],
            }
        } else {
            Framing::Typed {
                have: 0,
                header: [0; 5],
            }
        }
    }
}

/// Messages from this size on count against the shared [`Budget`] while they arrive.
const LARGE: usize = 1 << 20;

/// Bytes of large messages being received, all connections together, and their ceiling.
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    limit: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            used: AtomicUsize::new(0),
            limit,
        })
    }

    fn take(&self, n: usize) -> bool {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            if used + n > self.limit {
                return false;
            }
            match self
                .used
                .compare_exchange_weak(used, used + n, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Why a message was refused: the caller answers 54000 for one too large, 53400 when the
/// server is already receiving too much.
#[derive(Debug)]
pub struct TooLarge {
    pub announced: usize,
    pub limit: usize,
    /// The shared budget, not the per-message limit, was exceeded.
    pub server_wide: bool,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.server_wide {
            write!(
                f,
                "message of {} bytes refused: the server is already receiving large messages up to its limit of {} bytes (--max-buffered-messages-mb)",
                self.announced, self.limit
            )
        } else {
            write!(
                f,
                "message of {} bytes exceeds the server's limit of {} bytes (--max-message-mb)",
                self.announced, self.limit
            )
        }
    }
}

impl TooLarge {
    /// The SQLSTATE the client gets.
    pub fn sqlstate(&self) -> &'static str {
        if self.server_wide {
            "53400"
        } else {
            "54000"
        }
    }
}

impl std::error::Error for TooLarge {}

/// `S`, reading only messages of at most `limit` bytes, and large ones only within `budget`.
pub struct Limited<S> {
    inner: S,
    limit: usize,
    framing: Framing,
    budget: Arc<Budget>,
    /// What the message being read holds of the budget.
    held: usize,
}

impl<S> Drop for Limited<S> {
    fn drop(&mut self) {
        self.budget.give_back(std::mem::take(&mut self.held));
    }
}

impl<S> Limited<S> {
    /// `consumed`: bytes already read from `inner` from the start of the stream's first
    /// message (after any SSL negotiation), e.g. what a framed reader has buffered.
    pub fn new(
        inner: S,
        limit: usize,
        budget: Arc<Budget>,
        consumed: &[u8],
    ) -> io::Result<Limited<S>> {
        let mut l = Limited {
            inner,
            limit,
            framing: Framing::header(true),
            budget,
            held: 0,
        };
        l.advance(consumed)?;
        Ok(l)
    }

    /// Follows the framing over `bytes`.
    fn advance(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match &mut self.framing {
                Framing::Body { left, untyped_next } => {
                    let n = (*left).min(bytes.len());
                    *left -= n;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        self.framing = Framing::header(*untyped_next);
                        self.budget.give_back(std::mem::take(&mut self.held));
                    }
                }
                Framing::Untyped { have, header } => {
                    let n = (8 - *have).min(bytes.len());
                    header[*have..*have + n].copy_from_slice(&bytes[..n]);
                    *have += n;
                    bytes = &bytes[n..];
                    if *have == 8 {
                        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
                        let code = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
                        let len = len as usize;
                        self.check(len)?;
                        self.framing = Framing::Body {
                            left: len.saturating_sub(8),
                            untyped_next: code == SSL_REQUEST || code == GSSENC_REQUEST,
                        };
                        self.settle_empty_body();
                    }
                }
                Framing::Typed { have, header } => {
                    let n = (5 - *have).min(bytes.len());
                    header[*have..*have + n].copy_from_slice(&bytes[..n]);
                    *have += n;
                    bytes = &bytes[n..];
                    if *have == 5 {
                        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
                        let len = len as usize;
                        self.check(len)?;
                        self.framing = Framing::Body {
                            left: len.saturating_sub(4),
                            untyped_next: false,
                        };
                        self.settle_empty_body();
                    }
                }
            }
        }
        Ok(())
    }

    /// A message without a body is complete at its header.
    fn settle_empty_body(&mut self) {
        if let Framing::Body {
            left: 0,
            untyped_next,
        } = self.framing
        {
            self.framing = Framing::header(untyped_next);
        }
    }

    fn check(&mut self, len: usize) -> io::Result<()> {
        let refuse = |limit, server_wide| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                TooLarge {
                    announced: len,
                    limit,
                    server_wide,
                },
            )
        };
        if len > self.limit {
            return Err(refuse(self.limit, false));
        }
        if len >= LARGE {
            if !self.budget.take(len) {
                return Err(refuse(self.budget.limit, true));
            }
            self.held = len;
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => Poll::Ready(this.advance(&buf.filled()[before..])),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(t: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![t];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn follows_framing_and_refuses_large_headers() {
        let mut startup = Vec::new();
        startup.extend_from_slice(&16u32.to_be_bytes());
        startup.extend_from_slice(&196_608u32.to_be_bytes());
        startup.extend_from_slice(b"user\0me\0");
        let mut ssl = Vec::new();
        ssl.extend_from_slice(&8u32.to_be_bytes());
        ssl.extend_from_slice(&SSL_REQUEST.to_be_bytes());
        let mut stream = ssl.clone();
        stream.extend_from_slice(&startup);
        stream.extend(typed(b'Q', b"SELECT 1\0"));
        stream.extend(typed(b'S', b""));
        stream.extend(typed(b'Q', &[b'x'; 100]));
        // byte by byte, and all at once
        let budget = Budget::new(1 << 30);
        let mut l = Limited::new((), 200, Arc::clone(&budget), &[]).unwrap();
        for b in &stream {
            l.advance(std::slice::from_ref(b)).unwrap();
        }
        assert!(Limited::new((), 200, Arc::clone(&budget), &stream).is_ok());
        let mut big = stream.clone();
        big.push(b'Q');
        big.extend_from_slice(&1_000_000_000u32.to_be_bytes());
        let e = Limited::new((), 200, Arc::clone(&budget), &big).err().unwrap();
        assert!(e.get_ref().unwrap().is::<TooLarge>());
        // the startup message counts too
        let mut huge_startup = Vec::new();
        huge_startup.extend_from_slice(&500u32.to_be_bytes());
        huge_startup.extend_from_slice(&196_608u32.to_be_bytes());
        assert!(Limited::new((), 200, Arc::clone(&budget), &huge_startup).is_err());
    }

    #[test]
    fn large_messages_share_a_budget() {
        let budget = Budget::new(3 << 20);
        let header = |n: usize| {
            let mut v = vec![b'Q'];
            v.extend_from_slice(&(n as u32).to_be_bytes());
            v
        };
        let mut startup = Vec::new();
        startup.extend_from_slice(&8u32.to_be_bytes());
        startup.extend_from_slice(&196_608u32.to_be_bytes());
        let open = |extra: &[u8]| {
            let mut s = startup.clone();
            s.extend_from_slice(extra);
            Limited::new((), 1 << 30, Arc::clone(&budget), &s)
        };
        let a = open(&header(2 << 20)).unwrap();
        let e = open(&header(2 << 20)).err().unwrap();
        let t = e.get_ref().unwrap().downcast_ref::<TooLarge>().unwrap();
        assert!(t.server_wide);
        drop(a); // its bytes go back
        let mut b = open(&header(2 << 20)).unwrap();
        b.advance(&vec![0; (2 << 20) - 4]).unwrap(); // the body arrives: the budget is free
        assert_eq!(budget.used.load(Ordering::Relaxed), 0);
        assert!(open(&header(3 << 20)).is_ok());
    }
}

//! A ceiling on the size of the messages a client may send. pgwire buffers a whole message
//! before decoding it and accepts up to 1 GB, so a client announcing a huge message could
//! make the server hold that much. [`Limited`] follows the message framing of the bytes it
//! reads and fails the read as soon as a header announces more than the limit.

use std::io;
use std::pin::Pin;
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

/// The error a too-large message gets: the caller answers it with 54000.
#[derive(Debug)]
pub struct TooLarge {
    pub announced: usize,
    pub limit: usize,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "message of {} bytes exceeds the server's limit of {} bytes (--max-message-mb)",
            self.announced, self.limit
        )
    }
}

impl std::error::Error for TooLarge {}

/// `S`, reading only messages of at most `limit` bytes.
pub struct Limited<S> {
    inner: S,
    limit: usize,
    framing: Framing,
}

impl<S> Limited<S> {
    /// `consumed`: bytes already read from `inner` from the start of the stream's first
    /// message (after any SSL negotiation), e.g. what a framed reader has buffered.
    pub fn new(inner: S, limit: usize, consumed: &[u8]) -> io::Result<Limited<S>> {
        let mut l = Limited {
            inner,
            limit,
            framing: Framing::Untyped {
                have: 0,
                header: [0; 8],
            },
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
                        self.framing = if *untyped_next {
                            Framing::Untyped {
                                have: 0,
                                header: [0; 8],
                            }
                        } else {
                            Framing::Typed {
                                have: 0,
                                header: [0; 5],
                            }
                        };
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
            self.framing = if untyped_next {
                Framing::Untyped {
                    have: 0,
                    header: [0; 8],
                }
            } else {
                Framing::Typed {
                    have: 0,
                    header: [0; 5],
                }
            };
        }
    }

    fn check(&self, len: usize) -> io::Result<()> {
        if len > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                TooLarge {
                    announced: len,
                    limit: self.limit,
                },
            ));
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
            Poll::Ready(Ok(())) => {
                let new = buf.filled()[before..].to_vec();
                Poll::Ready(this.advance(&new))
            }
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
        let mut l = Limited::new((), 200, &[]).unwrap();
        for b in &stream {
            l.advance(std::slice::from_ref(b)).unwrap();
        }
        assert!(Limited::new((), 200, &stream).is_ok());
        let mut big = stream.clone();
        big.push(b'Q');
        big.extend_from_slice(&1_000_000_000u32.to_be_bytes());
        let e = Limited::new((), 200, &big).err().unwrap();
        assert!(e.get_ref().unwrap().is::<TooLarge>());
        // the startup message counts too
        let mut huge_startup = Vec::new();
        huge_startup.extend_from_slice(&500u32.to_be_bytes());
        huge_startup.extend_from_slice(&196_608u32.to_be_bytes());
        assert!(Limited::new((), 200, &huge_startup).is_err());
    }
}

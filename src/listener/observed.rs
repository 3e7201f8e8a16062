//! A connection whose reads something watches (the REST connection's
//! timer, the gRPC preface deadline); writes pass through. Over TLS the
//! watched bytes are the decrypted ones.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::transport::Transport;

/// What watches a connection's reads.
pub trait ReadWatch: Unpin {
    /// Before each read: an error fails the read (a deadline has passed).
    fn before_read(&mut self, cx: &mut Context<'_>) -> Option<io::Error>;
    /// After each read, with the bytes it delivered.
    fn after_read(&mut self, bytes: usize);
}

/// A connection and what watches its reads.
pub struct Observed<W> {
    pub(super) inner: Transport,
    pub(super) watch: W,
}

impl<W: ReadWatch> AsyncRead for Observed<W> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(e) = this.watch.before_read(cx) {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.watch.after_read(buf.filled().len() - before);
        read
    }
}

impl<W: ReadWatch> AsyncWrite for Observed<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

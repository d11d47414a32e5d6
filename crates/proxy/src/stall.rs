//! NGINX's `send_timeout` for connections served by hyper: a response the client takes
//! nothing of for that long ends the connection. Two ways of not taking: the socket accepts
//! no byte (a client that never reads), or the client reads but grants no HTTP/2
//! flow-control window, so hyper stops asking the response body for more. Either way the
//! upstream is no longer read (back-pressure), and what is held is bounded by the stream
//! buffers; this bounds how long it is held.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// One connection's progress at sending: shared by its socket wrapper and its response
/// bodies, read by the connection's timer.
#[derive(Debug)]
pub(crate) struct Stall {
    start: Instant,
    /// Milliseconds from `start` (plus one; 0: not blocked) since the socket refused bytes.
    write_blocked: AtomicU64,
    /// Response bodies that gave data and have not been asked for more since.
    waiting: AtomicUsize,
    /// Milliseconds from `start` to the last time a response body was asked for data.
    last_pull: AtomicU64,
}

impl Stall {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            write_blocked: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            last_pull: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    // Relaxed everywhere: one connection's tasks run on one worker thread; the values are
    // hints read by a timer.

    fn blocked(&self) {
        if self.write_blocked.load(Ordering::Relaxed) == 0 {
            self.write_blocked.store(self.now_ms() + 1, Ordering::Relaxed);
        }
    }

    fn unblocked(&self) {
        self.write_blocked.store(0, Ordering::Relaxed);
    }

    /// `None` when the connection has sent nothing for `timeout` although it has something to
    /// send; otherwise the instant to look again.
    pub(crate) fn check(&self, timeout: Duration) -> Option<Instant> {
        let now = Instant::now();
        let mut next = now + timeout;
        let blocked = self.write_blocked.load(Ordering::Relaxed);
        if blocked > 0 {
            next = next.min(self.start + Duration::from_millis(blocked - 1) + timeout);
        }
        if self.waiting.load(Ordering::Relaxed) > 0 {
            let pulled = self.start + Duration::from_millis(self.last_pull.load(Ordering::Relaxed));
            next = next.min(pulled + timeout);
        }
        if next <= now { None } else { Some(next) }
    }
}

/// A socket that tells [`Stall`] when it refuses bytes and when it takes them again.
pub(crate) struct StallIo<I> {
    io: I,
    stall: Arc<Stall>,
}

impl<I> StallIo<I> {
    pub(crate) fn new(io: I, stall: Arc<Stall>) -> Self {
        Self { io, stall }
    }

    fn note(&self, written: &Poll<io::Result<usize>>) {
        match written {
            Poll::Pending => self.stall.blocked(),
            Poll::Ready(_) => self.stall.unblocked(),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for StallIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for StallIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, data);
        self.note(&written);
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.note(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

pin_project_lite::pin_project! {
    /// A response body that tells [`Stall`] when it gave data and when it is asked for more:
    /// hyper asks only once the client has room (socket and flow-control window).
    pub(crate) struct Watched<B> {
        #[pin]
        body: B,
        stall: Arc<Stall>,
        waiting: bool,
    }

    impl<B> PinnedDrop for Watched<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if *this.waiting {
                this.stall.waiting.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl<B> Watched<B> {
    pub(crate) fn new(body: B, stall: Arc<Stall>) -> Self {
        Self { body, stall, waiting: false }
    }
}

impl<B: Body> Body for Watched<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        this.stall.last_pull.store(this.stall.now_ms(), Ordering::Relaxed);
        if std::mem::take(this.waiting) {
            this.stall.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        let frame = this.body.as_mut().poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &frame
            && f.is_data()
            && !this.body.is_end_stream()
        {
            *this.waiting = true;
            this.stall.waiting.fetch_add(1, Ordering::Relaxed);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

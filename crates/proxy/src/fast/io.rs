//! Socket reads and writes for the fast path, and its per-worker pool of upstream connections.

use std::io::{self, Read as _};
use std::net::SocketAddr;
use std::time::Duration;

use std::future::{Future as _, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, Interest};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_rustls::server::TlsStream;

use sluice_model::UpstreamKeepalive;

use crate::pool;
use crate::tls::hello::Rewind;

/// Why a read or write gave up.
#[derive(Debug)]
pub(super) enum IoFail {
    /// Nothing arrived (or could be written) before the deadline.
    Timeout,
    /// The socket failed.
    Failed,
}

/// A read buffer whose bytes are always initialised (no `unsafe`): `bytes` is zeroed once as
/// it grows, and `len` says how much of it holds data.
pub(crate) struct ReadBuf {
    bytes: Vec<u8>,
    len: usize,
}

/// Space offered to each read at least.
const MIN_SPARE: usize = 4096;

impl ReadBuf {
    pub(super) fn new(capacity: usize) -> Self {
        Self { bytes: vec![0; capacity.max(MIN_SPARE)], len: 0 }
    }

    /// The bytes read and not consumed.
    pub(super) fn filled(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn capacity(&self) -> usize {
        self.bytes.len()
    }

    pub(super) fn clear(&mut self) {
        self.len = 0;
    }

    /// Drops the first `n` bytes (a request or response head consumed).
    pub(super) fn consume(&mut self, n: usize) {
        self.bytes.copy_within(n..self.len, 0);
        self.len -= n;
    }

    /// The unread bytes, as an owned vector (for a hand-off).
    pub(super) fn take(&mut self) -> Vec<u8> {
        let mut v = std::mem::take(&mut self.bytes);
        v.truncate(self.len);
        self.len = 0;
        v
    }

    /// Gives back the memory a large message (a request body) made the buffer take, keeping
    /// the unread bytes: idle connections are many.
    pub(super) fn shrink(&mut self, capacity: usize) {
        if self.bytes.len() > capacity && self.len <= capacity / 2 {
            let mut bytes = vec![0; capacity];
            bytes[..self.len].copy_from_slice(&self.bytes[..self.len]);
            self.bytes = bytes;
        }
    }

    fn spare(&mut self) -> &mut [u8] {
        if self.bytes.len() - self.len < MIN_SPARE {
            let grown = (self.bytes.len() * 2).max(self.len + MIN_SPARE);
            self.bytes.resize(grown, 0);
        }
        &mut self.bytes[self.len..]
    }
}

/// A connection's timer, re-armed lazily: waiting for a later deadline than the one armed
/// costs nothing until the armed one fires (it is then moved to the real deadline). A busy
/// keep-alive connection so waits for every message without touching the timer wheel, where
/// a timeout per wait would register and remove an entry each time.
pub(crate) struct Timer {
    sleep: Pin<Box<Sleep>>,
    armed: Instant,
}

impl Timer {
    pub(super) fn new() -> Self {
        // Far enough never to fire before the first real deadline re-arms it.
        let armed = Instant::now() + Duration::from_secs(86_400 * 365);
        Self { sleep: Box::pin(tokio::time::sleep_until(armed)), armed }
    }

    /// Ready once `deadline` has passed.
    fn poll_expired(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        if self.armed > deadline {
            self.sleep.as_mut().reset(deadline);
            self.armed = deadline;
        }
        loop {
            ready!(self.sleep.as_mut().poll(cx));
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            self.sleep.as_mut().reset(deadline);
            self.armed = deadline;
        }
    }
}

/// Reads what the socket holds into `buf`, waiting until `deadline` if nothing is there yet;
/// `Ok(0)` at end of stream.
///
/// A read that fills less than the space offered has drained the socket, so its readiness is
/// cleared at once, as NGINX does, instead of paying for one more read that would only fail
/// with `EWOULDBLOCK`: the next read waits for the next readiness event without a system call.
/// Readiness that arrived during the read is kept (tokio clears only the event it observed).
pub(super) async fn read_more(
    stream: &TcpStream,
    buf: &mut ReadBuf,
    timer: &mut Timer,
    deadline: Instant,
) -> Result<usize, IoFail> {
    poll_fn(|cx| poll_read_more(stream, buf, timer, deadline, cx)).await
}

/// [`read_more`] as a poll: for a reader that is itself polled (a response body).
pub(super) fn poll_read_more(
    stream: &TcpStream,
    buf: &mut ReadBuf,
    timer: &mut Timer,
    deadline: Instant,
    cx: &mut Context<'_>,
) -> Poll<Result<usize, IoFail>> {
    loop {
        let spare = buf.spare();
        let offered = spare.len();
        let mut got = 0;
        let read = stream.try_io(Interest::READABLE, || {
            let n = (&*SockRef::from(stream)).read(spare)?;
            got = n;
            if n > 0 && n < offered { Err(io::ErrorKind::WouldBlock.into()) } else { Ok(n) }
        });
        let n = match read {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => got,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => match stream.poll_read_ready(cx) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(_)) => return Poll::Ready(Err(IoFail::Failed)),
                Poll::Pending => {
                    return timer.poll_expired(deadline, cx).map(|()| Err(IoFail::Timeout));
                }
            },
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Poll::Ready(Err(IoFail::Failed)),
        };
        buf.len += n;
        return Poll::Ready(Ok(n));
    }
}

/// Writes all of `data`, giving up when the peer takes nothing for `timeout` (NGINX's
/// `send_timeout` counts between two successive writes too).
pub(super) async fn write_all(
    stream: &TcpStream,
    mut data: &[u8],
    timer: &mut Timer,
    timeout: Duration,
) -> Result<(), IoFail> {
    while !data.is_empty() {
        match stream.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let deadline = Instant::now() + timeout;
                poll_fn(|cx| {
                    if let Poll::Ready(r) = stream.poll_write_ready(cx) {
                        return Poll::Ready(r.map_err(|_| IoFail::Failed));
                    }
                    timer.poll_expired(deadline, cx).map(|()| Err(IoFail::Timeout))
                })
                .await?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(IoFail::Failed),
        }
    }
    Ok(())
}

/// A client connection as the fast path reads and writes it: plain TCP, or TLS over TCP once
/// the handshake is done (HTTP/1.1 over TLS runs the same loop; only the record layer
/// differs).
pub(crate) enum ClientStream {
    Tcp(TcpStream),
    /// Boxed: rustls's connection state is large, and plain connections are many.
    Tls(Box<TlsStream<Rewind<TcpStream>>>),
}

impl ClientStream {
    /// Reads what the connection holds into `buf` ([`read_more`] for TCP; for TLS, the
    /// plaintext of the records that arrived), waiting until `deadline`; `Ok(0)` at the end of
    /// the stream.
    pub(super) async fn read_more(
        &mut self,
        buf: &mut ReadBuf,
        timer: &mut Timer,
        deadline: Instant,
    ) -> Result<usize, IoFail> {
        match self {
            Self::Tcp(stream) => read_more(stream, buf, timer, deadline).await,
            Self::Tls(stream) => {
                let spare = buf.spare();
                let n = poll_fn(|cx| {
                    let mut read = tokio::io::ReadBuf::new(&mut *spare);
                    match Pin::new(&mut **stream).poll_read(cx, &mut read) {
                        Poll::Ready(Ok(())) => Poll::Ready(Ok(read.filled().len())),
                        Poll::Ready(Err(_)) => Poll::Ready(Err(IoFail::Failed)),
                        Poll::Pending => {
                            timer.poll_expired(deadline, cx).map(|()| Err(IoFail::Timeout))
                        }
                    }
                })
                .await?;
                buf.len += n;
                Ok(n)
            }
        }
    }

    /// Writes all of `data` ([`write_all`]'s rule: gives up when the peer takes nothing for
    /// `timeout`). TLS records are flushed before it returns, as a plain write is sent.
    pub(super) async fn write_all(
        &mut self,
        data: &[u8],
        timer: &mut Timer,
        timeout: Duration,
    ) -> Result<(), IoFail> {
        match self {
            Self::Tcp(stream) => write_all(stream, data, timer, timeout).await,
            Self::Tls(stream) => {
                let mut data = data;
                // Re-armed whenever the peer takes something.
                let mut deadline = None;
                poll_fn(|cx| {
                    loop {
                        let stream = Pin::new(&mut **stream);
                        let progress = if data.is_empty() {
                            match stream.poll_flush(cx) {
                                Poll::Ready(Ok(())) => return Poll::Ready(Ok(())),
                                Poll::Ready(Err(_)) => return Poll::Ready(Err(IoFail::Failed)),
                                Poll::Pending => false,
                            }
                        } else {
                            match stream.poll_write(cx, data) {
                                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                                    return Poll::Ready(Err(IoFail::Failed));
                                }
                                Poll::Ready(Ok(n)) => {
                                    data = &data[n..];
                                    true
                                }
                                Poll::Pending => false,
                            }
                        };
                        if progress {
                            deadline = None;
                            continue;
                        }
                        let at = *deadline.get_or_insert_with(|| Instant::now() + timeout);
                        return timer.poll_expired(at, cx).map(|()| Err(IoFail::Timeout));
                    }
                })
                .await
            }
        }
    }

    /// Ends the connection: for TLS, a `close_notify` alert first (as hyper and NGINX send),
    /// given a moment to leave; a plain connection is simply closed.
    pub(super) async fn close(self, timer: &mut Timer) {
        if let Self::Tls(mut stream) = self {
            let deadline = Instant::now() + CLOSE_NOTIFY_TIME;
            poll_fn(|cx| {
                if Pin::new(&mut *stream).poll_shutdown(cx).is_ready() {
                    return Poll::Ready(());
                }
                timer.poll_expired(deadline, cx)
            })
            .await;
        }
    }
}

/// How long a closing TLS connection waits for its `close_notify` alert to be taken.
const CLOSE_NOTIFY_TIME: Duration = Duration::from_secs(1);

/// An HTTP/1.1 connection to an endpoint, with its read buffer.
pub(crate) struct Upstream {
    pub(crate) stream: TcpStream,
    pub(crate) buf: ReadBuf,
    pub(crate) timer: Timer,
    pub(crate) addr: SocketAddr,
    idle_since: Instant,
    /// When it was opened, and the requests it carried (`upstream-keepalive-time`,
    /// `-requests`).
    born: Instant,
    requests: u32,
}

/// Read buffer of an upstream connection: a small response arrives in one read.
const UPSTREAM_BUF: usize = 16 * 1024;

impl Upstream {
    /// Connects to `addr` within `timeout`.
    pub(super) async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Self, IoFail> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%addr, error = %e, "upstream connect failed");
                return Err(IoFail::Failed);
            }
            Err(_) => return Err(IoFail::Timeout),
        };
        let _ = stream.set_nodelay(true);
        Ok(Self {
            stream,
            buf: ReadBuf::new(UPSTREAM_BUF),
            timer: Timer::new(),
            addr,
            idle_since: Instant::now(),
            born: Instant::now(),
            requests: 0,
        })
    }

    /// An idle connection to `addr` from the worker's pool.
    pub(super) fn checkout(
        addr: SocketAddr,
        now: Instant,
        limits: &UpstreamKeepalive,
    ) -> Option<Self> {
        pool::checkout_raw(addr, now, limits)
    }

    /// Gives a connection back after a response was read whole, at `now`.
    pub(super) fn checkin(mut self, now: Instant, limits: &UpstreamKeepalive) {
        self.requests += 1;
        self.buf.clear();
        if self.buf.capacity() > 4 * UPSTREAM_BUF {
            // A large head grew it: do not keep the memory for every idle connection.
            self.buf = ReadBuf::new(UPSTREAM_BUF);
        }
        self.idle_since = now;
        pool::checkin_raw(self, limits);
    }

    /// When it was opened.
    pub(crate) fn born(&self) -> Instant {
        self.born
    }

    /// The requests it carried.
    pub(crate) fn requests(&self) -> u32 {
        self.requests
    }

    /// When it went back to the pool.
    pub(crate) fn idle_since(&self) -> Instant {
        self.idle_since
    }

    /// Whether an idle connection is worth keeping: idle less than `timeout`, and neither
    /// closed by the peer nor written to unasked (its readiness says readable: end of stream,
    /// or bytes no request asked for).
    pub(crate) fn still_idle(&self, timeout: Duration) -> bool {
        if self.idle_since.elapsed() >= timeout {
            return false;
        }
        let mut probe = [0u8; 1];
        // WouldBlock: still open and quiet.
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

//! The first bytes of a TLS connection: the ClientHello, read into a buffer so that they can
//! be replayed, either to a passthrough backend or into Sluice's own handshake. A ClientHello
//! that is malformed, oversized, or does not arrive in time costs this connection only.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::server::Acceptor;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The most a ClientHello may take (post-quantum key shares make them larger than they were,
/// but nowhere near this).
pub(crate) const MAX_HELLO: usize = 64 * 1024;
/// The longest a client may take to send its ClientHello.
pub(crate) const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection was dropped before its handshake.
#[derive(Debug)]
pub(crate) enum HelloError {
    /// Not TLS, or a malformed ClientHello.
    Malformed(String),
    /// More than [`MAX_HELLO`] bytes without a complete ClientHello.
    TooLarge,
    /// Not complete within [`HELLO_TIMEOUT`].
    Timeout,
    /// The client went away.
    Closed,
}

impl std::fmt::Display for HelloError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HelloError::Malformed(why) => write!(f, "malformed ClientHello: {why}"),
            HelloError::TooLarge => write!(f, "ClientHello larger than {MAX_HELLO} bytes"),
            HelloError::Timeout => write!(f, "no ClientHello within {HELLO_TIMEOUT:?}"),
            HelloError::Closed => write!(f, "closed before a ClientHello"),
        }
    }
}

/// A ClientHello read, and every byte read so far.
pub(crate) struct Hello {
    /// The server name, lower case, if the client sent one.
    pub server_name: Option<String>,
    /// The bytes read, to replay.
    pub bytes: Vec<u8>,
}

/// Reads until a whole ClientHello has arrived.
pub(crate) async fn read(stream: &mut TcpStream) -> Result<Hello, HelloError> {
    tokio::time::timeout(HELLO_TIMEOUT, read_inner(stream))
        .await
        .map_err(|_| HelloError::Timeout)?
}

/// The reading itself, on any stream (the fuzz check feeds it bytes from memory).
pub(crate) async fn read_inner(stream: &mut (impl AsyncRead + Unpin)) -> Result<Hello, HelloError> {
    let mut acceptor = Acceptor::default();
    let mut bytes = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|_| HelloError::Closed)?;
        if n == 0 {
            return Err(HelloError::Closed);
        }
        bytes.extend_from_slice(&chunk[..n]);
        if bytes.len() > MAX_HELLO {
            return Err(HelloError::TooLarge);
        }
        let mut fresh = &chunk[..n];
        while !fresh.is_empty() {
            acceptor.read_tls(&mut fresh).map_err(|e| HelloError::Malformed(e.to_string()))?;
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let server_name =
                    accepted.client_hello().server_name().map(str::to_ascii_lowercase);
                return Ok(Hello { server_name, bytes });
            }
            Ok(None) => {}
            Err((e, _alert)) => return Err(HelloError::Malformed(e.to_string())),
        }
    }
}

/// A stream that first yields `prefix`, then reads from `inner` (writes go to `inner`).
pub(crate) struct Rewind<T> {
    prefix: Vec<u8>,
    pos: usize,
    inner: T,
}

impl<T> Rewind<T> {
    pub(crate) fn new(prefix: Vec<u8>, inner: T) -> Self {
        Self { prefix, pos: 0, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
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
}

//! Byte relays: upgraded connections (WebSocket) and passed-through TLS connections. Bytes are
//! copied both ways until either side closes or nothing moves for the idle timeout, as NGINX
//! does with `proxy_read_timeout` on upgraded connections.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Relays an upgraded connection once both sides have switched protocols.
pub(crate) fn spawn_upgrade(client: OnUpgrade, upstream: OnUpgrade, idle: Duration) {
    tokio::spawn(async move {
        match tokio::try_join!(client, upstream) {
            Ok((client, upstream)) => {
                relay(TokioIo::new(client), TokioIo::new(upstream), idle).await
            }
            Err(e) => tracing::debug!(error = %e, "upgrade did not complete"),
        }
    });
}

/// Copies bytes both ways between `a` and `b` until one closes or both are silent for `idle`.
pub(crate) async fn relay<A, B>(a: A, b: B, idle: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let base = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut a = Watched { io: a, base, last: last.clone() };
    let mut b = Watched { io: b, base, last: last.clone() };
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    loop {
        let idle_until = base + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
        if idle_until <= Instant::now() {
            tracing::debug!(?idle, "closing an idle relayed connection");
            return;
        }
        tokio::select! {
            _ = &mut copy => return,
            () = tokio::time::sleep_until(idle_until) => {}
        }
    }
}

/// A stream that notes when bytes last moved through it.
struct Watched<T> {
    io: T,
    base: Instant,
    last: Arc<AtomicU64>,
}

impl<T> Watched<T> {
    fn touch(&self) {
        self.last.store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

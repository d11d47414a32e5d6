//! Byte relays: upgraded connections (WebSocket) and passed-through TLS connections. Bytes are
//! copied both ways until either side closes or nothing moves for the idle timeout, as NGINX
//! does with `proxy_read_timeout` on upgraded connections.
//!
//! On shutdown a relay keeps running through the grace period (it holds the worker's `live`
//! receiver); when the period is over it closes cleanly: a WebSocket gets a close frame
//! (1001, going away) each way, put between two frames, then both sides a FIN.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

use crate::server::Drain;

/// Relays an upgraded WebSocket connection once both sides have switched protocols.
pub(crate) fn spawn_upgrade(client: OnUpgrade, upstream: OnUpgrade, idle: Duration, drain: Drain) {
    tokio::spawn(async move {
        match tokio::try_join!(client, upstream) {
            Ok((client, upstream)) => {
                let (client, upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                relay(client, upstream, idle, &drain, Framing::WebSocket).await
            }
            Err(e) => tracing::debug!(error = %e, "upgrade did not complete"),
        }
    });
}

/// What a relay carries, for closing it cleanly at the end of the grace period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Opaque bytes (TLS passthrough): a FIN each way.
    Bytes,
    /// WebSocket frames, `a` the client: a close frame each way, then a FIN.
    WebSocket,
}

/// Copies bytes both ways between `a` and `b` until one closes, both are silent for `idle`,
/// or the grace period of a shutdown is over (then closes both sides as `framing` says).
pub(crate) async fn relay<A, B>(a: A, b: B, idle: Duration, drain: &Drain, framing: Framing)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    // Held until the relay ends: the worker waits for it through the grace period.
    let _live = drain.live.clone();
    let base = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut a = Watched { io: a, base, last: last.clone(), frames: Frames::default() };
    let mut b = Watched { io: b, base, last: last.clone(), frames: Frames::default() };
    {
        let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
        tokio::pin!(copy);
        let over = drain.over();
        tokio::pin!(over);
        loop {
            let idle_until = base + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
            if idle_until <= Instant::now() {
                tracing::debug!(?idle, "closing an idle relayed connection");
                return;
            }
            tokio::select! {
                _ = &mut copy => return,
                () = tokio::time::sleep_until(idle_until) => {}
                () = &mut over => break,
            }
        }
    }
    // The grace period is over. Bytes read but not yet written are dropped: the frame
    // trackers count only what each side received, so a close frame never splits a frame.
    let close = async {
        if framing == Framing::WebSocket {
            if a.frames.between() {
                let _ = a.io.write_all(&CLOSE_GOING_AWAY).await;
            }
            if b.frames.between() {
                let _ = b.io.write_all(&masked_close()).await;
            }
        }
        let _ = tokio::join!(a.io.shutdown(), b.io.shutdown());
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), close).await;
}

/// A server's close frame, status 1001 (going away): FIN + opcode 8, unmasked, 2 bytes.
const CLOSE_GOING_AWAY: [u8; 4] = [0x88, 0x02, 0x03, 0xE9];

/// A client's close frame, status 1001, masked (RFC 6455: frames to a server are masked).
fn masked_close() -> [u8; 8] {
    let key = fastrand::u32(..).to_be_bytes();
    [0x88, 0x82, key[0], key[1], key[2], key[3], 0x03 ^ key[0], 0xE9 ^ key[1]]
}

/// Follows WebSocket frame boundaries in the bytes written to one side, so that a close frame
/// can be put between two frames.
#[derive(Debug, Default)]
struct Frames {
    /// The head of the frame being received, while incomplete.
    head: [u8; 14],
    /// How many bytes of `head` arrived (0 between frames and within a payload).
    have: usize,
    /// Payload bytes still to come in the current frame.
    payload: u64,
}

impl Frames {
    /// True between two frames.
    fn between(&self) -> bool {
        self.have == 0 && self.payload == 0
    }

    /// Follows `bytes`, just written.
    fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload > 0 {
                let n = bytes.len().min(usize::try_from(self.payload).unwrap_or(usize::MAX));
                self.payload -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            self.head[self.have] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if let Some(payload) = self.head_done() {
                self.payload = payload;
                self.have = 0;
            }
        }
    }

    /// The payload length once the head is complete.
    fn head_done(&self) -> Option<u64> {
        if self.have < 2 {
            return None;
        }
        let masked = self.head[1] & 0x80 != 0;
        let (extended, len) = match self.head[1] & 0x7f {
            126 => (2, None),
            127 => (8, None),
            n => (0, Some(u64::from(n))),
        };
        if self.have < 2 + extended + if masked { 4 } else { 0 } {
            return None;
        }
        Some(len.unwrap_or_else(|| {
            self.head[2..2 + extended].iter().fold(0, |n, &b| (n << 8) | u64::from(b))
        }))
    }
}

/// A stream that notes when bytes last moved through it, and the WebSocket frames written to
/// it.
struct Watched<T> {
    io: T,
    base: Instant,
    last: Arc<AtomicU64>,
    frames: Frames,
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
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.frames.advance(&buf[..n]);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::Frames;

    #[test]
    fn frame_boundaries_are_followed_across_writes() {
        let mut f = Frames::default();
        assert!(f.between());
        // A server text frame "hi", then a masked client frame of 300 bytes (16-bit length).
        f.advance(&[0x81, 0x02, b'h']);
        assert!(!f.between());
        f.advance(b"i");
        assert!(f.between());
        let mut client = vec![0x82, 0xFE, 0x01, 0x2C, 1, 2, 3, 4];
        client.extend([0u8; 300]);
        for chunk in client.chunks(7) {
            f.advance(chunk);
            assert_eq!(f.between(), chunk.as_ptr_range().end == client.as_ptr_range().end);
        }
        // A 64-bit length, and an empty ping.
        f.advance(&[0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0, 3, 9, 9]);
        assert!(!f.between());
        f.advance(&[9, 0x89, 0x00]);
        assert!(f.between());
    }
}

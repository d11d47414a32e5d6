//! The checks the fuzz targets `request_head`, `client_hello` and `proxy_header` run on each
//! input (in `fuzz/`, with nightly), and the corpus replay runs on stable: one definition of
//! each target's invariants. Not an API: hidden from the documentation, and free to change.

use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, ReadBuf};

use crate::fast::MAX_HEADERS;
use crate::fast::request::{plain_target_byte, refused_framing, shape};
use crate::fast::response::parse_length;
use crate::tls::hello::{self, HelloError, MAX_HELLO};
use crate::{forward, head_limits, proxy_protocol};

/// The fast path's request head ([`crate::fast`]), with `large-client-header-buffers` at its
/// default: parsed as the fast path parses it, a complete head lies within the input, and
/// every slice the parser hands out lies within the head; a head over the buffers is 414 or
/// 494 (sent as 400); refused framing is 400 or 501; a head the fast path carries has a plain origin-form
/// target that is a valid URI, one valid host, no `Transfer-Encoding`, upgrade or `Expect`,
/// and its body's length in exactly one valid `Content-Length` (which any method but `GET`
/// and `HEAD` must have; `CONNECT` is never carried). Returns whether the fast path may
/// carry the head.
pub fn request_head(data: &[u8]) -> bool {
    let buffers = sluice_model::HeaderBuffers::default();
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(data) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            if let Some(status) = head_limits::check_partial(data, &buffers) {
                assert!(matches!(status, 414 | head_limits::HEADER_TOO_LARGE), "{status}");
            }
            return false;
        }
        Err(_) => return false,
    };
    assert!(len <= data.len(), "head of {len} bytes in {}", data.len());
    let head = data[..len].as_ptr_range();
    let within = |s: &[u8]| {
        let r = s.as_ptr_range();
        s.is_empty() || (head.start <= r.start && r.end <= head.end)
    };
    assert!(within(req.method.unwrap_or_default().as_bytes()));
    assert!(within(req.path.unwrap_or_default().as_bytes()));
    for h in req.headers.iter() {
        assert!(within(h.name.as_bytes()) && within(h.value), "{h:?} outside the head");
    }

    if let Some(status) = head_limits::check_head(&data[..len], &buffers) {
        assert!(matches!(status, 414 | head_limits::HEADER_TOO_LARGE), "{status}");
        return false;
    }
    if let Some(status) = refused_framing(&req) {
        assert!(matches!(status, 400 | 501), "framing refused with {status}");
        return false;
    }
    let Some(shape) = shape(&req) else { return false };
    assert!(shape.target.starts_with('/') && shape.target.bytes().all(plain_target_byte));
    assert!(
        shape.target.parse::<http::Uri>().is_ok(),
        "fast-path target {:?} is not a URI",
        shape.target
    );
    assert!(forward::valid_host(shape.host) && within(shape.host.as_bytes()));
    assert!(shape.referer.is_none_or(within) && shape.user_agent.is_none_or(within));
    assert!(shape.head_request == (shape.method == http::Method::HEAD));
    assert!(shape.method != http::Method::CONNECT);
    let mut lengths = Vec::new();
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        assert!(name != "transfer-encoding" && name != "upgrade" && name != "expect", "{h:?}");
        if name == "content-length" {
            lengths.push(parse_length(h.value).expect("a valid length"));
        }
    }
    assert!(lengths.len() <= 1, "lengths {lengths:?}");
    assert_eq!(shape.length, lengths.first().copied());
    let bodiless = matches!(shape.method, http::Method::GET | http::Method::HEAD);
    assert!(bodiless || shape.length.is_some(), "{} without a length", shape.method);
    true
}

/// The ClientHello reader ([`crate::tls::hello`]). The input's first byte is how many bytes
/// each read returns (0: as many as fit), the rest what the client sends. A ClientHello read
/// keeps exactly the bytes read, a prefix of what was sent, within [`MAX_HELLO`]; its server
/// name is a lower-case DNS name; an error is one the bytes explain. Returns whether a
/// ClientHello was read.
pub fn client_hello(data: &[u8]) -> bool {
    let Some((&chunk, sent)) = data.split_first() else { return false };
    let mut stream = Chunks { rest: sent, chunk: usize::from(chunk) };
    match run(hello::read_inner(&mut stream)) {
        Ok(hello) => {
            assert!(sent.starts_with(&hello.bytes), "the bytes kept are not those sent");
            assert!(hello.bytes.len() <= MAX_HELLO);
            if let Some(name) = &hello.server_name {
                assert!(
                    !name.is_empty()
                        && name.len() <= 253
                        && name.bytes().all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || b"-._".contains(&c)
                        }),
                    "server name {name:?}"
                );
            }
            true
        }
        Err(HelloError::TooLarge) => {
            assert!(sent.len() > MAX_HELLO);
            false
        }
        Err(HelloError::Malformed(why)) => {
            assert!(!why.is_empty());
            false
        }
        Err(HelloError::Closed) => false,
        Err(HelloError::Timeout) => unreachable!("no timer in the reader"),
    }
}

/// The PROXY protocol header reader ([`crate::proxy_protocol`]): it reads exactly the header,
/// never a byte after it (a v1 line up to its first CRLF, a v2 header its declared length),
/// within the limits; the addresses it reports are of one family. Returns whether it read
/// a header.
pub fn proxy_header(data: &[u8]) -> bool {
    let mut stream = data;
    let result = run(proxy_protocol::read_header(&mut stream));
    let read = data.len() - stream.len();
    match result {
        Ok(proxied) => {
            if data.starts_with(b"PROXY ") {
                assert!(read <= proxy_protocol::V1_MAX, "a v1 line of {read} bytes");
                let first_crlf = data.windows(2).position(|w| w == b"\r\n");
                assert_eq!(first_crlf, Some(read - 2), "v1 read to its first CRLF");
            } else {
                let declared = usize::from(u16::from_be_bytes([data[14], data[15]]));
                assert!(declared <= proxy_protocol::V2_MAX);
                assert_eq!(read, 16 + declared, "v2 read to its declared length");
            }
            if let Some(p) = proxied {
                assert_eq!(p.source.is_ipv4(), p.destination.is_ipv4(), "{p:?}");
            }
            true
        }
        Err(why) => {
            assert!(!why.is_empty());
            false
        }
    }
}

/// Runs a future over an in-memory stream, which is always ready: one poll finishes it.
fn run<T>(future: impl Future<Output = T>) -> T {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a reader over bytes in memory waited"),
    }
}

/// Bytes in memory, returned `chunk` at a time (all that fit for 0), as a socket returns
/// what has arrived.
struct Chunks<'a> {
    rest: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Chunks<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let limit = if self.chunk == 0 { usize::MAX } else { self.chunk };
        let n = self.rest.len().min(buf.remaining()).min(limit);
        let (now, later) = self.rest.split_at(n);
        buf.put_slice(now);
        self.rest = later;
        Poll::Ready(Ok(()))
    }
}

//! `large-client-header-buffers` on both paths, with NGINX's answers: a request line that
//! does not fit one buffer is answered 414, a header line that does not 400 (NGINX's 494,
//! "Request Header Or Cookie Too Large"), a head larger than all the buffers together 400
//! too; the connection is closed after the answer.

use sluice_model::HeaderBuffers;

/// NGINX's internal status for a header line or head too large: sent as 400 with its own
/// page.
pub(crate) const HEADER_TOO_LARGE: u16 = 494;

/// What `head` (a whole request head, line ends included) breaks, if anything: 414 or
/// [`HEADER_TOO_LARGE`]. A head that fits one buffer breaks nothing, and is not scanned.
pub(crate) fn check_head(head: &[u8], buffers: &HeaderBuffers) -> Option<u16> {
    let size = buffers.size as usize;
    if head.len() <= size {
        return None;
    }
    let mut lines = head.split_inclusive(|&b| b == b'\n');
    if lines.next().is_some_and(|l| l.len() > size) {
        return Some(414);
    }
    if lines.any(|l| l.len() > size) || head.len() > buffers.total() {
        return Some(HEADER_TOO_LARGE);
    }
    None
}

/// What a head still arriving (`partial`, not yet complete) already breaks: a request line
/// longer than a buffer, or more bytes than all the buffers hold.
pub(crate) fn check_partial(partial: &[u8], buffers: &HeaderBuffers) -> Option<u16> {
    let size = buffers.size as usize;
    if partial.len() <= size {
        return None;
    }
    if !partial[..=size].contains(&b'\n') {
        return Some(414);
    }
    (partial.len() > buffers.total()).then_some(HEADER_TOO_LARGE)
}

/// The same rules for a head hyper parsed, measured as it was sent (`METHOD target
/// HTTP/1.1\r\n`, then `name: value\r\n` per line, then `\r\n`).
pub(crate) fn check_request<B>(req: &http::Request<B>, buffers: &HeaderBuffers) -> Option<u16> {
    if req.version() >= http::Version::HTTP_2 {
        return None;
    }
    let size = buffers.size as usize;
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method().as_str().len() + target + 12;
    if line > size {
        return Some(414);
    }
    let mut total = line + 2;
    for (name, value) in req.headers() {
        let n = name.as_str().len() + value.len() + 4;
        if n > size {
            return Some(HEADER_TOO_LARGE);
        }
        total += n;
    }
    (total > buffers.total()).then_some(HEADER_TOO_LARGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: HeaderBuffers = HeaderBuffers { number: 4, size: 64 };

    #[test]
    fn lines_and_heads_follow_nginx() {
        let ok = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(check_head(ok, &SMALL), None);
        let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "x".repeat(60));
        assert_eq!(check_head(long_target.as_bytes(), &SMALL), Some(414));
        let long_header = format!("GET / HTTP/1.1\r\nCookie: {}\r\n\r\n", "x".repeat(60));
        assert_eq!(check_head(long_header.as_bytes(), &SMALL), Some(HEADER_TOO_LARGE));
        let many =
            format!("GET / HTTP/1.1\r\n{}\r\n", "X-A: 0123456789012345678901234\r\n".repeat(8));
        assert_eq!(check_head(many.as_bytes(), &SMALL), Some(HEADER_TOO_LARGE));
        let fits =
            format!("GET / HTTP/1.1\r\n{}\r\n", "X-A: 0123456789012345678901234\r\n".repeat(6));
        assert_eq!(check_head(fits.as_bytes(), &SMALL), None);
    }

    #[test]
    fn partial_heads_are_refused_early() {
        let target = format!("GET /{}", "x".repeat(80));
        assert_eq!(check_partial(target.as_bytes(), &SMALL), Some(414));
        assert_eq!(check_partial(b"GET /", &SMALL), None);
        let headers = format!("GET / HTTP/1.1\r\n{}", "X-A: 0123456789\r\n".repeat(20));
        assert_eq!(check_partial(headers.as_bytes(), &SMALL), Some(HEADER_TOO_LARGE));
    }

    #[test]
    fn parsed_requests_are_measured_as_sent() {
        let req = |target: &str, cookie: usize| {
            http::Request::get(target).header("cookie", "c".repeat(cookie)).body(()).unwrap()
        };
        assert_eq!(check_request(&req("/", 10), &SMALL), None);
        assert_eq!(check_request(&req(&format!("/{}", "x".repeat(60)), 1), &SMALL), Some(414));
        assert_eq!(check_request(&req("/", 60), &SMALL), Some(HEADER_TOO_LARGE));
    }
}

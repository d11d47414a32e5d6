//! The upstream's response on the fast path: its head rewritten for the client (hop-by-hop
//! headers dropped, `Server` replaced, `Date` added when missing, framing re-declared), and its
//! body framing, decoded and re-encoded as it streams through.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use sluice_model::ResponseRules;

use crate::pipeline::{Edit, Reply, ResponsePlan};

/// How the upstream delimits the body it sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body (`HEAD`, 204, 304).
    None,
    /// `Content-Length` bytes, passed through as they are.
    Length(u64),
    /// `Transfer-Encoding: chunked`: decoded, and re-chunked for the client without trailers
    /// (as NGINX does).
    Chunked,
    /// Until the upstream closes: sent to the client chunked, so that its connection stays
    /// open.
    UntilClose,
}

/// What the client is told, and what that says about the upstream connection.
#[derive(Debug)]
pub(super) struct ResponseHead {
    pub status: u16,
    pub framing: Framing,
    /// The upstream connection may serve another request once the body is read.
    pub reusable: bool,
}

/// An upstream response head NGINX would refuse too (the client gets a 502).
#[derive(Debug)]
pub(super) struct Invalid;

/// Hop-by-hop headers (RFC 9110 section 7.6.1): the life cycle's list.
fn dropped(name: &[u8]) -> bool {
    crate::pipeline::HOP_BY_HOP.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(name))
}

/// The life cycle's response phase for one response.
pub(super) struct Edits<'a> {
    pub plan: &'a ResponsePlan,
    /// The route's response rules.
    pub rules: &'a ResponseRules,
    /// The table's HSTS value.
    pub hsts: Option<&'a str>,
    /// The `Server` header value.
    pub server: &'a [u8],
}

/// What an upstream response head says of its body and its connection.
pub(super) struct Inspected<'a> {
    pub head: ResponseHead,
    /// It declared `Transfer-Encoding` (any `Content-Length` then goes).
    pub transfer_coded: bool,
    has_date: bool,
    content_type: Option<&'a [u8]>,
    /// Names the upstream declared hop-by-hop in `Connection` (rare: allocated only then).
    named: Vec<&'a [u8]>,
}

/// Reads `resp`'s framing and connection headers. `head_request`: the request was `HEAD`
/// (no body whatever the headers say). Refuses conflicting or malformed lengths, as NGINX
/// does.
pub(super) fn inspect<'a>(
    resp: &httparse::Response<'_, 'a>,
    head_request: bool,
) -> Result<Inspected<'a>, Invalid> {
    let status = resp.code.ok_or(Invalid)?;
    let mut reusable = resp.version == Some(1);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_coded = false;
    let mut has_date = false;
    let mut content_type: Option<&[u8]> = None;
    let mut named: Vec<&[u8]> = Vec::new();
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|&c| c == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    reusable = false;
                } else if !token.is_empty()
                    && !token.eq_ignore_ascii_case(b"keep-alive")
                    && !is_framing(token)
                {
                    named.push(token);
                }
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_coded = true;
            // The last coding decides: only a final `chunked` delimits the body.
            let last = h.value.split(|&c| c == b',').map(trim).rfind(|t| !t.is_empty());
            chunked = last.is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_length(h.value).ok_or(Invalid)?;
            if length.is_some_and(|l| l != n) {
                return Err(Invalid);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"date") {
            has_date = true;
        } else if name.eq_ignore_ascii_case(b"content-type") {
            content_type = Some(h.value);
        }
    }
    let framing = if head_request || status == 204 || status == 304 {
        Framing::None
    } else if transfer_coded {
        if chunked { Framing::Chunked } else { Framing::UntilClose }
    } else {
        match length {
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    if framing == Framing::UntilClose {
        reusable = false;
    }
    let head = ResponseHead { status, framing, reusable };
    Ok(Inspected { head, transfer_coded, has_date, content_type, named })
}

/// Writes the client's response head for `resp` into `out` and says how its body comes.
/// `head_request`: the request was `HEAD` (no body whatever the headers say); `close`: the
/// client asked to close after this response.
pub(super) fn rewrite(
    resp: &httparse::Response<'_, '_>,
    head_request: bool,
    close: bool,
    edits: &Edits<'_>,
    out: &mut Vec<u8>,
) -> Result<ResponseHead, Invalid> {
    let Inspected { head, transfer_coded, has_date, content_type, named } =
        inspect(resp, head_request)?;
    let ResponseHead { status, framing, .. } = head;
    out.extend_from_slice(b"HTTP/1.1 ");
    // httparse reads exactly three digits.
    out.extend_from_slice(&[
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ]);
    out.push(b' ');
    match resp.reason {
        Some(r) if !r.is_empty() => out.extend_from_slice(r.as_bytes()),
        _ => out.extend_from_slice(
            http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("")
                .as_bytes(),
        ),
    }
    out.extend_from_slice(b"\r\n");
    let rules = edits.rules;
    let reply = Reply { status, content_type };
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        if dropped(name)
            || (transfer_coded && name.eq_ignore_ascii_case(b"content-length"))
            || named.iter().any(|n| n.eq_ignore_ascii_case(name))
        {
            continue;
        }
        match edits.plan.edit(rules, reply, name, h.value) {
            Edit::Keep => header(out, name, h.value),
            Edit::Drop => {}
            Edit::Replace(value) => header(out, name, &value),
        }
    }
    edits.plan.each_set(rules, reply, edits.hsts, edits.server, |name, value| {
        header(out, name.as_bytes(), value)
    });
    if !has_date {
        with_date(|d| header(out, b"date", d));
    }
    if matches!(framing, Framing::Chunked | Framing::UntilClose) {
        header(out, b"transfer-encoding", b"chunked");
    }
    if close {
        header(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    Ok(head)
}

/// The status line of an answer Sluice makes itself: `code` with its standard reason.
pub(super) fn status_line(out: &mut Vec<u8>, code: http::StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(code.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(code.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `name: value\r\n`.
pub(super) fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Headers that frame or route a message: a peer cannot declare them hop-by-hop.
pub(super) fn is_framing(name: &[u8]) -> bool {
    [&b"host"[..], b"content-length", b"content-type"].iter().any(|n| n.eq_ignore_ascii_case(name))
}

pub(super) fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

/// A `Content-Length` value: digits only, as RFC 9110 and NGINX demand.
pub(crate) fn parse_length(v: &[u8]) -> Option<u64> {
    let v = trim(v);
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

thread_local! {
    /// The `Date` header value, recomputed once per second per worker.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Calls `f` with the current time as an HTTP date.
pub(super) fn with_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs {
            d.1 = httpdate::fmt_http_date(now);
            d.0 = secs;
        }
        f(d.1.as_bytes())
    })
}

/// Appends `data` to `out` as one chunk.
pub(super) fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    use std::io::Write as _;
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The end of a chunked body.
pub(super) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// A chunked body being decoded as it arrives, in pieces of any size.
#[derive(Debug, Default)]
pub(super) struct Dechunker {
    state: State,
    /// The size line or trailer line read so far (bounded).
    line: usize,
    size: u64,
    /// Data is passed on as it is, not re-chunked (for a body handed to hyper in frames).
    plain: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line (hex digits, then extensions up to CRLF).
    #[default]
    Size,
    /// In the extensions of a size line, up to its LF.
    Extension,
    Data,
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk, up to an empty line.
    Trailer,
    Done,
}

/// A chunked body the upstream sent malformed.
#[derive(Debug)]
pub(super) struct BadChunk;

/// Longest size or trailer line accepted.
const MAX_LINE: usize = 4096;

impl Dechunker {
    /// A decoder that passes the data on as it is, without chunk framing or the last chunk.
    pub(super) fn plain() -> Self {
        Self { plain: true, ..Self::default() }
    }

    /// True once the last chunk and trailers are read.
    pub(super) fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes `input`, appending its data to `out` re-chunked (as it is for a
    /// [`plain`](Self::plain) decoder). Returns the bytes consumed:
    /// all of `input`, unless the body ended before its end (what follows is not the body's).
    /// `data` counts the body bytes passed on.
    pub(super) fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        data: &mut u64,
    ) -> Result<usize, BadChunk> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Size => {
                    let c = input[i];
                    i += 1;
                    self.line += 1;
                    if self.line > MAX_LINE {
                        return Err(BadChunk);
                    }
                    match c {
                        b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                            let d = (c as char).to_digit(16).unwrap_or(0) as u64;
                            self.size = self
                                .size
                                .checked_mul(16)
                                .and_then(|s| s.checked_add(d))
                                .ok_or(BadChunk)?;
                        }
                        _ if self.line == 1 => return Err(BadChunk),
                        b'\n' => self.end_size_line(),
                        b';' | b' ' | b'\t' | b'\r' => self.state = State::Extension,
                        _ => return Err(BadChunk),
                    }
                }
                State::Extension => {
                    let c = input[i];
                    i += 1;
                    self.line += 1;
                    if self.line > MAX_LINE {
                        return Err(BadChunk);
                    }
                    if c == b'\n' {
                        self.end_size_line();
                    }
                }
                State::Data => {
                    let n = (input.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    if self.plain {
                        out.extend_from_slice(&input[i..i + n]);
                    } else {
                        chunk(out, &input[i..i + n]);
                    }
                    *data += n as u64;
                    i += n;
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = State::DataEnd;
                        self.line = 0;
                    }
                }
                State::DataEnd => {
                    let c = input[i];
                    i += 1;
                    self.line += 1;
                    match (self.line, c) {
                        (1, b'\r') => {}
                        (_, b'\n') => {
                            self.state = State::Size;
                            self.line = 0;
                        }
                        _ => return Err(BadChunk),
                    }
                }
                State::Trailer => {
                    let c = input[i];
                    i += 1;
                    if c == b'\n' {
                        // An empty line (just CRLF or LF) ends the trailers.
                        if self.line <= 1 {
                            self.state = State::Done;
                            if !self.plain {
                                out.extend_from_slice(LAST_CHUNK);
                            }
                        }
                        self.line = 0;
                    } else {
                        self.line += 1;
                        if self.line > MAX_LINE {
                            return Err(BadChunk);
                        }
                    }
                }
                State::Done => return Ok(i),
            }
        }
        Ok(i)
    }

    fn end_size_line(&mut self) {
        self.line = 0;
        self.state = if self.size == 0 { State::Trailer } else { State::Data };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(body: &[u8], piece: usize) -> (Vec<u8>, usize, bool) {
        let mut d = Dechunker::default();
        let mut out = Vec::new();
        let mut data = 0;
        let mut used = 0;
        for p in body.chunks(piece) {
            used += d.feed(p, &mut out, &mut data).expect("valid chunked body");
            if d.done() {
                break;
            }
        }
        (out, used, d.done())
    }

    /// A plain decoder of well-formed chunked bodies without extensions or trailers.
    fn unchunk(mut body: &[u8]) -> Vec<u8> {
        let mut data = Vec::new();
        loop {
            let line = body.iter().position(|&c| c == b'\n').unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&body[..line - 1]).unwrap(), 16);
            let size = size.unwrap();
            body = &body[line + 1..];
            if size == 0 {
                assert_eq!(body, b"\r\n");
                return data;
            }
            data.extend_from_slice(&body[..size]);
            assert_eq!(&body[size..size + 2], b"\r\n");
            body = &body[size + 2..];
        }
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_pieces() {
        let body = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
        for piece in [1, 2, 3, 7, 100] {
            let (out, used, done) = decode_in_pieces(body, piece);
            assert!(done, "piece {piece}");
            assert_eq!(unchunk(&out), b"hello0123456789", "piece {piece}");
            if piece == 100 {
                assert_eq!(out, b"5\r\nhello\r\na\r\n0123456789\r\n0\r\n\r\n");
            }
            assert_eq!(used, body.len() - 4, "piece {piece}: stops before what follows the body");
        }
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for bad in [&b"zz\r\n"[..], b"5\r\nhelloXY", b"\r\n", b"fffffffffffffffffff\r\n"] {
            let mut out = Vec::new();
            let r = Dechunker::default().feed(bad, &mut out, &mut 0);
            assert!(r.is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let long = vec![b'1'; MAX_LINE + 2];
        assert!(Dechunker::default().feed(&long, &mut Vec::new(), &mut 0).is_err());
    }

    #[test]
    fn lengths_are_digits_only() {
        assert_eq!(parse_length(b"42"), Some(42));
        assert_eq!(parse_length(b" 7 "), Some(7));
        assert_eq!(parse_length(b"+1"), None);
        assert_eq!(parse_length(b""), None);
        assert_eq!(parse_length(b"99999999999999999999"), None);
    }

    fn rewritten(raw: &[u8], head_request: bool, close: bool) -> (String, ResponseHead) {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        assert!(resp.parse(raw).unwrap().is_complete());
        let mut out = Vec::new();
        let (plan, rules) = (ResponsePlan::default(), ResponseRules::default());
        let edits = Edits { plan: &plan, rules: &rules, hsts: None, server: b"sluice" };
        let head = rewrite(&resp, head_request, close, &edits, &mut out).unwrap();
        (String::from_utf8(out).unwrap(), head)
    }

    #[test]
    fn response_heads_lose_hop_by_hop_headers_and_keep_the_rest() {
        let (out, head) = rewritten(
            b"HTTP/1.1 200 OK\r\nServer: nginx\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\
              Keep-Alive: timeout=5\r\nContent-Length: 2\r\nX-App: yes\r\nDate: Sat, 21 Nov 2026 10:00:00 GMT\r\n\r\n",
            false,
            false,
        );
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-App: yes\r\nDate: Sat, 21 Nov 2026 10:00:00 GMT\r\n\
             server: sluice\r\n\r\n"
        );
        assert_eq!(head.framing, Framing::Length(2));
        assert!(head.reusable);
    }

    #[test]
    fn framing_follows_the_upstream() {
        let (out, head) = rewritten(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
            false,
            true,
        );
        assert_eq!(head.framing, Framing::Chunked);
        assert!(out.contains("transfer-encoding: chunked\r\n"));
        assert!(!out.to_ascii_lowercase().contains("content-length"));
        assert!(out.contains("connection: close\r\n"));
        assert!(out.contains("date: "));

        let (_, head) = rewritten(b"HTTP/1.1 200 OK\r\n\r\n", false, false);
        assert_eq!(head.framing, Framing::UntilClose);
        assert!(!head.reusable);
        let (_, head) = rewritten(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, false);
        assert_eq!(head.framing, Framing::None);
        let (_, head) = rewritten(b"HTTP/1.0 304 Not Modified\r\n\r\n", false, false);
        assert_eq!(head.framing, Framing::None);
        assert!(!head.reusable, "HTTP/1.0 connections close");
        let (_, head) = rewritten(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            false,
            false,
        );
        assert!(!head.reusable);
    }

    #[test]
    fn conflicting_lengths_are_invalid() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut resp = httparse::Response::new(&mut headers);
        resp.parse(raw).unwrap();
        let (plan, rules) = (ResponsePlan::default(), ResponseRules::default());
        let edits = Edits { plan: &plan, rules: &rules, hsts: None, server: b"sluice" };
        assert!(rewrite(&resp, false, false, &edits, &mut Vec::new()).is_err());
    }
}

//! The access log: one line per request, in ingress-nginx's default `upstreaminfo` format or
//! as JSON. Lines are formatted on the worker into a per-thread buffer and handed in batches
//! to a writer thread, so a slow log reader never stalls a worker; if the writer falls behind,
//! whole batches are dropped and counted rather than blocking requests.

use std::cell::RefCell;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Version;
use sluice_model::Target;
use tokio::time::Instant;

use crate::record::Record;

/// The access log's format (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// ingress-nginx's `upstreaminfo`:
    /// `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
    /// "$http_referer" "$http_user_agent" $request_length $request_time [$proxy_upstream_name]
    /// [$proxy_alternative_upstream_name] $upstream_addr $upstream_response_length
    /// $upstream_response_time $upstream_status $req_id`.
    Upstreaminfo,
    /// One JSON object per line, with the same fields under NGINX's variable names plus
    /// `namespace`, `ingress_name`, `service_name`, `service_port`, `location_path` and `host`.
    Json,
}

/// A batch is handed to the writer once it reaches this size (or on the periodic flush).
const BATCH_BYTES: usize = 32 * 1024;

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(BATCH_BYTES + 1024));
    static CLOCK: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

/// Where access log lines go.
pub struct AccessLog {
    format: LogFormat,
    tx: SyncSender<Vec<u8>>,
    dropped: AtomicU64,
}

impl AccessLog {
    /// A log writing `format` lines to `sink` from a dedicated thread.
    pub fn new(format: LogFormat, mut sink: Box<dyn Write + Send>) -> Self {
        let (tx, rx) = sync_channel::<Vec<u8>>(256);
        std::thread::Builder::new()
            .name("sluice-access-log".into())
            .spawn(move || {
                for batch in rx {
                    if sink.write_all(&batch).and_then(|()| sink.flush()).is_err() {
                        // The reader is gone (closed stdout): nothing useful left to do.
                        return;
                    }
                }
            })
            .expect("the access log thread starts");
        Self { format, tx, dropped: AtomicU64::new(0) }
    }

    /// Lines dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Formats `record`'s line, for a request that ended at `end`.
    pub(crate) fn write(&self, record: &Record, end: Instant) {
        let full = BUFFER.with(|b| {
            let mut b = b.borrow_mut();
            match self.format {
                LogFormat::Upstreaminfo => upstreaminfo(&mut b, record, end),
                LogFormat::Json => json(&mut b, record, end),
            }
            b.len() >= BATCH_BYTES
        });
        if full {
            self.flush_worker();
        }
    }

    /// Hands this thread's buffered lines to the writer.
    pub(crate) fn flush_worker(&self) {
        let batch = BUFFER.with(|b| {
            let mut b = b.borrow_mut();
            if b.is_empty() {
                return None;
            }
            Some(std::mem::replace(&mut *b, Vec::with_capacity(BATCH_BYTES + 1024)))
        });
        if let Some(batch) = batch
            && let Err(TrySendError::Full(batch)) = self.tx.try_send(batch)
        {
            let lines = batch.iter().filter(|&&c| c == b'\n').count() as u64;
            self.dropped.fetch_add(lines, Ordering::Relaxed);
        }
    }
}

/// `[21/Nov/2026:19:57:00 +0000]`'s inside, recomputed once per second per thread.
fn with_time_local<R>(f: impl FnOnce(&str) -> R) -> R {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    CLOCK.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != now || c.1.is_empty() {
            let t = time::OffsetDateTime::from_unix_timestamp(now as i64)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            let fmt = time::macros::format_description!(
                "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
            );
            c.1 = t.format(&fmt).unwrap_or_default();
            c.0 = now;
        }
        f(&c.1)
    })
}

/// NGINX's default log escaping: `"`, `\`, control and non-ASCII bytes become `\xHH`.
fn escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    let plain = |c: u8| c != b'"' && c != b'\\' && (0x20..0x7f).contains(&c);
    // Nearly always nothing to escape: one copy instead of a push per byte. (A fold, not
    // `all`, so that the check has no early exit and runs on whole vectors.)
    if bytes.iter().fold(true, |ok, &c| ok & plain(c)) {
        out.extend_from_slice(bytes);
        return;
    }
    for &c in bytes {
        if plain(c) {
            out.push(c);
        } else {
            let _ = write!(out, "\\x{c:02X}");
        }
    }
}

fn or_dash(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) if !v.is_empty() => escaped(out, v),
        _ => out.push(b'-'),
    }
}

fn version(v: Version) -> &'static str {
    match v {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// `$proxy_upstream_name`: the route's backend, `namespace-service-port` (ingress-nginx
/// names the location's upstream even when a canary served), or ingress-nginx's name for the
/// default backend.
fn upstream_name(record: &Record) -> &str {
    let route = &record.table.routes[record.route as usize];
    match (&route.ingress, &route.target) {
        (None, _) => "upstream-default-backend",
        (Some(_), Target::Backend(id)) => &record.table.backends[*id as usize].name,
        (Some(_), _) => "",
    }
}

/// `$proxy_alternative_upstream_name`: the canary's backend, when it served.
fn alternative_name(record: &Record) -> &str {
    record.canary.map_or("", |id| &record.table.backends[id as usize].name)
}

/// Appends `n` in decimal (without `fmt`, which costs more than the rest of a line).
fn num(out: &mut Vec<u8>, n: u64) {
    let mut text = [0u8; 20];
    let mut len = 0;
    put_decimal(&mut text, &mut len, n);
    out.extend_from_slice(&text[..len]);
}

/// Writes `n` in decimal into `text` at `*len`, which it advances: for fields assembled on
/// the stack and copied out once.
fn put_decimal(text: &mut [u8], len: &mut usize, n: u64) {
    let width = n.checked_ilog10().map_or(1, |l| l as usize + 1);
    let mut v = n;
    for digit in text[*len..*len + width].iter_mut().rev() {
        *digit = b'0' + (v % 10) as u8;
        v /= 10;
    }
    *len += width;
}

/// Appends `d` in seconds with millisecond resolution (`0.004`), as NGINX's `$request_time`.
fn secs(out: &mut Vec<u8>, d: Duration) {
    let ms = (d.as_nanos() + 500_000) / 1_000_000;
    num(out, (ms / 1000) as u64);
    out.push(b'.');
    let frac = (ms % 1000) as u16;
    out.extend_from_slice(&[
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// Appends `ip:port`.
fn socket_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => {
            // Built on the stack and copied once: `255.255.255.255:65535` at most.
            let mut text = [0u8; 21];
            let mut len = 0;
            for (i, octet) in a.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                put_decimal(&mut text, &mut len, u64::from(octet));
            }
            text[len] = b':';
            len += 1;
            put_decimal(&mut text, &mut len, u64::from(a.port()));
            out.extend_from_slice(&text[..len]);
        }
        SocketAddr::V6(a) => {
            let _ = write!(out, "{a}");
        }
    }
}

/// Which `$upstream_*` list to write.
#[derive(Clone, Copy)]
enum Field {
    Addr,
    Length,
    Time,
    Status,
}

/// Appends one `$upstream_*` list: one entry per try, comma-separated, `-` without any. The
/// try that answered last is timed to `end`, the end of the response.
fn upstream_field(out: &mut Vec<u8>, record: &Record, field: Field, end: Instant) {
    if record.attempt_count == 0 {
        out.push(b'-');
        return;
    }
    let last = record.attempts().count().saturating_sub(1);
    for (i, a) in record.attempts().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        let whole = i == last && a.answered;
        match field {
            Field::Addr => socket_addr(out, a.addr),
            Field::Length => num(out, if whole { record.bytes_sent } else { 0 }),
            Field::Time => {
                secs(out, if whole { end.saturating_duration_since(a.started) } else { a.elapsed })
            }
            Field::Status => num(out, u64::from(a.status)),
        }
    }
}

/// The four `$upstream_*` lists as strings (for the JSON format).
fn upstream_fields(record: &Record, end: Instant) -> (String, String, String, String) {
    let field = |f| {
        let mut out = Vec::new();
        upstream_field(&mut out, record, f, end);
        String::from_utf8(out).unwrap_or_default()
    };
    (field(Field::Addr), field(Field::Length), field(Field::Time), field(Field::Status))
}

fn upstreaminfo(out: &mut Vec<u8>, r: &Record, end: Instant) {
    let elapsed = end.saturating_duration_since(r.start);
    // The connection's address, already formatted for X-Real-IP.
    out.extend_from_slice(r.conn.remote_ip.as_bytes());
    out.extend_from_slice(b" - - [");
    with_time_local(|t| out.extend_from_slice(t.as_bytes()));
    out.extend_from_slice(b"] \"");
    out.extend_from_slice(r.request.method.as_str().as_bytes());
    out.push(b' ');
    escaped(out, r.request.uri.path_and_query().map_or(b"/", |p| p.as_str().as_bytes()));
    out.push(b' ');
    out.extend_from_slice(version(r.request.version).as_bytes());
    out.extend_from_slice(b"\" ");
    num(out, u64::from(r.status));
    out.push(b' ');
    num(out, r.bytes_sent);
    out.extend_from_slice(b" \"");
    or_dash(out, r.request.referer.as_ref().map(|v| v.as_bytes()));
    out.extend_from_slice(b"\" \"");
    or_dash(out, r.request.user_agent.as_ref().map(|v| v.as_bytes()));
    out.extend_from_slice(b"\" ");
    num(out, r.request.request_length);
    out.push(b' ');
    secs(out, elapsed);
    out.extend_from_slice(b" [");
    out.extend_from_slice(upstream_name(r).as_bytes());
    out.extend_from_slice(b"] [");
    out.extend_from_slice(alternative_name(r).as_bytes());
    out.extend_from_slice(b"] ");
    for (i, field) in
        [Field::Addr, Field::Length, Field::Time, Field::Status].into_iter().enumerate()
    {
        if i > 0 {
            out.push(b' ');
        }
        upstream_field(out, r, field, end);
    }
    out.push(b' ');
    // Request IDs are visible ASCII (checked, or generated).
    escaped(out, r.request_id.as_bytes());
    out.push(b'\n');
}

fn json(out: &mut Vec<u8>, r: &Record, end: Instant) {
    let elapsed = end.saturating_duration_since(r.start);
    let route = &r.table.routes[r.route as usize];
    let (namespace, ingress) = route.ingress_parts();
    let (service, port) = match &route.target {
        Target::Backend(id) => {
            let b = &r.table.backends[*id as usize];
            (b.service.name.as_str(), b.port.as_str())
        }
        _ => ("", ""),
    };
    let (addr, len, time, status) = upstream_fields(r, end);
    let text = |v: &Option<http::HeaderValue>| {
        v.as_ref().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let line = serde_json::json!({
        "time": with_time_local(str::to_owned),
        "remote_addr": r.conn.remote.ip().to_string(),
        "remote_user": "",
        "request": format!("{} {} {}", r.request.method, r.request.uri.path_and_query().map_or("/", |p| p.as_str()), version(r.request.version)),
        "method": r.request.method.as_str(),
        "path": r.request.uri.path(),
        "status": r.status,
        "body_bytes_sent": r.bytes_sent,
        "http_referer": text(&r.request.referer),
        "http_user_agent": text(&r.request.user_agent),
        "request_length": r.request.request_length,
        "request_time": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        "proxy_upstream_name": upstream_name(r),
        "proxy_alternative_upstream_name": alternative_name(r),
        "upstream_addr": addr,
        "upstream_response_length": len,
        "upstream_response_time": time,
        "upstream_status": status,
        "req_id": String::from_utf8_lossy(r.request_id.as_bytes()),
        "namespace": namespace,
        "ingress_name": ingress,
        "service_name": service,
        "service_port": port,
        "location_path": route.path,
        "host": route.host,
    });
    let _ = serde_json::to_writer(&mut *out, &line);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_matches_nginx() {
        let mut out = Vec::new();
        escaped(&mut out, b"a\"b\\c\n\xff");
        assert_eq!(out, b"a\\x22b\\x5Cc\\x0A\\xFF");
    }

    #[test]
    fn numbers_and_times_are_written_like_nginx() {
        let mut out = Vec::new();
        for n in [0, 7, 42, 1_000_000, u64::MAX] {
            out.clear();
            num(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        for (d, text) in [
            (Duration::ZERO, "0.000"),
            (Duration::from_micros(1_499), "0.001"),
            (Duration::from_micros(1_500), "0.002"),
            (Duration::from_millis(61_234), "61.234"),
        ] {
            out.clear();
            secs(&mut out, d);
            assert_eq!(String::from_utf8_lossy(&out), text);
        }
        out.clear();
        socket_addr(&mut out, "10.0.0.255:8080".parse().unwrap());
        assert_eq!(out, b"10.0.0.255:8080");
        out.clear();
        socket_addr(&mut out, "[::1]:80".parse().unwrap());
        assert_eq!(out, b"[::1]:80");
    }

    #[test]
    fn time_local_has_nginx_shape() {
        let t = with_time_local(str::to_owned);
        // 21/Nov/2026:19:57:00 +0000
        assert_eq!(t.len(), 26, "{t}");
        assert_eq!(&t[2..3], "/");
        assert!(t.ends_with(" +0000"));
    }
}

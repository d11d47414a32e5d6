//! Client connection limits and timeouts, and upstream keep-alive. ConfigMap keys only, with
//! ingress-nginx's defaults and NGINX's semantics.
//!
//! | ConfigMap key | default | meaning |
//! |---|---|---|
//! | `client-header-timeout` | `60` | seconds to send a whole request head (on a new connection, from its start); then the connection is closed without an answer, as NGINX does (logged 408) |
//! | `client-body-timeout` | `60` | seconds between two reads of a request body; then the connection is closed without an answer, as NGINX does (logged 408) |
//! | `keep-alive-requests` | `1000` | requests one client connection carries; on HTTP/1.x the last response says `Connection: close` and the connection is closed after it (`0` closes after every request); on HTTP/2 the last request gets GOAWAY |
//! | `large-client-header-buffers` | `4 8k` | `number size`: a request line longer than `size` is answered 414, a header line longer than `size` 400 (`Request Header Or Cookie Too Large`), a head longer than `number × size` 400 (at most 16 MiB in all) |
//! | `max-worker-connections` | `16384` | client connections each worker (`--workers`) serves at once; beyond, it stops accepting and new connections wait in the listen backlog. `0`: three quarters of `max-worker-open-files` |
//! | `max-worker-open-files` | `0` | only for `max-worker-connections: 0`; `0` is the process's open-file limit less 1,024 (at least 1,024) |
//! | `upstream-keepalive-connections` | `320` | idle upstream connections each worker keeps, all endpoints together (`0`: none, every request on a new connection) |
//! | `upstream-keepalive-timeout` | `60` | seconds an idle upstream connection is kept |
//! | `upstream-keepalive-requests` | `10000` | requests one upstream connection carries before it is closed |
//! | `upstream-keepalive-time` | `1h` | how long one upstream connection carries requests (NGINX time: `1h`, `30m`, `90s`, `1h30m`); it is closed after the response in progress then |

use std::time::Duration;

use sluice_model::ConnectionLimits;

use super::proxy::{parse_seconds, parse_size};
use super::{Family, parse_time};

/// The ConfigMap keys of this family.
pub const FAMILY: Family = Family {
    module: "connections",
    annotations: &[],
    configmap_keys: &[
        "client-body-timeout",
        "client-header-timeout",
        "keep-alive-requests",
        "large-client-header-buffers",
        "max-worker-connections",
        "max-worker-open-files",
        "upstream-keepalive-connections",
        "upstream-keepalive-requests",
        "upstream-keepalive-time",
        "upstream-keepalive-timeout",
    ],
};

/// The most a request head may take (`number × size`): bounds each connection's memory.
const MAX_HEAD: u64 = 16 * 1024 * 1024;

/// Sets one key of this family; `None` for another family's key.
pub(crate) fn configmap(
    key: &str,
    value: &str,
    limits: &mut ConnectionLimits,
) -> Option<Result<(), String>> {
    Some(match key {
        "client-header-timeout" => parse_seconds(value).map(|d| limits.client_header_timeout = d),
        "client-body-timeout" => parse_seconds(value).map(|d| limits.client_body_timeout = d),
        "keep-alive-requests" => count(value).map(|n| limits.keep_alive_requests = n),
        "large-client-header-buffers" => header_buffers(value).map(|b| limits.header_buffers = b),
        "max-worker-connections" => count(value).map(|n| limits.max_worker_connections = n),
        "max-worker-open-files" => count(value).map(|n| limits.max_worker_open_files = n),
        "upstream-keepalive-connections" => count(value).map(|n| limits.upstream.connections = n),
        "upstream-keepalive-requests" => count(value).map(|n| limits.upstream.requests = n),
        "upstream-keepalive-timeout" => match value.trim().parse::<u64>() {
            Ok(secs) => {
                limits.upstream.timeout = Duration::from_secs(secs);
                Ok(())
            }
            Err(_) => Err(format!("{value:?} is not a whole number of seconds (such as 60)")),
        },
        "upstream-keepalive-time" => parse_time(value).map(|d| limits.upstream.time = d),
        _ => return None,
    })
}

/// A whole number, zero included.
fn count(value: &str) -> Result<u32, String> {
    value.trim().parse::<u32>().map_err(|_| format!("{value:?} is not a whole number"))
}

/// `number size`, as NGINX's `large_client_header_buffers` reads it.
fn header_buffers(value: &str) -> Result<sluice_model::HeaderBuffers, String> {
    let bad = || format!("{value:?} is not a number and a size (such as \"4 8k\")");
    let mut words = value.split_whitespace();
    let (Some(number), Some(size), None) = (words.next(), words.next(), words.next()) else {
        return Err(bad());
    };
    let number: u32 = number.parse().ok().filter(|&n| n > 0).ok_or_else(bad)?;
    let size = parse_size(size).ok().flatten().ok_or_else(bad)?;
    if u64::from(number).saturating_mul(size) > MAX_HEAD {
        return Err(format!("{value:?}: more than 16m in all"));
    }
    let size = u32::try_from(size).map_err(|_| bad())?;
    Ok(sluice_model::HeaderBuffers { number, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, value: &str) -> Result<ConnectionLimits, String> {
        let mut limits = ConnectionLimits::default();
        configmap(key, value, &mut limits).expect("a key of this family")?;
        Ok(limits)
    }

    #[test]
    fn timeouts_are_positive_whole_seconds() {
        assert_eq!(set("client-header-timeout", "5").unwrap().client_header_timeout.as_secs(), 5);
        assert_eq!(set("client-body-timeout", " 7 ").unwrap().client_body_timeout.as_secs(), 7);
        assert!(set("client-header-timeout", "0").is_err());
        assert!(set("client-body-timeout", "5s").is_err());
        assert_eq!(
            set("upstream-keepalive-timeout", "0").unwrap().upstream.timeout,
            Duration::ZERO
        );
        assert!(set("upstream-keepalive-timeout", "-1").is_err());
    }

    #[test]
    fn counts_take_zero() {
        assert_eq!(set("keep-alive-requests", "0").unwrap().keep_alive_requests, 0);
        assert_eq!(set("keep-alive-requests", "5").unwrap().keep_alive_requests, 5);
        assert_eq!(set("max-worker-connections", "0").unwrap().max_worker_connections, 0);
        assert_eq!(set("max-worker-open-files", "2048").unwrap().max_worker_open_files, 2048);
        assert_eq!(set("upstream-keepalive-connections", "0").unwrap().upstream.connections, 0);
        assert_eq!(set("upstream-keepalive-requests", "3").unwrap().upstream.requests, 3);
        assert!(set("keep-alive-requests", "many").is_err());
        assert!(set("max-worker-connections", "-5").is_err());
        assert_eq!(configmap("proxy-body-size", "1m", &mut ConnectionLimits::default()), None);
    }

    #[test]
    fn header_buffers_read_as_nginx() {
        let b = set("large-client-header-buffers", "8 16k").unwrap().header_buffers;
        assert_eq!((b.number, b.size), (8, 16 * 1024));
        let b = set("large-client-header-buffers", "2  1024").unwrap().header_buffers;
        assert_eq!((b.number, b.size), (2, 1024));
        for bad in ["4", "0 8k", "4 0", "4 8x", "4 8k 2", "", "1 32m"] {
            assert!(set("large-client-header-buffers", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_read_as_nginx() {
        assert_eq!(parse_time("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_time("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_time("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_time("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_time("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_time("1d"), Ok(Duration::from_secs(86_400)));
        for bad in ["", "h", "1x", "1.5h", "-1h"] {
            assert!(parse_time(bad).is_err(), "{bad:?}");
        }
    }
}

//! Limits every replica counts together: `global-rate-limit` and its settings, with the
//! counters in memcached. ingress-nginx had them until v1.12 (removed there); Sluice keeps
//! them for users who run many replicas, where `limit-rps` multiplies with the replicas.
//!
//! | annotation | default | meaning |
//! |---|---|---|
//! | `global-rate-limit` | — | requests per window and key, for all replicas together |
//! | `global-rate-limit-window` | — | the window, a Go duration (`1m`, `30s`, `1h`); under a second disables the limit, as in ingress-nginx |
//! | `global-rate-limit-key` | `$remote_addr` | what is counted, with NGINX variables (`$http_x_api_client`) |
//! | `global-rate-limit-ignored-cidrs` | — | client addresses never limited nor counted |
//!
//! | ConfigMap key | default | meaning |
//! |---|---|---|
//! | `global-rate-limit-memcached-host` | — | memcached's host (required by the annotations) |
//! | `global-rate-limit-memcached-port` | `11211` | its port |
//! | `global-rate-limit-memcached-connect-timeout` | `50` | milliseconds to connect, send and read |
//! | `global-rate-limit-memcached-max-idle-timeout`, `global-rate-limit-memcached-pool-size` | `10000`, `50` | accepted: NGINX's connection reuse towards memcached |
//! | `global-rate-limit-status-code` | `429` | the status of a refused request |
//!
//! The count is lua-resty-global-throttle's sliding window (this window's counter, and the
//! last window's weighted by what is left of this one), checked after the redirects and
//! before `limit-rps` and the access checks, as ingress-nginx ran it. When memcached cannot
//! be reached the request is let through and the failure logged, as ingress-nginx did: the
//! limit protects capacity, and refusing everything while memcached is down would turn its
//! outage into one of every route that uses it (`limit-rps`, per replica, still applies).
//! An invalid value, or the annotations without `global-rate-limit-memcached-host`, make the
//! Ingress's routes answer 503 (ingress-nginx refused such Ingresses).

use std::sync::Arc;

use sluice_model::{Diagnostic, GlobalRateLimit, IpList, ObjectRef, Template};

use super::{Annotations, Effect, Family};
use crate::config::GlobalConfig;

/// The annotations and ConfigMap keys of this family.
pub const FAMILY: Family = Family {
    module: "global_rate_limit",
    annotations: &[
        ("global-rate-limit", Effect::Applied),
        ("global-rate-limit-ignored-cidrs", Effect::Applied),
        ("global-rate-limit-key", Effect::Applied),
        ("global-rate-limit-window", Effect::Applied),
    ],
    configmap_keys: &[
        "global-rate-limit-memcached-connect-timeout",
        "global-rate-limit-memcached-host",
        "global-rate-limit-memcached-max-idle-timeout",
        "global-rate-limit-memcached-pool-size",
        "global-rate-limit-memcached-port",
        "global-rate-limit-status-code",
    ],
};

/// The ConfigMap's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Memcached {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) connect_timeout_ms: u64,
    pub(crate) status: u16,
}

impl Default for Memcached {
    fn default() -> Self {
        Self { host: String::new(), port: 11211, connect_timeout_ms: 50, status: 429 }
    }
}

/// The Ingress's global limit: `Ok(None)` without one (or with a window under a second);
/// `Err` (the routes fail closed) when it cannot be applied.
pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    global: &GlobalConfig,
    d: &mut Vec<Diagnostic>,
) -> Result<Option<Arc<GlobalRateLimit>>, String> {
    let limit = match a.get("global-rate-limit") {
        None => return Ok(None),
        Some(v) => v.trim().parse::<u64>().map_err(|_| {
            a.invalid(object, "global-rate-limit", &format!("{v:?} is not a whole number"), d)
        })?,
    };
    let window = a.get("global-rate-limit-window").unwrap_or_default();
    let window_secs = go_duration_secs(window)
        .map_err(|e| a.invalid(object, "global-rate-limit-window", &e, d))?;
    if limit == 0 || window_secs == 0 {
        return Ok(None);
    }
    let key = a.get("global-rate-limit-key").map(str::trim).filter(|k| !k.is_empty());
    let key = Template::parse(key.unwrap_or("$remote_addr"))
        .map_err(|e| a.invalid(object, "global-rate-limit-key", &e, d))?;
    let ignored = match a.get("global-rate-limit-ignored-cidrs").map(str::trim) {
        None | Some("") => IpList::default(),
        Some(v) => IpList::parse(v)
            .map_err(|e| a.invalid(object, "global-rate-limit-ignored-cidrs", &e, d))?,
    };
    let m = &global.memcached;
    if m.host.is_empty() {
        let why = "needs the ConfigMap's global-rate-limit-memcached-host";
        return Err(a.invalid(object, "global-rate-limit", why, d));
    }
    Ok(Some(Arc::new(GlobalRateLimit {
        namespace: format!("{}/{}", object.namespace, object.name),
        limit,
        window_secs,
        key,
        ignored,
        status: m.status,
        memcached: (m.host.clone(), m.port),
        connect_timeout_ms: m.connect_timeout_ms,
    })))
}

/// A Go duration (`1m30s`, `500ms`, `2h`) in whole seconds, as ingress-nginx keeps it.
fn go_duration_secs(value: &str) -> Result<u64, String> {
    let bad = || format!("{value:?} is not a duration (such as 1m, 30s, 1h30m)");
    let mut rest = value.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut ms: u128 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let n: u128 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let scale = match &rest[..unit] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad()),
        };
        ms += n * scale;
        rest = &rest[unit..];
    }
    u64::try_from(ms / 1000).map_err(|_| bad())
}

/// The ConfigMap keys of this family; `None` for another family's key.
pub(crate) fn configmap(key: &str, value: &str, m: &mut Memcached) -> Option<Result<(), String>> {
    let number =
        |v: &str| v.trim().parse::<u64>().map_err(|_| format!("{v:?} is not a whole number"));
    Some(match key {
        "global-rate-limit-memcached-host" => {
            m.host = value.trim().to_string();
            Ok(())
        }
        "global-rate-limit-memcached-port" => {
            super::parse_in_range(value, 1..=65535, "a port").map(|p| m.port = p)
        }
        "global-rate-limit-memcached-connect-timeout" => {
            number(value).map(|n| m.connect_timeout_ms = n)
        }
        "global-rate-limit-memcached-max-idle-timeout"
        | "global-rate-limit-memcached-pool-size" => number(value).map(drop),
        "global-rate-limit-status-code" => {
            super::parse_in_range(value, 400..=599, "a status").map(|code| m.status = code)
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_in_whole_seconds() {
        assert_eq!(go_duration_secs("1m"), Ok(60));
        assert_eq!(go_duration_secs("1h30m"), Ok(5400));
        assert_eq!(go_duration_secs("500ms"), Ok(0));
        assert_eq!(go_duration_secs("90s"), Ok(90));
        for bad in ["", "1", "m", "1d", "1m-"] {
            assert!(go_duration_secs(bad).is_err(), "{bad:?}");
        }
    }
}

//! Request and connection limits per client: `limit-rps`, `limit-rpm`, `limit-connections`,
//! `limit-burst-multiplier`, `limit-allowlist`.
//!
//! | annotation | default | meaning |
//! |---|---|---|
//! | `limit-rps` | — | requests per second per client address, with a burst of `limit-rps × limit-burst-multiplier` served at once (NGINX's `limit_req ... nodelay`) |
//! | `limit-rpm` | — | the same per minute |
//! | `limit-connections` | — | requests in flight per client address |
//! | `limit-burst-multiplier` | `5` | the burst, as a multiple of the limit |
//! | `limit-allowlist` | — | addresses and CIDR ranges never limited nor counted (legacy name `limit-whitelist`) |
//! | `limit-rate` | ConfigMap `limit-rate` (`0`) | how fast a response is sent, in KiB per second (ingress-nginx renders `limit_rate <N>k`); `0`: no limit |
//! | `limit-rate-after` | ConfigMap `limit-rate-after` (`0`) | KiB of each response sent at full speed first |
//!
//! | ConfigMap key | default | meaning |
//! |---|---|---|
//! | `limit-req-status-code` | `503` | the status of a request over `limit-rps` or `limit-rpm` |
//! | `limit-conn-status-code` | `503` | the status of a request over `limit-connections` |
//! | `limit-rate`, `limit-rate-after` | `0` | the defaults of the annotations |
//!
//! `limit-rate` paces each response on its own, as NGINX's `limit_rate` does per request;
//! such routes are carried by the general path. An invalid `limit-rate` keeps the
//! ConfigMap's value, as ingress-nginx does (reported here).
//!
//! As in ingress-nginx: the client address is the real-IP one (`use-forwarded-headers`); all
//! hosts and paths of one Ingress share a client's counters; the counters are per replica
//! (each Sluice process counts for itself, as each NGINX does: with three replicas behind a
//! load balancer a client gets up to three times the limit). A request refused by a rate is
//! charged to no bucket; rates are checked before requests in flight. The arithmetic is
//! NGINX's (`limit-rps: 1` admits six requests at once, then one a second).
//!
//! A limit that is not a whole number, a multiplier below 1, or an allow list that does not
//! parse makes the Ingress's routes answer 503 (ingress-nginx refuses the Ingress and keeps
//! serving its previous version; NGINX refuses a zero burst).

use std::sync::{Arc, OnceLock};

use sluice_model::{Bandwidth, Diagnostic, IpList, ObjectRef, Rate, RateLimits};

use super::{Annotations, Effect, Family};
use crate::config::GlobalConfig;

/// The annotations and ConfigMap keys of this family.
pub const FAMILY: Family = Family {
    module: "rate_limit",
    annotations: &[
        ("limit-allowlist", Effect::Applied),
        ("limit-burst-multiplier", Effect::Applied),
        ("limit-connections", Effect::Applied),
        ("limit-rate", Effect::Applied),
        ("limit-rate-after", Effect::Applied),
        ("limit-rpm", Effect::Applied),
        ("limit-rps", Effect::Applied),
        ("limit-whitelist", Effect::Applied),
    ],
    configmap_keys: &[
        "limit-conn-status-code",
        "limit-rate",
        "limit-rate-after",
        "limit-req-status-code",
    ],
};

/// The Ingress's limits: `Ok(None)` without any; `Err` (the routes fail closed) when they
/// cannot be read. `zone` names the Ingress.
pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    zone: String,
    global: &GlobalConfig,
    d: &mut Vec<Diagnostic>,
) -> Result<Option<Arc<RateLimits>>, String> {
    let mut number = |name: &str| -> Result<u64, String> {
        match a.get(name) {
            None => Ok(0),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map_err(|_| a.invalid(object, name, &format!("{v:?} is not a whole number"), d)),
        }
    };
    let rps = number("limit-rps")?;
    let rpm = number("limit-rpm")?;
    let connections = number("limit-connections")?;
    if rps == 0 && rpm == 0 && connections == 0 {
        return Ok(None);
    }
    let multiplier = match a.get("limit-burst-multiplier") {
        None => 5,
        Some(v) => match v.trim().parse::<u64>() {
            Ok(m) if m >= 1 => m,
            _ => {
                let why = format!("{v:?} is not a whole number from 1");
                return Err(a.invalid(object, "limit-burst-multiplier", &why, d));
            }
        },
    };
    let allow = match a.get("limit-allowlist") {
        Some(v) if !v.trim().is_empty() => Some(("limit-allowlist", v)),
        _ => a.get("limit-whitelist").map(|v| ("limit-whitelist", v)),
    };
    let allowlist = match allow {
        None => IpList::default(),
        Some((name, v)) => IpList::parse(v).map_err(|e| a.invalid(object, name, &e, d))?,
    };
    Ok(Some(Arc::new(RateLimits {
        zone,
        rps: (rps > 0).then(|| Rate::per_second(rps, rps * multiplier)),
        rpm: (rpm > 0).then(|| Rate::per_minute(rpm, rpm * multiplier)),
        connections: u32::try_from(connections).unwrap_or(u32::MAX),
        allowlist,
        req_status: global.limit_status.0,
        conn_status: global.limit_status.1,
        state: OnceLock::new(),
    })))
}

/// `limit-rate` and `limit-rate-after` over the ConfigMap's `bandwidth`.
pub(crate) fn bandwidth(
    a: &Annotations<'_>,
    object: &ObjectRef,
    bandwidth: &mut Option<Bandwidth>,
    d: &mut Vec<Diagnostic>,
) {
    let mut b = bandwidth.unwrap_or(Bandwidth { rate: 0, after: 0 });
    a.apply(object, "limit-rate", d, |v| kib(v).map(|n| b.rate = n));
    a.apply(object, "limit-rate-after", d, |v| kib(v).map(|n| b.after = n));
    *bandwidth = (b.rate > 0).then_some(b);
}

/// KiB, as ingress-nginx renders `<N>k`, in bytes.
fn kib(value: &str) -> Result<u64, String> {
    value
        .trim()
        .parse::<u64>()
        .map(|n| n * 1024)
        .map_err(|_| format!("{value:?} is not a whole number of KiB"))
}

/// The ConfigMap keys of this family; `None` for another family's key.
pub(crate) fn configmap(
    key: &str,
    value: &str,
    cfg: &mut GlobalConfig,
) -> Option<Result<(), String>> {
    let slot = match key {
        "limit-rate" => return Some(kib(value).map(|n| cfg.bandwidth.0 = n)),
        "limit-rate-after" => return Some(kib(value).map(|n| cfg.bandwidth.1 = n)),
        "limit-req-status-code" => &mut cfg.limit_status.0,
        "limit-conn-status-code" => &mut cfg.limit_status.1,
        _ => return None,
    };
    // NGINX accepts 400 to 599.
    Some(super::parse_in_range(value, 400..=599, "a status").map(|code| *slot = code))
}

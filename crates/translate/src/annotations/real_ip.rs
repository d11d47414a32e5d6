//! The client's address: where it comes from when Sluice is behind a load balancer or
//! another proxy. ConfigMap keys only.
//!
//! | ConfigMap key | default | meaning |
//! |---|---|---|
//! | `enable-real-ip` | `false` | read the client's address from `forwarded-for-header` (without trusting `X-Forwarded-Proto`, `-Port`, `-Host`) |
//! | `forwarded-for-header` | `X-Forwarded-For` | the header the address is read from |
//! | `proxy-real-ip-cidr` | `0.0.0.0/0` | the peers trusted to tell it; with `real_ip_recursive`, the rightmost address of the header not in these ranges is the client (the leftmost when all are) |
//! | `use-proxy-protocol` | `false` | every connection on the HTTP and HTTPS ports starts with a PROXY protocol header (v1 or v2, as HAProxy's `send-proxy` and cloud load balancers send): its source is the client when the load balancer is in `proxy-real-ip-cidr`, its destination port the `X-Forwarded-Port` (443 makes the request count as HTTPS). A connection without a valid header is closed |
//! | `keep-alive` | `75` | seconds an idle client connection is kept open: HTTP/1.1 between requests, HTTP/2 with no request in progress (then GOAWAY), as NGINX's `keepalive_timeout` (which governs HTTP/2 since NGINX 1.19.7). Must be positive: Sluice does not turn keep-alive off |
//! | `compute-full-forwarded-for` | `false` | with `use-forwarded-headers`: the upstream `X-Forwarded-For` is the client's list with the peer appended, instead of the client's address alone |
//!
//! `use-forwarded-headers` (the `ssl_redirect` family) reads the address the same way, and
//! trusts the other forwarded headers too. The address found is what the address lists,
//! the limits, `X-Real-IP` and `X-Forwarded-For` use. As NGINX reads the default
//! `0.0.0.0/0`, IPv6 peers are never trusted. A `proxy-real-ip-cidr` that does not parse
//! makes every route answer 503: falling back to trusting everyone would let any client
//! choose its address.

use sluice_model::{IpList, RealIp};

use super::{Family, parse_bool};

/// The ConfigMap keys of this family.
pub const FAMILY: Family = Family {
    module: "real_ip",
    annotations: &[],
    configmap_keys: &[
        "compute-full-forwarded-for",
        "enable-real-ip",
        "forwarded-for-header",
        "keep-alive",
        "proxy-real-ip-cidr",
        "use-proxy-protocol",
    ],
};

/// The ConfigMap keys of this family; `None` for another family's key. `enable-real-ip` is
/// returned through `enable`: it combines with `use-forwarded-headers` once every key is read.
pub(crate) fn configmap(
    key: &str,
    value: &str,
    real_ip: &mut RealIp,
    enable: &mut bool,
) -> Option<Result<(), String>> {
    Some(match key {
        "enable-real-ip" => parse_bool(value).map(|b| *enable = b),
        "compute-full-forwarded-for" => parse_bool(value).map(|b| real_ip.compute_full = b),
        "use-proxy-protocol" => parse_bool(value).map(|b| real_ip.proxy_protocol = b),
        "forwarded-for-header" => {
            let name = value.trim();
            if name.is_empty()
                || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            {
                Err(format!("{value:?} is not a header name"))
            } else {
                real_ip.header = name.to_ascii_lowercase();
                Ok(())
            }
        }
        "proxy-real-ip-cidr" => match IpList::parse_lenient(value) {
            // An empty value is refused (`"" is not an IP address`), as before.
            Ok(l) if l.is_empty() => IpList::parse(value).map(drop),
            parsed => parsed.map(|l| real_ip.trusted = l),
        },
        _ => return None,
    })
}

//! The client's address, as NGINX's realip module finds it with ingress-nginx's settings
//! (ConfigMap `use-forwarded-headers`, `enable-real-ip`, `forwarded-for-header`,
//! `proxy-real-ip-cidr`, `compute-full-forwarded-for`): the address the access lists, limits,
//! `X-Real-IP` and `X-Forwarded-For` use.

use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::IpList;

/// Where the client's address comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RealIp {
    /// Read it from [`RealIp::header`] (`use-forwarded-headers` or `enable-real-ip`).
    pub from_header: bool,
    /// `forwarded-for-header`, lower case (`x-forwarded-for`).
    pub header: String,
    /// `proxy-real-ip-cidr`: the peers (and forwarded addresses) trusted to tell it
    /// (`0.0.0.0/0`, which trusts every IPv4 peer and no IPv6 one, as NGINX reads it).
    pub trusted: IpList,
    /// `compute-full-forwarded-for` (with `use-forwarded-headers`): the upstream
    /// `X-Forwarded-For` is the client's with the peer appended, not the address alone.
    pub compute_full: bool,
    /// `use-proxy-protocol`: every connection starts with a PROXY protocol header (v1 or v2)
    /// naming the client, read when the load balancer is in [`RealIp::trusted`].
    pub proxy_protocol: bool,
}

impl Default for RealIp {
    fn default() -> Self {
        Self {
            from_header: false,
            header: "x-forwarded-for".into(),
            trusted: IpList::parse("0.0.0.0/0").expect("a range"),
            compute_full: false,
            proxy_protocol: false,
        }
    }
}

impl RealIp {
    /// The client's address for a connection from `peer` whose request carries `values` of
    /// the header (every line for `X-Forwarded-For`, in order); `None` to keep the peer's.
    ///
    /// NGINX's `real_ip_recursive on`: when the peer is trusted, the header's addresses are
    /// walked from the right, and the first one that is not trusted is the client; when all
    /// are, the leftmost. The walk stops at a token that is not an address (the last one
    /// read stands).
    pub fn client(&self, peer: IpAddr, values: &[&[u8]]) -> Option<IpAddr> {
        if !self.from_header || !self.trusted.contains(peer) {
            return None;
        }
        let mut found = None;
        for value in values.iter().rev() {
            for token in value.rsplit(|&c| c == b',' || c == b' ') {
                if token.is_empty() {
                    continue;
                }
                let Some(ip) = address(token) else { return found };
                found = Some(ip);
                if !self.trusted.contains(ip) {
                    return found;
                }
            }
        }
        found
    }
}

/// An address as NGINX's `ngx_parse_addr_port` reads one: `1.2.3.4`, `1.2.3.4:80`, `::1`,
/// `[::1]:80`.
fn address(token: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(token).ok()?;
    text.parse::<IpAddr>().ok().or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(r: &RealIp, peer: &str, xff: &[&str]) -> Option<String> {
        let values: Vec<&[u8]> = xff.iter().map(|v| v.as_bytes()).collect();
        r.client(peer.parse().unwrap(), &values).map(|ip| ip.to_string())
    }

    #[test]
    fn the_default_trusts_every_ipv4_hop_so_the_leftmost_wins() {
        let r = RealIp { from_header: true, ..RealIp::default() };
        assert_eq!(
            walk(&r, "10.1.1.1", &["1.1.1.1, 2.2.2.2, 10.0.0.5"]).as_deref(),
            Some("1.1.1.1")
        );
        assert_eq!(walk(&r, "10.1.1.1", &["1.1.1.1", "2.2.2.2"]).as_deref(), Some("1.1.1.1"));
        assert_eq!(walk(&r, "10.1.1.1", &["9.9.9.9:1234"]).as_deref(), Some("9.9.9.9"));
        // An IPv6 hop is not trusted by 0.0.0.0/0: the walk stops there.
        assert_eq!(
            walk(&r, "10.1.1.1", &["1.1.1.1, 2001:db8::1, 2.2.2.2"]).as_deref(),
            Some("2001:db8::1")
        );
        // An unreadable token stops the walk; the address to its right stands.
        assert_eq!(
            walk(&r, "10.1.1.1", &["1.1.1.1, unknown, 2.2.2.2"]).as_deref(),
            Some("2.2.2.2")
        );
        assert_eq!(walk(&r, "10.1.1.1", &["unknown"]), None);
        assert_eq!(walk(&r, "10.1.1.1", &[]), None);
        // An IPv6 peer is not trusted: the header is ignored.
        assert_eq!(walk(&r, "::1", &["1.1.1.1"]), None);
        let off = RealIp::default();
        assert_eq!(walk(&off, "10.1.1.1", &["1.1.1.1"]), None);
    }

    #[test]
    fn a_narrowed_range_gives_the_rightmost_untrusted_address() {
        let r = RealIp {
            from_header: true,
            trusted: IpList::parse("10.0.0.0/8").unwrap(),
            ..RealIp::default()
        };
        assert_eq!(
            walk(&r, "10.1.1.1", &["1.1.1.1, 2.2.2.2, 10.0.0.5"]).as_deref(),
            Some("2.2.2.2")
        );
        assert_eq!(walk(&r, "10.1.1.1", &["10.0.0.7, 10.0.0.5"]).as_deref(), Some("10.0.0.7"));
        // A peer outside the range cannot tell: its header is ignored (no spoofing).
        assert_eq!(walk(&r, "192.0.2.9", &["1.1.1.1"]), None);
    }
}

//! Client HTTP/2 connections. ConfigMap keys only.
//!
//! | ConfigMap key | default | meaning |
//! |---|---|---|
//! | `use-http2` | `true` | `false`: HTTP/1.1 only; the HTTPS port offers no `h2` in ALPN and the HTTP port refuses h2c (as NGINX's `listen ... http2` left out) |
//! | `http2-max-concurrent-streams` | `128` | SETTINGS_MAX_CONCURRENT_STREAMS: a client opening a stream beyond it gets RST_STREAM `REFUSED_STREAM` for that stream, as from NGINX's `http2_max_concurrent_streams`; the connection and its other streams go on. Must be a positive whole number (NGINX's `0` would refuse every request) |
//!
//! `http2-max-field-size`, `http2-max-header-size` and `http2-max-requests` are listed in
//! [`crate::config_keys`]: NGINX ignores them since 1.19.7 (`large-client-header-buffers` and
//! `keep-alive-requests` govern HTTP/2 instead). Limits ingress-nginx does not expose are
//! fixed at NGINX's values: a response the client takes nothing of for 60 s (`send_timeout`)
//! ends the connection.

use sluice_model::Http2Settings;

use super::Family;

/// The ConfigMap keys of this family.
pub const FAMILY: Family = Family {
    module: "http2",
    annotations: &[],
    configmap_keys: &["http2-max-concurrent-streams", "use-http2"],
};

/// The ConfigMap keys of this family; `None` for another family's key.
pub(crate) fn configmap(
    key: &str,
    value: &str,
    http2: &mut Http2Settings,
) -> Option<Result<(), String>> {
    Some(match key {
        "use-http2" => super::parse_bool(value).map(|on| http2.enabled = on),
        "http2-max-concurrent-streams" => match value.trim().parse::<u32>() {
            Ok(n) if n > 0 => {
                http2.max_concurrent_streams = n;
                Ok(())
            }
            _ => Err(format!("{value:?} is not a positive whole number of streams")),
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_concurrent_streams() {
        let mut h = Http2Settings::default();
        assert_eq!(h.max_concurrent_streams, 128);
        assert_eq!(configmap("http2-max-concurrent-streams", " 7 ", &mut h), Some(Ok(())));
        assert_eq!(h.max_concurrent_streams, 7);
        for bad in ["0", "-1", "ten", "", "4294967296"] {
            let r = configmap("http2-max-concurrent-streams", bad, &mut h);
            assert!(matches!(r, Some(Err(_))), "{bad:?}: {r:?}");
        }
        assert_eq!(h.max_concurrent_streams, 7);
        assert_eq!(configmap("keep-alive", "5", &mut h), None);
    }
}

//! Every key of ingress-nginx's ConfigMap (v1.15, `docs/user-guide/nginx-configuration/
//! configmap.md`) and what Sluice does with it, as [`crate::annotations::catalog`] does for
//! annotations. Keys a family reads are listed by the family (`FAMILY.configmap_keys`); this
//! file holds the others.

use crate::annotations::FAMILIES;

/// What Sluice does with one ConfigMap key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySupport {
    /// Read by a family.
    Implemented,
    /// NGINX tuning with no effect a client or backend can see in Sluice; the note says why.
    /// No warning.
    Accepted(&'static str),
    /// Known, not implemented: a warning, and ignored.
    Pending,
    /// Raw NGINX configuration.
    Snippet,
    /// Removed from ingress-nginx; the note says when or by what.
    Removed(&'static str),
}

use KeySupport::*;

const HASHES: &str = "sizes NGINX's hash tables; Sluice's tables grow by themselves";
const WORKERS: &str =
    "tunes NGINX's worker processes; Sluice runs one process with a thread per core (--workers)";
const RELOADS: &str = "governs NGINX reloads; Sluice never reloads";
const LOG_PATHS: &str = "Sluice writes its logs to standard output and standard error";
const TLS_SESSIONS: &str = "rustls keeps its own session cache and tickets";
const OPENTRACING: &str = "OpenTracing, removed in v1.10";
const HTTP2_HEADERS: &str = "deprecated since v1.1.3: NGINX ignores it since 1.19.7, \
     large-client-header-buffers bounds HTTP/2 request headers";

/// The keys no family reads, and their fate, sorted by name.
pub const KEYS: &[(&str, KeySupport)] = &[
    ("access-log-params", Pending),
    ("access-log-path", Accepted(LOG_PATHS)),
    ("allow-backend-server-header", Pending),
    ("allow-cross-namespace-resources", Pending),
    (
        "annotation-value-word-blocklist",
        Accepted(
            "annotations are typed data, never rendered into configuration: there is nothing to block",
        ),
    ),
    ("bind-address", Pending),
    ("brotli-level", Pending),
    ("brotli-min-length", Pending),
    ("brotli-types", Pending),
    (
        "client-header-buffer-size",
        Accepted("Sluice bounds request heads by large-client-header-buffers alone"),
    ),
    ("debug-connections", Pending),
    ("default-type", Accepted("the type of files NGINX serves itself; Sluice serves none")),
    ("disable-ipv6", Pending),
    ("disable-ipv6-dns", Pending),
    ("enable-access-log-for-default-backend", Pending),
    ("enable-aio-write", Accepted(WORKERS)),
    ("enable-brotli", Pending),
    ("enable-modsecurity", Pending),
    ("enable-multi-accept", Accepted(WORKERS)),
    ("enable-ocsp", Pending),
    ("enable-opentelemetry", Pending),
    ("enable-owasp-modsecurity-crs", Pending),
    ("enable-serial-reloads", Accepted(RELOADS)),
    ("enable-syslog", Pending),
    ("error-log-level", Pending),
    ("error-log-path", Accepted(LOG_PATHS)),
    ("forwarded-for-proxy-protocol-header", Pending),
    ("generate-request-id", Pending),
    ("geoip2-autoreload-in-minutes", Pending),
    ("global-auth-snippet", Snippet),
    ("grpc-buffer-size-kb", Accepted("sizes NGINX's gRPC buffers; Sluice streams gRPC messages")),
    ("gzip-disable", Pending),
    ("gzip-level", Pending),
    ("gzip-min-length", Pending),
    ("gzip-types", Pending),
    ("http-access-log-path", Accepted(LOG_PATHS)),
    ("http2-max-field-size", Removed(HTTP2_HEADERS)),
    ("http2-max-header-size", Removed(HTTP2_HEADERS)),
    (
        "http2-max-requests",
        Removed(
            "deprecated since v1.1.3: NGINX ignores http2_max_requests since 1.19.7, \
             keep-alive-requests bounds the requests of an HTTP/2 connection",
        ),
    ),
    ("jaeger-baggage-header", Removed(OPENTRACING)),
    ("jaeger-collector-host", Removed(OPENTRACING)),
    ("jaeger-collector-port", Removed(OPENTRACING)),
    ("jaeger-debug-header", Removed(OPENTRACING)),
    ("jaeger-endpoint", Removed(OPENTRACING)),
    ("jaeger-propagation-format", Removed(OPENTRACING)),
    ("jaeger-sampler-host", Removed(OPENTRACING)),
    ("jaeger-sampler-param", Removed(OPENTRACING)),
    ("jaeger-sampler-port", Removed(OPENTRACING)),
    ("jaeger-sampler-type", Removed(OPENTRACING)),
    ("jaeger-service-name", Removed(OPENTRACING)),
    ("jaeger-trace-baggage-header-prefix", Removed(OPENTRACING)),
    ("jaeger-trace-context-header-name", Removed(OPENTRACING)),
    ("limit-conn-zone-variable", Pending),
    ("log-format-escape-json", Pending),
    ("log-format-escape-none", Pending),
    ("log-format-stream", Pending),
    ("log-format-upstream", Pending),
    ("lua-shared-dicts", Accepted("sizes NGINX's Lua dictionaries; Sluice has no Lua")),
    ("main-snippet", Snippet),
    ("map-hash-bucket-size", Accepted(HASHES)),
    ("modsecurity-snippet", Snippet),
    (
        "nginx-status-ipv4-whitelist",
        Accepted("NGINX's status page; Sluice's admin port serves metrics"),
    ),
    (
        "nginx-status-ipv6-whitelist",
        Accepted("NGINX's status page; Sluice's admin port serves metrics"),
    ),
    ("opentelemetry-config", Pending),
    ("opentelemetry-operation-name", Pending),
    ("opentelemetry-trust-incoming-span", Pending),
    ("otel-max-export-batch-size", Pending),
    ("otel-max-queuesize", Pending),
    ("otel-sampler", Pending),
    ("otel-sampler-parent-based", Pending),
    ("otel-sampler-ratio", Pending),
    ("otel-schedule-delay-millis", Pending),
    ("otel-service-name", Pending),
    ("otlp-collector-host", Pending),
    ("otlp-collector-port", Pending),
    ("proxy-add-original-uri-header", Pending),
    ("proxy-headers-hash-bucket-size", Accepted(HASHES)),
    ("proxy-headers-hash-max-size", Accepted(HASHES)),
    ("proxy-protocol-header-timeout", Pending),
    ("proxy-ssl-location-only", Pending),
    ("proxy-stream-next-upstream", Pending),
    ("proxy-stream-next-upstream-timeout", Pending),
    ("proxy-stream-next-upstream-tries", Pending),
    ("proxy-stream-responses", Pending),
    ("proxy-stream-timeout", Pending),
    ("reuse-port", Accepted(WORKERS)),
    ("server-name-hash-bucket-size", Accepted(HASHES)),
    ("server-name-hash-max-size", Accepted(HASHES)),
    ("server-tokens", Pending),
    ("ssl-buffer-size", Accepted("sizes NGINX's TLS records; rustls sizes its own")),
    ("ssl-dh-param", Accepted("Sluice offers no DHE cipher suites (rustls: ECDHE only)")),
    ("ssl-ecdh-curve", Pending),
    ("ssl-reject-handshake", Pending),
    ("ssl-session-cache", Accepted(TLS_SESSIONS)),
    ("ssl-session-cache-size", Accepted(TLS_SESSIONS)),
    ("ssl-session-ticket-key", Accepted(TLS_SESSIONS)),
    ("ssl-session-tickets", Accepted(TLS_SESSIONS)),
    ("ssl-session-timeout", Accepted(TLS_SESSIONS)),
    ("stream-access-log-path", Accepted(LOG_PATHS)),
    ("stream-snippet", Snippet),
    (
        "strict-validate-path-type",
        Accepted("Sluice serves such paths as ingress-nginx did before v1.12, and warns"),
    ),
    ("syslog-host", Pending),
    ("syslog-port", Pending),
    ("use-geoip", Pending),
    ("use-geoip2", Pending),
    ("use-gzip", Pending),
    ("variables-hash-bucket-size", Accepted(HASHES)),
    ("variables-hash-max-size", Accepted(HASHES)),
    ("worker-cpu-affinity", Accepted(WORKERS)),
    ("worker-processes", Accepted(WORKERS)),
    (
        "worker-shutdown-timeout",
        Accepted("Sluice never reloads; --shutdown-grace-period governs its shutdown"),
    ),
];

/// Keys a family reads whose behaviour differs from ingress-nginx's, whatever their value, in a
/// way a client or an operator can notice, in one sentence each, sorted (differences only
/// some values meet are diagnostics).
pub const DIFFERENCES: &[(&str, &str)] = &[
    ("block-cidrs", "applied on every route before anything else, even where NGINX drops it"),
    ("block-referers", "applied on every route before anything else, even where NGINX drops it"),
    ("block-user-agents", "applied on every route before anything else, even where NGINX drops it"),
    (
        "client-header-timeout",
        "on connections hyper reads (HTTPS, HTTP/1.1 after a request with a body) it also bounds \
         the wait for the next request when shorter than keep-alive; a head cut is not logged",
    ),
    (
        "custom-http-errors",
        "the error page request carries no body and reaches the default backend over HTTP/1.1",
    ),
    (
        "http2-max-concurrent-streams",
        "a client that keeps opening streams beyond it is disconnected after 1,024 refusals, \
         where NGINX goes on refusing them",
    ),
    (
        "large-client-header-buffers",
        "a head of more than 64 lines and over twice the buffers (64 KiB at least), or of more \
         than 200 lines, is answered 431 rather than 400",
    ),
    (
        "max-worker-connections",
        "counts client connections of each worker thread (--workers), not upstream ones",
    ),
    (
        "proxy-request-buffering",
        "up to 8 MiB is held in memory and the rest streamed, where NGINX writes a temporary file",
    ),
    (
        "upstream-keepalive-connections",
        "at the limit an endpoint's own least recently used idle connection makes room, else the \
         returning one is closed (NGINX closes the worker's least recently used)",
    ),
];

/// Sluice's own keys, which ingress-nginx does not know (read by [`crate::config`]), sorted.
pub const SLUICE_KEYS: &[&str] = &[
    "sluice-outlier-base-ejection-time",
    "sluice-outlier-consecutive-failures",
    "sluice-outlier-detection",
    "sluice-outlier-gateway-responses",
    "sluice-outlier-max-ejection-percent",
    "sluice-outlier-max-ejection-time",
];

/// The difference every key of [`SLUICE_KEYS`] makes.
const SLUICE_OWN: &str = "Sluice's own key: ingress-nginx ignores it";

/// What Sluice does with ConfigMap key `key`; `None` if neither ingress-nginx nor Sluice
/// knows it.
pub fn support(key: &str) -> Option<KeySupport> {
    if FAMILIES.iter().any(|f| f.configmap_keys.contains(&key)) || SLUICE_KEYS.contains(&key) {
        return Some(Implemented);
    }
    KEYS.binary_search_by(|(k, _)| k.cmp(&key)).ok().map(|i| KEYS[i].1)
}

/// The documented difference of implemented key `key`, if any.
pub fn difference(key: &str) -> Option<&'static str> {
    if SLUICE_KEYS.contains(&key) {
        return Some(SLUICE_OWN);
    }
    DIFFERENCES.binary_search_by(|(k, _)| k.cmp(&key)).ok().map(|i| DIFFERENCES[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sorted_and_each_has_one_fate() {
        assert!(KEYS.windows(2).all(|w| w[0].0 < w[1].0), "KEYS must stay sorted");
        assert!(DIFFERENCES.windows(2).all(|w| w[0].0 < w[1].0), "DIFFERENCES must stay sorted");
        assert!(SLUICE_KEYS.windows(2).all(|w| w[0] < w[1]), "SLUICE_KEYS must stay sorted");
        for key in SLUICE_KEYS {
            assert!(key.starts_with("sluice-"), "{key}: Sluice's own keys say so");
            assert_eq!(support(key), Some(Implemented), "{key}");
            assert_eq!(difference(key), Some(SLUICE_OWN), "{key}");
        }
        for (key, _) in KEYS {
            assert!(
                !FAMILIES.iter().any(|f| f.configmap_keys.contains(key)),
                "{key} is read by a family and listed in KEYS"
            );
        }
        for (key, _) in DIFFERENCES {
            assert_eq!(support(key), Some(Implemented), "{key}: a difference of an unread key");
        }
        for (key, fate) in KEYS {
            assert_eq!(*fate == Snippet, key.ends_with("-snippet"), "{key}");
        }
        // The snippet family reads the subset it can from these; the other snippet keys
        // stay refused.
        assert_eq!(support("server-snippet"), Some(Implemented));
        assert_eq!(support("main-snippet"), Some(Snippet));
        // 192 keys in configmap.md (v1.15): those the families read, and the others here.
        assert_eq!(KEYS.len(), 111);
        assert_eq!(support("proxy-body-size"), Some(Implemented));
        assert_eq!(support("worker-processes"), Some(Accepted(WORKERS)));
        assert_eq!(support("no-such-key"), None);
    }
}

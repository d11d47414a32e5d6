//! Every ingress-nginx annotation name (v1.15, `docs/user-guide/nginx-configuration/
//! annotations-risk.md`, plus legacy aliases and removed names) and what Sluice does with it.

/// What Sluice does with one annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// Implemented by a family module.
    Implemented,
    /// Known, not implemented yet: a warning, and ignored.
    Pending,
    /// A security annotation not enforced yet: the Ingress's routes answer 503.
    Enforced,
    /// Raw NGINX configuration: refused; the Ingress's routes answer 503.
    Snippet,
    /// Removed from ingress-nginx; the note says by what.
    Removed(&'static str),
}

use Support::*;

/// The catalogue, sorted by name.
pub const CATALOG: &[(&str, Support)] = &[
    ("affinity", Pending),
    ("affinity-canary-behavior", Pending),
    ("affinity-mode", Pending),
    ("allowlist-source-range", Enforced),
    ("app-root", Pending),
    ("auth-always-set-cookie", Pending),
    ("auth-cache-duration", Pending),
    ("auth-cache-key", Pending),
    ("auth-keepalive", Pending),
    ("auth-keepalive-requests", Pending),
    ("auth-keepalive-share-vars", Pending),
    ("auth-keepalive-timeout", Pending),
    ("auth-method", Pending),
    ("auth-proxy-set-headers", Pending),
    ("auth-realm", Pending),
    ("auth-request-redirect", Pending),
    ("auth-response-headers", Pending),
    ("auth-secret", Enforced),
    ("auth-secret-type", Pending),
    ("auth-signin", Pending),
    ("auth-signin-redirect-param", Pending),
    ("auth-snippet", Snippet),
    ("auth-tls-error-page", Pending),
    ("auth-tls-match-cn", Enforced),
    ("auth-tls-pass-certificate-to-upstream", Implemented),
    ("auth-tls-secret", Implemented),
    ("auth-tls-verify-client", Implemented),
    ("auth-tls-verify-depth", Implemented),
    ("auth-type", Enforced),
    ("auth-url", Enforced),
    ("backend-protocol", Implemented),
    ("canary", Pending),
    ("canary-by-cookie", Pending),
    ("canary-by-header", Pending),
    ("canary-by-header-pattern", Pending),
    ("canary-by-header-value", Pending),
    ("canary-weight", Pending),
    ("canary-weight-total", Pending),
    ("client-body-buffer-size", Pending),
    ("configuration-snippet", Snippet),
    ("connection-proxy-header", Pending),
    ("cors-allow-credentials", Pending),
    ("cors-allow-headers", Pending),
    ("cors-allow-methods", Pending),
    ("cors-allow-origin", Pending),
    ("cors-expose-headers", Pending),
    ("cors-max-age", Pending),
    ("custom-headers", Pending),
    ("custom-http-errors", Pending),
    ("default-backend", Pending),
    ("denylist-source-range", Enforced),
    ("disable-proxy-intercept-errors", Pending),
    ("enable-access-log", Pending),
    ("enable-cors", Pending),
    ("enable-global-auth", Pending),
    ("enable-modsecurity", Pending),
    ("enable-opentelemetry", Pending),
    ("enable-owasp-core-rules", Pending),
    ("enable-rewrite-log", Pending),
    ("fastcgi-index", Pending),
    ("fastcgi-params-configmap", Pending),
    ("force-ssl-redirect", Implemented),
    ("from-to-www-redirect", Pending),
    ("grpc-backend", Removed("use backend-protocol: GRPC")),
    ("http2-push-preload", Pending),
    ("limit-allowlist", Pending),
    ("limit-burst-multiplier", Pending),
    ("limit-connections", Pending),
    ("limit-rate", Pending),
    ("limit-rate-after", Pending),
    ("limit-rpm", Pending),
    ("limit-rps", Pending),
    ("limit-whitelist", Pending),
    ("load-balance", Pending),
    ("mirror-host", Pending),
    ("mirror-request-body", Pending),
    ("mirror-target", Pending),
    ("modsecurity-snippet", Snippet),
    ("modsecurity-transaction-id", Pending),
    ("opentelemetry-operation-name", Pending),
    ("opentelemetry-trust-incoming-span", Pending),
    ("permanent-redirect", Pending),
    ("permanent-redirect-code", Pending),
    ("preserve-trailing-slash", Implemented),
    ("proxy-body-size", Implemented),
    ("proxy-buffer-size", Pending),
    ("proxy-buffering", Pending),
    ("proxy-buffers-number", Pending),
    ("proxy-connect-timeout", Implemented),
    ("proxy-cookie-domain", Pending),
    ("proxy-cookie-path", Pending),
    ("proxy-http-version", Pending),
    ("proxy-max-temp-file-size", Pending),
    ("proxy-next-upstream", Pending),
    ("proxy-next-upstream-timeout", Pending),
    ("proxy-next-upstream-tries", Implemented),
    ("proxy-read-timeout", Implemented),
    ("proxy-redirect-from", Pending),
    ("proxy-redirect-to", Pending),
    ("proxy-request-buffering", Pending),
    ("proxy-send-timeout", Implemented),
    ("proxy-ssl-ciphers", Pending),
    ("proxy-ssl-name", Implemented),
    ("proxy-ssl-protocols", Pending),
    ("proxy-ssl-secret", Implemented),
    ("proxy-ssl-server-name", Implemented),
    ("proxy-ssl-verify", Implemented),
    ("proxy-ssl-verify-depth", Implemented),
    ("rewrite-target", Implemented),
    ("satisfy", Pending),
    ("secure-backends", Removed("use backend-protocol: HTTPS")),
    ("server-alias", Pending),
    ("server-snippet", Snippet),
    ("service-upstream", Pending),
    ("session-cookie-change-on-failure", Pending),
    ("session-cookie-conditional-samesite-none", Pending),
    ("session-cookie-domain", Pending),
    ("session-cookie-expires", Pending),
    ("session-cookie-hash", Removed("since 0.24")),
    ("session-cookie-max-age", Pending),
    ("session-cookie-name", Pending),
    ("session-cookie-partitioned", Pending),
    ("session-cookie-path", Pending),
    ("session-cookie-samesite", Pending),
    ("session-cookie-secure", Pending),
    ("ssl-ciphers", Implemented),
    ("ssl-passthrough", Implemented),
    ("ssl-prefer-server-ciphers", Pending),
    ("ssl-redirect", Implemented),
    ("stream-snippet", Snippet),
    ("temporal-redirect", Pending),
    ("temporal-redirect-code", Pending),
    ("upstream-hash-by", Pending),
    ("upstream-hash-by-subset", Pending),
    ("upstream-hash-by-subset-size", Pending),
    ("upstream-vhost", Pending),
    ("use-port-in-redirects", Implemented),
    ("use-regex", Implemented),
    ("whitelist-source-range", Enforced),
    ("x-forwarded-prefix", Pending),
];

/// What Sluice does with annotation `name` (without the prefix); `None` if ingress-nginx does
/// not know it either.
pub fn support(name: &str) -> Option<Support> {
    CATALOG.binary_search_by(|(n, _)| n.cmp(&name)).ok().map(|i| CATALOG[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_sorted_and_complete() {
        assert!(CATALOG.windows(2).all(|w| w[0].0 < w[1].0), "CATALOG must stay sorted");
        // 135 rows in annotations-risk.md (v1.15), 2 legacy aliases, 3 removed names.
        assert_eq!(CATALOG.len(), 135 + 2 + 3);
        assert_eq!(support("whitelist-source-range"), Some(Enforced));
        assert_eq!(support("configuration-snippet"), Some(Snippet));
        assert_eq!(support("no-such-annotation"), None);
    }
}

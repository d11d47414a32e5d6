//! Every ingress-nginx annotation name (v1.15, `docs/user-guide/nginx-configuration/
//! annotations-risk.md`, plus legacy aliases and removed names) and what Sluice does with it.

use super::{Effect, FAMILIES, family_of};

/// What Sluice does with one annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// Implemented by a family module.
    Implemented,
    /// Read and validated by a family, with no effect a client or backend can see (NGINX
    /// memory tuning); the note says why. No warning.
    Accepted(&'static str),
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

/// The annotations no family reads, and their fate, sorted by name. What families read is
/// in their own lists ([`FAMILIES`]): a name is implemented only where a module reads it.
pub const CATALOG: &[(&str, Support)] = &[
    ("auth-snippet", Snippet),
    ("enable-modsecurity", Pending),
    ("enable-opentelemetry", Pending),
    ("enable-owasp-core-rules", Pending),
    ("fastcgi-index", Pending),
    ("fastcgi-params-configmap", Pending),
    ("grpc-backend", Removed("use backend-protocol: GRPC")),
    ("http2-push-preload", Pending),
    ("modsecurity-snippet", Snippet),
    ("modsecurity-transaction-id", Pending),
    ("opentelemetry-operation-name", Pending),
    ("opentelemetry-trust-incoming-span", Pending),
    ("proxy-ssl-ciphers", Pending),
    ("proxy-ssl-protocols", Pending),
    ("secure-backends", Removed("use backend-protocol: HTTPS")),
    ("session-cookie-hash", Removed("since 0.24")),
    ("ssl-prefer-server-ciphers", Pending),
    ("stream-snippet", Snippet),
];

/// Implemented annotations whose behaviour differs from ingress-nginx's, whatever their value,
/// in a way a client or an operator can notice, in one sentence each (the family's module
/// documentation has the detail), sorted by name. The migration report (`sluice migrate`)
/// quotes them. Differences that only some values meet (a regex feature, a variable, a Secret
/// in another namespace) are reported by the family as diagnostics on the Ingresses that have
/// them, not listed here.
pub const DIFFERENCES: &[(&str, &str)] = &[
    (
        "affinity",
        "a balanced-mode cookie issued by ingress-nginx is re-pinned once; persistent-mode cookies keep their endpoint",
    ),
    (
        "cors-allow-origin",
        "origins are compared whole, and a list ingress-nginx would read as `*` answers 503 instead",
    ),
    (
        "custom-http-errors",
        "the error page request carries no body and reaches the default backend over HTTP/1.1",
    ),
    (
        "global-rate-limit",
        "removed from ingress-nginx in v1.12 (ignored there); Sluice still applies it with memcached",
    ),
    (
        "mirror-request-body",
        "a body is mirrored only when request buffering holds it (up to 8 MiB)",
    ),
    (
        "mirror-target",
        "the copy is sent and forgotten: a slow mirror never delays the real request, as it does in NGINX",
    ),
    (
        "proxy-next-upstream-tries",
        "each retry goes to another endpoint, so tries are capped at the backend's endpoint count",
    ),
    (
        "proxy-request-buffering",
        "up to 8 MiB is held in memory and the rest streamed, where NGINX writes a temporary file",
    ),
    (
        "upstream-hash-by",
        "consistent hashing, but not NGINX's ring: a key may land on another endpoint than under ingress-nginx",
    ),
];

/// The documented difference of implemented annotation `name`, if any.
pub fn difference(name: &str) -> Option<&'static str> {
    DIFFERENCES.binary_search_by(|(n, _)| n.cmp(&name)).ok().map(|i| DIFFERENCES[i].1)
}

/// What Sluice does with annotation `name` (without the prefix); `None` if ingress-nginx does
/// not know it either.
pub fn support(name: &str) -> Option<Support> {
    if let Some((_, effect)) = family_of(name) {
        return Some(match effect {
            Effect::Applied => Implemented,
            Effect::Accepted(note) => Accepted(note),
        });
    }
    CATALOG.binary_search_by(|(n, _)| n.cmp(&name)).ok().map(|i| CATALOG[i].1)
}

/// Every annotation name Sluice knows, with its fate, sorted.
pub fn all() -> Vec<(&'static str, Support)> {
    let mut all: Vec<(&'static str, Support)> = CATALOG.to_vec();
    for family in FAMILIES {
        for &(name, _) in family.annotations {
            all.push((name, support(name).expect("a family's name")));
        }
    }
    all.sort_by_key(|(n, _)| *n);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_sorted_and_complete() {
        assert!(CATALOG.windows(2).all(|w| w[0].0 < w[1].0), "CATALOG must stay sorted");
        let all = all();
        assert!(all.windows(2).all(|w| w[0].0 != w[1].0), "a name has one fate: {all:?}");
        // 136 rows in annotations-risk.md (v1.15), 2 legacy aliases, 3 removed names, and
        // `session-cookie-partitioned` of later ingress-nginx versions.
        // And `global-rate-limit*` (4) of ingress-nginx before v1.12, which Sluice keeps.
        assert_eq!(all.len(), 136 + 2 + 3 + 1 + 4);
        assert_eq!(support("whitelist-source-range"), Some(Implemented));
        assert_eq!(support("auth-tls-match-cn"), Some(Implemented));
        assert_eq!(support("configuration-snippet"), Some(Implemented));
        assert_eq!(support("auth-snippet"), Some(Snippet));
        assert_eq!(support("no-such-annotation"), None);
    }

    #[test]
    fn differences_are_sorted_and_of_implemented_annotations() {
        assert!(DIFFERENCES.windows(2).all(|w| w[0].0 < w[1].0), "DIFFERENCES must stay sorted");
        for (name, note) in DIFFERENCES {
            assert_eq!(
                support(name),
                Some(Implemented),
                "{name}: a difference of what Sluice does not apply"
            );
            assert!(!note.ends_with('.'), "{name}: a clause, without a final stop");
        }
        assert!(difference("mirror-target").is_some());
        assert_eq!(difference("proxy-body-size"), None);
    }

    #[test]
    fn implemented_means_a_family_reads_it() {
        for (name, fate) in CATALOG {
            assert!(
                !matches!(fate, Implemented | Accepted(_)),
                "{name}: only a family's list may call an annotation implemented"
            );
            assert!(family_of(name).is_none(), "{name} is in a family and in CATALOG");
        }
        for family in FAMILIES {
            assert!(
                family.annotations.windows(2).all(|w| w[0].0 < w[1].0),
                "{}: keep the list sorted",
                family.module
            );
        }
    }
}

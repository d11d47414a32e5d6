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

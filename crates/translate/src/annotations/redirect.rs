//! Redirects instead of proxying: `permanent-redirect`, `temporal-redirect`,
//! `from-to-www-redirect`.
//!
//! | annotation | default | meaning |
//! |---|---|---|
//! | `permanent-redirect` | — | every request of the Ingress's paths is answered with a redirect to this URL |
//! | `permanent-redirect-code` | `301` | its status: 300 to 308 (another value: 301) |
//! | `temporal-redirect` | — | the same, temporary; wins over `permanent-redirect` |
//! | `temporal-redirect-code` | `302` | its status: 300 to 307 (another value: 302) |
//! | `from-to-www-redirect` | `false` | requests for `www.<host>` are redirected to `<host>` (or the other way round when the rule's host starts with `www.`) |
//! | `relative-redirects` | `false` (ConfigMap `relative-redirects`) | a redirect URL starting with `/` is sent as it is, not made absolute (NGINX's `absolute_redirect off`) |
//!
//! As in ingress-nginx (`internal/ingress/annotations/redirect`, `nginx.tmpl`):
//! - the URL is used as written (`return 301 <url>`); NGINX variables in it are filled in per
//!   request, so `https://example.com$request_uri` keeps the path and query. A URL starting
//!   with `/` becomes absolute with the connection's scheme (not a forwarded one) and the
//!   request's host, as NGINX makes it, unless `relative-redirects`;
//! - the redirect is answered before anything else of the location (the HTTPS redirect
//!   included): NGINX's `return` runs in the rewrite phase;
//! - a `temporal-redirect` URL must be `http` or `https`;
//! - `from-to-www-redirect` makes a server for the other name that answers every request with
//!   ConfigMap `http-redirect-code` (308) to `<scheme>://<host>:<port><uri>` (the trailing slash
//!   removed; with `use-forwarded-headers`, the scheme and port the load balancer forwarded).
//!   It is skipped when an Ingress defines the other name itself. Over HTTPS the other name
//!   gets the host's certificate when that covers it, else the default certificate.
//!
//! Where Sluice differs: an out-of-range code is reported (ingress-nginx replaces it
//! silently); ingress-nginx 1.12+'s validator refuses `$` in these URLs, so
//! `$request_uri` only works with validation off there, and always in Sluice.

use sluice_model::{Diagnostic, ObjectRef, Reason, Redirect, Template};

use super::{Annotations, Effect, Family, parse_bool};

/// The annotations of this family.
pub const FAMILY: Family = Family {
    module: "redirect",
    annotations: &[
        ("from-to-www-redirect", Effect::Applied),
        ("permanent-redirect", Effect::Applied),
        ("permanent-redirect-code", Effect::Applied),
        ("relative-redirects", Effect::Applied),
        ("temporal-redirect", Effect::Applied),
        ("temporal-redirect-code", Effect::Applied),
    ],
    configmap_keys: &["relative-redirects"],
};

/// The redirect the Ingress's paths answer with, if any; `relative`: ConfigMap
/// `relative-redirects`, the default of the annotation.
pub(crate) fn parse(
    a: &Annotations<'_>,
    object: &ObjectRef,
    relative: bool,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Redirect> {
    let mut relative = relative;
    a.apply(object, "relative-redirects", diagnostics, |v| parse_bool(v).map(|b| relative = b));
    let mut found = None;
    let kinds = [("temporal-redirect", 302, 307), ("permanent-redirect", 301, 308)];
    for (name, default, highest) in kinds {
        let code_name = if name.starts_with('t') {
            "temporal-redirect-code"
        } else {
            "permanent-redirect-code"
        };
        let Some(url) = a.get(name).filter(|u| !u.trim().is_empty()) else { continue };
        if found.is_some() {
            diagnostics.push(Diagnostic::warning(
                object.clone(),
                Reason::InvalidAnnotation,
                format!(
                    "{}/{name} is ignored: temporal-redirect is set too, and wins (as in \
                     ingress-nginx)",
                    a.prefix
                ),
            ));
            continue;
        }
        let location = match location(url, name == "temporal-redirect") {
            Ok(l) => l,
            Err(why) => {
                a.report(object, name, &why, diagnostics);
                continue;
            }
        };
        let mut code = default;
        a.apply(object, code_name, diagnostics, |v| match v.trim().parse::<u16>() {
            Ok(c) if (300..=highest).contains(&c) => {
                code = c;
                Ok(())
            }
            _ => Err(format!("{v:?} is not a status from 300 to {highest}")),
        });
        found = Some(Redirect { location, code, relative });
    }
    found
}

/// `from-to-www-redirect`.
pub(crate) fn from_to_www(
    a: &Annotations<'_>,
    object: &ObjectRef,
    diagnostics: &mut Vec<Diagnostic>,
) -> bool {
    let mut on = false;
    a.apply(object, "from-to-www-redirect", diagnostics, |v| parse_bool(v).map(|b| on = b));
    on
}

/// A redirect URL: a template without spaces or control characters; an absolute one must be
/// `http` or `https` when `web_only`.
fn location(url: &str, web_only: bool) -> Result<Template, String> {
    let url = url.trim();
    if url.bytes().any(|c| c.is_ascii_control() || c == b' ') {
        return Err(format!("{url:?} has spaces or control characters"));
    }
    let template = Template::parse(url)?;
    let scheme_ok = url.starts_with('/')
        || url.starts_with("http://")
        || url.starts_with("https://")
        || url.starts_with('$');
    if web_only && !scheme_ok {
        return Err(format!("{url:?}: only http and https URLs are valid"));
    }
    Ok(template)
}

/// The other name of a host for `from-to-www-redirect`: `www.` added or removed.
pub fn www_pair(host: &str) -> Option<String> {
    if host.is_empty() || host.starts_with("*.") {
        return None;
    }
    Some(match host.strip_prefix("www.") {
        Some(apex) if !apex.is_empty() => apex.to_string(),
        _ => format!("www.{host}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn www_pairs_go_both_ways() {
        assert_eq!(www_pair("example.com").as_deref(), Some("www.example.com"));
        assert_eq!(www_pair("www.example.com").as_deref(), Some("example.com"));
        assert_eq!(www_pair("*.example.com"), None);
        assert_eq!(www_pair(""), None);
    }

    #[test]
    fn urls_are_checked() {
        assert!(location("https://example.com$request_uri", true).is_ok());
        assert!(location("/other", true).is_ok());
        assert!(location("ftp://example.com", true).is_err());
        assert!(location("ftp://example.com", false).is_ok());
        assert!(location("https://a b", false).is_err());
        assert!(location("https://x/$nope", false).is_err());
    }
}

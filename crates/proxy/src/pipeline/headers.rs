//! Header rules, written once over both header representations: the upstream request's
//! ([`upstream_request`], through an [`UpstreamSink`]: the fast path writes header lines,
//! the general path edits hyper's map) and the response's ([`ResponsePlan`]: what happens to
//! each upstream header, and what Sluice sets).

use std::borrow::Cow;

use sluice_model::{ResponseRules, RoutingTable, Target, normalize_path};

use super::pick::Pick;
use super::{Ctx, Head, RequestVars};

/// Where the upstream request's head goes.
pub(crate) trait UpstreamSink {
    /// The request line: method, target (path and query), HTTP/1.0 or 1.1.
    fn request_line(&mut self, method: &str, target: &[u8], http10: bool);
    /// A header of the client's, passed on as it is.
    fn keep(&mut self, name: &[u8], value: &[u8]);
    /// A header of the client's, not passed on.
    fn drop(&mut self, name: &[u8]);
    /// A header Sluice sets (replacing any of the same name).
    fn set(&mut self, name: &str, value: &[u8]);
}

/// Request headers that never cross a proxy (RFC 9110 section 7.6.1).
pub(crate) const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Request headers Sluice sets itself (or never forwards): `Proxy` (httpoxy), the
/// client-certificate headers (only Sluice may send those) and the forwarding headers.
pub(crate) const SET_BY_SLUICE: [&str; 13] = [
    "proxy",
    "ssl-client-verify",
    "ssl-client-subject-dn",
    "ssl-client-issuer-dn",
    "ssl-client-cert",
    "x-request-id",
    "x-real-ip",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-proto",
    "x-forwarded-scheme",
    "x-scheme",
];

/// Headers that frame or route a message: a peer cannot declare them hop-by-hop.
fn is_framing(name: &[u8]) -> bool {
    ["host", "content-length", "content-type"]
        .iter()
        .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
}

fn listed(names: &[&str], name: &[u8]) -> bool {
    names.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(name))
}

/// Phase 6: the upstream request's line and headers for `pick`, written to `sink`.
pub(super) fn upstream_request<H: Head>(
    ctx: &Ctx<'_>,
    head: &H,
    pick: &Pick,
    granted: Option<&super::access::AuthOutcome>,
    sink: &mut impl UpstreamSink,
) {
    let route = ctx.route;
    // `auth-response-headers`: copied from the auth service's answer; the client's own of
    // these names never pass, whether the auth service sent them or not.
    let auth_headers: &[String] = match route.policy.access.as_deref() {
        Some(sluice_model::Access { external: Some(ext), .. }) => &ext.response_headers,
        _ => &[],
    };
    let up = &route.policy.upstream;
    // `proxy-set-headers` replaces a header Sluice sets itself: each name is set once.
    let mut sink = Overridable { sink, by_policy: &up.set_headers };
    let vars = RequestVars { head, ctx };

    // The path, rewritten by `rewrite-target` (NGINX rewrites `$uri`, the normalised path).
    // A snippet's `rewrite` wins: NGINX runs it in the location, before `proxy_pass`.
    let target: Cow<'_, [u8]> = match &route.rewrite {
        _ if ctx.rewritten.is_some() => Cow::Borrowed(ctx.rewritten.as_deref().unwrap_or_default()),
        Some(r) => match r.apply(&normalize_path(head.path()), head.query()) {
            Some(t) => Cow::Owned(t.into_bytes()),
            None => Cow::Borrowed(head.target().as_bytes()),
        },
        None => Cow::Borrowed(head.target().as_bytes()),
    };
    sink.request_line(head.method(), &target, up.http10);

    // The client's headers. Credentials basic authentication checked stay here, as
    // ingress-nginx's `proxy_set_header Authorization ""`.
    let checked_credentials = route.policy.access.as_ref().is_some_and(|a| a.basic.is_some());
    let mut named: Vec<&[u8]> = Vec::new();
    let mut xff: Vec<&[u8]> = Vec::new();
    let mut xfh: Option<&[u8]> = None;
    // `forwarded-for-header` when it is not X-Forwarded-For: its first value.
    let for_header = ctx.table.https.real_ip.header.as_str();
    let mut other_for: Option<&[u8]> = None;
    head.each_header(|name, value| {
        if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&c| c == b',').map(<[u8]>::trim_ascii) {
                if !token.is_empty()
                    && !is_framing(token)
                    && !token.eq_ignore_ascii_case(b"close")
                    && !token.eq_ignore_ascii_case(b"keep-alive")
                    && !token.eq_ignore_ascii_case(b"upgrade")
                {
                    named.push(token);
                }
            }
        } else if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            xff.push(value);
        } else if name.eq_ignore_ascii_case(b"x-forwarded-host") && xfh.is_none() {
            xfh = Some(value);
        }
        if other_for.is_none() && name.eq_ignore_ascii_case(for_header.as_bytes()) {
            other_for = Some(value);
        }
        true
    });
    // `X-Original-Forwarded-For` is the client's `forwarded-for-header`, as sent (NGINX's
    // `$http_<name>`: X-Forwarded-For lines joined, another header's first value).
    let original_for: Option<std::borrow::Cow<'_, [u8]>> = if for_header == "x-forwarded-for" {
        match xff.as_slice() {
            [] => None,
            [one] => Some(std::borrow::Cow::Borrowed(*one)),
            lines => Some(std::borrow::Cow::Owned(lines.join(&b", "[..]))),
        }
    } else {
        other_for.map(std::borrow::Cow::Borrowed)
    };
    let trust = ctx.table.https.use_forwarded_headers;
    // The upstream `Host` and `X-Forwarded-Host`.
    let forwarded_host = super::forwarded_host(ctx, head);
    let replaced = |name: &[u8]| {
        listed(&HOP_BY_HOP, name)
            || listed(&SET_BY_SLUICE, name)
            || named.iter().any(|n| n.eq_ignore_ascii_case(name))
            || (original_for.is_some() && name.eq_ignore_ascii_case(b"x-original-forwarded-for"))
            || (xfh.is_some() && name.eq_ignore_ascii_case(b"x-original-forwarded-host"))
            || ((up.vhost.is_some() || forwarded_host.is_some())
                && name.eq_ignore_ascii_case(b"host"))
            || (up.forwarded_prefix.is_some() && name.eq_ignore_ascii_case(b"x-forwarded-prefix"))
            || (!up.keep_underscored_headers && name.contains(&b'_'))
            || up.set_headers.iter().any(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
            || (pick.substitute && listed(&SUBSTITUTE, name))
            || (checked_credentials && name.eq_ignore_ascii_case(b"authorization"))
            || auth_headers.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(name))
    };
    head.each_header(|name, value| {
        if replaced(name) {
            sink.drop(name);
        } else {
            sink.keep(name, value);
        }
        true
    });

    // What Sluice sets.
    if let Some(original) = &original_for {
        sink.set("x-original-forwarded-for", original);
    }
    if let Some(outcome) = granted {
        for name in auth_headers {
            if let Some(value) = outcome.header(name).filter(|v| !v.is_empty()) {
                sink.set(name, value);
            }
        }
    }
    if let Some(host) = xfh {
        // NGINX's `$http_x_forwarded_host`, always passed on as it came.
        sink.set("x-original-forwarded-host", host);
    }
    sink.set("x-request-id", ctx.request_id.as_bytes());
    let client_ip = ctx.client_ip();
    sink.set("x-real-ip", client_ip);
    let real_ip = &ctx.table.https.real_ip;
    if trust && real_ip.compute_full {
        // `$http_x_forwarded_for, $realip_remote_addr`: the client's list, the peer appended.
        let peer = ctx.conn.remote_ip.as_bytes();
        match xff.as_slice() {
            [] => sink.set("x-forwarded-for", peer),
            lines => {
                let mut all = lines.join(&b", "[..]);
                all.extend_from_slice(b", ");
                all.extend_from_slice(peer);
                sink.set("x-forwarded-for", &all);
            }
        }
    } else {
        sink.set("x-forwarded-for", client_ip);
    }
    let trusted = |name| trust.then(|| head.header(name)).flatten();
    let best_host = forwarded_host.unwrap_or(ctx.host_header.as_bytes());
    sink.set("x-forwarded-host", best_host);
    if up.vhost.is_none()
        && let Some(host) = forwarded_host
    {
        sink.set("host", host);
    }
    sink.set(
        "x-forwarded-port",
        trusted("x-forwarded-port").unwrap_or(ctx.conn.local_port.as_bytes()),
    );
    let scheme: &[u8] = if ctx.https { b"https" } else { b"http" };
    // A PROXY header's port 443 makes it https whatever the client says (`lua_ingress.lua`
    // applies it after the trusted `X-Forwarded-Proto`).
    let proto = if ctx.conn.proxied_https {
        b"https"
    } else {
        trusted("x-forwarded-proto").unwrap_or(scheme)
    };
    sink.set("x-forwarded-proto", proto);
    sink.set("x-forwarded-scheme", proto);
    sink.set("x-scheme", proto);
    if let Some((client, pass)) = &ctx.client {
        sink.set("ssl-client-verify", client.verify.as_bytes());
        // Without a certificate the names are empty, and NGINX's proxy_set_header sends none.
        if !client.subject.is_empty() {
            sink.set("ssl-client-subject-dn", client.subject.as_bytes());
        }
        if !client.issuer.is_empty() {
            sink.set("ssl-client-issuer-dn", client.issuer.as_bytes());
        }
        if *pass && let Some(pem) = &client.escaped_pem {
            sink.set("ssl-client-cert", pem.as_bytes());
        }
    }
    if let Some(vhost) = &up.vhost {
        sink.set("host", &vhost.to_bytes(&vars));
    }
    // NGINX's `proxy_set_header` sends no header whose value comes out empty (`""`, or a
    // variable without a value): the client's header of that name is dropped all the same.
    if let Some(prefix) = &up.forwarded_prefix {
        let value = prefix.to_bytes(&vars);
        if !value.is_empty() {
            sink.set("x-forwarded-prefix", &value);
        }
    }
    if pick.substitute {
        substitute_headers(ctx, head, &mut sink);
    }
    for (name, value) in &up.set_headers {
        let value = value.to_bytes(&vars);
        if !value.is_empty() {
            sink.sink.set(name, &value);
        }
    }
    if let Some(connection) = &up.connection {
        sink.set("connection", connection.as_bytes());
    }
}

/// A sink whose `set` skips the names `proxy-set-headers` sets.
struct Overridable<'a, S> {
    sink: &'a mut S,
    by_policy: &'a [(String, sluice_model::Template)],
}

impl<S: UpstreamSink> UpstreamSink for Overridable<'_, S> {
    fn request_line(&mut self, method: &str, target: &[u8], http10: bool) {
        self.sink.request_line(method, target, http10);
    }

    fn keep(&mut self, name: &[u8], value: &[u8]) {
        self.sink.keep(name, value);
    }

    fn drop(&mut self, name: &[u8]) {
        self.sink.drop(name);
    }

    fn set(&mut self, name: &str, value: &[u8]) {
        if !self.by_policy.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            self.sink.set(name, value);
        }
    }
}

/// The headers ingress-nginx sends a `default-backend` serving in place of a backend
/// without endpoints (and its error pages send the same, with their own `X-Code`).
const SUBSTITUTE: [&str; 6] =
    ["x-code", "x-format", "x-namespace", "x-ingress-name", "x-service-name", "x-service-port"];

fn substitute_headers<H: Head>(ctx: &Ctx<'_>, head: &H, sink: &mut impl UpstreamSink) {
    sink.set("x-code", b"503");
    let accept = head.header("accept");
    // The client's own were dropped (SUBSTITUTE); NGINX passes no header set to an empty
    // value (`X-Format` without `Accept`).
    error_context(ctx.table, ctx.route, accept, |name, value| {
        if !value.is_empty() {
            sink.set(name, value);
        }
    });
}

/// `X-Format` (the client's `Accept`), `X-Namespace`, `X-Ingress-Name`, `X-Service-Name`,
/// `X-Service-Port` of a request to `route`, as ingress-nginx passes them to a default
/// backend.
pub(crate) fn error_context(
    table: &RoutingTable,
    route: &sluice_model::Route,
    accept: Option<&[u8]>,
    mut f: impl FnMut(&str, &[u8]),
) {
    f("x-format", accept.unwrap_or_default());
    let (namespace, ingress) = route.ingress_parts();
    f("x-namespace", namespace.as_bytes());
    f("x-ingress-name", ingress.as_bytes());
    let (service, port) = match route.target {
        Target::Backend(id) => {
            let b = &table.backends[id as usize];
            (b.service.name.as_str(), b.port.as_str())
        }
        _ => ("", ""),
    };
    f("x-service-name", service.as_bytes());
    f("x-service-port", port.as_bytes());
}

/// What happens to one header of the upstream's response.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Edit {
    Keep,
    Drop,
    /// Passed on with another value.
    Replace(Vec<u8>),
}

/// Phase 7, decided with the request: what a response to it gets.
#[derive(Debug, Default)]
pub(crate) struct ResponsePlan {
    /// Headers set on every response of the route (`custom-headers`, `add-headers`),
    /// rendered for this request.
    set: Vec<(String, Vec<u8>)>,
    /// The session cookie to set.
    pub set_cookie: Option<Vec<u8>>,
    /// The request came over TLS: HSTS applies.
    hsts: bool,
    /// The auth service's `Set-Cookie` values, and whether they go on every status
    /// (`auth-always-set-cookie`) or on successful ones only (NGINX's `add_header`).
    auth_cookies: Vec<Vec<u8>>,
    auth_cookies_always: bool,
    /// The snippets' header rules whose `if` holds for this request (indexes in the route's
    /// `ResponseRules::rules`), with their values rendered.
    rules: Vec<(usize, Option<Vec<u8>>)>,
}

impl ResponsePlan {
    /// The plan for a request to `ctx`'s route.
    pub(super) fn new<H: Head>(ctx: &Ctx<'_>, head: &H, set_cookie: Option<Vec<u8>>) -> Self {
        let rules = &ctx.route.policy.response;
        let set = if rules.set.is_empty() {
            Vec::new()
        } else {
            let vars = RequestVars { head, ctx };
            rules.set.iter().map(|(n, v)| (n.clone(), v.to_bytes(&vars))).collect()
        };
        let auth_cookies_always = ctx
            .route
            .policy
            .access
            .as_ref()
            .and_then(|a| a.external.as_ref())
            .is_some_and(|e| e.always_set_cookie);
        let snippet_rules = if rules.rules.is_empty() {
            Vec::new()
        } else {
            let vars = RequestVars { head, ctx };
            rules
                .rules
                .iter()
                .enumerate()
                .filter(|(_, r)| r.when.as_ref().is_none_or(|c| c.holds(&vars)))
                .map(|(i, r)| (i, r.value.as_ref().map(|v| v.to_bytes(&vars))))
                .collect()
        };
        let mut plan = Self {
            set,
            set_cookie,
            hsts: ctx.conn.tls.is_some(),
            auth_cookies: Vec::new(),
            auth_cookies_always,
            rules: snippet_rules,
        };
        if let Some(cors) = &ctx.route.policy.cors
            && let Some(origin) = cors.allow_origin(head.header("origin"))
        {
            // ingress-nginx's `more_set_headers`: on every status, replacing the backend's.
            plan.add("access-control-allow-origin", origin.to_vec());
            if cors.credentials {
                plan.add("access-control-allow-credentials", b"true".to_vec());
            }
            plan.add("access-control-allow-methods", cors.methods.as_bytes().to_vec());
            plan.add("access-control-allow-headers", cors.headers.as_bytes().to_vec());
            if !cors.expose.is_empty() {
                plan.add("access-control-expose-headers", cors.expose.as_bytes().to_vec());
            }
            plan.add("access-control-max-age", cors.max_age.to_string().into_bytes());
        }
        plan
    }

    /// Sets header `name` (lower case) on the response, replacing the upstream's.
    pub(super) fn add(&mut self, name: &str, value: Vec<u8>) {
        self.set.push((name.to_string(), value));
    }

    /// Adds a `Set-Cookie` of the auth service's to the response.
    pub(super) fn add_cookie(&mut self, value: Vec<u8>) {
        self.auth_cookies.push(value);
    }

    /// What happens to header `name: value` of an upstream response to a route with `rules`:
    /// Sluice's `Server` replaces the upstream's, hidden headers and headers Sluice sets are
    /// dropped, `Location`, `Refresh` and `Set-Cookie` may be rewritten. Hop-by-hop and
    /// framing headers are the caller's.
    pub(crate) fn edit(
        &self,
        rules: &ResponseRules,
        reply: Reply<'_>,
        name: &[u8],
        value: &[u8],
    ) -> Edit {
        if name.eq_ignore_ascii_case(b"server")
            || self.snippet_names(rules, reply, name)
            || rules.hide.iter().any(|h| h.as_bytes().eq_ignore_ascii_case(name))
            || self.set.iter().any(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
            || (self.hsts && name.eq_ignore_ascii_case(b"strict-transport-security"))
        {
            return Edit::Drop;
        }
        if let Some((from, to)) = &rules.location {
            if name.eq_ignore_ascii_case(b"location") && value.starts_with(from.as_bytes()) {
                return Edit::Replace([to.as_bytes(), &value[from.len()..]].concat());
            }
            if name.eq_ignore_ascii_case(b"refresh")
                && let Some(at) = find_ignore_case(value, b"url=")
                && value[at + 4..].starts_with(from.as_bytes())
            {
                let rest = &value[at + 4 + from.len()..];
                return Edit::Replace([&value[..at + 4], to.as_bytes(), rest].concat());
            }
        }
        if name.eq_ignore_ascii_case(b"set-cookie")
            && (rules.cookie_domain.is_some() || rules.cookie_path.is_some())
            && let Some(v) = rewrite_cookie(rules, value)
        {
            return Edit::Replace(v);
        }
        Edit::Keep
    }

    /// Calls `f` with each header Sluice sets on the response: `Server`, the route's headers,
    /// the session cookie, and HSTS over TLS (`hsts`: the table's value, if it sends one).
    /// Sluice's own headers a snippet's rule sets or removes are left out, and the rules'
    /// values come last.
    pub(crate) fn each_set(
        &self,
        rules: &ResponseRules,
        reply: Reply<'_>,
        hsts: Option<&str>,
        server: &[u8],
        mut f: impl FnMut(&str, &[u8]),
    ) {
        let status = reply.status;
        // Sluice's own headers, unless a snippet's rule sets or removes them.
        let mut own = |name: &str, value: &[u8]| {
            if !self.snippet_names(rules, reply, name.as_bytes()) {
                f(name, value);
            }
        };
        own("server", server);
        for (name, value) in &self.set {
            own(name, value);
        }
        if let Some(cookie) = &self.set_cookie {
            own("set-cookie", cookie);
        }
        // NGINX's `add_header` without `always`: these statuses only.
        let success = matches!(status, 200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308);
        if self.auth_cookies_always || success {
            for cookie in &self.auth_cookies {
                own("set-cookie", cookie);
            }
        }
        if self.hsts
            && let Some(hsts) = hsts
        {
            own("strict-transport-security", hsts.as_bytes());
        }
        for (k, (i, value)) in self.rules.iter().enumerate() {
            let applies = |i: usize| {
                rules.rules.get(i).filter(|r| r.applies(reply.status, reply.content_type))
            };
            let Some(rule) = applies(*i) else { continue };
            // A later rule naming the same header wins, as each directive replaces it.
            let later = self.rules[k + 1..]
                .iter()
                .any(|(j, _)| applies(*j).is_some_and(|r| r.names(rule.name.as_bytes())));
            if let Some(value) = value
                && !later
            {
                f(&rule.name, value);
            }
        }
    }

    /// Whether a snippet's rule that applies to this response sets or removes `name`.
    fn snippet_names(&self, rules: &ResponseRules, reply: Reply<'_>, name: &[u8]) -> bool {
        self.rules.iter().any(|(i, _)| {
            rules
                .rules
                .get(*i)
                .is_some_and(|r| r.names(name) && r.applies(reply.status, reply.content_type))
        })
    }
}

/// What the response phase knows of a response before editing its head.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reply<'a> {
    /// Its status.
    pub status: u16,
    /// Its `Content-Type`, if it has one.
    pub content_type: Option<&'a [u8]>,
}

fn find_ignore_case(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle))
}

/// A `Set-Cookie` value with its `Domain` and `Path` rewritten as NGINX's
/// `proxy_cookie_domain` and `proxy_cookie_path` do; `None` when nothing changes.
fn rewrite_cookie(rules: &ResponseRules, value: &[u8]) -> Option<Vec<u8>> {
    let mut changed = false;
    let mut out: Vec<u8> = Vec::with_capacity(value.len() + 16);
    for (i, attr) in value.split(|&c| c == b';').enumerate() {
        if i > 0 {
            out.push(b';');
        }
        let trimmed = attr.trim_ascii_start();
        let lead = &attr[..attr.len() - trimmed.len()];
        let eq = trimmed.iter().position(|&c| c == b'=');
        let (key, val) = match eq {
            Some(e) => (&trimmed[..e], &trimmed[e + 1..]),
            None => (trimmed, &b""[..]),
        };
        let replaced = if i == 0 {
            None
        } else if key.eq_ignore_ascii_case(b"domain") {
            rules.cookie_domain.as_ref().and_then(|(from, to)| {
                fn strip(d: &[u8]) -> &[u8] {
                    d.strip_prefix(b".").unwrap_or(d)
                }
                // As NGINX: the leading dots of `from` and `to` are dropped, the cookie's own
                // is kept (`Domain=.app.local` becomes `Domain=.example.com`).
                let v = val.trim_ascii();
                let dot = if v.starts_with(b".") { &b"."[..] } else { b"" };
                strip(v)
                    .eq_ignore_ascii_case(strip(from.as_bytes()))
                    .then(|| [dot, strip(to.as_bytes())].concat())
            })
        } else if key.eq_ignore_ascii_case(b"path") {
            rules.cookie_path.as_ref().and_then(|(from, to)| {
                let v = val.trim_ascii();
                v.starts_with(from.as_bytes()).then(|| [to.as_bytes(), &v[from.len()..]].concat())
            })
        } else {
            None
        };
        match replaced {
            Some(new) => {
                changed = true;
                out.extend_from_slice(lead);
                out.extend_from_slice(key);
                out.push(b'=');
                out.extend_from_slice(&new);
            }
            None => out.extend_from_slice(attr),
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: Reply<'static> = Reply { status: 200, content_type: None };

    fn rules() -> ResponseRules {
        ResponseRules {
            set: vec![],
            hide: vec!["x-powered-by".into()],
            location: Some(("http://app:8080/".into(), "https://example.com/".into())),
            cookie_domain: Some(("app.local".into(), "example.com".into())),
            cookie_path: Some(("/one".into(), "/two".into())),
            rules: vec![],
        }
    }

    #[test]
    fn upstream_headers_are_edited() {
        let plan = ResponsePlan::default();
        let r = rules();
        assert_eq!(plan.edit(&r, OK, b"X-Powered-By", b"php"), Edit::Drop);
        assert_eq!(plan.edit(&r, OK, b"Server", b"nginx"), Edit::Drop);
        assert_eq!(
            plan.edit(&r, OK, b"Location", b"http://app:8080/login?x=1"),
            Edit::Replace(b"https://example.com/login?x=1".to_vec())
        );
        assert_eq!(plan.edit(&r, OK, b"Location", b"http://other/"), Edit::Keep);
        assert_eq!(
            plan.edit(&r, OK, b"Refresh", b"5; url=http://app:8080/a"),
            Edit::Replace(b"5; url=https://example.com/a".to_vec())
        );
        assert_eq!(
            plan.edit(&r, OK, b"Set-Cookie", b"s=1; Domain=.App.local; Path=/one/x; HttpOnly"),
            Edit::Replace(b"s=1; Domain=.example.com; Path=/two/x; HttpOnly".to_vec())
        );
        assert_eq!(
            plan.edit(&r, OK, b"Set-Cookie", b"s=1; Domain=app.local"),
            Edit::Replace(b"s=1; Domain=example.com".to_vec())
        );
        assert_eq!(plan.edit(&r, OK, b"Set-Cookie", b"s=1; Path=/other"), Edit::Keep);
        assert_eq!(plan.edit(&r, OK, b"X-App", b"1"), Edit::Keep);
    }
}

//! The redirect phase: what a request is answered with instead of being proxied, in
//! ingress-nginx's order (server-level `app-root` and the `www` server first, then the
//! location's `return`, then the HTTPS redirect of `rewrite_by_lua`).

use sluice_model::{Outcome, Script, Target, normalize_path};

use super::{Ctx, Head, RequestVars};
use crate::{Shared, forward};

/// The status and `Location` the request is redirected with, if it is.
pub(super) fn redirect<H: Head>(ctx: &Ctx<'_>, head: &H, shared: &Shared) -> Option<(u16, String)> {
    let route = ctx.route;
    let table = ctx.table;
    // NGINX's `$scheme`, and the scheme it gives a relative `return` URL, are the
    // connection's: a trusted `X-Forwarded-Proto` (`ctx.https`) changes neither.
    let tls = ctx.conn.tls.is_some();
    if let Some(root) = &route.app_root
        && normalize_path(head.path()) == "/"
    {
        // `return 302 $scheme://$http_host<app-root>`: the Host as sent, port included.
        return Some((302, format!("{}://{}{root}", scheme(tls), ctx.host_header)));
    }
    if let Target::RedirectHost { host } = &route.target {
        return Some((table.https.redirect_code, www_location(ctx, head, host)));
    }
    if let Some(r) = &route.policy.redirect {
        let vars = RequestVars { head, ctx };
        let location = String::from_utf8_lossy(&r.location.to_bytes(&vars)).into_owned();
        return Some((r.code, absolute(ctx, location, r.relative)));
    }
    if route.redirect_to_https
        && !ctx.https
        && !table.https.no_redirect_prefixes.iter().any(|p| head.path().starts_with(p.as_str()))
    {
        return Some((table.https.redirect_code, https_location(ctx, head, shared)));
    }
    None
}

/// What a route's snippets decided of a request.
pub(super) enum Scripted {
    /// Answer it: the status, the `Location` of a redirect, the body of a `return` text.
    Answer(u16, Option<String>, Option<bytes::Bytes>),
    /// Send it upstream with this path and query.
    Rewrite(Vec<u8>),
}

/// What a route's snippets decide of a request, if anything.
pub(super) fn script<H: Head>(script: &Script, ctx: &Ctx<'_>, head: &H) -> Option<Scripted> {
    let vars = RequestVars { head, ctx };
    let uri = normalize_path(head.path());
    let outcome = script.run(&vars, &uri, head.query().unwrap_or(""))?;
    Some(match outcome {
        Outcome::Answer { code, body } => Scripted::Answer(code, None, body.map(Into::into)),
        Outcome::Redirect { code, location } => {
            let location = String::from_utf8_lossy(&location).into_owned();
            Scripted::Answer(code, Some(absolute(ctx, location, script.relative)), None)
        }
        Outcome::Rewrite { target } => Scripted::Rewrite(target),
    })
}

/// A `Location` starting with `/` made absolute as NGINX does (unless `relative`): with the
/// connection's scheme and the request's host, without the port (`port_in_redirect` is off
/// unless `use-port-in-redirects`; even then NGINX leaves out 80 for http, 443 for https).
fn absolute(ctx: &Ctx<'_>, location: String, relative: bool) -> String {
    if !location.starts_with('/') || relative {
        return location;
    }
    let tls = ctx.conn.tls.is_some();
    let default_port = if tls { "443" } else { "80" };
    let port = match ctx.conn.local_port.to_str() {
        Ok(p) if ctx.route.policy.https.port_in_redirect && p != default_port => format!(":{p}"),
        _ => String::new(),
    };
    format!("{}://{}{port}{location}", scheme(tls), ctx.host)
}

fn scheme(https: bool) -> &'static str {
    if https { "https" } else { "http" }
}

/// `https://host/uri` for the HTTPS redirect, as ingress-nginx builds it (the host a trusted
/// `X-Forwarded-Host` names, else the request's): without the port
/// the client used (unless `use-port-in-redirects`: then Sluice's HTTPS port), and the
/// request URI without its trailing slash unless `preserve-trailing-slash`.
fn https_location<H: Head>(ctx: &Ctx<'_>, head: &H, shared: &Shared) -> String {
    let policy = &ctx.route.policy.https;
    // ingress-nginx's `redirect_host()`: the host of `$best_http_host`.
    let forwarded = super::forwarded_host(ctx, head)
        .and_then(|v| std::str::from_utf8(v).ok())
        .filter(|v| !v.is_empty());
    let name = forward::without_port(forwarded.unwrap_or(ctx.host_header));
    let port = match shared.https_port() {
        Some(p) if policy.port_in_redirect => format!(":{p}"),
        _ => String::new(),
    };
    let mut uri = head.target();
    if !policy.preserve_trailing_slash && uri.ends_with('/') {
        uri = &uri[..uri.len() - 1];
    }
    format!("https://{name}{port}{uri}")
}

/// `<scheme>://<host>:<port><uri>` for the redirect from the other `www` name, as
/// ingress-nginx's `ngx_srv_redirect.lua` builds it: the port always named (the one the
/// client connected to, or the forwarded one), the trailing slash removed.
fn www_location<H: Head>(ctx: &Ctx<'_>, head: &H, host: &str) -> String {
    let trust = ctx.table.https.use_forwarded_headers;
    let forwarded =
        |name| trust.then(|| head.header(name)).flatten().and_then(|v| std::str::from_utf8(v).ok());
    let scheme = forwarded("x-forwarded-proto").unwrap_or(scheme(ctx.conn.tls.is_some()));
    let port = forwarded("x-forwarded-port")
        .or_else(|| ctx.conn.local_port.to_str().ok())
        .unwrap_or_default();
    let uri = head.target();
    let uri = uri.strip_suffix('/').unwrap_or(uri);
    format!("{scheme}://{host}:{port}{uri}")
}

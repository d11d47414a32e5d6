//! The life cycle of a request: one ordered list of phases that both ways of carrying bytes
//! run, the HTTP/1.1 fast path ([`crate::fast`]) and the general path ([`crate::handler`]).
//! Neither has rules of its own: each calls [`decide`], which reads the request through
//! [`Head`], and then moves bytes as the returned [`Decision`] says. A phase added here is run
//! by both, so no request can skip it.
//!
//! Phases, in order (as ingress-nginx's NGINX phases run them):
//!
//! 1. **match**: the host is normalised once (lower case, port dropped) and the route found.
//!    A route the fast path may not carry ([`Route::fast`], translation's verdict), or a
//!    request body larger than it may carry there ([`Route::fast_body`]), is handed to the
//!    general path here, before anything is decided.
//! 2. **block** ([`access`]): the ConfigMap's `block-cidrs`, `block-user-agents` and
//!    `block-referers` (403), before anything else. *May answer.*
//! 3. **client certificates**, as the request's host asks for them (400); on plain HTTP,
//!    after the redirects. *May answer.*
//! 4. **CORS preflight** ([`access`]): an `OPTIONS` from an allowed origin is answered 204, as
//!    ingress-nginx's `return 204` in its rewrite phase, before redirects and access checks.
//!    *May answer.*
//! 5. **redirect**: `app-root` (302 for `/`), the `www` redirect of another host, the
//!    annotation redirect (`permanent-redirect`, `temporal-redirect`), then the redirect of
//!    plain HTTP to HTTPS. *May answer.*
//! 6. **limits** ([`limits`]): `limit-rps` and `limit-rpm`, then `limit-connections`, per
//!    client address (the status of `limit-req-status-code` or `limit-conn-status-code`).
//!    *May answer.*
//! 7. **access** ([`access`]): the address lists (403) and basic authentication (401 with
//!    `WWW-Authenticate`), combined as `satisfy` says. *May answer.*
//! 8. **local target**: a route that answers by itself (the built-in 404, 503 for a route that
//!    cannot be served). *May answer.*
//! 9. **pick** ([`pick`]): the backend (the route's, its `default-backend` when it has no
//!    ready endpoint, its canary by header, cookie or weight), then the endpoint order
//!    (round robin, EWMA, consistent hash, session cookie) and how failures are retried.
//!    *May answer* 503 when no endpoint is ready.
//! 10. **upstream request** ([`headers`]): the path (`rewrite-target`), the client's headers
//!     kept or dropped, and the headers Sluice sets (forwarding headers, client certificate,
//!     `upstream-vhost`, `x-forwarded-prefix`, `proxy-set-headers`, `connection-proxy-header`),
//!     written to the caller's [`UpstreamSink`]. `Authorization` is not passed on when
//!     basic authentication checked it.
//! 11. **response** ([`ResponsePlan`]): applied by the caller to each response head, the
//!     upstream's or a local one: hidden headers, `Location` and `Set-Cookie` rewrites, headers
//!     set (`custom-headers`, `add-headers`, CORS), the session cookie, HSTS.
//! 12. **log**: whether the access log line is written (`enable-access-log`,
//!     `skip-access-log-urls`).
//!
//! The caller keeps what only it can do: reading and writing sockets, bodies, upgrades, and,
//! on the general path, error pages from the default backend and mirrors.

mod access;
mod head;
mod headers;
mod limits;
mod pick;
mod redirect;

use std::borrow::Cow;
use std::sync::Arc;

use http::HeaderValue;
use sluice_model::{BackendId, Route, RouteId, RoutingTable, Target, normalize_host};

use crate::record::DefaultHost;
use crate::server::ConnInfo;
use crate::tls::client_auth::ClientCert;
use crate::{Published, Shared, forward};

pub(crate) use access::{AuthOutcome, AuthRequest};
pub(crate) use head::{FastHead, Head, HyperHead, RequestVars};
pub(crate) use headers::{
    Edit, HOP_BY_HOP, Reply, ResponsePlan, SET_BY_SLUICE, UpstreamSink, error_context,
};
pub(crate) use limits::{GlobalCheck, Zones};
pub(crate) use pick::{Attempts, Failure, repin_cookie};

/// Which way of carrying bytes runs the life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Carrier {
    /// The HTTP/1.1 fast path: hands routes it may not carry to the general path.
    Fast,
    /// hyper: carries everything.
    General,
}

/// What the phases decided of a request, and what they read to decide it.
pub(crate) struct Ctx<'a> {
    pub table: &'a RoutingTable,
    pub route: &'a Route,
    pub route_id: RouteId,
    pub conn: &'a ConnInfo,
    /// The host, normalised (lower case, no port).
    pub host: Cow<'a, str>,
    /// The `Host` header (or `:authority`) as sent.
    pub host_header: &'a str,
    /// The request came over HTTPS (or says so, when forwarded headers are trusted).
    pub https: bool,
    /// `X-Request-ID`.
    pub request_id: HeaderValue,
    /// The client's address when the real-IP settings read it from a header: the address,
    /// and its text for `X-Real-IP`. `None`: the connection's.
    real_ip: Option<(std::net::IpAddr, String)>,
    /// The host's client-certificate verdict, and whether the certificate is passed on.
    pub client: Option<(ClientCert, bool)>,
    /// The path and query a snippet's `rewrite` gave the request, sent upstream instead.
    pub rewritten: Option<Vec<u8>>,
}

impl Ctx<'_> {
    /// The client's address, as `X-Real-IP` carries it.
    pub fn client_ip(&self) -> &[u8] {
        self.real_ip.as_ref().map_or(self.conn.remote_ip.as_bytes(), |(_, t)| t.as_bytes())
    }

    /// The client's address, as the access lists and limits see it.
    pub fn client_addr(&self) -> std::net::IpAddr {
        self.real_ip.as_ref().map_or(self.conn.remote.ip(), |(ip, _)| *ip)
    }
}

/// A request answered by the proxy itself.
pub(crate) struct Local {
    pub route: RouteId,
    pub status: u16,
    /// For redirects.
    pub location: Option<String>,
    /// The body of a snippet's `return` text; else Sluice's page for the status.
    pub body: Option<bytes::Bytes>,
    pub response: ResponsePlan,
    pub request_id: HeaderValue,
    /// Written to the access log.
    pub log: bool,
    /// The host, when the route is a default one (for the metrics).
    pub default_host: Option<Box<DefaultHost>>,
}

/// A request going to a backend.
pub(crate) struct Forward {
    pub route: RouteId,
    /// The backend picked.
    pub backend: BackendId,
    /// The canary backend, when it was picked (ingress-nginx's alternative upstream).
    pub canary: Option<BackendId>,
    /// The endpoints to try, in order, and when to try the next.
    pub attempts: Attempts,
    pub response: ResponsePlan,
    pub request_id: HeaderValue,
    /// The request came over HTTPS.
    pub https: bool,
    /// Written to the access log.
    pub log: bool,
    /// The URL a copy of the request goes to (`mirror-target`, variables filled in).
    pub mirror: Option<String>,
    /// Its place among its client's requests in flight (`limit-connections`).
    pub permit: Option<sluice_model::Permit>,
    /// The host, when the route is a default one (for the metrics).
    pub default_host: Option<Box<DefaultHost>>,
}

/// What to do with a request.
pub(crate) enum Decision {
    /// Answer it locally. Boxed, as `Forward`: the enum stays a pointer wide.
    Local(Box<Local>),
    /// Send it upstream; its head was written to the [`UpstreamSink`]. Boxed: it is moved
    /// several times on its way to the upstream exchange, a pointer is cheaper to move.
    Forward(Box<Forward>),
    /// The fast path may not carry this route: the general path takes the connection.
    Handoff,
    /// Ask another service first (the auth service of `auth-url`, memcached for
    /// `global-rate-limit`), then [`decide`] again with its answer in [`Resume`]. Only on the
    /// general path: translation keeps such routes off the fast path.
    Authorize(Box<Authorize>),
}

/// What to ask before going on.
pub(crate) enum Ask {
    /// The auth service.
    Auth(access::AuthRequest),
    /// memcached's count of the request's key.
    Global(limits::GlobalCheck),
}

/// A question to another service, and what the life cycle keeps for when it answers.
pub(crate) struct Authorize {
    /// The question.
    pub ask: Ask,
    /// Connect and read timeouts (the route's `proxy-*-timeout`).
    pub connect_timeout: std::time::Duration,
    pub read_timeout: std::time::Duration,
    /// Given back to [`decide`] with the answer.
    pub resume: Resume,
}

/// What a later run of the life cycle takes over from the one that stopped to ask: nothing
/// is charged or asked twice.
pub(crate) struct Resume {
    /// memcached's verdict on `global-rate-limit` (`true`: over the limit), once asked.
    pub global: Option<bool>,
    /// Whether the per-replica limits were charged (their permit is `permit`).
    pub limited: bool,
    pub permit: Option<sluice_model::Permit>,
    /// The address lists' and basic authentication's verdict under `satisfy any`, when they
    /// refused (the status), or `None` when they let the request through.
    pub refused: Option<u16>,
    /// The auth service's answer, once asked.
    pub outcome: Option<access::AuthOutcome>,
    /// The request's ID, as the other service was sent it.
    pub request_id: HeaderValue,
}

/// Runs the phases for one request: `head` read through [`Head`], `host` its `Host` (or
/// `:authority`, validated by the caller), `published` the state loaded for it. A forwarded
/// request's head is written to `sink`. `resume` carries the auth service's answer when a
/// first run stopped to ask it ([`Decision::Authorize`]).
// The caller's state, passed as it is: a struct would only be built to be taken apart.
#[allow(clippy::too_many_arguments)]
pub(crate) fn decide<H: Head>(
    head: &H,
    host: &str,
    conn: &ConnInfo,
    published: &Arc<Published>,
    shared: &Shared,
    carrier: Carrier,
    sink: &mut impl UpstreamSink,
    mut resume: Option<Resume>,
) -> Decision {
    let table = &published.table;

    // 1. Match.
    let normal = normalize_host(host);
    let found = table.lookup_normalized(&normal, head.path());
    let route = found.route;
    if carrier == Carrier::Fast && (!route.fast || head.fast_body() > route.fast_body) {
        return Decision::Handoff;
    }
    let default_host = route.ingress.is_none().then(|| {
        Box::new(DefaultHost {
            named: table.host_index.names(&normal),
            name: normal.as_ref().into(),
        })
    });
    let trust = table.https.use_forwarded_headers;
    let https = conn.tls.is_some()
        || conn.proxied_https
        || (trust && forwarded_proto(head).is_some_and(|p| p.eq_ignore_ascii_case(b"https")));
    // One ID for the whole request: a second run keeps the first's (the auth service saw it).
    let request_id = match (head.header("x-request-id"), &resume) {
        (_, Some(r)) => r.request_id.clone(),
        (Some(v), None) if forward::sane_request_id(v) => {
            HeaderValue::from_bytes(v).unwrap_or_else(|_| forward::fresh_request_id())
        }
        _ => forward::fresh_request_id(),
    };
    let real_ip = real_ip(head, conn, &table.https.real_ip);
    let mut ctx = Ctx {
        table,
        route,
        route_id: found.id,
        conn,
        host: normal,
        host_header: host,
        https,
        request_id,
        real_ip,
        client: None,
        rewritten: None,
    };
    let log = route.policy.log.logs(head.target());
    let answer = |ctx: &Ctx<'_>, status: u16, location: Option<String>, plan: ResponsePlan| {
        Decision::Local(Box::new(Local {
            route: ctx.route_id,
            status,
            location,
            body: None,
            response: plan,
            request_id: ctx.request_id.clone(),
            log,
            default_host: default_host.clone(),
        }))
    };
    let local = |ctx: &Ctx<'_>, status: u16, location: Option<String>| {
        answer(ctx, status, location, ResponsePlan::new(ctx, head, None))
    };

    // 2. Block lists.
    if access::blocked(&ctx, head) {
        return local(&ctx, 403, None);
    }

    // 3. Client certificates. NGINX refuses a TLS request with a bad certificate
    // before anything else; a plain-HTTP one is redirected first (NGINX checks nothing on
    // plain HTTP, and Sluice refuses it after the redirects, rather than serve it unchecked).
    let tls = conn.tls.is_some();
    let checked = tls.then(|| client_certificate(published, &ctx.host, conn));
    if let Some(Err((status, location))) = checked {
        return local(&ctx, status, location);
    }

    // 4. CORS preflight.
    if let Some(cors) = &route.policy.cors
        && access::preflight(cors, head)
    {
        return local(&ctx, 204, None);
    }

    // 5. Redirects: the snippets' `if`, `return` and `rewrite` first (NGINX's rewrite module,
    // in the server block, then the location, before the annotation's `return`), then
    // `app-root`, the `www` redirect, the annotation redirect and the HTTPS redirect.
    if let Some(script) = &route.policy.script {
        match redirect::script(script, &ctx, head) {
            None => {}
            Some(redirect::Scripted::Rewrite(target)) => ctx.rewritten = Some(target),
            Some(redirect::Scripted::Answer(status, location, body)) => {
                let mut local = local(&ctx, status, location);
                if let Decision::Local(l) = &mut local {
                    l.body = body;
                }
                return local;
            }
        }
    }
    if let Some((status, location)) = redirect::redirect(&ctx, head, shared) {
        return local(&ctx, status, Some(location));
    }
    match checked.unwrap_or_else(|| client_certificate(published, &ctx.host, conn)) {
        Ok(client) => ctx.client = client,
        Err((status, location)) => return local(&ctx, status, location),
    }

    // 6. Limits. `global-rate-limit` first (ingress-nginx ran it at the end of its rewrite
    // phase), then the per-replica ones (NGINX's preaccess phase: before the access checks).
    if let Some(global) = &route.policy.global_rate_limit {
        match resume.as_ref().and_then(|r| r.global) {
            Some(true) => return local(&ctx, global.status, None),
            Some(false) => {}
            None => {
                if let Some(check) = limits::global_check(global, &ctx, head) {
                    let limits = &route.policy.limits;
                    return Decision::Authorize(Box::new(Authorize {
                        ask: Ask::Global(check),
                        connect_timeout: limits.connect_timeout,
                        read_timeout: limits.read_timeout,
                        resume: Resume {
                            global: None,
                            limited: false,
                            permit: None,
                            refused: None,
                            outcome: None,
                            request_id: ctx.request_id.clone(),
                        },
                    }));
                }
            }
        }
    }
    let charged = resume.as_mut().filter(|r| r.limited).map(|r| r.permit.take());
    let permit = match (&route.policy.rate, charged) {
        (_, Some(permit)) => permit,
        (None, None) => None,
        (Some(rate), None) => match limits::admit(rate, &ctx, shared) {
            Ok(permit) => permit,
            Err(status) => return local(&ctx, status, None),
        },
    };

    // 7. Access.
    let mut granted: Option<access::AuthOutcome> = None;
    if let Some(access) = &route.policy.access {
        let verdict = match &resume {
            Some(r) if r.outcome.is_some() => access::Verdict::Ask { refused: r.refused },
            _ => access::check(access, &ctx, head),
        };
        let refuse = |status: u16, outcome: Option<&access::AuthOutcome>| {
            let mut plan = ResponsePlan::new(&ctx, head, None);
            if status == 401 {
                if let Some(challenge) = outcome.and_then(|o| o.header("www-authenticate")) {
                    plan.add("www-authenticate", challenge.to_vec());
                } else if let Some(basic) = &access.basic {
                    plan.add("www-authenticate", access::challenge(&basic.realm));
                }
            }
            // `add_header Set-Cookie $auth_cookie`: on the statuses `add_header` covers (the
            // sign-in redirect's 302), on all with `auth-always-set-cookie`.
            if let Some(o) = outcome {
                o.each("set-cookie", |v| plan.add_cookie(v.to_vec()));
            }
            plan
        };
        // NGINX's `error_page 401 = <auth-signin>`: every 401 of the location is redirected,
        // basic authentication's too.
        let signin = access.external.as_ref().and_then(|e| e.signin.as_ref()).map(|signin| {
            let vars = RequestVars { head, ctx: &ctx };
            String::from_utf8_lossy(&signin.to_bytes(&vars)).into_owned()
        });
        match verdict {
            access::Verdict::Pass => {}
            access::Verdict::Refuse(401) if signin.is_some() => {
                return answer(&ctx, 302, signin, refuse(302, None));
            }
            access::Verdict::Refuse(status) => {
                return answer(&ctx, status, None, refuse(status, None));
            }
            access::Verdict::Ask { refused } => {
                let external = access.external.as_ref().expect("asked only with auth-url");
                let Some(outcome) = resume.as_mut().and_then(|r| r.outcome.take()) else {
                    let request = access::auth_request(external, &ctx, head);
                    let limits = &route.policy.limits;
                    return Decision::Authorize(Box::new(Authorize {
                        ask: Ask::Auth(request),
                        connect_timeout: limits.connect_timeout,
                        read_timeout: limits.read_timeout,
                        resume: Resume {
                            global: resume.as_ref().and_then(|r| r.global),
                            limited: true,
                            permit,
                            refused,
                            outcome: None,
                            request_id: ctx.request_id.clone(),
                        },
                    }));
                };
                match access::conclude(&outcome, refused) {
                    Ok(()) => granted = Some(outcome),
                    Err(401) if signin.is_some() => {
                        return answer(&ctx, 302, signin, refuse(302, Some(&outcome)));
                    }
                    Err(status) => {
                        return answer(&ctx, status, None, refuse(status, Some(&outcome)));
                    }
                }
            }
        }
    }

    // 8. Local targets.
    let main = match &route.target {
        Target::Backend(id) => *id,
        Target::Respond { status, .. } => return local(&ctx, *status, None),
        Target::RedirectHost { .. } => unreachable!("answered by the redirect phase"),
    };

    // 9. Pick.
    let Some(pick) = pick::pick(&ctx, head, main) else {
        return local(&ctx, 503, None);
    };

    // 10. The upstream request.
    headers::upstream_request(&ctx, head, &pick, granted.as_ref(), sink);

    let mirror = route.policy.mirror.as_ref().map(|m| {
        let vars = RequestVars { head, ctx: &ctx };
        String::from_utf8_lossy(&m.target.to_bytes(&vars)).into_owned()
    });

    // 11. The response's rules, decided now (they may read the request).
    let mut response = ResponsePlan::new(&ctx, head, pick.set_cookie.clone());
    if let Some(outcome) = &granted {
        // `add_header Set-Cookie $auth_cookie`: the auth service's cookie on the answer.
        outcome.each("set-cookie", |v| response.add_cookie(v.to_vec()));
    }

    // 12. Log.
    Decision::Forward(Box::new(Forward {
        route: ctx.route_id,
        backend: pick.backend,
        canary: pick.canary.then_some(pick.backend),
        attempts: pick.attempts,
        response,
        request_id: ctx.request_id,
        https,
        log,
        mirror,
        permit,
        default_host,
    }))
}

/// The client's address from the header the real-IP settings name (NGINX's realip module),
/// or `None` to keep the connection's.
fn real_ip<H: Head>(
    head: &H,
    conn: &ConnInfo,
    settings: &sluice_model::RealIp,
) -> Option<(std::net::IpAddr, String)> {
    if !settings.from_header {
        return None;
    }
    // Every `X-Forwarded-For` line counts, as NGINX joins them; of another header, the first.
    let mut values: Vec<&[u8]> = Vec::new();
    let every = settings.header == "x-forwarded-for";
    head.each_header(|name, value| {
        if name.eq_ignore_ascii_case(settings.header.as_bytes()) {
            values.push(value);
            return every;
        }
        true
    });
    let ip = settings.client(conn.remote.ip(), &values)?;
    Some((ip, ip.to_string()))
}

/// ingress-nginx's `$best_http_host` when it differs from the `Host`: with
/// `use-forwarded-headers`, the first entry of the client's `X-Forwarded-Host`, as sent
/// (`lua_ingress.lua`). It is the upstream `Host` and the HTTPS redirect's host.
fn forwarded_host<'h, H: Head>(ctx: &Ctx<'_>, head: &'h H) -> Option<&'h [u8]> {
    if !ctx.table.https.use_forwarded_headers {
        return None;
    }
    let value = head.header("x-forwarded-host")?;
    value.split(|&c| c == b',').next()
}

/// The client's `X-Forwarded-Proto`, first value.
fn forwarded_proto<H: Head>(head: &H) -> Option<&[u8]> {
    head.header("x-forwarded-proto")?.split(|&c| c == b',').next().map(<[u8]>::trim_ascii)
}

/// A refused request: its status, and the `Location` of a redirect.
type Refusal = (u16, Option<String>);

/// The client's certificate verdict for the request's host, or the status refusing it (400,
/// or a 302 to `auth-tls-error-page`; 403 for a subject `auth-tls-match-cn` refuses).
/// `Ok(None)` when the host asks for no certificate. The handshake's verdict is reused when
/// the request's host has the connection's check; otherwise (the Host differs from the server
/// name, or the CAs changed since) the presented chain is checked again, so that a client
/// cannot get past a host's check through another host's handshake.
fn client_certificate(
    published: &Published,
    host: &str,
    conn: &ConnInfo,
) -> Result<Option<(ClientCert, bool)>, Refusal> {
    let policy = published.table.tls.policy_for(host) as usize;
    let Some(check) = published.tls.checks.get(policy).cloned().flatten() else { return Ok(None) };
    let verdict = match &conn.tls {
        None => check.inspect(None),
        Some(t) => match &t.checked {
            Some((c, v)) if Arc::ptr_eq(c, &check) => v.clone(),
            _ => check.inspect(Some(&t.presented)),
        },
    };
    if check.refuses(&verdict) {
        // NGINX's `error_page 495 496 = <page>`: a redirect instead of the 400.
        return Err(match check.error_page() {
            Some(page) => (302, Some(page.to_string())),
            None => (400, None),
        });
    }
    if !check.subject_matches(&verdict) {
        return Err((403, None));
    }
    Ok(Some((verdict, check.passes_certificate())))
}

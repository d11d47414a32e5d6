//! The life cycle of one request, in phases (after Pingora's): refuse what NGINX refuses,
//! match the route, redirect plain HTTP to HTTPS, check client certificates, apply the route's
//! policies, pick and forward to an upstream, rewrite the response head (HSTS on HTTPS), stream
//! the body back; the access log and metrics are written when the body ends
//! ([`Record::finish`]).

use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};
use hyper::body::{Body as _, Incoming};
use sluice_model::{Route, Target, normalize_host};
use tokio::time::Instant;

use crate::body::{self, Progress, ProxyBody, RequestBody};
use crate::forward::{self, Forwarding};
use crate::local::{redirect, respond};
use crate::record::{Record, RequestFacts};
use crate::server::ConnInfo;
use crate::tls::client_auth::ClientCert;
use crate::upstream::{self, Failure};
use crate::{Published, Shared, tunnel};

static HSTS: header::HeaderName = header::STRICT_TRANSPORT_SECURITY;

pub(crate) async fn handle(
    req: Request<Incoming>,
    conn: Arc<ConnInfo>,
    shared: &'static Shared,
) -> Result<Response<ProxyBody>, Infallible> {
    // The table (and its TLS side) is loaded once and kept until the response ends, so a
    // configuration swap never changes a request half-way.
    let published = shared.state.load_full();
    let mut response = route_request(req, &conn, shared, &published).await;
    if conn.tls.is_some()
        && let Some(hsts) = published.table.https.hsts.as_deref()
        && let Ok(v) = HeaderValue::from_str(hsts)
    {
        response.headers_mut().insert(HSTS.clone(), v);
    }
    Ok(response)
}

async fn route_request(
    mut req: Request<Incoming>,
    conn: &Arc<ConnInfo>,
    shared: &'static Shared,
    published: &Arc<Published>,
) -> Response<ProxyBody> {
    let start = Instant::now();
    let server = &shared.server_header;
    let table = &published.table;

    // Phase 0: requests NGINX refuses before routing.
    if let Some(status) = refuse(&req) {
        return respond(status, server, None);
    }

    // Phase 1: match.
    let host = match forward::request_host(&req) {
        Some(h) if forward::valid_host(h) => h,
        // HTTP/1.0 may omit Host: the catch-all host serves it, as NGINX's default server.
        None if req.version() == Version::HTTP_10 => "",
        _ => return respond(400, server, None),
    };
    let found = table.lookup(host, req.uri().path());
    let route = found.route;
    let request_id = forward::request_id(req.headers());
    let mut record = Box::new(Record::new(
        shared,
        conn.clone(),
        RequestFacts::of(&req),
        table.clone(),
        found.id,
        start,
        request_id.clone(),
    ));

    // Phase 2: plain HTTP to a host that wants HTTPS.
    let trust_forwarded = table.https.use_forwarded_headers;
    let https =
        conn.tls.is_some() || (trust_forwarded && forward::forwarded_proto(&req) == Some("https"));
    if route.policy.redirect_to_https
        && !https
        && !forward::exempt_from_redirect(&req, &table.https.no_redirect_prefixes)
    {
        let location = https_location(&req, host, route, shared);
        return redirect(table.https.redirect_code, &location, server, record);
    }

    // Phase 3: client certificates, as the request's host asks for them.
    let client = match client_certificate(published, &normalize_host(host), conn) {
        Ok(c) => c,
        Err(status) => return respond(status, server, Some(record)),
    };

    // Phase 4: the route's own answer, or its backend.
    let backend = match &route.target {
        Target::Respond { status, .. } => return respond(*status, server, Some(record)),
        Target::Backend(id) => &table.backends[*id as usize],
    };
    if backend.endpoints.is_empty() {
        return respond(503, server, Some(record));
    }

    // Phase 5: request policies.
    let policy = &route.policy;
    let declared = req.body().size_hint().exact();
    if let (Some(limit), Some(len)) = (policy.max_body_size, declared)
        && len > limit
    {
        // Read what the client is still sending while it reads the 413 (lingering close).
        tokio::spawn(body::drain(req.into_body()));
        return respond(413, server, Some(record));
    }

    // Phase 6: rewrite the request and forward it.
    let upgrade = !backend.protocol.h2() && forward::is_websocket_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let passes_cert = client.as_ref().is_some_and(|(pass, _)| *pass);
    forward::prepare_request(
        &mut req,
        &Forwarding {
            conn,
            request_id: &request_id,
            upgrade,
            https,
            trust_forwarded,
            client: client.as_ref().map(|(_, c)| c),
            pass_certificate: passes_cert,
            upstream: backend.protocol,
            rewrite: policy.rewrite.as_deref(),
        },
    );
    let (parts, incoming) = req.into_parts();
    let progress = (!incoming.is_end_stream()).then(|| Progress::new(start));
    let body = RequestBody::new(incoming, policy.max_body_size, progress.clone());
    let upstream_req = Request::from_parts(parts, body);
    let forwarded =
        upstream::forward(upstream_req, backend, policy, progress.as_ref(), upgrade, &mut record)
            .await;
    let forwarded = match forwarded {
        Ok(f) => f,
        Err(failure) => {
            if failure != Failure::TooLarge {
                shared.metrics.upstream_error(backend, failure.label());
            }
            return respond(failure.status(), server, Some(record));
        }
    };

    // Phase 7: the response head.
    let mut response = forwarded.response;
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching && let Some(client) = client_upgrade {
        tunnel::spawn_upgrade(client, hyper::upgrade::on(&mut response), policy.read_timeout);
    }
    record.status = response.status().as_u16();
    record.connection = forwarded.connection;
    let (mut parts, body) = response.into_parts();
    forward::prepare_response(&mut parts.headers, server, switching);
    if switching {
        // The tunnel carries the bytes from here; the record is written now.
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, ProxyBody::local(Default::default(), Some(record)));
    }

    // Phase 8: stream the body back; the record is written when it ends.
    Response::from_parts(parts, ProxyBody::upstream(body, policy.read_timeout, record))
}

/// The status for a request NGINX would refuse outright, if any: `CONNECT` (405; a proxied
/// 2xx would turn the client connection into a tunnel), a target that is not a path such as
/// `OPTIONS *` (400), two `Host` lines (400), a transfer coding other than `chunked` that the
/// upstream could not be told about (501).
fn refuse<B>(req: &Request<B>) -> Option<u16> {
    if req.method() == Method::CONNECT {
        return Some(405);
    }
    if !req.uri().path().starts_with('/') {
        return Some(400);
    }
    if forward::duplicate_host(req) {
        return Some(400);
    }
    if forward::unsupported_transfer_coding(req) {
        return Some(501);
    }
    None
}

/// The client's certificate verdict for the request's host, or the status refusing it.
/// `Ok(None)` when the host asks for no certificate. The handshake's verdict is reused when
/// the request's host has the connection's check; otherwise (the Host differs from the server
/// name, or the CAs changed since) the presented chain is checked again, so that a client
/// cannot get past a host's check through another host's handshake.
fn client_certificate(
    published: &Published,
    host: &str,
    conn: &ConnInfo,
) -> Result<Option<(bool, ClientCert)>, u16> {
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
        return Err(400);
    }
    Ok(Some((check.passes_certificate(), verdict)))
}

/// `https://host/uri` for a redirect, as ingress-nginx builds it: without the port the client
/// used (unless `use-port-in-redirects`: then Sluice's HTTPS port), and the request URI without
/// its trailing slash unless `preserve-trailing-slash`.
fn https_location<B>(req: &Request<B>, host: &str, route: &Route, shared: &Shared) -> String {
    let name = forward::without_port(host);
    let port = match shared.https_port() {
        Some(p) if route.policy.port_in_redirect => format!(":{p}"),
        _ => String::new(),
    };
    let mut uri = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    if !route.policy.preserve_trailing_slash && uri.ends_with('/') {
        uri.pop();
    }
    format!("https://{name}{port}{uri}")
}

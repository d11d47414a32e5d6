//! The general path: hyper carries the request, and [`pipeline::decide`] decides what becomes
//! of it, as it does for the fast path. What only this path does follows the decision:
//! request bodies (their limit and buffering), upgrades, HTTP/2 and TLS towards backends,
//! error pages from the default backend (`custom-http-errors`) and mirrors. The access log
//! and metrics are written when the response body ends ([`Record::finish`]).

use std::sync::Arc;

use http::request::Parts;
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version, header,
};
use hyper::body::{Body as _, Incoming};
use sluice_model::{Backend, BackendId, Route, RoutingTable, Target};
use tokio::time::Instant;

use crate::body::{self, BUFFER_LIMIT, Progress, ProxyBody, RequestBody, Unread};
use crate::local::{respond, respond_with};
use crate::pipeline::SET_BY_SLUICE;
use crate::pipeline::{
    self, Attempts, Carrier, Decision, Edit, Failure, HyperHead, Local, Reply, ResponsePlan,
    UpstreamSink,
};
use crate::record::{Record, RequestFacts};
use crate::server::ConnInfo;
use crate::{
    Published, Shared, auth, forward, head_limits, local, mirror, throttle, tunnel, upstream,
};

/// A request whose connection is closed without an answer, as NGINX closes it for a client
/// that timed out sending its body (`client-body-timeout`; logged 408). Marks the response
/// that stands for it; hyper closes the connection (HTTP/1) or resets the stream (HTTP/2) on
/// this error.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cut;

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("client timed out; connection closed")
    }
}

impl std::error::Error for Cut {}

pub(crate) async fn handle(
    req: Request<Incoming>,
    conn: Arc<ConnInfo>,
    shared: &'static Shared,
) -> Result<Response<ProxyBody>, Cut> {
    // The table (and its TLS side) is loaded once and kept until the response ends, so a
    // configuration swap never changes a request half-way.
    let published = shared.state.load_full();
    let response = route_request(req, &conn, shared, &published).await;
    if response.extensions().get::<Cut>().is_some() {
        // Dropping the response writes its record (status 408).
        return Err(Cut);
    }
    Ok(response)
}

/// The connection is closed without an answer; the record logs 408.
fn cut(server: &HeaderValue, record: Box<Record>) -> Response<ProxyBody> {
    let mut response = respond(408, server, Some(record));
    response.extensions_mut().insert(Cut);
    response
}

/// The upstream request's head as the life cycle writes it, applied to hyper's request.
#[derive(Default)]
struct HyperSink {
    target: Option<Vec<u8>>,
    http10: bool,
    drop: Vec<HeaderName>,
    /// Each header set, its value a range of `values`: one buffer for all of them, which the
    /// header values then share, instead of an allocation per value.
    set: Vec<(HeaderName, std::ops::Range<usize>)>,
    values: Vec<u8>,
}

/// The names the life cycle sets besides [`SET_BY_SLUICE`]'s, made without allocating as
/// those are ([`HeaderName::from_bytes`] copies a name that is not one of the standard ones).
const ALSO_SET: [&str; 11] = [
    "host",
    "connection",
    "x-original-forwarded-for",
    "x-original-forwarded-host",
    "x-forwarded-prefix",
    "x-original-uri",
    "x-original-url",
    "x-original-method",
    "x-sent-from",
    "x-auth-request-redirect",
    "x-code",
];

fn set_name(name: &str) -> Option<HeaderName> {
    match SET_BY_SLUICE.iter().chain(&ALSO_SET).find(|n| **n == name) {
        Some(n) => Some(HeaderName::from_static(n)),
        None => HeaderName::from_bytes(name.as_bytes()).ok(),
    }
}

impl UpstreamSink for HyperSink {
    fn request_line(&mut self, _method: &str, target: &[u8], http10: bool) {
        self.target = Some(target.to_vec());
        self.http10 = http10;
    }

    fn keep(&mut self, _name: &[u8], _value: &[u8]) {}

    fn drop(&mut self, name: &[u8]) {
        if let Ok(n) = HeaderName::from_bytes(name) {
            self.drop.push(n);
        }
    }

    fn set(&mut self, name: &str, value: &[u8]) {
        if let Some(n) = set_name(name) {
            let start = self.values.len();
            self.values.extend_from_slice(value);
            self.set.push((n, start..self.values.len()));
        }
    }
}

impl HyperSink {
    /// Room for what the life cycle usually sets (the forwarding headers), so that the
    /// buffers do not grow step by step.
    fn new() -> Self {
        Self { set: Vec::with_capacity(12), values: Vec::with_capacity(256), ..Self::default() }
    }

    fn apply(self, parts: &mut Parts) {
        for name in self.drop {
            parts.headers.remove(name);
        }
        // One growth of the map, not one per few headers.
        parts.headers.reserve(self.set.len());
        let values = bytes::Bytes::from(self.values);
        for (name, range) in self.set {
            if let Ok(value) = HeaderValue::from_maybe_shared(values.slice(range)) {
                parts.headers.insert(name, value);
            }
        }
        if let Some(target) = self.target
            && let Ok(pq) = http::uri::PathAndQuery::try_from(target)
        {
            let mut uri = http::uri::Parts::default();
            uri.path_and_query = Some(pq);
            if let Ok(u) = http::Uri::from_parts(uri) {
                parts.uri = u;
            }
        }
        if self.http10 {
            parts.version = Version::HTTP_10;
        }
    }
}

/// What becomes of one request. The branches off the common path (the auth subrequest, a
/// global rate limit's memcached question, holding the body, local answers and error pages)
/// are awaited boxed: inline, their futures would make every request's future four times
/// larger, and hyper copies that future when it boxes and spawns it.
async fn route_request(
    mut req: Request<Incoming>,
    conn: &Arc<ConnInfo>,
    shared: &'static Shared,
    published: &Arc<Published>,
) -> Response<ProxyBody> {
    let start = Instant::now();
    let server = &shared.server_header;

    // Requests NGINX refuses before routing.
    if let Some(status) = refuse(&req) {
        return respond(status, server, None);
    }
    let connections = &published.table.https.connections;
    if let Some(status) = head_limits::check_request(&req, &connections.header_buffers) {
        // 414, or 400 with NGINX's page for a header too large; the connection closes.
        let page = local::page(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST));
        let status = if status == head_limits::HEADER_TOO_LARGE { 400 } else { status };
        let mut response = respond_with(status, Some(page), server, None);
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    let host = match forward::request_host(&req) {
        Some(h) if forward::valid_host(h) => h.to_string(),
        // HTTP/1.0 may omit Host: the catch-all host serves it, as NGINX's default server.
        None if req.version() == Version::HTTP_10 => String::new(),
        _ => return respond(400, server, None),
    };
    // HTTP/2 carries the host in `:authority`: an HTTP/1.1 upstream needs a Host header.
    if let Some(authority) = req.uri().authority()
        && !req.headers().contains_key(header::HOST)
        && let Ok(v) = HeaderValue::from_str(authority.as_str())
    {
        req.headers_mut().insert(header::HOST, v);
    }
    let websocket = forward::is_websocket_upgrade(&req);
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, incoming) = req.into_parts();
    let facts = RequestFacts::of_parts(&parts, &incoming);
    let upgrade_value = parts.headers.get(header::UPGRADE).cloned();
    let te_trailers = parts
        .headers
        .get_all(header::TE)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));

    let mut sink = HyperSink::new();
    let mut resume = None;
    let decision = loop {
        let decision = {
            let head = HyperHead { parts: &parts };
            pipeline::decide(
                &head,
                &host,
                conn,
                published,
                shared,
                Carrier::General,
                &mut sink,
                resume,
            )
        };
        // The life cycle stopped to ask another service (the auth service, memcached): ask,
        // then run it again with the answer (it goes on from where it stopped).
        let Decision::Authorize(ask) = decision else { break decision };
        let ask = *ask;
        let mut next = ask.resume;
        match &ask.ask {
            pipeline::Ask::Auth(request) => {
                let outcome =
                    Box::pin(auth::ask(request, ask.connect_timeout, ask.read_timeout)).await;
                next.outcome = Some(outcome);
            }
            pipeline::Ask::Global(check) => {
                next.global = Some(Box::pin(throttle::limited(check)).await)
            }
        }
        resume = Some(next);
        sink = HyperSink::new();
    };
    let table = &published.table;
    let mut forward = match decision {
        Decision::Forward(f) => f,
        Decision::Local(mut local) => {
            let mut record = Box::new(Record::new(
                shared,
                conn.clone(),
                facts,
                table.clone(),
                local.route,
                start,
                local.request_id.clone(),
            ));
            record.log = local.log;
            record.default_host = local.default_host.take();
            let errors = table.routes[local.route as usize]
                .policy
                .errors
                .is_some()
                .then(|| error_request(&parts, &local.request_id, conn, &host));
            return Box::pin(answer_local(local, errors, incoming, table, shared, record)).await;
        }
        Decision::Handoff => unreachable!("the general path carries every route"),
        Decision::Authorize(_) => unreachable!("asked above"),
    };
    let route = &table.routes[forward.route as usize];
    let backend = &table.backends[forward.backend as usize];
    let mut record = Box::new(Record::new(
        shared,
        conn.clone(),
        facts,
        table.clone(),
        forward.route,
        start,
        forward.request_id.clone(),
    ));
    record.backend = Some(forward.backend);
    record.canary = forward.canary;
    record.permit = forward.permit.take();
    record.log = forward.log;
    record.default_host = forward.default_host.take();
    let errors = route
        .policy
        .errors
        .is_some()
        .then(|| error_request(&parts, &forward.request_id, conn, &host));

    // The request body: its declared size, then, with request buffering, the body itself.
    let limits = &route.policy.limits;
    let declared = incoming.size_hint().exact();
    if let (Some(limit), Some(len)) = (limits.max_body_size, declared)
        && len > limit
    {
        // Read what the client is still sending while it reads the 413 (lingering close).
        tokio::spawn(body::drain(incoming));
        return Box::pin(answer(413, forward.response, errors, table, route, shared, record)).await;
    }
    let upgrade = websocket && !backend.protocol.h2();
    let progress = (!incoming.is_end_stream()).then(|| Progress::new(start));
    // NGINX's `mirror_request_body on` reads the whole body before the copy and the main
    // request start, whatever `proxy_request_buffering` says: a mirrored body is held too, or
    // the copy would go without it.
    let hold = route.policy.upstream.request_buffering
        || (forward.mirror.is_some()
            && route.policy.mirror.as_ref().is_some_and(|m| m.request_body));
    let body = if hold && !incoming.is_end_stream() && !upgrade {
        let hold = limits.max_body_size.unwrap_or(u64::MAX).min(BUFFER_LIMIT);
        let timeout = connections.client_body_timeout;
        let read =
            RequestBody::buffered(incoming, limits.max_body_size, hold, progress.clone(), timeout);
        match Box::pin(read).await {
            Ok(b) => b,
            Err(Unread::TooLarge) => {
                return Box::pin(answer(
                    413,
                    forward.response,
                    errors,
                    table,
                    route,
                    shared,
                    record,
                ))
                .await;
            }
            Err(Unread::Timeout) => return cut(server, record),
            Err(Unread::Broken) => return respond(400, server, Some(record)),
        }
    } else {
        let timeout = connections.client_body_timeout;
        RequestBody::new(incoming, limits.max_body_size, progress.clone(), timeout)
    };

    // A mirror gets the client's request as it came.
    let mirror_head = forward.mirror.as_ref().map(|_| {
        let mut headers = parts.headers.clone();
        for name in pipeline::HOP_BY_HOP {
            headers.remove(name);
        }
        let uri = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        (parts.method.clone(), headers, uri)
    });
    // The upstream request's head, as the life cycle wrote it, in hyper's terms.
    sink.apply(&mut parts);
    prepare_for(&mut parts, backend, upgrade.then_some(upgrade_value).flatten(), te_trailers);
    if let Some(len) = body.held_len() {
        parts.headers.remove(header::TRANSFER_ENCODING);
        parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    if let (Some(m), Some(url), Some((method, headers, uri))) =
        (&route.policy.mirror, forward.mirror, mirror_head)
    {
        let body = if m.request_body { body.held_bytes().flatten() } else { None };
        let copy = mirror::Copy { url, host: m.host.clone(), method, headers, body, uri };
        mirror::send(copy, shared);
    }
    let upstream_req = Request::from_parts(parts, body);
    let mut attempts = forward.attempts;
    let forwarded = upstream::forward(
        upstream_req,
        backend,
        &mut attempts,
        limits,
        progress.as_ref(),
        upgrade,
        &mut record,
    )
    .await;
    let mut plan = forward.response;
    if let Some(key) = attempts.repinned() {
        let ua =
            errors.as_ref().and_then(|e| e.headers.get(header::USER_AGENT)).map(|v| v.as_bytes());
        plan.set_cookie = pipeline::repin_cookie(backend, key, &route.path, forward.https, ua);
    }
    let forwarded = match forwarded {
        Ok(f) => f,
        // The client stopped sending its body: NGINX closes without an answer.
        Err(_) if progress.as_ref().is_some_and(|p| p.client_timed_out()) => {
            return cut(server, record);
        }
        Err(failure) => {
            if failure != Failure::TooLarge {
                shared.metrics.upstream_error(backend, failure.label());
            }
            return Box::pin(answer(failure.status(), plan, errors, table, route, shared, record))
                .await;
        }
    };

    // The response head.
    let mut response = forwarded.response;
    let status = response.status().as_u16();
    if let Some(errors) = errors
        && let Some(pages) = &route.policy.errors
        && pages.intercept_upstream
        && pages.codes.contains(&status)
    {
        drop(response);
        return Box::pin(error_page(status, plan, errors, table, route, shared, record)).await;
    }
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching && let Some(client) = client_upgrade {
        let upstream = hyper::upgrade::on(&mut response);
        tunnel::spawn_upgrade(client, upstream, limits.read_timeout, conn.drain.clone());
    }
    record.status = status;
    record.connection = forwarded.connection;
    let (mut head, body) = response.into_parts();
    forward::prepare_response(&mut head.headers, switching);
    apply_response(status, &mut head.headers, &plan, route, table, &shared.server_header, true);
    if switching {
        // The tunnel carries the bytes from here; the record is written now.
        head.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(head, ProxyBody::local(Default::default(), Some(record)));
    }
    // The body streams back; the record is written when it ends.
    let body = ProxyBody::upstream(body, record);
    Response::from_parts(head, body.throttled(route.policy.bandwidth))
}

/// The upstream request in the terms of `backend`'s protocol: HTTP/2 carries scheme and
/// authority in the URI and no `Host`; gRPC keeps `TE: trailers`; a WebSocket upgrade keeps
/// its `Upgrade` and `Connection`.
fn prepare_for(
    parts: &mut Parts,
    backend: &Backend,
    upgrade: Option<HeaderValue>,
    te_trailers: bool,
) {
    let protocol = backend.protocol;
    if protocol.h2() {
        let mut uri = http::uri::Parts::default();
        uri.scheme =
            Some(if protocol.tls() { http::uri::Scheme::HTTPS } else { http::uri::Scheme::HTTP });
        uri.authority = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse().ok());
        uri.path_and_query = parts.uri.path_and_query().cloned();
        if let Ok(u) = http::Uri::from_parts(uri) {
            parts.uri = u;
        }
        parts.version = Version::HTTP_2;
        parts.headers.remove(header::HOST);
        if te_trailers {
            parts.headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
    } else if parts.version != Version::HTTP_10 {
        parts.version = Version::HTTP_11;
    }
    if let Some(v) = upgrade {
        parts.headers.insert(header::UPGRADE, v);
        parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Applies the response phase to a response head: the upstream's headers edited (when
/// `upstream`), then Sluice's set.
fn apply_response(
    status: u16,
    headers: &mut HeaderMap,
    plan: &ResponsePlan,
    route: &Route,
    table: &RoutingTable,
    server: &HeaderValue,
    upstream: bool,
) {
    let rules = &route.policy.response;
    // A shared copy of the value (no allocation), read while the map is edited.
    let content_type = headers.get(header::CONTENT_TYPE).cloned();
    let reply = Reply { status, content_type: content_type.as_ref().map(|v| v.as_bytes()) };
    if upstream {
        // The names with a value to drop or rewrite; most responses have none.
        let mut edited: Vec<HeaderName> = Vec::new();
        for (name, value) in headers.iter() {
            if edited.last() != Some(name)
                && plan.edit(rules, reply, name.as_str().as_bytes(), value.as_bytes()) != Edit::Keep
            {
                edited.push(name.clone());
            }
        }
        // Each such name's values are rebuilt in their order, as NGINX passes several
        // `Set-Cookie` lines, rewritten or not.
        for name in edited {
            let header::Entry::Occupied(entry) = headers.entry(name) else { continue };
            let (name, drained) = entry.remove_entry_mult();
            let values: Vec<HeaderValue> = drained.collect();
            for value in values {
                let value =
                    match plan.edit(rules, reply, name.as_str().as_bytes(), value.as_bytes()) {
                        Edit::Keep => value,
                        Edit::Drop => continue,
                        Edit::Replace(v) => match HeaderValue::from_bytes(&v) {
                            Ok(v) => v,
                            Err(_) => continue,
                        },
                    };
                headers.append(&name, value);
            }
        }
    }
    plan.each_set(rules, reply, table.https.hsts.as_deref(), server.as_bytes(), |name, value| {
        if let (Ok(n), Ok(v)) =
            (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(value))
        {
            if n == header::SET_COOKIE {
                headers.append(n, v);
            } else {
                headers.insert(n, v);
            }
        }
    });
}

/// A local answer of the life cycle: its page (or redirect), with the response phase's
/// headers; replaced by an error page when the route intercepts its status.
async fn answer_local(
    local: Box<Local>,
    errors: Option<ErrorRequest>,
    incoming: Incoming,
    table: &Arc<RoutingTable>,
    shared: &'static Shared,
    record: Box<Record>,
) -> Response<ProxyBody> {
    if !incoming.is_end_stream() {
        // Read what the client is still sending while it reads the answer (lingering close).
        tokio::spawn(body::drain(incoming));
    }
    let route = &table.routes[local.route as usize];
    if local.location.is_some() || local.body.is_some() {
        let body = local.body.clone();
        let mut resp = respond_with(local.status, body, &shared.server_header, Some(record));
        apply_response(
            local.status,
            resp.headers_mut(),
            &local.response,
            route,
            table,
            &shared.server_header,
            false,
        );
        if let Some(v) = local.location.as_deref().and_then(|l| HeaderValue::from_str(l).ok()) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        return resp;
    }
    answer(local.status, local.response, errors, table, route, shared, record).await
}

/// Sluice's own error answer `status` on `route`, or the default backend's error page when
/// the route intercepts it (`custom-http-errors`).
async fn answer(
    status: u16,
    plan: ResponsePlan,
    errors: Option<ErrorRequest>,
    table: &Arc<RoutingTable>,
    route: &Route,
    shared: &'static Shared,
    record: Box<Record>,
) -> Response<ProxyBody> {
    if let Some(errors) = errors
        && route.policy.errors.as_ref().is_some_and(|p| p.codes.contains(&status))
    {
        return error_page(status, plan, errors, table, route, shared, record).await;
    }
    let mut resp = respond(status, &shared.server_header, Some(record));
    apply_response(status, resp.headers_mut(), &plan, route, table, &shared.server_header, false);
    resp
}

/// What an error page request carries of the client's request.
struct ErrorRequest {
    method: Method,
    /// The client's headers (hop-by-hop ones left out).
    headers: HeaderMap,
    /// `X-Original-URI`.
    original_uri: String,
    request_id: HeaderValue,
    client_ip: Vec<u8>,
    host: String,
}

/// The error page request's makings, for a route with `custom-http-errors`.
fn error_request(
    parts: &Parts,
    request_id: &HeaderValue,
    conn: &ConnInfo,
    host: &str,
) -> ErrorRequest {
    let mut headers = parts.headers.clone();
    for name in pipeline::HOP_BY_HOP {
        headers.remove(name);
    }
    ErrorRequest {
        method: parts.method.clone(),
        headers,
        original_uri: parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        request_id: request_id.clone(),
        client_ip: conn.remote_ip.as_bytes().to_vec(),
        host: host.to_string(),
    }
}

/// The error page for `status`, from the route's `default-backend` (when it has ready
/// endpoints) or else the global default backend, as ingress-nginx's `@custom_*` locations
/// ask for it. Without a default backend, the built-in one answers (a 404 page).
async fn error_page(
    status: u16,
    plan: ResponsePlan,
    errors: ErrorRequest,
    table: &Arc<RoutingTable>,
    route: &Route,
    shared: &'static Shared,
    mut record: Box<Record>,
) -> Response<ProxyBody> {
    let server = &shared.server_header;
    let fallback = route.fallback.filter(|&f| !table.backends[f as usize].endpoints.is_empty());
    let id: BackendId = match (fallback, &table.global_default().target) {
        (Some(id), _) => id,
        (None, Target::Backend(id)) => *id,
        (None, Target::Respond { status, .. }) => {
            return respond(*status, server, Some(record));
        }
        (None, Target::RedirectHost { .. }) => return respond(404, server, Some(record)),
    };
    let backend = &table.backends[id as usize];
    if backend.endpoints.is_empty() {
        return respond(503, server, Some(record));
    }
    let query = errors.original_uri.split_once('?').map(|(_, q)| q);
    let target = match query {
        Some(q) => format!("/?{q}"),
        None => "/".to_string(),
    };
    let mut req = Request::new(RequestBody::empty());
    *req.method_mut() = errors.method;
    *req.uri_mut() = target.parse().unwrap_or_else(|_| http::Uri::from_static("/"));
    *req.headers_mut() = errors.headers;
    let headers = req.headers_mut();
    let mut set = |name: &str, value: &[u8]| {
        if let (Ok(n), Ok(v)) =
            (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(value))
        {
            headers.insert(n, v);
        }
    };
    set("x-code", status.to_string().as_bytes());
    set("x-original-uri", errors.original_uri.as_bytes());
    set("x-request-id", errors.request_id.as_bytes());
    set("x-forwarded-for", &errors.client_ip);
    set("host", errors.host.as_bytes());
    let accept = req.headers().get(header::ACCEPT).cloned();
    pipeline::error_context(table, route, accept.as_ref().map(|v| v.as_bytes()), |name, value| {
        let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else { return };
        // NGINX's `proxy_set_header` with an empty value (`X-Format $http_accept` for a
        // request without `Accept`) passes no such header at all, not an empty one.
        if value.is_empty() {
            req.headers_mut().remove(n);
        } else if let Ok(v) = HeaderValue::from_bytes(value) {
            req.headers_mut().insert(n, v);
        }
    });
    headers_for_body(req.headers_mut());
    let mut attempts = Attempts::for_error_page(backend);
    let limits = &route.policy.limits;
    record.backend = Some(id);
    match upstream::forward(req, backend, &mut attempts, limits, None, false, &mut record).await {
        Ok(forwarded) => {
            let response = forwarded.response;
            record.status = response.status().as_u16();
            record.connection = forwarded.connection;
            let (mut head, body) = response.into_parts();
            forward::prepare_response(&mut head.headers, false);
            apply_response(
                head.status.as_u16(),
                &mut head.headers,
                &plan,
                route,
                table,
                server,
                false,
            );
            Response::from_parts(head, ProxyBody::upstream(body, record))
        }
        Err(failure) => respond(failure.status(), server, Some(record)),
    }
}

/// An error page request has no body: its framing headers go.
fn headers_for_body(headers: &mut HeaderMap) {
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::TRANSFER_ENCODING);
    headers.remove(header::EXPECT);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `make` would return, without running anything.
    fn future_size<F: Future>(_make: impl FnOnce() -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn the_names_set_without_allocating_are_valid() {
        for name in SET_BY_SLUICE.iter().chain(&ALSO_SET) {
            assert_eq!(set_name(name).unwrap().as_str(), *name);
        }
        assert_eq!(set_name("x-custom").unwrap().as_str(), "x-custom");
        assert!(set_name("bad name").is_none());
    }

    /// hyper moves each request's future into a box (and [`crate::server`] boxes it first so
    /// that only a pointer moves after): every byte of it is copied per request. The cold
    /// branches are boxed apart to keep it small (6.2 KiB when this was written; 9 KiB with
    /// the upstream leg's parse buffer and hyper's client futures inline).
    #[test]
    #[allow(unreachable_code)]
    fn a_request_future_stays_small() {
        let size = future_size(|| handle(unreachable!(), unreachable!(), unreachable!()));
        assert!(size < 7 * 1024, "handle's future is {size} bytes");
    }
}

//! The life cycle of one request, in phases (after Pingora's): match the route, apply the
//! route's policies, pick and forward to an upstream, rewrite the response head, stream the
//! body back; the access log and metrics are written when the body ends ([`Record::finish`]).

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, Version, header};
use hyper::body::{Body as _, Incoming};
use sluice_model::Target;
use tokio::time::Instant;

use crate::Shared;
use crate::body::{self, Progress, ProxyBody, RequestBody};
use crate::forward;
use crate::local::respond;
use crate::record::Record;
use crate::server::ConnInfo;
use crate::tunnel;
use crate::upstream::{self, Failure};

pub(crate) async fn handle(
    mut req: Request<Incoming>,
    conn: Arc<ConnInfo>,
    shared: &'static Shared,
) -> Result<Response<ProxyBody>, Infallible> {
    let start = Instant::now();
    let server = &shared.server_header;

    // Phase 0: requests NGINX refuses before routing.
    if let Some(status) = refuse(&req) {
        return Ok(respond(status, server, None));
    }

    // Phase 1: match. The table is loaded once and kept until the response ends, so a
    // configuration swap never changes a request half-way.
    let host = match forward::request_host(&req) {
        Some(h) if forward::valid_host(h) => h,
        // HTTP/1.0 may omit Host: the catch-all host serves it, as NGINX's default server.
        None if req.version() == Version::HTTP_10 => "",
        _ => return Ok(respond(400, server, None)),
    };
    let table = shared.table.load_full();
    let found = table.lookup(host, req.uri().path());
    let route = found.route;
    let request_id = forward::request_id(req.headers());
    let mut record = Box::new(Record::new(
        shared,
        conn.clone(),
        &req,
        table.clone(),
        found.id,
        start,
        request_id.clone(),
    ));

    // Phase 2: the route's own answer, or its backend.
    let backend = match &route.target {
        Target::Respond { status, .. } => return Ok(respond(*status, server, Some(record))),
        Target::Backend(id) => &table.backends[*id as usize],
    };
    if backend.endpoints.is_empty() {
        return Ok(respond(503, server, Some(record)));
    }

    // Phase 3: request policies.
    let policy = &route.policy;
    let declared = req.body().size_hint().exact();
    if let (Some(limit), Some(len)) = (policy.max_body_size, declared)
        && len > limit
    {
        // Read what the client is still sending while it reads the 413 (lingering close).
        tokio::spawn(body::drain(req.into_body()));
        return Ok(respond(413, server, Some(record)));
    }

    // Phase 4: rewrite the request and forward it.
    let upgrade = forward::is_websocket_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    forward::prepare_request(&mut req, &conn, &request_id, upgrade);
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
            return Ok(respond(failure.status(), server, Some(record)));
        }
    };

    // Phase 5: the response head.
    let mut response = forwarded.response;
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching && let Some(client) = client_upgrade {
        tunnel::spawn(client, hyper::upgrade::on(&mut response), policy.read_timeout);
    }
    record.status = response.status().as_u16();
    record.connection = forwarded.connection;
    let (mut parts, body) = response.into_parts();
    forward::prepare_response(&mut parts.headers, server, switching);
    if switching {
        // The tunnel carries the bytes from here; the record is written now.
        parts.headers.remove(header::CONTENT_LENGTH);
        return Ok(Response::from_parts(parts, ProxyBody::local(Default::default(), Some(record))));
    }

    // Phase 6: stream the body back; the record is written when it ends.
    Ok(Response::from_parts(parts, ProxyBody::upstream(body, policy.read_timeout, record)))
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

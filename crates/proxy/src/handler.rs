//! The life cycle of one request, in phases (after Pingora's): match the route, apply the
//! route's policies, pick and forward to an upstream, rewrite the response head, stream the
//! body back; the access log and metrics are written when the body ends ([`Record::finish`]).

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response, StatusCode, header};
use hyper::body::{Body as _, Incoming};
use sluice_model::Target;
use tokio::time::Instant;

use crate::Shared;
use crate::body::{Progress, ProxyBody, RequestBody};
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

    // Phase 1: match. The table is loaded once and kept until the response ends, so a
    // configuration swap never changes a request half-way.
    let Some(host) = forward::request_host(&req).filter(|h| forward::valid_host(h)) else {
        // NGINX answers 400 to an HTTP/1.1 request without a (valid) Host.
        return Ok(respond(400, server, None));
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
        return Ok(respond(413, server, Some(record)));
    }

    // Phase 4: rewrite the request and forward it.
    let upgrade = forward::is_websocket_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    forward::prepare_request(&mut req, &conn, &request_id, upgrade);
    let (parts, body) = req.into_parts();
    let has_body = !body.is_end_stream();
    let progress = has_body.then(|| Progress::new(start));
    let body = RequestBody::new(body, policy.max_body_size, progress.clone());
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

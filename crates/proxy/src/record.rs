//! What the proxy remembers about one request, from its arrival to the end of its response:
//! enough for the access log line and the metrics, written once in [`Record::finish`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{HeaderValue, Method, Uri, Version, header};
use sluice_model::{BackendId, RouteId, RoutingTable, Target};
use tokio::time::Instant;

use crate::Shared;
use crate::pool::{self, PoolKey, Pooled};
use crate::server::ConnInfo;

/// One try of one upstream endpoint.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attempt {
    pub addr: SocketAddr,
    /// The upstream's status, or 502/504 when no response head arrived, as NGINX logs it.
    pub status: u16,
    /// Whether a response head arrived.
    pub answered: bool,
    pub started: Instant,
    /// Time to the response head, or to the failure.
    pub elapsed: Duration,
}

/// The request's facts, in the order the access log needs them.
pub(crate) struct Record {
    pub shared: &'static Shared,
    pub start: Instant,
    pub conn: Arc<ConnInfo>,
    pub table: Arc<RoutingTable>,
    pub route: RouteId,
    /// The backend the request went to (its route's, or a canary or `default-backend`).
    pub backend: Option<BackendId>,
    /// The canary backend, when it was picked (`$proxy_alternative_upstream_name`).
    pub canary: Option<BackendId>,
    /// Written to the access log (`enable-access-log`, `skip-access-log-urls`).
    pub log: bool,
    /// The request's head, as the log and metrics need it.
    pub request: RequestFacts,
    pub request_id: HeaderValue,
    pub status: u16,
    pub bytes_sent: u64,
    /// Up to four tries; more are counted but not listed.
    pub attempts: [Option<Attempt>; 4],
    pub attempt_count: usize,
    /// When the first upstream try started, for `$upstream_response_time`.
    pub upstream_start: Option<Instant>,
    /// The pooled upstream connection to give back once the response is read whole.
    pub connection: Option<(PoolKey, Pooled)>,
    /// Whether the response body was delivered whole.
    pub complete: bool,
    /// The request's place among its client's requests in flight (`limit-connections`),
    /// given back when the record is dropped, at the end of the response.
    pub permit: Option<sluice_model::Permit>,
    /// The host of a request no Ingress path took, for the metrics.
    pub default_host: Option<Box<DefaultHost>>,
}

/// The host of a request that went to the default backend, for the metrics (ingress-nginx
/// counts such requests under their host when an Ingress names it).
#[derive(Clone, Debug)]
pub(crate) struct DefaultHost {
    /// The host, normalised (lower case, no port).
    pub name: Box<str>,
    /// An Ingress rule names it (the request matched none of its paths).
    pub named: bool,
}

/// What the access log and metrics need from a request's head.
pub(crate) struct RequestFacts {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub referer: Option<HeaderValue>,
    pub user_agent: Option<HeaderValue>,
    /// Request line and header bytes, approximately as NGINX's `$request_length` counts them.
    pub request_length: u64,
}

impl RequestFacts {
    /// The facts of a request hyper parsed (its length estimated from the parsed head, plus
    /// the body's declared length, as NGINX's `$request_length` counts it).
    pub(crate) fn of_parts<B: http_body::Body>(parts: &Parts, body: &B) -> Self {
        let headers = &parts.headers;
        let request_length = parts.method.as_str().len()
            + parts.uri.path_and_query().map_or(1, |p| p.as_str().len())
            + 12
            + headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>()
            + 2;
        let body = body.size_hint().exact().unwrap_or(0);
        Self {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            referer: headers.get(header::REFERER).cloned(),
            user_agent: headers.get(header::USER_AGENT).cloned(),
            request_length: request_length as u64 + body,
        }
    }
}

impl Record {
    pub(crate) fn new(
        shared: &'static Shared,
        conn: Arc<ConnInfo>,
        request: RequestFacts,
        table: Arc<RoutingTable>,
        route: RouteId,
        start: Instant,
        request_id: HeaderValue,
    ) -> Self {
        Self {
            shared,
            start,
            conn,
            backend: match table.routes.get(route as usize).map(|r| &r.target) {
                Some(Target::Backend(id)) => Some(*id),
                _ => None,
            },
            table,
            route,
            canary: None,
            log: true,
            request,
            request_id,
            status: 0,
            bytes_sent: 0,
            attempts: [None; 4],
            attempt_count: 0,
            upstream_start: None,
            connection: None,
            complete: false,
            permit: None,
            default_host: None,
        }
    }

    /// Notes one upstream try: the response's status, or the 502/504 it failed with.
    pub(crate) fn attempt(
        &mut self,
        addr: SocketAddr,
        status: u16,
        answered: bool,
        started: Instant,
    ) {
        self.upstream_start.get_or_insert(started);
        if let Some(slot) = self.attempts.get_mut(self.attempt_count) {
            *slot = Some(Attempt { addr, status, answered, started, elapsed: started.elapsed() });
        }
        self.attempt_count += 1;
    }

    /// Corrects the last try's outcome: the status its response head carried once parsed, or
    /// the 502/504 it failed with after all (`answered` false).
    pub(crate) fn set_last_attempt(&mut self, status: u16, answered: bool) {
        let last = self.attempt_count.min(self.attempts.len()).checked_sub(1);
        if let Some(Some(a)) = last.map(|i| &mut self.attempts[i]) {
            a.status = status;
            a.answered = answered;
        }
    }

    /// The tries listed in the log.
    pub(crate) fn attempts(&self) -> impl Iterator<Item = &Attempt> {
        self.attempts.iter().flatten()
    }

    /// The request is over: give the upstream connection back if it can serve again, then
    /// write the access log line and the metrics. Returns the time it ended, read once for
    /// every duration logged (each clock read costs about as much as formatting a number).
    pub(crate) fn finish(mut self: Box<Self>) -> Instant {
        if let Some((key, pooled)) = self.connection.take()
            && self.complete
        {
            pool::checkin(key, pooled, &self.table.https.connections.upstream);
        }
        let now = Instant::now();
        if self.log {
            self.shared.access_log.write(&self, now);
        }
        self.shared.metrics.observe(&self, now);
        now
    }
}

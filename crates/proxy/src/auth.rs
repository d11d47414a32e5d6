//! External authentication's subrequest (`auth-url`): the request the life cycle prepared
//! ([`AuthRequest`]) sent to the auth service, and its answer read up to its head (the body
//! is dropped, as NGINX's `auth_request` ignores it). Any failure to get an answer (no
//! address, refused, TLS, a timeout) is a 500: the protected content is never served
//! without a yes. With `auth-cache-key`, answers are kept in memory for the process, per
//! status as `auth-cache-duration` says: a short lock around a map, on the general path
//! only (external authentication never runs on the fast path).

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue, Request, header};

use crate::body::RequestBody;
use crate::pipeline::{AuthOutcome, AuthRequest};
use crate::pool::Sender;

/// Answers kept at most (the oldest to expire go first).
const CACHED_MAX: usize = 10_000;

/// Cached answers by key, with when each expires.
static CACHE: LazyLock<Mutex<HashMap<String, (Instant, AuthOutcome)>>> =
    LazyLock::new(Mutex::default);

/// Asks the auth service, or takes its cached answer; `connect` and `read` bound the
/// connection and the answer.
pub(crate) async fn ask(request: &AuthRequest, connect: Duration, read: Duration) -> AuthOutcome {
    let Some((key, durations)) = &request.cache else {
        return ask_service(request, connect, read).await;
    };
    let now = Instant::now();
    {
        let cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((expiry, outcome)) = cache.get(key)
            && *expiry > now
        {
            return outcome.clone();
        }
    }
    let outcome = ask_service(request, connect, read).await;
    // NGINX's `proxy_cache_valid`: a duration without statuses is for 200, 301 and 302.
    let kept = durations.iter().find(|(codes, _)| {
        if codes.is_empty() {
            matches!(outcome.status, 200 | 301 | 302)
        } else {
            codes.contains(&outcome.status)
        }
    });
    if let Some((_, ttl)) = kept {
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHED_MAX {
            cache.retain(|_, (expiry, _)| *expiry > now);
        }
        if cache.len() < CACHED_MAX {
            cache.insert(key.clone(), (now + *ttl, outcome.clone()));
        }
    }
    outcome
}

async fn ask_service(request: &AuthRequest, connect: Duration, read: Duration) -> AuthOutcome {
    match exchange(request, connect, read).await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::warn!(url = %request.url, error = %e, "auth service not reached; answering 500");
            AuthOutcome { status: 500, headers: Vec::new() }
        }
    }
}

/// One exchange: connected within `connect`, answered within `read` after that.
async fn exchange(
    request: &AuthRequest,
    connect: Duration,
    read: Duration,
) -> Result<AuthOutcome, String> {
    let uri: http::Uri = request.url.parse().map_err(|e| format!("{}: {e}", request.url))?;
    let (mut sender, addr) = tokio::time::timeout(connect, crate::oneshot::connect(&uri))
        .await
        .map_err(|_| format!("{}: connect timed out", request.url))??;
    let authority = uri.authority().ok_or("no host")?.clone();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = Request::new(RequestBody::empty());
    *req.method_mut() = request.method.clone();
    *req.uri_mut() = path.parse().map_err(|e| format!("{path}: {e}"))?;
    let headers = req.headers_mut();
    for (name, value) in &request.headers {
        if let (Ok(n), Ok(v)) =
            (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(value))
        {
            headers.append(n, v);
        }
    }
    // `proxy_set_header Host <auth URL's host name>`: without the port, as ingress-nginx
    // renders it (`authURL.Hostname()`).
    if let Ok(h) = HeaderValue::from_str(authority.host()) {
        headers.insert(header::HOST, h);
    }
    let Sender::H1(s) = &mut sender else { return Err("not HTTP/1.1".into()) };
    let response = tokio::time::timeout(read, s.send_request(req))
        .await
        .map_err(|_| format!("{addr}: no answer within {read:?}"))?
        .map_err(|e| format!("{addr}: {e}"))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    Ok(AuthOutcome { status, headers })
}

//! External authentication's subrequest (`auth-url`): the request the life cycle prepared
//! ([`AuthRequest`]) sent to the auth service, and its answer read up to its head (the body
//! is dropped, as NGINX's `auth_request` ignores it). Any failure to get an answer (no
//! address, refused, TLS, a timeout) is a 500: the protected content is never served
//! without a yes.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, header};

use crate::body::RequestBody;
use crate::pipeline::{AuthOutcome, AuthRequest};
use crate::pool::Sender;

/// Asks the auth service; `connect` and `read` bound the connection and the answer.
pub(crate) async fn ask(request: &AuthRequest, connect: Duration, read: Duration) -> AuthOutcome {
    match tokio::time::timeout(connect + read, exchange(request, connect)).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => {
            tracing::warn!(url = %request.url, error = %e, "auth service not reached; answering 500");
            AuthOutcome { status: 500, headers: Vec::new() }
        }
        Err(_) => {
            tracing::warn!(url = %request.url, "auth service timed out; answering 500");
            AuthOutcome { status: 500, headers: Vec::new() }
        }
    }
}

async fn exchange(request: &AuthRequest, connect: Duration) -> Result<AuthOutcome, String> {
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
    // `proxy_set_header Host <auth URL's host>`.
    if let Ok(h) = HeaderValue::from_str(authority.as_str()) {
        headers.insert(header::HOST, h);
    }
    let Sender::H1(s) = &mut sender else { return Err("not HTTP/1.1".into()) };
    let response = s.send_request(req).await.map_err(|e| format!("{addr}: {e}"))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    Ok(AuthOutcome { status, headers })
}

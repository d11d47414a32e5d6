//! Responses the proxy makes itself (no route, no endpoint, limits, upstream failures), with
//! NGINX-style error pages so that clients and tests see what they saw before.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::ProxyBody;
use crate::record::Record;

static TEXT_HTML: HeaderValue = HeaderValue::from_static("text/html");

/// A response with status `status` and its error page.
pub(crate) fn respond(
    status: u16,
    server: &HeaderValue,
    record: Option<Box<Record>>,
) -> Response<ProxyBody> {
    respond_with(status, None, server, record)
}

/// A response with status `status` and `body` (a snippet's `return` text), else its error
/// page.
pub(crate) fn respond_with(
    status: u16,
    body: Option<Bytes>,
    server: &HeaderValue,
    mut record: Option<Box<Record>>,
) -> Response<ProxyBody> {
    if let Some(r) = &mut record {
        r.status = status;
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = body.unwrap_or_else(|| page(status));
    let mut resp = Response::new(ProxyBody::local(body, record));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::SERVER, server.clone());
    if status != StatusCode::NO_CONTENT {
        resp.headers_mut().insert(header::CONTENT_TYPE, TEXT_HTML.clone());
    }
    resp
}

/// The error page for `status`, built at compile time for the statuses the proxy uses.
pub(crate) fn page(status: StatusCode) -> Bytes {
    macro_rules! page {
        ($code:literal, $text:literal) => {
            Bytes::from_static(
                concat!(
                    "<html>\r\n<head><title>",
                    $code,
                    " ",
                    $text,
                    "</title></head>\r\n<body>\r\n",
                    "<center><h1>",
                    $code,
                    " ",
                    $text,
                    "</h1></center>\r\n<hr><center>sluice</center>\r\n",
                    "</body>\r\n</html>\r\n"
                )
                .as_bytes(),
            )
        };
    }
    match status.as_u16() {
        301 => page!("301", "Moved Permanently"),
        302 => page!("302", "Found"),
        307 => page!("307", "Temporary Redirect"),
        308 => page!("308", "Permanent Redirect"),
        400 => page!("400", "Bad Request"),
        401 => page!("401", "Authorization Required"),
        403 => page!("403", "Forbidden"),
        404 => page!("404", "Not Found"),
        408 => page!("408", "Request Time-out"),
        405 => page!("405", "Not Allowed"),
        421 => page!("421", "Misdirected Request"),
        429 => page!("429", "Too Many Requests"),
        413 => page!("413", "Request Entity Too Large"),
        414 => page!("414", "Request-URI Too Large"),
        // NGINX's status for a header line or head too large: sent as 400.
        494 => page!("400", "Request Header Or Cookie Too Large"),
        500 => page!("500", "Internal Server Error"),
        501 => page!("501", "Not Implemented"),
        502 => page!("502", "Bad Gateway"),
        503 => page!("503", "Service Temporarily Unavailable"),
        504 => page!("504", "Gateway Time-out"),
        _ => Bytes::new(),
    }
}

//! A request head as the life cycle reads it, whichever way the proxy holds the request: the
//! fast path's `httparse` head over its read buffer, or hyper's parsed request. Everything a
//! phase reads of a request goes through [`Head`], so that each rule is written once.

use http::request::Parts;
use sluice_model::{Var, Vars};

use super::Ctx;

/// The parts of a request head the phases read.
pub(crate) trait Head {
    /// The method.
    fn method(&self) -> &str;
    /// The request target as sent: path and query.
    fn target(&self) -> &str;
    /// Calls `f` with each header line (name as sent, value) until it returns false.
    fn each_header<'a>(&'a self, f: impl FnMut(&'a [u8], &'a [u8]) -> bool);

    /// The body the fast path would hold, as `Content-Length` declares it (0 without one):
    /// the match phase hands a body larger than the route allows the fast path
    /// ([`sluice_model::Route::fast_body`]) to the general path, which carries any body.
    fn fast_body(&self) -> u64 {
        0
    }

    /// The first value of header `name` (compared case-insensitively).
    fn header(&self, name: &str) -> Option<&[u8]> {
        let mut found = None;
        self.each_header(|n, v| {
            if n.eq_ignore_ascii_case(name.as_bytes()) {
                found = Some(v);
                return false;
            }
            true
        });
        found
    }

    /// The path, without the query.
    fn path(&self) -> &str {
        let t = self.target();
        t.split_once('?').map_or(t, |(p, _)| p)
    }

    /// The query, without `?`.
    fn query(&self) -> Option<&str> {
        self.target().split_once('?').map(|(_, q)| q)
    }

    /// The value of cookie `name`, from any `Cookie` header.
    fn cookie(&self, name: &str) -> Option<&[u8]> {
        let mut found = None;
        self.each_header(|n, v| {
            if n.eq_ignore_ascii_case(b"cookie") {
                found = cookie_in(v, name.as_bytes());
            }
            found.is_none()
        });
        found
    }

    /// The value of header `name` as NGINX's `$http_<name>` finds it: `-` and `_` alike.
    fn nginx_header(&self, name: &str) -> Option<&[u8]> {
        let mut found = None;
        self.each_header(|n, v| {
            let same = n.len() == name.len()
                && n.iter().zip(name.bytes()).all(|(&a, b)| {
                    let fold = |c: u8| if c == b'-' { b'_' } else { c.to_ascii_lowercase() };
                    fold(a) == fold(b)
                });
            if same {
                found = Some(v);
            }
            !same
        });
        found
    }
}

/// The value of cookie `name` in one `Cookie` header value.
pub(crate) fn cookie_in<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|&c| c == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&c| c == b'=')?;
        (pair[..eq].trim_ascii() == name).then(|| pair[eq + 1..].trim_ascii())
    })
}

/// The first value of query parameter `name` in `query`.
fn arg<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        k.eq_ignore_ascii_case(name).then_some(v)
    })
}

/// The fast path's head: parsed by `httparse` in the connection's buffer.
pub(crate) struct FastHead<'h, 'b> {
    pub req: &'h httparse::Request<'h, 'b>,
    pub target: &'b str,
    pub method: &'b str,
    /// The body's declared length (0 without one).
    pub body: u64,
}

impl Head for FastHead<'_, '_> {
    fn method(&self) -> &str {
        self.method
    }

    fn target(&self) -> &str {
        self.target
    }

    fn each_header<'a>(&'a self, mut f: impl FnMut(&'a [u8], &'a [u8]) -> bool) {
        for h in self.req.headers.iter() {
            if !f(h.name.as_bytes(), h.value) {
                return;
            }
        }
    }

    fn fast_body(&self) -> u64 {
        self.body
    }
}

/// The general path's head: hyper's request parts.
pub(crate) struct HyperHead<'h> {
    pub parts: &'h Parts,
}

impl Head for HyperHead<'_> {
    fn method(&self) -> &str {
        self.parts.method.as_str()
    }

    fn target(&self) -> &str {
        self.parts.uri.path_and_query().map_or("/", |p| p.as_str())
    }

    fn each_header<'a>(&'a self, mut f: impl FnMut(&'a [u8], &'a [u8]) -> bool) {
        for (name, value) in &self.parts.headers {
            if !f(name.as_str().as_bytes(), value.as_bytes()) {
                return;
            }
        }
    }
}

/// A request's NGINX variables: its head and what the life cycle decided.
pub(crate) struct RequestVars<'a, H: Head> {
    pub head: &'a H,
    pub ctx: &'a Ctx<'a>,
}

impl<H: Head> Vars for RequestVars<'_, H> {
    fn var(&self, var: &Var, out: &mut Vec<u8>) {
        let (head, ctx) = (self.head, self.ctx);
        let route = ctx.route;
        match var {
            Var::RequestUri => out.extend_from_slice(head.target().as_bytes()),
            Var::Uri => out.extend_from_slice(sluice_model::normalize_path(head.path()).as_bytes()),
            Var::Args => out.extend_from_slice(head.query().unwrap_or("").as_bytes()),
            Var::IsArgs => {
                if head.query().is_some() {
                    out.push(b'?');
                }
            }
            Var::Arg(name) => {
                if let Some(v) = head.query().and_then(|q| arg(q, name)) {
                    out.extend_from_slice(v.as_bytes());
                }
            }
            Var::Host => out.extend_from_slice(ctx.host.as_bytes()),
            Var::HttpHost => out.extend_from_slice(ctx.host_header.as_bytes()),
            Var::Http(name) => {
                if let Some(v) = head.nginx_header(name) {
                    out.extend_from_slice(v);
                }
            }
            Var::Cookie(name) => {
                if let Some(v) = head.cookie(name) {
                    out.extend_from_slice(v);
                }
            }
            Var::RemoteAddr => out.extend_from_slice(ctx.client_ip()),
            Var::ProxyAddXForwardedFor => {
                if let Some(v) = head.nginx_header("x_forwarded_for").filter(|v| !v.is_empty()) {
                    out.extend_from_slice(v);
                    out.extend_from_slice(b", ");
                }
                out.extend_from_slice(ctx.client_ip());
            }
            Var::RemotePort => out.extend_from_slice(ctx.conn.remote.port().to_string().as_bytes()),
            Var::Scheme => {
                out.extend_from_slice(if ctx.conn.tls.is_some() { b"https" } else { b"http" })
            }
            Var::PassAccessScheme => {
                out.extend_from_slice(if ctx.https { b"https" } else { b"http" })
            }
            Var::Method => out.extend_from_slice(head.method().as_bytes()),
            Var::ServerPort => out.extend_from_slice(ctx.conn.local_port.as_bytes()),
            Var::ServerName => out.extend_from_slice(route.host.as_bytes()),
            Var::RequestId => out.extend_from_slice(ctx.request_id.as_bytes()),
            Var::Namespace => out.extend_from_slice(route.ingress_parts().0.as_bytes()),
            Var::IngressName => out.extend_from_slice(route.ingress_parts().1.as_bytes()),
            Var::ServiceName | Var::ServicePort => {
                if let sluice_model::Target::Backend(id) = route.target {
                    let b = &ctx.table.backends[id as usize];
                    let v = if *var == Var::ServiceName { &b.service.name } else { &b.port };
                    out.extend_from_slice(v.as_bytes());
                }
            }
            Var::LocationPath => out.extend_from_slice(route.path.as_bytes()),
            Var::EscapedRequestUri => {
                // ngx_set_misc's `set_escape_uri`: all but letters, digits and `-._~`.
                const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
                    .remove(b'-')
                    .remove(b'.')
                    .remove(b'_')
                    .remove(b'~');
                let escaped = percent_encoding::percent_encode(head.target().as_bytes(), COMPONENT);
                out.extend(escaped.flat_map(str::bytes));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_args_are_found() {
        assert_eq!(cookie_in(b"a=1; INGRESSCOOKIE=k|b ;c=3", b"INGRESSCOOKIE"), Some(&b"k|b"[..]));
        assert_eq!(cookie_in(b"a=1", b"b"), None);
        assert_eq!(cookie_in(b"xa=1", b"a"), None);
        assert_eq!(arg("a=1&id=7&id=8", "id"), Some("7"));
        assert_eq!(arg("flag&b=2", "flag"), Some(""));
        assert_eq!(arg("a=1", "b"), None);
    }
}

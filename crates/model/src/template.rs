//! Strings with NGINX variables in them (`$request_uri`, `$http_x_user`, `${host}`), as
//! ingress-nginx users write them in annotations (`upstream-hash-by`, `permanent-redirect`,
//! `upstream-vhost`, `mirror-target`) and ConfigMaps (`proxy-set-headers`, `add-headers`).
//!
//! A [`Template`] is parsed once, at translation, into literal text and known variables; the
//! proxy renders it per request through [`Vars`]. A variable Sluice does not know is an error
//! at parse time (NGINX itself refuses to start on an unknown variable), never an empty string
//! discovered under traffic.

use std::fmt;

use serde::{Serialize, Serializer};

/// One NGINX variable that Sluice can evaluate per request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Var {
    /// `$request_uri`: the path and query as the client sent them.
    RequestUri,
    /// `$uri`, `$document_uri`: the normalised path, without the query.
    Uri,
    /// `$args`, `$query_string`: the query, without `?`.
    Args,
    /// `$is_args`: `?` when there is a query, else empty.
    IsArgs,
    /// `$arg_NAME`: the first value of a query parameter.
    Arg(Box<str>),
    /// `$host`: the request's host name, lower case, without the port.
    Host,
    /// `$http_host`, `$best_http_host`: the `Host` header as sent.
    HttpHost,
    /// `$http_NAME`: a request header (`NAME` lower case, `_` for `-`).
    Http(Box<str>),
    /// `$cookie_NAME`: a cookie of the request.
    Cookie(Box<str>),
    /// `$remote_addr`, `$binary_remote_addr`: the client's address.
    RemoteAddr,
    /// `$remote_port`: the client's port.
    RemotePort,
    /// `$proxy_add_x_forwarded_for`: the request's `X-Forwarded-For` with the client's
    /// address appended (`, `), or the address alone.
    ProxyAddXForwardedFor,
    /// `$scheme`: `http` or `https`, the connection's.
    Scheme,
    /// `$pass_access_scheme`: the scheme the backend is told (`X-Forwarded-Proto`), which a
    /// trusted load balancer's `X-Forwarded-Proto` sets.
    PassAccessScheme,
    /// `$request_method`.
    Method,
    /// `$server_port`, `$pass_port`, `$pass_server_port`: the port the client connected to.
    ServerPort,
    /// `$server_name`: the host of the rule that matched.
    ServerName,
    /// `$req_id`, `$request_id`: the request's ID (`X-Request-ID`).
    RequestId,
    /// `$namespace`: the namespace of the Ingress that matched.
    Namespace,
    /// `$ingress_name`: its name.
    IngressName,
    /// `$service_name`: the Service of the path that matched.
    ServiceName,
    /// `$service_port`: its port.
    ServicePort,
    /// `$location_path`: the Ingress path that matched.
    LocationPath,
    /// `$escaped_request_uri`: `$request_uri` escaped as a URL component (ingress-nginx's
    /// `set_escape_uri`, for the `rd` parameter of `auth-signin`).
    EscapedRequestUri,
}

impl Var {
    /// The variable named `name` (without `$`), if Sluice knows it.
    pub fn parse(name: &str) -> Option<Var> {
        let prefixed = |p: &str| -> Option<Box<str>> {
            let rest = name.strip_prefix(p)?;
            (!rest.is_empty()).then(|| rest.to_ascii_lowercase().into_boxed_str())
        };
        if let Some(n) = prefixed("arg_") {
            return Some(Var::Arg(n));
        }
        if let Some(n) = prefixed("http_") {
            return Some(match &*n {
                "host" => Var::HttpHost,
                _ => Var::Http(n),
            });
        }
        if let Some(n) = prefixed("cookie_") {
            return Some(Var::Cookie(n));
        }
        Some(match name {
            "request_uri" => Var::RequestUri,
            "uri" | "document_uri" => Var::Uri,
            "args" | "query_string" => Var::Args,
            "is_args" => Var::IsArgs,
            "host" => Var::Host,
            "best_http_host" => Var::HttpHost,
            "remote_addr" | "binary_remote_addr" => Var::RemoteAddr,
            "remote_port" => Var::RemotePort,
            "proxy_add_x_forwarded_for" => Var::ProxyAddXForwardedFor,
            "scheme" => Var::Scheme,
            "pass_access_scheme" => Var::PassAccessScheme,
            "request_method" => Var::Method,
            "server_port" | "pass_port" | "pass_server_port" => Var::ServerPort,
            "server_name" => Var::ServerName,
            "req_id" | "request_id" => Var::RequestId,
            "namespace" => Var::Namespace,
            "ingress_name" => Var::IngressName,
            "service_name" => Var::ServiceName,
            "service_port" => Var::ServicePort,
            "location_path" => Var::LocationPath,
            "escaped_request_uri" => Var::EscapedRequestUri,
            _ => return None,
        })
    }

    /// Its name as written in NGINX (the first of its synonyms).
    pub fn name(&self) -> String {
        match self {
            Var::RequestUri => "request_uri".into(),
            Var::Uri => "uri".into(),
            Var::Args => "args".into(),
            Var::IsArgs => "is_args".into(),
            Var::Arg(n) => format!("arg_{n}"),
            Var::Host => "host".into(),
            Var::HttpHost => "http_host".into(),
            Var::Http(n) => format!("http_{n}"),
            Var::Cookie(n) => format!("cookie_{n}"),
            Var::RemoteAddr => "remote_addr".into(),
            Var::RemotePort => "remote_port".into(),
            Var::ProxyAddXForwardedFor => "proxy_add_x_forwarded_for".into(),
            Var::Scheme => "scheme".into(),
            Var::PassAccessScheme => "pass_access_scheme".into(),
            Var::Method => "request_method".into(),
            Var::ServerPort => "server_port".into(),
            Var::ServerName => "server_name".into(),
            Var::RequestId => "req_id".into(),
            Var::Namespace => "namespace".into(),
            Var::IngressName => "ingress_name".into(),
            Var::ServiceName => "service_name".into(),
            Var::ServicePort => "service_port".into(),
            Var::LocationPath => "location_path".into(),
            Var::EscapedRequestUri => "escaped_request_uri".into(),
        }
    }
}

/// A part of a [`Template`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    /// Text copied as it is.
    Literal(Box<str>),
    /// A variable, evaluated per request.
    Var(Var),
}

/// Text with NGINX variables, parsed once and rendered per request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Template {
    parts: Vec<Part>,
}

/// What a template's variables read: the proxy implements it over each way it holds a request.
pub trait Vars {
    /// Appends the value of `var` to `out` (nothing when it has none, as NGINX gives an empty
    /// string).
    fn var(&self, var: &Var, out: &mut Vec<u8>);
}

impl Template {
    /// Parses `text`: `$name` and `${name}` are variables, `$` followed by anything else is
    /// literal text (as NGINX's script compiler takes it). Fails on a variable Sluice does not
    /// know, and on `$1`..`$9` (regex captures, which only NGINX's own `rewrite` has).
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'$' {
                let next = text[i..].find('$').map_or(text.len(), |n| i + n);
                literal.push_str(&text[i..next]);
                i = next;
                continue;
            }
            let (name, end) = if bytes.get(i + 1) == Some(&b'{') {
                let close = text[i + 2..]
                    .find('}')
                    .ok_or_else(|| format!("{text:?}: \"${{\" without a closing \"}}\""))?;
                (&text[i + 2..i + 2 + close], i + 3 + close)
            } else {
                let len = text[i + 1..]
                    .bytes()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
                    .count();
                (&text[i + 1..i + 1 + len], i + 1 + len)
            };
            if name.is_empty() {
                literal.push('$');
                i += 1;
                continue;
            }
            if name.bytes().all(|c| c.is_ascii_digit()) {
                return Err(format!(
                    "{text:?}: ${name} is a regex capture, which only NGINX's rewrite has"
                ));
            }
            let var = Var::parse(name).ok_or_else(|| {
                format!("{text:?}: ${name} is not an NGINX variable Sluice knows")
            })?;
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal).into_boxed_str()));
            }
            parts.push(Part::Var(var));
            i = end;
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal.into_boxed_str()));
        }
        Ok(Template { parts })
    }

    /// A template of literal text only.
    pub fn literal(text: &str) -> Template {
        let parts = if text.is_empty() { Vec::new() } else { vec![Part::Literal(text.into())] };
        Template { parts }
    }

    /// The text itself, when the template has no variable.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// Its parts.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// True when it reads `var`.
    pub fn uses(&self, var: &Var) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Var(v) if v == var))
    }

    /// Appends its value for one request to `out`.
    pub fn render(&self, vars: &impl Vars, out: &mut Vec<u8>) {
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.extend_from_slice(s.as_bytes()),
                Part::Var(v) => vars.var(v, out),
            }
        }
    }

    /// Its value for one request.
    pub fn to_bytes(&self, vars: &impl Vars) -> Vec<u8> {
        if let Some(s) = self.as_literal() {
            return s.as_bytes().to_vec();
        }
        let mut out = Vec::with_capacity(64);
        self.render(vars, &mut out);
        out
    }
}

impl fmt::Display for Template {
    /// The template as NGINX would have it written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Literal(s) => f.write_str(s)?,
                Part::Var(v) => write!(f, "${{{}}}", v.name())?,
            }
        }
        Ok(())
    }
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl Vars for Fixed {
        fn var(&self, var: &Var, out: &mut Vec<u8>) {
            let v: &[u8] = match var {
                Var::RequestUri => b"/a?b=1",
                Var::Host => b"example.com",
                Var::Http(n) if &**n == "x_user" => b"alice",
                Var::Cookie(n) if &**n == "session" => b"s1",
                _ => b"",
            };
            out.extend_from_slice(v);
        }
    }

    #[test]
    fn variables_are_parsed_and_rendered() {
        let t =
            Template::parse("https://$host${request_uri}x$http_X_User/$cookie_session").unwrap();
        assert_eq!(t.to_bytes(&Fixed), b"https://example.com/a?b=1xalice/s1");
        assert!(t.uses(&Var::Host));
        assert_eq!(t.to_string(), "https://${host}${request_uri}x${http_x_user}/${cookie_session}");
        assert_eq!(Template::parse("plain").unwrap().as_literal(), Some("plain"));
        assert_eq!(Template::parse("").unwrap().as_literal(), Some(""));
    }

    #[test]
    fn a_lone_dollar_is_text_and_unknown_variables_are_errors() {
        assert_eq!(Template::parse("cost: $ 5").unwrap().as_literal(), Some("cost: $ 5"));
        assert_eq!(Template::parse("a$").unwrap().as_literal(), Some("a$"));
        assert!(Template::parse("$no_such_var").is_err());
        assert!(Template::parse("/$1").is_err());
        assert!(Template::parse("${host").is_err());
        assert!(Template::parse("$http_").is_err(), "a prefix without a name");
    }
}

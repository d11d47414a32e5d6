//! What the safe subset of a snippet (`configuration-snippet`, `server-snippet`, ConfigMap
//! `*-snippet`) becomes when no other family has the typed data for it: response header
//! edits with NGINX's filters ([`HeaderRule`]) and the rewrite module's `if`, `return` and
//! `rewrite` ([`Script`]). Translation parses the snippet (the `sluice-nginx-conf` crate)
//! into these; nothing is ever rendered as NGINX text.

use serde::{Serialize, Serializer};

use crate::{Template, Var, Vars};

/// A regex compiled once at translation, compared by its source.
#[derive(Clone, Debug)]
pub struct Pattern {
    /// The compiled regex.
    pub regex: regex::Regex,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.regex.as_str() == other.regex.as_str()
    }
}

impl Eq for Pattern {}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.regex.as_str())
    }
}

/// A test of an `if`: `($var)`, `($var = text)`, `($var ~ regex)` and their negations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Condition {
    /// The variable tested.
    #[serde(serialize_with = "var_name")]
    pub var: Var,
    /// How.
    pub test: Test,
}

fn var_name<S: Serializer>(v: &Var, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("${}", v.name()))
}

/// The operators of NGINX's `if`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Test {
    /// `($var)`: neither empty nor `0`.
    Set,
    /// `=` (or `!=` when `negate`): the value equals the text.
    Equals {
        /// The text, with variables.
        text: Template,
        /// `!=`.
        negate: bool,
    },
    /// `~`, `~*` (case folded into the regex), `!~`, `!~*`.
    Matches {
        /// The regex.
        pattern: Pattern,
        /// `!~`, `!~*`.
        negate: bool,
    },
}

impl Condition {
    /// Whether the request passes the test.
    pub fn holds(&self, vars: &impl Vars) -> bool {
        let mut value = Vec::with_capacity(32);
        vars.var(&self.var, &mut value);
        match &self.test {
            Test::Set => !(value.is_empty() || value == b"0"),
            Test::Equals { text, negate } => (text.to_bytes(vars) == value) != *negate,
            Test::Matches { pattern, negate } => {
                let hit = std::str::from_utf8(&value).is_ok_and(|v| pattern.regex.is_match(v));
                hit != *negate
            }
        }
    }
}

/// One response header edit of a snippet, applied after the other families' (headers-more's
/// `more_set_headers`, `more_clear_headers`, and NGINX's `add_header`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HeaderRule {
    /// The header's name, lower case; for a wildcard (`X-Debug-*`), the part before `*`.
    pub name: String,
    /// `name` is a prefix (`more_clear_headers 'X-*'`).
    pub wildcard: bool,
    /// The value set, replacing every header of that name; `None`: the header is removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Template>,
    /// Only on these statuses (`-s`, `add_header` without `always`); empty: on every one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<u16>,
    /// Only when the response's `Content-Type` (without parameters) is one of these (`-t`),
    /// lower case; empty: whatever it is.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub content_types: Vec<String>,
    /// Only for requests that pass this test (the rule is inside an `if`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
}

impl HeaderRule {
    /// The statuses NGINX's `add_header` applies to without `always`.
    pub const ADD_HEADER_STATUSES: &[u16] = &[200, 201, 204, 206, 301, 302, 303, 304, 307, 308];

    /// Headers that frame the message or the connection: Sluice keeps them to itself, no
    /// rule (not even a wildcard) sets or removes them.
    pub const FRAMING: &[&str] = &[
        "connection",
        "content-length",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];

    /// Whether the rule names header `name` (never a [`FRAMING`](Self::FRAMING) header).
    pub fn names(&self, name: &[u8]) -> bool {
        if Self::FRAMING.iter().any(|f| name.eq_ignore_ascii_case(f.as_bytes())) {
            return false;
        }
        if self.wildcard {
            name.len() >= self.name.len()
                && name[..self.name.len()].eq_ignore_ascii_case(self.name.as_bytes())
        } else {
            name.eq_ignore_ascii_case(self.name.as_bytes())
        }
    }

    /// Whether the rule applies to a response with `status` and `content_type`.
    pub fn applies(&self, status: u16, content_type: Option<&[u8]>) -> bool {
        if !self.statuses.is_empty() && !self.statuses.contains(&status) {
            return false;
        }
        if self.content_types.is_empty() {
            return true;
        }
        let Some(ct) = content_type else { return false };
        let bare = ct.split(|b| *b == b';').next().unwrap_or_default().trim_ascii();
        self.content_types.iter().any(|t| bare.eq_ignore_ascii_case(t.as_bytes()))
    }
}

/// The rewrite module's directives of a route's snippets, in NGINX's order: the server
/// snippets' first (NGINX's server rewrite phase), then the location's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Script {
    /// The steps, run in order until one answers.
    pub steps: Vec<Step>,
    /// `relative-redirects`: a `Location` starting with `/` is sent as it is (else made
    /// absolute, as NGINX's `absolute_redirect`).
    pub relative: bool,
}

/// One directive of a [`Script`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Step {
    /// `return`: answer with this status; for 301, 302, 303, 307 and 308 `text` is the
    /// `Location`, for others the body.
    Return {
        /// The status.
        code: u16,
        /// The `Location` or the body, with variables.
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<Template>,
    },
    /// `rewrite regex replacement [flag]`: when `$uri` matches, the replacement (text with
    /// variables and the regex's captures) redirects, or becomes the request's URI.
    Rewrite {
        /// Matched against `$uri` (as rewritten by the steps before).
        pattern: Pattern,
        /// The new URI or `Location`.
        replacement: Vec<Piece>,
        /// What follows.
        then: Then,
        /// The request's query is appended (the replacement does not end with `?`).
        append_args: bool,
    },
    /// `if (condition) { … }`.
    If {
        /// The test.
        when: Condition,
        /// The steps run when it holds.
        then: Vec<Step>,
    },
}

/// What a matching `rewrite` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Then {
    /// Redirect with this status: 302 (`redirect`, or a replacement starting with
    /// `http://`, `https://`, `$scheme`), 301 (`permanent`).
    Redirect(u16),
    /// The URI is replaced and the rewrite steps stop (`break`, and `last`: Sluice does not
    /// search the routes again).
    Stop,
    /// The URI is replaced and the next steps run on it (no flag).
    Continue,
}

/// A part of a `rewrite` replacement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Piece {
    /// Text with variables.
    Text(Template),
    /// `$1`..`$9`: a capture of the regex.
    Capture(usize),
}

/// What a [`Script`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `return` with a body (or none).
    Answer {
        /// The status.
        code: u16,
        /// The body.
        body: Option<Vec<u8>>,
    },
    /// The request goes on to the backend with another URI (path and query).
    Rewrite {
        /// The new path and query.
        target: Vec<u8>,
    },
    /// A redirect: the status and the `Location` (relative or absolute, as written).
    Redirect {
        /// The status.
        code: u16,
        /// The `Location`.
        location: Vec<u8>,
    },
}

impl Script {
    /// Runs the steps for a request (`uri` its `$uri`, `args` its query); `None` when none
    /// answers nor rewrites.
    pub fn run(&self, vars: &impl Vars, uri: &str, args: &str) -> Option<Outcome> {
        let mut state = State { uri: uri.to_string(), args: args.to_string(), rewritten: false };
        match run(&self.steps, vars, &mut state) {
            Some(outcome) => Some(outcome),
            None if state.rewritten => Some(Outcome::Rewrite { target: state.target() }),
            None => None,
        }
    }
}

/// The URI as the steps rewrite it.
struct State {
    uri: String,
    args: String,
    rewritten: bool,
}

impl State {
    fn target(&self) -> Vec<u8> {
        let mut t = self.uri.clone().into_bytes();
        if !self.args.is_empty() {
            t.push(b'?');
            t.extend_from_slice(self.args.as_bytes());
        }
        t
    }
}

fn run(steps: &[Step], vars: &impl Vars, state: &mut State) -> Option<Outcome> {
    for step in steps {
        match step {
            Step::Return { code, text } => {
                let text = text.as_ref().map(|t| t.to_bytes(vars));
                return Some(if matches!(code, 301 | 302 | 303 | 307 | 308) {
                    Outcome::Redirect { code: *code, location: text.unwrap_or_default() }
                } else {
                    Outcome::Answer { code: *code, body: text }
                });
            }
            Step::Rewrite { pattern, replacement, then, append_args } => {
                let Some(caps) = pattern.regex.captures(&state.uri) else { continue };
                let mut out = Vec::with_capacity(64);
                for piece in replacement {
                    match piece {
                        Piece::Text(t) => t.render(vars, &mut out),
                        Piece::Capture(i) => {
                            if let Some(m) = caps.get(*i) {
                                out.extend_from_slice(m.as_str().as_bytes());
                            }
                        }
                    }
                }
                if let Then::Redirect(code) = then {
                    if *append_args && !state.args.is_empty() {
                        // NGINX: after the replacement's own query, with `&`.
                        out.push(if out.contains(&b'?') { b'&' } else { b'?' });
                        out.extend_from_slice(state.args.as_bytes());
                    }
                    return Some(Outcome::Redirect { code: *code, location: out });
                }
                let out = String::from_utf8_lossy(&out).into_owned();
                match out.split_once('?') {
                    // The replacement's own query, then the request's unless it ends with `?`.
                    Some((path, query)) => {
                        let old = std::mem::take(&mut state.args);
                        state.uri = path.to_string();
                        state.args = query.to_string();
                        if *append_args && !old.is_empty() {
                            state.args.push('&');
                            state.args.push_str(&old);
                        }
                    }
                    None => {
                        state.uri = out;
                        if !*append_args {
                            state.args.clear();
                        }
                    }
                }
                state.rewritten = true;
                if *then == Then::Stop {
                    return Some(Outcome::Rewrite { target: state.target() });
                }
            }
            Step::If { when, then } => {
                if when.holds(vars)
                    && let Some(outcome) = run(then, vars, state)
                {
                    return Some(outcome);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    struct V;
    impl Vars for V {
        fn var(&self, var: &Var, out: &mut Vec<u8>) {
            match var {
                Var::Host => out.extend_from_slice(b"example.com"),
                Var::Http(n) if &**n == "x_forwarded_proto" => out.extend_from_slice(b"http"),
                _ => {}
            }
        }
    }

    fn pattern(p: &str) -> Pattern {
        Pattern { regex: regex::Regex::new(p).unwrap() }
    }

    #[test]
    fn steps_run_in_order_until_one_answers() {
        let script = Script {
            steps: vec![
                Step::If {
                    when: Condition {
                        var: Var::Http("x_forwarded_proto".into()),
                        test: Test::Equals { text: Template::literal("https"), negate: true },
                    },
                    then: vec![Step::Return {
                        code: 301,
                        text: Some(Template::parse("https://$host/").unwrap()),
                    }],
                },
                Step::Return { code: 403, text: None },
            ],
            relative: false,
        };
        assert_eq!(
            script.run(&V, "/", ""),
            Some(Outcome::Redirect { code: 301, location: b"https://example.com/".to_vec() })
        );
        let redirect = Script {
            steps: vec![Step::Rewrite {
                pattern: pattern("^/old/(.*)$"),
                replacement: vec![Piece::Text(Template::literal("/new/")), Piece::Capture(1)],
                then: Then::Redirect(301),
                append_args: true,
            }],
            relative: false,
        };
        assert_eq!(
            redirect.run(&V, "/old/a", "x=1"),
            Some(Outcome::Redirect { code: 301, location: b"/new/a?x=1".to_vec() })
        );
        assert_eq!(redirect.run(&V, "/other", ""), None);
        let rewrite = |then, append_args| Step::Rewrite {
            pattern: pattern("^/a/(.*)$"),
            replacement: vec![Piece::Text(Template::literal("/b/")), Piece::Capture(1)],
            then,
            append_args,
        };
        let script = Script {
            steps: vec![
                rewrite(Then::Continue, true),
                Step::Rewrite {
                    pattern: pattern("^/b/(.*)$"),
                    replacement: vec![Piece::Text(Template::literal("/c?from=b"))],
                    then: Then::Stop,
                    append_args: true,
                },
                Step::Return { code: 403, text: None },
            ],
            relative: false,
        };
        assert_eq!(
            script.run(&V, "/a/x", "q=1"),
            Some(Outcome::Rewrite { target: b"/c?from=b&q=1".to_vec() }),
            "the second rewrite sees the first's URI and stops"
        );
        assert_eq!(script.run(&V, "/z", ""), Some(Outcome::Answer { code: 403, body: None }));
        let last = Script { steps: vec![rewrite(Then::Continue, false)], relative: false };
        assert_eq!(
            last.run(&V, "/a/x", "q=1"),
            Some(Outcome::Rewrite { target: b"/b/x".to_vec() })
        );
    }

    #[test]
    fn header_rules_filter_by_status_and_content_type() {
        let rule = HeaderRule {
            name: "x-".into(),
            wildcard: true,
            value: None,
            statuses: vec![404],
            content_types: vec!["text/html".into()],
            when: None,
        };
        assert!(rule.names(b"X-Debug"));
        assert!(!rule.names(b"Server"));
        let all = HeaderRule { name: String::new(), ..rule.clone() };
        assert!(all.names(b"Server"));
        assert!(!all.names(b"Content-Length"), "framing is never a rule's");
        assert!(!all.names(b"transfer-encoding"));
        assert!(rule.applies(404, Some(b"text/html; charset=utf-8")));
        assert!(!rule.applies(200, Some(b"text/html")));
        assert!(!rule.applies(404, Some(b"application/json")));
        assert!(!rule.applies(404, None));
    }
}

//! NGINX's configuration syntax, parsed into a tree of directives: what an ingress-nginx
//! snippet (`configuration-snippet`, `server-snippet`, ConfigMap `*-snippet`) holds.
//!
//! The tokenizer follows NGINX's own (`ngx_conf_read_token` in `ngx_conf_file.c`):
//! - words are separated by spaces, tabs and line breaks;
//! - `;` ends a directive, `{` ends one and opens its block, `}` closes the block;
//! - `"…"` and `'…'` group a word (a quote only opens one at the start of a word, and a
//!   closing quote must be followed by a space, `;`, `{` or `)`);
//! - `\` escapes the next character: `\"`, `\'` and `\\` become the character, `\t`, `\r`,
//!   `\n` a tab, carriage return and line feed; any other `\x` is kept as written (so the
//!   `\d` of a regex survives), as NGINX keeps it;
//! - `#` at the start of a word comments out the rest of the line (inside a word it is text);
//! - `${` inside a word does not open a block (`${name}` is a variable).
//!
//! Variables (`$name`, `${name}`) are left in the words as written: only the directive that
//! takes the word knows whether `$` is a variable there or a regex anchor ([`Word::parts`]
//! splits a value into text and variables as NGINX's script compiler does).
//!
//! Parsing is pure and total: any input gives a tree or an [`Error`] naming the line, never a
//! panic (the `fuzz/` target checks that). Nothing is ever rendered back into text.

use std::fmt;

#[doc(hidden)]
pub mod fuzzing;

/// Deepest nesting of blocks accepted: snippets nest `if` in `location` at most, and a bound
/// keeps recursion (parsing and dropping the tree) far from the stack's end on hostile input.
pub const MAX_DEPTH: usize = 32;

/// One word of a directive: its name or an argument, after quotes and escapes are removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    /// The text.
    pub value: String,
    /// Whether it was written in quotes (`"…"` or `'…'`).
    pub quoted: bool,
    /// The line it starts on (1-based).
    pub line: u32,
}

/// A directive: `name arg… ;` or `name arg… { directive… }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    /// Its name (the first word).
    pub name: String,
    /// Its arguments.
    pub args: Vec<Word>,
    /// The line its name is on (1-based).
    pub line: u32,
    /// The directives of its block, when it has one.
    pub block: Option<Vec<Directive>>,
}

/// A syntax error, with the line NGINX would name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// The line (1-based).
    pub line: u32,
    /// What is wrong, as NGINX says it.
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for Error {}

/// A part of a word's value, as NGINX's script compiler splits it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part<'a> {
    /// Text.
    Text(&'a str),
    /// A variable's name, without `$` and braces.
    Var(&'a str),
}

impl Word {
    /// The value split into text and variables: `$name` (letters, digits, `_`) and `${name}`;
    /// a `$` followed by anything else is text. `Err` for `${` without `}`, as NGINX refuses it.
    pub fn parts(&self) -> Result<Vec<Part<'_>>, Error> {
        parts(&self.value).map_err(|message| Error { line: self.line, message })
    }
}

/// `value` split into text and variables (see [`Word::parts`]).
pub fn parts(value: &str) -> Result<Vec<Part<'_>>, String> {
    let mut out = Vec::new();
    let bytes = value.as_bytes();
    let (mut i, mut text) = (0, 0);
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        let (name, end) = if bytes.get(i + 1) == Some(&b'{') {
            let Some(close) = value[i + 2..].find('}') else {
                return Err(format!(
                    "the closing bracket in {:?} variable is missing",
                    &value[i..]
                ));
            };
            (&value[i + 2..i + 2 + close], i + 3 + close)
        } else {
            let len = bytes[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                .count();
            (&value[i + 1..i + 1 + len], i + 1 + len)
        };
        if name.is_empty() {
            i += 1;
            continue;
        }
        if text < i {
            out.push(Part::Text(&value[text..i]));
        }
        out.push(Part::Var(name));
        i = end;
        text = end;
    }
    if text < bytes.len() {
        out.push(Part::Text(&value[text..]));
    }
    Ok(out)
}

/// Parses `text` (a whole snippet) into its directives.
pub fn parse(text: &str) -> Result<Vec<Directive>, Error> {
    let mut lexer = Lexer { src: text.as_bytes(), pos: 0, line: 1 };
    block(&mut lexer, 0)
}

/// Where a [`Lexer::directive`] stopped.
enum End {
    /// `;`: a directive without a block.
    Semicolon,
    /// `{`: a directive whose block follows.
    BlockStart,
    /// `}`: the end of the enclosing block.
    BlockDone,
    /// The end of the text.
    Eof,
}

/// The directives up to the `}` that closes the block (or the end, at the top level).
fn block(lexer: &mut Lexer<'_>, depth: usize) -> Result<Vec<Directive>, Error> {
    let mut out = Vec::new();
    loop {
        let mut words = Vec::new();
        let end = lexer.directive(&mut words)?;
        match end {
            End::BlockDone if depth == 0 => return Err(lexer.error("unexpected \"}\"")),
            End::BlockDone => return Ok(out),
            End::Eof if depth > 0 => {
                return Err(lexer.error("unexpected end of file, expecting \"}\""));
            }
            End::Eof => return Ok(out),
            End::Semicolon | End::BlockStart => {}
        }
        let mut words = words.into_iter();
        let Some(name) = words.next() else {
            // The lexer never ends a directive without a word; stay total anyway.
            return Err(lexer.error("a directive without a name"));
        };
        let block = if matches!(end, End::BlockStart) {
            if depth + 1 >= MAX_DEPTH {
                return Err(lexer.error("blocks are nested too deeply"));
            }
            Some(block(lexer, depth + 1)?)
        } else {
            None
        };
        out.push(Directive { name: name.value, line: name.line, args: words.collect(), block });
    }
}

/// NGINX's tokenizer over the bytes of a snippet.
struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    line: u32,
}

fn is_space(ch: u8) -> bool {
    matches!(ch, b' ' | b'\t' | b'\r' | b'\n')
}

impl Lexer<'_> {
    fn error(&self, message: impl Into<String>) -> Error {
        Error { line: self.line, message: message.into() }
    }

    /// Reads the words of one directive into `words`, up to what ends it; the same state
    /// machine as `ngx_conf_read_token`.
    fn directive(&mut self, words: &mut Vec<Word>) -> Result<End, Error> {
        let mut last_space = true;
        let mut need_space = false;
        let mut comment = false;
        let mut escaped = false;
        let mut variable = false;
        let mut d_quoted = false;
        let mut s_quoted = false;
        let (mut start, mut start_line) = (self.pos, self.line);
        loop {
            let Some(&ch) = self.src.get(self.pos) else {
                if !words.is_empty() || !last_space {
                    return Err(self.error("unexpected end of file, expecting \";\" or \"}\""));
                }
                return Ok(End::Eof);
            };
            self.pos += 1;
            if ch == b'\n' {
                self.line = self.line.saturating_add(1);
                if comment {
                    comment = false;
                }
            }
            if comment {
                continue;
            }
            if escaped {
                escaped = false;
                continue;
            }
            if need_space {
                if is_space(ch) {
                    last_space = true;
                    need_space = false;
                    continue;
                }
                match ch {
                    b';' => return Ok(End::Semicolon),
                    b'{' => return Ok(End::BlockStart),
                    // `if ($a = "b")`: a parenthesis may follow a quote; it starts a word.
                    b')' => {
                        last_space = true;
                        need_space = false;
                    }
                    _ => return Err(self.unexpected(ch)),
                }
            }
            if last_space {
                start = self.pos - 1;
                start_line = self.line;
                if is_space(ch) {
                    continue;
                }
                match ch {
                    b';' | b'{' => {
                        if words.is_empty() {
                            return Err(self.unexpected(ch));
                        }
                        return Ok(if ch == b'{' { End::BlockStart } else { End::Semicolon });
                    }
                    b'}' => {
                        if !words.is_empty() {
                            return Err(self.error("unexpected \"}\""));
                        }
                        return Ok(End::BlockDone);
                    }
                    b'#' => {
                        comment = true;
                        continue;
                    }
                    b'\\' => escaped = true,
                    b'"' => {
                        start += 1;
                        d_quoted = true;
                    }
                    b'\'' => {
                        start += 1;
                        s_quoted = true;
                    }
                    b'$' => variable = true,
                    _ => {}
                }
                last_space = false;
                continue;
            }
            if ch == b'{' && variable {
                continue;
            }
            variable = false;
            match ch {
                b'\\' => {
                    escaped = true;
                    continue;
                }
                b'$' => {
                    variable = true;
                    continue;
                }
                _ => {}
            }
            let found = if d_quoted {
                ch == b'"'
            } else if s_quoted {
                ch == b'\''
            } else {
                is_space(ch) || ch == b';' || ch == b'{'
            };
            if !found {
                continue;
            }
            let quoted = d_quoted || s_quoted;
            if quoted {
                d_quoted = false;
                s_quoted = false;
                need_space = true;
            } else {
                last_space = true;
            }
            words.push(Word {
                value: unescape(&self.src[start..self.pos - 1]),
                quoted,
                line: start_line,
            });
            match ch {
                b';' => return Ok(End::Semicolon),
                b'{' => return Ok(End::BlockStart),
                _ => {}
            }
        }
    }

    fn unexpected(&self, ch: u8) -> Error {
        let shown =
            if ch.is_ascii_graphic() { (ch as char).to_string() } else { format!("\\x{ch:02x}") };
        self.error(format!("unexpected \"{shown}\""))
    }
}

/// A word's bytes with NGINX's escapes resolved.
fn unescape(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' {
            match raw.get(i + 1) {
                Some(b'"' | b'\'' | b'\\') => i += 1,
                Some(b't') => {
                    out.push(b'\t');
                    i += 2;
                    continue;
                }
                Some(b'r') => {
                    out.push(b'\r');
                    i += 2;
                    continue;
                }
                Some(b'n') => {
                    out.push(b'\n');
                    i += 2;
                    continue;
                }
                _ => {}
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    // Only ASCII bytes are removed or replaced, so valid UTF-8 stays valid.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(d: &[Directive]) -> Vec<(&str, Vec<&str>, u32)> {
        d.iter()
            .map(|d| (d.name.as_str(), d.args.iter().map(|a| a.value.as_str()).collect(), d.line))
            .collect()
    }

    #[test]
    fn directives_arguments_and_lines() {
        let d = parse("more_set_headers \"X-A: b\";\n\n  proxy_read_timeout 30s;").unwrap();
        assert_eq!(
            names(&d),
            vec![("more_set_headers", vec!["X-A: b"], 1), ("proxy_read_timeout", vec!["30s"], 3)]
        );
        assert!(d[0].args[0].quoted);
        assert!(!d[1].args[0].quoted);
        assert!(parse("").unwrap().is_empty());
        assert!(parse("  # only a comment\n\n").unwrap().is_empty());
    }

    #[test]
    fn blocks_nest() {
        let d = parse("if ($http_x = \"a\") {\n  return 403;\n}\nadd_header A b;").unwrap();
        assert_eq!(names(&d)[0], ("if", vec!["($http_x", "=", "a", ")"], 1));
        let inner = d[0].block.as_ref().unwrap();
        assert_eq!(names(inner), vec![("return", vec!["403"], 2)]);
        assert_eq!(names(&d)[1], ("add_header", vec!["A", "b"], 4));
        assert!(d[1].block.is_none());
        let d = parse("location /a{}").unwrap();
        assert_eq!(d[0].block, Some(vec![]));
    }

    #[test]
    fn quotes_escapes_and_comments() {
        let d = parse(r#"a 'x y' "q\"q" \; b\ c "t\tn\n" re\d+ #c ; "#).err();
        // The `#` starts a comment, so the `;` after it is commented out.
        assert_eq!(d.unwrap().message, "unexpected end of file, expecting \";\" or \"}\"");
        let d = parse("a 'x y' \"q\\\"q\" \\; b\\ c \"t\\tn\\n\" re\\d+ x#y; # c\n").unwrap();
        let args: Vec<&str> = d[0].args.iter().map(|a| a.value.as_str()).collect();
        assert_eq!(args, vec!["x y", "q\"q", "\\;", "b\\ c", "t\tn\n", "re\\d+", "x#y"]);
        let d = parse("a \"x\\\\y\" 'it\\'s';").unwrap();
        assert_eq!(d[0].args[0].value, "x\\y");
        assert_eq!(d[0].args[1].value, "it's");
        assert_eq!(parse("a \"\";").unwrap()[0].args[0].value, "");
    }

    #[test]
    fn variables_in_braces_do_not_open_blocks() {
        let d = parse("return 301 https://${host}$request_uri;").unwrap();
        assert_eq!(d[0].args[1].value, "https://${host}$request_uri");
        assert_eq!(
            d[0].args[1].parts().unwrap(),
            vec![Part::Text("https://"), Part::Var("host"), Part::Var("request_uri")]
        );
        assert_eq!(parts("a$ b$").unwrap(), vec![Part::Text("a$ b$")]);
        assert!(parts("${host").is_err());
        // `{` not after `$` ends the word and opens a block.
        let d = parse("if ($a){return 1;}").unwrap();
        assert_eq!(d[0].args[0].value, "($a)");
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("a;\n}", 2, "unexpected \"}\""),
            ("a {\n b;\n", 3, "unexpected end of file, expecting \"}\""),
            ("a\nb", 2, "unexpected end of file, expecting \";\" or \"}\""),
            ("a;\n;", 2, "unexpected \";\""),
            ("\n{", 2, "unexpected \"{\""),
            ("a \"b\"c;", 1, "unexpected \"c\""),
            ("a b }", 1, "unexpected \"}\""),
            ("a \"b;", 1, "unexpected end of file, expecting \";\" or \"}\""),
            ("a \\", 1, "unexpected end of file, expecting \";\" or \"}\""),
        ];
        for (text, line, message) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!((e.line, e.message.as_str()), (line, message), "{text:?}");
        }
        assert_eq!(parse("a;\n;").unwrap_err().to_string(), "line 2: unexpected \";\"");
    }

    #[test]
    fn a_closing_parenthesis_may_follow_a_quote() {
        for text in ["if ($a = 'b'){ return 1; }", "if ($a = 'b') { return 1; }"] {
            let d = parse(text).unwrap();
            let args: Vec<&str> = d[0].args.iter().map(|a| a.value.as_str()).collect();
            assert_eq!(args, vec!["($a", "=", "b", ")"], "{text}");
        }
        assert_eq!(parse("a 'b'x;").unwrap_err().message, "unexpected \"x\"");
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = "a {".repeat(MAX_DEPTH + 1) + &"}".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(&deep).unwrap_err().message, "blocks are nested too deeply");
        let ok = "a {".repeat(MAX_DEPTH - 1) + &"}".repeat(MAX_DEPTH - 1);
        assert!(parse(&ok).is_ok());
    }
}

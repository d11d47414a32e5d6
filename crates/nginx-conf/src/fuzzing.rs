//! The check the fuzz target `nginx_conf` runs on each input (in `fuzz/`, with nightly), and
//! the corpus replay runs on stable: one definition of the target's invariants. Not an API:
//! hidden from the documentation, and free to change.

use crate::{Directive, parse};

/// Any bytes (read as text) parse or fail with a line inside the text, never panic; every
/// directive's and word's line is within the text, a word's no earlier than its directive's;
/// splitting a word into variables never panics. Returns whether the text parsed.
pub fn nginx_conf(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let lines = text.bytes().filter(|b| *b == b'\n').count() as u32 + 1;
    match parse(&text) {
        Ok(tree) => {
            check(&tree, lines);
            true
        }
        Err(e) => {
            assert!((1..=lines).contains(&e.line), "{e} outside {lines} lines");
            false
        }
    }
}

fn check(directives: &[Directive], lines: u32) {
    for d in directives {
        assert!((1..=lines).contains(&d.line), "{d:?}");
        for w in &d.args {
            assert!(w.line >= d.line && w.line <= lines, "{w:?}");
            let _ = w.parts();
        }
        if let Some(block) = &d.block {
            check(block, lines);
        }
    }
}

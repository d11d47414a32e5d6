//! The fuzz target's checked-in seeds (`fuzz/` runs with them as its starting corpus), run on
//! stable so CI exercises them: each parses, or fails with a line inside the text, and the
//! invariants the fuzz target checks hold.

use std::fs;
use std::path::Path;

use sluice_nginx_conf::{Directive, parse};

/// Every directive's and word's line is within the text; splitting a word into variables
/// never panics.
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

#[test]
fn seeds_parse_or_fail_with_a_line() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/seeds");
    let (mut ok, mut failed) = (0, 0);
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned();
        let lines = text.bytes().filter(|b| *b == b'\n').count() as u32 + 1;
        match parse(&text) {
            Ok(tree) => {
                check(&tree, lines);
                ok += 1;
            }
            Err(e) => {
                assert!((1..=lines).contains(&e.line), "{}: {e}", path.display());
                failed += 1;
            }
        }
    }
    assert!(ok >= 6 && failed >= 2, "seeds of valid and invalid text: {ok} ok, {failed} failed");
}

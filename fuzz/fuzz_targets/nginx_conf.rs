//! NGINX configuration syntax (`sluice-nginx-conf`): any bytes parse or fail with a line
//! inside the text, never panic; every line number is within the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_nginx_conf::{Directive, parse};

fn check(directives: &[Directive], lines: u32) {
    for d in directives {
        assert!((1..=lines).contains(&d.line));
        for w in &d.args {
            assert!(w.line >= d.line && w.line <= lines);
            let _ = w.parts();
        }
        if let Some(block) = &d.block {
            check(block, lines);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines = text.bytes().filter(|b| *b == b'\n').count() as u32 + 1;
    match parse(&text) {
        Ok(tree) => check(&tree, lines),
        Err(e) => assert!((1..=lines).contains(&e.line)),
    }
});

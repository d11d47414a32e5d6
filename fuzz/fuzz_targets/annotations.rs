//! Annotation values and ConfigMap keys through the real translator: see
//! `sluice_translate::fuzzing::annotations`.
//! The check is shared with the stable corpus replay (crates/sluice/tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sluice_translate::fuzzing::annotations(data);
});

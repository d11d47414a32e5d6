//! Request path normalisation: see `sluice_model::fuzzing::normalize_path`.
//! The check is shared with the stable corpus replay (crates/sluice/tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sluice_model::fuzzing::normalize_path(data);
});

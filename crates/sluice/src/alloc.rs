//! Returning memory to the system after a configuration change.
//!
//! The `sluice` binary allocates with mimalloc (see `main.rs`). mimalloc hands freed pages
//! back to the system lazily, a second after they became free, and only when the thread that
//! owns them allocates or frees again. A configuration change frees a lot at once (the parse
//! of a manifest file, the previous snapshot and table, translation's indexes) on a thread that
//! then waits, idle, for the next change: with 10,000 Ingresses that left about 40 MB resident
//! that nothing used. [`release_free_memory`] asks mimalloc to return it right away.
//!
//! This module holds the workspace's only `unsafe` code: one call into the allocator's C API,
//! which takes no pointer and has no precondition.
#![allow(unsafe_code)]

/// Returns the free memory mimalloc holds to the system: this thread's free pages, and every
/// arena's pages waiting to be purged. Call it on the control loop's thread after an apply;
/// it never runs on the request path. Harmless when mimalloc is not the global allocator (it
/// then holds next to nothing).
pub fn release_free_memory() {
    // SAFETY: `mi_collect` takes a flag and no pointer; mimalloc supports calling it from any
    // thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

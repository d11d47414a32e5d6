//! The allocator's use of memory: transparent huge pages, and returning memory to the system
//! after a configuration change.
//!
//! The `sluice` binary allocates with mimalloc (see `main.rs`). mimalloc asks the kernel for
//! transparent huge pages on its arenas (`madvise(MADV_HUGEPAGE)`), which the kernel's usual
//! `madvise` setting then grants: a 2 MiB page is resident whole as soon as one byte of it is
//! touched. With 10,000 Ingresses that was 57 MB of huge pages and 16 MB more resident memory
//! (97 against 81 MB; 155 against 119 MB at the peak of the first load), for no measured gain
//! in translation or proxying. [`keep_huge_pages_off`] turns them off for the process, as
//! mimalloc itself does with `MIMALLOC_ALLOW_THP=0`; an operator who sets
//! `MIMALLOC_ALLOW_THP` decides instead.
//!
//! mimalloc hands freed pages back to the system lazily, a second after they became free, and
//! only when the thread that owns them allocates or frees again. A configuration change frees
//! a lot at once (the parse of a manifest file, the previous snapshot and table, translation's
//! indexes) on a thread that then waits, idle, for the next change: with 10,000 Ingresses that
//! left about 40 MB resident that nothing used. [`release_free_memory`] asks mimalloc to
//! return it right away.
//!
//! This module holds the workspace's only `unsafe` code: calls into the allocator's C API and
//! the kernel's that take no pointer and have no precondition.
#![allow(unsafe_code)]

/// Turns transparent huge pages off for this process (Linux), unless `MIMALLOC_ALLOW_THP` is
/// set (then mimalloc follows it). Call it first thing in `main`: pages already huge stay so.
pub fn keep_huge_pages_off() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: PR_SET_THP_DISABLE takes integers only; it sets a flag of this process
        // (kept across fork and exec). Its failure (a kernel without it) is ignored: only
        // memory is at stake, and nothing is logging yet.
        let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

/// Returns the free memory mimalloc holds to the system: this thread's free pages, and every
/// arena's pages waiting to be purged. Call it on the control loop's thread after an apply;
/// it never runs on the request path. Harmless when mimalloc is not the global allocator (it
/// then holds next to nothing).
pub fn release_free_memory() {
    // SAFETY: `mi_collect` takes a flag and no pointer; mimalloc supports calling it from any
    // thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

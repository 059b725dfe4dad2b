//! The crate's calls into the C platform outside the kernels, kept here so that every
//! `unsafe` of the crate lives under `src/tensor/`.

/// Restores the default action of SIGPIPE, so that a program whose reader goes away
/// (`rnnscope bench | head -1`) ends quietly, as any Unix filter does, instead of panicking on
/// its next write (Rust ignores SIGPIPE by default). Call it first thing in `main`, before any
/// thread exists. A no-op on other platforms.
pub fn default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: `signal` with SIG_DFL installs no handler of ours; called before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Gives every allocation of 128 KiB or more its own mapping, returned to the system when it is
/// freed (glibc's `M_MMAP_THRESHOLD`, fixed). By default glibc raises that threshold after the
/// first large free, and from then on large buffers come from the heap, where freed memory stays
/// resident: a training process then showed 10 MB more resident memory than it had allocated
/// (2-layer LSTM, hidden 256: 58.5 MB against 48.2 MB, with an identical heap peak under
/// heaptrack). rnnscope allocates its large buffers once per shape, never per step, so the
/// mappings cost nothing measurable. Call it first thing in `main`. A no-op off glibc.
pub fn map_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets an allocator parameter; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

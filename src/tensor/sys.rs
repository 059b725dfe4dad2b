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

/// Gives every allocation of 1 MiB or more its own mapping, returned to the system when it is
/// freed (glibc's `M_MMAP_THRESHOLD`, fixed). By default glibc raises that threshold after the
/// first large free, and from then on large buffers come from the heap, where freed memory stays
/// resident: a training process then showed 10 MB more resident memory than it had allocated
/// (2-layer LSTM, hidden 256: 58.5 MB against 48.7 MB, with an identical heap peak under
/// heaptrack). rnnscope allocates its own large buffers once per shape, but the `gemm` crate
/// allocates its packing buffer (up to 520 KiB) on every call: at a 128 KiB threshold each call
/// mapped and unmapped it (700 `munmap` in a 2 s benchmark, every page faulted in afresh), so
/// the threshold sits above it. Call it first thing in `main`. A no-op off glibc.
pub fn map_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets an allocator parameter; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}

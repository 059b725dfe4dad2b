//! The crate's one call into the C platform outside the kernels, kept here so that every
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

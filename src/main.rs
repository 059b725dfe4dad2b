fn main() {
    // Like any Unix filter, stop quietly when the reader of stdout goes away
    // (`rnnscope bench | head -1`) instead of panicking on the next write. Rust ignores SIGPIPE
    // by default; checkpoints are written atomically, so a run stopped this way keeps its last.
    #[cfg(unix)]
    // SAFETY: called first thing, before any thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    if let Err(e) = rnnscope::cli::run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn main() {
    // Checkpoints are written atomically, so a run stopped by a closed pipe keeps its last.
    rnnscope::tensor::default_sigpipe();
    if let Err(e) = rnnscope::cli::run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

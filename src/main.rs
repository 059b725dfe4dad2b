fn main() {
    if let Err(e) = rnnscope::cli::run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

//! `rnnscope experiment --config sweep.toml --out DIR`: a grid of synthetic-task runs.

use crate::error::{Error, Result};
use crate::train::experiment::{run_sweep, summary_markdown, SweepFile};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Sweep file (TOML; see experiments/).
    #[arg(long)]
    config: PathBuf,
    /// Output directory: one folder per run, runs.csv, results.csv, results.md.
    #[arg(long)]
    out: PathBuf,
    /// Runs in parallel (0 = one per core); each run uses one thread.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Print the planned runs and exit.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(a: Args) -> Result<()> {
    let text = std::fs::read_to_string(&a.config).map_err(|e| Error::io(&a.config, e))?;
    let sweep = SweepFile::parse(&text, &a.config)?;
    let runs = sweep.plan(&a.config)?;
    let workers = super::set_threads(a.threads);
    if a.dry_run {
        for r in &runs {
            println!(
                "{} length {} seed {}: {}",
                r.model,
                r.config.length,
                r.config.seed,
                r.config.label()
            );
        }
        return Ok(());
    }
    eprintln!(
        "{} runs of task `{}` on {workers} cores",
        runs.len(),
        sweep.task.name()
    );
    let start = Instant::now();
    let outcomes = run_sweep(&sweep, runs, &a.out, workers, &|line| eprintln!("{line}"))?;
    println!("{}", summary_markdown(&sweep, &outcomes));
    println!(
        "{:.0} s in all; tables in {}/results.md and results.csv",
        start.elapsed().as_secs_f64(),
        a.out.display()
    );
    // The report (plots of every run in one page); a failure only warns.
    crate::report::write_after_run(&a.out, false);
    Ok(())
}

//! The `rnnscope` command line: one file per subcommand.

pub mod bench;
pub mod demo;
pub mod eval;
pub mod experiment;
pub mod gradflow;
pub mod report;
pub mod sample;
pub mod task;
pub mod train;

use crate::error::{Error, Result, RunDirProblem};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Parser, Debug)]
#[command(
    name = "rnnscope",
    version,
    about = "Train recurrent language models with exact BPTT and see how gradients flow through time"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// The main job: train small models and show the effect of vanishing gradients (no input needed).
    Demo(demo::Args),
    /// Training throughput on the standard configurations (tokens/s, GFLOP/s, % of GEMM peak).
    Bench(bench::Args),
    /// Train a language model on a text file (or --resume a run).
    Train(train::Args),
    /// Loss, perplexity and bits per token of a checkpoint on a text file.
    Eval(eval::Args),
    /// Generate text from a checkpoint.
    Sample(sample::Args),
    /// Train on one synthetic long-range task (dependency, copy, adding, order).
    Task(task::Args),
    /// A grid of task runs (cells x lengths x remedies x seeds) with a results table.
    Experiment(experiment::Args),
    /// Gradient flow through time: profiles, influence matrix, spectra, Jacobians, theory checks.
    Gradflow(gradflow::Args),
    /// One self-contained HTML report (inline SVG plots) of a run, task, gradflow, demo or experiment directory.
    Report(report::Args),
}

/// Parses the arguments and runs the subcommand.
pub fn run() -> Result<()> {
    run_command(Cli::parse().command)
}

/// Runs one parsed subcommand (what `rnnscope COMMAND ...` does).
pub fn run_command(command: Command) -> Result<()> {
    // A bad RNNSCOPE_KERNEL is an error here, before any work, rather than a panic later.
    crate::tensor::kernel_from_env()?;
    match command {
        Command::Demo(a) => demo::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Sample(a) => sample::run(a),
        Command::Task(a) => task::run(a),
        Command::Experiment(a) => experiment::run(a),
        Command::Gradflow(a) => gradflow::run(a),
        Command::Report(a) => report::run(a),
    }
}

/// Sets the thread count for GEMMs and rayon (`0` = all cores; more than the cores is capped
/// at the cores, said once on stderr).
pub fn set_threads(threads: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let n = match threads {
        0 => cores,
        t if t > cores => {
            eprintln!("note: --threads {t} is more than the {cores} cores here: using {cores}");
            cores
        }
        t => t,
    };
    // The global pool can be built once; later calls keep the first size.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
    crate::tensor::set_gemm_threads(n);
    n
}

/// An output folder that a command fills with its files (`marker` first among them): absent,
/// empty, or holding an earlier result of the command, replaced with `--force`: then, when
/// `remove`, its files (`marker`, `*.csv`, `report.html`; nothing else) are removed so that
/// none is left stale.
pub fn clear_out(out: &Path, force: bool, marker: &str, remove: bool) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(out) else {
        if out.exists() {
            return Err(Error::Data(format!(
                "{}: exists and is not a directory: choose another --out",
                out.display()
            )));
        }
        return Ok(());
    };
    let paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    if paths.is_empty() {
        return Ok(());
    }
    if !out.join(marker).is_file() {
        return Err(Error::Data(format!(
            "{}: not empty and holds no earlier result ({marker} is missing): choose another --out",
            out.display()
        )));
    }
    if !force {
        return Err(Error::Data(format!(
            "{}: holds an earlier result ({marker} exists): replace it with --force or choose another --out",
            out.display()
        )));
    }
    if remove {
        for p in paths {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if p.is_file() && (name == marker || name == "report.html" || name.ends_with(".csv")) {
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            }
        }
    }
    Ok(())
}

/// Raised by Ctrl-C (see [`install_ctrlc`]); training loops stop at it.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// Whether [`install_ctrlc`] takes over Ctrl-C. A program that runs the commands inside its
/// own process and raises [`STOP`] itself (the Python module) turns it off.
pub static HANDLE_CTRLC: AtomicBool = AtomicBool::new(true);

/// Ctrl-C raises the stop flag (the loop finishes the step and saves); a second one quits.
pub fn install_ctrlc() {
    if !HANDLE_CTRLC.load(Ordering::SeqCst) {
        return;
    }
    let _ = ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted twice: quitting now (checkpoints on disk are complete)");
            std::process::exit(130);
        }
        eprintln!(
            "\ninterrupt: finishing the current step and saving (Ctrl-C again quits at once)"
        );
    });
}

/// Says which flag to use in the library errors that name a configuration field or ask for a
/// decision about the run directory. `resume` is whether the command has `--resume`.
pub fn with_flags(e: Error, resume: bool) -> Error {
    match &e {
        Error::RunDir { path, problem } => {
            let p = path.display();
            let hint = match problem {
                RunDirProblem::NotADirectory => "choose another --out".to_string(),
                RunDirProblem::HoldsRun { .. } if resume => format!(
                    "continue it with --resume {p}, replace it with --force, or choose another --out"
                ),
                RunDirProblem::HoldsRun { .. } => {
                    "replace it with --force or choose another --out".to_string()
                }
                RunDirProblem::NotFound | RunDirProblem::NothingToResume => {
                    format!("start a run with --out {p}")
                }
                RunDirProblem::OtherConfig { .. } => {
                    "give the same options as that run to continue it, replace it with --force, or choose another --out"
                        .to_string()
                }
            };
            Error::Data(format!("{e}: {hint}"))
        }
        Error::Diverged {
            bad_steps,
            step,
            checkpoint,
        } => Error::Numeric(format!(
            "{bad_steps} non-finite steps in a row (last at update {step}): training stopped{}: lower --lr, set --clip or change --init",
            checkpoint.as_ref().map_or(String::new(), |d| format!(
                "; the last good checkpoint is in {}",
                d.display()
            ))
        )),
        Error::Config(m) => match field_of(m) {
            Some(field) => Error::Config(format!("{m} (--{})", field.replace('_', "-"))),
            None => e,
        },
        _ => e,
    }
}

/// The configuration field a message is about: its first `` `name` = `` (a flag of the same
/// name, `-` for `_`, sets it).
fn field_of(msg: &str) -> Option<&str> {
    let (_, rest) = msg.split_once('`')?;
    let (name, after) = rest.split_once('`')?;
    let is_field = !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    (is_field && after.starts_with(" = ")).then_some(name)
}

//! `rnnscope experiment`: a grid of synthetic-task runs, planned into `DIR/plan.json`.
//!
//! ```text
//! --config SWEEP --out DIR            plan and run every point here, in parallel
//! --config SWEEP --out DIR --slurm    plan, write the batch scripts and submit them
//! --out DIR --run-index I             run point I of the plan (one array task)
//! --out DIR                           the same, I from $SLURM_ARRAY_TASK_ID or
//!                                     $JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs)
//! --out DIR --collect                 the tables and report of the finished points
//! ```

mod slurm;

use crate::error::{Error, Result};
use crate::train::experiment::{collect, run_point, run_sweep, summary_markdown, SweepFile};
use crate::train::plan::Plan;
use crate::train::run::LogLines;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The environment variables that give an array task its index, in the order they are read.
const INDEX_VARIABLES: [&str; 2] = ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"];

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Sweep file (TOML; see experiments/): plans the grid into DIR/plan.json. Without it,
    /// the command runs one point of the plan already in DIR (or collects it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output directory: plan.json, one folder per run, runs.csv, results.csv, results.json, results.md.
    #[arg(long)]
    out: PathBuf,
    /// Runs in parallel (0 = one per core), each on one thread; with --run-index, the threads of the one run.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Replace the sweep already in --out (its plan, run folders, logs and tables are removed
    /// once the new sweep is checked).
    #[arg(long, conflicts_with_all = ["run_index", "collect"])]
    force: bool,
    /// Print the planned runs and exit; with --slurm, write plan.json and the batch scripts without submitting them.
    #[arg(long)]
    dry_run: bool,
    /// Refuse grids of more points than this.
    #[arg(long, default_value_t = 1000)]
    max_points: usize,
    /// Run only grid point I of DIR/plan.json (without it and without --config:
    /// $SLURM_ARRAY_TASK_ID, else $JOB_COMPLETION_INDEX). A finished point is skipped, a
    /// stopped one continues from its last checkpoint.
    #[arg(long, value_name = "I", conflicts_with_all = ["config", "collect"])]
    run_index: Option<usize>,
    /// Write the tables and report of the points of DIR/plan.json that have finished, and list
    /// the others; exits with status 1 unless all have finished.
    #[arg(long, conflicts_with = "config")]
    collect: bool,
    /// Submit the grid to Slurm as a job array (one task per point) and a collect job after it.
    #[arg(long)]
    slurm: bool,
    #[command(flatten)]
    slurm_args: slurm::SlurmArgs,
}

pub fn run(a: Args) -> Result<()> {
    if a.config.is_none() && (a.dry_run || a.slurm) {
        return Err(Error::Usage(
            "--dry-run and --slurm plan a sweep: give --config SWEEP.toml".into(),
        ));
    }
    match &a.config {
        Some(config) => plan_and_run(&a, config),
        None if a.collect => collect_results(&a.out),
        None => run_one(&a),
    }
}

fn plan_and_run(a: &Args, config: &Path) -> Result<()> {
    let text = std::fs::read_to_string(config).map_err(|e| Error::io(config, e))?;
    let sweep = SweepFile::parse(&text, config)?;
    let plan = sweep.plan(config, a.max_points)?;
    let writes = a.slurm || !a.dry_run;
    if a.force && writes && Plan::path(&a.out).exists() {
        eprintln!("{}: replacing the sweep there", a.out.display());
        Plan::remove(&a.out)?;
    }
    if a.slurm {
        return submit(a, &plan);
    }
    if a.dry_run {
        for p in &plan.points {
            let c = &p.config;
            println!(
                "{}: {} length {} seed {}: {}",
                p.index,
                p.model,
                c.length,
                c.seed,
                c.label()
            );
        }
        return Ok(());
    }
    // Refused here (one line, nothing written) when --out holds another sweep.
    plan.save(&a.out)?;
    let workers = super::set_threads(a.threads);
    eprintln!(
        "{} runs of task `{}`, at most {workers} at a time (--threads)",
        plan.points.len(),
        plan.task.name()
    );
    let start = Instant::now();
    let collection =
        run_sweep(&plan, &a.out, workers, &|line| eprintln!("{line}")).map_err(with_fix)?;
    println!("{}", summary_markdown(&plan, &collection.outcomes()));
    println!(
        "{:.0} s in all; tables in {}/results.md and results.csv",
        start.elapsed().as_secs_f64(),
        a.out.display()
    );
    // The report (plots of every run in one page); a failure only warns.
    crate::report::write_after_run(&a.out, false);
    Ok(())
}

/// A run directory that cannot take its point: say how to get out.
fn with_fix(e: Error) -> Error {
    match e {
        Error::RunDir { .. } => Error::Data(format!(
            "{e}: move that folder away, replace the sweep with --force, or choose another --out"
        )),
        e => e,
    }
}

/// The point index from `--run-index` or the scheduler's environment.
fn point_index(a: &Args) -> Result<usize> {
    if let Some(i) = a.run_index {
        return Ok(i);
    }
    for var in INDEX_VARIABLES {
        if let Ok(v) = std::env::var(var) {
            return v.trim().parse().map_err(|_| {
                Error::Usage(format!(
                    "{var}={v:?} is not a grid point index: give --run-index I"
                ))
            });
        }
    }
    Err(Error::Usage(format!(
        "which grid point? give --config SWEEP.toml to run a sweep, --run-index I to run point I of {}, or --collect",
        Plan::path(&a.out).display()
    )))
}

fn run_one(a: &Args) -> Result<()> {
    let plan = Plan::read(&a.out)?;
    let point = plan.point(point_index(a)?, &a.out)?;
    super::set_threads(a.threads);
    super::install_ctrlc();
    eprintln!(
        "point {} of {}: {} length {} seed {} in {}",
        point.index,
        plan.points.len(),
        point.model,
        point.config.length,
        point.config.seed,
        point.run_dir(&a.out).display()
    );
    let outcome = run_point(
        &a.out,
        point,
        &mut LogLines(&mut |line| eprintln!("{line}")),
        &super::STOP,
    )
    .map_err(|e| {
        Error::Data(format!(
            "point {} ({}): {}",
            point.index,
            point.dir,
            with_fix(e)
        ))
    })?;
    let Some(o) = outcome else {
        return Err(Error::Data(format!(
            "point {} ({}) was interrupted; its last checkpoint is saved: the same command continues it",
            point.index, point.dir
        )));
    };
    let r = &o.result;
    println!(
        "point {} ({}): {} {:.4} ({} {:.4}) -> {} after {} updates, {:.1} s",
        point.index,
        point.dir,
        r.metric_name,
        r.metric,
        r.baseline_name,
        r.baseline,
        if r.solved { "solved" } else { "not solved" },
        r.updates,
        r.seconds
    );
    Ok(())
}

fn collect_results(out: &Path) -> Result<()> {
    let plan = Plan::read(out)?;
    let collection = collect(&plan, out);
    collection.write_tables(out)?;
    let outcomes = collection.outcomes();
    println!("{}", summary_markdown(&plan, &outcomes));
    let unfinished = collection.unfinished_lines(out);
    for line in &unfinished {
        println!("{line}");
    }
    println!(
        "{} of {} points finished; tables in {}/results.md, results.csv and results.json",
        outcomes.len(),
        plan.points.len(),
        out.display()
    );
    if !outcomes.is_empty() {
        crate::report::write_after_run(out, false);
    }
    if unfinished.is_empty() {
        Ok(())
    } else {
        Err(Error::Data(format!(
            "{} of {} points have not finished (listed above): run one again with `rnnscope experiment --out {} --run-index I`, or submit {} again",
            unfinished.len(),
            plan.points.len(),
            out.display(),
            out.join("sweep.sbatch").display()
        )))
    }
}

/// `--slurm`: writes the plan and the batch scripts, then submits them (unless `--dry-run`).
fn submit(a: &Args, plan: &Plan) -> Result<()> {
    a.slurm_args.check()?;
    plan.save(&a.out)?;
    let dir = a.out.canonicalize().map_err(|e| Error::io(&a.out, e))?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::Usage(format!("cannot find the rnnscope binary's path: {e}")))?;
    let scripts = a.slurm_args.write(&exe, &dir, plan.points.len())?;
    let n = plan.points.len();
    println!(
        "plan: {} ({n} points); batch scripts: {} and {}",
        Plan::path(&dir).display(),
        scripts.sweep.display(),
        scripts.collect.display()
    );
    if a.dry_run {
        println!(
            "not submitted (--dry-run); submit with:\n  sbatch {}\n  sbatch --dependency=afterany:ARRAY_JOB_ID {}",
            scripts.sweep.display(),
            scripts.collect.display()
        );
        return Ok(());
    }
    let array = slurm::sbatch(&scripts.sweep, &[])?;
    let collect = slurm::sbatch(
        &scripts.collect,
        &[format!("--dependency=afterany:{array}")],
    )
    .map_err(|e| {
        Error::Usage(format!(
            "{e}; the array job {array} is submitted: submit the collect step with `sbatch --dependency=afterany:{array} {}`",
            scripts.collect.display()
        ))
    })?;
    let at_once = a
        .slurm_args
        .max_parallel
        .map_or(String::new(), |k| format!(", at most {k} at a time"));
    println!(
        "submitted array job {array} (tasks 0-{}{at_once}) and collect job {collect} (runs once the array has ended)\n\
         watch:   squeue -j {array},{collect}\n\
         history: sacct -j {array},{collect} --format=JobID,State,ExitCode,Elapsed\n\
         logs:    {}/logs/point-I.log, {}/logs/collect.log\n\
         results: {}/results.md once job {collect} has run (or `rnnscope experiment --out {} --collect` at any time)",
        n - 1,
        dir.display(),
        dir.display(),
        dir.display(),
        dir.display()
    );
    Ok(())
}

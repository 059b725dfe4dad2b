//! `rnnscope task NAME --length L`: train one model on one synthetic task.
//!
//! Run again with the same options, the command continues the run in `--out` from its last
//! checkpoint (after Ctrl-C or a kill), or only reports it when it is done.

use crate::cell::{Activation, CellKind, Recurrence};
use crate::data::tasks::TaskKind;
use crate::error::{Error, Result};
use crate::layers::attention::Attention;
use crate::train::optim::OptimizerKind;
use crate::train::run::{LogLines, StopReason};
use crate::train::task::{run_task_until, TaskRunConfig};
use crate::train::RunDir;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// dependency, copy, adding or order.
    task: String,
    /// Dependency distance l, or sequence length / delay T.
    #[arg(long)]
    length: usize,
    #[arg(long, default_value = "lstm")]
    cell: String,
    #[arg(long, default_value = "tanh")]
    activation: String,
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    #[arg(long, default_value_t = 1)]
    layers: usize,
    #[arg(long, default_value_t = 16)]
    embedding: usize,
    /// How W_hh is parametrised: dense, or orthogonal (W_hh = expm(A), A skew-symmetric;
    /// vanilla RNN only).
    #[arg(long, default_value = "dense", value_parser = ["dense", "orthogonal"])]
    recurrence: String,
    /// Residual connections between stacked layers.
    #[arg(long)]
    residual: bool,
    /// Attention of the top layer over its earlier states: none, dot or additive.
    #[arg(long, default_value = "none", value_parser = ["none", "dot", "additive"])]
    attention: String,
    /// Attention reads at most K earlier steps (0 = the whole sequence).
    #[arg(long, default_value_t = 0, value_name = "K")]
    attention_span: usize,
    /// default, uniform:A, xavier, orthogonal, identity or chrono:T_MAX.
    #[arg(long, default_value = "default")]
    init: String,
    #[arg(long)]
    spectral_radius: Option<f64>,
    #[arg(long)]
    forget_bias: Option<f64>,
    #[arg(long, default_value = "adam")]
    optimizer: String,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Gradient-norm clipping threshold.
    #[arg(long)]
    clip: Option<f64>,
    /// Element-wise gradient clipping threshold.
    #[arg(long)]
    clip_value: Option<f64>,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 2000)]
    steps: usize,
    #[arg(long, default_value_t = 100)]
    eval_every: usize,
    #[arg(long, default_value_t = 1000)]
    test_size: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop at the first evaluation that meets the task's success criterion.
    #[arg(long)]
    stop_when_solved: bool,
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Run directory (the same options again continue the run there).
    #[arg(long)]
    out: PathBuf,
    /// Replace the run already in --out (its files are removed once the options are checked).
    #[arg(long)]
    force: bool,
}

pub fn run(a: Args) -> Result<()> {
    run_args(a).map_err(|e| super::with_flags(e, false))
}

fn run_args(a: Args) -> Result<()> {
    super::set_threads(a.threads);
    let cell = CellKind::parse(&a.cell).ok_or_else(|| {
        Error::Config(format!("unknown --cell `{}`: use rnn, lstm or gru", a.cell))
    })?;
    let activation = Activation::parse(&a.activation).ok_or_else(|| {
        Error::Config(format!(
            "unknown --activation `{}`: use tanh, relu, sigmoid, identity or modrelu",
            a.activation
        ))
    })?;
    let cfg = TaskRunConfig {
        task: TaskKind::parse(&a.task)?,
        length: a.length,
        cell,
        activation,
        hidden: a.hidden,
        layers: a.layers,
        embedding: a.embedding,
        recurrence: Recurrence::parse(&a.recurrence).ok_or_else(|| {
            Error::Config(format!(
                "unknown --recurrence `{}`: use dense or orthogonal",
                a.recurrence
            ))
        })?,
        residual: a.residual,
        attention: Attention::parse(&a.attention).ok_or_else(|| {
            Error::Config(format!(
                "unknown --attention `{}`: use none, dot or additive",
                a.attention
            ))
        })?,
        attention_span: a.attention_span,
        init: a.init,
        spectral_radius: a.spectral_radius,
        forget_bias: a.forget_bias,
        optimizer: OptimizerKind::parse(&a.optimizer)?,
        lr: a.lr,
        clip: a.clip,
        clip_value: a.clip_value,
        batch: a.batch,
        steps: a.steps,
        eval_every: a.eval_every,
        test_size: a.test_size,
        seed: a.seed,
        stop_when_solved: a.stop_when_solved,
        max_bad_steps: 0,
    };
    cfg.validate()?;
    if a.force {
        RunDir::make_fresh(&a.out, true, &mut |m| eprintln!("{m}"))?;
    }
    super::install_ctrlc();
    let (reason, r, _) = run_task_until(
        &cfg,
        Some(&a.out),
        &mut LogLines(&mut |line| eprintln!("{line}")),
        &super::STOP,
    )?;
    if matches!(reason, StopReason::Interrupted | StopReason::TimeLimit) {
        println!(
            "interrupted at update {} of {}; saved {}: the same command continues it",
            r.step,
            r.steps,
            a.out.display()
        );
        return Ok(());
    }
    let loss_vs = r.loss_baseline.map_or(String::new(), |b| {
        format!(" (memoryless loss baseline {b:.4})")
    });
    println!(
        "{} {} length {}: {} {:.4} ({} {:.4}), test loss {:.4}{loss_vs} -> {} after {} updates, {:.1} s",
        r.label,
        cfg.task.name(),
        r.length,
        r.metric_name,
        r.metric,
        r.baseline_name,
        r.baseline,
        r.test_loss,
        if r.solved { "solved" } else { "not solved" },
        r.updates,
        r.seconds
    );
    // The report (plots of the run's files in one page); a failure only warns.
    crate::report::write_after_run(&a.out, false);
    Ok(())
}

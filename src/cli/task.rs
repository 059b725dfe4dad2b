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
    /// The task: dependency, copy, adding or order.
    ///
    /// dependency: sentences `when she tried to V her N , <filler> she finally V-ed her N .`,
    /// a language model scored on the second N (accuracy; chance accuracy 1/8).
    /// copy: 10 symbols of 8, blanks, a delimiter; recall the 10 symbols at the end
    /// (accuracy on them, chance 1/8; the loss against the memoryless `10 ln 8 / (T + 20)`).
    /// adding: T (value, marker) pairs; output the sum of the two marked values (test MSE,
    /// against 1/6 for predicting the mean). order: the order of two symbols A/B among
    /// distractors (accuracy over AA/AB/BA/BB, chance 1/4).
    #[arg(value_name = "TASK")]
    task: String,
    /// What the length is depends on the task.
    ///
    /// dependency: the distance l between the key noun and its repeat (>= 6; sequences of
    /// l + 7 steps). copy: the delay T between the last symbol and the delimiter's recall
    /// (>= 1; sequences of T + 20 steps). adding: the sequence length T (>= 2). order: the
    /// sequence length L (>= 10; A/B at [0.1 L, 0.2 L) and [0.5 L, 0.6 L)).
    #[arg(long, value_name = "L")]
    length: usize,
    /// Recurrent cell: rnn, lstm or gru.
    #[arg(long, default_value = "lstm")]
    cell: String,
    /// Activation of the vanilla RNN: tanh, relu, sigmoid, identity or modrelu (ignored by
    /// lstm and gru).
    #[arg(long, default_value = "tanh")]
    activation: String,
    /// Hidden units per layer (>= 1).
    #[arg(long, default_value_t = 64, value_name = "H")]
    hidden: usize,
    /// Stacked recurrent layers (>= 1).
    #[arg(long, default_value_t = 1, value_name = "N")]
    layers: usize,
    /// Embedding size of the token tasks (>= 1; the adding problem reads its 2 inputs
    /// directly and ignores it).
    #[arg(long, default_value_t = 16, value_name = "E")]
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
    /// Initialisation: default (PyTorch's), uniform:A, xavier, orthogonal, identity or
    /// chrono:T_MAX (LSTM/GRU gate biases for time scales up to T_MAX).
    #[arg(long, default_value = "default", value_name = "NAME")]
    init: String,
    /// Rescale every W_hh gate block to this spectral radius (> 0) after the init.
    #[arg(long, value_name = "X")]
    spectral_radius: Option<f64>,
    /// LSTM forget-gate bias (any real number; LSTM only).
    #[arg(long, value_name = "X")]
    forget_bias: Option<f64>,
    /// Optimizer: sgd, adagrad, rmsprop, adam or adamw.
    #[arg(long, default_value = "adam")]
    optimizer: String,
    /// Learning rate (> 0).
    #[arg(long, default_value_t = 1e-3, value_name = "X")]
    lr: f64,
    /// Gradient-norm clipping threshold (> 0; off when absent).
    #[arg(long, value_name = "X")]
    clip: Option<f64>,
    /// Element-wise gradient clipping threshold (> 0; off when absent).
    #[arg(long, value_name = "X")]
    clip_value: Option<f64>,
    /// Sequences per update (>= 1), each freshly generated.
    #[arg(long, default_value_t = 32, value_name = "N")]
    batch: usize,
    /// Updates in all (>= 1).
    #[arg(long, default_value_t = 2000, value_name = "N")]
    steps: usize,
    /// Evaluate on the test set and checkpoint every N updates (>= 1).
    #[arg(long, default_value_t = 100, value_name = "N")]
    eval_every: usize,
    /// Held-out test sequences (>= 1), generated from their own seed.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    test_size: usize,
    /// Seed of the init, the training data and the test set.
    #[arg(long, default_value_t = 0, value_name = "N")]
    seed: u64,
    /// Stop at the first evaluation that meets the task's success criterion (accuracy >= 99%,
    /// or for adding test MSE < 0.01).
    #[arg(long)]
    stop_when_solved: bool,
    /// Threads (0 = all cores).
    #[arg(long, default_value_t = 0, value_name = "N")]
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

//! `rnnscope demo`: the main job, needing no input.
//!
//! Trains a tanh RNN and an LSTM language model (and two remedies for the RNN: attention over
//! its earlier states, and an orthogonal `W_hh`) on the dependency language (`when she tried
//! to print her tickets , ... she finally printed her ___`) at several distances `l` between
//! the key noun and the word that depends on it, measures each trained model's gradient flow
//! `R(l) = P(l) / P(0)` on held-out sentences, and prints the table that the vanishing-gradient
//! argument predicts: the RNN's accuracy on the dependent word falls to chance as `l` grows,
//! because its gradient across `l` steps is orders of magnitude smaller than the LSTM's.

use crate::cell::{Activation, CellKind, Recurrence};
use crate::data::tasks::{Task, TaskKind, NOUNS};
use crate::error::{Error, Result};
use crate::layers::attention::Attention;
use crate::train::experiment::run_parallel;
use crate::train::records::{write_csv, write_json, DemoRow, TaskSummary};
use crate::train::task::{run_task, write_task_gradflow, TaskRunConfig};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where the runs, results and report go.
    #[arg(long, default_value = "demo_out")]
    out: PathBuf,
    /// Distances between the key noun and the dependent word.
    #[arg(long, value_delimiter = ',', default_values_t = [6, 10, 15, 20])]
    distances: Vec<usize>,
    /// Maximum updates per run (a run stops early once it is solved).
    #[arg(long, default_value_t = 6000)]
    steps: usize,
    /// Parallel runs (0 = one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// The models of the table: the two of the story, and two remedies for the tanh RNN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Model {
    Rnn,
    Lstm,
    /// The tanh RNN reading its earlier states through dot-product attention.
    RnnAttention,
    /// The tanh RNN with `W_hh = expm(A)` orthogonal.
    RnnOrthogonal,
}

impl Model {
    const ALL: [Model; 4] = [
        Model::Lstm,
        Model::RnnAttention,
        Model::RnnOrthogonal,
        Model::Rnn,
    ];

    /// The `cell` of its results row and the stem of its run directory.
    fn name(self) -> &'static str {
        match self {
            Model::Rnn => "rnn",
            Model::Lstm => "lstm",
            Model::RnnAttention => "rnn+attention",
            Model::RnnOrthogonal => "rnn-orthogonal",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Model::Rnn => "tanh RNN",
            Model::Lstm => "LSTM",
            Model::RnnAttention => "RNN + attention",
            Model::RnnOrthogonal => "orthogonal RNN",
        }
    }
}

/// Updates of the remedies at most, to keep the demo near a minute: an orthogonal RNN's update
/// costs about 7 plain ones (`expm` of `W_hh` and its derivative); attention about 2 (and it
/// learns the dependency in a jump, typically after 1000-3000 updates at learning rate 3e-3).
const ORTHOGONAL_STEPS: usize = 500;
const ATTENTION_STEPS: usize = 3000;

fn run_config(model: Model, distance: usize, steps: usize, seed: u64) -> TaskRunConfig {
    let cell = if model == Model::Lstm {
        CellKind::Lstm
    } else {
        CellKind::Rnn
    };
    let mut c = TaskRunConfig::new(TaskKind::Dependency, distance);
    c.cell = cell;
    c.activation = Activation::Tanh;
    match model {
        Model::RnnAttention => {
            c.attention = Attention::Dot;
            c.lr = 3e-3;
        }
        Model::RnnOrthogonal => {
            c.recurrence = Recurrence::Orthogonal;
            c.init = "orthogonal".into();
        }
        _ => {}
    }
    c.hidden = 128;
    c.embedding = 32;
    c.steps = match model {
        Model::RnnOrthogonal => steps.min(ORTHOGONAL_STEPS),
        Model::RnnAttention => steps.min(ATTENTION_STEPS),
        _ => steps,
    };
    c.eval_every = 250;
    c.test_size = 512;
    c.seed = seed;
    c.stop_when_solved = true;
    if cell == CellKind::Lstm {
        c.lr = 3e-3;
        c.forget_bias = Some(1.0);
    }
    c
}

pub fn run(args: Args) -> Result<()> {
    let workers = super::set_threads(args.threads);
    for &l in &args.distances {
        Task::new(TaskKind::Dependency, l)?;
    }
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    println!("rnnscope demo: long-distance dependencies and vanishing gradients\n");
    println!("Each model is a language model trained on sentences like");
    println!(
        "  when she tried to print her tickets , <l - 6 filler words> she finally printed her ___"
    );
    println!(
        "and scored on the dependent word (one of {} nouns: chance {:.1}%).",
        NOUNS.len(),
        100.0 / NOUNS.len() as f64
    );
    println!(
        "Training {} runs on {workers} cores (up to {} updates each, stopping once solved)...\n",
        Model::ALL.len() * args.distances.len(),
        args.steps
    );
    let start = Instant::now();
    let mut jobs: Vec<(Model, usize)> = args
        .distances
        .iter()
        .flat_map(|&l| Model::ALL.map(|m| (m, l)))
        .collect();
    // Longest (LSTM, far) first: the slowest runs start early.
    jobs.sort_by_key(|&(m, l)| std::cmp::Reverse((m == Model::Lstm, l)));
    let mut rows = run_parallel(jobs, workers, |_, (which, l)| {
        let cfg = run_config(which, l, args.steps, args.seed);
        let dir = args.out.join(format!("{}_l{l}", which.name()));
        let (r, model) = run_task(&cfg, Some(&dir), &mut |_| {})?;
        let task = Task {
            kind: TaskKind::Dependency,
            length: l,
        };
        // For an attentive model `R(l)` along the attention path, the one that carries the
        // dependency.
        let flow = write_task_gradflow(&model, &task, args.seed, &dir.join("gradflow"))?;
        let ratio = flow.profile.attention.or(flow.profile.recurrent);
        let row = demo_row(&r, which, ratio, flow.decay_per_step);
        println!(
            "  {:<14} l = {:>3}: accuracy {:>5.1}%  R(l) = {}  ({} updates, {:.0} s)",
            row.cell,
            l,
            100.0 * row.accuracy,
            fmt_ratio(row.gradient_ratio),
            r.updates,
            r.seconds
        );
        Ok(row)
    })?;
    rows.sort_by_key(|r| (r.distance, r.cell.clone()));
    print_table(&rows, &args.distances);
    write_results(&args.out, &rows)?;
    println!(
        "\n{:.0} s in all. Runs, metrics and checkpoints: {}/",
        start.elapsed().as_secs_f64(),
        args.out.display()
    );
    // The report (plots of every run in one page); a failure only warns.
    crate::report::write_after_run(&args.out, false);
    Ok(())
}

fn demo_row(r: &TaskSummary, model: Model, ratio: Option<f64>, decay: Option<f64>) -> DemoRow {
    DemoRow {
        cell: model.name().into(),
        distance: r.length,
        accuracy: r.metric,
        chance: r.baseline,
        gradient_ratio: ratio,
        decay_per_step: decay,
        updates: r.updates,
        seconds: r.seconds,
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("n/a".into(), |v| format!("{v:.1e}"))
}

fn print_table(rows: &[DemoRow], distances: &[usize]) {
    let find = |m: Model, l: usize| rows.iter().find(|r| r.cell == m.name() && r.distance == l);
    // The story's two models first, then the remedies.
    let order = [
        Model::Rnn,
        Model::Lstm,
        Model::RnnAttention,
        Model::RnnOrthogonal,
    ];
    let head: Vec<String> = order
        .iter()
        .map(|m| format!("{} accuracy", m.title()))
        .chain(order.iter().map(|m| format!("{} R(l)", m.title())))
        .collect();
    println!("\n| distance l | {} |", head.join(" | "));
    println!("|---|{}", "---|".repeat(head.len()));
    for &l in distances {
        let acc =
            |m: Model| find(m, l).map_or("n/a".into(), |r| format!("{:.1}%", 100.0 * r.accuracy));
        let ratio = |m: Model| fmt_ratio(find(m, l).and_then(|r| r.gradient_ratio));
        let cells: Vec<String> = order
            .iter()
            .map(|&m| acc(m))
            .chain(order.iter().map(|&m| ratio(m)))
            .collect();
        println!("| {l} | {} |", cells.join(" | "));
    }
    println!("\nChance is {:.1}%. R(l) = mean |dJ^(i)/dh^(i-l)| / mean |dJ^(i)/dh^(i)| on held-out sentences; for RNN + attention along the attention path (one hop through the attention weight). RNN + attention gets at most {ATTENTION_STEPS} updates, the orthogonal RNN {ORTHOGONAL_STEPS}.", 100.0 / NOUNS.len() as f64);
}

fn write_results(dir: &Path, rows: &[DemoRow]) -> Result<()> {
    write_json(&dir.join("results.json"), rows)?;
    write_csv(&dir.join("results.csv"), rows)
}

//! How long the full influence matrix takes against one training step of the same model.
//!
//! ```text
//! cargo run --release --example gradflow_timing [-- CELL [T H B [V E [THREADS [ROUNDS]]]]]
//!                                  (default: rnn 256 256 16 65 64, all cores, 8 rounds)
//! ```
//! Model: one layer, tanh for the RNN; by default the character LM of DESIGN.md (V = 65,
//! E = 64). One training step is `Trainer::step` (forward, loss, backward, clip 5, Adam) from a
//! zero state, in f32 (as training runs) and in f64, timed as the mean over consecutive steps
//! spanning about as long as one influence run. The influence matrix is the forward pass, the
//! decoder injection, the batched sweep and the `T x T` matrix (`analysis::influence`, as
//! `analysis::snapshot` runs it), in f64 (the default) and in f32 (`Precision::F32`).
//!
//! Rounds interleave the four measurements so that load from other processes hits them alike;
//! each figure is the minimum over rounds (least disturbed) and the median, after a warm-up
//! round, in wall time and in process CPU time (user + system, all threads; on a shared
//! machine the CPU time of a one-thread run is the figure least affected by other processes).

use rnnscope::analysis;
use rnnscope::tensor::Float;
use rnnscope::train::{Clip, OptimizerConfig, OptimizerKind, Trainer};
use rnnscope::{CellKind, InitConfig, LanguageModel, ModelConfig, State, Workspace};
use std::time::Instant;

/// CPU time of this process (all threads, user + system) from `/proc/self/stat`, in clock
/// ticks of 1/100 s; 0 where unavailable.
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // after the parenthesised command name, utime and stime are the 12th and 13th fields
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let (u, k): (f64, f64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
            Some((u + k) / 100.0)
        })
        .unwrap_or(0.0)
}

/// Wall and CPU seconds of `f`.
fn time(mut f: impl FnMut()) -> (f64, f64) {
    let (s, c) = (Instant::now(), cpu_seconds());
    f();
    (s.elapsed().as_secs_f64(), cpu_seconds() - c)
}

/// Minimum and median of a sample.
fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2])
}

fn trainer<T: Float>(cfg: &ModelConfig, batch: usize) -> Trainer<T> {
    let mut m = LanguageModel::<T>::zeros(cfg.clone()).unwrap();
    rnnscope::init::initialize(&mut m, &InitConfig::default()).unwrap();
    Trainer::new(m, OptimizerConfig::new(OptimizerKind::Adam), batch)
}

/// Mean wall and CPU time of `n` consecutive training steps, each from a zero state.
fn train_step<T: Float>(tr: &mut Trainer<T>, inp: &[u32], tgt: &[u32], n: usize) -> (f64, f64) {
    let (w, c) = time(|| {
        for _ in 0..n {
            tr.reset_state();
            tr.step(inp, tgt, 1e-3, Clip::Norm(5.0), None).unwrap();
        }
    });
    (w / n as f64, c / n as f64)
}

/// Forward, injection, batched sweep and the `T x T` matrix.
fn influence<T: Float>(
    m: &LanguageModel<T>,
    ws: &mut Workspace<T>,
    inp: &[u32],
    tgt: &[u32],
    batch: usize,
) -> (f64, f64) {
    let state = State::zeros(&m.config, batch);
    time(|| {
        let norms = analysis::influence(m, ws, inp, tgt, &state, batch, None);
        let mat = norms.matrix(&norms.dh[0]);
        assert!(mat.iter().all(|x| x.is_finite()));
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cell = args
        .first()
        .and_then(|s| CellKind::parse(s))
        .unwrap_or(CellKind::Rnn);
    let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (steps, hidden, batch) = (num(1, 256), num(2, 256), num(3, 16));
    let (vocab, embedding) = (num(4, 65), num(5, 64));
    let threads = rnnscope::cli::set_threads(num(6, 0));
    let rounds = num(7, 8).max(1);
    let cfg = ModelConfig {
        cell,
        activation: rnnscope::Activation::Tanh,
        vocab,
        embedding,
        hidden,
        layers: 1,
        dropout: 0.0,
        tie: false,
        input_size: 0,
        output: Default::default(),
        recurrence: Default::default(),
        residual: false,
        attention: Default::default(),
        attention_span: 0,
        proj_size: 0,
    };
    let inp: Vec<u32> = (0..steps * batch).map(|i| (i * 7 % vocab) as u32).collect();
    let tgt: Vec<u32> = (0..steps * batch)
        .map(|i| (i * 11 % vocab) as u32)
        .collect();
    let mut tr32 = trainer::<f32>(&cfg, batch);
    let mut tr64 = trainer::<f64>(&cfg, batch);
    let (m32, m64) = (tr32.model.clone(), tr64.model.clone());
    let (mut ws32, mut ws64) = (Workspace::default(), Workspace::default());
    // [wall, cpu] samples of: train f32, train f64, influence f64, influence f32
    let mut samples: [[Vec<f64>; 2]; 4] = Default::default();
    // training steps per measurement: about as long as one f64 influence run
    let (mut n32, mut n64) = (1, 1);
    for round in 0..=rounds {
        let t32 = train_step(&mut tr32, &inp, &tgt, n32);
        let t64 = train_step(&mut tr64, &inp, &tgt, n64);
        let i64_ = influence(&m64, &mut ws64, &inp, &tgt, batch);
        let i32_ = influence(&m32, &mut ws32, &inp, &tgt, batch);
        n32 = ((i64_.0 / t32.0) as usize).clamp(1, 200);
        n64 = ((i64_.0 / t64.0) as usize).clamp(1, 200);
        if round > 0 {
            for (k, x) in [t32, t64, i64_, i32_].into_iter().enumerate() {
                samples[k][0].push(x.0);
                samples[k][1].push(x.1);
            }
        }
    }
    let gflop = analysis::sweep_flops(cell, hidden, 1, steps, batch) / 1e9;
    let train_gflop = cfg.train_flops_per_token() * (steps * batch) as f64 / 1e9;
    println!(
        "{} T={steps} H={hidden} B={batch} V={vocab} E={embedding}, {threads} threads",
        cell.name()
    );
    println!(
        "flops: influence {gflop:.1} GFLOP, training step {train_gflop:.2} GFLOP (ratio {:.1})",
        gflop / train_gflop
    );
    for (clock, which) in [("wall", 0), ("cpu", 1)] {
        let [(t32, t32m), (t64, t64m), (i64_, i64m), (i32_, i32m)] =
            samples.clone().map(|s| stats(s[which].clone()));
        println!("{clock} time, min over {rounds} rounds [median]");
        println!(
            "  training step      f32 {:8.1} ms [{:.1}]    f64 {:8.1} ms [{:.1}]",
            t32 * 1e3,
            t32m * 1e3,
            t64 * 1e3,
            t64m * 1e3
        );
        println!(
            "  influence matrix   f64 {:8.1} ms [{:.1}] ({:.1} GFLOP/s)    f32 {:8.1} ms [{:.1}] ({:.1} GFLOP/s)",
            i64_ * 1e3,
            i64m * 1e3,
            gflop / i64_,
            i32_ * 1e3,
            i32m * 1e3,
            gflop / i32_
        );
        println!(
            "  ratio influence / training step, min [median]: f64/f32 {:.1}x [{:.1}x]  f64/f64 {:.1}x [{:.1}x]  f32/f32 {:.1}x [{:.1}x]",
            i64_ / t32,
            i64m / t32m,
            i64_ / t64,
            i64m / t64m,
            i32_ / t32,
            i32m / t32m
        );
    }
}

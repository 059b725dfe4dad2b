//! How long the full influence matrix takes against one training step of the same model.
//!
//! ```text
//! cargo run --release --example gradflow_timing [-- CELL [T H B [V E]]]   (default: rnn 256 256 16 65 64)
//! ```
//! Model: one layer, tanh for the RNN; by default the character LM of DESIGN.md (V = 65, E = 64). One training step is
//! `Trainer::step` (forward, loss, backward, clip 5, Adam) in f32, as training runs, and in f64.
//! The influence matrix is the forward pass, the decoder injection, the batched sweep and the
//! `T x T` matrix, in f64 (as `rnnscope gradflow` and `analysis::snapshot` run it) and in f32.
//! Each figure is the best of several runs after a warm-up.

use rnnscope::analysis;
use rnnscope::tensor::Float;
use rnnscope::train::{Clip, OptimizerConfig, OptimizerKind, Trainer};
use rnnscope::{CellKind, InitConfig, LanguageModel, ModelConfig, State, Workspace};
use std::time::Instant;

fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn train_step<T: Float>(cfg: &ModelConfig, inp: &[u32], tgt: &[u32], batch: usize) -> f64 {
    let mut m = LanguageModel::<T>::zeros(cfg.clone()).unwrap();
    rnnscope::init::initialize(&mut m, &InitConfig::default()).unwrap();
    let mut tr = Trainer::new(m, OptimizerConfig::new(OptimizerKind::Adam), batch);
    best(8, || {
        tr.reset_state();
        tr.step(inp, tgt, 1e-3, Clip::Norm(5.0), None).unwrap();
    })
}

fn influence<T: Float>(cfg: &ModelConfig, inp: &[u32], tgt: &[u32], batch: usize) -> f64 {
    let mut m = LanguageModel::<T>::zeros(cfg.clone()).unwrap();
    rnnscope::init::initialize(&mut m, &InitConfig::default()).unwrap();
    let mut ws = Workspace::default();
    let state = State::zeros(cfg, batch);
    best(3, || {
        let norms = analysis::influence(&m, &mut ws, inp, tgt, &state, batch, None);
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
    let threads = rnnscope::cli::set_threads(0);
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
    };
    let inp: Vec<u32> = (0..steps * batch).map(|i| (i * 7 % vocab) as u32).collect();
    let tgt: Vec<u32> = (0..steps * batch)
        .map(|i| (i * 11 % vocab) as u32)
        .collect();
    let t32 = train_step::<f32>(&cfg, &inp, &tgt, batch);
    let t64 = train_step::<f64>(&cfg, &inp, &tgt, batch);
    let i64_ = influence::<f64>(&cfg, &inp, &tgt, batch);
    let i32_ = influence::<f32>(&cfg, &inp, &tgt, batch);
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
    println!(
        "training step      f32 {:8.1} ms    f64 {:8.1} ms",
        t32 * 1e3,
        t64 * 1e3
    );
    println!(
        "influence matrix   f64 {:8.1} ms ({:.1} GFLOP/s)    f32 {:8.1} ms ({:.1} GFLOP/s)",
        i64_ * 1e3,
        gflop / i64_,
        i32_ * 1e3,
        gflop / i32_
    );
    println!(
        "ratio influence / training step: f64/f32 {:.1}x   f64/f64 {:.1}x   f32/f32 {:.1}x",
        i64_ / t32,
        i64_ / t64,
        i32_ / t32
    );
}

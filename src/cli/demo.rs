//! `rnnscope demo`: the main job, needing no input.
//!
//! Until the long-distance-dependency demo lands, it trains a small LSTM language model on a
//! generated sequence (a seeded random walk over a tiny grammar) with exact BPTT and prints
//! the loss falling from the unigram baseline.

use crate::cell::{Activation, CellKind};
use crate::error::Result;
use crate::init::{initialize, InitConfig};
use crate::model::{LanguageModel, ModelConfig};
use crate::train::{Clip, OptimizerConfig, OptimizerKind, Trainer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Training updates.
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// A token stream where each token depends on the previous two: `x_t = (x_{t-1} + x_{t-2}) mod V`
/// with probability 0.8, uniform noise otherwise.
fn generated_stream(len: usize, vocab: u32, seed: u64) -> Vec<u32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut s = vec![0u32, 1];
    while s.len() < len {
        let n = s.len();
        let next = if rng.gen::<f64>() < 0.8 {
            (s[n - 1] + s[n - 2]) % vocab
        } else {
            rng.gen_range(0..vocab)
        };
        s.push(next);
    }
    s
}

pub fn run(args: Args) -> Result<()> {
    super::set_threads(0);
    let vocab = 12u32;
    let config = ModelConfig {
        cell: CellKind::Lstm,
        activation: Activation::Tanh,
        vocab: vocab as usize,
        embedding: 16,
        hidden: 64,
        layers: 1,
        dropout: 0.0,
        tie: false,
        input_size: 0,
        output: Default::default(),
    };
    let (batch, bptt) = (16, 32);
    let stream = generated_stream(batch * bptt * 40 + 1, vocab, args.seed);
    let mut model = LanguageModel::<f32>::zeros(config)?;
    initialize(
        &mut model,
        &InitConfig {
            seed: args.seed,
            ..Default::default()
        },
    )?;
    let mut trainer = Trainer::new(model, OptimizerConfig::new(OptimizerKind::Adam), batch);
    // Entropy of the generating process (0.8 deterministic, 0.2 uniform) and of the unigram.
    let p_det = 0.8 + 0.2 / vocab as f64;
    let p_other = 0.2 / vocab as f64;
    let floor = -(p_det * p_det.ln() + (vocab as f64 - 1.0) * p_other * p_other.ln());
    println!("LSTM language model on a generated sequence (x_t = x_(t-1) + x_(t-2) mod {vocab}, 20% noise)");
    println!(
        "unigram baseline {:.3} nats/token, best achievable {floor:.3}",
        (vocab as f64).ln()
    );
    let cols = (stream.len() - 1) / batch;
    let windows = cols / bptt;
    let mut inputs = vec![0u32; batch * bptt];
    let mut targets = vec![0u32; batch * bptt];
    for step in 0..args.steps {
        let w = step % windows;
        if w == 0 {
            trainer.reset_state();
        }
        for t in 0..bptt {
            for b in 0..batch {
                let pos = b * cols + w * bptt + t;
                inputs[t * batch + b] = stream[pos];
                targets[t * batch + b] = stream[pos + 1];
            }
        }
        let s = trainer.step(&inputs, &targets, 3e-3, Clip::Norm(5.0), None)?;
        if step % 25 == 0 || step + 1 == args.steps {
            println!(
                "step {step:>4}  loss {:.3}  grad norm {:.3}",
                s.loss, s.grad_norm
            );
        }
    }
    Ok(())
}

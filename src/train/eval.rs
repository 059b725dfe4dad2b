//! Evaluation of a language model on a whole token stream, and sampling from it.
//!
//! ```text
//! loss = -(1 / (N - 1)) sum_{t=1}^{N-1} ln p(w_t | w_<t)      (nats per token)
//! perplexity = e^loss        bits per token = loss / ln 2
//! ```
//! The stream is read as `B` parallel columns in windows of `bptt` steps with the state carried
//! across windows (no dropout). Every token after the first is predicted exactly once: the few
//! tokens past the last full column continue column `B - 1` with batch 1. Each column starts
//! from a zero state, so a column's first predictions see less context than in one long pass.

use crate::error::{Error, Result};
use crate::layers::attention::Memory;
use crate::model::{LanguageModel, State, Workspace};
use crate::tensor::Float;
use rand::rngs::StdRng;
use rand::Rng;
use serde::Serialize;

/// Mean loss over a stream.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct EvalResult {
    /// Mean cross-entropy, nats per token.
    pub loss: f64,
    /// Number of predicted tokens (stream length - 1).
    pub tokens: u64,
}

impl EvalResult {
    pub fn perplexity(&self) -> f64 {
        self.loss.exp()
    }

    pub fn bits_per_token(&self) -> f64 {
        self.loss / std::f64::consts::LN_2
    }
}

/// Sum of the per-token losses of `stream[..]` predicting `stream[1..]` in one column of
/// batch `batch` windows, starting from and updating `state`.
#[allow(clippy::too_many_arguments)]
fn run_columns<T: Float>(
    model: &LanguageModel<T>,
    ws: &mut Workspace<T>,
    stream: &[u32],
    batch: usize,
    cols: usize,
    bptt: usize,
    state: &mut State<T>,
) -> f64 {
    let mut sum = 0.0;
    let mut inputs = Vec::with_capacity(bptt * batch);
    let mut targets = Vec::with_capacity(bptt * batch);
    let mut t0 = 0;
    while t0 < cols {
        let steps = bptt.min(cols - t0);
        inputs.clear();
        targets.clear();
        for t in 0..steps {
            for b in 0..batch {
                let p = b * cols + t0 + t;
                inputs.push(stream[p]);
                targets.push(stream[p + 1]);
            }
        }
        model.forward(ws, &inputs, state, steps, batch, None);
        model.loss(ws, &targets);
        sum += ws.step_loss.iter().sum::<f64>();
        model.final_state(ws, state);
        t0 += steps;
    }
    sum
}

/// Evaluates `model` on `stream` (see the module docs); `batch` columns, windows of `bptt`.
pub fn evaluate<T: Float>(
    model: &LanguageModel<T>,
    ws: &mut Workspace<T>,
    stream: &[u32],
    batch: usize,
    bptt: usize,
) -> Result<EvalResult> {
    if stream.len() < 2 {
        return Err(Error::Data(format!(
            "{} tokens are too few to evaluate on: need at least 2",
            stream.len()
        )));
    }
    let vocab = model.config.vocab as u32;
    if let Some(bad) = stream.iter().find(|&&t| t >= vocab) {
        return Err(Error::Data(format!(
            "token id {bad} is outside the model's vocabulary of {vocab}"
        )));
    }
    let n = stream.len() - 1;
    let b = batch.clamp(1, n);
    let bptt = bptt.max(1);
    let cols = n / b;
    let mut state = State::zeros(&model.config, b);
    let mut sum = run_columns(model, ws, stream, b, cols, bptt, &mut state);
    let tail = n - b * cols;
    if tail > 0 {
        // Continue column b - 1, which ended at position b * cols.
        let (hp, h) = (model.config.h_size(), model.config.hidden);
        let mut one = State::zeros(&model.config, 1);
        for k in 0..model.config.layers {
            let src = (k * b + b - 1) * hp..(k * b + b) * hp;
            one.h[k * hp..(k + 1) * hp].copy_from_slice(&state.h[src]);
            if !one.c.is_empty() {
                let src = (k * b + b - 1) * h..(k * b + b) * h;
                one.c[k * h..(k + 1) * h].copy_from_slice(&state.c[src]);
            }
        }
        sum += run_columns(model, ws, &stream[b * cols..], 1, tail, bptt, &mut one);
    }
    Ok(EvalResult {
        loss: sum / n as f64,
        tokens: n as u64,
    })
}

/// How to draw the next token.
#[derive(Clone, Debug)]
pub struct SampleOptions {
    /// Softmax temperature; 0 = always the most likely token.
    pub temperature: f64,
    /// Keep only the `k` most likely tokens (0 = all).
    pub top_k: usize,
    /// Token ids never to emit (e.g. `<unk>` of a char model, which training never saw).
    pub banned: Vec<u32>,
}

/// Draws one token from `logits` (length V) after temperature and top-k.
pub fn draw<T: Float>(logits: &[T], opts: &SampleOptions, rng: &mut StdRng) -> u32 {
    let mut cand: Vec<(u32, f64)> = logits
        .iter()
        .enumerate()
        .filter(|(i, _)| !opts.banned.contains(&(*i as u32)))
        .map(|(i, &z)| (i as u32, z.to_f64()))
        .filter(|(_, z)| !z.is_nan())
        .collect();
    if cand.is_empty() {
        return 0;
    }
    cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if opts.temperature <= 0.0 {
        return cand[0].0;
    }
    if opts.top_k > 0 {
        cand.truncate(opts.top_k);
    }
    let max = cand[0].1;
    let weights: Vec<f64> = cand
        .iter()
        .map(|&(_, z)| ((z - max) / opts.temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.gen::<f64>() * total;
    for (&(id, _), w) in cand.iter().zip(&weights) {
        if u < *w {
            return id;
        }
        u -= w;
    }
    cand[cand.len() - 1].0
}

/// Feeds `prime` (at least one token) then samples `length` tokens, one at a time with batch 1,
/// calling `emit` with each new token.
pub fn sample<T: Float>(
    model: &LanguageModel<T>,
    prime: &[u32],
    length: usize,
    opts: &SampleOptions,
    rng: &mut StdRng,
    mut emit: impl FnMut(u32) -> Result<()>,
) -> Result<()> {
    if prime.is_empty() {
        return Err(Error::Data(
            "sampling needs at least one prime token".into(),
        ));
    }
    let v = model.config.vocab;
    let mut ws = Workspace::default();
    let mut state = State::zeros(&model.config, 1);
    // With attention, every new token attends over the states of all tokens before it (or
    // the last `attention_span`), kept in `memory`.
    let mut memory = Memory::default();
    let keep = match model.config.attention_span {
        0 => prime.len() + length,
        k => k + 1,
    };
    memory.h.reserve(keep * model.config.hidden);
    memory.k.reserve(keep * model.config.hidden);
    model.forward_remembering(&mut ws, prime, &state, prime.len(), 1, &mut memory);
    model.final_state(&ws, &mut state);
    let mut next = draw(&ws.logits[(prime.len() - 1) * v..], opts, rng);
    for i in 0..length {
        emit(next)?;
        if i + 1 == length {
            break;
        }
        model.forward_remembering(&mut ws, &[next], &state, 1, 1, &mut memory);
        model.final_state(&ws, &mut state);
        next = draw(&ws.logits, opts, rng);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::{Activation, CellKind};
    use crate::init::{initialize, InitConfig};
    use crate::model::ModelConfig;
    use rand::SeedableRng;

    fn model() -> LanguageModel<f64> {
        let c = ModelConfig {
            cell: CellKind::Lstm,
            activation: Activation::Tanh,
            vocab: 7,
            embedding: 3,
            hidden: 5,
            layers: 2,
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
        let mut m = LanguageModel::zeros(c).unwrap();
        initialize(&mut m, &InitConfig::default()).unwrap();
        m
    }

    #[test]
    fn batched_evaluation_equals_one_long_pass() {
        let m = model();
        let mut rng = StdRng::seed_from_u64(4);
        let stream: Vec<u32> = (0..50).map(|_| rng.gen_range(0..7)).collect();
        let mut ws = Workspace::default();
        let one = evaluate(&m, &mut ws, &stream, 1, 7).unwrap();
        assert_eq!(one.tokens, 49);
        // One column read in one window: the same numbers, to rounding.
        let whole = evaluate(&m, &mut ws, &stream, 1, 1000).unwrap();
        assert!((one.loss - whole.loss).abs() < 1e-12);
        // Three columns (16 each) and a tail of 1 token: every token counted once.
        let three = evaluate(&m, &mut ws, &stream, 3, 5).unwrap();
        assert_eq!(three.tokens, 49);
        // The tail continues column 2 exactly: with batch 3 the last column's last 17 tokens
        // are scored as a 1-column pass over stream[32..] from a zero state would.
        let last = evaluate(&m, &mut ws, &stream[32..], 1, 5).unwrap();
        let first = evaluate(&m, &mut ws, &stream[..17], 1, 5).unwrap();
        let second = evaluate(&m, &mut ws, &stream[16..33], 1, 5).unwrap();
        let want = (first.loss * 16.0 + second.loss * 16.0 + last.loss * 17.0) / 49.0;
        assert!(
            (three.loss - want).abs() < 1e-12,
            "{} vs {want}",
            three.loss
        );
        let e = evaluate(&m, &mut ws, &stream[..1], 4, 5).err().unwrap();
        assert_eq!(
            e.to_string(),
            "1 tokens are too few to evaluate on: need at least 2"
        );
    }

    #[test]
    fn greedy_top_k_and_banned_tokens() {
        let logits = [0.0f32, 3.0, 2.9, -1.0];
        let mut rng = StdRng::seed_from_u64(0);
        let mut opts = SampleOptions {
            temperature: 0.0,
            top_k: 0,
            banned: vec![],
        };
        assert_eq!(draw(&logits, &opts, &mut rng), 1);
        opts.banned = vec![1];
        assert_eq!(draw(&logits, &opts, &mut rng), 2);
        opts.temperature = 1.0;
        opts.top_k = 1;
        assert!((0..50).all(|_| draw(&logits, &opts, &mut rng) == 2));
        opts.top_k = 2;
        let mut seen = [0; 4];
        for _ in 0..400 {
            seen[draw(&logits, &opts, &mut rng) as usize] += 1;
        }
        assert_eq!((seen[1], seen[3]), (0, 0));
        assert!(seen[0] > 0 && seen[2] > seen[0]);
    }

    #[test]
    fn sampling_is_seeded() {
        let m = model();
        let opts = SampleOptions {
            temperature: 1.0,
            top_k: 0,
            banned: vec![0],
        };
        let run = |seed| {
            let mut out = Vec::new();
            sample(
                &m,
                &[1, 2],
                20,
                &opts,
                &mut StdRng::seed_from_u64(seed),
                |t| {
                    out.push(t);
                    Ok(())
                },
            )
            .unwrap();
            out
        };
        assert_eq!(run(3), run(3));
        assert_eq!(run(3).len(), 20);
        assert!(run(3).iter().all(|&t| t != 0 && t < 7));
    }
}

//! Gradient flow through time: the batched sweep against `T` separate backward passes, the
//! identity-activation theory (`W_hh^l`, eigen-expansion, exact rates), the nonlinear bound,
//! the Jacobians against finite differences, and the `gradflow` command end to end.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rnnscope::analysis::{self, jacobian, profile, theory, SnapshotOptions};
use rnnscope::cell::{self, Cell, Dims, StateIo};
use rnnscope::{
    Activation, CellKind, InitConfig, InitScheme, LanguageModel, LossWeights, ModelConfig, State,
    StepRecord, Workspace,
};

fn config(cell: CellKind, activation: Activation, layers: usize, hidden: usize) -> ModelConfig {
    ModelConfig {
        cell,
        activation,
        vocab: 7,
        embedding: 5,
        hidden,
        layers,
        dropout: 0.0,
        tie: false,
    }
}

fn model(c: ModelConfig, scheme: InitScheme, rho: Option<f64>, seed: u64) -> LanguageModel<f64> {
    let mut m = LanguageModel::zeros(c).unwrap();
    let init = InitConfig {
        scheme,
        spectral_radius: rho,
        forget_bias: None,
        seed,
    };
    rnnscope::init::initialize(&mut m, &init).unwrap();
    m
}

fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(0..vocab as u32)).collect()
}

fn random_state(c: &ModelConfig, batch: usize, seed: u64) -> State<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut s = State::zeros(c, batch);
    for v in s.h.iter_mut().chain(s.c.iter_mut()) {
        *v = rng.gen_range(-0.8..0.8);
    }
    s
}

/// Every `g^(i)_j` of every layer from the batched sweep: `[layer][(i * T + j) * B * H ..]`
/// (and the LSTM's `dc`).
struct Everything {
    dh: Vec<Vec<f64>>,
    dc: Vec<Vec<f64>>,
}

fn sweep_everything(
    m: &LanguageModel<f64>,
    inp: &[u32],
    tgt: &[u32],
    s: &State<f64>,
    steps: usize,
    batch: usize,
) -> (Everything, profile::InfluenceNorms) {
    let c = &m.config;
    let bh = batch * c.hidden;
    let n = steps * steps * bh;
    let mut all = Everything {
        dh: vec![vec![0.0; n]; c.layers],
        dc: vec![vec![0.0; n]; c.layers],
    };
    let mut ws = Workspace::default();
    let mut visit = |v: &profile::StepView<'_, f64>| {
        let t = v.step;
        for i in t..steps {
            let at = (i * steps + t) * bh;
            let src = (i - t) * bh..(i - t + 1) * bh;
            all.dh[v.layer][at..at + bh].copy_from_slice(&v.dh[src.clone()]);
            if let Some(dc) = v.dc {
                all.dc[v.layer][at..at + bh].copy_from_slice(&dc[src]);
            }
        }
    };
    let norms = analysis::influence(m, &mut ws, inp, tgt, s, batch, Some(&mut visit));
    (all, norms)
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn batched_sweep_equals_separate_single_target_passes() {
    let (steps, batch) = (7, 3);
    for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
        for layers in [1, 2, 3] {
            let acts: &[Activation] = if cell == CellKind::Rnn {
                &[Activation::Tanh, Activation::Sigmoid, Activation::Identity]
            } else {
                &[Activation::Tanh]
            };
            for &act in acts {
                let c = config(cell, act, layers, 4);
                let m = model(c.clone(), InitScheme::Uniform(0.6), None, 3);
                let inp = tokens(steps * batch, c.vocab, 5);
                let tgt = tokens(steps * batch, c.vocab, 6);
                let s = random_state(&c, batch, 7);
                let (all, norms) = sweep_everything(&m, &inp, &tgt, &s, steps, batch);
                let bh = batch * c.hidden;
                let mut ws = Workspace::default();
                let mut grads = vec![0.0; m.layout.total()];
                let mut scale = 0.0f64;
                let mut worst = 0.0f64;
                for i in 0..steps {
                    let mut w = vec![0.0; steps * batch];
                    w[i * batch..(i + 1) * batch].fill(1.0);
                    m.forward(&mut ws, &inp, &s, steps, batch, None);
                    m.loss(&mut ws, &tgt);
                    let mut rec = StepRecord::default();
                    m.backward(
                        &mut ws,
                        &mut grads,
                        LossWeights::PerToken(&w),
                        None,
                        Some(&mut rec),
                    );
                    for k in 0..layers {
                        for j in 0..=i {
                            let want = &rec.dh[k][j * bh..(j + 1) * bh];
                            let got = &all.dh[k][(i * steps + j) * bh..(i * steps + j + 1) * bh];
                            scale = scale.max(want.iter().fold(0.0, |a, x| a.max(x.abs())));
                            worst = worst.max(max_abs_diff(got, want));
                            for b in 0..batch {
                                let n = want[b * c.hidden..(b + 1) * c.hidden]
                                    .iter()
                                    .map(|x| x * x)
                                    .sum::<f64>()
                                    .sqrt();
                                let got_n = norms.get(k, i, j, b);
                                assert!(
                                    (n - got_n).abs() <= 1e-12 * n.max(1e-300),
                                    "norm {cell:?} L{layers} k{k} i{i} j{j} b{b}: {got_n} vs {n}"
                                );
                            }
                            if cell == CellKind::Lstm {
                                let want = &rec.dc[k][j * bh..(j + 1) * bh];
                                let got =
                                    &all.dc[k][(i * steps + j) * bh..(i * steps + j + 1) * bh];
                                worst = worst.max(max_abs_diff(got, want));
                                for b in 0..batch {
                                    let n = want[b * c.hidden..(b + 1) * c.hidden]
                                        .iter()
                                        .map(|x| x * x)
                                        .sum::<f64>()
                                        .sqrt();
                                    let at = norms.index(i, j, b);
                                    assert!((n - norms.dc[k][at]).abs() <= 1e-12 * n.max(1e-300));
                                }
                            }
                        }
                    }
                }
                assert!(scale > 1e-3, "the test gradients are not trivially zero");
                assert!(
                    worst <= 1e-13 * scale,
                    "{cell:?} {act:?} layers {layers}: max |batched - separate| = {worst:e} (scale {scale:e})"
                );
            }
        }
    }
}

//! Finite-difference gradient checks in f64 for every parameter and the initial state.
//!
//! Fourth-order central differences
//! `(8 (L(p + e) - L(p - e)) - (L(p + 2e) - L(p - 2e))) / 12 e` with `e = 1e-4` (truncation
//! error O(e^4), rounding error about 1e-15 / e); each tensor's norm-wise relative error must be
//! at most 1e-6. Gradients three layers deep are small, so the plain two-point stencil's
//! rounding error alone would approach the tolerance.

mod common;

use common::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rnnscope::{Activation, CellKind, LanguageModel, LossWeights, ModelConfig, State, Workspace};

const EPS: f64 = 1e-4;
const TOL: f64 = 1e-6;

#[allow(clippy::too_many_arguments)]
fn loss(
    m: &LanguageModel<f64>,
    ws: &mut Workspace<f64>,
    inp: &[u32],
    tgt: &[u32],
    s: &State<f64>,
    t: usize,
    b: usize,
    dropout_seed: Option<u64>,
) -> f64 {
    let mut rng = dropout_seed.map(StdRng::seed_from_u64);
    m.forward(ws, inp, s, t, b, rng.as_mut());
    m.loss(ws, tgt)
}

/// Smallest distance of an RNN pre-activation from a kink of its activation: `|a_t|` (ReLU,
/// modReLU), and `| |a_t| + b |` (modReLU's bias), over all
/// pre-activations `a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh`
/// of the last forward pass (no dropout), recomputed from the cached states.
fn min_abs_preactivation(
    m: &LanguageModel<f64>,
    ws: &Workspace<f64>,
    inp: &[u32],
    s: &State<f64>,
) -> f64 {
    let c = &m.config;
    let (steps, batch) = ws.dims().unwrap();
    let emb = m.layout.view(m.params(), "embedding.weight").unwrap();
    let h = c.hidden;
    let mut min = f64::INFINITY;
    for k in 0..c.layers {
        let p = m.layer_params(k);
        let n_in = c.layer_input(k);
        for t in 0..steps {
            for b in 0..batch {
                let x: &[f64] = if k == 0 {
                    let tok = inp[t * batch + b] as usize;
                    &emb[tok * n_in..(tok + 1) * n_in]
                } else {
                    &ws.caches[k - 1].h_at(t + 1)[b * h..(b + 1) * h]
                };
                let hp: &[f64] = if t == 0 {
                    &s.h[(k * batch + b) * h..(k * batch + b + 1) * h]
                } else {
                    &ws.caches[k].h_at(t)[b * h..(b + 1) * h]
                };
                for i in 0..h {
                    let mut a = p.b_ih[i] + p.b_hh[i];
                    a += (0..n_in).map(|j| p.w_ih[i * n_in + j] * x[j]).sum::<f64>();
                    a += (0..h).map(|j| p.w_hh[i * h + j] * hp[j]).sum::<f64>();
                    min = min.min(a.abs());
                    if let Some(&b) = p.extra.get(i) {
                        min = min.min((a.abs() + b).abs());
                    }
                }
            }
        }
    }
    min
}

/// `f'(0)` by the five-point central stencil.
fn central_difference(mut f: impl FnMut(f64) -> f64) -> f64 {
    let (p1, m1, p2, m2) = (f(EPS), f(-EPS), f(2.0 * EPS), f(-2.0 * EPS));
    (8.0 * (p1 - m1) - (p2 - m2)) / (12.0 * EPS)
}

fn check(config: ModelConfig, steps: usize, batch: usize, dropout_seed: Option<u64>) {
    let label = format!("{config:?} T={steps} B={batch}");
    let n = steps * batch;
    let mut ws = Workspace::default();
    // ReLU is not differentiable at 0, modReLU at 0 and at |a| = -b: pick the first data seed
    // whose pre-activations all stay well clear of the kinks, so the stencil (steps of at most
    // 2e-4 in one parameter, moving a pre-activation by less than 1e-3 here) never straddles
    // one (other activations take seed 0). modReLU has twice the kinks, so its margin is 2e-3.
    let margin = if config.activation == Activation::ModRelu {
        2e-3
    } else {
        2e-2
    };
    let (mut m, inp, tgt, mut state) = (0..200)
        .map(|seed| {
            let mut m = model(config.clone(), 7 + seed);
            if config.attention.is_on() {
                // Larger weights, larger states: the query's gradient is a product of several
                // states, and at PyTorch's init scale (states ~0.1 in an LSTM) it is ~1e-7,
                // where the stencil's rounding error (~1e-12) alone is a relative 1e-5.
                m.params_mut().iter_mut().for_each(|p| *p *= 3.0);
            }
            let inp = tokens(n, config.vocab, 1 + seed);
            let tgt = tokens(n, config.vocab, 2 + seed);
            let state = random_state(&config, batch, 3 + seed);
            (m, inp, tgt, state)
        })
        .find(|(m, inp, _, state)| {
            let kinked = matches!(config.activation, Activation::Relu | Activation::ModRelu);
            !kinked || config.cell != CellKind::Rnn || {
                m.forward(&mut ws, inp, state, steps, batch, None);
                min_abs_preactivation(m, &ws, inp, state) > margin
            }
        })
        .expect("some seed keeps ReLU pre-activations away from 0");
    loss(&m, &mut ws, &inp, &tgt, &state, steps, batch, dropout_seed);
    let mut grads = vec![0.0; m.layout.total()];
    let mut dstate = State::zeros(&config, batch);
    m.backward(
        &mut ws,
        &mut grads,
        LossWeights::Mean,
        Some(&mut dstate),
        None,
    )
    .unwrap();

    let numeric: Vec<f64> = (0..m.params().len())
        .map(|i| {
            let p = m.params()[i];
            central_difference(|d| {
                m.params_mut()[i] = p + d;
                let l = loss(&m, &mut ws, &inp, &tgt, &state, steps, batch, dropout_seed);
                m.params_mut()[i] = p;
                l
            })
        })
        .collect();
    for e in m.layout.entries() {
        let err = rel_err(&grads[e.range()], &numeric[e.range()]);
        assert!(err <= TOL, "{label}: `{}` relative error {err:e}", e.name);
    }
    for which in ["h0", "c0"] {
        let slot = |s: &mut State<f64>| -> Vec<f64> {
            if which == "h0" {
                s.h.clone()
            } else {
                s.c.clone()
            }
        };
        let set = |s: &mut State<f64>, v: Vec<f64>| if which == "h0" { s.h = v } else { s.c = v };
        let orig = slot(&mut state);
        let mut num = vec![0.0; orig.len()];
        for i in 0..orig.len() {
            num[i] = central_difference(|d| {
                let mut v = orig.clone();
                v[i] += d;
                set(&mut state, v);
                loss(&m, &mut ws, &inp, &tgt, &state, steps, batch, dropout_seed)
            });
        }
        set(&mut state, orig);
        let ana = if which == "h0" { &dstate.h } else { &dstate.c };
        let err = rel_err(ana, &num);
        assert!(
            err <= TOL,
            "{label}: initial state {which} relative error {err:e}"
        );
    }
}

/// T in {1, 2, 17} x B in {1, 3}, plus T = 17, B = 4: 68 rows, enough for the forward pass
/// to take its transposed-`W_hh` path (short passes read `W_hh` as stored).
fn all_shapes(cell: CellKind, activation: Activation) {
    for layers in [1, 3] {
        for tie in [false, true] {
            for (steps, batch) in [(1, 1), (1, 3), (2, 1), (2, 3), (17, 1), (17, 3), (17, 4)] {
                check(config(cell, activation, layers, tie), steps, batch, None);
            }
        }
    }
}

#[test]
fn rnn_tanh() {
    all_shapes(CellKind::Rnn, Activation::Tanh);
}

#[test]
fn rnn_relu() {
    all_shapes(CellKind::Rnn, Activation::Relu);
}

#[test]
fn rnn_sigmoid() {
    all_shapes(CellKind::Rnn, Activation::Sigmoid);
}

#[test]
fn rnn_identity() {
    all_shapes(CellKind::Rnn, Activation::Identity);
}

#[test]
fn rnn_modrelu() {
    all_shapes(CellKind::Rnn, Activation::ModRelu);
}

/// `W_hh = expm(A)` from a skew-symmetric generator: the gradient reaches `rnn.skew_hh_l{k}`
/// through the Frechet derivative of `expm`; with each activation, tied and untied, one and
/// three layers, short and long passes, and with dropout.
#[test]
fn orthogonal_recurrence() {
    use rnnscope::cell::Recurrence;
    for act in [Activation::Tanh, Activation::Identity, Activation::ModRelu] {
        for layers in [1, 3] {
            for tie in [false, true] {
                for (steps, batch) in [(1, 1), (2, 3), (17, 4)] {
                    let mut c = config(CellKind::Rnn, act, layers, tie);
                    c.recurrence = Recurrence::Orthogonal;
                    check(c, steps, batch, None);
                }
            }
        }
        let mut c = config(CellKind::Rnn, act, 2, false);
        c.recurrence = Recurrence::Orthogonal;
        c.dropout = 0.3;
        check(c, 5, 2, Some(42));
    }
}

/// Residual connections `o^k = h^k + o^(k-1)` between stacked layers, for every cell: plain,
/// tied, with dropout, over more rows than one backward chunk, and with orthogonal recurrence.
#[test]
fn residual_stacks() {
    for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
        for tie in [false, true] {
            for (steps, batch) in [(1, 1), (2, 3), (17, 4)] {
                let mut c = config(cell, Activation::Tanh, 3, tie);
                c.residual = true;
                check(c, steps, batch, None);
            }
        }
        let mut c = config(cell, Activation::Tanh, 3, false);
        c.residual = true;
        c.dropout = 0.3;
        check(c, 5, 2, Some(42));
    }
    let mut c = config(CellKind::Rnn, Activation::Tanh, 2, false);
    c.residual = true;
    c.recurrence = rnnscope::cell::Recurrence::Orthogonal;
    check(c, 4, 3, None);
    let batch = 4;
    let mut c = config(CellKind::Lstm, Activation::Tanh, 2, false);
    c.residual = true;
    check(c, rnnscope::cell::CHUNK_ROWS / batch + 3, batch, None);
}

#[test]
fn lstm() {
    all_shapes(CellKind::Lstm, Activation::Tanh);
}

#[test]
fn gru() {
    all_shapes(CellKind::Gru, Activation::Tanh);
}

/// LSTM with a projection (`nn.LSTM(proj_size = P)`): `h_t = W_hr (o * tanh(c_t))` has `P = 2`
/// values (hidden 5), so `W_hh` is `[4H, P]`, layer 1 reads `P` inputs and the decoder `P`;
/// one and two layers, tied (embedding = P) and not, short and long passes (packed `W_hh`),
/// more rows than one backward chunk, dropout, and residual connections.
#[test]
fn lstm_with_projection() {
    let proj = |layers: usize, tie: bool| {
        let mut c = config(CellKind::Lstm, Activation::Tanh, layers, tie);
        c.hidden = 5;
        c.proj_size = 2;
        if tie {
            c.embedding = 2;
        }
        c
    };
    for layers in [1, 2] {
        for tie in [false, true] {
            for (steps, batch) in [(1, 1), (2, 3), (17, 4)] {
                check(proj(layers, tie), steps, batch, None);
            }
        }
    }
    // One layer: the chunked top layer's own gradients. (Under a second layer, the bottom
    // layer's mean-loss gradients over 524 tokens are small enough that the stencil's rounding
    // error alone reaches ~1e-6: with e = 1e-3 they agree to under 1e-6 as well.)
    let batch = 4;
    check(
        proj(1, false),
        rnnscope::cell::CHUNK_ROWS / batch + 3,
        batch,
        None,
    );
    let mut c = proj(2, false);
    c.dropout = 0.3;
    check(c, 5, 2, Some(42));
    let mut c = proj(3, true);
    c.residual = true;
    check(c, 6, 2, None);
}

/// More than `CHUNK_ROWS` rows: the top layer walks back through time in two chunks, each
/// fetching its part of the decoder's gradient and adding its part of the weight gradients;
/// the layer below takes its upstream gradient whole. With dropout, the chunks also take their
/// rows of the decoder's mask.
#[test]
fn backward_in_chunks_of_steps() {
    let batch = 4;
    let steps = rnnscope::cell::CHUNK_ROWS / batch + 3;
    for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
        check(config(cell, Activation::Tanh, 2, false), steps, batch, None);
        let mut c = config(cell, Activation::Tanh, 1, true);
        c.dropout = 0.3;
        check(c, steps, batch, Some(42));
    }
}

#[test]
fn dropout_with_a_fixed_mask() {
    for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
        let mut c = config(cell, Activation::Tanh, 2, false);
        c.dropout = 0.3;
        check(c, 5, 2, Some(42));
    }
}

/// Dense inputs and a squared-error head read at the last step only (the adding problem's
/// shape): every parameter and the dense input itself.
#[test]
fn dense_input_mse_head_last_step() {
    use rand::Rng;
    use rnnscope::model::Output;
    for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
        let mut c = config(cell, Activation::Tanh, 2, false);
        c.input_size = 2;
        c.vocab = 1;
        c.output = Output::Mse;
        let mut m = model(c.clone(), 5);
        let (steps, batch) = (6, 3);
        let mut rng = StdRng::seed_from_u64(4);
        let mut x: Vec<f64> = (0..steps * batch * 2)
            .map(|_| rng.gen_range(-1.0..1.0))
            .collect();
        let y: Vec<f64> = (0..steps * batch)
            .map(|_| rng.gen_range(0.0..2.0))
            .collect();
        let mut w = vec![0.0; steps * batch];
        w[(steps - 1) * batch..].fill(1.0 / batch as f64);
        let state = random_state(&c, batch, 6);
        let mut ws = Workspace::default();
        let loss = |m: &LanguageModel<f64>, ws: &mut Workspace<f64>, x: &[f64]| {
            m.forward_dense(ws, x, &state, steps, batch, None);
            m.loss_mse(ws, &y);
            ws.step_loss.iter().zip(&w).map(|(l, w)| l * w).sum::<f64>()
        };
        loss(&m, &mut ws, &x);
        let mut grads = vec![0.0; m.layout.total()];
        m.backward(&mut ws, &mut grads, LossWeights::PerToken(&w), None, None)
            .unwrap();
        let dx = ws.input_grad().to_vec();
        let numeric: Vec<f64> = (0..m.params().len())
            .map(|i| {
                let p = m.params()[i];
                central_difference(|d| {
                    m.params_mut()[i] = p + d;
                    let l = loss(&m, &mut ws, &x);
                    m.params_mut()[i] = p;
                    l
                })
            })
            .collect();
        for e in m.layout.entries() {
            let err = rel_err(&grads[e.range()], &numeric[e.range()]);
            assert!(err <= TOL, "{cell:?}: `{}` relative error {err:e}", e.name);
        }
        let num_dx: Vec<f64> = (0..x.len())
            .map(|i| {
                let v = x[i];
                central_difference(|d| {
                    x[i] = v + d;
                    let l = loss(&m, &mut ws, &x);
                    x[i] = v;
                    l
                })
            })
            .collect();
        let err = rel_err(&dx, &num_dx);
        assert!(
            err <= TOL,
            "{cell:?}: input gradient relative error {err:e}"
        );
    }
}

/// Attention of the top layer over its earlier states (`o_t = tanh(W_c [h_t ; c_t])`), dot and
/// additive scores, for every cell: the whole window and a span of 3 (shorter than the window),
/// one and two layers, tied, residual, with dropout (its mask on `o`), and the dense-input
/// task shape.
#[test]
fn attention() {
    use rnnscope::layers::attention::Attention;
    for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
        for kind in [Attention::Dot, Attention::Additive] {
            for span in [0, 3] {
                for (layers, tie) in [(1, false), (2, true)] {
                    for (steps, batch) in [(1, 1), (2, 3), (9, 2)] {
                        let mut c = config(cell, Activation::Tanh, layers, tie);
                        c.attention = kind;
                        c.attention_span = span;
                        check(c, steps, batch, None);
                    }
                }
                let mut c = config(cell, Activation::Tanh, 2, false);
                c.attention = kind;
                c.attention_span = span;
                c.dropout = 0.3;
                check(c, 7, 2, Some(42));
            }
            let mut c = config(cell, Activation::Tanh, 2, false);
            c.attention = kind;
            c.residual = true;
            check(c, 6, 2, None);
        }
    }
    // More rows than one backward chunk: the top layer takes the attention's gradient whole.
    let batch = 4;
    let mut c = config(CellKind::Rnn, Activation::Tanh, 1, false);
    c.attention = Attention::Dot;
    c.attention_span = 5;
    check(c, rnnscope::cell::CHUNK_ROWS / batch + 3, batch, None);
}

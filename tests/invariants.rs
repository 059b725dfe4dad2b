//! Invariants of exact BPTT that hold to rounding error.

mod common;

use common::*;
use rnnscope::{Activation, CellKind, LossWeights, State, StepRecord, Workspace};

/// `[n, n]` row-major product `a b`, in f64, written out here (not the library's GEMM).
fn mat_mul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        for l in 0..n {
            for j in 0..n {
                c[i * n + j] += a[i * n + l] * b[l * n + j];
            }
        }
    }
    c
}

/// With identity activation the per-step gradient of a single-step loss is exactly
/// `dJ^(i)/dh^(j) = dJ^(i)/dh^(i) W_hh^(i-j)`, and zero for `j > i`.
///
/// The expected values come from this test alone: its own forward pass
/// (`h_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh`, `z_t = W_dec h_t + b_dec`), its own
/// `dJ^(i)/dh^(i) = (softmax(z_i) - e_{y_i}) W_dec`, and `W_hh^l` by repeated matrix products;
/// every expected row is checked to be non-zero, so the comparison cannot pass vacuously.
#[test]
fn identity_rnn_gradient_is_w_hh_power() {
    let mut c = config(CellKind::Rnn, Activation::Identity, 1, false);
    c.hidden = 6;
    let m = model(c.clone(), 21);
    let (steps, batch, h, e, v) = (12, 3, c.hidden, c.embedding, c.vocab);
    let inp = tokens(steps * batch, c.vocab, 1);
    let tgt = tokens(steps * batch, c.vocab, 2);
    let state = random_state(&c, batch, 3);
    let view = |name: &str| m.layout.view(m.params(), name).unwrap().to_vec();
    let (emb, w_ih, w_hh) = (
        view("embedding.weight"),
        view("rnn.weight_ih_l0"),
        view("rnn.weight_hh_l0"),
    );
    let (b_ih, b_hh) = (view("rnn.bias_ih_l0"), view("rnn.bias_hh_l0"));
    let (w_dec, b_dec) = (view("decoder.weight"), view("decoder.bias"));

    // The test's own forward pass: hs[t][b] = h_t of batch row b, t = 0..steps.
    let mut hs = vec![vec![vec![0.0; h]; batch]; steps];
    for b in 0..batch {
        let mut prev = state.h[b * h..(b + 1) * h].to_vec();
        for t in 0..steps {
            let x = &emb[inp[t * batch + b] as usize * e..][..e];
            let next: Vec<f64> = (0..h)
                .map(|r| {
                    let wx: f64 = (0..e).map(|q| w_ih[r * e + q] * x[q]).sum();
                    let wh: f64 = (0..h).map(|q| w_hh[r * h + q] * prev[q]).sum();
                    wx + b_ih[r] + wh + b_hh[r]
                })
                .collect();
            hs[t][b] = next.clone();
            prev = next;
        }
    }
    // dJ^(i)/dh^(i) for the token of row b at step i: (softmax(z) - e_y) W_dec.
    let top_grad = |i: usize, b: usize| -> Vec<f64> {
        let z: Vec<f64> = (0..v)
            .map(|o| b_dec[o] + (0..h).map(|q| w_dec[o * h + q] * hs[i][b][q]).sum::<f64>())
            .collect();
        let zmax = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = z.iter().map(|&x| (x - zmax).exp()).sum();
        let y = tgt[i * batch + b] as usize;
        let dz: Vec<f64> = (0..v)
            .map(|o| (z[o] - zmax).exp() / total - if o == y { 1.0 } else { 0.0 })
            .collect();
        (0..h)
            .map(|q| (0..v).map(|o| dz[o] * w_dec[o * h + q]).sum())
            .collect()
    };
    // powers[l] = W_hh^l.
    let mut powers = vec![(0..h * h)
        .map(|x| if x / h == x % h { 1.0 } else { 0.0 })
        .collect::<Vec<f64>>()];
    for l in 1..steps {
        let next = mat_mul(&powers[l - 1], &w_hh, h);
        powers.push(next);
    }

    let mut ws = Workspace::default();
    let mut worst: f64 = 0.0;
    for i in 0..steps {
        m.forward(&mut ws, &inp, &state, steps, batch, None);
        m.loss(&mut ws, &tgt);
        let mut weights = vec![0.0; steps * batch];
        weights[i * batch..(i + 1) * batch].fill(1.0);
        let mut grads = vec![0.0; m.layout.total()];
        let mut rec = StepRecord::default();
        m.backward(
            &mut ws,
            &mut grads,
            LossWeights::PerToken(&weights),
            None,
            Some(&mut rec),
        )
        .unwrap();
        let g = &rec.dh[0];
        for b in 0..batch {
            let at = |t: usize| g[(t * batch + b) * h..(t * batch + b + 1) * h].to_vec();
            let top = top_grad(i, b);
            for j in 0..=i {
                // Row vector times W_hh^(i-j).
                let p = &powers[i - j];
                let want: Vec<f64> = (0..h)
                    .map(|col| (0..h).map(|r| top[r] * p[r * h + col]).sum())
                    .collect();
                let size = want.iter().map(|x| x * x).sum::<f64>().sqrt();
                assert!(size > 1e-6, "expected dJ^({i})/dh^({j}) is {size:e}");
                worst = worst.max(rel_err(&at(j), &want));
            }
            for j in i + 1..steps {
                assert!(
                    at(j).iter().all(|&v| v == 0.0),
                    "no gradient flows backwards in time"
                );
            }
        }
    }
    assert!(worst <= 1e-10, "max relative error {worst:e}");
}

/// Splitting a sequence into two windows and carrying the final state of the first into the
/// second (truncated BPTT's forward) reproduces one long forward pass exactly.
#[test]
fn carried_state_reproduces_one_long_forward() {
    for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
        let c = config(cell, Activation::Tanh, 2, false);
        let m = model(c.clone(), 4);
        let (steps, batch) = (10, 2);
        let inp = tokens(steps * batch, c.vocab, 8);
        let s0 = random_state(&c, batch, 9);
        let mut ws = Workspace::default();
        m.forward(&mut ws, &inp, &s0, steps, batch, None);
        let full = ws.logits.clone();
        let half = steps / 2 * batch;
        m.forward(&mut ws, &inp[..half], &s0, steps / 2, batch, None);
        let first = ws.logits.clone();
        let mut mid = State::zeros(&c, batch);
        m.final_state(&ws, &mut mid);
        m.forward(&mut ws, &inp[half..], &mid, steps / 2, batch, None);
        let joined: Vec<f64> = first.iter().chain(ws.logits.iter()).copied().collect();
        assert!(rel_err(&joined, &full) < 1e-15, "{cell:?}");
    }
}

/// One workspace used by two models of the same shape, one with dropout and one without (so
/// one reads the tokens itself and the other an embedding output that dropout masks): each
/// pass equals the same pass in a fresh workspace, bit for bit.
#[test]
fn a_workspace_follows_the_model_it_serves() {
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    let (steps, batch) = (6, 4);
    let plain = config(CellKind::Lstm, Activation::Tanh, 2, false);
    let mut dropped = plain.clone();
    dropped.dropout = 0.3;
    let inp = tokens(steps * batch, plain.vocab, 1);
    let tgt = tokens(steps * batch, plain.vocab, 2);
    let pass = |c: &rnnscope::ModelConfig, ws: &mut Workspace<f64>| {
        let m = model(c.clone(), 5);
        let state = State::zeros(c, batch);
        let mut rng = StdRng::seed_from_u64(9);
        m.forward(ws, &inp, &state, steps, batch, Some(&mut rng));
        let loss = m.loss(ws, &tgt);
        let mut grads = vec![0.0; m.layout.total()];
        m.backward(ws, &mut grads, LossWeights::Mean, None, None)
            .unwrap();
        (loss, grads)
    };
    let mut shared = Workspace::default();
    for c in [&plain, &dropped, &plain] {
        let got = pass(c, &mut shared);
        let want = pass(c, &mut Workspace::default());
        assert_eq!(got, want, "dropout {}", c.dropout);
    }
}

/// Backward consumes its forward pass (it writes gradients over the gate values), so backward
/// without a forward and a loss, or a second backward on the same forward, is an error that
/// leaves the gradients untouched, never a result computed from stale values.
#[test]
fn backward_without_its_forward_is_an_error() {
    for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
        let c = config(cell, Activation::Tanh, 2, false);
        let m = model(c.clone(), 4);
        let (steps, batch) = (5, 2);
        let inp = tokens(steps * batch, c.vocab, 1);
        let tgt = tokens(steps * batch, c.vocab, 2);
        let state = State::zeros(&c, batch);
        let mut grads = vec![0.0; m.layout.total()];
        let usage = |r: rnnscope::Result<()>| matches!(r, Err(rnnscope::Error::Usage(ref msg)) if msg.contains("forward pass"));
        let mut ws = Workspace::default();
        assert!(usage(m.backward(
            &mut ws,
            &mut grads,
            LossWeights::Mean,
            None,
            None
        )));
        m.forward(&mut ws, &inp, &state, steps, batch, None);
        // forward without loss
        assert!(usage(m.backward(
            &mut ws,
            &mut grads,
            LossWeights::Mean,
            None,
            None
        )));
        assert!(grads.iter().all(|&g| g == 0.0));
        m.loss(&mut ws, &tgt);
        m.backward(&mut ws, &mut grads, LossWeights::Mean, None, None)
            .unwrap();
        let once = grads.clone();
        assert!(once.iter().any(|&g| g != 0.0));
        assert!(usage(m.backward(
            &mut ws,
            &mut grads,
            LossWeights::Mean,
            None,
            None
        )));
        assert_eq!(grads, once, "a refused backward adds nothing");
    }
}

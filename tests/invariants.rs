//! Invariants of exact BPTT that hold to rounding error.

mod common;

use common::*;
use rnnscope::{Activation, CellKind, LossWeights, State, StepRecord, Workspace};

/// With identity activation the per-step gradient of a single-step loss is exactly
/// `dJ^(i)/dh^(j) = dJ^(i)/dh^(i) W_hh^(i-j)`, and zero for `j > i`.
#[test]
fn identity_rnn_gradient_is_w_hh_power() {
    let mut c = config(CellKind::Rnn, Activation::Identity, 1, false);
    c.hidden = 6;
    let m = model(c.clone(), 21);
    let (steps, batch, h) = (12, 3, c.hidden);
    let inp = tokens(steps * batch, c.vocab, 1);
    let tgt = tokens(steps * batch, c.vocab, 2);
    let state = random_state(&c, batch, 3);
    let w = m.layer_params(0).w_hh.to_vec();
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
            let mut want = at(i);
            for j in (0..i).rev() {
                // Row vector times W_hh: want_{j} = want_{j+1} W_hh.
                want = (0..h)
                    .map(|col| (0..h).map(|r| want[r] * w[r * h + col]).sum())
                    .collect();
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

//! With more than one GEMM thread the recurrence splits each step's batch rows between cores;
//! forward, loss, every gradient and the per-step record must equal the one-thread pass
//! (which the gradient checks and PyTorch fixtures cover). Own test binary: the thread count
//! is process-wide.

mod common;

use common::*;
use rnnscope::tensor::set_gemm_threads;
use rnnscope::{Activation, CellKind, LossWeights, State, StepRecord, Workspace};

fn pass(cell: CellKind, threads: usize) -> (Vec<f64>, Vec<f64>, State<f64>, StepRecord<f64>) {
    set_gemm_threads(threads);
    let c = config(cell, Activation::Tanh, 2, false);
    let m = model(c.clone(), 3);
    let (steps, batch) = (7, 17);
    let inp = tokens(steps * batch, c.vocab, 1);
    let tgt = tokens(steps * batch, c.vocab, 2);
    let s0 = random_state(&c, batch, 4);
    let mut ws = Workspace::default();
    m.forward(&mut ws, &inp, &s0, steps, batch, None);
    let logits = ws.logits.clone();
    m.loss(&mut ws, &tgt);
    let mut grads = vec![0.0; m.layout.total()];
    let mut ds = State::zeros(&c, batch);
    let mut rec = StepRecord::default();
    m.backward(
        &mut ws,
        &mut grads,
        LossWeights::Mean,
        Some(&mut ds),
        Some(&mut rec),
    );
    set_gemm_threads(1);
    (logits, grads, ds, rec)
}

#[test]
fn split_rows_equal_one_thread() {
    for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
        let one = pass(cell, 1);
        let two = pass(cell, 2);
        assert!(rel_err(&two.0, &one.0) < 1e-14, "{cell:?} logits");
        assert!(rel_err(&two.1, &one.1) < 1e-14, "{cell:?} gradients");
        assert!(rel_err(&two.2.h, &one.2.h) < 1e-14, "{cell:?} dh0");
        assert!(rel_err(&two.2.c, &one.2.c) < 1e-14, "{cell:?} dc0");
        for (a, b) in two
            .3
            .dh
            .iter()
            .chain(&two.3.dc)
            .zip(one.3.dh.iter().chain(&one.3.dc))
        {
            assert!(rel_err(a, b) < 1e-14, "{cell:?} per-step record");
        }
    }
}

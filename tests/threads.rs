//! With more than one GEMM thread the recurrence runs blocks of batch rows on different cores
//! for the whole pass; forward, loss, every gradient and the per-step record must equal the
//! one-thread pass (which the gradient checks and PyTorch fixtures cover). The f32 pass, whose
//! per-step products go through the packed recurrent kernel on long passes, must match the f64
//! pass to f32 accuracy, on every kernel path the CPU runs. Own test binary: the thread count
//! and the kernel path are process-wide.

mod common;

use common::*;
use rnnscope::analysis::convert;
use rnnscope::tensor::{kernel_path, set_gemm_threads, set_kernel, Float, KernelPath};
use rnnscope::{Activation, CellKind, LossWeights, ModelConfig, State, StepRecord, Workspace};
use std::io::Write;

/// Logits, gradients, dL/d(initial state) and the per-step record, all widened to f64.
struct Pass {
    logits: Vec<f64>,
    grads: Vec<f64>,
    dstate: State<f64>,
    record: StepRecord<f64>,
}

fn wide<T: Float>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

/// One forward + backward pass of the model built from `c` (seed 3) in precision `T`.
fn pass<T: Float>(c: &ModelConfig, threads: usize, steps: usize, batch: usize) -> Pass {
    set_gemm_threads(threads);
    let m = convert::<f64, T>(&model(c.clone(), 3)).unwrap();
    let inp = tokens(steps * batch, c.vocab, 1);
    let tgt = tokens(steps * batch, c.vocab, 2);
    let s64 = random_state(c, batch, 4);
    let s0 = State {
        h: s64.h.iter().map(|&x| T::from_f64(x)).collect(),
        c: s64.c.iter().map(|&x| T::from_f64(x)).collect(),
    };
    let mut ws = Workspace::default();
    m.forward(&mut ws, &inp, &s0, steps, batch, None);
    let logits = wide(&ws.logits);
    m.loss(&mut ws, &tgt);
    let mut grads = vec![T::ZERO; m.layout.total()];
    let mut ds = State::zeros(c, batch);
    let mut rec = StepRecord::default();
    m.backward(
        &mut ws,
        &mut grads,
        LossWeights::Mean,
        Some(&mut ds),
        Some(&mut rec),
    )
    .unwrap();
    set_gemm_threads(1);
    Pass {
        logits,
        grads: wide(&grads),
        dstate: State {
            h: wide(&ds.h),
            c: wide(&ds.c),
        },
        record: StepRecord {
            dh: rec.dh.iter().map(|v| wide(v)).collect(),
            dc: rec.dc.iter().map(|v| wide(v)).collect(),
        },
    }
}

/// Every output of `a` within `tol` (norm-wise relative error) of `b`.
fn assert_close(a: &Pass, b: &Pass, tol: f64, what: &str) {
    assert!(rel_err(&a.logits, &b.logits) <= tol, "{what}: logits");
    assert!(rel_err(&a.grads, &b.grads) <= tol, "{what}: gradients");
    assert!(rel_err(&a.dstate.h, &b.dstate.h) <= tol, "{what}: dh0");
    assert!(rel_err(&a.dstate.c, &b.dstate.c) <= tol, "{what}: dc0");
    let (ra, rb) = (&a.record, &b.record);
    assert_eq!(ra.dh.len() + ra.dc.len(), rb.dh.len() + rb.dc.len());
    for (x, y) in ra.dh.iter().chain(&ra.dc).zip(rb.dh.iter().chain(&rb.dc)) {
        assert!(rel_err(x, y) <= tol, "{what}: per-step record");
    }
}

#[test]
fn split_rows_equal_one_thread() {
    for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
        let c = config(cell, Activation::Tanh, 2, false);
        let one = pass::<f64>(&c, 1, 7, 17);
        let two = pass::<f64>(&c, 2, 7, 17);
        assert_close(&two, &one, 1e-14, cell.name());
    }
}

/// Long f32 passes (T * B >= 64) multiply by the packed `W_hh`; on each kernel path the CPU
/// runs (forced with `set_kernel`), the result is bit-identical for any number of threads and
/// within f32 rounding of the f64 pass (which the gradient checks and PyTorch fixtures
/// validate). H = 20 leaves ragged column panels in every cell. A path the CPU cannot run is
/// refused, and a line saying it was not tested goes to stderr (uncaptured: it shows in every
/// `cargo test` run).
#[test]
fn f32_packed_passes_match_f64_and_any_thread_count() {
    let before = kernel_path();
    for path in KernelPath::ALL {
        if let Some(lack) = path.missing() {
            let err = set_kernel(path).unwrap_err().to_string();
            assert!(err.contains(lack), "{err}");
            assert_eq!(kernel_path(), before, "a refused path must change nothing");
            let _ = writeln!(
                std::io::stderr(),
                "kernel path {}: not tested (CPU lacks {lack})",
                path.name()
            );
            continue;
        }
        set_kernel(path).unwrap();
        for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
            let mut c = config(cell, Activation::Tanh, 2, false);
            c.hidden = 20;
            let (steps, batch) = (8, 24);
            let exact = pass::<f64>(&c, 1, steps, batch);
            let one = pass::<f32>(&c, 1, steps, batch);
            let what = format!("{} {}", path.name(), cell.name());
            assert_close(&one, &exact, 2e-6, &format!("{what} f32 vs f64"));
            for threads in [2, 3] {
                let many = pass::<f32>(&c, threads, steps, batch);
                assert_close(&many, &one, 0.0, &format!("{what} f32 threads"));
            }
            assert_eq!(kernel_path(), path, "{what}: the path that ran");
        }
    }
    set_kernel(before).unwrap();
}

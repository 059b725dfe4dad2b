//! With more than one GEMM thread the recurrence runs blocks of batch rows on different cores
//! for the whole pass; forward, loss, every gradient and the per-step record must equal the
//! one-thread pass (which the gradient checks and PyTorch fixtures cover). The f32 pass, whose
//! per-step products go through the packed recurrent kernel on long passes, must match the f64
//! pass to f32 accuracy, on every kernel path the CPU runs. Own test binary: the thread count
//! and the kernel path are process-wide, so the tests here take turns ([`THREADS`]) and each
//! checks that the count it set is the count that ran.

mod common;

use common::*;
use rnnscope::analysis::convert;
use rnnscope::tensor::{
    gemm_threads, kernel_path, matmul, matmul_on, set_gemm_threads, set_kernel, Float, KernelPath,
    Trans,
};
use rnnscope::{Activation, CellKind, LossWeights, ModelConfig, State, StepRecord, Workspace};
use std::io::Write;
use std::sync::{Mutex, MutexGuard};

/// Held by every test that sets the process-wide thread count: without it, one test's
/// "one thread" pass could run while another has set two, and compare two against two.
static THREADS: Mutex<()> = Mutex::new(());

fn take_turn() -> MutexGuard<'static, ()> {
    THREADS.lock().unwrap_or_else(|e| e.into_inner())
}

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
    assert_eq!(gemm_threads(), threads);
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
    assert_eq!(
        gemm_threads(),
        threads,
        "another test changed the thread count"
    );
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

/// Every value of `a` has the bits of the same value of `b`.
fn assert_bitwise(a: &Pass, b: &Pass, what: &str) {
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.logits), bits(&b.logits), "{what}: logits");
    assert_eq!(bits(&a.grads), bits(&b.grads), "{what}: gradients");
    assert_eq!(bits(&a.dstate.h), bits(&b.dstate.h), "{what}: dh0");
    assert_eq!(bits(&a.dstate.c), bits(&b.dstate.c), "{what}: dc0");
    let (ra, rb) = (&a.record, &b.record);
    assert_eq!(ra.dh.len(), rb.dh.len(), "{what}: per-step record");
    assert_eq!(ra.dc.len(), rb.dc.len(), "{what}: per-step record");
    for (x, y) in ra.dh.iter().chain(&ra.dc).zip(rb.dh.iter().chain(&rb.dc)) {
        assert_eq!(bits(x), bits(y), "{what}: per-step record");
    }
}

/// Batch 25: two threads take 12 and 13 rows, three take 8, 8 and 9 (each block at least 8).
#[test]
fn split_rows_equal_one_thread() {
    let _turn = take_turn();
    for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
        let c = config(cell, Activation::Tanh, 2, false);
        let one = pass::<f64>(&c, 1, 7, 25);
        assert!(one.grads.iter().any(|&g| g != 0.0), "a pass with gradients");
        for threads in [2, 3] {
            let many = pass::<f64>(&c, threads, 7, 25);
            assert_bitwise(
                &many,
                &one,
                &format!("{} f64, {threads} threads", cell.name()),
            );
        }
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
    let _turn = take_turn();
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
                assert_bitwise(&many, &one, &format!("{what} f32, {threads} threads"));
            }
            assert_eq!(kernel_path(), path, "{what}: the path that ran");
        }
    }
    set_kernel(before).unwrap();
}

/// A GEMM of at least `2^24` multiply-adds (the size from which `matmul` uses every GEMM
/// thread) with two threads gives, bit for bit, the product on one thread: the threads split
/// the rows and columns of `C`, never the sum over `k`, so each entry is summed in the same
/// order. Checked for f32 and f64, each transposition, and accumulation into `C`; and the
/// result is the product (against an f64 sum, to the rounding bound `2 k eps sum |a||b|`).
#[test]
fn large_gemm_on_two_threads_equals_one_thread_bitwise() {
    let _turn = take_turn();
    let (m, n, k) = (260, 250, 270);
    assert!(
        m * n * k >= 1 << 24,
        "large enough to run on every GEMM thread"
    );
    fn check<T: Float>(m: usize, n: usize, k: usize) {
        let a: Vec<T> = tokens(m * k, 1000, 1)
            .iter()
            .map(|&v| T::from_f64(v as f64 / 500.0 - 1.0))
            .collect();
        let b: Vec<T> = tokens(k * n, 1000, 2)
            .iter()
            .map(|&v| T::from_f64(v as f64 / 500.0 - 1.0))
            .collect();
        let c0: Vec<T> = tokens(m * n, 1000, 3)
            .iter()
            .map(|&v| T::from_f64(v as f64 / 100.0))
            .collect();
        for (ta, tb) in [
            (Trans::No, Trans::No),
            (Trans::Yes, Trans::No),
            (Trans::No, Trans::Yes),
            (Trans::Yes, Trans::Yes),
        ] {
            for accumulate in [false, true] {
                let mut one = c0.clone();
                matmul_on(&mut one, &a, ta, &b, tb, m, n, k, accumulate, 1);
                set_gemm_threads(2);
                let mut two = c0.clone();
                matmul(&mut two, &a, ta, &b, tb, m, n, k, accumulate);
                assert_eq!(gemm_threads(), 2, "another test changed the thread count");
                set_gemm_threads(1);
                let bits = |v: &[T]| v.iter().map(|x| x.to_f64().to_bits()).collect::<Vec<_>>();
                assert!(
                    bits(&one) == bits(&two),
                    "{ta:?} {tb:?} accumulate {accumulate}: two threads differ from one"
                );
                // And it is the product: entry (i, j) against an f64 sum.
                let at = |x: &[T], t: Trans, r: usize, c: usize, cols: usize, rows: usize| match t {
                    Trans::No => x[r * cols + c].to_f64(),
                    Trans::Yes => x[c * rows + r].to_f64(),
                };
                let eps = if T::NAME == "f32" {
                    f32::EPSILON as f64
                } else {
                    f64::EPSILON
                };
                for (i, j) in [(0, 0), (m - 1, n - 1), (m / 2, n / 3), (7, n - 2)] {
                    let (mut want, mut mag) = (0.0, 0.0);
                    for l in 0..k {
                        let p = at(&a, ta, i, l, k, m) * at(&b, tb, l, j, n, k);
                        want += p;
                        mag += p.abs();
                    }
                    if accumulate {
                        want += c0[i * n + j].to_f64();
                        mag += c0[i * n + j].to_f64().abs();
                    }
                    let got = two[i * n + j].to_f64();
                    assert!(
                        (got - want).abs() <= 2.0 * k as f64 * eps * mag,
                        "{ta:?} {tb:?} C[{i},{j}] = {got}, want {want}"
                    );
                }
            }
        }
    }
    check::<f32>(m, n, k);
    check::<f64>(m, n, k);
}

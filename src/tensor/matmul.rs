//! The one place that calls the GEMM kernel (the `gemm` crate, also used inside faer).

use super::Float;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Whether a row-major operand is used as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trans {
    No,
    Yes,
}

static GEMM_THREADS: AtomicUsize = AtomicUsize::new(1);

/// Sets how many threads a large GEMM may use (1 = sequential). Call it once at the top level;
/// code that already runs inside a parallel region should leave it at 1 to avoid oversubscription.
pub fn set_gemm_threads(n: usize) {
    GEMM_THREADS.store(n.max(1), Ordering::Relaxed);
}

/// The current GEMM thread count.
pub fn gemm_threads() -> usize {
    GEMM_THREADS.load(Ordering::Relaxed)
}

/// Below this many multiply-adds a GEMM runs on one thread: splitting costs more than it saves
/// (measured with `rnnscope bench` on 2 cores: per-step products of B = 32, H = 256 ran faster
/// on one thread; B = 64, H = 512 and larger gained from two).
const PARALLEL_MIN_FLOPS: usize = 1 << 24;

/// Threads for an `[m, k] x [k, n]` product: all GEMM threads from `PARALLEL_MIN_FLOPS` on.
fn threads_for(m: usize, n: usize, k: usize) -> usize {
    if m * n * k >= PARALLEL_MIN_FLOPS {
        gemm_threads()
    } else {
        1
    }
}

/// `C = op(A) op(B)` (or `C += op(A) op(B)` when `accumulate`), all row-major.
///
/// ```text
/// C: [m, n]   op(A): [m, k]   op(B): [k, n]
/// A is stored [m, k] (Trans::No) or [k, m] (Trans::Yes); B is stored [k, n] or [n, k].
/// ```
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: Float>(
    c: &mut [T],
    a: &[T],
    ta: Trans,
    b: &[T],
    tb: Trans,
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
) {
    matmul_on(c, a, ta, b, tb, m, n, k, accumulate, threads_for(m, n, k));
}

/// [`matmul`] on exactly `threads` threads (1 inside a region that is already parallel).
#[allow(clippy::too_many_arguments)]
pub fn matmul_on<T: Float>(
    c: &mut [T],
    a: &[T],
    ta: Trans,
    b: &[T],
    tb: Trans,
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
    threads: usize,
) {
    assert_eq!(a.len(), m * k, "matmul: A must hold m * k values");
    let lda = if ta == Trans::No { k } else { m };
    gemm_call(c, a, lda, ta, b, tb, m, n, k, accumulate, threads);
}

/// [`matmul`] with `A` read from the leading columns of a wider row-major matrix with row
/// stride `lda`: `op(A) = A[.., ..k]` (`Trans::No`, `A` stored `[m, lda]`) or
/// `A[.., ..m]^T` (`Trans::Yes`, `A` stored `[k, lda]`).
#[allow(clippy::too_many_arguments)]
pub fn matmul_strided<T: Float>(
    c: &mut [T],
    a: &[T],
    lda: usize,
    ta: Trans,
    b: &[T],
    tb: Trans,
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
) {
    let (rows, cols) = if ta == Trans::No { (m, k) } else { (k, m) };
    assert!(cols <= lda, "matmul_strided: lda {lda} is narrower than A");
    assert!(
        rows == 0 || a.len() >= (rows - 1) * lda + cols,
        "matmul_strided: A is too short"
    );
    gemm_call(
        c,
        a,
        lda,
        ta,
        b,
        tb,
        m,
        n,
        k,
        accumulate,
        threads_for(m, n, k),
    );
}

/// The one call of the `gemm` crate; `A`'s length is checked by the callers against `lda`.
#[allow(clippy::too_many_arguments)]
fn gemm_call<T: Float>(
    c: &mut [T],
    a: &[T],
    lda: usize,
    ta: Trans,
    b: &[T],
    tb: Trans,
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
    threads: usize,
) {
    assert_eq!(c.len(), m * n, "matmul: C must be [m, n]");
    assert_eq!(b.len(), k * n, "matmul: B must hold k * n values");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(T::ZERO);
        }
        return;
    }
    // (row stride, column stride) of each operand as the kernel sees it.
    let (a_rs, a_cs) = match ta {
        Trans::No => (lda as isize, 1),
        Trans::Yes => (1, lda as isize),
    };
    let (b_rs, b_cs) = match tb {
        Trans::No => (n as isize, 1),
        Trans::Yes => (1, k as isize),
    };
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above (and the callers' on `a` and `lda`) guarantee that every index the kernel forms from (m, n, k) and
    // the strides stays inside `a`, `b` and `c`; `c` is uniquely borrowed and cannot alias `a`
    // or `b`; `T` is f32 or f64, both supported by `gemm::gemm`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f64], ta: Trans, b: &[f64], tb: Trans, m: usize, n: usize, k: usize) -> Vec<f64> {
        let at = |i: usize, p: usize| match ta {
            Trans::No => a[i * k + p],
            Trans::Yes => a[p * m + i],
        };
        let bt = |p: usize, j: usize| match tb {
            Trans::No => b[p * n + j],
            Trans::Yes => b[j * k + p],
        };
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| at(i, p) * bt(p, j)).sum();
            }
        }
        c
    }

    #[test]
    fn all_transpositions_match_naive_and_accumulate() {
        let (m, n, k) = (7, 5, 9);
        let a: Vec<f64> = (0..m * k).map(|i| ((i * 37 % 11) as f64) - 5.0).collect();
        let b: Vec<f64> = (0..k * n)
            .map(|i| ((i * 13 % 7) as f64) * 0.5 - 1.0)
            .collect();
        for ta in [Trans::No, Trans::Yes] {
            for tb in [Trans::No, Trans::Yes] {
                let want = naive(&a, ta, &b, tb, m, n, k);
                let mut c = vec![1.0; m * n];
                matmul(&mut c, &a, ta, &b, tb, m, n, k, false);
                assert_eq!(c, want);
                matmul(&mut c, &a, ta, &b, tb, m, n, k, true);
                let doubled: Vec<f64> = want.iter().map(|x| 2.0 * x).collect();
                assert_eq!(c, doubled);
            }
        }
    }

    #[test]
    fn strided_reads_leading_columns() {
        let (m, n, k, lda) = (3, 4, 5, 8);
        let wide: Vec<f64> = (0..m.max(k) * lda)
            .map(|i| ((i * 29 % 13) as f64) - 6.0)
            .collect();
        let b: Vec<f64> = (0..k * n).map(|i| ((i * 5 % 9) as f64) * 0.5).collect();
        // Trans::No: A = wide[.., ..k] stored [m, lda].
        let a: Vec<f64> = (0..m)
            .flat_map(|r| wide[r * lda..r * lda + k].to_vec())
            .collect();
        let mut c = vec![0.0; m * n];
        matmul_strided(
            &mut c,
            &wide[..(m - 1) * lda + k],
            lda,
            Trans::No,
            &b,
            Trans::No,
            m,
            n,
            k,
            false,
        );
        assert_eq!(c, naive(&a, Trans::No, &b, Trans::No, m, n, k));
        // Trans::Yes: A^T with A = wide[.., ..m] stored [k, lda].
        let at: Vec<f64> = (0..k)
            .flat_map(|r| wide[r * lda..r * lda + m].to_vec())
            .collect();
        matmul_strided(
            &mut c,
            &wide[..(k - 1) * lda + m],
            lda,
            Trans::Yes,
            &b,
            Trans::No,
            m,
            n,
            k,
            false,
        );
        assert_eq!(c, naive(&at, Trans::Yes, &b, Trans::No, m, n, k));
    }

    #[test]
    fn parallel_equals_sequential() {
        let (m, n, k) = (200, 150, 120);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 31 % 17) as f32) * 0.1 - 0.8)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 7 % 13) as f32) * 0.1 - 0.6)
            .collect();
        let mut seq = vec![0.0; m * n];
        matmul(&mut seq, &a, Trans::No, &b, Trans::Yes, m, n, k, false);
        set_gemm_threads(2);
        let mut par = vec![0.0; m * n];
        matmul(&mut par, &a, Trans::No, &b, Trans::Yes, m, n, k, false);
        set_gemm_threads(1);
        let want = naive(
            &a.iter().map(|&x| x as f64).collect::<Vec<_>>(),
            Trans::No,
            &b.iter().map(|&x| x as f64).collect::<Vec<_>>(),
            Trans::Yes,
            m,
            n,
            k,
        );
        for ((s, p), w) in seq.iter().zip(&par).zip(&want) {
            assert!(
                ((s - p).abs() as f64) <= 1e-4 * w.abs().max(1.0),
                "{s} vs {p}"
            );
            assert!(((*s as f64) - w).abs() <= 1e-4 * w.abs().max(1.0));
        }
    }
}

//! The AVX2/FMA micro-kernel: `MR x 16` tiles of `C` over panels of 16 columns.

use std::arch::x86_64::*;

/// Columns per packed panel (two 8-wide AVX registers).
pub(super) const NR: usize = 16;

/// Rows of `C` per micro-kernel tile: 6 x 2 accumulators + 2 panel registers + 1 broadcast
/// fit the 16 AVX registers.
const MR: usize = 6;

/// `C (+)= A B` with `B` packed in panels of `NR` columns.
///
/// # Safety
/// The CPU has AVX2 and FMA; `a` is `[m, k]`, `c` is `[m, n]`, `b` holds `n.div_ceil(NR)`
/// panels of `k * NR` values.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn matmul(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
) {
    for p in 0..n.div_ceil(NR) {
        let panel = &b[p * k * NR..(p + 1) * k * NR];
        let col = p * NR;
        let cols = NR.min(n - col);
        let mut row = 0;
        while row < m {
            let rows = MR.min(m - row);
            let a_tile = &a[row * k..(row + rows) * k];
            let c_tile = &mut c[row * n + col..];
            match rows {
                6 => tile::<6>(c_tile, a_tile, panel, n, k, cols, accumulate),
                5 => tile::<5>(c_tile, a_tile, panel, n, k, cols, accumulate),
                4 => tile::<4>(c_tile, a_tile, panel, n, k, cols, accumulate),
                3 => tile::<3>(c_tile, a_tile, panel, n, k, cols, accumulate),
                2 => tile::<2>(c_tile, a_tile, panel, n, k, cols, accumulate),
                _ => tile::<1>(c_tile, a_tile, panel, n, k, cols, accumulate),
            }
            row += rows;
        }
    }
}

/// One `R x 16` tile of `C`: `c[r * ldc + j] (+)= sum_p a[r * k + p] panel[p * 16 + j]`
/// for `j < cols`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile<const R: usize>(
    c: &mut [f32],
    a: &[f32],
    panel: &[f32],
    ldc: usize,
    k: usize,
    cols: usize,
    accumulate: bool,
) {
    debug_assert!(a.len() == R * k && panel.len() == k * NR);
    debug_assert!(c.len() >= (R - 1) * ldc + cols);
    let cp = c.as_mut_ptr();
    if accumulate {
        // The tile of C is read only after the loop over k: ask for its lines now, so that
        // they arrive while the loop runs. Each step's C is fresh (the input projections
        // of step t, last touched long before), and waiting on these loads cost a third of
        // the per-step product's time.
        for r in 0..R {
            let row = cp.add(r * ldc) as *const i8;
            _mm_prefetch(row, _MM_HINT_T0);
            _mm_prefetch(row.wrapping_add(4 * NR - 1), _MM_HINT_T0);
        }
    }
    let mut lo = [_mm256_setzero_ps(); R];
    let mut hi = [_mm256_setzero_ps(); R];
    let ap = a.as_ptr();
    let bp = panel.as_ptr();
    for p in 0..k {
        let b0 = _mm256_loadu_ps(bp.add(p * NR));
        let b1 = _mm256_loadu_ps(bp.add(p * NR + 8));
        for r in 0..R {
            let x = _mm256_broadcast_ss(&*ap.add(r * k + p));
            lo[r] = _mm256_fmadd_ps(x, b0, lo[r]);
            hi[r] = _mm256_fmadd_ps(x, b1, hi[r]);
        }
    }
    for r in 0..R {
        let out = cp.add(r * ldc);
        if cols == NR {
            if accumulate {
                lo[r] = _mm256_add_ps(lo[r], _mm256_loadu_ps(out));
                hi[r] = _mm256_add_ps(hi[r], _mm256_loadu_ps(out.add(8)));
            }
            _mm256_storeu_ps(out, lo[r]);
            _mm256_storeu_ps(out.add(8), hi[r]);
        } else {
            let mut buf = [0.0f32; NR];
            _mm256_storeu_ps(buf.as_mut_ptr(), lo[r]);
            _mm256_storeu_ps(buf.as_mut_ptr().add(8), hi[r]);
            for (j, v) in buf.iter().take(cols).enumerate() {
                if accumulate {
                    *out.add(j) += v;
                } else {
                    *out.add(j) = *v;
                }
            }
        }
    }
}

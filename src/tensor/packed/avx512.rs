//! The AVX-512 micro-kernel: `R x 32` tiles of `C` (`R <= 12`) over panels of 32 columns.
//!
//! ```text
//! registers: 2R accumulators (24 at R = 12) + 2 for the panel row + 1 for the broadcast
//!            element of A: 27 of the 32 zmm
//! per k:     2 loads of B, R broadcasts of A (vbroadcastss from memory), 2R FMAs
//! ```
//! Rows are split into `ceil(m / 12)` tiles of nearly equal height (16 rows: two tiles of 8,
//! not 12 + 4; 32 rows: 10, 11, 11), so that no tile is left with a few rows, whose FMAs
//! could not hide their latency and whose panel loads would be shared by few FMAs.
//!
//! Chosen by timing variants in isolation on a 2-core Xeon (Sapphire Rapids; median step of
//! 20-30 rounds of 24 steps with fresh `C`, LSTM shapes with `H` = 64..1024, under load from
//! other jobs) against `R x 48` tiles (`R` = 8, 9), `6 x 64`, `8 x 32`, `14 x 32`, tiles of
//! 12 rows then the rest, blocking `k` so that a panel block stays in L1, packing `A`, and
//! prefetching `B` into L2 8-32 KB ahead: none was faster beyond the noise, except that
//! reading `B` 2-4 KB ahead into L1 gained up to 1.5x where `B` no longer fits in L2
//! (`H = 1024`). `examples/packed_kernel.rs` times the paths as built.

use std::arch::x86_64::*;

/// Zmm registers (16 floats each) per row of a panel.
const V: usize = 2;

/// Columns per packed panel.
pub(super) const NR: usize = 16 * V;

/// Most rows of `C` per tile.
const MR: usize = 12;

/// How far ahead of the current row of a panel its lines are requested, in bytes (32 rows).
const PREFETCH: usize = 4096;

/// `C (+)= A B` with `B` packed in panels of `NR` columns.
///
/// # Safety
/// The CPU has AVX-512F; `a` is `[m, k]`, `c` is `[m, n]`, `b` holds `n.div_ceil(NR)` panels
/// of `k * NR` values.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn matmul(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
) {
    debug_assert!(a.len() == m * k && c.len() == m * n && b.len() == n.div_ceil(NR) * k * NR);
    let tiles = m.div_ceil(MR);
    for p in 0..n.div_ceil(NR) {
        let panel = b.as_ptr().add(p * k * NR);
        let col = p * NR;
        let cols = NR.min(n - col);
        for t in 0..tiles {
            let (row, end) = (m * t / tiles, m * (t + 1) / tiles);
            let ap = a.as_ptr().add(row * k);
            let cp = c.as_mut_ptr().add(row * n + col);
            macro_rules! tile_of {
                ($($r:literal)*) => {
                    match end - row {
                        $($r => tile::<$r>(cp, n, ap, k, panel, cols, accumulate),)*
                        _ => unreachable!("tiles hold 1..=MR rows"),
                    }
                };
            }
            tile_of!(1 2 3 4 5 6 7 8 9 10 11 12);
        }
    }
}

/// One `R x 32` tile of `C`: `c[r * ldc + j] (+)= sum_p a[r * k + p] panel[p * 32 + j]` for
/// `j < cols`.
///
/// # Safety
/// The CPU has AVX-512F; `a` holds `R` rows of `k`, `panel` `k` rows of `NR`, and `c` `R` rows
/// with stride `ldc` of which the first `cols` values are written.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const R: usize>(
    c: *mut f32,
    ldc: usize,
    a: *const f32,
    k: usize,
    panel: *const f32,
    cols: usize,
    accumulate: bool,
) {
    if accumulate {
        // C is read only after the loop over k, and each step's C is cold (see the AVX2
        // kernel): request its lines (128 bytes, at most 3 lines) now. `wrapping_add`: a ragged
        // last panel leaves the row shorter, and a prefetch past it is harmless.
        for r in 0..R {
            let row = c.add(r * ldc) as *const i8;
            _mm_prefetch(row, _MM_HINT_T0);
            _mm_prefetch(row.wrapping_add(64), _MM_HINT_T0);
            _mm_prefetch(row.wrapping_add(4 * NR - 1), _MM_HINT_T0);
        }
    }
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    for p in 0..k {
        let bp = panel.add(p * NR);
        // Past the panel's end this reads ahead into the next panel, which comes next; a
        // prefetch never faults, even past the end of the buffer (hence `wrapping_add`).
        let ahead = (bp as *const i8).wrapping_add(PREFETCH);
        let mut b = [_mm512_setzero_ps(); V];
        for (v, b) in b.iter_mut().enumerate() {
            _mm_prefetch(ahead.wrapping_add(64 * v), _MM_HINT_T0);
            *b = _mm512_loadu_ps(bp.add(16 * v));
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            let x = _mm512_set1_ps(*a.add(r * k + p));
            for (acc, &b) in acc.iter_mut().zip(&b) {
                *acc = _mm512_fmadd_ps(x, b, *acc);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let out = c.add(r * ldc);
        for (v, &sum) in acc.iter().enumerate() {
            let lanes = cols.saturating_sub(16 * v).min(16);
            if lanes == 0 {
                break;
            }
            let mask: __mmask16 = ((1u32 << lanes) - 1) as __mmask16;
            let dst = out.add(16 * v);
            let sum = if accumulate {
                _mm512_add_ps(sum, _mm512_maskz_loadu_ps(mask, dst))
            } else {
                sum
            };
            _mm512_mask_storeu_ps(dst, mask, sum);
        }
    }
}

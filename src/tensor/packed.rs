//! A right-hand GEMM operand packed once and multiplied many times: the recurrent weight of a
//! layer is the same for every time step, so `C (+)= A B` with a fixed `B` runs `T` times per
//! pass. A general GEMM repacks `B` on every call (17% of an LSTM step in a profile); packing it
//! once per pass leaves only the multiply.
//!
//! Layout: `B [k, n]` is cut into column panels of `NR = 16`; panel `p` holds
//! `B[0..k, 16p..16p+16]` as `k` consecutive rows of 16 values (the last panel zero-padded), so
//! the micro-kernel streams one panel linearly while it keeps an `MR x 16` tile of `C` in
//! registers (`MR = 6` rows: 12 AVX accumulators).
//!
//! The packed kernel is used for f32 on CPUs with AVX2 and FMA but without AVX-512 (where the
//! `gemm` crate's 512-bit kernels are faster than this 256-bit one). Everywhere else `B` is kept
//! as a row-major copy and multiplied by [`matmul_on`], so results agree to rounding.

use super::{matmul_on, resize, Float, Trans};
use std::any::TypeId;

/// Columns per packed panel (two 8-wide AVX registers).
const NR: usize = 16;

/// A matrix `B [k, n]` held ready for repeated products `C [m, n] (+)= A [m, k] B`.
#[derive(Debug, Default)]
pub struct PackedRhs<T> {
    data: Vec<T>,
    k: usize,
    n: usize,
    /// Whether `data` holds panels (packed kernel) or a plain row-major copy.
    panels: bool,
}

impl<T: Float> PackedRhs<T> {
    /// Packs `op(b)` (`b` stored `[k, n]`, or `[n, k]` with `Trans::Yes`), reusing the buffer.
    pub fn pack(&mut self, b: &[T], tb: Trans, k: usize, n: usize) {
        assert_eq!(b.len(), k * n, "pack: B must hold k * n values");
        self.k = k;
        self.n = n;
        self.panels = packed_kernel_available::<T>();
        let at = |row: usize, col: usize| match tb {
            Trans::No => b[row * n + col],
            Trans::Yes => b[col * k + row],
        };
        if self.panels {
            let panels = n.div_ceil(NR);
            resize(&mut self.data, panels * k * NR);
            for p in 0..panels {
                let panel = &mut self.data[p * k * NR..(p + 1) * k * NR];
                for (row, out) in panel.chunks_exact_mut(NR).enumerate() {
                    for (j, o) in out.iter_mut().enumerate() {
                        let col = p * NR + j;
                        *o = if col < n { at(row, col) } else { T::ZERO };
                    }
                }
            }
        } else {
            resize(&mut self.data, k * n);
            match tb {
                Trans::No => self.data.copy_from_slice(b),
                Trans::Yes => {
                    for (row, out) in self.data.chunks_exact_mut(n).enumerate() {
                        for (col, o) in out.iter_mut().enumerate() {
                            *o = at(row, col);
                        }
                    }
                }
            }
        }
    }

    /// `C = A B` (or `C += A B` when `accumulate`) on the calling thread; `A [m, k]`, `C [m, n]`.
    pub fn matmul(&self, c: &mut [T], a: &[T], m: usize, accumulate: bool) {
        let (k, n) = (self.k, self.n);
        assert_eq!(a.len(), m * k, "packed matmul: A must be [m, k]");
        assert_eq!(c.len(), m * n, "packed matmul: C must be [m, n]");
        if !self.panels {
            matmul_on(
                c,
                a,
                Trans::No,
                &self.data,
                Trans::No,
                m,
                n,
                k,
                accumulate,
                1,
            );
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: `panels` is only set when T is f32 and the CPU has AVX2 and FMA
            // (`packed_kernel_available`); the asserts above and `pack` fix every length the
            // kernel indexes.
            unsafe { avx2::matmul(cast_mut(c), cast(a), cast(&self.data), m, n, k, accumulate) }
        }
    }
}

/// Whether products with `T` use the packed AVX2 kernel on this CPU.
fn packed_kernel_available<T: Float>() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        TypeId::of::<T>() == TypeId::of::<f32>()
            && super::has_avx2_fma()
            && !std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = TypeId::of::<T>();
        false
    }
}

/// Views a `[T]` as `[f32]`; only called once `T` is known to be f32.
#[cfg(target_arch = "x86_64")]
unsafe fn cast<T>(s: &[T]) -> &[f32] {
    std::slice::from_raw_parts(s.as_ptr() as *const f32, s.len())
}

#[cfg(target_arch = "x86_64")]
unsafe fn cast_mut<T>(s: &mut [T]) -> &mut [f32] {
    std::slice::from_raw_parts_mut(s.as_mut_ptr() as *mut f32, s.len())
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::NR;
    use std::arch::x86_64::*;

    /// Rows of `C` per micro-kernel tile: 6 x 2 accumulators + 2 panel registers + 1 broadcast
    /// fit the 16 AVX registers.
    const MR: usize = 6;

    /// `C (+)= A B` with `B` packed in panels of `NR` columns.
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
                _mm_prefetch(row.add(4 * NR - 1), _MM_HINT_T0);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f64], b: &[f64], m: usize, n: usize, k: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    /// Every tile height (1..6 rows) and a ragged last panel, both layouts of `B`, set and
    /// accumulate, against an f64 reference.
    #[test]
    fn packed_products_match_reference() {
        for (m, n, k) in [
            (1, 5, 3),
            (7, 16, 9),
            (13, 37, 20),
            (32, 1024, 256),
            (6, 33, 1),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37 % 23) as f32) * 0.05 - 0.5)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 13 % 17) as f32) * 0.07 - 0.55)
                .collect();
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            let wide = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
            let want = naive(&wide(&a), &wide(&b), m, n, k);
            for (stored, tb) in [(&b, Trans::No), (&bt, Trans::Yes)] {
                let mut packed = PackedRhs::default();
                packed.pack(stored, tb, k, n);
                let mut c = vec![1.0f32; m * n];
                packed.matmul(&mut c, &a, m, false);
                packed.matmul(&mut c, &a, m, true);
                for (got, w) in c.iter().zip(&want) {
                    let err = (*got as f64 - 2.0 * w).abs();
                    assert!(
                        err <= 1e-5 * (1.0 + w.abs()) * k as f64,
                        "{got} vs {}",
                        2.0 * w
                    );
                }
            }
        }
    }

    #[test]
    fn f64_uses_the_row_major_copy_exactly() {
        let (m, n, k) = (3, 4, 5);
        let a: Vec<f64> = (0..m * k).map(|i| i as f64 * 0.25 - 1.0).collect();
        let b: Vec<f64> = (0..k * n).map(|i| 2.0 - i as f64 * 0.125).collect();
        let mut packed = PackedRhs::default();
        packed.pack(&b, Trans::No, k, n);
        let mut c = vec![0.0; m * n];
        packed.matmul(&mut c, &a, m, false);
        assert_eq!(c, naive(&a, &b, m, n, k));
    }
}

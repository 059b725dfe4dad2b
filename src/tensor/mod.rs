//! The numeric floor of the crate: the [`Float`] trait (f32 for training, f64 for checks), the
//! GEMM dispatch, the packed per-step recurrent product, the per-thread views of time-major
//! buffers that the recurrent passes run on, and f32 `exp`/`tanh`. All of the crate's `unsafe`
//! lives in this directory.
//!
//! All matrices are row-major slices; shapes are documented at each call site.

mod matmul;
mod packed;
mod rows;
mod sys;

/// Defines `fn name<T: Float>(args)` three times: as written (the compiler's SSE2 baseline),
/// compiled for AVX2 and FMA, and compiled for AVX-512; each call runs the one of the kernel
/// path in force ([`kernel_path`]: the best the CPU has, or the one `RNNSCOPE_KERNEL` or
/// [`set_kernel`] chose), so forcing a path forces the element-wise loops with it. For the
/// element-wise loops of the cells: the wider vectors change no result, because Rust never
/// contracts `a * b + c` into a fused multiply-add on its own.
macro_rules! multiversion {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident<$t:ident: Float>($($arg:ident: $ty:ty),* $(,)?) $body:block
    ) => {
        $(#[$meta])*
        $vis fn $name<$t: Float>($($arg: $ty),*) {
            #[inline(always)]
            fn body<$t: Float>($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2<$t: Float>($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512<$t: Float>($($arg: $ty),*) {
                    body($($arg),*)
                }
                match $crate::tensor::kernel_path() {
                    // SAFETY: a path is in force only where the CPU has its features
                    // (`set_kernel` and `RNNSCOPE_KERNEL` refuse the others).
                    $crate::tensor::KernelPath::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    $crate::tensor::KernelPath::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::tensor::KernelPath::Generic => {}
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// Sizes `v` to `n` values: zeros when its length changes, untouched when it is already `n`
/// (buffers are sized once per shape, never per step).
pub(crate) fn resize<T: Float>(v: &mut Vec<T>, n: usize) {
    if v.len() != n {
        v.clear();
        v.resize(n, T::ZERO);
    }
}

/// Whether the CPU has AVX2 and FMA (cached by the standard library after the first call).
#[inline]
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

pub use matmul::{gemm_threads, matmul, matmul_on, matmul_strided, set_gemm_threads, Trans};
pub use packed::{kernel_from_env, kernel_path, set_kernel, KernelPath, PackedRhs, KERNEL_ENV};
pub use rows::{for_each_row_block, Rows, RowsMut, SplitRows};
pub use sys::default_sigpipe;

use std::fmt::{Debug, Display};
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// The floating-point types the kernels run in: `f32` for training, `f64` for gradient checks.
pub trait Float:
    Copy
    + Send
    + Sync
    + Default
    + Debug
    + Display
    + PartialOrd
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
{
    const ZERO: Self;
    const ONE: Self;
    /// Name used in checkpoints and benchmarks (`"f32"`, `"f64"`).
    const NAME: &'static str;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn tanh(self) -> Self;
    fn sqrt(self) -> Self;
    fn abs(self) -> Self;
    fn max(self, other: Self) -> Self;
    fn is_finite(self) -> bool;
}

macro_rules! impl_float {
    ($t:ty, $name:literal, $exp:expr, $tanh:expr) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NAME: &'static str = $name;
            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn exp(self) -> Self {
                $exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                $tanh(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
        }
    };
}
// f64 (gradient checks) uses the correctly rounded library functions; f32 (training) uses
// branch-free polynomial versions that the compiler vectorises (errors bounded in the tests).
impl_float!(f32, "f32", exp_f32, tanh_f32);
impl_float!(f64, "f64", f64::exp, f64::tanh);

/// `e^x` in f32 without a library call (Cephes `expf`): `x = n ln 2 + r`, `|r| <= ln 2 / 2`,
/// `e^r` by a degree-6 polynomial, `2^n` put into the exponent bits. Inputs are clamped to
/// `[-87.3, 88.0]`, so the result is always finite and positive (relative error < 2e-7).
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    const SHIFT: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.0);
    // Round to nearest with the 1.5 * 2^23 trick (branch-free, vectorises): `x log2(e) + SHIFT`
    // has `n` in its low mantissa bits, `bits(SHIFT) + n`.
    let shifted = x * LOG2E + SHIFT;
    let n = shifted - SHIFT;
    let r = x - n * C1 - n * C2;
    let z = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * z + r + 1.0;
    // `2^n` from those bits, in integer arithmetic: `n as i32` saturates, which LLVM does not
    // vectorise (it converted lane by lane, with scalar compares for the saturation).
    let biased = shifted
        .to_bits()
        .wrapping_sub(SHIFT.to_bits())
        .wrapping_add(127);
    y * f32::from_bits(biased << 23)
}

/// `tanh x` in f32 as a rational function of `x` (Eigen's `generic_fast_tanh_float`): odd
/// numerator of degree 13 over an even denominator of degree 6, on `x` clamped to
/// `[-7.9053, 7.9053]` where tanh rounds to +-1. Absolute error < 5e-7 (worst near |x| = 6,
/// where tanh is within 1e-5 of +-1), relative accuracy kept
/// near 0 because the numerator carries the factor `x`.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    let x = x.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let p = (((((-2.760_768_5e-16 * x2 + 2.000_188e-13) * x2 - 8.604_672e-11) * x2
        + 5.122_297e-8)
        * x2
        + 1.485_722_4e-5)
        * x2
        + 6.372_619_3e-4)
        * x2
        + 4.893_524_6e-3;
    let q = ((1.198_258_4e-6 * x2 + 1.185_347_1e-4) * x2 + 2.268_434_6e-3) * x2 + 4.893_525e-3;
    x * p / q
}

/// Logistic sigmoid `1 / (1 + e^-x)`. Branch-free: `e^-x` overflows to infinity (f64) or is
/// clamped (f32) for very negative `x`, and `1 / (1 + inf) = 0`, so it never gives NaN.
#[inline(always)]
pub fn sigmoid<T: Float>(x: T) -> T {
    T::ONE / (T::ONE + (-x).exp())
}

/// `y += x` element-wise.
#[inline]
pub fn add_assign<T: Float>(y: &mut [T], x: &[T]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += x;
    }
}

/// Adds `bias` (length `n`) to every row of the row-major `[rows, n]` matrix `y`.
#[inline]
pub fn add_row_bias<T: Float>(y: &mut [T], bias: &[T]) {
    for row in y.chunks_exact_mut(bias.len()) {
        add_assign(row, bias);
    }
}

/// `db += sum over rows of dy`, `dy` row-major `[rows, n]`, `db` length `n`.
#[inline]
pub fn sum_rows_into<T: Float>(db: &mut [T], dy: &[T]) {
    for row in dy.chunks_exact(db.len()) {
        add_assign(db, row);
    }
}

/// Euclidean norm, accumulated in f64.
pub fn norm<T: Float>(x: &[T]) -> f64 {
    x.iter()
        .map(|v| v.to_f64() * v.to_f64())
        .sum::<f64>()
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sweeps `[lo, hi]` finely and returns the worst (absolute, relative) error against f64.
    fn worst(f: impl Fn(f32) -> f32, g: impl Fn(f64) -> f64, lo: f32, hi: f32) -> (f64, f64) {
        let n = 400_000;
        let (mut abs, mut rel) = (0.0f64, 0.0f64);
        for i in 0..=n {
            let x = lo + (hi - lo) * i as f32 / n as f32;
            let (got, want) = (f(x) as f64, g(x as f64));
            abs = abs.max((got - want).abs());
            if want != 0.0 {
                rel = rel.max(((got - want) / want).abs());
            }
        }
        (abs, rel)
    }

    #[test]
    fn fast_exp_is_accurate_and_never_overflows() {
        let (_, rel) = worst(exp_f32, f64::exp, -87.0, 88.0);
        assert!(rel < 3e-7, "exp relative error {rel:e}");
        assert!(exp_f32(1000.0).is_finite() && exp_f32(-1000.0) > 0.0);
        assert_eq!(exp_f32(0.0), 1.0);
    }

    #[test]
    fn fast_tanh_and_sigmoid_are_accurate() {
        let (abs, _) = worst(tanh_f32, f64::tanh, -20.0, 20.0);
        assert!(abs < 5e-7, "tanh absolute error {abs:e}");
        let (_, rel) = worst(tanh_f32, f64::tanh, -0.5, 0.5);
        assert!(rel < 5e-7, "tanh relative error near 0: {rel:e}");
        let (_, rel) = worst(sigmoid::<f32>, |x| 1.0 / (1.0 + (-x).exp()), -80.0, 80.0);
        assert!(rel < 5e-7, "sigmoid relative error {rel:e}");
        assert_eq!(sigmoid(-1000.0f64), 0.0);
        assert_eq!(sigmoid(1000.0f32), 1.0);
    }
}

//! Scalar trait, matrix multiply dispatch and element-wise activation kernels.
//!
//! All matrices are row-major slices; shapes are documented at each call site.

mod matmul;

pub use matmul::{gemm_threads, matmul, set_gemm_threads, Trans};

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
    ($t:ty, $name:literal) => {
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
                <$t>::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
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
impl_float!(f32, "f32");
impl_float!(f64, "f64");

/// Logistic sigmoid `1 / (1 + e^-x)`, computed without overflow for large `|x|`.
#[inline(always)]
pub fn sigmoid<T: Float>(x: T) -> T {
    if x >= T::ZERO {
        T::ONE / (T::ONE + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::ONE + e)
    }
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

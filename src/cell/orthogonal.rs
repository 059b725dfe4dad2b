//! Orthogonal recurrence by construction (expRNN, Lezcano-Casado and Martinez-Rubio 2019):
//! the recurrent weight of a vanilla RNN layer is the matrix exponential of a skew-symmetric
//! matrix, so every eigenvalue of `W_hh` lies on the unit circle for the whole of training.
//!
//! ```text
//! parameter   P [H, H]       (only its strictly lower triangle is used)
//! A = tril(P, -1) - tril(P, -1)^T          skew-symmetric: A^T = -A
//! W_hh = expm(A)                           orthogonal: W^T W = expm(-A) expm(A) = I
//! ```
//! Backward receives `G = dL/dW_hh` from the cell and returns `dL/dP`. The derivative of `expm`
//! at `A` in direction `E` is its Frechet derivative `L(A, E)`, and its adjoint is the Frechet
//! derivative at `A^T` (Najfeld and Havel 1995), so
//! ```text
//! dL/dA = L(A^T, G) = L(-A, G)        dL/dP_ij = (dL/dA)_ij - (dL/dA)_ji   (i > j), 0 otherwise
//! ```
//! `L(X, E)` is the upper-right block of `expm([[X, E], [0, X]])`. It is computed without
//! forming that `2H x 2H` matrix: a product of two block upper-triangular matrices
//! `[[P, Q], [0, P]] [[R, S], [0, R]] = [[PR, PS + QR], [0, PR]]` needs three `H x H` products
//! instead of eight, which is what the Frechet-derivative form of the scaling-and-squaring
//! Pade [13/13] algorithm (Higham 2005; Al-Mohy and Higham 2009, Algorithm 6.4) carries through
//! every step. Everything runs in f64 whatever the training precision: the weight is
//! orthogonal to f64 rounding before it is rounded to f32.

use crate::error::{Error, Result};
use faer::linalg::solvers::Solve;
use faer::Mat;
use serde::{Deserialize, Serialize};

/// How a layer's recurrent weight is parametrised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Recurrence {
    /// `W_hh` is a parameter (`rnn.weight_hh_l{k}`), as in `torch.nn`.
    #[default]
    Dense,
    /// `W_hh = expm(A)` with `A` skew-symmetric from the parameter `rnn.skew_hh_l{k}` (vanilla
    /// RNN only): orthogonal by construction.
    Orthogonal,
}

impl Recurrence {
    pub fn name(self) -> &'static str {
        match self {
            Recurrence::Dense => "dense",
            Recurrence::Orthogonal => "orthogonal",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "dense" => Some(Recurrence::Dense),
            "orthogonal" | "expm" => Some(Recurrence::Orthogonal),
            _ => None,
        }
    }
}

/// Pade [13/13] coefficients `b_0..b_13` (Higham 2005, Table 2.3 context).
const B: [f64; 14] = [
    64_764_752_532_480_000.0,
    32_382_376_266_240_000.0,
    7_771_770_303_897_600.0,
    1_187_353_796_428_800.0,
    129_060_195_264_000.0,
    10_559_470_521_600.0,
    670_442_572_800.0,
    33_522_128_640.0,
    1_323_241_920.0,
    40_840_800.0,
    960_960.0,
    16_380.0,
    182.0,
    1.0,
];

/// `theta_13`: the largest `|A|_1` for which Pade [13/13] is accurate to double precision.
const THETA_13: f64 = 5.371_920_351_148_152;

/// The 1-norm (largest absolute column sum).
fn norm_1(a: &Mat<f64>) -> f64 {
    (0..a.ncols())
        .map(|j| (0..a.nrows()).map(|i| a[(i, j)].abs()).sum::<f64>())
        .fold(0.0, f64::max)
}

fn identity(n: usize) -> Mat<f64> {
    Mat::from_fn(n, n, |i, j| if i == j { 1.0 } else { 0.0 })
}

/// `sum_k c_k X_k` over matching matrices.
fn combine(terms: &[(f64, &Mat<f64>)]) -> Mat<f64> {
    let (n, m) = (terms[0].1.nrows(), terms[0].1.ncols());
    Mat::from_fn(n, m, |i, j| terms.iter().map(|(c, x)| c * x[(i, j)]).sum())
}

/// `expm(X)` and, when `e` is given, the Frechet derivative `L(X, E)`, by scaling and squaring
/// with the Pade [13/13] approximant (see the module docs).
fn expm_with_derivative(
    x: &Mat<f64>,
    e: Option<&Mat<f64>>,
) -> Result<(Mat<f64>, Option<Mat<f64>>)> {
    let n = x.nrows();
    let norm = norm_1(x);
    if !norm.is_finite() {
        return Err(Error::Numeric(
            "the skew-symmetric generator of an orthogonal W_hh is not finite".into(),
        ));
    }
    let s = if norm > THETA_13 {
        (norm / THETA_13).log2().ceil() as i32
    } else {
        0
    };
    let scale = 0.5f64.powi(s);
    let a = combine(&[(scale, x)]);
    let eye = identity(n);
    let a2 = &a * &a;
    let a4 = &a2 * &a2;
    let a6 = &a2 * &a4;
    let w1 = combine(&[(B[13], &a6), (B[11], &a4), (B[9], &a2)]);
    let w2 = combine(&[(B[7], &a6), (B[5], &a4), (B[3], &a2), (B[1], &eye)]);
    let z1 = combine(&[(B[12], &a6), (B[10], &a4), (B[8], &a2)]);
    let z2 = combine(&[(B[6], &a6), (B[4], &a4), (B[2], &a2), (B[0], &eye)]);
    let w = &(&a6 * &w1) + &w2;
    let u = &a * &w;
    let v = &(&a6 * &z1) + &z2;
    let lu = (&v - &u).partial_piv_lu();
    let mut r = lu.solve(&v + &u);
    let mut l = match e {
        None => None,
        Some(e) => {
            let e = combine(&[(scale, e)]);
            let m2 = &(&a * &e) + &(&e * &a);
            let m4 = &(&a2 * &m2) + &(&m2 * &a2);
            let m6 = &(&a4 * &m2) + &(&m4 * &a2);
            let lw1 = combine(&[(B[13], &m6), (B[11], &m4), (B[9], &m2)]);
            let lw2 = combine(&[(B[7], &m6), (B[5], &m4), (B[3], &m2)]);
            let lz1 = combine(&[(B[12], &m6), (B[10], &m4), (B[8], &m2)]);
            let lz2 = combine(&[(B[6], &m6), (B[4], &m4), (B[2], &m2)]);
            let lw = &(&(&a6 * &lw1) + &(&m6 * &w1)) + &lw2;
            let lu_ = &(&a * &lw) + &(&e * &w);
            let lv = &(&(&a6 * &lz1) + &(&m6 * &z1)) + &lz2;
            Some(lu.solve(&(&lu_ + &lv) + &(&(&lu_ - &lv) * &r)))
        }
    };
    for _ in 0..s {
        if let Some(lv) = l.as_mut() {
            *lv = &(&r * &*lv) + &(&*lv * &r);
        }
        r = &r * &r;
    }
    Ok((r, l))
}

fn to_mat(m: &[f64], n: usize) -> Mat<f64> {
    assert_eq!(m.len(), n * n, "matrix must be [n, n]");
    Mat::from_fn(n, n, |i, j| m[i * n + j])
}

fn to_rows(m: &Mat<f64>) -> Vec<f64> {
    let n = m.nrows();
    (0..n * n).map(|x| m[(x / n, x % n)]).collect()
}

/// The matrix exponential of the row-major `[n, n]` matrix `x`.
pub fn expm(x: &[f64], n: usize) -> Result<Vec<f64>> {
    Ok(to_rows(&expm_with_derivative(&to_mat(x, n), None)?.0))
}

/// The Frechet derivative `L(X, E)` of the matrix exponential at `x` in direction `e`, both
/// row-major `[n, n]`.
pub fn expm_frechet(x: &[f64], e: &[f64], n: usize) -> Result<Vec<f64>> {
    let (_, l) = expm_with_derivative(&to_mat(x, n), Some(&to_mat(e, n)))?;
    Ok(to_rows(&l.expect("asked for")))
}

/// The skew-symmetric `A = tril(P, -1) - tril(P, -1)^T` of a parameter `P [H, H]`.
pub fn skew(p: &[f64], h: usize) -> Vec<f64> {
    let mut a = vec![0.0; h * h];
    for i in 0..h {
        for j in 0..i {
            a[i * h + j] = p[i * h + j];
            a[j * h + i] = -p[i * h + j];
        }
    }
    a
}

/// `W_hh = expm(A)` from the parameter `P [H, H]`, row-major.
pub fn weight(p: &[f64], h: usize) -> Result<Vec<f64>> {
    expm(&skew(p, h), h)
}

/// `dL/dP` from `G = dL/dW_hh` (both `[H, H]`): `dL/dA = L(-A, G)`, then its strictly lower
/// triangle minus the transpose of its strictly upper one (see the module docs).
pub fn parameter_grad(p: &[f64], g: &[f64], h: usize) -> Result<Vec<f64>> {
    let minus_a: Vec<f64> = skew(p, h).iter().map(|v| -v).collect();
    let da = expm_frechet(&minus_a, g, h)?;
    let mut dp = vec![0.0; h * h];
    for i in 0..h {
        for j in 0..i {
            dp[i * h + j] = da[i * h + j] - da[j * h + i];
        }
    }
    Ok(dp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, scale: f64, seed: u64) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n * n).map(|_| rng.gen_range(-scale..scale)).collect()
    }

    fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
        let mut c = vec![0.0; n * n];
        for i in 0..n {
            for k in 0..n {
                for j in 0..n {
                    c[i * n + j] += a[i * n + k] * b[k * n + j];
                }
            }
        }
        c
    }

    /// `expm` by its Taylor series with scaling and squaring, summed until the terms vanish:
    /// an independent reference.
    fn taylor_expm(x: &[f64], n: usize) -> Vec<f64> {
        let norm: f64 = x.iter().map(|v| v.abs()).sum();
        let s = norm.log2().ceil().max(0.0) as i32 + 4;
        let a: Vec<f64> = x.iter().map(|v| v / 2f64.powi(s)).collect();
        let mut sum: Vec<f64> = (0..n * n)
            .map(|k| f64::from(u8::from(k % (n + 1) == 0)))
            .collect();
        let mut term = sum.clone();
        for k in 1..40 {
            term = matmul(&term, &a, n).iter().map(|v| v / k as f64).collect();
            sum.iter_mut().zip(&term).for_each(|(s, t)| *s += t);
        }
        for _ in 0..s {
            sum = matmul(&sum, &sum, n);
        }
        sum
    }

    fn rel(a: &[f64], b: &[f64]) -> f64 {
        let d: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
        let n: f64 = b.iter().map(|y| y * y).sum();
        (d / n).sqrt()
    }

    #[test]
    fn expm_matches_taylor_and_closed_forms() {
        // A rotation generator: expm([[0, -t], [t, 0]]) = [[cos t, -sin t], [sin t, cos t]].
        let t = 2.5f64;
        let r = expm(&[0.0, -t, t, 0.0], 2).unwrap();
        assert!(rel(&r, &[t.cos(), -t.sin(), t.sin(), t.cos()]) < 1e-15);
        // General matrices of small and moderate norm, and skew-symmetric ones (what the
        // recurrence uses: normal, so well conditioned) of large norm, which need squaring.
        for (n, scale, skewed) in [
            (5, 0.3, false),
            (7, 2.0, false),
            (12, 9.0, true),
            (9, 40.0, true),
        ] {
            let mut x = random(n, scale, n as u64);
            if skewed {
                x = skew(&x, n);
            }
            let got = expm(&x, n).unwrap();
            let want = taylor_expm(&x, n);
            assert!(rel(&got, &want) < 1e-12, "n {n}: {:e}", rel(&got, &want));
        }
    }

    #[test]
    fn weight_of_a_skew_generator_is_orthogonal() {
        let h = 16;
        let w = weight(&random(h, 1.5, 3), h).unwrap();
        let mut wtw = vec![0.0; h * h];
        for i in 0..h {
            for j in 0..h {
                wtw[i * h + j] = (0..h).map(|k| w[k * h + i] * w[k * h + j]).sum();
            }
        }
        for (k, v) in wtw.iter().enumerate() {
            let want = f64::from(u8::from(k % (h + 1) == 0));
            assert!((v - want).abs() < 1e-13, "W^T W [{k}] = {v}");
        }
    }

    #[test]
    fn frechet_derivative_matches_finite_differences() {
        let n = 6;
        for scale in [0.2, 3.0, 20.0] {
            let x = random(n, scale, 7);
            let e = random(n, 1.0, 8);
            let l = expm_frechet(&x, &e, n).unwrap();
            let eps = 1e-5 * (1.0 + scale);
            let at = |d: f64| {
                let xd: Vec<f64> = x.iter().zip(&e).map(|(a, b)| a + d * b).collect();
                expm(&xd, n).unwrap()
            };
            let (p1, m1, p2, m2) = (at(eps), at(-eps), at(2.0 * eps), at(-2.0 * eps));
            let fd: Vec<f64> = (0..n * n)
                .map(|k| (8.0 * (p1[k] - m1[k]) - (p2[k] - m2[k])) / (12.0 * eps))
                .collect();
            assert!(rel(&l, &fd) < 1e-8, "scale {scale}: {:e}", rel(&l, &fd));
        }
    }

    #[test]
    fn parameter_gradient_matches_finite_differences() {
        // L = sum G .* expm(A(P)) for a fixed G: dL/dP by the adjoint against central differences.
        let h = 5;
        let p = random(h, 1.2, 11);
        let g = random(h, 1.0, 12);
        let loss = |p: &[f64]| -> f64 {
            weight(p, h)
                .unwrap()
                .iter()
                .zip(&g)
                .map(|(w, g)| w * g)
                .sum()
        };
        let dp = parameter_grad(&p, &g, h).unwrap();
        let eps = 1e-5;
        for i in 0..h {
            for j in 0..h {
                let k = i * h + j;
                let mut a = p.clone();
                a[k] += eps;
                let mut b = p.clone();
                b[k] -= eps;
                let fd = (loss(&a) - loss(&b)) / (2.0 * eps);
                assert!(
                    (fd - dp[k]).abs() < 1e-8,
                    "dP[{i}][{j}] {} vs fd {fd}",
                    dp[k]
                );
                if j >= i {
                    assert_eq!(
                        dp[k], 0.0,
                        "only the strictly lower triangle is a parameter"
                    );
                }
            }
        }
    }
}

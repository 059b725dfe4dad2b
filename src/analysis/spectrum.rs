//! Eigenvalues and singular values of square matrices (faer), for `W_hh` and its gate blocks.

use crate::error::{Error, Result};

/// A complex eigenvalue `re + i im`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Eigenvalue {
    pub re: f64,
    pub im: f64,
}

impl Eigenvalue {
    pub fn modulus(&self) -> f64 {
        self.re.hypot(self.im)
    }
}

fn to_faer(m: &[f64], n: usize) -> faer::Mat<f64> {
    assert_eq!(m.len(), n * n, "matrix must be [n, n]");
    faer::Mat::from_fn(n, n, |i, j| m[i * n + j])
}

/// All eigenvalues of the row-major `[n, n]` matrix `m`, sorted by decreasing modulus.
pub fn eigenvalues(m: &[f64], n: usize) -> Result<Vec<Eigenvalue>> {
    let vals = to_faer(m, n)
        .eigenvalues()
        .map_err(|e| Error::Numeric(format!("eigenvalue decomposition failed: {e:?}")))?;
    let mut out: Vec<Eigenvalue> = vals
        .iter()
        .map(|z| Eigenvalue { re: z.re, im: z.im })
        .collect();
    out.sort_by(|a, b| b.modulus().total_cmp(&a.modulus()));
    Ok(out)
}

/// Singular values of the row-major `[n, n]` matrix `m`, in decreasing order.
pub fn singular_values(m: &[f64], n: usize) -> Result<Vec<f64>> {
    let mut s = to_faer(m, n)
        .singular_values()
        .map_err(|e| Error::Numeric(format!("singular value decomposition failed: {e:?}")))?;
    s.sort_by(|a, b| b.total_cmp(a));
    Ok(s)
}

/// Spectral radius `rho = max |lambda|`.
pub fn spectral_radius(m: &[f64], n: usize) -> Result<f64> {
    Ok(eigenvalues(m, n)?.first().map_or(0.0, Eigenvalue::modulus))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_diagonal_and_companion_spectra() {
        // Rotation by theta scaled by 0.9: eigenvalues 0.9 e^{+-i theta}.
        let (th, r) = (0.3f64, 0.9);
        let rot = [r * th.cos(), -r * th.sin(), r * th.sin(), r * th.cos()];
        let e = eigenvalues(&rot, 2).unwrap();
        for ev in &e {
            assert!((ev.modulus() - r).abs() < 1e-14);
            assert!((ev.im.abs() - r * th.sin()).abs() < 1e-14);
            assert!((ev.re - r * th.cos()).abs() < 1e-14);
        }
        let s = singular_values(&rot, 2).unwrap();
        assert!(s.iter().all(|v| (v - r).abs() < 1e-14));

        let diag = [3.0, 0.0, 0.0, 0.0, -0.5, 0.0, 0.0, 0.0, 1.5];
        let e = eigenvalues(&diag, 3).unwrap();
        let re: Vec<f64> = e.iter().map(|v| v.re).collect();
        assert_eq!(re, vec![3.0, 1.5, -0.5]);
        assert_eq!(singular_values(&diag, 3).unwrap(), vec![3.0, 1.5, 0.5]);

        // Companion matrix of (x - 1)(x - 2)(x - 3) = x^3 - 6x^2 + 11x - 6.
        let comp = [6.0, -11.0, 6.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        let e = eigenvalues(&comp, 3).unwrap();
        for (ev, want) in e.iter().zip([3.0, 2.0, 1.0]) {
            assert!(
                (ev.re - want).abs() < 1e-10 && ev.im.abs() < 1e-10,
                "{ev:?}"
            );
        }
        assert!((spectral_radius(&comp, 3).unwrap() - 3.0).abs() < 1e-10);
    }
}

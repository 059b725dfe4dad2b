//! What theory says about the measured profile, as numbers.
//!
//! ```text
//! spectrum   eigenvalues (complex), singular values, rho = max|lambda|, sigma_1 of each W_hh gate block
//! regime     (Pascanu, Mikolov, Bengio 2013, section 2.1)
//!            identity s:  rho < 1  => long-term components vanish;  rho > 1 is necessary to explode
//!            nonlinear s: sigma_1 < 1/gamma => gradients vanish;  sigma_1 > 1/gamma is necessary to explode
//!            gamma = max|s'| (1 tanh, relu, identity; 1/4 sigmoid)
//! identity   g^(i)_j = g^(i)_i W_hh^l = sum_k c_k lambda_k^l q_k,  q_k W_hh = lambda_k q_k (left eigenvectors)
//! bound      |g^(i)_j| <= (gamma sigma_1)^l |g^(i)_i|   (vanilla RNN, the layer nearest the loss)
//! ```
//! The identity and bound checks concern the top layer (the one feeding the decoder): there
//! `g^(i)_j` is the injection at step `i` carried back by the recurrence alone. Lower layers of
//! a stack also receive gradient from the layer above at every step.

use super::profile::{InfluenceNorms, StepView};
use super::spectrum::{eigenvalues, singular_values, Eigenvalue};
use crate::cell::{Activation, CellKind, Recurrence};
use crate::error::{Error, Result};
use crate::model::LanguageModel;
use crate::tensor::{matmul, Float, Trans};
use faer::linalg::solvers::Solve;
use serde::{Deserialize, Serialize};

/// Spectrum of one `[H, H]` gate block of `W_hh`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateSpectrum {
    pub gate: String,
    /// Sorted by decreasing modulus.
    pub eigenvalues: Vec<Eigenvalue>,
    /// Decreasing.
    pub singular_values: Vec<f64>,
    pub rho: f64,
    pub sigma_1: f64,
}

/// What Pascanu et al. (2013) conclude from `rho`, `sigma_1` and `gamma`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Regime {
    /// `vanishing` (guaranteed), `exploding` (linear, rho > 1), `neutral` (linear, rho = 1),
    /// `undetermined` (nonlinear, sigma_1 >= 1/gamma: exploding possible, not certain) or
    /// `gated` (LSTM/GRU: the bound on `W_hh` alone does not apply).
    pub name: String,
    /// `None` for gated cells.
    pub vanishing_guaranteed: Option<bool>,
    /// Whether the necessary condition for exploding holds; `None` for gated cells.
    pub exploding_possible: Option<bool>,
    pub reason: String,
}

/// Spectra of one layer's `W_hh` gate blocks and the regime they imply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSpectrum {
    pub layer: usize,
    pub gates: Vec<GateSpectrum>,
    /// Largest over the gate blocks.
    pub rho: f64,
    /// Largest over the gate blocks.
    pub sigma_1: f64,
    /// `max |s'|` of the vanilla RNN's activation; `None` for gated cells.
    pub gamma: Option<f64>,
    pub regime: Regime,
}

/// The regime implied by `rho`, `sigma_1` and the activation (Pascanu et al. 2013, 2.1); with
/// orthogonal recurrence the reason says that `W_hh` is orthogonal by construction.
pub fn regime(
    kind: CellKind,
    act: Activation,
    recurrence: Recurrence,
    rho: f64,
    sigma_1: f64,
) -> Regime {
    let r = |name: &str, v: Option<bool>, e: Option<bool>, reason: String| Regime {
        name: name.into(),
        vanishing_guaranteed: v,
        exploding_possible: e,
        reason,
    };
    if kind != CellKind::Rnn {
        return r(
            "gated",
            None,
            None,
            "gated cell: the bound on W_hh alone does not apply (additive cell/update path); see the measured decay and the Jacobian products".into(),
        );
    }
    const EPS: f64 = 1e-12;
    if act == Activation::Identity {
        if rho < 1.0 - EPS {
            r("vanishing", Some(true), Some(false), format!("linear recurrence, rho = {rho:.4} < 1: every component decays at least like rho^l"))
        } else if rho > 1.0 + EPS {
            r("exploding", Some(false), Some(true), format!("linear recurrence, rho = {rho:.4} > 1: components along eigenvalues with |lambda| > 1 grow like |lambda|^l"))
        } else if recurrence == Recurrence::Orthogonal {
            r(
                "neutral",
                Some(false),
                Some(false),
                "linear recurrence with W_hh = expm(A) orthogonal by construction: every |lambda| = 1 and every singular value is 1, so |g W_hh^l| = |g|: no gradient shrinks or grows with distance".into(),
            )
        } else {
            r(
                "neutral",
                Some(false),
                Some(false),
                "linear recurrence, rho = 1: the leading components neither grow nor decay".into(),
            )
        }
    } else {
        let gamma = act.gamma();
        if sigma_1 < 1.0 / gamma {
            r(
                "vanishing",
                Some(true),
                Some(false),
                format!(
                    "sigma_1 = {sigma_1:.4} < 1/gamma = {:.4}: sufficient for vanishing",
                    1.0 / gamma
                ),
            )
        } else {
            r("undetermined", Some(false), Some(true), format!("sigma_1 = {sigma_1:.4} >= 1/gamma = {:.4}: the necessary condition for exploding holds; vanishing is not guaranteed", 1.0 / gamma))
        }
    }
}

/// Spectra of layer `layer`'s `W_hh` blocks. With an LSTM projection (`W_hh` blocks `[H, P]`,
/// `W_hr [P, H]`) the square map from `h_{t-1}` back to `h` through each gate is taken:
/// `W_hr W_block` (`[P, P]`).
pub fn layer_spectrum(model: &LanguageModel<f64>, layer: usize) -> Result<LayerSpectrum> {
    let c = &model.config;
    let (h, n) = (c.hidden, c.h_size());
    let p = model.layer_params(layer);
    let mut composed = vec![0.0; n * n];
    let gates = c
        .cell
        .gate_names()
        .iter()
        .enumerate()
        .map(|(g, name)| {
            let mut block = &p.w_hh[g * h * n..(g + 1) * h * n];
            if !p.w_hr.is_empty() {
                // [P, H] x [H, P]
                matmul(
                    &mut composed,
                    p.w_hr,
                    Trans::No,
                    block,
                    Trans::No,
                    n,
                    n,
                    h,
                    false,
                );
                block = &composed;
            }
            let eigenvalues = eigenvalues(block, n)?;
            let singular_values = singular_values(block, n)?;
            Ok(GateSpectrum {
                gate: (*name).into(),
                rho: eigenvalues.first().map_or(0.0, Eigenvalue::modulus),
                sigma_1: singular_values.first().copied().unwrap_or(0.0),
                eigenvalues,
                singular_values,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let rho = gates.iter().map(|g| g.rho).fold(0.0, f64::max);
    let sigma_1 = gates.iter().map(|g| g.sigma_1).fold(0.0, f64::max);
    Ok(LayerSpectrum {
        layer,
        rho,
        sigma_1,
        gamma: (c.cell == CellKind::Rnn).then(|| c.activation.gamma()),
        regime: regime(c.cell, c.activation, c.recurrence, rho, sigma_1),
        gates,
    })
}

/// The gradient vectors of a few targets, captured from the sweep for exact checks.
#[derive(Clone, Debug)]
pub struct Capture {
    pub layer: usize,
    pub targets: Vec<usize>,
    pub steps: usize,
    pub batch: usize,
    pub hidden: usize,
    /// `[n_targets, T, B, H]`: `g^(i)_j` at `[m, j]` for target `targets[m] = i`, `j <= i`.
    pub data: Vec<f64>,
}

impl Capture {
    /// Up to `max_targets` targets spread over `0..T` (always `T - 1`, which reaches farthest),
    /// fewer when `n T B H` would exceed `max_values`.
    pub fn new(
        layer: usize,
        steps: usize,
        batch: usize,
        hidden: usize,
        max_targets: usize,
        max_values: usize,
    ) -> Self {
        let per = steps * batch * hidden;
        let n = max_targets.min(max_values / per.max(1)).clamp(1, steps);
        let targets: Vec<usize> = (0..n).map(|m| ((m + 1) * steps) / n - 1).collect();
        Capture {
            layer,
            data: vec![0.0; n * per],
            targets,
            steps,
            batch,
            hidden,
        }
    }

    /// The sweep visitor: copies the rows of the chosen targets.
    pub fn visit<T: Float>(&mut self, v: &StepView<'_, T>) {
        if v.layer != self.layer {
            return;
        }
        let bh = self.batch * self.hidden;
        let t = v.step;
        for (m, &i) in self.targets.iter().enumerate() {
            if i < t {
                continue;
            }
            let src = &v.dh[(i - t) * bh..(i - t + 1) * bh];
            let at = (m * self.steps + t) * bh;
            for (d, s) in self.data[at..at + bh].iter_mut().zip(src) {
                *d = s.to_f64();
            }
        }
    }

    /// `g^(i)_j` for target number `m`, `[B, H]`.
    pub fn get(&self, m: usize, j: usize) -> &[f64] {
        let bh = self.batch * self.hidden;
        let at = (m * self.steps + j) * bh;
        &self.data[at..at + bh]
    }
}

/// The identity-activation check: the measured `g^(i)_j` against `g^(i)_i W^l` and against the
/// eigen-expansion, as the largest norm-wise relative error `|measured - predicted| / |predicted|`
/// over the captured targets, all `j <= i` and all batch elements.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdentityCheck {
    pub layer: usize,
    pub targets: Vec<usize>,
    pub max_rel_error_powers: f64,
    pub max_rel_error_eigen: f64,
    /// The larger of the two.
    pub max_rel_error: f64,
}

fn rel_err(meas: &[f64], pred: &[f64]) -> Option<f64> {
    let d = meas
        .iter()
        .zip(pred)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        .sqrt();
    let p = pred.iter().map(|b| b * b).sum::<f64>().sqrt();
    if d.is_nan() {
        // a failed prediction (e.g. a defective W_hh has no eigenbasis) is an infinite error
        Some(f64::INFINITY)
    } else if p > 0.0 {
        Some(d / p)
    } else if d == 0.0 {
        None
    } else {
        Some(f64::INFINITY)
    }
}

/// Runs the identity check for `W = w [H, H]` on captured gradients.
///
/// Powers: `P_0 = I`, `P_{l+1} = P_l W` (explicit matrix powers), `pred = g_i P_l`.
/// Eigen-expansion: `W^T U = U diag(lambda)` (complex), `c = U^{-1} g_i^T`,
/// `pred = Re(U diag(lambda^l) c)`. Cost `O(T H^3 + n T B H^2)` for `n` captured targets.
pub fn identity_check(w: &[f64], cap: &Capture) -> Result<IdentityCheck> {
    let (h, b, steps) = (cap.hidden, cap.batch, cap.steps);
    let nt = cap.targets.len();
    let rows = nt * b;
    // g_i for every (target, b): [rows, H]
    let mut g0 = vec![0.0; rows * h];
    for (m, &i) in cap.targets.iter().enumerate() {
        g0[m * b * h..(m + 1) * b * h].copy_from_slice(cap.get(m, i));
    }

    // Eigen-decomposition of W^T and the coefficients c = U^{-1} g^T for every row.
    let wt = faer::Mat::<f64>::from_fn(h, h, |i, j| w[j * h + i]);
    let eig = wt
        .eigen()
        .map_err(|e| Error::Numeric(format!("eigendecomposition of W_hh failed: {e:?}")))?;
    let u = eig.U();
    let lambda: Vec<faer::c64> = (0..h).map(|k| eig.S().column_vector()[k]).collect();
    let lu = u.partial_piv_lu();
    let mut coef =
        faer::Mat::<faer::c64>::from_fn(h, rows, |p, r| faer::c64::new(g0[r * h + p], 0.0));
    lu.solve_in_place(coef.as_mut());
    // U split into real and imaginary parts, row-major [H, H]
    let u_re: Vec<f64> = (0..h * h).map(|x| u[(x / h, x % h)].re).collect();
    let u_im: Vec<f64> = (0..h * h).map(|x| u[(x / h, x % h)].im).collect();
    // w_l[r, k] = lambda_k^l c_{k, r}: [rows, H] real and imaginary parts
    let mut pw: Vec<faer::c64> = vec![faer::c64::new(1.0, 0.0); h];
    let mut wl_re = vec![0.0; rows * h];
    let mut wl_im = vec![0.0; rows * h];
    let mut pred_e = vec![0.0; rows * h];

    let mut power = vec![0.0; h * h];
    for p in 0..h {
        power[p * h + p] = 1.0;
    }
    let mut next = vec![0.0; h * h];
    let mut pred_p = vec![0.0; rows * h];
    let (mut err_p, mut err_e) = (0.0f64, 0.0f64);
    let max_i = cap.targets.iter().copied().max().unwrap_or(0);
    for l in 0..=max_i.min(steps - 1) {
        // powers: pred = g0 P_l
        matmul(
            &mut pred_p,
            &g0,
            Trans::No,
            &power,
            Trans::No,
            rows,
            h,
            h,
            false,
        );
        // eigen: pred = Re(U w_l) = w_re U_re^T - w_im U_im^T
        for r in 0..rows {
            for k in 0..h {
                let z = pw[k] * coef[(k, r)];
                wl_re[r * h + k] = z.re;
                wl_im[r * h + k] = z.im;
            }
        }
        matmul(
            &mut pred_e,
            &wl_re,
            Trans::No,
            &u_re,
            Trans::Yes,
            rows,
            h,
            h,
            false,
        );
        for x in wl_im.iter_mut() {
            *x = -*x;
        }
        matmul(
            &mut pred_e,
            &wl_im,
            Trans::No,
            &u_im,
            Trans::Yes,
            rows,
            h,
            h,
            true,
        );
        for (m, &i) in cap.targets.iter().enumerate() {
            if i < l {
                continue;
            }
            let meas = cap.get(m, i - l);
            for bb in 0..b {
                let r = m * b + bb;
                let mv = &meas[bb * h..(bb + 1) * h];
                if let Some(e) = rel_err(mv, &pred_p[r * h..(r + 1) * h]) {
                    err_p = err_p.max(e);
                }
                if let Some(e) = rel_err(mv, &pred_e[r * h..(r + 1) * h]) {
                    err_e = err_e.max(e);
                }
            }
        }
        matmul(&mut next, &power, Trans::No, w, Trans::No, h, h, h, false);
        std::mem::swap(&mut power, &mut next);
        for (p, l) in pw.iter_mut().zip(&lambda) {
            *p *= *l;
        }
    }
    Ok(IdentityCheck {
        layer: cap.layer,
        targets: cap.targets.clone(),
        max_rel_error_powers: err_p,
        max_rel_error_eigen: err_e,
        max_rel_error: err_p.max(err_e),
    })
}

/// The nonlinear bound `|g^(i)_j| <= (gamma sigma_1)^l |g^(i)_i|` checked on every pair.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoundCheck {
    pub layer: usize,
    /// `gamma * sigma_1`.
    pub bound_per_step: f64,
    /// `max over (i, j, b) of |g^(i)_j| / ((gamma sigma_1)^l |g^(i)_i|)`: at most 1 when the
    /// bound holds (0 when every long-range gradient is exactly zero).
    pub max_ratio_to_bound: f64,
    /// Pairs exceeding the bound by more than a relative 1e-9.
    pub violations: usize,
    pub pairs: usize,
}

/// Checks the bound on the packed norms of layer `layer`, in logarithms (no underflow).
pub fn bound_check(norms: &InfluenceNorms, layer: usize, bound_per_step: f64) -> BoundCheck {
    let v = &norms.dh[layer];
    let lb = bound_per_step.ln();
    let (mut worst, mut violations, mut pairs) = (f64::NEG_INFINITY, 0usize, 0usize);
    for i in 0..norms.steps {
        for b in 0..norms.batch {
            let base = v[norms.index(i, i, b)];
            if base <= 0.0 {
                continue;
            }
            for j in 0..i {
                let x = v[norms.index(i, j, b)];
                pairs += 1;
                if x <= 0.0 {
                    continue;
                }
                let r = x.ln() - base.ln() - (i - j) as f64 * lb;
                worst = worst.max(r);
                if r > 1e-9 {
                    violations += 1;
                }
            }
        }
    }
    BoundCheck {
        layer,
        bound_per_step,
        max_ratio_to_bound: if worst.is_finite() { worst.exp() } else { 0.0 },
        violations,
        pairs,
    }
}

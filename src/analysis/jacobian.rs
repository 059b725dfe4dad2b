//! One-step Jacobians of the recurrence along a real trajectory, and their products over `l`
//! steps, accumulated stably.
//!
//! The state is `h` (RNN, GRU) or `(h, c)` stacked (LSTM, dimension `2H`); `J_t` is the full
//! derivative of the state after step `t` with respect to the state before it, with the layer's
//! input held fixed. A gradient (row vector) goes one step back as `g_{t-1} = g_t J_t`.
//! ```text
//! RNN   J = diag(s'(a_t)) W_hh
//! LSTM  dc_t/dh_{t-1} = diag(c_{t-1} f(1-f)) W_f + diag(g i(1-i)) W_i + diag(i (1-g^2)) W_g
//!       dc_t/dc_{t-1} = diag(f)
//!       dh_t/dh_{t-1} = diag(tanh(c_t) o(1-o)) W_o + diag(o (1 - tanh^2 c_t)) dc_t/dh_{t-1}
//!       dh_t/dc_{t-1} = diag(o (1 - tanh^2 c_t) f)            J = [[dh/dh, dh/dc], [dc/dh, dc/dc]]
//! GRU   J = diag(z) + diag((h_{t-1} - n) z(1-z)) W_z
//!           + diag((1-z)(1-n^2)) (diag(r) W_n + diag(hn r(1-r)) W_r),   hn = W_hn h_{t-1} + b_hn
//! ```
//! Products `A_l = J_{T-1} J_{T-2} ... J_{T-l}` (what `dJ^(T-1)/dh_{T-1}` meets going `l` steps
//! back) are accumulated two ways:
//! - the full product, renormalised to unit Frobenius norm after every factor with the log of
//!   the scale kept aside (no overflow or underflow of the leading part); exact leading singular
//!   values by SVD of the normalised product at up to `svd_points` distances;
//! - Benettin's re-orthonormalisation (as for Lyapunov exponents): `Z = J^T Q`, `Z = Q' R`
//!   (modified Gram-Schmidt), `Q <- Q'`, accumulating `ln |R_mm|` for the `k` leading directions;
//!   `sum ln|R_mm| / l` are the finite-time Lyapunov exponents, accurate even where the
//!   directions differ in size by far more than the floating-point range.

use crate::analysis::spectrum::singular_values;
use crate::cell::{CellKind, LayerCache};
use crate::model::LanguageModel;
use crate::tensor::{matmul, Trans};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// State dimension `S` of a layer: `H`, or `2H` for the LSTM.
pub fn state_dim(kind: CellKind, hidden: usize) -> usize {
    if kind == CellKind::Lstm {
        2 * hidden
    } else {
        hidden
    }
}

/// The one-step Jacobian `J_t` (row-major `[S, S]`, `J[p][q] = d state_t[p] / d state_{t-1}[q]`)
/// of layer `layer` at step `t` (`0..T`) for batch element `b`, from a forward pass's cache.
pub fn one_step(
    model: &LanguageModel<f64>,
    cache: &LayerCache<f64>,
    layer: usize,
    t: usize,
    b: usize,
) -> Vec<f64> {
    let c = &model.config;
    let h = c.hidden;
    let dims = cache.dims.expect("forward has run");
    let bh = dims.batch * h;
    let w = model.layer_params(layer).w_hh;
    let block = |g: usize, p: usize| &w[(g * h + p) * h..(g * h + p + 1) * h];
    let s = state_dim(c.cell, h);
    let mut j = vec![0.0; s * s];
    match c.cell {
        CellKind::Rnn => {
            let h_t = &cache.h[(t + 1) * bh + b * h..(t + 1) * bh + (b + 1) * h];
            for p in 0..h {
                let d = c.activation.derivative_from_output(h_t[p]);
                for (x, &wv) in j[p * h..(p + 1) * h].iter_mut().zip(block(0, p)) {
                    *x = d * wv;
                }
            }
        }
        CellKind::Lstm => {
            let g = &cache.gates[(t * dims.batch + b) * 4 * h..(t * dims.batch + b + 1) * 4 * h];
            let c_prev = &cache.c[t * bh + b * h..t * bh + (b + 1) * h];
            let c_t = &cache.c[(t + 1) * bh + b * h..(t + 1) * bh + (b + 1) * h];
            for p in 0..h {
                let (i, f, gv, o) = (g[p], g[h + p], g[2 * h + p], g[3 * h + p]);
                let tc = c_t[p].tanh();
                let (ci, cf, cg) = (
                    gv * i * (1.0 - i),
                    c_prev[p] * f * (1.0 - f),
                    i * (1.0 - gv * gv),
                );
                let co = tc * o * (1.0 - o);
                let dhdc = o * (1.0 - tc * tc);
                for q in 0..h {
                    let dc_dh = cf * block(1, p)[q] + ci * block(0, p)[q] + cg * block(2, p)[q];
                    j[(h + p) * s + q] = dc_dh;
                    j[p * s + q] = co * block(3, p)[q] + dhdc * dc_dh;
                }
                j[(h + p) * s + h + p] = f;
                j[p * s + h + p] = dhdc * f;
            }
        }
        CellKind::Gru => {
            let g = &cache.gates[(t * dims.batch + b) * 3 * h..(t * dims.batch + b + 1) * 3 * h];
            let h_prev = &cache.h[t * bh + b * h..t * bh + (b + 1) * h];
            let hn = &cache.hn[t * bh + b * h..t * bh + (b + 1) * h];
            for p in 0..h {
                let (r, z, n) = (g[p], g[h + p], g[2 * h + p]);
                let cz = (h_prev[p] - n) * z * (1.0 - z);
                let cn = (1.0 - z) * (1.0 - n * n);
                let cr = cn * hn[p] * r * (1.0 - r);
                for q in 0..h {
                    j[p * h + q] =
                        cz * block(1, p)[q] + cn * r * block(2, p)[q] + cr * block(0, p)[q];
                }
                j[p * h + p] += z;
            }
        }
    }
    j
}

/// Products of the one-step Jacobians at one distance `l`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProductRow {
    pub distance: usize,
    /// `ln |A_l|_F` (`None` once the product is exactly zero).
    pub log_frobenius: Option<f64>,
    /// `ln sigma_m(A_l)` for the leading `k` singular values, exact (SVD of the normalised
    /// product); empty at distances between SVD points.
    pub log_singular_values: Vec<f64>,
    /// `sum over steps of ln |R_mm|` for the `k` leading re-orthonormalised directions: the
    /// log-stretching of the `m`-th direction (`/ l` = finite-time Lyapunov exponents).
    pub log_stretch: Vec<f64>,
}

/// The Jacobian analysis of one layer along the trajectory of one batch element.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JacobianProducts {
    pub layer: usize,
    pub batch_index: usize,
    /// `S`: `H`, or `2H` for the LSTM's `(h, c)`.
    pub state_dim: usize,
    /// `sigma_1(J_t)` for `t = 0..T` (exact, by SVD), at the steps `t = T - l` of the SVD
    /// distances `l`; `None` between them.
    pub one_step_norm: Vec<Option<f64>>,
    /// `l = 1..=T`.
    pub products: Vec<ProductRow>,
    /// `exp(ln sigma_1(A_L) / L)` at the last SVD point `L`: the per-step growth (> 1) or
    /// decay (< 1) rate of the product's norm.
    pub rate_per_step: Option<f64>,
    /// Finite-time Lyapunov exponents `sum ln|R_mm| / T` at `l = T` (per step, natural log).
    pub lyapunov_exponents: Vec<f64>,
}

/// Options of [`products`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JacobianOptions {
    /// Batch element whose trajectory is followed.
    pub batch_index: usize,
    /// Leading directions tracked (singular values and Lyapunov exponents).
    pub top_k: usize,
    /// At most this many distances `l` get exact SVDs (of the product `A_l` and of `J_{T-l}`;
    /// always `l = 1` and `l = T`). `None`: every distance when `S <= 128`, else 32.
    pub svd_points: Option<usize>,
    pub seed: u64,
}

impl Default for JacobianOptions {
    fn default() -> Self {
        JacobianOptions {
            batch_index: 0,
            top_k: 8,
            svd_points: None,
            seed: 0,
        }
    }
}

/// Modified Gram-Schmidt, twice, on the `k` columns of the row-major `[s, k]` matrix `z`, in
/// place; returns `|R_mm|` (the first pass's column norms after projection, times the second's).
fn mgs(z: &mut [f64], s: usize, k: usize) -> Vec<f64> {
    let mut r = vec![1.0; k];
    for _pass in 0..2 {
        for m in 0..k {
            for p in 0..m {
                let dot: f64 = (0..s).map(|i| z[i * k + m] * z[i * k + p]).sum();
                for i in 0..s {
                    z[i * k + m] -= dot * z[i * k + p];
                }
            }
            let nrm = (0..s).map(|i| z[i * k + m].powi(2)).sum::<f64>().sqrt();
            r[m] *= nrm;
            if nrm > 0.0 {
                for i in 0..s {
                    z[i * k + m] /= nrm;
                }
            }
        }
    }
    r
}

/// Jacobian products of layer `layer` along batch element `opts.batch_index` of a forward
/// pass (`cache` = that layer's cache).
///
/// Cost: `T` products `[S, S] x [S, S]` (`2 T S^3` flops), `T` thin re-orthonormalisations
/// (`O(T S^2 k)`) and two `[S, S]` SVDs at each of the SVD distances.
pub fn products(
    model: &LanguageModel<f64>,
    cache: &LayerCache<f64>,
    layer: usize,
    opts: &JacobianOptions,
) -> crate::error::Result<JacobianProducts> {
    let dims = cache.dims.expect("forward has run");
    let steps = dims.steps;
    let b = opts.batch_index.min(dims.batch - 1);
    let s = state_dim(model.config.cell, model.config.hidden);
    let k = opts.top_k.clamp(1, s);
    let points = opts.svd_points.unwrap_or(if s <= 128 { steps } else { 32 });
    let stride = steps.div_ceil(points.max(1)).max(1);

    let mut one_step_norm = vec![None; steps];
    // normalised product B = A_l / |A_l|_F, and ln |A_l|_F
    let mut prod = vec![0.0; s * s];
    for p in 0..s {
        prod[p * s + p] = 1.0 / (s as f64).sqrt();
    }
    let mut log_scale = 0.5 * (s as f64).ln();
    let mut next = vec![0.0; s * s];
    let mut zero = false;
    // Benettin: Q [s, k] orthonormal, random start
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut q: Vec<f64> = {
        use rand_distr::{Distribution, StandardNormal};
        (0..s * k)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect()
    };
    mgs(&mut q, s, k);
    let mut z = vec![0.0; s * k];
    let mut stretch = vec![0.0f64; k];
    let mut rows = Vec::with_capacity(steps);
    let mut last_sigma: Option<(usize, f64)> = None;

    for l in 1..=steps {
        let t = steps - l;
        let j = one_step(model, cache, layer, t, b);
        let svd_here = l % stride == 0 || l == steps || l == 1;
        if svd_here {
            one_step_norm[t] = singular_values(&j, s)?.first().copied();
        }
        // A_l = A_{l-1} J_t
        if !zero {
            matmul(&mut next, &prod, Trans::No, &j, Trans::No, s, s, s, false);
            let fro = next.iter().map(|x| x * x).sum::<f64>().sqrt();
            if fro == 0.0 || !fro.is_finite() {
                zero = true;
            } else {
                next.iter_mut().for_each(|x| *x /= fro);
                log_scale += fro.ln();
                std::mem::swap(&mut prod, &mut next);
            }
        }
        // Z = J^T Q, re-orthonormalised
        matmul(&mut z, &j, Trans::Yes, &q, Trans::No, s, k, s, false);
        let r = mgs(&mut z, s, k);
        for (acc, rv) in stretch.iter_mut().zip(&r) {
            // an exactly collapsed direction counts as ln(2^-1022) per step (stays finite)
            *acc += rv.max(f64::MIN_POSITIVE).ln();
        }
        std::mem::swap(&mut q, &mut z);
        let mut sorted = stretch.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));

        let log_sv = if svd_here && !zero {
            let sv = singular_values(&prod, s)?;
            let v: Vec<f64> = sv
                .iter()
                .take(k)
                .map(|x| x.max(f64::MIN_POSITIVE).ln() + log_scale)
                .collect();
            last_sigma = Some((l, v[0]));
            v
        } else {
            Vec::new()
        };
        rows.push(ProductRow {
            distance: l,
            log_frobenius: (!zero).then_some(log_scale),
            log_singular_values: log_sv,
            log_stretch: sorted,
        });
    }
    let mut lyapunov_exponents: Vec<f64> = stretch.iter().map(|x| x / steps as f64).collect();
    lyapunov_exponents.sort_by(|a, b| b.total_cmp(a));
    Ok(JacobianProducts {
        layer,
        batch_index: b,
        state_dim: s,
        one_step_norm,
        products: rows,
        rate_per_step: last_sigma
            .filter(|(_, v)| v.is_finite())
            .map(|(l, v)| (v / l as f64).exp()),
        lyapunov_exponents,
    })
}

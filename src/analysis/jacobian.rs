//! One-step Jacobians of the recurrence along a real trajectory, and their products over `l`
//! steps, accumulated stably.
//!
//! The state is `h` (RNN, GRU) or `(h, c)` stacked (LSTM, dimension `2H`, or `P + H` with a
//! projection `proj_size = P`, where `h` has `P` values); `J_t` is the full
//! derivative of the state after step `t` with respect to the state before it, with the layer's
//! input held fixed. A gradient (row vector) goes one step back as `g_{t-1} = g_t J_t`. Each
//! cell's file states its `J_t`; here `J_t` is built from the cell's own backward step, one
//! basis row at a time: row `p` of `J_t` is `e_p J_t`.
//!
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
use crate::cell::{LayerCache, RowOwners, StepVjp, VjpRows};
use crate::model::{LanguageModel, ModelConfig};
use crate::tensor::{matmul, Trans};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// State dimension `S` of a layer: `H`, or `P + H` with a cell state (LSTM; `P = H` without
/// a projection).
pub fn state_dim(c: &ModelConfig) -> usize {
    if c.cell.keeps().cell_state {
        c.h_size() + c.hidden
    } else {
        c.hidden
    }
}

/// Builds one-step Jacobians of one layer from a forward pass's cache, with its buffers kept
/// from call to call.
pub struct OneStep<'m> {
    model: &'m LanguageModel<f64>,
    layer: usize,
    vjp: StepVjp<f64>,
    /// `[S, P]` (`h`) and `[S, H]` (`c`): the basis rows in, `e_p J_t` out.
    up: Vec<f64>,
    dh: Vec<f64>,
    dc: Vec<f64>,
    record_dh: Vec<f64>,
    record_dc: Vec<f64>,
}

impl<'m> OneStep<'m> {
    pub fn new(model: &'m LanguageModel<f64>, layer: usize) -> Self {
        OneStep {
            model,
            layer,
            vjp: StepVjp::default(),
            up: Vec::new(),
            dh: Vec::new(),
            dc: Vec::new(),
            record_dh: Vec::new(),
            record_dc: Vec::new(),
        }
    }

    /// `J_t` (row-major `[S, S]`, `J[p][q] = d state_t[p] / d state_{t-1}[q]`) at step `t`
    /// (`0..T`) for batch element `b`, written into `j`.
    pub fn jacobian(&mut self, cache: &LayerCache<f64>, t: usize, b: usize, j: &mut [f64]) {
        let c = &self.model.config;
        // `h` values (P with a projection), then `hc` cell-state values (H).
        let (h, hc) = (c.h_size(), c.hidden);
        let s = state_dim(c);
        let with_c = s > h;
        assert_eq!(j.len(), s * s, "J must be [S, S]");
        for v in [&mut self.up, &mut self.dh, &mut self.record_dh] {
            v.clear();
            v.resize(s * h, 0.0);
        }
        for v in [&mut self.dc, &mut self.record_dc] {
            v.clear();
            v.resize(if with_c { s * hc } else { 0 }, 0.0);
        }
        // Row p is the basis vector e_p of the state (h first, then c).
        for p in 0..s {
            if p < h {
                self.dh[p * h + p] = 1.0;
            } else {
                self.dc[p * hc + p - h] = 1.0;
            }
        }
        self.vjp.run(
            c.cell(),
            cache,
            self.model.layer_params(self.layer),
            t,
            RowOwners::Element { b, rows: s },
            VjpRows {
                up: &mut self.up,
                dh: &mut self.dh,
                dc: &mut self.dc,
                record_dh: &mut self.record_dh,
                record_dc: &mut self.record_dc,
            },
        );
        for p in 0..s {
            j[p * s..p * s + h].copy_from_slice(&self.dh[p * h..(p + 1) * h]);
            if with_c {
                j[p * s + h..(p + 1) * s].copy_from_slice(&self.dc[p * hc..(p + 1) * hc]);
            }
        }
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
    let s = state_dim(&model.config);
    let mut j = vec![0.0; s * s];
    OneStep::new(model, layer).jacobian(cache, t, b, &mut j);
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
    /// `S`: `H`, or `P + H` for the LSTM's `(h, c)` (`P = H` without a projection).
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
    let dims = cache.dims().expect("forward has run");
    let steps = dims.steps;
    let b = opts.batch_index.min(dims.batch - 1);
    let s = state_dim(&model.config);
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

    let mut builder = OneStep::new(model, layer);
    let mut j = vec![0.0; s * s];
    for l in 1..=steps {
        let t = steps - l;
        builder.jacobian(cache, t, b, &mut j);
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

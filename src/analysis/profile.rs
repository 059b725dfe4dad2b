//! Per-distance gradient profiles and the full influence matrix, from one batched backward sweep.
//!
//! ```text
//! J^(i)       the loss at step i alone (every batch element b on its own row)
//! g^(i)_j     dJ^(i)/dh^(j), j <= i, l = i - j
//! influence   I[i][j] = mean over b of |g^(i)_{j,b}|_2                      (T x T, lower triangle)
//! profile     P(l) = mean over (i, b), i >= l, of |g^(i)_{i-l,b}|  (+ median, 10/90 percentiles)
//! ratio       R(l) = P(l) / P_l(0),  P_l(0) = mean over the same (i, b) of |g^(i)_{i,b}|
//! ```
//! `R(l)` divides by `P(0)` restricted to the targets that reach distance `l` (`i >= l`), so a
//! change in which targets are counted does not show up as decay: for `W_hh = rho Q` (`Q`
//! orthogonal) and identity activation `R(l) = rho^l` exactly.
//!
//! # The batched sweep
//!
//! Backward is linear in the upstream gradient, so all `T` single-step losses go back through
//! time together: row `(i, b)` of a block `[n, B, H]` carries `g^(i)_{t,b}`. Walking `t` from
//! `T-1` down to `0`, the rows of targets `i >= t` are live (`n = T - t`); at step `t` the top
//! layer's row `(t, b)` receives the injection `dJ^(t)/dh_t` (through the decoder only), and
//! each layer, top to bottom, runs the cell's own backward step ([`StepVjp`], the same code as
//! training) on all live rows at once, each row reading the forward values of its batch
//! element `b`:
//! ```text
//! g      = carry (from step t+1) + dx from the layer above (same step)    total dJ^(i)/dh^(k)_t
//!          (+ the layer above's g as well, with residual connections: o^(k+1) = h^(k+1) + o^k)
//! da     = the cell's pre-activation gradient of (g [, dc])                [n B, G H]
//! carry  = the cell's dh_{t-1} (and dc_{t-1}): da W_hh plus its direct paths
//! dx     = da W_ih^(k)        (to layer k-1, same step; not for layer 0)
//! ```
//! The recurrent product is one GEMM `[n B, G H] x [G H, H]` per step and layer. With an LSTM
//! projection (`proj_size = P`) the rows `g` and `carry` of `h` are `P` wide (`W_hh [4H, P]`,
//! and the cell's step takes `g` through `W_hr` first); those of `c` stay `H` wide.
//!
//! **Cost.** Per layer, `sum_t (T - t) B = B T (T+1) / 2` rows, each `2 G H^2` flops for
//! `W_hh` (and as much again for `W_ih` in layers above the first), plus `O(G H)` elementwise
//! work per row: `B T (T+1) G H^2` flops per layer, against `T` separate backward passes that
//! cost `T` times a full backward (`2 B T^2 G H^2` recurrent flops alone, in GEMMs of only
//! `B` rows, plus the weight-gradient GEMMs). Memory: `O(B T G H)` per layer for the carries
//! and one shared `[T, B, G H]` pre-activation block, plus `B T (T+1) / 2` norms per layer.

use crate::cell::{LayerCache, RowOwners, StepVjp, VjpRows};
use crate::model::LanguageModel;
use crate::tensor::{matmul, Float, Trans};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The live block of one layer at one step, shown to a sweep visitor.
///
/// Row `r` is target `i = step + r / batch`, batch element `b = r % batch`.
pub struct StepView<'a, T> {
    pub layer: usize,
    /// `j`: the step whose hidden state the gradients are taken with respect to.
    pub step: usize,
    pub batch: usize,
    /// Size of `h`: `H`, or `P` for an LSTM with a projection.
    pub hidden: usize,
    /// `[(T - step), B, P]`: `g^(i)_{step,b} = dJ^(i)/dh^(layer)_{step}` for `i >= step`.
    pub dh: &'a [T],
    /// LSTM: `[(T - step), B, H]` total `dJ^(i)/dc^(layer)_{step}`.
    pub dc: Option<&'a [T]>,
}

/// A callback that sees every live block before it is propagated further back.
pub type Visitor<'v, T> = &'v mut dyn FnMut(&StepView<'_, T>);

/// Norms `|g^(i)_{j,b}|` for every layer, `j <= i`, packed by rows of the lower triangle.
#[derive(Clone, Debug, Default)]
pub struct InfluenceNorms {
    pub steps: usize,
    pub batch: usize,
    /// Per layer, `[(i (i+1) / 2 + j) * B + b]`.
    pub dh: Vec<Vec<f64>>,
    /// LSTM per layer (empty otherwise): norms of the total `dJ^(i)/dc^(j)`.
    pub dc: Vec<Vec<f64>>,
}

#[inline]
fn tri(i: usize) -> usize {
    i * (i + 1) / 2
}

impl InfluenceNorms {
    fn new(steps: usize, batch: usize, layers: usize, lstm: bool) -> Self {
        let n = tri(steps) * batch;
        InfluenceNorms {
            steps,
            batch,
            dh: vec![vec![0.0; n]; layers],
            dc: if lstm {
                vec![vec![0.0; n]; layers]
            } else {
                Vec::new()
            },
        }
    }

    /// Index of `(i, j, b)`, `j <= i`, in the packed buffers.
    #[inline]
    pub fn index(&self, i: usize, j: usize, b: usize) -> usize {
        debug_assert!(j <= i && i < self.steps && b < self.batch);
        (tri(i) + j) * self.batch + b
    }

    /// `|g^(i)_{j,b}|` of layer `layer`.
    pub fn get(&self, layer: usize, i: usize, j: usize, b: usize) -> f64 {
        self.dh[layer][self.index(i, j, b)]
    }

    /// The `T x T` influence matrix (row `i`, column `j`; zero above the diagonal): the mean
    /// over the batch of the packed norms `v` (one of `dh[k]` or `dc[k]`).
    pub fn matrix(&self, v: &[f64]) -> Vec<f64> {
        let (t, b) = (self.steps, self.batch);
        let mut m = vec![0.0; t * t];
        for i in 0..t {
            for j in 0..=i {
                let at = self.index(i, j, 0);
                m[i * t + j] = v[at..at + b].iter().sum::<f64>() / b as f64;
            }
        }
        m
    }
}

/// The dense top-layer injection `dJ^(i)/dh^(L-1)_i` through the decoder only, `[T, B, P]`:
/// `dz = softmax(z) - onehot(y)` per token (weight 1), times `W_dec [V, P]` (`P = H` without
/// a projection).
///
/// `probs [T*B, V]` are the probabilities that [`LanguageModel::loss`] leaves in `ws.logits`.
pub fn decoder_injection<T: Float>(
    model: &LanguageModel<T>,
    probs: &[T],
    targets: &[u32],
) -> Vec<T> {
    let c = &model.config;
    let n = targets.len();
    assert_eq!(probs.len(), n * c.vocab, "probs must be [T*B, V]");
    let mut dz = probs.to_vec();
    for (row, &y) in dz.chunks_exact_mut(c.vocab).zip(targets) {
        row[y as usize] -= T::ONE;
    }
    let name = if c.tie {
        "embedding.weight"
    } else {
        "decoder.weight"
    };
    let w_dec = model
        .layout
        .view(model.params(), name)
        .expect("the layout has a decoder weight");
    let mut out = vec![T::ZERO; n * c.h_size()];
    // [T*B, V] x [V, P]
    matmul(
        &mut out,
        &dz,
        Trans::No,
        w_dec,
        Trans::No,
        n,
        c.h_size(),
        c.vocab,
        false,
    );
    out
}

/// `|v|^2` in f64, with eight independent partial sums (vectorisable; a single running sum
/// is one long dependency chain).
#[inline]
fn sq_norm<T: Float>(v: &[T]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            let x = x.to_f64();
            *a += x * x;
        }
    }
    let tail: f64 = rest.iter().map(|x| x.to_f64() * x.to_f64()).sum();
    acc.iter().sum::<f64>() + tail
}

/// Rows per rayon task in the elementwise passes.
const ROWS_PER_TASK: usize = 64;

/// The batched backward sweep: every `g^(i)_j` of every layer, in one pass over time.
///
/// `caches` are the layer caches of a forward pass (`ws.caches`, no dropout) over `[T, B]`;
/// `inject [T, B, P]` is `dJ^(i)/dh^(L-1)_i` through the output layer only (see
/// [`decoder_injection`]). `visit`, when given, sees each layer's live block at each step.
/// Returns the norms; the cost is stated in the module docs. Each step of each layer is the
/// cell's own backward step ([`StepVjp`]) on the live rows.
pub fn sweep<T: Float>(
    model: &LanguageModel<T>,
    caches: &[LayerCache<T>],
    inject: &[T],
    mut visit: Option<Visitor<'_, T>>,
) -> InfluenceNorms {
    let cfg = &model.config;
    // `h` is the width of the rows of h (P with a projection), `hc` of those of c (H).
    let (cell, h, hc, layers) = (cfg.cell(), cfg.h_size(), cfg.hidden, cfg.layers);
    assert_eq!(caches.len(), layers, "one cache per layer");
    let dims = caches[0].dims().expect("forward has run");
    let (steps, batch) = (dims.steps, dims.batch);
    assert_eq!(inject.len(), steps * batch * h, "inject must be [T, B, P]");
    let gh = cfg.cell.gates() * hc;
    let bh = batch * h;
    let lstm = cfg.cell.keeps().cell_state;

    let mut norms = InfluenceNorms::new(steps, batch, layers, lstm);
    // Buffers, allocated once, indexed by target row (i, b): the gradient reaching each layer
    // from outside its recurrence (`up`), the carries from step t + 1 (`dh`, `dc`), and the
    // totals a step records.
    let (all, all_c) = (steps * bh, steps * batch * hc);
    let mut up: Vec<Vec<T>> = vec![vec![T::ZERO; all]; layers];
    let mut dh: Vec<Vec<T>> = vec![vec![T::ZERO; all]; layers];
    let mut dc: Vec<Vec<T>> = vec![vec![T::ZERO; if lstm { all_c } else { 0 }]; layers];
    let mut rec_dh = vec![T::ZERO; all];
    let mut rec_dc = vec![T::ZERO; if lstm { all_c } else { 0 }];
    let mut vjp: Vec<StepVjp<T>> = (0..layers).map(|_| StepVjp::default()).collect();
    let mut step_norm_h = vec![0.0f64; steps * batch];
    let mut step_norm_c = vec![0.0f64; if lstm { steps * batch } else { 0 }];

    for t in (0..steps).rev() {
        let rows = (steps - t) * batch;
        let live = t * bh..steps * bh;
        // Of the top layer's targets only i = t (the first block of live rows) is injected
        // at step t.
        let top = &mut up[layers - 1][live.clone()];
        top.fill(T::ZERO);
        top[..bh].copy_from_slice(&inject[t * bh..(t + 1) * bh]);
        for k in (0..layers).rev() {
            let p = model.layer_params(k);
            let (below, rest) = up.split_at_mut(k);
            let skip = cfg.residual && k > 0;
            if skip {
                // o^k = h^k + o^(k-1): what reaches o^k also reaches o^(k-1) directly (taken
                // before the step, which may write over its upstream gradient).
                below[k - 1][live.clone()].copy_from_slice(&rest[0][live.clone()]);
            }
            let live_c = t * batch * hc..steps * batch * hc;
            let dc_k: &mut [T] = if lstm { &mut dc[k][live_c] } else { &mut [] };
            let da = vjp[k].run(
                cell,
                &caches[k],
                p,
                t,
                RowOwners::Blocks(steps - t),
                VjpRows {
                    up: &mut rest[0][live.clone()],
                    dh: &mut dh[k][live.clone()],
                    dc: dc_k,
                    record_dh: &mut rec_dh[..rows * h],
                    record_dc: if lstm {
                        &mut rec_dc[..rows * hc]
                    } else {
                        &mut []
                    },
                },
            );
            // dx to the layer below (same step): up[k-1] (+)= da W_ih^(k)   ([nB, GH] x [GH, P])
            if k > 0 {
                matmul(
                    &mut below[k - 1][live.clone()],
                    da,
                    Trans::No,
                    p.w_ih,
                    Trans::No,
                    rows,
                    h,
                    gh,
                    skip,
                );
            }
            row_norms(&rec_dh[..rows * h], &mut step_norm_h[..rows], h);
            if lstm {
                row_norms(&rec_dc[..rows * hc], &mut step_norm_c[..rows], hc);
            }
            for r in 0..rows {
                let (i, b) = (t + r / batch, r % batch);
                let at = norms.index(i, t, b);
                norms.dh[k][at] = step_norm_h[r];
                if lstm {
                    norms.dc[k][at] = step_norm_c[r];
                }
            }
            if let Some(v) = visit.as_mut() {
                v(&StepView {
                    layer: k,
                    step: t,
                    batch,
                    hidden: h,
                    dh: &rec_dh[..rows * h],
                    dc: lstm.then(|| &rec_dc[..rows * hc]),
                });
            }
        }
    }
    norms
}

/// `out[r] = |v_r|` for the rows `v_r` (`[R, H]`) of `v`, in parallel.
fn row_norms<T: Float>(v: &[T], out: &mut [f64], h: usize) {
    v.par_chunks(ROWS_PER_TASK * h)
        .zip(out.par_chunks_mut(ROWS_PER_TASK))
        .for_each(|(vs, os)| {
            for (row, o) in vs.chunks_exact(h).zip(os.iter_mut()) {
                *o = sq_norm(row).sqrt();
            }
        });
}

/// Statistics of the norms at one distance `l`, over all `(i, b)` with `i >= l`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProfileRow {
    pub distance: usize,
    /// Number of `(i, b)` pairs.
    pub count: usize,
    pub mean: f64,
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
    /// `R(l) = P(l) / P_l(0)` (see the module docs); `None` when `P_l(0) = 0`.
    pub ratio: Option<f64>,
}

/// Linear-interpolated percentile `q` in `[0, 1]` of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let w = pos - lo as f64;
    sorted[lo] * (1.0 - w) + sorted[hi] * w
}

/// The per-distance profile of one packed norm buffer (`norms.dh[k]` or `norms.dc[k]`).
pub fn profile(norms: &InfluenceNorms, v: &[f64]) -> Vec<ProfileRow> {
    let (steps, batch) = (norms.steps, norms.batch);
    let mut vals = Vec::with_capacity(steps * batch);
    (0..steps)
        .map(|l| {
            vals.clear();
            let mut base = 0.0;
            for i in l..steps {
                let at = norms.index(i, i - l, 0);
                vals.extend_from_slice(&v[at..at + batch]);
                let a0 = norms.index(i, i, 0);
                base += v[a0..a0 + batch].iter().sum::<f64>();
            }
            let count = vals.len();
            let mean = vals.iter().sum::<f64>() / count as f64;
            base /= count as f64;
            vals.sort_by(f64::total_cmp);
            ProfileRow {
                distance: l,
                count,
                mean,
                median: percentile(&vals, 0.5),
                p10: percentile(&vals, 0.1),
                p90: percentile(&vals, 0.9),
                ratio: (base > 0.0).then(|| mean / base),
            }
        })
        .collect()
}

/// Ratios below this count as "gone" when measuring the decay rate.
pub const RATE_FLOOR: f64 = 1e-12;

/// The measured per-step rate of a profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Geometric mean of `R(l+1) / R(l)` for `l` in `0..last`, i.e. `R(last)^(1/last)`.
    pub per_step: f64,
    /// `exp` of the least-squares slope of `ln R(l)` over `l` in `0..=last`.
    pub per_step_fit: f64,
    /// The measured range is `0..=last`: the longest prefix where `R(l) > 1e-12` and finite.
    pub last: usize,
}

/// The per-step rate of `R(l)`, over the longest prefix of distances where `R > 1e-12`
/// (further out, rounding and the few remaining targets dominate). `None` without two points.
pub fn rate(rows: &[ProfileRow]) -> Option<Rate> {
    let last = rows
        .iter()
        .take_while(|r| r.ratio.is_some_and(|x| x.is_finite() && x > RATE_FLOOR))
        .count()
        .checked_sub(1)?;
    if last == 0 {
        return None;
    }
    let ln: Vec<f64> = rows[..=last]
        .iter()
        .map(|r| r.ratio.expect("checked").ln())
        .collect();
    let per_step = ((ln[last] - ln[0]) / last as f64).exp();
    let n = ln.len() as f64;
    let mx = (n - 1.0) / 2.0;
    let my = ln.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in ln.iter().enumerate() {
        let dx = x as f64 - mx;
        sxy += dx * (y - my);
        sxx += dx * dx;
    }
    Some(Rate {
        per_step,
        per_step_fit: (sxy / sxx).exp(),
        last,
    })
}

/// The first distance at which `R(l)` falls below `threshold` (`None`: not within the window).
pub fn distance_below(rows: &[ProfileRow], threshold: f64) -> Option<usize> {
    rows.iter()
        .find(|r| r.ratio.is_some_and(|x| x < threshold))
        .map(|r| r.distance)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(ratios: &[f64]) -> Vec<ProfileRow> {
        ratios
            .iter()
            .enumerate()
            .map(|(l, &r)| ProfileRow {
                distance: l,
                count: 1,
                mean: r,
                median: r,
                p10: r,
                p90: r,
                ratio: Some(r),
            })
            .collect()
    }

    #[test]
    fn percentiles_interpolate() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&v, 0.5), 3.0);
        assert_eq!(percentile(&v, 0.1), 1.4);
        assert_eq!(percentile(&v, 0.9), 4.6);
        assert_eq!(percentile(&[7.0], 0.1), 7.0);
    }

    #[test]
    fn rate_stops_at_the_floor_and_distances_are_first_crossings() {
        // 0.1^l: below 1e-12 from l = 13 on, so the range is 0..=12
        let r: Vec<f64> = (0..20).map(|l| 0.1f64.powi(l)).collect();
        let rate = rate(&rows(&r)).unwrap();
        assert_eq!(rate.last, 12);
        assert!((rate.per_step - 0.1).abs() < 1e-14 && (rate.per_step_fit - 0.1).abs() < 1e-14);
        assert_eq!(distance_below(&rows(&r), 1e-3), Some(4));
        assert_eq!(distance_below(&rows(&r), 1e-6), Some(7));
        assert_eq!(distance_below(&rows(&[1.0, 0.5]), 1e-3), None);
        assert!(rate_of(&[1.0]).is_none());
        assert!(rate_of(&[1.0, 0.0]).is_none());
    }

    fn rate_of(r: &[f64]) -> Option<Rate> {
        rate(&rows(r))
    }

    #[test]
    fn packed_indexing_and_matrix() {
        let mut n = InfluenceNorms::new(3, 2, 1, false);
        let mut seen = std::collections::HashSet::new();
        for i in 0..3 {
            for j in 0..=i {
                for b in 0..2 {
                    assert!(seen.insert(n.index(i, j, b)));
                    let at = n.index(i, j, b);
                    n.dh[0][at] = (10 * i + j) as f64 + b as f64;
                }
            }
        }
        assert_eq!(seen.len(), n.dh[0].len());
        let m = n.matrix(&n.dh[0]);
        assert_eq!(m[2 * 3 + 1], 21.5);
        assert_eq!(m[3 + 2], 0.0);
    }
}

/// The memory horizon: the first distance at which `R(l)` falls below `threshold`, with a 95%
/// bootstrap interval over the windows (the batch elements, resampled with replacement).
/// `None` in any field: `R(l)` stays above the threshold within the window (`l <= T - 1`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Horizon {
    pub threshold: f64,
    /// On all windows together: [`distance_below`] of the profile.
    pub distance: Option<usize>,
    /// 2.5% and 97.5% quantiles over the resamples.
    pub low: Option<usize>,
    pub high: Option<usize>,
    pub windows: usize,
    pub resamples: usize,
}

/// Bootstrap resamples of [`horizon`].
pub const HORIZON_RESAMPLES: usize = 1000;

/// The [`Horizon`] of a packed norm buffer (`norms.dh[k]` or `norms.dc[k]`).
///
/// Per window `b` and distance `l`: `N_b(l) = sum_(i >= l) |g^(i)_(i-l,b)|` and
/// `D_b(l) = sum_(i >= l) |g^(i)_(i,b)|`; a set of windows (with multiplicities) has
/// `R(l) = sum N_b(l) / sum D_b(l)`, which for all windows once is the profile's `R(l)`.
/// `resamples` sets of `B` windows drawn with replacement (RNG seeded with `seed`) give the
/// interval.
pub fn horizon(
    norms: &InfluenceNorms,
    v: &[f64],
    threshold: f64,
    resamples: usize,
    seed: u64,
) -> Horizon {
    use rand::{Rng, SeedableRng};
    let (steps, batch) = (norms.steps, norms.batch);
    let mut num = vec![0.0; batch * steps];
    let mut den = vec![0.0; batch * steps];
    for l in 0..steps {
        for i in l..steps {
            for b in 0..batch {
                num[b * steps + l] += v[norms.index(i, i - l, b)];
                den[b * steps + l] += v[norms.index(i, i, b)];
            }
        }
    }
    let first_below = |weights: &[f64]| -> Option<usize> {
        (0..steps).find(|&l| {
            let (mut n, mut d) = (0.0, 0.0);
            for (b, w) in weights.iter().enumerate() {
                n += w * num[b * steps + l];
                d += w * den[b * steps + l];
            }
            d > 0.0 && n / d < threshold
        })
    };
    let distance = first_below(&vec![1.0; batch]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut weights = vec![0.0; batch];
    // Beyond the window sorts last, as `steps`.
    let mut draws: Vec<usize> = (0..resamples)
        .map(|_| {
            weights.fill(0.0);
            for _ in 0..batch {
                weights[rng.gen_range(0..batch)] += 1.0;
            }
            first_below(&weights).unwrap_or(steps)
        })
        .collect();
    draws.sort_unstable();
    let at = |q: f64| -> Option<usize> {
        let d = *draws.get((q * (draws.len().max(1) - 1) as f64).round() as usize)?;
        (d < steps).then_some(d)
    };
    Horizon {
        threshold,
        distance,
        low: at(0.025),
        high: at(0.975),
        windows: batch,
        resamples,
    }
}

impl Horizon {
    /// `l = 42 (95% interval over 16 windows: 38-47)`, or `beyond l = T - 1 ...`.
    pub fn describe(&self, steps: usize) -> String {
        let d = |x: Option<usize>| {
            x.map_or(format!("beyond {}", steps.saturating_sub(1)), |l| {
                l.to_string()
            })
        };
        format!(
            "l = {} (95% interval over {} windows: {} to {})",
            d(self.distance),
            self.windows,
            d(self.low),
            d(self.high)
        )
    }
}

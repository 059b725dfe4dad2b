//! GRU with gate rows stacked `r, z, n` and the reset applied after the matmul, as `torch.nn.GRU`:
//! ```text
//! r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)     z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
//! n = tanh(W_in x + b_in + r * (W_hn h + b_hn))  h_t = (1 - z) * n + z * h_{t-1}
//! ```

use super::{input_projection, Dims, LayerCache, LayerParams, Recurrent, StepGrads};
use crate::tensor::{add_row_bias, matmul_on, sigmoid, Float, Trans};

pub(super) fn forward<T: Float>(
    cache: &mut LayerCache<T>,
    x: &[T],
    p: LayerParams<T>,
    w_hh: Recurrent<T>,
    dims: Dims,
) {
    let (b, h) = (dims.batch, dims.hidden);
    let bh = b * h;
    let bg = 3 * bh;
    input_projection(&mut cache.gates, x, p, false, dims);
    let split = super::row_split(b);
    for t in 0..dims.steps {
        let gates = &mut cache.gates[t * bg..(t + 1) * bg];
        let hn_t = &mut cache.hn[t * bh..(t + 1) * bh];
        let (h_prev, h_next) = cache.h[t * bh..(t + 2) * bh].split_at_mut(bh);
        let gh = &mut cache.gh[..];
        match split {
            // Batch rows are independent through time: each core takes half of them.
            Some(r) => {
                let (g0, g1) = gates.split_at_mut(r * 3 * h);
                let (s0, s1) = gh.split_at_mut(r * 3 * h);
                let (n0, n1) = hn_t.split_at_mut(r * h);
                let (p0, p1) = h_prev.split_at(r * h);
                let (x0, x1) = h_next.split_at_mut(r * h);
                rayon::join(
                    || forward_rows(g0, s0, n0, p0, x0, p, w_hh, h),
                    || forward_rows(g1, s1, n1, p1, x1, p, w_hh, h),
                );
            }
            None => forward_rows(gates, gh, hn_t, h_prev, h_next, p, w_hh, h),
        }
    }
}

/// One step for a block of rows: `gh = h_prev W_hh^T + b_hh` (`[R, H] x [H, 3H]`), then the
/// gates and the new state, fused in one pass.
#[allow(clippy::too_many_arguments)]
fn forward_rows<T: Float>(
    gates: &mut [T],
    gh_rows: &mut [T],
    hn_t: &mut [T],
    h_prev: &[T],
    h_next: &mut [T],
    p: LayerParams<T>,
    w_hh: Recurrent<T>,
    h: usize,
) {
    let rows = h_prev.len() / h;
    matmul_on(
        gh_rows,
        h_prev,
        Trans::No,
        w_hh.w,
        w_hh.trans,
        rows,
        3 * h,
        h,
        false,
        1,
    );
    add_row_bias(gh_rows, p.b_hh);
    for r in 0..rows {
        let g = &mut gates[r * 3 * h..(r + 1) * 3 * h];
        let gh = &gh_rows[r * 3 * h..(r + 1) * 3 * h];
        for j in 0..h {
            let k = r * h + j;
            let rv = sigmoid(g[j] + gh[j]);
            let z = sigmoid(g[h + j] + gh[h + j]);
            let n = (g[2 * h + j] + rv * gh[2 * h + j]).tanh();
            g[j] = rv;
            g[h + j] = z;
            g[2 * h + j] = n;
            hn_t[k] = gh[2 * h + j];
            h_next[k] = (T::ONE - z) * n + z * h_prev[k];
        }
    }
}

/// Backward through time; fills `cache.da` (input side) and `cache.da_hh` (recurrent side):
/// ```text
/// dh = dh_out[t] + carry     dn = dh (1 - z)     dz = dh (h_{t-1} - n)
/// dan = dn (1 - n^2)   dar = dan * hn * r (1 - r)   daz = dz z (1 - z)
/// da = [dar, daz, dan]    da_hh = [dar, daz, dan * r]    carry = dh * z + da_hh W_hh
/// ```
pub(super) fn backward_steps<T: Float>(
    cache: &mut LayerCache<T>,
    dh_out: &[T],
    p: LayerParams<T>,
    dims: Dims,
    mut record: Option<StepGrads<T>>,
) {
    let (b, h) = (dims.batch, dims.hidden);
    let bh = b * h;
    let bg = 3 * bh;
    let split = super::row_split(b);
    for t in (0..dims.steps).rev() {
        let step = t * bh..(t + 1) * bh;
        let rows = BackwardRows {
            gates: &mut cache.gates[t * bg..(t + 1) * bg],
            da_hh: &mut cache.da_hh[t * bg..(t + 1) * bg],
            hn: &cache.hn[step.clone()],
            h_prev: &cache.h[step.clone()],
            up: &dh_out[step.clone()],
            dh_carry: &mut cache.dh_carry,
            rec_dh: record.as_mut().map(|r| &mut r.dh[step]),
        };
        match split {
            // Batch rows are independent through time: each core takes half of them.
            Some(r) => {
                let (first, second) = rows.split(r, h);
                rayon::join(|| first.run(p.w_hh, h), || second.run(p.w_hh, h));
            }
            None => rows.run(p.w_hh, h),
        }
    }
}

/// One backward step for a block of batch rows (`[R, 3H]` gate blocks, `[R, H]` the rest).
/// `gates` holds the activated gates on entry and the input-side gradients `da` on exit.
struct BackwardRows<'a, T> {
    gates: &'a mut [T],
    da_hh: &'a mut [T],
    hn: &'a [T],
    h_prev: &'a [T],
    up: &'a [T],
    dh_carry: &'a mut [T],
    rec_dh: Option<&'a mut [T]>,
}

impl<'a, T: Float> BackwardRows<'a, T> {
    /// The first `r` rows and the rest.
    fn split(self, r: usize, h: usize) -> (Self, Self) {
        let (g0, g1) = self.gates.split_at_mut(r * 3 * h);
        let (d0, d1) = self.da_hh.split_at_mut(r * 3 * h);
        let (n0, n1) = self.hn.split_at(r * h);
        let (p0, p1) = self.h_prev.split_at(r * h);
        let (u0, u1) = self.up.split_at(r * h);
        let (c0, c1) = self.dh_carry.split_at_mut(r * h);
        let (r0, r1) = super::split_rows(self.rec_dh, r * h);
        (
            BackwardRows {
                gates: g0,
                da_hh: d0,
                hn: n0,
                h_prev: p0,
                up: u0,
                dh_carry: c0,
                rec_dh: r0,
            },
            BackwardRows {
                gates: g1,
                da_hh: d1,
                hn: n1,
                h_prev: p1,
                up: u1,
                dh_carry: c1,
                rec_dh: r1,
            },
        )
    }

    fn run(mut self, w_hh: &[T], h: usize) {
        let rows = self.up.len() / h;
        for r in 0..rows {
            let d = &mut self.gates[r * 3 * h..(r + 1) * 3 * h];
            let dhh = &mut self.da_hh[r * 3 * h..(r + 1) * 3 * h];
            for j in 0..h {
                let k = r * h + j;
                // Read this unit's gates before overwriting them with their gradients.
                let (rv, z, n) = (d[j], d[h + j], d[2 * h + j]);
                let dh = self.dh_carry[k] + self.up[k];
                if let Some(rec) = self.rec_dh.as_mut() {
                    rec[k] = dh;
                }
                let dan = dh * (T::ONE - z) * (T::ONE - n * n);
                let dar = dan * self.hn[k] * rv * (T::ONE - rv);
                let daz = dh * (self.h_prev[k] - n) * z * (T::ONE - z);
                d[j] = dar;
                d[h + j] = daz;
                d[2 * h + j] = dan;
                dhh[j] = dar;
                dhh[h + j] = daz;
                dhh[2 * h + j] = dan * rv;
                self.dh_carry[k] = dh * z;
            }
        }
        // carry += da_hh W_hh   ([R, 3H] x [3H, H])
        matmul_on(
            self.dh_carry,
            self.da_hh,
            Trans::No,
            w_hh,
            Trans::No,
            rows,
            h,
            3 * h,
            true,
            1,
        );
    }
}

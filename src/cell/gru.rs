//! GRU with gate rows stacked `r, z, n` and the reset applied after the matmul, as `torch.nn.GRU`:
//! ```text
//! r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)     z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
//! n = tanh(W_in x + b_in + r * (W_hn h + b_hn))  h_t = (1 - z) * n + z * h_{t-1}
//! ```

use super::{
    for_each_row_block, input_projection, step_rows, Dims, LayerCache, LayerParams, Recurrent,
    StepGrads, StepRows,
};
use crate::tensor::{add_row_bias, sigmoid, Float};

pub(super) fn forward<T: Float>(
    cache: &mut LayerCache<T>,
    x: &[T],
    p: LayerParams<T>,
    w_hh: Recurrent<T>,
    dims: Dims,
) {
    let (b, h) = (dims.batch, dims.hidden);
    input_projection(&mut cache.gates, x, p, false, dims);
    let gates = StepRows::new(&mut cache.gates, b, 3 * h);
    let gh = StepRows::new(&mut cache.gh, b, 3 * h);
    let hn = StepRows::new(&mut cache.hn, b, h);
    let hs = StepRows::new(&mut cache.h, b, h);
    for_each_row_block(b, |rows| {
        for t in 0..dims.steps {
            // SAFETY: each thread has its own `rows`; steps t and t + 1 are disjoint.
            unsafe {
                forward_rows(
                    gates.at(t, &rows),
                    gh.at(0, &rows),
                    hn.at(t, &rows),
                    hs.at(t, &rows),
                    hs.at(t + 1, &rows),
                    p,
                    w_hh,
                    h,
                )
            }
        }
    });
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
    w_hh.matmul(gh_rows, h_prev, rows, false);
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
    w_hh: Recurrent<T>,
    dims: Dims,
    record: Option<StepGrads<T>>,
) {
    let (b, h) = (dims.batch, dims.hidden);
    let gates = StepRows::new(&mut cache.gates, b, 3 * h);
    let da_hh = StepRows::new(&mut cache.da_hh, b, 3 * h);
    let dh_carry = StepRows::new(&mut cache.dh_carry, b, h);
    let rec_dh = record.map(|r| StepRows::new(r.dh, b, h));
    let (hn, hs) = (&cache.hn[..], &cache.h[..]);
    for_each_row_block(b, |rows| {
        for t in (0..dims.steps).rev() {
            // SAFETY: each thread has its own `rows` and takes each slice once per step.
            unsafe {
                BackwardRows {
                    gates: gates.at(t, &rows),
                    da_hh: da_hh.at(t, &rows),
                    hn: step_rows(hn, t, &rows, b, h),
                    h_prev: step_rows(hs, t, &rows, b, h),
                    up: step_rows(dh_out, t, &rows, b, h),
                    dh_carry: dh_carry.at(0, &rows),
                    rec_dh: rec_dh.as_ref().map(|r| r.at(t, &rows)),
                }
                .run(w_hh, h)
            }
        }
    });
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

impl<T: Float> BackwardRows<'_, T> {
    fn run(mut self, w_hh: Recurrent<T>, h: usize) {
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
        w_hh.matmul(self.dh_carry, self.da_hh, rows, true);
    }
}

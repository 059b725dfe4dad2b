//! LSTM with gate rows stacked `i, f, g, o`, exactly as `torch.nn.LSTM`:
//! ```text
//! [i f g o] = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh;   i, f, o = sigmoid, g = tanh
//! c_t = f * c_{t-1} + i * g;   h_t = o * tanh(c_t)
//! ```

use super::{
    for_each_row_block, input_projection, step_rows, Dims, LayerCache, LayerParams, Recurrent,
    StepGrads, StepRows,
};
use crate::tensor::{sigmoid, Float};

pub(super) fn forward<T: Float>(
    cache: &mut LayerCache<T>,
    x: &[T],
    p: LayerParams<T>,
    w_hh: Recurrent<T>,
    dims: Dims,
) {
    let (b, h) = (dims.batch, dims.hidden);
    input_projection(&mut cache.gates, x, p, true, dims);
    let gates = StepRows::new(&mut cache.gates, b, 4 * h);
    let hs = StepRows::new(&mut cache.h, b, h);
    let cs = StepRows::new(&mut cache.c, b, h);
    for_each_row_block(b, |rows| {
        for t in 0..dims.steps {
            // SAFETY: each thread has its own `rows`; steps t and t + 1 are disjoint.
            unsafe {
                forward_rows(
                    gates.at(t, &rows),
                    hs.at(t, &rows),
                    cs.at(t, &rows),
                    hs.at(t + 1, &rows),
                    cs.at(t + 1, &rows),
                    w_hh,
                    h,
                )
            }
        }
    });
}

/// One step for a block of batch rows: `gates += h_prev W_hh^T`, then the gate nonlinearities
/// and the cell update, fused in one pass. `gates [R, 4H]`, the others `[R, H]`.
fn forward_rows<T: Float>(
    gates: &mut [T],
    h_prev: &[T],
    c_prev: &[T],
    h_next: &mut [T],
    c_next: &mut [T],
    w_hh: Recurrent<T>,
    h: usize,
) {
    let rows = h_prev.len() / h;
    w_hh.matmul(gates, h_prev, rows, true);
    for r in 0..rows {
        let g = &mut gates[r * 4 * h..(r + 1) * 4 * h];
        for j in 0..h {
            let k = r * h + j;
            let i = sigmoid(g[j]);
            let f = sigmoid(g[h + j]);
            let gv = g[2 * h + j].tanh();
            let o = sigmoid(g[3 * h + j]);
            g[j] = i;
            g[h + j] = f;
            g[2 * h + j] = gv;
            g[3 * h + j] = o;
            let c = f * c_prev[k] + i * gv;
            c_next[k] = c;
            h_next[k] = o * c.tanh();
        }
    }
}

/// Backward through time; writes the pre-activation gradients of the four gates over `gates`:
/// ```text
/// dh = dh_out[t] + W_hh^T da_{t+1}      dc = dc_{t+1 carry} + dh * o * (1 - tanh(c_t)^2)
/// di = dc * g   df = dc * c_{t-1}   dg = dc * i   do = dh * tanh(c_t)   dc_{t-1} = dc * f
/// da = [di i(1-i), df f(1-f), dg (1-g^2), do o(1-o)]
/// ```
pub(super) fn backward_steps<T: Float>(
    cache: &mut LayerCache<T>,
    dh_out: &[T],
    w_hh: Recurrent<T>,
    dims: Dims,
    record: Option<StepGrads<T>>,
) {
    let (b, h) = (dims.batch, dims.hidden);
    let gates = StepRows::new(&mut cache.gates, b, 4 * h);
    let dh_carry = StepRows::new(&mut cache.dh_carry, b, h);
    let dc_carry = StepRows::new(&mut cache.dc_carry, b, h);
    let (rec_dh, rec_dc) = match record {
        Some(r) => (
            Some(StepRows::new(r.dh, b, h)),
            r.dc.map(|d| StepRows::new(d, b, h)),
        ),
        None => (None, None),
    };
    let c = &cache.c[..];
    for_each_row_block(b, |rows| {
        for t in (0..dims.steps).rev() {
            // SAFETY: each thread has its own `rows` and takes each slice once per step.
            unsafe {
                BackwardRows {
                    gates: gates.at(t, &rows),
                    c_prev: step_rows(c, t, &rows, b, h),
                    c_t: step_rows(c, t + 1, &rows, b, h),
                    up: step_rows(dh_out, t, &rows, b, h),
                    dh_carry: dh_carry.at(0, &rows),
                    dc_carry: dc_carry.at(0, &rows),
                    rec_dh: rec_dh.as_ref().map(|r| r.at(t, &rows)),
                    rec_dc: rec_dc.as_ref().map(|r| r.at(t, &rows)),
                }
                .run(w_hh, h)
            }
        }
    });
}

/// One backward step for a block of batch rows (`[R, 4H]` gate blocks, `[R, H]` the rest).
/// `gates` holds the activated gates on entry and the pre-activation gradients on exit.
struct BackwardRows<'a, T> {
    gates: &'a mut [T],
    c_prev: &'a [T],
    c_t: &'a [T],
    up: &'a [T],
    dh_carry: &'a mut [T],
    dc_carry: &'a mut [T],
    rec_dh: Option<&'a mut [T]>,
    rec_dc: Option<&'a mut [T]>,
}

impl<T: Float> BackwardRows<'_, T> {
    fn run(mut self, w_hh: Recurrent<T>, h: usize) {
        let rows = self.up.len() / h;
        for r in 0..rows {
            let d = &mut self.gates[r * 4 * h..(r + 1) * 4 * h];
            for j in 0..h {
                let k = r * h + j;
                // Read this unit's four gates before overwriting them with their gradients.
                let (i, f, gv, o) = (d[j], d[h + j], d[2 * h + j], d[3 * h + j]);
                let tc = self.c_t[k].tanh();
                let dh = self.dh_carry[k] + self.up[k];
                let dc = self.dc_carry[k] + dh * o * (T::ONE - tc * tc);
                if let Some(rec) = self.rec_dh.as_mut() {
                    rec[k] = dh;
                }
                if let Some(rec) = self.rec_dc.as_mut() {
                    rec[k] = dc;
                }
                d[j] = dc * gv * i * (T::ONE - i);
                d[h + j] = dc * self.c_prev[k] * f * (T::ONE - f);
                d[2 * h + j] = dc * i * (T::ONE - gv * gv);
                d[3 * h + j] = dh * tc * o * (T::ONE - o);
                self.dc_carry[k] = dc * f;
            }
        }
        // dh_{t-1} (from step t) = da_t W_hh   ([R, 4H] x [4H, H])
        w_hh.matmul(self.dh_carry, self.gates, rows, false);
    }
}

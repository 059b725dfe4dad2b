//! LSTM with gate rows stacked `i, f, g, o`, exactly as `torch.nn.LSTM`:
//! ```text
//! [i f g o] = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh;   i, f, o = sigmoid, g = tanh
//! c_t = f * c_{t-1} + i * g;   h_t = o * tanh(c_t)
//! ```

use super::{input_projection, Dims, LayerCache, LayerParams, Recurrent, StepGrads};
use crate::tensor::{matmul_on, sigmoid, Float, Trans};

pub(super) fn forward<T: Float>(
    cache: &mut LayerCache<T>,
    x: &[T],
    p: LayerParams<T>,
    w_hh: Recurrent<T>,
    dims: Dims,
) {
    let (b, h) = (dims.batch, dims.hidden);
    let bh = b * h;
    let bg = 4 * bh;
    input_projection(&mut cache.gates, x, p, true, dims);
    let split = super::row_split(b);
    for t in 0..dims.steps {
        let gates = &mut cache.gates[t * bg..(t + 1) * bg];
        let (h_prev, h_next) = cache.h[t * bh..(t + 2) * bh].split_at_mut(bh);
        let (c_prev, c_next) = cache.c[t * bh..(t + 2) * bh].split_at_mut(bh);
        match split {
            // Batch rows are independent through time: each core takes half of them.
            Some(r) => {
                let (g0, g1) = gates.split_at_mut(r * 4 * h);
                let (hp0, hp1) = h_prev.split_at(r * h);
                let (cp0, cp1) = c_prev.split_at(r * h);
                let (hn0, hn1) = h_next.split_at_mut(r * h);
                let (cn0, cn1) = c_next.split_at_mut(r * h);
                rayon::join(
                    || forward_rows(g0, hp0, cp0, hn0, cn0, w_hh, h),
                    || forward_rows(g1, hp1, cp1, hn1, cn1, w_hh, h),
                );
            }
            None => forward_rows(gates, h_prev, c_prev, h_next, c_next, w_hh, h),
        }
    }
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
    matmul_on(
        gates,
        h_prev,
        Trans::No,
        w_hh.w,
        w_hh.trans,
        rows,
        4 * h,
        h,
        true,
        1,
    );
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

/// Backward through time; fills `cache.da` with the pre-activation gradients of the four gates:
/// ```text
/// dh = dh_out[t] + W_hh^T da_{t+1}      dc = dc_{t+1 carry} + dh * o * (1 - tanh(c_t)^2)
/// di = dc * g   df = dc * c_{t-1}   dg = dc * i   do = dh * tanh(c_t)   dc_{t-1} = dc * f
/// da = [di i(1-i), df f(1-f), dg (1-g^2), do o(1-o)]
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
    let bg = 4 * bh;
    let split = super::row_split(b);
    for t in (0..dims.steps).rev() {
        let step = t * bh..(t + 1) * bh;
        let (rec_dh, rec_dc) = match record.as_mut() {
            Some(r) => (
                Some(&mut r.dh[step.clone()]),
                r.dc.as_mut().map(|d| &mut d[step.clone()]),
            ),
            None => (None, None),
        };
        let rows = BackwardRows {
            gates: &mut cache.gates[t * bg..(t + 1) * bg],
            c_prev: &cache.c[t * bh..(t + 1) * bh],
            c_t: &cache.c[(t + 1) * bh..(t + 2) * bh],
            up: &dh_out[step.clone()],
            dh_carry: &mut cache.dh_carry,
            dc_carry: &mut cache.dc_carry,
            rec_dh,
            rec_dc,
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

impl<'a, T: Float> BackwardRows<'a, T> {
    /// The first `r` rows and the rest.
    fn split(self, r: usize, h: usize) -> (Self, Self) {
        let (g0, g1) = self.gates.split_at_mut(r * 4 * h);
        let (cp0, cp1) = self.c_prev.split_at(r * h);
        let (ct0, ct1) = self.c_t.split_at(r * h);
        let (u0, u1) = self.up.split_at(r * h);
        let (dh0, dh1) = self.dh_carry.split_at_mut(r * h);
        let (dc0, dc1) = self.dc_carry.split_at_mut(r * h);
        let (rh0, rh1) = super::split_rows(self.rec_dh, r * h);
        let (rc0, rc1) = super::split_rows(self.rec_dc, r * h);
        (
            BackwardRows {
                gates: g0,
                c_prev: cp0,
                c_t: ct0,
                up: u0,
                dh_carry: dh0,
                dc_carry: dc0,
                rec_dh: rh0,
                rec_dc: rc0,
            },
            BackwardRows {
                gates: g1,
                c_prev: cp1,
                c_t: ct1,
                up: u1,
                dh_carry: dh1,
                dc_carry: dc1,
                rec_dh: rh1,
                rec_dc: rc1,
            },
        )
    }

    fn run(mut self, w_hh: &[T], h: usize) {
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
        matmul_on(
            self.dh_carry,
            self.gates,
            Trans::No,
            w_hh,
            Trans::No,
            rows,
            h,
            4 * h,
            false,
            1,
        );
    }
}

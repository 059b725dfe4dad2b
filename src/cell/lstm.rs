//! LSTM with gate rows stacked `i, f, g, o`, exactly as `torch.nn.LSTM`:
//! ```text
//! [i f g o] = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh;   i, f, o = sigmoid, g = tanh
//! c_t = f * c_{t-1} + i * g;   h_t = o * tanh(c_t)
//! ```

use super::{input_projection, Dims, LayerCache, LayerParams, Recurrent, StepGrads};
use crate::tensor::{matmul, sigmoid, Float, Trans};

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
    for t in 0..dims.steps {
        let gates = &mut cache.gates[t * bg..(t + 1) * bg];
        let (h_prev, h_next) = cache.h[t * bh..(t + 2) * bh].split_at_mut(bh);
        let (c_prev, c_next) = cache.c[t * bh..(t + 2) * bh].split_at_mut(bh);
        // gates += h_{t-1} W_hh^T   ([B, H] x [H, 4H])
        matmul(
            gates,
            h_prev,
            Trans::No,
            w_hh.w,
            w_hh.trans,
            b,
            4 * h,
            h,
            true,
        );
        for r in 0..b {
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
    for t in (0..dims.steps).rev() {
        let gates = &cache.gates[t * bg..(t + 1) * bg];
        let da_t = &mut cache.da[t * bg..(t + 1) * bg];
        let c_prev = &cache.c[t * bh..(t + 1) * bh];
        let c_t = &cache.c[(t + 1) * bh..(t + 2) * bh];
        let up = &dh_out[t * bh..(t + 1) * bh];
        for r in 0..b {
            let g = &gates[r * 4 * h..(r + 1) * 4 * h];
            let d = &mut da_t[r * 4 * h..(r + 1) * 4 * h];
            for j in 0..h {
                let k = r * h + j;
                let (i, f, gv, o) = (g[j], g[h + j], g[2 * h + j], g[3 * h + j]);
                let tc = c_t[k].tanh();
                let dh = cache.dh_carry[k] + up[k];
                let dc = cache.dc_carry[k] + dh * o * (T::ONE - tc * tc);
                if let Some(rec) = record.as_mut() {
                    rec.dh[t * bh + k] = dh;
                    if let Some(dcs) = rec.dc.as_mut() {
                        dcs[t * bh + k] = dc;
                    }
                }
                d[j] = dc * gv * i * (T::ONE - i);
                d[h + j] = dc * c_prev[k] * f * (T::ONE - f);
                d[2 * h + j] = dc * i * (T::ONE - gv * gv);
                d[3 * h + j] = dh * tc * o * (T::ONE - o);
                cache.dc_carry[k] = dc * f;
            }
        }
        // dh_{t-1} (from step t) = da_t W_hh   ([B, 4H] x [4H, H])
        matmul(
            &mut cache.dh_carry,
            da_t,
            Trans::No,
            p.w_hh,
            Trans::No,
            b,
            h,
            4 * h,
            false,
        );
    }
}

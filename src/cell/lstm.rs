//! LSTM with gate rows stacked `i, f, g, o`, exactly as `torch.nn.LSTM`:
//! ```text
//! [i f g o] = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh;   i, f, o = sigmoid, g = tanh
//! c_t = f * c_{t-1} + i * g;   h_t = o * tanh(c_t)
//! ```

use super::{for_each_row_block, step_rows, Dims, LayerCache, Recurrent, StepGrads, StepRows};
use crate::tensor::{multiversion, sigmoid, Float};
use std::ops::Range;

pub(super) fn forward<T: Float>(cache: &mut LayerCache<T>, w_hh: Recurrent<T>, dims: Dims) {
    let (b, h) = (dims.batch, dims.hidden);
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
    forward_gates(gates, c_prev, h_next, c_next, h);
}

multiversion! {
    /// The gate nonlinearities and the cell update of one step, in place over `gates [R, 4H]`.
    fn forward_gates<T: Float>(gates: &mut [T], c_prev: &[T], h_next: &mut [T], c_next: &mut [T], h: usize) {
        for (r, g) in gates.chunks_exact_mut(4 * h).enumerate() {
            let span = r * h..(r + 1) * h;
            // Slices of exactly `h` values, so that the loop runs without bounds checks.
            let (c_prev, c_next, h_next) = (
                &c_prev[span.clone()][..h],
                &mut c_next[span.clone()][..h],
                &mut h_next[span][..h],
            );
            let (gi, rest) = g.split_at_mut(h);
            let (gf, rest) = rest.split_at_mut(h);
            let (gg, go) = rest.split_at_mut(h);
            let (gi, gf, gg, go) = (&mut gi[..h], &mut gf[..h], &mut gg[..h], &mut go[..h]);
            for j in 0..h {
                let i = sigmoid(gi[j]);
                let f = sigmoid(gf[j]);
                let gv = gg[j].tanh();
                let o = sigmoid(go[j]);
                gi[j] = i;
                gf[j] = f;
                gg[j] = gv;
                go[j] = o;
                let c = f * c_prev[j] + i * gv;
                c_next[j] = c;
                h_next[j] = o * c.tanh();
            }
        }
    }
}

/// Backward through the steps `steps` (`dh_out` holds their rows only, the carries in `cache`
/// link consecutive calls); writes the pre-activation gradients of the four gates over `gates`:
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
    steps: Range<usize>,
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
        // SAFETY: each thread has its own `rows` and takes each slice once per step.
        let (dh, dc) = unsafe { (dh_carry.at(0, &rows), dc_carry.at(0, &rows)) };
        for t in steps.clone().rev() {
            let da = unsafe { gates.at(t, &rows) };
            backward_gates(
                da,
                step_rows(c, t, &rows, b, h),
                step_rows(c, t + 1, &rows, b, h),
                step_rows(dh_out, t - steps.start, &rows, b, h),
                dh,
                dc,
                rec_dh.as_ref().map(|r| unsafe { r.at(t, &rows) }),
                rec_dc.as_ref().map(|r| unsafe { r.at(t, &rows) }),
                h,
            );
            // dh_{t-1} (from step t) = da_t W_hh   ([R, 4H] x [4H, H])
            w_hh.matmul(dh, da, rows.len(), false);
        }
    });
}

multiversion! {
    /// The element-wise part of one backward step (see [`backward_steps`]) for a block of batch
    /// rows: `gates [R, 4H]` holds the activated gates on entry and their pre-activation
    /// gradients on exit; the others are `[R, H]`.
    #[allow(clippy::too_many_arguments)]
    fn backward_gates<T: Float>(
        gates: &mut [T],
        c_prev: &[T],
        c_t: &[T],
        up: &[T],
        dh_carry: &mut [T],
        dc_carry: &mut [T],
        rec_dh: Option<&mut [T]>,
        rec_dc: Option<&mut [T]>,
        h: usize,
    ) {
        let mut rec = Record { dh: rec_dh, dc: rec_dc };
        for (r, d) in gates.chunks_exact_mut(4 * h).enumerate() {
            let span = r * h..(r + 1) * h;
            let row = BackwardRow {
                d,
                c_prev: &c_prev[span.clone()],
                c_t: &c_t[span.clone()],
                up: &up[span.clone()],
                dh_carry: &mut dh_carry[span.clone()],
                dc_carry: &mut dc_carry[span.clone()],
            };
            // One loop per combination of records, so that each is a straight vector loop.
            match (rec.dh.as_deref_mut(), rec.dc.as_deref_mut()) {
                (None, None) => row.run::<false, false>(&mut [], &mut []),
                (Some(a), None) => row.run::<true, false>(&mut a[span], &mut []),
                (None, Some(b)) => row.run::<false, true>(&mut [], &mut b[span]),
                (Some(a), Some(b)) => row.run::<true, true>(&mut a[span.clone()], &mut b[span]),
            }
        }
    }
}

/// The optional per-step records `dL/dh_t`, `dL/dc_t` of one step's rows.
struct Record<'a, T> {
    dh: Option<&'a mut [T]>,
    dc: Option<&'a mut [T]>,
}

/// One batch row of a backward step: `d [4H]` gates in, gate gradients out; the rest `[H]`.
struct BackwardRow<'a, T> {
    d: &'a mut [T],
    c_prev: &'a [T],
    c_t: &'a [T],
    up: &'a [T],
    dh_carry: &'a mut [T],
    dc_carry: &'a mut [T],
}

impl<T: Float> BackwardRow<'_, T> {
    #[inline(always)]
    fn run<const DH: bool, const DC: bool>(self, rec_dh: &mut [T], rec_dc: &mut [T]) {
        let h = self.up.len();
        let (di, rest) = self.d.split_at_mut(h);
        let (df, rest) = rest.split_at_mut(h);
        let (dg, d_o) = rest.split_at_mut(h);
        // Slices of exactly `h` values, so that the loop runs without bounds checks.
        let (c_prev, c_t, dh_carry, dc_carry) = (
            &self.c_prev[..h],
            &self.c_t[..h],
            &mut self.dh_carry[..h],
            &mut self.dc_carry[..h],
        );
        let (di, df, dg, d_o) = (&mut di[..h], &mut df[..h], &mut dg[..h], &mut d_o[..h]);
        let up = &self.up[..h];
        let rec_dh = if DH { &mut rec_dh[..h] } else { rec_dh };
        let rec_dc = if DC { &mut rec_dc[..h] } else { rec_dc };
        for j in 0..h {
            // Read this unit's four gates before overwriting them with their gradients.
            let (i, f, gv, o) = (di[j], df[j], dg[j], d_o[j]);
            let tc = c_t[j].tanh();
            let dh = dh_carry[j] + up[j];
            let dc = dc_carry[j] + dh * o * (T::ONE - tc * tc);
            if DH {
                rec_dh[j] = dh;
            }
            if DC {
                rec_dc[j] = dc;
            }
            di[j] = dc * gv * i * (T::ONE - i);
            df[j] = dc * c_prev[j] * f * (T::ONE - f);
            dg[j] = dc * i * (T::ONE - gv * gv);
            d_o[j] = dh * tc * o * (T::ONE - o);
            dc_carry[j] = dc * f;
        }
    }
}

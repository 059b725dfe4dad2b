//! LSTM with gate rows stacked `i, f, g, o`, exactly as `torch.nn.LSTM`:
//! ```text
//! [i f g o] = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh;   i, f, o = sigmoid, g = tanh
//! c_t = f * c_{t-1} + i * g;   h_t = o * tanh(c_t)
//! ```
//! The state is `(h, c)`. Backward, with `dh`, `dc` the gradients reaching `h_t`, `c_t`:
//! ```text
//! dc' = dc + dh * o * (1 - tanh(c_t)^2)
//! da  = [dc' g i(1-i),  dc' c_{t-1} f(1-f),  dc' i (1-g^2),  dh tanh(c_t) o(1-o)]
//! dh_{t-1} = da W_hh        dc_{t-1} = dc' * f
//! ```
//! so the one-step Jacobian of the state is
//! ```text
//! dc_t/dh_{t-1} = diag(c_{t-1} f(1-f)) W_f + diag(g i(1-i)) W_i + diag(i (1-g^2)) W_g
//! dc_t/dc_{t-1} = diag(f)
//! dh_t/dh_{t-1} = diag(tanh(c_t) o(1-o)) W_o + diag(o (1 - tanh^2 c_t)) dc_t/dh_{t-1}
//! dh_t/dc_{t-1} = diag(o (1 - tanh^2 c_t) f)
//! ```
//!
//! With a projection (`torch.nn.LSTM(proj_size = P)`, Sak et al. 2014) the state is `(h, c)`
//! with `h` of size `P < H`: `W_hh` is `[4H, P]` and
//! ```text
//! m_t = o * tanh(c_t)  [H];   h_t = W_hr m_t  [P]   (W_hr [P, H])
//! backward:  dh = (gradient reaching h_t);  dW_hr += dh m_t^T;  dm = dh W_hr
//!            then as above with dm in place of dh (dc' = dc + dm * o * (1 - tanh(c_t)^2), ...)
//! dh_t/dh_{t-1} = W_hr (diag(tanh(c_t) o(1-o)) W_o + diag(o (1 - tanh^2 c_t)) dc_t/dh_{t-1})
//! dh_t/dc_{t-1} = W_hr diag(o (1 - tanh^2 c_t) f)
//! ```
//! (the `dc_t/d..` rows are unchanged, with `W_i, W_f, W_g` now `[H, P]`).

use super::{
    dense_recurrent_grads, BackwardStep, Cell, ChunkValues, ForwardStep, Keeps, LayerGrads,
    LayerParams, Recurrent, StepMath,
};
use crate::tensor::{matmul, matmul_on, multiversion, sigmoid, Float, Trans};

#[derive(Clone, Copy)]
pub struct Lstm;

impl StepMath for Lstm {
    const GATES: usize = 4;
    const GATE_NAMES: &'static [&'static str] = &["i", "f", "g", "o"];
    const KEEPS: Keeps = Keeps {
        cell_state: true,
        gates: true,
        aux: false,
        scratch: false,
        input_has_b_hh: true,
    };

    fn new(_: Cell) -> Self {
        Lstm
    }

    /// `gates += h_{t-1} W_hh^T`, then the gate nonlinearities and the cell update, fused;
    /// with a projection `m_t` goes into `aux` and `h_t = m_t W_hr^T`.
    fn forward_step<T: Float>(
        self,
        s: ForwardStep<'_, T>,
        w_hh: Recurrent<'_, T>,
        p: &LayerParams<'_, T>,
    ) {
        let h = s.hidden;
        let rows = s.gates.len() / (4 * h);
        // [R, P] x [P, 4H]
        w_hh.matmul(s.gates, s.h_prev, rows, true);
        if p.w_hr.is_empty() {
            forward_gates(s.gates, s.c_prev, s.h, s.c, h);
        } else {
            forward_gates(s.gates, s.c_prev, &mut *s.aux, s.c, h);
            // [R, H] x [H, P]
            let proj = p.w_hr.len() / h;
            matmul_on(
                s.h,
                s.aux,
                Trans::No,
                p.w_hr,
                Trans::Yes,
                rows,
                proj,
                h,
                false,
                1,
            );
        }
    }

    /// The gate gradients over the gates, then `dh_{t-1} = da W_hh` (`[R, 4H] x [4H, P]`).
    /// With a projection, first `dh = up + dh_carry` (left in `up`) and `dm = dh W_hr`.
    fn backward_step<T: Float>(self, s: BackwardStep<'_, T>, w_hh: Recurrent<'_, T>) {
        let h = s.hidden;
        let rows = s.gates.len() / (4 * h);
        if s.w_hr.is_empty() {
            backward_gates(
                &mut *s.gates,
                s.c_prev,
                s.c,
                &*s.up,
                Some(&*s.dh),
                &mut *s.dc,
                s.record_dh,
                s.record_dc,
                h,
            );
        } else {
            crate::tensor::add_assign(&mut *s.up, &*s.dh);
            if let Some(r) = s.record_dh {
                r.copy_from_slice(s.up);
            }
            // dm = dh W_hr   ([R, P] x [P, H])
            let proj = s.w_hr.len() / h;
            let dm = &mut s.scratch[..rows * h];
            matmul_on(
                dm,
                s.up,
                Trans::No,
                s.w_hr,
                Trans::No,
                rows,
                h,
                proj,
                false,
                1,
            );
            backward_gates(
                &mut *s.gates,
                s.c_prev,
                s.c,
                dm,
                None,
                &mut *s.dc,
                None,
                s.record_dc,
                h,
            );
        }
        w_hh.matmul(s.dh, s.gates, rows, false);
    }

    /// [`dense_recurrent_grads`], and with a projection `dW_hr += dH^T M` (`dH [rows, P]`
    /// the total `dL/dh_t` backward left in `up`, `M [rows, H]` the kept `m_t`).
    fn recurrent_grads<T: Float>(self, g: &mut LayerGrads<'_, T>, v: ChunkValues<'_, T>) {
        dense_recurrent_grads(g, &v);
        let (h, rows) = (v.hidden, v.da.len() / (4 * v.hidden));
        let hs = v.h_prev.len() / rows.max(1);
        if !g.w_hr.is_empty() {
            matmul(
                &mut *g.w_hr,
                v.up,
                Trans::Yes,
                v.aux,
                Trans::No,
                hs,
                h,
                rows,
                true,
            );
        }
    }
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

multiversion! {
    /// The element-wise part of one backward step (see the module docs) for a block of batch
    /// rows: `gates [R, 4H]` holds the activated gates on entry and their pre-activation
    /// gradients on exit; the others are `[R, H]`. The gradient reaching `m_t = o * tanh(c_t)`
    /// is `up + dh_carry` (`dh_carry` is `None` with a projection: `up` is then `dm`).
    #[allow(clippy::too_many_arguments)]
    fn backward_gates<T: Float>(
        gates: &mut [T],
        c_prev: &[T],
        c_t: &[T],
        up: &[T],
        dh_carry: Option<&[T]>,
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
                dh_carry: dh_carry.map_or(&[][..], |c| &c[span.clone()]),
                dc_carry: &mut dc_carry[span.clone()],
            };
            // One loop per combination of records and carry, so that each is a straight
            // vector loop.
            match (dh_carry.is_some(), rec.dh.as_deref_mut(), rec.dc.as_deref_mut()) {
                (false, _, None) => row.run::<false, false, false>(&mut [], &mut []),
                (false, _, Some(b)) => row.run::<false, false, true>(&mut [], &mut b[span]),
                (true, None, None) => row.run::<true, false, false>(&mut [], &mut []),
                (true, Some(a), None) => row.run::<true, true, false>(&mut a[span], &mut []),
                (true, None, Some(b)) => row.run::<true, false, true>(&mut [], &mut b[span]),
                (true, Some(a), Some(b)) => {
                    row.run::<true, true, true>(&mut a[span.clone()], &mut b[span])
                }
            }
        }
    }
}

/// The optional per-step records `dL/dh_t`, `dL/dc_t` of one step's rows.
struct Record<'a, T> {
    dh: Option<&'a mut [T]>,
    dc: Option<&'a mut [T]>,
}

/// One batch row of a backward step: `d [4H]` gates in, gate gradients out; the rest `[H]`
/// (`dh_carry` empty when the row has no carry of its own, see [`backward_gates`]).
struct BackwardRow<'a, T> {
    d: &'a mut [T],
    c_prev: &'a [T],
    c_t: &'a [T],
    up: &'a [T],
    dh_carry: &'a [T],
    dc_carry: &'a mut [T],
}

impl<T: Float> BackwardRow<'_, T> {
    #[inline(always)]
    fn run<const CARRY: bool, const DH: bool, const DC: bool>(
        self,
        rec_dh: &mut [T],
        rec_dc: &mut [T],
    ) {
        let h = self.up.len();
        let (di, rest) = self.d.split_at_mut(h);
        let (df, rest) = rest.split_at_mut(h);
        let (dg, d_o) = rest.split_at_mut(h);
        // Slices of exactly `h` values, so that the loop runs without bounds checks.
        let (c_prev, c_t, dc_carry) = (&self.c_prev[..h], &self.c_t[..h], &mut self.dc_carry[..h]);
        let dh_carry = if CARRY {
            &self.dh_carry[..h]
        } else {
            self.dh_carry
        };
        let (di, df, dg, d_o) = (&mut di[..h], &mut df[..h], &mut dg[..h], &mut d_o[..h]);
        let up = &self.up[..h];
        let rec_dh = if DH { &mut rec_dh[..h] } else { rec_dh };
        let rec_dc = if DC { &mut rec_dc[..h] } else { rec_dc };
        for j in 0..h {
            // Read this unit's four gates before overwriting them with their gradients.
            let (i, f, gv, o) = (di[j], df[j], dg[j], d_o[j]);
            let tc = c_t[j].tanh();
            let dh = if CARRY { dh_carry[j] + up[j] } else { up[j] };
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

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

use super::{BackwardStep, Cell, ForwardStep, Keeps, LayerParams, Recurrent, StepMath};
use crate::tensor::{multiversion, sigmoid, Float};

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

    /// `gates += h_{t-1} W_hh^T`, then the gate nonlinearities and the cell update, fused.
    fn forward_step<T: Float>(
        self,
        s: ForwardStep<'_, T>,
        w_hh: Recurrent<'_, T>,
        _p: &LayerParams<'_, T>,
    ) {
        // [R, H] x [H, 4H]
        w_hh.matmul(s.gates, s.h_prev, s.h_prev.len() / s.hidden, true);
        forward_gates(s.gates, s.c_prev, s.h, s.c, s.hidden);
    }

    /// The gate gradients over the gates, then `dh_{t-1} = da W_hh` (`[R, 4H] x [4H, H]`).
    fn backward_step<T: Float>(self, s: BackwardStep<'_, T>, w_hh: Recurrent<'_, T>) {
        let h = s.hidden;
        backward_gates(
            &mut *s.gates,
            s.c_prev,
            s.c,
            &*s.up,
            &mut *s.dh,
            &mut *s.dc,
            s.record_dh,
            s.record_dc,
            h,
        );
        w_hh.matmul(s.dh, s.gates, s.up.len() / h, false);
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

//! GRU with gate rows stacked `r, z, n` and the reset applied after the matmul, as `torch.nn.GRU`:
//! ```text
//! r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)     z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
//! n = tanh(W_in x + b_in + r * (W_hn h + b_hn))  h_t = (1 - z) * n + z * h_{t-1}
//! ```
//! `b_hn` sits inside `r * (..)`, so the input projection leaves out `b_hh` and each step adds
//! it to its recurrent term `hn = W_hn h_{t-1} + b_hn`, which the cell keeps (`aux`).
//! Backward, with `dh` the gradient reaching `h_t`:
//! ```text
//! dan = dh (1 - z)(1 - n^2)   dar = dan hn r(1-r)   daz = dh (h_{t-1} - n) z(1-z)
//! da = [dar, daz, dan]   (input side)      da_hh = [dar, daz, dan r]   (recurrent side)
//! dh_{t-1} = dh z + da_hh W_hh
//! ```
//! so the one-step Jacobian is
//! ```text
//! J = diag(z) + diag((h_{t-1} - n) z(1-z)) W_z + diag((1-z)(1-n^2)) (diag(r) W_n + diag(hn r(1-r)) W_r)
//! ```

use super::{
    BackwardStep, Cell, ChunkValues, ForwardStep, Keeps, LayerGrads, LayerParams, Recurrent,
    StepMath,
};
use crate::tensor::{
    add_assign, add_row_bias, matmul, matmul_strided, multiversion, sigmoid, sum_rows_into, Float,
    Trans,
};

#[derive(Clone, Copy)]
pub struct Gru;

impl StepMath for Gru {
    const GATES: usize = 3;
    const GATE_NAMES: &'static [&'static str] = &["r", "z", "n"];
    const KEEPS: Keeps = Keeps {
        cell_state: false,
        gates: true,
        aux: true,
        scratch: true,
        input_has_b_hh: false,
    };

    fn new(_: Cell) -> Self {
        Gru
    }

    /// `scratch = h_{t-1} W_hh^T + b_hh` (`[R, H] x [H, 3H]`), then the gates and the new state.
    fn forward_step<T: Float>(
        self,
        s: ForwardStep<'_, T>,
        w_hh: Recurrent<'_, T>,
        p: &LayerParams<'_, T>,
    ) {
        w_hh.matmul(s.scratch, s.h_prev, s.h_prev.len() / s.hidden, false);
        add_row_bias(s.scratch, p.b_hh);
        forward_gates(s.gates, s.scratch, s.aux, s.h_prev, s.h, s.hidden);
    }

    /// The input-side gradients over the gates, the recurrent side in the scratch (its n-block
    /// also over `aux`, for the weight gradients), then `dh_{t-1} = dh z + da_hh W_hh`.
    fn backward_step<T: Float>(self, s: BackwardStep<'_, T>, w_hh: Recurrent<'_, T>) {
        let h = s.hidden;
        if let Some(rec) = s.record_dh {
            for ((r, &c), &u) in rec.iter_mut().zip(&*s.dh).zip(&*s.up) {
                *r = c + u;
            }
        }
        backward_gates(
            &mut *s.gates,
            &mut *s.scratch,
            &mut *s.aux,
            s.h_prev,
            &*s.up,
            &mut *s.dh,
            h,
        );
        // [R, 3H] x [3H, H]
        w_hh.matmul(s.dh, s.scratch, s.up.len() / h, true);
    }

    /// `da_hh = [dar, daz | dan * r]`: the first two blocks are those of `da`, the third was
    /// written over `aux`.
    fn recurrent_grads<T: Float>(self, g: &mut LayerGrads<'_, T>, v: ChunkValues<'_, T>) {
        let hidden = v.hidden;
        let gh = 3 * hidden;
        let rows = v.da.len() / gh;
        let (w_rz, w_n) = g.w_hh.split_at_mut(2 * hidden * hidden);
        matmul_strided(
            w_rz,
            v.da,
            gh,
            Trans::Yes,
            v.h_prev,
            Trans::No,
            2 * hidden,
            hidden,
            rows,
            true,
        );
        matmul(
            w_n,
            v.aux,
            Trans::Yes,
            v.h_prev,
            Trans::No,
            hidden,
            hidden,
            rows,
            true,
        );
        let (b_rz, b_n) = g.b_hh.split_at_mut(2 * hidden);
        for row in v.da.chunks_exact(gh) {
            add_assign(b_rz, &row[..2 * hidden]);
        }
        sum_rows_into(b_n, v.aux);
    }
}

multiversion! {
    /// The gates and the new state of one step, in place over `gates [R, 3H]`, one short loop
    /// per quantity (each a straight vector loop; fused, LLVM left the loop scalar).
    fn forward_gates<T: Float>(
        gates: &mut [T],
        gh_rows: &[T],
        hn_t: &mut [T],
        h_prev: &[T],
        h_next: &mut [T],
        h: usize,
    ) {
        for (r, (g, gh)) in gates
            .chunks_exact_mut(3 * h)
            .zip(gh_rows.chunks_exact(3 * h))
            .enumerate()
        {
            let span = r * h..(r + 1) * h;
            // Slices of exactly `h` values, so that the loop runs without bounds checks.
            let (hn, h_prev, h_next) = (
                &mut hn_t[span.clone()][..h],
                &h_prev[span.clone()][..h],
                &mut h_next[span][..h],
            );
            let (gr, rest) = g.split_at_mut(h);
            let (gz, gn) = rest.split_at_mut(h);
            let (hr, rest) = gh.split_at(h);
            let (hz, hnn) = rest.split_at(h);
            let (gr, gz, gn) = (&mut gr[..h], &mut gz[..h], &mut gn[..h]);
            let (hr, hz, hnn) = (&hr[..h], &hz[..h], &hnn[..h]);
            hn.copy_from_slice(hnn);
            for (g, &a) in gr.iter_mut().zip(hr) {
                *g = sigmoid(*g + a);
            }
            for (g, &a) in gz.iter_mut().zip(hz) {
                *g = sigmoid(*g + a);
            }
            for ((n, &rv), &a) in gn.iter_mut().zip(&*gr).zip(hnn) {
                *n += rv * a;
            }
            for n in gn.iter_mut() {
                *n = n.tanh();
            }
            for (((next, &prev), &z), &n) in h_next.iter_mut().zip(h_prev).zip(&*gz).zip(&*gn) {
                *next = (T::ONE - z) * n + z * prev;
            }
        }
    }
}

multiversion! {
    /// The element-wise part of one backward step (see the module docs) for a block of batch
    /// rows: `gates [R, 3H]` holds the activated gates on entry and the input-side gradients
    /// `da` on exit; `hn [R, H]` holds `W_hn h + b_hn` on entry and `dan * r` on exit; `da_hh`
    /// `[R, 3H]` receives this step's recurrent-side gradient.
    fn backward_gates<T: Float>(
        gates: &mut [T],
        da_hh: &mut [T],
        hn: &mut [T],
        h_prev: &[T],
        up: &[T],
        dh_carry: &mut [T],
        h: usize,
    ) {
        for (r, (d, dhh)) in gates
            .chunks_exact_mut(3 * h)
            .zip(da_hh.chunks_exact_mut(3 * h))
            .enumerate()
        {
            let span = r * h..(r + 1) * h;
            // Slices of exactly `h` values, so that the loop runs without bounds checks.
            let (hn, h_prev, up, carry) = (
                &mut hn[span.clone()][..h],
                &h_prev[span.clone()][..h],
                &up[span.clone()][..h],
                &mut dh_carry[span][..h],
            );
            let (dr, rest) = d.split_at_mut(h);
            let (dz, dn) = rest.split_at_mut(h);
            let (hr, rest) = dhh.split_at_mut(h);
            let (hz, hnn) = rest.split_at_mut(h);
            let (dr, dz, dn) = (&mut dr[..h], &mut dz[..h], &mut dn[..h]);
            let (hr, hz, hnn) = (&mut hr[..h], &mut hz[..h], &mut hnn[..h]);
            for j in 0..h {
                // Read this unit's gates before overwriting them with their gradients.
                let (rv, z, n) = (dr[j], dz[j], dn[j]);
                let dh = carry[j] + up[j];
                let dan = dh * (T::ONE - z) * (T::ONE - n * n);
                let dar = dan * hn[j] * rv * (T::ONE - rv);
                let daz = dh * (h_prev[j] - n) * z * (T::ONE - z);
                dr[j] = dar;
                dz[j] = daz;
                dn[j] = dan;
                hr[j] = dar;
                hz[j] = daz;
                hnn[j] = dan * rv;
                hn[j] = dan * rv;
                carry[j] = dh * z;
            }
        }
    }
}

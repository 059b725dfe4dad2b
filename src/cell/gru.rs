//! GRU with gate rows stacked `r, z, n` and the reset applied after the matmul, as `torch.nn.GRU`:
//! ```text
//! r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)     z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
//! n = tanh(W_in x + b_in + r * (W_hn h + b_hn))  h_t = (1 - z) * n + z * h_{t-1}
//! ```

use super::{
    for_each_row_block, step_rows, Dims, LayerCache, LayerParams, Recurrent, StepGrads, StepRows,
};
use crate::tensor::{add_row_bias, multiversion, sigmoid, Float};
use std::ops::Range;

pub(super) fn forward<T: Float>(
    cache: &mut LayerCache<T>,
    p: LayerParams<T>,
    w_hh: Recurrent<T>,
    dims: Dims,
) {
    let (b, h) = (dims.batch, dims.hidden);
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
/// gates and the new state.
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
    forward_gates(gates, gh_rows, hn_t, h_prev, h_next, h);
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

/// Backward through the steps `steps` (`dh_out` holds their rows only, the carry in `cache`
/// links consecutive calls); writes the input-side gradients `da` over `gates` and the n-block of
/// the recurrent side, `dan * r`, over `hn` (each read for the last time at its step):
/// ```text
/// dh = dh_out[t] + carry     dn = dh (1 - z)     dz = dh (h_{t-1} - n)
/// dan = dn (1 - n^2)   dar = dan * hn * r (1 - r)   daz = dz z (1 - z)
/// da = [dar, daz, dan]    da_hh = [dar, daz, dan * r]    carry = dh * z + da_hh W_hh
/// ```
/// `da_hh` of the current step lives in a `[B, 3H]` scratch only; the weight gradients read
/// its blocks from `gates` (r, z) and `hn` (n).
pub(super) fn backward_steps<T: Float>(
    cache: &mut LayerCache<T>,
    dh_out: &[T],
    w_hh: Recurrent<T>,
    dims: Dims,
    steps: Range<usize>,
    record: Option<StepGrads<T>>,
) {
    let (b, h) = (dims.batch, dims.hidden);
    let gates = StepRows::new(&mut cache.gates, b, 3 * h);
    let da_hh = StepRows::new(&mut cache.gh, b, 3 * h);
    let hn = StepRows::new(&mut cache.hn, b, h);
    let dh_carry = StepRows::new(&mut cache.dh_carry, b, h);
    let rec_dh = record.map(|r| StepRows::new(r.dh, b, h));
    let hs = &cache.h[..];
    for_each_row_block(b, |rows| {
        // SAFETY: each thread has its own `rows` and takes each slice once per step.
        let (carry, dahh) = unsafe { (dh_carry.at(0, &rows), da_hh.at(0, &rows)) };
        for t in steps.clone().rev() {
            let up = step_rows(dh_out, t - steps.start, &rows, b, h);
            if let Some(rec) = rec_dh.as_ref() {
                let rec = unsafe { rec.at(t, &rows) };
                for ((r, &c), &u) in rec.iter_mut().zip(&*carry).zip(up) {
                    *r = c + u;
                }
            }
            backward_gates(
                unsafe { gates.at(t, &rows) },
                dahh,
                unsafe { hn.at(t, &rows) },
                step_rows(hs, t, &rows, b, h),
                up,
                carry,
                h,
            );
            // carry += da_hh W_hh   ([R, 3H] x [3H, H])
            w_hh.matmul(carry, dahh, rows.len(), true);
        }
    });
}

multiversion! {
    /// The element-wise part of one backward step (see [`backward_steps`]) for a block of batch
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

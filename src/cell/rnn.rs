//! Vanilla RNN (Elman): `a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh`, `h_t = s(a_t)`.

use super::{input_projection, Activation, Dims, LayerCache, LayerParams, Recurrent, StepGrads};
use crate::tensor::{matmul, Float, Trans};

/// Forward over all steps; `cache.h[0]` already holds `h_0`.
///
/// The pre-activations are built in place in `h[1..]` and activated there, so backward
/// recovers `s'(a_t)` from `h_t` alone.
pub(super) fn forward<T: Float>(
    act: Activation,
    cache: &mut LayerCache<T>,
    x: &[T],
    p: LayerParams<T>,
    w_hh: Recurrent<T>,
    dims: Dims,
) {
    let bh = dims.batch * dims.hidden;
    let (h0, hs) = cache.h.split_at_mut(bh);
    input_projection(hs, x, p, true, dims);
    let mut prev: &[T] = h0;
    for step in hs.chunks_exact_mut(bh) {
        // a_t += h_{t-1} W_hh^T   ([B, H] x [H, H]^T)
        matmul(
            step,
            prev,
            Trans::No,
            w_hh.w,
            w_hh.trans,
            dims.batch,
            dims.hidden,
            dims.hidden,
            true,
        );
        for v in step.iter_mut() {
            *v = act.apply(*v);
        }
        prev = step;
    }
}

/// Walks time backwards, filling `cache.da` with `da_t = dh_t * s'(a_t)` and leaving
/// `dL/dh_0` in `cache.dh_carry`:
/// ```text
/// dh_t = dh_out[t] + W_hh^T da_{t+1}       da_t = dh_t * s'(a_t)
/// ```
pub(super) fn backward_steps<T: Float>(
    act: Activation,
    cache: &mut LayerCache<T>,
    dh_out: &[T],
    p: LayerParams<T>,
    dims: Dims,
    mut record: Option<StepGrads<T>>,
) {
    let bh = dims.batch * dims.hidden;
    for t in (0..dims.steps).rev() {
        let span = t * bh..(t + 1) * bh;
        let h_t = &cache.h[(t + 1) * bh..(t + 2) * bh];
        let da_t = &mut cache.da[span.clone()];
        for (((da, &carry), &up), &h) in da_t
            .iter_mut()
            .zip(&cache.dh_carry)
            .zip(&dh_out[span.clone()])
            .zip(h_t)
        {
            *da = (carry + up) * act.derivative_from_output(h);
        }
        if let Some(rec) = record.as_mut() {
            for ((r, &carry), &up) in rec.dh[span.clone()]
                .iter_mut()
                .zip(&cache.dh_carry)
                .zip(&dh_out[span])
            {
                *r = carry + up;
            }
        }
        // dh_{t-1} (from step t) = da_t W_hh   ([B, H] x [H, H])
        matmul(
            &mut cache.dh_carry,
            da_t,
            Trans::No,
            p.w_hh,
            Trans::No,
            dims.batch,
            dims.hidden,
            dims.hidden,
            false,
        );
    }
}

//! Vanilla RNN (Elman): `a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh`, `h_t = s(a_t)`.

use super::{
    for_each_row_block, step_rows, Activation, Dims, LayerCache, Recurrent, StepGrads, StepRows,
};
use crate::tensor::{multiversion, Float};
use std::ops::Range;

/// Forward over all steps; `cache.h[0]` already holds `h_0` and `h[1..]` the input projections
/// `x_t W_ih^T + b_ih + b_hh`.
///
/// The pre-activations are completed in place in `h[1..]` and activated there, so backward
/// recovers `s'(a_t)` from `h_t` alone.
pub(super) fn forward<T: Float>(
    act: Activation,
    cache: &mut LayerCache<T>,
    w_hh: Recurrent<T>,
    dims: Dims,
) {
    let (b, h) = (dims.batch, dims.hidden);
    let hs = StepRows::new(&mut cache.h, b, h);
    for_each_row_block(b, |rows| {
        for t in 0..dims.steps {
            // SAFETY: each thread has its own `rows`; steps t and t + 1 are disjoint.
            let (prev, step) = unsafe { (hs.at(t, &rows), hs.at(t + 1, &rows)) };
            // a_t += h_{t-1} W_hh^T   ([R, H] x [H, H]^T)
            w_hh.matmul(step, prev, rows.len(), true);
            activate(act, step);
        }
    });
}

/// Walks the steps `steps` backwards, writing `da_t = dh_t * s'(a_t)` over `dh_out[t]` (read for
/// the last time there; `dh_out` holds the rows of `steps` only) and carrying `dL/dh_{t-1}` in
/// `cache.dh_carry`:
/// ```text
/// dh_t = dh_out[t] + W_hh^T da_{t+1}       da_t = dh_t * s'(a_t)
/// ```
pub(super) fn backward_steps<T: Float>(
    act: Activation,
    cache: &mut LayerCache<T>,
    dh_out: &mut [T],
    w_hh: Recurrent<T>,
    dims: Dims,
    steps: Range<usize>,
    record: Option<StepGrads<T>>,
) {
    let (b, h) = (dims.batch, dims.hidden);
    let das = StepRows::new(dh_out, b, h);
    let dh_carry = StepRows::new(&mut cache.dh_carry, b, h);
    let rec_dh = record.map(|r| StepRows::new(r.dh, b, h));
    let hs = &cache.h[..];
    for_each_row_block(b, |rows| {
        // SAFETY: each thread has its own `rows` and takes each slice once per step.
        let carry = unsafe { dh_carry.at(0, &rows) };
        for t in steps.clone().rev() {
            let h_t = step_rows(hs, t + 1, &rows, b, h);
            // dh_out[t] on entry, da_t on exit.
            let da_t = unsafe { das.at(t - steps.start, &rows) };
            if let Some(rec) = rec_dh.as_ref() {
                let rec = unsafe { rec.at(t, &rows) };
                for ((r, &c), &u) in rec.iter_mut().zip(&*carry).zip(&*da_t) {
                    *r = c + u;
                }
            }
            pre_activation_grads(act, da_t, carry, h_t);
            // dh_{t-1} (from step t) = da_t W_hh   ([R, H] x [H, H])
            w_hh.matmul(carry, da_t, rows.len(), false);
        }
    });
}

/// Runs `$body` with `$a` bound to `$act` as a constant, one match arm per activation, so that
/// a loop in `$body` is compiled once per activation as a straight vector loop.
macro_rules! for_each_activation {
    ($act:expr, |$a:ident| $body:expr) => {
        match $act {
            Activation::Tanh => {
                let $a = Activation::Tanh;
                $body
            }
            Activation::Relu => {
                let $a = Activation::Relu;
                $body
            }
            Activation::Sigmoid => {
                let $a = Activation::Sigmoid;
                $body
            }
            Activation::Identity => {
                let $a = Activation::Identity;
                $body
            }
        }
    };
}

multiversion! {
    /// `h = s(a)` in place.
    fn activate<T: Float>(act: Activation, a: &mut [T]) {
        for_each_activation!(act, |s| {
            for v in a.iter_mut() {
                *v = s.apply(*v);
            }
        })
    }
}

multiversion! {
    /// `da = (carry + up) * s'(a)` in place over `up`, with `s'(a)` read from `h = s(a)`.
    fn pre_activation_grads<T: Float>(act: Activation, up: &mut [T], carry: &[T], h: &[T]) {
        for_each_activation!(act, |s| {
            for ((u, &c), &hv) in up.iter_mut().zip(carry).zip(h) {
                *u = (c + *u) * s.derivative_from_output(hv);
            }
        })
    }
}

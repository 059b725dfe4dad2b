//! Vanilla RNN (Elman), as `torch.nn.RNN` (which offers tanh and relu; sigmoid and identity are
//! added for the analysis):
//! ```text
//! a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh        h_t = s(a_t)
//! backward:  dh_t = (from outside) + (from step t+1)   da_t = dh_t * s'(a_t)
//!            dh_{t-1} = W_hh^T da_t
//! one-step Jacobian:  dh_t/dh_{t-1} = diag(s'(a_t)) W_hh
//! ```
//! The pre-activations are built in place in `h_1..h_T` and activated there, so backward
//! recovers `s'(a_t)` from `h_t` alone and the cell keeps nothing else.
//!
//! modReLU (Arjovsky et al. 2016, as expRNN uses it for real-valued states) has a learnt
//! per-unit bias `b` (the layer's `rnn.bias_modrelu_l{k}`):
//! ```text
//! s(a) = sign(a) max(|a| + b, 0)      ds/da = [s(a) != 0]      ds/db = sign(s(a)) [s(a) != 0]
//! ```

use super::{
    BackwardStep, Cell, ChunkValues, ForwardStep, Keeps, LayerGrads, LayerParams, Recurrent,
    StepMath,
};
use crate::tensor::{multiversion, Float};
use serde::{Deserialize, Serialize};

/// The vanilla RNN's activation `s` in `h_t = s(a_t)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Tanh,
    Relu,
    Sigmoid,
    Identity,
    /// `sign(a) max(|a| + b, 0)` with a learnt per-unit bias `b`.
    #[serde(rename = "modrelu")]
    ModRelu,
}

impl Activation {
    /// `s(a)`; `bias` is the unit's modReLU bias (ignored by the other activations).
    #[inline(always)]
    pub fn apply<T: Float>(self, a: T, bias: T) -> T {
        match self {
            Activation::Tanh => a.tanh(),
            Activation::Relu => a.max(T::ZERO),
            Activation::Sigmoid => crate::tensor::sigmoid(a),
            Activation::Identity => a,
            Activation::ModRelu => {
                let m = (a.abs() + bias).max(T::ZERO);
                if a > T::ZERO {
                    m
                } else if a < T::ZERO {
                    -m
                } else {
                    T::ZERO
                }
            }
        }
    }

    /// `s'(a)` expressed through the output `h = s(a)`, so backward needs only the stored `h`:
    /// ```text
    /// tanh: 1 - h^2    sigmoid: h (1 - h)    relu: [h > 0]    identity: 1    modrelu: [h != 0]
    /// ```
    #[inline(always)]
    pub fn derivative_from_output<T: Float>(self, h: T) -> T {
        match self {
            Activation::Tanh => T::ONE - h * h,
            Activation::Relu => {
                if h > T::ZERO {
                    T::ONE
                } else {
                    T::ZERO
                }
            }
            Activation::Sigmoid => h * (T::ONE - h),
            Activation::Identity => T::ONE,
            Activation::ModRelu => {
                if h != T::ZERO {
                    T::ONE
                } else {
                    T::ZERO
                }
            }
        }
    }

    /// `gamma = max |s'|`: 1 for tanh, relu, identity and modReLU, 1/4 for sigmoid (Pascanu et
    /// al. 2013).
    pub fn gamma(self) -> f64 {
        match self {
            Activation::Sigmoid => 0.25,
            _ => 1.0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Identity => "identity",
            Activation::ModRelu => "modrelu",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tanh" => Some(Activation::Tanh),
            "relu" => Some(Activation::Relu),
            "sigmoid" => Some(Activation::Sigmoid),
            "identity" | "linear" => Some(Activation::Identity),
            "modrelu" => Some(Activation::ModRelu),
            _ => None,
        }
    }
}

/// The vanilla RNN with its activation.
#[derive(Clone, Copy)]
pub struct Rnn(Activation);

impl StepMath for Rnn {
    const GATES: usize = 1;
    const GATE_NAMES: &'static [&'static str] = &["hh"];
    const KEEPS: Keeps = Keeps {
        cell_state: false,
        gates: false,
        aux: false,
        scratch: false,
        input_has_b_hh: true,
    };

    fn new(cell: Cell) -> Self {
        Rnn(cell.activation)
    }

    /// `h` holds `x_t W_ih^T + b_ih + b_hh` on entry: `a_t = h + h_{t-1} W_hh^T`, `h_t = s(a_t)`.
    fn forward_step<T: Float>(
        self,
        s: ForwardStep<'_, T>,
        w_hh: Recurrent<'_, T>,
        p: &LayerParams<'_, T>,
    ) {
        // a_t += h_{t-1} W_hh^T   ([R, H] x [H, H])
        w_hh.matmul(s.h, s.h_prev, s.h_prev.len() / s.hidden, true);
        activate(self.0, s.h, p.extra, s.hidden);
    }

    /// `da_t = (dh + up) * s'(a_t)` written over `up`; `dh_{t-1} = da_t W_hh`.
    fn backward_step<T: Float>(self, s: BackwardStep<'_, T>, w_hh: Recurrent<'_, T>) {
        if let Some(rec) = s.record_dh {
            for ((r, &c), &u) in rec.iter_mut().zip(&*s.dh).zip(&*s.up) {
                *r = c + u;
            }
        }
        pre_activation_grads(self.0, &mut *s.up, &*s.dh, s.h);
        // dh_{t-1} = da_t W_hh   ([R, H] x [H, H])
        w_hh.matmul(s.dh, s.up, s.h.len() / s.hidden, false);
    }

    fn extra_param(self) -> Option<&'static str> {
        (self.0 == Activation::ModRelu).then_some("bias_modrelu")
    }

    /// The default `W_hh`, `b_hh` gradients, and for modReLU `db += sum da * sign(h)`.
    fn recurrent_grads<T: Float>(self, g: &mut LayerGrads<'_, T>, v: ChunkValues<'_, T>) {
        let hidden = v.hidden;
        let rows = v.da.len() / hidden;
        crate::tensor::matmul(
            &mut *g.w_hh,
            v.da,
            crate::tensor::Trans::Yes,
            v.h_prev,
            crate::tensor::Trans::No,
            hidden,
            hidden,
            rows,
            true,
        );
        crate::tensor::sum_rows_into(&mut *g.b_hh, v.da);
        if self.0 == Activation::ModRelu {
            for (da, h) in v.da.chunks_exact(hidden).zip(v.h.chunks_exact(hidden)) {
                for ((g, &d), &hv) in g.extra.iter_mut().zip(da).zip(h) {
                    if hv > T::ZERO {
                        *g += d;
                    } else if hv < T::ZERO {
                        *g -= d;
                    }
                }
            }
        }
    }
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
            Activation::ModRelu => {
                let $a = Activation::ModRelu;
                $body
            }
        }
    };
}

multiversion! {
    /// `h = s(a)` in place over rows of `a [R, H]`; `bias [H]` is modReLU's (empty otherwise).
    fn activate<T: Float>(act: Activation, a: &mut [T], bias: &[T], h: usize) {
        if act == Activation::ModRelu {
            for row in a.chunks_exact_mut(h) {
                for (v, &b) in row.iter_mut().zip(bias) {
                    *v = act.apply(*v, b);
                }
            }
            return;
        }
        for_each_activation!(act, |s| {
            for v in a.iter_mut() {
                *v = s.apply(*v, T::ZERO);
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

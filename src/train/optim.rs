//! Optimizers over the flat parameter buffer, and gradient clipping.
//!
//! ```text
//! sgd       v = mu v + g;  p -= lr v                      (PyTorch's SGD with momentum mu)
//! adagrad   s += g^2;      p -= lr g / (sqrt(s) + eps)
//! rmsprop   s = a s + (1 - a) g^2;  p -= lr g / (sqrt(s) + eps)
//! adam      m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//!           p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
//! adamw     adam, with decoupled decay p -= lr wd p (Loshchilov & Hutter 2019)
//! ```
//! For all but AdamW, `weight_decay` adds `wd p` to the gradient (L2 regularisation).

use crate::error::{Error, Result};
use crate::tensor::{multiversion, Float};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd,
    Adagrad,
    Rmsprop,
    Adam,
    Adamw,
}

impl OptimizerKind {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "sgd" => OptimizerKind::Sgd,
            "adagrad" => OptimizerKind::Adagrad,
            "rmsprop" => OptimizerKind::Rmsprop,
            "adam" => OptimizerKind::Adam,
            "adamw" => OptimizerKind::Adamw,
            _ => {
                return Err(Error::Config(format!(
                    "unknown optimizer `{s}`: use sgd, adagrad, rmsprop, adam or adamw"
                )))
            }
        })
    }
}

/// Hyper-parameters of an optimizer (the learning rate comes from the schedule at each step).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub momentum: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// RMSProp's smoothing constant `a`.
    pub alpha: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl OptimizerConfig {
    pub fn new(kind: OptimizerKind) -> Self {
        OptimizerConfig {
            kind,
            momentum: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// An optimizer with its state (`m`, `v` share the parameter layout).
#[derive(Clone, Debug)]
pub struct Optimizer<T> {
    pub config: OptimizerConfig,
    /// Number of updates applied so far (Adam's `t`).
    pub steps: u64,
    /// First moment / momentum buffer / Adagrad sum (layout of the parameters).
    pub m: Vec<T>,
    /// Second moment (Adam, RMSProp).
    pub v: Vec<T>,
}

impl<T: Float> Optimizer<T> {
    pub fn new(config: OptimizerConfig, num_params: usize) -> Self {
        Optimizer {
            config,
            steps: 0,
            m: vec![T::ZERO; num_params],
            v: vec![T::ZERO; num_params],
        }
    }

    /// One update `p <- p - lr * direction(g)`. An update that would make any parameter
    /// non-finite is refused as a whole (parameters and state untouched): a first pass checks,
    /// a second applies. Both run on blocks of [`BLOCK`] parameters in parallel (the rule is
    /// element-wise: the result does not depend on the threads).
    pub fn step(&mut self, params: &mut [T], grads: &[T], lr: f64) -> Result<()> {
        assert_eq!(params.len(), grads.len());
        let u = Update::new(&self.config, lr, self.steps + 1);
        let all_finite = params
            .par_chunks(BLOCK)
            .zip(grads.par_chunks(BLOCK))
            .zip(self.m.par_chunks(BLOCK).zip(self.v.par_chunks(BLOCK)))
            .all(|((p, g), (m, v))| {
                let mut finite = true;
                check_update(&mut finite, &u, p, g, m, v);
                finite
            });
        if !all_finite {
            return Err(Error::Numeric(format!(
                "update {} would make parameters non-finite (learning rate {lr:e}); it was skipped",
                self.steps + 1
            )));
        }
        params
            .par_chunks_mut(BLOCK)
            .zip(grads.par_chunks(BLOCK))
            .zip(
                self.m
                    .par_chunks_mut(BLOCK)
                    .zip(self.v.par_chunks_mut(BLOCK)),
            )
            .for_each(|((p, g), (m, v))| apply_update(&u, p, g, m, v));
        self.steps += 1;
        Ok(())
    }
}

/// Parameters per block of an update pass (256 KB of each of `p`, `g`, `m`, `v`).
const BLOCK: usize = 1 << 16;

/// The constants of update number `t` with learning rate `lr`, in `T`.
#[derive(Clone, Copy)]
struct Update<T> {
    kind: OptimizerKind,
    /// Whether `wd p` is added to the gradient (L2 regularisation).
    l2: bool,
    wd: T,
    lr: T,
    eps: T,
    mu: T,
    alpha: T,
    b1: T,
    b2: T,
    /// `1 / (1 - b1^t)`, `1 / (1 - b2^t)`.
    bc1: T,
    bc2: T,
    /// AdamW's `1 - lr wd` (1 for the others).
    decay: T,
}

impl<T: Float> Update<T> {
    fn new(c: &OptimizerConfig, lr: f64, t: u64) -> Self {
        let adamw = c.kind == OptimizerKind::Adamw;
        Update {
            kind: c.kind,
            l2: !adamw && c.weight_decay != 0.0,
            wd: T::from_f64(c.weight_decay),
            lr: T::from_f64(lr),
            eps: T::from_f64(c.eps),
            mu: T::from_f64(c.momentum),
            alpha: T::from_f64(c.alpha),
            b1: T::from_f64(c.beta1),
            b2: T::from_f64(c.beta2),
            bc1: T::from_f64(1.0 / (1.0 - c.beta1.powi(t as i32))),
            bc2: T::from_f64(1.0 / (1.0 - c.beta2.powi(t as i32))),
            decay: T::ONE - T::from_f64(if adamw { lr * c.weight_decay } else { 0.0 }),
        }
    }

    /// The update of one scalar, `(p, g, m, v) -> (p', m', v')`, by the rule `kind`; `kind`
    /// is a parameter so that each pass picks the rule once, outside its loop.
    #[inline(always)]
    fn rule(&self, kind: OptimizerKind, p: T, g: T, m: T, v: T) -> (T, T, T) {
        let g = if self.l2 { g + self.wd * p } else { g };
        match kind {
            OptimizerKind::Sgd => {
                let m = self.mu * m + g;
                (p - self.lr * m, m, v)
            }
            OptimizerKind::Adagrad => {
                let s = m + g * g;
                (p - self.lr * g / (s.sqrt() + self.eps), s, v)
            }
            OptimizerKind::Rmsprop => {
                let s = self.alpha * v + (T::ONE - self.alpha) * g * g;
                (p - self.lr * g / (s.sqrt() + self.eps), m, s)
            }
            OptimizerKind::Adam | OptimizerKind::Adamw => {
                let m = self.b1 * m + (T::ONE - self.b1) * g;
                let v = self.b2 * v + (T::ONE - self.b2) * g * g;
                (
                    p * self.decay - self.lr * (m * self.bc1) / ((v * self.bc2).sqrt() + self.eps),
                    m,
                    v,
                )
            }
        }
    }
}

/// Runs `$body` with `$k` bound to `$kind` as a constant of each arm, so that every arm's loop
/// is a straight vector loop for one rule.
macro_rules! for_rule {
    ($kind:expr, |$k:ident| $body:expr) => {
        match $kind {
            OptimizerKind::Sgd => {
                let $k = OptimizerKind::Sgd;
                $body
            }
            OptimizerKind::Adagrad => {
                let $k = OptimizerKind::Adagrad;
                $body
            }
            OptimizerKind::Rmsprop => {
                let $k = OptimizerKind::Rmsprop;
                $body
            }
            OptimizerKind::Adam | OptimizerKind::Adamw => {
                let $k = OptimizerKind::Adam;
                $body
            }
        }
    };
}

multiversion! {
    /// `finite` becomes false when the update would make any parameter of the block
    /// non-finite.
    fn check_update<T: Float>(finite: &mut bool, u: &Update<T>, params: &[T], grads: &[T], m: &[T], v: &[T]) {
        let mut all = true;
        for_rule!(u.kind, |kind| {
            for (((&p, &g), &m), &v) in params.iter().zip(grads).zip(m).zip(v) {
                all &= u.rule(kind, p, g, m, v).0.is_finite();
            }
        });
        *finite &= all;
    }
}

multiversion! {
    /// Applies the update to one block.
    fn apply_update<T: Float>(u: &Update<T>, params: &mut [T], grads: &[T], m: &mut [T], v: &mut [T]) {
        for_rule!(u.kind, |kind| {
            for (((p, &g), m), v) in params.iter_mut().zip(grads).zip(m.iter_mut()).zip(v.iter_mut()) {
                (*p, *m, *v) = u.rule(kind, *p, g, *m, *v);
            }
        });
    }
}

/// Gradient norm clipping (Pascanu et al. 2013, Algorithm 1):
/// `if ||g|| >= threshold { g <- threshold g / ||g|| }`. Returns `||g||` before clipping.
pub fn clip_grad_norm<T: Float>(grads: &mut [T], threshold: f64) -> f64 {
    let norm = crate::tensor::norm(grads);
    if norm >= threshold && norm.is_finite() && norm > 0.0 {
        let s = T::from_f64(threshold / norm);
        for g in grads.iter_mut() {
            *g *= s;
        }
    }
    norm
}

/// Element-wise clipping to `[-threshold, threshold]` (char-rnn, Arjovsky et al. 2016).
pub fn clip_grad_value<T: Float>(grads: &mut [T], threshold: f64) {
    let (lo, hi) = (T::from_f64(-threshold), T::from_f64(threshold));
    for g in grads.iter_mut() {
        if *g > hi {
            *g = hi;
        } else if *g < lo {
            *g = lo;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_first_step_moves_by_lr_times_sign() {
        let mut p = vec![1.0f64, -2.0, 0.5];
        let g = vec![0.3, -0.01, 5.0];
        let mut opt = Optimizer::new(OptimizerConfig::new(OptimizerKind::Adam), 3);
        opt.step(&mut p, &g, 0.1).unwrap();
        // After one step m_hat = g, v_hat = g^2, so the update is lr * g / (|g| + eps).
        for ((&after, &before), &gi) in p.iter().zip(&[1.0, -2.0, 0.5]).zip(&g) {
            let want = before - 0.1 * gi / (gi.abs() + 1e-8);
            assert!((after - want).abs() < 1e-15);
        }
    }

    #[test]
    fn sgd_momentum_matches_pytorch_recurrence() {
        let mut cfg = OptimizerConfig::new(OptimizerKind::Sgd);
        cfg.momentum = 0.9;
        let mut opt = Optimizer::new(cfg, 1);
        let mut p = vec![0.0f64];
        opt.step(&mut p, &[1.0], 0.1).unwrap(); // v = 1, p = -0.1
        opt.step(&mut p, &[1.0], 0.1).unwrap(); // v = 1.9, p = -0.29
        assert!((p[0] + 0.29).abs() < 1e-15);
    }

    #[test]
    fn an_update_to_non_finite_parameters_is_refused_whole() {
        let mut opt = Optimizer::new(OptimizerConfig::new(OptimizerKind::Sgd), 2);
        let mut p = vec![1.0f32, 2.0];
        assert!(opt.step(&mut p, &[1e30, 1.0], 1e30).is_err());
        assert_eq!(
            (p, opt.m.clone(), opt.steps),
            (vec![1.0, 2.0], vec![0.0, 0.0], 0)
        );
    }

    #[test]
    fn norm_clipping_rescales_only_large_gradients() {
        let mut g = vec![3.0f64, 4.0];
        assert_eq!(clip_grad_norm(&mut g, 1.0), 5.0);
        assert!((g[0] - 0.6).abs() < 1e-15 && (g[1] - 0.8).abs() < 1e-15);
        let mut small = vec![0.3f64, 0.4];
        clip_grad_norm(&mut small, 1.0);
        assert_eq!(small, vec![0.3, 0.4]);
        let mut e = vec![-7.0f64, 0.5, 9.0];
        clip_grad_value(&mut e, 1.0);
        assert_eq!(e, vec![-1.0, 0.5, 1.0]);
    }
}

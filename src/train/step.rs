//! One truncated-BPTT training step: forward, loss, backward, clip, guard, update.

use super::optim::{clip_grad_norm, clip_grad_value, Optimizer, OptimizerConfig};
use crate::error::{Error, Result};
use crate::model::{LanguageModel, LossWeights, State, Workspace};
use crate::tensor::Float;
use rand::rngs::StdRng;

/// Gradient clipping applied before the update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Clip {
    None,
    /// Rescale the whole gradient to norm at most this (Pascanu et al. 2013, Algorithm 1).
    Norm(f64),
    /// Clamp every component to `[-x, x]`.
    Value(f64),
}

/// What one step measured.
#[derive(Clone, Copy, Debug)]
pub struct StepStats {
    /// Loss of the batch: the mean of the per-position losses, or `sum_r w_r J_r` with
    /// weights; each `J_r` a cross-entropy in nats (softmax head) or a squared error (mse head).
    pub loss: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
}

/// Inputs and targets of one training batch, all time-major.
#[derive(Clone, Copy)]
pub enum Batch<'a, T> {
    /// Token inputs `[T, B]` and class targets `[T, B]` (language modelling, copy, order tasks).
    Tokens {
        inputs: &'a [u32],
        targets: &'a [u32],
    },
    /// Dense inputs `[T, B, input_size]` and real targets `[T, B, vocab]` (mse head).
    DenseReal { inputs: &'a [T], targets: &'a [T] },
}

/// A model with everything a training step needs, allocated once.
pub struct Trainer<T> {
    pub model: LanguageModel<T>,
    pub optimizer: Optimizer<T>,
    pub grads: Vec<T>,
    pub ws: Workspace<T>,
    /// Recurrent state carried from window to window (detached: no gradient crosses the edge).
    pub state: State<T>,
    pub batch: usize,
}

impl<T: Float> Trainer<T> {
    pub fn new(model: LanguageModel<T>, optimizer: OptimizerConfig, batch: usize) -> Self {
        let n = model.layout.total();
        let state = State::zeros(&model.config, batch);
        Trainer {
            optimizer: Optimizer::new(optimizer, n),
            grads: vec![T::ZERO; n],
            ws: Workspace::default(),
            state,
            batch,
            model,
        }
    }

    /// Trains on one language-model window `inputs`/`targets` `[T, B]` (mean loss over all
    /// tokens), carrying the state forward. See [`Self::step_batch`].
    pub fn step(
        &mut self,
        inputs: &[u32],
        targets: &[u32],
        lr: f64,
        clip: Clip,
        dropout_rng: Option<&mut StdRng>,
    ) -> Result<StepStats> {
        self.step_batch(
            Batch::Tokens { inputs, targets },
            None,
            lr,
            clip,
            dropout_rng,
        )
    }

    /// Trains on one batch. `weights` `[T * B]` weights the per-step losses (`None` = mean over
    /// all steps); the reported loss is `sum_r w_r J_r`. A non-finite loss or gradient leaves
    /// parameters, optimizer and state untouched and returns [`Error::NonFiniteStep`] (or
    /// the optimizer's `Error::Numeric` when the update itself would not be finite).
    pub fn step_batch(
        &mut self,
        batch: Batch<T>,
        weights: Option<&[T]>,
        lr: f64,
        clip: Clip,
        dropout_rng: Option<&mut StdRng>,
    ) -> Result<StepStats> {
        let (m, ws, b) = (&self.model, &mut self.ws, self.batch);
        let mean = match batch {
            Batch::Tokens { inputs, targets } => {
                m.forward(ws, inputs, &self.state, inputs.len() / b, b, dropout_rng);
                m.loss(ws, targets)
            }
            Batch::DenseReal { inputs, targets } => {
                let steps = targets.len() / (b * m.config.vocab);
                m.forward_dense(ws, inputs, &self.state, steps, b, dropout_rng);
                m.loss_mse(ws, targets)
            }
        };
        let loss = match weights {
            None => mean,
            Some(w) => ws
                .step_loss
                .iter()
                .zip(w)
                .map(|(l, w)| l * w.to_f64())
                .sum(),
        };
        self.grads.fill(T::ZERO);
        let lw = weights.map_or(LossWeights::Mean, LossWeights::PerToken);
        m.backward(ws, &mut self.grads, lw, None, None)?;
        let grad_norm = match clip {
            Clip::Norm(x) => clip_grad_norm(&mut self.grads, x),
            _ => crate::tensor::norm(&self.grads),
        };
        if !loss.is_finite() || !grad_norm.is_finite() {
            return Err(Error::NonFiniteStep { loss, grad_norm });
        }
        if let Clip::Value(x) = clip {
            clip_grad_value(&mut self.grads, x);
        }
        self.optimizer
            .step(&mut self.model.params_mut(), &self.grads, lr)?;
        self.model.final_state(&self.ws, &mut self.state);
        Ok(StepStats { loss, grad_norm })
    }

    /// Resets the carried state to zeros (start of an epoch).
    pub fn reset_state(&mut self) {
        self.state = State::zeros(&self.model.config, self.batch);
    }
}

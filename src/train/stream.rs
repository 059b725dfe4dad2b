//! Language modelling on a token stream, the [`RunData`] of `rnnscope train`.
//!
//! Update `s` (0-based) trains on window `s mod W` of the stream read as `batch` columns
//! (see [`Batches`]; `W` windows per epoch). The hidden state carries over from window to
//! window and is reset at each epoch's start. Evaluations read the validation stream whole
//! (see [`evaluate`]); the best is the lowest validation loss; at the end the test stream (if
//! any) is scored with the best parameters.

use super::eval::evaluate;
use super::records::{TrackedHorizon, TrainSummary};
use super::run::{Evaluation, Feed, Monitor, RunData, Session};
use super::step::Batch;
use crate::analysis::{GradflowSnapshot, InputKind, InputRecord};
use crate::data::{Batches, TokenizerKind};
use crate::error::Result;
use crate::model::{LanguageModel, Workspace};

/// The streams a language model trains, validates and is tested on.
pub struct StreamData<'a> {
    batches: Batches<'a>,
    /// Validation stream (fewer than 2 tokens: no validation, no `best.safetensors`).
    valid: &'a [u32],
    /// Test stream, evaluated once at the end with the best parameters (may be empty).
    test: &'a [u32],
    inputs: Vec<u32>,
    targets: Vec<u32>,
    ws: Workspace<f32>,
    /// The training stream's name (its file) and tokenizer, for tracked analyses.
    source: String,
    pub tokenizer: Option<TokenizerKind>,
    /// The memory horizon of the last tracked snapshot.
    horizon: Option<TrackedHorizon>,
}

impl<'a> StreamData<'a> {
    /// `name` (a file name) names the training stream in errors; `batch` must be the
    /// session's.
    pub fn new(
        train: &'a [u32],
        valid: &'a [u32],
        test: &'a [u32],
        name: &str,
        batch: usize,
        bptt: usize,
    ) -> Result<Self> {
        let batches = Batches::new(train, batch, bptt, name)?;
        Ok(StreamData {
            batches,
            valid,
            test,
            inputs: vec![0; batch * bptt],
            targets: vec![0; batch * bptt],
            ws: Workspace::default(),
            source: name.to_string(),
            tokenizer: None,
            horizon: None,
        })
    }

    /// Windows (updates) per epoch.
    pub fn windows(&self) -> usize {
        self.batches.windows
    }

    fn epochs(&self, step: u64) -> f64 {
        step as f64 / self.batches.windows as f64
    }

    fn eval(&mut self, model: &LanguageModel<f32>, stream: &[u32]) -> Result<Evaluation> {
        let r = evaluate(
            model,
            &mut self.ws,
            stream,
            self.batches.batch,
            self.batches.bptt,
        )?;
        Ok(Evaluation {
            loss: r.loss,
            metric: None,
        })
    }
}

impl RunData for StreamData<'_> {
    type Summary = TrainSummary;
    const ROW_PER_UPDATE: bool = true;

    fn batch(&mut self, step: u64) -> Feed<'_> {
        let w = (step % self.batches.windows as u64) as usize;
        self.batches.window(w, &mut self.inputs, &mut self.targets);
        Feed {
            batch: Batch::Tokens {
                inputs: &self.inputs,
                targets: &self.targets,
            },
            weights: None,
            carry: w != 0,
            tokens: self.inputs.len() as u64,
        }
    }

    fn tracked_input(&self, step: u64, seed: u64) -> InputRecord {
        let b = &self.batches;
        let w = (step % b.windows as u64) as usize;
        InputRecord {
            kind: InputKind::TrainingBatch,
            source: self.source.clone(),
            tokenizer: self.tokenizer,
            windows: b.batch,
            window_length: b.bptt,
            seed,
            offsets: (0..b.batch).map(|k| k * b.cols + w * b.bptt).collect(),
            unknown: 0,
        }
    }

    fn tracked(&mut self, step: u64, snap: &GradflowSnapshot) {
        self.horizon = snap
            .summary
            .memory_horizon
            .clone()
            .map(|horizon| TrackedHorizon {
                step,
                input: snap.summary.input.describe(),
                horizon,
            });
    }

    fn evaluate(&mut self, model: &LanguageModel<f32>) -> Result<Option<Evaluation>> {
        if self.valid.len() < 2 {
            return Ok(None);
        }
        self.eval(model, self.valid).map(Some)
    }

    fn better(&self, a: &Evaluation, than: &Evaluation) -> bool {
        a.loss.is_finite() && a.loss < than.loss
    }

    fn describe(&self, step: u64, e: &Evaluation) -> String {
        format!(
            "valid {:.4} (ppl {:.3}, epoch {:.2})",
            e.loss,
            e.loss.exp(),
            self.epochs(step)
        )
    }

    fn test(&mut self, session: &Session, monitor: &mut dyn Monitor) -> Result<Option<Evaluation>> {
        if self.test.len() < 2 {
            return Ok(None);
        }
        let e = self.eval(&session.best_model(), self.test)?;
        monitor.log(&format!(
            "test (best parameters): loss {:.4}  ppl {:.3}  {:.4} bits/token",
            e.loss,
            e.loss.exp(),
            e.loss / std::f64::consts::LN_2
        ));
        Ok(Some(e))
    }

    fn summary(&self, session: &Session, status: &str, test: Option<&Evaluation>) -> TrainSummary {
        let p = &session.progress;
        let best = p.best_valid.is_finite().then_some(p.best_valid);
        let test = test.map(|t| t.loss);
        TrainSummary {
            status: status.into(),
            step: p.step,
            steps: session.settings.steps,
            epochs: self.epochs(p.step),
            tokens: p.tokens,
            seconds: p.seconds,
            tokens_per_s: if p.seconds > 0.0 {
                p.tokens as f64 / p.seconds
            } else {
                0.0
            },
            best_valid_loss: best,
            best_valid_perplexity: best.map(f64::exp),
            best_valid_bits_per_token: best.map(|b| b / std::f64::consts::LN_2),
            best_step: best.map(|_| p.best_step),
            last_valid_loss: p.last_valid.is_finite().then_some(p.last_valid),
            test_loss: test,
            test_perplexity: test.map(f64::exp),
            test_bits_per_token: test.map(|t| t / std::f64::consts::LN_2),
            skipped_steps: p.skipped_steps,
            params: session.trainer.model.layout.total(),
            model: session.trainer.model.config.clone(),
            memory_horizon: self.horizon.clone(),
        }
    }
}

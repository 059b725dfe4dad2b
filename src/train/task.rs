//! Training on a synthetic task: fresh sequences every update, each from a zero state, and a
//! fixed held-out test set scored with the task's own metric against its baseline.

use super::optim::{OptimizerConfig, OptimizerKind};
use super::step::{Batch, Clip, Trainer};
use crate::cell::{Activation, CellKind};
use crate::checkpoint;
use crate::data::tasks::{Task, TaskBatch, TaskKind};
use crate::error::{Error, Result};
use crate::init::{initialize, InitConfig, InitScheme};
use crate::model::{LanguageModel, ModelConfig, Output, State, Workspace};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// Everything that defines one task run (written to `config.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRunConfig {
    pub task: TaskKind,
    /// Dependency distance `l`, or the sequence length / delay `T`.
    pub length: usize,
    pub cell: CellKind,
    pub activation: Activation,
    pub hidden: usize,
    pub layers: usize,
    pub embedding: usize,
    /// `default`, `uniform:A`, `xavier`, `orthogonal` or `identity`.
    pub init: String,
    pub spectral_radius: Option<f64>,
    pub forget_bias: Option<f64>,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    /// Gradient-norm clipping threshold (Pascanu et al. 2013); `None` = off.
    pub clip: Option<f64>,
    /// Element-wise clipping threshold (Arjovsky et al. 2016); `None` = off.
    pub clip_value: Option<f64>,
    pub batch: usize,
    pub steps: usize,
    pub eval_every: usize,
    /// Sequences in the held-out test set.
    pub test_size: usize,
    pub seed: u64,
    /// Stop at the first evaluation that meets the task's success criterion.
    pub stop_when_solved: bool,
}

impl TaskRunConfig {
    /// Sensible defaults for a task at a length.
    pub fn new(task: TaskKind, length: usize) -> Self {
        TaskRunConfig {
            task,
            length,
            cell: CellKind::Lstm,
            activation: Activation::Tanh,
            hidden: 64,
            layers: 1,
            embedding: 16,
            init: "default".into(),
            spectral_radius: None,
            forget_bias: None,
            optimizer: OptimizerKind::Adam,
            lr: 1e-3,
            clip: None,
            clip_value: None,
            batch: 32,
            steps: 2000,
            eval_every: 100,
            test_size: 1000,
            seed: 0,
            stop_when_solved: false,
        }
    }

    pub fn task(&self) -> Result<Task> {
        Task::new(self.task, self.length)
    }

    pub fn model_config(&self) -> Result<ModelConfig> {
        let task = self.task()?;
        let c = ModelConfig {
            cell: self.cell,
            activation: self.activation,
            vocab: task.vocab(),
            embedding: if task.input_size() > 0 {
                0
            } else {
                self.embedding
            },
            hidden: self.hidden,
            layers: self.layers,
            dropout: 0.0,
            tie: false,
            input_size: task.input_size(),
            output: if task.kind == TaskKind::Adding {
                Output::Mse
            } else {
                Output::Softmax
            },
        };
        c.validate()?;
        Ok(c)
    }

    fn clip(&self) -> Clip {
        match (self.clip, self.clip_value) {
            (Some(x), _) => Clip::Norm(x),
            (None, Some(x)) => Clip::Value(x),
            (None, None) => Clip::None,
        }
    }

    /// Short label such as `lstm`, `rnn-tanh`, `rnn-relu identity`.
    pub fn label(&self) -> String {
        let mut s = match self.cell {
            CellKind::Rnn => format!("rnn-{}", self.activation.name()),
            k => k.name().to_string(),
        };
        if self.init != "default" {
            s.push_str(&format!(" {}", self.init));
        }
        if let Some(r) = self.spectral_radius {
            s.push_str(&format!(" rho={r}"));
        }
        if self.clip.is_some() || self.clip_value.is_some() {
            s.push_str(" clip");
        }
        s
    }
}

/// Outcome of a task run (written to `summary.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskResult {
    pub task: TaskKind,
    pub length: usize,
    pub label: String,
    /// Accuracy on the dependent positions, or test MSE (adding).
    pub metric_name: String,
    pub metric: f64,
    /// Best metric over all evaluations.
    pub best_metric: f64,
    pub baseline: f64,
    pub solved: bool,
    pub test_loss: f64,
    pub updates: usize,
    pub sequences_seen: usize,
    pub seconds: f64,
}

/// Held-out evaluation: `(weighted test loss, metric)`.
pub fn evaluate(
    model: &LanguageModel<f32>,
    ws: &mut Workspace<f32>,
    task: &Task,
    test: &[TaskBatch],
) -> (f64, f64) {
    let (mut loss, mut hits, mut sq, mut count) = (0.0, 0.0, 0.0, 0usize);
    for b in test {
        let state = State::zeros(&model.config, b.batch);
        run_forward(model, ws, b, &state, None);
        for (l, w) in ws.step_loss.iter().zip(&b.weights) {
            loss += l * w;
        }
        for &r in &b.scored {
            count += 1;
            if task.kind == TaskKind::Adding {
                sq += ws.step_loss[r];
            } else {
                let v = model.config.vocab;
                let row = &ws.logits[r * v..(r + 1) * v];
                let arg = (0..v).fold(0, |best, k| if row[k] > row[best] { k } else { best });
                hits += f64::from(u8::from(arg as u32 == b.targets[r]));
            }
        }
    }
    let metric = if task.kind == TaskKind::Adding {
        sq
    } else {
        hits
    } / count.max(1) as f64;
    (loss / test.len().max(1) as f64, metric)
}

/// Forward and loss of one task batch (probabilities or residuals left in `ws`).
fn run_forward(
    model: &LanguageModel<f32>,
    ws: &mut Workspace<f32>,
    b: &TaskBatch,
    state: &State<f32>,
    rng: Option<&mut StdRng>,
) {
    if b.dense.is_empty() {
        model.forward(ws, &b.tokens, state, b.steps, b.batch, rng);
        model.loss(ws, &b.targets);
    } else {
        let x: Vec<f32> = b.dense.iter().map(|&v| v as f32).collect();
        let y: Vec<f32> = b.real_targets.iter().map(|&v| v as f32).collect();
        model.forward_dense(ws, &x, state, b.steps, b.batch, rng);
        model.loss_mse(ws, &y);
    }
}

/// Trains `cfg`; writes `config.toml`, `metrics.csv`, `last.safetensors`, `best.safetensors`
/// and `summary.json` into `out` when given. `log` receives one line per evaluation.
pub fn run_task(
    cfg: &TaskRunConfig,
    out: Option<&Path>,
    log: &mut dyn FnMut(&str),
) -> Result<(TaskResult, LanguageModel<f32>)> {
    let task = cfg.task()?;
    let mc = cfg.model_config()?;
    if cfg.batch == 0 || cfg.eval_every == 0 || cfg.test_size == 0 {
        return Err(Error::Config(
            "`batch`, `eval_every` and `test_size` must be at least 1".into(),
        ));
    }
    let mut model = LanguageModel::<f32>::zeros(mc)?;
    let init = InitConfig {
        scheme: InitScheme::parse(&cfg.init)?,
        spectral_radius: cfg.spectral_radius,
        forget_bias: cfg.forget_bias,
        seed: cfg.seed,
    };
    initialize(&mut model, &init)?;
    let mut ocfg = OptimizerConfig::new(cfg.optimizer);
    if cfg.optimizer == OptimizerKind::Sgd {
        ocfg.momentum = 0.9;
    }
    let mut trainer = Trainer::new(model, ocfg, cfg.batch);
    let mut data_rng = StdRng::seed_from_u64(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 1);
    let mut test_rng = StdRng::seed_from_u64(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 2);
    let test: Vec<TaskBatch> = (0..cfg.test_size.div_ceil(cfg.batch))
        .map(|_| task.generate(cfg.batch, &mut test_rng))
        .collect();
    let mut metrics = match out {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            let toml = toml::to_string(cfg).map_err(|e| Error::Config(e.to_string()))?;
            checkpoint::write_atomic(&dir.join("config.toml"), toml.as_bytes())?;
            let path = dir.join("metrics.csv");
            let mut f = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
            writeln!(
                f,
                "step,train_loss,valid_loss,lr,grad_norm,tokens_per_s,metric"
            )
            .map_err(|e| Error::io(&path, e))?;
            Some((f, path))
        }
        None => None,
    };
    let meta = HashMap::from([(
        "rnnscope.task".to_string(),
        serde_json::to_string(cfg).expect("serialisable"),
    )]);
    let better = |a: f64, b: f64| {
        if task.kind == TaskKind::Adding {
            a < b
        } else {
            a > b
        }
    };
    let mut eval_ws = Workspace::default();
    let start = Instant::now();
    let (mut best, mut last_metric, mut last_loss) = (f64::NAN, f64::NAN, f64::NAN);
    let (mut loss_sum, mut norm_sum, mut n_sum, mut updates) = (0.0, 0.0, 0usize, 0usize);
    let mut window_start = Instant::now();
    let tokens_per_update = task.steps() * cfg.batch;
    for step in 1..=cfg.steps {
        let b = task.generate(cfg.batch, &mut data_rng);
        trainer.reset_state();
        let weights: Vec<f32> = b.weights.iter().map(|&w| w as f32).collect();
        let dense: Vec<f32> = b.dense.iter().map(|&v| v as f32).collect();
        let real: Vec<f32> = b.real_targets.iter().map(|&v| v as f32).collect();
        let batch = if dense.is_empty() {
            Batch::Tokens {
                inputs: &b.tokens,
                targets: &b.targets,
            }
        } else {
            Batch::DenseReal {
                inputs: &dense,
                targets: &real,
            }
        };
        match trainer.step_batch(batch, Some(&weights), cfg.lr, cfg.clip(), None) {
            Ok(s) => {
                loss_sum += s.loss;
                norm_sum += s.grad_norm;
                n_sum += 1;
                updates += 1;
            }
            Err(Error::Numeric(msg)) => log(&format!("step {step}: {msg}")),
            Err(e) => return Err(e),
        }
        if step % cfg.eval_every == 0 || step == cfg.steps {
            let (test_loss, metric) = evaluate(&trainer.model, &mut eval_ws, &task, &test);
            let tps = (n_sum * tokens_per_update) as f64 / window_start.elapsed().as_secs_f64();
            let train_loss = loss_sum / n_sum.max(1) as f64;
            let grad_norm = norm_sum / n_sum.max(1) as f64;
            log(&format!(
                "step {step:>6}  train {train_loss:.4}  test {test_loss:.4}  {} {metric:.4} (baseline {:.4})",
                task.metric_name(),
                task.baseline()
            ));
            if let Some((f, path)) = metrics.as_mut() {
                writeln!(
                    f,
                    "{step},{train_loss},{test_loss},{},{grad_norm},{tps},{metric}",
                    cfg.lr
                )
                .map_err(|e| Error::io(&*path, e))?;
            }
            if let Some(dir) = out {
                checkpoint::save(&trainer.model, &dir.join("last.safetensors"), &meta)?;
                if best.is_nan() || better(metric, best) {
                    checkpoint::save(&trainer.model, &dir.join("best.safetensors"), &meta)?;
                }
            }
            if best.is_nan() || better(metric, best) {
                best = metric;
            }
            (last_metric, last_loss) = (metric, test_loss);
            (loss_sum, norm_sum, n_sum) = (0.0, 0.0, 0);
            window_start = Instant::now();
            if cfg.stop_when_solved && task.solved(metric) {
                break;
            }
        }
    }
    let result = TaskResult {
        task: cfg.task,
        length: cfg.length,
        label: cfg.label(),
        metric_name: task.metric_name().into(),
        metric: last_metric,
        best_metric: best,
        baseline: task.baseline(),
        solved: task.solved(last_metric),
        test_loss: last_loss,
        updates,
        sequences_seen: updates * cfg.batch,
        seconds: start.elapsed().as_secs_f64(),
    };
    if let Some(dir) = out {
        let json = serde_json::to_string_pretty(&result).expect("serialisable");
        checkpoint::write_atomic(&dir.join("summary.json"), json.as_bytes())?;
    }
    Ok((result, trainer.model))
}

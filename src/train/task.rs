//! Training on a synthetic task, the [`RunData`] of `rnnscope task`, `experiment` and `demo`:
//! a fresh batch every update, each from a zero state, and a fixed held-out test set scored
//! with the task's own metric against its baseline.
//!
//! ```text
//! batch of update s (0-based) = the (s + 1)-th batch of a generator seeded from `seed`
//! test set                    = `test_size` sequences of a second generator seeded from `seed`
//! ```
//! A run continued at update `s` replays the generator through its first `s` batches
//! (generation is cheap next to training), so it sees exactly the batches an uninterrupted run
//! sees and ends bit-identical to it; and the data sequence is the one of every earlier
//! version, so earlier results repeat. (Deriving each batch from `(seed, s)` instead would
//! need no replay but would change every run's data.)
//!
//! The best evaluation is the one with the best metric (highest accuracy, lowest MSE); its
//! parameters go to `best.safetensors`. [`run_task`] starts a run in a directory, or continues
//! the run already there when its configuration is the same but for `steps`.

use super::config::{check_at_least_one, check_positive};
use super::optim::{OptimizerConfig, OptimizerKind};
use super::records::TaskSummary;
use super::run::{
    train, Evaluation, Feed, LogLines, Monitor, RunData, Session, StopReason, TrainSettings,
};
use super::rundir::{RunDir, RunKind, SavedState};
use super::schedule::Schedule;
use super::step::{Batch, Clip};
use crate::analysis;
use crate::cell::{Activation, CellKind, Recurrence};
use crate::data::tasks::{Task, TaskBatch, TaskKind};
use crate::error::{Error, Result, RunDirProblem};
use crate::init::{initialize, InitConfig, InitScheme};
use crate::layers::attention::Attention;
use crate::model::{LanguageModel, ModelConfig, Output, State, Workspace};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;

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
    /// `dense` or `orthogonal` (`W_hh = expm(A)`, vanilla RNN only).
    #[serde(default)]
    pub recurrence: Recurrence,
    /// Residual connections between stacked layers.
    #[serde(default)]
    pub residual: bool,
    /// Attention of the top layer over its earlier states: `none`, `dot` or `additive`.
    #[serde(default)]
    pub attention: Attention,
    /// Attention reads at most this many earlier steps; 0 = the whole window.
    #[serde(default)]
    pub attention_span: usize,
    /// `default`, `uniform:A`, `xavier`, `orthogonal`, `identity` or `chrono:T_MAX`.
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
    #[serde(with = "super::config::seed64")]
    pub seed: u64,
    /// Stop at the first evaluation that meets the task's success criterion.
    pub stop_when_solved: bool,
    /// Stop with an error after this many non-finite steps in a row (0 = never: a diverging
    /// run keeps its last finite parameters and is scored with them).
    #[serde(default)]
    pub max_bad_steps: u32,
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
            recurrence: Recurrence::Dense,
            residual: false,
            attention: Attention::None,
            attention_span: 0,
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
            max_bad_steps: 0,
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
            recurrence: self.recurrence,
            residual: self.residual,
            attention: self.attention,
            attention_span: self.attention_span,
            proj_size: 0,
        };
        c.validate()?;
        Ok(c)
    }

    /// Checks every value (the message names the field): what `rnnscope train` checks of the
    /// same fields, and the task's own.
    pub fn validate(&self) -> Result<()> {
        check_positive("lr", self.lr)?;
        for (name, v) in [("clip", self.clip), ("clip_value", self.clip_value)] {
            if let Some(v) = v {
                if !(v.is_finite() && v > 0.0) {
                    return Err(Error::Config(format!(
                        "`{name}` = {v} must be a positive number (leave it out for no clipping)"
                    )));
                }
            }
        }
        if self.clip.is_some() && self.clip_value.is_some() {
            return Err(Error::Config(
                "choose one clipping: `clip` (norm) or `clip_value` (element-wise), not both"
                    .into(),
            ));
        }
        check_at_least_one("batch", self.batch as u64)?;
        check_at_least_one("steps", self.steps as u64)?;
        check_at_least_one("eval_every", self.eval_every as u64)?;
        check_at_least_one("test_size", self.test_size as u64)?;
        self.init_config()?.validate()?;
        let model = self.model_config()?;
        let task = self.task()?;
        // Training windows plus the test set, each sequence with its inputs and targets.
        let test_set = (self.test_size as f64 + self.batch as f64)
            * task.steps() as f64
            * (task.input_size() as f64 + 2.0)
            * 8.0;
        crate::memory::check(
            &format!("task {} at length {}", self.task.name(), self.length),
            crate::memory::training_bytes(&model, self.batch, task.steps(), 4) + test_set,
            "lower `length`, `hidden`, `batch` or `test_size`",
        )
    }

    fn init_config(&self) -> Result<InitConfig> {
        Ok(InitConfig {
            scheme: InitScheme::parse(&self.init)?,
            spectral_radius: self.spectral_radius,
            forget_bias: self.forget_bias,
            seed: self.seed,
        })
    }

    fn clip(&self) -> Clip {
        match (self.clip, self.clip_value) {
            (Some(x), _) => Clip::Norm(x),
            (None, Some(x)) => Clip::Value(x),
            (None, None) => Clip::None,
        }
    }

    /// The loop's settings: constant learning rate, SGD with momentum 0.9.
    pub fn settings(&self) -> TrainSettings {
        let mut optimizer = OptimizerConfig::new(self.optimizer);
        if self.optimizer == OptimizerKind::Sgd {
            optimizer.momentum = 0.9;
        }
        TrainSettings {
            batch: self.batch,
            steps: self.steps as u64,
            optimizer,
            lr: self.lr,
            schedule: Schedule::Constant,
            clip: self.clip(),
            seed: self.seed,
            eval_every: self.eval_every as u64,
            max_time: None,
            max_bad_steps: self.max_bad_steps,
            track_gradflow: 0,
            stop_when_solved: self.stop_when_solved,
        }
    }

    /// A fresh session: the model initialised from `seed`.
    fn session(&self) -> Result<Session> {
        self.validate()?;
        let mut model = LanguageModel::<f32>::zeros(self.model_config()?)?;
        initialize(&mut model, &self.init_config()?)?;
        Session::new(model, self.settings())
    }

    /// Short label such as `lstm`, `rnn-tanh`, `rnn-relu identity`.
    pub fn label(&self) -> String {
        let mut s = match self.cell {
            CellKind::Rnn => format!("rnn-{}", self.activation.name()),
            k => k.name().to_string(),
        };
        if self.recurrence == Recurrence::Orthogonal {
            s.push_str(" expm");
        }
        if self.residual {
            s.push_str(" residual");
        }
        if self.attention.is_on() {
            s.push_str(&format!(" {}-attention", self.attention.name()));
            if self.attention_span > 0 {
                s.push_str(&format!(":{}", self.attention_span));
            }
        }
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

    /// The first field (other than `steps`) in which `other` differs, as `` `f` is A there, B here ``.
    fn difference(&self, there: &TaskRunConfig) -> Option<String> {
        let table = |c: &TaskRunConfig| toml::Table::try_from(c).unwrap_or_default();
        let (here, there) = (table(self), table(there));
        let show = |v: Option<&toml::Value>| v.map_or("unset".to_string(), |v| v.to_string());
        here.keys()
            .chain(there.keys())
            .filter(|k| k.as_str() != "steps")
            .find(|k| here.get(*k) != there.get(*k))
            .map(|k| {
                format!(
                    "`{k}` is {} there, {} here",
                    show(there.get(k)),
                    show(here.get(k))
                )
            })
    }
}

/// The batches and test set of a task run.
pub struct TaskData {
    cfg: TaskRunConfig,
    task: Task,
    /// The training-batch generator and how many batches it has drawn.
    data_rng: StdRng,
    drawn: u64,
    test: Vec<TaskBatch>,
    /// The current batch and its f32 copies.
    current: TaskBatch,
    weights: Vec<f32>,
    dense: Vec<f32>,
    real: Vec<f32>,
    ws: Workspace<f32>,
}

fn data_rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 1)
}

impl TaskData {
    pub fn new(cfg: &TaskRunConfig) -> Result<Self> {
        let task = cfg.task()?;
        let mut test_rng = StdRng::seed_from_u64(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 2);
        let test = (0..cfg.test_size.div_ceil(cfg.batch.max(1)))
            .map(|_| task.generate(cfg.batch, &mut test_rng))
            .collect();
        Ok(TaskData {
            cfg: cfg.clone(),
            task,
            data_rng: data_rng(cfg.seed),
            drawn: 0,
            test,
            current: TaskBatch::default(),
            weights: Vec::new(),
            dense: Vec::new(),
            real: Vec::new(),
            ws: Workspace::default(),
        })
    }
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
        if b.dense.is_empty() {
            model.forward(ws, &b.tokens, &state, b.steps, b.batch, None);
            model.loss(ws, &b.targets);
        } else {
            let x: Vec<f32> = b.dense.iter().map(|&v| v as f32).collect();
            let y: Vec<f32> = b.real_targets.iter().map(|&v| v as f32).collect();
            model.forward_dense(ws, &x, &state, b.steps, b.batch, None);
            model.loss_mse(ws, &y);
        }
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

impl RunData for TaskData {
    type Summary = TaskSummary;
    const ROW_PER_UPDATE: bool = false;

    fn batch(&mut self, step: u64) -> Feed<'_> {
        if step < self.drawn {
            self.data_rng = data_rng(self.cfg.seed);
            self.drawn = 0;
        }
        // Replay up to `step` (a continued run), then draw its batch.
        while self.drawn < step {
            self.task.generate(self.cfg.batch, &mut self.data_rng);
            self.drawn += 1;
        }
        self.current = self.task.generate(self.cfg.batch, &mut self.data_rng);
        self.drawn += 1;
        let b = &self.current;
        let f32s = |dst: &mut Vec<f32>, src: &[f64]| {
            dst.clear();
            dst.extend(src.iter().map(|&v| v as f32));
        };
        f32s(&mut self.weights, &b.weights);
        f32s(&mut self.dense, &b.dense);
        f32s(&mut self.real, &b.real_targets);
        let batch = if self.dense.is_empty() {
            Batch::Tokens {
                inputs: &b.tokens,
                targets: &b.targets,
            }
        } else {
            Batch::DenseReal {
                inputs: &self.dense,
                targets: &self.real,
            }
        };
        Feed {
            batch,
            weights: Some(&self.weights),
            carry: false,
            tokens: (b.steps * b.batch) as u64,
        }
    }

    fn evaluate(&mut self, model: &LanguageModel<f32>) -> Result<Option<Evaluation>> {
        let (loss, metric) = evaluate(model, &mut self.ws, &self.task, &self.test);
        Ok(Some(Evaluation {
            loss,
            metric: Some(metric),
        }))
    }

    fn better(&self, a: &Evaluation, than: &Evaluation) -> bool {
        let Some(a) = a.metric.filter(|m| m.is_finite()) else {
            return false;
        };
        match than.metric {
            None => true,
            Some(b) if self.task.kind == TaskKind::Adding => a < b,
            Some(b) => a > b,
        }
    }

    fn solved(&self, e: &Evaluation) -> bool {
        e.metric.is_some_and(|m| self.task.solved(m))
    }

    fn describe(&self, _step: u64, e: &Evaluation) -> String {
        let t = &self.task;
        let loss_vs = t.loss_baseline().map_or(String::new(), |b| {
            format!(" (memoryless loss baseline {b:.4})")
        });
        format!(
            "test loss {:.4}{loss_vs}  {} {:.4} ({} {:.4})",
            e.loss,
            t.metric_name(),
            e.metric.unwrap_or(f64::NAN),
            t.baseline_name(),
            t.baseline()
        )
    }

    fn summary(&self, session: &Session, status: &str, _test: Option<&Evaluation>) -> TaskSummary {
        let p = &session.progress;
        let updates = p.updates();
        TaskSummary {
            task: self.cfg.task,
            length: self.cfg.length,
            label: self.cfg.label(),
            metric_name: self.task.metric_name().into(),
            metric: p.last_metric,
            best_metric: p.best_metric,
            baseline: self.task.baseline(),
            baseline_name: self.task.baseline_name().into(),
            loss_baseline: self.task.loss_baseline(),
            solved: self.task.solved(p.last_metric),
            test_loss: p.last_valid,
            updates,
            sequences_seen: updates * self.cfg.batch as u64,
            seconds: p.seconds,
            status: status.into(),
            step: p.step,
            steps: session.settings.steps,
            best_step: (!p.best_metric.is_nan()).then_some(p.best_step),
            skipped_steps: p.skipped_steps,
        }
    }
}

/// Trains `cfg` (see [`run_task_until`]) with no stop flag; `log` receives one line per
/// evaluation.
pub fn run_task(
    cfg: &TaskRunConfig,
    out: Option<&Path>,
    log: &mut dyn FnMut(&str),
) -> Result<(TaskSummary, LanguageModel<f32>)> {
    let (_, summary, model) =
        run_task_until(cfg, out, &mut LogLines(log), &AtomicBool::new(false))?;
    Ok((summary, model))
}

/// Trains `cfg` until its `steps` are done or it stops early; returns why it stopped, the
/// summary and the model of the last update.
///
/// With `out`, the run's files go there ([`RunDir`]): a directory without a run gets a new
/// one; a directory holding a run of the same configuration (but for `steps`) continues it
/// from its last checkpoint (nothing to do when it is already done: its summary and model
/// are returned), or starts it over when it never reached a checkpoint; any other run there
/// is an error.
pub fn run_task_until(
    cfg: &TaskRunConfig,
    out: Option<&Path>,
    monitor: &mut dyn Monitor,
    stop: &AtomicBool,
) -> Result<(StopReason, TaskSummary, LanguageModel<f32>)> {
    let mut session = cfg.session()?;
    let mut data = TaskData::new(cfg)?;
    let Some(out) = out else {
        let (reason, summary) = train(&mut session, &mut data, None, monitor, stop)?;
        return Ok((reason, summary, session.trainer.model));
    };
    let toml = toml::to_string(cfg).map_err(|e| Error::Config(e.to_string()))?;
    let json = serde_json::to_string(cfg).map_err(|e| Error::Config(e.to_string()))?;
    let meta = HashMap::from([("rnnscope.task".to_string(), json)]);
    let mut dir = match saved_run(out, cfg)? {
        None => RunDir::create(out, RunKind::Task, &toml, meta, None)?,
        Some(saved) => {
            saved.restore(&mut session, out)?;
            let p = &session.progress;
            let solved = cfg.stop_when_solved && data.task.solved(p.last_metric);
            if p.step >= session.settings.steps || solved {
                monitor.log(&format!(
                    "{}: already at update {} of {}: nothing to do",
                    out.display(),
                    p.step,
                    session.settings.steps
                ));
                let reason = if solved {
                    StopReason::Solved
                } else {
                    StopReason::Finished
                };
                let summary = data.summary(&session, reason.status(), None);
                super::records::write_json(&out.join("summary.json"), &summary)?;
                return Ok((reason, summary, session.trainer.model));
            }
            monitor.log(&format!(
                "continuing {} at update {} of {}",
                out.display(),
                p.step,
                session.settings.steps
            ));
            RunDir::reopen(out, RunKind::Task, p.step, &toml, meta, None)?
        }
    };
    let (reason, summary) = train(&mut session, &mut data, Some(&mut dir), monitor, stop)?;
    Ok((reason, summary, session.trainer.model))
}

/// Held-out sentences that [`write_task_gradflow`] analyses.
pub const GRADFLOW_SENTENCES: usize = 16;

/// A ratio of gradient norms along each path.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PathRatios {
    /// Through the recurrence (the top layer's `dJ^(i)/dh^(j)` carried back step by step).
    pub recurrent: Option<f64>,
    /// Through attention: the one hop from `J^(i)` to `h^(j)` (`None` without attention).
    pub attention: Option<f64>,
}

/// What [`write_task_gradflow`] measured of a trained model on held-out sequences.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TaskGradflow {
    /// `R(l) = P(l) / P(0)` of the profiles at the task's distance `l` (means over every
    /// target step `i`).
    pub profile: PathRatios,
    /// Dependency task, at the scored step `i` and the key noun's step `j`
    /// ([`Task::dependency_steps`]): `mean |dJ^(i)/dh^(j)| / mean |dJ^(i)/dh^(i)|` over the
    /// sentences.
    pub dependent: PathRatios,
    /// Measured per-step decay of the recurrent path (geometric mean).
    pub decay_per_step: Option<f64>,
}

/// Measures the gradient flow of a trained `model` on [`GRADFLOW_SENTENCES`] fresh held-out
/// sequences of `task`, writes the full analysis into `dir` (the files of `rnnscope gradflow`)
/// and returns `R(l)` at the task's distance along each path (and, on the dependency task,
/// the ratio at the dependent word).
///
/// ```text
/// input = task.generate(16, StdRng::seed_from_u64(seed ^ 0xD3))   (its seed is in gradflow.json)
/// ```
pub fn write_task_gradflow(
    model: &LanguageModel<f32>,
    task: &Task,
    seed: u64,
    dir: &Path,
) -> Result<TaskGradflow> {
    let input_seed = seed ^ 0xD3;
    let b = task.generate(GRADFLOW_SENTENCES, &mut StdRng::seed_from_u64(input_seed));
    let mut snap = analysis::snapshot(
        model,
        &b.tokens,
        &b.targets,
        None,
        b.batch,
        &Default::default(),
    )?;
    snap.summary.input = analysis::InputRecord {
        kind: analysis::InputKind::Task,
        source: format!(
            "{}, length {} (held-out sequences)",
            task.kind.name(),
            task.length
        ),
        tokenizer: None,
        windows: b.batch,
        window_length: b.steps,
        seed: input_seed,
        offsets: Vec::new(),
        unknown: 0,
    };
    analysis::output::write_dir(dir, &snap)?;
    let at = |rows: &[analysis::profile::ProfileRow]| rows.get(task.length).and_then(|r| r.ratio);
    // Influence matrices are `[T, T]`, row `i` (target), column `j` (source).
    let steps = b.steps;
    let pair = |m: &[f64]| {
        let (i, j) = task.dependency_steps()?;
        let own = m[i * steps + i];
        (own > 0.0).then(|| m[i * steps + j] / own)
    };
    Ok(TaskGradflow {
        profile: PathRatios {
            recurrent: snap.profiles.last().and_then(|p| at(&p.hidden)),
            attention: snap.attention.as_ref().and_then(|a| at(&a.path)),
        },
        dependent: PathRatios {
            recurrent: snap.influence.last().and_then(|m| pair(m)),
            attention: snap.attention.as_ref().and_then(|a| pair(&a.influence)),
        },
        decay_per_step: snap.summary.decay_per_step,
    })
}

/// The saved state of the run of `cfg` in `dir`, if there is one to continue. A directory
/// without a run, or with a run of `cfg` that never reached its first checkpoint (whose files
/// are removed), gives `None`; a run of anything else is an error.
fn saved_run(dir: &Path, cfg: &TaskRunConfig) -> Result<Option<SavedState>> {
    let config = dir.join("config.toml");
    if !config.exists() {
        RunDir::check_new(dir, false)?;
        return Ok(None);
    }
    let holds = || {
        Error::run_dir(
            dir,
            RunDirProblem::HoldsRun {
                file: "config.toml".into(),
            },
        )
    };
    let text = std::fs::read_to_string(&config).map_err(|e| Error::io(&config, e))?;
    let there: TaskRunConfig = toml::from_str(&text).map_err(|_| holds())?;
    if let Some(detail) = cfg.difference(&there) {
        return Err(Error::run_dir(dir, RunDirProblem::OtherConfig { detail }));
    }
    if !dir.join("train_state.safetensors").exists() {
        RunDir::remove_run(dir)?;
        return Ok(None);
    }
    SavedState::read(dir).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint;
    use crate::train::run::Progress;
    use crate::train::MetricsRow;
    use std::path::PathBuf;

    fn tmpdir(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("rnnscope-task-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    fn config(kind: TaskKind, length: usize, steps: usize) -> TaskRunConfig {
        let mut c = TaskRunConfig::new(kind, length);
        c.hidden = 8;
        c.embedding = 4;
        c.batch = 4;
        c.steps = steps;
        c.eval_every = 10;
        c.test_size = 8;
        c.seed = 3;
        c.lr = 1e-2;
        c
    }

    /// The metrics rows without the throughput.
    fn rows(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("metrics.csv"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut c: Vec<&str> = l.split(',').collect();
                c.remove(5);
                c.join(",")
            })
            .collect()
    }

    /// Raises the stop flag when update `at` is reported: the loop stops after the next one.
    struct StopAt<'a>(u64, &'a AtomicBool);
    impl Monitor for StopAt<'_> {
        fn step(&mut self, p: &Progress, _row: Option<&MetricsRow>) {
            if p.step == self.0 {
                self.1.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }

    #[test]
    fn a_continued_task_run_ends_bit_identical_to_an_uninterrupted_one() {
        for (kind, length) in [(TaskKind::Dependency, 6), (TaskKind::Adding, 5)] {
            let full_dir = tmpdir(&format!("{}-full", kind.name()));
            let (full, full_model) =
                run_task(&config(kind, length, 40), Some(&full_dir), &mut |_| {}).unwrap();
            assert_eq!((full.step, full.status.as_str()), (40, "finished"));

            // Stopped at a checkpoint on the cadence (a shorter run), then continued.
            let half_dir = tmpdir(&format!("{}-half", kind.name()));
            let (half, _) =
                run_task(&config(kind, length, 20), Some(&half_dir), &mut |_| {}).unwrap();
            assert_eq!(half.step, 20);
            let (cont, cont_model) =
                run_task(&config(kind, length, 40), Some(&half_dir), &mut |_| {}).unwrap();
            assert_eq!(cont_model.params(), full_model.params(), "{kind:?}");
            assert_eq!(rows(&half_dir), rows(&full_dir), "{kind:?}");
            assert_eq!(
                (
                    cont.metric,
                    cont.best_metric,
                    cont.test_loss,
                    cont.updates,
                    cont.best_step
                ),
                (
                    full.metric,
                    full.best_metric,
                    full.test_loss,
                    full.updates,
                    full.best_step
                )
            );
            for f in ["last.safetensors", "best.safetensors"] {
                let a = checkpoint::load::<f32>(&full_dir.join(f)).unwrap();
                let b = checkpoint::load::<f32>(&half_dir.join(f)).unwrap();
                assert_eq!(a.model.params(), b.model.params(), "{f}");
            }

            // Interrupted off the cadence (update 15), then continued.
            let stop_dir = tmpdir(&format!("{}-stop", kind.name()));
            let stop = AtomicBool::new(false);
            let (reason, stopped, _) = run_task_until(
                &config(kind, length, 40),
                Some(&stop_dir),
                &mut StopAt(14, &stop),
                &stop,
            )
            .unwrap();
            assert_eq!((reason, stopped.step), (StopReason::Interrupted, 15));
            assert_eq!(stopped.status, "interrupted");
            let (cont, cont_model) =
                run_task(&config(kind, length, 40), Some(&stop_dir), &mut |_| {}).unwrap();
            assert_eq!(cont_model.params(), full_model.params(), "{kind:?}");
            assert_eq!((cont.metric, cont.test_loss), (full.metric, full.test_loss));

            // Done already: nothing trains, the same summary and model come back.
            let mut lines = Vec::new();
            let (again, again_model) =
                run_task(&config(kind, length, 40), Some(&full_dir), &mut |l| {
                    lines.push(l.to_string())
                })
                .unwrap();
            assert!(lines[0].ends_with("already at update 40 of 40: nothing to do"));
            assert_eq!(again_model.params(), full_model.params());
            assert_eq!((again.metric, again.updates), (full.metric, full.updates));
            for d in [full_dir, half_dir, stop_dir] {
                std::fs::remove_dir_all(d).unwrap();
            }
        }
    }

    #[test]
    fn task_options_are_validated_like_train_options() {
        let ok = config(TaskKind::Adding, 5, 3);
        ok.validate().unwrap();
        type Edit = fn(&mut TaskRunConfig);
        let cases: [(Edit, &str); 7] = [
            (|c| c.lr = f64::NAN, "`lr` = NaN must be a positive number"),
            (
                |c| c.clip = Some(-1.0),
                "`clip` = -1 must be a positive number",
            ),
            (
                |c| c.clip_value = Some(0.0),
                "`clip_value` = 0 must be a positive number",
            ),
            (|c| c.steps = 0, "`steps` = 0 must be at least 1"),
            (|c| c.forget_bias = Some(f64::NAN), "`forget_bias` = NaN"),
            (|c| c.init = "uniform:-1".into(), "positive half-width"),
            (|c| c.hidden = 0, "hidden"),
        ];
        for (f, want) in cases {
            let mut c = ok.clone();
            f(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{e} lacks {want}");
        }
    }

    #[test]
    fn a_directory_holding_another_run_is_refused() {
        let dir = tmpdir("other");
        run_task(&config(TaskKind::Order, 10, 10), Some(&dir), &mut |_| {}).unwrap();
        let mut other = config(TaskKind::Order, 10, 10);
        other.hidden = 16;
        let e = run_task(&other, Some(&dir), &mut |_| {}).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: holds a run of another configuration (`hidden` is 8 there, 16 here)",
                dir.display()
            )
        );
        std::fs::write(dir.join("config.toml"), "cell = \"lstm\"\n").unwrap();
        let e = run_task(&other, Some(&dir), &mut |_| {}).unwrap_err();
        assert!(matches!(
            e,
            Error::RunDir {
                problem: RunDirProblem::HoldsRun { .. },
                ..
            }
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}

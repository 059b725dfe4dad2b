//! The training loop: truncated BPTT over a token stream, periodic validation, metrics,
//! checkpoints and exact resumption.
//!
//! The loop takes token streams and an initialised model, not files, so any subcommand can
//! train on its own data ([`Session`], [`TrainData`], [`train`]); [`RunDir`] adds the files of a
//! run directory:
//!
//! ```text
//! config.toml               the resolved configuration (written by the caller)
//! metrics.csv               step,train_loss,valid_loss,lr,grad_norm,tokens_per_s (one row per update)
//! last.safetensors          the model at the last evaluation / at the end
//! best.safetensors          the model with the lowest validation loss so far
//! train_state.safetensors   parameters, optimizer moments, carried hidden state, progress
//! summary.json              where the run stands (rewritten at every checkpoint)
//! ```
//! Update `s` (0-based) trains on window `s mod W` of the stream (W windows per epoch; the
//! carried state is reset at each epoch start) and draws its dropout masks from an RNG seeded
//! with `seed ^ (s * 0x9E3779B97F4A7C15)`, so no RNG needs saving: a resumed run repeats an
//! uninterrupted one exactly. Only the evaluations on the `eval_every` cadence feed the
//! learning-rate schedule (an extra evaluation at a stop does not), for the same reason.
//!
//! A non-finite loss or gradient skips the update (the trainer leaves parameters, optimizer and
//! state untouched), is reported and counted; `max_bad_steps` of them in a row stop the run with
//! an error, leaving the last good checkpoint in place.

use super::eval::{evaluate, EvalResult};
use super::optim::OptimizerConfig;
use super::schedule::{exact_f64, Schedule, ScheduleState, IMPROVEMENT};
use super::step::{Clip, Trainer};
use crate::analysis;
use crate::checkpoint::{self, write_atomic, write_tensors, NamedTensors, TensorFile};
use crate::data::Batches;
use crate::error::{Error, Result};
use crate::model::{LanguageModel, ModelConfig, Workspace};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Header of `metrics.csv`.
pub const METRICS_HEADER: &str = "step,train_loss,valid_loss,lr,grad_norm,tokens_per_s";
/// Metadata key of the training progress in `train_state.safetensors`.
pub const PROGRESS_KEY: &str = "rnnscope.progress";
/// Metadata key of the corpus fingerprint in `train_state.safetensors`.
pub const FINGERPRINT_KEY: &str = "rnnscope.corpus_fingerprint";
/// Metadata key of the update count in checkpoints.
pub const STEP_KEY: &str = "rnnscope.step";

/// How to train (everything but the model and the data).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSettings {
    pub batch: usize,
    pub bptt: usize,
    /// Total updates of the run.
    pub steps: u64,
    pub optimizer: OptimizerConfig,
    /// Base learning rate (the schedule scales it).
    pub lr: f64,
    pub schedule: Schedule,
    pub clip: Clip,
    /// Seeds the dropout masks (the caller seeds the initialisation).
    pub seed: u64,
    /// Validate and checkpoint every this many updates (0 = only at the end).
    pub eval_every: u64,
    /// Stop cleanly after this much wall time of this invocation.
    pub max_time: Option<Duration>,
    /// Stop with an error after this many non-finite steps in a row.
    pub max_bad_steps: u32,
    /// Record a gradient-flow snapshot every this many updates (0 = off).
    pub track_gradflow: u64,
}

/// Where training stands: with the parameters, optimizer state and carried hidden state,
/// everything needed to continue exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Updates attempted so far (windows consumed), including skipped non-finite ones.
    pub step: u64,
    pub schedule: ScheduleState,
    /// Lowest validation loss so far (infinity before the first evaluation).
    #[serde(with = "exact_f64")]
    pub best_valid: f64,
    pub best_step: u64,
    /// Validation loss of the last evaluation (NaN before the first).
    #[serde(with = "exact_f64")]
    pub last_valid: f64,
    /// Non-finite steps in a row, and in total.
    pub bad_steps: u32,
    pub skipped_steps: u64,
    /// Training tokens consumed.
    pub tokens: u64,
    /// Wall time spent in the loop, all invocations together.
    pub seconds: f64,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            step: 0,
            schedule: ScheduleState::default(),
            best_valid: f64::INFINITY,
            best_step: 0,
            last_valid: f64::NAN,
            bad_steps: 0,
            skipped_steps: 0,
            tokens: 0,
            seconds: 0.0,
        }
    }
}

/// The data a run trains and validates on.
pub struct TrainData<'a> {
    pub train: &'a [u32],
    /// Validation stream (empty: no validation, no `best.safetensors`).
    pub valid: &'a [u32],
    /// Test stream, evaluated once at the end with the best parameters (may be empty).
    pub test: &'a [u32],
    /// Name of the training data for error messages (a file name).
    pub name: &'a str,
}

/// One row of `metrics.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsRow {
    /// 1-based update number.
    pub step: u64,
    /// Mean loss of the window (NaN for a skipped non-finite step).
    pub train_loss: f64,
    pub valid_loss: Option<f64>,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens_per_s: f64,
}

impl MetricsRow {
    pub fn csv(&self) -> String {
        format!(
            "{},{:.6},{},{},{:.6},{:.0}",
            self.step,
            self.train_loss,
            self.valid_loss.map_or(String::new(), |v| format!("{v:.6}")),
            self.lr,
            self.grad_norm,
            self.tokens_per_s
        )
    }
}

/// Why the loop stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// All `steps` done.
    Finished,
    /// The stop flag was raised (Ctrl-C).
    Interrupted,
    /// `max_time` reached.
    TimeLimit,
}

/// `summary.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// `running`, `finished`, `interrupted` or `time_limit`.
    pub status: String,
    pub step: u64,
    pub steps: u64,
    pub epochs: f64,
    pub tokens: u64,
    pub seconds: f64,
    pub tokens_per_s: f64,
    pub best_valid_loss: Option<f64>,
    pub best_valid_perplexity: Option<f64>,
    pub best_valid_bits_per_token: Option<f64>,
    pub best_step: Option<u64>,
    pub last_valid_loss: Option<f64>,
    pub test_loss: Option<f64>,
    pub test_perplexity: Option<f64>,
    pub test_bits_per_token: Option<f64>,
    pub skipped_steps: u64,
    pub params: usize,
    pub model: ModelConfig,
}

/// What the loop reports to a user interface.
pub trait Monitor {
    /// Before the first update: where the run starts and how many updates it has in all.
    fn start(&mut self, _progress: &Progress, _total: u64) {}
    /// After every update (with the validation loss when one was computed).
    fn step(&mut self, _row: &MetricsRow, _progress: &Progress) {}
    /// A message for the user (evaluations, skipped steps, schedule decays).
    fn log(&mut self, _msg: &str) {}
    /// After the last update.
    fn finish(&mut self) {}
}

/// A monitor that shows nothing.
pub struct Silent;
impl Monitor for Silent {}

/// A trainer plus the loop's bookkeeping.
pub struct Session {
    pub trainer: Trainer<f32>,
    pub settings: TrainSettings,
    pub progress: Progress,
    /// Parameters with the best validation loss so far.
    pub best_params: Option<Vec<f32>>,
    eval_ws: Workspace<f32>,
}

/// The dropout RNG of update `step` (0-based).
pub fn dropout_rng(seed: u64, step: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

impl Session {
    /// A fresh run from an initialised model.
    pub fn new(model: LanguageModel<f32>, settings: TrainSettings) -> Result<Self> {
        if settings.batch == 0 || settings.bptt == 0 {
            return Err(Error::Config(
                "`batch` and `bptt` must be at least 1".into(),
            ));
        }
        Ok(Session {
            trainer: Trainer::new(model, settings.optimizer.clone(), settings.batch),
            settings,
            progress: Progress::default(),
            best_params: None,
            eval_ws: Workspace::default(),
        })
    }

    /// Learning rate of the next update.
    pub fn lr(&self) -> f64 {
        let s = &self.settings;
        s.schedule
            .lr(s.lr, self.progress.step, s.steps, &self.progress.schedule)
    }

    /// Evaluates the current parameters on `stream` (batch and bptt of the run, no dropout).
    pub fn evaluate(&mut self, stream: &[u32]) -> Result<EvalResult> {
        evaluate(
            &self.trainer.model,
            &mut self.eval_ws,
            stream,
            self.settings.batch,
            self.settings.bptt,
        )
    }

    fn summary(&self, status: &str, windows: usize, test: Option<EvalResult>) -> Summary {
        let p = &self.progress;
        let best = p.best_valid.is_finite().then_some(p.best_valid);
        Summary {
            status: status.into(),
            step: p.step,
            steps: self.settings.steps,
            epochs: p.step as f64 / windows.max(1) as f64,
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
            test_loss: test.map(|t| t.loss),
            test_perplexity: test.map(|t| t.perplexity()),
            test_bits_per_token: test.map(|t| t.bits_per_token()),
            skipped_steps: p.skipped_steps,
            params: self.trainer.model.layout.total(),
            model: self.trainer.model.config.clone(),
        }
    }
}

/// The files of a run directory.
pub struct RunDir {
    pub path: PathBuf,
    metrics: Option<std::fs::File>,
    /// Extra metadata written into every checkpoint (e.g. the vocabulary).
    pub metadata: HashMap<String, String>,
    /// Fingerprint of the data, checked by `--resume`.
    pub fingerprint: String,
}

const RUN_FILES: [&str; 5] = [
    "config.toml",
    "metrics.csv",
    "last.safetensors",
    "train_state.safetensors",
    "summary.json",
];

impl RunDir {
    /// Checks that `path` can hold a new run (absent, or a directory without run files);
    /// creates nothing.
    pub fn check_new(path: &Path) -> Result<()> {
        if path.exists() && !path.is_dir() {
            return Err(Error::Data(format!(
                "{}: exists and is not a directory: choose another --out",
                path.display()
            )));
        }
        if let Some(f) = RUN_FILES.iter().find(|f| path.join(f).exists()) {
            return Err(Error::Data(format!(
                "{}: already holds a run ({f} exists): continue it with --resume {} or choose another --out",
                path.display(),
                path.display()
            )));
        }
        Ok(())
    }

    /// Creates the directory of a new run with its `config.toml` and the metrics header.
    pub fn create(
        path: &Path,
        config_toml: &str,
        metadata: HashMap<String, String>,
        fingerprint: String,
    ) -> Result<Self> {
        Self::check_new(path)?;
        std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
        write_atomic(&path.join("config.toml"), config_toml.as_bytes())?;
        write_atomic(
            &path.join("metrics.csv"),
            format!("{METRICS_HEADER}\n").as_bytes(),
        )?;
        Ok(RunDir {
            path: path.to_path_buf(),
            metrics: None,
            metadata,
            fingerprint,
        })
    }

    /// Reopens a run directory to continue at update `step`: rows of `metrics.csv` beyond it
    /// (written after the last checkpoint) are dropped; `config_toml` replaces `config.toml`.
    pub fn reopen(
        path: &Path,
        step: u64,
        config_toml: &str,
        metadata: HashMap<String, String>,
        fingerprint: String,
    ) -> Result<Self> {
        let mpath = path.join("metrics.csv");
        let text = std::fs::read_to_string(&mpath).map_err(|e| Error::io(&mpath, e))?;
        let mut lines = text.lines();
        if lines.next() != Some(METRICS_HEADER) {
            return Err(Error::Data(format!(
                "{}: the header is not `{METRICS_HEADER}`: this is not a metrics file of rnnscope train",
                mpath.display()
            )));
        }
        let mut kept = format!("{METRICS_HEADER}\n");
        for line in lines {
            let s: u64 = line
                .split(',')
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| {
                    Error::Data(format!("{}: malformed row `{line}`", mpath.display()))
                })?;
            if s <= step {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        write_atomic(&mpath, kept.as_bytes())?;
        write_atomic(&path.join("config.toml"), config_toml.as_bytes())?;
        Ok(RunDir {
            path: path.to_path_buf(),
            metrics: None,
            metadata,
            fingerprint,
        })
    }

    fn write_row(&mut self, row: &MetricsRow) -> Result<()> {
        let mpath = self.path.join("metrics.csv");
        if self.metrics.is_none() {
            let f = std::fs::OpenOptions::new()
                .append(true)
                .open(&mpath)
                .map_err(|e| Error::io(&mpath, e))?;
            self.metrics = Some(f);
        }
        let f = self.metrics.as_mut().expect("opened above");
        writeln!(f, "{}", row.csv()).map_err(|e| Error::io(&mpath, e))
    }

    fn checkpoint_metadata(&self, session: &Session) -> HashMap<String, String> {
        let mut m = self.metadata.clone();
        m.insert(STEP_KEY.into(), session.progress.step.to_string());
        m
    }

    /// Writes `last.safetensors` and `train_state.safetensors` (and `best.safetensors` when
    /// `best`), refusing to save parameters that are not finite.
    fn save(&mut self, session: &Session, best: bool) -> Result<()> {
        if let Some(f) = self.metrics.as_mut() {
            f.flush()
                .map_err(|e| Error::io(self.path.join("metrics.csv"), e))?;
        }
        let model = &session.trainer.model;
        if model.params.iter().any(|p| !p.is_finite()) {
            return Err(Error::Numeric(format!(
                "the parameters are no longer finite at update {}; the last good checkpoint in {} is kept: lower --lr or set --clip",
                session.progress.step,
                self.path.display()
            )));
        }
        let meta = self.checkpoint_metadata(session);
        checkpoint::save(model, &self.path.join("last.safetensors"), &meta)?;
        if best {
            checkpoint::save(model, &self.path.join("best.safetensors"), &meta)?;
        }
        self.save_state(session, &meta)
    }

    fn save_state(&self, session: &Session, meta: &HashMap<String, String>) -> Result<()> {
        let t = &session.trainer;
        let flat = |name: &str, v: &[f32]| (name.to_string(), vec![v.len()], v.to_vec());
        let mut tensors: NamedTensors = vec![
            flat("params", &t.model.params),
            flat("optimizer.m", &t.optimizer.m),
            flat("optimizer.v", &t.optimizer.v),
            flat("state.h", &t.state.h),
        ];
        if !t.state.c.is_empty() {
            tensors.push(flat("state.c", &t.state.c));
        }
        let mut meta = meta.clone();
        meta.insert(
            checkpoint::CONFIG_KEY.into(),
            serde_json::to_string(&t.model.config).expect("config serialises"),
        );
        meta.insert(
            PROGRESS_KEY.into(),
            serde_json::to_string(&session.progress).expect("progress serialises"),
        );
        meta.insert(
            "rnnscope.optimizer_steps".into(),
            t.optimizer.steps.to_string(),
        );
        meta.insert(FINGERPRINT_KEY.into(), self.fingerprint.clone());
        write_tensors(&self.path.join("train_state.safetensors"), &tensors, &meta)
    }

    /// Measures gradient flow on the window just trained (from a zero state, no dropout) and
    /// records it: one row per layer in `gradflow_track.csv`
    /// (`step,layer,rho,sigma_1,decay_per_step,distance_below_1e-3,grad_norm`) and the full
    /// snapshot in `gradflow/step_NNNNNNNN.json`.
    fn track_gradflow(
        &self,
        session: &Session,
        inputs: &[u32],
        targets: &[u32],
        grad_norm: f64,
    ) -> Result<()> {
        let opts = analysis::SnapshotOptions {
            jacobian: None,
            theory_targets: 0,
            ..Default::default()
        };
        let model = &session.trainer.model;
        let snap = analysis::snapshot(model, inputs, targets, None, session.settings.batch, &opts)?;
        let step = session.progress.step;
        let csv = self.path.join("gradflow_track.csv");
        let new = !csv.exists();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&csv)
            .map_err(|e| Error::io(&csv, e))?;
        let mut text = String::new();
        if new {
            text.push_str("step,layer,rho,sigma_1,decay_per_step,distance_below_1e-3,grad_norm\n");
        }
        for l in &snap.summary.per_layer {
            let opt = |v: Option<f64>| v.map_or(String::new(), |x| x.to_string());
            text.push_str(&format!(
                "{step},{},{},{},{},{},{grad_norm}\n",
                l.layer,
                l.rho,
                l.sigma_1,
                opt(l.decay_per_step),
                l.distance_below_1e3
                    .map_or(String::new(), |d| d.to_string()),
            ));
        }
        f.write_all(text.as_bytes())
            .map_err(|e| Error::io(&csv, e))?;
        let dir = self.path.join("gradflow");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let json = serde_json::to_string(&snap).expect("snapshot serialises");
        write_atomic(&dir.join(format!("step_{step:08}.json")), json.as_bytes())
    }

    /// Writes `summary.json`.
    pub fn write_summary(&self, summary: &Summary) -> Result<()> {
        let json = serde_json::to_string_pretty(summary).expect("summary serialises");
        write_atomic(
            &self.path.join("summary.json"),
            format!("{json}\n").as_bytes(),
        )
    }
}

/// What `train_state.safetensors` holds besides the tensors, for checks before resuming.
pub struct SavedState {
    file: TensorFile,
    pub model: ModelConfig,
    pub progress: Progress,
    pub fingerprint: Option<String>,
}

impl SavedState {
    /// Reads `RUN_DIR/train_state.safetensors`; an empty or foreign directory is an error.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("train_state.safetensors");
        if !dir.is_dir() {
            return Err(Error::Data(format!(
                "{}: no such run directory: start a run with --out {}",
                dir.display(),
                dir.display()
            )));
        }
        if !path.exists() || !dir.join("config.toml").exists() {
            return Err(Error::Data(format!(
                "{}: nothing to resume (no train_state.safetensors and config.toml; a run writes them at its first evaluation): start a run with --out {}",
                dir.display(),
                dir.display()
            )));
        }
        let file = TensorFile::open(&path)?;
        let model = file.model_config()?;
        let json = file.metadata.get(PROGRESS_KEY).ok_or_else(|| {
            Error::checkpoint(
                &path,
                format!("metadata `{PROGRESS_KEY}` is missing: not a training state"),
            )
        })?;
        let progress: Progress = serde_json::from_str(json).map_err(|e| {
            Error::checkpoint(
                &path,
                format!("metadata `{PROGRESS_KEY}` is unreadable: {e}"),
            )
        })?;
        let fingerprint = file.metadata.get(FINGERPRINT_KEY).cloned();
        Ok(SavedState {
            file,
            model,
            progress,
            fingerprint,
        })
    }

    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.file.metadata
    }

    /// Puts the saved parameters, optimizer state, hidden state and progress into `session`.
    /// Also reloads `best.safetensors` (if any) as the best parameters.
    pub fn restore(&self, session: &mut Session, dir: &Path) -> Result<()> {
        let path = &self.file.path;
        let t = &mut session.trainer;
        if self.model != t.model.config {
            return Err(Error::checkpoint(
                path,
                "the saved model differs from the run's config.toml: the directory's files do not belong together",
            ));
        }
        let load = |name: &str, dst: &mut Vec<f32>| -> Result<()> {
            let src = self.file.get_shaped(name, &[dst.len()])?;
            for (d, &s) in dst.iter_mut().zip(&src.data) {
                *d = s as f32;
            }
            Ok(())
        };
        load("params", &mut t.model.params)?;
        load("optimizer.m", &mut t.optimizer.m)?;
        load("optimizer.v", &mut t.optimizer.v)?;
        load("state.h", &mut t.state.h)?;
        if !t.state.c.is_empty() {
            load("state.c", &mut t.state.c)?;
        }
        t.optimizer.steps = self
            .file
            .metadata
            .get("rnnscope.optimizer_steps")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                Error::checkpoint(path, "metadata `rnnscope.optimizer_steps` is missing")
            })?;
        session.progress = self.progress.clone();
        let best = dir.join("best.safetensors");
        session.best_params = if best.exists() {
            let ck = checkpoint::load::<f32>(&best)?;
            if ck.model.config != session.trainer.model.config {
                return Err(Error::checkpoint(
                    &best,
                    "not a checkpoint of this run's model",
                ));
            }
            Some(ck.model.params)
        } else {
            None
        };
        Ok(())
    }
}

/// Trains `session` on `data` until its `steps` are done, the `stop` flag is raised or the time
/// limit is reached; validates and checkpoints on the way (see the module docs).
pub fn train(
    session: &mut Session,
    data: &TrainData,
    mut dir: Option<&mut RunDir>,
    monitor: &mut dyn Monitor,
    stop: &AtomicBool,
) -> Result<(StopReason, Summary)> {
    let (batch, bptt) = (session.settings.batch, session.settings.bptt);
    let batches = Batches::new(data.train, batch, bptt, data.name)?;
    let windows = batches.windows as u64;
    let total = session.settings.steps;
    let clip = session.settings.clip;
    let seed = session.settings.seed;
    let eval_every = session.settings.eval_every;
    let has_valid = data.valid.len() >= 2;
    let mut inputs = vec![0u32; batch * bptt];
    let mut targets = vec![0u32; batch * bptt];
    let start = Instant::now();
    let seconds_before = session.progress.seconds;
    monitor.start(&session.progress, total);
    let mut reason = StopReason::Finished;
    while session.progress.step < total {
        let step = session.progress.step;
        let w = (step % windows) as usize;
        if w == 0 {
            session.trainer.reset_state();
        }
        batches.window(w, &mut inputs, &mut targets);
        let lr = session.lr();
        let mut rng = dropout_rng(seed, step);
        let t0 = Instant::now();
        let optimizer_steps = session.trainer.optimizer.steps;
        let result = session
            .trainer
            .step(&inputs, &targets, lr, clip, Some(&mut rng));
        let dt = t0.elapsed().as_secs_f64();
        let p = &mut session.progress;
        p.step += 1;
        p.tokens += (batch * bptt) as u64;
        let mut row = MetricsRow {
            step: p.step,
            train_loss: f64::NAN,
            valid_loss: None,
            lr,
            grad_norm: f64::NAN,
            tokens_per_s: (batch * bptt) as f64 / dt.max(1e-9),
        };
        match result {
            Ok(stats) => {
                p.bad_steps = 0;
                row.train_loss = stats.loss;
                row.grad_norm = stats.grad_norm;
            }
            Err(Error::Numeric(msg)) => {
                p.bad_steps += 1;
                p.skipped_steps += 1;
                // The trainer counts optimizer updates; the loop counts windows.
                let msg = msg.replace(&format!(" at update {}", optimizer_steps + 1), "");
                monitor.log(&format!("warning: update {}: {msg}", p.step));
            }
            Err(e) => return Err(e),
        }
        if stop.load(Ordering::SeqCst) {
            reason = StopReason::Interrupted;
        } else if session
            .settings
            .max_time
            .is_some_and(|m| start.elapsed() >= m)
        {
            reason = StopReason::TimeLimit;
        }
        let stopping = p.step >= total || reason != StopReason::Finished;
        let failed = p.bad_steps >= session.settings.max_bad_steps;
        let on_cadence = eval_every > 0 && p.step % eval_every == 0;
        let mut improved = false;
        if has_valid && (on_cadence || stopping) && !failed {
            let r = session.evaluate(data.valid)?;
            let p = &mut session.progress;
            row.valid_loss = Some(r.loss);
            p.last_valid = r.loss;
            improved = r.loss.is_finite() && r.loss < p.best_valid;
            if improved {
                p.best_valid = r.loss;
                p.best_step = p.step;
            }
            let mut msg = format!(
                "step {}/{} (epoch {:.2}): train {:.4}  valid {:.4} (ppl {:.3}){}  lr {:.3e}",
                p.step,
                total,
                p.step as f64 / windows as f64,
                row.train_loss,
                r.loss,
                r.perplexity(),
                if improved { "  best" } else { "" },
                lr
            );
            if on_cadence {
                let sched = session.settings.schedule;
                if let Some(scale) = sched.observe(&mut p.schedule, r.loss) {
                    msg.push_str(&format!(
                        "; no improvement by {IMPROVEMENT} nats: lr now {:.3e}",
                        session.settings.lr * scale
                    ));
                }
            }
            monitor.log(&msg);
            if improved {
                session.best_params = Some(session.trainer.model.params.clone());
            }
        }
        session.progress.seconds = seconds_before + start.elapsed().as_secs_f64();
        if let Some(d) = dir.as_deref_mut() {
            d.write_row(&row)?;
        }
        monitor.step(&row, &session.progress);
        let track = session.settings.track_gradflow;
        if track > 0 && session.progress.step % track == 0 && row.grad_norm.is_finite() {
            if let Some(d) = dir.as_deref() {
                if let Err(e) = d.track_gradflow(session, &inputs, &targets, row.grad_norm) {
                    monitor.log(&format!("warning: gradient-flow tracking failed: {e}"));
                }
            }
        }
        if failed {
            monitor.finish();
            let where_ = dir.as_deref().map_or(String::new(), |d| {
                format!("; the last good checkpoint is in {}", d.path.display())
            });
            return Err(Error::Numeric(format!(
                "{} non-finite steps in a row (last at update {}): training stopped{where_}: lower --lr, set --clip or change --init",
                session.progress.bad_steps, session.progress.step
            )));
        }
        if on_cadence || stopping {
            if let Some(d) = dir.as_deref_mut() {
                d.save(session, improved)?;
                d.write_summary(&session.summary("running", windows as usize, None))?;
            }
        }
        if stopping {
            break;
        }
    }
    monitor.finish();
    let test = if data.test.len() >= 2 {
        let mut model = session.trainer.model.clone();
        if let Some(best) = &session.best_params {
            model.params.clone_from(best);
        }
        let r = evaluate(&model, &mut session.eval_ws, data.test, batch, bptt)?;
        monitor.log(&format!(
            "test (best parameters): loss {:.4}  ppl {:.3}  {:.4} bits/token",
            r.loss,
            r.perplexity(),
            r.bits_per_token()
        ));
        Some(r)
    } else {
        None
    };
    let status = match reason {
        StopReason::Finished => "finished",
        StopReason::Interrupted => "interrupted",
        StopReason::TimeLimit => "time_limit",
    };
    let summary = session.summary(status, windows as usize, test);
    if let Some(d) = dir.as_deref() {
        d.write_summary(&summary)?;
    }
    Ok((reason, summary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::{Activation, CellKind};
    use crate::init::{initialize, InitConfig};
    use crate::train::OptimizerKind;
    use rand::Rng;

    fn setup(steps: u64, dropout: f64) -> (Session, Vec<u32>) {
        let c = ModelConfig {
            cell: CellKind::Lstm,
            activation: Activation::Tanh,
            vocab: 6,
            embedding: 4,
            hidden: 8,
            layers: 2,
            dropout,
            tie: false,
            input_size: 0,
            output: Default::default(),
        };
        let mut m = LanguageModel::zeros(c).unwrap();
        initialize(&mut m, &InitConfig::default()).unwrap();
        let settings = TrainSettings {
            batch: 3,
            bptt: 5,
            steps,
            optimizer: OptimizerConfig::new(OptimizerKind::Adam),
            lr: 1e-2,
            schedule: Schedule::parse("plateau:2:0").unwrap(),
            clip: Clip::Norm(1.0),
            seed: 7,
            eval_every: 4,
            max_time: None,
            max_bad_steps: 3,
            track_gradflow: 0,
        };
        let mut rng = StdRng::seed_from_u64(1);
        let stream = (0..200).map(|_| rng.gen_range(0..6)).collect();
        (Session::new(m, settings).unwrap(), stream)
    }

    fn tmpdir(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("rnnscope-run-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    fn data(s: &[u32]) -> TrainData<'_> {
        TrainData {
            train: &s[..160],
            valid: &s[160..],
            test: &[],
            name: "stream",
        }
    }

    #[test]
    fn resumed_run_repeats_the_uninterrupted_one_bit_for_bit() {
        let stop = AtomicBool::new(false);
        let (mut full, stream) = setup(24, 0.3);
        let d = tmpdir("full");
        let mut rd = RunDir::create(&d, "", HashMap::new(), "x".into()).unwrap();
        train(&mut full, &data(&stream), Some(&mut rd), &mut Silent, &stop).unwrap();

        let (mut half, _) = setup(12, 0.3);
        let h = tmpdir("half");
        let mut rd = RunDir::create(&h, "", HashMap::new(), "x".into()).unwrap();
        train(&mut half, &data(&stream), Some(&mut rd), &mut Silent, &stop).unwrap();
        let (mut resumed, _) = setup(24, 0.3);
        let saved = SavedState::read(&h).unwrap();
        saved.restore(&mut resumed, &h).unwrap();
        assert_eq!(resumed.progress.step, 12);
        let mut rd = RunDir::reopen(&h, 12, "", HashMap::new(), "x".into()).unwrap();
        train(
            &mut resumed,
            &data(&stream),
            Some(&mut rd),
            &mut Silent,
            &stop,
        )
        .unwrap();

        assert_eq!(resumed.trainer.model.params, full.trainer.model.params);
        assert_eq!(resumed.trainer.optimizer.m, full.trainer.optimizer.m);
        assert_eq!(resumed.progress.schedule, full.progress.schedule);
        let a = std::fs::read_to_string(d.join("metrics.csv")).unwrap();
        let b = std::fs::read_to_string(h.join("metrics.csv")).unwrap();
        let strip = |s: &str| -> Vec<String> {
            s.lines()
                .map(|l| l.rsplit_once(',').unwrap().0.to_string())
                .collect()
        };
        assert_eq!(strip(&a), strip(&b));
        assert_eq!(a.lines().count(), 25);
        for p in [d, h] {
            std::fs::remove_dir_all(p).unwrap();
        }
    }

    #[test]
    fn non_finite_steps_stop_the_run_and_keep_the_last_good_checkpoint() {
        let stop = AtomicBool::new(false);
        let (mut s, stream) = setup(8, 0.0);
        let d = tmpdir("nan");
        let mut rd = RunDir::create(&d, "", HashMap::new(), "x".into()).unwrap();
        train(&mut s, &data(&stream), Some(&mut rd), &mut Silent, &stop).unwrap();
        let good = checkpoint::load::<f32>(&d.join("last.safetensors")).unwrap();
        assert_eq!(good.model.params, s.trainer.model.params);
        // Poison one decoder bias: every later step has a non-finite loss and is skipped.
        *s.trainer.model.params.last_mut().unwrap() = f32::NAN;
        s.settings.steps = 20;
        let err = train(&mut s, &data(&stream), Some(&mut rd), &mut Silent, &stop)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("3 non-finite steps in a row (last at update 11)"),
            "{err}"
        );
        assert_eq!(s.progress.skipped_steps, 3);
        let after = checkpoint::load::<f32>(&d.join("last.safetensors")).unwrap();
        assert_eq!(after.model.params, good.model.params);
        let metrics = std::fs::read_to_string(d.join("metrics.csv")).unwrap();
        assert!(
            metrics.lines().last().unwrap().starts_with("11,NaN,"),
            "{metrics}"
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn stop_flag_ends_after_one_step_with_a_checkpoint() {
        let stop = AtomicBool::new(true);
        let (mut s, stream) = setup(100, 0.0);
        let d = tmpdir("stop");
        let mut rd = RunDir::create(&d, "", HashMap::new(), "x".into()).unwrap();
        let (reason, summary) =
            train(&mut s, &data(&stream), Some(&mut rd), &mut Silent, &stop).unwrap();
        assert_eq!(reason, StopReason::Interrupted);
        assert_eq!((summary.step, summary.status.as_str()), (1, "interrupted"));
        assert!(d.join("last.safetensors").exists() && d.join("best.safetensors").exists());
        std::fs::remove_dir_all(d).unwrap();
    }
}

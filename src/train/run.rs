//! The training loop, one for every kind of run: a language model on a token stream
//! (`rnnscope train`) and the synthetic tasks (`task`, `experiment`, `demo`).
//!
//! [`train`] runs a [`Session`] (model, optimizer, progress) on a [`RunData`], which says what
//! differs between the kinds: where the batch of each update comes from and whether the
//! recurrent state carries over from the previous one, what an evaluation returns (a loss, and
//! a task's metric), which evaluation is better, and what `summary.json` holds. Two types
//! implement it: [`super::stream::StreamData`] (truncated BPTT over a stream, state carried,
//! validation and test on streams) and [`super::task::TaskData`] (a fresh batch every update
//! from a zero state, a fixed held-out test set scored with the task's metric). It is a trait
//! rather than an enum so that each kind keeps its own typed summary and its code in its own
//! file, and the loop knows nothing of corpora or tasks. The loop owns everything else:
//!
//! - the update count and the learning-rate schedule (only the evaluations on the `eval_every`
//!   cadence feed it; an extra evaluation at a stop does not, so a continued run repeats an
//!   uninterrupted one);
//! - clipping ([`Clip`]) and the non-finite guard: a non-finite loss or gradient skips the
//!   update (parameters, optimizer and state untouched), is reported and counted, and
//!   `max_bad_steps` of them in a row stop the run with [`Error::Diverged`], leaving the last
//!   good checkpoint in place;
//! - evaluation every `eval_every` updates and at a stop, best tracking (lower loss, or the
//!   task metric's direction), `metrics.csv` rows ([`MetricsRow`]), the [`Monitor`] callbacks;
//! - stopping: all `steps` done, the stop flag (Ctrl-C), `max_time`, or a solved task
//!   (`stop_when_solved`);
//! - checkpoints at every evaluation through [`RunDir`] (optional: without one nothing is
//!   written).
//!
//! Update `s` (0-based) draws its dropout masks from an RNG seeded with
//! `seed ^ (s * 0x9E3779B97F4A7C15)` and its batch from `RunData::batch(s)`, so no RNG needs
//! saving: a run continued from its checkpoint repeats an uninterrupted one bit for bit.

use super::optim::OptimizerConfig;
use super::records::MetricsRow;
use super::rundir::RunDir;
use super::schedule::{exact_f64, Schedule, ScheduleState, IMPROVEMENT};
use super::step::{Batch, Clip, Trainer};
use crate::analysis::{GradflowSnapshot, InputKind, InputRecord};
use crate::error::{Error, Result};
use crate::model::LanguageModel;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How to train (everything but the model and the data).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSettings {
    /// Sequences per update (the data must deliver batches of this size).
    pub batch: usize,
    /// Total updates of the run.
    pub steps: u64,
    pub optimizer: OptimizerConfig,
    /// Base learning rate (the schedule scales it).
    pub lr: f64,
    pub schedule: Schedule,
    pub clip: Clip,
    /// Seeds the dropout masks (the caller seeds the initialisation and the data).
    pub seed: u64,
    /// Evaluate and checkpoint every this many updates (0 = only at the end).
    pub eval_every: u64,
    /// Stop cleanly after this much wall time of this invocation.
    pub max_time: Option<Duration>,
    /// Stop with an error after this many non-finite steps in a row (0 = never).
    pub max_bad_steps: u32,
    /// Record a gradient-flow snapshot every this many updates (0 = off; token batches only).
    pub track_gradflow: u64,
    /// Stop at the first evaluation that the data calls solved.
    pub stop_when_solved: bool,
}

/// Where training stands: with the parameters, optimizer state and carried hidden state,
/// everything needed to continue exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Updates attempted so far (batches consumed), including skipped non-finite ones.
    pub step: u64,
    pub schedule: ScheduleState,
    /// Loss of the best evaluation so far (the lowest, for a language model; infinity
    /// before the first evaluation).
    #[serde(with = "exact_f64")]
    pub best_valid: f64,
    pub best_step: u64,
    /// Loss of the last evaluation (NaN before the first).
    #[serde(with = "exact_f64")]
    pub last_valid: f64,
    /// Task metric of the best and of the last evaluation (NaN when none).
    #[serde(with = "exact_f64", default = "nan")]
    pub best_metric: f64,
    #[serde(with = "exact_f64", default = "nan")]
    pub last_metric: f64,
    /// Non-finite steps in a row, and in total.
    pub bad_steps: u32,
    pub skipped_steps: u64,
    /// Training tokens (time steps x sequences) consumed.
    pub tokens: u64,
    /// Wall time spent in the loop, all invocations together.
    pub seconds: f64,
}

fn nan() -> f64 {
    f64::NAN
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            step: 0,
            schedule: ScheduleState::default(),
            best_valid: f64::INFINITY,
            best_step: 0,
            last_valid: f64::NAN,
            best_metric: f64::NAN,
            last_metric: f64::NAN,
            bad_steps: 0,
            skipped_steps: 0,
            tokens: 0,
            seconds: 0.0,
        }
    }
}

impl Progress {
    /// The best evaluation so far.
    pub fn best(&self) -> Evaluation {
        Evaluation {
            loss: self.best_valid,
            metric: (!self.best_metric.is_nan()).then_some(self.best_metric),
        }
    }

    /// Updates applied (attempted minus skipped).
    pub fn updates(&self) -> u64 {
        self.step - self.skipped_steps
    }
}

/// What an evaluation on held-out data returns.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// Loss of the held-out data (the model's training loss).
    pub loss: f64,
    /// The task's own metric (accuracy, test MSE); `None` for a language model.
    pub metric: Option<f64>,
}

/// The batch of one update, as [`RunData::batch`] hands it to the loop.
pub struct Feed<'a> {
    pub batch: Batch<'a, f32>,
    /// Per-position loss weights `[T * B]` (`None`: the mean over all positions).
    pub weights: Option<&'a [f32]>,
    /// Whether the recurrent state carries over from the previous update (else zeros).
    pub carry: bool,
    /// Tokens (time steps x sequences) of the batch.
    pub tokens: u64,
}

/// What differs between the kinds of run (see the module docs).
pub trait RunData {
    /// What `summary.json` holds for this kind of run.
    type Summary: Serialize;
    /// A `metrics.csv` row after every update (else one per evaluation, averaging the updates
    /// since the previous row).
    const ROW_PER_UPDATE: bool;
    /// The batch of update `step` (0-based), a function of `step` alone.
    fn batch(&mut self, step: u64) -> Feed<'_>;
    /// What a gradient-flow snapshot tracked at update `step` (0-based) analyses: the batch of
    /// that update, from a zero state.
    fn tracked_input(&self, step: u64, seed: u64) -> InputRecord {
        InputRecord {
            kind: InputKind::TrainingBatch,
            source: format!("update {}", step + 1),
            seed,
            ..Default::default()
        }
    }
    /// Sees the snapshot tracked after update `step` (1-based).
    fn tracked(&mut self, _step: u64, _snap: &GradflowSnapshot) {}
    /// Scores `model` on the held-out data (`None` when there is none).
    fn evaluate(&mut self, model: &LanguageModel<f32>) -> Result<Option<Evaluation>>;
    /// Whether evaluation `a` is better than `than` (which may be [`Progress::best`] before
    /// any evaluation).
    fn better(&self, a: &Evaluation, than: &Evaluation) -> bool;
    /// Whether an evaluation meets the success criterion (`stop_when_solved`).
    fn solved(&self, _e: &Evaluation) -> bool {
        false
    }
    /// The evaluation in a log line after update `step`, e.g. `valid 1.2345 (ppl 3.437)`.
    fn describe(&self, step: u64, e: &Evaluation) -> String;
    /// The final test after the last update (reported to `monitor`), if this kind has one.
    fn test(
        &mut self,
        _session: &Session,
        _monitor: &mut dyn Monitor,
    ) -> Result<Option<Evaluation>> {
        Ok(None)
    }
    /// `summary.json` with `status` (`running`, or [`StopReason::status`]).
    fn summary(&self, session: &Session, status: &str, test: Option<&Evaluation>) -> Self::Summary;
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
    /// An evaluation met the task's success criterion (`stop_when_solved`).
    Solved,
}

impl StopReason {
    /// The `status` of `summary.json`.
    pub fn status(self) -> &'static str {
        match self {
            StopReason::Finished => "finished",
            StopReason::Interrupted => "interrupted",
            StopReason::TimeLimit => "time_limit",
            StopReason::Solved => "solved",
        }
    }
}

/// What the loop reports to a user interface.
pub trait Monitor {
    /// Before the first update: where the run starts and how many updates it has in all.
    fn start(&mut self, _progress: &Progress, _total: u64) {}
    /// After every update, with the `metrics.csv` row when one was written.
    fn step(&mut self, _progress: &Progress, _row: Option<&MetricsRow>) {}
    /// A message for the user (evaluations, skipped steps, schedule decays).
    fn log(&mut self, _msg: &str) {}
    /// After the last update.
    fn finish(&mut self) {}
}

/// A monitor that shows nothing.
pub struct Silent;
impl Monitor for Silent {}

/// A monitor that passes the log lines to a function.
pub struct LogLines<'a>(pub &'a mut dyn FnMut(&str));
impl Monitor for LogLines<'_> {
    fn log(&mut self, msg: &str) {
        (self.0)(msg)
    }
}

/// A trainer plus the loop's bookkeeping.
pub struct Session {
    pub trainer: Trainer<f32>,
    pub settings: TrainSettings,
    pub progress: Progress,
    /// Parameters of the best evaluation so far.
    pub best_params: Option<Vec<f32>>,
}

/// The dropout RNG of update `step` (0-based).
pub fn dropout_rng(seed: u64, step: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

impl Session {
    /// A fresh run from an initialised model.
    pub fn new(model: LanguageModel<f32>, settings: TrainSettings) -> Result<Self> {
        if settings.batch == 0 {
            return Err(Error::Config("`batch` must be at least 1".into()));
        }
        Ok(Session {
            trainer: Trainer::new(model, settings.optimizer.clone(), settings.batch),
            settings,
            progress: Progress::default(),
            best_params: None,
        })
    }

    /// Learning rate of the next update.
    pub fn lr(&self) -> f64 {
        let s = &self.settings;
        s.schedule
            .lr(s.lr, self.progress.step, s.steps, &self.progress.schedule)
    }

    /// The model with the best parameters so far (the current ones before any evaluation).
    pub fn best_model(&self) -> LanguageModel<f32> {
        let mut model = self.trainer.model.clone();
        if let Some(best) = &self.best_params {
            model.set_params(best);
        }
        model
    }
}

/// Sums over the updates since the last `metrics.csv` row.
#[derive(Default)]
struct RowSums {
    loss: f64,
    grad_norm: f64,
    /// Updates with a finite loss and gradient among them.
    finite: u32,
    tokens: u64,
    /// Time spent in the updates themselves.
    seconds: f64,
}

impl RowSums {
    fn train_loss(&self) -> f64 {
        if self.finite == 0 {
            f64::NAN
        } else {
            self.loss / f64::from(self.finite)
        }
    }

    /// The row of update `step` covering the sums so far, which start again from zero.
    fn take(&mut self, step: u64, lr: f64, eval: Option<&Evaluation>) -> MetricsRow {
        let row = MetricsRow {
            step,
            train_loss: self.train_loss(),
            valid_loss: eval.map(|e| e.loss),
            lr,
            grad_norm: if self.finite == 0 {
                f64::NAN
            } else {
                self.grad_norm / f64::from(self.finite)
            },
            tokens_per_s: self.tokens as f64 / self.seconds.max(1e-9),
            metric: eval.and_then(|e| e.metric),
        };
        *self = RowSums::default();
        row
    }
}

/// Trains `session` on `data` until its `steps` are done or it stops early (stop flag, time
/// limit, solved task); evaluates, writes rows and checkpoints into `dir` on the way (see the
/// module docs). Returns why it stopped and the final summary.
pub fn train<D: RunData>(
    session: &mut Session,
    data: &mut D,
    mut dir: Option<&mut RunDir>,
    monitor: &mut dyn Monitor,
    stop: &AtomicBool,
) -> Result<(StopReason, D::Summary)> {
    let s = session.settings.clone();
    let total = s.steps;
    let start = Instant::now();
    let seconds_before = session.progress.seconds;
    monitor.start(&session.progress, total);
    let mut reason = StopReason::Finished;
    let mut sums = RowSums::default();
    while session.progress.step < total {
        let step = session.progress.step;
        let lr = session.lr();
        let tracked = (s.track_gradflow > 0 && (step + 1).is_multiple_of(s.track_gradflow))
            .then(|| data.tracked_input(step, s.seed));
        let mut tracked_snap = None;
        let feed = data.batch(step);
        if !feed.carry {
            session.trainer.reset_state();
        }
        let mut rng = dropout_rng(s.seed, step);
        let t0 = Instant::now();
        let result =
            session
                .trainer
                .step_batch(feed.batch, feed.weights, lr, s.clip, Some(&mut rng));
        sums.seconds += t0.elapsed().as_secs_f64();
        sums.tokens += feed.tokens;
        let p = &mut session.progress;
        p.step += 1;
        p.tokens += feed.tokens;
        match result {
            Ok(stats) => {
                p.bad_steps = 0;
                sums.loss += stats.loss;
                sums.grad_norm += stats.grad_norm;
                sums.finite += 1;
                if let Some(input) = tracked {
                    if let (Some(d), Batch::Tokens { inputs, targets }) =
                        (dir.as_deref(), feed.batch)
                    {
                        match d.track_gradflow(session, inputs, targets, input, stats.grad_norm) {
                            Ok(snap) => tracked_snap = Some(snap),
                            Err(e) => {
                                monitor.log(&format!("warning: gradient-flow tracking failed: {e}"))
                            }
                        }
                    }
                }
            }
            Err(e @ Error::NonFiniteStep { .. }) => {
                p.bad_steps += 1;
                p.skipped_steps += 1;
                monitor.log(&format!("warning: update {}: {e}", p.step));
            }
            Err(Error::Numeric(msg)) => {
                p.bad_steps += 1;
                p.skipped_steps += 1;
                monitor.log(&format!("warning: update {}: {msg}", p.step));
            }
            Err(e) => return Err(e),
        }
        if let Some(snap) = tracked_snap {
            data.tracked(session.progress.step, &snap);
        }
        let p = &session.progress;
        if stop.load(Ordering::SeqCst) {
            reason = StopReason::Interrupted;
        } else if s.max_time.is_some_and(|m| start.elapsed() >= m) {
            reason = StopReason::TimeLimit;
        }
        let mut stopping = p.step >= total || reason != StopReason::Finished;
        let failed = s.max_bad_steps > 0 && p.bad_steps >= s.max_bad_steps;
        let on_cadence = s.eval_every > 0 && p.step.is_multiple_of(s.eval_every);
        let mut improved = false;
        let mut eval = None;
        if (on_cadence || stopping) && !failed {
            if let Some(e) = data.evaluate(&session.trainer.model)? {
                let p = &mut session.progress;
                p.last_valid = e.loss;
                p.last_metric = e.metric.unwrap_or(f64::NAN);
                improved = data.better(&e, &p.best());
                if improved {
                    p.best_valid = e.loss;
                    p.best_metric = e.metric.unwrap_or(f64::NAN);
                    p.best_step = p.step;
                }
                let mut msg = format!(
                    "step {}/{total}: train {:.4}  {}{}  lr {lr:.3e}",
                    p.step,
                    sums.train_loss(),
                    data.describe(p.step, &e),
                    if improved { "  best" } else { "" },
                );
                if on_cadence {
                    if let Some(scale) = s.schedule.observe(&mut p.schedule, e.loss) {
                        msg.push_str(&format!(
                            "; no improvement by {IMPROVEMENT}: lr now {:.3e}",
                            s.lr * scale
                        ));
                    }
                }
                monitor.log(&msg);
                if improved {
                    session.best_params = Some(session.trainer.model.params().to_vec());
                }
                if s.stop_when_solved && data.solved(&e) && reason == StopReason::Finished {
                    reason = StopReason::Solved;
                    stopping = true;
                }
                eval = Some(e);
            }
        }
        session.progress.seconds = seconds_before + start.elapsed().as_secs_f64();
        let row = (D::ROW_PER_UPDATE || eval.is_some() || failed)
            .then(|| sums.take(session.progress.step, lr, eval.as_ref()));
        if let (Some(d), Some(row)) = (dir.as_deref_mut(), &row) {
            d.write_row(row)?;
        }
        monitor.step(&session.progress, row.as_ref());
        if failed {
            monitor.finish();
            return Err(Error::Diverged {
                bad_steps: session.progress.bad_steps,
                step: session.progress.step,
                checkpoint: dir.as_deref().map(|d| d.path.clone()),
            });
        }
        if on_cadence || stopping {
            if let Some(d) = dir.as_deref_mut() {
                d.save(session, improved)?;
                d.write_summary(&data.summary(session, "running", None))?;
            }
        }
        if stopping {
            break;
        }
    }
    monitor.finish();
    let test = data.test(session, monitor)?;
    let summary = data.summary(session, reason.status(), test.as_ref());
    if let Some(d) = dir.as_deref() {
        d.write_summary(&summary)?;
    }
    Ok((reason, summary))
}

#[cfg(test)]
mod tests {
    use super::super::rundir::{RunKind, SavedState};
    use super::super::stream::StreamData;
    use super::*;
    use crate::cell::{Activation, CellKind};
    use crate::checkpoint;
    use crate::init::{initialize, InitConfig};
    use crate::model::ModelConfig;
    use crate::train::OptimizerKind;
    use rand::Rng;
    use std::collections::HashMap;
    use std::path::PathBuf;

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
            recurrence: Default::default(),
            residual: false,
            attention: Default::default(),
            attention_span: 0,
            proj_size: 0,
        };
        let mut m = LanguageModel::zeros(c).unwrap();
        initialize(&mut m, &InitConfig::default()).unwrap();
        let settings = TrainSettings {
            batch: 3,
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
            stop_when_solved: false,
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

    fn data(s: &[u32]) -> StreamData<'_> {
        StreamData::new(&s[..160], &s[160..], &[], "stream", 3, 5).unwrap()
    }

    fn create(d: &std::path::Path) -> RunDir {
        RunDir::create(
            d,
            RunKind::LanguageModel,
            "",
            HashMap::new(),
            Some("x".into()),
        )
        .unwrap()
    }

    #[test]
    fn resumed_run_repeats_the_uninterrupted_one_bit_for_bit() {
        let stop = AtomicBool::new(false);
        let (mut full, stream) = setup(24, 0.3);
        let d = tmpdir("full");
        let mut rd = create(&d);
        train(
            &mut full,
            &mut data(&stream),
            Some(&mut rd),
            &mut Silent,
            &stop,
        )
        .unwrap();

        let (mut half, _) = setup(12, 0.3);
        let h = tmpdir("half");
        let mut rd = create(&h);
        train(
            &mut half,
            &mut data(&stream),
            Some(&mut rd),
            &mut Silent,
            &stop,
        )
        .unwrap();
        let (mut resumed, _) = setup(24, 0.3);
        let saved = SavedState::read(&h).unwrap();
        saved.restore(&mut resumed, &h).unwrap();
        assert_eq!(resumed.progress.step, 12);
        let mut rd = RunDir::reopen(
            &h,
            RunKind::LanguageModel,
            12,
            "",
            HashMap::new(),
            Some("x".into()),
        )
        .unwrap();
        train(
            &mut resumed,
            &mut data(&stream),
            Some(&mut rd),
            &mut Silent,
            &stop,
        )
        .unwrap();

        assert_eq!(resumed.trainer.model.params(), full.trainer.model.params());
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
        let mut rd = create(&d);
        train(
            &mut s,
            &mut data(&stream),
            Some(&mut rd),
            &mut Silent,
            &stop,
        )
        .unwrap();
        let good = checkpoint::load::<f32>(&d.join("last.safetensors")).unwrap();
        assert_eq!(good.model.params(), s.trainer.model.params());
        // Poison one decoder bias: every later step has a non-finite loss and is skipped.
        *s.trainer.model.params_mut().last_mut().unwrap() = f32::NAN;
        s.settings.steps = 20;
        let err = train(
            &mut s,
            &mut data(&stream),
            Some(&mut rd),
            &mut Silent,
            &stop,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("3 non-finite steps in a row (last at update 11)"),
            "{err}"
        );
        assert_eq!(s.progress.skipped_steps, 3);
        let after = checkpoint::load::<f32>(&d.join("last.safetensors")).unwrap();
        assert_eq!(after.model.params(), good.model.params());
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
        let mut rd = create(&d);
        let (reason, summary) = train(
            &mut s,
            &mut data(&stream),
            Some(&mut rd),
            &mut Silent,
            &stop,
        )
        .unwrap();
        assert_eq!(reason, StopReason::Interrupted);
        assert_eq!((summary.step, summary.status.as_str()), (1, "interrupted"));
        assert!(d.join("last.safetensors").exists() && d.join("best.safetensors").exists());
        std::fs::remove_dir_all(d).unwrap();
    }
}

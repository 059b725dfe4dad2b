//! The run directory: its files, atomic checkpoints, and reading a run back to continue it.
//!
//! ```text
//! config.toml               the resolved configuration (written by the caller's `config_toml`)
//! metrics.csv               one `MetricsRow` per update (language model) or per evaluation (task)
//! last.safetensors          the model at the last evaluation / at the end
//! best.safetensors          the model of the best evaluation so far
//! train_state.safetensors   parameters, optimizer moments, carried hidden state, progress
//! summary.json              where the run stands (rewritten at every checkpoint)
//! gradflow_track.csv        gradient flow measured during training (`track_gradflow`), with
//! gradflow/step_N.json      the full snapshot of each measurement
//! ```
//! Every file but `metrics.csv` and `gradflow_track.csv` (appended to) is written through a
//! temporary file and a rename, so a crash leaves the previous version or the new one. Rows of
//! `metrics.csv` written after the last checkpoint are dropped when the run is continued
//! ([`RunDir::reopen`]), so a continued run's file equals an uninterrupted run's.

use super::records::{write_json, MetricsRow, METRICS_HEADER, TASK_METRICS_HEADER};
use super::run::{Progress, Session};
use crate::analysis;
use crate::checkpoint::{self, write_atomic, write_tensors, NamedTensors, TensorFile};
use crate::error::{Error, Result, RunDirProblem};
use crate::model::ModelConfig;
use serde::Serialize;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Metadata key of the training progress in `train_state.safetensors`.
pub const PROGRESS_KEY: &str = "rnnscope.progress";
/// Metadata key of the corpus fingerprint in `train_state.safetensors`.
pub const FINGERPRINT_KEY: &str = "rnnscope.corpus_fingerprint";
/// Metadata key of the update count in checkpoints.
pub const STEP_KEY: &str = "rnnscope.step";
/// Metadata key of the optimizer's own update count in `train_state.safetensors`.
const OPTIMIZER_STEPS_KEY: &str = "rnnscope.optimizer_steps";

/// The files whose presence marks a directory as holding a run.
const RUN_FILES: [&str; 5] = [
    "config.toml",
    "metrics.csv",
    "last.safetensors",
    "train_state.safetensors",
    "summary.json",
];

/// Other files and folders a run writes (removed with the run by [`RunDir::remove_run`]).
const OTHER_RUN_FILES: [&str; 3] = ["best.safetensors", "gradflow_track.csv", "report.html"];
const RUN_FOLDERS: [&str; 2] = ["gradflow", "plots"];

/// How a directory can take a new run ([`RunDir::check_new`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fresh {
    /// Absent, or a directory without run files.
    Empty,
    /// It holds a run that never reached its first checkpoint: nothing to lose, it starts over.
    Unstarted,
    /// It holds a run, and replacing it was asked for.
    Replace,
}

/// What kind of run a directory holds: it fixes the columns of `metrics.csv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunKind {
    /// A language model on a token stream (`rnnscope train`).
    LanguageModel,
    /// A synthetic task (`rnnscope task`, `experiment`, `demo`): `metrics.csv` adds `metric`.
    Task,
}

impl RunKind {
    fn metrics_header(self) -> &'static str {
        match self {
            RunKind::LanguageModel => METRICS_HEADER,
            RunKind::Task => TASK_METRICS_HEADER,
        }
    }
}

/// The files of a run directory.
pub struct RunDir {
    pub path: PathBuf,
    kind: RunKind,
    metrics: Option<std::fs::File>,
    /// Extra metadata written into every checkpoint (e.g. the vocabulary).
    pub metadata: HashMap<String, String>,
    /// Fingerprint of the training data, saved in `train_state.safetensors` and checked
    /// before continuing (language models; a task's data follows from its config).
    pub fingerprint: Option<String>,
}

impl RunDir {
    /// Checks that `path` can take a new run: absent, a directory without run files, a run
    /// that never reached its first checkpoint (no `train_state.safetensors` nor
    /// `last.safetensors`), or any run when `replace`; creates and removes nothing.
    pub fn check_new(path: &Path, replace: bool) -> Result<Fresh> {
        if path.exists() && !path.is_dir() {
            return Err(Error::run_dir(path, RunDirProblem::NotADirectory));
        }
        if !RUN_FILES.iter().any(|f| path.join(f).exists()) {
            return Ok(Fresh::Empty);
        }
        if replace {
            return Ok(Fresh::Replace);
        }
        match ["train_state.safetensors", "last.safetensors"]
            .iter()
            .find(|f| path.join(f).exists())
        {
            None => Ok(Fresh::Unstarted),
            Some(f) => Err(Error::run_dir(
                path,
                RunDirProblem::HoldsRun {
                    file: f.to_string(),
                },
            )),
        }
    }

    /// Prepares `path` for a new run as [`Self::check_new`] allows: removes the files of the
    /// run there (if any) and says so through `log`.
    pub fn make_fresh(path: &Path, replace: bool, log: &mut dyn FnMut(&str)) -> Result<()> {
        match Self::check_new(path, replace)? {
            Fresh::Empty => return Ok(()),
            Fresh::Unstarted => log(&format!(
                "{}: the run there never reached its first checkpoint: starting it over",
                path.display()
            )),
            Fresh::Replace => log(&format!("{}: replacing the run there", path.display())),
        }
        Self::remove_run(path)
    }

    /// Removes every file and folder a run writes in `path` (nothing else).
    pub fn remove_run(path: &Path) -> Result<()> {
        for f in RUN_FILES.iter().chain(&OTHER_RUN_FILES) {
            let p = path.join(f);
            if p.is_file() {
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            }
        }
        for d in RUN_FOLDERS {
            let p = path.join(d);
            if p.is_dir() {
                std::fs::remove_dir_all(&p).map_err(|e| Error::io(&p, e))?;
            }
        }
        Ok(())
    }

    /// Creates the directory of a new run with its `config.toml` and the metrics header.
    pub fn create(
        path: &Path,
        kind: RunKind,
        config_toml: &str,
        metadata: HashMap<String, String>,
        fingerprint: Option<String>,
    ) -> Result<Self> {
        if let Some(f) = RUN_FILES.iter().find(|f| path.join(f).exists()) {
            return Err(Error::run_dir(
                path,
                RunDirProblem::HoldsRun {
                    file: f.to_string(),
                },
            ));
        }
        std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
        write_atomic(&path.join("config.toml"), config_toml.as_bytes())?;
        write_atomic(
            &path.join("metrics.csv"),
            format!("{}\n", kind.metrics_header()).as_bytes(),
        )?;
        Ok(RunDir {
            path: path.to_path_buf(),
            kind,
            metrics: None,
            metadata,
            fingerprint,
        })
    }

    /// Reopens a run directory to continue at update `step`: rows of `metrics.csv` beyond it
    /// (written after the last checkpoint) are dropped; `config_toml` replaces `config.toml`.
    pub fn reopen(
        path: &Path,
        kind: RunKind,
        step: u64,
        config_toml: &str,
        metadata: HashMap<String, String>,
        fingerprint: Option<String>,
    ) -> Result<Self> {
        let mpath = path.join("metrics.csv");
        let text = std::fs::read_to_string(&mpath).map_err(|e| Error::io(&mpath, e))?;
        let mut lines = text.lines();
        let header = kind.metrics_header();
        if lines.next() != Some(header) {
            return Err(Error::Data(format!(
                "{}: the header is not `{header}`: not the metrics of this kind of run",
                mpath.display()
            )));
        }
        let mut kept = format!("{header}\n");
        for line in lines {
            let row_step = line
                .split(',')
                .next()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| {
                    Error::Data(format!("{}: malformed row `{line}`", mpath.display()))
                })?;
            if row_step > step {
                break;
            }
            kept.push_str(line);
            kept.push('\n');
        }
        write_atomic(&mpath, kept.as_bytes())?;
        write_atomic(&path.join("config.toml"), config_toml.as_bytes())?;
        Ok(RunDir {
            path: path.to_path_buf(),
            kind,
            metrics: None,
            metadata,
            fingerprint,
        })
    }

    /// Appends a row to `metrics.csv` (flushed at the next checkpoint).
    pub fn write_row(&mut self, row: &MetricsRow) -> Result<()> {
        let mpath = self.path.join("metrics.csv");
        let f = match &mut self.metrics {
            Some(f) => f,
            None => self.metrics.insert(
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(&mpath)
                    .map_err(|e| Error::io(&mpath, e))?,
            ),
        };
        let line = row.line(self.kind == RunKind::Task);
        writeln!(f, "{line}").map_err(|e| Error::io(&mpath, e))
    }

    fn checkpoint_metadata(&self, session: &Session) -> HashMap<String, String> {
        let mut m = self.metadata.clone();
        m.insert(STEP_KEY.into(), session.progress.step.to_string());
        m
    }

    /// Writes `last.safetensors` and `train_state.safetensors` (and `best.safetensors` when
    /// `best`), refusing to save parameters that are not finite.
    pub fn save(&mut self, session: &Session, best: bool) -> Result<()> {
        if let Some(f) = self.metrics.as_mut() {
            f.flush()
                .map_err(|e| Error::io(self.path.join("metrics.csv"), e))?;
        }
        let model = &session.trainer.model;
        if model.params().iter().any(|p| !p.is_finite()) {
            let kept = if self.path.join("train_state.safetensors").exists() {
                format!(
                    "the last good checkpoint in {} is kept",
                    self.path.display()
                )
            } else {
                "no checkpoint was written".to_string()
            };
            return Err(Error::Numeric(format!(
                "the parameters are no longer finite at update {}; {kept}: lower the learning rate `lr` or set `clip`",
                session.progress.step,
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
            flat("params", t.model.params()),
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
        meta.insert(OPTIMIZER_STEPS_KEY.into(), t.optimizer.steps.to_string());
        if let Some(f) = &self.fingerprint {
            meta.insert(FINGERPRINT_KEY.into(), f.clone());
        }
        write_tensors(&self.path.join("train_state.safetensors"), &tensors, &meta)
    }

    /// Measures gradient flow on the window just trained (from a zero state, no dropout) and
    /// records it ([`analysis::output::record_track`]): one row per layer in `gradflow_track.csv` and the full
    /// snapshot in `gradflow/step_NNNNNNNN.json`; returns the snapshot.
    pub fn track_gradflow(
        &self,
        session: &Session,
        inputs: &[u32],
        targets: &[u32],
        input: analysis::InputRecord,
        grad_norm: f64,
    ) -> Result<analysis::GradflowSnapshot> {
        let opts = analysis::SnapshotOptions {
            jacobian: None,
            theory_targets: 0,
            ..Default::default()
        };
        let model = &session.trainer.model;
        let mut snap =
            analysis::snapshot(model, inputs, targets, None, session.settings.batch, &opts)?;
        snap.summary.input = analysis::InputRecord {
            windows: snap.summary.input.windows,
            window_length: snap.summary.input.window_length,
            ..input
        };
        analysis::output::record_track(&self.path, session.progress.step, &snap, grad_norm)?;
        Ok(snap)
    }

    /// Writes `summary.json`.
    pub fn write_summary(&self, summary: &impl Serialize) -> Result<()> {
        write_json(&self.path.join("summary.json"), summary)
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
            return Err(Error::run_dir(dir, RunDirProblem::NotFound));
        }
        if !path.exists() || !dir.join("config.toml").exists() {
            return Err(Error::run_dir(dir, RunDirProblem::NothingToResume));
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
        let load = |name: &str, dst: &mut [f32]| -> Result<()> {
            let src = self.file.get_shaped(name, &[dst.len()])?;
            for (d, &s) in dst.iter_mut().zip(&src.data) {
                *d = s as f32;
            }
            Ok(())
        };
        load("params", &mut t.model.params_mut())?;
        load("optimizer.m", &mut t.optimizer.m)?;
        load("optimizer.v", &mut t.optimizer.v)?;
        load("state.h", &mut t.state.h)?;
        if !t.state.c.is_empty() {
            load("state.c", &mut t.state.c)?;
        }
        t.optimizer.steps = self
            .file
            .metadata
            .get(OPTIMIZER_STEPS_KEY)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                Error::checkpoint(path, format!("metadata `{OPTIMIZER_STEPS_KEY}` is missing"))
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
            Some(ck.model.params().to_vec())
        } else {
            None
        };
        Ok(())
    }
}

//! Typed records of the files that runs write, shared by the writers and the readers.
//!
//! | file | record | written by |
//! |---|---|---|
//! | `summary.json` of a language-model run | [`TrainSummary`] | the training loop |
//! | `summary.json` of a task run | [`TaskSummary`] | the training loop |
//! | `metrics.csv` | [`MetricsRow`] (task runs add the `metric` column) | the training loop |
//! | `gradflow_track.csv` | [`crate::analysis::output::TrackRow`] | the training loop (`track_gradflow`) |
//! | `results.csv`, `results.json` of a demo | [`DemoRow`] | `rnnscope demo` |
//! | `runs.csv`, `runs.json` of an experiment | [`RunRow`], [`RunOutcome`] | the experiment |
//! | `results.csv` of an experiment | [`ExperimentRow`] | the experiment |
//!
//! CSV files have a header line and no quoting; numbers are written in their shortest
//! round-trip form (`NaN` for a skipped step's loss), an absent optional value as an empty
//! cell. Readers find columns by name, so columns added later do not break them, and name the
//! file, the line and the column in their errors. JSON keys are the field names; fields added
//! later are read as their defaults from older files.

use crate::analysis::profile::Horizon;
use crate::checkpoint::write_atomic;
use crate::data::tasks::TaskKind;
use crate::error::{Error, Result};
use crate::model::ModelConfig;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use std::path::Path;

/// `summary.json` of a language-model run: where the run stands (rewritten at every checkpoint).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
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
    /// The memory horizon of the last gradient-flow snapshot tracked in this invocation
    /// (`track_gradflow`), on that update's training batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_horizon: Option<TrackedHorizon>,
}

/// A memory horizon measured during training: where `R(l)` fell below 1e-3, on what.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrackedHorizon {
    /// The update it was measured after.
    pub step: u64,
    /// What it was measured on ([`crate::analysis::InputRecord::describe`]).
    pub input: String,
    #[serde(flatten)]
    pub horizon: Horizon,
}

/// `summary.json` of a task run (rewritten at every checkpoint).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSummary {
    pub task: TaskKind,
    pub length: usize,
    pub label: String,
    /// `accuracy` (on the dependent positions) or `test MSE` (adding).
    pub metric_name: String,
    /// Metric of the last evaluation on the held-out test set.
    #[serde(deserialize_with = "nan_if_null")]
    pub metric: f64,
    /// Best metric over all evaluations.
    #[serde(deserialize_with = "nan_if_null")]
    pub best_metric: f64,
    /// What a model without memory reaches, in the metric's units (named by `baseline_name`).
    pub baseline: f64,
    /// `chance accuracy`, or `MSE of predicting the mean`.
    #[serde(default)]
    pub baseline_name: String,
    /// The test loss of the best model without memory (`None`: no closed form).
    #[serde(default)]
    pub loss_baseline: Option<f64>,
    /// Whether the last evaluation meets the task's success criterion.
    pub solved: bool,
    /// Loss of the last evaluation on the held-out test set.
    #[serde(deserialize_with = "nan_if_null")]
    pub test_loss: f64,
    /// Updates applied (skipped non-finite steps not counted).
    pub updates: u64,
    pub sequences_seen: u64,
    /// Wall time in the training loop, all invocations together.
    pub seconds: f64,
    /// `running`, `finished`, `solved` (stopped when solved), `interrupted` or `time_limit`.
    #[serde(default)]
    pub status: String,
    /// Updates attempted (skipped ones included) and planned.
    #[serde(default)]
    pub step: u64,
    #[serde(default)]
    pub steps: u64,
    /// Update of the evaluation with the best metric.
    #[serde(default)]
    pub best_step: Option<u64>,
    #[serde(default)]
    pub skipped_steps: u64,
}

/// `summary.json` of either kind of run.
#[derive(Clone, Debug, PartialEq)]
pub enum RunSummary {
    Train(TrainSummary),
    Task(TaskSummary),
}

/// Reads `summary.json` of a run of either kind (a task summary has `metric_name`).
pub fn read_summary(path: &Path) -> Result<RunSummary> {
    let value: serde_json::Value = read_json(path)?;
    let parse_err = |e: serde_json::Error| Error::Data(format!("{}: {e}", path.display()));
    if value.get("metric_name").is_some() {
        serde_json::from_value(value)
            .map(RunSummary::Task)
            .map_err(parse_err)
    } else {
        serde_json::from_value(value)
            .map(RunSummary::Train)
            .map_err(parse_err)
    }
}

/// One row of `metrics.csv`. A language-model run writes one per update; a task run one per
/// evaluation, averaging the updates since the previous row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    /// 1-based update number.
    pub step: u64,
    /// Mean loss of the updates the row covers (NaN when they were all skipped as non-finite).
    pub train_loss: f64,
    /// Loss on the held-out data when the row's update was evaluated (the validation stream,
    /// or a task's test set).
    pub valid_loss: Option<f64>,
    /// Learning rate of the row's last update.
    pub lr: f64,
    /// Mean gradient norm (before clipping) of the updates the row covers.
    pub grad_norm: f64,
    pub tokens_per_s: f64,
    /// The task's metric on its test set (task runs only).
    pub metric: Option<f64>,
}

/// Header of `metrics.csv` of a language-model run.
pub const METRICS_HEADER: &str = "step,train_loss,valid_loss,lr,grad_norm,tokens_per_s";
/// Header of `metrics.csv` of a task run.
pub const TASK_METRICS_HEADER: &str = "step,train_loss,valid_loss,lr,grad_norm,tokens_per_s,metric";

impl MetricsRow {
    /// The row as a CSV line (no newline), with the `metric` cell when `with_metric`.
    pub fn line(&self, with_metric: bool) -> String {
        let mut s = format!(
            "{},{},{},{},{},{:.0}",
            self.step,
            self.train_loss,
            opt(self.valid_loss),
            self.lr,
            self.grad_norm,
            self.tokens_per_s
        );
        if with_metric {
            s.push(',');
            s.push_str(&opt(self.metric));
        }
        s
    }
}

impl CsvRecord for MetricsRow {
    const COLUMNS: &'static [&'static str] = &[
        "step",
        "train_loss",
        "valid_loss",
        "lr",
        "grad_norm",
        "tokens_per_s",
        "metric",
    ];

    fn fields(&self) -> Vec<String> {
        self.line(true).split(',').map(String::from).collect()
    }

    fn from_row(r: &Row) -> Result<Self, String> {
        Ok(MetricsRow {
            step: r.num("step")?,
            train_loss: r.num("train_loss")?,
            valid_loss: r.opt("valid_loss")?,
            lr: r.num("lr")?,
            grad_norm: r.num("grad_norm")?,
            tokens_per_s: r.num("tokens_per_s")?,
            // Absent in language-model runs.
            metric: if r.has("metric") {
                r.opt("metric")?
            } else {
                None
            },
        })
    }
}

/// One row of a demo's `results.csv` and `results.json`: one trained model at one distance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DemoRow {
    /// `rnn` (tanh) or `lstm`.
    pub cell: String,
    pub distance: usize,
    /// Accuracy on the dependent word of the held-out sentences.
    #[serde(deserialize_with = "nan_if_null")]
    pub accuracy: f64,
    pub chance: f64,
    /// `R(l)` of the trained model at `l = distance`, on held-out sentences.
    pub gradient_ratio: Option<f64>,
    /// Measured per-step decay of `R` (geometric mean).
    pub decay_per_step: Option<f64>,
    pub updates: u64,
    pub seconds: f64,
}

impl CsvRecord for DemoRow {
    const COLUMNS: &'static [&'static str] = &[
        "cell",
        "distance",
        "accuracy",
        "chance",
        "gradient_ratio",
        "decay_per_step",
        "updates",
        "seconds",
    ];

    fn fields(&self) -> Vec<String> {
        vec![
            self.cell.clone(),
            self.distance.to_string(),
            self.accuracy.to_string(),
            self.chance.to_string(),
            opt(self.gradient_ratio),
            opt(self.decay_per_step),
            self.updates.to_string(),
            self.seconds.to_string(),
        ]
    }

    fn from_row(r: &Row) -> Result<Self, String> {
        Ok(DemoRow {
            cell: r.text("cell")?.to_string(),
            distance: r.num("distance")?,
            accuracy: r.num("accuracy")?,
            chance: r.num("chance")?,
            gradient_ratio: r.opt("gradient_ratio")?,
            decay_per_step: r.opt("decay_per_step")?,
            updates: r.num("updates")?,
            seconds: r.num("seconds")?,
        })
    }
}

/// One run of an experiment grid (an element of `runs.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunOutcome {
    /// The model's name in the sweep file.
    pub model: String,
    pub length: usize,
    pub seed: u64,
    pub result: TaskSummary,
    /// Geometric-mean per-step decay of `R(l)` on held-out sequences after training.
    pub decay_per_step: Option<f64>,
    /// Dependency task: `R(l)` at the dependency's distance `l` through the recurrence, from
    /// the gradient-flow analysis in the run's `gradflow/`.
    #[serde(default)]
    pub ratio_recurrent: Option<f64>,
    /// The same through attention, for an attentive model.
    #[serde(default)]
    pub ratio_attention: Option<f64>,
    /// Dependency task: at the step scored on the dependent noun `i` and the key noun's step
    /// `j`, `mean |dJ^(i)/dh^(j)| / mean |dJ^(i)/dh^(i)|` through the recurrence.
    #[serde(default)]
    pub dependent_recurrent: Option<f64>,
    /// The same through attention, for an attentive model.
    #[serde(default)]
    pub dependent_attention: Option<f64>,
}

impl RunOutcome {
    /// The run's row of `runs.csv`.
    pub fn row(&self) -> RunRow {
        let r = &self.result;
        RunRow {
            model: self.model.clone(),
            length: self.length,
            seed: self.seed,
            metric_name: r.metric_name.clone(),
            metric: r.metric,
            baseline: r.baseline,
            solved: r.solved,
            updates: r.updates,
            seconds: r.seconds,
            decay_per_step: self.decay_per_step,
            ratio_recurrent: self.ratio_recurrent,
            ratio_attention: self.ratio_attention,
            dependent_recurrent: self.dependent_recurrent,
            dependent_attention: self.dependent_attention,
        }
    }
}

/// One row of an experiment's `runs.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    pub model: String,
    pub length: usize,
    pub seed: u64,
    pub metric_name: String,
    pub metric: f64,
    pub baseline: f64,
    pub solved: bool,
    pub updates: u64,
    pub seconds: f64,
    pub decay_per_step: Option<f64>,
    pub ratio_recurrent: Option<f64>,
    pub ratio_attention: Option<f64>,
    pub dependent_recurrent: Option<f64>,
    pub dependent_attention: Option<f64>,
}

impl CsvRecord for RunRow {
    const COLUMNS: &'static [&'static str] = &[
        "model",
        "length",
        "seed",
        "metric_name",
        "metric",
        "baseline",
        "solved",
        "updates",
        "seconds",
        "decay_per_step",
        "ratio_recurrent",
        "ratio_attention",
        "dependent_recurrent",
        "dependent_attention",
    ];

    fn fields(&self) -> Vec<String> {
        vec![
            self.model.clone(),
            self.length.to_string(),
            self.seed.to_string(),
            self.metric_name.clone(),
            self.metric.to_string(),
            self.baseline.to_string(),
            self.solved.to_string(),
            self.updates.to_string(),
            self.seconds.to_string(),
            opt(self.decay_per_step),
            opt(self.ratio_recurrent),
            opt(self.ratio_attention),
            opt(self.dependent_recurrent),
            opt(self.dependent_attention),
        ]
    }

    fn from_row(r: &Row) -> Result<Self, String> {
        Ok(RunRow {
            model: r.text("model")?.to_string(),
            length: r.num("length")?,
            seed: r.num("seed")?,
            metric_name: r.text("metric_name")?.to_string(),
            metric: r.num("metric")?,
            baseline: r.num("baseline")?,
            solved: r.num("solved")?,
            updates: r.num("updates")?,
            seconds: r.num("seconds")?,
            decay_per_step: r.opt("decay_per_step")?,
            ratio_recurrent: r.opt_column("ratio_recurrent")?,
            ratio_attention: r.opt_column("ratio_attention")?,
            dependent_recurrent: r.opt_column("dependent_recurrent")?,
            dependent_attention: r.opt_column("dependent_attention")?,
        })
    }
}

/// One row of an experiment's `results.csv`: one model at one length, over its seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentRow {
    pub model: String,
    pub length: usize,
    pub runs: usize,
    pub solved: usize,
    /// `solved / runs`.
    pub success_rate: f64,
    pub mean_metric: f64,
    pub mean_decay_per_step: Option<f64>,
    pub mean_seconds: f64,
    /// Geometric mean of the runs' [`RunOutcome::ratio_recurrent`].
    #[serde(default)]
    pub ratio_recurrent: Option<f64>,
    /// Geometric mean of the runs' [`RunOutcome::ratio_attention`].
    #[serde(default)]
    pub ratio_attention: Option<f64>,
    /// Geometric mean of the runs' [`RunOutcome::dependent_recurrent`].
    #[serde(default)]
    pub dependent_recurrent: Option<f64>,
    /// Geometric mean of the runs' [`RunOutcome::dependent_attention`].
    #[serde(default)]
    pub dependent_attention: Option<f64>,
}

impl CsvRecord for ExperimentRow {
    const COLUMNS: &'static [&'static str] = &[
        "model",
        "length",
        "runs",
        "solved",
        "success_rate",
        "mean_metric",
        "mean_decay_per_step",
        "mean_seconds",
        "ratio_recurrent",
        "ratio_attention",
        "dependent_recurrent",
        "dependent_attention",
    ];

    fn fields(&self) -> Vec<String> {
        vec![
            self.model.clone(),
            self.length.to_string(),
            self.runs.to_string(),
            self.solved.to_string(),
            self.success_rate.to_string(),
            self.mean_metric.to_string(),
            opt(self.mean_decay_per_step),
            self.mean_seconds.to_string(),
            opt(self.ratio_recurrent),
            opt(self.ratio_attention),
            opt(self.dependent_recurrent),
            opt(self.dependent_attention),
        ]
    }

    fn from_row(r: &Row) -> Result<Self, String> {
        Ok(ExperimentRow {
            model: r.text("model")?.to_string(),
            length: r.num("length")?,
            runs: r.num("runs")?,
            solved: r.num("solved")?,
            success_rate: r.num("success_rate")?,
            mean_metric: r.num("mean_metric")?,
            mean_decay_per_step: r.opt("mean_decay_per_step")?,
            mean_seconds: r.num("mean_seconds")?,
            ratio_recurrent: r.opt_column("ratio_recurrent")?,
            ratio_attention: r.opt_column("ratio_attention")?,
            dependent_recurrent: r.opt_column("dependent_recurrent")?,
            dependent_attention: r.opt_column("dependent_attention")?,
        })
    }
}

/// A record kept as one line of a CSV file.
pub trait CsvRecord: Sized {
    /// Column names, in the order [`Self::fields`] gives the values.
    const COLUMNS: &'static [&'static str];
    /// The values of the row, formatted.
    fn fields(&self) -> Vec<String>;
    /// Reads a row by column name; the error names the column.
    fn from_row(row: &Row) -> Result<Self, String>;
}

/// The header line of a record's CSV file (no newline).
pub fn csv_header<R: CsvRecord>() -> String {
    R::COLUMNS.join(",")
}

/// A record as one CSV line (no newline).
pub fn csv_line<R: CsvRecord>(r: &R) -> String {
    r.fields().join(",")
}

/// Writes `rows` under their header to `path`, atomically.
pub fn write_csv<R: CsvRecord>(path: &Path, rows: &[R]) -> Result<()> {
    let mut text = csv_header::<R>();
    text.push('\n');
    for r in rows {
        text.push_str(&csv_line(r));
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

/// Reads every row of a CSV file written with [`write_csv`] (or appended line by line).
pub fn read_csv<R: CsvRecord>(path: &Path) -> Result<Vec<R>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_csv(&text, path)
}

/// Parses the text of a CSV file; `path` names it in errors.
pub fn parse_csv<R: CsvRecord>(text: &str, path: &Path) -> Result<Vec<R>> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| Error::Data(format!("{}: empty file (no header line)", path.display())))?
        .1
        .split(',')
        .map(str::trim)
        .collect();
    lines
        .map(|(i, line)| {
            let row = Row {
                header: &header,
                cells: line.split(',').map(str::trim).collect(),
            };
            R::from_row(&row)
                .map_err(|e| Error::Data(format!("{}: line {}: {e}", path.display(), i + 1)))
        })
        .collect()
}

/// One CSV line being read: its cells by column name.
pub struct Row<'a> {
    header: &'a [&'a str],
    cells: Vec<&'a str>,
}

impl Row<'_> {
    /// Whether the file has column `name`.
    pub fn has(&self, name: &str) -> bool {
        self.header.contains(&name)
    }

    /// The cell of column `name`, as written.
    pub fn text(&self, name: &str) -> Result<&str, String> {
        let c = self
            .header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| format!("no column `{name}` in the header"))?;
        self.cells.get(c).copied().ok_or_else(|| {
            format!(
                "{} values, but column `{name}` is number {} of the header",
                self.cells.len(),
                c + 1
            )
        })
    }

    /// The cell of column `name`, parsed (numbers, `true`/`false`).
    pub fn num<T: std::str::FromStr>(&self, name: &str) -> Result<T, String> {
        let s = self.text(name)?;
        s.parse()
            .map_err(|_| format!("column `{name}`: `{s}` is not a valid value"))
    }

    /// Like [`Self::num`], an empty cell being `None`.
    pub fn opt<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, String> {
        if self.text(name)?.is_empty() {
            Ok(None)
        } else {
            self.num(name).map(Some)
        }
    }

    /// Like [`Self::opt`], a file without column `name` (written before it was added) being
    /// `None`.
    pub fn opt_column<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, String> {
        if self.has(name) {
            self.opt(name)
        } else {
            Ok(None)
        }
    }
}

/// An optional value as a CSV cell (empty when absent).
fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or(String::new(), |x| x.to_string())
}

/// Writes `value` as pretty JSON with a final newline to `path`, atomically.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Data(format!("{}: cannot serialise: {e}", path.display())))?;
    write_atomic(path, format!("{json}\n").as_bytes())
}

/// Reads a JSON file into a record.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Data(format!("{}: {e}", path.display())))
}

/// JSON has no NaN: serde_json writes a NaN as `null`, which reads back as NaN here.
fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_rows_of_both_kinds_round_trip() {
        let row = MetricsRow {
            step: 3,
            train_loss: f64::NAN,
            valid_loss: Some(0.1 + 0.2),
            lr: 0.01,
            grad_norm: 1.5,
            tokens_per_s: 1234.4,
            metric: Some(0.75),
        };
        let task = format!("{TASK_METRICS_HEADER}\n{}\n", row.line(true));
        let back: Vec<MetricsRow> = parse_csv(&task, Path::new("m.csv")).unwrap();
        assert_eq!(back.len(), 1);
        assert!(back[0].train_loss.is_nan());
        assert_eq!(back[0].valid_loss, Some(0.1 + 0.2));
        assert_eq!((back[0].tokens_per_s, back[0].metric), (1234.0, Some(0.75)));
        let lm = format!("{METRICS_HEADER}\n{}\n", row.line(false));
        assert_eq!(
            lm.lines().nth(1),
            Some("3,NaN,0.30000000000000004,0.01,1.5,1234")
        );
        let back: Vec<MetricsRow> = parse_csv(&lm, Path::new("m.csv")).unwrap();
        assert_eq!(back[0].metric, None);
    }

    #[test]
    fn read_errors_name_the_file_the_line_and_the_column() {
        let text =
            "model,length,runs,solved,success_rate,mean_metric,mean_decay_per_step,mean_seconds\n\
                    lstm,100,2,2,1,0.006,,60\nrnn,x,2,0,0,0.16,0.8,30\n";
        let e = parse_csv::<ExperimentRow>(text, Path::new("results.csv"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "results.csv: line 3: column `length`: `x` is not a valid value"
        );
        let e = parse_csv::<RunRow>(text, Path::new("runs.csv"))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "runs.csv: line 2: no column `seed` in the header");
        let rows: Vec<ExperimentRow> =
            parse_csv(&text.replace(",x,", ",200,"), Path::new("r")).unwrap();
        assert_eq!(rows[0].mean_decay_per_step, None);
        assert_eq!(rows[1].length, 200);
    }

    #[test]
    fn a_task_summary_of_an_older_version_reads_with_defaults_and_nan_survives() {
        let old = r#"{"task":"dependency","length":6,"label":"lstm","metric_name":"accuracy","metric":0.9,"best_metric":null,"baseline":0.125,"solved":false,"test_loss":0.5,"updates":20,"sequences_seen":160,"seconds":1.0}"#;
        let s: TaskSummary = serde_json::from_str(old).unwrap();
        assert!(s.best_metric.is_nan());
        assert_eq!((s.status.as_str(), s.best_step), ("", None));
        let again: TaskSummary = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(again.metric, 0.9);
        assert!(again.best_metric.is_nan());
    }
}

//! Sweeps over synthetic-task runs: a grid of models (cell, init, remedies) x lengths x seeds,
//! summarised as success rate per model and length with the measured gradient decay per step
//! beside each.
//!
//! A sweep file (TOML) holds the shared settings and one `[[model]]` table per model; every
//! key of a model table overrides the same key of [`TaskRunConfig`] (unknown keys are errors):
//! ```toml
//! task = "adding"
//! lengths = [100, 200]
//! seeds = [0, 1]
//! [defaults]            # optional: overrides for every model
//! steps = 20000
//! [[model]]
//! name = "lstm"
//! cell = "lstm"
//! ```
//! The sweep becomes a [`Plan`] of indexed grid points (`DIR/plan.json`). Each point is
//! trained by [`run_point`]: by the local pool ([`run_sweep`], one run per core), or one point
//! per task of a cluster's job array. [`collect`] then gathers whatever points have finished
//! into the tables (`runs.csv`, `runs.json`, `results.csv`, `results.json`, `results.md`) and
//! lists the rest. On the dependency task each finished point also gets the gradient-flow
//! analysis of its final model in its run directory's `gradflow/` ([`write_task_gradflow`]).

use super::plan::{check_name, run_dir_name, Plan, PlanPoint, OUTCOME_FILE};
use super::records::{
    read_json, write_csv, write_json, ExperimentRow, RunOutcome, RunRow, TaskSummary,
};
use super::run::{Monitor, StopReason};
use super::task::{run_task_until, write_task_gradflow, TaskGradflow, TaskRunConfig};
use crate::analysis::profile;
use crate::checkpoint::write_atomic;
use crate::data::tasks::{Task, TaskKind};
use crate::error::{Error, Result};
use crate::model::{LanguageModel, State, Workspace};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

/// A parsed sweep file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    pub task: TaskKind,
    pub lengths: Vec<usize>,
    /// Integers, or strings for seeds of 2^63 and more (TOML integers are signed).
    #[serde(
        default = "default_seeds",
        deserialize_with = "super::config::seed64::deserialize_vec"
    )]
    pub seeds: Vec<u64>,
    #[serde(default)]
    pub defaults: toml::Table,
    #[serde(rename = "model")]
    pub models: Vec<toml::Table>,
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

impl SweepFile {
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let s: SweepFile =
            toml::from_str(text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        if s.models.is_empty() || s.lengths.is_empty() || s.seeds.is_empty() {
            return Err(Error::Config(format!(
                "{}: a sweep needs at least one [[model]], one length and one seed",
                path.display()
            )));
        }
        Ok(s)
    }

    /// The plan of the grid: every point in model, length, seed order. A grid of more than
    /// `max_points` points, a repeated length, seed or model name, and a model name that
    /// cannot name a folder are refused.
    pub fn plan(&self, path: &Path, max_points: usize) -> Result<Plan> {
        let err = |msg: String| Error::Config(format!("{}: {msg}", path.display()));
        let size = self
            .models
            .len()
            .checked_mul(self.lengths.len())
            .and_then(|n| n.checked_mul(self.seeds.len()));
        match size {
            Some(n) if n <= max_points => {}
            _ => {
                return Err(err(format!(
                    "the grid has {} models x {} lengths x {} seeds, more than {max_points} points: raise --max-points to run it all, or split the sweep",
                    self.models.len(),
                    self.lengths.len(),
                    self.seeds.len()
                )))
            }
        }
        if let Some(l) = repeated(&self.lengths) {
            return Err(err(format!(
                "length {l} appears twice in `lengths`: every grid point must be distinct"
            )));
        }
        if let Some(s) = repeated(&self.seeds) {
            return Err(err(format!(
                "seed {s} appears twice in `seeds`: every grid point must be distinct"
            )));
        }
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut points = Vec::new();
        for (k, m) in self.models.iter().enumerate() {
            let mut m = m.clone();
            let name = match m.remove("name") {
                Some(toml::Value::String(s)) => s,
                Some(_) => return Err(err(format!("model {k}: `name` must be a string"))),
                None => format!("model{k}"),
            };
            check_name(&name).map_err(|e| err(format!("model {k}: name {e}")))?;
            if let Some(j) = names.insert(name.to_ascii_lowercase(), k) {
                return Err(err(format!(
                    "models {j} and {k} are both named `{name}` (names are compared ignoring case): give each [[model]] its own `name`"
                )));
            }
            for &length in &self.lengths {
                for &seed in &self.seeds {
                    let base = TaskRunConfig {
                        seed,
                        ..TaskRunConfig::new(self.task, length)
                    };
                    let mut table = toml::Table::try_from(&base)
                        .map_err(|e| err(format!("model `{name}`: {e}")))?;
                    for (key, v) in self.defaults.iter().chain(m.iter()) {
                        if matches!(key.as_str(), "task" | "length" | "seed") {
                            return Err(err(format!(
                                "model `{name}`: `{key}` is set by the sweep (use `task`, `lengths`, `seeds` at the top)"
                            )));
                        }
                        table.insert(key.clone(), v.clone());
                    }
                    let config: TaskRunConfig = table
                        .try_into()
                        .map_err(|e| err(format!("model `{name}`: {e}")))?;
                    points.push(PlanPoint {
                        index: points.len(),
                        model: name.clone(),
                        dir: run_dir_name(&name, length, seed),
                        config,
                    });
                }
            }
        }
        let plan = Plan {
            task: self.task,
            lengths: self.lengths.clone(),
            points,
        };
        plan.validate(path)?;
        Ok(plan)
    }
}

/// The first value that appears twice.
fn repeated<T: PartialEq + Copy>(values: &[T]) -> Option<T> {
    values
        .iter()
        .enumerate()
        .find(|(k, v)| values[..*k].contains(v))
        .map(|(_, v)| *v)
}

/// Per-step decay of `R(l)` for a trained model: a forward pass on held-out sequences, then
/// one batched sweep with unit-norm random upstream gradients injected at every step (the
/// loss-independent propagation of gradients along real trajectories).
pub fn measured_decay(model: &LanguageModel<f32>, task: &Task, seed: u64) -> Option<f64> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED);
    let b = task.generate(8, &mut rng);
    let mut ws = Workspace::default();
    let state = State::zeros(&model.config, b.batch);
    if b.dense.is_empty() {
        model.forward(&mut ws, &b.tokens, &state, b.steps, b.batch, None);
    } else {
        let x: Vec<f32> = b.dense.iter().map(|&v| v as f32).collect();
        model.forward_dense(&mut ws, &x, &state, b.steps, b.batch, None);
    }
    let h = model.config.h_size();
    let mut inject: Vec<f32> = (0..b.steps * b.batch * h)
        .map(|_| rng.gen_range(-1.0..1.0))
        .collect();
    for v in inject.chunks_exact_mut(h) {
        let n = v
            .iter()
            .map(|x| x * x)
            .sum::<f32>()
            .sqrt()
            .max(f32::MIN_POSITIVE);
        v.iter_mut().for_each(|x| *x /= n);
    }
    let norms = profile::sweep(model, &ws.caches, &inject, None);
    let top = model.config.layers - 1;
    profile::rate(&profile::profile(&norms, &norms.dh[top])).map(|r| r.per_step)
}

/// Trains grid point `point` of the experiment in `out`, in its run directory: a new run, the
/// continuation of a run stopped before its end (killed, preempted, interrupted) from its last
/// checkpoint, or nothing when the run is done (see [`run_task_until`]). A finished point gets
/// its [`RunOutcome`] (with the measured decay and, on the dependency task, the gradient
/// ratios of its `gradflow/` analysis) in `outcome.json` and returns it; a point
/// stopped by `stop` returns `None`. The error of a failed attempt is also kept in
/// `DIR/logs/point-<i>.failed` for [`collect`] (removed when the point is tried again).
pub fn run_point(
    out: &Path,
    point: &PlanPoint,
    monitor: &mut dyn Monitor,
    stop: &AtomicBool,
) -> Result<Option<RunOutcome>> {
    let failed = point.failure_path(out);
    if failed.exists() {
        std::fs::remove_file(&failed).map_err(|e| Error::io(&failed, e))?;
    }
    let result = train_point(out, point, monitor, stop);
    if let Err(e) = &result {
        // The error is returned either way; a marker that cannot be written only costs the
        // collect step the error text.
        let logs = out.join("logs");
        let _ = std::fs::create_dir_all(&logs)
            .map_err(|e| Error::io(&logs, e))
            .and_then(|()| write_atomic(&failed, format!("{e}\n").as_bytes()));
    }
    result
}

fn train_point(
    out: &Path,
    point: &PlanPoint,
    monitor: &mut dyn Monitor,
    stop: &AtomicBool,
) -> Result<Option<RunOutcome>> {
    let c = &point.config;
    let dir = point.run_dir(out);
    let (reason, result, model) = run_task_until(c, Some(&dir), monitor, stop)?;
    if matches!(reason, StopReason::Interrupted | StopReason::TimeLimit) {
        return Ok(None);
    }
    let task = c.task()?;
    // The dependency task's distance is the one its gradient has to cross: its analysis
    // (both paths of an attentive model) goes into the run's `gradflow/`.
    let flow = match task.kind {
        TaskKind::Dependency => write_task_gradflow(&model, &task, c.seed, &dir.join("gradflow"))?,
        _ => TaskGradflow::default(),
    };
    let outcome = RunOutcome {
        model: point.model.clone(),
        length: c.length,
        seed: c.seed,
        decay_per_step: measured_decay(&model, &task, c.seed),
        ratio_recurrent: flow.profile.recurrent,
        ratio_attention: flow.profile.attention,
        dependent_recurrent: flow.dependent.recurrent,
        dependent_attention: flow.dependent.attention,
        result,
    };
    write_json(&dir.join(OUTCOME_FILE), &outcome)?;
    Ok(Some(outcome))
}

/// Runs every point of `plan` with `workers` runs at a time (each on one thread), writing
/// every run into its directory in `out`, then collects the tables into `out`. `log` gets a
/// line per run. Stops at the first failed run (runs under way finish; no new one starts).
pub fn run_sweep(
    plan: &Plan,
    out: &Path,
    workers: usize,
    log: &(dyn Fn(&str) + Sync),
) -> Result<Collection> {
    plan.save(out)?;
    let total = plan.points.len();
    let never = AtomicBool::new(false);
    run_parallel(plan.points.iter().collect(), workers, |k, point| {
        let Some(o) = run_point(out, point, &mut super::run::Silent, &never)? else {
            return Ok(());
        };
        log(&format!(
            "[{}/{total}] {} length {} seed {}: {} {:.4} -> {} ({} updates, {:.0} s)",
            k + 1,
            o.model,
            o.length,
            o.seed,
            o.result.metric_name,
            o.result.metric,
            if o.result.solved {
                "solved"
            } else {
                "not solved"
            },
            o.result.updates,
            o.result.seconds
        ));
        Ok(())
    })?;
    let collection = collect(plan, out);
    collection.write_tables(out)?;
    Ok(collection)
}

/// Runs `job` on every item, `workers` at a time, each on one thread (GEMMs sequential, so
/// the cores are not oversubscribed). Returns the results in item order, or the first error
/// (no new item starts after one).
pub fn run_parallel<J: Send, R: Send>(
    items: Vec<J>,
    workers: usize,
    job: impl Fn(usize, J) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    crate::tensor::set_gemm_threads(1);
    let queue = Mutex::new(items.into_iter().enumerate());
    let results = Mutex::new(Vec::new());
    let failure = Mutex::new(None::<Error>);
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| loop {
                if failure.lock().expect("failure slot").is_some() {
                    break;
                }
                let Some((k, item)) = queue.lock().expect("queue").next() else {
                    break;
                };
                match job(k, item) {
                    Ok(r) => results.lock().expect("results").push((k, r)),
                    Err(e) => {
                        failure.lock().expect("failure slot").get_or_insert(e);
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().expect("failure slot") {
        return Err(e);
    }
    let mut results = results.into_inner().expect("results");
    results.sort_by_key(|(k, _)| *k);
    Ok(results.into_iter().map(|(_, r)| r).collect())
}

/// Where a grid point stands, as [`collect`] finds it.
#[derive(Clone, Debug)]
pub enum PointState {
    /// Done: its `outcome.json` belongs to the plan's configuration.
    Finished(Box<RunOutcome>),
    /// Its last attempt failed with this error.
    Failed(String),
    /// Not started, under way, or stopped before its end (killed, preempted, interrupted):
    /// the update its `summary.json` reached (when it has one) and the updates planned.
    Unfinished(Option<(u64, u64)>),
}

/// Every point of a plan with where it stands.
#[derive(Clone, Debug)]
pub struct Collection {
    pub plan: Plan,
    pub states: Vec<PointState>,
}

/// A point that has not finished, as listed by the collect step (in `results.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnfinishedPoint {
    pub index: usize,
    /// Its run directory, inside the experiment directory.
    pub dir: String,
    /// `failed`, or `unfinished` (not started, under way, or stopped before its end).
    pub state: String,
    /// The error, or how far the run got.
    pub detail: String,
    /// Its log file (relative to the experiment directory), when a scheduler wrote one.
    pub log: Option<String>,
}

/// `results.json`: the results table and the points it is missing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentResults {
    pub points: usize,
    pub finished: usize,
    /// One row per model and length, over the finished points (as `results.csv`).
    pub results: Vec<ExperimentRow>,
    pub unfinished: Vec<UnfinishedPoint>,
}

/// Where every point of `plan` in `out` stands.
pub fn collect(plan: &Plan, out: &Path) -> Collection {
    Collection {
        plan: plan.clone(),
        states: plan.points.iter().map(|p| point_state(out, p)).collect(),
    }
}

fn point_state(out: &Path, p: &PlanPoint) -> PointState {
    let dir = p.run_dir(out);
    if let Ok(o) = read_json::<RunOutcome>(&dir.join(OUTCOME_FILE)) {
        let c = &p.config;
        let config = std::fs::read_to_string(dir.join("config.toml"))
            .ok()
            .and_then(|t| toml::from_str::<TaskRunConfig>(&t).ok());
        let belongs = (&o.model, o.length, o.seed, o.result.steps)
            == (&p.model, c.length, c.seed, c.steps as u64)
            && matches!(o.result.status.as_str(), "finished" | "solved")
            && config.as_ref() == Some(c);
        if belongs {
            return PointState::Finished(Box::new(o));
        }
    }
    if let Ok(error) = std::fs::read_to_string(p.failure_path(out)) {
        return PointState::Failed(error.trim().to_string());
    }
    let summary = read_json::<TaskSummary>(&dir.join("summary.json")).ok();
    PointState::Unfinished(summary.map(|s| (s.step, p.config.steps as u64)))
}

impl Collection {
    /// The finished points' outcomes, in plan order.
    pub fn outcomes(&self) -> Vec<RunOutcome> {
        self.states
            .iter()
            .filter_map(|s| match s {
                PointState::Finished(o) => Some(RunOutcome::clone(o)),
                _ => None,
            })
            .collect()
    }

    /// The points that have not finished, with their log files when `out` holds them.
    pub fn unfinished(&self, out: &Path) -> Vec<UnfinishedPoint> {
        self.plan
            .points
            .iter()
            .zip(&self.states)
            .filter_map(|(p, s)| {
                let (state, detail) = match s {
                    PointState::Finished(_) => return None,
                    PointState::Failed(e) => ("failed", e.clone()),
                    PointState::Unfinished(None) if !p.run_dir(out).exists() => {
                        ("unfinished", "not started".to_string())
                    }
                    PointState::Unfinished(None) => (
                        "unfinished",
                        "started, no checkpoint yet: under way, or stopped before its first"
                            .to_string(),
                    ),
                    PointState::Unfinished(Some((step, steps))) => (
                        "unfinished",
                        format!(
                            "at update {step} of {steps}: under way, or stopped before its end"
                        ),
                    ),
                };
                let log = p.log_path(out);
                Some(UnfinishedPoint {
                    index: p.index,
                    dir: p.dir.clone(),
                    state: state.into(),
                    detail,
                    log: log.exists().then(|| format!("logs/point-{}.log", p.index)),
                })
            })
            .collect()
    }

    /// Lines naming every unfinished point, its state and its log (empty when all finished).
    pub fn unfinished_lines(&self, out: &Path) -> Vec<String> {
        self.unfinished(out)
            .iter()
            .map(|u| {
                format!(
                    "point {} ({}): {}: {}{}",
                    u.index,
                    u.dir,
                    u.state,
                    u.detail,
                    u.log.as_ref().map_or(String::new(), |l| format!(
                        "; log {}",
                        out.join(l).display()
                    ))
                )
            })
            .collect()
    }

    /// `runs.csv` and `runs.json` (one row per finished point), `results.csv` and
    /// `results.json` (success rate per model and length, mean metric, mean decay per step;
    /// the JSON also lists the unfinished points) and `results.md` (the table, then the
    /// unfinished points).
    pub fn write_tables(&self, out: &Path) -> Result<()> {
        let outcomes = self.outcomes();
        let runs: Vec<RunRow> = outcomes.iter().map(RunOutcome::row).collect();
        write_csv(&out.join("runs.csv"), &runs)?;
        write_json(&out.join("runs.json"), &outcomes)?;
        let mut md = summary_markdown(&self.plan, &outcomes);
        let lines = self.unfinished_lines(out);
        if !lines.is_empty() {
            md.push_str(&format!(
                "\n{} of {} points have not finished:\n\n",
                lines.len(),
                self.plan.points.len()
            ));
            for l in &lines {
                md.push_str(&format!("- {l}\n"));
            }
        }
        write_atomic(&out.join("results.md"), md.as_bytes())?;
        let results: Vec<ExperimentRow> = groups(&self.plan, &outcomes)
            .into_iter()
            .map(|(model, length, group)| {
                let s = stats(&group);
                ExperimentRow {
                    model,
                    length,
                    runs: s.n,
                    solved: s.solved,
                    success_rate: s.rate,
                    mean_metric: s.metric,
                    mean_decay_per_step: s.decay,
                    mean_seconds: s.seconds,
                    ratio_recurrent: s.ratio_recurrent,
                    ratio_attention: s.ratio_attention,
                    dependent_recurrent: s.dependent_recurrent,
                    dependent_attention: s.dependent_attention,
                }
            })
            .collect();
        write_csv(&out.join("results.csv"), &results)?;
        write_json(
            &out.join("results.json"),
            &ExperimentResults {
                points: self.plan.points.len(),
                finished: outcomes.len(),
                results,
                unfinished: self.unfinished(out),
            },
        )
    }
}

struct Stats {
    n: usize,
    solved: usize,
    rate: f64,
    metric: f64,
    decay: Option<f64>,
    seconds: f64,
    ratio_recurrent: Option<f64>,
    ratio_attention: Option<f64>,
    dependent_recurrent: Option<f64>,
    dependent_attention: Option<f64>,
}

/// Geometric mean of the values there are (ratios span orders of magnitude).
fn geometric_mean(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let logs: Vec<f64> = values.flatten().map(f64::ln).collect();
    (!logs.is_empty()).then(|| (logs.iter().sum::<f64>() / logs.len() as f64).exp())
}

fn stats(group: &[&RunOutcome]) -> Stats {
    let n = group.len();
    let solved = group.iter().filter(|o| o.result.solved).count();
    let decays: Vec<f64> = group.iter().filter_map(|o| o.decay_per_step).collect();
    Stats {
        n,
        solved,
        rate: solved as f64 / n as f64,
        metric: group.iter().map(|o| o.result.metric).sum::<f64>() / n as f64,
        decay: (!decays.is_empty()).then(|| decays.iter().sum::<f64>() / decays.len() as f64),
        seconds: group.iter().map(|o| o.result.seconds).sum::<f64>() / n as f64,
        ratio_recurrent: geometric_mean(group.iter().map(|o| o.ratio_recurrent)),
        ratio_attention: geometric_mean(group.iter().map(|o| o.ratio_attention)),
        dependent_recurrent: geometric_mean(group.iter().map(|o| o.dependent_recurrent)),
        dependent_attention: geometric_mean(group.iter().map(|o| o.dependent_attention)),
    }
}

/// The models in plan order.
fn model_names(plan: &Plan) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for p in &plan.points {
        if !names.contains(&p.model.as_str()) {
            names.push(&p.model);
        }
    }
    names
}

/// The outcomes of each model at each length (plan order), leaving out empty groups.
fn groups<'a>(
    plan: &Plan,
    outcomes: &'a [RunOutcome],
) -> Vec<(String, usize, Vec<&'a RunOutcome>)> {
    let mut out = Vec::new();
    for name in model_names(plan) {
        for &l in &plan.lengths {
            let g: Vec<&RunOutcome> = outcomes
                .iter()
                .filter(|o| o.model == name && o.length == l)
                .collect();
            if !g.is_empty() {
                out.push((name.to_string(), l, g));
            }
        }
    }
    out
}

/// The markdown results table: one row per model, one column per length, each cell
/// `solved/runs (mean metric), decay d/step`, and on the dependency task the gradient ratios
/// of [`RunOutcome`] through the recurrence (and attention), geometric means over the runs.
pub fn summary_markdown(plan: &Plan, outcomes: &[RunOutcome]) -> String {
    let task = Task {
        kind: plan.task,
        length: plan.lengths[0],
    };
    let mut s = format!(
        "Task `{}`; cell = runs solved / runs (mean {}), measured gradient decay per step{}. Solved: {}.\n\n| model |",
        plan.task.name(),
        task.metric_name(),
        if plan.task == TaskKind::Dependency {
            ", R(l) = P(l) / P(0) at the dependency's distance l on held-out sentences through the recurrence and through attention, and at the dependent word: mean |dJ/dh| at the key noun over mean |dJ/dh| at its own step (geometric means over the runs; the analysis is in each run's gradflow/)"
        } else {
            ""
        },
        match plan.task {
            TaskKind::Adding => "test MSE < 0.01 (baseline 1/6 = 0.167)",
            _ => "accuracy >= 99%",
        }
    );
    for l in &plan.lengths {
        s.push_str(&format!(" length {l} |"));
    }
    s.push_str("\n|---|");
    s.push_str(&"---|".repeat(plan.lengths.len()));
    s.push('\n');
    let all = groups(plan, outcomes);
    let mut names: Vec<&String> = all.iter().map(|g| &g.0).collect();
    names.dedup();
    for name in names {
        s.push_str(&format!("| {name} |"));
        for &l in &plan.lengths {
            match all.iter().find(|g| &g.0 == name && g.1 == l) {
                Some((_, _, g)) => {
                    let st = stats(g);
                    let decay = st
                        .decay
                        .map_or("n/a".to_string(), |d| format!("{d:.3}/step"));
                    let ratio = |name: &str, r: Option<f64>| {
                        r.map_or(String::new(), |r| format!(", {name} {r:.1e}"))
                    };
                    s.push_str(&format!(
                        " {}/{} ({:.4}), {decay}{}{}{}{} |",
                        st.solved,
                        st.n,
                        st.metric,
                        ratio("R(l) recurrent", st.ratio_recurrent),
                        ratio("R(l) attention", st.ratio_attention),
                        ratio("dependent word recurrent", st.dependent_recurrent),
                        ratio("dependent word attention", st.dependent_attention)
                    ));
                }
                None => s.push_str(" |"),
            }
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const SWEEP: &str = r#"
task = "dependency"
lengths = [6]
seeds = [1, 2]
[defaults]
hidden = 8
embedding = 4
batch = 4
steps = 20
eval_every = 10
test_size = 8
lr = 0.01
[[model]]
name = "lstm"
[[model]]
name = "rnn"
cell = "rnn"
"#;

    fn tmpdir(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("rnnscope-exp-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    fn plan_of(text: &str) -> Result<Plan> {
        SweepFile::parse(text, Path::new("s.toml"))?.plan(Path::new("s.toml"), 1000)
    }

    #[test]
    fn a_sweep_plans_indexed_points_in_model_length_seed_order() {
        let plan = plan_of(SWEEP).unwrap();
        let dirs: Vec<(usize, &str)> = plan
            .points
            .iter()
            .map(|p| (p.index, p.dir.as_str()))
            .collect();
        assert_eq!(
            dirs,
            [
                (0, "lstm_T6_s1"),
                (1, "lstm_T6_s2"),
                (2, "rnn_T6_s1"),
                (3, "rnn_T6_s2")
            ]
        );
        let p = &plan.points[3].config;
        assert_eq!((p.hidden, p.seed, p.cell.name()), (8, 2, "rnn"));
    }

    #[test]
    fn repeated_points_escaping_names_and_huge_grids_are_refused() {
        let cases = [
            (
                SWEEP.replace("seeds = [1, 2]", "seeds = [1, 2, 1]"),
                "s.toml: seed 1 appears twice in `seeds`: every grid point must be distinct",
            ),
            (
                SWEEP.replace("lengths = [6]", "lengths = [6, 6]"),
                "s.toml: length 6 appears twice in `lengths`: every grid point must be distinct",
            ),
            (
                SWEEP.replace("name = \"rnn\"", "name = \"LSTM\""),
                "s.toml: models 0 and 1 are both named `LSTM` (names are compared ignoring case): give each [[model]] its own `name`",
            ),
            (
                SWEEP.replace("name = \"rnn\"", "name = \"../../escape\""),
                "s.toml: model 1: name `../../escape` cannot name a folder: use at most 100 letters, digits and `._+-`, starting with a letter or digit",
            ),
        ];
        for (text, want) in cases {
            let e = plan_of(&text).unwrap_err().to_string();
            assert_eq!(e, format!("invalid configuration: {want}"));
        }
        let e = SweepFile::parse(SWEEP, Path::new("s.toml"))
            .unwrap()
            .plan(Path::new("s.toml"), 3)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "invalid configuration: s.toml: the grid has 2 models x 1 lengths x 2 seeds, more than 3 points: raise --max-points to run it all, or split the sweep");
    }

    #[test]
    fn collect_gathers_finished_points_and_lists_failed_and_unfinished_ones() {
        let plan = plan_of(SWEEP).unwrap();
        let out = tmpdir("collect");
        // The whole sweep locally, as the reference.
        let all = tmpdir("all");
        let full = run_sweep(&plan, &all, 2, &|_| {}).unwrap();
        assert_eq!(full.outcomes().len(), 4);
        assert!(full.unfinished(&all).is_empty());

        plan.save(&out).unwrap();
        let never = AtomicBool::new(false);
        let silent = &mut crate::train::run::Silent;
        for k in [0, 2] {
            run_point(&out, &plan.points[k], silent, &never).unwrap();
        }
        // Point 1 fails: its directory holds another run.
        let mut other = plan.points[1].config.clone();
        other.hidden = 5;
        run_task_until(&other, Some(&plan.points[1].run_dir(&out)), silent, &never).unwrap();
        let e = run_point(&out, &plan.points[1], silent, &never).unwrap_err();
        let c = collect(&plan, &out);
        c.write_tables(&out).unwrap();
        let got: Vec<RunRow> = c.outcomes().iter().map(RunOutcome::row).collect();
        let want: Vec<RunRow> = full.outcomes().iter().map(RunOutcome::row).collect();
        let same = |r: &RunRow| RunRow {
            seconds: 0.0,
            ..r.clone()
        };
        assert_eq!(
            got.iter().map(same).collect::<Vec<_>>(),
            [same(&want[0]), same(&want[2])]
        );
        let unfinished = c.unfinished(&out);
        assert_eq!(
            unfinished,
            [
                UnfinishedPoint {
                    index: 1,
                    dir: "lstm_T6_s2".into(),
                    state: "failed".into(),
                    detail: e.to_string(),
                    log: None,
                },
                UnfinishedPoint {
                    index: 3,
                    dir: "rnn_T6_s2".into(),
                    state: "unfinished".into(),
                    detail: "not started".into(),
                    log: None,
                }
            ]
        );
        let results: ExperimentResults = read_json(&out.join("results.json")).unwrap();
        assert_eq!((results.points, results.finished), (4, 2));
        assert_eq!(results.results.len(), 2);
        assert_eq!(results.results[0].runs, 1);
        let md = std::fs::read_to_string(out.join("results.md")).unwrap();
        assert!(md.contains("2 of 4 points have not finished:\n\n- point 1 (lstm_T6_s2): failed: "));

        // Fixed and run again, the failure is gone and every point is collected.
        std::fs::remove_dir_all(plan.points[1].run_dir(&out)).unwrap();
        for k in [1, 3] {
            run_point(&out, &plan.points[k], silent, &never).unwrap();
        }
        assert!(!plan.points[1].failure_path(&out).exists());
        let c = collect(&plan, &out);
        let got: Vec<RunRow> = c.outcomes().iter().map(RunOutcome::row).collect();
        assert_eq!(
            got.iter().map(same).collect::<Vec<_>>(),
            want.iter().map(same).collect::<Vec<_>>()
        );
        // A longer plan makes the finished outcomes stale until their points run again.
        let mut longer = plan.clone();
        longer.points[0].config.steps = 30;
        longer.save(&out).unwrap();
        assert!(matches!(
            collect(&longer, &out).states[0],
            PointState::Unfinished(Some((20, 30)))
        ));
        for d in [out, all] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }
}

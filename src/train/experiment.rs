//! Sweeps over synthetic-task runs: a grid of models (cell, init, remedies) x lengths x seeds,
//! run in parallel one per core, summarised as success rate per model and length with the
//! measured gradient decay per step beside each.
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

use super::records::{write_csv, write_json, ExperimentRow, RunOutcome, RunRow};
use super::task::{run_task, TaskRunConfig};
use crate::analysis::profile;
use crate::checkpoint::write_atomic;
use crate::data::tasks::{Task, TaskKind};
use crate::error::{Error, Result};
use crate::model::{LanguageModel, State, Workspace};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use std::path::Path;
use std::sync::Mutex;

/// A parsed sweep file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    pub task: TaskKind,
    pub lengths: Vec<usize>,
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    #[serde(default)]
    pub defaults: toml::Table,
    #[serde(rename = "model")]
    pub models: Vec<toml::Table>,
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

/// One run of the grid.
#[derive(Clone, Debug)]
pub struct PlannedRun {
    pub model: String,
    pub config: TaskRunConfig,
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

    /// Every run of the grid, in model, length, seed order.
    pub fn plan(&self, path: &Path) -> Result<Vec<PlannedRun>> {
        let mut runs = Vec::new();
        for (k, m) in self.models.iter().enumerate() {
            let mut m = m.clone();
            let name = match m.remove("name") {
                Some(toml::Value::String(s)) => s,
                Some(_) => {
                    return Err(Error::Config(format!(
                        "{}: model {k}: `name` must be a string",
                        path.display()
                    )))
                }
                None => format!("model{k}"),
            };
            for &length in &self.lengths {
                for &seed in &self.seeds {
                    let base = TaskRunConfig {
                        seed,
                        ..TaskRunConfig::new(self.task, length)
                    };
                    let mut table = toml::Table::try_from(&base).expect("config serialises");
                    for (key, v) in self.defaults.iter().chain(m.iter()) {
                        if matches!(key.as_str(), "task" | "length" | "seed") {
                            return Err(Error::Config(format!(
                                "{}: model `{name}`: `{key}` is set by the sweep (use `task`, `lengths`, `seeds` at the top)",
                                path.display()
                            )));
                        }
                        table.insert(key.clone(), v.clone());
                    }
                    let config: TaskRunConfig = table.try_into().map_err(|e| {
                        Error::Config(format!("{}: model `{name}`: {e}", path.display()))
                    })?;
                    config.model_config()?;
                    runs.push(PlannedRun {
                        model: name.clone(),
                        config,
                    });
                }
            }
        }
        Ok(runs)
    }
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
    let h = model.config.hidden;
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

/// Runs the whole grid with `workers` runs at a time (each on one thread), writing every run
/// into `out/<model>_T<length>_s<seed>/` and the tables into `out/`. `log` gets a line per run.
/// A run already in its directory continues from its last checkpoint, or is taken as it is
/// when done (see [`run_task`]).
pub fn run_sweep(
    sweep: &SweepFile,
    runs: Vec<PlannedRun>,
    out: &Path,
    workers: usize,
    log: &(dyn Fn(&str) + Sync),
) -> Result<Vec<RunOutcome>> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let total = runs.len();
    let outcomes = run_parallel(runs, workers, |k, run| {
        let c = &run.config;
        let dir = out.join(format!("{}_T{}_s{}", run.model, c.length, c.seed));
        let (result, model) = run_task(c, Some(&dir), &mut |_| {})?;
        let task = Task {
            kind: c.task,
            length: c.length,
        };
        let o = RunOutcome {
            model: run.model.clone(),
            length: c.length,
            seed: c.seed,
            decay_per_step: measured_decay(&model, &task, c.seed),
            result,
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
        Ok(o)
    })?;
    write_tables(sweep, &outcomes, out)?;
    Ok(outcomes)
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

/// `runs.csv` and `runs.json` (one row per run), `results.csv` and `results.md` (success rate
/// per model and length, mean metric, mean decay per step).
fn write_tables(sweep: &SweepFile, outcomes: &[RunOutcome], out: &Path) -> Result<()> {
    let runs: Vec<RunRow> = outcomes.iter().map(RunOutcome::row).collect();
    write_csv(&out.join("runs.csv"), &runs)?;
    write_json(&out.join("runs.json"), outcomes)?;
    write_atomic(
        &out.join("results.md"),
        summary_markdown(sweep, outcomes).as_bytes(),
    )?;
    let results: Vec<ExperimentRow> = groups(sweep, outcomes)
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
            }
        })
        .collect();
    write_csv(&out.join("results.csv"), &results)
}

struct Stats {
    n: usize,
    solved: usize,
    rate: f64,
    metric: f64,
    decay: Option<f64>,
    seconds: f64,
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
    }
}

fn groups<'a>(
    sweep: &SweepFile,
    outcomes: &'a [RunOutcome],
) -> Vec<(String, usize, Vec<&'a RunOutcome>)> {
    let mut names: Vec<String> = Vec::new();
    for o in outcomes {
        if !names.contains(&o.model) {
            names.push(o.model.clone());
        }
    }
    let mut out = Vec::new();
    for name in names {
        for &l in &sweep.lengths {
            let g: Vec<&RunOutcome> = outcomes
                .iter()
                .filter(|o| o.model == name && o.length == l)
                .collect();
            if !g.is_empty() {
                out.push((name.clone(), l, g));
            }
        }
    }
    out
}

/// The markdown results table: one row per model, one column per length, each cell
/// `solved/runs (mean metric), decay d/step`.
pub fn summary_markdown(sweep: &SweepFile, outcomes: &[RunOutcome]) -> String {
    let task = Task {
        kind: sweep.task,
        length: sweep.lengths[0],
    };
    let mut s = format!(
        "Task `{}`; cell = runs solved / runs (mean {}), measured gradient decay per step. Solved: {}.\n\n| model |",
        sweep.task.name(),
        task.metric_name(),
        match sweep.task {
            TaskKind::Adding => "test MSE < 0.01 (baseline 1/6 = 0.167)",
            _ => "accuracy >= 99%",
        }
    );
    for l in &sweep.lengths {
        s.push_str(&format!(" length {l} |"));
    }
    s.push_str("\n|---|");
    s.push_str(&"---|".repeat(sweep.lengths.len()));
    s.push('\n');
    let all = groups(sweep, outcomes);
    let mut names: Vec<&String> = all.iter().map(|g| &g.0).collect();
    names.dedup();
    for name in names {
        s.push_str(&format!("| {name} |"));
        for &l in &sweep.lengths {
            match all.iter().find(|g| &g.0 == name && g.1 == l) {
                Some((_, _, g)) => {
                    let st = stats(g);
                    let decay = st
                        .decay
                        .map_or("n/a".to_string(), |d| format!("{d:.3}/step"));
                    s.push_str(&format!(
                        " {}/{} ({:.4}), {decay} |",
                        st.solved, st.n, st.metric
                    ));
                }
                None => s.push_str(" |"),
            }
        }
        s.push('\n');
    }
    s
}

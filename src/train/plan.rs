//! The plan of an experiment: every grid point with its index, its full task configuration and
//! its run directory, kept in `DIR/plan.json`. Whoever runs point `i` (the local pool, a Slurm
//! array task, a Kubernetes Indexed Job) reads the plan and trains exactly that point; the
//! collect step reads the same plan to find every point's results.
//!
//! ```text
//! DIR/plan.json                 the plan (this module)
//! DIR/<model>_T<length>_s<seed>/ the run directory of a point (a task run, see rundir.rs)
//!   outcome.json                the point's RunOutcome, written when it has finished
//! DIR/logs/point-<i>.log        what point i printed (written by the scheduler, if any)
//! DIR/logs/point-<i>.failed     the error of point i's last attempt, when it failed
//! ```
//! A run directory is one folder name inside `DIR` made of letters, digits and `._+-` (never
//! `..`, a separator or an absolute path), and no two points share one, even on a file system
//! that ignores case: the plan is refused otherwise, whether it comes from a sweep file or
//! from a `plan.json` edited by hand.

use super::records::{read_json, write_json};
use super::task::TaskRunConfig;
use crate::data::tasks::TaskKind;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The plan's file name inside the experiment directory.
pub const PLAN_FILE: &str = "plan.json";
/// A finished point's record inside its run directory.
pub const OUTCOME_FILE: &str = "outcome.json";
/// Longest model name (it becomes part of folder names).
const MAX_NAME: usize = 100;

/// Every grid point of an experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The task of every point.
    pub task: TaskKind,
    /// The sweep's lengths: the columns of the results table, in order.
    pub lengths: Vec<usize>,
    /// The grid points; point `i` is at position `i`.
    pub points: Vec<PlanPoint>,
}

/// One grid point: one task run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanPoint {
    pub index: usize,
    /// The model's name in the sweep file.
    pub model: String,
    /// The run directory: one folder name inside the experiment directory.
    pub dir: String,
    pub config: TaskRunConfig,
}

/// The run directory name of a model at a length and seed.
/// The files a sweep writes at the top of its directory (`plan.json` last).
const SWEEP_FILES: [&str; 9] = [
    "runs.csv",
    "runs.json",
    "results.csv",
    "results.json",
    "results.md",
    "report.html",
    "sweep.sbatch",
    "collect.sbatch",
    "plan.json",
];

pub fn run_dir_name(model: &str, length: usize, seed: u64) -> String {
    format!("{model}_T{length}_s{seed}")
}

/// Checks that `name` can be a folder name inside the experiment directory (and a CSV cell):
/// letters, digits and `._+-`, not starting with `.`, `+` or `-`.
pub fn check_name(name: &str) -> std::result::Result<(), String> {
    let ok_first = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_rest = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'));
    if !ok_first || !ok_rest || name.len() > MAX_NAME {
        return Err(format!(
            "`{name}` cannot name a folder: use at most {MAX_NAME} letters, digits and `._+-`, starting with a letter or digit"
        ));
    }
    Ok(())
}

impl Plan {
    /// Checks the plan; errors start with `source` (the sweep file or `plan.json`).
    pub fn validate(&self, source: &Path) -> Result<()> {
        let err = |msg: String| Error::Config(format!("{}: {msg}", source.display()));
        if self.points.is_empty() || self.lengths.is_empty() {
            return Err(err("the plan has no points".into()));
        }
        // Folder names compared ignoring case, so no two points share a directory anywhere.
        let mut dirs: HashMap<String, usize> = HashMap::new();
        for (k, p) in self.points.iter().enumerate() {
            if p.index != k {
                return Err(err(format!(
                    "point at position {k} has index {}: points must be numbered 0, 1, 2, ... in order",
                    p.index
                )));
            }
            check_name(&p.model).map_err(|e| err(format!("point {k}: model {e}")))?;
            check_name(&p.dir).map_err(|e| err(format!("point {k}: dir {e}")))?;
            if let Some(j) = dirs.insert(p.dir.to_ascii_lowercase(), k) {
                return Err(err(format!(
                    "points {j} and {k} share the run directory `{}`: every grid point needs its own",
                    p.dir
                )));
            }
            let c = &p.config;
            if c.task != self.task {
                return Err(err(format!(
                    "point {k}: task `{}` is not the plan's task `{}`",
                    c.task.name(),
                    self.task.name()
                )));
            }
            if !self.lengths.contains(&c.length) {
                return Err(err(format!(
                    "point {k}: length {} is not among the plan's lengths",
                    c.length
                )));
            }
            c.validate().map_err(|e| {
                let e = match e {
                    Error::Config(m) => m,
                    e => e.to_string(),
                };
                err(format!("point {k} (`{}`): {e}", p.dir))
            })?;
        }
        Ok(())
    }

    /// The path of `DIR/plan.json`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(PLAN_FILE)
    }

    /// Reads and checks `DIR/plan.json`.
    /// Removes the sweep planned in `dir` (if any): its plan, its points' run directories (whose
    /// names the plan's validation keeps inside `dir`), `logs/`, the tables, the report and the
    /// batch scripts. Nothing else in `dir` is touched.
    pub fn remove(dir: &Path) -> Result<()> {
        if !Self::path(dir).exists() {
            return Ok(());
        }
        let plan = Self::read(dir)?;
        let folders = plan
            .points
            .iter()
            .map(|p| p.dir.as_str())
            .chain(["logs", "plots"]);
        for f in folders {
            let p = dir.join(f);
            if p.is_dir() {
                std::fs::remove_dir_all(&p).map_err(|e| Error::io(&p, e))?;
            }
        }
        for f in SWEEP_FILES {
            let p = dir.join(f);
            if p.is_file() {
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            }
        }
        Ok(())
    }

    pub fn read(dir: &Path) -> Result<Self> {
        let path = Self::path(dir);
        if !path.exists() {
            return Err(Error::Data(format!(
                "{}: no such file: write the plan first with `rnnscope experiment --config SWEEP.toml --out {}` (add --slurm or --dry-run to only write it)",
                path.display(),
                dir.display()
            )));
        }
        let plan: Plan = read_json(&path)?;
        plan.validate(&path)?;
        Ok(plan)
    }

    /// Writes the plan to `DIR/plan.json`. A plan already there must be the same but for the
    /// points' `steps` (more steps continue the runs, as `rnnscope task` does); any other plan
    /// is refused, so one directory never mixes two sweeps.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = Self::path(dir);
        if path.exists() {
            let there: Plan = read_json(&path).map_err(|e| {
                Error::Data(format!(
                    "{e}: the directory holds something else than this sweep: choose another --out"
                ))
            })?;
            if let Some(d) = self.difference(&there) {
                return Err(Error::Data(format!(
                    "{}: holds another sweep ({d}): choose another --out, replace it with --force, or give the same sweep file to continue it",
                    path.display()
                )));
            }
            if &there == self {
                return Ok(());
            }
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        write_json(&path, self)
    }

    /// What differs between this plan and `there` other than the points' `steps`.
    fn difference(&self, there: &Plan) -> Option<String> {
        if self.task != there.task {
            return Some(format!(
                "task `{}` there, `{}` here",
                there.task.name(),
                self.task.name()
            ));
        }
        if self.points.len() != there.points.len() || self.lengths != there.lengths {
            return Some(format!(
                "{} points there, {} here",
                there.points.len(),
                self.points.len()
            ));
        }
        for (a, b) in self.points.iter().zip(&there.points) {
            if (&a.model, &a.dir) != (&b.model, &b.dir) {
                return Some(format!(
                    "point {} is `{}` there, `{}` here",
                    a.index, b.dir, a.dir
                ));
            }
            let (mut x, mut y) = (a.config.clone(), b.config.clone());
            x.steps = 0;
            y.steps = 0;
            if x != y {
                return Some(format!(
                    "point {} `{}` has another configuration",
                    a.index, a.dir
                ));
            }
        }
        None
    }

    /// Point `index`, or an error naming the plan's range.
    pub fn point(&self, index: usize, dir: &Path) -> Result<&PlanPoint> {
        self.points.get(index).ok_or_else(|| {
            Error::Data(format!(
                "{}: no point {index}: the plan has points 0 to {}",
                Self::path(dir).display(),
                self.points.len() - 1
            ))
        })
    }
}

impl PlanPoint {
    /// The point's run directory inside the experiment directory `dir`.
    pub fn run_dir(&self, dir: &Path) -> PathBuf {
        dir.join(&self.dir)
    }

    /// Where a scheduler writes what the point printed: `DIR/logs/point-<i>.log`.
    pub fn log_path(&self, dir: &Path) -> PathBuf {
        dir.join("logs").join(format!("point-{}.log", self.index))
    }

    /// The error of the point's last attempt, when it failed: `DIR/logs/point-<i>.failed`.
    pub fn failure_path(&self, dir: &Path) -> PathBuf {
        dir.join("logs")
            .join(format!("point-{}.failed", self.index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(names: &[&str]) -> Plan {
        let points = names
            .iter()
            .enumerate()
            .map(|(k, m)| PlanPoint {
                index: k,
                model: m.to_string(),
                dir: run_dir_name(m, 5, 0),
                config: TaskRunConfig::new(TaskKind::Adding, 5),
            })
            .collect();
        Plan {
            task: TaskKind::Adding,
            lengths: vec![5],
            points,
        }
    }

    fn error(p: &Plan) -> String {
        p.validate(Path::new("plan.json")).unwrap_err().to_string()
    }

    #[test]
    fn names_that_would_leave_the_directory_are_refused() {
        for bad in [
            "../../escape",
            "a/b",
            "/abs",
            ".hidden",
            "",
            "a b",
            "a,b",
            "-x",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        for good in ["lstm", "rnn-tanh", "irnn_1e-4", "gru+clip", "v1.2"] {
            check_name(good).unwrap();
        }
        let mut p = plan(&["lstm"]);
        p.points[0].dir = "../lstm".into();
        assert_eq!(
            error(&p),
            "invalid configuration: plan.json: point 0: dir `../lstm` cannot name a folder: use at most 100 letters, digits and `._+-`, starting with a letter or digit"
        );
    }

    #[test]
    fn two_points_in_one_directory_are_refused_even_across_case() {
        let p = plan(&["LSTM", "lstm"]);
        assert_eq!(
            error(&p),
            "invalid configuration: plan.json: points 0 and 1 share the run directory `lstm_T5_s0`: every grid point needs its own"
        );
        plan(&["lstm", "gru"])
            .validate(Path::new("plan.json"))
            .unwrap();
    }

    #[test]
    fn indices_out_of_order_and_foreign_lengths_are_refused() {
        let mut p = plan(&["a", "b"]);
        p.points[1].index = 5;
        assert!(
            error(&p).contains("position 1 has index 5"),
            "{}",
            error(&p)
        );
        let mut p = plan(&["a"]);
        p.points[0].config.length = 7;
        assert!(error(&p).contains("length 7 is not among"), "{}", error(&p));
    }

    #[test]
    fn a_saved_plan_accepts_only_the_same_sweep_or_more_steps() {
        let dir = std::env::temp_dir().join(format!("rnnscope-plan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let p = plan(&["a", "b"]);
        p.save(&dir).unwrap();
        assert_eq!(Plan::read(&dir).unwrap(), p);
        let mut longer = p.clone();
        longer.points[1].config.steps *= 2;
        longer.save(&dir).unwrap();
        assert_eq!(Plan::read(&dir).unwrap(), longer);
        let mut other = p.clone();
        other.points[1].config.hidden = 3;
        let e = other.save(&dir).unwrap_err().to_string();
        assert!(
            e.ends_with("plan.json: holds another sweep (point 1 `b_T5_s0` has another configuration): choose another --out, replace it with --force, or give the same sweep file to continue it"),
            "{e}"
        );
        assert_eq!(Plan::read(&dir).unwrap(), longer);
        let e = Plan::read(&dir).unwrap().point(2, &dir).unwrap_err();
        assert!(e
            .to_string()
            .ends_with("no point 2: the plan has points 0 to 1"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}

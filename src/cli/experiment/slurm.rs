//! `rnnscope experiment --slurm`: an experiment's grid as a Slurm job array plus a collect job.
//!
//! ```text
//! DIR/sweep.sbatch    array 0..N-1 (at most K at a time with --max-parallel K); task i runs
//!                     `rnnscope experiment --out DIR --run-index i`; --requeue, so a preempted
//!                     or failed node's task starts again and continues from its checkpoint
//! DIR/collect.sbatch  `rnnscope experiment --out DIR --collect`, submitted with
//!                     --dependency=afterany:<array job>, so it runs however the tasks end
//! DIR/logs/           point-<i>.log (each array task's output, appended across requeues),
//!                     collect.log
//! ```
//! Both scripts name the binary and `DIR` by absolute path: they must be on a file system the
//! compute nodes see (as a cluster's home or project space is).

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `sbatch` options of `--slurm`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct SlurmArgs {
    /// Slurm partition of the jobs (sbatch --partition).
    #[arg(long, requires = "slurm")]
    pub partition: Option<String>,
    /// Time limit of each array task, e.g. 2:00:00 or 1-00:00:00 (sbatch --time).
    #[arg(long, requires = "slurm")]
    pub time: Option<String>,
    /// Cores of each array task; the run uses that many threads (sbatch --cpus-per-task).
    #[arg(long, requires = "slurm")]
    pub cpus_per_task: Option<usize>,
    /// Memory of each array task, e.g. 4G (sbatch --mem).
    #[arg(long, requires = "slurm")]
    pub mem: Option<String>,
    /// At most this many array tasks at once (the array's `%K`).
    #[arg(long, requires = "slurm")]
    pub max_parallel: Option<usize>,
}

/// The two batch scripts of a sweep.
#[derive(Debug)]
pub struct Scripts {
    pub sweep: PathBuf,
    pub collect: PathBuf,
}

/// Characters allowed in option values and paths written into `#SBATCH` lines (no spaces,
/// quotes or `%`, which Slurm expands in file names).
fn plain(s: &str, extra: &[char]) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:,+-".contains(c) || extra.contains(&c))
}

/// `s` quoted for bash.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl SlurmArgs {
    /// Checks the values before anything is written.
    pub fn check(&self) -> Result<()> {
        for (flag, v, example) in [
            ("--partition", &self.partition, "batch"),
            ("--time", &self.time, "2:00:00"),
            ("--mem", &self.mem, "4G"),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !plain(v, &[])) {
                return Err(Error::Config(format!(
                    "{flag} {v:?}: use only letters, digits and `_.:,+-` (e.g. {flag} {example})"
                )));
            }
        }
        for (flag, v) in [
            ("--cpus-per-task", self.cpus_per_task),
            ("--max-parallel", self.max_parallel),
        ] {
            if v == Some(0) {
                return Err(Error::Config(format!("{flag} must be at least 1")));
            }
        }
        Ok(())
    }

    /// The `#SBATCH` lines shared by both jobs.
    fn common_lines(&self) -> String {
        let mut s = String::new();
        if let Some(p) = &self.partition {
            s.push_str(&format!("#SBATCH --partition={p}\n"));
        }
        if let Some(t) = &self.time {
            s.push_str(&format!("#SBATCH --time={t}\n"));
        }
        if let Some(m) = &self.mem {
            s.push_str(&format!("#SBATCH --mem={m}\n"));
        }
        s
    }

    /// The array script: task `i` trains point `i` of `dir`'s plan with `exe`.
    pub fn sweep_script(&self, exe: &Path, dir: &Path, points: usize) -> String {
        let array = match self.max_parallel {
            Some(k) => format!("0-{}%{k}", points - 1),
            None => format!("0-{}", points - 1),
        };
        let d = dir.display();
        let mut s = format!(
            "#!/bin/bash\n\
             # Written by `rnnscope experiment --slurm`: array task i trains grid point i of\n\
             # {d}/plan.json. Submitted again, finished points are skipped and stopped ones\n\
             # continue from their last checkpoint.\n\
             #SBATCH --job-name={}\n\
             #SBATCH --array={array}\n\
             #SBATCH --output={d}/logs/point-%a.log\n\
             #SBATCH --open-mode=append\n\
             #SBATCH --requeue\n",
            job_name(dir, "")
        );
        s.push_str(&self.common_lines());
        if let Some(n) = self.cpus_per_task {
            s.push_str(&format!("#SBATCH --cpus-per-task={n}\n"));
        }
        s.push_str(&format!(
            "exec {} experiment --out {} --run-index \"$SLURM_ARRAY_TASK_ID\" --threads \"${{SLURM_CPUS_PER_TASK:-1}}\"\n",
            quote(&exe.display().to_string()),
            quote(&d.to_string())
        ));
        s
    }

    /// The collect script: the tables and report of whatever points have finished.
    pub fn collect_script(&self, exe: &Path, dir: &Path) -> String {
        let d = dir.display();
        let mut s = format!(
            "#!/bin/bash\n\
             # Written by `rnnscope experiment --slurm`: the results of the sweep in {d},\n\
             # from whatever points have finished (exit status 1 when some have not).\n\
             #SBATCH --job-name={}\n\
             #SBATCH --output={d}/logs/collect.log\n\
             #SBATCH --open-mode=append\n",
            job_name(dir, "-collect")
        );
        s.push_str(&self.common_lines());
        s.push_str(&format!(
            "exec {} experiment --out {} --collect\n",
            quote(&exe.display().to_string()),
            quote(&d.to_string())
        ));
        s
    }

    /// Writes `DIR/sweep.sbatch`, `DIR/collect.sbatch` and `DIR/logs/` (Slurm does not create
    /// the folders of its output files). `dir` must be absolute.
    pub fn write(&self, exe: &Path, dir: &Path, points: usize) -> Result<Scripts> {
        let shown = dir.display().to_string();
        if let Some(c) = shown
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || "_.:,+-/~=@".contains(c)))
        {
            return Err(Error::Config(format!(
                "--out {shown}: Slurm's #SBATCH lines cannot name a path holding `{c}`: choose an --out path of letters, digits and `/._+-`"
            )));
        }
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| Error::io(&logs, e))?;
        let scripts = Scripts {
            sweep: dir.join("sweep.sbatch"),
            collect: dir.join("collect.sbatch"),
        };
        crate::checkpoint::write_atomic(
            &scripts.sweep,
            self.sweep_script(exe, dir, points).as_bytes(),
        )?;
        crate::checkpoint::write_atomic(
            &scripts.collect,
            self.collect_script(exe, dir).as_bytes(),
        )?;
        Ok(scripts)
    }
}

/// `rnnscope-<folder name of DIR><suffix>`.
fn job_name(dir: &Path, suffix: &str) -> String {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .filter(|n| plain(n, &[]))
        .unwrap_or_else(|| "sweep".into());
    format!("rnnscope-{name}{suffix}")
}

/// Submits `script` with `sbatch --parsable` (and `extra` options before it); returns the job id.
pub fn sbatch(script: &Path, extra: &[String]) -> Result<String> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .args(extra)
        .arg(script)
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Usage(
                    "sbatch not found: run --slurm on a Slurm login node (or install Slurm's client commands, e.g. Debian's slurm-client), or add --dry-run to only write the scripts"
                        .into(),
                )
            } else {
                Error::Usage(format!("cannot run sbatch: {e}"))
            }
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // `--parsable` prints `ID` or `ID;CLUSTER`.
    let id = stdout.trim().split(';').next().unwrap_or("").to_string();
    if !out.status.success() || id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        // Slurm's last line says why (`sbatch: error: Batch job submission failed: ...`).
        let why = stderr
            .lines()
            .chain(stdout.lines())
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        return Err(Error::Usage(format!(
            "sbatch refused {}: {}",
            script.display(),
            why.trim()
        )));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_array_script_runs_one_point_per_task_and_is_requeued() {
        let a = SlurmArgs {
            partition: Some("cpu".into()),
            time: Some("2:00:00".into()),
            cpus_per_task: Some(4),
            mem: Some("4G".into()),
            max_parallel: Some(10),
        };
        let s = a.sweep_script(Path::new("/opt/rnnscope"), Path::new("/home/u/sw-1"), 24);
        let lines: Vec<&str> = s.lines().filter(|l| !l.starts_with("# ")).collect();
        assert_eq!(
            lines,
            [
                "#!/bin/bash",
                "#SBATCH --job-name=rnnscope-sw-1",
                "#SBATCH --array=0-23%10",
                "#SBATCH --output=/home/u/sw-1/logs/point-%a.log",
                "#SBATCH --open-mode=append",
                "#SBATCH --requeue",
                "#SBATCH --partition=cpu",
                "#SBATCH --time=2:00:00",
                "#SBATCH --mem=4G",
                "#SBATCH --cpus-per-task=4",
                "exec '/opt/rnnscope' experiment --out '/home/u/sw-1' --run-index \"$SLURM_ARRAY_TASK_ID\" --threads \"${SLURM_CPUS_PER_TASK:-1}\"",
            ]
        );
        let c = SlurmArgs::default().collect_script(Path::new("/x/it's"), Path::new("/d"));
        assert!(c.contains("#SBATCH --output=/d/logs/collect.log\n"));
        assert!(c.ends_with("exec '/x/it'\\''s' experiment --out '/d' --collect\n"));
        assert!(!c.contains("--array"));
    }

    #[test]
    fn values_that_would_break_a_batch_script_are_refused() {
        let a = SlurmArgs {
            time: Some("1:00\n#SBATCH --x".into()),
            ..Default::default()
        };
        assert_eq!(
            a.check().unwrap_err().to_string(),
            "invalid configuration: --time \"1:00\\n#SBATCH --x\": use only letters, digits and `_.:,+-` (e.g. --time 2:00:00)"
        );
        let a = SlurmArgs {
            max_parallel: Some(0),
            ..Default::default()
        };
        assert!(a
            .check()
            .unwrap_err()
            .to_string()
            .contains("--max-parallel"));
        let e = SlurmArgs::default()
            .write(Path::new("/bin/x"), Path::new("/tmp/a%b"), 2)
            .unwrap_err();
        assert!(e.to_string().contains("holding `%`"), "{e}");
    }
}

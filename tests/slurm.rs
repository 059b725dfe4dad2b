//! Experiments as plans of indexed grid points, end to end through the built binary.
//!
//! Without a cluster: a plan run point by point (`--run-index`, or the index from
//! `SLURM_ARRAY_TASK_ID` / `JOB_COMPLETION_INDEX`) collects to the same numbers as the local
//! run of the same sweep; `--slurm --dry-run` writes the plan and batch scripts; `--slurm`
//! without `sbatch` is one line naming the fix.
//!
//! On a real single-node Slurm cluster that the test starts itself (munged, `slurmctld -D`,
//! `slurmd -D`, all on private sockets, ports and folders, stopped by a guard even when the
//! test fails): a 4-point sweep submitted with `--slurm`, one point killed by
//! `scontrol requeue` after its first checkpoint (it continues from that checkpoint), one
//! point made to fail (its folder holds another run; the collect job reports it and collects
//! the others), and the collected numbers equal the local run's. Skipped with a notice when
//! the Slurm and munge binaries are missing or the test is not root, unless
//! `RNNSCOPE_REQUIRE_SLURM=1` (set by `.ci/run`, which installs Debian's `slurmctld slurmd
//! slurm-client munge`).

mod common;

use common::TempDir;

use rnnscope::train::records::{read_csv, ExperimentRow, RunRow};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rnnscope");

/// The binary with no scheduler index in its environment.
fn rnnscope() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("JOB_COMPLETION_INDEX");
    c
}

fn ok(mut c: Command) -> Output {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The rows of `runs.csv` without the wall time.
fn runs(dir: &Path) -> Vec<RunRow> {
    read_csv::<RunRow>(&dir.join("runs.csv"))
        .unwrap()
        .into_iter()
        .map(|r| RunRow { seconds: 0.0, ..r })
        .collect()
}

/// The rows of `results.csv` without the wall time.
fn results(dir: &Path) -> Vec<ExperimentRow> {
    read_csv::<ExperimentRow>(&dir.join("results.csv"))
        .unwrap()
        .into_iter()
        .map(|r| ExperimentRow {
            mean_seconds: 0.0,
            ..r
        })
        .collect()
}

const SMALL_SWEEP: &str = r#"
task = "dependency"
lengths = [6]
seeds = [1, 2]
[defaults]
hidden = 8
embedding = 4
batch = 4
steps = 40
eval_every = 10
test_size = 8
lr = 0.01
[[model]]
name = "lstm"
[[model]]
name = "gru"
cell = "gru"
"#;

#[test]
fn points_run_by_index_collect_to_the_numbers_of_the_local_run() {
    let tmp = TempDir::new("index");
    let sweep = tmp.join("sweep.toml");
    std::fs::write(&sweep, SMALL_SWEEP).unwrap();
    let local = tmp.join("local");
    let mut c = rnnscope();
    c.args(["experiment", "--config"])
        .arg(&sweep)
        .arg("--out")
        .arg(&local);
    ok(c);
    assert_eq!(runs(&local).len(), 4);

    // Plan only (--slurm --dry-run), then point 1 from a Kubernetes-style index.
    let out = tmp.join("byindex");
    let mut c = rnnscope();
    c.args(["experiment", "--slurm", "--dry-run", "--max-parallel", "3"])
        .arg("--config")
        .arg(&sweep)
        .arg("--out")
        .arg(&out);
    let o = ok(c);
    assert!(String::from_utf8_lossy(&o.stdout).contains("not submitted (--dry-run)"));
    let script = text(&out.join("sweep.sbatch"));
    assert!(script.contains("#SBATCH --array=0-3%3\n"), "{script}");
    assert!(script.contains("#SBATCH --requeue\n"));
    assert!(out.join("logs").is_dir());
    let mut c = rnnscope();
    c.args(["experiment", "--out"])
        .arg(&out)
        .env("JOB_COMPLETION_INDEX", "1");
    let o = ok(c);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("point 1 (lstm_T6_s2): accuracy "));
    assert!(out.join("lstm_T6_s2/outcome.json").exists());
    assert!(!out.join("lstm_T6_s1").exists());

    // Collect with points missing: the table of what finished, the rest listed, status 1.
    let mut c = rnnscope();
    c.args(["experiment", "--collect", "--out"]).arg(&out);
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("point 0 (lstm_T6_s1): unfinished: not started\n"),
        "{stdout}"
    );
    assert!(stdout.contains("1 of 4 points finished"), "{stdout}");
    assert_eq!(runs(&out), runs(&local)[1..2]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: 3 of 4 points have not finished (listed above)"));

    // The other points, by flag and from Slurm's variable (the flag wins over it).
    for (flag, env) in [(Some("0"), "9"), (None, "2"), (None, "3")] {
        let mut c = rnnscope();
        c.args(["experiment", "--out"])
            .arg(&out)
            .env("SLURM_ARRAY_TASK_ID", env);
        if let Some(i) = flag {
            c.args(["--run-index", i]);
        }
        ok(c);
    }
    // Point 1 again: finished, so nothing trains.
    let mut c = rnnscope();
    c.args(["experiment", "--out"])
        .arg(&out)
        .args(["--run-index", "1"]);
    let o = ok(c);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already at update 40 of 40: nothing to do")
    );
    let mut c = rnnscope();
    c.args(["experiment", "--collect", "--out"]).arg(&out);
    ok(c);
    assert_eq!(runs(&out), runs(&local));
    assert_eq!(results(&out), results(&local));
    assert!(out.join("results.json").exists() && out.join("report.html").exists());

    // Bad indices are one line each.
    for (env, args, want) in [
        (
            Some("x"),
            vec![],
            "error: SLURM_ARRAY_TASK_ID=\"x\" is not a grid point index: give --run-index I",
        ),
        (
            None,
            vec!["--run-index", "4"],
            "plan.json: no point 4: the plan has points 0 to 3",
        ),
        (None, vec![], "which grid point? give --config SWEEP.toml"),
    ] {
        let mut c = rnnscope();
        c.args(["experiment", "--out"]).arg(&out).args(&args);
        if let Some(v) = env {
            c.env("SLURM_ARRAY_TASK_ID", v);
        }
        let o = c.output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(want), "{stderr}");
    }

    // Another sweep into the same folder is refused before anything is written.
    std::fs::write(&sweep, SMALL_SWEEP.replace("hidden = 8", "hidden = 9")).unwrap();
    let before = text(&out.join("plan.json"));
    let mut c = rnnscope();
    c.args(["experiment", "--config"])
        .arg(&sweep)
        .arg("--out")
        .arg(&out);
    let o = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("plan.json: holds another sweep (point 0 `lstm_T6_s1` has another configuration): choose another --out"),
        "{stderr}"
    );
    assert_eq!(text(&out.join("plan.json")), before);
}

#[test]
fn slurm_without_sbatch_is_one_line_naming_the_fix() {
    let tmp = TempDir::new("nosbatch");
    let sweep = tmp.join("sweep.toml");
    std::fs::write(&sweep, SMALL_SWEEP).unwrap();
    let mut c = rnnscope();
    c.args(["experiment", "--slurm", "--config"])
        .arg(&sweep)
        .arg("--out")
        .arg(tmp.join("out"))
        .env("PATH", tmp.join("empty"));
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "error: sbatch not found: run --slurm on a Slurm login node (or install Slurm's client commands, e.g. Debian's slurm-client), or add --dry-run to only write the scripts\n"
    );
}

// ---------------------------------------------------------------- the cluster

/// Why the cluster test cannot run here, if it cannot.
fn missing_slurm() -> Option<String> {
    for b in [
        "munged",
        "slurmctld",
        "slurmd",
        "sbatch",
        "scontrol",
        "squeue",
        "sinfo",
    ] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(b).is_file()))
            || Path::new("/usr/sbin").join(b).is_file();
        if !found {
            return Some(format!(
                "no `{b}` (install Debian's slurmctld slurmd slurm-client munge)"
            ));
        }
    }
    if !text(Path::new("/proc/self/status"))
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    {
        return Some("not root (slurmd runs jobs as root, munged as user munge)".into());
    }
    if munge_ids().is_none() {
        return Some("no user `munge` (install Debian's munge)".into());
    }
    None
}

/// The uid and gid of user `munge`.
fn munge_ids() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("munge:"))?;
    let f: Vec<&str> = line.split(':').collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sbin(name: &str) -> PathBuf {
    let p = Path::new("/usr/sbin").join(name);
    if p.is_file() {
        p
    } else {
        PathBuf::from(name)
    }
}

/// Polls `done` every 100 ms for at most `limit`.
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "gave up after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A single-node Slurm cluster in a folder of its own; its daemons (and any job still in
/// it) are stopped when it is dropped.
struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
    daemons: Vec<Child>,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let (uid, gid) = munge_ids().unwrap();
        let munge = dir.join("munge");
        for d in ["munge", "state", "spool", "log"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        std::os::unix::fs::chown(&munge, Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(&munge, std::fs::Permissions::from_mode(0o755)).unwrap();
        let key = munge.join("munge.key");
        let mut bytes = vec![0u8; 1024];
        use std::io::Read;
        std::fs::File::open("/dev/urandom")
            .unwrap()
            .read_exact(&mut bytes)
            .unwrap();
        std::fs::write(&key, &bytes).unwrap();
        std::os::unix::fs::chown(&key, Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut cluster = Cluster {
            dir: dir.to_path_buf(),
            conf: dir.join("slurm.conf"),
            daemons: Vec::new(),
        };
        let socket = munge.join("munge.socket");
        let log =
            |name: &str| Stdio::from(std::fs::File::create(dir.join("log").join(name)).unwrap());
        use std::os::unix::process::CommandExt;
        let munged = Command::new(sbin("munged"))
            .arg("--foreground")
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--key-file={}", key.display()))
            .arg(format!("--log-file={}", munge.join("munged.log").display()))
            .arg(format!("--pid-file={}", munge.join("munged.pid").display()))
            .arg(format!(
                "--seed-file={}",
                munge.join("munged.seed").display()
            ))
            .uid(uid)
            .gid(gid)
            .stdout(log("munged.out"))
            .stderr(log("munged.err"))
            .spawn()
            .unwrap();
        cluster.daemons.push(munged);
        wait_until(Duration::from_secs(20), "munged's socket", || {
            socket.exists()
        });

        let host = text(Path::new("/proc/sys/kernel/hostname"));
        let host = host.trim().split('.').next().unwrap().to_string();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let d = dir.display();
        // cred_expire=5: a requeued job may start again 5 s later (the default is 120 s).
        let conf = format!(
            "ClusterName=rnnscope\n\
             SlurmctldHost={host}(127.0.0.1)\n\
             SlurmctldPort={}\n\
             SlurmdPort={}\n\
             SlurmUser=root\n\
             AuthType=auth/munge\n\
             CredType=cred/munge\n\
             AuthInfo=socket={},cred_expire=5\n\
             StateSaveLocation={d}/state\n\
             SlurmdSpoolDir={d}/spool\n\
             SlurmctldPidFile={d}/slurmctld.pid\n\
             SlurmdPidFile={d}/slurmd.pid\n\
             SlurmctldLogFile={d}/log/slurmctld.log\n\
             SlurmdLogFile={d}/log/slurmd.log\n\
             ProctrackType=proctrack/linuxproc\n\
             TaskPlugin=task/none\n\
             JobAcctGatherType=jobacct_gather/none\n\
             AccountingStorageType=accounting_storage/none\n\
             MpiDefault=none\n\
             MailProg=/bin/true\n\
             ReturnToService=2\n\
             SchedulerParameters=kill_invalid_depend\n\
             SelectType=select/cons_tres\n\
             SelectTypeParameters=CR_Core\n\
             NodeName=rnnscope-node NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN\n\
             PartitionName=rnnscope Nodes=rnnscope-node Default=YES MaxTime=INFINITE State=UP\n",
            free_port(),
            free_port(),
            socket.display(),
        );
        std::fs::write(&cluster.conf, conf).unwrap();
        let ctld = Command::new(sbin("slurmctld"))
            .args(["-D", "-f"])
            .arg(&cluster.conf)
            .stdout(log("slurmctld.out"))
            .stderr(log("slurmctld.err"))
            .spawn()
            .unwrap();
        cluster.daemons.push(ctld);
        let slurmd = Command::new(sbin("slurmd"))
            .args(["-D", "-N", "rnnscope-node", "-f"])
            .arg(&cluster.conf)
            .stdout(log("slurmd.out"))
            .stderr(log("slurmd.err"))
            .spawn()
            .unwrap();
        cluster.daemons.push(slurmd);
        wait_until(Duration::from_secs(60), "the node to be idle", || {
            let o = cluster
                .cmd("sinfo")
                .args(["-h", "-o", "%t"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).trim() == "idle"
        });
        cluster
    }

    /// A command talking to this cluster.
    fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", &self.conf)
            .env_remove("SLURM_ARRAY_TASK_ID")
            .env_remove("JOB_COMPLETION_INDEX");
        c
    }

    /// Whether any job is pending or running.
    fn busy(&self) -> bool {
        let o = self.cmd("squeue").arg("-h").output().unwrap();
        !o.status.success() || !String::from_utf8_lossy(&o.stdout).trim().is_empty()
    }

    /// The daemons' logs, for failure messages.
    fn logs(&self) -> String {
        let mut s = String::new();
        for f in ["slurmctld.log", "slurmd.log", "munged.err"] {
            let t = std::fs::read_to_string(self.dir.join("log").join(f)).unwrap_or_default();
            let tail: Vec<&str> = t.lines().rev().take(15).collect();
            s.push_str(&format!("--- {f}\n"));
            for l in tail.iter().rev() {
                s.push_str(&format!("{l}\n"));
            }
        }
        s
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Jobs first (so no job step outlives slurmd), then slurmd and slurmctld, which stop
        // themselves (reaping their helpers) on `scontrol shutdown`, then munged.
        if self.daemons.len() == 3 {
            let _ = self.cmd("scancel").args(["-p", "rnnscope"]).output();
            let start = Instant::now();
            while self.busy() && start.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = self.cmd("scontrol").arg("shutdown").output();
        }
        for (k, mut d) in self.daemons.drain(..).enumerate().rev() {
            let start = Instant::now();
            while k > 0
                && matches!(d.try_wait(), Ok(None))
                && start.elapsed() < Duration::from_secs(5)
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

/// A child process killed when dropped (a test that fails leaves nothing running).
struct Running(Option<Child>);

impl Running {
    fn finish(mut self) -> Output {
        self.0.take().unwrap().wait_with_output().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

const CLUSTER_SWEEP: &str = r#"
# Point 0 and 1 (`long`) run long enough to be killed after a checkpoint; 2 and 3 are short.
task = "adding"
lengths = [30]
seeds = [1, 2]
[defaults]
batch = 8
test_size = 16
lr = 0.01
[[model]]
name = "long"
hidden = 32
steps = 12000
eval_every = 200
[[model]]
name = "short"
hidden = 8
steps = 300
eval_every = 50
"#;

/// The job ids in `submitted array job A (...) and collect job C (...)`.
fn job_ids(stdout: &str) -> (String, String) {
    let words: Vec<&str> = stdout.split_whitespace().collect();
    let after = |a: &str, b: &str| {
        words
            .windows(3)
            .find(|w| w[0] == a && w[1] == b)
            .map(|w| w[2].to_string())
            .unwrap_or_else(|| panic!("no `{a} {b} ID` in:\n{stdout}"))
    };
    (after("array", "job"), after("collect", "job"))
}

#[test]
fn a_sweep_on_a_slurm_cluster_survives_a_requeue_and_a_failed_point() {
    if let Some(why) = missing_slurm() {
        if std::env::var("RNNSCOPE_REQUIRE_SLURM").is_ok_and(|v| v == "1") {
            panic!("RNNSCOPE_REQUIRE_SLURM=1 but the Slurm test cannot run: {why}");
        }
        eprintln!(
            "SKIPPED a_sweep_on_a_slurm_cluster_survives_a_requeue_and_a_failed_point: {why}"
        );
        return;
    }
    let start = Instant::now();
    let tmp = TempDir::new("cluster");
    let sweep = tmp.join("sweep.toml");
    std::fs::write(&sweep, CLUSTER_SWEEP).unwrap();

    // The reference: the same sweep run here, while the cluster starts.
    let local = tmp.join("local");
    let mut c = rnnscope();
    c.args(["experiment", "--threads", "2", "--config"])
        .arg(&sweep)
        .arg("--out")
        .arg(&local)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let local_run = Running(Some(c.spawn().unwrap()));

    let cluster = Cluster::start(&tmp.join("cluster"));
    let out = tmp.join("sweep");
    let plan = |c: &mut Command| {
        c.args(["experiment", "--slurm", "--max-parallel", "2", "--config"])
            .arg(&sweep)
            .arg("--out")
            .arg(&out);
    };
    // The plan and scripts first; then point 3 is made to fail: its folder holds another run.
    let mut c = cluster.cmd(BIN);
    plan(&mut c);
    c.arg("--dry-run");
    ok(c);
    let mut c = rnnscope();
    // The same options as the point's but `hidden` (the first field in which they differ).
    c.args(["task", "adding", "--length", "30", "--hidden", "3"])
        .args(["--steps", "2", "--eval-every", "50", "--batch", "8"])
        .arg("--out")
        .arg(out.join("short_T30_s2"));
    ok(c);

    let mut c = cluster.cmd(BIN);
    plan(&mut c);
    let submitted = ok(c);
    let stdout = String::from_utf8_lossy(&submitted.stdout);
    let (array, collect) = job_ids(&stdout);
    assert!(
        stdout.contains(&format!("watch:   squeue -j {array},{collect}")),
        "{stdout}"
    );

    // Point 0 is killed and requeued as soon as it has its first checkpoint.
    let state = out.join("long_T30_s1/train_state.safetensors");
    wait_until(
        Duration::from_secs(60),
        "point 0's first checkpoint",
        || state.exists(),
    );
    let mut c = cluster.cmd("scontrol");
    c.args(["requeue", &format!("{array}_0")]);
    ok(c);

    let limit = Duration::from_secs(150);
    let waited = Instant::now();
    while cluster.busy() {
        assert!(
            waited.elapsed() < limit,
            "the jobs did not end within {limit:?}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let local_out = local_run.finish();
    assert!(
        local_out.status.success(),
        "{}",
        String::from_utf8_lossy(&local_out.stderr)
    );

    // What Slurm says of the array tasks: point 3 failed, the others completed, point 0 after
    // one restart.
    let o = ok({
        let mut c = cluster.cmd("scontrol");
        c.args(["-o", "show", "job", &array]);
        c
    });
    let jobs = String::from_utf8_lossy(&o.stdout);
    let field = |line: &str, key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or_default()
            .to_string()
    };
    let mut tasks: Vec<(String, String, String)> = jobs
        .lines()
        .map(|l| {
            (
                field(l, "ArrayTaskId="),
                field(l, "JobState="),
                field(l, "Restarts="),
            )
        })
        .collect();
    tasks.sort();
    let want: Vec<(String, String, String)> = [
        ("0", "COMPLETED", "1"),
        ("1", "COMPLETED", "0"),
        ("2", "COMPLETED", "0"),
        ("3", "FAILED", "0"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(tasks, want, "{jobs}");

    // Point 0 was killed once and continued from its checkpoint.
    let log0 = text(&out.join("logs/point-0.log"));
    assert!(log0.contains("DUE TO JOB REQUEUE"), "{log0}");
    let resumed = log0
        .lines()
        .find_map(|l| {
            l.split(" at update ")
                .nth(1)
                .filter(|_| l.starts_with("continuing "))
        })
        .unwrap_or_else(|| panic!("no `continuing ... at update` in:\n{log0}"));
    let (from, of) = resumed.split_once(" of ").unwrap();
    let from: u64 = from.parse().unwrap();
    assert!((200..12000).contains(&from) && of == "12000", "{resumed}");

    // Point 3 failed with its error in its log; the collect job listed it and the table of
    // the other three is the local run's.
    let log3 = text(&out.join("logs/point-3.log"));
    assert!(
        log3.contains("error: point 3 (short_T30_s2): ")
            && log3.contains("holds a run of another configuration"),
        "{log3}"
    );
    let collected = text(&out.join("logs/collect.log"));
    assert!(collected.contains("3 of 4 points finished"), "{collected}");
    let dir = out.canonicalize().unwrap();
    let listed = format!(
        "point 3 (short_T30_s2): failed: {}: holds a run of another configuration (`hidden` is 3 there, 8 here); log {}\n",
        dir.join("short_T30_s2").display(),
        dir.join("logs/point-3.log").display()
    );
    assert!(collected.contains(&listed), "{collected}");
    assert_eq!(runs(&out), runs(&local)[..3]);

    // Point 3 fixed and run again as its array task would: everything collected, status 0.
    std::fs::remove_dir_all(out.join("short_T30_s2")).unwrap();
    let mut c = rnnscope();
    c.args(["experiment", "--out"])
        .arg(&out)
        .env("SLURM_ARRAY_TASK_ID", "3");
    ok(c);
    let mut c = rnnscope();
    c.args(["experiment", "--collect", "--out"]).arg(&out);
    ok(c);
    assert_eq!(runs(&out), runs(&local));
    assert_eq!(results(&out), results(&local));

    drop(cluster);
    eprintln!(
        "the Slurm sweep test took {:.0} s",
        start.elapsed().as_secs_f64()
    );
}

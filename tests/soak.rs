//! Kill-and-resume soak: a training run killed (SIGKILL) at random moments, each time continued
//! (`--resume` once it has a checkpoint, `--out` again before: a run without a checkpoint starts
//! over), ends with exactly the weights of an uninterrupted run.

use rnnscope::checkpoint::TensorFile;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rnnscope");
const KILLS: usize = 8;

fn train_args(corpus: &Path) -> Vec<String> {
    let s = format!(
        "train --corpus {} --hidden 16 --embedding 8 --batch 4 --bptt 16 --steps 600 --eval-every 13 --threads 1 --quiet",
        corpus.display()
    );
    s.split_whitespace().map(String::from).collect()
}

/// Every tensor of a checkpoint, by name.
fn tensors(path: &Path) -> Vec<(String, Vec<f64>)> {
    let f = TensorFile::open(path).unwrap();
    f.tensors.into_iter().map(|(n, t)| (n, t.data)).collect()
}

#[test]
fn a_run_killed_at_random_moments_ends_with_the_weights_of_an_uninterrupted_one() {
    let dir = std::env::temp_dir().join(format!("rnnscope-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let corpus = dir.join("corpus.txt");
    let text: String = (0..600)
        .map(|i| format!("{} sees {} near the {}.\n", i % 7, i % 5, i % 3))
        .collect();
    std::fs::write(&corpus, text).unwrap();

    let full = dir.join("full");
    let start = Instant::now();
    let o = Command::new(BIN)
        .args(train_args(&corpus))
        .arg("--out")
        .arg(&full)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let uninterrupted = start.elapsed();

    // Kill at moments spread over the uninterrupted run's length (seeded, so repeatable).
    let killed = dir.join("killed");
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut kills = 0;
    let mut attempts = 0;
    loop {
        attempts += 1;
        assert!(attempts < 200, "the run never finished");
        let mut cmd = Command::new(BIN);
        if killed.join("train_state.safetensors").exists() {
            cmd.arg("train").arg("--resume").arg(&killed);
            cmd.args(["--threads", "1", "--quiet"]);
        } else {
            cmd.args(train_args(&corpus)).arg("--out").arg(&killed);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if kills < KILLS {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            // At most a tenth of a run each time, so that every kill lands before the end.
            let frac = (s % 1000) as f64 / 1000.0 * 0.1;
            std::thread::sleep(uninterrupted.mul_f64(frac).max(Duration::from_millis(2)));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
                continue;
            }
        }
        // Not killed: it ran to the end.
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "attempt {attempts}: {err}");
        break;
    }
    assert_eq!(kills, KILLS);
    println!(
        "soak: {kills} kills in {attempts} attempts; an uninterrupted run takes {uninterrupted:?}"
    );
    for f in ["last.safetensors", "best.safetensors"] {
        assert_eq!(
            tensors(&killed.join(f)),
            tensors(&full.join(f)),
            "{f} differs after {kills} kills"
        );
    }
    let metrics = |d: &Path| -> Vec<String> {
        // step, training and validation loss (time and throughput differ from run to run)
        std::fs::read_to_string(d.join("metrics.csv"))
            .unwrap()
            .lines()
            .map(|l| l.split(',').take(3).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(metrics(&killed), metrics(&full));
    let _ = std::fs::remove_dir_all(&dir);
}

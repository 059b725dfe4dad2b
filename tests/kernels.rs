//! `RNNSCOPE_KERNEL` forces the per-step kernel path of the command line: `bench --json`
//! reports the path that ran, and a path the CPU cannot run, or an unknown name, is refused
//! with a one-line error before any work.

use rnnscope::tensor::KernelPath;
use std::io::Write;
use std::process::{Command, Output};

/// `rnnscope bench --json` on the smallest configuration with `RNNSCOPE_KERNEL=value` (unset
/// for `None`).
fn bench(value: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rnnscope"));
    cmd.args([
        "bench",
        "--json",
        "--config",
        "rnn_h256_b32_t64",
        "--seconds",
        "0",
        "--threads",
        "1",
    ]);
    match value {
        Some(v) => cmd.env("RNNSCOPE_KERNEL", v),
        None => cmd.env_remove("RNNSCOPE_KERNEL"),
    };
    cmd.output().unwrap()
}

/// The `kernel` and `cpu` fields of the one result row.
fn kernel_and_cpu(out: &Output) -> (String, String) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &rows[0];
    (
        row["kernel"].as_str().unwrap().to_string(),
        row["cpu"].as_str().unwrap().to_string(),
    )
}

/// The one-line error of a refused run.
fn refusal(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

#[test]
fn env_var_forces_each_runnable_path_and_refuses_the_rest() {
    let (kernel, cpu) = kernel_and_cpu(&bench(None));
    assert_eq!(kernel, KernelPath::best().name(), "unset: the fastest path");
    assert!(!cpu.is_empty());
    for path in KernelPath::ALL {
        let out = bench(Some(path.name()));
        match path.missing() {
            None => assert_eq!(kernel_and_cpu(&out).0, path.name()),
            Some(lack) => {
                let err = refusal(&out);
                assert!(
                    err.contains(&format!("RNNSCOPE_KERNEL={}", path.name())) && err.contains(lack),
                    "{err}"
                );
                let _ = writeln!(
                    std::io::stderr(),
                    "kernel path {}: not tested (CPU lacks {lack})",
                    path.name()
                );
            }
        }
    }
    let err = refusal(&bench(Some("avx9")));
    assert!(
        err.contains("RNNSCOPE_KERNEL=`avx9`") && err.contains("generic"),
        "{err}"
    );
}

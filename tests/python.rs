//! The Python package (`python/`) built and tested with pytest, as a user installs it.
//!
//! Makes a virtual environment in `target/python-venv` (with the system's site packages, so
//! an installed torch is seen), installs maturin, numpy and pytest into it when missing, then
//! `pip install ./python` (built in `target/python-build`, so re-runs are incremental), and runs
//! `pytest python/tests` with `RNNSCOPE_BIN` set to the built command. Fails with pytest's
//! output. Skipped with a notice when there is no `python3` with `venv` (or `RNNSCOPE_PYTHON`),
//! unless `RNNSCOPE_REQUIRE_PYTHON=1` (set by `.ci/run`).

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_rnnscope");

fn python() -> Option<String> {
    let py = std::env::var("RNNSCOPE_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import venv, ensurepip"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(py)
}

/// Runs `cmd`, panicking with its output when it fails.
fn run(mut cmd: Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

/// `PATH` with the venv's scripts first (the maturin build backend runs the `maturin` there).
fn with_venv_on_path(vpy: &Path) -> std::ffi::OsString {
    let bin = vpy
        .parent()
        .expect("the venv's python lies in its scripts folder");
    let old = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&old)))
        .expect("PATH entries join")
}

#[test]
fn python_package_passes_its_tests() {
    let Some(py) = python() else {
        if std::env::var("RNNSCOPE_REQUIRE_PYTHON").is_ok_and(|v| v == "1") {
            panic!("RNNSCOPE_REQUIRE_PYTHON=1 but no python3 with venv was found: install Python 3.9+ (apt-get install python3-venv) or set RNNSCOPE_PYTHON");
        }
        eprintln!("SKIPPED python_package_passes_its_tests: no python3 with venv on the PATH (install Python 3.9+, or set RNNSCOPE_PYTHON)");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // target/release/rnnscope -> target
    let target = Path::new(BIN)
        .parent()
        .and_then(Path::parent)
        .expect("the binary lies in target/<profile>");
    let venv = target.join("python-venv");
    let vpy = venv_python(&venv);
    if !vpy.exists() {
        let mut c = Command::new(&py);
        c.args(["-m", "venv", "--system-site-packages"]).arg(&venv);
        run(c, "python3 -m venv");
    }
    let have = Command::new(&vpy)
        .args(["-c", "import maturin, numpy, pytest"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        let mut c = Command::new(&vpy);
        c.args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "maturin>=1.5,<2",
            "numpy",
            "pytest",
        ]);
        run(c, "pip install maturin numpy pytest");
    }
    let mut c = Command::new(&vpy);
    c.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-build-isolation",
        "--no-deps",
        "--force-reinstall",
    ])
    .arg(root.join("python"))
    .env("CARGO_TARGET_DIR", target.join("python-build"))
    .env("PATH", with_venv_on_path(&vpy));
    run(c, "pip install ./python");
    let mut c = Command::new(&vpy);
    c.args(["-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"])
        .arg(root.join("python").join("tests"))
        .current_dir(root)
        .env("RNNSCOPE_BIN", BIN);
    let out = c.output().expect("pytest starts");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "pytest failed:\n{text}");
}

//! What a careless or hostile user types, driven through the built binary as one table: every
//! case gives its exit code and the one line of its message (naming the file or field and the
//! fix), and a refused command leaves every file on disk as it was, byte for byte.
//!
//! The cases run in order in one directory (later ones use what earlier ones made): a tiny
//! language-model run, a task run, a gradient-flow result, a sweep, and damaged checkpoints.

use rnnscope::checkpoint::{self, write_tensors, NamedTensors, TensorFile};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_rnnscope");

/// Every file under `dir` (relative path -> bytes).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Sentences from a small grammar (about 10 KB).
fn corpus() -> String {
    let words = ["the cat", "a dog", "sees", "likes", "the ball.", "a bird."];
    let mut s: u64 = 7;
    let mut out = String::new();
    for _ in 0..400 {
        for _ in 0..3 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            out.push_str(words[((s >> 33) % words.len() as u64) as usize]);
            out.push(' ');
        }
        out.push('\n');
    }
    out
}

/// What a case must give.
enum Want {
    /// Exit 0; stdout or stderr contains each string.
    Ok(&'static [&'static str]),
    /// Exit 1 with exactly one line on stderr, `error: ...` containing each string; no file
    /// under the test directory changes.
    Refused(&'static [&'static str]),
}

struct Case {
    args: &'static str,
    env: &'static [(&'static str, &'static str)],
    want: Want,
}

const TRAIN: &str = "--corpus corpus.txt --hidden 8 --embedding 4 --batch 2 --bptt 8 --steps 3 --eval-every 0 --quiet";
const TASK: &str = "--length 5 --steps 3 --eval-every 3 --test-size 20";

fn case(args: &'static str, want: Want) -> Case {
    Case {
        args,
        env: &[],
        want,
    }
}

fn cases() -> Vec<Case> {
    use Want::{Ok, Refused};
    vec![
        // A run to protect, and a task run.
        case("train {TRAIN} --out run", Ok(&["done: 3 updates"])),
        case("task adding {TASK} --out taskrun", Ok(&["after 3 updates"])),
        // Work never lost: an existing run is refused unless --force or --resume.
        case(
            "train {TRAIN} --out run",
            Refused(&[
                "run: already holds a run (train_state.safetensors exists)",
                "--resume run",
                "--force",
            ]),
        ),
        case(
            "task adding {TASK} --out run",
            Refused(&["run: already holds a run (config.toml exists)", "--force"]),
        ),
        case(
            "task adding {TASK} --hidden 5 --out taskrun",
            Refused(&[
                "taskrun: holds a run of another configuration (`hidden` is 64 there, 5 here)",
                "--force",
            ]),
        ),
        case(
            "train --resume run --hidden 9",
            Refused(&["--hidden cannot change when resuming"]),
        ),
        case(
            "train --resume nowhere",
            Refused(&["nowhere: no such run directory", "--out nowhere"]),
        ),
        // An LSTM projection: for the LSTM only, smaller than hidden, without attention.
        case(
            "train {TRAIN} --cell gru --proj-size 3 --out p1",
            Refused(&["`proj_size` is for the LSTM (`cell` = lstm), not gru"]),
        ),
        case(
            "train {TRAIN} --proj-size 8 --out p1",
            Refused(&["`proj_size` = 8 must be smaller than `hidden` = 8"]),
        ),
        case(
            "train {TRAIN} --proj-size 3 --attention dot --out p1",
            Refused(&["`proj_size` with attention is not supported"]),
        ),
        case(
            "train {TRAIN} --proj-size 3 --tie --out p1",
            Refused(&["`tie` needs embedding == proj_size (got 4 and 3)"]),
        ),
        // Wrong results with exit 0: every option checked, whichever command gives it.
        case(
            "task adding {TASK} --clip=-1 --out t1",
            Refused(&["`clip` = -1 must be a positive number", "(--clip)"]),
        ),
        case(
            "task adding {TASK} --lr nan --out t1",
            Refused(&["`lr` = NaN must be a positive number", "(--lr)"]),
        ),
        case(
            "task adding {TASK} --forget-bias nan --out t1",
            Refused(&[
                "`forget_bias` = NaN must be a finite number",
                "(--forget-bias)",
            ]),
        ),
        case(
            "task adding --length 5 --steps 0 --out t1",
            Refused(&["`steps` = 0 must be at least 1", "(--steps)"]),
        ),
        case(
            "task adding {TASK} --spectral-radius=-2 --out t1",
            Refused(&["`spectral_radius` = -2", "(--spectral-radius)"]),
        ),
        case(
            "task adding --length 1 --out t1",
            Refused(&["needs --length >= 2"]),
        ),
        case(
            "train {TRAIN} --lr nan --out t1",
            Refused(&["`lr` = NaN must be a positive number", "(--lr)"]),
        ),
        case(
            "train {TRAIN} --forget-bias nan --out t1",
            Refused(&["`forget_bias` = NaN", "(--forget-bias)"]),
        ),
        case(
            "train {TRAIN} --clip=-1 --out t1",
            Refused(&["`clip` = -1 must be >= 0", "(--clip)"]),
        ),
        case(
            "train {TRAIN} --dropout 1 --out t1",
            Refused(&["`dropout` = 1 must be in [0, 1)"]),
        ),
        case(
            "train {TRAIN} --config lr_nan.toml --out t1",
            Refused(&["`lr` = NaN must be a positive number"]),
        ),
        case(
            "train {TRAIN} --config typo.toml --out t1",
            Refused(&["typo.toml: line 1: unknown field `hiden` (did you mean `hidden`?)"]),
        ),
        case(
            "train {TRAIN} --config nan_bias.toml --out t1",
            Refused(&["`forget_bias` = NaN"]),
        ),
        case(
            "experiment --config sweep_lr_nan.toml --out e1",
            Refused(&[
                "sweep_lr_nan.toml: point 0 (`a_T5_s1`): `lr` = NaN must be a positive number",
            ]),
        ),
        case(
            "experiment --config sweep_clip.toml --out e1",
            Refused(&["sweep_clip.toml: point 0 (`a_T5_s1`): `clip` = -1"]),
        ),
        // Names from files never become paths outside --out; repeated grid points are refused.
        case(
            "experiment --config sweep_escape.toml --out e1",
            Refused(&["model 0: name `../../escape` cannot name a folder"]),
        ),
        case(
            "experiment --config sweep_seeds.toml --out e1",
            Refused(&["seed 1 appears twice in `seeds`"]),
        ),
        case(
            "experiment --config sweep_names.toml --out e1",
            Refused(&["models 0 and 1 are both named `a`"]),
        ),
        case(
            "experiment --config sweep.toml --out sweep",
            Ok(&["1 runs of task `adding`, at most"]),
        ),
        case(
            "experiment --config sweep_other.toml --out sweep",
            Refused(&["sweep/plan.json: holds another sweep", "--force"]),
        ),
        case(
            "experiment --config sweep_big_seed.toml --out bigsweep",
            Ok(&["1 runs of task `adding`"]),
        ),
        // Panics from user input.
        case(
            "train {TRAIN} --init uniform:-1 --out t1",
            Refused(&["init `uniform:-1`: uniform needs a positive half-width A"]),
        ),
        case(
            "task adding {TASK} --init uniform:nan --out t1",
            Refused(&["init `uniform:nan`"]),
        ),
        case(
            "train {TRAIN} --seed 18446744073709551615 --out bigseed",
            Ok(&["done: 3 updates"]),
        ),
        case(
            "train --resume bigseed --steps 4 --quiet",
            Ok(&["done: 4 updates"]),
        ),
        case(
            "task adding {TASK} --seed 9223372036854775808 --out bigtask",
            Ok(&["after 3 updates"]),
        ),
        // Memory: refused with the estimate and the limit before allocating.
        case(
            "train --corpus corpus.txt --hidden 100000 --out t1",
            Refused(&[
                "training this model needs about",
                "more than the memory limit of",
                "RNNSCOPE_MEMORY_LIMIT",
            ]),
        ),
        case(
            "task adding --length 100000000 --out t1",
            Refused(&[
                "task adding at length 100000000 needs about",
                "memory limit",
            ]),
        ),
        case(
            "gradflow --bptt 1000000 --out g1",
            Refused(&["this gradient-flow sweep needs about", "lower --bptt"]),
        ),
        case(
            "gradflow --hidden 10000000 --out g1",
            Refused(&["this gradient-flow sweep needs about"]),
        ),
        case(
            "eval --checkpoint huge.safetensors --corpus corpus.txt",
            Refused(&[
                "huge.safetensors: its metadata describes a model of",
                "only",
            ]),
        ),
        Case {
            args: "task adding {TASK} --out t1",
            env: &[("RNNSCOPE_MEMORY_LIMIT", "1K")],
            want: Refused(&["more than the memory limit of 1.0 KiB (RNNSCOPE_MEMORY_LIMIT=1K)"]),
        },
        Case {
            args: "task adding {TASK} --out t1",
            env: &[("RNNSCOPE_MEMORY_LIMIT", "lots")],
            want: Refused(&["RNNSCOPE_MEMORY_LIMIT=\"lots\" is not a size"]),
        },
        // Threads: capped at the cores, said once.
        case(
            "task adding {TASK} --threads 100000 --out threads",
            Ok(&["note: --threads 100000 is more than the", "after 3 updates"]),
        ),
        case(
            "train --corpus one_line.txt --tokenizer word --out t1",
            Refused(&["word splits fall between lines", "--valid-file"]),
        ),
        // Corrupt checkpoints are refused naming the tensor or the damage.
        case(
            "eval --checkpoint nan.safetensors --corpus corpus.txt",
            Refused(&[
                "nan.safetensors: tensor `decoder.bias` holds a non-finite value (NaN) at index 0",
            ]),
        ),
        case(
            "gradflow --checkpoint nan.safetensors --out g1",
            Refused(&["tensor `decoder.bias` holds a non-finite value"]),
        ),
        case(
            "eval --checkpoint flipped.safetensors --corpus corpus.txt",
            Refused(&["flipped.safetensors: the tensor data does not match its checksum"]),
        ),
        case(
            "eval --checkpoint truncated.safetensors --corpus corpus.txt",
            Refused(&["truncated.safetensors: not a valid safetensors file"]),
        ),
        case(
            "eval --checkpoint run/last.safetensors --corpus corpus.txt",
            Ok(&["perplexity"]),
        ),
        // Stuck run directories: a run without a checkpoint starts over.
        case(
            "train --resume unstarted",
            Refused(&["unstarted: nothing to resume", "--out unstarted"]),
        ),
        case(
            "train {TRAIN} --out unstarted",
            Ok(&[
                "never reached its first checkpoint: starting it over",
                "done: 3 updates",
            ]),
        ),
        // --force replaces, and gradflow leaves nothing stale.
        case(
            "gradflow --hidden 4 --bptt 5 --batch 2 --out grad",
            Ok(&["wrote grad/gradflow.json"]),
        ),
        case(
            "gradflow --hidden 4 --bptt 5 --batch 2 --out grad",
            Refused(&[
                "grad: holds an earlier result (gradflow.json exists)",
                "--force",
            ]),
        ),
        case(
            "gradflow --hidden 4 --bptt 5 --batch 2 --out run",
            Refused(&["run: not empty and holds no earlier result"]),
        ),
        case(
            "gradflow --hidden 4 --bptt 5 --batch 2 --no-jacobian --out grad --force",
            Ok(&["wrote grad/gradflow.json"]),
        ),
        case(
            "task adding {TASK} --hidden 5 --out taskrun --force",
            Ok(&["taskrun: replacing the run there", "after 3 updates"]),
        ),
        case(
            "train {TRAIN} --seed 1 --out run --force",
            Ok(&["run: replacing the run there", "done: 3 updates"]),
        ),
        case(
            "experiment --config sweep_other.toml --out sweep --force",
            Ok(&["sweep: replacing the sweep there"]),
        ),
    ]
}

/// The files the cases read.
fn prepare(dir: &Path) {
    let w = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    w("corpus.txt", &corpus());
    w(
        "one_line.txt",
        "just one line of words without a newline at all",
    );
    w("lr_nan.toml", "lr = nan\n");
    w("typo.toml", "hiden = 3\n");
    w("nan_bias.toml", "forget_bias = nan\n");
    let sweep = "task = \"adding\"\nlengths = [5]\nseeds = [1]\n[defaults]\nsteps = 2\nhidden = 4\neval_every = 2\ntest_size = 10\n[[model]]\nname = \"a\"\n";
    w("sweep.toml", sweep);
    w(
        "sweep_other.toml",
        &sweep.replace("hidden = 4", "hidden = 5"),
    );
    w("sweep_lr_nan.toml", &format!("{sweep}lr = nan\n"));
    w("sweep_clip.toml", &format!("{sweep}clip = -1.0\n"));
    w(
        "sweep_escape.toml",
        &sweep.replace("\"a\"", "\"../../escape\""),
    );
    w("sweep_seeds.toml", &sweep.replace("[1]", "[1, 2, 1]"));
    w(
        "sweep_names.toml",
        &format!("{sweep}[[model]]\nname = \"a\"\n"),
    );
    w(
        "sweep_big_seed.toml",
        &sweep.replace("[1]", "[\"18446744073709551615\"]"),
    );
    // A run that was killed before its first checkpoint.
    std::fs::create_dir(dir.join("unstarted")).unwrap();
    w("unstarted/config.toml", "hidden = 8\n");
    w("unstarted/metrics.csv", "step\n");
}

/// Damaged copies of `run/last.safetensors`: a NaN weight (with a valid checksum), a flipped
/// bit in the tensor data, a header claiming a huge model, a truncated file.
fn damage(dir: &Path) {
    let good = dir.join("run/last.safetensors");
    let file = TensorFile::open(&good).unwrap();
    let tensors = |f: &TensorFile| -> NamedTensors {
        f.tensors
            .iter()
            .map(|(n, t)| {
                let v = t.data.iter().map(|&x| x as f32).collect();
                (n.clone(), t.shape.clone(), v)
            })
            .collect()
    };
    let mut nan = tensors(&file);
    let bias = nan.iter_mut().find(|t| t.0 == "decoder.bias").unwrap();
    bias.2[0] = f32::NAN;
    write_tensors(&dir.join("nan.safetensors"), &nan, &file.metadata).unwrap();
    let mut meta = file.metadata.clone();
    let config = meta[checkpoint::CONFIG_KEY].replace("\"hidden\":8", "\"hidden\":10000000");
    assert_ne!(config, meta[checkpoint::CONFIG_KEY]);
    meta.insert(checkpoint::CONFIG_KEY.into(), config);
    write_tensors(&dir.join("huge.safetensors"), &tensors(&file), &meta).unwrap();
    let mut bytes = std::fs::read(&good).unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    bytes[8 + header + 10] ^= 1;
    std::fs::write(dir.join("flipped.safetensors"), &bytes).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(dir.join("truncated.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
}

#[test]
fn every_bad_input_is_refused_in_one_line_and_changes_nothing() {
    let dir = std::env::temp_dir().join(format!("rnnscope-bad-input-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    prepare(&dir);
    for (k, c) in cases().into_iter().enumerate() {
        if k == 2 {
            damage(&dir);
        }
        let line = c.args.replace("{TRAIN}", TRAIN).replace("{TASK}", TASK);
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.contains(&"--force") {
            // A file of the user's own, which --force must leave alone.
            let out = words[words.iter().position(|&w| w == "--out").unwrap() + 1];
            std::fs::write(dir.join(out).join("notes.txt"), "mine").unwrap();
        }
        let before = snapshot(&dir);
        let mut cmd = Command::new(BIN);
        cmd.args(line.split_whitespace())
            .current_dir(&dir)
            .env_remove("RNNSCOPE_MEMORY_LIMIT");
        for (k, v) in c.env {
            cmd.env(k, v);
        }
        let o = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout);
        let stderr = String::from_utf8_lossy(&o.stderr);
        let code = o.status.code();
        match c.want {
            Want::Ok(wants) => {
                assert_eq!(code, Some(0), "`{line}` failed:\n{stderr}");
                for w in wants {
                    assert!(
                        stdout.contains(w) || stderr.contains(w),
                        "`{line}`: `{w}` not in\n{stdout}\n{stderr}"
                    );
                }
            }
            Want::Refused(wants) => {
                assert_eq!(code, Some(1), "`{line}`:\n{stdout}\n{stderr}");
                let lines: Vec<&str> = stderr.lines().collect();
                assert_eq!(lines.len(), 1, "`{line}`: not one line:\n{stderr}");
                assert!(lines[0].starts_with("error: "), "`{line}`: {stderr}");
                for w in wants {
                    assert!(lines[0].contains(w), "`{line}`: `{w}` not in\n{stderr}");
                }
                let after = snapshot(&dir);
                assert!(before == after, "`{line}` changed files on disk");
            }
        }
    }
    // What the --force cases left: the replaced gradflow result has no file of the old one,
    // the replaced sweep its new plan only, and the user's own files are still there.
    assert!(!dir.join("grad/jacobian_l0.csv").exists());
    for out in ["grad", "taskrun", "run", "sweep"] {
        let notes = std::fs::read_to_string(dir.join(out).join("notes.txt"));
        assert_eq!(notes.unwrap(), "mine", "--force removed {out}/notes.txt");
    }
    assert!(dir.join("grad/gradflow.json").is_file());
    let plan = std::fs::read_to_string(dir.join("sweep/plan.json")).unwrap();
    assert!(
        plan.contains("\"hidden\": 5") || plan.contains("\"hidden\":5"),
        "{plan}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

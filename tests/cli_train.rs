//! End-to-end tests of `rnnscope train`, `eval` and `sample`, driving the built binary on a small
//! generated corpus (no data files needed).

mod common;

use common::TempDir;
use rnnscope::checkpoint;
use rnnscope::train::TrainConfig;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rnnscope");

/// Sentences from a small grammar, drawn with a fixed LCG: about 40 KB of text whose
/// characters are far from uniform but very predictable in context.
fn generated_corpus(lines: usize, seed: u64) -> String {
    let subjects = [
        "the cat",
        "a dog",
        "my friend",
        "the old king",
        "her sister",
    ];
    let verbs = ["sees", "likes", "follows", "finds"];
    let objects = ["the ball.", "a small bird.", "the red house.", "his hat."];
    let mut s = seed;
    let mut next = |n: usize| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 33) % n as u64) as usize
    };
    let mut out = String::new();
    for _ in 0..lines {
        out.push_str(subjects[next(subjects.len())]);
        out.push(' ');
        out.push_str(verbs[next(verbs.len())]);
        out.push(' ');
        out.push_str(objects[next(objects.len())]);
        out.push('\n');
    }
    out
}

/// Entropy (nats) of the character frequencies: the loss of the best context-free model.
fn unigram_entropy(text: &str) -> f64 {
    let mut counts: HashMap<char, usize> = HashMap::new();
    for c in text.chars() {
        *counts.entry(c).or_default() += 1;
    }
    let n = text.chars().count() as f64;
    counts
        .values()
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.ln()
        })
        .sum()
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "rnnscope {args:?} failed\nstdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Flags of a tiny, fast model (one thread: tests run side by side on small CI machines).
const TINY: [&str; 12] = [
    "--hidden",
    "48",
    "--embedding",
    "16",
    "--batch",
    "16",
    "--bptt",
    "32",
    "--lr",
    "0.01",
    "--threads",
    "1",
];

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn metrics(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|l| l.split(',').map(String::from).collect())
        .collect()
}

#[test]
fn train_eval_sample_end_to_end() {
    let dir = TempDir::new("e2e");
    let corpus = dir.join("corpus.txt");
    let body = generated_corpus(1500, 1);
    std::fs::write(&corpus, &body).unwrap();
    let unigram = unigram_entropy(&body);
    assert!(unigram > 2.5, "unigram entropy {unigram}");
    // A config file for some fields; a flag overrides one of them.
    let cfg = dir.join("run.toml");
    std::fs::write(
        &cfg,
        "cell = \"lstm\"\nhidden = 20\nsteps = 150\neval_every = 50\n",
    )
    .unwrap();
    let run_dir = dir.join("run");
    let mut args = vec![
        "train",
        "--corpus",
        p(&corpus),
        "--out",
        p(&run_dir),
        "--config",
        p(&cfg),
    ];
    args.extend(TINY);
    let out = ok(&args);
    assert!(
        text(&out.stdout).contains("done: 150 updates"),
        "{}",
        text(&out.stdout)
    );

    for f in [
        "config.toml",
        "metrics.csv",
        "last.safetensors",
        "best.safetensors",
        "summary.json",
        "train_state.safetensors",
    ] {
        assert!(run_dir.join(f).is_file(), "{f} missing");
    }
    // The resolved config: the file's fields, the flags over them, the defaults elsewhere.
    let resolved = TrainConfig::from_file(&run_dir.join("config.toml")).unwrap();
    assert_eq!(
        (resolved.hidden, resolved.steps, resolved.eval_every),
        (48, Some(150), 50)
    );
    assert_eq!(
        (resolved.embedding, resolved.batch, resolved.lr),
        (16, 16, 0.01)
    );
    assert_eq!(resolved.optimizer, rnnscope::train::OptimizerKind::Adam);

    let rows = metrics(&run_dir);
    assert_eq!(
        rows[0].join(","),
        "step,train_loss,valid_loss,lr,grad_norm,tokens_per_s"
    );
    assert_eq!(rows.len(), 151);
    for (i, r) in rows[1..].iter().enumerate() {
        assert_eq!(r.len(), 6);
        assert_eq!(r[0], (i + 1).to_string());
        let evaluated = (i + 1) % 50 == 0;
        assert_eq!(!r[2].is_empty(), evaluated, "row {r:?}");
        assert_eq!(r[3], "0.01");
        for c in [1, 4, 5] {
            assert!(r[c].parse::<f64>().unwrap().is_finite(), "row {r:?}");
        }
    }
    let first: f64 = rows[1][1].parse().unwrap();
    assert!(
        (first - (24f64).ln()).abs() < 0.3,
        "first loss {first} is not near ln V"
    );

    let summary = json(&run_dir.join("summary.json"));
    assert_eq!(summary["status"], "finished");
    assert_eq!(summary["step"], 150);
    let best = summary["best_valid_loss"].as_f64().unwrap();
    let last_row_valid: f64 = rows[150][2].parse().unwrap();
    assert!(best <= last_row_valid + 1e-6);
    // Far below what any context-free model can do, and near the entropy of the grammar
    // (80 equally likely sentences per line; a model cannot beat it by much).
    let floor = 80f64.ln() * 1500.0 / body.chars().count() as f64;
    assert!(
        best < 0.15 * unigram,
        "best valid loss {best} vs unigram {unigram}"
    );
    assert!(
        best > 0.8 * floor && best < floor + 0.15,
        "best {best} vs grammar entropy {floor}"
    );

    // eval --json on a fresh text from the same grammar.
    let fresh = dir.join("fresh.txt");
    let fresh_body = generated_corpus(200, 99);
    std::fs::write(&fresh, &fresh_body).unwrap();
    let best_ck = run_dir.join("best.safetensors");
    let out = ok(&[
        "eval",
        "--checkpoint",
        p(&best_ck),
        "--corpus",
        p(&fresh),
        "--json",
        "--threads",
        "1",
    ]);
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let loss = e["loss"].as_f64().unwrap();
    assert_eq!(
        e["tokens"].as_u64().unwrap() as usize,
        fresh_body.chars().count() - 1
    );
    assert!((e["perplexity"].as_f64().unwrap() - loss.exp()).abs() < 1e-9);
    assert!((e["bits_per_token"].as_f64().unwrap() - loss / 2f64.ln()).abs() < 1e-12);
    assert_eq!(e["unknown"], 0);
    assert!(
        loss < 0.15 * unigram && (loss - best).abs() < 0.1,
        "eval loss {loss}, best {best}"
    );
    // The text form says bits per character; unseen characters are counted.
    let odd = dir.join("odd.txt");
    std::fs::write(&odd, "the cat sees the ZEBRA.\n").unwrap();
    let out = ok(&["eval", "--checkpoint", p(&best_ck), "--corpus", p(&odd)]);
    assert!(
        text(&out.stdout).contains("bits per character"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("5 characters of")
            && text(&out.stderr).contains("mapped to <unk>"),
        "{}",
        text(&out.stderr)
    );

    // sample: seeded, primed, from the training alphabet, and grammatical most of the time.
    let sample = |seed: &str| {
        text(
            &ok(&[
                "sample",
                "--checkpoint",
                p(&best_ck),
                "--prime",
                "the old",
                "--length",
                "400",
                "--temperature",
                "0.8",
                "--top-k",
                "5",
                "--seed",
                seed,
            ])
            .stdout,
        )
    };
    let a = sample("7");
    assert_eq!(a, sample("7"));
    assert_ne!(a, sample("8"));
    assert!(a.starts_with("the old"));
    // The prime, 400 characters, and a final line break unless the sample ended with one.
    assert!(
        [407, 408].contains(&a.chars().count()),
        "{}",
        a.chars().count()
    );
    assert!(a.chars().all(|c| body.contains(c)), "{a}");
    let lines: Vec<&str> = a.lines().skip(1).filter(|l| !l.is_empty()).collect();
    let known = lines
        .iter()
        .filter(|l| body.lines().any(|b| b == **l))
        .count();
    assert!(known * 2 >= lines.len(), "few grammatical lines in:\n{a}");
}

#[test]
fn resumed_run_matches_uninterrupted_run() {
    let dir = TempDir::new("resume");
    let corpus = dir.join("corpus.txt");
    std::fs::write(&corpus, generated_corpus(1500, 2)).unwrap();
    let extra = [
        "--dropout",
        "0.2",
        "--schedule",
        "plateau:2:0",
        "--eval-every",
        "10",
        "--layers",
        "2",
        "--seed",
        "5",
        "--quiet",
    ];
    let full = dir.join("full");
    let half = dir.join("half");
    for (d, steps) in [(&full, "40"), (&half, "20")] {
        let mut args = vec![
            "train",
            "--corpus",
            p(&corpus),
            "--out",
            p(d),
            "--steps",
            steps,
        ];
        args.extend(TINY);
        args.extend(extra);
        ok(&args);
    }
    assert_eq!(metrics(&half).len(), 21);
    assert_eq!(json(&half.join("summary.json"))["step"], 20);
    ok(&["train", "--resume", p(&half), "--steps", "40", "--quiet"]);
    let (a, b) = (metrics(&full), metrics(&half));
    assert_eq!(a.len(), 41);
    assert_eq!(b.len(), 41);
    for (ra, rb) in a.iter().zip(&b) {
        // Every printed value but the throughput.
        assert_eq!(ra[..5], rb[..5]);
    }
    let pa = checkpoint::load::<f32>(&full.join("last.safetensors")).unwrap();
    let pb = checkpoint::load::<f32>(&half.join("last.safetensors")).unwrap();
    assert_eq!(
        pa.model.params(),
        pb.model.params(),
        "parameters differ after resuming"
    );
    // Nothing left to do: a clean no-op.
    let out = ok(&["train", "--resume", p(&half), "--quiet"]);
    assert!(text(&out.stdout).contains("nothing to do"));
    assert_eq!(metrics(&half).len(), 41);
}

#[cfg(unix)]
#[test]
fn ctrl_c_finishes_the_step_saves_and_resumes() {
    let dir = TempDir::new("sigint");
    let corpus = dir.join("corpus.txt");
    std::fs::write(&corpus, generated_corpus(1500, 3)).unwrap();
    let run_dir = dir.join("run");
    let mut args = vec![
        "train",
        "--corpus",
        p(&corpus),
        "--out",
        p(&run_dir),
        "--steps",
        "1000000",
        "--eval-every",
        "100000",
    ];
    args.extend(TINY);
    let mut child = Command::new(BIN)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::fs::read_to_string(run_dir.join("metrics.csv")).map_or(0, |m| m.lines().count()) < 6
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "training did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("no exit after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("interrupted at update"),
        "{}",
        text(&out.stdout)
    );
    let summary = json(&run_dir.join("summary.json"));
    assert_eq!(summary["status"], "interrupted");
    let step = summary["step"].as_u64().unwrap();
    let rows = metrics(&run_dir);
    assert_eq!(rows.len() as u64, step + 1);
    // The stop evaluated and saved the model it stopped with.
    assert!(!rows.last().unwrap()[2].is_empty());
    let ck = checkpoint::load::<f32>(&run_dir.join("last.safetensors")).unwrap();
    assert_eq!(ck.metadata["rnnscope.step"], step.to_string());
    let target = (step + 5).to_string();
    ok(&[
        "train",
        "--resume",
        p(&run_dir),
        "--steps",
        &target,
        "--quiet",
    ]);
    assert_eq!(metrics(&run_dir).len() as u64, step + 6);
    assert_eq!(json(&run_dir.join("summary.json"))["status"], "finished");
}

#[test]
fn word_and_byte_tokenizers() {
    let dir = TempDir::new("tokenizers");
    let corpus = dir.join("words.txt");
    std::fs::write(&corpus, generated_corpus(1500, 4)).unwrap();
    let run_dir = dir.join("word");
    let mut args = vec![
        "train",
        "--corpus",
        p(&corpus),
        "--out",
        p(&run_dir),
        "--tokenizer",
        "word",
        "--vocab-size",
        "12",
        "--steps",
        "40",
        "--quiet",
        "--batch",
        "8",
        "--bptt",
        "8",
    ];
    args.extend(&TINY[..4]);
    args.extend(["--threads", "1"]);
    ok(&args);
    let ck = run_dir.join("best.safetensors");
    let loaded = checkpoint::load::<f32>(&ck).unwrap();
    assert_eq!(loaded.model.config.vocab, 12);
    let eval_text = dir.join("eval.txt");
    std::fs::write(
        &eval_text,
        "the cat sees a zebra.\nmy friend finds his hat.\n",
    )
    .unwrap();
    let out = ok(&[
        "eval",
        "--checkpoint",
        p(&ck),
        "--corpus",
        p(&eval_text),
        "--json",
    ]);
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // 5 + 5 words and two <eos>: 12 tokens, 11 predictions.
    assert_eq!(e["tokens"], 11);
    assert!(e["unknown"].as_u64().unwrap() >= 1);
    assert_eq!(e["tokenizer"], "word");
    let s = ok(&[
        "sample",
        "--checkpoint",
        p(&ck),
        "--prime",
        "the cat",
        "--length",
        "20",
    ]);
    assert!(
        text(&s.stdout).starts_with("the cat"),
        "{}",
        text(&s.stdout)
    );

    // Bytes: any file, UTF-8 or not.
    let bin = dir.join("bytes.bin");
    let data: Vec<u8> = generated_corpus(300, 5)
        .bytes()
        .map(|b| if b == b'.' { 0xff } else { b })
        .collect();
    std::fs::write(&bin, &data).unwrap();
    let run_dir = dir.join("byte");
    ok(&[
        "train",
        "--corpus",
        p(&bin),
        "--out",
        p(&run_dir),
        "--tokenizer",
        "byte",
        "--steps",
        "10",
        "--batch",
        "4",
        "--bptt",
        "16",
        "--hidden",
        "16",
        "--embedding",
        "8",
        "--quiet",
        "--threads",
        "1",
    ]);
    let out = ok(&[
        "eval",
        "--checkpoint",
        p(&run_dir.join("last.safetensors")),
        "--corpus",
        p(&bin),
        "--json",
    ]);
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["tokens"].as_u64().unwrap() as usize, data.len() - 1);
}

/// Runs a command that must fail with exactly one line on stderr containing `want`.
fn fails(args: &[&str], want: &str) {
    let out = run(args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "rnnscope {args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(
        err.starts_with("error: ") && err.contains(want),
        "`{err}` lacks `{want}`"
    );
    assert!(!err.contains("panicked"));
}

#[test]
fn bad_input_gets_one_clear_line_and_no_files() {
    let dir = TempDir::new("bad");
    let good = dir.join("good.txt");
    std::fs::write(&good, generated_corpus(400, 6)).unwrap();
    let out = dir.join("out");
    let o = p(&out);
    let train = |corpus: &Path, extra: &[&str], want: &str| {
        let mut args = vec!["train", "--corpus", p(corpus), "--out", o];
        args.extend(TINY);
        args.extend(extra);
        fails(&args, want);
        assert!(!out.exists(), "{o} was created for {want}");
    };
    train(
        &dir.join("missing.txt"),
        &[],
        "missing.txt: cannot read the corpus",
    );
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    train(&empty, &[], "empty.txt: the corpus is empty");
    let latin1 = dir.join("latin1.txt");
    std::fs::write(&latin1, b"caf\xe9 au lait\n".repeat(300)).unwrap();
    train(
        &latin1,
        &[],
        "latin1.txt: not valid UTF-8 (first bad byte at offset 3)",
    );
    let short = dir.join("short.txt");
    std::fs::write(&short, "x".repeat(100)).unwrap();
    fails(
        &["train", "--corpus", p(&short), "--out", o, "--batch", "32", "--bptt", "64"],
        "short.txt (first 90%): 90 tokens is shorter than one batch window (batch 32 x bptt 64 + 1 = 2049 tokens): use a longer corpus or lower --batch/--bptt",
    );
    assert!(!out.exists());
    let unknown = dir.join("unknown.toml");
    std::fs::write(&unknown, "hidden = 16\nlearning_rate = 0.1\n").unwrap();
    train(
        &good,
        &["--config", p(&unknown)],
        "unknown.toml: line 2: unknown field `learning_rate`",
    );
    let mistyped = dir.join("mistyped.toml");
    std::fs::write(&mistyped, "layers = \"two\"\n").unwrap();
    train(
        &good,
        &["--config", p(&mistyped)],
        "mistyped.toml: line 1: invalid type: string \"two\", expected usize for field `layers`",
    );
    train(&good, &["--schedule", "sometimes"], "schedule `sometimes`");
    train(
        &good,
        &["--dropout", "1.5"],
        "`dropout` = 1.5 must be in [0, 1)",
    );

    // Checkpoints: truncated, another model's file, a file without a vocabulary.
    let run_dir = dir.join("run");
    let mut args = vec![
        "train",
        "--corpus",
        p(&good),
        "--out",
        p(&run_dir),
        "--steps",
        "4",
        "--quiet",
    ];
    args.extend(TINY);
    ok(&args);
    let best = std::fs::read(run_dir.join("best.safetensors")).unwrap();
    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &best[..best.len() / 2]).unwrap();
    let g = p(&good);
    fails(
        &["eval", "--checkpoint", p(&truncated), "--corpus", g],
        "truncated.safetensors: not a valid safetensors file",
    );
    let state = run_dir.join("train_state.safetensors");
    fails(
        &["eval", "--checkpoint", p(&state), "--corpus", g],
        "tensor `embedding.weight` is missing",
    );
    let bare = dir.join("bare.safetensors");
    let ck = checkpoint::load::<f32>(&run_dir.join("best.safetensors")).unwrap();
    checkpoint::save(&ck.model, &bare, &HashMap::new()).unwrap();
    fails(
        &["sample", "--checkpoint", p(&bare)],
        "bare.safetensors: no vocabulary",
    );
    fails(
        &[
            "eval",
            "--checkpoint",
            p(&dir.join("none.safetensors")),
            "--corpus",
            g,
        ],
        "none.safetensors: No such file or directory",
    );
    fails(
        &[
            "eval",
            "--checkpoint",
            p(&run_dir.join("best.safetensors")),
            "--corpus",
            p(&latin1),
        ],
        "latin1.txt: not valid UTF-8",
    );

    // --resume: an empty directory, a state from another model, a truncated state.
    let empty_dir = dir.join("empty_run");
    std::fs::create_dir(&empty_dir).unwrap();
    fails(&["train", "--resume", p(&empty_dir)], "nothing to resume");
    assert_eq!(std::fs::read_dir(&empty_dir).unwrap().count(), 0);
    let other = dir.join("other");
    let mut args = vec![
        "train",
        "--corpus",
        p(&good),
        "--out",
        p(&other),
        "--steps",
        "2",
        "--quiet",
    ];
    args.extend(TINY.iter().map(|&a| if a == "48" { "24" } else { a }));
    ok(&args);
    std::fs::copy(other.join("train_state.safetensors"), &state).unwrap();
    fails(
        &["train", "--resume", p(&run_dir), "--steps", "8"],
        "the saved model differs",
    );
    std::fs::write(&state, &best[..100]).unwrap();
    fails(
        &["train", "--resume", p(&run_dir), "--steps", "8"],
        "not a valid safetensors file",
    );
    fails(
        &["train", "--resume", p(&run_dir), "--hidden", "8"],
        "--hidden cannot change when resuming",
    );
    // An existing run is never overwritten.
    let mut args = vec!["train", "--corpus", g, "--out", p(&run_dir)];
    args.extend(TINY);
    fails(&args, "already holds a run");
}

#[test]
fn non_finite_steps_stop_with_an_error_and_a_finite_checkpoint() {
    let dir = TempDir::new("nonfinite");
    let corpus = dir.join("corpus.txt");
    std::fs::write(&corpus, generated_corpus(400, 7)).unwrap();
    let run_dir = dir.join("run");
    // Plain SGD with an absurd step size overflows f32 within a few updates.
    let out = run(&[
        "train",
        "--corpus",
        p(&corpus),
        "--out",
        p(&run_dir),
        "--optimizer",
        "sgd",
        "--lr",
        "1e38",
        "--clip",
        "0",
        "--steps",
        "30",
        "--eval-every",
        "2",
        "--hidden",
        "16",
        "--embedding",
        "8",
        "--batch",
        "8",
        "--bptt",
        "16",
        "--threads",
        "1",
        "--max-bad-steps",
        "3",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("warning: update"), "{err}");
    assert!(
        err.lines()
            .last()
            .unwrap()
            .starts_with("error: numerical error: 3 non-finite steps in a row"),
        "{err}"
    );
    assert!(!err.contains("panicked"));
    let rows = metrics(&run_dir);
    assert!(rows.iter().any(|r| r[1] == "NaN"));
    // The evaluation at update 2 saved the model (the update that overflowed was refused):
    // complete checkpoints with finite parameters, which the error message points to.
    assert!(err.contains("the last good checkpoint is in"), "{err}");
    for f in ["last.safetensors", "best.safetensors"] {
        let path = run_dir.join(f);
        assert!(path.is_file(), "{f} was not written");
        let ck = checkpoint::load::<f32>(&path).unwrap();
        assert_eq!(ck.metadata["rnnscope.step"], "2", "{f}");
        assert!(ck.model.params().iter().all(|v| v.is_finite()), "{f}");
    }
}

/// `--track-gradflow N` records the spectrum and the profile every N updates; the last row's
/// spectral radius is that of the saved `W_hh` (the checkpoint written at the same update).
#[test]
fn track_gradflow_records_spectrum_and_profile_during_training() {
    let dir = TempDir::new("track");
    let corpus = dir.join("corpus.txt");
    std::fs::write(&corpus, generated_corpus(400, 3)).unwrap();
    let run_dir = dir.join("run");
    let mut args = vec![
        "train",
        "--corpus",
        p(&corpus),
        "--out",
        p(&run_dir),
        "--cell",
        "rnn",
        "--layers",
        "2",
        "--steps",
        "30",
        "--eval-every",
        "10",
        "--track-gradflow",
        "10",
    ];
    args.extend(TINY);
    ok(&args);
    let csv = std::fs::read_to_string(run_dir.join("gradflow_track.csv")).unwrap();
    let (input, table) = csv.split_once('\n').unwrap();
    // The tracked analysis runs on the training batch of that update, and says so first.
    assert!(input.starts_with("# input: training batch of "), "{input}");
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(
        rows[0].join(","),
        "step,layer,rho,sigma_1,decay_per_step,distance_below_1e-3,grad_norm"
    );
    let keys: Vec<(u64, usize)> = rows[1..]
        .iter()
        .map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap()))
        .collect();
    assert_eq!(
        keys,
        vec![(10, 0), (10, 1), (20, 0), (20, 1), (30, 0), (30, 1)]
    );
    for r in &rows[1..] {
        let (rho, sigma): (f64, f64) = (r[2].parse().unwrap(), r[3].parse().unwrap());
        assert!(
            rho > 0.0 && sigma >= rho - 1e-9,
            "sigma_1 >= rho always: {r:?}"
        );
        assert!(r[6].parse::<f64>().unwrap() > 0.0);
    }
    for step in [10, 20, 30] {
        let snap = json(&run_dir.join(format!("gradflow/step_{step:08}.json")));
        assert_eq!(snap["profiles"].as_array().unwrap().len(), 2);
    }
    let ck = checkpoint::load::<f64>(&run_dir.join("last.safetensors")).unwrap();
    let h = ck.model.config.hidden;
    let w = ck
        .model
        .layout
        .view(ck.model.params(), "rnn.weight_hh_l1")
        .unwrap();
    let rho = rnnscope::analysis::spectrum::spectral_radius(w, h).unwrap();
    let logged: f64 = rows.last().unwrap()[2].parse().unwrap();
    assert!((rho - logged).abs() <= 1e-5 * rho, "{rho} vs {logged}");
}

/// A reader that goes away (`rnnscope bench | head -1`) ends the program as it ends any Unix
/// filter, by SIGPIPE, without a panic and its backtrace on stderr.
#[cfg(unix)]
#[test]
fn closed_stdout_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let mut child = Command::new(BIN)
        .args(["bench", "--config", "rnn_h256_b32_t64", "--threads", "1"])
        .args(["--seconds", "0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("the binary ends");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "status {:?}, stderr: {}",
        out.status,
        text(&out.stderr)
    );
    assert_eq!(text(&out.stderr), "");
}

/// `train` args for a run of `steps` updates on `corpus` into `out`: the tiny model with
/// `--threads` set to `threads`, and `extra` (whose flags replace the tiny model's).
fn train_args<'a>(
    corpus: &'a Path,
    out: &'a Path,
    steps: &'a str,
    threads: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "--corpus",
        p(corpus),
        "--out",
        p(out),
        "--steps",
        steps,
    ];
    for pair in TINY.chunks(2) {
        if !extra.contains(&pair[0]) {
            args.extend([
                pair[0],
                if pair[0] == "--threads" {
                    threads
                } else {
                    pair[1]
                },
            ]);
        }
    }
    args.extend(extra);
    args.push("--quiet");
    args
}

/// Two runs agree bit for bit: the same parameters in `last.safetensors` and, in every row of
/// `metrics.csv`, the same step, train loss, learning rate and gradient norm; the validation
/// loss wherever both evaluated (an interrupted run also evaluates where it stopped).
fn assert_same_run(a: &Path, b: &Path) {
    let (ra, rb) = (metrics(a), metrics(b));
    assert_eq!(ra.len(), rb.len(), "rows of metrics.csv");
    for (x, y) in ra.iter().zip(&rb) {
        assert_eq!((&x[0], &x[1]), (&y[0], &y[1]), "train loss");
        assert_eq!(x[3..5], y[3..5], "lr, grad_norm at step {}", x[0]);
        if !x[2].is_empty() && !y[2].is_empty() {
            assert_eq!(x[2], y[2], "valid loss at step {}", x[0]);
        }
    }
    let pa = checkpoint::load::<f32>(&a.join("last.safetensors")).unwrap();
    let pb = checkpoint::load::<f32>(&b.join("last.safetensors")).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert!(
        bits(pa.model.params()) == bits(pb.model.params()),
        "parameters differ between {} and {}",
        a.display(),
        b.display()
    );
}

/// What makes a resumed run differ if anything of the state is lost: dropout masks, a plateau
/// schedule (its best loss and patience; a step size that makes it halve the rate after 30
/// updates), Adam's moments, the carried hidden state.
const STATEFUL: [&str; 10] = [
    "--dropout",
    "0.2",
    "--schedule",
    "plateau:2:0",
    "--eval-every",
    "5",
    "--lr",
    "0.1",
    "--seed",
    "3",
];

/// A run stopped between two evaluations (26 updates with evaluations every 5) and resumed
/// on two threads equals, bit for bit, one uninterrupted run on one thread. The evaluation at
/// the stop finds no new best (valid loss 0.25593 after 0.25564 at update 25): were it to
/// count for the plateau schedule, the resumed run would halve its rate from there on.
#[test]
fn resume_between_evaluations_on_two_threads_matches_one_uninterrupted_thread() {
    let dir = TempDir::new("resume-threads");
    let corpus = dir.join("corpus.txt");
    std::fs::write(&corpus, generated_corpus(1500, 8)).unwrap();
    let (full, split, two) = (dir.join("full"), dir.join("split"), dir.join("two"));
    ok(&train_args(&corpus, &full, "45", "1", &STATEFUL));
    // Two threads, uninterrupted: the same run.
    ok(&train_args(&corpus, &two, "45", "2", &STATEFUL));
    assert_same_run(&two, &full);
    // Stopped at 26 (between the evaluations at 25 and 30), resumed on two threads.
    ok(&train_args(&corpus, &split, "26", "2", &STATEFUL));
    assert_eq!(json(&split.join("summary.json"))["step"], 26);
    let ck = checkpoint::load::<f32>(&split.join("last.safetensors")).unwrap();
    assert_eq!(ck.metadata["rnnscope.step"], "26");
    ok(&[
        "train",
        "--resume",
        p(&split),
        "--steps",
        "45",
        "--threads",
        "2",
        "--quiet",
    ]);
    assert_same_run(&split, &full);
    // The learning rate did change along the way (the plateau schedule acted), so the
    // comparison covers the schedule's state too.
    let lrs: std::collections::BTreeSet<String> =
        metrics(&full)[1..].iter().map(|r| r[3].clone()).collect();
    assert!(lrs.len() > 1, "the plateau schedule never acted: {lrs:?}");
}

/// Ctrl-C (SIGINT to the binary) in the middle of a run, then `--resume`: the same run, bit
/// for bit, as one that was never interrupted.
#[cfg(unix)]
#[test]
fn resume_after_ctrl_c_matches_uninterrupted_run() {
    let dir = TempDir::new("sigint-resume");
    let corpus = dir.join("corpus.txt");
    std::fs::write(&corpus, generated_corpus(1500, 9)).unwrap();
    let (full, cut) = (dir.join("full"), dir.join("cut"));
    let total = "600";
    let mut child = Command::new(BIN)
        .args(train_args(&corpus, &cut, total, "1", &STATEFUL))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::fs::read_to_string(cut.join("metrics.csv")).map_or(0, |m| m.lines().count()) < 13 {
        assert!(
            start.elapsed() < Duration::from_secs(120) && child.try_wait().unwrap().is_none(),
            "training did not start or ended early"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary = json(&cut.join("summary.json"));
    assert_eq!(
        summary["status"], "interrupted",
        "SIGINT came after the end"
    );
    let step = summary["step"].as_u64().unwrap();
    assert!((12..600).contains(&step), "stopped at {step}");
    ok(&["train", "--resume", p(&cut), "--quiet"]);
    assert_eq!(json(&cut.join("summary.json"))["status"], "finished");
    ok(&train_args(&corpus, &full, total, "1", &STATEFUL));
    assert_same_run(&cut, &full);
}

/// Training carries the hidden state from one window to the next (and resets it at the start
/// of each epoch). With a step size too small to change any f32 parameter, `train_loss` of
/// every update is the loss of one window of the fixed initial model, which this test
/// recomputes from the run's checkpoint: from the state the previous window left (what
/// `metrics.csv` must show) and from a zero state (what it would show if the state were
/// dropped); the two differ by far more than the 6 printed decimals.
#[test]
fn training_carries_the_hidden_state_across_windows() {
    use rnnscope::data::{corpus, Batches, CorpusSpec, TokenizerKind};
    use rnnscope::{State, Workspace};
    let dir = TempDir::new("carry");
    let corpus_path = dir.join("corpus.txt");
    std::fs::write(&corpus_path, generated_corpus(12, 10)).unwrap();
    let (run_dir, one) = (dir.join("run"), dir.join("one"));
    let (batch, bptt) = (4, 6);
    let fixed = [
        "--seed",
        "4",
        "--optimizer",
        "sgd",
        "--lr",
        "1e-30",
        "--clip",
        "0",
        "--batch",
        "4",
        "--bptt",
        "6",
        "--cell",
        "gru",
        "--eval-every",
        "1000",
    ];
    let steps = 14;
    ok(&train_args(&corpus_path, &run_dir, "14", "1", &fixed));
    ok(&train_args(&corpus_path, &one, "1", "1", &fixed));
    let ck = checkpoint::load::<f32>(&run_dir.join("last.safetensors")).unwrap();
    let first = checkpoint::load::<f32>(&one.join("last.safetensors")).unwrap();
    assert_eq!(
        ck.model.params(),
        first.model.params(),
        "the parameters did not move: every row is a loss of the initial model"
    );
    let m = ck.model;
    let data = corpus::load(&CorpusSpec {
        tokenizer: TokenizerKind::Char,
        vocab_size: 0,
        train: corpus_path.clone(),
        valid: None,
        test: None,
        valid_fraction: 0.1,
        test_fraction: 0.0,
    })
    .unwrap();
    assert_eq!(data.vocab.len(), m.config.vocab);
    let batches = Batches::new(&data.train.ids, batch, bptt, "corpus").unwrap();
    assert!(batches.windows < steps, "the run crosses an epoch boundary");
    let rows = metrics(&run_dir);
    let (mut inputs, mut targets) = (vec![0; batch * bptt], vec![0; batch * bptt]);
    let mut ws = Workspace::default();
    let mut carried = State::<f32>::zeros(&m.config, batch);
    let mut separated = 0.0f64;
    for s in 0..steps {
        let w = s % batches.windows;
        if w == 0 {
            carried = State::zeros(&m.config, batch);
        }
        batches.window(w, &mut inputs, &mut targets);
        let zero = State::zeros(&m.config, batch);
        m.forward(&mut ws, &inputs, &zero, bptt, batch, None);
        let from_zero = m.loss(&mut ws, &targets);
        m.forward(&mut ws, &inputs, &carried, bptt, batch, None);
        let from_carried = m.loss(&mut ws, &targets);
        m.final_state(&ws, &mut carried);
        let logged: f64 = rows[s + 1][1].parse().unwrap();
        assert!(
            (logged - from_carried).abs() <= 1e-6,
            "update {}: train loss {logged}, the window from the carried state gives {from_carried:.6} (from a zero state {from_zero:.6})",
            s + 1
        );
        if w > 0 {
            separated = separated.max((from_carried - from_zero).abs());
        }
    }
    assert!(
        separated > 1e-3,
        "carried and zero states give nearly the same losses: {separated:e}"
    );
}

//! Gradient flow on the user's own text: `gradflow --text` against the library call on the same
//! windows, outputs that name their input, dense-input checkpoints, task metric names.

mod common;

use common::TempDir;
use rnnscope::analysis::{self, output, InputKind, SnapshotOptions};
use rnnscope::data::{Vocab, VOCAB_KEY};
use std::path::{Path, PathBuf};
use std::process::Output;

fn run(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_rnnscope"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn ok(args: &[&str]) -> Output {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn p(x: &Path) -> &str {
    x.to_str().unwrap()
}

/// A small text with structure a char model picks up in a few updates.
fn corpus() -> String {
    let mut s = String::new();
    for k in 0..200 {
        s += &format!(
            "the cat sat on mat {}. the dog ran to log {}.\n",
            k % 7,
            k % 5
        );
    }
    s
}

/// Trains a tiny char LSTM on `corpus` and returns its last checkpoint.
fn trained_char_model(dir: &Path, corpus: &Path) -> PathBuf {
    let run_dir = dir.join("run");
    ok(&[
        "train",
        "--corpus",
        p(corpus),
        "--out",
        p(&run_dir),
        "--cell",
        "lstm",
        "--hidden",
        "16",
        "--embedding",
        "8",
        "--batch",
        "4",
        "--bptt",
        "16",
        "--steps",
        "30",
        "--eval-every",
        "30",
        "--lr",
        "0.01",
        "--threads",
        "1",
    ]);
    run_dir.join("last.safetensors")
}

#[test]
fn gradflow_on_text_is_the_library_call_on_the_same_windows_and_names_its_input() {
    let dir = TempDir::new("text");
    let corpus_path = dir.0.join("corpus.txt");
    std::fs::write(&corpus_path, corpus()).unwrap();
    let ck = trained_char_model(&dir.0, &corpus_path);
    let out = dir.0.join("gf");
    let (steps, windows) = (20, 3);
    let o = ok(&[
        "gradflow",
        "--checkpoint",
        p(&ck),
        "--text",
        p(&corpus_path),
        "--bptt",
        "20",
        "--batch",
        "3",
        "--seed",
        "5",
        "--out",
        p(&out),
        "--threads",
        "1",
    ]);
    let describe = format!(
        "text {} (char tokenizer): 3 windows of 20 tokens, seed 5",
        corpus_path.display()
    );
    assert!(
        text(&o.stdout).contains(&format!("input: {describe}")),
        "{}",
        text(&o.stdout)
    );

    // The same windows, cut here from the checkpoint's own vocabulary: window b starts at
    // token b * ((n - 1) / B).
    let ckpt = rnnscope::checkpoint::load::<f64>(&ck).unwrap();
    let vocab = Vocab::from_json(&ckpt.metadata[VOCAB_KEY]).unwrap();
    let ids = vocab.encode(corpus().as_bytes()).unwrap().ids;
    let cols = (ids.len() - 1) / windows;
    let (mut inputs, mut targets) = (vec![0u32; steps * windows], vec![0u32; steps * windows]);
    for t in 0..steps {
        for b in 0..windows {
            inputs[t * windows + b] = ids[b * cols + t];
            targets[t * windows + b] = ids[b * cols + t + 1];
        }
    }
    let mut opts = SnapshotOptions::default();
    opts.jacobian.as_mut().unwrap().seed = 5;
    let lib = analysis::snapshot(&ckpt.model, &inputs, &targets, None, windows, &opts).unwrap();

    let snap = output::read_snapshot(&out.join(output::SNAPSHOT_FILE))
        .unwrap()
        .unwrap();
    let input = &snap.summary.input;
    assert_eq!(input.kind, InputKind::Text);
    assert_eq!(input.source, corpus_path.display().to_string());
    assert_eq!(input.tokenizer, Some(rnnscope::data::TokenizerKind::Char));
    assert_eq!((input.windows, input.window_length, input.seed), (3, 20, 5));
    assert_eq!(input.offsets, vec![0, cols, 2 * cols]);
    assert_eq!(input.describe(), describe);
    for (k, layer) in lib.profiles.iter().enumerate() {
        for cell_state in [false, true] {
            let csv = output::read_profile(&out.join(output::profile_file(k, cell_state)))
                .unwrap()
                .unwrap();
            let rows = if cell_state {
                layer.cell.as_ref().unwrap()
            } else {
                &layer.hidden
            };
            let want: Vec<output::ProfilePoint> = rows.iter().map(Into::into).collect();
            assert_eq!(csv, want, "layer {k}, cell state {cell_state}");
        }
    }
    // Random tokens would give another profile: the test above can fail.
    let random = ok(&[
        "gradflow",
        "--checkpoint",
        p(&ck),
        "--bptt",
        "20",
        "--batch",
        "3",
        "--out",
        p(&dir.0.join("rnd")),
        "--json",
        "--threads",
        "1",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&random.stdout).unwrap();
    assert_eq!(v["input"]["kind"], "random");
    assert_eq!(v["input"]["source"], "random tokens");
    let rnd = output::read_profile(&dir.0.join("rnd").join("profile_l0.csv"))
        .unwrap()
        .unwrap();
    assert_ne!(rnd[3].mean, lib.profiles[0].hidden[3].mean);

    // Every CSV file opens with the input line.
    for e in std::fs::read_dir(&out).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "csv") {
            let first = std::fs::read_to_string(&path).unwrap();
            assert_eq!(
                first.lines().next(),
                Some(format!("# input: {describe}").as_str()),
                "{}",
                path.display()
            );
        }
    }
}

#[test]
fn text_shorter_than_the_windows_is_an_error_naming_the_file() {
    let dir = TempDir::new("short");
    let corpus_path = dir.0.join("corpus.txt");
    std::fs::write(&corpus_path, corpus()).unwrap();
    let ck = trained_char_model(&dir.0, &corpus_path);
    let short = dir.0.join("short.txt");
    std::fs::write(&short, "the cat sat").unwrap();
    let o = run(&[
        "gradflow",
        "--checkpoint",
        p(&ck),
        "--text",
        p(&short),
        "--bptt",
        "20",
        "--out",
        p(&dir.0.join("gf")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(e.contains("short.txt") && e.contains("11 tokens"), "{e}");
    // --text without a checkpoint: no tokenizer to read it with.
    let o = run(&["gradflow", "--text", p(&short)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("--checkpoint"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn a_dense_input_checkpoint_is_refused_in_one_line() {
    let dir = TempDir::new("dense");
    let run_dir = dir.0.join("adding");
    ok(&[
        "task",
        "adding",
        "--length",
        "10",
        "--hidden",
        "8",
        "--steps",
        "2",
        "--eval-every",
        "2",
        "--test-size",
        "8",
        "--batch",
        "4",
        "--threads",
        "1",
        "--out",
        p(&run_dir),
    ]);
    let ck = std::fs::read_dir(&run_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|x| {
            x.extension().is_some_and(|e| e == "safetensors") && !p(x).contains("train_state")
        })
        .expect("a checkpoint");
    for extra in [vec![], vec!["--text", p(&ck)]] {
        let mut args = vec!["gradflow", "--checkpoint", p(&ck), "--out", p(&dir.0)];
        args.extend(extra.iter().copied());
        let o = run(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o.stderr));
        let e = text(&o.stderr);
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        assert!(e.contains("dense inputs") && e.contains(p(&ck)), "{e}");
    }
}

#[test]
fn copy_task_prints_and_reports_accuracy_against_chance_and_loss_against_the_memoryless_loss() {
    let dir = TempDir::new("copy");
    let run_dir = dir.0.join("copy");
    let o = ok(&[
        "task",
        "copy",
        "--length",
        "5",
        "--hidden",
        "8",
        "--steps",
        "2",
        "--eval-every",
        "2",
        "--test-size",
        "8",
        "--batch",
        "4",
        "--threads",
        "1",
        "--out",
        p(&run_dir),
    ]);
    // 10 ln 8 / (T + 20) with T = 5: a loss; chance accuracy on the 8 symbols: 1/8.
    let loss_base = 10.0 * 8f64.ln() / 25.0;
    let (log, out) = (text(&o.stderr), text(&o.stdout));
    let acc = "(chance accuracy 0.1250)";
    let loss = format!("(memoryless loss baseline {loss_base:.4})");
    assert!(
        log.contains(acc) && log.contains(&loss) && log.contains("test loss"),
        "{log}"
    );
    assert!(out.contains(acc) && out.contains(&loss), "{out}");
    assert!(
        !out.contains(&format!("{loss_base:.4})  accuracy")),
        "{out}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(v["metric_name"], "accuracy");
    assert_eq!(v["baseline"], 0.125);
    assert_eq!(v["baseline_name"], "chance accuracy");
    assert!((v["loss_baseline"].as_f64().unwrap() - loss_base).abs() < 1e-12);
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(html.contains("chance accuracy (12.5%)"), "no chance line");
    // The headline and the loss plot's line (its legend wraps after the name).
    let head = format!("memoryless loss baseline</div><div class=\"v\">{loss_base:.4}</div>");
    assert!(html.contains(&head), "no loss baseline in the headline");
    let svg = std::fs::read_to_string(run_dir.join("plots/task_loss.svg")).unwrap();
    assert!(svg.contains("memoryless loss baseline"), "no loss line");
    let metric = std::fs::read_to_string(run_dir.join("plots/metric.svg")).unwrap();
    assert!(!metric.contains("83.2%") && !metric.contains("memoryless"));
    assert!(!html.contains("chance (83.2%)") && !html.contains("chance accuracy (83.2%)"));
}

fn reading(dir: &Path) -> Vec<String> {
    rnnscope::report::build(dir).unwrap().reading
}

/// A char RNN whose gradient decays like 0.5^l (identity activation, W_hh = 0.5 Q, a learning
/// rate too small to move it), trained with tracking every 5 updates.
fn halving_rnn(dir: &Path, corpus: &Path) -> PathBuf {
    let run_dir = dir.join("rnn");
    ok(&[
        "train",
        "--corpus",
        p(corpus),
        "--out",
        p(&run_dir),
        "--cell",
        "rnn",
        "--activation",
        "identity",
        "--init",
        "orthogonal",
        "--spectral-radius",
        "0.5",
        "--hidden",
        "8",
        "--embedding",
        "4",
        "--batch",
        "4",
        "--bptt",
        "30",
        "--steps",
        "10",
        "--eval-every",
        "10",
        "--lr",
        "1e-9",
        "--track-gradflow",
        "5",
        "--threads",
        "1",
    ]);
    run_dir
}

#[test]
fn gradflow_reports_claim_a_memory_horizon_only_as_measured_on_real_text() {
    let dir = TempDir::new("claims");
    let corpus_path = dir.0.join("corpus.txt");
    std::fs::write(&corpus_path, corpus()).unwrap();
    let run_dir = halving_rnn(&dir.0, &corpus_path);
    let ck = run_dir.join("last.safetensors");
    let (text_dir, rnd_dir) = (dir.0.join("text"), dir.0.join("rnd"));
    ok(&[
        "gradflow",
        "--checkpoint",
        p(&ck),
        "--text",
        p(&corpus_path),
        "--bptt",
        "30",
        "--batch",
        "4",
        "--out",
        p(&text_dir),
        "--threads",
        "1",
    ]);
    ok(&[
        "gradflow",
        "--checkpoint",
        p(&ck),
        "--bptt",
        "30",
        "--batch",
        "4",
        "--out",
        p(&rnd_dir),
        "--threads",
        "1",
    ]);
    // 0.5^l < 1e-3 first at l = 10, in every window: the interval is that one distance.
    for d in [&text_dir, &rnd_dir] {
        let s = output::read_snapshot(&d.join(output::SNAPSHOT_FILE))
            .unwrap()
            .unwrap()
            .summary;
        let h = s.memory_horizon.unwrap();
        assert_eq!(
            (h.distance, h.low, h.high),
            (Some(10), Some(10), Some(10)),
            "{}",
            d.display()
        );
        assert_eq!(h.distance, s.distance_below_1e3);
    }
    let on_text = reading(&text_dir).join("\n");
    assert!(
        on_text.contains(&format!("measured on text {}", corpus_path.display())),
        "{on_text}"
    );
    assert!(
        on_text.contains("the memory horizon measured here"),
        "{on_text}"
    );
    assert!(
        on_text.contains("l = 10 (95% interval over 4 windows: 10 to 10)"),
        "{on_text}"
    );
    let on_random = reading(&rnd_dir).join("\n");
    assert!(
        on_random.contains("measured on random tokens"),
        "{on_random}"
    );
    assert!(
        on_random.contains("not text the model reads"),
        "{on_random}"
    );
    for claim in [
        "memory horizon measured here",
        "cannot learn",
        "can learn",
        "learnable",
    ] {
        assert!(!on_random.contains(claim), "{claim}: {on_random}");
        assert!(!on_text.contains("cannot learn"), "{on_text}");
    }

    // Tracked during training: in summary.json, with its step and input, and in the report.
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    let h = &v["memory_horizon"];
    assert_eq!(
        (h["step"].as_u64(), h["distance"].as_u64()),
        (Some(10), Some(10)),
        "{v}"
    );
    assert!(
        h["input"]
            .as_str()
            .unwrap()
            .starts_with("training batch of"),
        "{h}"
    );
    let r = rnnscope::report::build(&run_dir).unwrap();
    let all = r.reading.join("\n");
    assert!(
        all.contains("at step 10 R(l) fell below 1e-3 at l = 10"),
        "{all}"
    );
    let captions: Vec<&str> = r.figures().iter().map(|f| f.caption.as_str()).collect();
    let titles: Vec<String> = r.figures().iter().map(|f| f.name.clone()).collect();
    assert!(
        titles.iter().any(|t| t.contains("track_horizon")),
        "{titles:?}"
    );
    // A linear RNN run states the linear RNN's rule.
    assert!(captions.iter().any(|c| c.contains(
        "For this linear RNN (identity activation), rho < 1 makes every gradient component vanish and rho > 1 is necessary for exploding ones"
    )));
}

/// The captions and reading texts of a training report say what that run's cell and
/// settings imply, and only that: the spectral-radius plot of a gated cell states no
/// vanilla-RNN rule; a tanh RNN's states the nonlinear rule (`sigma_1` against `1/gamma`), not
/// the linear one (`rho`), and an identity RNN's the linear one; the gradient-norm plot titles
/// only what it shows and says whether this run clipped; no claim of what cannot be learned.
#[test]
fn a_training_report_states_the_theory_of_its_own_cell() {
    let dir = TempDir::new("train-rules");
    let corpus_path = dir.0.join("corpus.txt");
    std::fs::write(&corpus_path, corpus()).unwrap();
    // (cell, activation, clip, what the captions must say, what they must not)
    let gated = "For a gated cell they bound nothing on their own";
    let nonlinear = "sigma_1 < 1/gamma = 1 guarantees vanishing gradients and sigma_1 > 1/gamma is necessary for exploding ones";
    let linear =
        "rho < 1 makes every gradient component vanish and rho > 1 is necessary for exploding ones";
    /// A run's cell, activation and `--clip`, what its report must say and must not.
    type Case<'a> = (&'a str, &'a str, &'a str, &'a [&'a str], &'a [&'a str]);
    let cases: [Case; 4] = [
        (
            "lstm",
            "tanh",
            "5",
            &[
                gated,
                "This run clipped the norm at 5: no update used a larger gradient",
            ],
            &["rho > 1 is necessary", "sigma_1 < 1/gamma", "did not clip"],
        ),
        (
            "gru",
            "tanh",
            "0",
            &[
                gated,
                "This run did not clip: every update used the gradient as plotted",
            ],
            &[
                "rho > 1 is necessary",
                "sigma_1 < 1/gamma",
                "clipped the norm",
            ],
        ),
        (
            "rnn",
            "tanh",
            "5",
            &[nonlinear, "vanilla RNN (tanh, gamma = max|s'| = 1)"],
            &[linear, "rho > 1 is necessary", gated],
        ),
        (
            "rnn",
            "identity",
            "5",
            &[linear, "linear RNN (identity activation)"],
            &["sigma_1 < 1/gamma", gated],
        ),
    ];
    for (cell, act, clip, must, must_not) in cases {
        let run_dir = dir.0.join(format!("{cell}-{act}"));
        ok(&[
            "train",
            "--corpus",
            p(&corpus_path),
            "--out",
            p(&run_dir),
            "--cell",
            cell,
            "--activation",
            act,
            "--clip",
            clip,
            "--hidden",
            "8",
            "--embedding",
            "4",
            "--batch",
            "4",
            "--bptt",
            "16",
            "--steps",
            "4",
            "--eval-every",
            "4",
            "--track-gradflow",
            "2",
            "--threads",
            "1",
        ]);
        let r = rnnscope::report::build(&run_dir).unwrap();
        let mut text: Vec<String> = r.figures().iter().map(|f| f.caption.clone()).collect();
        text.extend(r.reading.iter().cloned());
        let text = text.join("\n");
        for want in must {
            assert!(text.contains(want), "{cell} {act}: no `{want}` in\n{text}");
        }
        for rule in must_not
            .iter()
            .chain(&["cannot learn", "Spikes are exploding"])
        {
            assert!(!text.contains(rule), "{cell} {act}: `{rule}` in\n{text}");
        }
        // The tracked gradient-norm plot is titled as what it shows: no decay is drawn on it.
        let names: Vec<String> = r.figures().iter().map(|f| f.name.clone()).collect();
        assert!(
            names.iter().any(|n| n.contains("track_grad_norm")),
            "{names:?}"
        );
        let html = std::fs::read_to_string(
            rnnscope::report::write(&run_dir, &Default::default())
                .unwrap()
                .html,
        )
        .unwrap();
        assert!(html.contains("Gradient norm during training"));
        assert!(!html.contains("Gradient norm and measured decay"));
    }
}

#[test]
fn the_influence_view_colours_the_text_by_the_gradient_of_each_chosen_target() {
    let dir = TempDir::new("view");
    let corpus_path = dir.0.join("corpus.txt");
    std::fs::write(&corpus_path, corpus()).unwrap();
    let ck = trained_char_model(&dir.0, &corpus_path);
    let out = dir.0.join("gf");
    let o = ok(&[
        "gradflow",
        "--checkpoint",
        p(&ck),
        "--text",
        p(&corpus_path),
        "--bptt",
        "20",
        "--batch",
        "3",
        "--show-window",
        "1",
        "--show-targets",
        "7,19",
        "--out",
        p(&out),
        "--json",
        "--threads",
        "1",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let view = &v["text_influence"];
    assert_eq!(
        (view["window"].as_u64(), view["layer"].as_u64()),
        (Some(1), Some(0))
    );
    // The window's tokens are the text at its offset, one character each.
    let cols = v["input"]["offsets"][1].as_u64().unwrap() as usize;
    let chars: Vec<String> = corpus().chars().map(String::from).collect();
    let tokens: Vec<String> = view["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    assert_eq!(tokens, chars[cols..cols + 20].to_vec());
    // Each target's row is that window's |dJ^(i)/dh^(j)|, j <= i: the library's norms.
    let ckpt = rnnscope::checkpoint::load::<f64>(&ck).unwrap();
    let vocab = Vocab::from_json(&ckpt.metadata[VOCAB_KEY]).unwrap();
    let ids = vocab.encode(corpus().as_bytes()).unwrap().ids;
    let (inputs, targets, _) = analysis::input::text_windows(&ids, 3, 20, "corpus").unwrap();
    let lib = analysis::snapshot(
        &ckpt.model,
        &inputs,
        &targets,
        None,
        3,
        &SnapshotOptions::default(),
    )
    .unwrap();
    for (k, &i) in [7usize, 19].iter().enumerate() {
        let t = &view["targets"][k];
        assert_eq!(t["position"].as_u64(), Some(i as u64));
        assert_eq!(t["next"].as_str().unwrap(), chars[cols + i + 1]);
        for (name, buf) in [("hidden", &lib.norms.dh[0]), ("cell", &lib.norms.dc[0])] {
            let row: Vec<f64> = t[name]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            assert_eq!(row.len(), i + 1);
            for (j, x) in row.iter().enumerate() {
                let want = buf[lib.norms.index(i, j, 1)];
                assert!(
                    (x - want).abs() <= 1e-12 * want.abs(),
                    "{name} i {i} j {j}: {x} vs {want}"
                );
            }
        }
    }
    // The report shows it: one line per target and state, every token up to the target.
    let html = std::fs::read_to_string(
        rnnscope::report::write(&out, &Default::default())
            .unwrap()
            .html,
    )
    .unwrap();
    assert_eq!(html.matches("<div class=\"influence\">").count(), 4);
    assert_eq!(html.matches("<span title=\"j = ").count(), 2 * (8 + 20));
    // Out-of-range choices are one-line errors.
    let o = run(&[
        "gradflow",
        "--checkpoint",
        p(&ck),
        "--text",
        p(&corpus_path),
        "--bptt",
        "20",
        "--show-targets",
        "20",
        "--out",
        p(&dir.0.join("gf2")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("--show-targets 20 must be below --bptt 20"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn task_help_documents_every_flag_and_the_length_of_each_task() {
    let help = text(&ok(&["task", "--help"]).stdout);
    let lines: Vec<&str> = help.lines().collect();
    let mut flags = 0;
    for (k, l) in lines.iter().enumerate() {
        if l.trim_start().starts_with("--") && l.starts_with("      --") {
            flags += 1;
            let doc = lines.get(k + 1).map_or("", |d| d.trim());
            assert!(
                !doc.is_empty() && !doc.starts_with("--"),
                "undocumented: {l}\n{help}"
            );
        }
    }
    assert!(flags >= 25, "{flags} flags\n{help}");
    for want in [
        "dependency: the distance l between the key noun and its repeat (>= 6",
        "copy: the delay T",
        "adding: the sequence length T (>= 2)",
        "order: the sequence length L (>= 10",
        "rnn, lstm or gru",
        "sgd, adagrad, rmsprop, adam or adamw",
        "tanh, relu, sigmoid, identity or modrelu",
    ] {
        assert!(help.contains(want), "missing `{want}`\n{help}");
    }
}

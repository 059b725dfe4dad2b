//! The attentive model beyond its gradients (tests/gradcheck.rs) and PyTorch parity
//! (tests/pytorch_parity.rs): sampling's growing window reproduces the whole-window pass, the
//! span limits what a step reads, and `train`/`sample`/`task` run it end to end from the
//! binary: checkpointed with its config, resumed bit for bit, sampled through the window.

mod common;

use common::*;
use rnnscope::data::{Vocab, VOCAB_KEY};
use rnnscope::layers::attention::{Attention, Memory};
use rnnscope::{checkpoint, Activation, CellKind, LanguageModel, State, Workspace};
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_rnnscope");

fn attentive(cell: CellKind, kind: Attention, span: usize, layers: usize) -> LanguageModel<f64> {
    let mut c = config(cell, Activation::Tanh, layers, false);
    c.attention = kind;
    c.attention_span = span;
    model(c, 11)
}

/// One token at a time with a [`Memory`] of the earlier states gives the logits of one pass
/// over the whole window (to rounding), for every cell, score, span and depth.
#[test]
fn remembering_one_token_at_a_time_matches_the_whole_window() {
    let steps = 12;
    for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
        for kind in [Attention::Dot, Attention::Additive] {
            for (span, layers) in [(0, 1), (4, 2)] {
                let m = attentive(cell, kind, span, layers);
                let v = m.config.vocab;
                let toks = tokens(steps, v, 3);
                let zero = State::zeros(&m.config, 1);
                let mut ws = Workspace::default();
                m.forward(&mut ws, &toks, &zero, steps, 1, None);
                let whole = ws.logits.clone();
                let mut state = zero.clone();
                let mut memory = Memory::default();
                let mut ws = Workspace::default();
                for (t, &tok) in toks.iter().enumerate() {
                    m.forward_remembering(&mut ws, &[tok], &state, 1, 1, &mut memory);
                    m.final_state(&ws, &mut state);
                    let err = rel_err(&ws.logits, &whole[t * v..(t + 1) * v]);
                    assert!(
                        err < 1e-12,
                        "{cell:?} {kind:?} span {span}: step {t}: {err:e}"
                    );
                }
                let kept = memory.steps(1, m.config.hidden);
                assert_eq!(kept, if span > 0 { span } else { steps }, "states kept");
            }
        }
    }
}

/// With span K, step t reads steps `max(0, t - K)..t` only: positive weights on exactly
/// those, summing to 1 (none at step 0).
#[test]
fn span_limits_the_window() {
    let m = attentive(CellKind::Gru, Attention::Additive, 3, 1);
    let steps = 8;
    let toks = tokens(steps * 2, m.config.vocab, 5);
    let mut ws = Workspace::default();
    m.forward(&mut ws, &toks, &State::zeros(&m.config, 2), steps, 2, None);
    for t in 0..steps {
        for b in 0..2 {
            let (lo, w) = ws.attention().weights_at(t, b);
            assert_eq!(lo, t.saturating_sub(3), "window start of step {t}");
            assert_eq!(w.len(), t - lo, "window of step {t}");
            if t > 0 {
                let sum: f64 = w.iter().sum();
                assert!(
                    (sum - 1.0).abs() < 1e-14,
                    "weights of step {t} sum to {sum}"
                );
                assert!(w.iter().all(|&a| a > 0.0));
            }
        }
    }
}

fn ok(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `train --attention additive --attention-span 6`: the checkpoint holds the config and the
/// attention's weights; 12 updates then `--resume` to 24 equal 24 uninterrupted (dropout on);
/// `sample --temperature 0` prints what the library's greedy sampling over the growing window
/// gives.
#[test]
fn train_resume_and_sample_an_attentive_model() {
    let dir = TempDir::new("train");
    let corpus = dir.0.join("corpus.txt");
    let words = ["the cat", "sat on", "a mat", "and ran", "far away"];
    let text: String = (0..2000)
        .map(|i| words[(i * 7 + i / 3) % words.len()])
        .collect::<Vec<_>>()
        .join(" ");
    std::fs::write(&corpus, text).unwrap();
    let run = |out: &Path, steps: &str| {
        ok(&[
            "train",
            "--corpus",
            p(&corpus),
            "--out",
            p(out),
            "--steps",
            steps,
            "--cell",
            "gru",
            "--hidden",
            "16",
            "--embedding",
            "8",
            "--bptt",
            "20",
            "--batch",
            "4",
            "--dropout",
            "0.1",
            "--attention",
            "additive",
            "--attention-span",
            "6",
            "--eval-every",
            "6",
            "--seed",
            "3",
            "--quiet",
        ])
    };
    let (full, half) = (dir.0.join("full"), dir.0.join("half"));
    run(&full, "24");
    run(&half, "12");
    ok(&["train", "--resume", p(&half), "--steps", "24", "--quiet"]);
    let a = checkpoint::load::<f32>(&full.join("last.safetensors")).unwrap();
    let b = checkpoint::load::<f32>(&half.join("last.safetensors")).unwrap();
    assert_eq!(a.model.config.attention, Attention::Additive);
    assert_eq!(a.model.config.attention_span, 6);
    for name in [
        "attention.query.weight",
        "attention.key.weight",
        "attention.score.weight",
        "attention.combine.weight",
    ] {
        assert!(a.model.layout.get(name).is_some(), "{name} in the layout");
    }
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert!(
        bits(a.model.params()) == bits(b.model.params()),
        "a resumed attentive run differs from the uninterrupted one"
    );

    let ckpt = full.join("best.safetensors");
    let printed = ok(&[
        "sample",
        "--checkpoint",
        p(&ckpt),
        "--prime",
        "the ",
        "--length",
        "60",
        "--temperature",
        "0",
    ]);
    // The same greedy continuation, each token from one pass over the whole sequence so far.
    let ck = checkpoint::load::<f32>(&ckpt).unwrap();
    let (m, meta) = (ck.model, ck.metadata);
    let vocab = Vocab::from_json(&meta[VOCAB_KEY]).unwrap();
    let mut seq = vocab.encode_fragment(b"the ").unwrap().ids;
    let mut ws = Workspace::default();
    for _ in 0..60 {
        let n = seq.len();
        m.forward(&mut ws, &seq, &State::zeros(&m.config, 1), n, 1, None);
        let last = &ws.logits[(n - 1) * m.config.vocab..];
        let best = (0..last.len() as u32)
            .filter(|&i| Some(i) != vocab.unk())
            .max_by(|&a, &b| {
                last[a as usize]
                    .total_cmp(&last[b as usize])
                    .then(b.cmp(&a))
            })
            .unwrap();
        seq.push(best);
    }
    assert_eq!(
        printed.trim_end(),
        format!("the {}", vocab.decode(&seq[4..])).trim_end()
    );
}

/// The gradient-flow analysis's one-hop attention path `dJ^(i)/dh_j` (`j < i`) and its
/// injection (`j = i`) equal finite differences of the loss of target `i` with the top layer's
/// states held as inputs of the attention and the decoder (perturbing `h_j` moves `o_i` only
/// through the value and key at step `i`), for both scores with and without a span.
#[test]
fn attention_path_is_the_one_hop_derivative() {
    use rnnscope::layers::attention::{self as att, Cache, VjpScratch};
    let (steps, batch) = (7, 2);
    for (kind, span) in [(Attention::Dot, 0), (Attention::Additive, 3)] {
        let mut m = attentive(CellKind::Lstm, kind, span, 1);
        m.params_mut().iter_mut().for_each(|p| *p *= 3.0);
        let c = m.config.clone();
        let (h, v) = (c.hidden, c.vocab);
        let toks = tokens(steps * batch, v, 8);
        let tgts = tokens(steps * batch, v, 9);
        let mut ws = Workspace::default();
        m.forward(&mut ws, &toks, &State::zeros(&c, batch), steps, batch, None);
        let states = ws.caches[0].outputs().to_vec();
        let w_dec = m.layout.view(m.params(), "decoder.weight").unwrap();
        let b_dec = m.layout.view(m.params(), "decoder.bias").unwrap();
        let p = m.attention_params();
        // J^(i) of batch element b as a function of the states.
        let loss = |states: &[f64], i: usize, b: usize| {
            let mut cache = Cache::default();
            att::forward(
                kind,
                span,
                &mut cache,
                states,
                &Memory::default(),
                &p,
                steps,
                batch,
                h,
            );
            let o = &cache.output()[(i * batch + b) * h..][..h];
            let z: Vec<f64> = (0..v)
                .map(|k| b_dec[k] + (0..h).map(|m| w_dec[k * h + m] * o[m]).sum::<f64>())
                .collect();
            let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + z.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
            lse - z[tgts[i * batch + b] as usize]
        };
        let mut scratch = VjpScratch::default();
        for i in [0, 3, steps - 1] {
            for b in 0..batch {
                // g = dJ/do_i = (softmax(z) - onehot(y)) W_dec
                let o = &ws.attention().output()[(i * batch + b) * h..][..h];
                let z: Vec<f64> = (0..v)
                    .map(|k| b_dec[k] + (0..h).map(|m| w_dec[k * h + m] * o[m]).sum::<f64>())
                    .collect();
                let sum: f64 = z.iter().map(|x| x.exp()).sum();
                let mut dz: Vec<f64> = z.iter().map(|x| x.exp() / sum).collect();
                dz[tgts[i * batch + b] as usize] -= 1.0;
                let g: Vec<f64> = (0..h)
                    .map(|m| (0..v).map(|k| dz[k] * w_dec[k * h + m]).sum())
                    .collect();
                let mut dh_i = vec![0.0; h];
                let mut window = vec![0.0; steps * h];
                let lo = att::target_vjp(
                    kind,
                    ws.attention(),
                    &p,
                    i,
                    b,
                    &g,
                    &mut dh_i,
                    &mut window,
                    &mut scratch,
                );
                assert_eq!(lo, if span > 0 { i.saturating_sub(span) } else { 0 });
                for j in lo..=i {
                    let analytic = if j == i {
                        &dh_i[..]
                    } else {
                        &window[(j - lo) * h..][..h]
                    };
                    let numeric: Vec<f64> = (0..h)
                        .map(|m| {
                            let at = (j * batch + b) * h + m;
                            let f = |d: f64| {
                                let mut s = states.clone();
                                s[at] += d;
                                loss(&s, i, b)
                            };
                            let e = 1e-5;
                            (8.0 * (f(e) - f(-e)) - (f(2.0 * e) - f(-2.0 * e))) / (12.0 * e)
                        })
                        .collect();
                    let err = rel_err(analytic, &numeric);
                    assert!(err < 1e-7, "{kind:?}: dJ^({i})/dh_{j} (b {b}): {err:e}");
                }
            }
        }
    }
}

/// `rnnscope gradflow --attention dot --attention-span 5`: the attention files; every row of
/// the heat map is a distribution over exactly the window, the attention path is zero beyond
/// the span and the mean weights over the reachable distances add up to 1.
#[test]
fn gradflow_writes_the_attention_paths_and_weights() {
    let dir = TempDir::new("gradflow");
    let out = dir.0.join("g");
    let printed = ok(&[
        "gradflow",
        "--attention",
        "dot",
        "--attention-span",
        "5",
        "--bptt",
        "12",
        "--batch",
        "3",
        "--hidden",
        "8",
        "--out",
        p(&out),
    ]);
    assert!(printed.contains("dot attention (span 5)"), "{printed}");
    let csv = |name: &str| {
        let text = std::fs::read_to_string(out.join(name)).unwrap();
        assert!(text.starts_with("# input: "), "{name}");
        text.lines().skip(1).collect::<Vec<_>>().join("\n")
    };
    for (t, row) in csv("attention_weights.csv").lines().enumerate() {
        let cells: Vec<&str> = row.split(',').collect();
        assert_eq!(cells.len(), 12);
        let lo = t.saturating_sub(5);
        let mut sum = 0.0;
        for (j, c) in cells.iter().enumerate() {
            assert_eq!(
                !c.is_empty(),
                (lo..t).contains(&j),
                "row {t} column {j}: `{c}`"
            );
            sum += c.parse::<f64>().unwrap_or(0.0);
        }
        if t > 0 {
            assert!(
                (sum - 1.0).abs() < 1e-12,
                "weights of step {t} sum to {sum}"
            );
        }
    }
    let rows: Vec<Vec<f64>> = csv("attention_profile.csv")
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .map(|c| c.parse().unwrap_or(f64::NAN))
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 12);
    for r in &rows {
        let l = r[0] as usize;
        assert_eq!(
            r[1] > 0.0,
            l <= 5,
            "attention path at distance {l}: {}",
            r[1]
        );
    }
    // mean weight at l, over the steps that reach l, times how many do, summed = steps read.
    let reached: f64 = (1..=5).map(|l| rows[l][6] * (12 - l) as f64).sum();
    assert!((reached - 11.0).abs() < 1e-9, "{reached}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("gradflow.json")).unwrap()).unwrap();
    assert_eq!(json["attention"]["span"], 5);
}

/// An experiment on the dependency task writes each run's gradient-flow analysis of its final
/// model on held-out sentences: `gradflow.json` holds the paths that `analysis::snapshot`
/// gives on the same checkpoint and the sentences its input record names, and `R(l)` at the
/// dependency's distance along each path goes into `outcome.json`, `runs.csv` and the table.
#[test]
fn an_experiment_writes_both_paths_of_each_dependency_run() {
    use rand::SeedableRng;
    use rnnscope::analysis;
    use rnnscope::data::tasks::{Task, TaskKind};
    let dir = TempDir::new("experiment");
    let sweep = dir.0.join("sweep.toml");
    std::fs::write(
        &sweep,
        "task = \"dependency\"\nlengths = [9]\nseeds = [4]\n\
         [defaults]\nhidden = 8\nembedding = 4\nbatch = 4\nsteps = 20\neval_every = 10\n\
         test_size = 8\nlr = 0.01\ncell = \"rnn\"\n\
         [[model]]\nname = \"rnn\"\n[[model]]\nname = \"rnn-dot\"\nattention = \"dot\"\n",
    )
    .unwrap();
    let out = dir.0.join("exp");
    ok(&[
        "experiment",
        "--config",
        p(&sweep),
        "--out",
        p(&out),
        "--threads",
        "1",
    ]);
    let l = 9;
    for (name, attentive) in [("rnn_T9_s4", false), ("rnn-dot_T9_s4", true)] {
        let run = out.join(name);
        let json = |path: PathBuf| -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
        };
        let written = json(run.join("gradflow/gradflow.json"));
        let input = &written["summary"]["input"];
        assert_eq!(input["kind"], "task", "{name}");
        let ck = checkpoint::load::<f32>(&run.join("last.safetensors")).unwrap();
        let task = Task {
            kind: TaskKind::Dependency,
            length: l,
        };
        let seed = input["seed"].as_u64().unwrap();
        let windows = input["windows"].as_u64().unwrap() as usize;
        let b = task.generate(windows, &mut rand::rngs::StdRng::seed_from_u64(seed));
        let snap = analysis::snapshot(
            &ck.model,
            &b.tokens,
            &b.targets,
            None,
            b.batch,
            &Default::default(),
        )
        .unwrap();
        let ratios = |rows: &serde_json::Value| -> Vec<Option<f64>> {
            rows.as_array()
                .unwrap()
                .iter()
                .map(|r| r["ratio"].as_f64())
                .collect()
        };
        let close = |a: &[Option<f64>], b: Vec<Option<f64>>| {
            assert_eq!(a.len(), b.len(), "{name}");
            for (x, y) in a.iter().zip(&b) {
                match (x, y) {
                    (Some(x), Some(y)) => {
                        assert!((x - y).abs() <= 1e-12 * y.abs(), "{name}: {x} {y}")
                    }
                    _ => assert_eq!(x, y, "{name}"),
                }
            }
        };
        let recurrent: Vec<Option<f64>> = snap.profiles[0].hidden.iter().map(|r| r.ratio).collect();
        close(&recurrent, ratios(&written["profiles"][0]["hidden"]));
        let outcome = json(run.join("outcome.json"));
        // JSON keeps f64 to rounding.
        let same = |v: &serde_json::Value, want: f64| {
            let got = v.as_f64().unwrap();
            assert!(
                (got - want).abs() <= 1e-12 * want.abs(),
                "{name}: {got} {want}"
            );
        };
        same(&outcome["ratio_recurrent"], recurrent[l].unwrap());
        assert!(recurrent[l].unwrap() > 0.0);
        // At the dependent word: step i (reads `her`) and the key noun's step j = i - (l - 1).
        let (i, j) = task.dependency_steps().unwrap();
        assert_eq!((i, i - j), (b.steps - 2, l - 1));
        let pair = |m: &[f64]| m[i * b.steps + j] / m[i * b.steps + i];
        same(&outcome["dependent_recurrent"], pair(&snap.influence[0]));
        match &snap.attention {
            Some(a) => {
                assert!(attentive, "{name}");
                let path: Vec<Option<f64>> = a.path.iter().map(|r| r.ratio).collect();
                close(&path, ratios(&written["attention"]["path"]));
                same(&outcome["ratio_attention"], path[l].unwrap());
                let hop = pair(&a.influence);
                assert!(hop > 0.0);
                same(&outcome["dependent_attention"], hop);
                assert!(run.join("gradflow/attention_profile.csv").exists());
            }
            None => {
                assert!(!attentive, "{name}");
                assert!(outcome["ratio_attention"].is_null(), "{name}");
                assert!(outcome["dependent_attention"].is_null(), "{name}");
            }
        }
    }
    let runs = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    assert!(
        runs.starts_with("model,length,seed,metric_name,metric,baseline,solved,updates,seconds,decay_per_step,ratio_recurrent,ratio_attention,dependent_recurrent,dependent_attention\n"),
        "{runs}"
    );
    let table = std::fs::read_to_string(out.join("results.md")).unwrap();
    for part in [
        ", R(l) recurrent ",
        ", R(l) attention ",
        ", dependent word attention ",
    ] {
        assert!(table.contains(part), "{part} in {table}");
    }
}

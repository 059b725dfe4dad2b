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

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("rnnscope-att-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
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

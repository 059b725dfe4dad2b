//! Property-based fuzzing of every reader of user files, on stable Rust: real files (a
//! checkpoint, a training config, a corpus, a sweep file and its plan) mutated by a seeded loop
//! (bit flips, random bytes, truncation, insertion, deletion, duplicated and dropped lines,
//! numbers replaced by extreme values), each mutant read as the command would read it. The
//! property: every mutant is accepted or refused with an error; none panics.
//!
//! `RNNSCOPE_FUZZ_CASES=N` sets the cases per reader (default 400, a few seconds in all);
//! `RNNSCOPE_FUZZ_SEED=S` another seed. The test prints the count of cases and crashes.

mod common;

use rnnscope::checkpoint::{self, TensorFile};
use rnnscope::data::{corpus, Batches, CorpusSpec, TokenizerKind};
use rnnscope::train::experiment::SweepFile;
use rnnscope::train::plan::Plan;
use rnnscope::train::TrainConfig;
use rnnscope::{CellKind, LanguageModel};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// xorshift64*: a small seeded generator, so that a failing case can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const EXTREMES: [&str; 12] = [
    "nan",
    "-1",
    "0",
    "inf",
    "1e308",
    "-0.0",
    "18446744073709551616",
    "9223372036854775808",
    "4294967296",
    "1000000000",
    "\"x\"",
    "[]",
];

/// One to four mutations of `data`; `focus` bytes at the start (a header) are hit more often.
fn mutate(rng: &mut Rng, data: &[u8], focus: usize) -> Vec<u8> {
    let mut d = data.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = d.len().max(1);
        let at = if focus > 0 && rng.below(2) == 0 {
            rng.below(focus.min(len))
        } else {
            rng.below(len)
        };
        let last = d.len().saturating_sub(1);
        match rng.below(8) {
            0 if !d.is_empty() => d[at.min(last)] ^= 1 << rng.below(8),
            1 if !d.is_empty() => d[at.min(last)] = rng.next() as u8,
            2 => d.truncate(at),
            3 => {
                let b = rng.next() as u8;
                d.insert(at.min(d.len()), b)
            }
            4 if !d.is_empty() => {
                d.remove(at.min(last));
            }
            5 => {
                // A number replaced by an extreme value.
                let text = String::from_utf8_lossy(&d).into_owned();
                let digits: Vec<usize> = text
                    .char_indices()
                    .filter(|(_, c)| c.is_ascii_digit())
                    .map(|(i, _)| i)
                    .collect();
                if let Some(&i) = digits.get(rng.below(digits.len())) {
                    let end = text[i..]
                        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e'))
                        .map_or(text.len(), |e| i + e);
                    let v = EXTREMES[rng.below(EXTREMES.len())];
                    d = format!("{}{v}{}", &text[..i], &text[end..]).into_bytes();
                }
            }
            6 => {
                // A line duplicated or dropped.
                let text = String::from_utf8_lossy(&d).into_owned();
                let mut lines: Vec<&str> = text.lines().collect();
                if !lines.is_empty() {
                    let k = rng.below(lines.len());
                    if rng.below(2) == 0 {
                        lines.insert(k, lines[k]);
                    } else {
                        lines.remove(k);
                    }
                }
                d = lines.join("\n").into_bytes();
            }
            _ => {
                // A stretch copied over another place.
                if d.len() > 2 {
                    let (a, b) = (rng.below(d.len()), rng.below(d.len()));
                    let n = rng.below(16).min(d.len() - a.max(b));
                    let piece = d[a..a + n].to_vec();
                    d[b..b + n].copy_from_slice(&piece);
                }
            }
        }
    }
    d
}

/// Runs `cases` mutants of `original` through `read`; returns the crashing case numbers.
fn fuzz(
    name: &str,
    original: &[u8],
    focus: usize,
    seed: u64,
    cases: usize,
    read: &mut dyn FnMut(&[u8]),
) -> usize {
    // The original itself must read (the property is not vacuous).
    let mut rng = Rng(seed | 1);
    let mut crashes = Vec::new();
    for k in 0..cases {
        let m = mutate(&mut rng, original, focus);
        if catch_unwind(AssertUnwindSafe(|| read(&m))).is_err() {
            crashes.push(k);
        }
    }
    println!(
        "fuzz {name}: {cases} cases, {} crashes (seed {seed}){}",
        crashes.len(),
        crashes
            .first()
            .map_or(String::new(), |k| format!(", first at case {k}"))
    );
    crashes.len()
}

fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("rnnscope-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn settings() -> (u64, usize) {
    let var = |k: &str| std::env::var(k).ok().and_then(|v| v.parse().ok());
    (
        var("RNNSCOPE_FUZZ_SEED").unwrap_or(0x5eed),
        var("RNNSCOPE_FUZZ_CASES").unwrap_or(400) as usize,
    )
}

const SWEEP: &str = "task = \"adding\"\nlengths = [5, 8]\nseeds = [1, 2]\n\n[defaults]\nsteps = 20\nhidden = 4\neval_every = 10\ntest_size = 10\nlr = 0.01\n\n[[model]]\nname = \"a\"\ncell = \"lstm\"\nforget_bias = 1.0\n\n[[model]]\nname = \"b\"\ncell = \"rnn\"\ninit = \"uniform:0.1\"\nclip = 1.0\n";

#[test]
fn mutated_files_are_read_or_refused_never_a_panic() {
    let (seed, cases) = settings();
    let dir = temp_dir();
    let mut crashes = 0;

    // The checkpoint reader: a real checkpoint, its header hit half the time.
    let config = common::config(CellKind::Lstm, rnnscope::Activation::Tanh, 2, false);
    let mut model = LanguageModel::<f32>::zeros(config).unwrap();
    rnnscope::init::initialize(&mut model, &Default::default()).unwrap();
    let path = dir.join("model.safetensors");
    let meta = HashMap::from([("rnnscope.vocab".to_string(), "[\"a\",\"b\"]".to_string())]);
    checkpoint::save(&model, &path, &meta).unwrap();
    let original = std::fs::read(&path).unwrap();
    checkpoint::load::<f32>(&path).unwrap();
    let header = 8 + u64::from_le_bytes(original[..8].try_into().unwrap()) as usize;
    let mutant = dir.join("mutant.safetensors");
    crashes += fuzz("checkpoint", &original, header, seed, cases, &mut |m| {
        std::fs::write(&mutant, m).unwrap();
        let _ = checkpoint::load::<f32>(&mutant);
        let _ = TensorFile::open(&mutant);
    });

    // The config reader: a resolved config.toml, parsed and validated.
    let cfg = TrainConfig {
        corpus: Some("corpus.txt".into()),
        forget_bias: Some(1.0),
        steps: Some(10),
        seed: u64::MAX,
        ..Default::default()
    };
    let text = cfg.to_toml();
    let toml_path = Path::new("config.toml");
    TrainConfig::from_toml(&text, toml_path)
        .unwrap()
        .validate()
        .unwrap();
    crashes += fuzz("config", text.as_bytes(), 0, seed, cases, &mut |m| {
        if let Ok(c) = TrainConfig::from_toml(&String::from_utf8_lossy(m), toml_path) {
            let _ = c.validate().map(|_| c.to_toml());
        }
    });

    // The corpus reader, with each tokenizer, then batched.
    let text: String = (0..200)
        .map(|i| format!("line {i} of the corpus, with wörds\n"))
        .collect();
    let corpus_path = dir.join("corpus.txt");
    crashes += fuzz("corpus", text.as_bytes(), 0, seed, cases, &mut |m| {
        std::fs::write(&corpus_path, m).unwrap();
        for tokenizer in [
            TokenizerKind::Char,
            TokenizerKind::Word,
            TokenizerKind::Byte,
        ] {
            let spec = CorpusSpec {
                tokenizer,
                vocab_size: 50,
                train: corpus_path.clone(),
                valid: None,
                test: None,
                valid_fraction: 0.1,
                test_fraction: 0.1,
            };
            if let Ok(c) = corpus::load(&spec) {
                let _ = Batches::new(&c.train.ids, 4, 8, "corpus");
            }
        }
    });

    // The experiment-plan readers: the sweep file, and the plan.json it writes.
    let sweep_path = Path::new("sweep.toml");
    let plan = SweepFile::parse(SWEEP, sweep_path)
        .unwrap()
        .plan(sweep_path, 1000)
        .unwrap();
    crashes += fuzz("sweep", SWEEP.as_bytes(), 0, seed, cases, &mut |m| {
        if let Ok(s) = SweepFile::parse(&String::from_utf8_lossy(m), sweep_path) {
            let _ = s.plan(sweep_path, 1000);
        }
    });
    let plan_dir = dir.join("plan");
    plan.save(&plan_dir).unwrap();
    let plan_json = std::fs::read(Plan::path(&plan_dir)).unwrap();
    Plan::read(&plan_dir).unwrap();
    crashes += fuzz("plan", &plan_json, 0, seed, cases, &mut |m| {
        std::fs::write(Plan::path(&plan_dir), m).unwrap();
        let _ = Plan::read(&plan_dir);
    });

    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(crashes, 0, "some mutants panicked (see above)");
}

//! rnnscope as a library: train a tiny character LSTM, then measure how its gradients flow
//! back through time on its own text, and read the profile.
//!
//! ```text
//! cargo run --release --example library
//! ```
//! The text is generated here (no files needed); `tests/library_example.rs` runs [`run`] and
//! checks what it returns.

use rnnscope::analysis::{self, input::text_windows, SnapshotOptions};
use rnnscope::data::{Batches, TokenizerKind, Vocab};
use rnnscope::train::{evaluate, Clip, OptimizerConfig, OptimizerKind, Trainer};
use rnnscope::{Activation, CellKind, InitConfig, LanguageModel, ModelConfig, Result, Workspace};

/// What [`run`] measured.
pub struct Outcome {
    /// Vocabulary size `V`.
    pub vocab: usize,
    /// Loss (nats per character) on the text before and after training.
    pub loss_before: f64,
    pub loss_after: f64,
    /// The top layer's gradient profile on windows of the text: `(distance l, R(l), pairs)`.
    pub profile: Vec<(usize, f64, usize)>,
    /// The measured decay of `R(l)` per step (`None` if it could not be fitted).
    pub decay_per_step: Option<f64>,
    /// Windows `B` and their length `T` of the analysis.
    pub windows: usize,
    pub steps: usize,
}

/// A text with structure at several distances: rhyming couplets of counted lines.
pub fn text() -> String {
    let animals = ["cat", "dog", "owl", "fox", "hen"];
    let mut s = String::new();
    for i in 0..400 {
        let a = animals[i % animals.len()];
        let b = animals[(i * 3 + 1) % animals.len()];
        s.push_str(&format!("the {a} saw the {b} and the {b} saw the {a}.\n"));
    }
    s
}

/// Trains for `updates` steps and analyses the trained model.
pub fn run(updates: usize) -> Result<Outcome> {
    let text = text();
    // 1. Tokens: a character vocabulary built from the text (token 0 is <unk>).
    let vocab = Vocab::build(TokenizerKind::Char, text.as_bytes(), 0)?;
    let ids = vocab.encode(text.as_bytes())?.ids;

    // 2. A one-layer LSTM language model, PyTorch's default initialisation.
    let config = ModelConfig {
        cell: CellKind::Lstm,
        activation: Activation::Tanh, // read by the vanilla RNN only
        vocab: vocab.len(),
        embedding: 16,
        hidden: 32,
        layers: 1,
        dropout: 0.0,
        tie: false,
        input_size: 0, // tokens through the embedding
        output: Default::default(),
        recurrence: Default::default(),
        residual: false,
        attention: Default::default(),
        attention_span: 0,
        proj_size: 0,
    };
    let mut model = LanguageModel::<f32>::zeros(config)?;
    rnnscope::init::initialize(&mut model, &InitConfig::default())?;
    let mut ws = Workspace::default();
    let loss_before = evaluate(&model, &mut ws, &ids, 8, 64)?.loss;

    // 3. Training: windows of 32 steps over 16 columns of the text, Adam, clipping at norm 5;
    //    the trainer carries the state from one window to the next.
    let (batch, bptt) = (16, 32);
    let windows = Batches::new(&ids, batch, bptt, "text")?;
    let mut trainer = Trainer::new(model, OptimizerConfig::new(OptimizerKind::Adam), batch);
    let (mut inputs, mut targets) = (vec![0; batch * bptt], vec![0; batch * bptt]);
    for u in 0..updates {
        let k = u % windows.windows;
        if k == 0 {
            trainer.reset_state();
        }
        windows.window(k, &mut inputs, &mut targets);
        trainer.step(&inputs, &targets, 1e-2, Clip::Norm(5.0), None)?;
    }
    let model = trainer.model;
    let loss_after = evaluate(&model, &mut ws, &ids, 8, 64)?.loss;

    // 4. Gradient flow on the model's own text: B windows of T characters.
    let (b, t) = (8, 48);
    let (inputs, targets, _offsets) = text_windows(&ids, b, t, "text")?;
    let opts = SnapshotOptions {
        jacobian: None,
        ..SnapshotOptions::default()
    };
    let snap = analysis::snapshot(&model, &inputs, &targets, None, b, &opts)?;

    // 5. Reading the profile: R(l) = mean |dJ^(i)/dh^(i-l)| / mean |dJ^(i)/dh^(i)|.
    let top = snap.profiles.last().expect("one profile per layer");
    let profile = top
        .hidden
        .iter()
        .filter_map(|r| Some((r.distance, r.ratio?, r.count)))
        .collect();
    Ok(Outcome {
        vocab: vocab.len(),
        loss_before,
        loss_after,
        profile,
        decay_per_step: snap.summary.decay_per_step,
        windows: b,
        steps: t,
    })
}

#[allow(dead_code)] // the test includes this file for `run` only
fn main() -> Result<()> {
    let o = run(300)?;
    println!(
        "{} characters; loss {:.3} -> {:.3} nats/char",
        o.vocab, o.loss_before, o.loss_after
    );
    println!(
        "gradient flow on {} windows of {} characters:",
        o.windows, o.steps
    );
    for (l, r, _) in o.profile.iter().filter(|p| p.0 % 8 == 0) {
        println!("  R({l:2}) = {r:.2e}");
    }
    match o.decay_per_step {
        Some(d) => println!("measured decay {d:.4}/step"),
        None => println!("no decay could be fitted"),
    }
    Ok(())
}

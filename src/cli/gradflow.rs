//! `rnnscope gradflow`: measure, predict and explain vanishing and exploding gradients on a
//! checkpoint or a freshly initialised model.
//!
//! Writes the gradient-flow directory ([`output::write_dir`]: `gradflow.json` and the CSV
//! files) into `--out`, and prints a short summary (`--json`: the summary as JSON on stdout).

use crate::analysis::jacobian::JacobianOptions;
use crate::analysis::{
    self, input, output, snapshot, text_view, InputKind, InputRecord, Precision, SnapshotOptions,
};
use crate::cell::{Activation, CellKind, Recurrence};
use crate::checkpoint;
use crate::data::{corpus, Vocab};
use crate::error::{Error, Result};
use crate::init::{initialize, InitConfig, InitScheme};
use crate::layers::attention::Attention;
use crate::model::{LanguageModel, ModelConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;

/// Arithmetic of the batched sweep (`--precision`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrecisionArg {
    /// Double precision: exact to rounding (the theory checks hold to ~1e-12).
    F64,
    /// Single precision, as models train: about twice as fast, ~1e-7 relative error per step.
    F32,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Analyse this checkpoint (safetensors) instead of a freshly initialised model.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Cell of a fresh model: rnn, lstm or gru.
    #[arg(long, conflicts_with = "checkpoint")]
    pub cell: Option<String>,
    /// Activation of a fresh vanilla RNN: tanh, relu, sigmoid, identity or modrelu.
    #[arg(long, conflicts_with = "checkpoint")]
    pub activation: Option<String>,
    /// W_hh of a fresh model: dense, or orthogonal (W_hh = expm(A); vanilla RNN only).
    #[arg(long, conflicts_with = "checkpoint")]
    pub recurrence: Option<String>,
    /// Residual connections between the layers of a fresh model.
    #[arg(long, conflicts_with = "checkpoint")]
    pub residual: bool,
    /// Attention of a fresh model over its earlier states: none, dot or additive.
    #[arg(long, conflicts_with = "checkpoint")]
    pub attention: Option<String>,
    /// Attention span K of a fresh model (0 = the whole window).
    #[arg(long, conflicts_with = "checkpoint", value_name = "K")]
    pub attention_span: Option<usize>,
    /// Hidden size of a fresh model [default: 64].
    #[arg(long, conflicts_with = "checkpoint")]
    pub hidden: Option<usize>,
    /// Layers of a fresh model [default: 1].
    #[arg(long, conflicts_with = "checkpoint")]
    pub layers: Option<usize>,
    /// Embedding size of a fresh model [default: 32].
    #[arg(long, conflicts_with = "checkpoint")]
    pub embedding: Option<usize>,
    /// Vocabulary size of a fresh model [default: 65].
    #[arg(long, conflicts_with = "checkpoint")]
    pub vocab: Option<usize>,
    /// Init of a fresh model: default, uniform:A, xavier, orthogonal, identity, chrono:T_MAX.
    #[arg(long, conflicts_with = "checkpoint")]
    pub init: Option<String>,
    /// Rescale every W_hh gate block of a fresh model to this spectral radius.
    #[arg(long, conflicts_with = "checkpoint")]
    pub spectral_radius: Option<f64>,
    /// LSTM forget-gate bias of a fresh model.
    #[arg(long, conflicts_with = "checkpoint")]
    pub forget_bias: Option<f64>,
    /// Analyse windows of this text file, tokenized with the checkpoint's own vocabulary
    /// (needs --checkpoint; --corpus is another name for it). Without it the input is
    /// uniformly random tokens, and every output says so.
    #[arg(long, value_name = "FILE", alias = "corpus", requires = "checkpoint")]
    pub text: Option<PathBuf>,
    /// The model's vocabulary for --text, when the checkpoint has none (a PyTorch state dict):
    /// one token per line (line i is token i), or a `.json` list of tokens.
    #[arg(long, value_name = "FILE", requires = "text")]
    pub vocab_file: Option<PathBuf>,
    /// With --text: target positions (0 to T-1, comma-separated) whose dependence on every
    /// earlier token the influence view shows [default: T/2 and T-1].
    #[arg(long, value_name = "I,J,...", value_delimiter = ',', requires = "text")]
    pub show_targets: Vec<usize>,
    /// With --text: the window (0 to B-1) the influence view shows.
    #[arg(long, value_name = "B", default_value_t = 0, requires = "text")]
    pub show_window: usize,
    /// Seed of the init, of the random input and of the Jacobian probes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Window length T (time steps analysed).
    #[arg(long, default_value_t = 128)]
    pub bptt: usize,
    /// Windows B (independent sequences; with --text, evenly spaced over the text).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Output directory.
    #[arg(long, default_value = "gradflow_out")]
    pub out: PathBuf,
    /// Replace the result already in --out (its files are removed first, so none is left stale).
    #[arg(long)]
    pub force: bool,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Skip the Jacobian products (2 T S^3 flops per layer).
    #[arg(long)]
    pub no_jacobian: bool,
    /// Batch element whose trajectory the Jacobian products follow.
    #[arg(long, default_value_t = 0)]
    pub jacobian_batch: usize,
    /// Arithmetic of the influence sweep (spectra, Jacobians and theory stay in f64).
    #[arg(long, value_enum, default_value_t = PrecisionArg::F64)]
    pub precision: PrecisionArg,
    /// Threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

fn fresh_model(a: &Args) -> Result<LanguageModel<f64>> {
    let cell_name = a.cell.as_deref().unwrap_or("rnn");
    let cell = CellKind::parse(cell_name).ok_or_else(|| {
        Error::Config(format!(
            "unknown --cell `{cell_name}`: use rnn, lstm or gru"
        ))
    })?;
    let act_name = a.activation.as_deref().unwrap_or("tanh");
    let activation = Activation::parse(act_name).ok_or_else(|| {
        Error::Config(format!(
            "unknown --activation `{act_name}`: use tanh, relu, sigmoid, identity or modrelu"
        ))
    })?;
    let rec_name = a.recurrence.as_deref().unwrap_or("dense");
    let recurrence = Recurrence::parse(rec_name).ok_or_else(|| {
        Error::Config(format!(
            "unknown --recurrence `{rec_name}`: use dense or orthogonal"
        ))
    })?;
    let att_name = a.attention.as_deref().unwrap_or("none");
    let attention = Attention::parse(att_name).ok_or_else(|| {
        Error::Config(format!(
            "unknown --attention `{att_name}`: use none, dot or additive"
        ))
    })?;
    let config = ModelConfig {
        cell,
        activation,
        vocab: a.vocab.unwrap_or(65),
        embedding: a.embedding.unwrap_or(32),
        hidden: a.hidden.unwrap_or(64),
        layers: a.layers.unwrap_or(1),
        dropout: 0.0,
        tie: false,
        input_size: 0,
        output: Default::default(),
        recurrence,
        residual: a.residual,
        attention,
        attention_span: a.attention_span.unwrap_or(0),
        proj_size: 0,
    };
    check_memory(a, &config)?;
    let mut model = LanguageModel::<f64>::zeros(config)?;
    let init = InitConfig {
        scheme: InitScheme::parse(a.init.as_deref().unwrap_or("default"))?,
        spectral_radius: a.spectral_radius,
        forget_bias: a.forget_bias,
        seed: a.seed,
    };
    initialize(&mut model, &init)?;
    Ok(model)
}

/// The analysed windows `[T, B]` (inputs, next-token targets) and what they are.
fn input_windows(
    a: &Args,
    vocab: usize,
    tokenizer: Option<&Vocab>,
) -> Result<(Vec<u32>, Vec<u32>, InputRecord)> {
    let (Some(path), Some(v)) = (&a.text, tokenizer) else {
        // A random stream cut like a text: each window's targets are its next tokens.
        let mut rng = StdRng::seed_from_u64(a.seed.wrapping_add(1));
        let stream: Vec<u32> = (0..a.batch * (a.bptt + 1))
            .map(|_| rng.gen_range(0..vocab as u32))
            .collect();
        let (inputs, targets, _) = input::text_windows(&stream, a.batch, a.bptt, "random tokens")?;
        return Ok((
            inputs,
            targets,
            InputRecord::random(a.batch, a.bptt, a.seed),
        ));
    };
    let enc = corpus::encode_file(path, v)?;
    let (inputs, targets, offsets) =
        input::text_windows(&enc.ids, a.batch, a.bptt, &path.display().to_string())?;
    let record = InputRecord {
        kind: InputKind::Text,
        source: path.display().to_string(),
        tokenizer: Some(v.kind()),
        windows: a.batch,
        window_length: a.bptt,
        seed: a.seed,
        offsets,
        unknown: enc.unknown,
    };
    Ok((inputs, targets, record))
}

/// Refuses a sweep over the memory limit: the model and its activations in f64, and the
/// `T x T` influence matrices of every layer (hidden and cell state).
fn check_memory(a: &Args, c: &ModelConfig) -> Result<()> {
    let t = a.bptt as f64;
    crate::memory::check(
        "this gradient-flow sweep",
        crate::memory::training_bytes(c, a.batch, a.bptt, 8) + c.layers as f64 * t * t * 16.0,
        "lower --bptt, --batch or --hidden",
    )
}

/// `--json`: the summary, with the influence view over the text under `text_influence`.
pub fn json_summary(snap: &analysis::GradflowSnapshot) -> serde_json::Value {
    let mut v = serde_json::to_value(&snap.summary).expect("the summary serialises");
    if let (Some(t), Some(map)) = (&snap.text_influence, v.as_object_mut()) {
        map.insert(
            "text_influence".into(),
            serde_json::to_value(t).expect("the view serialises"),
        );
    }
    v
}

/// The snapshot options of `--no-jacobian`, `--jacobian-batch`, `--seed` and `--precision`.
pub fn options(a: &Args) -> SnapshotOptions {
    SnapshotOptions {
        jacobian: (!a.no_jacobian).then(|| JacobianOptions {
            batch_index: a.jacobian_batch,
            seed: a.seed,
            ..Default::default()
        }),
        precision: match a.precision {
            PrecisionArg::F64 => Precision::F64,
            PrecisionArg::F32 => Precision::F32,
        },
        ..Default::default()
    }
}

/// What `rnnscope gradflow` measures on `model` with the options `a` (input windows, snapshot,
/// influence view over `--text` through `vocab`), without writing anything.
pub fn measure(
    model: &LanguageModel<f64>,
    vocab: Option<&Vocab>,
    a: &Args,
) -> Result<analysis::GradflowSnapshot> {
    if a.bptt == 0 || a.batch == 0 {
        return Err(Error::Config(
            "--bptt and --batch must be at least 1".into(),
        ));
    }
    check_memory(a, &model.config)?;
    let (inputs, targets, record) = input_windows(a, model.config.vocab, vocab)?;
    let opts = options(a);
    if a.jacobian_batch >= a.batch {
        return Err(Error::Config(format!(
            "--jacobian-batch {} must be below --batch {}",
            a.jacobian_batch, a.batch
        )));
    }
    let mut snap = snapshot(model, &inputs, &targets, None, a.batch, &opts)?;
    if let Some(v) = vocab {
        let text = |ids: &[u32], b: usize| -> Vec<String> {
            (0..a.bptt)
                .map(|t| v.decode(&ids[t * a.batch + b..][..1]))
                .collect()
        };
        let b = a.show_window;
        if b >= a.batch {
            return Err(Error::Config(format!(
                "--show-window {b} must be below --batch {}",
                a.batch
            )));
        }
        let shown = if a.show_targets.is_empty() {
            vec![a.bptt / 2, a.bptt - 1]
        } else {
            a.show_targets.clone()
        };
        if let Some(bad) = shown.iter().find(|&&i| i >= a.bptt) {
            return Err(Error::Config(format!(
                "--show-targets {bad} must be below --bptt {}",
                a.bptt
            )));
        }
        snap.text_influence = Some(text_view::text_influence(
            &snap,
            b,
            &shown,
            text(&inputs, b),
            &text(&targets, b),
        )?);
    }
    snap.summary.input = record;
    Ok(snap)
}

pub fn run(a: Args) -> Result<()> {
    super::set_threads(a.threads);
    let (model, vocab) = match (&a.checkpoint, &a.text) {
        (Some(p), Some(_)) => {
            let (m, v) = super::eval::load_language_model::<f32>(p, a.vocab_file.as_deref())?;
            (analysis::to_f64(&m)?, Some(v))
        }
        (Some(p), None) => {
            let m = checkpoint::load::<f64>(p)?.model;
            if m.config.input_size != 0 {
                return Err(Error::checkpoint(
                    p,
                    format!(
                        "the model reads dense inputs (input_size {}, a `task adding` model), not tokens: gradflow analyses models with a token embedding (language models, and the dependency, copy and order tasks)",
                        m.config.input_size
                    ),
                ));
            }
            (m, None)
        }
        (None, _) => (fresh_model(&a)?, None),
    };
    super::clear_out(&a.out, a.force, output::SNAPSHOT_FILE, false)?;
    let snap = measure(&model, vocab.as_ref(), &a)?;
    super::clear_out(&a.out, a.force, output::SNAPSHOT_FILE, true)?;
    output::write_dir(&a.out, &snap)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json_summary(&snap)).expect("the summary serialises")
        );
    } else {
        println!("{}", snap.summary.human());
        if let (Some(att), Some(top)) = (&snap.attention, snap.profiles.last()) {
            println!("{}", att.human(&top.hidden));
        }
        println!("wrote {}", a.out.join(output::SNAPSHOT_FILE).display());
    }
    Ok(())
}

//! `rnnscope train`: train a language model on a text file, or `--resume` a run.
//!
//! Everything is validated before the run directory is created: the configuration, the corpus
//! (present, non-empty, UTF-8 for char/word, longer than one batch window) and the model.

use crate::cell::Recurrence;
use crate::data::{corpus, Batches, TokenizerKind, Vocab, VOCAB_KEY};
use crate::error::{Error, Result};
use crate::init::initialize;
use crate::layers::attention::Attention;
use crate::model::LanguageModel;
use crate::train::{
    train, Clip, MetricsRow, Monitor, Progress, RunDir, RunKind, SavedState, Session, StopReason,
    StreamData, TrainConfig, TrainSettings,
};
use crate::{Activation, CellKind};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Text file to train on; split into train/valid[/test] by fraction unless --valid-file is given.
    #[arg(long, value_name = "FILE")]
    pub corpus: Option<PathBuf>,
    /// Run directory to create (config.toml, metrics.csv, last/best.safetensors, summary.json).
    #[arg(long, value_name = "RUN_DIR", required_unless_present = "resume")]
    pub out: Option<PathBuf>,
    /// TOML file with the same fields as these flags (unknown fields are an error); flags override it.
    #[arg(long, value_name = "FILE", conflicts_with = "resume")]
    pub config: Option<PathBuf>,
    /// Replace the run already in --out (its files are removed once the new run is checked).
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// Continue the run in RUN_DIR where it stopped (only --steps, --epochs, --max-time, --threads,
    /// --eval-every, --max-bad-steps and moved data files may be given).
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "out")]
    pub resume: Option<PathBuf>,

    // --- data ---
    /// Separate validation file (then --corpus is used whole for training).
    #[arg(long, value_name = "FILE")]
    pub valid_file: Option<PathBuf>,
    /// Separate test file (with --valid-file).
    #[arg(long, value_name = "FILE")]
    pub test_file: Option<PathBuf>,
    /// Fraction of the corpus (its end) held out for validation [default: 0.1].
    #[arg(long, value_name = "F", allow_negative_numbers = true)]
    pub valid_fraction: Option<f64>,
    /// Fraction of the corpus (its very end) held out for testing [default: 0].
    #[arg(long, value_name = "F", allow_negative_numbers = true)]
    pub test_fraction: Option<f64>,
    /// Tokens: characters (Unicode scalar values), bytes, or words (whitespace, <eos> per line) [default: char].
    #[arg(long, value_parser = ["char", "byte", "word"])]
    pub tokenizer: Option<String>,
    /// Word vocabulary cap, <unk> and <eos> included; 0 = no cap [default: 10000].
    #[arg(long, value_name = "N")]
    pub vocab_size: Option<usize>,

    // --- model ---
    /// Recurrent cell [default: lstm].
    #[arg(long, value_parser = ["rnn", "lstm", "gru"])]
    pub cell: Option<String>,
    /// Activation of the vanilla RNN [default: tanh].
    #[arg(long, value_parser = ["tanh", "relu", "sigmoid", "identity", "modrelu"])]
    pub activation: Option<String>,
    /// How W_hh is parametrised: dense, or orthogonal (W_hh = expm(A), A skew-symmetric;
    /// vanilla RNN only) [default: dense].
    #[arg(long, value_parser = ["dense", "orthogonal"])]
    pub recurrence: Option<String>,
    /// Residual connections between stacked layers; --residual=false to turn off.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub residual: Option<bool>,
    /// Attention of the top layer over its earlier states in the window: none, dot or
    /// additive [default: none].
    #[arg(long, value_parser = ["none", "dot", "additive"])]
    pub attention: Option<String>,
    /// Attention reads at most K earlier steps (0 = the whole window) [default: 0].
    #[arg(long, value_name = "K")]
    pub attention_span: Option<usize>,
    /// LSTM projection size P < hidden: h_t = W_hr (o * tanh(c_t)) has P values, as
    /// nn.LSTM(proj_size=P); 0 = none [default: 0].
    #[arg(long, value_name = "P")]
    pub proj_size: Option<usize>,
    /// Stacked recurrent layers [default: 1].
    #[arg(long, value_name = "N")]
    pub layers: Option<usize>,
    /// Hidden units per layer [default: 128].
    #[arg(long, value_name = "N")]
    pub hidden: Option<usize>,
    /// Embedding size [default: 64].
    #[arg(long, value_name = "N")]
    pub embedding: Option<usize>,
    /// Dropout on the non-recurrent connections [default: 0].
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub dropout: Option<f64>,
    /// Tie the decoder to the embedding (needs --embedding = --hidden); --tie=false to untie.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub tie: Option<bool>,
    /// Initialisation: default, uniform:A, xavier, orthogonal, identity, chrono:T_MAX
    /// [default: default].
    #[arg(long, value_name = "NAME")]
    pub init: Option<String>,
    /// LSTM forget-gate bias.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub forget_bias: Option<f64>,
    /// Rescale every W_hh gate block to this spectral radius.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub spectral_radius: Option<f64>,

    // --- optimisation ---
    /// Optimizer [default: adam].
    #[arg(long, value_parser = ["sgd", "adagrad", "rmsprop", "adam", "adamw"])]
    pub optimizer: Option<String>,
    /// Learning rate [default: 0.002].
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// SGD momentum [default: 0].
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub momentum: Option<f64>,
    /// Adam beta1 [default: 0.9].
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub beta1: Option<f64>,
    /// Adam beta2 [default: 0.999].
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub beta2: Option<f64>,
    /// RMSProp smoothing constant [default: 0.99].
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub alpha: Option<f64>,
    /// Optimizer epsilon [default: 1e-8].
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub eps: Option<f64>,
    /// Weight decay: L2 penalty, decoupled for adamw [default: 0].
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,
    /// Learning-rate schedule: constant, step:N[:GAMMA], plateau[:K[:PATIENCE]], cosine[:MIN] [default: constant].
    #[arg(long, value_name = "NAME")]
    pub schedule: Option<String>,
    /// Gradient norm clipping threshold, 0 = off (Pascanu et al. 2013) [default: 5].
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub clip: Option<f64>,
    /// Element-wise gradient clipping threshold, 0 = off [default: 0].
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub clip_value: Option<f64>,
    /// Parallel columns of the token stream [default: 32].
    #[arg(long, value_name = "N")]
    pub batch: Option<usize>,
    /// Truncated-BPTT window length [default: 64].
    #[arg(long, value_name = "N")]
    pub bptt: Option<usize>,
    /// Number of updates [default: one epoch].
    #[arg(long, value_name = "N", conflicts_with = "epochs")]
    pub steps: Option<u64>,
    /// Passes over the training text (fractions allowed).
    #[arg(long, value_name = "N")]
    pub epochs: Option<f64>,
    /// Validate and checkpoint every N updates; 0 = only at the end [default: 200].
    #[arg(long, value_name = "N")]
    pub eval_every: Option<u64>,
    /// Random seed (initialisation and dropout) [default: 0].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Threads; 0 = all cores [default: 0].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Stop cleanly after this many minutes (checkpoint written; --resume continues).
    #[arg(long, value_name = "MINUTES", allow_negative_numbers = true)]
    pub max_time: Option<f64>,
    /// Stop with an error after N non-finite steps in a row [default: 5].
    #[arg(long, value_name = "N")]
    pub max_bad_steps: Option<u32>,
    /// Record the spectrum of W_hh and the gradient profile every N updates (0 = off).
    #[arg(long, value_name = "N")]
    pub track_gradflow: Option<u64>,
    /// No progress bar and no log lines (errors and the final line only).
    #[arg(long)]
    pub quiet: bool,
}

fn parse_enum<T>(flag: &str, s: &str, f: impl Fn(&str) -> Option<T>) -> Result<T> {
    f(s).ok_or_else(|| Error::Config(format!("--{flag} `{s}` is not valid")))
}

impl Args {
    /// The flags that fix the model or the data, which `--resume` may not change.
    fn fixed_flags(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        macro_rules! check {
            ($($f:ident => $name:literal),* $(,)?) => {
                $( if self.$f.is_some() { v.push($name); } )*
            };
        }
        check!(
            valid_fraction => "--valid-fraction", test_fraction => "--test-fraction",
            tokenizer => "--tokenizer", vocab_size => "--vocab-size", cell => "--cell",
            activation => "--activation", layers => "--layers", hidden => "--hidden",
            embedding => "--embedding", dropout => "--dropout", tie => "--tie", init => "--init",
            recurrence => "--recurrence", residual => "--residual",
            attention => "--attention", attention_span => "--attention-span",
            proj_size => "--proj-size", forget_bias => "--forget-bias", spectral_radius => "--spectral-radius",
            optimizer => "--optimizer", lr => "--lr", momentum => "--momentum",
            beta1 => "--beta1", beta2 => "--beta2", alpha => "--alpha", eps => "--eps",
            weight_decay => "--weight-decay", schedule => "--schedule", clip => "--clip",
            clip_value => "--clip-value", batch => "--batch", bptt => "--bptt", seed => "--seed",
        );
        v
    }

    /// Writes the given flags over `cfg`.
    pub fn apply(&self, cfg: &mut TrainConfig) -> Result<()> {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f.clone() { cfg.$f = v; } )* };
        }
        macro_rules! set_some {
            ($($f:ident),*) => { $( if let Some(v) = self.$f.clone() { cfg.$f = Some(v); } )* };
        }
        set!(
            valid_fraction,
            test_fraction,
            vocab_size,
            layers,
            hidden,
            embedding,
            dropout,
            tie,
            residual,
            attention_span,
            proj_size,
            init,
            lr,
            momentum,
            beta1,
            beta2,
            alpha,
            eps,
            weight_decay,
            schedule,
            clip,
            clip_value,
            batch,
            bptt,
            eval_every,
            seed,
            threads,
            max_bad_steps,
            track_gradflow
        );
        set_some!(
            corpus,
            valid_file,
            test_file,
            forget_bias,
            spectral_radius,
            max_time
        );
        if let Some(s) = self.steps {
            cfg.steps = Some(s);
            cfg.epochs = None;
        }
        if let Some(e) = self.epochs {
            cfg.epochs = Some(e);
            cfg.steps = None;
        }
        if let Some(t) = &self.tokenizer {
            cfg.tokenizer = TokenizerKind::parse(t)?;
        }
        if let Some(c) = &self.cell {
            cfg.cell = parse_enum("cell", c, CellKind::parse)?;
        }
        if let Some(a) = &self.activation {
            cfg.activation = parse_enum("activation", a, Activation::parse)?;
        }
        if let Some(r) = &self.recurrence {
            cfg.recurrence = parse_enum("recurrence", r, Recurrence::parse)?;
        }
        if let Some(a) = &self.attention {
            cfg.attention = parse_enum("attention", a, Attention::parse)?;
        }
        if let Some(o) = &self.optimizer {
            cfg.optimizer = crate::train::OptimizerKind::parse(o)?;
        }
        Ok(())
    }
}

/// Progress bar on stderr (hidden when stderr is not a terminal; log lines are printed anyway).
pub struct ProgressMonitor {
    pb: ProgressBar,
    quiet: bool,
    valid: Option<f64>,
    loss: Option<f64>,
    tokens_per_s: Option<f64>,
}

impl ProgressMonitor {
    pub fn new(quiet: bool) -> Self {
        // Drawn from `start` on, so that the lines logged before it come first.
        let pb = ProgressBar::hidden();
        pb.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30.cyan/blue}] {pos}/{len} {msg} | {eta} left",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        ProgressMonitor {
            pb,
            quiet,
            valid: None,
            loss: None,
            tokens_per_s: None,
        }
    }
}

fn ema(old: Option<f64>, new: f64, a: f64) -> Option<f64> {
    if !new.is_finite() {
        return old;
    }
    Some(old.map_or(new, |o| a * o + (1.0 - a) * new))
}

impl Monitor for ProgressMonitor {
    fn start(&mut self, progress: &Progress, total: u64) {
        if !self.quiet {
            self.pb.set_draw_target(ProgressDrawTarget::stderr());
        }
        self.pb.set_length(total);
        self.pb.set_position(progress.step);
        self.pb.reset_eta();
        if progress.last_valid.is_finite() {
            self.valid = Some(progress.last_valid);
        }
    }

    fn step(&mut self, progress: &Progress, row: Option<&MetricsRow>) {
        self.pb.set_position(progress.step);
        let Some(row) = row else { return };
        self.loss = ema(self.loss, row.train_loss, 0.9);
        self.tokens_per_s = ema(self.tokens_per_s, row.tokens_per_s, 0.9);
        if let Some(v) = row.valid_loss {
            self.valid = Some(v);
        }
        self.pb.set_message(format!(
            "loss {} | valid ppl {} | {} tok/s",
            self.loss.map_or("-".into(), |l| format!("{l:.3}")),
            self.valid.map_or("-".into(), |v| format!("{:.3}", v.exp())),
            self.tokens_per_s
                .map_or("-".into(), |t| format!("{:.1}k", t / 1000.0)),
        ));
    }

    fn log(&mut self, msg: &str) {
        if self.quiet {
            return;
        }
        if self.pb.is_hidden() {
            eprintln!("{msg}");
        } else {
            self.pb.println(msg);
        }
    }

    fn finish(&mut self) {
        self.pb.finish_and_clear();
    }
}

fn fingerprint_hex(f: u64) -> String {
    format!("{f:016x}")
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Everything prepared (and validated) before anything is written.
struct Prepared {
    cfg: TrainConfig,
    corpus: corpus::Corpus,
    settings: TrainSettings,
    windows: usize,
}

fn prepare(mut cfg: TrainConfig) -> Result<Prepared> {
    cfg.validate()?;
    crate::cli::set_threads(cfg.threads);
    let corpus = corpus::load(&cfg.corpus_spec()?)?;
    let batches = Batches::new(&corpus.train.ids, cfg.batch, cfg.bptt, &corpus.train.source)?;
    let windows = batches.windows;
    crate::memory::check(
        "training this model",
        crate::memory::training_bytes(
            &cfg.model_config(corpus.vocab.len()),
            cfg.batch,
            cfg.bptt,
            4,
        ),
        "lower --hidden, --layers, --batch or --bptt",
    )?;
    let steps = cfg.total_steps(windows);
    let settings = TrainSettings {
        batch: cfg.batch,
        steps,
        optimizer: cfg.optimizer_config(),
        lr: cfg.lr,
        schedule: cfg.schedule()?,
        clip: cfg.clip()?,
        seed: cfg.seed,
        eval_every: cfg.eval_every,
        max_time: cfg.max_time.map(|m| Duration::from_secs_f64(m * 60.0)),
        max_bad_steps: cfg.max_bad_steps,
        track_gradflow: cfg.track_gradflow,
        stop_when_solved: false,
    };
    // Resolved paths, so that `--resume` works from any directory.
    for p in [&mut cfg.corpus, &mut cfg.valid_file, &mut cfg.test_file]
        .into_iter()
        .flatten()
    {
        *p = absolute(p);
    }
    Ok(Prepared {
        cfg,
        corpus,
        settings,
        windows,
    })
}

fn describe(p: &Prepared, model: &LanguageModel<f32>) -> String {
    let c = &model.config;
    let cell = match c.cell {
        CellKind::Rnn => format!("RNN ({})", c.activation.name()),
        other => other.name().to_uppercase(),
    };
    let unit = p.corpus.vocab.kind().unit();
    let cell = if c.proj_size > 0 {
        format!("{cell} (projection {})", c.proj_size)
    } else {
        cell
    };
    let mut s = format!(
        "{cell} {}x{} (embedding {}, dropout {}), {} parameters; vocabulary {} ({}s)\n\
         data: {} train tokens from {}, {} valid tokens from {}",
        c.layers,
        c.hidden,
        c.embedding,
        c.dropout,
        model.layout.total(),
        c.vocab,
        unit,
        p.corpus.train.ids.len(),
        p.corpus.train.source,
        p.corpus.valid.ids.len(),
        p.corpus.valid.source,
    );
    if !p.corpus.test.ids.is_empty() {
        s.push_str(&format!(
            ", {} test tokens from {}",
            p.corpus.test.ids.len(),
            p.corpus.test.source
        ));
    }
    for (name, split) in [("validation", &p.corpus.valid), ("test", &p.corpus.test)] {
        if split.unknown > 0 {
            s.push_str(&format!(
                "\nnote: {} {unit}s of the {name} text are not in the training vocabulary (mapped to <unk>)",
                split.unknown
            ));
        }
    }
    let st = &p.settings;
    s.push_str(&format!(
        "\nplan: {} updates of {} x {} tokens ({:.2} epochs), {} lr {:e} schedule {}, {}",
        st.steps,
        st.batch,
        p.cfg.bptt,
        st.steps as f64 / p.windows as f64,
        format!("{:?}", st.optimizer.kind).to_lowercase(),
        st.lr,
        st.schedule.name(),
        match st.clip {
            Clip::None => "no clipping".to_string(),
            Clip::Norm(x) => format!("gradient norm clipped at {x}"),
            Clip::Value(x) => format!("gradients clipped to [-{x}, {x}]"),
        }
    ));
    s
}

fn metadata(vocab: &Vocab) -> HashMap<String, String> {
    HashMap::from([(VOCAB_KEY.to_string(), vocab.to_json())])
}

pub fn run(args: Args) -> Result<()> {
    match args.resume.clone() {
        Some(dir) => resume(args, &dir),
        None => start(args),
    }
    .map_err(|e| super::with_flags(e, true))
}

fn start(args: Args) -> Result<()> {
    let out = args
        .out
        .clone()
        .ok_or_else(|| Error::Config("give --out RUN_DIR (or --resume RUN_DIR)".into()))?;
    let mut cfg = match &args.config {
        Some(path) => TrainConfig::from_file(path)?,
        None => TrainConfig::default(),
    };
    args.apply(&mut cfg)?;
    RunDir::check_new(&out, args.force)?;
    let p = prepare(cfg)?;
    let model_cfg = p.cfg.model_config(p.corpus.vocab.len());
    let mut model = LanguageModel::<f32>::zeros(model_cfg)?;
    initialize(&mut model, &p.cfg.init_config()?)?;
    let mut session = Session::new(model, p.settings.clone())?;
    let mut monitor = ProgressMonitor::new(args.quiet);
    RunDir::make_fresh(&out, args.force, &mut |m| eprintln!("{m}"))?;
    monitor.log(&describe(&p, &session.trainer.model));
    let mut dir = RunDir::create(
        &out,
        RunKind::LanguageModel,
        &p.cfg.to_toml(),
        metadata(&p.corpus.vocab),
        Some(fingerprint_hex(p.corpus.fingerprint)),
    )?;
    run_loop(&mut session, &p, &mut dir, &mut monitor)
}

fn resume(args: Args, dir: &Path) -> Result<()> {
    let fixed = args.fixed_flags();
    if !fixed.is_empty() {
        return Err(Error::Config(format!(
            "{} cannot change when resuming ({} fixes the run): only --steps, --epochs, --max-time, --threads, --eval-every, --max-bad-steps and the data file paths can",
            fixed.join(", "),
            dir.join("config.toml").display()
        )));
    }
    let saved = SavedState::read(dir)?;
    let mut cfg = TrainConfig::from_file(&dir.join("config.toml"))?;
    args.apply(&mut cfg)?;
    let p = prepare(cfg)?;
    let state_path = dir.join("train_state.safetensors");
    let saved_vocab = saved
        .metadata()
        .get(VOCAB_KEY)
        .map(|j| Vocab::from_json(j))
        .transpose()?;
    if saved_vocab.as_ref() != Some(&p.corpus.vocab) {
        return Err(Error::Data(format!(
            "{}: its vocabulary differs from the one in {}: the corpus changed since the run started; resume with the same files",
            p.corpus.train.source,
            state_path.display()
        )));
    }
    if saved.fingerprint.as_deref() != Some(&fingerprint_hex(p.corpus.fingerprint)) {
        return Err(Error::Data(format!(
            "{}: the text changed since the run started (its fingerprint differs from {}): resume with the same files",
            p.corpus.train.source,
            state_path.display()
        )));
    }
    let total = p.settings.steps;
    if saved.progress.step >= total {
        println!(
            "{}: already at update {} of {total}: nothing to do (raise --steps or --epochs to train further)",
            dir.display(),
            saved.progress.step
        );
        return Ok(());
    }
    let model = LanguageModel::<f32>::zeros(p.cfg.model_config(p.corpus.vocab.len()))?;
    let mut session = Session::new(model, p.settings.clone())?;
    saved.restore(&mut session, dir)?;
    let mut monitor = ProgressMonitor::new(args.quiet);
    monitor.log(&format!(
        "resuming {} at update {} of {total}",
        dir.display(),
        saved.progress.step
    ));
    monitor.log(&describe(&p, &session.trainer.model));
    let mut rd = RunDir::reopen(
        dir,
        RunKind::LanguageModel,
        saved.progress.step,
        &p.cfg.to_toml(),
        metadata(&p.corpus.vocab),
        Some(fingerprint_hex(p.corpus.fingerprint)),
    )?;
    run_loop(&mut session, &p, &mut rd, &mut monitor)
}

fn run_loop(
    session: &mut Session,
    p: &Prepared,
    dir: &mut RunDir,
    monitor: &mut ProgressMonitor,
) -> Result<()> {
    super::install_ctrlc();
    let mut data = StreamData::new(
        &p.corpus.train.ids,
        &p.corpus.valid.ids,
        &p.corpus.test.ids,
        &p.corpus.train.source,
        p.cfg.batch,
        p.cfg.bptt,
    )?;
    data.tokenizer = Some(p.corpus.vocab.kind());
    let (reason, summary) = train(session, &mut data, Some(dir), monitor, &super::STOP)?;
    let d = dir.path.display();
    let best = summary
        .best_valid_loss
        .map_or("no finite validation loss".into(), |b| {
            let unit = match p.corpus.vocab.kind() {
                TokenizerKind::Word => "word",
                TokenizerKind::Char => "char",
                TokenizerKind::Byte => "byte",
            };
            format!(
                "best valid loss {b:.4} (ppl {:.3}, {:.4} bits/{unit}) at update {}",
                b.exp(),
                b / std::f64::consts::LN_2,
                summary.best_step.unwrap_or(0)
            )
        });
    match reason {
        StopReason::Finished | StopReason::Solved => println!(
            "done: {} updates in {:.0} s; {best}; files in {d}",
            summary.step, summary.seconds
        ),
        StopReason::Interrupted | StopReason::TimeLimit => println!(
            "{} at update {} of {}; {best}; saved {d}/last.safetensors: continue with `rnnscope train --resume {d}`",
            if reason == StopReason::Interrupted {
                "interrupted"
            } else {
                "time limit reached"
            },
            summary.step,
            summary.steps
        ),
    }
    // The report (plots of the run's files in one page); a failure only warns.
    crate::report::write_after_run(&dir.path, monitor.quiet);
    Ok(())
}

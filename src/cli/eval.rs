//! `rnnscope eval`: loss, perplexity and bits per token of a checkpoint on a text file.

use crate::checkpoint;
use crate::data::{corpus, TokenizerKind, Vocab, VOCAB_KEY};
use crate::error::{Error, Result};
use crate::model::{LanguageModel, Output, Workspace};
use crate::tensor::Float;
use crate::train::evaluate;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Checkpoint written by `rnnscope train` (last.safetensors or best.safetensors), or a PyTorch
    /// state dict saved as safetensors.
    #[arg(long, value_name = "CKPT")]
    pub checkpoint: PathBuf,
    /// Text file to evaluate on (tokenized with the checkpoint's vocabulary).
    #[arg(long, value_name = "FILE")]
    pub corpus: PathBuf,
    /// The model's vocabulary, for a checkpoint without one (a PyTorch state dict): one token
    /// per line (line i is token i), or a `.json` list of tokens.
    #[arg(long, value_name = "FILE")]
    pub vocab_file: Option<PathBuf>,
    /// Print one JSON object: loss, perplexity, bits_per_token, tokens, unknown.
    #[arg(long)]
    pub json: bool,
    /// Parallel columns (each starts from a zero state).
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub batch: usize,
    /// Window length (the state is carried across windows).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub bptt: usize,
    /// Threads; 0 = all cores.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
}

/// Loads a checkpoint of `rnnscope train` with its vocabulary.
pub fn load_checkpoint(path: &Path) -> Result<(LanguageModel<f32>, Vocab)> {
    load_language_model(path, None)
}

/// Loads a language model (a checkpoint of `rnnscope train` or a PyTorch state dict saved as
/// safetensors) with its vocabulary: from `vocab_file` when given, else from the checkpoint.
pub fn load_language_model<T: Float>(
    path: &Path,
    vocab_file: Option<&Path>,
) -> Result<(LanguageModel<T>, Vocab)> {
    let ck = checkpoint::load::<T>(path)?;
    let vocab = vocab_of(&ck.model, &ck.metadata, path, vocab_file)?;
    Ok((ck.model, vocab))
}

/// The vocabulary of a language model: read from `vocab_file` when given, else from the
/// checkpoint's `metadata` (`path` names the checkpoint in errors); it must fit the model.
pub fn vocab_of<T: Float>(
    model: &LanguageModel<T>,
    metadata: &HashMap<String, String>,
    path: &Path,
    vocab_file: Option<&Path>,
) -> Result<Vocab> {
    let c = &model.config;
    if c.input_size != 0 || c.output != Output::Softmax {
        return Err(Error::checkpoint(
            path,
            "a model with dense inputs or a regression head, not a language model: use a checkpoint written by `rnnscope train`",
        ));
    }
    let (vocab, source) = match vocab_file {
        Some(f) => (Vocab::from_file(f)?, f.display().to_string()),
        None => {
            let json = metadata.get(VOCAB_KEY).ok_or_else(|| {
                Error::checkpoint(
                    path,
                    format!("no vocabulary (metadata `{VOCAB_KEY}`): give the model's vocabulary with --vocab-file FILE (one token per line, or a JSON list of tokens)"),
                )
            })?;
            let v = Vocab::from_json(json).map_err(|e| Error::checkpoint(path, e.to_string()))?;
            (v, path.display().to_string())
        }
    };
    if vocab.len() != model.config.vocab {
        return Err(Error::checkpoint(
            path,
            format!(
                "the vocabulary ({source}) has {} tokens but the model's embedding has {} rows: give the vocabulary the model was trained with",
                vocab.len(),
                model.config.vocab
            ),
        ));
    }
    Ok(vocab)
}

#[derive(serde::Serialize)]
struct Report {
    loss: f64,
    perplexity: f64,
    bits_per_token: f64,
    tokens: u64,
    unknown: usize,
    tokenizer: TokenizerKind,
}

pub fn run(args: Args) -> Result<()> {
    if args.batch == 0 || args.bptt == 0 {
        return Err(Error::Config(
            "--batch and --bptt must be at least 1".into(),
        ));
    }
    super::set_threads(args.threads);
    let (model, vocab) = load_language_model::<f32>(&args.checkpoint, args.vocab_file.as_deref())?;
    let enc = corpus::encode_file(&args.corpus, &vocab)?;
    let unit = vocab.kind().unit();
    if enc.ids.len() < 2 {
        return Err(Error::Data(format!(
            "{}: {} {unit} token(s) are too few to evaluate on: need at least 2",
            args.corpus.display(),
            enc.ids.len()
        )));
    }
    if enc.unknown > 0 {
        eprintln!(
            "note: {} {unit}{} of {} not in the vocabulary were mapped to <unk>",
            enc.unknown,
            if enc.unknown == 1 { "" } else { "s" },
            args.corpus.display()
        );
    }
    let mut ws = Workspace::default();
    let r = evaluate(&model, &mut ws, &enc.ids, args.batch, args.bptt)?;
    let report = Report {
        loss: r.loss,
        perplexity: r.perplexity(),
        bits_per_token: r.bits_per_token(),
        tokens: r.tokens,
        unknown: enc.unknown,
        tokenizer: vocab.kind(),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("report serialises")
        );
    } else {
        let per = match vocab.kind() {
            TokenizerKind::Char => "bits per character",
            TokenizerKind::Byte => "bits per byte",
            TokenizerKind::Word => "bits per word",
        };
        println!(
            "{}: {} tokens, loss {:.4} nats/token, perplexity {:.3}, {:.4} {per}",
            args.corpus.display(),
            report.tokens,
            report.loss,
            report.perplexity,
            report.bits_per_token
        );
    }
    Ok(())
}

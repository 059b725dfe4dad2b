//! `rnnscope sample`: generate text from a checkpoint, one token at a time.

use super::eval::load_language_model;
use crate::data::{Detokenizer, TokenizerKind};
use crate::error::{Error, Result};
use crate::train::{sample, SampleOptions};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Checkpoint written by `rnnscope train`, or a PyTorch state dict saved as safetensors.
    #[arg(long, value_name = "CKPT")]
    pub checkpoint: PathBuf,
    /// The model's vocabulary, for a checkpoint without one (a PyTorch state dict): one token
    /// per line (line i is token i), or a `.json` list of tokens.
    #[arg(long, value_name = "FILE")]
    pub vocab_file: Option<PathBuf>,
    /// Text to start from (printed first, then continued); default: a line break.
    #[arg(long, value_name = "TEXT")]
    pub prime: Option<String>,
    /// Tokens to generate.
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub length: usize,
    /// Softmax temperature; lower is more conservative, 0 = always the most likely token.
    #[arg(
        long,
        value_name = "T",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    pub temperature: f64,
    /// Sample only among the K most likely tokens; 0 = all.
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub top_k: usize,
    /// Random seed.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Threads; 0 = all cores.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads: usize,
}

pub fn run(args: Args) -> Result<()> {
    if !(args.temperature.is_finite() && args.temperature >= 0.0) {
        return Err(Error::Config(format!(
            "--temperature {} must be a number >= 0",
            args.temperature
        )));
    }
    super::set_threads(args.threads);
    let (model, vocab) = load_language_model::<f32>(&args.checkpoint, args.vocab_file.as_deref())?;
    let kind = vocab.kind();
    let prime_text = args.prime.clone().unwrap_or_default();
    let (prime, unknown) = if prime_text.is_empty() {
        let start = match kind {
            TokenizerKind::Word => vocab.eos(),
            TokenizerKind::Char => vocab.id_of_char('\n'),
            TokenizerKind::Byte => vocab
                .encode(b"\n")
                .ok()
                .map(|e| e.ids[0])
                .filter(|&i| Some(i) != vocab.unk()),
        };
        (
            vec![start.unwrap_or(if vocab.len() > 1 { 1 } else { 0 })],
            0,
        )
    } else {
        let e = vocab.encode_fragment(prime_text.as_bytes())?;
        (e.ids, e.unknown)
    };
    if unknown > 0 {
        eprintln!(
            "note: {unknown} {}{} of --prime not in the vocabulary were mapped to <unk>",
            kind.unit(),
            if unknown == 1 { "" } else { "s" }
        );
    }
    let opts = SampleOptions {
        temperature: args.temperature,
        top_k: args.top_k,
        // Training never shows a char or byte model <unk>: do not emit it.
        banned: match vocab.unk() {
            Some(unk) if kind != TokenizerKind::Word => vec![unk],
            _ => vec![],
        },
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut buf = Vec::new();
    buf.extend_from_slice(prime_text.as_bytes());
    let mut detok = Detokenizer::new(&vocab);
    detok.set_line_start(prime_text.is_empty() || prime_text.ends_with('\n'));
    let mut rng = StdRng::seed_from_u64(args.seed);
    let io = |e: std::io::Error| Error::io("stdout", e);
    let result = sample(&model, &prime, args.length, &opts, &mut rng, |id| {
        detok.push(id, &mut buf);
        if buf.len() >= 256 {
            out.write_all(&buf).map_err(io)?;
            buf.clear();
        }
        Ok(())
    });
    let flushed = result.and_then(|_| {
        out.write_all(&buf).map_err(io)?;
        if !buf.ends_with(b"\n") {
            out.write_all(b"\n").map_err(io)?;
        }
        out.flush().map_err(io)
    });
    match flushed {
        // A closed pipe (`| head`) is not an error.
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

//! Corpora: one file split into train/valid/test by fraction, or separate files.
//!
//! The vocabulary is built from the training text only; the validation and test texts are
//! encoded with it, and whatever they contain that the training text lacks becomes `<unk>`
//! (counted, so the caller can say how much).
//!
//! A fraction split cuts the text, not the token stream: by characters (char), bytes (byte) or
//! lines (word), the first part for training, then validation, then test. With
//! `valid_fraction = 0.1, test_fraction = 0` the last 10% of the characters are the validation set.

use super::tokenizer::{as_text, Encoded, TokenizerKind, Vocab};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Where the text comes from and how to tokenize it.
#[derive(Clone, Debug, PartialEq)]
pub struct CorpusSpec {
    pub tokenizer: TokenizerKind,
    /// Word vocabulary cap including `<unk>` and `<eos>` (0 = no cap).
    pub vocab_size: usize,
    /// The training text, or the whole corpus when `valid` is `None`.
    pub train: PathBuf,
    /// A separate validation file (then `train` is used whole).
    pub valid: Option<PathBuf>,
    /// A separate test file (only with `valid`).
    pub test: Option<PathBuf>,
    /// Fraction of `train` held out for validation when there is no `valid` file.
    pub valid_fraction: f64,
    /// Fraction of `train` held out for testing when there is no `valid` file.
    pub test_fraction: f64,
}

/// One part of a corpus, encoded.
#[derive(Clone, Debug, Default)]
pub struct Split {
    /// Where it came from, for messages (`corpus.txt (last 10%)`).
    pub source: String,
    pub ids: Vec<u32>,
    /// Units mapped to `<unk>` because the training text lacks them.
    pub unknown: usize,
}

/// A tokenized corpus with its vocabulary.
#[derive(Clone, Debug)]
pub struct Corpus {
    pub vocab: Vocab,
    pub train: Split,
    pub valid: Split,
    pub test: Split,
    /// FNV-1a hash of every input file's bytes (a resumed run checks it is unchanged).
    pub fingerprint: u64,
}

/// Reads a whole file; a missing or empty file is an error naming it.
pub fn read_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    let data = std::fs::read(path).map_err(|e| Error::Read {
        path: path.to_path_buf(),
        what: what.to_string(),
        source: e,
    })?;
    if data.is_empty() {
        return Err(Error::Data(format!(
            "{}: the {what} is empty: give a text file with some content",
            path.display()
        )));
    }
    Ok(data)
}

/// Reads and encodes a file with an existing vocabulary (evaluation).
pub fn encode_file(path: &Path, vocab: &Vocab) -> Result<Encoded> {
    let data = read_file(path, "corpus")?;
    vocab.encode(&data).map_err(|e| prefix(path, e))
}

fn prefix(path: &Path, e: Error) -> Error {
    match e {
        Error::Data(m) => Error::Data(format!("{}: {m}", path.display())),
        other => other,
    }
}

/// FNV-1a, 64 bit: a stable fingerprint (the std hasher may change between Rust versions).
pub fn fnv1a(hash: u64, data: &[u8]) -> u64 {
    data.iter().fold(hash, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Byte offsets cutting `data` into `[train | valid | test]` by the fractions, counted in the
/// tokenizer's units (characters, bytes or lines).
fn split_offsets(
    kind: TokenizerKind,
    data: &[u8],
    valid_fraction: f64,
    test_fraction: f64,
) -> Result<(usize, usize)> {
    // Byte offset where each unit starts, plus the end.
    let starts: Vec<usize> = match kind {
        TokenizerKind::Byte => (0..=data.len()).collect(),
        TokenizerKind::Char => {
            let text = as_text(kind, data)?;
            text.char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(data.len()))
                .collect()
        }
        TokenizerKind::Word => {
            let text = as_text(kind, data)?;
            std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .filter(|&i| i < data.len())
                .chain(std::iter::once(data.len()))
                .collect()
        }
    };
    let n = starts.len() - 1;
    let n_test = (n as f64 * test_fraction).round() as usize;
    let n_valid = (n as f64 * valid_fraction).round() as usize;
    let n_train = n.saturating_sub(n_test + n_valid);
    Ok((starts[n_train], starts[n - n_test]))
}

/// Loads, splits and encodes a corpus; validates everything before returning.
pub fn load(spec: &CorpusSpec) -> Result<Corpus> {
    let vf = spec.valid_fraction;
    let tf = spec.test_fraction;
    let unit = spec.tokenizer.unit();
    let data = read_file(&spec.train, "corpus")?;
    let mut fingerprint = fnv1a(FNV_OFFSET, &data);
    let name = spec.train.display().to_string();
    let (train_bytes, valid_bytes, test_bytes, sources): (Vec<u8>, Vec<u8>, Vec<u8>, [String; 3]) =
        match &spec.valid {
            None => {
                if spec.test.is_some() {
                    return Err(Error::Config(
                        "a test file needs a validation file too: give --valid-file".into(),
                    ));
                }
                if !(vf > 0.0 && vf < 1.0 && (0.0..1.0).contains(&tf) && vf + tf < 1.0) {
                    return Err(Error::Config(format!(
                        "`valid_fraction` = {vf} and `test_fraction` = {tf}: need 0 < valid_fraction, 0 <= test_fraction and valid_fraction + test_fraction < 1 (or give --valid-file)"
                    )));
                }
                if spec.tokenizer != TokenizerKind::Byte {
                    as_text(spec.tokenizer, &data).map_err(|e| prefix(&spec.train, e))?;
                }
                let (a, b) = split_offsets(spec.tokenizer, &data, vf, tf)?;
                let pct = |f: f64| format!("{}%", (f * 1000.0).round() / 10.0);
                (
                    data[..a].to_vec(),
                    data[a..b].to_vec(),
                    data[b..].to_vec(),
                    [
                        format!("{name} (first {})", pct(1.0 - vf - tf)),
                        format!("{name} (validation split, {})", pct(vf)),
                        format!("{name} (test split, {})", pct(tf)),
                    ],
                )
            }
            Some(valid) => {
                let v = read_file(valid, "validation file")?;
                fingerprint = fnv1a(fnv1a(fingerprint, &[0xff]), &v);
                let t = match &spec.test {
                    Some(p) => {
                        let t = read_file(p, "test file")?;
                        fingerprint = fnv1a(fnv1a(fingerprint, &[0xfe]), &t);
                        t
                    }
                    None => Vec::new(),
                };
                let test_name = spec
                    .test
                    .as_ref()
                    .map_or(String::new(), |p| p.display().to_string());
                (data, v, t, [name, valid.display().to_string(), test_name])
            }
        };
    let [train_src, valid_src, test_src] = sources;
    let train_path = &spec.train;
    let vocab = Vocab::build(spec.tokenizer, &train_bytes, spec.vocab_size)
        .map_err(|e| prefix(train_path, e))?;
    let encode = |bytes: &[u8], source: String, path: &Path| -> Result<Split> {
        let e = vocab.encode(bytes).map_err(|e| prefix(path, e))?;
        Ok(Split {
            source,
            ids: e.ids,
            unknown: e.unknown,
        })
    };
    let train = encode(&train_bytes, train_src, train_path)?;
    let valid = encode(
        &valid_bytes,
        valid_src,
        spec.valid.as_deref().unwrap_or(train_path),
    )?;
    let test = encode(
        &test_bytes,
        test_src,
        spec.test.as_deref().unwrap_or(train_path),
    )?;
    if valid.ids.len() < 2 {
        // Word splits fall between lines: with few lines no fraction can help.
        let fix = if spec.tokenizer == TokenizerKind::Word && spec.valid.is_none() {
            "word splits fall between lines: use a corpus of more lines or a separate --valid-file"
        } else {
            "use a longer corpus or a larger --valid-fraction"
        };
        return Err(Error::Data(format!(
            "{}: {} {unit} tokens are too few to validate on (need at least 2): {fix}",
            valid.source,
            valid.ids.len()
        )));
    }
    let has_test = (spec.valid.is_none() && tf > 0.0) || spec.test.is_some();
    if has_test && test.ids.len() < 2 {
        return Err(Error::Data(format!(
            "{}: {} {unit} tokens are too few to test on (need at least 2): use a longer corpus or a larger --test-fraction",
            test.source,
            test.ids.len()
        )));
    }
    Ok(Corpus {
        vocab,
        train,
        valid,
        test,
        fingerprint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str, data: &[u8]) -> PathBuf {
        let p = std::env::temp_dir().join(format!("rnnscope-corpus-{}-{name}", std::process::id()));
        std::fs::write(&p, data).unwrap();
        p
    }

    fn spec(path: PathBuf, kind: TokenizerKind) -> CorpusSpec {
        CorpusSpec {
            tokenizer: kind,
            vocab_size: 0,
            train: path,
            valid: None,
            test: None,
            valid_fraction: 0.1,
            test_fraction: 0.1,
        }
    }

    #[test]
    fn fraction_split_is_by_characters_and_in_order() {
        let text: String = "é".repeat(10) + &"ab".repeat(40);
        let p = tmp("split.txt", text.as_bytes());
        let c = load(&spec(p.clone(), TokenizerKind::Char)).unwrap();
        // 90 characters: 72 train, 9 valid, 9 test.
        assert_eq!(
            (c.train.ids.len(), c.valid.ids.len(), c.test.ids.len()),
            (72, 9, 9)
        );
        assert_eq!(c.vocab.decode(&c.train.ids[..10]), "é".repeat(10));
        assert_eq!(c.vocab.decode(&c.test.ids), "babababab");
        assert_eq!(c.valid.unknown + c.test.unknown, 0);
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn word_split_is_by_lines() {
        let text: String = (0..10).map(|i| format!("w{i} x\n")).collect();
        let p = tmp("words.txt", text.as_bytes());
        let c = load(&spec(p.clone(), TokenizerKind::Word)).unwrap();
        assert_eq!(c.train.ids.len(), 8 * 3);
        assert_eq!(c.vocab.decode(&c.valid.ids), "<unk> x\n");
        assert_eq!(c.valid.unknown, 1);
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn bad_files_are_named() {
        let missing = std::env::temp_dir().join("rnnscope-no-such-file.txt");
        let e = load(&spec(missing, TokenizerKind::Char))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rnnscope-no-such-file.txt: cannot read the corpus"),
            "{e}"
        );
        let empty = tmp("empty.txt", b"");
        let e = load(&spec(empty.clone(), TokenizerKind::Char))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is empty"), "{e}");
        let bin = tmp(
            "bin.txt",
            &[b'a'; 100]
                .iter()
                .copied()
                .chain([0xc3, 0x28])
                .collect::<Vec<_>>(),
        );
        let e = load(&spec(bin.clone(), TokenizerKind::Char))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bin.txt: not valid UTF-8 (first bad byte at offset 100)"),
            "{e}"
        );
        assert!(load(&spec(bin.clone(), TokenizerKind::Byte)).is_ok());
        for p in [empty, bin] {
            std::fs::remove_file(p).unwrap();
        }
    }
}

//! Tokenizers and vocabularies: character level (Unicode scalar values, or bytes) and word level.
//!
//! ```text
//! char   one token per Unicode scalar value; the text must be UTF-8
//! byte   one token per byte; any file
//! word   whitespace-separated words, `<eos>` after every line (Mikolov's PTB convention);
//!        the `cap` most frequent words are kept, the rest become `<unk>`
//! ```
//! `<unk>` is the stand-in for anything the vocabulary has not seen (a character that occurs only
//! in the evaluation text, a rare word): token 0 of every vocabulary rnnscope builds, and word
//! vocabularies put `<eos>` at 1. The vocabulary travels with every checkpoint (JSON under
//! [`VOCAB_KEY`]), so `eval` and `sample` need nothing but the checkpoint.
//!
//! A vocabulary of a model trained elsewhere comes from a file ([`Vocab::from_file`]): token text
//! by id, with `<unk>` and `<eos>` wherever that model put them (or absent: then a unit the
//! vocabulary lacks is an error, and lines end without a token).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Checkpoint metadata key holding the vocabulary as JSON.
pub const VOCAB_KEY: &str = "rnnscope.vocab";
/// The unknown token.
pub const UNK: &str = "<unk>";
/// The end-of-line token of word vocabularies.
pub const EOS: &str = "<eos>";

/// How text is cut into tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenizerKind {
    Char,
    Byte,
    Word,
}

impl TokenizerKind {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "char" => Ok(TokenizerKind::Char),
            "byte" => Ok(TokenizerKind::Byte),
            "word" => Ok(TokenizerKind::Word),
            _ => Err(Error::Config(format!(
                "unknown tokenizer `{s}`: use char, byte or word"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TokenizerKind::Char => "char",
            TokenizerKind::Byte => "byte",
            TokenizerKind::Word => "word",
        }
    }

    /// What one token is called in messages ("character", "byte", "word").
    pub fn unit(self) -> &'static str {
        match self {
            TokenizerKind::Char => "character",
            TokenizerKind::Byte => "byte",
            TokenizerKind::Word => "word",
        }
    }
}

/// Checks that `bytes` is UTF-8 when the tokenizer needs text; the error says where it is not.
pub fn as_text(kind: TokenizerKind, bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes).map_err(|e| utf8_error(kind, &e))
}

fn utf8_error(kind: TokenizerKind, e: &std::str::Utf8Error) -> Error {
    Error::Data(format!(
        "not valid UTF-8 (first bad byte at offset {}); the {} tokenizer needs UTF-8 text: convert the file or use --tokenizer byte",
        e.valid_up_to(),
        kind.name()
    ))
}

/// The result of encoding a text: token ids and how many units were mapped to `<unk>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    /// Characters, bytes or words not in the vocabulary (now `<unk>`).
    pub unknown: usize,
}

/// The serialised form of a vocabulary.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VocabFile {
    kind: TokenizerKind,
    /// Token text by id. Bytes are written as their decimal value (`"65"`).
    tokens: Vec<String>,
}

/// A vocabulary: token text by id plus the reverse lookup for its tokenizer.
#[derive(Clone, Debug)]
pub struct Vocab {
    kind: TokenizerKind,
    tokens: Vec<String>,
    chars: HashMap<char, u32>,
    bytes: Vec<Option<u32>>,
    words: HashMap<String, u32>,
    unk: Option<u32>,
    eos: Option<u32>,
}

impl PartialEq for Vocab {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.tokens == other.tokens
    }
}

impl Vocab {
    /// Builds a vocabulary from training text. `cap` limits a word vocabulary to that many
    /// tokens including `<unk>` and `<eos>` (0 = no limit); it is ignored by char and byte.
    pub fn build(kind: TokenizerKind, data: &[u8], cap: usize) -> Result<Vocab> {
        let mut tokens = vec![UNK.to_string()];
        match kind {
            TokenizerKind::Char => {
                let text = as_text(kind, data)?;
                let seen: std::collections::BTreeSet<char> = text.chars().collect();
                tokens.extend(seen.into_iter().map(String::from));
            }
            TokenizerKind::Byte => {
                let mut seen = [false; 256];
                for &b in data {
                    seen[b as usize] = true;
                }
                tokens.extend((0..256).filter(|&b| seen[b]).map(|b| b.to_string()));
            }
            TokenizerKind::Word => {
                if cap != 0 && cap < 3 {
                    return Err(Error::Config(format!(
                        "`vocab_size` = {cap} is too small: a word vocabulary needs <unk>, <eos> and at least one word (use 0 for no limit)"
                    )));
                }
                let text = as_text(kind, data)?;
                let mut counts: HashMap<&str, u64> = HashMap::new();
                for w in text.split_whitespace() {
                    *counts.entry(w).or_default() += 1;
                }
                counts.remove(UNK);
                counts.remove(EOS);
                let mut words: Vec<(&str, u64)> = counts.into_iter().collect();
                // Most frequent first; ties in byte order, so the vocabulary is deterministic.
                words.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                if cap != 0 {
                    words.truncate(cap - 2);
                }
                tokens.push(EOS.to_string());
                tokens.extend(words.into_iter().map(|(w, _)| w.to_string()));
            }
        }
        Vocab::from_tokens(kind, tokens)
    }

    /// A vocabulary from token text by id. `<unk>` (and, for words, `<eos>`) may sit at any id
    /// or be absent; every other token must be one character (char), a byte's decimal value
    /// (byte) or a word without whitespace (word), and appear once.
    fn from_tokens(kind: TokenizerKind, tokens: Vec<String>) -> Result<Vocab> {
        let bad = |msg: String| Error::Data(format!("vocabulary: {msg}"));
        if tokens.len() > u32::MAX as usize {
            return Err(bad("too many tokens".into()));
        }
        if tokens.is_empty() {
            return Err(bad("no tokens".into()));
        }
        let mut v = Vocab {
            kind,
            tokens,
            chars: HashMap::new(),
            bytes: vec![None; 256],
            words: HashMap::new(),
            unk: None,
            eos: None,
        };
        for (id, t) in v.tokens.iter().enumerate() {
            let id = id as u32;
            let special = |slot: &mut Option<u32>| slot.replace(id).is_some();
            let dup = match (kind, t.as_str()) {
                (_, UNK) => special(&mut v.unk),
                (TokenizerKind::Word, EOS) => special(&mut v.eos),
                (TokenizerKind::Char, _) => {
                    let mut it = t.chars();
                    let (Some(c), None) = (it.next(), it.next()) else {
                        return Err(bad(format!("char token {id} is {t:?}, not one character")));
                    };
                    v.chars.insert(c, id).is_some()
                }
                (TokenizerKind::Byte, _) => {
                    let b: u8 = t
                        .parse()
                        .map_err(|_| bad(format!("byte token {id} is {t:?}, not 0..=255")))?;
                    v.bytes[b as usize].replace(id).is_some()
                }
                (TokenizerKind::Word, _) => {
                    if t.is_empty() || t.contains(char::is_whitespace) {
                        return Err(bad(format!(
                            "word token {id} is {t:?}: words are non-empty and hold no whitespace"
                        )));
                    }
                    v.words.insert(t.clone(), id).is_some()
                }
            };
            if dup {
                return Err(bad(format!("token {t:?} appears twice")));
            }
        }
        Ok(v)
    }

    /// Reads a vocabulary file of a model trained elsewhere. Three forms, token text by id:
    ///
    /// ```text
    /// ["<unk>", "a", "b", "\n"]                a JSON list (`.json`): word tokens, or char
    ///                                          tokens when every token but <unk>/<eos> is one
    ///                                          character
    /// {"kind": "word", "tokens": [...]}        rnnscope's own form (`.json`), kind explicit
    /// the                                      any other file: one word per line
    /// <eos>                                    (line i is token i; `<unk>`, `<eos>` anywhere)
    /// ```
    pub fn from_file(path: &std::path::Path) -> Result<Vocab> {
        let at = |e: Error| match e {
            Error::Data(m) => Error::Data(format!("{}: {m}", path.display())),
            other => other,
        };
        let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let text = std::str::from_utf8(&data).map_err(|e| {
            at(Error::Data(format!(
                "vocabulary: not valid UTF-8 (first bad byte at offset {})",
                e.valid_up_to()
            )))
        })?;
        let json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        if !json {
            let tokens = text.lines().map(|l| l.trim().to_string()).collect();
            return Vocab::from_tokens(TokenizerKind::Word, tokens).map_err(at);
        }
        if let Ok(tokens) = serde_json::from_str::<Vec<String>>(text) {
            let one_char = |t: &String| t == UNK || t == EOS || t.chars().count() == 1;
            let kind = if tokens.iter().all(one_char) {
                TokenizerKind::Char
            } else {
                TokenizerKind::Word
            };
            return Vocab::from_tokens(kind, tokens).map_err(at);
        }
        Vocab::from_json(text).map_err(|e| {
            at(Error::Data(format!(
                "{e}; expected a JSON list of token strings or {{\"kind\": \"char|byte|word\", \"tokens\": [...]}}"
            )))
        })
    }

    /// The vocabulary as JSON (for checkpoint metadata).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&VocabFile {
            kind: self.kind,
            tokens: self.tokens.clone(),
        })
        .expect("vocabulary serialises")
    }

    /// Reads a vocabulary written by [`Self::to_json`].
    pub fn from_json(json: &str) -> Result<Vocab> {
        let f: VocabFile = serde_json::from_str(json)
            .map_err(|e| Error::Data(format!("vocabulary is not valid JSON: {e}")))?;
        Vocab::from_tokens(f.kind, f.tokens)
    }

    pub fn kind(&self) -> TokenizerKind {
        self.kind
    }

    /// Number of tokens `V`, specials included.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Id of `<unk>` (0 in every vocabulary rnnscope builds; a vocabulary file may lack it).
    pub fn unk(&self) -> Option<u32> {
        self.unk
    }

    /// Id of `<eos>` (word vocabularies only; 1 in those rnnscope builds).
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Token text by id (`<unk>`, a character, a byte's decimal value, a word).
    pub fn token(&self, id: u32) -> &str {
        &self.tokens[id as usize]
    }

    /// Id of one character, byte or word, if it is in the vocabulary.
    pub fn id_of_char(&self, c: char) -> Option<u32> {
        self.chars.get(&c).copied()
    }

    /// Encodes `data`; units the vocabulary lacks become `<unk>` and are counted (an error when
    /// the vocabulary has no `<unk>`).
    pub fn encode(&self, data: &[u8]) -> Result<Encoded> {
        self.encode_with(data, true)
    }

    /// Encodes a fragment of text such as a prime: like [`Self::encode`], except that a word
    /// fragment gets `<eos>` only for the line breaks it contains (not after its last line).
    pub fn encode_fragment(&self, data: &[u8]) -> Result<Encoded> {
        self.encode_with(data, false)
    }

    fn encode_with(&self, data: &[u8], eos_after_last_line: bool) -> Result<Encoded> {
        let mut out = Encoded::default();
        let mut push = |id: Option<u32>, unit: &dyn std::fmt::Display| -> Result<()> {
            let id = match (id, self.unk) {
                (Some(id), _) => id,
                (None, Some(unk)) => {
                    out.unknown += 1;
                    unk
                }
                (None, None) => {
                    return Err(Error::Data(format!(
                        "{} {unit} is not in the vocabulary, which has no <unk> to stand for it: add <unk> to the vocabulary or remove it from the text",
                        self.kind.unit()
                    )))
                }
            };
            out.ids.push(id);
            Ok(())
        };
        match self.kind {
            TokenizerKind::Char => {
                for c in as_text(self.kind, data)?.chars() {
                    push(self.chars.get(&c).copied(), &format_args!("{c:?}"))?;
                }
            }
            TokenizerKind::Byte => {
                for &b in data {
                    push(self.bytes[b as usize], &b)?;
                }
            }
            TokenizerKind::Word => {
                let text = as_text(self.kind, data)?;
                let lines: Vec<&str> = if eos_after_last_line {
                    text.lines().collect()
                } else {
                    text.split('\n').collect()
                };
                for (i, line) in lines.iter().enumerate() {
                    for w in line.split_whitespace() {
                        push(self.words.get(w).copied(), &format_args!("`{w}`"))?;
                    }
                    if eos_after_last_line || i + 1 < lines.len() {
                        if let Some(eos) = self.eos {
                            push(Some(eos), &EOS)?;
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Turns ids back into text (see [`Detokenizer`]); bytes that are not UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut d = Detokenizer::new(self);
        let mut out = Vec::new();
        for &id in ids {
            d.push(id, &mut out);
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Streams tokens back to bytes: characters and bytes as they are, words separated by spaces,
/// `<eos>` as a line break, `<unk>` as the text `<unk>`.
pub struct Detokenizer<'a> {
    vocab: &'a Vocab,
    line_start: bool,
}

impl<'a> Detokenizer<'a> {
    pub fn new(vocab: &'a Vocab) -> Self {
        Detokenizer {
            vocab,
            line_start: true,
        }
    }

    /// Tells the detokenizer what the text so far ended with (for words: was it a line break).
    pub fn set_line_start(&mut self, line_start: bool) {
        self.line_start = line_start;
    }

    /// Appends the bytes of token `id` to `out`.
    pub fn push(&mut self, id: u32, out: &mut Vec<u8>) {
        let v = self.vocab;
        let t = v.token(id);
        match v.kind {
            TokenizerKind::Char => out.extend_from_slice(t.as_bytes()),
            TokenizerKind::Byte => match t.parse::<u8>() {
                Ok(b) if Some(id) != v.unk => out.push(b),
                _ => out.extend_from_slice(t.as_bytes()),
            },
            TokenizerKind::Word => {
                if Some(id) == v.eos() {
                    out.push(b'\n');
                    self.line_start = true;
                } else {
                    if !self.line_start {
                        out.push(b' ');
                    }
                    out.extend_from_slice(t.as_bytes());
                    self.line_start = false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_vocab_round_trips_and_counts_unknowns() {
        let v = Vocab::build(TokenizerKind::Char, "hello wörld".as_bytes(), 0).unwrap();
        assert_eq!(v.token(0), UNK);
        assert_eq!(v.len(), 1 + 9); // <unk> + " dehlorw" + "ö"
        let e = v.encode("hello world!".as_bytes()).unwrap();
        assert_eq!(e.unknown, 1); // '!'
        assert_eq!(e.ids.len(), 12);
        assert_eq!(v.decode(&e.ids[..11]), "hello world");
        let back = Vocab::from_json(&v.to_json()).unwrap();
        assert_eq!(back, v);
        assert_eq!(
            back.encode("wörld".as_bytes()).unwrap(),
            v.encode("wörld".as_bytes()).unwrap()
        );
    }

    #[test]
    fn char_mode_rejects_non_utf8_but_byte_mode_accepts_it() {
        let data = [b'a', 0xff, b'b'];
        let e = Vocab::build(TokenizerKind::Char, &data, 0)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not valid UTF-8") && e.contains("offset 1"),
            "{e}"
        );
        let v = Vocab::build(TokenizerKind::Byte, &data, 0).unwrap();
        assert_eq!(v.len(), 4);
        let enc = v.encode(&[0xff, b'a', b'z']).unwrap();
        assert_eq!(enc.unknown, 1);
        let mut out = Vec::new();
        let mut d = Detokenizer::new(&v);
        for &id in &enc.ids[..2] {
            d.push(id, &mut out);
        }
        assert_eq!(out, vec![0xff, b'a']);
        assert_eq!(Vocab::from_json(&v.to_json()).unwrap(), v);
    }

    #[test]
    fn word_vocab_caps_by_frequency_and_adds_eos_per_line() {
        let text = "a b a c\na a b\n\nd";
        let v = Vocab::build(TokenizerKind::Word, text.as_bytes(), 4).unwrap();
        // <unk>, <eos>, then the two most frequent words: a (4), b (2).
        assert_eq!(v.len(), 4);
        assert_eq!((v.token(2), v.token(3)), ("a", "b"));
        let e = v.encode(text.as_bytes()).unwrap();
        // a b a <unk> <eos> a a b <eos> <eos> <unk> <eos>
        assert_eq!(e.ids, vec![2, 3, 2, 0, 1, 2, 2, 3, 1, 1, 0, 1]);
        assert_eq!(e.unknown, 2);
        assert_eq!(v.decode(&e.ids[..9]), "a b a <unk>\na a b\n");
        assert!(Vocab::build(TokenizerKind::Word, b"x", 2)
            .unwrap_err()
            .to_string()
            .contains("`vocab_size` = 2 is too small: a word vocabulary needs <unk>, <eos> and at least one word (use 0 for no limit)"));
        assert_eq!(v.encode_fragment(b"a b").unwrap().ids, vec![2, 3]);
        assert_eq!(v.encode_fragment(b"a\nz ").unwrap().ids, vec![2, 1, 0]);
    }

    #[test]
    fn vocabulary_files_in_each_form_put_specials_where_they_are() {
        let dir = std::env::temp_dir().join(format!("rnnscope-vocab-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // word_language_model's idx2word: <unk> and <eos> wherever they first appeared.
        let lines = dir.join("vocab.txt");
        std::fs::write(&lines, "the\ncat\n<eos>\n<unk>\n").unwrap();
        let v = Vocab::from_file(&lines).unwrap();
        assert_eq!(
            (v.kind(), v.unk(), v.eos()),
            (TokenizerKind::Word, Some(3), Some(2))
        );
        let e = v.encode(b"the dog\ncat").unwrap();
        assert_eq!((e.ids, e.unknown), (vec![0, 3, 2, 1, 2], 1));
        assert_eq!(v.decode(&[0, 3, 2, 1]), "the <unk>\ncat");
        // A JSON list of characters without <unk>: a missing character is an error naming it.
        let chars = dir.join("vocab.json");
        std::fs::write(&chars, r#"["\n", "a", "b"]"#).unwrap();
        let v = Vocab::from_file(&chars).unwrap();
        assert_eq!((v.kind(), v.unk(), v.len()), (TokenizerKind::Char, None, 3));
        assert_eq!(v.encode(b"ab\n").unwrap().ids, vec![1, 2, 0]);
        let err = v.encode(b"abc").unwrap_err().to_string();
        assert!(
            err.contains("character 'c' is not in the vocabulary, which has no <unk>"),
            "{err}"
        );
        // rnnscope's own form names its kind; a broken file is one line naming it.
        let own = dir.join("own.json");
        std::fs::write(&own, r#"{"kind": "byte", "tokens": ["<unk>", "65"]}"#).unwrap();
        assert_eq!(
            Vocab::from_file(&own).unwrap().encode(b"AB").unwrap().ids,
            vec![1, 0]
        );
        std::fs::write(&own, r#"{"tokens": 3}"#).unwrap();
        let err = Vocab::from_file(&own).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}: vocabulary is not valid JSON", own.display())),
            "{err}"
        );
        std::fs::write(&lines, "a\nb\na\n").unwrap();
        let err = Vocab::from_file(&lines).unwrap_err().to_string();
        assert!(err.contains("token \"a\" appears twice"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Data: tokenizers, corpora, truncated-BPTT batching and synthetic tasks.

pub mod batch;
pub mod corpus;
pub mod tasks;
pub mod tokenizer;

pub use batch::Batches;
pub use corpus::{Corpus, CorpusSpec, Split};
pub use tokenizer::{Detokenizer, Encoded, TokenizerKind, Vocab, VOCAB_KEY};

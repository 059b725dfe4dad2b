//! Data: tokenizers, corpora and truncated-BPTT batching.

pub mod batch;
pub mod corpus;
pub mod tokenizer;

pub use batch::Batches;
pub use corpus::{Corpus, CorpusSpec, Split};
pub use tokenizer::{Detokenizer, Encoded, TokenizerKind, Vocab, VOCAB_KEY};

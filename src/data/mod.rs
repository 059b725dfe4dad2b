//! Data: tokenizers, corpora, truncated-BPTT batching and synthetic tasks.
pub mod tasks;

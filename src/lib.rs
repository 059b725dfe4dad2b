//! rnnscope: recurrent language models (vanilla RNN, LSTM, GRU) trained with exact,
//! hand-written backpropagation through time, and the tools to see how gradients flow
//! through time: per-distance profiles of `dJ^(i)/dh^(j)`, Jacobian products and the
//! spectrum of `W_hh`.
//!
//! The pieces, bottom up: [`tensor`] (scalars, GEMM), [`cell`] (forward/backward of one layer
//! over a sequence), [`layers`] (embedding, dropout, softmax cross-entropy), [`model`]
//! (`LanguageModel`), [`init`], [`checkpoint`] (safetensors with PyTorch names),
//! [`analysis`] (gradient flow), [`report`] (plots and the HTML report).

pub mod analysis;
pub mod cell;
pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod error;
pub mod init;
pub mod layers;
pub mod memory;
pub mod model;
pub mod params;
pub mod report;
pub mod tensor;
pub mod train;

pub use cell::{Activation, CellKind};
pub use error::{Error, Result};
pub use init::{InitConfig, InitScheme};
pub use model::{LanguageModel, LossWeights, ModelConfig, State, StepRecord, Workspace};

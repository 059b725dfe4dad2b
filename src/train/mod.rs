//! Training: optimizers, gradient clipping, learning-rate schedules and the trainer loop.

pub mod optim;
pub mod step;

pub use optim::{Optimizer, OptimizerConfig, OptimizerKind};
pub use step::{Batch, Clip, StepStats, Trainer};
pub mod experiment;
pub mod task;

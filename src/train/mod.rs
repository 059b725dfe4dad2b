//! Training: optimizers, gradient clipping, learning-rate schedules, the training loop with its
//! run directory, evaluation and sampling.

pub mod config;
pub mod eval;
pub mod optim;
pub mod run;
pub mod schedule;
pub mod step;

pub use config::TrainConfig;
pub use eval::{evaluate, sample, EvalResult, SampleOptions};
pub use optim::{Optimizer, OptimizerConfig, OptimizerKind};
pub use run::{
    train, Monitor, Progress, RunDir, SavedState, Session, StopReason, Summary, TrainData,
    TrainSettings,
};
pub use schedule::{Schedule, ScheduleState};
pub use step::{Batch, Clip, StepStats, Trainer};
pub mod experiment;
pub mod task;

//! Training: optimizers, gradient clipping, learning-rate schedules, the one training loop
//! ([`run`]) with its two kinds of data ([`stream`]: a language model on a token stream,
//! [`task`]: synthetic tasks), the run directory ([`rundir`]) and the typed records of its
//! files ([`records`]), evaluation, sampling, and experiment grids ([`experiment`]) with their
//! plans of indexed points ([`plan`]).

pub mod config;
pub mod eval;
pub mod experiment;
pub mod optim;
pub mod plan;
pub mod records;
pub mod run;
pub mod rundir;
pub mod schedule;
pub mod step;
pub mod stream;
pub mod task;

pub use config::TrainConfig;
pub use eval::{evaluate, sample, EvalResult, SampleOptions};
pub use optim::{Optimizer, OptimizerConfig, OptimizerKind};
pub use records::{MetricsRow, TaskSummary, TrainSummary};
pub use run::{train, Evaluation, Monitor, Progress, RunData, Session, StopReason, TrainSettings};
pub use rundir::{RunDir, RunKind, SavedState};
pub use schedule::{Schedule, ScheduleState};
pub use step::{Batch, Clip, StepStats, Trainer};
pub use stream::StreamData;

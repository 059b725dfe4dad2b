//! One error type for the whole crate.

use std::path::PathBuf;

/// Everything that can go wrong in rnnscope, each with enough context to act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An input file (a corpus, a vocabulary, a config, ...) could not be read; `what` names it.
    #[error("{}: cannot read the {what}: {source}{}", path.display(), if source.kind() == std::io::ErrorKind::NotFound { " (check the path)" } else { "" })]
    Read {
        path: PathBuf,
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint is missing a tensor, has a wrong shape or is not a valid file.
    #[error("{path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Input data (a corpus, a prime text, a token) is unusable.
    #[error("{0}")]
    Data(String),
    /// The library was called out of order (e.g. backward without a forward pass first).
    #[error("{0}")]
    Usage(String),
    /// A numerical failure: non-finite loss or gradient, a decomposition that did not converge.
    #[error("numerical error: {0}")]
    Numeric(String),
    /// A training step met a non-finite loss or gradient norm and was skipped (parameters,
    /// optimizer and state untouched).
    #[error("non-finite loss ({loss}) or gradient norm ({grad_norm}); the step was skipped")]
    NonFiniteStep { loss: f64, grad_norm: f64 },
    /// Training stopped after `bad_steps` non-finite steps in a row, the last at update `step`;
    /// `checkpoint` is the run directory holding the last good checkpoint, if any.
    #[error(
        "numerical error: {bad_steps} non-finite steps in a row (last at update {step}): training stopped{}: lower the learning rate `lr`, set `clip` or change `init`",
        checkpoint.as_ref().map_or(String::new(), |d| format!("; the last good checkpoint is in {}", d.display()))
    )]
    Diverged {
        bad_steps: u32,
        step: u64,
        checkpoint: Option<PathBuf>,
    },
    /// A run directory cannot be used as asked.
    #[error("{}: {problem}", path.display())]
    RunDir {
        path: PathBuf,
        problem: RunDirProblem,
    },
}

/// Why a run directory cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunDirProblem {
    /// The path exists and is a file.
    #[error("exists and is not a directory")]
    NotADirectory,
    /// A new run was asked for, but the directory already holds one (`file` exists).
    #[error("already holds a run ({file} exists)")]
    HoldsRun { file: String },
    /// Continuing was asked for, but there is no such directory.
    #[error("no such run directory")]
    NotFound,
    /// Continuing was asked for, but the directory holds no training state yet.
    #[error("nothing to resume (no train_state.safetensors and config.toml; a run writes them at its first evaluation)")]
    NothingToResume,
    /// The directory holds a run of another configuration (`detail` says what differs).
    #[error("holds a run of another configuration ({detail})")]
    OtherConfig { detail: String },
}

/// Crate-wide result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A run-directory error.
    pub fn run_dir(path: impl Into<PathBuf>, problem: RunDirProblem) -> Self {
        Error::RunDir {
            path: path.into(),
            problem,
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A checkpoint error naming the file.
    pub fn checkpoint(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.into(),
            msg: msg.into(),
        }
    }
}

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
}

/// Crate-wide result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
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

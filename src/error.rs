//! The top-level error: one variant per failing layer, each mapped to a documented exit code
//! (docs/design.md, "Exit codes"). Modules keep their own typed errors; this only groups them.

use crate::settings::ConfigError;
use crate::sink::SinkError;
use crate::source::senhasegura::SourceError;
use crate::state::StateError;

/// Any error that ends a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad usage or configuration (exit 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The vault could not be read after retries (exit 3).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A sink did not acknowledge after retries (exit 4).
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The state store failed (exit 5).
    #[error(transparent)]
    State(#[from] StateError),
    /// Anything else that is a usage problem (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A bug in the agent, not a problem of its input or environment (exit 70, EX_SOFTWARE).
    #[error("internal error (a bug in senhasegura-forwarder; please report it): {0}")]
    Internal(String),
}

impl Error {
    /// The process exit code docs/design.md ("Exit codes") documents for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Usage(_) => 2,
            Error::Source(_) => 3,
            Error::Sink(_) => 4,
            Error::State(_) => 5,
            Error::Internal(_) => 70,
        }
    }
}

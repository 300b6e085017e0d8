//! How the CLI fails: [`CliError`] and the process exit code of each failure (documented in
//! docs/cli.md and relied on by scripts), so every verb reports the same way.

use std::path::PathBuf;

use super::client::ClientError;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the command failed (bad input, refused, internal error).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad command-line usage (clap).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the node's admin API could not be reached.
pub const EXIT_UNREACHABLE: u8 = 3;
/// Exit code: the node refused the request (4xx, including a wrong token).
pub const EXIT_REFUSED: u8 = 4;
/// Exit code: `yrd health` reached the node and it reports itself degraded.
pub const EXIT_DEGRADED: u8 = 5;

/// A CLI failure with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A bad argument value.
    #[error("{0}")]
    Usage(String),
    /// Talking to the node failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Creating a node failed.
    #[error(transparent)]
    Setup(#[from] crate::setup::SetupError),
    /// A config is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The node failed.
    #[error(transparent)]
    Node(#[from] crate::node::NodeError),
    /// The daemon could not start or stop.
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
    /// The devnet failed.
    #[error(transparent)]
    Devnet(#[from] crate::devnet::DevnetError),
    /// Output could not be written.
    #[error("cannot write output: {0}")]
    Output(String),
    /// An input file could not be used.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A charter is refused by the rules.
    #[error(transparent)]
    Charter(#[from] crate::model::charter::CharterError),
    /// A signed document does not verify.
    #[error("{0}")]
    Invalid(String),
    /// The node answers but is not healthy.
    #[error("the node is {0}")]
    Degraded(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Degraded(_) => EXIT_DEGRADED,
            CliError::Client(ClientError::Unreachable { .. }) => EXIT_UNREACHABLE,
            CliError::Client(ClientError::Api { status, .. }) if *status < 500 => EXIT_REFUSED,
            _ => EXIT_FAILED,
        }
    }
}

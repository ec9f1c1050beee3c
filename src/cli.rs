//! The command line (docs/design.md, "Command line"): clap definitions only, no logic.

use crate::simulate::SimOptions;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// `--version`: the version, the git commit and the build target.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SENHASEGURA_FORWARDER_COMMIT"),
    ", ",
    env!("SENHASEGURA_FORWARDER_TARGET"),
    ")"
);

/// Forward senhasegura (Segura) PAM remote-session activity to a SIEM.
#[derive(Debug, Parser)]
#[command(name = "senhasegura-forwarder", version = VERSION, about, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
    /// Log filter (tracing env-filter syntax), e.g. `info` or `senhasegura_forwarder=debug`.
    #[arg(long, env = "SENHASEGURA_FORWARDER_LOG", default_value = "info", global = true, value_parser = log_filter)]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The config file argument shared by most commands.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArg {
    /// Config file (else $SENHASEGURA_FORWARDER_CONFIG, else /etc/senhasegura-forwarder/config.toml).
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Poll forever, until SIGTERM/SIGINT (then stop reading, commit what was acknowledged, exit 0).
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Stop after this many polls (for tests and scheduled runs).
        #[arg(long)]
        cycles: Option<u64>,
    },
    /// One poll cycle, then exit.
    Once {
        #[command(flatten)]
        config: ConfigArg,
        /// Print what would be sent, to stdout, and write nothing (no sink, no state).
        #[arg(long)]
        dry_run: bool,
    },
    /// Validate the config, get a token, reach the API and health-check the sinks.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Only what needs no network: config, secret and CA files, state directory, sink
        /// settings (what the systemd unit runs before start).
        #[arg(long)]
        offline: bool,
    },
    /// Inspect or repair the dedup state.
    State {
        #[command(flatten)]
        config: ConfigArg,
        /// State directory (overrides state.path; lets `state` work without a config file).
        #[arg(long, global = true)]
        state_dir: Option<PathBuf>,
        #[command(subcommand)]
        action: StateAction,
    },
    /// Run the loopback senhasegura API simulator.
    Simulate(Box<SimOptions>),
    /// Simulator + agent to stdout with a temporary state and no config.
    Demo {
        /// Stop after this many polls (default: run until Ctrl-C).
        #[arg(long)]
        cycles: Option<u64>,
        /// Seconds between polls.
        #[arg(long, default_value_t = 2)]
        interval: u64,
    },
    /// Write the man page and shell completions into DIR (for packaging/build.sh).
    #[command(hide = true)]
    PackageAssets {
        /// Output directory.
        dir: PathBuf,
    },
}

/// `state` subcommands.
#[derive(Debug, Subcommand)]
pub enum StateAction {
    /// Counts, time range, size and the first-run horizon.
    Stats,
    /// Every remembered key with its event time.
    List {
        /// Show at most this many.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Forget keys (`<session_id>:start|end`) or every key of a session, so they are sent again.
    Forget {
        /// Keys to forget.
        keys: Vec<crate::key::EventKey>,
        /// Forget both phases of this session id.
        #[arg(long)]
        session: Vec<String>,
    },
    /// Remove keys older than state.retention now (with --state-dir, -c or
    /// $SENHASEGURA_FORWARDER_CONFIG is required: the retention is the config's).
    Prune,
    /// Write the state as JSON lines (to stdout, or --output).
    Export {
        /// File to write (created 0600).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Add the keys of an export (JSON lines) to the state.
    Import {
        /// The export file ("-" for stdin).
        file: PathBuf,
    },
}

/// A log filter tracing reads, refused at the command line when it does not (it was replaced by
/// `info` without a word).
fn log_filter(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("not a log filter ({e}); e.g. info, debug or senhasegura_forwarder=debug"))
}

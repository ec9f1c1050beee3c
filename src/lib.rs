//! senhasegura-forwarder: brings privileged remote-session activity from the senhasegura
//! (Segura) PAM vault into a SIEM.
//!
//! Layout (one concept per module):
//!
//! - `settings`: the value types settings are written in (durations, `${VAR}` expansion,
//!   secrets) and the error for a bad setting; a leaf every component may use.
//! - [`config`]: the TOML configuration tree, defaults and validation.
//! - [`source::senhasegura`]: the vault API: HTTP client and auth, the record model (the only
//!   place that knows API field names) and the streaming listing scanner.
//! - [`event`]: the normalised session event, the pipeline's currency, and its time rules.
//! - [`state`]: the dedup store (sled behind a small trait), horizon and pruning.
//! - [`encode`]: ECS JSON and CEF encoders; the only place that knows those formats.
//! - [`sink`]: delivery targets; they see encoded bytes plus a little envelope, never records.
//! - `pipeline`: source → filter → encode → sinks → commit, one poll cycle at a time.
//! - [`simulate`]: the loopback senhasegura API used by tests, benchmarks and `demo`.
//! - [`app`]: the commands (`run`, `once`, `check`, `state`, `demo`) as library calls.
//! - [`shutdown`]: the one shutdown signal every loop listens to, and SIGHUP reload requests.
//! - `service`, `notify`: systemd notifications and reload around the run loop.
//! - `telemetry`: Prometheus metrics, `/health`, outage log lines.
#![forbid(unsafe_code)]

pub mod app;
pub mod assets;
pub mod check;
pub mod cli;
pub mod config;
pub mod encode;
pub mod error;
pub mod event;
pub mod key;
pub mod memory;
pub(crate) mod notify;
pub(crate) mod pipeline;
pub(crate) mod service;
pub(crate) mod settings;
pub mod shutdown;
pub mod simulate;
pub mod sink;
pub mod source;
pub mod state;
pub(crate) mod telemetry;

pub use error::Error;

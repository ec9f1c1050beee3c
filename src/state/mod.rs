//! The dedup store: which event keys were delivered, and since when the agent forwards.
//!
//! The pipeline sees only the [`Dedup`] trait (`contains`, `commit`); the sled-backed
//! [`SledStore`] is one implementation, kept behind it because sled 0.34 has known weak spots
//! (docs/design.md, "State store"). Keys are [`EventKey`]s (session id and phase), stored under a versioned key format that
//! files them under their session's start (see `sled_store.rs`), in chunks of bounded size, so
//! lookups of a listing, which is in start order, read each chunk once whatever the density of
//! sessions in time, and pruning is a range scan.
//!
//! Invariant: `commit` is called only with keys every sink acknowledged, and it returns only
//! once they are durable (`apply_batch` then `flush`).

mod bucket;
mod chunk;
pub mod dir;
mod operator;
mod sled_store;
mod tree;

pub use operator::{ExportLine, Remembered, Stats};
pub use sled_store::{sled_config, store_exists, SledStore, StateMeta};

use crate::key::{EventKey, KeyRef};
use chrono::{DateTime, Utc};
use std::path::PathBuf;

/// The key format this build writes and reads (format 1 is migrated when opened).
pub const KEY_FORMAT: u64 = 2;

/// A state store failure (exit 5).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another process holds the store.
    #[error("state directory {path} is in use by another senhasegura-forwarder process (only one agent may use a state directory; stop the other one or set another state.path)")]
    Locked { path: PathBuf },
    /// A `state` command found no store to read or change (the agent creates it).
    #[error("no state store in {path} yet: the agent creates it at its first poll (`state` commands other than import do not, so that the first poll still keeps to source.backfill)")]
    Missing { path: PathBuf },
    /// The store could not be opened or read.
    #[error("state store {path} cannot be opened: {message}. If it is corrupt, move the directory aside and `state import` the last export (see README, \"Recovering the state\")")]
    Open { path: PathBuf, message: String },
    /// The state directory is not the agent's own (another user's, or a link elsewhere).
    #[error("state directory {path} refused: {message}")]
    NotOwned { path: PathBuf, message: String },
    /// The agent's user may not create or use the state directory.
    #[error("state directory {path} cannot be used by the agent's user (uid {uid}): {message}; create it for that user (the packaged unit's StateDirectory= does), or set state.path to a directory the user owns")]
    Permission { path: PathBuf, message: String, uid: u32 },
    /// sled failed to read or write.
    #[error("state store read or write failed: {0}")]
    Store(#[from] sled::Error),
    /// A stored value does not decode.
    #[error("state store is corrupt: {0}. Move the directory aside and `state import` the last export (see README, \"Recovering the state\")")]
    Corrupt(String),
    /// A file of the state's (backup, export, import) could not be created, written or read;
    /// `what` names the operation.
    #[error("{what} {path}: {source}")]
    File {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The state directory cannot be used (found by `check` before the store is opened).
    #[error("state directory {path}: {message}")]
    Unusable { path: PathBuf, message: String },
    /// Writing an export failed.
    #[error("cannot write the state export: {0}")]
    Export(std::io::Error),
    /// The store was written by an incompatible version.
    #[error("state store {path} uses key format {found}, this build reads format {expected}")]
    Format { path: PathBuf, found: u64, expected: u64 },
    /// An import file line could not be read.
    #[error("import line {line}: {message}")]
    Import { line: usize, message: String },
}

/// One delivered event to remember.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The event's key.
    pub key: EventKey,
    /// The event's own time.
    pub time: DateTime<Utc>,
    /// The session's start (the key is filed under it), when the record has one.
    pub start: Option<DateTime<Utc>>,
}

/// What the pipeline needs from a store.
pub trait Dedup: Send + Sync {
    /// Was this key, of an event at `time` in a session that started at `start`, delivered
    /// before?
    fn contains(&self, time: DateTime<Utc>, start: Option<DateTime<Utc>>, key: KeyRef<'_>) -> Result<bool, StateError>;
    /// Remember these keys durably.
    fn commit(&self, delivered: &[Delivered]) -> Result<(), StateError>;
}

/// `now - d`, saturating at the earliest representable time (the config bounds `d`, but
/// neither it nor the clock is trusted to be sane).
pub fn before_now(now: DateTime<Utc>, d: std::time::Duration) -> DateTime<Utc> {
    now.checked_sub_signed(crate::settings::to_chrono(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The horizon: events before it are skipped without a lookup (docs/design.md, "Horizon").
pub fn horizon(now: DateTime<Utc>, retention: std::time::Duration, first_run: Option<DateTime<Utc>>) -> DateTime<Utc> {
    let by_retention = before_now(now, retention);
    match first_run {
        Some(f) if f > by_retention => f,
        _ => by_retention,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn horizon_is_the_later_bound() {
        let now = Utc.with_ymd_and_hms(2024, 6, 1, 0, 0, 0).unwrap();
        let day = std::time::Duration::from_secs(86400);
        let first = Utc.with_ymd_and_hms(2024, 5, 31, 0, 0, 0).unwrap();
        assert_eq!(horizon(now, 90 * day, Some(first)), first);
        assert_eq!(horizon(now, day / 2, Some(first)), now - chrono::Duration::hours(12));
        assert_eq!(horizon(now, day, None), first);
    }
}

//! The operator's view of the store: `state stats`, `list`, `forget`, `export` and `import`
//! (the agent itself only looks up, commits and prunes, in `sled_store.rs`). Exports are JSON
//! lines, a meta line first, so they can be read by people and tools and imported into a store
//! of any later format.

use super::chunk::{entry_key, is_end, pack, unpack};
use super::sled_store::{at, filed, sorted, StateMeta, INSERT_RUN, META_FIRST_RUN};
use super::{SledStore, StateError, KEY_FORMAT};
use crate::key::EventKey;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::ops::Bound;

/// Counts for `state stats`.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// All remembered keys.
    pub keys: u64,
    /// Keys of start events.
    pub start: u64,
    /// Keys of end events.
    pub end: u64,
    /// Oldest remembered event time.
    pub oldest: Option<DateTime<Utc>>,
    /// Newest remembered event time.
    pub newest: Option<DateTime<Utc>>,
    /// Bytes on disk.
    pub size_on_disk: u64,
    /// The store's meta.
    pub meta: StateMeta,
}

/// One line of an export: the meta line first, then one line per key.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExportLine {
    /// The header line.
    Meta {
        /// The exported store's meta.
        meta: StateMeta,
    },
    /// One delivered key.
    Key {
        /// `<session_id>:<phase>`.
        key: String,
        /// Event time.
        time: DateTime<Utc>,
        /// The session's start, when the key is filed under it and it differs from `time`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start: Option<DateTime<Utc>>,
    },
}

/// One remembered key, as `list` and `export` see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    /// The key.
    pub key: EventKey,
    /// The event's own time.
    pub time: DateTime<Utc>,
    /// The time the key is filed under (the session's start, or `time`).
    pub filed: DateTime<Utc>,
}

impl SledStore {
    /// Counts, times and size.
    pub fn stats(&self) -> Result<Stats, StateError> {
        let (mut keys, mut start, mut end) = (0, 0, 0);
        let (mut oldest, mut newest): (Option<i64>, Option<i64>) = (None, None);
        for chunk in self.chunks.chunks() {
            for e in chunk?.iter() {
                keys += 1;
                if is_end(e.packed()) {
                    end += 1;
                } else {
                    start += 1;
                }
                oldest = Some(oldest.map_or(e.time, |o| o.min(e.time)));
                newest = Some(newest.map_or(e.time, |n| n.max(e.time)));
            }
        }
        Ok(Stats {
            keys,
            start,
            end,
            oldest: oldest.map(at),
            newest: newest.map(at),
            size_on_disk: self.db.size_on_disk()?,
            meta: self.meta()?,
        })
    }

    /// Every key, in the order it is filed (session start, then key).
    pub fn remembered(&self) -> impl Iterator<Item = Result<Remembered, StateError>> + '_ {
        self.chunks.chunks().flat_map(|chunk| {
            let entries: Vec<Result<Remembered, StateError>> = match chunk {
                Ok(c) => c
                    .iter()
                    .map(|e| {
                        Ok(Remembered {
                            key: unpack(e.packed()),
                            time: at(e.time),
                            filed: at(e.filed()),
                        })
                    })
                    .collect(),
                Err(e) => vec![Err(e)],
            };
            entries
        })
    }

    /// Every key with its event time, in the order it is filed (session start, then key).
    pub fn list(&self) -> impl Iterator<Item = Result<(EventKey, DateTime<Utc>), StateError>> + '_ {
        self.remembered().map(|r| r.map(|r| (r.key, r.time)))
    }

    /// Forget keys (so their events are forwarded again if the vault still lists them).
    /// The whole store is scanned (an operator's command).
    pub fn forget(&self, keys: &[EventKey]) -> Result<usize, StateError> {
        let packed: std::collections::HashSet<Vec<u8>> = keys.iter().map(|k| pack(k.as_ref())).collect();
        let n = self
            .chunks
            .rewrite(Bound::Unbounded, |e| !packed.contains(e.packed()))?;
        self.count_keys(-(n as i64))?;
        self.db.flush()?;
        Ok(n)
    }

    /// Write the meta line and every key as JSON lines.
    pub fn export(&self, out: &mut dyn Write) -> Result<u64, StateError> {
        let io = StateError::Export;
        let line = serde_json::to_string(&ExportLine::Meta { meta: self.meta()? }).map_err(|e| io(e.into()))?;
        writeln!(out, "{line}").map_err(io)?;
        let mut n = 0;
        for item in self.remembered() {
            let r = item?;
            let start = (r.filed != r.time).then_some(r.filed);
            let line = serde_json::to_string(&ExportLine::Key {
                key: r.key.to_string(),
                time: r.time,
                start,
            })
            .map_err(|e| io(e.into()))?;
            writeln!(out, "{line}").map_err(io)?;
            n += 1;
        }
        out.flush().map_err(io)?;
        Ok(n)
    }

    /// Read an export; keys are added (existing ones kept), and the first-run horizon is taken
    /// from the export when it is later than the store's. Exports of format 1 (which did not
    /// record sessions' starts) are read too, and so is the time up to which a store migrated
    /// from format 1 looks its end keys up under their own time.
    pub fn import(&self, input: &mut dyn BufRead) -> Result<u64, StateError> {
        let mut run = Vec::new();
        let mut n = 0;
        let mut format = KEY_FORMAT;
        for (i, line) in input.lines().enumerate() {
            let line = line.map_err(|e| StateError::Import {
                line: i + 1,
                message: e.to_string(),
            })?;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |message: String| StateError::Import { line: i + 1, message };
            match serde_json::from_str::<ExportLine>(&line) {
                Ok(ExportLine::Meta { meta }) => {
                    if meta.key_format != 1 && meta.key_format != KEY_FORMAT {
                        return Err(bad(format!(
                            "export has key format {}, this build reads 1 and {KEY_FORMAT}",
                            meta.key_format
                        )));
                    }
                    format = meta.key_format;
                    let ours = self.meta()?.first_run_horizon;
                    if let Some(theirs) = meta.first_run_horizon {
                        // A horizon in the future would skip every event until then, with no
                        // command to lower it: an export never holds one.
                        if theirs > chrono::Utc::now() {
                            return Err(bad(format!(
                                "first_run_horizon {} is in the future",
                                theirs.to_rfc3339()
                            )));
                        }
                        if ours.is_none_or(|o| theirs > o) {
                            self.db.insert(META_FIRST_RUN, &theirs.timestamp().to_be_bytes())?;
                        }
                    }
                    // End keys a format-1 store filed under their own time are found there only
                    // up to this time (an export of a migrated store keeps them so).
                    if let Some(until) = meta.legacy_until {
                        self.raise_legacy_until(until.timestamp())?;
                    }
                }
                Ok(ExportLine::Key { key, time, start }) => {
                    let key: EventKey = key.parse().map_err(|e: crate::key::BadKey| bad(e.to_string()))?;
                    let packed = pack(key.as_ref());
                    if format == 1 && is_end(&packed) {
                        self.raise_legacy_until(time.timestamp())?;
                    }
                    run.push((entry_key(filed(time, start), &packed), time.timestamp()));
                    n += 1;
                    if run.len() >= INSERT_RUN {
                        let added = self.chunks.insert_sorted(&sorted(std::mem::take(&mut run)))?;
                        self.count_keys(added as i64)?;
                    }
                }
                // serde's own words for the second case name a Rust type, not the file.
                Err(e) if e.is_data() => {
                    return Err(bad(
                        "not a line of a state export: expected {\"meta\":{...}} (the first line) or {\"key\":\"SESSION_ID:start|end\",\"time\":\"RFC 3339\"}".into(),
                    ))
                }
                Err(e) => return Err(bad(format!("not JSON: {e}"))),
            }
        }
        let added = self.chunks.insert_sorted(&sorted(run))?;
        self.count_keys(added as i64)?;
        self.db.flush()?;
        Ok(n)
    }
}

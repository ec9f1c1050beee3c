//! The progress line `once` shows on a terminal while a long listing streams in.

use crate::pipeline::Progress;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rewrite one stderr line every second with the listing's bytes and records so far, until
/// aborted; the caller clears the line.
pub(super) fn spawn_progress(progress: Arc<Progress>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            let mb = progress.bytes.load(Ordering::Relaxed) as f64 / 1e6;
            let records = progress.records.load(Ordering::Relaxed);
            eprint!(
                "\r\x1b[Kreading listing: {mb:.1} MB, {records} records, {}s",
                started.elapsed().as_secs()
            );
        }
    })
}

//! A batch: encoded events on their way from the filter to the sinks and, once every sink
//! acknowledged them, their keys to the commit. Reused across a poll (delivery hands it back).

/// Encoded events on their way to the sinks: one payload buffer per encoder.
#[derive(Debug)]
pub struct Batch {
    pub(super) metas: Vec<crate::sink::EventMeta>,
    /// Each event's session start (where its key is filed in the store).
    pub(super) starts: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    pub(super) payloads: Vec<Vec<u8>>,
    pub(super) ranges: Vec<Vec<(usize, usize)>>,
}

impl Batch {
    pub(super) fn new(encoders: usize) -> Batch {
        Batch {
            metas: Vec::new(),
            starts: Vec::new(),
            payloads: vec![Vec::new(); encoders],
            ranges: vec![Vec::new(); encoders],
        }
    }

    /// Empty, keeping what its buffers allocated, to be filled again: a poll reuses a few
    /// batches instead of growing a fresh megabyte of payload for every one.
    pub(super) fn clear(&mut self) {
        self.truncate(0);
    }

    /// Drop whatever an event after the first `events` left behind (a record whose path
    /// panicked halfway, e.g. after one encoder wrote its payload): every later event must keep
    /// its own payload at its own index.
    pub(super) fn truncate(&mut self, events: usize) {
        self.metas.truncate(events);
        self.starts.truncate(events);
        for (payload, ranges) in self.payloads.iter_mut().zip(&mut self.ranges) {
            ranges.truncate(events);
            payload.truncate(ranges.last().map_or(0, |r| r.1));
        }
    }
}

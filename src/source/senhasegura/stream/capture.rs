//! Record captures: where a captured object (a record candidate or an envelope's `response`)
//! starts, how it is carried across chunk boundaries within the size limit, and how it is
//! handed out when its object closes.
// Input path: nothing here may panic on what came from the network, a file or the clock.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]

use super::{Item, ScanError, Scanner, Stop, OVERSIZED_PREFIX};

#[derive(Debug)]
pub(super) struct Capture {
    /// Stack length when the captured object opened; it closes when the stack is back here.
    pub(super) depth: usize,
    pub(super) response: bool,
    /// Offset of the capture's start in the current chunk (0 after a chunk boundary).
    pub(super) start: usize,
    pub(super) oversized: bool,
    /// The grammar inside it was broken: only strings and brackets are tracked until it closes.
    pub(super) broken: bool,
}

impl Scanner {
    /// At the end of a chunk: keep the open capture's bytes (up to the limit) for the next one.
    #[inline]
    pub(super) fn carry_capture(&mut self, chunk: &[u8]) {
        if let Some(cap) = &mut self.capture {
            if !cap.oversized {
                self.buf.extend_from_slice(chunk.get(cap.start..).unwrap_or_default());
                if self.buf.len() > self.max_record {
                    cap.oversized = true;
                    self.buf.truncate(OVERSIZED_PREFIX);
                    self.buf.shrink_to_fit();
                }
            }
            cap.start = 0;
        }
    }

    /// Close the innermost container; when it ends a capture, hand the captured object out.
    pub(super) fn close<E>(
        &mut self,
        object: bool,
        chunk: &[u8],
        i: usize,
        emit: &mut impl FnMut(Item<'_>) -> Result<(), E>,
    ) -> Result<(), Stop<E>> {
        match self.stack.last() {
            Some(top) if top.object == object => {}
            _ => {
                return Err(Stop::Scan(ScanError::Malformed {
                    offset: self.offset(i),
                    expected: "a bracket that matches the open one",
                }))
            }
        }
        self.stack.pop();
        if self.stack.is_empty() {
            self.root_done = true;
        }
        if !matches!(&self.capture, Some(c) if c.depth == self.stack.len()) {
            return Ok(());
        }
        let Some(cap) = self.capture.take() else {
            return Ok(());
        };
        let here = chunk.get(cap.start..=i).unwrap_or_default();
        let oversized = cap.oversized || self.buf.len().saturating_add(here.len()) > self.max_record;
        let result = if oversized {
            if !cap.oversized {
                self.buf.extend_from_slice(&here[..here.len().min(OVERSIZED_PREFIX)]);
                self.buf.truncate(OVERSIZED_PREFIX);
            }
            if cap.response {
                Ok(())
            } else {
                emit(Item::Oversized { prefix: &self.buf })
            }
        } else {
            let slice: &[u8] = if self.buf.is_empty() {
                here
            } else {
                self.buf.extend_from_slice(here);
                &self.buf
            };
            if cap.response {
                emit(Item::Response(slice))
            } else {
                let tenant = self.stack.last().and_then(|f| f.tenant.as_deref());
                let (fields, only_watched) = self.record_fields(cap.broken);
                emit(Item::Record {
                    bytes: slice,
                    tenant,
                    fields,
                    only_watched,
                })
            }
        };
        if self.buf.capacity() > OVERSIZED_PREFIX.max(self.max_record.min(1 << 16)).saturating_mul(2) {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        result.map_err(Stop::Emit)
    }
}

//! The body reader's buffers: the listing is copied into pieces of at most [`CHUNK_PIECE`]
//! bytes, and a poll has [`CHUNK_POOL`] of them, handed to the filter and given back by it.

use tokio::sync::mpsc;

/// Body pieces waiting for the filter.
pub(super) const CHUNK_QUEUE: usize = 8;
/// The body is copied into pieces of this size, at most (hyper hands out up to about 400 KiB
/// at a time; a copy the size of each hand-out made every buffer grow to the largest one it had
/// held, so the longer the listing, the more of them were that large)...
const CHUNK_PIECE: usize = 64 * 1024;
/// ...and a poll has this many of them: the queue's, the one the reader fills and the one the
/// filter scans. Like the batches, the same few buffers from the first second to the last.
pub(super) const CHUNK_POOL: usize = CHUNK_QUEUE + 2;

/// The reader's side of the pool: the pieces the filter gave back, and how many exist.
pub(super) struct Pieces {
    spent: mpsc::Receiver<Vec<u8>>,
    made: usize,
}

impl Pieces {
    /// A pool whose pieces come back through `spent`.
    pub(super) fn new(spent: mpsc::Receiver<Vec<u8>>) -> Pieces {
        Pieces { spent, made: 0 }
    }

    /// Copy `chunk` into pieces and queue them for the filter; false when the filter is gone.
    /// A piece is one the filter gave back, a new one while fewer than [`CHUNK_POOL`] exist,
    /// or else one the filter gives back as it finishes it (none: the filter ended, and the
    /// send fails).
    pub(super) async fn queue(&mut self, chunk: &[u8], to: &mpsc::Sender<Vec<u8>>) -> bool {
        for piece in chunk.chunks(CHUNK_PIECE) {
            let spent = if self.made < CHUNK_POOL {
                self.spent.try_recv().ok()
            } else {
                self.spent.recv().await
            };
            let mut buf = spent.unwrap_or_else(|| {
                self.made = self.made.saturating_add(1);
                Vec::with_capacity(CHUNK_PIECE)
            });
            buf.clear();
            buf.extend_from_slice(piece);
            if to.send(buf).await.is_err() {
                return false;
            }
        }
        true
    }
}

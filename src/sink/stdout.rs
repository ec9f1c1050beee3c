//! The stdout sink: one event per line, written and flushed per batch. A closed pipe (the
//! reader went away) is final: the batch is not acknowledged and the run ends cleanly.
//!
//! Lines are gathered into pieces of about [`PIECE`] bytes, each handed to tokio's stdout at
//! once: tokio copies what it is given into a buffer of its own (up to 2 MiB) for its blocking
//! write, so writing a whole batch in one call kept two copies of it alive.

use super::{Frame, SinkError};
use tokio::io::AsyncWriteExt;

/// Bytes gathered before a write (a line longer than this is written alone).
const PIECE: usize = 128 * 1024;

/// Writes to the process's standard output.
#[derive(Debug)]
pub struct StdoutSink {
    out: tokio::io::Stdout,
    buf: Vec<u8>,
}

impl Default for StdoutSink {
    fn default() -> Self {
        StdoutSink::new()
    }
}

impl StdoutSink {
    /// A sink on standard output.
    pub fn new() -> StdoutSink {
        StdoutSink {
            out: tokio::io::stdout(),
            buf: Vec::with_capacity(PIECE),
        }
    }

    /// Write every frame as a line, then flush.
    pub async fn deliver(&mut self, frames: &[Frame<'_>]) -> Result<(), SinkError> {
        self.buf.clear();
        let result = async {
            for f in frames {
                if !self.buf.is_empty() && self.buf.len() + f.payload.len() >= PIECE {
                    self.out.write_all(&self.buf).await?;
                    self.buf.clear();
                }
                self.buf.extend_from_slice(f.payload);
                self.buf.push(b'\n');
            }
            self.out.write_all(&self.buf).await?;
            self.out.flush().await
        }
        .await;
        if self.buf.capacity() > 2 * PIECE {
            // One long line grew it: do not keep that much for the next batches.
            self.buf = Vec::with_capacity(PIECE);
        }
        result.map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => SinkError::Closed {
                sink: "stdout",
                message: "the reader closed the pipe".into(),
            },
            _ => SinkError::Failed {
                sink: "stdout",
                message: e.to_string(),
            },
        })
    }
}

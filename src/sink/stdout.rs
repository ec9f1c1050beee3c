//! The stdout sink: one event per line, written and flushed per batch. A closed pipe (the
//! reader went away) is final: the batch is not acknowledged and the run ends cleanly.

use super::{Frame, SinkError};
use tokio::io::AsyncWriteExt;

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
            buf: Vec::with_capacity(1 << 16),
        }
    }

    /// Write every frame as a line, then flush.
    pub async fn deliver(&mut self, frames: &[Frame<'_>]) -> Result<(), SinkError> {
        self.buf.clear();
        for f in frames {
            self.buf.extend_from_slice(f.payload);
            self.buf.push(b'\n');
        }
        let result = async {
            self.out.write_all(&self.buf).await?;
            self.out.flush().await
        }
        .await;
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

//! The stdout sink: one event per line, written and flushed per batch. A closed pipe (the
//! reader went away) is final: the batch is not acknowledged and the run ends cleanly.
//!
//! Lines are gathered into pieces of about `PIECE` bytes, each handed to tokio's stdout at
//! once: tokio copies what it is given into a buffer of its own (up to 2 MiB) for its blocking
//! write, so writing a whole batch in one call kept two copies of it alive. A write that fails
//! midway leaves the pieces before it written; the batch is not acknowledged and is sent again
//! whole, so those lines repeat (at least once, as everywhere).

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
        let result = write_lines(&mut self.out, &mut self.buf, frames.iter().map(|f| f.payload)).await;
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

/// Write each payload and a newline to `out` in pieces of about [`PIECE`] bytes gathered in
/// `buf`, then flush.
async fn write_lines<'p, W: tokio::io::AsyncWrite + Unpin>(
    out: &mut W,
    buf: &mut Vec<u8>,
    payloads: impl Iterator<Item = &'p [u8]>,
) -> std::io::Result<()> {
    buf.clear();
    let result = async {
        for p in payloads {
            if !buf.is_empty() && buf.len() + p.len() >= PIECE {
                out.write_all(buf).await?;
                buf.clear();
            }
            buf.extend_from_slice(p);
            buf.push(b'\n');
        }
        out.write_all(buf).await?;
        out.flush().await
    }
    .await;
    if buf.capacity() > 2 * PIECE {
        // One long line grew it: do not keep that much for the next batches.
        *buf = Vec::with_capacity(PIECE);
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Records every write it is given.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl tokio::io::AsyncWrite for Writes {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            data: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.0.push(data.to_vec());
            std::task::Poll::Ready(Ok(data.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn lines_go_out_whole_in_order_in_pieces_of_bounded_size() {
        // Lines of many sizes, two of them longer than a piece.
        let lines: Vec<Vec<u8>> = (0..3000usize)
            .map(|i| {
                let len = match i {
                    7 => PIECE + 5,
                    1500 => 3 * PIECE,
                    _ => 1 + (i * 37) % 900,
                };
                vec![b'a' + (i % 26) as u8; len]
            })
            .collect();
        let mut out = Writes::default();
        let mut buf = Vec::new();
        write_lines(&mut out, &mut buf, lines.iter().map(Vec::as_slice))
            .await
            .unwrap();
        let mut expected = Vec::new();
        for l in &lines {
            expected.extend_from_slice(l);
            expected.push(b'\n');
        }
        assert_eq!(out.0.concat(), expected, "every line, in order, each with its newline");
        assert!(out.0.len() > 10, "written in pieces: {}", out.0.len());
        for w in &out.0 {
            // Each write ends a line; only a piece holding one long line exceeds the size.
            assert_eq!(w.last(), Some(&b'\n'));
            assert!(
                w.len() < PIECE || w.iter().filter(|&&b| b == b'\n').count() == 1,
                "{}",
                w.len()
            );
        }
        assert!(buf.capacity() <= 2 * PIECE, "the long lines' room is let go");
        // Nothing to write: nothing but the flush.
        let mut none = Writes::default();
        write_lines(&mut none, &mut buf, std::iter::empty()).await.unwrap();
        assert!(none.0.concat().is_empty());
    }
}

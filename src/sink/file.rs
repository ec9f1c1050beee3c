//! The file sink: one event per line, appended to a file. A batch is acknowledged only once
//! it was written and `fdatasync`ed, so an event the agent commits is on disk. Rotation is by
//! rename (logrotate's default, not `copytruncate`): before each batch the sink compares the
//! path with the file it holds open and reopens when the path now names another file or none.

use super::{Frame, SinkError};
use crate::encode::Format;
use crate::settings::ConfigError;
use serde::Deserialize;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

/// `type = "file"`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file to append to (created 0600; its directory must exist).
    #[serde(deserialize_with = "crate::settings::expand::path")]
    pub path: PathBuf,
    /// `ecs` (default) or `cef`.
    #[serde(default = "default_format")]
    pub format: Format,
}

fn default_format() -> Format {
    Format::Ecs
}

/// Appends to a file.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    file: Option<(tokio::fs::File, u64, u64)>,
    buf: Vec<u8>,
    /// A failed write left part of a line that could not be cut off: start with a line break.
    torn: bool,
}

fn failed(message: String) -> SinkError {
    SinkError::Failed { sink: "file", message }
}

impl FileSink {
    /// Validate the config (the file is opened at the first batch).
    pub fn new(c: &FileSinkConfig) -> Result<FileSink, ConfigError> {
        if c.path.as_os_str().is_empty() || c.path.file_name().is_none() {
            return Err(ConfigError::Invalid {
                key: "sink.path",
                message: format!("`{}` does not name a file", c.path.display()),
            });
        }
        Ok(FileSink {
            path: c.path.clone(),
            file: None,
            buf: Vec::with_capacity(1 << 16),
            torn: false,
        })
    }

    /// The open file, reopened when the path was renamed away (rotation) or removed.
    async fn file(&mut self) -> Result<&mut tokio::fs::File, SinkError> {
        if let Some((_, dev, ino)) = &self.file {
            let same = tokio::fs::metadata(&self.path)
                .await
                .is_ok_and(|m| m.dev() == *dev && m.ino() == *ino);
            if !same {
                tracing::info!(file = %self.path.display(), "Output file was rotated or removed; reopening");
                self.file = None;
            }
        }
        if self.file.is_none() {
            let file = tokio::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(&self.path)
                .await
                .map_err(|e| failed(format!("cannot open {}: {e}", self.path.display())))?;
            let meta = file
                .metadata()
                .await
                .map_err(|e| failed(format!("cannot stat {}: {e}", self.path.display())))?;
            self.file = Some((file, meta.dev(), meta.ino()));
        }
        match &mut self.file {
            Some((f, _, _)) => Ok(f),
            None => Err(failed("no open file".into())),
        }
    }

    /// Append every frame as a line, then fdatasync.
    pub async fn deliver(&mut self, frames: &[Frame<'_>]) -> Result<(), SinkError> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        if self.torn {
            buf.push(b'\n');
        }
        for f in frames {
            buf.extend_from_slice(f.payload);
            buf.push(b'\n');
        }
        let path = self.path.clone();
        let mut before = None;
        let result = async {
            let file = self.file().await?;
            let io = |e: std::io::Error| failed(format!("cannot write {}: {e}", path.display()));
            before = Some(file.metadata().await.map_err(io)?.len());
            file.write_all(&buf).await.map_err(io)?;
            file.flush().await.map_err(io)?;
            file.sync_data().await.map_err(io)
        }
        .await;
        if result.is_ok() {
            self.torn = false;
        } else {
            // Part of the batch may be in the file (a full disk writes what fits): cut it off,
            // so the retry's first line does not land on a torn one and each failed try does
            // not fill the disk further. The retry reopens the file and writes the whole batch.
            if let (Some(len), Some((file, _, _))) = (before, &mut self.file) {
                if let Err(e) = file.set_len(len).await {
                    tracing::warn!(file = %self.path.display(), error = %e, "Cannot cut a partly written batch off the output file; the next line may follow a torn one");
                    self.torn = true;
                }
            }
            self.file = None;
        }
        self.buf = buf;
        result
    }

    /// Open (create) the file now.
    pub async fn health_check(&mut self) -> Result<String, SinkError> {
        self.file().await?;
        Ok(format!("appending to {}", self.path.display()))
    }
}

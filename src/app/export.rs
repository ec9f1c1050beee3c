//! Writing the store's export into a file, for the periodic backup and `state export -o`.

use crate::state::{SledStore, StateError};
use crate::Error;
use std::path::Path;

/// The state backup's file name, inside the state directory.
pub const BACKUP_FILE: &str = "backup.jsonl";

/// Write the store's export (JSON lines) to `path` so that no reader ever finds half of one: into
/// a temporary file beside it (created 0600, not world-readable), fsync, then rename into place.
/// The directory is fsynced after the rename. A symbolic link is refused (following it would
/// replace whatever it points at, e.g. the file `/dev/stdout` is redirected to, with the
/// agent's owner and mode); a path that exists and is not a regular file (a FIFO, a device) is
/// streamed into as it is. `what` names the operation in errors. Returns the number of keys
/// written.
pub(super) fn write_export(store: &SledStore, path: &Path, what: &'static str) -> Result<u64, Error> {
    let io = |source: std::io::Error| StateError::File {
        what,
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "is a symbolic link; give the file's own path (or leave out -o to write to standard output)",
            ))
            .into())
        }
        Ok(m) if !m.is_file() => {
            let file = std::fs::OpenOptions::new().write(true).open(path).map_err(io)?;
            return Ok(store.export(&mut std::io::BufWriter::new(file))?);
        }
        _ => {}
    }
    let target = path;
    let mut tmp_name = target
        .file_name()
        .ok_or_else(|| io(std::io::Error::new(std::io::ErrorKind::InvalidInput, "names no file")))?
        .to_os_string();
    tmp_name.push(".tmp");
    let tmp = target.with_file_name(tmp_name);
    // A leftover of a crash is replaced, never written through (it may have other modes).
    let _ = std::fs::remove_file(&tmp);
    let written = private_file(&tmp).map_err(io).and_then(|file| {
        let mut out = std::io::BufWriter::new(file);
        let n = store.export(&mut out)?;
        out.into_inner()
            .map_err(|e| io(e.into_error()))?
            .sync_all()
            .map_err(io)?;
        std::fs::rename(&tmp, target).map_err(io)?;
        let dir = target
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(n)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(written?)
}

/// A new file only its owner can read.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_file_is_complete_private_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("state"), None, None).unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, "old content that must be replaced\n").unwrap();
        let n = write_export(&store, &path, "export").unwrap();
        assert_eq!(n, 0);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("{\"meta\""), "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "mode {mode:o}");
        }
        assert!(!dir.path().join("out.jsonl.tmp").exists());
    }

    #[test]
    fn export_into_a_missing_directory_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("state"), None, None).unwrap();
        let path = dir.path().join("no/such/dir/out.jsonl");
        let err = write_export(&store, &path, "export").unwrap_err().to_string();
        assert!(err.contains("export") && err.contains("out.jsonl"), "{err}");
    }

    /// A symbolic link is refused and what it points at is left alone (`-o /dev/stdout` with
    /// stdout redirected to a log would otherwise replace the log); a FIFO is streamed into.
    #[test]
    fn a_symlink_is_refused_and_a_fifo_streamed_into() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("state"), None, None).unwrap();
        let log = dir.path().join("all.log");
        std::fs::write(&log, "earlier lines\n").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&log, &link).unwrap();
        let err = write_export(&store, &link, "state export").unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "earlier lines\n");

        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
        };
        assert_eq!(write_export(&store, &fifo, "state export").unwrap(), 0);
        assert!(reader.join().unwrap().starts_with("{\"meta\""));
        assert!(!dir.path().join("fifo.tmp").exists());
    }
}

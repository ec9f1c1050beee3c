//! The state directory: created private, or taken only when it is the agent's own.
//!
//! The agent often runs as root on a first try, so the directory it is pointed at must not be
//! someone else's: a symlink planted in place of `state.path`, or a world-writable directory
//! of another user, would otherwise be taken over and chmod-ed. So an existing directory must
//! be owned by the effective user; a symlink as the last component is followed only to such a
//! directory; anything else is refused with a message that says what to fix.
// Input path: nothing here may panic on what came from the network, a file or the clock.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]

use super::StateError;
use std::path::Path;

/// Create `path` (and parents) with mode 0700, or check that the existing one is the agent's
/// own and tighten it to 0700.
pub fn prepare(path: &Path) -> Result<(), StateError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        let denied = |e: std::io::Error| io_error(path, e);
        let uid = rustix::process::geteuid().as_raw();
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(path)
                    .map_err(denied)?;
                std::fs::symlink_metadata(path).map_err(denied)?
            }
            Err(e) => return Err(denied(e)),
        };
        let (meta, link) = if meta.file_type().is_symlink() {
            (std::fs::metadata(path).map_err(denied)?, true)
        } else {
            (meta, false)
        };
        if !meta.is_dir() {
            return Err(StateError::NotOwned {
                path: path.to_path_buf(),
                message: format!(
                    "it is {}not a directory",
                    if link {
                        "a symbolic link to something that is "
                    } else {
                        ""
                    }
                ),
            });
        }
        if meta.uid() != uid {
            return Err(StateError::NotOwned {
                path: path.to_path_buf(),
                message: format!(
                    "{} owned by uid {}, and the agent runs as uid {uid}; point state.path at a directory of the agent's user (the packaged unit uses /var/lib/senhasegura-forwarder), or chown it if it really is the agent's",
                    if link { "it is a symbolic link to a directory" } else { "the directory is" },
                    meta.uid()
                ),
            });
        }
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(denied)?;
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(path).map_err(|e| io_error(path, e))?;
    Ok(())
}

/// An I/O error on the state directory: a permission problem says so, and never suggests
/// that the store is corrupt.
pub fn io_error(path: &Path, e: std::io::Error) -> StateError {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        return StateError::Permission {
            path: path.to_path_buf(),
            message: e.to_string(),
            uid: current_uid(),
        };
    }
    StateError::Open {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn current_uid() -> u32 {
    #[cfg(unix)]
    return rustix::process::geteuid().as_raw();
    #[cfg(not(unix))]
    0
}

#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_private_and_tightens_its_own() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a/b/state");
        prepare(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
        prepare(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o700);
        let file = tmp.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(matches!(prepare(&file), Err(StateError::NotOwned { .. })));
        // A symlink to the agent's own directory is followed.
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        prepare(&link).unwrap();
    }
}

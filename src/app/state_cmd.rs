//! `state ...`: the operator's view of the store (stats, list, forget, prune, export, import),
//! run against a stopped agent's state directory.

use super::export::write_export;
use crate::cli::StateAction;
use crate::config::Config;
use crate::key::{EventKey, Phase};
use crate::state::{SledStore, StateError};
use crate::Error;
use chrono::Utc;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `state ...`.
pub fn state(config_path: Option<&Path>, state_dir: Option<PathBuf>, action: StateAction) -> Result<(), Error> {
    // Prune needs the agent's retention: a default shorter than the configured one would drop
    // keys the agent still needs, and their events would be forwarded again. With --state-dir,
    // the config is -c or $SENHASEGURA_FORWARDER_CONFIG, and one of them must be given.
    let from_env = crate::config::env_config_path();
    let config_path = match config_path {
        None if state_dir.is_some() && matches!(action, StateAction::Prune) => match &from_env {
            Some(p) => Some(p.as_path()),
            None => {
                return Err(Error::Usage(format!(
                    "state prune with --state-dir needs the agent's config for its retention: add -c FILE (or set {})",
                    crate::config::CONFIG_ENV
                )))
            }
        },
        other => other,
    };
    let (path, retention, metrics) = match state_dir {
        Some(dir) => match config_path {
            Some(p) => {
                let config = Config::load(p)?;
                (dir, config.state.retention.0, config.metrics.listen)
            }
            None => (dir, crate::config::StateConfig::default().retention.0, None),
        },
        None => {
            let config = Config::load(&crate::config::config_path(config_path))?;
            (config.state.path, config.state.retention.0, config.metrics.listen)
        }
    };
    if !matches!(action, StateAction::Import { .. }) && !crate::state::store_exists(&path) {
        return Err(StateError::Missing { path }.into());
    }
    let store = SledStore::open(&path, None, None).inspect_err(|e| {
        if matches!(e, StateError::Locked { .. }) {
            let at = metrics.map_or("the address in [metrics] listen".to_string(), |l| l.0);
            tracing::info!(
                "While the agent runs, read its store on its metrics endpoint: curl -s http://{at}/metrics | grep senhasegura_forwarder_state_ (keys, horizon, last commit)"
            );
        }
    })?;
    let mut out = std::io::stdout().lock();
    match action {
        StateAction::Stats => {
            let stats = store.stats()?;
            let text = serde_json::to_string_pretty(&stats).map_err(|e| Error::Internal(e.to_string()))?;
            print_line(&mut out, format_args!("{text}"))?;
        }
        StateAction::List { limit } => {
            for item in store.list().take(limit.unwrap_or(usize::MAX)) {
                let (key, time) = item?;
                // Ids come from the vault: escaped, so that one cannot forge rows.
                let key = crate::settings::printable(&key.to_string(), usize::MAX);
                if !print_line(&mut out, format_args!("{key}\t{}", time.to_rfc3339()))? {
                    break;
                }
            }
        }
        StateAction::Forget { keys, session } => {
            let mut all = keys;
            for s in session {
                all.push(EventKey::new(s.as_str(), Phase::Start));
                all.push(EventKey::new(s, Phase::End));
            }
            if all.is_empty() {
                return Err(Error::Usage("state forget needs keys or --session".into()));
            }
            let n = store.forget(&all)?;
            said(format_args!("forgot {n} key(s)"));
        }
        StateAction::Prune => {
            let cutoff = crate::state::before_now(Utc::now(), retention);
            let n = store.prune(cutoff)?;
            said(format_args!("pruned {n} key(s) older than {}", cutoff.to_rfc3339()));
        }
        StateAction::Export { output } => {
            let n = match output {
                Some(file) => write_export(&store, &file, "state export")?,
                None => match store.export(&mut out) {
                    // The reader went away (`state export | head`): it has what it wanted.
                    Err(StateError::Export(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    other => other?,
                },
            };
            said(format_args!("exported {n} key(s)"));
        }
        StateAction::Import { file } => {
            let n = if file.as_os_str() == "-" {
                store.import(&mut std::io::stdin().lock())?
            } else {
                let f = std::fs::File::open(&file).map_err(|source| StateError::File {
                    what: "state import",
                    path: file.clone(),
                    source,
                })?;
                store.import(&mut std::io::BufReader::new(f))?
            };
            said(format_args!("imported {n} key(s)"));
        }
    }
    Ok(())
}

/// One line to stdout; false when the reader went away (`state list | head`), which ends the
/// output quietly (not a panic, as `println!` would, nor an error: the reader has what it
/// wanted). Another failure (a full disk under a redirect) is an error.
fn print_line(out: &mut impl Write, line: std::fmt::Arguments<'_>) -> Result<bool, Error> {
    match out.write_fmt(line).and_then(|()| out.write_all(b"\n")) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(StateError::File {
            what: "state output",
            path: PathBuf::from("(stdout)"),
            source: e,
        }
        .into()),
    }
}

/// What a command did, on stderr; nobody reading it (`2>&1 | head`) is no failure and no panic
/// (`eprintln!` panics then): the work is done and the exit code says so.
fn said(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

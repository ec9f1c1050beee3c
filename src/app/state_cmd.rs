//! `state ...`: the operator's view of the store (stats, list, forget, prune, export, import),
//! run against a stopped agent's state directory.

use super::export::write_export;
use crate::cli::StateAction;
use crate::config::Config;
use crate::key::{EventKey, Phase};
use crate::state::{SledStore, StateError};
use crate::Error;
use chrono::Utc;
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
    if !path.exists() && !matches!(action, StateAction::Import { .. }) {
        return Err(StateError::Open {
            path,
            message: "no state directory here".into(),
        }
        .into());
    }
    let store = SledStore::open(&path, None, None).inspect_err(|e| {
        if matches!(e, StateError::Locked { .. }) {
            let at = metrics.map_or("the address in [metrics] listen".to_string(), |l| l.0);
            tracing::info!(
                "While the agent runs, read its store on its metrics endpoint: curl -s http://{at}/metrics | grep senhasegura_forwarder_state_ (keys, horizon, last commit)"
            );
        }
    })?;
    match action {
        StateAction::Stats => {
            let stats = store.stats()?;
            println!(
                "{}",
                serde_json::to_string_pretty(&stats).map_err(|e| Error::Internal(e.to_string()))?
            );
        }
        StateAction::List { limit } => {
            for item in store.list().take(limit.unwrap_or(usize::MAX)) {
                let (key, time) = item?;
                // Ids come from the vault: escaped, so that one cannot forge rows.
                println!(
                    "{}\t{}",
                    crate::settings::printable(&key.to_string(), usize::MAX),
                    time.to_rfc3339()
                );
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
            eprintln!("forgot {n} key(s)");
        }
        StateAction::Prune => {
            let cutoff = crate::state::before_now(Utc::now(), retention);
            let n = store.prune(cutoff)?;
            eprintln!("pruned {n} key(s) older than {}", cutoff.to_rfc3339());
        }
        StateAction::Export { output } => {
            let n = match output {
                Some(file) => write_export(&store, &file, "state export")?,
                None => store.export(&mut std::io::stdout().lock())?,
            };
            eprintln!("exported {n} key(s)");
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
            eprintln!("imported {n} key(s)");
        }
    }
    Ok(())
}

//! What `run` does for a service manager around the poll loop: systemd notifications (READY
//! after start-up, STATUS with the last cycle's summary, WATCHDOG pets, STOPPING), the
//! SIGHUP reload (re-read the config file; applied between cycles by the run loop), and the
//! warning when events would go to the journal.

use crate::notify::Notifier;
use crate::pipeline::CycleSummary;
use crate::shutdown::Reload;
use crate::Error;
use std::path::PathBuf;
use std::sync::Arc;

/// The run loop's link to the service manager and to SIGHUP.
pub struct Service {
    notifier: Arc<Notifier>,
    reload: Reload,
    config_path: Option<PathBuf>,
    watchdog: Option<tokio::task::JoinHandle<()>>,
}

impl Service {
    /// Not reloadable (demo, tests): notifications only.
    pub fn plain() -> Service {
        Service::new(None, Reload::never())
    }

    /// Reload `config_path` on SIGHUP (the `reload` handle) and notify systemd when it runs us.
    pub fn new(config_path: Option<PathBuf>, reload: Reload) -> Service {
        Service {
            notifier: Arc::new(Notifier::from_env()),
            reload,
            config_path,
            watchdog: None,
        }
    }

    /// Start-up is done: READY, and the watchdog pets begin.
    pub fn ready(&mut self, interval: std::time::Duration) {
        self.notifier.ready(&format!(
            "Polling every {}; first cycle running",
            humantime::format_duration(interval)
        ));
        if let Some(every) = crate::notify::watchdog_interval() {
            let notifier = self.notifier.clone();
            // Pets at half the interval. The task runs on the agent's runtime, so a runtime
            // that stopped making progress (blocked worker threads, a deadlock) stops the
            // pets and systemd restarts the agent. A slow vault or SIEM is not a hang: the
            // source timeout and the sink retries handle those.
            self.watchdog = Some(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every / 2);
                loop {
                    tick.tick().await;
                    notifier.watchdog();
                }
            }));
        }
    }

    /// A cycle ended: its summary becomes the status line.
    pub fn cycle_done(&self, s: &CycleSummary) {
        if !self.notifier.enabled() {
            return;
        }
        let c = &s.counters;
        self.notifier.status(&format!(
            "Last cycle at {}: {} records, {} new, {} delivered, {} known, {} bad, {} ms",
            chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ"),
            c.records,
            c.new_events,
            c.delivered,
            c.known,
            c.bad,
            s.duration.as_millis()
        ));
    }

    /// A cycle failed.
    pub fn cycle_failed(&self, e: &Error) {
        if self.notifier.enabled() {
            self.notifier.status(&format!(
                "Last cycle at {} failed: {e}",
                chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ")
            ));
        }
    }

    /// A handle on SIGHUP that resolves for reloads requested from now on (`None` when this
    /// service does not reload).
    pub fn reload_handle(&self) -> Option<crate::shutdown::Reload> {
        self.config_path.as_ref().map(|_| self.reload.clone())
    }

    /// Resolves when SIGHUP asks for a reload.
    pub async fn reload_requested(&mut self) {
        if self.config_path.is_none() {
            std::future::pending::<()>().await;
        }
        self.reload.wait().await;
    }

    /// The config to apply when a reload was requested since the last call: `None` when none
    /// was, or when the file is invalid (logged; the agent keeps its config).
    pub fn take_reload(&mut self) -> Option<crate::config::Resolved> {
        let path = self.config_path.as_ref()?;
        if !self.reload.take() {
            return None;
        }
        self.notifier.reloading();
        match crate::config::Config::load(path).and_then(crate::config::Config::resolve) {
            Ok(r) => {
                // A process's environment is fixed at its start: systemd hands the reload's
                // `check` a re-read EnvironmentFile, but not the running agent.
                if std::fs::read_to_string(path).is_ok_and(|t| t.contains("${")) {
                    tracing::info!("The configuration reads ${{VAR}} from the environment: those keep the values the agent started with; after changing them (e.g. in /etc/default/senhasegura-forwarder), restart instead");
                }
                Some(r)
            }
            Err(e) => {
                tracing::error!(config = %path.display(), error = %e, "Reload refused: the new configuration is invalid; still running on the previous one");
                self.notifier.status(&format!("Reload refused: {e}"));
                self.notifier.send("READY=1");
                None
            }
        }
    }

    /// After an attempt to apply a reload.
    pub fn reloaded(&self, result: &Result<(), Error>) {
        match result {
            Ok(()) => {
                tracing::info!("Configuration reloaded");
                self.notifier.send("READY=1\nSTATUS=Configuration reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "Reload refused; still running on the previous configuration");
                // One line: the error may quote a config value, and a line break in it would be a
                // notification of its own (WATCHDOG=trigger...).
                self.notifier.ready(&format!("Reload refused: {e}"));
            }
        }
    }

    /// Shutdown began.
    pub fn stopping(&mut self) {
        if let Some(w) = self.watchdog.take() {
            w.abort();
        }
        self.notifier.stopping();
    }
}

/// True when standard output is the systemd journal (`$JOURNAL_STREAM` names its device and
/// inode; systemd.exec(5) says to compare them with stdout's).
pub fn stdout_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Ok(fd) = std::io::stdout().as_fd().try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(fd)
        .metadata()
        .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// Warn when a stdout sink writes into the journal: journald rate-limits and drops lines,
/// and an event the agent committed but journald dropped is lost for good.
pub fn warn_if_stdout_is_journal(config: &crate::config::Config) {
    let uses_stdout = config
        .sinks
        .iter()
        .any(|s| matches!(s, crate::config::SinkConfig::Stdout(_)));
    if uses_stdout && stdout_is_journal() {
        tracing::warn!("A stdout sink writes into the systemd journal, which rate-limits and drops lines: events it drops are lost for good, because the agent committed them once written. Use a file, syslog or Kafka sink under systemd");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refused reload's error can quote a config value with a line break; systemd reads each
    /// line of a datagram as an assignment of its own.
    #[test]
    fn a_refused_reload_is_one_status_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let service = Service {
            notifier: Arc::new(Notifier::to_path(&path)),
            reload: Reload::never(),
            config_path: None,
            watchdog: None,
        };
        service.reloaded(&Err(Error::Usage("bad value\nWATCHDOG=trigger\nb".into())));
        let mut buf = [0u8; 512];
        let len = server.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..len]).into_owned();
        assert_eq!(
            got.lines().collect::<Vec<_>>(),
            ["READY=1", "STATUS=Reload refused: bad value WATCHDOG=trigger b"],
            "{got:?}"
        );
    }
}

//! The one shutdown path: SIGTERM or SIGINT flips a watch channel that every loop selects on.
//! Loops stop taking new work: a poll abandons the rest of the listing (a pending request is
//! interrupted at once), sends what it already read (a failing sink is not retried), and
//! commits only what every sink acknowledged before the process exits 0. SIGHUP is the other
//! signal `run` takes: [`on_reload`] counts it, and the run loop re-reads the config between
//! cycles.

use tokio::sync::watch;

/// A cloneable handle that resolves once shutdown was requested.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// The side that requests shutdown.
#[derive(Debug)]
pub struct Trigger {
    tx: watch::Sender<bool>,
}

/// A new trigger and its first handle.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger { tx }, Shutdown { rx })
}

impl Trigger {
    /// Ask every holder of a [`Shutdown`] to stop.
    pub fn fire(&self) {
        let _ = self.tx.send(true);
    }
}

impl Shutdown {
    /// True once shutdown was requested.
    pub fn is_fired(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves when shutdown is requested.
    pub async fn wait(&mut self) {
        while !*self.rx.borrow_and_update() {
            if self.rx.changed().await.is_err() {
                // Trigger dropped without firing: nobody can ask for shutdown any more.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Fire `trigger` on the first SIGTERM or SIGINT.
pub fn on_signals(trigger: Trigger) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = match signal(SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "Cannot listen for SIGTERM");
                    return;
                }
            };
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        trigger.fire();
    });
}

/// Reload requests (SIGHUP): the run loop takes them between cycles.
#[derive(Clone, Debug)]
pub struct Reload {
    rx: watch::Receiver<u64>,
    // Keeps the channel open for a handle nobody fires (so `wait` pends instead of spinning).
    _tx: Option<std::sync::Arc<watch::Sender<u64>>>,
}

impl Reload {
    /// A handle that never fires (commands without reload).
    pub fn never() -> Reload {
        let (tx, rx) = watch::channel(0);
        Reload {
            rx,
            _tx: Some(std::sync::Arc::new(tx)),
        }
    }

    /// True (once per burst of signals) when a reload was requested since the last call.
    pub fn take(&mut self) -> bool {
        let requested = self.rx.has_changed().unwrap_or(false);
        self.rx.borrow_and_update();
        requested
    }

    /// Resolves when a reload is requested (does not consume it; call [`Reload::take`]).
    pub async fn wait(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        // `changed` marked the value seen; mark it unseen again for `take`.
        self.rx.mark_changed();
    }
}

/// Listen for SIGHUP from now on (so it no longer kills the process) and count it.
pub fn on_reload() -> Result<Reload, std::io::Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, rx) = watch::channel(0u64);
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received, reloading the configuration after the current cycle");
            tx.send_modify(|n| *n += 1);
        }
    });
    Ok(Reload { rx, _tx: None })
}

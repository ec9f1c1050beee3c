//! The commands as library calls: `run`, `once`, `state`, `demo`, `simulate` (`check` is
//! `crate::check`). `main.rs` parses the command line and maps the returned [`Error`] to an exit
//! code; this module wires config, client, store, sinks and pipeline together and owns nothing
//! else.
//!
//! This file: loading the config, `once`, `run` and the run loop. `agent.rs`: the [`Agent`] and
//! its [`Mode`]; `state_cmd.rs`: `state ...`; `export.rs`: writing an export file (the backup
//! and `state export -o`); `progress.rs`: `once`'s progress line; `demo.rs`: `demo` and
//! `simulate`.

mod agent;
mod demo;
mod export;
mod progress;
mod state_cmd;

pub use agent::{Agent, Mode};
pub use demo::{demo, simulate};
pub use export::BACKUP_FILE;
pub use state_cmd::state;

use crate::config::{Config, Resolved};
use crate::pipeline::CycleSummary;
use crate::service::Service;
use crate::shutdown::{Reload, Shutdown};
use crate::Error;
use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

/// Load and resolve the config file the command line names.
pub fn load_config(path: Option<&Path>) -> Result<Resolved, Error> {
    let path = crate::config::config_path(path);
    Ok(Config::load(&path)?.resolve()?)
}

/// `once`: one cycle. Shows a progress line while a long listing streams in, when stderr is a
/// terminal.
pub async fn once(resolved: &Resolved, dry_run: bool) -> Result<CycleSummary, Error> {
    let mut agent = Agent::new(resolved, if dry_run { Mode::DryRun } else { Mode::Once })?;
    let ticker = std::io::stderr()
        .is_terminal()
        .then(|| progress::spawn_progress(agent.progress()));
    let (trigger, shutdown) = crate::shutdown::channel();
    crate::shutdown::on_signals(trigger);
    let result = agent.poll(&shutdown).await;
    agent.close().await;
    if let Some(t) = ticker {
        t.abort();
        eprint!("\r\x1b[K");
    }
    match result {
        Err(Error::Sink(crate::sink::SinkError::Closed { sink, message })) => {
            tracing::info!(sink, message, "Output closed; stopping");
            Ok(CycleSummary::default())
        }
        // Events a sink refused for good (each logged as it happened): the others were
        // delivered and committed, but the command did not do all it was asked (exit 4).
        Ok(summary) if !dry_run && !summary.interrupted && summary.counters.delivered < summary.counters.new_events => {
            Err(crate::sink::SinkError::Rejected {
                sink: "kafka",
                message: format!(
                    "{} of {} new events refused for good (logged above); they are not marked sent",
                    summary.counters.new_events - summary.counters.delivered,
                    summary.counters.new_events
                ),
            }
            .into())
        }
        other => other,
    }
}

/// `run`: poll every interval until shutdown. Source and sink failures are logged and retried
/// on the next cycle (the vault or SIEM may come back); state errors end the run.
pub async fn run(resolved: &Resolved, shutdown: Shutdown, cycles: Option<u64>) -> Result<(), Error> {
    run_agent(Agent::new(resolved, Mode::Run)?, shutdown, cycles, Service::plain()).await
}

/// `run` as a service: like [`run`], and SIGHUP re-reads `config_path` (applied between
/// cycles), and systemd is notified.
pub async fn serve(
    config_path: &Path,
    resolved: &Resolved,
    shutdown: Shutdown,
    reload: Reload,
    cycles: Option<u64>,
) -> Result<(), Error> {
    crate::service::warn_if_stdout_is_journal(&resolved.config);
    let service = Service::new(Some(config_path.to_path_buf()), reload);
    run_agent(Agent::new(resolved, Mode::Run)?, shutdown, cycles, service).await
}

pub(super) async fn run_agent(
    mut agent: Agent,
    shutdown: Shutdown,
    cycles: Option<u64>,
    mut service: Service,
) -> Result<(), Error> {
    let result = run_loop(&mut agent, shutdown, cycles, &mut service).await;
    service.stopping();
    agent.close().await;
    result
}

async fn run_loop(
    agent: &mut Agent,
    mut shutdown: Shutdown,
    cycles: Option<u64>,
    service: &mut Service,
) -> Result<(), Error> {
    let mut done = 0u64;
    tracing::info!(interval_s = agent.interval().as_secs_f64(), "Polling started");
    service.ready(agent.interval());
    loop {
        let started = Instant::now();
        // The next poll starts an interval after this one started, or later when the vault
        // asked for a longer pause (Retry-After) in the answer that failed this poll.
        let mut pause = (started, Duration::ZERO);
        agent.watch_reload(service.reload_handle());
        match agent.poll(&shutdown).await {
            Ok(summary) => service.cycle_done(&summary),
            Err(Error::Sink(crate::sink::SinkError::Closed { sink, message })) => {
                tracing::info!(sink, message, "Output closed; stopping");
                return Ok(());
            }
            Err(e @ Error::State(_)) => return Err(e),
            Err(_) if shutdown.is_fired() => {}
            Err(e) => {
                pause = (Instant::now(), agent.vault_pause(&e));
                if pause.1 > agent.interval().saturating_sub(started.elapsed()) {
                    tracing::info!(
                        wait_s = pause.1.as_secs_f64(),
                        "Next poll later than the interval: the vault asked for that pause (Retry-After)"
                    );
                }
                service.cycle_failed(&e); // logged by the pipeline; the next cycle retries
            }
        }
        done += 1;
        if shutdown.is_fired() || cycles.is_some_and(|c| done >= c) {
            tracing::info!(cycles = done, "Stopped");
            return Ok(());
        }
        // What the poll freed goes back to the system before the wait (src/memory.rs).
        crate::memory::release_free();
        // Between cycles: apply reloads (also those that came during the cycle), then wait.
        loop {
            if let Some(resolved) = service.take_reload() {
                let result = agent.reload(&resolved).await;
                if result.is_ok() {
                    crate::service::warn_if_stdout_is_journal(&resolved.config);
                }
                service.reloaded(&result);
            }
            let wait = agent
                .interval()
                .saturating_sub(started.elapsed())
                .max(pause.1.saturating_sub(pause.0.elapsed()));
            tokio::select! {
                _ = tokio::time::sleep(wait) => break,
                _ = shutdown.wait() => {
                    tracing::info!(cycles = done, "Stopped");
                    return Ok(());
                }
                _ = service.reload_requested() => {}
            }
        }
    }
}

//! The agent: a [`Pipeline`] wired from a resolved config around an open store, plus what lives
//! across cycles (the store, the prune and backup timers, the timings a reload changes).

use super::export::{write_export, BACKUP_FILE};
use crate::config::{Backfill, Format, Resolved};
use crate::event::Origin;
use crate::key::KeyRef;
use crate::pipeline::{encoders_for, CycleSummary, DeliveryPolicy, Pipeline, Progress, RetryPolicy, SinkSet};
use crate::shutdown::Shutdown;
use crate::sink::Sink;
use crate::source::senhasegura::VaultClient;
use crate::state::{horizon, Dedup, Delivered, SledStore, StateError};
use crate::telemetry::Telemetry;
use crate::Error;
use chrono::Utc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Events per delivery batch.
const BATCH_SIZE: usize = 1000;
/// How often the store is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// How an agent runs: the command that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `run`: poll until shutdown; delivery retries a failing sink until it comes back or the
    /// agent stops; prunes, backs up and serves the metrics endpoint.
    Run,
    /// `once`: one cycle, committing what was delivered; delivery gives up on a sink that
    /// still fails after `delivery.give_up_after`.
    Once,
    /// `once --dry-run`: one cycle, each format printed once to stdout instead of the sinks,
    /// nothing committed (the store is read if it exists, never created); no metrics endpoint.
    DryRun,
}

impl Mode {
    fn dry_run(self) -> bool {
        self == Mode::DryRun
    }

    /// Only a running agent waits for a sink indefinitely.
    fn gives_up(self) -> bool {
        self != Mode::Run
    }
}

/// A store that knows nothing and remembers nothing (`--dry-run` where no store is yet: a
/// dry run must not create one, which would fix the first-run horizon at the preview's time).
struct EmptyStore;

impl Dedup for EmptyStore {
    fn contains(
        &self,
        _: chrono::DateTime<Utc>,
        _: Option<chrono::DateTime<Utc>>,
        _: KeyRef<'_>,
    ) -> Result<bool, StateError> {
        Ok(false)
    }
    fn commit(&self, _delivered: &[Delivered]) -> Result<(), StateError> {
        Ok(())
    }
}

/// The agent: pipeline plus what `run` needs between cycles.
pub struct Agent {
    pipeline: Pipeline,
    store: Option<Arc<SledStore>>,
    retention: Duration,
    first_run: Option<chrono::DateTime<Utc>>,
    interval: Duration,
    last_prune: Option<Instant>,
    backup_every: Duration,
    mode: Mode,
    /// `metrics.listen` as started (a change needs a restart), and what the endpoint serves.
    listen: Option<std::net::SocketAddr>,
    served: Option<Arc<crate::telemetry::server::Served>>,
}

fn first_run_horizon(backfill: Backfill) -> Option<chrono::DateTime<Utc>> {
    match backfill {
        Backfill::All => None,
        Backfill::Since(d) => Some(crate::state::before_now(Utc::now(), d)),
    }
}

fn warn_zone_change(store: &SledStore, resolved: &Resolved) -> Result<(), Error> {
    if let Some(previous) = store.remember_zone(resolved.timezone.name())? {
        tracing::warn!(previous, now = resolved.timezone.name(),
            "The vault's time zone changed since the last run: event times move, so events already delivered (since the horizon) will look new and be sent again, with the same event.id; put source.timezone back if this was not intended");
    }
    Ok(())
}

/// Client, sinks and encoders of a config around an open store.
fn build_pipeline(
    resolved: &Resolved,
    dedup: Arc<dyn Dedup>,
    mode: Mode,
    telemetry: Option<Arc<Telemetry>>,
) -> Result<Pipeline, Error> {
    let config = &resolved.config;
    let client = Arc::new(VaultClient::new(&resolved.client_settings())?);
    let sink_formats: Vec<(Sink, Format)> = if mode.dry_run() {
        // Each format once, however many sinks use it.
        let mut formats: Vec<Format> = Vec::new();
        for f in config.sinks.iter().map(|s| s.format()) {
            if !formats.contains(&f) {
                formats.push(f);
            }
        }
        formats
            .into_iter()
            .map(|f| (Sink::Stdout(Default::default()), f))
            .collect()
    } else {
        config
            .sinks
            .iter()
            .map(|s| Ok((Sink::from_config(s)?, s.format())))
            .collect::<Result<Vec<_>, crate::config::ConfigError>>()?
    };
    let (encoders, encoder_of) = encoders_for(&sink_formats, config);
    let types: Vec<&str> = sink_formats.iter().map(|(s, _)| s.name()).collect();
    let labels = crate::telemetry::sink_labels(&types);
    // A reload carries the metrics and the health over (`Telemetry::reconfigured`).
    let (interval, timeout, reminder) = (
        config.source.interval.0,
        config.source.timeout.0,
        config.log.outage_reminder.0,
    );
    let telemetry = Arc::new(match telemetry {
        Some(t) => t.reconfigured(labels, interval, timeout, reminder),
        None => Telemetry::new(labels, interval, timeout, reminder),
    });
    let sinks = SinkSet {
        sinks: sink_formats.into_iter().map(|(s, _)| s).collect(),
        encoder_of,
        encoders: Arc::new(encoders),
        policy: DeliveryPolicy {
            backoff: config.delivery.retry_backoff.0,
            backoff_max: config.delivery.retry_backoff_max.0,
            give_up_after: mode.gives_up().then_some(config.delivery.give_up_after.0),
        },
        telemetry: telemetry.clone(),
        reload: None,
        failing_time: Arc::default(),
    };
    Ok(Pipeline {
        client,
        store: dedup,
        sinks,
        origin: Arc::new(Origin {
            base_url: resolved.base_url.clone(),
            vault_host: resolved.vault_host.clone(),
            timezone: resolved.timezone,
        }),
        retry: RetryPolicy {
            retries: config.source.retries,
            backoff: config.source.retry_backoff.0,
            backoff_max: config.source.retry_backoff_max.0,
        },
        commit: !mode.dry_run(),
        batch_size: BATCH_SIZE,
        keep_original: config.ecs.include_original,
        progress: Arc::new(Progress::default()),
        telemetry,
    })
}

impl Agent {
    /// Wire an agent for `mode`: open (or create) the store, build client, sinks and encoders,
    /// and start the metrics endpoint when the mode commits.
    pub fn new(resolved: &Resolved, mode: Mode) -> Result<Agent, Error> {
        let dry_run = mode.dry_run();
        let config = &resolved.config;
        if resolved.timezone_from_host {
            tracing::warn!(
                zone = resolved.timezone.name(),
                "source.timezone is not set; reading vault times in the host's zone"
            );
        } else {
            tracing::info!(
                zone = resolved.timezone.name(),
                "Reading vault times in the configured zone"
            );
        }
        let backfill_horizon = first_run_horizon(config.source.backfill);
        let state_path = &config.state.path;
        let (store, dedup): (Option<Arc<SledStore>>, Arc<dyn Dedup>) =
            if dry_run && !crate::state::store_exists(state_path) {
                (None, Arc::new(EmptyStore))
            } else {
                let vault = (!dry_run).then_some(resolved.base_url.as_str());
                let s = Arc::new(SledStore::open(state_path, backfill_horizon, vault)?);
                if !dry_run {
                    warn_zone_change(&s, resolved)?;
                }
                (Some(s.clone()), s)
            };
        let first_run = match &store {
            Some(s) => s.meta()?.first_run_horizon,
            None => backfill_horizon,
        };
        let pipeline = build_pipeline(resolved, dedup, mode, None)?;
        let listen = config.metrics.address()?;
        let served = if dry_run {
            None
        } else {
            crate::telemetry::start(&config.metrics, &pipeline.telemetry, store.clone())?
        };
        Ok(Agent {
            pipeline,
            store,
            retention: config.state.retention.0,
            first_run,
            interval: config.source.interval.0,
            last_prune: None,
            backup_every: config.state.backup_every.0,
            mode,
            listen,
            served,
        })
    }

    /// Apply a re-read config between cycles: source, sinks and timings are rebuilt, the store
    /// is kept. A changed `state.path` is refused (it needs a restart); on any error the
    /// agent keeps running on the old config.
    pub async fn reload(&mut self, resolved: &Resolved) -> Result<(), Error> {
        let config = &resolved.config;
        if let Some(store) = &self.store {
            if config.state.path != store.path() {
                return Err(Error::Usage(format!(
                    "state.path changed from {} to {}: moving the state needs a restart",
                    store.path().display(),
                    config.state.path.display()
                )));
            }
        }
        // What can fail comes before the new telemetry is built: building it changes the
        // shared metrics (the series of sinks that are gone leave the scrape).
        if let Some(store) = &self.store {
            warn_zone_change(store, resolved)?;
        }
        let pipeline = build_pipeline(
            resolved,
            self.pipeline.store.clone(),
            self.mode,
            Some(self.pipeline.telemetry.clone()),
        )?;
        let listen = config.metrics.address()?;
        if listen != self.listen {
            let shown = |a: Option<std::net::SocketAddr>| a.map_or_else(|| "unset".to_string(), |a| a.to_string());
            tracing::warn!(
                serving = %shown(self.listen),
                configured = %shown(listen),
                "metrics.listen changed: the endpoint stays where it is until a restart"
            );
        }
        if let Some(served) = &self.served {
            served.replace(pipeline.telemetry.clone());
        }
        let mut old = std::mem::replace(&mut self.pipeline, pipeline);
        old.sinks.close().await;
        // A Kafka producer purges and flushes again when dropped (for up to 500 ms when its
        // broker is away), as in `KafkaSink::renew_producer`: not on the async runtime.
        tokio::task::spawn_blocking(move || drop(old));
        self.retention = config.state.retention.0;
        self.interval = config.source.interval.0;
        self.backup_every = config.state.backup_every.0;
        Ok(())
    }

    /// Time between the starts of two polls.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How long a poll that ended in `e` asks the next one to hold off: what the vault asked in
    /// `Retry-After`, capped as the retries within a poll are.
    pub fn vault_pause(&self, e: &Error) -> Duration {
        match e {
            Error::Source(se) => self.pipeline.retry.asked(se),
            _ => Duration::ZERO,
        }
    }

    fn prune_if_due(&mut self) -> Result<(), Error> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        if !self.pipeline.commit || self.last_prune.is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
            return Ok(());
        }
        let cutoff = crate::state::before_now(Utc::now(), self.retention);
        let removed = store.prune(cutoff)?;
        self.pipeline.telemetry.metrics.state_keys.sub(removed as i64);
        if removed > 0 {
            tracing::info!(removed, "Pruned state entries older than the retention");
        }
        self.last_prune = Some(Instant::now());
        Ok(())
    }

    /// Write `backup.jsonl` into the state directory when the last one is older than
    /// `state.backup_every` (judged by the file's age, so it works across `once` runs too).
    fn backup_if_due(&self) -> Result<(), Error> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        if !self.pipeline.commit || self.backup_every.is_zero() {
            return Ok(());
        }
        let path = store.path().join(BACKUP_FILE);
        let age = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok());
        if age.is_some_and(|a| a < self.backup_every) {
            return Ok(());
        }
        // A backup that cannot be written (a full disk, no file descriptor left) is worth a
        // warning at every poll until it works, not the agent's end: the store itself is fine.
        match write_export(store, &path, "state backup") {
            Ok(n) => tracing::info!(keys = n, file = %path.display(), "State backup written"),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "Cannot write the state backup; trying again after the next poll")
            }
        }
        Ok(())
    }

    /// Let a reload requested from now on abandon a batch a failing sink holds up (`run`).
    pub fn watch_reload(&mut self, reload: Option<crate::shutdown::Reload>) {
        self.pipeline.sinks.reload = reload;
    }

    /// One cycle.
    pub async fn poll(&mut self, shutdown: &Shutdown) -> Result<CycleSummary, Error> {
        self.prune_if_due()?;
        self.backup_if_due()?;
        let h = horizon(Utc::now(), self.retention, self.first_run);
        self.pipeline.poll(h, shutdown).await
    }

    /// Close sink connections politely (at exit).
    pub async fn close(&mut self) {
        self.pipeline.sinks.close().await;
    }

    /// Live progress of the current listing.
    pub fn progress(&self) -> Arc<Progress> {
        self.pipeline.progress.clone()
    }
}

//! The commands as library calls: `run`, `once`, `check`, `state`, `demo`, `simulate`.
//! `main.rs` parses the command line and maps the returned [`Error`] to an exit code; this
//! file wires config, client, store, sinks and pipeline together and owns nothing else.

use crate::cli::StateAction;
use crate::config::{Backfill, Config, Format, Resolved};
use crate::event::Origin;
use crate::key::{EventKey, KeyRef, Phase};
use crate::pipeline::{encoders_for, CycleSummary, DeliveryPolicy, Pipeline, Progress, RetryPolicy, SinkSet};
use crate::service::Service;
use crate::shutdown::{Reload, Shutdown};
use crate::simulate::{SimOptions, Simulator};
use crate::sink::Sink;
use crate::source::senhasegura::VaultClient;
use crate::state::{horizon, Dedup, Delivered, SledStore, StateError};
use crate::telemetry::Telemetry;
use crate::Error;
use chrono::Utc;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Events per delivery batch.
const BATCH_SIZE: usize = 1000;
/// The state backup's file name, inside the state directory.
pub const BACKUP_FILE: &str = "backup.jsonl";
/// How often the store is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// A store that knows nothing and remembers nothing (`--dry-run` without a state directory).
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

/// Load and resolve the config file the command line names.
pub fn load_config(path: Option<&Path>) -> Result<Resolved, Error> {
    let path = crate::config::config_path(path);
    Ok(Config::load(&path)?.resolve()?)
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
    dry_run: bool,
    once: bool,
    telemetry: Option<Arc<Telemetry>>,
) -> Result<Pipeline, Error> {
    let config = &resolved.config;
    let client = Arc::new(VaultClient::new(&resolved.client_settings())?);
    let sink_formats: Vec<(Sink, Format)> = if dry_run {
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
    // A reload keeps the telemetry (its endpoint serves it) unless the sinks changed.
    let telemetry = match telemetry {
        Some(t) if t.sink_names() == labels.as_slice() => t,
        previous => {
            if previous.is_some() {
                tracing::warn!("The reloaded config has other sinks: their metrics start from zero, and the endpoint keeps serving the old sinks' until a restart");
            }
            Arc::new(Telemetry::new(
                labels,
                config.source.interval.0,
                config.source.timeout.0,
                config.log.outage_reminder.0,
            ))
        }
    };
    let sinks = SinkSet {
        sinks: sink_formats.into_iter().map(|(s, _)| s).collect(),
        encoder_of,
        encoders: Arc::new(encoders),
        policy: DeliveryPolicy {
            backoff: config.delivery.retry_backoff.0,
            backoff_max: config.delivery.retry_backoff_max.0,
            give_up_after: once.then_some(config.delivery.give_up_after.0),
        },
        telemetry: telemetry.clone(),
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
        commit: !dry_run,
        batch_size: BATCH_SIZE,
        keep_original: config.ecs.include_original,
        progress: Arc::new(Progress::default()),
        telemetry,
    })
}

impl Agent {
    /// Wire an agent. `dry_run` prints each format to stdout and commits nothing; `once`
    /// makes delivery give up after a minute instead of retrying until shutdown.
    pub fn new(resolved: &Resolved, dry_run: bool, once: bool) -> Result<Agent, Error> {
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
        let (store, dedup): (Option<Arc<SledStore>>, Arc<dyn Dedup>) = if dry_run && !state_path.exists() {
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
        let pipeline = build_pipeline(resolved, dedup, dry_run, once, None)?;
        if !dry_run {
            crate::telemetry::start(&config.metrics, &pipeline.telemetry, store.clone())?;
        }
        Ok(Agent {
            pipeline,
            store,
            retention: config.state.retention.0,
            first_run,
            interval: config.source.interval.0,
            last_prune: None,
            backup_every: config.state.backup_every.0,
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
        let pipeline = build_pipeline(
            resolved,
            self.pipeline.store.clone(),
            !self.pipeline.commit,
            false,
            Some(self.pipeline.telemetry.clone()),
        )?;
        if let Some(store) = &self.store {
            warn_zone_change(store, resolved)?;
        }
        let mut old = std::mem::replace(&mut self.pipeline, pipeline);
        old.sinks.close().await;
        self.retention = config.state.retention.0;
        self.interval = config.source.interval.0;
        self.backup_every = config.state.backup_every.0;
        Ok(())
    }

    /// Time between the starts of two polls.
    pub fn interval(&self) -> Duration {
        self.interval
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
        let io = |source: std::io::Error| StateError::File {
            path: path.clone(),
            source,
        };
        let tmp = path.with_extension("jsonl.tmp");
        let file = std::fs::File::create(&tmp).map_err(io)?;
        let mut out = std::io::BufWriter::new(file);
        let n = store.export(&mut out)?;
        out.into_inner()
            .map_err(|e| io(e.into_error()))?
            .sync_all()
            .map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        tracing::info!(keys = n, file = %path.display(), "State backup written");
        Ok(())
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

/// `once`: one cycle. Shows a progress line while a long listing streams in, when stderr is a
/// terminal.
pub async fn once(resolved: &Resolved, dry_run: bool) -> Result<CycleSummary, Error> {
    let mut agent = Agent::new(resolved, dry_run, true)?;
    let ticker = std::io::stderr()
        .is_terminal()
        .then(|| spawn_progress(agent.progress()));
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
        other => other,
    }
}

fn spawn_progress(progress: Arc<Progress>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            let mb = progress.bytes.load(Ordering::Relaxed) as f64 / 1e6;
            let records = progress.records.load(Ordering::Relaxed);
            eprint!(
                "\r\x1b[Kreading listing: {mb:.1} MB, {records} records, {}s",
                started.elapsed().as_secs()
            );
        }
    })
}

/// `run`: poll every interval until shutdown. Source and sink failures are logged and retried
/// on the next cycle (the vault or SIEM may come back); state errors end the run.
pub async fn run(resolved: &Resolved, shutdown: Shutdown, cycles: Option<u64>) -> Result<(), Error> {
    run_agent(Agent::new(resolved, false, false)?, shutdown, cycles, Service::plain()).await
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
    run_agent(Agent::new(resolved, false, false)?, shutdown, cycles, service).await
}

async fn run_agent(
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
    tracing::info!(interval_s = agent.interval.as_secs_f64(), "Polling started");
    service.ready(agent.interval);
    loop {
        let started = Instant::now();
        match agent.poll(&shutdown).await {
            Ok(summary) => service.cycle_done(&summary),
            Err(Error::Sink(crate::sink::SinkError::Closed { sink, message })) => {
                tracing::info!(sink, message, "Output closed; stopping");
                return Ok(());
            }
            Err(e @ Error::State(_)) => return Err(e),
            Err(_) if shutdown.is_fired() => {}
            Err(e) => service.cycle_failed(&e), // logged by the pipeline; the next cycle retries
        }
        done += 1;
        if shutdown.is_fired() || cycles.is_some_and(|c| done >= c) {
            tracing::info!(cycles = done, "Stopped");
            return Ok(());
        }
        // Between cycles: apply reloads (also those that came during the cycle), then wait.
        loop {
            if let Some(resolved) = service.take_reload() {
                let result = agent.reload(&resolved).await;
                if result.is_ok() {
                    crate::service::warn_if_stdout_is_journal(&resolved.config);
                }
                service.reloaded(&result);
            }
            let wait = agent.interval.saturating_sub(started.elapsed());
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

/// `state ...`.
pub fn state(config_path: Option<&Path>, state_dir: Option<PathBuf>, action: StateAction) -> Result<(), Error> {
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
    let file_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source: std::io::Error| Error::State(StateError::File { path, source })
    };
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
                println!("{key}\t{}", time.to_rfc3339());
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
                Some(file) => {
                    let mut opts = std::fs::OpenOptions::new();
                    opts.write(true).create(true).truncate(true);
                    #[cfg(unix)]
                    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                    let f = opts.open(&file).map_err(file_error(&file))?;
                    store.export(&mut std::io::BufWriter::new(f))?
                }
                None => store.export(&mut std::io::stdout().lock())?,
            };
            eprintln!("exported {n} key(s)");
        }
        StateAction::Import { file } => {
            let n = if file.as_os_str() == "-" {
                store.import(&mut std::io::stdin().lock())?
            } else {
                let f = std::fs::File::open(&file).map_err(file_error(&file))?;
                store.import(&mut std::io::BufReader::new(f))?
            };
            eprintln!("imported {n} key(s)");
        }
    }
    Ok(())
}

/// `simulate`: serve until shutdown; the first stdout line is the base URL.
pub async fn simulate(opts: SimOptions, mut shutdown: Shutdown) -> Result<(), Error> {
    let sim = Simulator::start(opts).await.map_err(Error::Usage)?;
    println!("{}", sim.base_url);
    use std::io::Write;
    let _ = std::io::stdout().flush();
    shutdown.wait().await;
    Ok(())
}

/// `demo`: a growing simulator and the agent polling it to stdout, temporary state, no config.
pub async fn demo(cycles: Option<u64>, interval: u64, shutdown: Shutdown) -> Result<(), Error> {
    let opts = SimOptions {
        sessions: 12,
        active: 3,
        grow: 2,
        history: Duration::from_secs(7200),
        ..SimOptions::default()
    };
    let sim = Simulator::start(opts.clone()).await.map_err(Error::Usage)?;
    let dir = tempfile::tempdir().map_err(|source| StateError::File {
        path: std::env::temp_dir(),
        source,
    })?;
    let toml = format!(
        "[source]\nurl = \"{url}\"\ntimezone = \"UTC\"\ninterval = \"{interval}s\"\nbackfill = \"all\"\n\
         [source.auth]\nclient_id = \"{id}\"\nclient_secret = \"{secret}\"\n\
         [state]\npath = {state}\n[[sink]]\ntype = \"stdout\"\nformat = \"ecs\"\n",
        url = sim.base_url,
        id = opts.client_id,
        secret = opts.client_secret,
        state = toml::Value::String(dir.path().join("state").display().to_string()),
    );
    let resolved = Config::from_toml(&toml, Path::new("<demo>"))?.resolve()?;
    tracing::info!(simulator = %sim.base_url, "Demo: polling a simulated vault that grows by 2 sessions per poll; Ctrl-C stops");
    run_agent(Agent::new(&resolved, false, false)?, shutdown, cycles, Service::plain()).await
}

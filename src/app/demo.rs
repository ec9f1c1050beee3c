//! `simulate` and `demo`: the loopback vault on its own, and with an agent polling it.

use super::{run_agent, Agent, Mode};
use crate::config::{
    AuthConfig, Backfill, Config, ConfigError, Expanded, HumanDuration, Secret, SourceConfig, MAX_DURATION,
};
use crate::service::Service;
use crate::shutdown::Shutdown;
use crate::simulate::{SimOptions, Simulator};
use crate::state::StateError;
use crate::Error;
use std::time::Duration;

/// `simulate`: serve until shutdown; the first stdout line is the base URL.
pub async fn simulate(opts: SimOptions, mut shutdown: Shutdown) -> Result<(), Error> {
    let sim = Simulator::start(opts).await.map_err(Error::Usage)?;
    // Ignored when nobody reads it: the simulator serves all the same.
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{}", sim.base_url).and_then(|()| out.flush());
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
        what: "cannot create a temporary state directory in",
        path: std::env::temp_dir(),
        source,
    })?;
    let interval = Duration::from_secs(interval);
    if interval > MAX_DURATION {
        return Err(ConfigError::Invalid {
            key: "demo --interval",
            message: "longer than 100 years".into(),
        }
        .into());
    }
    let auth = AuthConfig::client_credentials(opts.client_id, Secret::new(opts.client_secret));
    let mut source = SourceConfig::new(sim.base_url.clone(), auth);
    source.timezone = Some(Expanded("UTC".into()));
    source.interval = HumanDuration(interval);
    source.backfill = Backfill::All;
    let mut config = Config::new(source);
    config.state.path = dir.path().join("state");
    let resolved = config.resolve()?;
    tracing::info!(simulator = %sim.base_url, "Demo: polling a simulated vault that grows by 2 sessions per poll; Ctrl-C stops");
    run_agent(Agent::new(&resolved, Mode::Run)?, shutdown, cycles, Service::plain()).await
}

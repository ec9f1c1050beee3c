//! The binary: set up logging and the umask, parse the command line, call the library, and map
//! errors to the documented exit codes. No logic lives here.

use clap::Parser;
use senhasegura_forwarder::cli::{Cli, Command, LogFormat};
use senhasegura_forwarder::{app, memory, shutdown, Error};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

fn init_logging(cli: &Cli) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn dispatch(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Run { config, cycles } => {
            // First, so that a SIGHUP during start-up does not kill the agent.
            let reload = shutdown::on_reload().map_err(|e| Error::Usage(format!("cannot listen for SIGHUP: {e}")))?;
            let path = senhasegura_forwarder::config::config_path(config.config.as_deref());
            let resolved = app::load_config(Some(&path))?;
            let (trigger, sd) = shutdown::channel();
            shutdown::on_signals(trigger);
            app::serve(&path, &resolved, sd, reload, cycles).await
        }
        Command::Once { config, dry_run } => {
            let resolved = app::load_config(config.config.as_deref())?;
            app::once(&resolved, dry_run).await.map(|_| ())
        }
        Command::Check { config, offline } => {
            let path = senhasegura_forwarder::config::config_path(config.config.as_deref());
            senhasegura_forwarder::check::run(&path, offline).await
        }
        Command::State {
            config,
            state_dir,
            action,
        } => app::state(config.config.as_deref(), state_dir, action),
        Command::Simulate(opts) => {
            let (trigger, sd) = shutdown::channel();
            shutdown::on_signals(trigger);
            app::simulate(*opts, sd).await
        }
        Command::PackageAssets { dir } => senhasegura_forwarder::assets::write(&dir)
            .map_err(|e| Error::Usage(format!("cannot write to {}: {e}", dir.display()))),
        Command::Demo { cycles, interval } => {
            let (trigger, sd) = shutdown::channel();
            shutdown::on_signals(trigger);
            app::demo(cycles, interval, sd).await
        }
    }
}

/// Apply the allocator settings of `senhasegura_forwarder::memory` the operator did not choose
/// through glibc's variables; returns those glibc refused.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator(role: memory::Role) -> Vec<memory::Setting> {
    memory::to_apply(role, |name| std::env::var(name).ok())
        .into_iter()
        // SAFETY: mallopt takes two integers and only changes the allocator's parameters;
        // glibc takes its own locks, and no other thread runs yet.
        .filter(|s| unsafe { libc::mallopt(s.param, s.value) } != 1)
        .collect()
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator(_role: memory::Role) -> Vec<memory::Setting> {
    Vec::new()
}

/// glibc's `malloc_trim(0)`: the free pages of every heap back to the system (`run` calls it
/// between polls through `memory::release_free`). True when memory was released.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heaps() -> bool {
    // SAFETY: malloc_trim takes an integer, takes glibc's own arena locks and only releases
    // pages no allocation uses.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Start this program again in this process, with glibc's per-thread cache of freed blocks
/// turned off, when the environment does not choose it (`memory::restart_tunables`). Returns
/// only when there was nothing to do (`None`) or the new start failed (the process goes on
/// with the cache). Before anything else: no thread, no open file of ours, nothing read.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn restart_without_tcache() -> Option<std::io::Error> {
    use std::os::unix::process::CommandExt;
    let tunables = memory::restart_tunables(
        std::env::var_os("GLIBC_TUNABLES").as_deref(),
        std::env::var_os(memory::RESTARTED).is_some(),
    )?;
    let mut args = std::env::args_os();
    let arg0 = args.next()?;
    // The running image itself, even if a package upgrade replaced the file on disk.
    Some(
        std::process::Command::new("/proc/self/exe")
            .arg0(arg0)
            .args(args)
            .env("GLIBC_TUNABLES", tunables)
            .env(memory::RESTARTED, "1")
            .exec(),
    )
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn restart_without_tcache() -> Option<std::io::Error> {
    None
}

fn main() -> ExitCode {
    let not_restarted = restart_without_tcache();
    // State, exports and anything else this process creates is private to its user.
    rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o077));
    let cli = Cli::parse();
    // Before any thread starts (parsing starts none): large buffers mapped on their own, one
    // arena for the commands that poll again and again, two for the others (src/memory.rs).
    let refused = tune_allocator(memory::Role::of(&cli.command));
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    memory::on_release(trim_heaps);
    init_logging(&cli);
    if let Some(e) = not_restarted {
        tracing::warn!(error = %e, "Could not start again without glibc's per-thread cache; it stays on");
    }
    for s in refused {
        tracing::debug!(
            setting = s.env,
            value = s.value,
            "The allocator refused a setting; its default stays"
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(memory::WORKER_THREADS)
        .max_blocking_threads(memory::BLOCKING_THREADS)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // `check` prints each failure as its own FAIL line; the others report it once here: a
    // log record in JSON mode, a plain `error:` line otherwise.
    let reported = matches!(cli.command, Command::Check { .. });
    let json = cli.log_format == LogFormat::Json;
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once: a JSON line in JSON mode (nothing else may reach stderr), else plain text;
            // `check` already printed each failure as its own FAIL line.
            match (reported, json) {
                (true, _) => {}
                (false, true) => tracing::error!(error = %e, exit_code = e.exit_code(), "Exiting"),
                // Not eprintln!, which panics when stderr is a closed pipe: the exit code stays.
                (false, false) => {
                    let _ = writeln!(std::io::stderr(), "error: {e}");
                }
            }
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

//! `check`: one line per item, each problem printed once, exit code of the first failure.
//!
//! `check --offline` needs no network and is what the systemd unit runs before start: the
//! config (syntax, values, secret files that are regular and readable), the vault's CA file,
//! the state directory (owned by this user, writable, or creatable), and every sink's settings
//! (syslog facility, CA, client certificate and key; Kafka properties through librdkafka's own
//! validation). `check` does the same, then gets a token, reads the listing's headers and
//! health-checks every sink.

use crate::config::{ConfigError, Resolved};
use crate::sink::Sink;
use crate::source::senhasegura::VaultClient;
use crate::state::StateError;
use crate::Error;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One line of the report, on stdout; a reader that went away (`check | head -1`) is no reason to
/// stop checking or to panic (`println!` would): the exit code still gives the verdict.
fn report(ok: bool, what: &str, detail: &str) {
    let _ = writeln!(
        std::io::stdout(),
        "{} {what}: {detail}",
        if ok { "ok  " } else { "FAIL" }
    );
}

fn warn(what: &str, detail: &str) {
    let _ = writeln!(std::io::stdout(), "warn {what}: {detail}");
}

/// Print the failure line and pass the error on.
fn fail<E: Into<Error>>(what: &str, e: E) -> Error {
    let e = e.into();
    report(false, what, &e.to_string());
    e
}

/// Run the checks. Every failure was printed as a `FAIL` line when this returns `Err`.
pub async fn run(config_path: &Path, offline: bool) -> Result<(), Error> {
    let resolved = offline_checks(config_path, offline)?;
    if offline {
        return Ok(());
    }
    let client = VaultClient::new(&resolved.client_settings()).map_err(|e| fail("source", e))?;
    client.authenticate().await.map_err(|e| fail("token", e))?;
    if client.auth_method() == "oauth2" {
        report(true, "token", "obtained an access token");
    } else {
        report(
            true,
            "auth",
            "OAuth 1.0a: requests are signed, there is no token to fetch",
        );
    }
    let (resp, _) = client.open_listing().await.map_err(|e| fail("listing", e))?;
    report(
        true,
        "listing",
        &format!(
            "{}{} answered HTTP {}",
            resolved.base_url,
            client.path(),
            resp.status().as_u16()
        ),
    );
    drop(resp);
    for sink_config in &resolved.config.sinks {
        let what = format!("sink {}", sink_config.name());
        let mut sink = Sink::from_config(sink_config).map_err(|e| fail(&what, e))?;
        let detail = sink.health_check().await.map_err(|e| fail(&what, e))?;
        report(true, &what, &detail);
    }
    Ok(())
}

/// Everything that needs no network; returns the resolved config. Sink lines are printed
/// here only when `sink_lines` (the online check prints one line per sink after its test).
fn offline_checks(config_path: &Path, sink_lines: bool) -> Result<Resolved, Error> {
    let config = crate::config::Config::load(config_path).map_err(|e| fail("config", e))?;
    // Secret files first: resolving reads them, and a FIFO or a directory must not hang it.
    let auth = &config.source.auth;
    for (key, file) in [
        ("source.auth.client_secret_file", &auth.client_secret_file),
        ("source.auth.token_secret_file", &auth.token_secret_file),
    ] {
        if let Some(path) = file {
            regular_file(key, path).map_err(|e| fail("secret", e))?;
        }
    }
    if let Some(ca) = &config.source.ca_file {
        regular_file("source.ca_file", ca).map_err(|e| fail("source ca", e))?;
    }
    let resolved = config.resolve().map_err(|e| fail("config", e))?;
    report(true, "config", &config_path.display().to_string());
    if resolved.timezone_from_host {
        warn(
            "timezone",
            &format!(
                "source.timezone is not set; the host's zone {} is used. Set it to the vault's zone.",
                resolved.timezone.name()
            ),
        );
    } else {
        report(true, "timezone", resolved.timezone.name());
    }
    if let Some(host) = crate::source::senhasegura::client::cleartext_host(&resolved.base_url) {
        warn(
            "tls",
            &format!("source.url is http:// to {host}: the client secret and the tokens cross the network in cleartext; use https://"),
        );
    }
    if resolved.config.source.insecure {
        warn("tls", "source.insecure = true turns certificate verification off");
    }
    // Builds the HTTP client: reads and parses source.ca_file. No request is made.
    let client = VaultClient::new(&resolved.client_settings()).map_err(|e| fail("source", e))?;
    report(
        true,
        "source",
        &format!("{} ({})", resolved.base_url, client.auth_method()),
    );
    let state = &resolved.config.state.path;
    let detail = state_dir(state).map_err(|e| fail("state", e))?;
    report(true, "state", &detail);
    for sink_config in &resolved.config.sinks {
        let what = format!("sink {}", sink_config.name());
        // Validates names, reads CA and key files, and has librdkafka check the properties
        // (without a broker to resolve: offline).
        Sink::validate(sink_config).map_err(|e| fail(&what, e))?;
        if sink_lines {
            report(true, &what, "settings are valid");
        }
        // Not a failure: the directory may be a mount that comes later, and the sink recovers
        // when it is there. But a typo would hold every poll up until then.
        if let crate::sink::SinkConfig::File(f) = sink_config {
            if let Some(dir) = f.path.parent().filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
                warn(
                    &what,
                    &format!(
                        "directory {} does not exist: the sink fails (and holds up delivery) until it does",
                        dir.display()
                    ),
                );
            }
        }
    }
    Ok(resolved)
}

/// A file that exists, is a regular file and can be opened for reading.
fn regular_file(key: &'static str, path: &Path) -> Result<(), ConfigError> {
    let err = |source: std::io::Error| ConfigError::SecretFile {
        key,
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(err)?;
    if !meta.is_file() {
        return Err(ConfigError::Invalid {
            key,
            message: format!("{} is not a regular file", path.display()),
        });
    }
    std::fs::File::open(path).map_err(err)?;
    Ok(())
}

/// The state directory is usable by this process: it exists, is a directory owned by this
/// user and writable, or it can be created.
fn state_dir(path: &Path) -> Result<String, StateError> {
    let bad = |message: String| StateError::Unusable {
        path: path.to_path_buf(),
        message,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = nearest_existing_parent(path);
            return match rustix::fs::access(&parent, rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK) {
                Ok(()) => Ok(format!(
                    "{} does not exist yet; it will be created (0700)",
                    path.display()
                )),
                Err(e) => Err(bad(format!(
                    "does not exist and cannot be created: {} is not writable by this user ({e})",
                    parent.display()
                ))),
            };
        }
        Err(e) => return Err(bad(e.to_string())),
    };
    if !meta.is_dir() {
        return Err(bad("is not a directory".into()));
    }
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(bad(format!(
            "is owned by uid {}, but the agent runs as uid {me}; chown it to the agent's user",
            meta.uid()
        )));
    }
    rustix::fs::access(path, rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK)
        .map_err(|e| bad(format!("is not writable: {e}")))?;
    if meta.mode() & 0o007 != 0 {
        return Err(bad(format!(
            "is accessible by others (mode {:o}); chmod 0700 it",
            meta.mode() & 0o7777
        )));
    }
    Ok(format!("{} is owned by this user and writable", path.display()))
}

fn nearest_existing_parent(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    while !p.exists() {
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent.to_path_buf(),
            _ => return PathBuf::from("."),
        }
    }
    p
}

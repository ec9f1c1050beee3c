//! The configuration (docs/design.md, "Configuration"): where it is read from and how.
//!
//! Loading is one step: read the file, parse TOML into the `deny_unknown_fields` structs of
//! `tree.rs` (so an unknown key or a bad value fails with the key and the line), then resolve
//! what needs the outside world (secret files, the time zone) in `resolve.rs`. Nothing here
//! opens a socket.

mod resolve;
mod tree;

pub use crate::settings::{
    expand_with, to_chrono, Backfill, ConfigError, Expanded, HumanDuration, Secret, MAX_DURATION,
};
pub use crate::sink::{SinkConfig, StdoutSinkConfig};
pub use crate::source::senhasegura::{PATH_V3, PATH_V4, TOKEN_PATH};
pub use resolve::{host_timezone, read_secret_file, regular_file, Resolved};
pub use tree::*;

use std::path::{Path, PathBuf};

/// Where the config is read from when neither `-c` nor the environment names one.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/senhasegura-forwarder/config.toml";
/// The environment variable that names the config file.
pub const CONFIG_ENV: &str = "SENHASEGURA_FORWARDER_CONFIG";
/// The config file to read: `-c`, else the environment, else the default path.
pub fn config_path(explicit: Option<&Path>) -> PathBuf {
    match explicit {
        Some(p) => p.to_path_buf(),
        None => env_config_path().unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH)),
    }
}

/// The config file [`CONFIG_ENV`] names, if it names one.
pub fn env_config_path() -> Option<PathBuf> {
    std::env::var_os(CONFIG_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}
/// The TOML error for the operator, without any value of the file: the packaged unit runs
/// `check` before every start, into the journal, and a value may be a secret (under a key
/// misspelled, or inside an inline table, as well). So: line, column, the line up to its `=`
/// (the key), and the parser's message with the value it quotes cut out.
fn parse_message(e: &toml::de::Error, text: &str) -> String {
    let message = without_quoted_value(e.message().trim_end());
    let Some(span) = e.span() else { return message };
    let before = text.get(..span.start).unwrap_or(text);
    let line_no = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or(before).chars().count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or_default();
    let key = match line.split_once('=') {
        Some((key, _)) => format!(" (`{} = …`)", crate::settings::excerpt(key.trim())),
        None => String::new(),
    };
    format!("TOML parse error at line {line_no}, column {column}{key}: {message}")
}

/// serde quotes the value in its "invalid type: …" and "invalid value: …" messages (a string
/// in double quotes, anything else in backticks): drop it, it may be a secret.
fn without_quoted_value(message: &str) -> String {
    if !(message.starts_with("invalid type:") || message.starts_with("invalid value:")) {
        return message.to_string();
    }
    // serde quotes a string value with its Debug form: `string "…", expected …`.
    if let (Some(start), Some(end)) = (message.find("string \""), message.rfind("\", expected")) {
        if end > start {
            return format!("{}string{}", &message[..start], &message[end + 1..]);
        }
    }
    let mut parts = message.splitn(3, '`');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(head), Some(_value), Some(tail)) => format!("{}{}", head.trim_end(), tail),
        _ => message.to_string(),
    }
}

impl Config {
    /// Parse TOML text; `origin` names the file in messages.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: parse_message(&e, text),
        })?;
        if config.sinks.is_empty() {
            config.sinks.push(tree::default_sink());
        }
        Ok(config)
    }

    /// Read and parse a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("test.toml"))
    }

    const MINIMAL: &str = "[source]\nurl = \"https://v\"\n[source.auth]\nclient_id = \"a\"\nclient_secret = \"b\"\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.sinks.len(), 1);
        assert_eq!(c.source.interval.0, Duration::from_secs(60));
        assert_eq!(c.state.retention.0, Duration::from_secs(90 * 86400));
        let r = c.resolve().unwrap();
        assert_eq!(r.vault_host, "v");
    }

    #[test]
    fn config_built_in_code_has_the_file_defaults() {
        let built = Config::new(SourceConfig::new(
            "https://v",
            AuthConfig::client_credentials("a", Secret::new("b")),
        ));
        assert_eq!(format!("{built:?}"), format!("{:?}", parse(MINIMAL).unwrap()));
        assert_eq!(built.resolve().unwrap().client_secret.expose(), "b");
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = parse(&format!("{MINIMAL}[state]\npath = \"/x\"\nretension = \"1d\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("retension"), "{err}");
        assert!(err.contains("line 8"), "{err}");
    }

    #[test]
    fn unknown_sink_key_is_rejected() {
        let err = parse(&format!("{MINIMAL}[[sink]]\ntype = \"stdout\"\nformt = \"ecs\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("formt"), "{err}");
    }

    #[test]
    fn bad_duration_names_value() {
        let err = parse(&MINIMAL.replace("[source.auth]", "interval = \"soon\"\n[source.auth]"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("soon") && err.contains("interval") || err.contains("line 3"),
            "{err}"
        );
    }

    #[test]
    fn a_string_of_the_wrong_type_is_not_echoed() {
        let text = format!(
            "{MINIMAL}[[sink]]\ntype = \"kafka\"\nbrokers = \"b:9092\"\ntopic = \"t\"\nproperties = \"sasl.password=hunter2\"\n"
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(
            err.contains("line 6") && err.contains("invalid type: string, expected a map"),
            "{err}"
        );
    }

    #[test]
    fn a_zero_retry_delay_is_refused_by_name() {
        for (section, key) in [
            ("source", "retry_backoff"),
            ("source", "retry_backoff_max"),
            ("delivery", "retry_backoff"),
            ("delivery", "retry_backoff_max"),
        ] {
            let text = if section == "source" {
                MINIMAL.replace("[source.auth]", &format!("{key} = \"0s\"\n[source.auth]"))
            } else {
                format!("{MINIMAL}[delivery]\n{key} = \"0s\"\n")
            };
            let err = parse(&text).unwrap().resolve().unwrap_err().to_string();
            assert!(
                err.contains(&format!("{section}.{key}: must be at least 10ms")),
                "{err}"
            );
        }
    }

    #[test]
    fn api_paths_must_start_with_a_slash() {
        let err = parse(&MINIMAL.replace("[source.auth]", "path = \"api/session/remotesessions\"\n[source.auth]"))
            .unwrap()
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(err.contains("source.path: must start with /"), "{err}");
        let err = parse(&format!("{MINIMAL}token_path = \"iso/oauth2/token\"\n"))
            .unwrap()
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(err.contains("source.auth.token_path: must start with /"), "{err}");
        assert!(parse(MINIMAL).unwrap().resolve().is_ok());
    }

    #[test]
    fn bad_timezone_is_an_error() {
        let c = parse(&MINIMAL.replace("[source.auth]", "timezone = \"Mars/Base\"\n[source.auth]")).unwrap();
        assert!(c.resolve().unwrap_err().to_string().contains("Mars/Base"));
    }
}

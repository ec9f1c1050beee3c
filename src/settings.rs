//! Value types every component's settings are written in: human durations (`"90s"`, `"24h"`,
//! `"90d"`), strings with `${VAR}` expanded from the environment, secrets that never print,
//! and the error for a bad setting. Each one fails with a message that names what is wrong;
//! toml adds the key and line. A leaf module: the configuration tree (`config`) and the
//! components that own their parts of it (sinks, telemetry) depend on it, not on each other.
// Input path: nothing here may panic on what came from the network, a file or the clock.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A `*_file` path for an error message. A secret written into such a key by mistake must not
/// reach the journal, so the value is shown only when it is evidently a path: the file exists
/// (the error is not "not found"), or the directory it names does (and is not `/`).
pub fn shown_secret_path(key: &str, path: &std::path::Path, error: &std::io::Error) -> String {
    let parent_exists = path
        .parent()
        .is_some_and(|p| !p.as_os_str().is_empty() && p != std::path::Path::new("/") && p.is_dir());
    if error.kind() != std::io::ErrorKind::NotFound || parent_exists {
        format!("`{}`", printable(&path.to_string_lossy(), 256))
    } else if key.ends_with("secret_file") {
        "(the value is not shown: no such file or directory; the secret itself goes in the key \
         without `_file`)"
            .to_string()
    } else {
        "(the value is not shown: no such file or directory)".to_string()
    }
}

/// A short, printable excerpt of a text from outside (the vault, a file, an argument), for log
/// lines and error messages: at most 64 characters, control characters and quotes escaped, `…`
/// when cut.
pub fn excerpt(text: &str) -> String {
    printable(text, 64)
}

/// `text` with control characters and quotes escaped (no line of it can pass for a log line of
/// its own), cut to `max` characters with `…`.
pub fn printable(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).flat_map(char::escape_debug).collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// A configuration problem: always names the key, file or value at fault (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// TOML syntax, an unknown key, or a bad value (the message has key and line).
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value that parsed but makes no sense.
    #[error("invalid config: {key}: {message}")]
    Invalid { key: &'static str, message: String },
    /// A secret file that could not be read. The path is shown only when it looks like one: a
    /// secret written into a `_file` key by mistake must not reach the journal.
    #[error("cannot read {key} {shown}: {source}", shown = shown_secret_path(key, .path, .source))]
    SecretFile {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A duration written as a human string: `"500ms"`, `"60s"`, `"10m"`, `"24h"`, `"90d"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

/// The longest duration any setting takes: 100 years (of 365.25 days, as `"100y"` reads). Longer values are typos or tests of the parser, and
/// bounding them here keeps every later time computation (`now - retention`) in range.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

impl HumanDuration {
    /// Parse `"60s"`-style text, at most [`MAX_DURATION`].
    pub fn parse(text: &str) -> Result<HumanDuration, String> {
        let d = humantime::parse_duration(text.trim())
            .map_err(|e| format!("invalid duration `{text}` ({e}); write e.g. \"90s\", \"10m\", \"24h\" or \"90d\""))?;
        if d > MAX_DURATION {
            return Err(format!("duration `{text}` is longer than 100 years"));
        }
        Ok(HumanDuration(d))
    }

    /// As a chrono duration, for arithmetic on dates (in range: at most [`MAX_DURATION`]).
    pub fn to_chrono(self) -> chrono::Duration {
        to_chrono(self.0)
    }
}

/// A bounded std duration as a chrono duration; saturates instead of failing.
pub fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d.min(MAX_DURATION)).unwrap_or(chrono::Duration::MAX)
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Expanded::deserialize(d)?;
        HumanDuration::parse(&text.0).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// How far back the first run looks: a duration, or `"all"` for no first-run limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backfill {
    /// Everything in the listing (still bounded by `state.retention`).
    All,
    /// Only events newer than `now - duration` on the first run.
    Since(Duration),
}

impl<'de> Deserialize<'de> for Backfill {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Expanded::deserialize(d)?;
        if text.0.trim().eq_ignore_ascii_case("all") {
            return Ok(Backfill::All);
        }
        HumanDuration::parse(&text.0)
            .map(|h| Backfill::Since(h.0))
            .map_err(|e| serde::de::Error::custom(format!("{e}, or \"all\"")))
    }
}

/// A string value with `${VAR}` expanded from the environment (`$${` writes a literal `${`).
#[derive(Clone, PartialEq, Eq)]
pub struct Expanded(pub String);

impl fmt::Debug for Expanded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Expand `${VAR}` references in `text` using `lookup`.
pub fn expand_with(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            // The value is not quoted: it may be a secret.
            let end = tail
                .find('}')
                .ok_or_else(|| "unclosed `${` (write `$${` for a literal `${`)".to_string())?;
            let name = &tail[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(
                    "`${` is followed by an invalid environment variable name (letters, digits and `_` only; write `$${` for a literal `${`)"
                        .to_string(),
                );
            }
            let value = lookup(name).ok_or_else(|| format!("environment variable `{name}` is not set"))?;
            out.push_str(&value);
            rest = tail.get(end.saturating_add(1)..).unwrap_or_default();
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

impl<'de> Deserialize<'de> for Expanded {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        expand_with(&raw, |name| std::env::var(name).ok())
            .map(Expanded)
            .map_err(serde::de::Error::custom)
    }
}

/// `${VAR}` expansion for config values kept as plain types (paths, names): the same rule as
/// [`Expanded`], used as `#[serde(deserialize_with = "...")]`, so that `${VAR}` expands in
/// every string of the config.
pub mod expand {
    use super::Expanded;
    use serde::{Deserialize, Deserializer};
    use std::path::PathBuf;

    /// A string.
    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Expanded::deserialize(d).map(|e| e.0)
    }

    /// An optional string (use with `#[serde(default)]`).
    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Option::<Expanded>::deserialize(d).map(|o| o.map(|e| e.0))
    }

    /// A path.
    pub fn path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        string(d).map(PathBuf::from)
    }

    /// An optional path (use with `#[serde(default)]`).
    pub fn opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        opt_string(d).map(|o| o.map(PathBuf::from))
    }
}

/// A secret: compared and used, never printed (Debug and Display show `***`).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Expanded::deserialize(d).map(|e| Secret(e.0))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn printable_text_has_no_line_breaks_of_any_kind() {
        // What `state list` and the vault's messages pass through.
        let shown = printable("s16\r\n\u{85}\u{2028}x\ty\"", usize::MAX);
        assert_eq!(shown, r#"s16\r\n\u{85}\u{2028}x\ty\""#);
        assert_eq!(printable("abcdef", 3), "abc…");
    }

    #[test]
    fn expands_variables_and_escapes() {
        let env = |n: &str| (n == "A").then(|| "x".to_string());
        assert_eq!(expand_with("a${A}b", env).unwrap(), "axb");
        assert_eq!(expand_with("$${A} $5", env).unwrap(), "${A} $5");
        assert!(expand_with("${B}", env).unwrap_err().contains("`B` is not set"));
        assert!(expand_with("${A", env).unwrap_err().contains("unclosed"));
    }

    #[test]
    fn durations_are_human() {
        assert_eq!(HumanDuration::parse("90d").unwrap().0, Duration::from_secs(90 * 86400));
        assert_eq!(HumanDuration::parse("500ms").unwrap().0, Duration::from_millis(500));
        assert!(HumanDuration::parse("ten minutes")
            .unwrap_err()
            .contains("invalid duration"));
        for huge in ["500000000y", "1000000y", "101y"] {
            assert!(
                HumanDuration::parse(huge)
                    .unwrap_err()
                    .contains("longer than 100 years"),
                "{huge}"
            );
        }
        assert_eq!(HumanDuration::parse("100y").unwrap().to_chrono().num_days(), 36525);
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}

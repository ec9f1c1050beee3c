//! Test support: spawn the simulator binary, write configs, run the agent, read its output.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_senhasegura-forwarder")
}

/// The agent binary with proxy variables removed, so loopback traffic never goes to a proxy
/// that the CI machine's environment might name (nor is kept from one a test names).
pub fn cmd() -> Command {
    let mut c = Command::new(bin());
    for v in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "REQUEST_METHOD",
    ] {
        c.env_remove(v);
    }
    c.env_remove("SENHASEGURA_FORWARDER_CONFIG");
    c
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A simulator process on a free loopback port, killed on drop.
pub struct Sim {
    child: Child,
    pub url: String,
}

impl Sim {
    pub fn start(args: &[&str]) -> Sim {
        Sim::start_on("127.0.0.1:0", args)
    }

    /// A simulator on a given address (to restart one where the agent expects it).
    pub fn start_on(listen: &str, args: &[&str]) -> Sim {
        Sim::start_from(cmd(), listen, args)
    }

    /// A simulator started by `command` (the binary, with an environment of the test's own).
    pub fn start_from(mut command: Command, listen: &str, args: &[&str]) -> Sim {
        let mut child = command
            .args(["simulate", "--listen", listen])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn simulator");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("piped"))
            .read_line(&mut line)
            .expect("read base url");
        let url = line.trim().to_string();
        assert!(url.starts_with("http"), "simulator printed {url:?}");
        Sim { child, url }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The simulator's counters.
    pub fn stats(&self) -> serde_json::Value {
        let addr = self.url.trim_start_matches("http://").trim_start_matches("https://");
        assert!(self.url.starts_with("http://"), "stats only over plain HTTP");
        let mut s = std::net::TcpStream::connect(addr).expect("connect simulator");
        write!(s, "GET /_simulator/stats HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let body = resp.split("\r\n\r\n").nth(1).expect("http body");
        serde_json::from_str(body).expect("stats json")
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temp dir with a config for a simulator.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Setup {
    pub fn new(url: &str, source_extra: &str, rest: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        let state = dir.path().join("state");
        let text = format!(
            "[source]\nurl = \"{url}\"\ntimezone = \"UTC\"\nbackfill = \"all\"\nretry_backoff = \"20ms\"\nretry_backoff_max = \"100ms\"\nretries = 4\n{source_extra}\n\
             [source.auth]\nclient_id = \"forwarder\"\nclient_secret = \"simulator-secret\"\n\
             [state]\npath = \"{}\"\nretention = \"36500d\"\n{rest}\n",
            state.display()
        );
        std::fs::write(&config, text).unwrap();
        Setup { dir, config }
    }

    /// Change this setup's config: `from` (which must be there) becomes `to`.
    pub fn edit(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        assert!(text.contains(from), "{from:?} is not in the config:\n{text}");
        std::fs::write(&self.config, text.replace(from, to)).unwrap();
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `state stats` of this setup's state directory.
    pub fn state_stats(&self) -> serde_json::Value {
        let out = cmd()
            .args(["state", "--state-dir"])
            .arg(self.state_dir())
            .arg("stats")
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("state stats: {e}"))
    }

    /// The lines `state list` prints (`<key>\t<event time>`).
    pub fn state_list(&self) -> Vec<String> {
        let out = cmd()
            .args(["state", "--state-dir"])
            .arg(self.state_dir())
            .arg("list")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The keys `state list` shows.
    pub fn state_keys(&self) -> std::collections::HashSet<String> {
        self.state_list()
            .iter()
            .map(|l| l.split('\t').next().unwrap().to_string())
            .collect()
    }

    /// Start `run` in the background, stdout and stderr captured.
    pub fn spawn_run(&self) -> std::process::Child {
        cmd()
            .args(["run", "-c"])
            .arg(&self.config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn run")
    }

    /// Run the agent with these arguments (config appended).
    pub fn run(&self, args: &[&str]) -> Run {
        let out = cmd()
            .args(args)
            .arg("-c")
            .arg(&self.config)
            .env_remove("SENHASEGURA_FORWARDER_CONFIG")
            .output()
            .expect("run agent");
        Run::from(out)
    }
}

/// A running agent whose stdout and stderr are read as they come, so a test can wait for a
/// log line instead of sleeping.
pub struct Running {
    child: Child,
    stdout: std::sync::Arc<std::sync::Mutex<String>>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn collect(
    from: impl Read + Send + 'static,
    into: std::sync::Arc<std::sync::Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            let mut text = into.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    })
}

impl Running {
    /// Wait until stderr holds `needle` at least `count` times; panics after `within`.
    pub fn wait_for_log(&self, needle: &str, count: usize, within: std::time::Duration) {
        let started = std::time::Instant::now();
        loop {
            if self.stderr.lock().unwrap().matches(needle).count() >= count {
                return;
            }
            assert!(
                started.elapsed() < within,
                "no {count}x {needle:?} in the log within {within:?}:\n{}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// How often `needle` is in stderr so far.
    pub fn log_count(&self, needle: &str) -> usize {
        self.stderr.lock().unwrap().matches(needle).count()
    }

    /// SIGTERM it (as systemd stops it) and collect its output.
    pub fn stop(mut self) -> Run {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait().expect("wait for the agent");
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let take = |b: &std::sync::Arc<std::sync::Mutex<String>>| std::mem::take(&mut *b.lock().unwrap());
        Run {
            code: status.code().unwrap_or(-1),
            stdout: take(&self.stdout),
            stderr: take(&self.stderr),
        }
    }
}

impl Setup {
    /// Start `run` in the background with its output read as it comes.
    pub fn start_run(&self) -> Running {
        let mut child = self.spawn_run();
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().expect("piped stdout"), stdout.clone()),
            collect(child.stderr.take().expect("piped stderr"), stderr.clone()),
        ];
        Running {
            child,
            stdout,
            stderr,
            readers,
        }
    }
}

/// A finished agent run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Run {
    fn from(out: std::process::Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Every stdout line as an ECS document, each validated against ECS 9.4.
    pub fn docs(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
                crate::ecs::validate(&v);
                v
            })
            .collect()
    }

    /// `<session_id>:<phase>` of every document.
    pub fn keys(&self) -> Vec<String> {
        self.docs().iter().map(key_of).collect()
    }

    pub fn ok(&self) -> &Run {
        assert_eq!(self.code, 0, "exit code; stderr:\n{}", self.stderr);
        self
    }
}

pub fn key_of(doc: &serde_json::Value) -> String {
    format!(
        "{}:{}",
        doc["senhasegura"]["session"]["id"].as_str().unwrap(),
        doc["event"]["type"][0].as_str().unwrap()
    )
}

/// A fixed vault clock so two simulators generate the same sessions.
pub const NOW: &str = "2026-01-15 12:00:00";

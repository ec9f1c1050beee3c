//! How the process asks glibc's allocator to behave, set once at start-up.
//!
//! A poll moves hundreds of megabytes through buffers of a few hundred kilobytes to a few
//! megabytes (the listing's chunks, encoded batches, sink writes, the store's log buffers).
//! With glibc's defaults those land in per-thread heap arenas whose threshold for "large"
//! rises with every large free (up to 32 MiB), and freed memory stays in the arenas: the
//! process's resident size ended up about twice what it used. So, unless the operator chose
//! them through glibc's own variables (which then win):
//! - allocations of 128 KiB and more are mapped on their own and returned on free
//!   (`M_MMAP_THRESHOLD`, which also stops the threshold from rising); the store's log buffers
//!   (256 KiB, 128 KiB in a store made before) and its larger leaves are what this keeps out of
//!   the arenas;
//! - few arenas (`M_ARENA_MAX`, [`Role`]): one for the commands that poll again and again
//!   (`run`, `demo`), two for the others (`once`, `check`, `state`, `simulate`). A poll has two
//!   busy threads (filter and delivery); with an arena each, a first poll of a million sessions
//!   ran 6–12% faster than with one (`benches/e2e.sh`, README "Measured"), but over many polls
//!   the two arenas' free space spreads: the resident size `benches/soak.sh` sampled grew
//!   1–8% from cycle 10 to 1,000 (eight runs; about 17 hours of polls at 60 s) with one arena,
//!   then stayed level to 3,000, and 12% with two (one run, before the runtime's threads were
//!   capped as below). A service's first poll happens once; its later polls (mostly known
//!   events) run as fast with one arena.
//!
//! One setting glibc takes only from the environment, before `main`: its per-thread cache of
//! freed blocks (`tcache`), which the agent turns off. A poll reads every page of the store,
//! and sled makes each page it reads a new small block; with the cache, those blocks went
//! wherever a block of that size was last freed, spread over the heap. The idle resident size
//! of `benches/soak.sh` rose 2–7% from cycle 10 to 1,000 before it settled; without it, level
//! within 1–3% in three runs, lower when idle by 1.4 MiB at cycle 10 and 2.3 MiB at cycle
//! 1,000, and no slower. A first poll ages too: the peak of an all-new `once` of 10,000,000
//! sessions was 1.5 MiB lower without the cache, of 100,000 sessions 0.2 MiB lower (README
//! "Measured"). A process cannot change the setting once started, so when the environment
//! does not set `GLIBC_TUNABLES`, the binary starts itself again at once, same process and
//! arguments, with `GLIBC_TUNABLES=glibc.malloc.tcache_count=0` ([`restart_tunables`]). The
//! packaged units set that value themselves (so the service starts once); an operator who sets
//! `GLIBC_TUNABLES` chooses every tunable and should keep `glibc.malloc.tcache_count=0` in it
//! (set and empty, it keeps glibc's defaults). Where `/proc/self/exe` is not the agent (started
//! through the dynamic loader, or under valgrind without `--trace-children=yes`), set
//! `GLIBC_TUNABLES` or [`RESTARTED`] to avoid the restart.
//!
//! The runtime's threads matter as much (`main.rs` builds it with [`WORKER_THREADS`] and
//! [`BLOCKING_THREADS`]): each thread that allocates is tied to one of the arenas and (when
//! glibc's per-thread cache is on, which the agent turns off as above) keeps a cache of freed
//! blocks of its own, so the same work spread over more threads holds more memory.
//!
//! The binary applies them (`main.rs`: the one `mallopt` call is the project's only unsafe
//! code; the library forbids it). So that large buffers are mapped once per poll, not once per
//! use, the pipeline reuses them: a poll fills the same three batches and ten body pieces
//! over and over (`BATCH_POOL` in `pipeline/mod.rs`, `CHUNK_POOL` in `pipeline/pieces.rs`),
//! the commit list is kept. Measured with `benches/e2e.sh` (README, "Measured"):
//! peak RSS of a million-session poll, all new 74–86 → 48–54 MiB, all known 35–36 → 31–32
//! MiB; the first poll's CPU time rises by up to a tenth (more pages mapped and unmapped).

/// The async runtime's worker threads. They run tokio's I/O and timer drivers and the spawned
/// tasks (the metrics endpoint, signal handling, the watchdog, progress reports, the demo's
/// simulator); reading the listing and handing batches to the sinks run on the main thread
/// (`block_on`). Two are plenty; tokio's default, one per core, would make the resident size
/// depend on the host.
pub const WORKER_THREADS: usize = 2;

/// The most threads tokio's blocking pool may start. A poll keeps one busy with the filter for
/// the whole listing; everything else blocking shares the other: delivery's writes (stdout,
/// file) and its commits to the store, the syslog sink's name lookups, a replaced Kafka
/// producer's flush on drop, counting the store's keys at start, the simulator's compression.
/// Those queue for it when they meet (with several sinks, their writes wait for each other), a
/// bounded wait: none of them waits for another blocking task, and only the filter waits (for
/// delivery), so nothing can wait for a thread forever. More threads only spread the same
/// allocations over more caches: with tokio's default (512), a million-session first poll ran
/// its writes and commits on three or four threads and peaked about 4 MiB higher
/// (`benches/e2e.sh`, README "Measured"). With two sinks that write from blocking threads
/// (stdout and a file, a million-session first poll, two alternating runs each of two builds)
/// the queueing cost 2–6% of the time, 4.63 / 4.62 s against 4.52 / 4.36 s with four threads,
/// and saved 1.5–2.6 MiB of peak RSS (33.4 / 33.6 against 36.0 / 35.1 MiB; `/usr/bin/time` of
/// `once` against `simulate --sessions 1000000 --history 30d`).
pub const BLOCKING_THREADS: usize = 2;

/// Hands the allocator's free pages back to the system; installed by the binary (glibc's
/// `malloc_trim`), nothing until then.
static RELEASE: std::sync::OnceLock<fn() -> bool> = std::sync::OnceLock::new();

/// Install the function [`release_free`] calls (the first one installed stays).
pub fn on_release(release: fn() -> bool) {
    let _ = RELEASE.set(release);
}

/// Between two polls of `run`: give back to the system the heap pages freed during the poll.
/// glibc returns only the free memory at the top of a heap on its own; what is freed below a
/// block still in use stays resident until the next allocations reuse it. Giving it back
/// between polls lowered the resident size of `benches/soak.sh` by about 2 MiB at every cycle
/// measured (10, 100, 1,000), for no measurable time. Returns the resident size before and
/// after, in KiB, when a release function is installed and the sizes can be read.
pub fn release_free() -> Option<(u64, u64)> {
    let release = RELEASE.get()?;
    let before = resident_kib();
    release();
    let after = resident_kib();
    let sizes = before.zip(after);
    if let Some((before, after)) = sizes {
        tracing::debug!(
            before_kib = before,
            after_kib = after,
            "Returned free heap memory to the system"
        );
    }
    sizes
}

/// The process's resident size (`VmRSS`), KiB.
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// glibc's tunable for its per-thread cache of freed blocks (how many blocks of each size a
/// thread keeps); the agent's value is 0.
pub const TCACHE_TUNABLE: &str = "glibc.malloc.tcache_count";

/// Set in the environment of the process the binary started again with [`TCACHE_TUNABLE`], so
/// that it is started again at most once: for a program that runs with more privileges than
/// its caller (file capabilities, set-user-ID), the dynamic loader strips from `GLIBC_TUNABLES`
/// what it does not trust, and without this mark such a program could start itself again and
/// again.
pub const RESTARTED: &str = "SENHASEGURA_FORWARDER_ALLOCATOR_SET";

/// The `GLIBC_TUNABLES` to start the process again with, so that glibc's per-thread cache is
/// off ([`TCACHE_TUNABLE`]`=0`), given the current value: `None` when the process is to go on
/// as it is, because this process was already started again (`restarted`) or because the
/// environment sets `GLIBC_TUNABLES` at all, even empty. Whoever sets it chooses every tunable
/// (the agent does not edit their list); an empty value keeps glibc's defaults, the cache on.
pub fn restart_tunables(tunables: Option<&std::ffi::OsStr>, restarted: bool) -> Option<std::ffi::OsString> {
    if restarted || tunables.is_some() {
        return None;
    }
    Some(format!("{TCACHE_TUNABLE}=0").into())
}

/// One allocator setting: how an operator chooses it instead, and the agent's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// glibc's environment variable for it.
    pub env: &'static str,
    /// glibc's tunable for it (in `GLIBC_TUNABLES`).
    pub tunable: &'static str,
    /// `mallopt` parameter.
    pub param: i32,
    /// Value.
    pub value: i32,
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
use libc::{M_ARENA_MAX, M_MMAP_THRESHOLD};
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
const M_MMAP_THRESHOLD: i32 = -3;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
const M_ARENA_MAX: i32 = -8;

/// What the process runs for: the arena count depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Polls again and again, for as long as it is left running or for `--cycles`: `run` and
    /// `demo` (the same loop). Its memory over many polls matters more than its first poll's
    /// speed.
    Service,
    /// Polls once (`once`) or not at all (`check`, `state`, the simulator, which serves the
    /// benches and the tests).
    OneShot,
}

impl Role {
    /// The role of the process `command` starts.
    pub fn of(command: &crate::cli::Command) -> Role {
        use crate::cli::Command;
        match command {
            Command::Run { .. } | Command::Demo { .. } => Role::Service,
            Command::Once { .. }
            | Command::Check { .. }
            | Command::State { .. }
            | Command::Simulate(_)
            | Command::PackageAssets { .. } => Role::OneShot,
        }
    }
}

/// The settings the agent makes for `role`.
pub fn settings(role: Role) -> [Setting; 2] {
    [
        Setting {
            env: "MALLOC_MMAP_THRESHOLD_",
            tunable: "glibc.malloc.mmap_threshold",
            param: M_MMAP_THRESHOLD,
            value: 128 * 1024,
        },
        Setting {
            env: "MALLOC_ARENA_MAX",
            tunable: "glibc.malloc.arena_max",
            param: M_ARENA_MAX,
            value: match role {
                Role::Service => 1,
                Role::OneShot => 2,
            },
        },
    ]
}

/// The settings to apply (on glibc) for `role`, given an environment lookup: those the operator
/// did not choose through glibc's variable or its `GLIBC_TUNABLES` entry.
pub fn to_apply(role: Role, var: impl Fn(&str) -> Option<String>) -> Vec<Setting> {
    let tunables = var("GLIBC_TUNABLES").unwrap_or_default();
    settings(role)
        .into_iter()
        .filter(|s| var(s.env).is_none() && !tunables.split(':').any(|t| t.split('=').next() == Some(s.tunable)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_calls_what_the_binary_installed() {
        use std::sync::atomic::{AtomicU32, Ordering};
        static CALLS: AtomicU32 = AtomicU32::new(0);
        fn count() -> bool {
            CALLS.fetch_add(1, Ordering::SeqCst);
            true
        }
        on_release(count);
        let sizes = release_free();
        assert!(CALLS.load(Ordering::SeqCst) >= 1);
        assert!(
            sizes.is_some_and(|(before, after)| before > 0 && after > 0),
            "{sizes:?}"
        );
    }

    #[test]
    fn the_cache_is_turned_off_once_unless_the_environment_sets_tunables() {
        use std::ffi::{OsStr, OsString};
        let restart = |t: Option<&str>, restarted| restart_tunables(t.map(OsStr::new), restarted);
        let off = Some(OsString::from("glibc.malloc.tcache_count=0"));
        assert_eq!(restart(None, false), off);
        // The operator's tunables, whichever they are, stay as they are; none keeps the cache.
        assert_eq!(restart(Some(""), false), None);
        assert_eq!(restart(Some("glibc.malloc.tcache_count=7"), false), None);
        assert_eq!(restart(Some("glibc.malloc.arena_max=4"), false), None);
        // Never twice, whatever the loader left of the variable.
        assert_eq!(restart(None, true), None);
        assert_eq!(restart(Some("glibc.malloc.tcache_count=0"), true), None);
    }

    #[test]
    fn the_service_keeps_one_arena_the_others_two() {
        let arenas = |role| {
            to_apply(role, |_| None)
                .iter()
                .find(|s| s.param == M_ARENA_MAX)
                .map(|s| s.value)
        };
        assert_eq!(arenas(Role::Service), Some(1));
        assert_eq!(arenas(Role::OneShot), Some(2));
    }

    #[test]
    fn the_commands_that_poll_again_and_again_are_services() {
        use clap::Parser;
        let role = |args: &[&str]| {
            let cli =
                crate::cli::Cli::try_parse_from(std::iter::once("senhasegura-forwarder").chain(args.iter().copied()))
                    .expect("a valid command line");
            Role::of(&cli.command)
        };
        assert_eq!(role(&["run"]), Role::Service);
        assert_eq!(role(&["run", "--cycles", "3"]), Role::Service);
        assert_eq!(role(&["demo"]), Role::Service);
        assert_eq!(role(&["once"]), Role::OneShot);
        assert_eq!(role(&["check", "--offline"]), Role::OneShot);
        assert_eq!(role(&["state", "--state-dir", "/tmp/x", "list"]), Role::OneShot);
        assert_eq!(role(&["simulate"]), Role::OneShot);
    }

    #[test]
    fn the_operators_choices_win() {
        assert_eq!(to_apply(Role::OneShot, |_| None), settings(Role::OneShot).to_vec());
        let env = |set: &'static str, value: &'static str| move |name: &str| (name == set).then(|| value.to_string());
        let names = |s: Vec<Setting>| s.iter().map(|s| s.env).collect::<Vec<_>>();
        assert_eq!(
            names(to_apply(Role::OneShot, env("MALLOC_ARENA_MAX", "4"))),
            ["MALLOC_MMAP_THRESHOLD_"]
        );
        assert_eq!(
            names(to_apply(
                Role::OneShot,
                env(
                    "GLIBC_TUNABLES",
                    "glibc.malloc.tcache_count=0:glibc.malloc.mmap_threshold=65536"
                )
            )),
            ["MALLOC_ARENA_MAX"]
        );
        // A tunable that only starts like one of ours is not ours.
        assert_eq!(
            to_apply(Role::OneShot, env("GLIBC_TUNABLES", "glibc.malloc.arena_max_x=1")),
            settings(Role::OneShot).to_vec()
        );
    }
}

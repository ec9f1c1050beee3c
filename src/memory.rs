//! How the process asks glibc's allocator to behave, set once at start-up.
//!
//! A poll moves hundreds of megabytes through buffers of a few hundred kilobytes to a few
//! megabytes (the listing's chunks, encoded batches, sink writes, the store's pages). With
//! glibc's defaults those land in per-thread heap arenas whose threshold for "large" rises
//! with every large free (up to 32 MiB), and freed memory stays in the arenas: the process's
//! resident size ends up about twice what it uses. So, unless the operator set them through
//! glibc's own environment variables (which then win):
//! - allocations of 128 KiB and more are mapped on their own and returned on free
//!   (`M_MMAP_THRESHOLD`, which also stops the threshold from rising);
//! - at most two arenas (`M_ARENA_MAX`): the agent has two busy threads (filter and
//!   delivery), and more arenas only hold more freed memory.
//!
//! The binary applies them (`main.rs`: the one `mallopt` call is the only unsafe code, and
//! the library forbids unsafe code). The batches the filter fills are reused rather than reallocated, so the large buffers are
//! mapped once per poll, not once per batch. Measured with `benches/e2e.sh` (README,
//! "Measured"): peak RSS of a million-session all-new poll 81 → 54 MiB, all-known 36 → 31 MiB,
//! at the same speed.

/// One allocator setting: glibc's environment variable for it, and the value used otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The variable an operator sets to choose the value (glibc reads it at start).
    pub env: &'static str,
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

/// The settings the agent makes.
pub const SETTINGS: [Setting; 2] = [
    Setting {
        env: "MALLOC_MMAP_THRESHOLD_",
        param: M_MMAP_THRESHOLD,
        value: 128 * 1024,
    },
    Setting {
        env: "MALLOC_ARENA_MAX",
        param: M_ARENA_MAX,
        value: 2,
    },
];

/// The settings to apply (glibc only) when `is_set` tells which environment variables the operator set.
pub fn to_apply(is_set: impl Fn(&str) -> bool) -> Vec<Setting> {
    SETTINGS.into_iter().filter(|s| !is_set(s.env)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_variables_win() {
        let all = to_apply(|_| false);
        assert_eq!(all, SETTINGS.to_vec());
        let some = to_apply(|name| name == "MALLOC_ARENA_MAX");
        assert_eq!(
            some.iter().map(|s| s.env).collect::<Vec<_>>(),
            ["MALLOC_MMAP_THRESHOLD_"]
        );
        assert!(to_apply(|_| true).is_empty());
    }
}

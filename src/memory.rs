//! Process memory settings applied once at start-up, before the runtime's threads exist:
//! transparent huge pages and how soon the allocator returns freed memory to the kernel.
//!
//! Measured (docs/performance.md, "2026-12-04: the allocator's share of RSS"): with the
//! allocator's defaults the daemon's heap at peak was ~35 MB but its RSS 125–145 MB. Two
//! things held the difference: transparent huge pages (mimalloc asks for them on its arena, and
//! a 2 MiB huge page stays resident while any 4 KiB of it is in use: 43–98 MB of `AnonHugePages`
//! at peak), and mimalloc's purge delay (1 s in v3: freed pages stay resident for a second,
//! which at 20k records/s is a lot of pages).

use std::time::Duration;

use crate::config::RuntimeConfig;

/// What [`apply`] did, for the start-up log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Transparent huge pages are off for this process (`prctl(PR_SET_THP_DISABLE)`).
    pub thp_disabled: bool,
    /// The allocator's purge delay now in effect, if this build's allocator has one.
    pub purge_delay: Option<PurgeDelay>,
}

/// Where the allocator's purge delay came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeDelay {
    /// `runtime.allocator_purge_delay`.
    Config(Duration),
    /// `MIMALLOC_PURGE_DELAY` in the environment, which wins over the config: the value
    /// mimalloc parsed from it (ms).
    Environment(libc::c_long),
}

/// Apply `runtime.transparent_huge_pages` and `runtime.allocator_purge_delay`.
///
/// Call it before any other thread is started: mimalloc's option setter is not thread safe.
/// Failing to disable THP (an old kernel) is not an error: it only costs memory, so it is
/// reported in [`Applied`] and the log, not fatal.
pub fn apply(config: &RuntimeConfig) -> Applied {
    let thp_disabled = !config.transparent_huge_pages && disable_thp();
    Applied {
        thp_disabled,
        purge_delay: set_purge_delay(config.allocator_purge_delay),
    }
}

#[cfg(target_os = "linux")]
fn disable_thp() -> bool {
    // SAFETY: prctl with PR_SET_THP_DISABLE takes integer arguments only and touches no
    // memory of ours; it sets a flag on this process's address space (inherited by children).
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn disable_thp() -> bool {
    false
}

/// mimalloc v3's `mi_option_purge_delay` (the 16th entry of `mi_option_e` in its
/// `mimalloc.h`; `libmimalloc-sys` exports no constant for it). A unit test pins it by its
/// documented default.
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

#[cfg(feature = "mimalloc")]
fn set_purge_delay(delay: Duration) -> Option<PurgeDelay> {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        // mimalloc read the variable itself at its initialisation; report what it made of it.
        // SAFETY: reads an option before the runtime starts other threads (see `apply`).
        let ms = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        return Some(PurgeDelay::Environment(ms));
    }
    let ms = libc::c_long::try_from(delay.as_millis()).unwrap_or(libc::c_long::MAX);
    // SAFETY: called before the runtime starts other threads (see `apply`); the option index
    // is mimalloc's purge delay (pinned by a test).
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms) };
    Some(PurgeDelay::Config(delay))
}

#[cfg(not(feature = "mimalloc"))]
fn set_purge_delay(_delay: Duration) -> Option<PurgeDelay> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "mimalloc")]
    #[test]
    fn purge_delay_option_is_mimallocs_purge_delay() {
        // mimalloc v3's default purge delay is 1000 ms (options.c); no other option near it
        // defaults to 1000, so a shifted enum fails here. The test binary uses the system
        // allocator, but the option table is mimalloc's own and readable all the same.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: reads an option; no other test touches mimalloc options.
        let value = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(value, 1000);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn thp_disable_is_visible_to_the_kernel() {
        // PR_GET_THP_DISABLE reads back what PR_SET_THP_DISABLE set for this process.
        assert!(disable_thp());
        // SAFETY: integer-only prctl query.
        let flag = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(flag, 1);
    }
}

//! Stage heartbeats: what the systemd watchdog and the status page use to tell a stage that is
//! turning (working, idle on its input, or sleeping before a known retry) from one that has
//! stopped turning.
//!
//! A stage's loop calls [`Heartbeats::beat`] when it makes progress (once per batch, never
//! per record), [`Heartbeats::idle`] before it waits on its input, and
//! [`Heartbeats::waiting_until`] before a sleep whose end it knows (a retry backoff, a rate
//! limit slot, the next interval). The supervisor beats when a stage becomes ready. A task
//! counts as stalled only while it is *ready* (connected) and its last beat is older than
//! `runtime.stall_after` (or its known wait ended that long ago); a stage that is connecting
//! or restarting after a failure is the supervisor's business and counts as alive.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::supervise::{Health, TaskState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Beat {
    /// Made progress at this unix ms.
    Working(i64),
    /// Waiting on its input: alive however long it waits.
    Idle,
    /// Sleeping until this unix ms (then it must beat again).
    WaitingUntil(i64),
}

/// The latest beat of every task (one entry per task name: bounded).
#[derive(Debug, Default)]
pub struct Heartbeats {
    beats: Mutex<BTreeMap<String, Beat>>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Heartbeats {
    fn set(&self, task: &str, beat: Beat) {
        let mut beats = self.beats.lock().unwrap_or_else(|e| e.into_inner());
        match beats.get_mut(task) {
            Some(b) => *b = beat,
            None => {
                beats.insert(task.to_string(), beat);
            }
        }
    }

    /// `task` made progress now.
    pub fn beat(&self, task: &str) {
        self.set(task, Beat::Working(now_ms()));
    }

    /// `task` waits on its input (nothing to do is not a stall).
    pub fn idle(&self, task: &str) {
        self.set(task, Beat::Idle);
    }

    /// `task` sleeps for `delay` (a retry backoff, a rate-limit slot, the next interval).
    pub fn waiting_for(&self, task: &str, delay: Duration) {
        let ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
        self.set(task, Beat::WaitingUntil(now_ms().saturating_add(ms)));
    }

    /// Ready tasks whose last beat is older than `stall_after` at `now_ms`, with how long.
    pub fn stalled_at(&self, health: &Health, stall_after: Duration, now_ms: i64) -> Vec<String> {
        let limit = i64::try_from(stall_after.as_millis()).unwrap_or(i64::MAX / 2);
        let beats = self.beats.lock().unwrap_or_else(|e| e.into_inner());
        health
            .snapshot()
            .into_iter()
            .filter(|t| t.state == TaskState::Ready)
            .filter_map(|t| {
                let since = match beats.get(&t.name)? {
                    Beat::Idle => return None,
                    Beat::Working(at) | Beat::WaitingUntil(at) => now_ms - at,
                };
                (since > limit).then(|| format!("{} (no progress for {} s)", t.name, since / 1000))
            })
            .collect()
    }

    /// [`Heartbeats::stalled_at`] now.
    pub fn stalled(&self, health: &Health, stall_after: Duration) -> Vec<String> {
        self.stalled_at(health, stall_after, now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ready_tasks_without_a_recent_beat_are_stalled() {
        let health = Health::default();
        let beats = Heartbeats::default();
        let stall = Duration::from_secs(10);
        health.set("relay", TaskState::Ready);
        health.set("landing", TaskState::Ready);
        health.set("source", TaskState::Ready);
        health.set("consumer", TaskState::Failed);
        beats.beat("relay");
        beats.idle("landing");
        beats.waiting_for("source", Duration::from_secs(30));
        let now = now_ms();
        assert!(beats.stalled_at(&health, stall, now).is_empty());
        // 20 s later: the relay has not beaten; landing is idle; the source still sleeps.
        let later = now + 20_000;
        let stalled = beats.stalled_at(&health, stall, later);
        assert_eq!(stalled.len(), 1, "{stalled:?}");
        assert!(
            stalled[0].starts_with("relay (no progress for 2"),
            "{stalled:?}"
        );
        // 45 s later the source's sleep ended 15 s ago without a beat.
        let stalled = beats.stalled_at(&health, stall, now + 45_000);
        assert!(
            stalled.iter().any(|s| s.starts_with("source")),
            "{stalled:?}"
        );
        // A failed (restarting) task is the supervisor's: never stalled.
        assert!(!stalled.iter().any(|s| s.starts_with("consumer")));
    }
}

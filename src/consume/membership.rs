//! The consumer's group membership between two runs of the consumer stage.
//!
//! ```text
//!  run ──(sink or fetch fails: retriable)──► hold: heartbeat every heartbeat_interval ──┐
//!   ▲                                          │ generation ended / held rebalance_timeout │
//!   │                                          │ / daemon stopping: LeaveGroup, forget     │
//!   └──── next run takes the member and its assignment back (no JoinGroup) ◄─────────────┘
//! ```
//!
//! Without this, a Cassandra outage restarted the consumer stage, which left the group and
//! joined it again when Cassandra returned: 1–3.5 s of rebalance after the service was back.
//! Now the member stays in the group while the stage waits to restart (heartbeats continue),
//! and the restarted stage resumes the same generation: the same member id and partitions,
//! each started from the group's committed offset, so offsets still move only after rows are
//! written. If the generation ends meanwhile (a heartbeat says rebalance, unknown member or
//! illegal generation) the held member leaves and the next run joins afresh; a commit under a
//! generation that ended between the last heartbeat and the resume is refused by the
//! coordinator (fenced), and the partition stops as before.
//!
//! A member that does not consume holds its partitions from the others, so the hold is
//! bounded by `consumer.rebalance_timeout`, the role Kafka's `max.poll.interval.ms` plays
//! for a Java consumer (which sends it as its rebalance timeout): after that the member
//! leaves and the partitions move to a daemon that can write them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Progress;
use crate::group::{Assignment, GroupMembership, Heartbeat, error_name};
use crate::telemetry::Metrics;

/// A member and the assignment of the generation it consumed.
pub struct Held {
    pub member: Arc<dyn GroupMembership>,
    pub assignment: Assignment,
}

/// How long and how often a held member heartbeats, and what it reports to.
pub struct HoldSettings {
    /// `consumer.heartbeat_interval`.
    pub heartbeat: Duration,
    /// `consumer.rebalance_timeout`: the longest a member holds partitions it does not consume.
    pub limit: Duration,
    /// `kafka.request_timeout`: the bound of the LeaveGroup.
    pub leave_timeout: Duration,
    /// The stage's token (not a run's): cancelled when the daemon stops.
    pub token: CancellationToken,
    pub progress: Arc<Progress>,
    pub metrics: Metrics,
}

struct Keeper {
    /// Cancelled by [`HeldMembership::take`]: hand the member back.
    resume: CancellationToken,
    task: JoinHandle<Option<Held>>,
}

/// Lives in the consumer stage (one value for the daemon's life), holds the group member
/// between runs.
#[derive(Default)]
pub struct HeldMembership {
    keeper: Mutex<Option<Keeper>>,
}

impl std::fmt::Debug for HeldMembership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldMembership").finish_non_exhaustive()
    }
}

impl HeldMembership {
    /// The held member and assignment, if the member is still in its generation as far as
    /// the last heartbeat knew (the next run's heartbeats and fenced commits tell the rest).
    pub async fn take(&self) -> Option<Held> {
        let keeper = self.keeper.lock().await.take()?;
        keeper.resume.cancel();
        match keeper.task.await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, "group membership keeper failed: joining afresh");
                None
            }
        }
    }

    /// Keeps `held` in the group (heartbeats) until [`Self::take`], the end of its
    /// generation, `settings.limit`, or the daemon's stop; the last three leave the group.
    pub async fn hold(&self, held: Held, settings: HoldSettings) {
        let resume = CancellationToken::new();
        let task = tokio::spawn(keep(held, settings, resume.clone()));
        let previous = self.keeper.lock().await.replace(Keeper { resume, task });
        if let Some(previous) = previous {
            // Not expected (one run at a time): make sure two keepers never heartbeat.
            previous.task.abort();
        }
    }
}

async fn keep(held: Held, s: HoldSettings, resume: CancellationToken) -> Option<Held> {
    let a = &held.assignment;
    tracing::info!(
        member_id = %a.member_id,
        generation = a.generation,
        partitions = ?a.partitions,
        limit_ms = s.limit.as_millis() as u64,
        "consumer stopped: holding its group membership (heartbeats) until it restarts"
    );
    let deadline = tokio::time::Instant::now() + s.limit;
    let mut tick = tokio::time::interval(s.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let why = loop {
        let member = Arc::clone(&held.member);
        let tick = &mut tick;
        let beat = async move {
            tick.tick().await;
            member.heartbeat().await
        };
        tokio::select! {
            biased;
            () = resume.cancelled() => {
                tracing::info!(member_id = %a.member_id, generation = a.generation,
                    "consumer restarted: resuming the held group membership");
                return Some(held);
            }
            () = s.token.cancelled() => break "the daemon is stopping",
            () = tokio::time::sleep_until(deadline) => {
                break "held longer than consumer.rebalance_timeout without consuming: \
                       leaving so its partitions can move"
            }
            beat = beat => match beat {
                Ok(Heartbeat::Stable) => {}
                Ok(Heartbeat::Rejoin(code)) => {
                    tracing::info!(reason = %error_name(code), "held group generation ended");
                    break "its generation ended";
                }
                Err(e) if e.is_retriable() => {
                    s.metrics.errors.with_label_values(&["consumer", "group_heartbeat"]).inc();
                    tracing::warn!(error = %e, "held group membership: heartbeat failed; retrying");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "held group membership: heartbeat refused");
                    break "a heartbeat was refused";
                }
            },
        }
    };
    tracing::info!(member_id = %a.member_id, reason = why, "leaving the group");
    if tokio::time::timeout(s.leave_timeout, held.member.leave())
        .await
        .is_err()
    {
        tracing::warn!("leave group: no answer (the session timeout will remove the member)");
    }
    forget(&s.progress, &s.metrics);
    None
}

/// Clears what the status page and metrics show of a membership that ended.
pub(crate) fn forget(progress: &Progress, metrics: &Metrics) {
    progress.update_group(|g| {
        g.member_id.clear();
        g.partitions.clear();
    });
    let gm = &metrics.group;
    gm.assigned_partitions.set(0);
    gm.member.reset();
}

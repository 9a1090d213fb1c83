//! The group's metrics (registered with the others in `telemetry::metrics`).

use prometheus::core::Collector;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

/// `pipeline_group_*`.
#[derive(Clone)]
pub struct GroupMetrics {
    /// Assignments received (the first join counts too).
    pub rebalances: IntCounter,
    /// The generation of the current assignment (-1 before the first).
    pub generation: IntGauge,
    /// Partitions assigned to this daemon.
    pub assigned_partitions: IntGauge,
    /// 1 for this daemon's member id in its group (the old id's series is removed).
    pub member: IntGaugeVec,
    /// Offset commits the coordinator refused (the partition stopped, its offset unmoved),
    /// by reason.
    pub commits_refused: IntCounterVec,
}

impl GroupMetrics {
    /// # Panics
    /// Never in practice: the names and labels are constants.
    pub fn new() -> Self {
        let generation = IntGauge::new(
            "pipeline_group_generation",
            "Generation of the current group assignment.",
        )
        .expect("valid metric");
        generation.set(-1);
        Self {
            rebalances: IntCounter::new(
                "pipeline_group_rebalances_total",
                "Group assignments received by this daemon (rebalances, the first join too).",
            )
            .expect("valid metric"),
            generation,
            assigned_partitions: IntGauge::new(
                "pipeline_group_assigned_partitions",
                "Partitions the group assigned to this daemon.",
            )
            .expect("valid metric"),
            member: IntGaugeVec::new(
                Opts::new(
                    "pipeline_group_member",
                    "1 for this daemon's member id in its consumer group.",
                ),
                &["group", "member_id"],
            )
            .expect("valid metric"),
            commits_refused: IntCounterVec::new(
                Opts::new(
                    "pipeline_group_commits_refused_total",
                    "Offset commits the group coordinator refused (fenced member or generation).",
                ),
                &["reason"],
            )
            .expect("valid metric"),
        }
    }

    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.rebalances.clone()),
            Box::new(self.generation.clone()),
            Box::new(self.assigned_partitions.clone()),
            Box::new(self.member.clone()),
            Box::new(self.commits_refused.clone()),
        ]
    }
}

impl Default for GroupMetrics {
    fn default() -> Self {
        Self::new()
    }
}

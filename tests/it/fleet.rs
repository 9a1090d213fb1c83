//! Fail-over of a fleet (issue 16, the short variant of `scripts/chaos --instances 3`): three
//! daemons share one database and one consumer group on a topic of 6 partitions while the
//! emulator feeds a seeded run at a steady rate; the relay holder is killed with -9, later a
//! consumer is paused (SIGSTOP) past the group's session timeout and resumed. The partitions,
//! the relay and the source are owned again within their bounds, no committed group offset
//! ever moves backwards (the zombie's commits are fenced), and the final table is exact.
//!
//! Also [`fleet_watch`], the group offset watcher `scripts/chaos --instances N` runs beside
//! the daemons (ignored here; `CHAOS_*` variables).

use crate::chaos;
use crate::common::{self, Daemon, Scenario};
use crate::groups;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pipeline::emulator::{ContentFaults, EmulatorConfig};
use rskafka::client::Client;
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};

const PARTITIONS: i32 = 6;
const SESSION: Duration = Duration::from_secs(6);
/// Issue 16: no partition without an owner for longer than the session timeout + 5 s.
const PARTITION_BOUND: Duration = Duration::from_secs(SESSION.as_secs() + 5);
/// Issue 16: the relay and source leases move within 5 s of the holder's death.
const LEASE_BOUND: Duration = Duration::from_secs(5);

/// What one daemon's `/api/status` says: its partitions and the leases it holds.
#[derive(Debug, Clone, Default)]
struct View {
    partitions: Vec<i32>,
    relay: bool,
    source: bool,
}

/// `/api/status` with a short timeout (a stopped daemon accepts the connection and never
/// answers); `None` when it does not answer.
async fn view(client: &reqwest::Client, port: u16) -> Option<View> {
    let body = client
        .get(format!("http://127.0.0.1:{port}/api/status"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let partitions = v
        .pointer("/kafka/group/partitions")
        .and_then(|p| p.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_i64().and_then(|p| i32::try_from(p).ok()))
                .collect()
        })
        .unwrap_or_default();
    let held = |name: &str| {
        v.get("leases").and_then(|l| l.as_array()).is_some_and(|l| {
            l.iter()
                .any(|l| l["name"] == name && l["held"].as_bool() == Some(true))
        })
    };
    Some(View {
        partitions,
        relay: held("relay"),
        source: held("source"),
    })
}

/// One round of the coverage sampler: when, which partitions some answering daemon owns,
/// whether some answering daemon holds the relay and the source lease.
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    owned: BTreeSet<i32>,
    relay: bool,
    source: bool,
}

impl Sample {
    fn all_partitions(&self) -> bool {
        self.owned.len() == PARTITIONS as usize
    }
}

/// Samples the fleet's `/api/status` every 100 ms until dropped.
struct Coverage {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
}

impl Coverage {
    fn start(ports: Vec<u16>) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (out, stopped) = (Arc::clone(&samples), Arc::clone(&stop));
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_millis(800))
                .build()
                .expect("http client");
            while !stopped.load(Ordering::SeqCst) {
                // The round's start: a daemon stopped after it may still have answered.
                let at = Instant::now();
                let views =
                    futures::future::join_all(ports.iter().map(|p| view(&client, *p))).await;
                let views: Vec<View> = views.into_iter().flatten().collect();
                let sample = Sample {
                    at,
                    owned: views.iter().flat_map(|v| v.partitions.clone()).collect(),
                    relay: views.iter().any(|v| v.relay),
                    source: views.iter().any(|v| v.source),
                };
                out.lock().expect("lock").push(sample);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { samples, stop }
    }

    /// Waits until a sample after `since` has every partition owned and both leases held;
    /// returns (partitions, relay, source) takeover times from `since`.
    async fn takeover(&self, since: Instant, timeout: Duration) -> [Duration; 3] {
        let deadline = Instant::now() + timeout;
        loop {
            let samples = self.samples.lock().expect("lock").clone();
            let after: Vec<&Sample> = samples.iter().filter(|s| s.at > since).collect();
            let first =
                |ok: &dyn Fn(&Sample) -> bool| after.iter().find(|s| ok(s)).map(|s| s.at - since);
            if let (Some(p), Some(r), Some(s)) = (
                first(&Sample::all_partitions),
                first(&|s: &Sample| s.relay),
                first(&|s: &Sample| s.source),
            ) {
                return [p, r, s];
            }
            assert!(
                Instant::now() < deadline,
                "not everything owned again within {timeout:?} (last sample {:?})",
                after.last()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The longest stretch of samples (after `from`) during which some partition had no
    /// answering owner.
    fn worst_partition_gap(&self, from: Instant) -> Duration {
        let samples = self.samples.lock().expect("lock").clone();
        let mut worst = Duration::ZERO;
        for p in 0..PARTITIONS {
            let mut since: Option<Instant> = None;
            for s in samples.iter().filter(|s| s.at >= from) {
                match (s.owned.contains(&p), since) {
                    (false, None) => since = Some(s.at),
                    (true, Some(t)) => {
                        worst = worst.max(s.at - t);
                        since = None;
                    }
                    _ => {}
                }
            }
            if let (Some(t), Some(last)) = (since, samples.last()) {
                worst = worst.max(last.at - t);
            }
        }
        worst
    }
}

impl Drop for Coverage {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Sum of the topic's log-end offsets over its partitions.
async fn end_offsets(client: &Client, topic: &str) -> BTreeMap<i32, i64> {
    let mut out = BTreeMap::new();
    for p in 0..PARTITIONS {
        let pc = client
            .partition_client(topic, p, UnknownTopicHandling::Retry)
            .await
            .expect("partition client");
        let end = pc
            .get_offset(OffsetAt::Latest)
            .await
            .expect("log-end offset");
        out.insert(p, end);
    }
    out
}

/// Starts one daemon of the scenario (`run`) on its own HTTP port.
fn spawn(s: &Scenario, name: &str) -> Daemon {
    let mut own = s.clone();
    own.http_port = common::free_port();
    own.set(
        "PIPELINE_HTTP__LISTEN",
        format!("127.0.0.1:{}", own.http_port),
    );
    own.spawn(&["run"], &common::log_path(name))
}

async fn holds_relay(d: &Daemon) -> bool {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(800))
        .build()
        .expect("http client");
    view(&client, d.http_port).await.is_some_and(|v| v.relay)
}

fn print_takeover(what: &str, t: &[Duration; 3]) {
    println!(
        "{what}: partitions owned again after {:.2} s, relay after {:.2} s, source after {:.2} s",
        t[0].as_secs_f64(),
        t[1].as_secs_f64(),
        t[2].as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_survive_a_relay_kill_and_a_zombie_with_an_exact_table() {
    let faults = ContentFaults::new(0.01, common::default_kinds());
    let (api, _emulator) = common::start_emulator(EmulatorConfig {
        content: faults.clone(),
        ..EmulatorConfig::default()
    })
    .await;
    let mut s = Scenario::new("fleet", &api).await;
    let (results, records) = (500_u32, 30_000_u32);
    // 1,000 users/s: a 30 s ingest, so both events happen under load.
    s.set("PIPELINE_SOURCE__RESULTS", results.to_string())
        .set("PIPELINE_SOURCE__MAX_RECORDS", records.to_string())
        .set("PIPELINE_SOURCE__REQUESTS_PER_SECOND", "2")
        .set("PIPELINE_KAFKA__PARTITIONS", PARTITIONS.to_string())
        .set("PIPELINE_CONSUMER__ASSIGNMENT", "group")
        .set(
            "PIPELINE_CONSUMER__SESSION_TIMEOUT",
            format!("{}s", SESSION.as_secs()),
        )
        .set("PIPELINE_CONSUMER__HEARTBEAT_INTERVAL", "1s")
        .set("PIPELINE_CONSUMER__REBALANCE_TIMEOUT", "20s");
    let group = s.env["PIPELINE_CONSUMER__GROUP"].clone();
    let pool = sqlx::PgPool::connect(&s.db_url).await.expect("pg");
    let client = Arc::new(common::kafka().await);
    let started = Instant::now();

    // A first (it takes both leases and creates the topic), then B and C.
    let mut a = spawn(&s, "fleet_a");
    a.wait_for("/readyz", Duration::from_secs(90), |st, _| st == 200)
        .await;
    let mut bc = [spawn(&s, "fleet_b"), spawn(&s, "fleet_c")];
    let shares = groups::wait_balanced(&[&a, &bc[0], &bc[1]], Duration::from_secs(90)).await;
    println!("assignment of 3 daemons: {shares:?}");
    let coverage = Coverage::start(vec![a.http_port, bc[0].http_port, bc[1].http_port]);
    let (stop_watch, watcher) =
        groups::watch_offsets(Arc::clone(&client), group.clone(), s.topic.clone());

    // kill -9 of the relay holder, under load.
    chaos::wait_landed(&pool, 6_000, &a, Duration::from_secs(120)).await;
    assert!(holds_relay(&a).await, "A, started first, holds the relay");
    let killed = Instant::now();
    a.kill9();
    let after_kill = coverage.takeover(killed, Duration::from_secs(60)).await;
    print_takeover("kill -9 of the relay holder", &after_kill);

    // SIGSTOP of a daemon without the relay lease, past the session timeout, then SIGCONT.
    let zi = usize::from(holds_relay(&bc[0]).await);
    let (zombie, other) = (&bc[zi], &bc[1 - zi]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    zombie.signal("STOP");
    let stopped = Instant::now();
    let after_stop = coverage.takeover(stopped, Duration::from_secs(60)).await;
    print_takeover("SIGSTOP of a consumer", &after_stop);
    tokio::time::sleep((SESSION + Duration::from_secs(3)).saturating_sub(stopped.elapsed())).await;
    zombie.signal("CONT");
    let resumed = Instant::now();
    println!("SIGCONT after {:.1} s", (resumed - stopped).as_secs_f64());

    // The run ends: everything landed, relayed, and committed to the group.
    chaos::wait_landed(&pool, i64::from(records), other, Duration::from_secs(240)).await;
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&pool)
            .await
            .expect("outbox count");
        let end = end_offsets(&client, &s.topic).await;
        let committed = pipeline::group::fetch_committed(
            Arc::clone(&client),
            &group,
            &s.topic,
            Duration::from_secs(5),
        )
        .await
        .unwrap_or_default();
        if outbox == 0 && committed == end {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "outbox {outbox}, committed {committed:?} != end {end:?}; logs:\n{}\n---\n{}",
            other.log_tail(20),
            zombie.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let worst_gap = coverage.worst_partition_gap(killed);
    drop(coverage);
    stop_watch.store(true, Ordering::SeqCst);
    let backwards = watcher.await.expect("watcher");

    let metrics = zombie.get("/metrics").await.expect("zombie metrics").1;
    let refused = common::metric(&metrics, "pipeline_group_commits_refused_total");
    println!(
        "zombie: {refused} commits refused; worst partition without an owner {:.2} s; \
         {records} records in {:.1} s",
        worst_gap.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    // Fenced one way or the other: a stale commit refused by the coordinator (counted), or its
    // heartbeat answered UNKNOWN_MEMBER_ID first and it stopped its partitions uncommitted.
    let log = std::fs::read_to_string(&zombie.log).unwrap_or_default();
    let rejoined = log.contains("stopping the partitions to rejoin");
    println!("zombie: fenced by a refused commit {refused}, rejoined after a heartbeat {rejoined}");
    assert!(
        refused >= 1.0 || rejoined,
        "the zombie noticed it was fenced; log:\n{}",
        zombie.log_tail(30)
    );
    // A clean stop of the survivors: exit 0 each.
    for d in &bc {
        d.signal("TERM");
    }
    for d in &mut bc {
        assert_eq!(d.wait(Duration::from_secs(60)), 0, "{}", d.log_tail(40));
        common::assert_no_panic(&d.log);
    }
    assert!(
        backwards.is_empty(),
        "committed offsets moved backwards: {backwards:?}"
    );
    assert!(
        after_kill[0] <= PARTITION_BOUND && after_stop[0] <= PARTITION_BOUND,
        "partitions owned again after {after_kill:?} / {after_stop:?} (bound {PARTITION_BOUND:?})"
    );
    assert!(
        worst_gap <= PARTITION_BOUND,
        "a partition had no owner for {worst_gap:?}"
    );
    assert!(
        after_kill[1] <= LEASE_BOUND && after_kill[2] <= LEASE_BOUND,
        "relay / source taken over after {:?} / {:?}",
        after_kill[1],
        after_kill[2]
    );
    chaos::assert_exact(&s, results, records, &faults).await;
}

async fn try_end_offsets(client: &Client, topic: &str) -> Option<BTreeMap<i32, i64>> {
    let mut out = BTreeMap::new();
    for p in 0..PARTITIONS {
        let pc = client
            .partition_client(topic, p, UnknownTopicHandling::Error)
            .await
            .ok()?;
        out.insert(p, pc.get_offset(OffsetAt::Latest).await.ok()?);
    }
    Some(out)
}

/// The group offset watcher of `scripts/chaos --instances N`: polls the group's committed
/// offsets (`CHAOS_GROUP`, `CHAOS_TOPIC`, 6 partitions) every 200 ms and the topic's log-end
/// offsets, and rewrites `CHAOS_WATCH_OUT` with one line
/// `committed=… end=… partitions=… backwards=… caught_up=0|1` each round, until the file
/// `CHAOS_WATCH_STOP` exists. Fails if a committed offset ever moved backwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by scripts/chaos --instances N with CHAOS_* variables"]
async fn fleet_watch() {
    let need = |n: &str| std::env::var(n).unwrap_or_else(|_| panic!("{n} is not set"));
    let (group, topic) = (need("CHAOS_GROUP"), need("CHAOS_TOPIC"));
    let (out, stop) = (need("CHAOS_WATCH_OUT"), need("CHAOS_WATCH_STOP"));
    let client = Arc::new(common::kafka().await);
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    let mut backwards = Vec::new();
    let mut rounds = 0_u64;
    while !std::path::Path::new(&stop).exists() {
        rounds += 1;
        if let Ok(now) = pipeline::group::fetch_committed(
            Arc::clone(&client),
            &group,
            &topic,
            Duration::from_secs(5),
        )
        .await
        {
            for (p, o) in &now {
                if let Some(before) = last.get(p)
                    && o < before
                {
                    let line = format!("partition {p}: {before} -> {o}");
                    println!("BACKWARDS {line}");
                    backwards.push(line);
                }
                last.insert(*p, *o);
            }
            if let Some(end) = try_end_offsets(&client, &topic).await {
                let line = format!(
                    "committed={} end={} partitions={} backwards={} caught_up={}\n",
                    last.values().sum::<i64>(),
                    end.values().sum::<i64>(),
                    last.len(),
                    backwards.len(),
                    u8::from(last == end)
                );
                let tmp = format!("{out}.tmp");
                std::fs::write(&tmp, line).expect("write the watch file");
                std::fs::rename(&tmp, &out).expect("rename the watch file");
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "offset watcher: {rounds} rounds, {} backwards moves, last committed {last:?}",
        backwards.len()
    );
    assert!(
        backwards.is_empty(),
        "committed offsets moved backwards: {backwards:?}"
    );
}

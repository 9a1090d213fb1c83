//! Consumer groups (issue 16): several daemons share one group through Kafka's coordinator.
//!
//! Each test has its own topic (6 partitions), keyspace and group. Records are produced by the
//! test straight to the topic (the daemons' sources are off), so the expected table is known
//! exactly; the daemons only consume.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rskafka::client::Client;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;

const PARTITIONS: i32 = 6;
const SESSION: Duration = Duration::from_secs(6);

/// Produces records `from..to`, record i to partition i % PARTITIONS; returns their ids.
async fn produce(client: &Client, topic: &str, from: u64, to: u64) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for p in 0..PARTITIONS {
        let pc = client
            .partition_client(topic, p, UnknownTopicHandling::Retry)
            .await
            .expect("partition client");
        let batch: Vec<Record> = (from..to)
            .filter(|i| i % PARTITIONS as u64 == p as u64)
            .map(|i| {
                let (id, value) = common::own_message(i);
                ids.insert(id.clone());
                Record {
                    key: Some(id.into_bytes()),
                    value: Some(value),
                    headers: BTreeMap::new(),
                    timestamp: chrono::Utc::now(),
                }
            })
            .collect();
        for chunk in batch.chunks(2_000) {
            pc.produce(chunk.to_vec(), Compression::Lz4)
                .await
                .expect("produce");
        }
    }
    ids
}

/// A scenario whose daemons only consume, in group `s.env[PIPELINE_CONSUMER__GROUP]`.
async fn scenario(name: &str) -> (common::Scenario, Arc<Client>) {
    let mut s = common::Scenario::new(name, "http://127.0.0.1:9/api/").await;
    let client = Arc::new(common::kafka().await);
    common::create_topic(&client, &s.topic, PARTITIONS).await;
    s.set("PIPELINE_SOURCE__ENABLED", "false")
        .set("PIPELINE_CONSUMER__START_FROM", "earliest")
        .set("PIPELINE_CONSUMER__ASSIGNMENT", "group")
        .set("PIPELINE_CONSUMER__SESSION_TIMEOUT", "6s")
        .set("PIPELINE_CONSUMER__HEARTBEAT_INTERVAL", "1s")
        .set("PIPELINE_CONSUMER__REBALANCE_TIMEOUT", "20s");
    (s, client)
}

/// Starts one more daemon of the scenario, on its own HTTP port.
fn spawn(s: &common::Scenario, name: &str) -> common::Daemon {
    let mut own = s.clone();
    own.http_port = common::free_port();
    own.set(
        "PIPELINE_HTTP__LISTEN",
        format!("127.0.0.1:{}", own.http_port),
    );
    own.spawn(&["run"], &common::log_path(name))
}

/// The daemon's group view from `/api/status`: (member id, generation, partitions).
pub(crate) async fn group_of(d: &common::Daemon) -> Option<(String, i64, Vec<i32>)> {
    let (status, body) = d.get("/api/status").await?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let g = v.get("kafka")?.get("group")?;
    let member = g.get("member_id")?.as_str()?.to_string();
    if member.is_empty() {
        return None;
    }
    let partitions = g
        .get("partitions")?
        .as_array()?
        .iter()
        .filter_map(|p| p.as_i64().and_then(|p| i32::try_from(p).ok()))
        .collect();
    Some((member, g.get("generation")?.as_i64()?, partitions))
}

/// Waits until `daemons` together own every partition exactly once, in one generation;
/// returns each daemon's partitions.
pub(crate) async fn wait_balanced(daemons: &[&common::Daemon], timeout: Duration) -> Vec<Vec<i32>> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut views = Vec::new();
        for d in daemons {
            views.push(group_of(d).await);
        }
        if views.iter().all(Option::is_some) {
            let views: Vec<_> = views.into_iter().flatten().collect();
            let mut all: Vec<i32> = views.iter().flat_map(|v| v.2.clone()).collect();
            all.sort_unstable();
            let generations: BTreeSet<i64> = views.iter().map(|v| v.1).collect();
            if all == (0..PARTITIONS).collect::<Vec<_>>() && generations.len() == 1 {
                return views.into_iter().map(|v| v.2).collect();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no balanced assignment within {timeout:?}; logs:\n{}",
            daemons
                .iter()
                .map(|d| d.log_tail(20))
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls the group's committed offsets until stopped; records any that moved backwards.
pub(crate) fn watch_offsets(
    client: Arc<Client>,
    group: String,
    topic: String,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<Vec<String>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let handle = tokio::spawn(async move {
        let mut last: BTreeMap<i32, i64> = BTreeMap::new();
        let mut backwards = Vec::new();
        while !stopped.load(Ordering::SeqCst) {
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
                        backwards.push(format!("partition {p}: {before} -> {o}"));
                    }
                    last.insert(*p, *o);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        backwards
    });
    (stop, handle)
}

/// Waits until the group's committed offsets sum to `total`.
async fn wait_committed(client: &Arc<Client>, group: &str, topic: &str, total: i64) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let committed = pipeline::group::fetch_committed(
            Arc::clone(client),
            group,
            topic,
            Duration::from_secs(5),
        )
        .await
        .unwrap_or_default();
        if committed.values().sum::<i64>() == total {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "group offsets {committed:?} never reached {total}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn assert_table_exact(keyspace: &str, want: &BTreeSet<String>) {
    let got = common::created_users(keyspace, &["first_name"]).await;
    let got: BTreeSet<String> = got.into_keys().collect();
    let missing = want.difference(&got).count();
    let extra = got.difference(want).count();
    assert_eq!((missing, extra), (0, 0), "rows missing, rows unexpected");
}

fn metrics_of(body: &str, name: &str) -> f64 {
    common::metric(body, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_share_the_partitions_and_take_over_a_killed_one() {
    let (s, client) = scenario("groups3").await;
    let group = s.env["PIPELINE_CONSUMER__GROUP"].clone();
    let mut want = produce(&client, &s.topic, 0, 6_000).await;
    let mut daemons = [
        spawn(&s, "groups3_a"),
        spawn(&s, "groups3_b"),
        spawn(&s, "groups3_c"),
    ];
    let refs: Vec<&common::Daemon> = daemons.iter().collect();
    let shares = wait_balanced(&refs, Duration::from_secs(90)).await;
    println!("assignment of 3 daemons: {shares:?}");
    assert!(
        shares.iter().all(|s| s.len() == 2),
        "6 partitions over 3 daemons: 2 each, {shares:?}"
    );
    let (stop_watch, watcher) = watch_offsets(Arc::clone(&client), group.clone(), s.topic.clone());

    // Steady production while a member dies: 18,000 more records over ~6 s.
    let producer = {
        let (client, topic) = (Arc::clone(&client), s.topic.clone());
        tokio::spawn(async move {
            let mut ids = BTreeSet::new();
            for k in 0..18 {
                let from = 6_000 + k * 1_000;
                ids.extend(produce(&client, &topic, from, from + 1_000).await);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            ids
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let victim = shares[0].clone();
    daemons[0].kill9();
    let killed = Instant::now();
    let survivors: Vec<&common::Daemon> = daemons[1..].iter().collect();
    let after = wait_balanced(&survivors, SESSION + Duration::from_secs(20)).await;
    let takeover = killed.elapsed();
    println!(
        "partitions {victim:?} of the killed daemon taken over in {takeover:?} \
         (session timeout {SESSION:?}); new assignment {after:?}"
    );
    assert!(
        takeover <= SESSION + Duration::from_secs(5),
        "takeover {takeover:?} > session timeout + 5 s"
    );
    // Sticky: the survivors kept what they had.
    assert!(
        shares[1].iter().all(|p| after[0].contains(p)),
        "{shares:?} -> {after:?}"
    );
    assert!(
        shares[2].iter().all(|p| after[1].contains(p)),
        "{shares:?} -> {after:?}"
    );

    want.extend(producer.await.expect("producer"));
    assert_eq!(want.len(), 24_000);
    wait_committed(&client, &group, &s.topic, 24_000).await;
    stop_watch.store(true, Ordering::SeqCst);
    let backwards = watcher.await.expect("watcher");
    assert!(
        backwards.is_empty(),
        "committed offsets moved backwards: {backwards:?}"
    );
    assert_table_exact(&s.keyspace, &want).await;

    // Kafka's own tool sees the group: both owners, lag 0.
    let describe = describe_with_kafka_tools(&group);
    if let Some(text) = &describe {
        println!("kafka-consumer-groups --describe:\n{text}");
        let rows: Vec<&str> = text.lines().filter(|l| l.contains(&s.topic)).collect();
        assert_eq!(rows.len(), PARTITIONS as usize, "{text}");
        let owners: BTreeSet<&str> = rows
            .iter()
            .filter_map(|l| l.split_whitespace().nth(6))
            .collect();
        assert_eq!(owners.len(), 2, "two owners: {text}");
        for l in &rows {
            let cols: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(cols.get(5), Some(&"0"), "lag 0: {l}");
        }
    }

    // The admin commit is refused while the group has members.
    let err = pipeline::group::commit_admin(
        Arc::clone(&client),
        &group,
        &s.topic,
        &BTreeMap::from([(0, 0)]),
        Duration::from_secs(5),
    )
    .await
    .expect_err("an admin commit while members are active");
    assert!(
        matches!(
            err,
            pipeline::group::GroupError::GroupActive { members: 2, .. }
        ),
        "{err}"
    );

    // A clean stop leaves the group: the other member takes everything at once.
    let metrics_before = daemons[2].get("/metrics").await.expect("metrics").1;
    assert!(metrics_of(&metrics_before, "pipeline_group_rebalances_total") >= 2.0);
    assert_eq!(
        metrics_of(&metrics_before, "pipeline_group_assigned_partitions"),
        after[1].len() as f64
    );
    daemons[1].signal("TERM");
    assert_eq!(daemons[1].wait(Duration::from_secs(60)), 0);
    let left = Instant::now();
    let last: Vec<&common::Daemon> = daemons[2..].iter().collect();
    wait_balanced(&last, Duration::from_secs(15)).await;
    println!(
        "after a clean leave, the last member owns all in {:?}",
        left.elapsed()
    );
    assert!(
        left.elapsed() < SESSION,
        "a leaving member does not wait for its session"
    );
    daemons[2].signal("TERM");
    assert_eq!(daemons[2].wait(Duration::from_secs(60)), 0);
    let description = pipeline::group::describe_members(
        Arc::clone(&client),
        &group,
        &s.topic,
        Duration::from_secs(5),
    )
    .await
    .expect("describe");
    assert_eq!(description.state, "Empty", "{description:?}");
}

/// `scripts/kafka-consumer-groups --describe --group G`, when the wrapper and its jars are
/// there (printed otherwise, not silently skipped: the Rust-side checks above still ran).
pub(crate) fn describe_with_kafka_tools(group: &str) -> Option<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka-consumer-groups");
    if !std::path::Path::new(script).exists() {
        println!("scripts/kafka-consumer-groups missing: --describe not checked");
        return None;
    }
    let out = std::process::Command::new(script)
        .args(["--describe", "--group", group])
        .env("KAFKA_TOOL_BOOTSTRAP", common::kafka_bootstrap())
        .output()
        .expect("run kafka-consumer-groups");
    assert!(
        out.status.success(),
        "kafka-consumer-groups failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_member_is_fenced_and_moves_no_offset() {
    let (s, client) = scenario("groups_zombie").await;
    let group = s.env["PIPELINE_CONSUMER__GROUP"].clone();
    let mut want = produce(&client, &s.topic, 0, 3_000).await;
    let zombie = spawn(&s, "groups_zombie_a");
    let other = spawn(&s, "groups_zombie_b");
    let shares = wait_balanced(&[&zombie, &other], Duration::from_secs(90)).await;
    println!("assignment: {shares:?}");
    let (stop_watch, watcher) = watch_offsets(Arc::clone(&client), group.clone(), s.topic.clone());
    // Production throughout the pause, so the zombie has batches in flight when it stops
    // and when it resumes.
    let producer = {
        let (client, topic) = (Arc::clone(&client), s.topic.clone());
        tokio::spawn(async move {
            let mut ids = BTreeSet::new();
            for k in 0..30 {
                let from = 3_000 + k * 600;
                ids.extend(produce(&client, &topic, from, from + 600).await);
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            ids
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    // A burst just before the pause: the zombie's writers are busy and its fetch→write
    // channels hold batches when it stops, so it has commits to make when it resumes.
    let burst = {
        let (client, topic) = (Arc::clone(&client), s.topic.clone());
        tokio::spawn(async move { produce(&client, &topic, 100_000, 130_000).await })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lag = zombie
            .get("/api/status")
            .await
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .and_then(|v| v["kafka"]["lag_records"].as_i64())
            .unwrap_or_default();
        if lag >= 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the zombie never had a backlog");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    zombie.signal("STOP");
    want.extend(burst.await.expect("burst"));
    let paused = Instant::now();
    // The other member takes everything once the zombie's session expires.
    let deadline = Instant::now() + SESSION + Duration::from_secs(20);
    loop {
        if let Some((_, _, p)) = group_of(&other).await
            && p.len() == PARTITIONS as usize
        {
            break;
        }
        assert!(Instant::now() < deadline, "{}", other.log_tail(40));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "the paused member's partitions moved after {:?}",
        paused.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    zombie.signal("CONT");

    want.extend(producer.await.expect("producer"));
    let total = i64::try_from(want.len()).expect("count");
    wait_balanced(&[&zombie, &other], Duration::from_secs(60)).await;
    wait_committed(&client, &group, &s.topic, total).await;
    stop_watch.store(true, Ordering::SeqCst);
    let backwards = watcher.await.expect("watcher");
    assert!(
        backwards.is_empty(),
        "committed offsets moved backwards: {backwards:?}"
    );

    let metrics = zombie.get("/metrics").await.expect("metrics").1;
    let refused = metrics_of(&metrics, "pipeline_group_commits_refused_total");
    let log = std::fs::read_to_string(&zombie.log).unwrap_or_default();
    println!(
        "zombie: {refused} commits refused; log lines: {:?}",
        log.lines()
            .filter(|l| l.contains("refused") || l.contains("rebalance"))
            .take(5)
            .collect::<Vec<_>>()
    );
    assert!(refused >= 1.0, "the zombie's stale commit was refused");
    assert!(log.contains("offset commit refused"), "logged");
    assert_table_exact(&s.keyspace, &want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_from_static_starts_from_the_cassandra_offsets() {
    let (mut s, client) = scenario("groups_upgrade").await;
    let group = s.env["PIPELINE_CONSUMER__GROUP"].clone();
    let mut want = produce(&client, &s.topic, 0, 3_000).await;
    s.set("PIPELINE_CONSUMER__ASSIGNMENT", "static");
    let prom = s.run_drained("groups_upgrade_static", Duration::from_secs(180));
    assert_eq!(
        metrics_of(&prom, "pipeline_stage_records_total{stage=\"sink\"}"),
        3_000.0
    );
    let none = pipeline::group::fetch_committed(
        Arc::clone(&client),
        &group,
        &s.topic,
        Duration::from_secs(5),
    )
    .await
    .expect("offset fetch");
    assert!(
        none.is_empty(),
        "static mode commits nothing to the group: {none:?}"
    );

    want.extend(produce(&client, &s.topic, 3_000, 4_200).await);
    s.set("PIPELINE_CONSUMER__ASSIGNMENT", "group");
    let prom = s.run_drained("groups_upgrade_group", Duration::from_secs(180));
    assert_eq!(
        metrics_of(&prom, "pipeline_stage_records_total{stage=\"sink\"}"),
        1_200.0,
        "group mode started from the stored offsets: only the new records were read"
    );
    let committed = pipeline::group::fetch_committed(
        Arc::clone(&client),
        &group,
        &s.topic,
        Duration::from_secs(5),
    )
    .await
    .expect("offset fetch");
    assert_eq!(committed.len(), PARTITIONS as usize, "{committed:?}");
    assert_eq!(committed.values().sum::<i64>(), 4_200);
    assert_eq!(
        common::stored_offsets(&s.keyspace, &s.topic).await,
        committed
    );
    assert_table_exact(&s.keyspace, &want).await;

    // The admin API: a commit for a group without members is accepted.
    let rewound: BTreeMap<i32, i64> = committed.keys().map(|p| (*p, 0)).collect();
    pipeline::group::commit_admin(
        Arc::clone(&client),
        &group,
        &s.topic,
        &rewound,
        Duration::from_secs(5),
    )
    .await
    .expect("admin commit on an empty group");
    let now = pipeline::group::fetch_committed(
        Arc::clone(&client),
        &group,
        &s.topic,
        Duration::from_secs(5),
    )
    .await
    .expect("offset fetch");
    assert_eq!(now, rewound);
}

/// Issue 18 item 5 (src/consume/membership.rs): a consumer stopped by a sink failure keeps
/// its group membership while it waits to restart. Heartbeats go on past the session
/// timeout, the next run gets the same member and generation back; a generation that ends
/// meanwhile (another member joins) makes the held member leave at once, so the rebalance
/// does not wait for it and the next run joins afresh; a hold longer than its limit
/// (`consumer.rebalance_timeout`) leaves the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_member_outlives_its_session_and_is_resumed_or_leaves() {
    use pipeline::consume::{Held, HeldMembership, HoldSettings, Progress};
    use pipeline::group::{self, GroupMembership, Heartbeat};
    use tokio_util::sync::CancellationToken;

    common::require("Kafka", &common::kafka_bootstrap());
    let client = Arc::new(common::kafka().await);
    let topic = common::unique("held");
    let group = common::unique("held_group");
    common::create_topic(&client, &topic, 3).await;
    let timeout = Duration::from_secs(10);
    let member = |client: &Arc<Client>| -> Arc<dyn GroupMembership> {
        Arc::new(group::Member::new(
            Arc::clone(client),
            &group,
            &topic,
            group::Timeouts {
                session: SESSION,
                rebalance: Duration::from_secs(15),
                heartbeat: Duration::from_secs(1),
            },
            timeout,
        ))
    };
    let token = CancellationToken::new();
    let settings = |limit: Duration| HoldSettings {
        heartbeat: Duration::from_secs(1),
        limit,
        leave_timeout: timeout,
        token: token.clone(),
        progress: Arc::new(Progress::default()),
        metrics: pipeline::telemetry::Metrics::new(),
    };
    let describe = || group::describe_members(Arc::clone(&client), &group, &topic, timeout);

    let first = member(&client);
    let a = first.join(3).await.expect("join");
    assert_eq!(a.partitions, vec![0, 1, 2]);
    let held = HeldMembership::default();
    held.hold(
        Held {
            member: Arc::clone(&first),
            assignment: a.clone(),
        },
        settings(Duration::from_secs(60)),
    )
    .await;
    // Without heartbeats the coordinator would drop the member after SESSION.
    tokio::time::sleep(SESSION + Duration::from_secs(3)).await;
    let d = describe().await.expect("describe");
    assert_eq!(d.state, "Stable", "{d:?}");
    assert_eq!(d.members.len(), 1, "{d:?}");
    assert_eq!(d.members[0].member_id, a.member_id);
    let back = held.take().await.expect("the held member is handed back");
    assert_eq!(back.assignment, a, "same member, generation and partitions");
    assert!(matches!(first.heartbeat().await, Ok(Heartbeat::Stable)));

    // Another member joins while the first is held: the held one leaves instead of holding
    // the rebalance up to its timeout, and is not handed back.
    held.hold(back, settings(Duration::from_secs(60))).await;
    let second = member(&client);
    let started = Instant::now();
    let b = tokio::time::timeout(Duration::from_secs(14), second.join(3))
        .await
        .expect("the rebalance did not wait for the held member's rebalance timeout")
        .expect("join");
    println!("second member joined in {:?}", started.elapsed());
    assert_eq!(b.partitions, vec![0, 1, 2]);
    assert!(b.generation > a.generation, "{b:?} after {a:?}");
    assert!(
        held.take().await.is_none(),
        "an ended generation is not resumed"
    );

    // Held past its limit: it leaves, and the group is empty.
    held.hold(
        Held {
            member: Arc::clone(&second),
            assignment: b,
        },
        settings(Duration::from_secs(2)),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let d = describe().await.expect("describe");
    assert!(d.members.is_empty(), "left after its limit: {d:?}");
    assert!(held.take().await.is_none());
}

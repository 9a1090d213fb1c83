//! Cluster settings and what `check --connect` reports of the cluster, against the
//! single-node stack (the same code reads a 3-broker / 3-node cluster).

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use pipeline::config::KafkaConfig;
use pipeline::kafka::{self, admin};

fn kafka_config(topic: &str) -> KafkaConfig {
    KafkaConfig {
        bootstrap: vec![common::kafka_bootstrap()],
        topic: topic.to_string(),
        partitions: 2,
        replication_factor: 1,
        min_insync_replicas: Some(1),
        request_timeout: Duration::from_secs(10),
        ..KafkaConfig::default()
    }
}

#[tokio::test]
async fn created_topics_carry_min_insync_replicas() {
    common::require("Kafka", &common::kafka_bootstrap());
    let topic = common::unique("cl_minisr");
    let config = kafka_config(&topic);
    let client = Arc::new(kafka::connect(&config).await.expect("connect"));

    let partitions = kafka::ensure_topic(&client, &config, &topic)
        .await
        .expect("create the topic");
    assert_eq!(partitions, 2);
    let configs = admin::topic_configs(
        &client,
        &topic,
        &[admin::MIN_INSYNC_REPLICAS],
        config.request_timeout,
    )
    .await
    .expect("describe configs");
    assert_eq!(
        configs.get(admin::MIN_INSYNC_REPLICAS),
        Some(&Some("1".to_string())),
        "{configs:?}"
    );
    // The replication factor asked for, as Metadata shows it.
    let view = admin::cluster(&client, &[&topic], config.request_timeout)
        .await
        .expect("metadata");
    let placement = view.topics.get(&topic).expect("topic in metadata");
    assert_eq!(placement.len(), 2);
    assert!(
        placement.iter().all(|p| p.replicas.len() == 1),
        "{placement:?}"
    );

    // Created twice (a second stage, a second daemon): TopicAlreadyExists is success.
    let again = kafka_config(&topic);
    let second = common::unique("cl_minisr_race");
    admin::create_topic(&client, &second, 1, 1, &[], config.request_timeout)
        .await
        .expect("first create");
    let err = admin::create_topic(&client, &second, 1, 1, &[], config.request_timeout)
        .await
        .expect_err("second create of the same topic");
    assert_eq!(
        err.protocol_error(),
        Some(rskafka::client::error::ProtocolError::TopicAlreadyExists),
        "{err}"
    );
    assert_eq!(
        kafka::ensure_topic(&client, &again, &second)
            .await
            .expect("an existing topic is used"),
        1
    );

    // A value set by hand (2 on one replica, which Kafka accepts) is read back as it is,
    // and an existing topic that differs is used with a warning, not altered.
    let odd = common::unique("cl_minisr_odd");
    admin::create_topic(
        &client,
        &odd,
        1,
        1,
        &[(admin::MIN_INSYNC_REPLICAS, "2".to_string())],
        config.request_timeout,
    )
    .await
    .expect("create with min.insync.replicas 2");
    assert_eq!(
        kafka::ensure_topic(&client, &config, &odd)
            .await
            .expect("existing topic with another min ISR"),
        1
    );
    let configs = admin::topic_configs(&client, &odd, &[], config.request_timeout)
        .await
        .expect("describe all configs");
    assert_eq!(
        configs.get(admin::MIN_INSYNC_REPLICAS),
        Some(&Some("2".to_string())),
        "not altered: {configs:?}"
    );
}

#[tokio::test]
async fn check_connect_reports_brokers_partition_leaders_and_nodes() {
    let mut s = common::Scenario::new("clcheck", "http://127.0.0.1:9/api/").await;
    s.set("PIPELINE_SOURCE__ENABLED", "false");
    // The topic exists (leaders to report); the DLQ topic does not yet.
    let config = KafkaConfig {
        partitions: 3,
        ..kafka_config(&s.topic)
    };
    let client = kafka::connect(&config).await.expect("connect");
    kafka::ensure_topic(&client, &config, &s.topic)
        .await
        .expect("create the topic");

    let log = common::log_path("clcheck");
    let mut check = s.spawn(&["check", "--connect"], &log);
    let code = check.wait(Duration::from_secs(120));
    let out = std::fs::read_to_string(&log).expect("check output");
    assert_eq!(code, 0, "check --connect failed:\n{out}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let has = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));

    // The single-node stack's broker 1, the controller (KRaft combined mode).
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("broker 1 ") && l.ends_with("(controller)")),
        "{out}"
    );
    assert!(
        has(&format!(
            "topic {}: 3 partitions, min.insync.replicas 1, 0 flagged",
            s.topic
        )),
        "{out}"
    );
    for p in 0..3 {
        assert!(
            has(&format!("partition {p} leader 1 replicas [1] isr [1]")),
            "partition {p}: {out}"
        );
    }
    assert!(
        has(&format!("topic {}: does not exist yet", s.dlq)),
        "{out}"
    );
    // The one Cassandra node, up, answering with its version; the keyspace check created.
    let nodes: Vec<&&str> = lines.iter().filter(|l| l.starts_with("node ")).collect();
    assert_eq!(nodes.len(), 1, "{out}");
    assert!(
        nodes[0].starts_with(&format!("node UN {}", common::cassandra_contact())),
        "{out}"
    );
    assert!(nodes[0].contains(" release "), "{out}");
    assert!(
        has("cluster ") && out.contains("1 node(s), 1 answering"),
        "{out}"
    );
    assert!(
        has(&format!(
            "keyspace {} replication class=org.apache.cassandra.locator.SimpleStrategy replication_factor=1",
            s.keyspace
        )),
        "{out}"
    );
}

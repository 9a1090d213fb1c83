//! The Cassandra cluster as `pipeline check --connect` reports it: every node the contact
//! point knows (`system.local` + `system.peers_v2`, or `system.peers` before Cassandra 4),
//! whether each node answers a query of its own, and the keyspace's replication.
//!
//! A node "answers" when a bare connection to its native address (authenticated as the
//! daemon is) runs `SELECT release_version FROM system.local`: what the driver needs of it,
//! not gossip's view (`nodetool status`), which CQL does not expose.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use cdrs_tokio::types::map::Map;
use cdrs_tokio::types::rows::Row;
use cdrs_tokio::types::{AsRustType, IntoRustByName};

use super::{NodeConnection, SinkError, authenticator, resolve, tls_target};
use crate::config::CassandraConfig;

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CassandraNode {
    /// Native-protocol address (what the driver connects to).
    pub address: SocketAddr,
    pub datacenter: Option<String>,
    pub rack: Option<String>,
    pub host_id: Option<String>,
    /// The node's own answer: its release_version, or why it did not answer.
    pub answer: Result<String, String>,
}

impl CassandraNode {
    /// "UN" when the node answered, "DN" when not (`nodetool status`' letters; here from
    /// our own connection, see the module doc).
    pub fn state(&self) -> &'static str {
        if self.answer.is_ok() { "UN" } else { "DN" }
    }
}

/// What a contact point says of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CassandraCluster {
    pub cluster_name: Option<String>,
    /// The contact point that answered.
    pub contact: SocketAddr,
    pub nodes: Vec<CassandraNode>,
    /// `system_schema.keyspaces.replication` of `cassandra.keyspace` (none: no keyspace yet).
    pub replication: Option<BTreeMap<String, String>>,
}

fn text(row: &Row, column: &str) -> Option<String> {
    if !row.contains_column(column) {
        return None;
    }
    let value: Option<String> = row.get_by_name(column).ok().flatten();
    value
}

fn ip(row: &Row, column: &str) -> Option<IpAddr> {
    if !row.contains_column(column) {
        return None;
    }
    let value: Option<IpAddr> = row.get_by_name(column).ok().flatten();
    value
}

fn port(row: &Row, column: &str) -> Option<u16> {
    if !row.contains_column(column) {
        return None;
    }
    let value: Option<i32> = row.get_by_name(column).ok().flatten();
    value.and_then(|p| u16::try_from(p).ok())
}

fn host_id(row: &Row) -> Option<String> {
    let value: Option<uuid::Uuid> = row.get_by_name("host_id").ok().flatten();
    value.map(|u| u.to_string())
}

/// Reads the cluster through the first contact point that answers, then asks every node.
///
/// # Errors
/// No contact point answers, or it refuses the system queries.
pub async fn cluster(config: &CassandraConfig) -> Result<CassandraCluster, SinkError> {
    let timeout = config.request_timeout;
    let timed = |op: &'static str| SinkError::Timeout { op, after: timeout };
    let auth = authenticator(config);
    let tls = tls_target(config)?;
    let mut last = SinkError::NoContactPoints;
    let mut opened = None;
    for contact in &config.contact_points {
        let attempt = async {
            let addr = resolve(contact).await?;
            let c = NodeConnection::open(auth.clone(), tls.clone(), addr).await?;
            Ok::<_, SinkError>((addr, c))
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(found)) => {
                opened = Some(found);
                break;
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = timed("connect"),
        }
    }
    let Some((contact, conn)) = opened else {
        return Err(last);
    };
    let query = |cql: String, op: &'static str| {
        let conn = &conn;
        async move {
            tokio::time::timeout(timeout, conn.query(&cql, op))
                .await
                .map_err(|_| timed(op))?
        }
    };
    let local = query(
        "SELECT * FROM system.local WHERE key = 'local'".into(),
        "system.local",
    )
    .await?;
    let local = local.first().ok_or_else(|| SinkError::Answer {
        op: "system.local",
        detail: "no row".into(),
    })?;
    let cluster_name = text(local, "cluster_name");
    let mut nodes = vec![CassandraNode {
        address: contact,
        datacenter: text(local, "data_center"),
        rack: text(local, "rack"),
        host_id: host_id(local),
        answer: Err(String::new()),
    }];
    // peers_v2 (Cassandra 4+) has each peer's native address and port; peers (3.x) only
    // its rpc_address, on the contact point's port.
    let peers = match query("SELECT * FROM system.peers_v2".into(), "system.peers_v2").await {
        Ok(rows) => rows,
        Err(_) => query("SELECT * FROM system.peers".into(), "system.peers").await?,
    };
    for row in &peers {
        let Some(address) = ip(row, "native_address")
            .or_else(|| ip(row, "rpc_address"))
            .or_else(|| ip(row, "peer"))
        else {
            continue;
        };
        let port = port(row, "native_port").unwrap_or(contact.port());
        nodes.push(CassandraNode {
            address: SocketAddr::new(address, port),
            datacenter: text(row, "data_center"),
            rack: text(row, "rack"),
            host_id: host_id(row),
            answer: Err(String::new()),
        });
    }
    nodes.sort_by_key(|n| n.address);
    let ask = |address: SocketAddr| {
        let (auth, tls) = (auth.clone(), tls.clone());
        async move {
            let asked = async {
                let c = NodeConnection::open(auth, tls, address).await?;
                let rows = c
                    .query(
                        "SELECT release_version FROM system.local",
                        "release_version",
                    )
                    .await?;
                rows.first()
                    .and_then(|r| text(r, "release_version"))
                    .ok_or_else(|| SinkError::Answer {
                        op: "release_version",
                        detail: "no row".into(),
                    })
            };
            match tokio::time::timeout(node_timeout(timeout), asked).await {
                Ok(Ok(version)) => Ok(version),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {:?}", node_timeout(timeout))),
            }
        }
    };
    let answers = futures::future::join_all(nodes.iter().map(|n| ask(n.address))).await;
    for (node, answer) in nodes.iter_mut().zip(answers) {
        node.answer = answer;
    }
    let replication = query(
        format!(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = '{}'",
            config.keyspace
        ),
        "system_schema.keyspaces",
    )
    .await?
    .first()
    .and_then(|row| {
        let map: Option<Map> = row.get_by_name("replication").ok().flatten();
        map
    })
    .and_then(|m| {
        AsRustType::<std::collections::HashMap<String, String>>::as_rust_type(&m)
            .ok()
            .flatten()
    })
    .map(|m| m.into_iter().collect());
    Ok(CassandraCluster {
        cluster_name,
        contact,
        nodes,
        replication,
    })
}

/// A node that does not answer within this is reported down (a stopped node's connect
/// hangs until the OS gives up; `check` must not).
fn node_timeout(request_timeout: Duration) -> Duration {
    request_timeout.min(Duration::from_secs(5))
}

impl CassandraCluster {
    /// `check --connect`'s lines: the cluster, each node with its state, and the keyspace's
    /// replication.
    pub fn report_lines(&self, keyspace: &str) -> Vec<String> {
        let up = self.nodes.iter().filter(|n| n.answer.is_ok()).count();
        let mut lines = vec![format!(
            "cluster {} via {}: {} node(s), {up} answering",
            self.cluster_name.as_deref().unwrap_or("(unnamed)"),
            self.contact,
            self.nodes.len()
        )];
        for n in &self.nodes {
            lines.push(format!(
                "node {} {} dc {} rack {} host_id {} {}",
                n.state(),
                n.address,
                n.datacenter.as_deref().unwrap_or("?"),
                n.rack.as_deref().unwrap_or("?"),
                n.host_id.as_deref().unwrap_or("?"),
                match &n.answer {
                    Ok(version) => format!("release {version}"),
                    Err(e) => format!("no answer: {e}"),
                }
            ));
        }
        lines.push(match &self.replication {
            Some(r) => format!(
                "keyspace {keyspace} replication {}",
                r.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            None => format!("keyspace {keyspace}: does not exist yet"),
        });
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_give_each_node_its_state() {
        let node = |last: u8, answer: Result<String, String>| CassandraNode {
            address: SocketAddr::from(([127, 0, 0, last], 9042)),
            datacenter: Some("dc1".into()),
            rack: Some("rack1".into()),
            host_id: Some(format!("h{last}")),
            answer,
        };
        let cluster = CassandraCluster {
            cluster_name: Some("pipeline".into()),
            contact: SocketAddr::from(([127, 0, 0, 1], 9042)),
            nodes: vec![
                node(1, Ok("5.0.4".into())),
                node(2, Err("connection refused".into())),
            ],
            replication: Some(BTreeMap::from([
                ("class".into(), "SimpleStrategy".into()),
                ("replication_factor".into(), "3".into()),
            ])),
        };
        let lines = cluster.report_lines("ks");
        assert_eq!(
            lines,
            vec![
                "cluster pipeline via 127.0.0.1:9042: 2 node(s), 1 answering",
                "node UN 127.0.0.1:9042 dc dc1 rack rack1 host_id h1 release 5.0.4",
                "node DN 127.0.0.2:9042 dc dc1 rack rack1 host_id h2 no answer: connection refused",
                "keyspace ks replication class=SimpleStrategy replication_factor=3",
            ]
        );
    }
}

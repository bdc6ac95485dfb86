//! A Redis Cluster through redis-rs's own cluster client (`cluster_async`), tuned so that a
//! failover costs a short burst of 503s instead of a silent stall.
//!
//! # The tuning, and why
//! redis-rs's cluster defaults have no response timeout and wait at least 1,280 ms between
//! retries. When a master dies, its slots are unreachable until a replica takes over (3.4-4.4 s
//! after a SIGKILL with `cluster-node-timeout 2000` on the test machine); with the defaults every
//! request for those slots hangs through the whole failover and then succeeds: a multi-second stall
//! with no error, which a load balancer and a user read as "the service hangs". authlab sets:
//! - a **response timeout** (`--redis-cluster-timeout`, default 250 ms): the longest one attempt
//!   waits for a node;
//! - a **request deadline** (`--redis-cluster-deadline`, default 1 s): the longest a whole request
//!   takes, retries and redirections included, so a request for a dead master's slots answers 503
//!   within about a second. Not equal to the timeout: redis-rs holds every request of a cluster
//!   connection while it refreshes its slot map (`refresh_slots` takes the connections' write
//!   lock), and with a 250 ms deadline requests for the *healthy* masters timed out behind that
//!   refresh (15 of 3,338 in one run; with 1 s, 0-5 of 1,531-5,691 in five runs);
//! - a short **retry wait** (`--redis-cluster-retry-wait`, default `20ms..200ms`): redirections
//!   (`MOVED` after a failover) and reconnects are retried after 20 ms, growing to 200 ms, so the
//!   requests after the replica's promotion succeed at once.
//!
//! Replicas are never read (redis-rs's default, which authlab does not change): replication is
//! asynchronous, and a logout not yet replicated would read as a valid token there.
//!
//! # The slot rule
//! The cluster client routes each command by its key's hash slot, and refuses a pipeline whose
//! keys sit in different slots (`CROSSSLOT`); a Lua script runs on the node of its first key and
//! fails with "non local key" on an undeclared key of another slot. Every pipeline and script in
//! this crate therefore touches one slot; `docs/backends.md` lists them, and the `slot_rule` test
//! checks them with redis-rs's own slot function.

use std::time::Duration;

use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::io::tcp::TcpSettings;

use crate::topology::ClusterTarget;
use crate::{RedisBackendError, RedisTimeouts};

/// How a cluster connection waits and retries. The defaults are the measured ones from the
/// module docs.
#[derive(Debug, Clone)]
pub struct ClusterTuning {
    /// The longest wait for one node's answer.
    pub response_timeout: Duration,
    /// The longest a whole request may take, its retries, redirections and waits included.
    pub request_deadline: Duration,
    /// The first wait before a retry (a redirection, a reconnect).
    pub min_retry_wait: Duration,
    /// The longest wait before a retry.
    pub max_retry_wait: Duration,
}

impl Default for ClusterTuning {
    fn default() -> Self {
        Self {
            response_timeout: Duration::from_millis(250),
            request_deadline: Duration::from_millis(1000),
            min_retry_wait: Duration::from_millis(20),
            max_retry_wait: Duration::from_millis(200),
        }
    }
}

/// How to connect to a Redis Cluster.
pub(crate) struct Cluster {
    client: ClusterClient,
}

impl Cluster {
    /// Reads the seeds and the tuning without connecting.
    pub(crate) fn new(
        target: &ClusterTarget,
        timeouts: &RedisTimeouts,
    ) -> Result<Self, RedisBackendError> {
        let tuning = &timeouts.cluster;
        let client = ClusterClient::builder(target.seed_urls())
            .connection_timeout(timeouts.connect)
            .response_timeout(tuning.response_timeout)
            .overall_response_timeout(Some(tuning.request_deadline))
            .min_retry_wait(millis(tuning.min_retry_wait))
            .max_retry_wait(millis(tuning.max_retry_wait))
            // Small request/response pairs: Nagle's algorithm would only add latency.
            .tcp_settings(TcpSettings::default().set_nodelay(true))
            // Never `read_from_replicas()`: auth state is read from masters only.
            .build()
            .map_err(RedisBackendError::InvalidUrl)?;
        Ok(Self { client })
    }

    /// Connects to the seeds and reads the slot map, on the current runtime.
    pub(crate) async fn connect(&self) -> redis::RedisResult<ClusterConnection> {
        self.client.get_async_connection().await
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Deletes every key matching `pattern` on every master: `SCAN` walks one node, so each master
/// is scanned by its address, and the keys go in `UNLINK`s that redis-rs splits by slot. For
/// tooling and test clean-up only.
pub(crate) async fn delete_matching(
    mut conn: ClusterConnection,
    pattern: &str,
) -> redis::RedisResult<()> {
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut conn)
        .await?;
    for (host, port) in masters(&nodes) {
        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: host.clone(),
            port,
        });
        let mut cursor: u64 = 0;
        loop {
            let reply = conn
                .route_command(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .clone(),
                    route.clone(),
                )
                .await?;
            let (next, keys): (u64, Vec<String>) = redis::from_redis_value(reply)?;
            for key in &keys {
                let _: i64 = redis::cmd("UNLINK").arg(key).query_async(&mut conn).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(())
}

/// The live masters' `(host, port)` in a `CLUSTER NODES` reply.
fn masters(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            // `<id> <host:port@bus-port[,hostname]> <flags> ...`
            let address = fields.nth(1)?;
            let flags: Vec<&str> = fields.next()?.split(',').collect();
            let live_master =
                flags.contains(&"master") && !flags.iter().any(|f| *f == "fail" || *f == "noaddr");
            let (host, port) = address.split_once('@')?.0.rsplit_once(':')?;
            let port = port.parse().ok()?;
            live_master.then(|| (host.to_owned(), port))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_live_masters_are_scanned() {
        let nodes = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7002@17002 master,fail - 0 0 3 connected
d4 127.0.0.1:7003@17003 slave a1 0 0 1 connected
";
        assert_eq!(
            masters(nodes),
            [
                ("127.0.0.1".to_owned(), 7000),
                ("127.0.0.1".to_owned(), 7001)
            ]
        );
    }
}

//! A real 6-node Redis Cluster for the tests (3 masters, 3 replicas), on free loopback ports, in a
//! temporary directory of its own: `redis-server --cluster-enabled yes --cluster-node-timeout 2000
//! --save "" --appendonly no` per node, joined by `redis-cli --cluster create … --cluster-replicas
//! 1`. It is ready when every node reports `cluster_state:ok` and every master has a replica in
//! sync (about 2 s here). Every process is killed by its pid when the fixture is dropped, also when
//! a test panics.
//!
//! Tests that only use the cluster share one ([`RedisCluster::shared`]: it lives while a test
//! holds it); tests that kill or fail over nodes start their own ([`RedisCluster::start`]).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use uuid::Uuid;

/// The cluster's failure detection, as the issue measured it: a replica takes over 3.4-4.4 s
/// after its master is killed.
pub const NODE_TIMEOUT_MS: u32 = 2000;

/// One `redis-server` of the cluster.
pub struct Node {
    pub port: u16,
    child: Option<Child>,
}

/// Six nodes joined into a cluster.
pub struct RedisCluster {
    pub nodes: Vec<Node>,
    dir: PathBuf,
}

static SHARED: Mutex<Weak<RedisCluster>> = Mutex::new(Weak::new());

impl RedisCluster {
    /// The cluster every test that only reads and writes through authlab shares; started by the
    /// first test that asks, stopped when the last one holding it finishes.
    pub fn shared() -> Arc<RedisCluster> {
        let mut shared = SHARED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(cluster) = shared.upgrade() {
            return cluster;
        }
        let cluster = Arc::new(RedisCluster::start());
        *shared = Arc::downgrade(&cluster);
        cluster
    }

    /// A cluster of this test's own.
    ///
    /// Other tests pick free ports at the same time and bind them a moment later, so a port
    /// chosen here can be taken before its node binds it (the node then exits, and the port
    /// answers as somebody else's Redis). Such an attempt is stopped, by pid, and made again on
    /// new ports.
    pub fn start() -> RedisCluster {
        let mut failures = Vec::new();
        for _ in 0..5 {
            match Self::try_start() {
                Ok(cluster) => return cluster,
                Err(why) => failures.push(why),
            }
        }
        panic!("the Redis Cluster did not start: {failures:?}");
    }

    fn try_start() -> Result<RedisCluster, String> {
        let dir = std::env::temp_dir().join(format!("authlab-cluster-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("the cluster's directory");
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            dir,
        };
        for port in cluster_ports(6) {
            let node_dir = cluster.dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).expect("a node's directory");
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
                .args(["--save", "", "--appendonly", "no"])
                // Replicas sync at once (the default waits 5 s for more replicas to join).
                .args(["--repl-diskless-sync-delay", "0"])
                .arg("--dir")
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server is on PATH (scripts/test installs it)");
            cluster.nodes.push(Node {
                port,
                child: Some(child),
            });
        }
        for node in &mut cluster.nodes {
            let port = node.port;
            wait_until(Duration::from_secs(5), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            })
            .ok_or_else(|| format!("redis-server on {port} did not start"))?;
            // Our own node, still running, and a cluster node: not another test's Redis.
            let exited = node
                .child
                .as_mut()
                .map(|child| !matches!(child.try_wait(), Ok(None)))
                .unwrap_or(true);
            let clustered = Node::at(port)
                .command(&["INFO", "cluster"])
                .is_some_and(|info| info.contains("cluster_enabled:1"));
            if exited || !clustered {
                return Err(format!("port {port} was taken by another process"));
            }
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli is on PATH (scripts/test installs it)");
        if !created.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&created.stdout)
            ));
        }
        cluster.wait_until_healthy(Duration::from_secs(15));
        Ok(cluster)
    }

    /// The URL authlab is given: every node as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// Waits until every running node says `cluster_state:ok` and every master has a replica
    /// that is online.
    pub fn wait_until_healthy(&self, limit: Duration) {
        let healthy = wait_until(limit, || {
            self.running().all(|node| {
                node.command(&["CLUSTER", "INFO"])
                    .is_some_and(|info| info.contains("cluster_state:ok"))
            }) && self.masters().iter().all(|&port| {
                Node::at(port)
                    .command(&["INFO", "replication"])
                    .is_some_and(|info| {
                        info.contains("connected_slaves:1") && info.contains("state=online")
                    })
            })
        });
        assert!(healthy.is_some(), "the cluster did not become healthy");
    }

    fn running(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.child.is_some())
    }

    /// The ports of the masters, as a running node sees them.
    pub fn masters(&self) -> Vec<u16> {
        let Some(nodes) = self
            .running()
            .find_map(|n| n.command(&["CLUSTER", "NODES"]))
        else {
            return Vec::new();
        };
        nodes
            .lines()
            .filter(|line| {
                let flags = line.split_whitespace().nth(2).unwrap_or_default();
                flags.contains("master") && !flags.contains("fail")
            })
            .filter_map(|line| {
                let address = line.split_whitespace().nth(1)?;
                address.split('@').next()?.rsplit_once(':')?.1.parse().ok()
            })
            .collect()
    }

    /// The port of the master that serves `key`'s slot.
    pub fn master_of(&self, key: &str) -> u16 {
        let slot = self
            .running()
            .find_map(|n| n.command(&["CLUSTER", "KEYSLOT", key]))
            .and_then(|s| s.trim().parse::<u16>().ok())
            .expect("CLUSTER KEYSLOT answers");
        let nodes = self
            .running()
            .find_map(|n| n.command(&["CLUSTER", "NODES"]))
            .expect("CLUSTER NODES answers");
        nodes
            .lines()
            .filter(|line| line.contains("master") && !line.contains("fail"))
            .find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let serves = fields.iter().skip(8).any(|range| {
                    let (from, to) = range.split_once('-').unwrap_or((range, range));
                    matches!((from.parse::<u16>(), to.parse::<u16>()), (Ok(f), Ok(t)) if (f..=t).contains(&slot))
                });
                serves
                    .then(|| fields[1].split('@').next()?.rsplit_once(':')?.1.parse().ok())
                    .flatten()
            })
            .expect("a master serves every slot")
    }

    /// The replica of the master on `master_port`. A replica in sync shows in the master's own
    /// view (`CLUSTER NODES`) only once gossip has carried its new role, so this waits for it.
    pub fn replica_of(&self, master_port: u16) -> u16 {
        let mut replica = None;
        wait_until(Duration::from_secs(10), || {
            replica = Self::replica_in_view(master_port);
            replica.is_some()
        });
        replica.expect("the master has a replica")
    }

    fn replica_in_view(master_port: u16) -> Option<u16> {
        let nodes = Node::at(master_port).command(&["CLUSTER", "NODES"])?;
        let master_id = nodes
            .lines()
            .find(|line| line.contains("myself"))
            .and_then(|line| line.split_whitespace().next())?
            .to_owned();
        nodes
            .lines()
            .find(|line| line.split_whitespace().nth(3) == Some(master_id.as_str()))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|address| address.split('@').next()?.rsplit_once(':')?.1.parse().ok())
    }

    /// Freezes the node on `port` (`SIGSTOP`: a hung node, its sockets open) until the guard is
    /// dropped (`SIGCONT`), so a failing assertion never leaves it stopped.
    pub fn pause(&self, port: u16) -> crate::helpers::Resume {
        let pid = self
            .nodes
            .iter()
            .find(|n| n.port == port)
            .and_then(|n| n.child.as_ref())
            .map(Child::id)
            .expect("the node runs")
            .to_string();
        assert!(
            Command::new("kill")
                .args(["-STOP", &pid])
                .status()
                .expect("kill is on PATH")
                .success()
        );
        crate::helpers::Resume(pid)
    }

    /// Kills the node on `port` with SIGKILL, as a crash would.
    pub fn kill(&mut self, port: u16) {
        if let Some(node) = self.nodes.iter_mut().find(|n| n.port == port) {
            node.stop();
        }
    }
}

impl Node {
    /// A handle on a node by port, for commands only (it owns no process).
    pub fn at(port: u16) -> Node {
        Node { port, child: None }
    }

    /// Runs one command with `redis-cli` and returns its output, `None` if the node does not
    /// answer.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        (output.status.success() && !text.starts_with("Could not connect")).then_some(text)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL, by this process's own pid.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `count` free ports whose cluster bus port (port + 10000) is free too.
fn cluster_ports(count: usize) -> Vec<u16> {
    let mut ports = Vec::new();
    let mut held = Vec::new();
    while ports.len() < count {
        let Ok(listener) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(port) = listener.local_addr().map(|a| a.port()) else {
            continue;
        };
        let bus_free = port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok();
        if bus_free && !ports.contains(&port) {
            ports.push(port);
        }
        // Keep the listener until all are chosen, so the same port is not handed out twice.
        held.push(listener);
    }
    ports
}

/// Polls `probe` every 50 ms for at most `limit`; `Some(elapsed)` once it holds.
pub fn wait_until(limit: Duration, mut probe: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if probe() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

//! The Redis a drill runs: one server, a Sentinel set (one master, one replica, three
//! sentinels), or a 6-node Cluster (three masters, three replicas), all on loopback, none of them
//! keeping anything on disk; and the faults a scenario injects into it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::DrillError;
use crate::procs::{Process, locate, redis_cli};

/// A cluster node's bus port is its port plus this.
pub const CLUSTER_BUS_OFFSET: u16 = 10_000;

/// The master name the sentinels watch (`redis+sentinel://.../authlab`).
pub const SENTINEL_MASTER: &str = "authlab";

/// Which Redis the drill runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Topology {
    /// One `redis-server`, no persistence.
    Single,
    /// One master, one replica, three sentinels (quorum 2).
    Sentinel,
    /// Six nodes: three masters, three replicas.
    Cluster,
}

/// The ports of a topology: Redis nodes at `base..`, sentinels at `base + 10..`.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// The first port.
    pub base: u16,
}

impl Ports {
    /// The `i`-th Redis node.
    pub fn node(&self, i: usize) -> u16 {
        self.base + i as u16
    }
    /// The `i`-th sentinel.
    pub fn sentinel(&self, i: usize) -> u16 {
        self.base + 10 + i as u16
    }
}

/// The running Redis of a drill.
pub struct Redis {
    /// Which topology.
    pub topology: Topology,
    /// Its ports.
    pub ports: Ports,
    /// The Redis nodes (index = port - base).
    pub nodes: Vec<Option<Process>>,
    /// The sentinels (Sentinel only).
    pub sentinels: Vec<Process>,
    /// Cluster node timeout, ms.
    pub node_timeout_ms: u32,
    dir: std::path::PathBuf,
}

impl Topology {
    /// Every port it needs.
    pub fn ports(self, ports: Ports) -> Vec<u16> {
        match self {
            Self::Single => vec![ports.node(0)],
            Self::Sentinel => vec![
                ports.node(0),
                ports.node(1),
                ports.sentinel(0),
                ports.sentinel(1),
                ports.sentinel(2),
            ],
            // Each cluster node also listens on its port + 10000 (the cluster bus).
            Self::Cluster => (0..6)
                .flat_map(|i| [ports.node(i), ports.node(i) + CLUSTER_BUS_OFFSET])
                .collect(),
        }
    }
}

fn redis_node(dir: &Path, port: u16, extra: &[String]) -> Result<Process, DrillError> {
    // A replica writes the snapshot it syncs from to disk even with `--save ""`, and any node
    // loads one it finds at start-up: each node gets a file of its own, removed first, so no
    // node starts with another's (or an earlier run's) data.
    let snapshot = format!("dump-{port}.rdb");
    let _ = std::fs::remove_file(dir.join(&snapshot));
    let mut command = Command::new(locate("redis-server"));
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(["--dir", &dir.display().to_string()])
        .args(["--dbfilename", &snapshot])
        .args(extra);
    let mut process = Process::spawn(
        format!("redis-server :{port}"),
        command,
        dir.join(format!("redis-{port}.log")),
    )?;
    process.wait_for_port(port, Duration::from_secs(10))?;
    Ok(process)
}

impl Redis {
    /// Starts the topology in `dir` and waits until it serves.
    pub fn start(
        topology: Topology,
        ports: Ports,
        node_timeout_ms: u32,
        dir: &Path,
    ) -> Result<Self, DrillError> {
        let mut redis = Self {
            topology,
            ports,
            nodes: Vec::new(),
            sentinels: Vec::new(),
            node_timeout_ms,
            dir: dir.to_owned(),
        };
        match topology {
            Topology::Single => {
                redis.nodes.push(Some(redis_node(dir, ports.node(0), &[])?));
            }
            Topology::Sentinel => redis.start_sentinel()?,
            Topology::Cluster => redis.start_cluster()?,
        }
        Ok(redis)
    }

    fn start_sentinel(&mut self) -> Result<(), DrillError> {
        let (master, replica) = (self.ports.node(0), self.ports.node(1));
        self.nodes.push(Some(redis_node(&self.dir, master, &[])?));
        self.nodes.push(Some(redis_node(
            &self.dir,
            replica,
            &["--replicaof".into(), "127.0.0.1".into(), master.to_string()],
        )?));
        for i in 0..3 {
            let port = self.ports.sentinel(i);
            let conf = self.dir.join(format!("sentinel-{port}.conf"));
            let text = format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master} 2\n\
                 sentinel down-after-milliseconds {SENTINEL_MASTER} {timeout}\n\
                 sentinel failover-timeout {SENTINEL_MASTER} 10000\n\
                 sentinel parallel-syncs {SENTINEL_MASTER} 1\n",
                dir = self.dir.display(),
                timeout = self.node_timeout_ms,
            );
            std::fs::write(&conf, text).map_err(|source| DrillError::Io {
                path: conf.clone(),
                source,
            })?;
            let mut command = Command::new(locate("redis-server"));
            command.arg(&conf).arg("--sentinel");
            let mut process = Process::spawn(
                format!("redis-sentinel :{port}"),
                command,
                self.dir.join(format!("sentinel-{port}.log")),
            )?;
            process.wait_for_port(port, Duration::from_secs(10))?;
            self.sentinels.push(process);
        }
        // The replica has synced when the master counts it.
        wait_until(Duration::from_secs(15), || {
            redis_cli(master, &["INFO", "replication"])
                .is_ok_and(|info| info.contains("connected_slaves:1"))
        })
        .then_some(())
        .ok_or_else(|| DrillError::Setup {
            step: "sentinel set",
            detail: "the replica did not sync within 15 s".into(),
        })
    }

    fn start_cluster(&mut self) -> Result<(), DrillError> {
        for i in 0..6 {
            let port = self.ports.node(i);
            // A node that finds the config file of an earlier run in --out believes it is still
            // in that run's cluster and refuses to join a new one.
            let _ = std::fs::remove_file(self.dir.join(format!("nodes-{port}.conf")));
            let extra = [
                "--cluster-enabled".to_owned(),
                "yes".to_owned(),
                "--cluster-config-file".to_owned(),
                self.dir
                    .join(format!("nodes-{port}.conf"))
                    .display()
                    .to_string(),
                "--cluster-node-timeout".to_owned(),
                self.node_timeout_ms.to_string(),
            ];
            self.nodes.push(Some(redis_node(&self.dir, port, &extra)?));
        }
        let addresses: Vec<String> = (0..6)
            .map(|i| format!("127.0.0.1:{}", self.ports.node(i)))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "1", "--cluster-yes"]);
        redis_cli(self.ports.node(0), &args)?;
        let ok = wait_until(Duration::from_secs(20), || {
            (0..6).all(|i| {
                redis_cli(self.ports.node(i), &["CLUSTER", "INFO"])
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            })
        });
        if !ok {
            return Err(DrillError::Setup {
                step: "cluster",
                detail: "the six nodes did not agree on cluster_state:ok within 20 s".into(),
            });
        }
        Ok(())
    }

    /// The URL the authlab instances are given.
    pub fn url(&self) -> String {
        match self.topology {
            Topology::Single => format!("redis://127.0.0.1:{}", self.ports.node(0)),
            Topology::Sentinel => format!(
                "redis+sentinel://{}/{SENTINEL_MASTER}",
                (0..3)
                    .map(|i| format!("127.0.0.1:{}", self.ports.sentinel(i)))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Topology::Cluster => format!(
                "redis+cluster://{}",
                (0..6)
                    .map(|i| format!("127.0.0.1:{}", self.ports.node(i)))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }

    /// Kills (SIGKILL) the node on `port` and returns it (its slot in `nodes` becomes empty).
    pub fn kill_node(&mut self, port: u16) -> Option<u16> {
        let i = usize::from(port.checked_sub(self.ports.base)?);
        let mut process = self.nodes.get_mut(i)?.take()?;
        process.kill();
        Some(port)
    }

    /// Kills the one Redis (single topology), waits `down_for`, and starts it again on the same
    /// port, empty (no persistence).
    pub fn restart_single(&mut self, down_for: Duration) -> Result<(), DrillError> {
        let port = self.ports.node(0);
        self.kill_node(port);
        std::thread::sleep(down_for);
        let process = redis_node(&self.dir, port, &[])?;
        self.nodes[0] = Some(process);
        Ok(())
    }

    /// The cluster master that owns slot 0 (the drill's victim): its port and a replica's port.
    pub fn cluster_master_and_replica(&self) -> Result<(u16, u16), DrillError> {
        let nodes = redis_cli(self.ports.node(0), &["CLUSTER", "NODES"])?;
        let mut master: Option<(String, u16)> = None;
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() >= 9
                && fields[2].contains("master")
                && fields[8..].iter().any(|r| r.starts_with("0-") || *r == "0")
            {
                master = Some((fields[0].to_owned(), port_of(fields[1])));
            }
        }
        let (id, port) = master.ok_or_else(|| DrillError::Setup {
            step: "cluster",
            detail: "no master owns slot 0".into(),
        })?;
        let replica = nodes
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.len() >= 4 && f[2].contains("slave") && f[3] == id)
            .map(|f| port_of(f[1]))
            .ok_or_else(|| DrillError::Setup {
                step: "cluster",
                detail: "the master of slot 0 has no replica".into(),
            })?;
        Ok((port, replica))
    }

    /// Whether the node on `port` now says it is a master.
    pub fn is_master(&self, port: u16) -> bool {
        redis_cli(port, &["ROLE"]).is_ok_and(|r| r.lines().next() == Some("master"))
    }

    /// The master the sentinels name now (its port).
    pub fn sentinel_master_port(&self) -> Option<u16> {
        let text = redis_cli(
            self.ports.sentinel(0),
            &["SENTINEL", "get-master-addr-by-name", SENTINEL_MASTER],
        )
        .ok()?;
        text.lines().nth(1)?.trim().parse().ok()
    }
}

/// `127.0.0.1:7000@17000` -> 7000.
fn port_of(address: &str) -> u16 {
    address
        .split('@')
        .next()
        .and_then(|a| a.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(0)
}

/// Polls `probe` every 50 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if probe() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_forms_are_the_ones_the_server_parses() {
        let redis = |topology| Redis {
            topology,
            ports: Ports { base: 27100 },
            nodes: Vec::new(),
            sentinels: Vec::new(),
            node_timeout_ms: 2000,
            dir: std::env::temp_dir(),
        };
        assert_eq!(redis(Topology::Single).url(), "redis://127.0.0.1:27100");
        assert_eq!(
            redis(Topology::Sentinel).url(),
            "redis+sentinel://127.0.0.1:27110,127.0.0.1:27111,127.0.0.1:27112/authlab"
        );
        assert!(
            redis(Topology::Cluster)
                .url()
                .starts_with("redis+cluster://127.0.0.1:27100,127.0.0.1:27101,")
        );
        assert_eq!(port_of("127.0.0.1:7000@17000"), 7000);
    }
}

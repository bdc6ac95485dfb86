//! The flags of `authlab drill`, and the checks made before anything starts.

use std::path::PathBuf;
use std::time::Duration;

use crate::DrillError;
use crate::scenario::Scenario;
use crate::topology::Topology;

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| e.to_string())
}

fn parse_check_path(text: &str) -> Result<String, String> {
    let valid = text.starts_with('/')
        && text.len() <= 100
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.?=&".contains(&b));
    if valid {
        Ok(text.to_owned())
    } else {
        Err("a path such as /livez or /readyz".to_owned())
    }
}

/// `authlab drill`: the flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DrillArgs {
    /// What happens during the load.
    #[arg(long, value_enum, default_value = "none")]
    pub scenario: Scenario,

    /// Which Redis to run (default: the scenario's: cluster for kill-master and
    /// planned-failover, sentinel for sentinel-switchover, single otherwise).
    #[arg(long, value_enum)]
    pub topology: Option<Topology>,

    /// authlab instances behind HAProxy (default 3; 4 for cache-scale).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=9))]
    pub instances: Option<u8>,

    /// cache-scale: how long the instances stay idle (warm caches, no requests) before the
    /// loaded phase (which lasts --duration).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub idle_for: Duration,

    /// Requests per second, scheduled whatever the answers (open loop). Default 150; 1000 for
    /// cache-scale (in all: 250 a second per instance of 4, one every 4 ms, inside the cache's
    /// default 5 ms staleness bound, so that a busy instance's hits show).
    #[arg(long, value_parser = clap::value_parser!(u32).range(3..=20_000))]
    pub rate: Option<u32>,

    /// Simulated users (each logs in on all three backends).
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(3..=10_000))]
    pub users: u32,

    /// How long the load runs.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,

    /// When the fault is injected, after the load started.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub fault_at: Duration,

    /// `redis-restart`: how long Redis stays down before it starts again (empty).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub redis_down_for: Duration,

    /// Share of requests that are logouts (the user logs in again on its next turn).
    #[arg(long, default_value_t = 0.05)]
    pub logout_share: f64,

    /// First port: Redis nodes at +0..+5, sentinels at +10..+12, instances at +20.., HAProxy
    /// at +40 (unless --balancer-port).
    #[arg(long, default_value_t = 27100, value_parser = clap::value_parser!(u16).range(1024..=65_000))]
    pub base_port: u16,

    /// HAProxy's port (default: --base-port + 40).
    #[arg(long)]
    pub balancer_port: Option<u16>,

    /// Redis Cluster `cluster-node-timeout` and Sentinel `down-after-milliseconds`, in ms.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(100..=60_000))]
    pub node_timeout_ms: u32,

    /// The longest wait for one answer before it counts as no answer.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// The user store all instances share (default: one SQLite file in the run's folder;
    /// e.g. postgres://postgres@127.0.0.1/test).
    #[arg(long)]
    pub database_url: Option<String>,

    /// The `authlab` executable for the instances (default: this one).
    #[arg(long)]
    pub authlab_bin: Option<PathBuf>,

    /// One more flag for every instance's `authlab serve` (repeat it), e.g.
    /// `--instance-arg=--jwt-denylist=off`.
    #[arg(long = "instance-arg", value_name = "FLAG", allow_hyphen_values = true)]
    pub instance_args: Vec<String>,

    /// The path HAProxy checks on each instance. `/livez` keeps an instance in the pool while
    /// it can serve anything; `/readyz` takes every instance out while Redis is down (try it
    /// with `--scenario redis-restart`: sessions fail too).
    #[arg(long, default_value = crate::balancer::DEFAULT_CHECK, value_parser = parse_check_path)]
    pub balancer_check: String,

    /// Where drill.json, drill.md, timeline.svg and the processes' logs go.
    #[arg(long, default_value = "drill")]
    pub out: PathBuf,
}

impl DrillArgs {
    /// Requests per second.
    pub fn rate(&self) -> u32 {
        self.rate.unwrap_or(match self.scenario {
            Scenario::CacheScale => 1000,
            _ => 150,
        })
    }

    /// How many authlab instances run.
    pub fn instances(&self) -> u8 {
        self.instances.unwrap_or(match self.scenario {
            Scenario::CacheScale => 4,
            _ => 3,
        })
    }

    /// The topology this run uses.
    pub fn topology(&self) -> Topology {
        self.topology
            .unwrap_or_else(|| self.scenario.default_topology())
    }

    /// HAProxy's port.
    pub fn balancer_port(&self) -> u16 {
        self.balancer_port.unwrap_or(self.base_port + 40)
    }

    /// The port of instance `i`.
    pub fn instance_port(&self, i: usize) -> u16 {
        self.base_port + 20 + i as u16
    }

    /// Refuses combinations that cannot work, before anything starts.
    pub fn validate(&self) -> Result<(), DrillError> {
        let topology = self.topology();
        if !self.scenario.fits(topology) {
            return Err(DrillError::BadArgs(format!(
                "--scenario {} needs --topology {:?} (got {:?})",
                self.scenario.name(),
                self.scenario.default_topology(),
                topology
            )));
        }
        if topology == Topology::Cluster
            && u32::from(self.base_port) + 5 + u32::from(crate::topology::CLUSTER_BUS_OFFSET)
                > u32::from(u16::MAX)
        {
            return Err(DrillError::BadArgs(format!(
                "a cluster's nodes also use --base-port + {} (their bus): --base-port must be at most {}",
                crate::topology::CLUSTER_BUS_OFFSET,
                u16::MAX - 5 - crate::topology::CLUSTER_BUS_OFFSET
            )));
        }
        let faulty = !matches!(self.scenario, Scenario::None | Scenario::CacheScale);
        if faulty && self.fault_at >= self.duration {
            return Err(DrillError::BadArgs(
                "--fault-at must come before the end of --duration".into(),
            ));
        }
        if self.duration < Duration::from_secs(1) || self.duration > Duration::from_secs(600) {
            return Err(DrillError::BadArgs(
                "--duration must be between 1 s and 10 min".into(),
            ));
        }
        if !(0.0..=0.5).contains(&self.logout_share) {
            return Err(DrillError::BadArgs(
                "--logout-share must be between 0 and 0.5".into(),
            ));
        }
        if self.scenario == Scenario::CacheScale
            && (self.idle_for < Duration::from_secs(1) || self.idle_for > Duration::from_secs(600))
        {
            return Err(DrillError::BadArgs(
                "--idle-for must be between 1 s and 10 min".into(),
            ));
        }
        if self.scenario == Scenario::KillInstance && self.instances() < 2 {
            return Err(DrillError::BadArgs(
                "kill-instance needs at least 2 instances".into(),
            ));
        }
        Ok(())
    }
}

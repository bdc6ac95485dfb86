//! The scenarios: which topology each needs, and the fault it injects while the load runs.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::DrillError;
use crate::balancer::Balancer;
use crate::instances::Instance;
use crate::interrupt::Interrupt;
use crate::procs::redis_cli;
use crate::topology::{Redis, SENTINEL_MASTER, Topology, wait_until};

/// What happens during the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Nothing: the baseline.
    None,
    /// SIGKILL the Redis Cluster master of slot 0 (its replica takes over after the node
    /// timeout).
    KillMaster,
    /// `CLUSTER FAILOVER` on the replica of slot 0's master: a planned hand-over, nothing dies.
    PlannedFailover,
    /// SIGKILL the first authlab instance: its sessions die with it.
    KillInstance,
    /// `SENTINEL FAILOVER`: the master is demoted while alive and the replica promoted.
    SentinelSwitchover,
    /// SIGKILL the one Redis and start it again, empty (no persistence).
    RedisRestart,
    /// No fault and no balancer: N instances with the client-side cache on, idle and then
    /// loaded, and what they cost Redis in each phase (see [`crate::cache_scale`]).
    CacheScale,
}

impl Scenario {
    /// The flag value (`kill-master`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::KillMaster => "kill-master",
            Self::PlannedFailover => "planned-failover",
            Self::KillInstance => "kill-instance",
            Self::SentinelSwitchover => "sentinel-switchover",
            Self::RedisRestart => "redis-restart",
            Self::CacheScale => "cache-scale",
        }
    }

    /// The topology it runs on unless `--topology` says otherwise.
    pub fn default_topology(self) -> Topology {
        match self {
            Self::KillMaster | Self::PlannedFailover => Topology::Cluster,
            Self::SentinelSwitchover => Topology::Sentinel,
            Self::None | Self::KillInstance | Self::RedisRestart | Self::CacheScale => {
                Topology::Single
            }
        }
    }

    /// Whether it can run on `topology`.
    pub fn fits(self, topology: Topology) -> bool {
        match self {
            Self::None | Self::KillInstance => true,
            other => other.default_topology() == topology,
        }
    }
}

/// The fault as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    /// When it was injected, ms after the load started.
    pub at_ms: u32,
    /// What was done, in words.
    pub what: String,
    /// What "failed over" means for it, in words.
    pub failover_means: String,
    /// From the fault until that held, ms (`None`: not within the time waited).
    pub failover_ms: Option<u32>,
}

/// Whom the fault will hit, found before the load starts.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// No fault.
    Nothing,
    /// A cluster master and the replica that should take over.
    ClusterMaster {
        /// The master's port.
        master: u16,
        /// Its replica's port.
        replica: u16,
    },
    /// The sentinel master (its port).
    SentinelMaster(u16),
    /// Instance 0.
    FirstInstance,
    /// The one Redis, and how long it stays down before it starts again.
    SingleRedis(Duration),
}

/// Finds the fault's target in the running topology. `redis_down_for`: how long
/// `redis-restart` keeps Redis down.
pub fn target(
    scenario: Scenario,
    redis: &Redis,
    redis_down_for: Duration,
) -> Result<Target, DrillError> {
    Ok(match scenario {
        Scenario::None | Scenario::CacheScale => Target::Nothing,
        Scenario::KillMaster | Scenario::PlannedFailover => {
            let (master, replica) = redis.cluster_master_and_replica()?;
            Target::ClusterMaster { master, replica }
        }
        Scenario::SentinelSwitchover => {
            Target::SentinelMaster(redis.sentinel_master_port().ok_or(DrillError::Setup {
                step: "sentinel",
                detail: format!("the sentinels do not name a master for {SENTINEL_MASTER}"),
            })?)
        }
        Scenario::KillInstance => Target::FirstInstance,
        Scenario::RedisRestart => Target::SingleRedis(redis_down_for),
    })
}

/// Waits until `load_started + at`, injects the fault, then waits (at most `limit`) until it
/// has failed over. Runs on a thread of its own beside the load; after Ctrl-C it injects
/// nothing more and stops waiting.
#[allow(clippy::too_many_arguments)]
pub fn inject(
    scenario: Scenario,
    target: Target,
    redis: &mut Redis,
    instances: &mut [Instance],
    balancer: &Balancer,
    load_started: Instant,
    at: Duration,
    limit: Duration,
    interrupt: &Interrupt,
) -> Result<Option<Fault>, DrillError> {
    if matches!(target, Target::Nothing) {
        return Ok(None);
    }
    let wake = load_started + at;
    while Instant::now() < wake {
        if interrupt.is_raised() {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20).min(wake - Instant::now()));
    }
    let injected = Instant::now();
    let at_ms = u32::try_from(injected.duration_since(load_started).as_millis()).unwrap_or(0);
    let (what, failover_means, done): (String, &str, Box<dyn FnMut() -> bool + '_>) = match target {
        Target::Nothing => return Ok(None),
        Target::ClusterMaster { master, replica } if scenario == Scenario::KillMaster => {
            redis.kill_node(master);
            let redis = &*redis;
            (
                format!("SIGKILL to the cluster master :{master} (slot 0)"),
                "its replica says it is a master",
                Box::new(move || redis.is_master(replica)),
            )
        }
        Target::ClusterMaster { master, replica } => {
            redis_cli(replica, &["CLUSTER", "FAILOVER"])?;
            let redis = &*redis;
            (
                format!("CLUSTER FAILOVER on :{replica}, the replica of :{master}"),
                "the replica says it is a master",
                Box::new(move || redis.is_master(replica)),
            )
        }
        Target::SentinelMaster(master) => {
            redis_cli(
                redis.ports.sentinel(0),
                &["SENTINEL", "FAILOVER", SENTINEL_MASTER],
            )?;
            let redis = &*redis;
            (
                format!("SENTINEL FAILOVER {SENTINEL_MASTER} (master :{master}, alive)"),
                "the sentinels name another master and the old one is a replica",
                Box::new(move || {
                    redis.sentinel_master_port().is_some_and(|p| p != master)
                        && !redis.is_master(master)
                }),
            )
        }
        Target::FirstInstance => {
            let Some(victim) = instances.first_mut() else {
                return Ok(None);
            };
            victim.process.kill();
            let name = victim.name.clone();
            (
                format!("SIGKILL to authlab instance {name}"),
                "HAProxy marks it DOWN",
                Box::new(move || {
                    balancer
                        .server_states()
                        .iter()
                        .any(|(server, status)| *server == name && status.starts_with("DOWN"))
                }),
            )
        }
        Target::SingleRedis(down_for) => {
            redis.restart_single(down_for)?;
            let port = redis.ports.node(0);
            (
                format!(
                    "SIGKILL to Redis :{port}, started again empty (no persistence) {:.1} s later",
                    down_for.as_secs_f64()
                ),
                "Redis answers PING again",
                Box::new(move || redis_cli(port, &["PING"]).is_ok_and(|r| r.contains("PONG"))),
            )
        }
    };
    let mut done = done;
    let failover_ms = wait_until(limit, || interrupt.is_raised() || done())
        .then(|| u32::try_from(injected.elapsed().as_millis()).unwrap_or(u32::MAX));
    Ok(Some(Fault {
        at_ms,
        what,
        failover_means: failover_means.to_owned(),
        failover_ms,
    }))
}

//! The authlab instances: N processes of the `authlab` executable (`authlab serve`), sharing one
//! user store, one Redis and one JWT secret, each with its own port and `--instance-id`.
//!
//! Users are shared, so a login works on any instance: by default one SQLite file in the run's
//! folder (SQLite serialises writers across processes with its file lock; the drill registers
//! its users before the load starts and the load only reads them), or `--database-url` for the
//! local PostgreSQL. The login throttle's per-client limits are raised: every simulated user
//! comes from 127.0.0.1, and the drill measures failover, not throttling.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::DrillError;
use crate::balancer::Server;
use crate::procs::Process;

/// How to start the instances.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    /// The `authlab` executable.
    pub program: PathBuf,
    /// `--redis-url`.
    pub redis_url: String,
    /// `--database-url`.
    pub database_url: String,
    /// `--redis-prefix`, unique per run.
    pub redis_prefix: String,
    /// The shared JWT secret (given through `AUTHLAB_JWT_SECRET`, never a flag).
    pub jwt_secret: String,
    /// More `serve` flags, as given to `--instance-arg`.
    pub extra_args: Vec<String>,
}

/// One running instance.
pub struct Instance {
    /// `a1`, `a2`, ...: the balancer's name for it and its `--instance-id`.
    pub name: String,
    /// Its port.
    pub port: u16,
    /// The process.
    pub process: Process,
}

impl Instance {
    /// The balancer's view of it.
    pub fn server(&self) -> Server {
        Server {
            name: self.name.clone(),
            address: format!("127.0.0.1:{}", self.port),
        }
    }
}

/// Starts instance `name` on `port` and waits until it listens.
pub fn start(
    spec: &InstanceSpec,
    name: &str,
    port: u16,
    dir: &Path,
) -> Result<Instance, DrillError> {
    let mut command = Command::new(&spec.program);
    command
        .arg("serve")
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .args(["--database-url", &spec.database_url])
        .args(["--redis-url", &spec.redis_url])
        .args(["--redis-prefix", &spec.redis_prefix])
        .args(["--instance-id", name])
        .args(["--workers", "1"])
        .args(["--register-ip-max", "1000000"])
        .args(["--login-ip-max-failures", "1000000"])
        .args(["--login-max-failures", "1000000"])
        .args(&spec.extra_args)
        .env("AUTHLAB_JWT_SECRET", &spec.jwt_secret)
        .env("RUST_LOG", "warn");
    let mut process = Process::spawn(
        format!("authlab instance {name}"),
        command,
        dir.join(format!("instance-{name}.log")),
    )?;
    process.wait_for_port(port, Duration::from_secs(20))?;
    Ok(Instance {
        name: name.to_owned(),
        port,
        process,
    })
}

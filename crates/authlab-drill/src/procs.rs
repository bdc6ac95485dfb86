//! The processes a drill starts, each owned by a guard that kills it by its pid when dropped
//! (at the end, on an error, on Ctrl-C, on a panic), and the checks that come before any of them
//! starts: the programs installed, the ports free.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::DrillError;

/// The programs a drill runs and the Debian package of each.
pub const PROGRAMS: [(&str, &str); 3] = [
    ("redis-server", "redis-server"),
    ("redis-cli", "redis-tools"),
    ("haproxy", "haproxy"),
];

/// Whether `program` is an executable file in one of `PATH`'s folders (or a path that exists).
pub fn installed(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    // Debian puts haproxy in /usr/sbin, which a non-login shell's PATH may lack.
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .any(|dir| dir.join(program).is_file())
}

/// The full path of `program` (searching `/usr/sbin` too), or the name as given.
pub fn locate(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(program))
}

/// `Err(Missing)` naming every program of [`PROGRAMS`] that is not installed, and the
/// `apt-get install` line that brings them.
pub fn check_installed() -> Result<(), DrillError> {
    let missing: Vec<_> = PROGRAMS.iter().filter(|(p, _)| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&'static str> = missing.iter().map(|(_, pkg)| *pkg).collect();
    packages.dedup();
    Err(DrillError::Missing {
        programs: missing.iter().map(|(p, _)| *p).collect(),
        packages,
    })
}

/// `Err(PortInUse)` for the first of `ports` that cannot be bound on 127.0.0.1.
pub fn check_ports_free(ports: &[u16]) -> Result<(), DrillError> {
    for &port in ports {
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            return Err(DrillError::PortInUse { port });
        }
    }
    Ok(())
}

/// A process the drill started: killed (SIGKILL, by its pid) and reaped when dropped.
pub struct Process {
    /// What it is, for messages: `redis-server :27100`, `authlab instance 2`.
    pub name: String,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    child: Option<Child>,
}

impl Process {
    /// Starts `command` with its output in `log`, in a process group of its own (so the
    /// terminal's Ctrl-C reaches the drill, which then stops it).
    pub fn spawn(name: String, mut command: Command, log: PathBuf) -> Result<Self, DrillError> {
        let spawn_err = |source| DrillError::Spawn {
            what: name.clone(),
            source,
        };
        let out = File::create(&log).map_err(spawn_err)?;
        let err = out.try_clone().map_err(spawn_err)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(spawn_err)?;
        Ok(Self {
            name,
            log,
            child: Some(child),
        })
    }

    /// Its pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills it now (SIGKILL, as a crash would) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until something accepts TCP connections on `port`, failing early if the process
    /// exits, or after `limit`.
    pub fn wait_for_port(&mut self, port: u16, limit: Duration) -> Result<(), DrillError> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if !self.running() {
                return Err(DrillError::Exited {
                    what: self.name.clone(),
                    tail: log_tail(&self.log),
                });
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(DrillError::NotReady {
            what: self.name.clone(),
            seconds: limit.as_secs(),
            log: self.log.clone(),
        })
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last lines of a log, on one line, for an error message.
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    if tail.is_empty() {
        "(no output)".to_owned()
    } else {
        tail
    }
}

/// `redis-cli -p PORT args...`, its output as text; an error if it fails or Redis answers `ERR`.
pub fn redis_cli(port: u16, args: &[&str]) -> Result<String, DrillError> {
    let output = Command::new(locate("redis-cli"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| DrillError::Spawn {
            what: "redis-cli".to_owned(),
            source,
        })?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    if !output.status.success()
        || text.starts_with("ERR")
        || text.starts_with("(error)")
        || text.contains("Could not connect")
    {
        return Err(DrillError::RedisControl {
            command: format!("-p {port} {}", args.join(" ")),
            output: text.trim().to_owned(),
        });
    }
    Ok(text)
}

//! Why a drill could not be completed.

use std::path::PathBuf;

/// Why a drill could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// A program the drill runs is not installed.
    #[error(
        "missing programs: {}; install them with `apt-get install -y {}`",
        .programs.join(", "),
        .packages.join(" ")
    )]
    Missing {
        /// The commands that were not found on `PATH`.
        programs: Vec<&'static str>,
        /// The Debian packages that provide them.
        packages: Vec<&'static str>,
    },
    /// A port the drill needs is taken.
    #[error("port {port} on 127.0.0.1 is in use; pick other ports with --base-port")]
    PortInUse {
        /// The port.
        port: u16,
    },
    /// A flag value that cannot work.
    #[error("{0}")]
    BadArgs(String),
    /// A process could not be started.
    #[error("cannot start {what}")]
    Spawn {
        /// Which process.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A process started but never became ready (its log may say why).
    #[error("{what} did not become ready within {seconds} s (see {log})")]
    NotReady {
        /// Which process.
        what: String,
        /// How long we waited.
        seconds: u64,
        /// Its log file.
        log: PathBuf,
    },
    /// A process exited on its own during start-up (its log says why).
    #[error("{what} exited during start-up: {tail}")]
    Exited {
        /// Which process.
        what: String,
        /// The end of its log.
        tail: String,
    },
    /// A Redis control command (`redis-cli ...`) failed.
    #[error("redis-cli {command} failed: {output}")]
    RedisControl {
        /// The command.
        command: String,
        /// What it printed.
        output: String,
    },
    /// A setup request (register, log in) got an unexpected answer.
    #[error("{step}: {detail}")]
    Setup {
        /// What we were doing.
        step: &'static str,
        /// What happened.
        detail: String,
    },
    /// Files could not be written or read.
    #[error("cannot write {path}")]
    Io {
        /// Which file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Drawing the timeline failed.
    #[error("cannot draw the timeline: {0}")]
    Chart(String),
    /// Ctrl-C: the drill stopped early; every process it started is stopped.
    #[error("interrupted")]
    Interrupted,
}

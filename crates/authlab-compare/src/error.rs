//! Why a comparison could not be completed.

use authlab::startup::StartupError;
use authlab_loadgen::LoadError;
use authlab_redis::RedisBackendError;

/// Why a comparison could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// An in-process instance did not start.
    #[error("the in-process server did not start")]
    Startup(#[source] StartupError),
    /// A mode's flags are not flags of `authlab serve` (a table that drifted from the server).
    #[error("a mode cannot be configured")]
    Mode(#[source] crate::modes::ModeFlagsError),
    /// `--modes` left nothing to measure.
    #[error("no mode to measure (--modes)")]
    NoModes,
    /// The server thread ended before reporting its ports.
    #[error("the in-process server thread stopped unexpectedly")]
    ServerThread,
    /// The load generator could not run (typically: nothing listens at the target).
    #[error("the load generator failed")]
    Load(#[source] LoadError),
    /// A setup request (register, log in) got an unexpected answer.
    #[error("{step}: expected a 2xx answer, got {status}")]
    Setup {
        /// What we were doing.
        step: &'static str,
        /// What the server answered.
        status: u16,
    },
    /// A login answer did not contain the credential where the API documents it.
    #[error("{step}: the answer carries no credential")]
    NoCredential {
        /// Which login.
        step: &'static str,
    },
    /// `--target` is not an `http://host:port` URL that resolves.
    #[error("--target must look like http://127.0.0.1:8080 ({0})")]
    BadTarget(&'static str),
    /// The Redis the in-process servers need does not answer (checked before anything starts:
    /// without it the redis and jwt logins would fail with a bare 503).
    #[error("Redis at {url} does not answer (the redis and jwt modes need it)")]
    RedisUnreachable {
        /// `--redis-url`, its password masked.
        url: String,
        /// Why.
        #[source]
        source: RedisBackendError,
    },
    /// Redis failed while reading statistics or cleaning up.
    #[error("Redis failed")]
    Redis(#[source] crate::probes::ProbeError),
    /// Writing the report failed.
    #[error("cannot write the report")]
    Io(#[source] std::io::Error),
    /// Ctrl-C: the run stopped early and cleaned up; nothing was reported.
    #[error("interrupted")]
    Interrupted,
    /// Drawing a chart failed.
    #[error("cannot draw {chart}: {message}")]
    Chart {
        /// Which chart.
        chart: &'static str,
        /// plotters' description of the failure.
        message: String,
    },
}

impl CompareError {
    /// What to do about it, where the message does not say so already: printed on its own line
    /// after the error.
    pub fn remedy(&self) -> Option<String> {
        match self {
            Self::RedisUnreachable { url, .. } => {
                // `redis://host:port/db` -> the port, for the command that starts one.
                let port = url
                    .split_once("://")
                    .and_then(|(_, rest)| rest.split('/').next())
                    .and_then(|authority| authority.rsplit_once(':'))
                    .map_or("6379", |(_, port)| port);
                Some(format!(
                    "start it (on this machine: `redis-server --port {port} --daemonize yes`), \
                     or point --redis-url (AUTHLAB_REDIS_URL) at a running one"
                ))
            }
            Self::Startup(startup) => startup.remedy(),
            _ => None,
        }
    }
}

//! Why a comparison could not be completed.

use authlab::startup::StartupError;
use authlab_loadgen::LoadError;

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

//! Logging: `tracing` to standard error, filtered by `RUST_LOG` (default `info`).
//!
//! Per-request access lines are at `debug` (`RUST_LOG=authlab=debug`): at load-test rates, writing
//! a line per request would measure the terminal, not the authentication.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

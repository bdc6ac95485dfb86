//! Logging: `tracing` to standard error, filtered by `RUST_LOG` (default `info`).
//!
//! Per-request access lines are at `debug` (`RUST_LOG=authlab=debug`): at load-test rates, writing
//! a line per request would measure the terminal, not the authentication.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person at a terminal: not in files, pipes, `docker logs`, or with NO_COLOR.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

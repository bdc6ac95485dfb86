//! Ctrl-C: the run stops at the next point where it can, and cleans up as it would at the end.
//!
//! The first Ctrl-C (SIGINT) sets a flag. The load generator checks it between requests, the
//! memory probes between sessions and logins, and the run between steps; the step then ends with
//! [`CompareError::Interrupted`], and the usual clean-up runs: the in-process servers are stopped,
//! the run's Redis keys removed, its temporary directory deleted. The command then says
//! `interrupted` and exits with 130 (128 + SIGINT), as a shell expects of a command stopped by
//! Ctrl-C. A second Ctrl-C quits at once; the temporary directory is then removed by the next run
//! (see [`crate::setup::remove_stale_runs`]).
//!
//! The in-process actix servers see the same SIGINT and stop themselves; whatever fails because
//! of that after the flag is set is reported as the interruption, not as a failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::CompareError;

/// Set once Ctrl-C was pressed; cheap to clone and to check.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// A flag that only [`Interrupt::raise`] sets (for tests, and when no handler can be installed).
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs the SIGINT handler: the first Ctrl-C raises the flag, a second one exits with 130.
    /// If no handler can be installed, warns and returns a flag that is never raised (Ctrl-C
    /// then ends the process as usual).
    pub fn install() -> Self {
        let interrupt = Self::new();
        if let Err(err) = interrupt.listen() {
            eprintln!("warning: Ctrl-C will not clean up ({err})");
        }
        interrupt
    }

    #[cfg(unix)]
    fn listen(&self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // Registered here, before the run starts, so no Ctrl-C falls between start and handler.
        let mut sigint = {
            let _entered = runtime.enter();
            signal(SignalKind::interrupt())?
        };
        let flag = self.0.clone();
        std::thread::Builder::new()
            .name("compare-ctrl-c".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    sigint.recv().await;
                    flag.store(true, Ordering::SeqCst);
                    eprintln!(
                        "\ninterrupted: stopping and cleaning up (Ctrl-C again to quit at once)"
                    );
                    sigint.recv().await;
                    eprintln!("interrupted again: quitting without cleaning up");
                    std::process::exit(130);
                });
            })?;
        Ok(())
    }

    #[cfg(not(unix))]
    fn listen(&self) -> std::io::Result<()> {
        Err(std::io::Error::other("only Unix signals are handled"))
    }

    /// Raises the flag, as Ctrl-C does.
    pub fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether Ctrl-C was pressed.
    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The flag itself, for the load generator's [`authlab_loadgen::LoadSpec::cancel`].
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }

    /// `Err(Interrupted)` once Ctrl-C was pressed: call it between steps.
    pub fn check(&self) -> Result<(), CompareError> {
        if self.is_raised() {
            Err(CompareError::Interrupted)
        } else {
            Ok(())
        }
    }

    /// A step's outcome, unless Ctrl-C was pressed meanwhile: then the interruption, whatever the
    /// step returned (its failure is most likely the interruption's doing).
    pub fn outcome<T>(&self, result: Result<T, CompareError>) -> Result<T, CompareError> {
        self.check()?;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_that_failed_after_ctrl_c_is_reported_as_interrupted() {
        let interrupt = Interrupt::new();
        let failed: Result<(), CompareError> = Err(CompareError::ServerThread);
        assert!(matches!(
            interrupt.outcome(failed),
            Err(CompareError::ServerThread)
        ));
        interrupt.raise();
        let failed: Result<(), CompareError> = Err(CompareError::ServerThread);
        assert!(matches!(
            interrupt.outcome(failed),
            Err(CompareError::Interrupted)
        ));
        assert!(matches!(interrupt.check(), Err(CompareError::Interrupted)));
        assert!(interrupt.flag().load(Ordering::SeqCst));
    }
}

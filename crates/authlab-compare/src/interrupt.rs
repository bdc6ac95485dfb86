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
use std::sync::atomic::AtomicBool;

use authlab_loadgen::{CtrlC, CtrlCMessages};

use crate::CompareError;

/// Set once Ctrl-C was pressed; cheap to clone and to check. The handler itself is
/// [`authlab_loadgen::CtrlC`]; this adds what the comparison does with it.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(CtrlC);

impl Interrupt {
    /// A flag that only [`Interrupt::raise`] sets (for tests).
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs the SIGINT handler: the first Ctrl-C raises the flag, a second one exits with 130.
    pub fn install() -> Self {
        Self(CtrlC::install(CtrlCMessages {
            thread: "compare-ctrl-c",
            first: "interrupted: stopping and cleaning up (Ctrl-C again to quit at once)",
            second: "interrupted again: quitting without cleaning up",
        }))
    }

    /// Raises the flag, as Ctrl-C does.
    pub fn raise(&self) {
        self.0.raise();
    }

    /// Whether Ctrl-C was pressed.
    pub fn is_raised(&self) -> bool {
        self.0.is_raised()
    }

    /// The flag itself, for the load generator's [`authlab_loadgen::LoadSpec::cancel`].
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.flag()
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
    use std::sync::atomic::Ordering;

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

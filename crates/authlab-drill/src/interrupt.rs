//! Ctrl-C: the drill stops at the next point where it can, and stops every process it started.
//!
//! The same pattern as `authlab compare`: the first Ctrl-C (SIGINT) raises a flag that the load
//! driver checks between requests and the run checks between steps; the step ends with
//! [`DrillError::Interrupted`], and the processes are stopped by their guards (each one is killed
//! by its pid when its guard is dropped). A second Ctrl-C quits at once. The processes the drill
//! starts run in process groups of their own, so the terminal's SIGINT reaches the drill only:
//! nothing dies before the drill decides to stop it.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use authlab_loadgen::{CtrlC, CtrlCMessages};

use crate::DrillError;

/// Set once Ctrl-C was pressed; cheap to clone and to check. The handler itself is
/// [`authlab_loadgen::CtrlC`]; this adds what the drill does with it.
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
            thread: "drill-ctrl-c",
            first: "interrupted: stopping every process the drill started (Ctrl-C again to quit at once)",
            second: "interrupted again: quitting; processes may be left running",
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
    pub fn check(&self) -> Result<(), DrillError> {
        if self.is_raised() {
            Err(DrillError::Interrupted)
        } else {
            Ok(())
        }
    }
}

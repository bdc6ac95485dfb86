//! Ctrl-C: the drill stops at the next point where it can, and stops every process it started.
//!
//! The same pattern as `authlab compare`: the first Ctrl-C (SIGINT) raises a flag that the load
//! driver checks between requests and the run checks between steps; the step ends with
//! [`DrillError::Interrupted`], and the processes are stopped by their guards (each one is killed
//! by its pid when its guard is dropped). A second Ctrl-C quits at once. The processes the drill
//! starts run in process groups of their own, so the terminal's SIGINT reaches the drill only:
//! nothing dies before the drill decides to stop it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::DrillError;

/// Set once Ctrl-C was pressed; cheap to clone and to check.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// A flag that only [`Interrupt::raise`] sets.
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs the SIGINT handler: the first Ctrl-C raises the flag, a second one exits with 130.
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
        let mut sigint = {
            let _entered = runtime.enter();
            signal(SignalKind::interrupt())?
        };
        let flag = self.0.clone();
        std::thread::Builder::new()
            .name("drill-ctrl-c".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    sigint.recv().await;
                    flag.store(true, Ordering::SeqCst);
                    eprintln!(
                        "\ninterrupted: stopping every process the drill started (Ctrl-C again to quit at once)"
                    );
                    sigint.recv().await;
                    eprintln!("interrupted again: quitting; processes may be left running");
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

    /// `Err(Interrupted)` once Ctrl-C was pressed: call it between steps.
    pub fn check(&self) -> Result<(), DrillError> {
        if self.is_raised() {
            Err(DrillError::Interrupted)
        } else {
            Ok(())
        }
    }
}

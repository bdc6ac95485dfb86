//! Ctrl-C for a long run (`authlab compare`, `authlab drill`): the first SIGINT raises a flag that
//! the run checks between steps (and [`crate::LoadSpec::cancel`] between requests), so the run
//! can stop where it is and clean up; a second one exits at once with 130 (128 + SIGINT).
//!
//! The handler runs on a thread of its own with its own small runtime, so it answers whatever the
//! run's runtimes are doing. Each command keeps its own error type: this module only raises and
//! reads the flag.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What a run says on Ctrl-C.
#[derive(Debug, Clone, Copy)]
pub struct CtrlCMessages {
    /// The handler thread's name (`compare-ctrl-c`).
    pub thread: &'static str,
    /// Printed on the first Ctrl-C: what the run does now.
    pub first: &'static str,
    /// Printed on the second, just before exiting with 130.
    pub second: &'static str,
}

/// Set once Ctrl-C was pressed; cheap to clone and to check.
#[derive(Debug, Clone, Default)]
pub struct CtrlC(Arc<AtomicBool>);

impl CtrlC {
    /// A flag that only [`CtrlC::raise`] sets (for tests, and when no handler can be installed).
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs the SIGINT handler. If none can be installed, warns and returns a flag that is
    /// never raised (Ctrl-C then ends the process as usual).
    pub fn install(messages: CtrlCMessages) -> Self {
        let ctrl_c = Self::new();
        if let Err(err) = ctrl_c.listen(messages) {
            eprintln!("warning: Ctrl-C will not clean up ({err})");
        }
        ctrl_c
    }

    #[cfg(unix)]
    fn listen(&self, messages: CtrlCMessages) -> std::io::Result<()> {
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
            .name(messages.thread.to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    sigint.recv().await;
                    flag.store(true, Ordering::SeqCst);
                    eprintln!("\n{}", messages.first);
                    sigint.recv().await;
                    eprintln!("{}", messages.second);
                    std::process::exit(130);
                });
            })?;
        Ok(())
    }

    #[cfg(not(unix))]
    fn listen(&self, _messages: CtrlCMessages) -> std::io::Result<()> {
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

    /// The flag itself, for [`crate::LoadSpec::cancel`].
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
}

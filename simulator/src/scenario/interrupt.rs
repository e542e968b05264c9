//! Stopping a run early (Ctrl-C) without losing what it found: the runner checks the signal
//! before each scenario and races each step against it, so a stopped run still stops its fakes
//! and gateway, and reports every step that finished.

use tokio::sync::watch;

/// Raises the interrupt for every [`Interrupt`] made with it.
#[derive(Debug)]
pub struct Interrupter(watch::Sender<bool>);

impl Interrupter {
    pub fn interrupt(&self) {
        self.0.send_replace(true);
    }
}

/// Whether the run was asked to stop. The default is never interrupted.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Option<watch::Receiver<bool>>);

impl Interrupt {
    /// A pair: raise it with the [`Interrupter`], watch it through (clones of) the [`Interrupt`].
    pub fn new() -> (Interrupter, Interrupt) {
        let (sender, receiver) = watch::channel(false);
        (Interrupter(sender), Interrupt(Some(receiver)))
    }

    pub fn is_raised(&self) -> bool {
        self.0.as_ref().is_some_and(|r| *r.borrow())
    }

    /// Resolves once the interrupt is raised; never, for the default.
    pub async fn raised(&self) {
        match &self.0 {
            Some(receiver) => {
                let mut receiver = receiver.clone();
                // An error means the interrupter is gone, so it can never be raised.
                if receiver.wait_for(|raised| *raised).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_interrupt_is_seen_by_every_clone_once_raised() {
        let (interrupter, interrupt) = Interrupt::new();
        let watcher = interrupt.clone();
        assert!(!watcher.is_raised());
        interrupter.interrupt();
        watcher.raised().await;
        assert!(interrupt.is_raised());
        assert!(!Interrupt::default().is_raised());
    }
}

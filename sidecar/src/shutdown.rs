//! A shutdown signal that any thread may trigger and any task may await.

use std::sync::Arc;

use tokio::sync::watch;

/// Cloneable shutdown trigger: [`Shutdown::trigger`] from anywhere (a
/// signal task, a test, another thread), [`Shutdown::triggered`] to await it.
///
/// # Examples
///
/// ```
/// let s = distlogd::Shutdown::new();
/// assert!(!s.is_triggered());
/// s.clone().trigger();
/// assert!(s.is_triggered());
/// ```
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A new, untriggered signal.
    pub fn new() -> Self {
        Shutdown {
            tx: Arc::new(watch::channel(false).0),
        }
    }

    /// Ask everything that waits on this signal to stop. Idempotent.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether [`Shutdown::trigger`] was called.
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once the signal is triggered (at once if it already was).
    pub async fn triggered(&self) {
        let mut rx = self.tx.subscribe();
        // `wait_for` fails only when the sender is gone; we hold it.
        let _ = rx.wait_for(|v| *v).await;
    }
}

/// Trigger `shutdown` on the first SIGINT or SIGTERM; exit the process at
/// once (status 130) on a second one, for a drain that takes too long.
pub(crate) async fn on_signals(shutdown: Shutdown) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        crate::diag!("cannot install signal handlers; stop me with SIGKILL");
        return;
    };
    for n in 0..2 {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        if n == 0 {
            crate::diag!("shutting down: draining rings (signal again to exit at once)");
            shutdown.trigger();
        } else {
            crate::diag!("second signal: exiting without finishing the drain");
            std::process::exit(130);
        }
    }
}

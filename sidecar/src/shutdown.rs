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
///
/// The handlers are installed when this is called, not when the returned
/// future first runs: a spawned task on the current-thread runtime runs
/// only after the server has said "listening", and a SIGTERM in between
/// would have killed the process without a drain.
pub(crate) fn on_signals(shutdown: Shutdown) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(int), Ok(term)) => Some((int, term)),
        _ => {
            crate::diag!("cannot install signal handlers; stop me with SIGKILL");
            None
        }
    };
    async move {
        let Some((mut int, mut term)) = handlers else {
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
}

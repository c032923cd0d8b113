//! The sidecar's wake-up eventfd.
//!
//! One non-blocking eventfd for the whole sidecar. Clients get a copy with
//! their `Welcome` and write to it when a ring says the drain thread sleeps
//! (see [`distlog::ring::WakeLine`]); the server writes to it after it sent
//! the drain thread a message. The drain thread waits on it with `poll(2)`
//! and a short timeout: the backstop for a wake-up a client missed (the
//! clients check the sleep flag without a fence) or never sent (a hostile
//! client may also read the eventfd and steal a wake-up).

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

/// The wake-up eventfd.
#[derive(Debug)]
pub struct Wake {
    efd: EventFd,
}

impl Wake {
    /// A new non-blocking, close-on-exec eventfd.
    pub fn new() -> nix::Result<Wake> {
        let efd = EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
        Ok(Wake { efd })
    }

    /// Wake the drain thread. Never blocks: a counter near overflow (only a
    /// hostile client gets it there) already means "awake".
    pub fn notify(&self) {
        let _ = self.efd.write(1);
    }

    /// Sleep until [`Wake::notify`] (by anyone) or `timeout`; then consume
    /// the pending wake-ups. Returns whether it was woken.
    pub fn wait(&self, timeout: Duration) -> bool {
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
        let mut fds = [PollFd::new(self.efd.as_fd(), PollFlags::POLLIN)];
        let woken = matches!(poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)), Ok(n) if n > 0);
        if woken {
            self.clear();
        }
        woken
    }

    /// Consume pending wake-ups without waiting.
    pub fn clear(&self) {
        // EAGAIN when nothing is pending: fine.
        let _ = self.efd.read();
    }

    /// The eventfd, to hand to a client.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.efd.as_fd()
    }
}

//! Atomics facade: `std` normally, `loom` under `cfg(loom)` so the ring's
//! orderings can be model-checked (the pattern of tokio's `src/loom/`).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

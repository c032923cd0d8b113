//! distlog client: records from `tracing` and `log` into shared-memory rings
//! read by the per-host `distlogd` sidecar.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]

pub mod paths;
pub mod proto;
pub mod ring;
pub mod segment;
pub(crate) mod sync;
pub mod table;
pub mod wire;

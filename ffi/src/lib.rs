//! The C ABI over the distlog client: `libdistlog_ffi.so` /
//! `libdistlog_ffi.a` and `include/distlog.h`.
//!
//! The header's top comment is the contract (names, results, ownership,
//! threads, fork, linking); this crate implements it over
//! [`distlog::raw`]. Every export:
//!
//! - runs inside `ffi_panic_boundary!` (`src/panic.rs`), so no panic unwinds
//!   into C;
//! - converts its arguments through the typed helpers in [`conv`] (lossy C
//!   strings, checked pointer + length), never with casts of its own;
//! - rejects NULL and out-of-range arguments with a `distlog_result` code,
//!   or ignores the call when it returns nothing.
//!
//! `ffi/tests/header.rs` compares the header's prototypes and constants
//! with the exports of this crate, so they cannot drift apart.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]

pub mod conv;
pub mod init;
pub mod log;
pub(crate) mod panic;
pub mod result;
mod rodata;
pub mod scope;

pub use conv::{distlog_field, distlog_field_type, distlog_kv, distlog_value, MAX_FIELDS};
pub use init::{distlog_enabled, distlog_init, distlog_max_level, distlog_shutdown};
pub use log::{
    distlog_callsite, distlog_callsite_enabled, distlog_callsite_log, distlog_event_callsite,
    distlog_event_callsite_log, distlog_event_callsite_log_tl, distlog_event_kv,
    distlog_event_kv_tl, distlog_log,
};
pub use result::{distlog_result, distlog_result_str};
pub use scope::{
    distlog_scope, distlog_scope_close, distlog_scope_open, distlog_scope_open_with_state,
    distlog_scope_traceparent, distlog_scope_tracestate,
};

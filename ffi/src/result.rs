//! `distlog_result`: what a fallible call says, and `distlog_result_str`.

use std::os::raw::{c_char, c_int};

use crate::panic::ffi_panic_boundary;

/// The result of a fallible call. `DISTLOG_OK` is 0; the numbers are part
/// of the ABI and never change meaning.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum distlog_result {
    /// Success.
    DISTLOG_OK = 0,
    /// A pointer argument that must not be NULL was NULL.
    DISTLOG_NULL_PARAMETER = 1,
    /// An argument is out of range (a level, a count, an empty name).
    DISTLOG_INVALID_ARGUMENT = 2,
    /// The output buffer is too small; nothing was written.
    DISTLOG_BUFFER_TOO_SMALL = 3,
    /// `distlog_init` has not succeeded yet (or `distlog_shutdown` ran).
    DISTLOG_NOT_INITIALIZED = 4,
    /// A setting from the environment cannot be used (e.g.
    /// `DISTLOG_RING_BYTES=lots`).
    DISTLOG_BAD_CONFIG = 5,
    /// The runtime could not be set up (shared memory, a thread).
    DISTLOG_IO_ERROR = 6,
    /// A bug inside distlog: it panicked; the call had no effect.
    DISTLOG_PANIC = 7,
}

/// Every code and its explanation, in number order.
pub(crate) const ALL: &[(distlog_result, &std::ffi::CStr)] = &[
    (distlog_result::DISTLOG_OK, c"success"),
    (
        distlog_result::DISTLOG_NULL_PARAMETER,
        c"a pointer argument that must not be NULL was NULL",
    ),
    (
        distlog_result::DISTLOG_INVALID_ARGUMENT,
        c"an argument is out of range (level, field count, field type, empty name)",
    ),
    (
        distlog_result::DISTLOG_BUFFER_TOO_SMALL,
        c"the output buffer is too small; nothing was written",
    ),
    (
        distlog_result::DISTLOG_NOT_INITIALIZED,
        c"distlog_init has not succeeded (or distlog_shutdown ran)",
    ),
    (
        distlog_result::DISTLOG_BAD_CONFIG,
        c"a DISTLOG_* environment variable has a value that cannot be used",
    ),
    (
        distlog_result::DISTLOG_IO_ERROR,
        c"the runtime could not be set up (shared memory or a thread could not be created)",
    ),
    (
        distlog_result::DISTLOG_PANIC,
        c"internal error in distlog (a panic was caught); the call had no effect",
    ),
];

impl From<&distlog::Error> for distlog_result {
    fn from(e: &distlog::Error) -> Self {
        match e {
            distlog::Error::Config { .. } | distlog::Error::BadFilter { .. } => {
                distlog_result::DISTLOG_BAD_CONFIG
            }
            _ => distlog_result::DISTLOG_IO_ERROR,
        }
    }
}

/// A static, NUL-terminated English explanation of a result code; unknown
/// numbers get "unknown distlog_result". Never NULL.
///
/// # Safety
///
/// None: any number may be passed. The returned string lives for the
/// program and must not be freed or written.
#[no_mangle]
pub extern "C" fn distlog_result_str(r: c_int) -> *const c_char {
    ffi_panic_boundary! {
        ALL.iter()
            .find(|(code, _)| *code as c_int == r)
            .map_or(c"unknown distlog_result".as_ptr(), |(_, s)| s.as_ptr())
    }
}

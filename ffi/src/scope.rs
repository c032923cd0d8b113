//! Scopes opened from C.
//!
//! A scope's name is known only at run time: its call site is registered
//! by content (`distlog::raw::register_scope`, a thread-local cache in
//! front of the process's map). When the call-site table is full, scopes
//! share the call site named `scope` and carry their name in the field
//! `distlog.scope_name`.

use std::os::raw::{c_char, c_int};
use std::sync::atomic::Ordering;

use distlog::raw::Scope;
use distlog::wire::{Field, Level, Outcome, Value};

use crate::conv::{self, distlog_field};
use crate::init::{RUNNING, SERVICE};
use crate::panic::ffi_panic_boundary;
use crate::result::distlog_result;

/// An open scope (opaque to C). Really a `distlog::raw::Scope`.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct distlog_scope {
    _opaque: [u8; 0],
}

/// Length of a W3C `traceparent` plus its NUL (`DISTLOG_TRACEPARENT_LEN`).
pub const TRACEPARENT_LEN: usize = 56;
/// Enough for the `tracestate` distlog writes, NUL included
/// (`DISTLOG_TRACESTATE_LEN`; the longest is `distlog=debug`/`trace`).
pub const TRACESTATE_LEN: usize = 32;

/// The call-site id of scopes named `name`, and whether the name must go
/// in a field (the table was full).
fn scope_site(name: &str) -> Option<(u32, bool)> {
    let target = SERVICE.get().map_or("c", String::as_str);
    let site = |n: &str| distlog::raw::register_scope(Level::Info, target, n, None, None, &[]);
    match site(name) {
        Some(id) => Some((id, false)),
        None => site("scope").map(|id| (id, true)),
    }
}

/// The Rust scope behind a C handle.
///
/// # Safety
///
/// `s` is NULL or a live handle from `distlog_scope_open`.
unsafe fn scope_ref<'a>(s: *const distlog_scope) -> Option<&'a Scope> {
    // SAFETY: handles are `Box<Scope>` pointers (see distlog_scope_open).
    unsafe { s.cast::<Scope>().as_ref() }
}

/// Open a scope named `name` and enter it on the calling thread. Its parent
/// is the remote scope named by `traceparent_or_null` (a W3C `traceparent`)
/// when given, else the calling thread's current scope (none: the root of
/// a new trace). A malformed traceparent starts a new trace and is recorded
/// in the field `distlog.bad_traceparent`.
///
/// Scopes are not filtered by level (they carry the trace). Close every
/// scope with `distlog_scope_close` on the thread that opened it,
/// innermost first.
///
/// Returns NULL (and opens nothing) when `name` is NULL or empty, `fields`
/// is NULL with `nfields > 0`, `nfields > DISTLOG_MAX_FIELDS`, or
/// `distlog_init` has not succeeded.
///
/// # Safety
///
/// `name` and `traceparent_or_null` are NULL or NUL-terminated strings;
/// `fields` is NULL or points to `nfields` fields whose strings are valid
/// for the call.
#[no_mangle]
pub unsafe extern "C" fn distlog_scope_open(
    name: *const c_char,
    traceparent_or_null: *const c_char,
    fields: *const distlog_field,
    nfields: usize,
) -> *mut distlog_scope {
    ffi_panic_boundary! {
        // SAFETY: forwarded from our caller.
        unsafe { open(name, traceparent_or_null, std::ptr::null(), fields, nfields) }
    }
}

/// `distlog_scope_open` with the W3C `tracestate` that came with the
/// traceparent: `distlog=<level>` in it records this scope and its children
/// up to that level (a per-request verbosity boost that follows the request
/// across services). Ignored without a valid traceparent.
///
/// # Safety
///
/// As [`distlog_scope_open`]; `tracestate_or_null` is NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn distlog_scope_open_with_state(
    name: *const c_char,
    traceparent_or_null: *const c_char,
    tracestate_or_null: *const c_char,
    fields: *const distlog_field,
    nfields: usize,
) -> *mut distlog_scope {
    ffi_panic_boundary! {
        // SAFETY: forwarded from our caller.
        unsafe { open(name, traceparent_or_null, tracestate_or_null, fields, nfields) }
    }
}

/// The body of both open functions.
///
/// # Safety
///
/// As [`distlog_scope_open_with_state`].
unsafe fn open(
    name: *const c_char,
    traceparent: *const c_char,
    tracestate: *const c_char,
    fields: *const distlog_field,
    nfields: usize,
) -> *mut distlog_scope {
    if !RUNNING.load(Ordering::Relaxed) {
        return std::ptr::null_mut();
    }
    // SAFETY: NULL or a string, per the contract.
    let Some(name) = (unsafe { conv::cstr(name) }) else {
        return std::ptr::null_mut();
    };
    if name.is_empty() {
        return std::ptr::null_mut();
    }
    // SAFETY: NULL or `nfields` fields, per the contract.
    let Ok(fields) = (unsafe { conv::fields_slice(fields, nfields) }) else {
        return std::ptr::null_mut();
    };
    // SAFETY: NULL or a string, per the contract.
    let tp = unsafe { conv::cstr(traceparent) };
    // SAFETY: NULL or a string, per the contract.
    let ts = unsafe { conv::cstr(tracestate) };
    let Some((id, overflow)) = scope_site(&name) else {
        return std::ptr::null_mut();
    };
    // SAFETY: the fields' strings are valid for the call.
    let scope = unsafe {
        conv::with_fields(fields, |f| {
            if overflow {
                let mut v = f.to_vec();
                v.push(Field::Named("distlog.scope_name", Value::Str(&name)));
                Scope::open_with_state(id, tp.as_deref(), ts.as_deref(), &v)
            } else {
                Scope::open_with_state(id, tp.as_deref(), ts.as_deref(), f)
            }
        })
    };
    Box::into_raw(scope).cast::<distlog_scope>()
}

/// Write the W3C `traceparent` of scope `s` (55 characters and a NUL) into
/// `buf` of `len` bytes, to hand to another process. `buf` is written only
/// on success.
///
/// Errors: `DISTLOG_NULL_PARAMETER` (`s` or `buf` NULL),
/// `DISTLOG_BUFFER_TOO_SMALL` (`len < DISTLOG_TRACEPARENT_LEN`).
///
/// # Safety
///
/// `s` is NULL or a live handle from `distlog_scope_open`; `buf` is NULL
/// or points to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn distlog_scope_traceparent(
    s: *const distlog_scope,
    buf: *mut c_char,
    len: usize,
) -> distlog_result {
    ffi_panic_boundary! {
        // SAFETY: NULL or a live handle, per the contract.
        let Some(scope) = (unsafe { scope_ref(s) }) else { return distlog_result::DISTLOG_NULL_PARAMETER };
        // SAFETY: NULL or `len` writable bytes, per the contract.
        unsafe { conv::write_cstr(&scope.traceparent(), buf, len) }
    }
}

/// Write the W3C `tracestate` to send beside the scope's traceparent into
/// `buf` of `len` bytes: `distlog=<level>` when the scope is recorded at a
/// raised level (a per-request boost), else the empty string. `buf` is
/// written only on success; `DISTLOG_TRACESTATE_LEN` bytes always suffice.
///
/// Errors: `DISTLOG_NULL_PARAMETER` (`s` or `buf` NULL),
/// `DISTLOG_BUFFER_TOO_SMALL`.
///
/// # Safety
///
/// As [`distlog_scope_traceparent`].
#[no_mangle]
pub unsafe extern "C" fn distlog_scope_tracestate(
    s: *const distlog_scope,
    buf: *mut c_char,
    len: usize,
) -> distlog_result {
    ffi_panic_boundary! {
        // SAFETY: NULL or a live handle, per the contract.
        let Some(scope) = (unsafe { scope_ref(s) }) else { return distlog_result::DISTLOG_NULL_PARAMETER };
        let ts = scope.tracestate().unwrap_or_default();
        // SAFETY: NULL or `len` writable bytes, per the contract.
        unsafe { conv::write_cstr(&ts, buf, len) }
    }
}

/// Close scope `s` with `outcome` (`DISTLOG_OUTCOME_OK`; any other number
/// is an error), leave it on this thread, and free the handle. NULL is a
/// no-op.
///
/// # Safety
///
/// `s` is NULL or a live handle from `distlog_scope_open`, not used again
/// afterwards (like `free`).
#[no_mangle]
pub unsafe extern "C" fn distlog_scope_close(s: *mut distlog_scope, outcome: c_int) {
    ffi_panic_boundary! {
        if s.is_null() {
            return;
        }
        // SAFETY: a live handle is a `Box<Scope>` from `Box::into_raw` in
        // distlog_scope_open, given back exactly once (contract).
        let scope = unsafe { Box::from_raw(s.cast::<Scope>()) };
        scope.close(if outcome == DISTLOG_OUTCOME_OK { Outcome::Ok } else { Outcome::Error });
    }
}

/// `DISTLOG_OUTCOME_OK` in C.
pub const DISTLOG_OUTCOME_OK: c_int = 0;
/// `DISTLOG_OUTCOME_ERROR` in C.
pub const DISTLOG_OUTCOME_ERROR: c_int = 1;

//! Starting and stopping, the global level gate and `distlog_enabled`.

use std::os::raw::{c_char, c_int};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::conv;
use crate::panic::ffi_panic_boundary;
use crate::result::distlog_result;

/// The level gate while distlog is not running: nothing passes.
static OFF: AtomicU8 = AtomicU8::new(0);

/// Points to the most verbose level enabled anywhere (a C level number,
/// 0 = nothing): the client's own gate ([`distlog::raw::max_level`], which
/// follows the sidecar's directives and per-request boosts) while running,
/// else a constant 0 (before `distlog_init`, after `distlog_shutdown`).
/// The C macros compare against it before anything else: two relaxed loads
/// (the pointer, which changes only at init and shutdown, and the level)
/// and a compare. Written only by the library.
#[no_mangle]
pub static distlog_max_level: AtomicPtr<AtomicU8> =
    AtomicPtr::new(&OFF as *const AtomicU8 as *mut AtomicU8);

/// Set by a successful `distlog_init`, cleared by `distlog_shutdown`.
pub(crate) static RUNNING: AtomicBool = AtomicBool::new(false);

/// The service name in effect (the target of scopes opened from C).
pub(crate) static SERVICE: OnceLock<String> = OnceLock::new();

/// The name the sidecar shows for this library.
const LIBRARY: &str = concat!("c distlog-ffi ", env!("CARGO_PKG_VERSION"));

/// Whether records at `level` pass the global gate.
#[inline]
pub(crate) fn level_on(level: distlog::wire::Level) -> bool {
    level_on_raw(level as c_int)
}

/// [`level_on`] for a C level number (one outside the levels is on only
/// if it is at most the gate, so callers validate it elsewhere).
#[inline(always)]
pub(crate) fn level_on_raw(level: c_int) -> bool {
    // Relaxed (both): a stale value lets one record through or holds one
    // back around a change, nothing more; the pointee is a 'static atomic,
    // so no data is published through the pointer.
    let gate = distlog_max_level.load(Ordering::Relaxed);
    // SAFETY: the pointer is always &OFF or the client's 'static gate.
    level <= c_int::from(unsafe { &*gate }.load(Ordering::Relaxed))
}

/// Start distlog in this process as `service` and connect to the sidecar at
/// `$DISTLOG_SOCKET` (see the header for the other variables).
///
/// Returns `DISTLOG_OK` also when no sidecar runs: records wait in the
/// rings and a background thread connects (and reconnects) when it can.
/// A second call keeps the first service and settings and returns
/// `DISTLOG_OK` (after `distlog_shutdown` it enables logging again).
/// `DISTLOG_SERVICE` in the environment overrides `service`.
///
/// Errors: `DISTLOG_NULL_PARAMETER` (service NULL), `DISTLOG_INVALID_ARGUMENT`
/// (service empty), `DISTLOG_BAD_CONFIG`, `DISTLOG_IO_ERROR`.
///
/// # Safety
///
/// `service` is NULL or a NUL-terminated string (not necessarily UTF-8).
#[no_mangle]
pub unsafe extern "C" fn distlog_init(service: *const c_char) -> distlog_result {
    ffi_panic_boundary! {
        // SAFETY: NULL or a string, per the contract.
        let Some(name) = (unsafe { conv::cstr(service) }) else {
            return distlog_result::DISTLOG_NULL_PARAMETER;
        };
        if name.trim().is_empty() {
            return distlog_result::DISTLOG_INVALID_ARGUMENT;
        }
        if let Err(e) = distlog::builder(&name).library(LIBRARY).start() {
            return distlog_result::from(&e);
        }
        let effective = std::env::var("DISTLOG_SERVICE")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| name.into_owned());
        let _ = SERVICE.set(effective);
        // The shared scope call site, registered while the table has room:
        // scopes fall back to it when the table fills up.
        if let Some(svc) = SERVICE.get() {
            let _ = distlog::raw::register_scope(distlog::wire::Level::Info, svc, "scope", None, None, &[]);
        }
        RUNNING.store(true, Ordering::Relaxed);
        let gate: &'static AtomicU8 = distlog::raw::max_level();
        distlog_max_level.store(gate as *const AtomicU8 as *mut AtomicU8, Ordering::Relaxed);
        distlog_result::DISTLOG_OK
    }
}

/// Stop logging: wait (at most two seconds, and only when connected) until
/// the sidecar has read what this process wrote, then disable every call site. Scopes still open stay
/// valid and may be closed. Calling it without `distlog_init` does nothing.
///
/// # Safety
///
/// None: no arguments. Call it when no other thread logs any more (they are
/// not harmed, their records are dropped).
#[no_mangle]
pub extern "C" fn distlog_shutdown() {
    ffi_panic_boundary! {
        if !RUNNING.swap(false, Ordering::Relaxed) {
            return;
        }
        // Without a connection there is nobody to wait for: waiting would
        // only delay the exit of a program that runs without a sidecar.
        if distlog::raw::connected() {
            let _ = distlog::raw::flush(Duration::from_secs(2));
        }
        distlog_max_level.store(&OFF as *const AtomicU8 as *mut AtomicU8, Ordering::Relaxed);
    }
}

/// 1 when a record at `level` for `target` would be written, else 0 (also
/// for a level outside `DISTLOG_LEVEL_ERROR..=DISTLOG_LEVEL_TRACE`, a NULL
/// target, or before `distlog_init`).
///
/// # Safety
///
/// `target` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn distlog_enabled(level: c_int, target: *const c_char) -> c_int {
    ffi_panic_boundary! {
        let Some(level) = conv::level(level) else { return 0 };
        if !level_on(level) {
            return 0;
        }
        // SAFETY: NULL or a string, per the contract.
        let Some(target) = (unsafe { conv::cstr(target) }) else { return 0 };
        c_int::from(distlog::raw::enabled(level, &target))
    }
}

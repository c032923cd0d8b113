//! Starting and stopping, the global level gate and `distlog_enabled`.

use std::os::raw::{c_char, c_int};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tracing_core::LevelFilter;
use tracing_subscriber::filter::Targets;

use crate::conv;
use crate::panic::ffi_panic_boundary;
use crate::result::distlog_result;

/// The most verbose level any directive enables (0 = nothing: before
/// `distlog_init`, after `distlog_shutdown`, or with `off`). The C macros
/// compare against it with one relaxed load before anything else, so a
/// disabled level costs a load and a compare. Written only by the library.
#[no_mangle]
pub static distlog_max_level: AtomicI32 = AtomicI32::new(0);

/// Stamp of the per-call-site interest caches: bumped whenever what is
/// enabled may have changed (init, shutdown), which makes every C call site
/// re-evaluate on its next use. 30 bits are used.
pub(crate) static EPOCH: AtomicU32 = AtomicU32::new(1);

/// Set by a successful `distlog_init`, cleared by `distlog_shutdown`.
pub(crate) static RUNNING: AtomicBool = AtomicBool::new(false);

/// The service name in effect (the target of scopes opened from C).
pub(crate) static SERVICE: OnceLock<String> = OnceLock::new();

/// The name the sidecar shows for this library.
const LIBRARY: &str = concat!("c distlog-ffi ", env!("CARGO_PKG_VERSION"));

/// The directive string the client runtime uses, as it reads it.
fn directives() -> String {
    for v in ["DISTLOG_LOG", "RUST_LOG"] {
        if let Ok(d) = std::env::var(v) {
            if !d.trim().is_empty() {
                return d;
            }
        }
    }
    "info".to_owned()
}

/// The most verbose level `directives` enable anywhere, as a C level
/// number (0 = off). Mirrors the client's parsing (span-field directives
/// are ignored; unparsable directives mean `info`).
pub(crate) fn max_level_of(directives: &str) -> i32 {
    let t = directives
        .split(',')
        .filter(|d| !d.contains('[') && !d.trim().is_empty())
        .collect::<Vec<_>>()
        .join(",")
        .parse::<Targets>()
        .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO));
    let max = t.iter().map(|(_, l)| l).chain(t.default_level()).max().unwrap_or(LevelFilter::OFF);
    match max.into_level() {
        None => 0,
        Some(l) => distlog::wire::Level::from_tracing(&l) as i32,
    }
}

/// Whether records at `level` pass the global gate.
#[inline]
pub(crate) fn level_on(level: distlog::wire::Level) -> bool {
    // Relaxed: a stale value lets one record through or holds one back
    // around a change, nothing more; no data is published through it.
    (level as i32) <= distlog_max_level.load(Ordering::Relaxed)
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
        RUNNING.store(true, Ordering::Relaxed);
        EPOCH.fetch_add(1, Ordering::Relaxed);
        distlog_max_level.store(max_level_of(&directives()), Ordering::Relaxed);
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
        // Without a sidecar there is nobody to wait for: the records stay
        // in the rings for the next one (a sidecar collects rings of
        // processes that have exited, too).
        if distlog::raw::connected() {
            let _ = distlog::raw::flush(Duration::from_secs(2));
        }
        distlog_max_level.store(0, Ordering::Relaxed);
        EPOCH.fetch_add(1, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::max_level_of;

    #[test]
    fn max_levels() {
        assert_eq!(max_level_of("info"), 3);
        assert_eq!(max_level_of("warn,db=trace"), 5);
        assert_eq!(max_level_of("off"), 0);
        assert_eq!(max_level_of("error,x[span]=trace"), 1);
        assert_eq!(max_level_of("a=debug"), 4);
        assert_eq!(max_level_of("not a level=="), 3);
    }
}

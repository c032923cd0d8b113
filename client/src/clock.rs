//! The hot path's clock.
//!
//! Reading the TSC costs a few nanoseconds where `clock_gettime` costs about
//! twenty. Client and sidecar share one kernel and one TSC, so the client
//! writes raw ticks and the sidecar converts (it calibrates against
//! `CLOCK_REALTIME`). Where the TSC is not invariant (`constant_tsc` and
//! `nonstop_tsc` in `/proc/cpuinfo`), or not x86_64, the client writes
//! `CLOCK_REALTIME` nanoseconds instead and says so in its hello and in
//! every ring's flags.

use std::sync::atomic::{AtomicU8, Ordering};

const UNKNOWN: u8 = 0;
const TSC: u8 = 1;
const REALTIME: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Whether timestamps are TSC ticks. Decided once per process.
pub fn uses_tsc() -> bool {
    // Relaxed: the value is derived from immutable facts; racing threads
    // compute the same answer.
    match MODE.load(Ordering::Relaxed) {
        TSC => true,
        REALTIME => false,
        _ => {
            let tsc = tsc_is_invariant() && std::env::var_os("DISTLOG_NO_TSC").is_none();
            MODE.store(if tsc { TSC } else { REALTIME }, Ordering::Relaxed);
            tsc
        }
    }
}

fn tsc_is_invariant() -> bool {
    if !cfg!(target_arch = "x86_64") {
        return false;
    }
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return false;
    };
    info.lines()
        .find(|l| l.starts_with("flags"))
        .map(|l| {
            let mut words = l.split_whitespace();
            let has = |w: &str| l.split_whitespace().any(|x| x == w);
            let _ = words.next();
            has("constant_tsc") && has("nonstop_tsc")
        })
        .unwrap_or(false)
}

/// Realtime nanoseconds since the Unix epoch.
pub fn realtime_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64);
    t.unwrap_or(0)
}

/// Now, in the process's clock (see [`uses_tsc`]).
#[inline]
pub fn now() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // Relaxed: see uses_tsc. After the first call this is a plain load.
        if MODE.load(Ordering::Relaxed) == TSC {
            // SAFETY: rdtsc has no preconditions; the TSC is invariant here
            // (checked once in uses_tsc).
            return unsafe { core::arch::x86_64::_rdtsc() };
        }
    }
    if MODE.load(Ordering::Relaxed) == UNKNOWN && uses_tsc() {
        return now();
    }
    realtime_ns()
}

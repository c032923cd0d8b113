//! Converting client timestamps to wall-clock time.
//!
//! # Why the sidecar calibrates
//!
//! Reading the TSC costs a client ≈9 ns where `clock_gettime` costs ≈20 ns,
//! so a client on a machine with an invariant TSC stamps records with raw
//! ticks (its hello says `clock_tsc`). Client and sidecar share one kernel
//! and one TSC, so the sidecar alone needs to know how ticks map to
//! `CLOCK_REALTIME`:
//!
//! - the *rate* (ns per tick) is measured against `CLOCK_MONOTONIC` (which
//!   NTP slews but never steps) over a baseline that starts at sidecar start:
//!   about 25 ms at first, refined about once a second, so it only grows
//!   more precise;
//! - the *offset* is a fresh (TSC, `CLOCK_REALTIME`) pair taken at every
//!   refinement, so a stepped or slewed wall clock is followed within a
//!   second.
//!
//! Each pair is the best of a few reads: TSC, clock, TSC, keeping the pair
//! whose two TSC reads are closest, stamped at their midpoint.
//!
//! Targets other than x86-64 have no TSC reader here: a client that says
//! `clock_tsc` there is taken to have written realtime nanoseconds.

use std::time::Duration;

use nix::time::{clock_gettime, ClockId};

use crate::timestamp::Timestamp;

fn clock_ns(id: ClockId) -> u64 {
    match clock_gettime(id) {
        Ok(t) => (t.tv_sec() as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(t.tv_nsec() as u64),
        Err(_) => 0,
    }
}

/// `CLOCK_REALTIME` in nanoseconds since the epoch.
pub fn realtime_ns() -> u64 {
    clock_ns(ClockId::CLOCK_REALTIME)
}

/// `CLOCK_MONOTONIC` in nanoseconds.
pub fn monotonic_ns() -> u64 {
    clock_ns(ClockId::CLOCK_MONOTONIC)
}

#[cfg(target_arch = "x86_64")]
fn rdtsc() -> Option<u64> {
    // The intrinsic is `unsafe` only by convention on older toolchains.
    #[allow(unused_unsafe)]
    // SAFETY: RDTSC exists on every x86-64 CPU, has no preconditions and
    // touches no memory.
    Some(unsafe { core::arch::x86_64::_rdtsc() })
}

#[cfg(not(target_arch = "x86_64"))]
fn rdtsc() -> Option<u64> {
    None
}

#[cold]
fn wide_delta(raw: u64, anchor: u64) -> f64 {
    (i128::from(raw) - i128::from(anchor)) as f64
}

#[cold]
fn wide_ns(off: f64) -> i128 {
    off as i128
}

/// One (tsc, clock ns) pair: the best of a few reads.
fn sample(id: ClockId) -> Option<(u64, u64)> {
    let mut best: Option<(u64, u64, u64)> = None; // (window, tsc, ns)
    for _ in 0..7 {
        let t0 = rdtsc()?;
        let ns = clock_ns(id);
        let t1 = rdtsc()?;
        let window = t1.wrapping_sub(t0);
        if !matches!(best, Some((w, _, _)) if w <= window) {
            best = Some((window, t0 + window / 2, ns));
        }
    }
    best.map(|(_, tsc, ns)| (tsc, ns))
}

#[derive(Debug, Clone)]
struct Tsc {
    /// First (tsc, monotonic ns) pair: the start of the rate's baseline.
    base: (u64, u64),
    /// Nanoseconds per tick.
    ns_per_tick: f64,
    /// Latest (tsc, realtime ns) pair: the offset.
    anchor: (u64, u64),
    /// Monotonic ns of the last refinement.
    refined_at: u64,
}

/// Converts timestamps (TSC ticks or realtime ns) to [`Timestamp`]s.
///
/// # Examples
///
/// ```
/// use distlogd::clock::Clock;
/// let c = Clock::realtime_only();
/// assert_eq!(c.to_timestamp(42, false).0, 42);
/// assert_eq!(c.duration_ns(10, 25, false), 15);
/// ```
#[derive(Debug, Clone)]
pub struct Clock {
    tsc: Option<Tsc>,
}

/// How often [`Clock::refine`] takes a new sample.
const REFINE_EVERY_NS: u64 = 1_000_000_000;

impl Clock {
    /// Calibrate the TSC against the system clocks; takes about 25 ms. On a
    /// target without a TSC reader, or if the TSC does not advance, the
    /// result treats every timestamp as realtime nanoseconds.
    pub fn calibrate() -> Clock {
        Clock {
            tsc: Self::calibrate_tsc(Duration::from_millis(25)),
        }
    }

    /// A clock that treats every timestamp as realtime nanoseconds.
    pub fn realtime_only() -> Clock {
        Clock { tsc: None }
    }

    fn calibrate_tsc(over: Duration) -> Option<Tsc> {
        let base = sample(ClockId::CLOCK_MONOTONIC)?;
        std::thread::sleep(over);
        let now = sample(ClockId::CLOCK_MONOTONIC)?;
        let ns_per_tick = rate(base, now)?;
        let anchor = sample(ClockId::CLOCK_REALTIME)?;
        Some(Tsc {
            base,
            ns_per_tick,
            anchor,
            refined_at: now.1,
        })
    }

    /// Whether TSC timestamps are converted (else taken as realtime ns).
    pub fn has_tsc(&self) -> bool {
        self.tsc.is_some()
    }

    /// Nanoseconds per TSC tick, if calibrated.
    pub fn ns_per_tick(&self) -> Option<f64> {
        self.tsc.as_ref().map(|t| t.ns_per_tick)
    }

    /// Refine the rate over the longer baseline and take a fresh offset, if
    /// the last refinement is a second old. Cheap otherwise: call it often.
    pub fn refine(&mut self) {
        let Some(t) = &mut self.tsc else { return };
        let mono = monotonic_ns();
        if mono.saturating_sub(t.refined_at) < REFINE_EVERY_NS {
            return;
        }
        t.refined_at = mono;
        if let Some(now) = sample(ClockId::CLOCK_MONOTONIC) {
            if let Some(r) = rate(t.base, now) {
                t.ns_per_tick = r;
            }
        }
        if let Some(anchor) = sample(ClockId::CLOCK_REALTIME) {
            t.anchor = anchor;
        }
    }

    /// Wall-clock time of a client timestamp: TSC ticks if `tsc`, else
    /// realtime ns. Any `u64` is accepted (hostile input saturates).
    ///
    /// In line for the drain (called, ~10 instructions a record more): the
    /// honest case, every value in `i64`, here; `Clock::tsc_wide` the
    /// rest, out of line.
    #[inline(always)]
    pub fn to_timestamp(&self, raw: u64, tsc: bool) -> Timestamp {
        match (&self.tsc, tsc) {
            (Some(t), true) => {
                if let (Ok(r), Ok(a), Ok(base)) = (
                    i64::try_from(raw),
                    i64::try_from(t.anchor.0),
                    i64::try_from(t.anchor.1),
                ) {
                    // What tsc_wide gives for these, in i64 and f64.
                    let off = (r - a) as f64 * t.ns_per_tick;
                    if off.abs() < 9.0e18 {
                        if let Some(ns) = base.checked_add(off as i64) {
                            return Timestamp(ns.max(0) as u64);
                        }
                    }
                }
                self.tsc_wide(raw)
            }
            _ => Timestamp(raw),
        }
    }

    /// [`Clock::to_timestamp`] of TSC ticks, any values.
    #[cold]
    #[inline(never)]
    fn tsc_wide(&self, raw: u64) -> Timestamp {
        let Some(t) = &self.tsc else {
            return Timestamp(raw);
        };
        // Through i64 when it fits (it does for any honest client): the
        // same values, without the i128 <-> f64 conversions; the wide forms
        // are cold functions so that they are not computed speculatively.
        let delta = match (i64::try_from(raw), i64::try_from(t.anchor.0)) {
            (Ok(r), Ok(a)) => (r - a) as f64,
            _ => wide_delta(raw, t.anchor.0),
        };
        let off = delta * t.ns_per_tick;
        let off = if off.abs() < 9.0e18 {
            i128::from(off as i64)
        } else {
            wide_ns(off)
        };
        let ns = i128::from(t.anchor.1).saturating_add(off);
        Timestamp(ns.clamp(0, i128::from(u64::MAX)) as u64)
    }

    /// Nanoseconds between two client timestamps of the same clock (0 if
    /// `to` is before `from`).
    pub fn duration_ns(&self, from: u64, to: u64, tsc: bool) -> u64 {
        let ticks = to.saturating_sub(from);
        match (&self.tsc, tsc) {
            (Some(t), true) => (ticks as f64 * t.ns_per_tick) as u64,
            _ => ticks,
        }
    }
}

/// ns per tick between two (tsc, ns) samples, if sane (0.01..100 GHz).
fn rate(a: (u64, u64), b: (u64, u64)) -> Option<f64> {
    let ticks = b.0.checked_sub(a.0)?;
    let ns = b.1.checked_sub(a.1)?;
    if ticks == 0 || ns == 0 {
        return None;
    }
    let r = ns as f64 / ticks as f64;
    (0.01..=100.0).contains(&r).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn tsc_tracks_realtime() {
        let c = Clock::calibrate();
        assert!(c.has_tsc());
        let (tsc, rt) = sample(ClockId::CLOCK_REALTIME).unwrap();
        let got = c.to_timestamp(tsc, true).0;
        // Within a millisecond: a loose bound on correctness, not a timing
        // assertion (a wrong rate or offset is off by far more).
        assert!(
            got.abs_diff(rt) < 1_000_000,
            "tsc {tsc} -> {got}, realtime {rt}"
        );
    }

    #[test]
    fn fast_conversion_is_the_wide_one() {
        // Anchors in i64 (the fast paths), near its end (the sum overflows
        // it) and past it (realtime after 2262: the wide form).
        for ns in [
            1_700_000_000_000_000_000,
            i64::MAX as u64 - 10,
            i64::MAX as u64 + 10,
            u64::MAX - 5,
        ] {
            fast_conversion_is_the_wide_one_at(ns);
        }
    }

    fn fast_conversion_is_the_wide_one_at(anchor_ns: u64) {
        let t = Tsc {
            base: (0, 0),
            ns_per_tick: 0.3846,
            anchor: (1 << 40, anchor_ns),
            refined_at: 0,
        };
        let c = Clock {
            tsc: Some(t.clone()),
        };
        let wide = |raw: u64| {
            let delta = i128::from(raw) - i128::from(t.anchor.0);
            let off = (delta as f64 * t.ns_per_tick) as i128;
            let ns = i128::from(t.anchor.1).saturating_add(off);
            ns.clamp(0, i128::from(u64::MAX)) as u64
        };
        for raw in [
            0,
            1,
            1 << 40,
            (1 << 40) + 12345,
            1 << 62,
            (1 << 63) - 1,
            1 << 63,
            u64::MAX,
        ] {
            assert_eq!(c.to_timestamp(raw, true).0, wide(raw), "raw {raw}");
            assert_eq!(c.tsc_wide(raw).0, wide(raw), "wide, raw {raw}");
        }
    }

    #[test]
    fn hostile_values_saturate() {
        let c = Clock::calibrate();
        let _ = c.to_timestamp(0, true);
        let _ = c.to_timestamp(u64::MAX, true);
        assert_eq!(c.duration_ns(10, 5, true), 0);
        assert_eq!(Clock::realtime_only().to_timestamp(7, true), Timestamp(7));
    }
}

//! Shared pieces of the distlog benchmarks.
//!
//! # How a cost is measured
//!
//! A workload is one operation (a log call, a scope, ...). It runs in
//! *batches*: `batch` operations back to back between two reads of the TSC.
//! The batch's time over `batch` is one sample of the per-operation cost; the
//! p50 and p99 over many samples are what the report shows. Batches (of 64
//! to 256 operations) amortise the TSC read itself (~10 ns) and keep a
//! preemption from landing in more than one sample, so p99 shows the
//! operation's own slow path (a ring refresh, a wake-up) rather than the
//! scheduler.
//!
//! Every measurement is printed as one JSON object per line on stdout
//! ([`Sample::emit`]); `bench-runner report` turns the lines of a whole run
//! into `benches/RESULTS.md`.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Read the TSC (x86_64), else a monotonic nanosecond clock.
#[inline(always)]
pub fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// TSC ticks per nanosecond, calibrated once (100 ms against `Instant`).
pub fn ticks_per_ns() -> f64 {
    static T: OnceLock<f64> = OnceLock::new();
    *T.get_or_init(|| {
        if !cfg!(target_arch = "x86_64") {
            return 1.0;
        }
        let (i0, t0) = (Instant::now(), ticks());
        std::thread::sleep(Duration::from_millis(100));
        let (i1, t1) = (Instant::now(), ticks());
        (t1 - t0) as f64 / (i1 - i0).as_nanos() as f64
    })
}

/// Realtime nanoseconds since the Unix epoch (what the end-to-end
/// benchmark stamps into a record).
pub fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Percentiles of a set of samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Mean.
    pub mean: f64,
    /// Smallest sample.
    pub min: f64,
    /// Number of samples.
    pub n: usize,
}

impl Stats {
    /// Percentiles of `v` (sorted in place).
    pub fn of(v: &mut [f64]) -> Stats {
        if v.is_empty() {
            return Stats::default();
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Stats {
            p50: at(0.5),
            p99: at(0.99),
            p999: at(0.999),
            mean: v.iter().sum::<f64>() / v.len() as f64,
            min: v[0],
            n: v.len(),
        }
    }
}

/// Run `op` in `batches` timed batches of `batch` calls (after a tenth as
/// many untimed warm-up batches) and return per-operation nanoseconds.
/// `op` gets a running counter.
pub fn measure(batches: usize, batch: usize, mut op: impl FnMut(u64)) -> Stats {
    let tpn = ticks_per_ns();
    let mut seq = 0u64;
    for _ in 0..batches / 10 + 1 {
        for _ in 0..batch {
            op(black_box(seq));
            seq += 1;
        }
    }
    let mut v = Vec::with_capacity(batches);
    for _ in 0..batches {
        let t0 = ticks();
        for _ in 0..batch {
            op(black_box(seq));
            seq += 1;
        }
        let t1 = ticks();
        v.push((t1 - t0) as f64 / tpn / batch as f64);
    }
    Stats::of(&mut v)
}

/// Like [`measure`], but calls `between` (untimed) after every batch.
pub fn measure_with(
    batches: usize,
    batch: usize,
    mut op: impl FnMut(u64),
    mut between: impl FnMut(),
) -> Stats {
    let tpn = ticks_per_ns();
    let mut seq = 0u64;
    let mut v = Vec::with_capacity(batches);
    for b in 0..batches + batches / 10 + 1 {
        let t0 = ticks();
        for _ in 0..batch {
            op(black_box(seq));
            seq += 1;
        }
        let t1 = ticks();
        between();
        if b > batches / 10 {
            v.push((t1 - t0) as f64 / tpn / batch as f64);
        }
    }
    Stats::of(&mut v)
}

/// One result line.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Workload, e.g. `rust.enabled`.
    pub workload: String,
    /// Implementation, e.g. `distlog`, `tracing-noop`, `lttng-ust`.
    pub imp: String,
    /// The numbers.
    pub stats: Stats,
    /// Unit of the numbers (`ns/op` unless said otherwise).
    pub unit: &'static str,
    /// Anything else worth keeping (counts, settings).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Sample {
    /// A sample in ns/op.
    pub fn new(workload: &str, imp: &str, stats: Stats) -> Sample {
        Sample {
            workload: workload.into(),
            imp: imp.into(),
            stats,
            unit: "ns/op",
            extra: Default::default(),
        }
    }

    /// Add a key to `extra`.
    pub fn with(mut self, k: &str, v: impl Into<serde_json::Value>) -> Sample {
        self.extra.insert(k.into(), v.into());
        self
    }

    /// Set the unit.
    pub fn unit(mut self, u: &'static str) -> Sample {
        self.unit = u;
        self
    }

    /// Print as one JSON line on stdout.
    pub fn emit(&self) {
        let j = serde_json::json!({
            "workload": self.workload,
            "impl": self.imp,
            "unit": self.unit,
            "p50": self.stats.p50,
            "p99": self.stats.p99,
            "p999": self.stats.p999,
            "mean": self.stats.mean,
            "min": self.stats.min,
            "n": self.stats.n,
            "extra": self.extra,
        });
        println!("{j}");
    }
}

/// The floor: take a TSC timestamp and store 32 bytes into a thread-local
/// buffer, publishing the new position with a release store (what a log
/// call cannot do less than).
pub mod floor {
    use std::cell::UnsafeCell;
    use std::sync::atomic::{AtomicU64, Ordering};

    const BYTES: usize = 64 << 10;

    #[repr(C, align(64))]
    struct Buf {
        pos: AtomicU64,
        data: UnsafeCell<[u8; BYTES]>,
    }

    thread_local! {
        static BUF: Buf = const { Buf { pos: AtomicU64::new(0), data: UnsafeCell::new([0; BYTES]) } };
    }

    /// One floor operation: 32 bytes (timestamp and three values).
    #[inline(always)]
    pub fn op(a: u64, b: u64, c: u64) {
        BUF.with(|buf| {
            let ts = super::ticks();
            // Relaxed: only this thread writes `pos`.
            let p = buf.pos.load(Ordering::Relaxed);
            let off = (p as usize) & (BYTES - 1);
            let rec = [ts, a, b, c];
            // SAFETY: off is a multiple of 32 below BYTES, so 32 bytes fit;
            // only this thread touches its buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    rec.as_ptr().cast::<u8>(),
                    (buf.data.get() as *mut u8).add(off),
                    32,
                )
            };
            // Release: would pair with a reader's Acquire load of `pos`.
            buf.pos.store(p + 32, Ordering::Release);
        })
    }
}

/// The event every Rust peer writes: a message, two integers, one short
/// string. `$m` is the macro (`tracing::info!` form).
#[macro_export]
macro_rules! tracing_event {
    ($i:expr) => {
        tracing::info!(target: "bench", a = $i as i64, b = 42u64, s = "short", "message text")
    };
}

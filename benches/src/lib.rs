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
//!
//! # Paired ratios
//!
//! This VM's vCPUs each run in two speed modes about a factor 0.58 apart
//! that switch within seconds, so the ratio of two rows measured one after
//! the other can compare a fast-mode row with a slow-mode one. A target
//! ratio is therefore also measured *paired*: numerator and denominator
//! alternate in short rounds ([`Rounds`], served over a pipe by [`serve`]
//! to `bench-runner pair`), the two halves of a round a few milliseconds
//! apart on the same CPU ([`pin`]) and so almost always in the same mode;
//! the verdict is the median of the per-round ratios ([`pair_sample`]).
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
    /// Fast-mode estimate: the 10th percentile of the medians of
    /// consecutive [`CHUNK`]-sample stretches (in time order). A chunk of
    /// batches lies within one speed mode of the VM, so this is the row's
    /// p50 as it would be in the fast mode.
    pub fast: f64,
    /// Number of samples.
    pub n: usize,
}

/// Batches in one stretch of [`Stats::fast`] (~2 ms of 100 calls at 100 ns).
pub const CHUNK: usize = 200;

/// Median of `v` (sorted in place); 0 when empty.
fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[(v.len() - 1) / 2]
}

impl Stats {
    /// A single value (a rate, a size) as every statistic.
    pub fn one(x: f64) -> Stats {
        Stats {
            p50: x,
            p99: x,
            p999: x,
            mean: x,
            min: x,
            fast: x,
            n: 1,
        }
    }

    /// Percentiles of `v` (sorted in place; `fast` needs it in time order).
    pub fn of(v: &mut [f64]) -> Stats {
        if v.is_empty() {
            return Stats::default();
        }
        let mut chunks: Vec<f64> = v.chunks(CHUNK).map(|c| median(&mut c.to_vec())).collect();
        chunks.sort_by(|a, b| a.total_cmp(b));
        let fast = chunks[((chunks.len() - 1) as f64 * 0.1).round() as usize];
        v.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Stats {
            p50: at(0.5),
            p99: at(0.99),
            p999: at(0.999),
            mean: v.iter().sum::<f64>() / v.len() as f64,
            min: v[0],
            fast,
            n: v.len(),
        }
    }
}

/// `batches` timed batches of `batch` calls of `op` (counter `seq`), with
/// `between` (untimed) after each: per-operation nanoseconds of every
/// batch, in time order.
fn timed(
    batches: usize,
    batch: usize,
    seq: &mut u64,
    op: &mut impl FnMut(u64),
    between: &mut impl FnMut(),
) -> Vec<f64> {
    let tpn = ticks_per_ns();
    let mut v = Vec::with_capacity(batches);
    for _ in 0..batches {
        let t0 = ticks();
        for _ in 0..batch {
            op(black_box(*seq));
            *seq += 1;
        }
        let t1 = ticks();
        between();
        v.push((t1 - t0) as f64 / tpn / batch as f64);
    }
    v
}

/// Run `op` in `batches` timed batches of `batch` calls (after a tenth as
/// many warm-up batches) and return per-operation nanoseconds.
/// `op` gets a running counter.
pub fn measure(batches: usize, batch: usize, op: impl FnMut(u64)) -> Stats {
    measure_with(batches, batch, op, || {})
}

/// Like [`measure`], but calls `between` (untimed) after every batch.
pub fn measure_with(
    batches: usize,
    batch: usize,
    mut op: impl FnMut(u64),
    mut between: impl FnMut(),
) -> Stats {
    let mut seq = 0u64;
    timed(batches / 10 + 1, batch, &mut seq, &mut op, &mut between);
    Stats::of(&mut timed(batches, batch, &mut seq, &mut op, &mut between))
}

/// The rounds of one workload in a paired measurement: its counter runs on
/// across rounds (the event's integer field keeps the size it has in a
/// row).
#[derive(Default)]
pub struct Rounds {
    seq: u64,
}

impl Rounds {
    /// One round: `batches` timed batches of `batch` calls, `between`
    /// (untimed) after each; the round's p50 in ns/op.
    pub fn run(
        &mut self,
        batches: usize,
        batch: usize,
        mut op: impl FnMut(u64),
        mut between: impl FnMut(),
    ) -> f64 {
        median(&mut timed(
            batches,
            batch,
            &mut self.seq,
            &mut op,
            &mut between,
        ))
    }
}

/// Serve rounds to `bench-runner pair` until stdin closes: each line
/// `OP BATCHES BATCH` runs one round of workload `OP` (`run` returns its
/// p50 in ns/op, `None` for an unknown workload) and answers with the p50
/// on a line of its own (`-1` for an unknown workload or a bad line).
pub fn serve(mut run: impl FnMut(&str, usize, usize) -> Option<f64>) {
    use std::io::{BufRead, Write};
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines().map_while(Result::ok) {
        let mut w = line.split_whitespace();
        let (op, nb, bs) = (w.next(), w.next(), w.next());
        let v = match (
            op,
            nb.and_then(|x| x.parse().ok()),
            bs.and_then(|x| x.parse().ok()),
        ) {
            (Some(op), Some(nb), Some(bs)) => run(op, nb, bs),
            _ => None,
        };
        if writeln!(out, "{:.4}", v.unwrap_or(-1.0))
            .and_then(|_| out.flush())
            .is_err()
        {
            return;
        }
    }
}

/// The CPUs this process may run on.
pub fn cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data (all zero: the empty set);
    // sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; pid 0 is this thread.
    let ok = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) } == 0;
    let all: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: i < CPU_SETSIZE, the set's size in bits.
        .filter(|&i| ok && unsafe { libc::CPU_ISSET(i, &set) })
        .collect();
    if all.is_empty() {
        vec![0]
    } else {
        all
    }
}

/// Pin thread `tid` (0: the calling thread; a process's pid: its main
/// thread) to `cpu`. Best effort: unpinned, a pair still alternates in
/// time.
pub fn pin(tid: u32, cpu: usize) {
    // SAFETY: cpu_set_t is plain data (all zero: the empty set).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: cpu comes from cpus(), below CPU_SETSIZE; the kernel reads
    // size_of::<cpu_set_t>() bytes of `set`.
    unsafe {
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid as libc::pid_t, std::mem::size_of_val(&set), &set);
    }
}

/// `q`-quantile of sorted `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// The result line of a paired measurement `id` (workload `pair`, unit
/// `ratio`): the median round ratio as `p50` (min, p99 = max; `fast`: see
/// below), in `extra`
/// its quartiles and max and each side's median and fast-mode (p10)
/// round p50 (`num_*`, `den_*`), and every round's p50s in time order
/// (`num_rounds`, `den_rounds`: what co-varies, the VM, cancels in the
/// ratio; what does not is the code's own).
pub fn pair_sample(id: &str, mut ratio: Vec<f64>, mut num: Vec<f64>, mut den: Vec<f64>) -> Sample {
    let rounds =
        |v: &[f64]| -> Vec<f64> { v.iter().map(|x| (x * 100.0).round() / 100.0).collect() };
    let (num_rounds, den_rounds) = (rounds(&num), rounds(&den));
    // The speed modes do not scale all code alike (the floor, mostly
    // rdtsc, keeps its cost; distlog's event slows more than tracing's),
    // so a paired ratio still moves with the mix of modes over its
    // rounds: `fast` is the median over the rounds where both halves ran
    // within 1.2 x their side's p10 round (the fast mode, a factor ~0.6
    // from the slow one), `fast_rounds` how many.
    let lim = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        1.2 * quantile(&s, 0.1)
    };
    let (ln, ld) = (lim(&num), lim(&den));
    let mut fast: Vec<f64> = (0..ratio.len())
        .filter(|&i| num[i] <= ln && den[i] <= ld)
        .map(|i| ratio[i])
        .collect();
    let fast_rounds = fast.len() as u64;
    let mut st = Stats::of(&mut ratio);
    st.fast = if fast.is_empty() {
        f64::NAN
    } else {
        median(&mut fast)
    };
    num.sort_by(|a, b| a.total_cmp(b));
    den.sort_by(|a, b| a.total_cmp(b));
    Sample::new("pair", id, st)
        .unit("ratio")
        .with("q1", quantile(&ratio, 0.25))
        .with("q3", quantile(&ratio, 0.75))
        .with("max", quantile(&ratio, 1.0))
        .with("rounds", ratio.len() as u64)
        .with("fast_rounds", fast_rounds)
        .with("num_p50", quantile(&num, 0.5))
        .with("num_fast", quantile(&num, 0.1))
        .with("den_p50", quantile(&den, 0.5))
        .with("den_fast", quantile(&den, 0.1))
        .with("num_rounds", num_rounds)
        .with("den_rounds", den_rounds)
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
            "fast": self.stats.fast,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A row that spends its first half in the slow mode: the p50 lands
    /// between the modes' clusters or in the slow one, `fast` in the fast.
    #[test]
    fn fast_is_the_fast_stretches_median() {
        let mut v: Vec<f64> = (0..4000)
            .map(|i| if i < 2400 { 11.6 } else { 6.7 } + (i % 7) as f64 * 0.01)
            .collect();
        let s = Stats::of(&mut v);
        assert!(s.p50 > 11.0, "{s:?}");
        assert!((s.fast - 6.73).abs() < 0.05, "{s:?}");
    }

    /// Both sides slowed alike in some rounds: every round ratio is 1.
    /// The floor keeps its cost in slow rounds: the ratio moves, and only
    /// the rounds where both sides were fast make the fast-mode ratio.
    #[test]
    fn pair_sample_cancels_a_common_mode_and_separates_an_unequal_one() {
        let slow = |i: usize| i.is_multiple_of(3);
        let num: Vec<f64> = (0..30)
            .map(|i| if slow(i) { 116.0 } else { 70.0 })
            .collect();
        let den: Vec<f64> = (0..30).map(|i| if slow(i) { 12.4 } else { 7.48 }).collect();
        let ratio = |n: &[f64], d: &[f64]| n.iter().zip(d).map(|(a, b)| a / b).collect();
        let s = pair_sample("same", ratio(&num, &num), num.clone(), num.clone());
        assert_eq!((s.stats.p50, s.stats.min, s.stats.fast), (1.0, 1.0, 1.0));
        assert_eq!(s.extra["fast_rounds"], 20);
        let s = pair_sample("mode", ratio(&num, &den), num.clone(), den);
        assert!((s.stats.fast - 70.0 / 7.48).abs() < 1e-9, "{:?}", s.stats);
        let floor = vec![10.0; 30];
        let s = pair_sample("floor", ratio(&num, &floor), num, floor);
        assert_eq!(s.stats.p50, 7.0);
        assert_eq!(s.stats.fast, 7.0);
        assert_eq!(s.extra["fast_rounds"], 20);
        assert_eq!(s.extra["max"], 11.6);
    }
}

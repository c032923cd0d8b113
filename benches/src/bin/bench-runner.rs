//! `bench-runner SUBCOMMAND`: one workload per process (a global
//! subscriber, a logger, a sidecar per run), results as JSON lines on
//! stdout. `scripts/bench` runs every subcommand and then `report`.
//!
//! `BENCH_QUICK=1` shrinks every workload to a smoke run of a few
//! milliseconds (CI: the benches cannot rot; no timing is asserted).

use std::io::{BufRead, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use distlog_benches::{
    floor, measure, measure_with, realtime_ns, serve, tracing_event, Rounds, Sample, Stats,
};

mod pair;
mod report;

fn quick() -> bool {
    std::env::var_os("BENCH_QUICK").is_some_and(|v| v != "0")
}

/// (batches, batch size) for a latency workload.
fn shape() -> (usize, usize) {
    if quick() {
        (50, 32)
    } else {
        (20_000, 100)
    }
}

fn die(msg: &str) -> ! {
    eprintln!("bench-runner: {msg}");
    std::process::exit(2)
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn arg_or<T: std::str::FromStr>(args: &[String], name: &str, dflt: T) -> T {
    arg(args, name).and_then(|v| v.parse().ok()).unwrap_or(dflt)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first().cloned() else {
        die("usage: bench-runner SUBCOMMAND [ARGS] (see src/bin/bench-runner.rs)")
    };
    match cmd.as_str() {
        "floor" => bench_floor(),
        "tracing-noop" => bench_tracing_noop(&args),
        "tracing-visit" => bench_tracing_visit(),
        "tracing-registry" => bench_tracing_registry(),
        "tracing-disabled" => bench_tracing_disabled(),
        "tracing-fmt" => bench_tracing_fmt(&args),
        "ftlog" => bench_ftlog(&args),
        "log-file" => bench_log_file(&args),
        "fastrace" => bench_fastrace(),
        "distlog-enabled" => bench_distlog_enabled(),
        "distlog-drop" => bench_distlog_drop(),
        "distlog-disabled" => bench_distlog_disabled(),
        "distlog-scope" => bench_distlog_scope(),
        "distlog-threads" => bench_distlog_threads(&args),
        "drain" => bench_drain(&args),
        "e2e" => bench_e2e(&args),
        "store" => bench_store(&args),
        "tail-f" => bench_tail_follow(&args),
        "overload" => bench_overload(&args),
        "memory" => bench_memory(&args),
        "load-client" => load_client(&args),
        "count" => count_ops(&args),
        "encode" => bench_encode(),
        "report" => report::main(&args),
        "serve" => serve_workload(&args),
        "pair" => pair::main(&args),
        other => die(&format!("unknown subcommand {other:?}")),
    }
}

// ---------------------------------------------------------------- peers

fn bench_floor() {
    let (b, n) = shape();
    let s = measure(b, n, |i| floor::op(i, 42, 7));
    Sample::new("floor", "rust-floor", s).emit();
}

/// A subscriber that says "enabled" to everything and does nothing.
struct NoopEnabled;

impl tracing_core::Subscriber for NoopEnabled {
    fn register_callsite(
        &self,
        _: &'static tracing_core::Metadata<'static>,
    ) -> tracing_core::Interest {
        tracing_core::Interest::always()
    }
    fn enabled(&self, _: &tracing_core::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing_core::span::Attributes<'_>) -> tracing_core::span::Id {
        tracing_core::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing_core::span::Id, _: &tracing_core::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing_core::span::Id, _: &tracing_core::span::Id) {}
    fn event(&self, e: &tracing_core::Event<'_>) {
        std::hint::black_box(e);
    }
    fn enter(&self, _: &tracing_core::span::Id) {}
    fn exit(&self, _: &tracing_core::span::Id) {}
}

/// Visits every field of an event and keeps nothing: what any subscriber
/// that records values pays to `tracing` before it writes a byte.
struct NullVisitor;

impl tracing_core::field::Visit for NullVisitor {
    fn record_i64(&mut self, _: &tracing_core::Field, v: i64) {
        std::hint::black_box(v);
    }
    fn record_u64(&mut self, _: &tracing_core::Field, v: u64) {
        std::hint::black_box(v);
    }
    fn record_str(&mut self, _: &tracing_core::Field, v: &str) {
        std::hint::black_box(v);
    }
    fn record_debug(&mut self, _: &tracing_core::Field, v: &dyn std::fmt::Debug) {
        std::hint::black_box(v);
    }
}

struct VisitEnabled;

impl tracing_core::Subscriber for VisitEnabled {
    fn register_callsite(
        &self,
        _: &'static tracing_core::Metadata<'static>,
    ) -> tracing_core::Interest {
        tracing_core::Interest::always()
    }
    fn enabled(&self, _: &tracing_core::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing_core::span::Attributes<'_>) -> tracing_core::span::Id {
        tracing_core::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing_core::span::Id, _: &tracing_core::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing_core::span::Id, _: &tracing_core::span::Id) {}
    fn event(&self, e: &tracing_core::Event<'_>) {
        e.record(&mut NullVisitor);
    }
    fn enter(&self, _: &tracing_core::span::Id) {}
    fn exit(&self, _: &tracing_core::span::Id) {}
}

fn bench_tracing_visit() {
    tracing::subscriber::set_global_default(VisitEnabled).unwrap_or_else(|e| die(&e.to_string()));
    let (b, n) = shape();
    let s = measure(b, n, |i| tracing_event!(i));
    Sample::new("rust.enabled", "tracing-noop+visit-fields", s).emit();
}

/// A layer that visits event fields into nothing and keeps no span data.
struct NullLayer;

impl<S: tracing_core::Subscriber> tracing_subscriber::Layer<S> for NullLayer {
    fn on_event(&self, e: &tracing_core::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        e.record(&mut NullVisitor);
    }
}

/// `tracing_subscriber::Registry` with a layer that does nothing: what
/// being a `Layer` costs before the layer's own work (span slab,
/// per-span extensions, layer dispatch).
fn bench_tracing_registry() {
    use tracing_subscriber::layer::SubscriberExt;
    let sub = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(NullLayer);
    tracing::subscriber::set_global_default(sub).unwrap_or_else(|e| die(&e.to_string()));
    let (b, n) = shape();
    let s = measure(b, n, |i| tracing_event!(i));
    Sample::new("rust.enabled", "tracing-registry+null-layer", s).emit();
    let s = measure(b / 4, n, |i| {
        let span = tracing::info_span!(target: "bench", "work", a = i as i64);
        let g = span.enter();
        drop(g);
        drop(span);
    });
    Sample::new("rust.scope", "tracing-registry+null-layer", s).emit();
}

/// The scope workload: open, enter, exit, close a span with one field.
#[inline(always)]
fn scope_op(i: u64) {
    let span = tracing::info_span!(target: "bench", "work", a = i as i64);
    let g = span.enter();
    drop(g);
    drop(span);
}

/// `--as NAME`: the implementation name of the rows (a second run of the
/// same code under another name: the report's unpaired self-check).
fn bench_tracing_noop(args: &[String]) {
    tracing::subscriber::set_global_default(NoopEnabled).unwrap_or_else(|e| die(&e.to_string()));
    let imp = arg(args, "--as").unwrap_or_else(|| "tracing-noop".into());
    let (b, n) = shape();
    let s = measure(b, n, |i| tracing_event!(i));
    Sample::new("rust.enabled", &imp, s).emit();
    let s = measure_with(b / 4, n, scope_op, drain_every(500));
    Sample::new("rust.scope", &imp, s).emit();
}

/// Directives of every "disabled" workload: level `info`, and target
/// `bench::off` at `warn` (an `info!` there is disabled by target).
const DISABLED_DIRECTIVES: &str = "info,bench::off=warn";

/// An event disabled by its level.
#[inline(always)]
fn disabled_level(i: u64) {
    tracing::debug!(target: "bench", a = i as i64, b = 42u64, s = "short", "message text")
}

/// An event disabled by its target's directive.
#[inline(always)]
fn disabled_target(i: u64) {
    tracing::info!(target: "bench::off", a = i as i64, b = 42u64, s = "short", "message text")
}

fn disabled_workloads(imp: &str) {
    let (b, n) = shape();
    let s = measure(b, n, disabled_level);
    Sample::new("rust.disabled.level", imp, s).emit();
    let s = measure(b, n, disabled_target);
    Sample::new("rust.disabled.target", imp, s).emit();
}

fn tracing_disabled_init() {
    let filter = tracing_subscriber::EnvFilter::new(DISABLED_DIRECTIVES);
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::sink)
        .init();
}

fn bench_tracing_disabled() {
    tracing_disabled_init();
    disabled_workloads("tracing-fmt+EnvFilter");
}

fn tmpdir(args: &[String]) -> PathBuf {
    let d = arg(args, "--dir")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| die(&format!("{}: {e}", d.display())));
    d
}

/// tracing fmt (JSON) into `tracing-appender`'s non_blocking file writer.
fn tracing_fmt_init(
    args: &[String],
) -> (
    tracing_appender::non_blocking::WorkerGuard,
    tracing_appender::non_blocking::ErrorCounter,
) {
    let dir = tmpdir(args);
    let appender = tracing_appender::rolling::never(&dir, "tracing-fmt.log");
    let (nb, guard) = tracing_appender::non_blocking(appender);
    let errors = nb.error_counter();
    tracing_subscriber::fmt()
        .json()
        .with_writer(nb)
        .with_max_level(tracing::Level::INFO)
        .init();
    (guard, errors)
}

fn bench_tracing_fmt(args: &[String]) {
    let (guard, errors) = tracing_fmt_init(args);
    let (b, n) = shape();
    let s = measure(b, n, |i| tracing_event!(i));
    drop(guard);
    Sample::new("rust.enabled", "tracing-fmt-json+non_blocking", s)
        .with("dropped_lines", errors.dropped_lines() as u64)
        .emit();
}

fn bench_ftlog(args: &[String]) {
    let dir = tmpdir(args);
    let guard = ftlog::builder()
        .max_log_level(ftlog::LevelFilter::Info)
        .bounded(100_000, false)
        .root(ftlog::appender::FileAppender::new(dir.join("ftlog.log")))
        .try_init()
        .unwrap_or_else(|e| die(&e.to_string()));
    let (b, n) = shape();
    let s = measure(
        b,
        n,
        |i| log::info!(target: "bench", "message text a={} b={} s={}", i as i64, 42u64, "short"),
    );
    drop(guard);
    Sample::new("rust.enabled", "ftlog", s).emit();
}

/// `log` with the simplest useful file logger: format the line under a
/// mutex into a `BufWriter<File>`.
struct FileLogger(std::sync::Mutex<std::io::BufWriter<std::fs::File>>);

impl log::Log for FileLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let ts = realtime_ns();
        let mut w = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(w, "{ts} {} {} {}", r.level(), r.target(), r.args());
    }
    fn flush(&self) {
        let _ = self.0.lock().unwrap_or_else(|e| e.into_inner()).flush();
    }
}

fn bench_log_file(args: &[String]) {
    let dir = tmpdir(args);
    let f = std::fs::File::create(dir.join("log-file.log")).unwrap_or_else(|e| die(&e.to_string()));
    let logger: &'static FileLogger = Box::leak(Box::new(FileLogger(std::sync::Mutex::new(
        std::io::BufWriter::new(f),
    ))));
    log::set_logger(logger).unwrap_or_else(|e| die(&e.to_string()));
    log::set_max_level(log::LevelFilter::Info);
    let (b, n) = shape();
    let s = measure(
        b,
        n,
        |i| log::info!(target: "bench", "message text a={} b={} s={}", i as i64, 42u64, "short"),
    );
    log::logger().flush();
    Sample::new("rust.enabled", "log+file", s).emit();
}

struct NullReporter;
impl fastrace::collector::Reporter for NullReporter {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        std::hint::black_box(spans);
    }
}

/// A fastrace root per batch (made and dropped outside the timed region),
/// so the collected spans do not pile up.
#[derive(Default)]
struct FastraceRoot(Option<(fastrace::Span, fastrace::local::LocalParentGuard)>);

impl FastraceRoot {
    fn start() -> FastraceRoot {
        fastrace::set_reporter(NullReporter, fastrace::collector::Config::default());
        let mut r = FastraceRoot::default();
        r.fresh();
        r
    }

    fn fresh(&mut self) {
        self.0 = None;
        let r = fastrace::Span::root("root", fastrace::prelude::SpanContext::random());
        let g = r.set_local_parent();
        self.0 = Some((r, g));
    }

    fn finish(mut self) {
        self.0 = None;
        fastrace::flush();
    }
}

#[inline(always)]
fn fastrace_local(_: u64) {
    drop(std::hint::black_box(
        fastrace::local::LocalSpan::enter_with_local_parent("work"),
    ))
}

#[inline(always)]
fn fastrace_span(_: u64) {
    let sp = fastrace::Span::enter_with_local_parent("work");
    let g = sp.set_local_parent();
    drop(g);
    drop(std::hint::black_box(sp));
}

fn bench_fastrace() {
    let mut root = FastraceRoot::start();
    let (b, n) = shape();
    let s = measure_with(b / 4, n, fastrace_local, || root.fresh());
    Sample::new("rust.scope", "fastrace-LocalSpan", s).emit();
    let s = measure_with(b / 4, n, fastrace_span, || root.fresh());
    Sample::new("rust.scope", "fastrace-Span", s).emit();
    root.finish();
}

// ---------------------------------------------------------------- distlog

/// Counters of every ring this process has mapped (read straight from the
/// ring headers in our own mappings): (written, dropped, rings).
fn ring_counters() -> (u64, u64, usize) {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let (mut w, mut d, mut n) = (0, 0, 0);
    for l in maps.lines() {
        if !l.contains("memfd:") {
            continue;
        }
        let Some((range, _)) = l.split_once(' ') else {
            continue;
        };
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
            continue;
        };
        if b - a < distlog::ring::HEADER_BYTES
            || !l
                .split_whitespace()
                .nth(1)
                .is_some_and(|p| p.starts_with('r'))
        {
            continue;
        }
        // SAFETY: the range is a readable mapping of this process (from
        // /proc/self/maps) of at least a page; the distlog runtime never
        // unmaps its rings. Magic checked before the header is trusted.
        let hdr = unsafe { &*(a as *const distlog::ring::RingHeader) };
        if hdr.stat.magic != distlog::ring::RING_MAGIC {
            continue;
        }
        w += hdr.prod.written.load(Ordering::Relaxed);
        d += hdr.prod.dropped.load(Ordering::Relaxed);
        n += 1;
    }
    (w, d, n)
}

/// Start distlog (settings from the environment the caller set) and wait
/// until a sidecar has our rings when `need_sidecar`.
fn distlog_start(need_sidecar: bool) -> distlog::Guard {
    let g = distlog::init("bench").unwrap_or_else(|e| die(&format!("distlog::init: {e}")));
    if need_sidecar {
        let end = Instant::now() + Duration::from_secs(10);
        while !distlog::raw::connected() {
            if Instant::now() > end {
                die("no sidecar at DISTLOG_SOCKET (start `distlogd run --socket ...`)");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    g
}

/// Untimed, between batches: every 500 batches (50 000 records, ~3 MB)
/// wait until the sidecar has read everything, so a measurement "with
/// drain" never reaches the drop path even when the sidecar drains slower
/// than the loop writes.
fn drain_every(k: usize) -> impl FnMut() {
    let mut c = 0usize;
    move || {
        c += 1;
        if c.is_multiple_of(k) {
            distlog::flush(Duration::from_secs(10));
        }
    }
}

fn bench_distlog_enabled() {
    let _g = distlog_start(true);
    let (b, n) = shape();
    let s = measure_with(b, n, |i| tracing_event!(i), drain_every(500));
    let (w, d, _) = ring_counters();
    Sample::new("rust.enabled", "distlog", s)
        .with("written", w)
        .with("dropped", d)
        .emit();
    let s = measure_with(
        b,
        n,
        |i| log::info!(target: "bench", "message text a={} b={} s={}", i as i64, 42u64, "short"),
        drain_every(500),
    );
    let (w2, d2, _) = ring_counters();
    Sample::new("rust.enabled.log-crate", "distlog", s)
        .with("written", w2 - w)
        .with("dropped", d2 - d)
        .emit();
}

fn bench_distlog_drop() {
    // No sidecar and the smallest ring: after the first few dozen records
    // every call takes the drop path.
    std::env::set_var("DISTLOG_SOCKET", "/nonexistent/distlog-bench.sock");
    std::env::set_var("DISTLOG_RING_BYTES", "4k");
    let _g = distlog_start(false);
    for i in 0..1000u64 {
        tracing_event!(i);
    }
    let (b, n) = shape();
    let s = measure(b, n, |i| tracing_event!(i));
    let (w, d, _) = ring_counters();
    std::mem::forget(_g); // no flush wait: there is no sidecar
    Sample::new("rust.enabled.drop-path", "distlog", s)
        .with("written", w)
        .with("dropped", d)
        .emit();
}

fn bench_distlog_disabled() {
    std::env::set_var("DISTLOG_LOG", DISABLED_DIRECTIVES);
    let _g = distlog_start(false);
    disabled_workloads("distlog");
    std::mem::forget(_g);
}

fn bench_distlog_scope() {
    let _g = distlog_start(true);
    let (b, n) = shape();
    let s = measure_with(b / 4, n, scope_op, drain_every(500));
    let (w, d, _) = ring_counters();
    Sample::new("rust.scope", "distlog", s)
        .with("written", w)
        .with("dropped", d)
        .emit();
    let s = measure_with(
        b / 4,
        n,
        |_| {
            let span = tracing::info_span!(target: "bench", "work");
            let g = span.enter();
            drop(g);
            drop(span);
        },
        drain_every(500),
    );
    Sample::new("rust.scope.nofields", "distlog", s).emit();
}

/// One thread, then two threads at once, each writing bursts. Run twice:
/// with the sidecar paused (SIGSTOP: the client's own scaling, no third
/// thread competing for the two cores) and with it draining meanwhile.
fn bench_distlog_threads(args: &[String]) {
    std::env::set_var("DISTLOG_RING_BYTES", "64m");
    let sc = Sidecar::start(&distlogd_path(args), Out::DevNull, "threads");
    let _g = distlog_start(true);
    let (b, n) = shape();
    // A quarter of the usual batches: a thread's burst (~28 MB) fits its
    // 64 MiB ring with the sidecar paused: never the drop path (checked:
    // `dropped`).
    let b = b / 4;
    for paused in [true, false] {
        let tag = if paused {
            "sidecar-paused"
        } else {
            "sidecar-draining"
        };
        let pause = |on: bool| {
            if paused {
                sc.signal(if on { libc::SIGSTOP } else { libc::SIGCONT });
            }
        };
        let (_, d0, _) = ring_counters();
        pause(true);
        let one = measure(b, n, |i| tracing_event!(i));
        pause(false);
        distlog::flush(Duration::from_secs(30));
        let bar = Arc::new(Barrier::new(3));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let bar = bar.clone();
                std::thread::spawn(move || {
                    tracing_event!(0u64); // claim the ring outside the timing
                    bar.wait();
                    bar.wait();
                    measure(b, n, |i| tracing_event!(i))
                })
            })
            .collect();
        bar.wait(); // both threads have their rings (handed over)
        std::thread::sleep(Duration::from_millis(200));
        distlog::flush(Duration::from_secs(5));
        pause(true);
        bar.wait();
        let two: Vec<Stats> = hs
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect();
        pause(false);
        distlog::flush(Duration::from_secs(30));
        let (w, d, _) = ring_counters();
        Sample::new(&format!("rust.threads.1.{tag}"), "distlog", one).emit();
        let p50 = (two[0].p50 + two[1].p50) / 2.0;
        let p99 = (two[0].p99 + two[1].p99) / 2.0;
        let st = Stats {
            p50,
            p99,
            p999: two[0].p999.max(two[1].p999),
            mean: (two[0].mean + two[1].mean) / 2.0,
            min: two[0].min.min(two[1].min),
            fast: (two[0].fast + two[1].fast) / 2.0,
            n: two[0].n + two[1].n,
        };
        Sample::new(&format!("rust.threads.2.{tag}"), "distlog", st)
            .with("t0_p50", two[0].p50)
            .with("t1_p50", two[1].p50)
            .with("written", w)
            .with("dropped", d - d0)
            .emit();
    }
    for paused in [true, false] {
        threads_paired(&sc, paused);
    }
    drop(_g);
    sc.stop();
}

/// The two-thread target paired: two threads, each pinned to its own CPU
/// (the speed mode is a vCPU's); a round is thread 0 alone, thread 1
/// alone, then both at once, each a few ms; a thread's ratio compares it
/// with itself on the same CPU moments before, the round's ratio is the
/// mean of the two threads'. The sidecar is paused (SIGSTOP) over a round
/// or draining; it reads everything between rounds (untimed).
fn threads_paired(sc: &Sidecar, paused: bool) {
    use std::sync::mpsc::channel;
    let cpus = distlog_benches::cpus();
    if cpus.len() < 2 {
        eprintln!("bench-runner: threads paired: needs two CPUs, skipped");
        return;
    }
    let (rounds, nb, bs) = if quick() { (4, 5, 32) } else { (30, 200, 100) };
    let (done_tx, done_rx) = channel::<(usize, f64)>();
    let workers: Vec<_> = (0..2)
        .map(|k| {
            let (tx, rx) = channel::<()>();
            let done = done_tx.clone();
            let cpu = cpus[k];
            let h = std::thread::spawn(move || {
                distlog_benches::pin(0, cpu);
                tracing_event!(0u64); // claim the ring outside the timing
                let mut r = Rounds::default();
                while rx.recv().is_ok() {
                    let v = r.run(nb, bs, |i| tracing_event!(i), || {});
                    if done.send((k, v)).is_err() {
                        break;
                    }
                }
            });
            (tx, h)
        })
        .collect();
    // Run a round on the workers `ks` at once: their p50s by worker.
    let go = |ks: &[usize]| -> [f64; 2] {
        for &k in ks {
            let _ = workers[k].0.send(());
        }
        let mut v = [f64::NAN; 2];
        for _ in ks {
            if let Ok((k, x)) = done_rx.recv() {
                v[k] = x;
            }
        }
        v
    };
    let pause = |on: bool| {
        if paused {
            sc.signal(if on { libc::SIGSTOP } else { libc::SIGCONT });
        }
    };
    let (_, d0, _) = ring_counters();
    let (mut ratio, mut one, mut two) = (vec![], vec![], vec![]);
    // One more round than counted: the first warms up.
    for _ in 0..=rounds {
        pause(true);
        let (a0, a1) = (go(&[0])[0], go(&[1])[1]);
        let b = go(&[0, 1]);
        pause(false);
        distlog::flush(Duration::from_secs(30));
        one.push((a0 + a1) / 2.0);
        two.push((b[0] + b[1]) / 2.0);
        ratio.push((b[0] / a0 + b[1] / a1) / 2.0);
    }
    for (tx, h) in workers {
        drop(tx);
        let _ = h.join();
    }
    let (_, d, _) = ring_counters();
    let tag = if paused { "paused" } else { "draining" };
    distlog_benches::pair_sample(
        &format!("threads-{tag}"),
        ratio.split_off(1),
        two.split_off(1),
        one.split_off(1),
    )
    .with("num_ops_per_round", (nb * bs) as u64)
    .with("den_ops_per_round", (nb * bs) as u64)
    .with("dropped", d - d0)
    .emit();
}

// ---------------------------------------------------------------- paired

/// `bench-runner serve KIND`: one workload's process, set up as for its
/// row, serving rounds to `bench-runner pair` (`benches/src/bin/pair`).
/// After a round, untimed, its background consumer catches up (the
/// sidecar reads everything; fastrace's collector runs; tracing-appender's
/// writer gets as long as the round took), so it does not compete with the
/// other side's round.
fn serve_workload(args: &[String]) {
    let kind = args.get(1).map(String::as_str).unwrap_or("");
    let mut r = Rounds::default();
    let nothing = || {};
    let flushed = |v: f64| {
        distlog::flush(Duration::from_secs(10));
        v
    };
    match kind {
        "tracing-noop" => {
            tracing::subscriber::set_global_default(NoopEnabled)
                .unwrap_or_else(|e| die(&e.to_string()));
            serve(|op, nb, bs| match op {
                "event" => Some(r.run(nb, bs, |i| tracing_event!(i), nothing)),
                "scope" => Some(r.run(nb, bs, scope_op, nothing)),
                _ => None,
            });
        }
        "tracing-fmt" => {
            let (guard, _) = tracing_fmt_init(args);
            serve(|op, nb, bs| {
                let t0 = Instant::now();
                let v = (op == "event").then(|| r.run(nb, bs, |i| tracing_event!(i), nothing));
                std::thread::sleep(t0.elapsed());
                v
            });
            drop(guard);
        }
        "tracing-disabled" | "distlog-disabled" => {
            let _g = if kind == "tracing-disabled" {
                tracing_disabled_init();
                None
            } else {
                std::env::set_var("DISTLOG_LOG", DISABLED_DIRECTIVES);
                Some(distlog_start(false))
            };
            serve(|op, nb, bs| match op {
                "level" => Some(r.run(nb, bs, disabled_level, nothing)),
                "target" => Some(r.run(nb, bs, disabled_target, nothing)),
                _ => None,
            });
        }
        "distlog-enabled" => {
            let _g = distlog_start(true);
            serve(|op, nb, bs| match op {
                "event" => Some(flushed(r.run(nb, bs, |i| tracing_event!(i), nothing))),
                "scope" => Some(flushed(r.run(nb, bs, scope_op, nothing))),
                _ => None,
            });
        }
        "fastrace" => {
            let mut root = FastraceRoot::start();
            serve(|op, nb, bs| {
                let v = match op {
                    "LocalSpan" => Some(r.run(nb, bs, fastrace_local, || root.fresh())),
                    "Span" => Some(r.run(nb, bs, fastrace_span, || root.fresh())),
                    _ => None,
                };
                root.fresh();
                fastrace::flush();
                v
            });
            root.finish();
        }
        "overload" => {
            let (sc, g) = overload_start(args);
            serve(|op, nb, bs| {
                (op == "event").then(|| flushed(r.run(nb, bs, overload_op, nothing)))
            });
            drop(g);
            sc.stop();
        }
        other => die(&format!("serve: unknown workload {other:?}")),
    }
}

// ---------------------------------------------------------------- sidecar

/// Where a sidecar's stdout goes.
#[derive(Clone, Copy, PartialEq)]
enum Out {
    /// No `--stdout`: no sink at all (records are drained, decoded,
    /// turned into records and routed to nothing).
    None,
    /// `--stdout` into /dev/null: JSON formatting and write(2) included.
    DevNull,
    /// `--stdout` into a pipe we read.
    Piped,
    /// `--stdout` into a file (read after the run: no reader competes for
    /// the two cores while the client is measured).
    File(&'static str),
}

/// The sidecar configuration of every benchmark: one route that matches no
/// service, so the default route (everything into the disk store) is off.
/// With `--stdout` records still go to stdout.
pub const NO_STORE_TOML: &str =
    "[[route]]\nsink = \"stdout\"\nservice = [\"distlog-bench-no-such-service\"]\n";

struct Sidecar {
    child: Child,
    socket: PathBuf,
}

impl Sidecar {
    fn start(distlogd: &str, out: Out, tag: &str) -> Sidecar {
        Sidecar::start_with(distlogd, out, tag, NO_STORE_TOML)
    }

    /// A sidecar with `config` as its configuration file.
    fn start_with(distlogd: &str, out: Out, tag: &str, config: &str) -> Sidecar {
        let dir = std::env::temp_dir().join(format!("distlog-bench-{}-{tag}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let socket = dir.join("d.sock");
        let _ = std::fs::remove_file(&socket);
        let mut c = Command::new(distlogd);
        c.args(["run", "--socket"])
            .arg(&socket)
            .env_remove("DISTLOG_SOCKET");
        // A private data dir; with NO_STORE_TOML, no disk store (a route
        // that selects nothing), so the only sink is `--stdout` when given
        // (else records are drained, decoded, routed and dropped).
        let cfg = dir.join("bench.toml");
        let _ = std::fs::write(&cfg, config);
        c.arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--config")
            .arg(&cfg);
        c.env_remove("DISTLOG_DATA_DIR")
            .env_remove("DISTLOG_CONFIG");
        match out {
            Out::None => {
                c.stdout(Stdio::null());
            }
            Out::DevNull => {
                c.arg("--stdout").stdout(Stdio::null());
            }
            Out::Piped => {
                c.arg("--stdout").stdout(Stdio::piped());
            }
            Out::File(name) => {
                let f =
                    std::fs::File::create(dir.join(name)).unwrap_or_else(|e| die(&e.to_string()));
                c.arg("--stdout").stdout(f);
            }
        }
        let child = c
            .spawn()
            .unwrap_or_else(|e| die(&format!("{distlogd}: {e}")));
        let end = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if Instant::now() > end {
                die("sidecar did not create its socket");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::env::set_var("DISTLOG_SOCKET", &socket);
        Sidecar { child, socket }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill has no memory preconditions; the pid is our child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// SIGTERM, then wait (the sidecar drains before it exits).
    fn stop(mut self) {
        self.signal(libc::SIGCONT);
        self.signal(libc::SIGTERM);
        let _ = self.child.wait();
        if let Some(d) = self.socket.parent() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn distlogd_path(args: &[String]) -> String {
    arg(args, "--distlogd").unwrap_or_else(|| "target/release/distlogd".into())
}

/// utime + stime of a process in seconds.
fn cpu_secs(pid: i32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(rest) = s.rsplit_once(')').map(|x| x.1) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (t(11) + t(12)) / hz
}

/// Fields of /proc/PID/status in kB.
fn status_kb(pid: i32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Sidecar drain rate: fill big rings while the sidecar is stopped, let it
/// go, time until every record is read; `--samples` times (the same
/// sidecar, rings and threads), the row the median with min and max. One
/// sample depended on the vCPU the drain thread ran on (7.75–9.18 M/s
/// over three full runs of one binary).
fn bench_drain(args: &[String]) {
    // `--out store`: the default routing, everything into the disk store
    // (the sidecar's data dir under the temp dir, on disk here): the
    // store's sustained ingest from real rings, ring positions released
    // only once stored.
    let to_store = arg(args, "--out").as_deref() == Some("store");
    let out = match arg(args, "--out").as_deref() {
        Some("devnull") => Out::DevNull,
        _ => Out::None,
    };
    let threads: usize = arg_or(args, "--threads", 4);
    let per: u64 = arg_or(args, "--records", if quick() { 10_000 } else { 750_000 });
    // A no-sink sample takes ~0.7 s, a JSON one ~3 s, a store one ~4 s:
    // fewer of the slow ones keep `scripts/bench` about as long as it was.
    let samples: usize = arg_or(
        args,
        "--samples",
        match (to_store, out) {
            (true, _) => 1,
            (false, Out::None) => 5,
            _ => 3,
        },
    )
    .max(1);
    // The largest ring: 750 k compact events of ~80 bytes (`--records`'
    // default) fill it without a drop (a drop is counted, not drained).
    std::env::set_var("DISTLOG_RING_BYTES", "64m");
    let sc = if to_store {
        Sidecar::start_with(&distlogd_path(args), out, "drain-store", "")
    } else {
        Sidecar::start(&distlogd_path(args), out, "drain")
    };
    let _g = distlog_start(true);
    let go = Arc::new(Barrier::new(threads + 1));
    let done = Arc::new(Barrier::new(threads + 1));
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let (go, done) = (go.clone(), done.clone());
            std::thread::spawn(move || {
                tracing_event!(0u64);
                for _ in 0..samples {
                    go.wait();
                    for i in 0..per {
                        tracing_event!(i);
                    }
                    done.wait();
                }
            })
        })
        .collect();
    // Every ring is claimed and handed over; let the sidecar attach them.
    std::thread::sleep(Duration::from_millis(300));
    // `--perf FILE`: profile the sidecar while it drains (perf record,
    // cpu-clock, call graphs; stopped while the rings fill, so the
    // profile is the drains').
    let mut perf = None;
    let (mut rates, mut wall, mut cpu, mut ok) = (Vec::new(), 0.0, 0.0, true);
    let mut n = 0u64;
    for _ in 0..samples {
        distlog::flush(Duration::from_secs(5));
        sc.signal(libc::SIGSTOP);
        // The rate counts the records the fill put into the rings, not its
        // attempts: a full ring's drops are no work for the drain.
        let (written0, _, _) = ring_counters();
        go.wait();
        done.wait();
        let filled = ring_counters().0 - written0;
        if perf.is_none() {
            perf = arg(args, "--perf").map(|f| perf_record(&f, sc.pid()));
        }
        let cpu0 = cpu_secs(sc.pid());
        let t0 = Instant::now();
        sc.signal(libc::SIGCONT);
        ok &= distlog::flush(Duration::from_secs(120));
        let w = t0.elapsed().as_secs_f64();
        wall += w;
        cpu += cpu_secs(sc.pid()) - cpu0;
        rates.push(filled as f64 / w);
        n += filled;
    }
    for h in hs {
        let _ = h.join();
    }
    if let Some(mut c) = perf {
        // SAFETY: kill has no memory preconditions; the pid is our child.
        unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
        let _ = c.wait();
    }
    let (_, dropped, rings) = ring_counters();
    let name = match (to_store, out == Out::None) {
        (true, _) => "sidecar.drain.store",
        (false, true) => "sidecar.drain.nosink",
        (false, false) => "sidecar.drain.stdout-json",
    };
    let in_order = rates.clone();
    let stats = Stats::of(&mut rates);
    let max = rates.last().copied().unwrap_or(0.0);
    Sample::new(name, "distlogd", stats)
        .unit("records/s")
        .with("records", n)
        .with("samples", samples as u64)
        .with("max", max)
        .with("sample_rates", in_order)
        .with("wall_s", wall)
        .with("sidecar_cpu_s", cpu)
        .with(
            "records_per_cpu_s",
            if cpu > 0.0 { n as f64 / cpu } else { 0.0 },
        )
        .with("rings", rings as u64)
        .with("dropped", dropped)
        .with("complete", ok)
        .emit();
    drop(_g);
    sc.stop();
}

/// `perf record` (cpu-clock, call graphs) of process `pid` into `file`,
/// running once it returns.
fn perf_record(file: &str, pid: i32) -> Child {
    let c = Command::new("perf")
        .args([
            "record",
            "-e",
            "cpu-clock",
            "-g",
            "-o",
            file,
            "-p",
            &pid.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| die(&format!("perf: {e}")));
    std::thread::sleep(Duration::from_millis(500));
    c
}

/// Reads a sidecar's JSON lines: end-to-end latencies of records that
/// carry `sent_ns`, events counted, losses summed.
#[derive(Default)]
struct Tally {
    lat_us: Vec<f64>,
    /// Arrival times (realtime ns), for `BENCH_DUMP`.
    arrived_ns: Vec<u64>,
    events: u64,
    lost: u64,
}

fn find_u64(line: &str, key: &str) -> Option<u64> {
    let i = line.find(key)? + key.len();
    let digits: String = line[i..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

fn read_sidecar(child: &mut Child) -> std::thread::JoinHandle<Tally> {
    let out = child
        .stdout
        .take()
        .unwrap_or_else(|| die("sidecar stdout not piped"));
    std::thread::spawn(move || {
        let mut t = Tally::default();
        let mut r = BufReader::with_capacity(1 << 20, out);
        let mut line = String::new();
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            if let Some(sent) = find_u64(&line, "\"sent_ns\":") {
                let now = realtime_ns();
                t.lat_us.push(now.saturating_sub(sent) as f64 / 1e3);
                t.arrived_ns.push(now);
                t.events += 1;
            } else if line.contains("\"kind\":\"loss\"") {
                t.lost += find_u64(&line, "\"lost\":").unwrap_or(0);
            }
            line.clear();
        }
        t
    })
}

/// Call `each(seq)` `rate` times a second for `secs` seconds, checking
/// the clock every `nap`; returns how many calls.
fn paced(rate: u64, secs: f64, nap: Duration, mut each: impl FnMut(u64)) -> u64 {
    let total = (rate as f64 * secs) as u64;
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due.min(total) {
            each(sent);
            sent += 1;
        }
        std::thread::sleep(nap);
    }
    sent
}

/// Log `rate` events a second for `secs` seconds, each with its realtime
/// clock in `sent_ns`; returns how many.
fn send_timed(rate: u64, secs: f64) -> u64 {
    paced(rate, secs, Duration::from_micros(50), |seq| {
        tracing::info!(target: "bench", sent_ns = realtime_ns(), seq, "timed");
    })
}

/// End-to-end latency at a fixed rate: the client stamps realtime ns into
/// a field, we read the sidecar's stdout and subtract.
fn bench_e2e(args: &[String]) {
    let rate: u64 = arg_or(args, "--rate", 10_000);
    let secs: f64 = arg_or(args, "--secs", if quick() { 0.2 } else { 3.0 });
    std::env::set_var("DISTLOG_RING_BYTES", "4m");
    let mut sc = Sidecar::start(&distlogd_path(args), Out::Piped, "e2e");
    let reader = read_sidecar(&mut sc.child);
    let g = distlog_start(true);
    // Warm-up (call site registered, sidecar awake), not measured.
    for i in 0..100u64 {
        tracing::info!(target: "bench", seq = i, "e2e warm-up");
        std::thread::sleep(Duration::from_millis(1));
    }
    let sent = send_timed(rate, secs);
    distlog::flush(Duration::from_secs(10));
    drop(g);
    sc.signal(libc::SIGTERM);
    let _ = sc.child.wait();
    let mut t = reader.join().unwrap_or_default();
    if let Some(p) = std::env::var_os("BENCH_DUMP") {
        // Latency and arrival (µs since the first), in arrival order: a
        // stall shows as a run of records arriving together.
        let t0 = t.arrived_ns.first().copied().unwrap_or(0);
        let text: String = t
            .lat_us
            .iter()
            .zip(&t.arrived_ns)
            .map(|(v, a)| format!("{v:.1} {:.1}\n", a.saturating_sub(t0) as f64 / 1e3))
            .collect();
        let _ = std::fs::write(p, text);
    }
    let s = Stats::of(&mut t.lat_us);
    Sample::new(&format!("e2e.{}k", rate / 1000), "distlog", s)
        .unit("us")
        .with("sent", sent)
        .with("received", t.events)
        .with("lost", t.lost)
        .emit();
    if let Some(d) = sc.socket.parent() {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// The store on its own: `distlogd bench-store` (the sidecar's store writer
/// and reader, no sidecar process) writes `--records` records in batches of
/// 4096 into a scratch directory under `--dir` (give one on the real disk:
/// the system temp dir may be tmpfs; the file system type is in the notes),
/// then times 20 trace lookups among them.
fn bench_store(args: &[String]) {
    let records: u64 = arg_or(args, "--records", if quick() { 20_000 } else { 10_000_000 });
    let base = arg(args, "--dir")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("distlog-bench-store-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&base);
    let fs = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(&base)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let out = Command::new(distlogd_path(args))
        .args(["bench-store", "--json", "--queries", "20", "--records"])
        .arg(records.to_string())
        .arg("--dir")
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| die(&format!("distlogd bench-store: {e}")));
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = text
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            die(&format!(
                "distlogd bench-store: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        });
    let num = |k: &str| v[k].as_f64().unwrap_or(0.0);
    let one = Stats::one;
    Sample::new("store.ingest", "distlogd", one(num("records_per_s")))
        .unit("records/s")
        .with("records", v["records"].clone())
        .with("bytes_per_record", num("bytes_per_record"))
        .with("fs", fs)
        .emit();
    Sample::new(
        "store.trace-lookup",
        "distlogd",
        one(num("trace_median_ms")),
    )
    .unit("ms")
    .with("lookups", v["trace_lookups"].clone())
    .with("max_ms", num("trace_max_ms"))
    .with("among", v["records"].clone())
    .emit();
}

/// `tail -f` latency: a sidecar storing everything, `distlogd tail -f -n 0
/// -o json` following it through the control socket, a client writing at a
/// fixed rate with its realtime clock in a field; latency = the line read
/// from tail's stdout minus that stamp.
fn bench_tail_follow(args: &[String]) {
    let rate: u64 = arg_or(args, "--rate", 1000);
    let secs: f64 = arg_or(args, "--secs", if quick() { 0.2 } else { 3.0 });
    let distlogd = distlogd_path(args);
    std::env::set_var("DISTLOG_RING_BYTES", "4m");
    let sc = Sidecar::start_with(
        &distlogd,
        Out::None,
        "tail",
        "[[route]]\nsink = \"store\"\n",
    );
    let Some(dir) = sc.socket.parent().map(PathBuf::from) else {
        die("sidecar socket has no directory")
    };
    let mut tail = Command::new(&distlogd)
        .args(["tail", "-f", "-n", "0", "-o", "json", "--data-dir"])
        .arg(dir.join("data"))
        .arg("--socket")
        .arg(&sc.socket)
        .env_remove("DISTLOG_CTL_SOCKET")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| die(&format!("{distlogd} tail: {e}")));
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let out = tail
            .stdout
            .take()
            .unwrap_or_else(|| die("tail stdout not piped"));
        let ready = ready.clone();
        std::thread::spawn(move || {
            let mut lat_us = Vec::new();
            let mut r = BufReader::new(out);
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(sent) = find_u64(&line, "\"sent_ns\":") {
                    lat_us.push(realtime_ns().saturating_sub(sent) as f64 / 1e3);
                } else {
                    // Release: the writer's Acquire load sees the subscription
                    // live before it starts the timed records.
                    ready.store(true, Ordering::Release);
                }
                line.clear();
            }
            lat_us
        })
    };
    let g = distlog_start(true);
    // Until tail prints a warm-up record: subscribed, call site registered.
    let end = Instant::now() + Duration::from_secs(10);
    while !ready.load(Ordering::Acquire) {
        if Instant::now() > end {
            die("tail -f printed nothing within 10 s");
        }
        tracing::info!(target: "bench", "tail warm-up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = send_timed(rate, secs);
    distlog::flush(Duration::from_secs(10));
    // Everything printed: tail has nothing more to show once the sidecar
    // stored (and published) what the client flushed.
    std::thread::sleep(Duration::from_millis(500));
    drop(g);
    let _ = tail.kill();
    let _ = tail.wait();
    let mut lat = reader.join().unwrap_or_default();
    let received = lat.len();
    sc.stop();
    Sample::new(
        &format!("tail-f.{}k", rate / 1000),
        "distlogd",
        Stats::of(&mut lat),
    )
    .unit("us")
    .with("sent", sent)
    .with("received", received as u64)
    .emit();
}

/// Overload: a default (256 KiB) ring, a sidecar that formats JSON into a
/// file, and a client writing as fast as it can. The client's cost must
/// stay the enabled cost; every record is either delivered or counted lost.
fn overload_start(args: &[String]) -> (Sidecar, distlog::Guard) {
    std::env::remove_var("DISTLOG_RING_BYTES");
    let sc = Sidecar::start(&distlogd_path(args), Out::File("out.jsonl"), "overload");
    (sc, distlog_start(true))
}

/// The overload event: the enabled event under another message (the
/// sidecar's output is counted by it).
#[inline(always)]
fn overload_op(i: u64) {
    tracing::info!(target: "bench", a = i as i64, b = 42u64, s = "short", "overload")
}

fn bench_overload(args: &[String]) {
    let (mut sc, g) = overload_start(args);
    let (b, n) = shape();
    let s = measure(b, n, overload_op);
    // measure() ran b/10+1 warm-up batches too.
    let written = ((b + b / 10 + 1) * n) as u64;
    distlog::flush(Duration::from_secs(30));
    let (w, d, _) = ring_counters();
    drop(g);
    // Give the sidecar a moment to turn the final dropped counter into a
    // loss record, then stop it (it drains before it exits).
    std::thread::sleep(Duration::from_millis(200));
    sc.signal(libc::SIGTERM);
    let _ = sc.child.wait();
    let out = sc.socket.with_file_name("out.jsonl");
    let f = std::fs::File::open(&out).unwrap_or_else(|e| die(&format!("{}: {e}", out.display())));
    let (mut events, mut lost) = (0u64, 0u64);
    for line in BufReader::new(f).lines().map_while(Result::ok) {
        if line.contains("\"overload\"") {
            events += 1;
        } else if line.contains("\"kind\":\"loss\"") {
            lost += find_u64(&line, "\"lost\":").unwrap_or(0);
        }
    }
    Sample::new("rust.overload", "distlog", s)
        .with("attempted", written)
        .with("ring_written", w)
        .with("ring_dropped", d)
        .with("delivered", events)
        .with("reported_lost", lost)
        .with("accounted", events + lost == written)
        .emit();
    if let Some(d) = sc.socket.parent() {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A client for the memory workload: log at `--rate` for `--secs`.
fn load_client(args: &[String]) {
    let rate: u64 = arg_or(args, "--rate", 1000);
    let secs: f64 = arg_or(args, "--secs", 3.0);
    let g = distlog_start(true);
    paced(rate, secs, Duration::from_millis(1), |seq| {
        tracing_event!(seq)
    });
    drop(g);
}

fn smaps_memfd() -> Vec<(u64, u64)> {
    // (size kB, rss kB) of every memfd mapping
    let s = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let mut v = Vec::new();
    let mut cur: Option<(u64, u64)> = None;
    let mut in_memfd = false;
    for l in s.lines() {
        let head = l.split_whitespace().next().unwrap_or("");
        if head.contains('-') && !head.ends_with(':') {
            if let (true, Some(c)) = (in_memfd, cur.take()) {
                v.push(c);
            }
            in_memfd = l.contains("memfd:");
            cur = Some((0, 0));
        } else if let Some(c) = cur.as_mut() {
            let kb = || {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(0)
            };
            if l.starts_with("Size:") {
                c.0 = kb();
            } else if l.starts_with("Rss:") {
                c.1 = kb();
            }
        }
    }
    if let (true, Some(c)) = (in_memfd, cur) {
        v.push(c);
    }
    v
}

fn bench_memory(args: &[String]) {
    let clients: usize = arg_or(args, "--clients", if quick() { 4 } else { 64 });
    let rate: u64 = arg_or(args, "--rate", 1000);
    let secs: f64 = arg_or(args, "--secs", if quick() { 1.0 } else { 4.0 });
    let distlogd = distlogd_path(args);
    std::env::remove_var("DISTLOG_RING_BYTES");
    let sc = Sidecar::start(&distlogd, Out::DevNull, "mem");
    std::thread::sleep(Duration::from_millis(500));
    let pid = sc.pid();
    let snap = |tag: &str| {
        Sample::new(
            &format!("memory.sidecar.{tag}"),
            "distlogd",
            Stats::default(),
        )
        .unit("kB")
        .with("VmRSS", status_kb(pid, "VmRSS:"))
        .with("RssAnon", status_kb(pid, "RssAnon:"))
        .with("RssFile", status_kb(pid, "RssFile:"))
        .with("RssShmem", status_kb(pid, "RssShmem:"))
    };
    snap("idle").emit();
    // The client side, in this process: 4 threads with a ring each.
    let g = distlog_start(true);
    let before = smaps_memfd();
    let bar = Arc::new(Barrier::new(5));
    let hs: Vec<_> = (0..4)
        .map(|_| {
            let bar = bar.clone();
            std::thread::spawn(move || {
                tracing_event!(1u64);
                bar.wait();
                bar.wait();
            })
        })
        .collect();
    bar.wait();
    let after = smaps_memfd();
    bar.wait();
    for h in hs {
        let _ = h.join();
    }
    let ring_kb: Vec<u64> = after.iter().map(|m| m.0).skip(before.len()).collect();
    let per_ring = ring_kb.first().copied().unwrap_or(0);
    Sample::new("memory.client.ring", "distlog", Stats::default())
        .unit("kB")
        .with("ring_mapping_kB", per_ring)
        .with("new_rings", ring_kb.len() as u64)
        .with("segments_before_threads", serde_json::json!(before))
        .emit();
    distlog::flush(Duration::from_secs(5));
    drop(g);
    // 64 clients at load.
    let me = std::env::current_exe().unwrap_or_else(|e| die(&e.to_string()));
    let mut kids: Vec<Child> = (0..clients)
        .map(|_| {
            Command::new(&me)
                .args([
                    "load-client",
                    "--rate",
                    &rate.to_string(),
                    "--secs",
                    &secs.to_string(),
                ])
                .stdout(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| die(&e.to_string()))
        })
        .collect();
    let t0 = Instant::now();
    let mut peak = snap("load");
    let mut peak_rss = 0;
    while t0.elapsed().as_secs_f64() < secs {
        std::thread::sleep(Duration::from_millis(250));
        let rss = status_kb(pid, "VmRSS:");
        if rss > peak_rss {
            peak_rss = rss;
            peak = snap("load");
        }
    }
    let cpu0 = cpu_secs(pid);
    for k in kids.iter_mut() {
        let _ = k.wait();
    }
    let _ = cpu0;
    peak.with("clients", clients as u64)
        .with("rate_per_client", rate)
        .emit();
    std::thread::sleep(Duration::from_millis(500));
    snap("after").emit();
    sc.stop();
}

/// The client for `count`: `-connected` rows use the sidecar at
/// DISTLOG_SOCKET, which negotiates the compact layout (events, scope
/// heads); without one, records are postcard.
fn count_start(connected: bool) -> distlog::Guard {
    std::env::set_var("DISTLOG_RING_BYTES", "64m");
    if !connected {
        std::env::set_var("DISTLOG_SOCKET", "/nonexistent/distlog-bench.sock");
    }
    let g = distlog_start(connected);
    if connected {
        // `connected` is set just before the layout flag: let the
        // connection thread finish its hello (under valgrind the threads
        // take turns).
        std::thread::sleep(Duration::from_millis(300));
    }
    g
}

/// `count --what enabled --n N`: run N operations in a loop (for callgrind
/// instruction counts: run twice with different N and subtract).
fn count_ops(args: &[String]) {
    let what = arg(args, "--what").unwrap_or_default();
    let n: u64 = arg_or(args, "--n", 1000);
    match what.as_str() {
        "distlog" | "distlog-connected" => {
            let g = count_start(what.ends_with("-connected"));
            tracing_event!(0u64);
            for i in 0..n {
                tracing_event!(std::hint::black_box(i));
            }
            std::mem::forget(g);
        }
        "distlog-log" => {
            let g = count_start(false);
            for i in 0..n + 1 {
                let i = std::hint::black_box(i) as i64;
                log::info!(target: "bench", "message text a={} b={} s={}", i, 42u64, "short");
            }
            std::mem::forget(g);
        }
        "distlog-scope" | "distlog-scope-connected" => {
            let g = count_start(what.ends_with("-connected"));
            for i in 0..n + 1 {
                let span = tracing::info_span!(target: "bench", "work", a = std::hint::black_box(i) as i64);
                let e = span.enter();
                drop(e);
                drop(span);
            }
            std::mem::forget(g);
        }
        "tracing-noop" => {
            tracing::subscriber::set_global_default(NoopEnabled)
                .unwrap_or_else(|e| die(&e.to_string()));
            for i in 0..n + 1 {
                tracing_event!(std::hint::black_box(i));
            }
        }
        "floor" => {
            for i in 0..n + 1 {
                floor::op(std::hint::black_box(i), 42, 7);
            }
        }
        _ => die(
            "count --what distlog|distlog-connected|distlog-log|distlog-scope[-connected]|tracing-noop|floor --n N",
        ),
    }
}

/// The encoding step alone: `postcard` through serde (what the client used
/// first) against the client's hand-written encoder (same bytes, checked by
/// `client/src/wire.rs`'s `same_bytes_as_postcard`).
fn bench_encode() {
    use distlog::wire::{Encoder, Field, Head, Value};
    fn event(ts: u64) -> Head {
        Head::Event {
            callsite: 3,
            ts,
            tid: 12345,
            scope: 0,
            trace: None,
        }
    }
    fn fields(a: i64) -> [Field<'static>; 4] {
        [
            Field::Idx(0, Value::Str("message text")),
            Field::Idx(1, Value::I64(a)),
            Field::Idx(2, Value::U64(42)),
            Field::Idx(3, Value::Str("short")),
        ]
    }
    let (b, n) = shape();
    let mut buf = [0u8; 256];
    let s = measure(b, n, |i| {
        let mut len = postcard::to_slice(&event(i << 20), &mut buf[..]).map_or(0, |s| s.len());
        for f in fields(i as i64) {
            len += postcard::to_slice(&f, &mut buf[len..]).map_or(0, |s| s.len());
        }
        std::hint::black_box(len);
    });
    Sample::new("encode.event", "postcard (serde)", s).emit();
    let s = measure(b, n, |i| {
        let mut e = Encoder::new(&mut buf, &event(i << 20));
        for f in fields(i as i64) {
            e.field(&f);
        }
        std::hint::black_box(e.finish().map_or(0, |b| b.len()));
    });
    Sample::new("encode.event", "distlog Encoder (hand-written)", s).emit();
}

//! `bench-runner report --in results.jsonl --meta meta.txt --out RESULTS.md`:
//! the results of one run as tables of medians, p99s and ratios, and the
//! targets of issues 7 and 8 with whether each holds: by the paired ratio
//! (`bench-runner pair`) where the target has one, else by the rows.

use std::fmt::Write as _;

use serde_json::Value;

struct Results(Vec<Value>);

impl Results {
    fn get(&self, workload: &str, imp: &str) -> Option<&Value> {
        self.0
            .iter()
            .rev()
            .find(|v| v["workload"] == workload && v["impl"] == imp)
    }
    fn p50(&self, workload: &str, imp: &str) -> Option<f64> {
        self.get(workload, imp).and_then(|v| v["p50"].as_f64())
    }
    fn p99(&self, workload: &str, imp: &str) -> Option<f64> {
        self.get(workload, imp).and_then(|v| v["p99"].as_f64())
    }
}

fn f(v: Option<f64>) -> String {
    match v {
        Some(x) if x >= 1e6 => format!("{:.2} M", x / 1e6),
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) if x >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
        None => "–".into(),
    }
}

/// What a target's ratio must be.
#[derive(Clone, Copy)]
enum Bound {
    AtMost(f64),
    AtLeast(f64),
    /// Within this fraction of 1 (the self-check).
    Near(f64),
}

impl Bound {
    fn holds(self, q: f64) -> bool {
        match self {
            Bound::AtMost(b) => q <= b,
            Bound::AtLeast(b) => q >= b,
            Bound::Near(e) => (q - 1.0).abs() <= e,
        }
    }

    /// The verdict on a paired measurement: by its median, and
    /// "unsettled" when its round ratios' IQR lies on both sides of the
    /// bound (a bimodal pair: its median is a coin toss between modes).
    fn verdict(self, median: f64, q1: f64, q3: f64) -> &'static str {
        let h = self.holds(median);
        // Near: both quartiles inside, else settled only if both outside on one side.
        let settled = match self {
            Bound::Near(_) => {
                self.holds(q1) == h && self.holds(q3) == h && (h || q1 > 1.0 || q3 < 1.0)
            }
            _ => self.holds(q1) == h && self.holds(q3) == h,
        };
        match (h, settled) {
            (true, true) => "yes",
            (false, true) => "**no**",
            (true, false) => "yes, unsettled (IQR across the bound)",
            (false, false) => "**no**, unsettled (IQR across the bound)",
        }
    }
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::AtMost(b) => write!(f, "≤ {b}"),
            Bound::AtLeast(b) => write!(f, "≥ {b}"),
            Bound::Near(e) => write!(f, "1 ± {e}"),
        }
    }
}

/// One target: `num / den` compared with `bound`.
struct Target {
    what: &'static str,
    num: Option<f64>,
    den: Option<f64>,
    bound: Bound,
    /// Id of its paired measurement (`bench-runner pair --pair ID=...`).
    pair: Option<&'static str>,
    pending: Option<&'static str>,
}

/// A paired measurement's line.
fn paired<'a>(r: &'a Results, id: &str) -> Option<&'a Value> {
    r.get("pair", id)
}

/// "cpu0 1.19, cpu1 0.44": a pair's median round ratio on each CPU.
fn by_cpu(v: &Value) -> String {
    let (Some(r), Some(c)) = (
        v["extra"]["ratio_by_cpu"].as_array(),
        v["extra"]["cpus"].as_array(),
    ) else {
        return String::new();
    };
    r.iter()
        .zip(c)
        .map(|(r, c)| format!("cpu{c} {:.2}", r.as_f64().unwrap_or(f64::NAN)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn x(v: &Value, k: &str) -> f64 {
    v["extra"][k].as_f64().unwrap_or(f64::NAN)
}

fn extras(v: &Value) -> String {
    match v["extra"].as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .filter(|(_, x)| !x.is_array())
            .map(|(k, x)| match x.as_f64() {
                Some(n) if x.is_f64() => format!("{k}={n:.3}"),
                _ => format!("{k}={x}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    }
}

pub fn main(args: &[String]) {
    let input = super::arg(args, "--in").unwrap_or_else(|| super::die("report --in FILE"));
    let out = super::arg(args, "--out").unwrap_or_else(|| "benches/RESULTS.md".into());
    let meta = super::arg(args, "--meta")
        .and_then(|m| std::fs::read_to_string(m).ok())
        .unwrap_or_default();
    let text =
        std::fs::read_to_string(&input).unwrap_or_else(|e| super::die(&format!("{input}: {e}")));
    let r = Results(
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect(),
    );
    let mut md = String::new();
    let _ = writeln!(md, "# distlog benchmarks: side by side\n");
    let _ = writeln!(
        md,
        "Written by `scripts/bench` (do not edit by hand). Per-operation costs are"
    );
    let _ = writeln!(
        md,
        "batches of rdtsc-timed loops (p50/p99 over batches, see `benches/src/lib.rs`).\n"
    );
    for l in meta.lines().filter(|l| !l.trim().is_empty()) {
        let _ = writeln!(md, "- {l}");
    }
    let _ = writeln!(md);

    // Targets.
    let rust_d = r.p50("rust.enabled", "distlog");
    let lttng = r.p50("c.enabled", "lttng-ust");
    let c_ev = r.p50("c.enabled", "distlog-DISTLOG_EVENT");
    let c_kv = r.p50("c.enabled", "distlog-DISTLOG_EVENT_KV");
    let c_log = r.p50("c.enabled", "distlog_log");
    let c_pending = if c_ev.is_none() {
        Some("C API harness not built (ffi/ or include/ missing)")
    } else {
        None
    };
    let l_pending = if lttng.is_none() {
        Some("LTTng-UST not available")
    } else {
        None
    };
    let targets = [
        Target {
            what: "self-check: tracing no-op / tracing no-op (the same code in two processes)",
            num: r.p50("rust.enabled", "tracing-noop"),
            den: r.p50("rust.enabled", "tracing-noop-again"),
            bound: Bound::Near(0.05),
            pair: Some("self-check"),
            pending: None,
        },
        Target {
            what: "Rust enabled: distlog ≤ 1.5 × tracing no-op subscriber",
            num: rust_d,
            den: r.p50("rust.enabled", "tracing-noop"),
            bound: Bound::AtMost(1.5),
            pair: Some("rust-vs-noop"),
            pending: None,
        },
        Target {
            what: "Rust enabled: LTTng-UST ≥ 2 × distlog (LTTng / distlog)",
            num: lttng,
            den: rust_d,
            bound: Bound::AtLeast(2.0),
            pair: Some("lttng-vs-rust"),
            pending: l_pending,
        },
        Target {
            what: "Rust enabled: tracing fmt JSON + non_blocking ≥ 20 × distlog",
            num: r.p50("rust.enabled", "tracing-fmt-json+non_blocking"),
            den: rust_d,
            bound: Bound::AtLeast(20.0),
            pair: Some("fmt-vs-rust"),
            pending: None,
        },
        Target {
            what: "C DISTLOG_EVENT (static call site, field array of a constant count) ≤ 2 × floor (C floor)",
            num: c_ev,
            den: r.p50("floor", "c-floor"),
            bound: Bound::AtMost(2.0),
            pair: Some("c-event-vs-floor"),
            pending: c_pending,
        },
        Target {
            what: "C DISTLOG_EVENT: LTTng ≥ 3 × distlog",
            num: lttng,
            den: c_ev,
            bound: Bound::AtLeast(3.0),
            pair: Some("lttng-vs-c-event"),
            pending: c_pending.or(l_pending),
        },
        Target {
            what: "C DISTLOG_EVENT_KV (static call site, typed arguments) ≤ 2 × floor (C floor)",
            num: c_kv,
            den: r.p50("floor", "c-floor"),
            bound: Bound::AtMost(2.0),
            pair: Some("c-kv-vs-floor"),
            pending: c_pending,
        },
        Target {
            what: "context, not a target: C DISTLOG_EVENT_KV ≤ 2 × the floor over a 64 MiB buffer (the size of the enabled rows' rings)",
            num: c_kv,
            den: r.p50("floor", "c-floor-64m"),
            bound: Bound::AtMost(2.0),
            pair: Some("c-kv-vs-floor64m"),
            pending: c_pending,
        },
        Target {
            what: "context, not a target: C DISTLOG_EVENT with a field count known only at run time (the library scans each string for its length) ≤ 2 × floor",
            num: None,
            den: r.p50("floor", "c-floor"),
            bound: Bound::AtMost(2.0),
            pair: Some("c-event-rt-vs-floor"),
            pending: c_pending,
        },
        Target {
            what: "C DISTLOG_EVENT_KV: LTTng ≥ 3 × distlog",
            num: lttng,
            den: c_kv,
            bound: Bound::AtLeast(3.0),
            pair: Some("lttng-vs-c-kv"),
            pending: c_pending.or(l_pending),
        },
        Target {
            what: "C distlog_log (runtime strings): LTTng ≥ 2 × distlog",
            num: lttng,
            den: c_log,
            bound: Bound::AtLeast(2.0),
            pair: Some("lttng-vs-c-log"),
            pending: c_pending.or(l_pending),
        },
        Target {
            what: "disabled (level) ≤ 2 × tracing's disabled call site",
            num: r.p50("rust.disabled.level", "distlog"),
            den: r.p50("rust.disabled.level", "tracing-fmt+EnvFilter"),
            bound: Bound::AtMost(2.0),
            pair: Some("disabled-level"),
            pending: None,
        },
        Target {
            what: "disabled (target directive) ≤ 2 × tracing's disabled call site",
            num: r.p50("rust.disabled.target", "distlog"),
            den: r.p50("rust.disabled.target", "tracing-fmt+EnvFilter"),
            bound: Bound::AtMost(2.0),
            pair: Some("disabled-target"),
            pending: None,
        },
        Target {
            what: "scope open+enter+exit+close ≤ fastrace Span",
            num: r.p50("rust.scope", "distlog"),
            den: r.p50("rust.scope", "fastrace-Span"),
            bound: Bound::AtMost(1.0),
            pair: Some("scope-vs-span"),
            pending: None,
        },
        Target {
            what: "scope open+enter+exit+close ≤ fastrace LocalSpan",
            num: r.p50("rust.scope", "distlog"),
            den: r.p50("rust.scope", "fastrace-LocalSpan"),
            bound: Bound::AtMost(1.0),
            pair: Some("scope-vs-localspan"),
            pending: None,
        },
        Target {
            what: "two threads at once: per-thread ≤ 1.3 × one thread (sidecar paused)",
            num: r.p50("rust.threads.2.sidecar-paused", "distlog"),
            den: r.p50("rust.threads.1.sidecar-paused", "distlog"),
            bound: Bound::AtMost(1.3),
            pair: Some("threads-paused"),
            pending: None,
        },
        Target {
            what: "two threads at once: per-thread ≤ 1.3 × one thread (sidecar draining)",
            num: r.p50("rust.threads.2.sidecar-draining", "distlog"),
            den: r.p50("rust.threads.1.sidecar-draining", "distlog"),
            bound: Bound::AtMost(1.3),
            pair: Some("threads-draining"),
            pending: None,
        },
        Target {
            what: "sidecar drain, one core, no sink: ≥ 10 M records/s",
            num: r.p50("sidecar.drain.nosink", "distlogd"),
            den: Some(1e7),
            bound: Bound::AtLeast(1.0),
            pair: None,
            pending: None,
        },
        Target {
            what: "overload: client cost ≤ 1.2 × enabled cost (p50)",
            num: r.p50("rust.overload", "distlog"),
            den: rust_d,
            bound: Bound::AtMost(1.2),
            pair: Some("overload-vs-enabled"),
            pending: None,
        },
        Target {
            what: "store ingest on disk with its indexes ≥ 250 000 records/s (issue 7)",
            num: r.p50("store.ingest", "distlogd"),
            den: Some(250_000.0),
            bound: Bound::AtLeast(1.0),
            pair: None,
            pending: None,
        },
        Target {
            what: "sidecar drain from real rings into the disk store ≥ 250 000 records/s (issue 7)",
            num: r.p50("sidecar.drain.store", "distlogd"),
            den: Some(250_000.0),
            bound: Bound::AtLeast(1.0),
            pair: None,
            pending: None,
        },
        Target {
            what: "store: a trace among the stored records < 50 ms (median, ms; issue 7)",
            num: r.p50("store.trace-lookup", "distlogd"),
            den: Some(50.0),
            bound: Bound::AtMost(1.0),
            pair: None,
            pending: None,
        },
        Target {
            what:
                "tail -f: client write → line printed, p99 ≤ 100 ms (numerator: p99 in µs; issue 7)",
            num: r.p99("tail-f.1k", "distlogd"),
            den: Some(100_000.0),
            bound: Bound::AtMost(1.0),
            pair: None,
            pending: None,
        },
    ];
    let _ = writeln!(md, "## Targets (issues 7 and 8)\n");
    let _ = writeln!(
        md,
        "The verdict is the paired ratio where there is one (both sides alternating in \
         rounds of ~3 ms on one CPU; median of the round ratios, IQR and min–max of them \
         beside it), else the ratio of the rows' p50s (measured one after the other, so \
         possibly in different speed modes of the VM: shown for comparison). \
         \"Paired, fast mode\": the median over the rounds where both halves ran in the \
         fast mode (the modes do not slow all code alike: see the notes).\n"
    );
    let _ = writeln!(
        md,
        "| target | numerator p50 | denominator p50 | row ratio | paired ratio | round ratios: IQR; min–max | paired, fast mode (rounds) | bound | holds |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---|---:|---:|---|");
    for t in &targets {
        let row = match (t.num, t.den) {
            (Some(n), Some(d)) if d > 0.0 => Some(n / d),
            _ => None,
        };
        let pv = t.pair.and_then(|id| paired(&r, id));
        let pq = pv.and_then(|v| v["p50"].as_f64());
        let spread = pv.map_or(String::new(), |v| {
            format!(
                "{:.2}–{:.2}; {:.2}–{:.2}",
                x(v, "q1"),
                x(v, "q3"),
                v["min"].as_f64().unwrap_or(f64::NAN),
                x(v, "max")
            )
        });
        let fast = pv.map_or(String::new(), |v| {
            match (v["fast"].as_f64(), v["extra"]["fast_rounds"].as_u64()) {
                (Some(q), Some(n)) if n > 0 => format!("{q:.2} ({n})"),
                _ => "–".into(),
            }
        });
        let holds = match (pv, pq, row) {
            (Some(v), Some(q), _) => t.bound.verdict(q, x(v, "q1"), x(v, "q3")),
            (_, _, Some(q)) if t.bound.holds(q) => "yes",
            (_, _, Some(_)) => "**no**",
            _ => t.pending.unwrap_or("not measured"),
        };
        let q2 = |q: Option<f64>| q.map_or("–".into(), |q| format!("{q:.2}"));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {spread} | {fast} | {} | {holds} |",
            t.what,
            f(t.num),
            f(t.den),
            q2(row),
            if pq.is_some() {
                format!("**{}**", q2(pq))
            } else {
                q2(pq)
            },
            t.bound
        );
    }
    if let Some(v) = r.get("rust.overload", "distlog") {
        let acc = v["extra"]["accounted"].as_bool().unwrap_or(false);
        let _ = writeln!(
            md,
            "| overload: every record delivered or counted lost | {} delivered + {} lost | {} attempted | | | | | = | {} |",
            v["extra"]["delivered"], v["extra"]["reported_lost"], v["extra"]["attempted"], if acc { "yes" } else { "**no**" }
        );
    }
    let _ = writeln!(md);

    let pairs: Vec<&Value> = r.0.iter().filter(|v| v["workload"] == "pair").collect();
    if !pairs.is_empty() {
        let _ = writeln!(md, "## Paired rounds (ns/op)\n");
        let _ = writeln!(
            md,
            "Each side's median round p50 and its fast-mode estimate (p10 of its round p50s) in brackets."
        );
        let _ = writeln!(
            md,
            "\n| pair | numerator | denominator | median ratio | IQR | min–max | median by CPU | rounds × ops (num / den) |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---|---|---|---|");
        for v in pairs {
            let _ = writeln!(
                md,
                "| {} | {} ({}) | {} ({}) | {:.3} | {:.3}–{:.3} | {:.3}–{:.3} | {} | {} × {} / {} |",
                v["impl"].as_str().unwrap_or(""),
                f(Some(x(v, "num_p50"))),
                f(Some(x(v, "num_fast"))),
                f(Some(x(v, "den_p50"))),
                f(Some(x(v, "den_fast"))),
                v["p50"].as_f64().unwrap_or(f64::NAN),
                x(v, "q1"),
                x(v, "q3"),
                v["min"].as_f64().unwrap_or(f64::NAN),
                x(v, "max"),
                by_cpu(v),
                v["extra"]["rounds"],
                v["extra"]["num_ops_per_round"],
                v["extra"]["den_ops_per_round"]
            );
        }
        let _ = writeln!(md);
    }

    // All latency rows.
    let _ = writeln!(md, "## Per-operation cost (ns/op)\n");
    let _ = writeln!(
        md,
        "| workload | implementation | p50 | fast-mode p50 | p99 | ratio p50 to distlog | notes |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---|");
    let mut rows: Vec<&Value> = r.0.iter().filter(|v| v["unit"] == "ns/op").collect();
    rows.sort_by(|a, b| a["workload"].as_str().cmp(&b["workload"].as_str()));
    for v in rows {
        let w = v["workload"].as_str().unwrap_or("");
        let base = match w {
            "c.enabled" => c_ev,
            "floor" => rust_d,
            _ => r.p50(w, "distlog").or(rust_d),
        };
        let ratio = match (v["p50"].as_f64(), base) {
            (Some(n), Some(d)) if d > 0.0 => format!("{:.2}×", n / d),
            _ => "–".into(),
        };
        let _ = writeln!(
            md,
            "| {w} | {} | {} | {} | {} | {ratio} | {} |",
            v["impl"].as_str().unwrap_or(""),
            f(v["p50"].as_f64()),
            f(v["fast"].as_f64()),
            f(v["p99"].as_f64()),
            extras(v)
        );
    }
    let _ = writeln!(md);

    let _ = writeln!(md, "## Sidecar\n");
    let _ = writeln!(md, "| workload | value | unit | p99 | p99.9 | notes |");
    let _ = writeln!(md, "|---|---:|---|---:|---:|---|");
    for v in
        r.0.iter()
            .filter(|v| v["unit"] != "ns/op" && v["unit"] != "ratio")
    {
        let unit = v["unit"].as_str().unwrap_or("");
        let (p99, p999) = if unit == "us" {
            (f(v["p99"].as_f64()), f(v["p999"].as_f64()))
        } else {
            ("".into(), "".into())
        };
        let val = if unit == "kB" {
            String::new()
        } else if v["n"].as_u64().is_some_and(|n| n > 1) && v["extra"]["max"].is_f64() {
            // Several samples of one rate (the drain rows): the median and
            // the spread, which moves with the vCPU the drain ran on.
            format!(
                "{} ({}–{})",
                f(v["p50"].as_f64()),
                f(v["min"].as_f64()),
                f(v["extra"]["max"].as_f64())
            )
        } else {
            f(v["p50"].as_f64())
        };
        let _ = writeln!(
            md,
            "| {} | {val} | {} | {p99} | {p999} | {} |",
            v["workload"].as_str().unwrap_or(""),
            if unit == "us" { "us (p50)" } else { unit },
            extras(v)
        );
    }
    let _ = writeln!(md, "\n## How to read this\n");
    for l in NOTES.lines() {
        let _ = writeln!(md, "{l}");
    }
    std::fs::write(&out, md).unwrap_or_else(|e| super::die(&format!("{out}: {e}")));
    eprintln!("bench-runner: wrote {out}");
}

const NOTES: &str = "\
- Every Rust row runs in its own process (`bench-runner SUBCOMMAND`): one
  global subscriber or logger each. The event is the same everywhere: a
  message, two integers and one short string (`tracing::info!(a, b, s,
  \"message text\")`; `log::info!(\"message text a={} b={} s={}\")` for the `log`
  peers; a tracepoint with the same four fields for LTTng-UST; the same
  `fmt` call for spdlog).
- p50/p99 are over batches of 100 calls between two TSC reads (20 000
  batches a row, 5 000 for the distlog C rows and a quarter for scopes and
  threads), so p99 shows a slow path of the call, not one preemption.
  \"fast-mode p50\" is the 10th percentile of the medians of consecutive
  200-batch stretches of the row: this VM runs in two speed modes about a
  factor 0.58 apart that switch within seconds, and a stretch lies in one;
  it is the row as it would be in the fast mode (a second view, not a
  verdict).
- Paired ratios (`bench-runner pair`, `benches/src/bin/pair`): rows run
  one after another can straddle a mode switch, so each target ratio is
  measured again with numerator and denominator alternating in rounds of
  ~3 ms (40 rounds) in processes set up as for their rows (`bench-runner
  serve KIND`; the C harness `serve` has distlog's C API, LTTng-UST and the
  floor in one process, so the C pairs alternate inside it). The speed
  mode is a vCPU's (the same code pinned to the two CPUs at once measured
  8.8 and 12.5 ns), so both halves of a round run pinned to the same CPU,
  the CPUs taken in turn and the order of the sides flipped every pass.
  A round's ratio compares two halves a few ms apart on one CPU; the
  verdict is the median of the 40. After each round its side's
  consumer catches up, untimed (the sidecar reads everything; fastrace's
  collector is flushed; tracing-appender's writer and the C API's sidecar
  get a pause), so it does not run into the other side's round. The
  self-check pairs `tracing-noop` with itself in a second process: its
  paired ratio should be 1.00 with a tight IQR; its row ratio compares the
  first row with the same code run minutes later (`tracing-noop-again`).
  The two-thread pairs run in `bench-runner distlog-threads`: each thread
  pinned to its CPU, a round is thread 0 alone, thread 1 alone, both at
  once; a round's ratio is the mean of the threads' two-to-one ratios.
- The modes do not slow all code alike: on the slow vCPU tracing-noop
  measured x1.4, distlog's event x1.6-1.7, the floor (mostly rdtsc) x1.0.
  So a paired ratio still moves with the share of slow rounds; \"paired,
  fast mode\" is the median over the rounds where both halves ran within
  1.2 x their side's p10 round. Every round's p50s are in
  `target/bench/results.jsonl` (`num_rounds`, `den_rounds`, in time order,
  even rounds on the first CPU).
- distlog \"enabled\" rows run with a real `distlogd run --stdout`
  (stdout to /dev/null) draining 64 MiB rings; every 500 batches the loop
  waits (untimed) until the sidecar has read everything, so these rows
  never measure the drop path (`dropped=0` in the notes proves it). The
  drop path is its own row (`rust.enabled.drop-path`: no sidecar, 4 KiB
  ring).
- `tracing-noop` says enabled and does nothing; `tracing-noop+visit-fields`
  also visits every field into nothing: what any subscriber that records
  values pays to `tracing` before writing a byte.
- tracing fmt uses `tracing-appender`'s default non_blocking writer (lossy,
  128 000 lines buffered; `dropped_lines` is its own count). spdlog: async
  logger, one worker thread, queue 8192, `overrun` (drop oldest) and
  `block` policies. ftlog: bounded channel (100 000), discard when full.
  LTTng-UST: one session, per-UID buffers, 4 × 4 MiB sub-buffers, discard
  mode, consumer daemon writing to disk.
- The floor: rdtsc + 32 bytes into a thread-local buffer + a release store;
  on this VM rdtsc alone costs ~9 ns, so the floor is mostly the clock.
- Sidecar drain: records written while `distlogd` is SIGSTOPped, then
  timed from SIGCONT until the client sees every ring read. `nosink` is
  `distlogd run` without `--stdout` (records decoded into the record schema,
  then dropped: the drain loop itself); `stdout-json` adds JSON formatting
  and write(2) to /dev/null. `records_per_cpu_s` divides by the sidecar's
  CPU time (one drain thread). A row is the median of `samples` fills and
  drains of the same sidecar (5 without a sink, 3 to stdout, 1 to the
  store), min–max in brackets, each sample in `sample_rates`: one drain
  moves with the vCPU it lands on.
- End to end: the client stamps `sent_ns` (CLOCK_REALTIME) into the event;
  the bench reads the sidecar's stdout through a pipe and subtracts at
  arrival. p99.9 on a 2-core machine is dominated by scheduling (the
  writer, the sidecar's drain thread and the reader share two cores).
- Store: `distlogd bench-store` (the sidecar's store writer and reader in
  one process, no sidecar) writes 10 M records (a message, three fields, a
  trace of 8 records and a scope each) in batches of 4096 into a scratch
  directory under `target/bench/` (the file system is in the notes), then
  times 20 trace lookups among them (median; `max_ms` in the notes).
- tail -f: a sidecar storing everything, `distlogd tail -f -n 0 -o json`
  subscribed through the control socket, a client writing 1 000 records/s
  with its realtime clock in a field; latency = line read from tail's
  stdout minus that stamp (the sidecar's drain, store commit, subscription
  and tail's formatting included).
- Memory: a thread ring is a 4 KiB header + the data bytes (default 256 KiB),
  a `memfd` mapping. Sidecar RSS from /proc/PID/status: RssShmem is the
  clients' rings it maps (touched pages), RssAnon its own heap.
- Overload: a default 256 KiB ring, a sidecar formatting JSON into a file,
  the client writing as fast as it can. `accounted` checks delivered +
  reported lost (the sidecar's `loss` records) == attempted.
- Proposed client changes and their measured effect:
  `benches/proposals/README.md`.
";

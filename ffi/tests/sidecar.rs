//! End to end: the C demo (`ffi/tests/c/demo.c`) writes through the real
//! library into a real sidecar (`distlogd run --stdout`), and its records
//! are checked one by one: service, pid, thread, target, file and line from
//! the macros, typed fields, scope nesting, traceparents. The same for the
//! typed-argument macro `DISTLOG_EVENT_KV` (`ffi/tests/c/kv.c`).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(60);
const NTHREADS: usize = 4;
const PER_THREAD: usize = 25;

/// Build the sidecar binary in this test's profile and return its path.
fn distlogd() -> std::path::PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace())
        .args(["build", "-p", "distlogd"]);
    if profile_dir().file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let o = run(cmd, Duration::from_secs(900));
    assert!(
        o.status.success(),
        "cargo build -p distlogd failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let exe = profile_dir().join("distlogd");
    assert!(exe.exists(), "{} missing after cargo build", exe.display());
    exe
}

/// The sidecar, stopped (by its pid) when dropped.
struct Sidecar {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Sidecar {
    fn start(exe: &std::path::Path, socket: &std::path::Path, dir: &std::path::Path) -> Sidecar {
        let mut child = Command::new(exe)
            .args(["run", "--socket"])
            .arg(socket)
            .arg("--stdout")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("distlogd.stderr")).unwrap())
            .spawn()
            .expect("start distlogd");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let start = Instant::now();
        while !socket.exists() {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "distlogd exited early ({st}): {}",
                    std::fs::read_to_string(dir.join("distlogd.stderr")).unwrap()
                );
            }
            assert!(
                start.elapsed() < LIMIT,
                "distlogd did not create its socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Sidecar { child, lines }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parts(tp: &str) -> (String, String) {
    let p: Vec<&str> = tp.split('-').collect();
    assert_eq!(p.len(), 4, "bad traceparent {tp}");
    assert_eq!(p[0], "00");
    assert_eq!(p[3], "01");
    (p[1].to_owned(), p[2].to_owned())
}

#[test]
fn c_records_reach_the_sidecar_like_rust_records() {
    // The sidecar's records of this process: 16 in the main thread, 2 of a thread
    // that exits (one from its exit), a scope
    // with PER_THREAD events per worker, the root's close.
    let want = 18 + NTHREADS * (PER_THREAD + 2) + 1;
    let (out, pid, recs) = run_with_sidecar("demo.c", want);
    let printed = printed(&out);
    let (trace, root_id) = parts(&printed["TP_ROOT"]);
    let (child_trace, child_id) = parts(&printed["TP_CHILD"]);
    assert_eq!(child_trace, trace);
    let line_typed: u64 = printed["LINE_TYPED"].parse().unwrap();
    let line_fmt: u64 = printed["LINE_FMT"].parse().unwrap();
    let mut worker_ids = HashMap::new();
    for line in out.lines().filter(|l| l.starts_with("TP_WORKER ")) {
        let mut it = line.split(' ').skip(1);
        let n: i64 = it.next().unwrap().parse().unwrap();
        let (t, id) = parts(it.next().unwrap());
        assert_eq!(t, trace, "a worker continued the root's trace");
        worker_ids.insert(n, id);
    }
    assert_eq!(worker_ids.len(), NTHREADS);

    for r in &recs {
        assert_eq!(r["service"], "c-demo", "{r}");
        assert!(r["host"].is_string(), "{r}");
        assert!(r["tid"].as_u64().is_some_and(|t| t > 0), "{r}");
        assert!(r["kind"] != "loss", "{r}");
        assert_ne!(
            r["level"], "DEBUG",
            "a filtered DEBUG record got through: {r}"
        );
    }
    // The root scope is opened by the main thread (the rings are read in
    // no particular order, so not simply the first record).
    let main_tid = recs
        .iter()
        .find(|r| r["kind"] == "scope_open" && r["name"] == "request")
        .map(|r| r["tid"].clone())
        .expect("the root scope");
    assert_eq!(main_tid, json!(pid), "the main thread's tid is the pid");
    let find = |pred: &dyn Fn(&Value) -> bool| -> Vec<&Value> {
        recs.iter().filter(|r| pred(r)).collect()
    };

    // The root scope.
    let root = find(&|r| r["kind"] == "scope_open" && r["name"] == "request");
    assert_eq!(root.len(), 1);
    let root = root[0];
    assert_eq!(root["trace_id"], trace.as_str());
    assert_eq!(root["scope_id"], root_id.as_str());
    assert!(root["parent_id"].is_null(), "{root}");
    assert_eq!(root["fields"], json!({"order": 42, "user": "ada"}));
    assert_eq!(root["level"], "INFO");
    assert_eq!(root["target"], "c-demo");

    // The typed event, with the macro's file and line.
    let typed = find(&|r| r["message"] == "typed fields");
    assert_eq!(typed.len(), 1);
    let typed = typed[0];
    assert_eq!(typed["kind"], "event");
    assert_eq!(typed["level"], "INFO");
    assert_eq!(typed["target"], "demo::main");
    assert!(
        typed["file"].as_str().unwrap().ends_with("demo.c"),
        "{typed}"
    );
    assert_eq!(typed["line"], json!(line_typed));
    assert_eq!(typed["tid"], main_tid);
    assert_eq!(
        typed["fields"],
        json!({"neg": -7, "big": u64::MAX, "ratio": 2.5, "ok": true, "who": "grace"})
    );
    assert_eq!(typed["trace_id"], trace.as_str());
    assert_eq!(typed["scope_id"], root_id.as_str());

    // The nested scope, its printf event and runtime event, its close.
    let child_open = find(&|r| r["kind"] == "scope_open" && r["name"] == "child");
    assert_eq!(child_open.len(), 1);
    assert_eq!(child_open[0]["scope_id"], child_id.as_str());
    assert_eq!(child_open[0]["parent_id"], root_id.as_str());
    assert_eq!(child_open[0]["trace_id"], trace.as_str());
    let fmt = find(&|r| r["target"] == "demo::fmt");
    assert_eq!(fmt.len(), 1, "exactly the WARN one (DEBUG is filtered)");
    assert_eq!(fmt[0]["level"], "WARN");
    assert_eq!(fmt[0]["message"], "formatted 7 and seven");
    // The text went as field 0 of the call site; it is the message, not
    // also a field.
    assert!(
        fmt[0]["fields"].as_object().is_none_or(|f| f.is_empty()),
        "{}",
        fmt[0]
    );
    assert_eq!(fmt[0]["line"], json!(line_fmt));
    assert!(fmt[0]["file"].as_str().unwrap().ends_with("demo.c"));
    assert_eq!(fmt[0]["scope_id"], child_id.as_str());
    let rt = find(&|r| r["target"] == "demo::runtime");
    assert_eq!(rt.len(), 1);
    assert_eq!(rt[0]["level"], "ERROR");
    assert_eq!(rt[0]["message"], "runtime message");
    assert_eq!(rt[0]["fields"], json!({"path": "/runtime"}));
    assert_eq!(rt[0]["scope_id"], child_id.as_str());
    let bytes = find(&|r| r["target"] == "demo::bytes");
    assert_eq!(bytes.len(), 1);
    assert_eq!(bytes[0]["message"], "bad \u{FFFD} bytes");
    assert_eq!(bytes[0]["fields"], json!({"k\u{FFFD}": "v\u{FFFD}"}));
    for target in ["demo::keys", "demo::keys_rt"] {
        let keys = find(&|r| r["target"] == target);
        let keys: Vec<_> = keys.iter().map(|r| &r["fields"]).collect();
        assert_eq!(
            keys,
            [
                &json!({"same": 0, "k0": "v", "other": "(null)"}),
                &json!({"same": 1, "k1": "v", "third": "(null)"}),
                &json!({"same": 2, "k\u{FFFD}": "v", "other": "(null)"}),
            ],
            "{target}"
        );
    }
    let rt: Vec<_> = find(&|r| r["message"] == "rt")
        .iter()
        .map(|r| (r["target"].clone(), r["fields"].clone()))
        .collect();
    assert_eq!(
        rt,
        [
            (json!("demo::rt0"), json!({"n": 0})),
            (json!("demo::rt1"), json!({"n": 1})),
            (json!("demo::rt0"), json!({"n2": 2})),
        ]
    );
    // Two rings (the thread's, then the shared one once its thread-locals
    // are gone): read in no particular order.
    let mut exit: Vec<_> = find(&|r| r["target"] == "demo::exit")
        .iter()
        .map(|r| (r["message"].to_string(), r["fields"].clone()))
        .collect();
    exit.sort_by(|a, b| b.0.cmp(&a.0));
    assert_eq!(
        exit,
        [
            (json!("thread start").to_string(), json!({})),
            (json!("thread exit").to_string(), json!({"late": 1})),
        ]
    );
    let child_close = find(&|r| r["kind"] == "scope_close" && r["scope_id"] == child_id.as_str());
    assert_eq!(child_close.len(), 1);
    assert_eq!(child_close[0]["outcome"], "error");

    // The workers: a scope each under the root (through its traceparent),
    // their events in it, from threads of their own.
    let mut tids = BTreeSet::new();
    for (n, id) in &worker_ids {
        let open = find(&|r| r["kind"] == "scope_open" && r["scope_id"] == id.as_str());
        assert_eq!(open.len(), 1, "worker {n}");
        assert_eq!(open[0]["name"], format!("worker-{n}"));
        assert_eq!(open[0]["parent_id"], root_id.as_str());
        assert_eq!(open[0]["trace_id"], trace.as_str());
        assert_eq!(open[0]["fields"], json!({"worker": n}));
        assert_ne!(open[0]["tid"], main_tid);
        tids.insert(open[0]["tid"].as_u64().unwrap());
        let ticks = find(&|r| r["message"] == "tick" && r["scope_id"] == id.as_str());
        assert_eq!(ticks.len(), PER_THREAD, "worker {n}");
        let is: BTreeSet<i64> = ticks
            .iter()
            .map(|t| {
                assert_eq!(t["fields"]["thread"], json!(n));
                assert_eq!(t["tid"], open[0]["tid"]);
                assert_eq!(t["target"], "demo::worker");
                t["fields"]["i"].as_i64().unwrap()
            })
            .collect();
        assert_eq!(is, (0..PER_THREAD as i64).collect());
        let close = find(&|r| r["kind"] == "scope_close" && r["scope_id"] == id.as_str());
        assert_eq!(close.len(), 1);
        assert_eq!(close[0]["outcome"], "ok");
    }
    assert_eq!(tids.len(), NTHREADS, "each worker on its own thread");

    let root_close = find(&|r| r["kind"] == "scope_close" && r["scope_id"] == root_id.as_str());
    assert_eq!(root_close.len(), 1);
    assert_eq!(root_close[0]["outcome"], "ok");
    assert!(
        root_close[0]["duration_ns"].as_u64().is_some(),
        "{}",
        root_close[0]
    );
}

/// Run the C program `src` (in `ffi/tests/c`) against a real sidecar;
/// returns what it printed (after checking it printed `DONE`), its pid, and
/// the sidecar's `want` records of that pid (JSON).
fn run_with_sidecar(src: &str, want: usize) -> (String, u64, Vec<Value>) {
    run_with_sidecar_opt(src, want, "-O0")
}

/// [`run_with_sidecar`] built with the optimisation flag `opt` (`-O2`:
/// where the header's inline event writer takes the common events).
fn run_with_sidecar_opt(src: &str, want: usize, opt: &str) -> (String, u64, Vec<Value>) {
    let name = src.trim_end_matches(".c");
    let dir = out_dir(&format!("sidecar-{name}{opt}"));
    let exe = distlogd();
    let prog = dir.join(name);
    let mut flags = STRICT_C11.to_vec();
    flags.push(opt);
    compile("cc", &flags, &c_dir().join(src), &prog, Link::Shared);
    let socket = dir.join("s.sock");
    let sidecar = Sidecar::start(&exe, &socket, &dir);
    let mut cmd = c_command(&prog);
    cmd.env("DISTLOG_SOCKET", &socket)
        .env_remove("DISTLOG_LOG")
        .env_remove("RUST_LOG")
        .env_remove("DISTLOG_SERVICE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let pid = u64::from(child.id());
    let out = success(&child.wait_with_output().unwrap());
    assert!(out.lines().any(|l| l == "DONE"), "{out}");
    let recs = records_until(&sidecar, pid, |r| r.len() >= want);
    drop(sidecar);
    assert_eq!(recs.len(), want, "records of pid {pid}:\n{recs:#?}");
    (out, pid, recs)
}

/// The program's `KEY value` lines (a line without a space: the key, no
/// value); a later line of the same key wins.
fn printed(out: &str) -> HashMap<String, String> {
    out.lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap_or((l, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn kv_call_sites_cache_the_thread_state_per_thread() {
    // Of each macro (DISTLOG_EVENT twice: a constant count and one known
    // at run time): 3 events from each of two threads in turn (the second
    // may claim the ring the first released), one from main, and one from
    // the first thread's pthread key destructor after its state was
    // dropped: through the shared ring, with its thread's id.
    for opt in ["-O0", "-O2"] {
        kv_threads_checked(opt);
    }
}

/// One run of `kv_threads.c` built with `opt`, checked.
fn kv_threads_checked(opt: &str) {
    let (out, _, recs) = run_with_sidecar_opt("kv_threads.c", 24, opt);
    let printed = printed(&out);
    let tid = |name: &str| json!(printed[&format!("TID_{name}")].parse::<u64>().unwrap());
    let mut got: Vec<_> = recs
        .iter()
        .map(|r| {
            assert_eq!(r["target"], "kv::tl", "{r}");
            assert_eq!(r["fields"]["s"], "text", "{r}");
            let message = r["message"].as_str().unwrap().to_owned();
            (
                message,
                r["fields"]["n"].as_u64().unwrap(),
                r["tid"].clone(),
            )
        })
        .collect();
    // The shared ring's records may be read before or after the others.
    got.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let sent = [
        (0, "0"),
        (1, "0"),
        (2, "0"),
        (10, "10"),
        (11, "10"),
        (12, "10"),
        (20, "main"),
        (100, "0"),
    ];
    let want: Vec<_> = ["ev", "rt", "tl"]
        .iter()
        .flat_map(|m| sent.iter().map(move |&(n, t)| (m.to_string(), n, t)))
        .map(|(m, n, t)| (m, n, tid(t)))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn kv_events_reach_the_sidecar_typed() {
    // 3 events, 8 of one call site, 8 of each DISTLOG_EVENT site, the
    // scope's open and close, 3 events in it (DEBUG filtered).
    for opt in ["-O0", "-O2"] {
        kv_checked(opt);
    }
}

/// One run of `kv.c` built with `opt`, checked.
fn kv_checked(opt: &str) {
    let (out, _, recs) = run_with_sidecar_opt("kv.c", 32, opt);
    let printed = printed(&out);
    for r in &recs {
        assert_eq!(r["service"], "c-kv", "{r}");
        assert!(r["kind"] != "loss", "{r}");
        assert_ne!(r["target"], "kv::debug", "{r}");
    }
    let one = |target: &str| -> &Value {
        let found: Vec<_> = recs.iter().filter(|r| r["target"] == target).collect();
        assert_eq!(found.len(), 1, "{target}: {recs:#?}");
        found[0]
    };

    let types = one("kv::types");
    assert_eq!(types["message"], "types");
    assert_eq!(types["level"], "INFO");
    assert!(types["file"].as_str().unwrap().ends_with("kv.c"), "{types}");
    assert_eq!(
        types["line"],
        json!(printed["LINE_TYPES"].parse::<u64>().unwrap())
    );
    assert_eq!(
        types["fields"],
        json!({
            "int": -3, "lng": -4_000_000_000i64, "uint": 3, "ull": u64::MAX,
            "char": 120, "dbl": 2.5, "flt": 0.5, "yes": true, "one": 1, "no": false,
            "lit": "short", "buf": "buffer-7", "null": "(null)", "empty": "",
            "long": "a string longer than thirty-two bytes, copied whole",
        })
    );
    assert_eq!(
        one("kv::explicit")["fields"],
        json!({"i": 5, "u": 6, "f": 1.25, "b": true, "s": "seven"})
    );
    assert_eq!(
        one("kv::bytes")["fields"],
        json!({"k\u{FFFD}": "v\u{FFFD}"})
    );

    let again: Vec<_> = recs
        .iter()
        .filter(|r| r["target"] == "kv::again")
        .map(|r| r["fields"].clone())
        .collect();
    let texts = [
        "first",
        "",
        "abc",
        "sixteen-bytes-16",
        "seventeen-bytes-7",
        "h\u{e9}",
        "bad\u{FFFD}",
        "(null)",
    ];
    let want: Vec<_> = (0..texts.len())
        .map(|k| {
            json!({"s": texts[k], "i": -(k as i64), "u": k, "f": k as f64 + 0.5, "b": k % 2 == 1})
        })
        .collect();
    assert_eq!(again, want);
    for target in ["kv::fields", "kv::fields_rt"] {
        let got: Vec<_> = recs
            .iter()
            .filter(|r| r["target"] == target)
            .map(|r| r["fields"].clone())
            .collect();
        assert_eq!(got, want, "{target}");
    }

    let (trace, scope) = parts(&printed["TP"]);
    let lp: Vec<_> = recs
        .iter()
        .filter(|r| r["target"] == "kv::loop")
        .map(|r| {
            assert_eq!(r["trace_id"], trace.as_str(), "{r}");
            assert_eq!(r["scope_id"], scope.as_str(), "{r}");
            r["fields"].clone()
        })
        .collect();
    assert_eq!(
        lp,
        [
            json!({"n": 0, "k": "v0", "other": 0}),
            json!({"n": 1, "k": "v1", "third": 1}),
            json!({"n": 2, "k2": "v2", "other": 2}),
        ]
    );
}

/// `ffi/tests/c/inline.c`, built with `-O2` (the header's inline event
/// writer needs the optimiser's constants), once per test.
fn inline_program(dir: &std::path::Path, cc: &str) -> std::path::PathBuf {
    let prog = dir.join("inline");
    let mut flags = STRICT_C11.to_vec();
    flags.push("-O2");
    compile(cc, &flags, &c_dir().join("inline.c"), &prog, Link::Shared);
    prog
}

/// What each inline test starts with: the sidecar, its socket, and the
/// inline program built.
struct InlineRun {
    exe: std::path::PathBuf,
    prog: std::path::PathBuf,
    socket: std::path::PathBuf,
    sidecar: Sidecar,
}

fn inline_run(name: &str) -> InlineRun {
    inline_run_with(name, "cc")
}

fn inline_run_with(name: &str, cc: &str) -> InlineRun {
    let dir = out_dir(&format!("sidecar-inline-{name}"));
    let exe = distlogd();
    let prog = inline_program(&dir, cc);
    let socket = dir.join("s.sock");
    let sidecar = Sidecar::start(&exe, &socket, &dir);
    InlineRun {
        exe,
        prog,
        socket,
        sidecar,
    }
}

/// The inline program in `mode` against `sidecar`, stdin piped.
fn spawn_inline(
    prog: &std::path::Path,
    socket: &std::path::Path,
    args: &[&str],
    ring: Option<&str>,
) -> Child {
    let mut cmd = c_command(prog);
    cmd.args(args)
        .env("DISTLOG_SOCKET", socket)
        .env_remove("DISTLOG_LOG")
        .env_remove("RUST_LOG")
        .env_remove("DISTLOG_SERVICE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(r) = ring {
        cmd.env("DISTLOG_RING_BYTES", r);
    }
    cmd.spawn().unwrap()
}

/// The sidecar's records of `pid` until `done` says so (or the limit).
fn records_until(sidecar: &Sidecar, pid: u64, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut recs = Vec::new();
    let deadline = Instant::now() + LIMIT;
    while !done(&recs) && Instant::now() < deadline {
        if let Ok(line) = sidecar.lines.recv_timeout(Duration::from_millis(100)) {
            let v: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            if v["pid"] == json!(pid) {
                recs.push(v);
            }
        }
    }
    recs
}

fn events_of<'a>(recs: &'a [Value], target: &'a str) -> impl Iterator<Item = &'a Value> {
    recs.iter()
        .filter(move |r| r["kind"] == "event" && r["target"] == target)
}

#[test]
fn inline_writer_records_values_scopes_and_order() {
    inline_records(inline_run("records"));
}

/// The same built by clang (the header's inline writer is for GCC and
/// clang; see `has_clang`).
#[test]
fn inline_writer_records_values_scopes_and_order_clang() {
    if has_clang() {
        inline_records(inline_run_with("records-clang", "clang"));
    }
}

/// Every value kind through both macros, in scopes and none, in order; the
/// window refused to another ABI.
fn inline_records(run: InlineRun) {
    let InlineRun {
        exe: _,
        prog,
        socket,
        sidecar,
    } = run;
    let child = spawn_inline(&prog, &socket, &["records"], None);
    let pid = u64::from(child.id());
    let out = success(&child.wait_with_output().unwrap());
    assert!(out.lines().any(|l| l == "DONE"), "{out}");
    let printed = printed(&out);
    let n: usize = printed["EVENTS"].parse().unwrap();
    let probes: usize = printed["PROBES"].parse().unwrap();
    // The library keeps no window for another header's ABI, and hands
    // its own a ready one.
    assert_eq!(printed["ABI_OTHER"], "none");
    assert_eq!(printed["ABI_SAME"], "window");
    // Two events a round, the probes, two scopes (open and close), and the
    // four calls of the ABI call site.
    let want = 2 * n + probes + 4 + 4;
    let recs = records_until(&sidecar, pid, |r| r.len() >= want);
    drop(sidecar);
    assert_eq!(recs.len(), want, "{recs:#?}");
    assert!(recs.iter().all(|r| r["kind"] != "loss"), "{recs:#?}");

    let texts = [
        "first",
        "",
        "abc",
        "sixteen-bytes-16",
        "seventeen-bytes-17",
        "a string longer than thirty-two bytes, copied whole",
        "h\u{e9}",
        "(null)",
        "bad\u{FFFD}",
        "k",
    ];
    let (trace, outer) = parts(&printed["TP_OUTER"]);
    let (inner_trace, inner) = parts(&printed["TP_INNER"]);
    assert_eq!(inner_trace, trace);
    // Where each round ran: outer, inner, outer again, no scope.
    let scope_of = |k: usize| match k / texts.len() {
        0 | 1 | 3 => Some(outer.as_str()),
        2 => Some(inner.as_str()),
        _ => None,
    };
    for (target, fields) in [
        ("inline::kv", &["i", "u", "f", "b", "s"][..]),
        ("inline::fields", &["i", "s", "b"][..]),
    ] {
        let got: Vec<_> = events_of(&recs, target).collect();
        assert_eq!(got.len(), n, "{target}");
        for (k, r) in got.iter().enumerate() {
            // In order, with the values of round k.
            let all = json!({
                "i": -(k as i64), "u": 3 * k, "f": k as f64 + 0.5, "b": k % 2 == 1,
                "s": texts[k % texts.len()],
            });
            let want: serde_json::Map<_, _> = fields
                .iter()
                .map(|f| (f.to_string(), all[f].clone()))
                .collect();
            assert_eq!(r["fields"], Value::Object(want), "{target} {k}: {r}");
            assert_eq!(r["service"], "c-inline");
            assert_eq!(r["level"], "INFO");
            assert!(r["file"].as_str().unwrap().ends_with("inline.c"), "{r}");
            match scope_of(k) {
                Some(s) => {
                    assert_eq!(r["scope_id"], s, "{target} {k}: {r}");
                    assert_eq!(r["trace_id"], trace.as_str(), "{target} {k}: {r}");
                }
                None => assert!(r.get("scope_id").is_none(), "{target} {k}: {r}"),
            }
        }
    }
    let abi: Vec<_> = events_of(&recs, "inline::abi")
        .map(|r| r["fields"]["j"].as_u64().unwrap())
        .collect();
    assert_eq!(abi, [0, 1, 2, 3]);
}

#[test]
fn inline_writer_drops_and_counts_when_the_ring_is_full() {
    let InlineRun {
        exe: _,
        prog,
        socket,
        sidecar,
    } = inline_run("burst");
    let sent = 200_000u64;
    // The smallest ring: ~100 events fill it, far faster than the sidecar
    // (on the other core at best) reads them.
    let child = spawn_inline(&prog, &socket, &["burst", &sent.to_string()], Some("4096"));
    let pid = u64::from(child.id());
    let out = success(&child.wait_with_output().unwrap());
    let probes: u64 = printed(&out)["PROBES"].parse().unwrap();
    let total = sent + probes;
    let tally = |r: &[Value]| {
        let events = r.iter().filter(|r| r["kind"] == "event").count() as u64;
        let lost: u64 = r
            .iter()
            .filter(|r| r["kind"] == "loss")
            .map(|r| r["fields"]["lost"].as_u64().unwrap())
            .sum();
        (events, lost)
    };
    let recs = records_until(&sidecar, pid, |r| {
        let (e, l) = tally(r);
        e + l >= total
    });
    drop(sidecar);
    let (events, lost) = tally(&recs);
    assert_eq!(events + lost, total, "every event written or counted");
    assert!(lost > 0, "a 4 KiB ring cannot hold the burst");
    // What was written is in order.
    let seqs: Vec<u64> = events_of(&recs, "inline::burst")
        .map(|r| r["fields"]["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(recs
        .iter()
        .filter(|r| r["target"] == "inline::burst")
        .all(|r| r["fields"]["s"] == "short"));
}

#[test]
fn inline_writer_after_fork_writes_the_childs_own_ring() {
    let InlineRun {
        exe: _,
        prog,
        socket,
        sidecar,
    } = inline_run("fork");
    let child = spawn_inline(&prog, &socket, &["fork"], None);
    let parent = u64::from(child.id());
    let out = success(&child.wait_with_output().unwrap());
    assert!(out.lines().any(|l| l == "DONE"), "{out}");
    let forked: u64 = printed(&out)["CHILD"].parse().unwrap();
    // Each process's `inline::fork` events, as `(who, seq)`, by the pid
    // the sidecar knows the writing ring's client by.
    let mut by_pid: HashMap<u64, Vec<(String, u64)>> = HashMap::new();
    let mut losses = Vec::new();
    let deadline = Instant::now() + LIMIT;
    let done = |m: &HashMap<u64, Vec<(String, u64)>>| {
        m.get(&parent).is_some_and(|v| v.len() >= 4) && m.get(&forked).is_some_and(|v| v.len() >= 3)
    };
    while !done(&by_pid) && Instant::now() < deadline {
        if let Ok(line) = sidecar.lines.recv_timeout(Duration::from_millis(100)) {
            let r: Value = serde_json::from_str(&line).unwrap();
            let pid = r["pid"].as_u64().unwrap_or(0);
            if r["kind"] == "loss" && (pid == parent || pid == forked) {
                losses.push(r.clone());
            }
            if r["kind"] == "event" && r["target"] == "inline::fork" {
                let who = r["fields"]["who"].as_str().unwrap().to_owned();
                let seq = r["fields"]["seq"].as_u64().unwrap();
                by_pid.entry(pid).or_default().push((who, seq));
            }
        }
    }
    drop(sidecar);
    let want = |who: &str, n: u64| (0..n).map(|k| (who.to_owned(), k)).collect::<Vec<_>>();
    // The parent's four events under its pid, none of the child's among
    // them: the child never wrote into the ring it inherited.
    assert_eq!(by_pid.get(&parent), Some(&want("parent", 4)), "{by_pid:?}");
    // The child's, the first through the library, the rest inline after
    // its probe, in order in a ring of its own.
    assert_eq!(by_pid.get(&forked), Some(&want("child", 3)), "{by_pid:?}");
    assert!(losses.is_empty(), "{losses:#?}");
}

/// `distlogd ctl level set DIRECTIVES` against the sidecar at `socket`.
fn ctl_level(exe: &std::path::Path, socket: &std::path::Path, directives: &str) {
    let mut cmd = Command::new(exe);
    cmd.args(["ctl", "level", "set", directives, "--socket"])
        .arg(socket)
        .env_remove("DISTLOG_CTL_SOCKET");
    success(&run(cmd, LIMIT));
}

#[test]
fn inline_call_sites_obey_distlogd_ctl() {
    use std::io::Write;
    let InlineRun {
        exe,
        prog,
        socket,
        sidecar,
    } = inline_run("verdict");
    let mut child = spawn_inline(&prog, &socket, &["verdict"], None);
    let pid = u64::from(child.id());
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = |want: &str| loop {
        let l = lines.next().expect("the program ended early").unwrap();
        if l == want {
            return;
        }
    };
    // The call site is on (its verdict cached, written inline), then its
    // target is turned off and on again while the process runs: each
    // change moves the filter epoch, which the inline writer compares.
    next("READY off");
    ctl_level(&exe, &socket, "info,inline::noisy=warn");
    writeln!(stdin, "go").unwrap();
    next("READY on");
    ctl_level(&exe, &socket, "info");
    writeln!(stdin, "go").unwrap();
    next("DONE");
    drop(stdin);
    assert!(child.wait().unwrap().success());
    let recs = records_until(&sidecar, pid, |r| {
        events_of(r, "inline::noisy").any(|e| e["fields"]["seq"] == 5)
    });
    drop(sidecar);
    let seqs: Vec<u64> = events_of(&recs, "inline::noisy")
        .map(|r| r["fields"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [0, 1, 4, 5]);
}

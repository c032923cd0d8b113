//! The store end to end: a real sidecar (store under a temp data dir), real
//! client handshakes, then `distlogd tail` and `distlogd tree` reading the
//! store. Records seen on the sidecar's stdout are stored: the router writes
//! the store before stdout.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use distlog::ring::RingHeader;
use distlog::wire::{CallsiteKind, Field, Head, Level, Outcome, Value, PROTOCOL_VERSION};
use serde_json::Value as Json;

const MIN: u64 = 60_000_000_000;

fn distlogd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_distlogd"))
        .args(args)
        .env_remove("DISTLOG_DATA_DIR")
        .env("NO_COLOR", "1")
        .output()
        .expect("run distlogd")
}

fn data_dir(sc: &Sidecar) -> PathBuf {
    sc.socket.parent().unwrap().join("data")
}

/// `distlogd tail --data-dir D -o json ARGS`, parsed.
fn tail_json(data: &Path, args: &[&str]) -> Vec<Json> {
    let mut a = vec!["tail", "--data-dir", data.to_str().unwrap(), "-o", "json"];
    a.extend_from_slice(args);
    let out = distlogd(&a);
    assert!(
        out.status.success(),
        "tail {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("tail -o json prints JSON lines"))
        .collect()
}

fn messages(v: &[Json]) -> Vec<String> {
    v.iter()
        .map(|r| r["message"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn every_filter_alone_and_combined() {
    let mut sc = Sidecar::start("store-filters");
    let data = data_dir(&sc);
    let mut a = TestClient::connect(&sc.socket, "svc-a").expect("welcome");
    let site = |c: &mut TestClient, l, t| c.event_site(l, t, 1, &["message", "order"]);
    let info_db = site(&mut a, Level::Info, "app::db");
    let warn_http = site(&mut a, Level::Warn, "app::http");
    let err_other = site(&mut a, Level::Error, "other::x");
    let debug_db = site(&mut a, Level::Debug, "app::db");
    let ring = a.ring(MIN_DATA_BYTES * 4, 1);
    let tid = gettid();
    let now = now_ns();
    let trace = [0x4b; 16];
    let ev = |c: &TestClient, site, ts, scope, trace, msg, order| {
        c.frame(
            &ring,
            &Head::Event {
                callsite: site,
                ts,
                tid,
                scope,
                trace,
            },
            &[
                Field::Idx(0, Value::Str(msg)),
                Field::Idx(1, Value::U64(order)),
            ],
        )
    };
    ev(&a, info_db, now - 120 * MIN, 0, None, "connected", 1);
    ev(&a, warn_http, now - 30 * MIN, 0, None, "card declined", 42);
    ev(
        &a,
        err_other,
        now - 5 * MIN,
        0x5c,
        Some(trace),
        "Payment Declined",
        42,
    );
    ev(&a, debug_db, now - MIN, 0, None, "debug stuff", 7);
    let mut b = TestClient::connect(&sc.socket, "svc-b").expect("welcome");
    let hello = b.event_site(Level::Info, "b", 1, &["message"]);
    let rb = b.ring(MIN_DATA_BYTES * 4, 1);
    b.frame(
        &rb,
        &Head::Event {
            callsite: hello,
            ts: now,
            tid,
            scope: 0,
            trace: None,
        },
        &[Field::Idx(0, Value::Str("hello from b"))],
    );
    sc.wait_for(4, of("svc-a"));
    sc.wait_for(1, of("svc-b"));

    let q = |args: &[&str]| {
        let mut a = vec!["--kind", "event"];
        a.extend_from_slice(args);
        messages(&tail_json(&data, &a))
    };
    let all = [
        "connected",
        "card declined",
        "Payment Declined",
        "debug stuff",
        "hello from b",
    ];
    assert_eq!(q(&[]), all, "oldest first, across partitions");
    assert_eq!(q(&["--service", "svc-a"]), all[..4]);
    assert_eq!(q(&["--since", "1h"]), all[1..]);
    assert_eq!(q(&["--since", "10m"]), all[2..]);
    assert_eq!(q(&["--until", "10m"]), all[..2]);
    assert_eq!(q(&["-p", "warn"]), ["card declined", "Payment Declined"]);
    assert_eq!(q(&["-p", "err"]), ["Payment Declined"]);
    assert_eq!(
        q(&["--target", "app::"]),
        ["connected", "card declined", "debug stuff"]
    );
    assert_eq!(
        q(&["--field", "order=42"]),
        ["card declined", "Payment Declined"]
    );
    assert_eq!(
        q(&["--grep", "declined"]),
        ["card declined", "Payment Declined"]
    );
    assert_eq!(q(&["--grep", "Declined"]), ["Payment Declined"]);
    let t = "4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b";
    assert_eq!(q(&["--trace", t]), ["Payment Declined"]);
    assert_eq!(q(&["--scope", "000000000000005c"]), ["Payment Declined"]);
    let pid = std::process::id().to_string();
    assert_eq!(q(&["--pid", &pid, "--service", "svc-b"]), ["hello from b"]);
    assert_eq!(q(&["--pid", "1"]), Vec::<String>::new());
    let host = nix::unistd::gethostname().unwrap();
    assert_eq!(q(&["--host", host.to_str().unwrap()]), all);
    assert_eq!(q(&["--host", "elsewhere"]), Vec::<String>::new());
    assert_eq!(
        q(&["--field", "order=42", "-p", "err", "--since", "1h"]),
        ["Payment Declined"]
    );
    assert_eq!(q(&["-n", "2"]), ["debug stuff", "hello from b"]);
    assert_eq!(q(&["-n", "2", "--service", "svc-a"]), all[2..4]);
    assert_eq!(q(&["--class", "usage"]), Vec::<String>::new());

    // -o json is exactly the record schema: what stdout printed
    let stored = tail_json(&data, &["--service", "svc-b"]);
    let printed: Vec<&Json> = sc.seen.iter().filter(|r| r["service"] == "svc-b").collect();
    assert_eq!(stored.iter().collect::<Vec<_>>(), printed);

    // plain when piped: no ANSI, level, service[pid], target, message, fields
    let out = distlogd(&[
        "tail",
        "--data-dir",
        data.to_str().unwrap(),
        "--field",
        "order=42",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains('\x1b'), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains(&format!(
            "WARN  svc-a[{pid}] app::http: card declined  order=42"
        )),
        "{text}"
    );
    assert!(lines[1].contains("ERROR svc-a"), "{text}");

    // files are private
    use std::os::unix::fs::PermissionsExt;
    let store = data.join("store");
    assert_eq!(
        std::fs::metadata(&store).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let db = std::fs::read_dir(store.join("log"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_str().unwrap().ends_with(".db"))
        .unwrap();
    assert_eq!(db.metadata().unwrap().permissions().mode() & 0o777, 0o600);
    drop((a, b));
}

#[test]
fn tree_json_three_scopes_two_processes() {
    let mut sc = Sidecar::start("store-tree");
    let data = data_dir(&sc);
    let trace = [0x7e; 16];
    let tid = gettid();
    let t0 = now_ns();
    let mut a = TestClient::connect(&sc.socket, "checkout").expect("welcome");
    let sa = a.site(
        CallsiteKind::Scope,
        Level::Info,
        "checkout",
        "shop",
        1,
        &["order"],
    );
    let ea = a.event_site(Level::Info, "shop", 2, &["message"]);
    let ra = a.ring(MIN_DATA_BYTES * 4, 1);
    let mut b = TestClient::connect(&sc.socket, "payments").expect("welcome");
    let sb = b.site(
        CallsiteKind::Scope,
        Level::Info,
        "charge",
        "pay",
        1,
        &["card"],
    );
    let sdb = b.site(CallsiteKind::Scope, Level::Info, "db", "pay::db", 3, &[]);
    let eb = b.event_site(Level::Error, "pay", 2, &["message", "reason"]);
    let rb = b.ring(MIN_DATA_BYTES * 4, 1);
    let open = |callsite, scope, parent, ts, remote| Head::ScopeOpen {
        callsite,
        ts,
        tid,
        scope,
        parent,
        trace,
        remote_parent: remote,
    };
    a.frame(
        &ra,
        &open(sa, 0x1, 0, t0, false),
        &[Field::Idx(0, Value::U64(42))],
    );
    a.frame(
        &ra,
        &Head::Event {
            callsite: ea,
            ts: t0 + 1_000,
            tid,
            scope: 0x1,
            trace: Some(trace),
        },
        &[Field::Idx(0, Value::Str("paid"))],
    );
    b.frame(&rb, &open(sb, 0x2, 0x1, t0 + 2_000, true), &[]);
    b.frame(
        &rb,
        &Head::ScopeRecord {
            scope: 0x2,
            ts: t0 + 2_500,
        },
        &[Field::Idx(0, Value::Str("visa"))],
    );
    b.frame(&rb, &open(sdb, 0x3, 0x2, t0 + 3_000, false), &[]);
    b.frame(
        &rb,
        &Head::ScopeClose {
            scope: 0x3,
            ts: t0 + 4_000,
            tid,
            outcome: Outcome::Ok,
        },
        &[],
    );
    b.frame(
        &rb,
        &Head::Event {
            callsite: eb,
            ts: t0 + 5_000,
            tid,
            scope: 0x2,
            trace: Some(trace),
        },
        &[
            Field::Idx(0, Value::Str("declined")),
            Field::Idx(1, Value::Str("insufficient funds")),
        ],
    );
    b.frame(
        &rb,
        &Head::ScopeClose {
            scope: 0x2,
            ts: t0 + 8_000,
            tid,
            outcome: Outcome::Error,
        },
        &[],
    );
    a.frame(
        &ra,
        &Head::ScopeClose {
            scope: 0x1,
            ts: t0 + 12_000,
            tid,
            outcome: Outcome::Ok,
        },
        &[],
    );
    sc.wait_for(3, |v| v["kind"] == "scope_close");
    let t = "7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e";
    let d = data.to_str().unwrap();
    let out = distlogd(&["tree", t, "--data-dir", d, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: Json = serde_json::from_slice(&out.stdout).expect("tree --json is JSON");
    assert_eq!(j["trace_id"], t);
    assert_eq!(j["scopes"].as_array().unwrap().len(), 1, "{j:#}");
    let root = &j["scopes"][0];
    assert_eq!(root["name"], "checkout");
    assert_eq!(root["service"], "checkout");
    assert_eq!(root["outcome"], "ok");
    assert_eq!(root["duration_ns"], 12_000);
    assert_eq!(root["fields"]["order"], 42);
    assert_eq!(root["events"][0]["message"], "paid");
    assert_eq!(root["events"][0]["kind"], "event");
    let charge = &root["children"][0];
    assert_eq!(charge["name"], "charge");
    assert_eq!(charge["service"], "payments");
    assert_eq!(charge["parent_id"], "0000000000000001");
    assert_eq!(charge["outcome"], "error");
    assert_eq!(
        charge["fields"]["card"], "visa",
        "scope_record fields merged"
    );
    assert_eq!(charge["events"][0]["message"], "declined");
    assert_eq!(
        charge["events"][0]["fields"]["reason"],
        "insufficient funds"
    );
    let db = &charge["children"][0];
    assert_eq!(db["name"], "db");
    assert_eq!(db["outcome"], "ok");
    assert_eq!(db["children"].as_array().unwrap().len(), 0);

    let plain = distlogd(&["tree", t, "--data-dir", d]);
    let text = String::from_utf8(plain.stdout).unwrap();
    assert!(!text.contains('\x1b'), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("checkout  [checkout pid "), "{text}");
    assert!(lines[0].ends_with("12.0 µs  ok   order=42"), "{text}");
    assert_eq!(lines[1], "├─ INFO paid", "{text}");
    assert!(lines[2].starts_with("└─ charge  [payments pid "), "{text}");
    assert!(lines[2].ends_with("6.0 µs  error   card=visa"), "{text}");

    let unknown = distlogd(&["tree", "00000000000000000000000000000001", "--data-dir", d]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not found"));
    drop((a, b));
}

#[test]
fn kill_9_between_commit_and_release_stores_each_record_once() {
    let mut sc = Sidecar::start("store-kill9");
    let socket = sc.socket.clone();
    let data = data_dir(&sc);
    let table = new_table(64 << 10);
    let mut c = TestClient::connect_with(&socket, "svc-once", PROTOCOL_VERSION, table, false)
        .expect("welcome");
    let site = c.event_site(Level::Info, "t", 1, &["n"]);
    let (seg, _) = new_ring_seg(MIN_DATA_BYTES * 4, 1, 0);
    c.hand(seg, 1);
    let ring = TestRing::over(seg);
    for n in 0..20u64 {
        c.event(&ring, site, now_ns(), 1, &[Field::Idx(0, Value::U64(n))]);
    }
    sc.wait_for(20, of("svc-once"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sc.pid() as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    sc.wait_exit();
    drop(c);
    // A sidecar killed after its commit and before its release: the ring's
    // read position still says nothing was read.
    // SAFETY: the segment is mapped for the whole test and starts with the
    // ring header (that is how `new_ring_seg` made it).
    let hdr = unsafe { &*(seg.as_ptr() as *const RingHeader) };
    hdr.cons
        .read_pos
        .store(0, std::sync::atomic::Ordering::Release);
    hdr.cons
        .read_seq
        .store(0, std::sync::atomic::Ordering::Release);
    for n in 20..30u64 {
        c_push(&ring, site, n);
    }
    let mut sc2 = Sidecar::start_at(&socket).expect("second sidecar");
    let c2 = TestClient::connect_with(&socket, "svc-once", PROTOCOL_VERSION, table, false)
        .expect("welcome");
    c2.hand(seg, 1);
    let again = sc2.wait_for(30, of("svc-once"));
    assert_eq!(again.len(), 30, "stdout sees the re-read records again");
    let stored: Vec<u64> = tail_json(&data, &["--service", "svc-once", "--kind", "event"])
        .iter()
        .map(|r| r["fields"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(
        stored,
        (0..30).collect::<Vec<_>>(),
        "each record stored once"
    );
    drop(c2);
}

fn c_push(ring: &TestRing, site: u32, n: u64) {
    let mut buf = [0u8; 128];
    let mut e = distlog::wire::Encoder::new(
        &mut buf,
        &Head::Event {
            callsite: site,
            ts: now_ns(),
            tid: 1,
            scope: 0,
            trace: None,
        },
    );
    e.field(&Field::Idx(0, Value::U64(n)));
    ring.push_raw(None, e.finish().unwrap());
}

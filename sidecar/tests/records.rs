//! Records from a real client handshake to the JSON lines on stdout.

mod common;

use common::*;
use distlog::wire::{CallsiteKind, Field, Head, Level, Outcome, Value};
use distlogd::timestamp::Timestamp;
use serde_json::json;

#[test]
fn events_with_typed_fields() {
    let mut sc = Sidecar::start("events");
    let mut c = TestClient::connect(&sc.socket, "svc-events").expect("welcome");
    let site = c.event_site(
        Level::Warn,
        "app::db",
        42,
        &[
            "message", "i", "u", "f", "ok", "s", "dbg", "wide", "huge", "neg_wide",
        ],
    );
    let ring = c.ring(MIN_DATA_BYTES * 4, 1);
    let tid = gettid();
    let ts = now_ns();
    c.event(
        &ring,
        site,
        ts,
        tid,
        &[
            Field::Idx(0, Value::Debug("connected to db")),
            Field::Idx(1, Value::I64(i64::MIN)),
            Field::Idx(2, Value::U64(u64::MAX)),
            Field::Idx(3, Value::F64(2.5)),
            Field::Idx(4, Value::Bool(true)),
            Field::Idx(5, Value::Str("a \"quoted\"\nline")),
            Field::Idx(6, Value::Debug("Some(3)")),
            Field::Idx(7, Value::U128(7)),
            Field::Idx(8, Value::U128(u128::MAX)),
            Field::Idx(9, Value::I128(-5)),
            Field::Idx(200, Value::I64(1)),
            Field::Named("late", Value::Str("named at run time")),
        ],
    );
    for n in 0..3i64 {
        c.event(&ring, site, ts + 1, tid, &[Field::Idx(1, Value::I64(n))]);
    }
    let recs = sc.wait_for(4, of("svc-events"));
    let r = &recs[0];
    assert_eq!(r["kind"], "event");
    assert_eq!(r["ts"], Timestamp(ts).to_string());
    assert_eq!(r["level"], "WARN");
    assert_eq!(r["service"], "svc-events");
    assert_eq!(r["pid"], std::process::id());
    assert!(r.get("pid_unverified").is_none(), "kernel pid is verified");
    assert_eq!(r["tid"], tid);
    assert_eq!(r["target"], "app::db");
    assert_eq!(r["file"], "tests/x.rs");
    assert_eq!(r["line"], 42);
    assert_eq!(r["message"], "connected to db");
    assert!(!r["host"].as_str().unwrap().is_empty());
    assert_eq!(
        r["fields"],
        json!({
            "i": i64::MIN, "u": u64::MAX, "f": 2.5, "ok": true, "s": "a \"quoted\"\nline",
            "dbg": "Some(3)", "wide": 7, "huge": u128::MAX.to_string(), "neg_wide": -5,
            "field200": 1, "late": "named at run time",
        })
    );
    assert_eq!(
        r["fields"]["u"].as_u64(),
        Some(u64::MAX),
        "u64 stays a JSON number"
    );
    for (n, r) in recs[1..].iter().enumerate() {
        assert_eq!(r["fields"], json!({ "i": n }));
        assert!(r.get("message").is_none());
        assert!(r.get("trace_id").is_none() && r.get("scope_id").is_none());
    }
    drop(c);
    assert!(sc.terminate().success());
}

#[test]
fn scopes_open_record_close_and_abandoned() {
    let mut sc = Sidecar::start("scopes");
    let mut c = TestClient::connect(&sc.socket, "svc-scopes").expect("welcome");
    let span = c.site(
        CallsiteKind::Scope,
        Level::Info,
        "handle_request",
        "app::http",
        7,
        &["path", "status"],
    );
    let ev = c.event_site(Level::Info, "app::http", 9, &["message"]);
    let ring = c.ring(MIN_DATA_BYTES * 4, 1);
    let trace = [0xab; 16];
    let tid = gettid();
    let t0 = now_ns();
    let open = |scope, parent, ts| Head::ScopeOpen {
        callsite: span,
        ts,
        tid,
        scope,
        parent,
        trace,
        remote_parent: parent == 0x77,
    };
    c.frame(
        &ring,
        &open(0x11, 0x77, t0),
        &[Field::Idx(0, Value::Str("/a"))],
    );
    c.frame(&ring, &open(0x22, 0x11, t0 + 10), &[]);
    c.frame(
        &ring,
        &Head::Event {
            callsite: ev,
            ts: t0 + 20,
            tid,
            scope: 0x22,
            trace: Some(trace),
        },
        &[Field::Idx(0, Value::Str("inside"))],
    );
    c.frame(
        &ring,
        &Head::ScopeRecord {
            scope: 0x11,
            ts: t0 + 30,
        },
        &[Field::Idx(1, Value::U64(200))],
    );
    c.frame(
        &ring,
        &Head::ScopeClose {
            scope: 0x22,
            ts: t0 + 1_500,
            tid,
            outcome: Outcome::Error,
        },
        &[],
    );
    // 0x11 stays open: abandoned when the client goes.
    let recs = sc.wait_for(5, of("svc-scopes"));
    let (o1, o2, e, rec, close) = (&recs[0], &recs[1], &recs[2], &recs[3], &recs[4]);
    assert_eq!(o1["kind"], "scope_open");
    assert_eq!(o1["name"], "handle_request");
    assert_eq!(o1["trace_id"], "abababababababababababababababab");
    assert_eq!(o1["scope_id"], "0000000000000011");
    assert_eq!(o1["parent_id"], "0000000000000077");
    assert_eq!(o1["remote_parent"], true);
    assert_eq!(o1["fields"], json!({"path": "/a"}));
    assert_eq!(o2["parent_id"], "0000000000000011");
    assert!(o2.get("remote_parent").is_none());
    assert_eq!(e["kind"], "event");
    assert_eq!(e["message"], "inside");
    assert_eq!(e["scope_id"], "0000000000000022");
    assert_eq!(
        e["parent_id"], "0000000000000011",
        "an event carries its scope's parent"
    );
    assert_eq!(e["trace_id"], o1["trace_id"]);
    assert_eq!(rec["kind"], "scope_record");
    assert_eq!(rec["fields"], json!({"status": 200}));
    assert_eq!(rec["name"], "handle_request");
    assert_eq!(close["kind"], "scope_close");
    assert_eq!(close["outcome"], "error");
    assert_eq!(close["duration_ns"], 1_490);
    assert_eq!(close["name"], "handle_request");
    assert_eq!(close["parent_id"], "0000000000000011");

    drop(c); // connection ends with scope 0x11 open
    let ab = sc.wait_for(1, |v| v["outcome"] == "abandoned");
    assert_eq!(ab[0]["kind"], "scope_close");
    assert_eq!(ab[0]["scope_id"], "0000000000000011");
    assert_eq!(ab[0]["name"], "handle_request");
    assert_eq!(ab[0]["service"], "svc-scopes");
    assert!(ab[0]["duration_ns"].as_u64().is_some());
    assert!(sc.terminate().success());
    assert_eq!(
        sc.seen
            .iter()
            .filter(|v| v["outcome"] == "abandoned")
            .count(),
        1
    );
}

#[test]
fn loss_counter_becomes_a_loss_record() {
    let mut sc = Sidecar::start("loss");
    let mut c = TestClient::connect(&sc.socket, "svc-loss").expect("welcome");
    let site = c.event_site(Level::Info, "t", 1, &["message"]);
    let ring = c.ring(MIN_DATA_BYTES, 3);
    ring.hdr
        .prod
        .owner_tid
        .store(4242, std::sync::atomic::Ordering::Relaxed);
    ring.hdr
        .prod
        .dropped
        .fetch_add(7, std::sync::atomic::Ordering::Relaxed);
    c.event(
        &ring,
        site,
        now_ns(),
        4242,
        &[Field::Idx(0, Value::Str("after the loss"))],
    );
    let loss = sc.wait_for(1, |v| v["kind"] == "loss");
    let l = &loss[0];
    assert_eq!(l["level"], "WARN");
    assert_eq!(l["service"], "svc-loss");
    assert_eq!(l["tid"], 4242);
    assert_eq!(l["fields"], json!({"lost": 7, "ring": 3}));
    assert_eq!(
        l["message"],
        format!(
            "7 records lost by pid {} thread 4242 (ring full)",
            std::process::id()
        )
    );
    // more losses later: only the increase is reported
    ring.hdr
        .prod
        .dropped
        .fetch_add(5, std::sync::atomic::Ordering::Relaxed);
    c.event(&ring, site, now_ns(), 4242, &[]);
    let loss = sc.wait_for(2, |v| v["kind"] == "loss");
    assert_eq!(loss[1]["fields"]["lost"], 5);
    sc.wait_for(2, |v| v["kind"] == "event");
    drop(c);
    assert!(sc.terminate().success());
}

#[test]
fn a_ring_really_filled_reports_what_it_dropped() {
    // The client fills its ring while the sidecar may drain it: however the
    // race goes, records + reported losses == pushes.
    let mut sc = Sidecar::start("full");
    let mut c = TestClient::connect(&sc.socket, "svc-full").expect("welcome");
    let site = c.event_site(Level::Info, "t", 1, &["n"]);
    let ring = c.ring(MIN_DATA_BYTES, 1);
    let pushes = 2000u64;
    let mut buf = [0u8; 256];
    for n in 0..pushes {
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
        ring.push_raw(None, e.finish().unwrap()); // no wake-up: the backstop must find them
    }
    let dropped = ring
        .hdr
        .prod
        .dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    let written = ring
        .hdr
        .prod
        .written
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(dropped + written, pushes);
    sc.wait_until("all records and losses", |all| {
        let ev = all.iter().filter(|v| v["kind"] == "event").count() as u64;
        let lost: u64 = all
            .iter()
            .filter(|v| v["kind"] == "loss")
            .map(|v| v["fields"]["lost"].as_u64().unwrap())
            .sum();
        ev == written && lost == dropped
    });
    drop(c);
    assert!(sc.terminate().success());
}

#[test]
fn tsc_timestamps_are_converted() {
    #[cfg(target_arch = "x86_64")]
    {
        let mut sc = Sidecar::start("tsc");
        let mut c = TestClient::connect_with(
            &sc.socket,
            "svc-tsc",
            distlog::wire::PROTOCOL_VERSION,
            new_table(8192),
            true,
        )
        .expect("welcome");
        let site = c.event_site(Level::Debug, "t", 1, &[]);
        let ring = c.ring(MIN_DATA_BYTES, 1);
        let before = now_ns();
        // SAFETY: RDTSC has no preconditions on x86-64.
        #[allow(unused_unsafe)]
        let tsc = unsafe { core::arch::x86_64::_rdtsc() };
        c.event(&ring, site, tsc, 1, &[]);
        let r = sc.wait_for(1, of("svc-tsc"));
        let ts: Timestamp = r[0]["ts"].as_str().unwrap().parse().unwrap();
        // A sanity bound on the conversion (a wrong rate or offset is off by
        // far more than a minute), not a timing assertion.
        assert!(
            ts.0.abs_diff(before) < 60_000_000_000,
            "{} vs {}",
            ts,
            Timestamp(before)
        );
        assert_eq!(r[0]["level"], "DEBUG");
        drop(c);
        assert!(sc.terminate().success());
    }
}

#[test]
fn pid_from_another_namespace_is_marked_unverified() {
    // The sidecar in a pid namespace of its own cannot see our pid:
    // SO_PEERCRED reports 0 and the hello's pid is used, marked.
    let wrapper = ["unshare", "--pid", "--fork", "--kill-child"];
    let mut sc = match Sidecar::start_wrapped("pidns", &wrapper) {
        Ok(sc) => sc,
        Err(e) => {
            eprintln!("skipped: cannot run the sidecar in a new pid namespace here: {e}");
            return;
        }
    };
    let mut c = TestClient::connect(&sc.socket, "svc-pidns").expect("welcome");
    let site = c.event_site(Level::Info, "t", 1, &[]);
    let ring = c.ring(MIN_DATA_BYTES, 1);
    c.event(&ring, site, now_ns(), 1, &[]);
    let r = sc.wait_for(1, of("svc-pidns"));
    assert_eq!(r[0]["pid"], std::process::id());
    assert_eq!(r[0]["pid_unverified"], true);
}

#[test]
fn a_shared_ring_slot_reserved_by_a_writer_that_died_at_once_is_counted_lost() {
    // A writer of the shared ring that dies between reserving its slot (the
    // CAS on write_pos) and writing even the BUSY word leaves a record of
    // unknown length: the ring cannot be read past it. The records other
    // threads committed behind it must be reported lost, not vanish.
    use distlog::ring::{record_bytes, FLAG_SHARED};
    let mut sc = Sidecar::start("deadslot");
    let mut c = TestClient::connect(&sc.socket, "svc-deadslot").expect("welcome");
    let site = c.event_site(Level::Info, "t", 1, &["n"]);
    let (seg, _) = new_ring_seg(MIN_DATA_BYTES, 0, FLAG_SHARED);
    let ring = TestRing::over(seg);
    c.event(&ring, site, now_ns(), 1, &[Field::Idx(0, Value::U64(0))]);
    // The dead writer's reservation: 16 bytes, header never written.
    ring.hdr.prod.write_pos.fetch_add(
        record_bytes(12) as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    for n in 1..=3u64 {
        c.event(&ring, site, now_ns(), 2, &[Field::Idx(0, Value::U64(n))]);
    }
    c.hand(seg, 0);
    drop(c);
    let all = sc
        .wait_until("the record before the slot and a loss of 3", |all| {
            let lost: u64 = all
                .iter()
                .filter(|v| v["kind"] == "loss")
                .map(|v| v["fields"]["lost"].as_u64().unwrap())
                .sum();
            lost >= 3
        })
        .to_vec();
    let events: Vec<_> = all.iter().filter(|v| v["kind"] == "event").collect();
    assert_eq!(
        events.len(),
        1,
        "only the record before the dead slot is readable"
    );
    let lost: u64 = all
        .iter()
        .filter(|v| v["kind"] == "loss")
        .map(|v| v["fields"]["lost"].as_u64().unwrap())
        .sum();
    assert_eq!(lost, 3, "the three records behind it are counted: {all:?}");
}

/// Run a sidecar in this process that reads one record per ring and
/// round (every round overwrites the records of the one before), let
/// `write` write to it through its socket, and return the first `n`
/// records of services starting with `service` (what `write` returns,
/// its clients, lives until then).
fn one_per_round<T>(
    tag: &str,
    service: &str,
    n: usize,
    write: impl FnOnce(&std::path::Path) -> T,
) -> Vec<distlogd::record::Record> {
    in_process(tag, service, n, 1, write)
}

/// As [`one_per_round`], reading up to `budget` records per ring and round.
fn in_process<T>(
    tag: &str,
    service: &str,
    n: usize,
    budget: usize,
    write: impl FnOnce(&std::path::Path) -> T,
) -> Vec<distlogd::record::Record> {
    use distlogd::{server::Server, sink::ChannelSink, Config, Shutdown};

    let dir = temp_dir(tag);
    let mut config = Config::new(dir.join("distlogd.sock"));
    config.data_dir = dir.join("data");
    config.limits.ring_budget = budget;
    let socket = config.socket.clone();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let server = rt.block_on(async { Server::bind(config) }).expect("bind");
    let (sink, rx) = ChannelSink::new();
    let shutdown = Shutdown::new();
    let task = rt.spawn(server.run(vec![Box::new(sink)], shutdown.clone()));
    let _clients = write(&socket);
    let mut got = Vec::new();
    while got.len() < n {
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("records");
        if r.service.starts_with(service) {
            got.push(r);
        }
    }
    shutdown.trigger();
    rt.block_on(task).expect("server task").expect("server");
    got
}

/// The drain thread overwrites the records of one round with the next
/// round's, skipping strings a record already holds from the same call
/// site: records of other clients and call sites, scope records with and
/// without a known call site, must each come out with only their own.
/// In-process with a budget of one record per ring and round, so that
/// every round reuses the records of the one before.
#[test]
fn recycled_records_carry_only_their_own_values() {
    use distlogd::record::{Kind, Record};

    let waves = 20u64;
    let got = one_per_round("recycled", "svc-recycled", 2 * waves as usize, |socket| {
        let mut a = TestClient::connect(socket, "svc-recycled-a").expect("welcome");
        let mut b = TestClient::connect(socket, "svc-recycled-b").expect("welcome");
        let a1 = a.event_site(Level::Warn, "a::one", 1, &["message", "x"]);
        let a2 = a.event_site(Level::Info, "a::two", 2, &["y"]);
        let b1 = b.event_site(Level::Error, "b::one", 3, &["message", "x", "z"]);
        let span = b.site(
            CallsiteKind::Scope,
            Level::Debug,
            "work",
            "b::span",
            4,
            &["k"],
        );
        let (ra, rb) = (a.ring(MIN_DATA_BYTES * 4, 1), b.ring(MIN_DATA_BYTES * 4, 1));
        let tid = gettid();
        let ts = now_ns();
        for wave in 0..waves {
            // Client a's call sites alternate, so a record slot gets the other
            // call site, or the other client's record, from round to round.
            let (site, fields) = if wave % 2 == 0 {
                (
                    a1,
                    vec![
                        Field::Idx(0, Value::Debug("hello")),
                        Field::Idx(1, Value::U64(wave)),
                    ],
                )
            } else {
                (a2, vec![Field::Idx(0, Value::Str("text"))])
            };
            a.event(&ra, site, ts, tid, &fields);
            match wave % 3 {
                0 => b.event(&rb, b1, ts, tid, &[Field::Idx(2, Value::Bool(true))]),
                1 => b.frame(
                    &rb,
                    &Head::ScopeOpen {
                        callsite: span,
                        ts,
                        tid,
                        scope: 100 + wave,
                        parent: 0,
                        trace: [3; 16],
                        remote_parent: false,
                    },
                    &[Field::Idx(0, Value::U64(wave))],
                ),
                _ => b.frame(
                    &rb,
                    &Head::ScopeRecord { scope: 999, ts },
                    &[Field::Named("late", Value::U64(wave))],
                ),
            }
        }
        (a, b, ra, rb)
    });
    let text = |r: &Record| serde_json::to_value(&r.fields).unwrap();
    let (mut na, mut nb) = (0u64, 0u64);
    for r in &got {
        let target = r.target.as_deref();
        if r.service == "svc-recycled-a" {
            let wave = na;
            na += 1;
            if wave % 2 == 0 {
                assert_eq!(
                    (target, r.line, r.level),
                    (Some("a::one"), Some(1), Level::Warn)
                );
                assert_eq!(r.message.as_deref(), Some("hello"));
                assert_eq!(text(r), json!({ "x": wave }));
            } else {
                assert_eq!(
                    (target, r.line, r.level),
                    (Some("a::two"), Some(2), Level::Info)
                );
                assert_eq!(r.message, None);
                assert_eq!(text(r), json!({ "y": "text" }));
            }
            assert_eq!(r.name, None);
            continue;
        }
        assert_eq!(r.service, "svc-recycled-b");
        let wave = nb;
        nb += 1;
        match wave % 3 {
            0 => {
                assert_eq!(
                    (r.kind, target, r.line, r.level),
                    (Kind::Event, Some("b::one"), Some(3), Level::Error)
                );
                assert_eq!((r.name.as_deref(), r.message.as_deref()), (None, None));
                assert_eq!(text(r), json!({ "z": true }));
            }
            1 => {
                assert_eq!(
                    (r.kind, target, r.line, r.level),
                    (Kind::ScopeOpen, Some("b::span"), Some(4), Level::Debug)
                );
                assert_eq!(r.name.as_deref(), Some("work"));
                assert_eq!(text(r), json!({ "k": wave }));
            }
            _ => {
                assert_eq!(
                    (r.kind, target, r.line, r.level),
                    (Kind::ScopeRecord, None, None, Level::Info)
                );
                assert_eq!(
                    (r.name.as_deref(), r.file.as_deref(), r.message.as_deref()),
                    (None, None, None)
                );
                assert_eq!(text(r), json!({ "late": wave }));
            }
        }
    }
    assert_eq!((na, nb), (waves, waves));
}

/// A recycled record's fields are written in place only over the fields of
/// the same call site: a `scope_close` (no fields) of call site B after an
/// event of call site A leaves the record holding A's field names, and the
/// scope record of B that follows must still carry B's. One client, one
/// ring, one record per round: every record reuses the one before.
#[test]
fn recycled_fields_are_their_own_call_sites() {
    let got = one_per_round("recycled-fields", "svc-recycled-fields", 6, |socket| {
        let mut c = TestClient::connect(socket, "svc-recycled-fields").expect("welcome");
        let a = c.event_site(Level::Info, "c::a", 1, &["a"]);
        let b = c.site(CallsiteKind::Scope, Level::Info, "b", "c::b", 2, &["b"]);
        let ring = c.ring(MIN_DATA_BYTES * 4, 1);
        let (tid, ts) = (gettid(), now_ns());
        let open = |scope| Head::ScopeOpen {
            callsite: b,
            ts,
            tid,
            scope,
            parent: 0,
            trace: [4; 16],
            remote_parent: false,
        };
        let one = [Field::Idx(0, Value::U64(1))];
        c.frame(&ring, &open(1), &one);
        c.frame(&ring, &open(2), &one);
        c.event(&ring, a, ts, tid, &one);
        c.event(&ring, a, ts, tid, &one);
        let close = Head::ScopeClose {
            scope: 1,
            ts,
            tid,
            outcome: Outcome::Ok,
        };
        c.frame(&ring, &close, &[]);
        c.frame(&ring, &Head::ScopeRecord { scope: 2, ts }, &one);
        (c, ring)
    });
    let fields: Vec<serde_json::Value> = got
        .iter()
        .map(|r| serde_json::to_value(&r.fields).unwrap())
        .collect();
    let (fa, fb) = (json!({ "a": 1 }), json!({ "b": 1 }));
    assert_eq!(
        fields,
        [fb.clone(), fb.clone(), fa.clone(), fa, json!({}), fb],
        "{got:?}"
    );
}

/// Two connections of one process (one table): the first has defined scope
/// call site "long" (`t::span`, line 7, field `k`) and written the open of
/// scope 5 with `k = 1`; the second has read no call site of its own.
/// Returns both with their rings, and the open's thread and time.
fn scope_open_on_a_first_connection(
    socket: &std::path::Path,
    svc: &str,
) -> (TestClient, TestRing, TestClient, TestRing, u32, u64) {
    let table = new_table(64 << 10);
    let version = distlog::wire::PROTOCOL_VERSION;
    let mut c1 = TestClient::connect_with(socket, svc, version, table, false).unwrap();
    let span = c1.site(
        CallsiteKind::Scope,
        Level::Warn,
        "long",
        "t::span",
        7,
        &["k"],
    );
    let r1 = c1.ring(MIN_DATA_BYTES * 4, 1);
    let (tid, ts) = (gettid(), now_ns());
    let open = Head::ScopeOpen {
        callsite: span,
        ts,
        tid,
        scope: 5,
        parent: 0,
        trace: [5; 16],
        remote_parent: false,
    };
    c1.frame(&r1, &open, &[Field::Idx(0, Value::U64(1))]);
    let c2 = TestClient::connect_with(socket, svc, version, table, false).unwrap();
    let r2 = c2.ring(MIN_DATA_BYTES * 4, 2);
    (c1, r1, c2, r2, tid, ts)
}

/// Every record of scope "long" described from its call site.
fn assert_described_as_long(got: &[distlogd::record::Record]) {
    for r in got {
        assert_eq!(
            (r.name.as_deref(), r.target.as_deref(), r.line, r.level),
            (Some("long"), Some("t::span"), Some(7), Level::Warn),
            "{r:?}"
        );
    }
}

/// A scope opened on one connection and closed or recorded on another of
/// the same process (a reconnect) is described from its call site even
/// when the second connection has not read that call site yet.
#[test]
fn scope_of_a_reconnected_process_keeps_its_call_site() {
    let got = one_per_round("scope-reconnect", "svc-scope-reconnect", 3, |socket| {
        let (c1, r1, c2, r2, tid, ts) =
            scope_open_on_a_first_connection(socket, "svc-scope-reconnect");
        let k = [Field::Idx(0, Value::U64(2))];
        c2.frame(&r2, &Head::ScopeRecord { scope: 5, ts }, &k);
        let close = Head::ScopeClose {
            scope: 5,
            ts: ts + 9,
            tid,
            outcome: Outcome::Ok,
        };
        c2.frame(&r2, &close, &[]);
        (c1, c2, r1, r2)
    });
    assert_described_as_long(&got);
    assert_eq!(
        serde_json::to_value(&got[1].fields).unwrap(),
        json!({ "k": 2 })
    );
    assert_eq!(got[2].duration_ns, Some(9));
}

/// A process whose scope was opened on a connection that left first: the
/// connection that leaves last abandons the scope, and has read no call
/// site of its own, so it must read the scope's from the process's table
/// (it used only what it had read: the abandoned close had no name).
#[test]
fn abandoned_scope_of_an_earlier_connection_keeps_its_call_site() {
    let got = one_per_round("abandon-reconnect", "svc-abandon-reconnect", 2, |socket| {
        let (c1, _r1, c2, _r2, _, _) =
            scope_open_on_a_first_connection(socket, "svc-abandon-reconnect");
        // The first connection leaves (its ring read, the process still
        // connected through the second), then the second.
        drop(c1);
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(c2);
    });
    assert_eq!(got[1].outcome, Some(distlogd::record::Outcome::Abandoned));
    assert_described_as_long(&got);
}

/// A round reads up to the budget from every ring (here 4 x 1000) and hands
/// its records to sinks that do not want whole rounds every 256 as it goes
/// (the drain's `WRITE_AT`); the rings are released at the round's end.
/// Every record must arrive once, each ring's in its order.
#[test]
fn records_written_mid_round_arrive_once_in_ring_order() {
    let (rings, per) = (4u32, 3000u64);
    let got = in_process(
        "mid-round",
        "svc-mid-round",
        (u64::from(rings) * per) as usize,
        1000,
        |socket| {
            let mut c = TestClient::connect(socket, "svc-mid-round").expect("welcome");
            let site = c.event_site(Level::Info, "mid::round", 1, &["message", "n"]);
            let rs: Vec<TestRing> = (0..rings)
                .map(|i| c.ring(MIN_DATA_BYTES * 64, i + 1))
                .collect();
            for n in 0..per {
                for (i, r) in rs.iter().enumerate() {
                    let fields = [
                        Field::Idx(0, Value::Str("mid")),
                        Field::Idx(1, Value::U64(n)),
                    ];
                    c.event(r, site, now_ns(), i as u32, &fields);
                }
            }
            (c, rs)
        },
    );
    let mut next = vec![0u64; rings as usize];
    for r in &got {
        let tid = r.tid.expect("tid") as usize;
        assert_eq!(
            r.fields.get("n"),
            Some(&serde_json::json!(next[tid])),
            "ring {tid}"
        );
        next[tid] += 1;
    }
    assert_eq!(next, vec![per; rings as usize]);
}

/// Compact records of one call site whose values change kind, count and
/// order from record to record (each reusing the last one's record and
/// field slots, budget one per round): each comes out with exactly its
/// own values, as the postcard layout of the same fields does.
#[test]
fn compact_records_of_one_call_site_in_any_shape() {
    use distlog::wire::compact;

    let shapes: Vec<Vec<Value<'static>>> = vec![
        vec![Value::U64(1), Value::Str("short"), Value::Str("msg one")],
        vec![
            Value::U64(2),
            Value::Str("longer than sixteen bytes"),
            Value::Str("msg two"),
        ],
        // Each value another kind than its slot held.
        vec![Value::Str("now text"), Value::I64(-3), Value::U64(77)],
        vec![Value::F64(f64::NAN), Value::Bool(true), Value::Debug("dbg")],
        vec![Value::F64(1.5), Value::Bool(false), Value::Str("")],
        // Fewer values, then more than the call site names.
        vec![Value::I64(i64::MIN)],
        vec![
            Value::U64(5),
            Value::Str("s"),
            Value::Str("m"),
            Value::U64(9),
        ],
        vec![
            Value::U64(u64::MAX),
            Value::Str("back"),
            Value::Str("msg again"),
        ],
        vec![Value::U64(6), Value::Str("same"), Value::Str("msg same")],
    ];
    let n = shapes.len();
    let write_shapes = shapes.clone();
    let got = one_per_round("compact-shapes", "svc-shapes", 2 * n, move |socket| {
        let mut c = TestClient::connect_with(
            socket,
            "svc-shapes",
            distlog::wire::COMPACT_VERSION,
            new_table(64 << 10),
            false,
        )
        .expect("welcome");
        let site = c.event_site(Level::Info, "shapes", 1, &["n", "s", "message"]);
        let ring = c.ring(MIN_DATA_BYTES * 4, 1);
        let tid = gettid();
        for vals in &write_shapes {
            let mut buf = [0u8; 256];
            let mut w = compact::Writer::new(&mut buf, site, now_ns(), tid, 0, None);
            vals.iter().for_each(|v| w.value(v));
            let len = w.finish().expect("fits");
            ring.push_raw(c.wake.as_ref(), &buf[..len]);
        }
        // The same fields in the postcard layout: the reference.
        for vals in &write_shapes {
            let fields: Vec<Field<'_>> =
                (0u16..).zip(vals).map(|(i, v)| Field::Idx(i, *v)).collect();
            c.event(&ring, site, now_ns(), tid, &fields);
        }
        (c, ring)
    });
    let (compact, postcard) = got.split_at(n);
    for (i, (a, b)) in compact.iter().zip(postcard).enumerate() {
        assert_eq!(
            (&a.message, &a.fields, a.route_key.is_some()),
            (&b.message, &b.fields, b.route_key.is_some()),
            "shape {i}"
        );
    }
    assert_eq!(compact[0].message.as_deref(), Some("msg one"));
    assert_eq!(compact[2].message.as_deref(), Some("77"));
    assert_eq!(
        serde_json::to_value(&compact[3].fields).unwrap(),
        json!({ "n": "NaN", "s": true })
    );
    assert_eq!(compact[3].message.as_deref(), Some("dbg"));
    assert_eq!(
        serde_json::to_value(&compact[6].fields).unwrap(),
        json!({ "n": 5, "s": "s", "field3": 9 })
    );
    assert_eq!(
        serde_json::to_value(&compact[7].fields).unwrap(),
        json!({ "n": u64::MAX, "s": "back" })
    );
}

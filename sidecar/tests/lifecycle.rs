//! Connections that end, reconnect, survive a sidecar restart; the socket
//! file; shutdown; a reader of stdout that goes away.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use common::*;
use distlog::wire::{CallsiteKind, Field, Head, Level, Value, PROTOCOL_VERSION};

const CHILD_ENV: &str = "DISTLOGD_TEST_CHILD_SOCKET";
const KILLED_RECORDS: u64 = 2000;

/// Not a test of its own: the body of the child process that
/// `records_written_before_kill_9_arrive` starts (a no-op otherwise).
#[test]
fn child_writer_entry() {
    let Some(socket) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let mut c = TestClient::connect(socket.as_ref(), "svc-killed").expect("welcome");
    let site = c.event_site(Level::Info, "child", 1, &["n"]);
    let span = c.site(CallsiteKind::Scope, Level::Info, "work", "child", 2, &[]);
    let ring = c.ring(MIN_DATA_BYTES * 64, 1);
    let tid = gettid();
    c.frame(
        &ring,
        &Head::ScopeOpen {
            callsite: span,
            ts: now_ns(),
            tid,
            scope: 5,
            parent: 0,
            trace: [5; 16],
            remote_parent: false,
        },
        &[],
    );
    let mut buf = [0u8; 128];
    for n in 0..KILLED_RECORDS {
        let head = Head::Event {
            callsite: site,
            ts: now_ns(),
            tid,
            scope: 5,
            trace: Some([5; 16]),
        };
        let mut e = distlog::wire::Encoder::new(&mut buf, &head);
        e.field(&Field::Idx(0, Value::U64(n)));
        // No wake-ups: the records are likely still in the ring at the kill.
        assert!(matches!(
            ring.push_raw(None, e.finish().unwrap()),
            distlog::ring::Push::Done { .. }
        ));
    }
    nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::SIGKILL).unwrap();
}

#[test]
fn records_written_before_kill_9_arrive() {
    let mut sc = Sidecar::start("kill9");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "child_writer_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &sc.socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.signal(), Some(9), "the child killed itself: {st}");
    let recs = sc.wait_for(KILLED_RECORDS as usize, |v| {
        v["service"] == "svc-killed" && v["kind"] == "event"
    });
    let got: Vec<u64> = recs
        .iter()
        .map(|r| r["fields"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(got, (0..KILLED_RECORDS).collect::<Vec<_>>());
    assert!(recs.iter().all(|r| r["scope_id"] == "0000000000000005"));
    let ab = sc.wait_for(1, |v| {
        v["service"] == "svc-killed" && v["kind"] == "scope_close"
    });
    assert_eq!(ab[0]["outcome"], "abandoned");
    assert_eq!(ab[0]["name"], "work");
    assert!(sc.terminate().success());
}

#[test]
fn disconnect_after_writing_still_delivers_everything() {
    let mut sc = Sidecar::start("disconnect");
    let mut c = TestClient::connect(&sc.socket, "svc-bye").expect("welcome");
    let site = c.event_site(Level::Info, "t", 1, &["n"]);
    let ring = c.ring(MIN_DATA_BYTES * 64, 1);
    for n in 0..1000u64 {
        c.event(&ring, site, now_ns(), 1, &[Field::Idx(0, Value::U64(n))]);
    }
    drop(c);
    let recs = sc.wait_for(1000, of("svc-bye"));
    let got: Vec<u64> = recs
        .iter()
        .map(|r| r["fields"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
    assert!(sc.terminate().success());
}

fn ns(recs: &[serde_json::Value]) -> Vec<u64> {
    recs.iter()
        .filter(|v| v["kind"] == "event")
        .map(|r| r["fields"]["n"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_ring_handed_again_resumes_without_duplicates() {
    let mut sc = Sidecar::start("reconnect");
    let table = new_table(64 << 10);
    let mut c1 =
        TestClient::connect_with(&sc.socket, "svc-re", PROTOCOL_VERSION, table, false).unwrap();
    let site = c1.event_site(Level::Info, "t", 1, &["n"]);
    let (seg, _) = new_ring_seg(MIN_DATA_BYTES * 4, 1, 0);
    c1.hand(seg, 1);
    let ring = TestRing::over(seg);
    let mut n = 0u64;
    let mut push = |c: &TestClient, k: u64| {
        for _ in 0..k {
            c.event(&ring, site, now_ns(), 1, &[Field::Idx(0, Value::U64(n))]);
            n += 1;
        }
        n
    };
    push(&c1, 10);
    sc.wait_for(10, of("svc-re"));

    // The same process hands the ring on a second connection while the
    // first is still open (a reconnect racing with the old connection's
    // end): the ring moves over, nothing is read twice.
    let c2 =
        TestClient::connect_with(&sc.socket, "svc-re", PROTOCOL_VERSION, table, false).unwrap();
    c2.hand(seg, 1);
    c2.hand(seg, 1); // twice on one connection: ignored
    push(&c2, 10);
    sc.wait_for(20, of("svc-re"));
    drop(c1);

    // A third connection after the second closed.
    drop(c2);
    let c3 =
        TestClient::connect_with(&sc.socket, "svc-re", PROTOCOL_VERSION, table, false).unwrap();
    c3.hand(seg, 1);
    let total = push(&c3, 10);
    sc.wait_for(total as usize, of("svc-re"));
    sc.drain_quiet(Duration::from_millis(200));
    let got = ns(&sc
        .seen
        .iter()
        .filter(|v| v["service"] == "svc-re")
        .cloned()
        .collect::<Vec<_>>());
    assert_eq!(
        got,
        (0..total).collect::<Vec<_>>(),
        "each record exactly once"
    );
    assert!(!sc.stderr().contains("cut off"), "{}", sc.stderr());
    drop(c3);
    assert!(sc.terminate().success());
}

#[test]
fn a_restarted_sidecar_continues_where_the_last_one_released() {
    let mut a = Sidecar::start("restart");
    let socket = a.socket.clone();
    let table = new_table(64 << 10);
    let mut c =
        TestClient::connect_with(&a.socket, "svc-rs", PROTOCOL_VERSION, table, false).unwrap();
    let site = c.event_site(Level::Info, "t", 1, &["n"]);
    let (seg, _) = new_ring_seg(MIN_DATA_BYTES * 4, 1, 0);
    c.hand(seg, 1);
    let ring = TestRing::over(seg);
    for n in 0..5u64 {
        c.event(&ring, site, now_ns(), 1, &[Field::Idx(0, Value::U64(n))]);
    }
    a.wait_for(5, of("svc-rs"));
    assert!(
        a.terminate().success(),
        "clean exit on SIGTERM: {}",
        a.stderr()
    );
    assert!(!socket.exists(), "socket removed on shutdown");
    a.wait_stderr("stopped:");
    assert_eq!(ns(&a.seen), (0..5).collect::<Vec<_>>());
    drop(c);

    // written while no sidecar runs
    for n in 5..10u64 {
        ring.push_raw(None, &{
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
            e.finish().unwrap().to_vec()
        });
    }
    let mut b = Sidecar::start_at(&socket).expect("second sidecar starts");
    let c = TestClient::connect_with(&b.socket, "svc-rs", PROTOCOL_VERSION, table, false).unwrap();
    c.hand(seg, 1);
    b.wait_for(5, of("svc-rs"));
    b.drain_quiet(Duration::from_millis(200));
    assert_eq!(
        ns(&b.seen),
        (5..10).collect::<Vec<_>>(),
        "only what the first did not release"
    );
    drop(c);
    assert!(b.terminate().success());
    drop(a); // removes the directory
}

#[test]
fn socket_file_stale_live_or_foreign() {
    let dir = temp_dir("socketfile");
    // stale: a socket file nobody listens on
    let stale = dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let mut s = Sidecar::start_at(&stale).expect("replaces a stale socket");
    s.wait_stderr("removed stale socket");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&stale).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666);
    }
    // live: a second sidecar on the same socket
    let err = Sidecar::start_at(&stale)
        .err()
        .expect("second sidecar refused");
    assert!(err.contains("another distlogd is running"), "{err}");
    assert!(s.terminate().success());
    // live without a lock file: something answers on the socket
    let live = dir.join("live.sock");
    let _l = std::os::unix::net::UnixListener::bind(&live).unwrap();
    let err = Sidecar::start_at(&live).err().expect("refused");
    assert!(
        err.contains("another distlogd is running") && err.contains("answers"),
        "{err}"
    );
    // foreign: not a socket
    let file = dir.join("file.sock");
    std::fs::write(&file, b"x").unwrap();
    let err = Sidecar::start_at(&file).err().expect("refused");
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
    // a missing directory is created
    let deep = dir.join("a/b/distlogd.sock");
    let mut d = Sidecar::start_at(&deep).expect("creates its directory");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(deep.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode & 0o755, 0o755);
    }
    assert!(d.terminate().success());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_closed_stdout_drops_the_sink_not_the_sidecar() {
    let mut sc = Sidecar::start_with_closed_stdout("epipe");
    let mut c = TestClient::connect(&sc.socket, "svc-pipe").expect("welcome");
    let site = c.event_site(Level::Info, "t", 1, &[]);
    let ring = c.ring(MIN_DATA_BYTES, 1);
    c.event(&ring, site, now_ns(), 1, &[]);
    let deadline = std::time::Instant::now() + WATCHDOG;
    while !sc.stderr().contains("sink stdout") {
        assert!(
            std::time::Instant::now() < deadline,
            "no sink error: {}",
            sc.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // still serving
    let mut d = TestClient::connect(&sc.socket, "svc-pipe-2").expect("still serving");
    let site = d.event_site(Level::Info, "t", 1, &[]);
    let ring = d.ring(MIN_DATA_BYTES, 1);
    d.event(&ring, site, now_ns(), 1, &[]);
    drop((c, d));
    assert!(sc.terminate().success(), "{}", sc.stderr());
    assert_eq!(
        sc.stderr().matches("sink stdout").count(),
        1,
        "reported once"
    );
}

#[test]
fn open_scopes_survive_a_reconnect_and_a_shutdown() {
    let mut sc = Sidecar::start("scope-reconnect");
    let table = new_table(64 << 10);
    let mut c1 =
        TestClient::connect_with(&sc.socket, "svc-sr", PROTOCOL_VERSION, table, false).unwrap();
    let span = c1.site(CallsiteKind::Scope, Level::Info, "long", "t", 1, &[]);
    let (seg, _) = new_ring_seg(MIN_DATA_BYTES * 4, 1, 0);
    c1.hand(seg, 1);
    let ring = TestRing::over(seg);
    let t0 = now_ns();
    let open = |scope| Head::ScopeOpen {
        callsite: span,
        ts: t0,
        tid: 1,
        scope,
        parent: 0,
        trace: [1; 16],
        remote_parent: false,
    };
    c1.frame(&ring, &open(1), &[]);
    c1.frame(&ring, &open(2), &[]);
    sc.wait_for(2, |v| v["kind"] == "scope_open");
    // reconnect: a new connection of the same process, then the old one ends
    let c2 =
        TestClient::connect_with(&sc.socket, "svc-sr", PROTOCOL_VERSION, table, false).unwrap();
    c2.hand(seg, 1);
    drop(c1);
    c2.frame(
        &ring,
        &Head::ScopeClose {
            scope: 1,
            ts: t0 + 77,
            tid: 1,
            outcome: distlog::wire::Outcome::Ok,
        },
        &[],
    );
    let close = sc.wait_for(1, |v| v["kind"] == "scope_close");
    assert_eq!(
        close[0]["outcome"], "ok",
        "not abandoned: the process reconnected"
    );
    assert_eq!(close[0]["duration_ns"], 77);
    assert_eq!(close[0]["name"], "long");
    // shutdown with scope 2 open: the client lives on, nothing is abandoned
    assert!(sc.terminate().success());
    assert_eq!(
        sc.seen
            .iter()
            .filter(|v| v["kind"] == "scope_close")
            .count(),
        1,
        "{:?}",
        sc.seen
    );
    drop(c2);
}

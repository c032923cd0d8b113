//! Protocol version negotiation and the compact event layout, both
//! directions, with real sockets and real memfd rings: a client writes
//! compact records only to a sidecar that welcomed it with version 2 or
//! more; an old sidecar (one from before negotiation: it refuses any other
//! version than 1 and 0) never sees one, also after a restart from a new
//! sidecar to an old one; a new sidecar reads an old client's records and
//! a new client's.
//!
//! The old sidecar and the version-checking new one are played by this
//! test (a socket, the hello, the rings mapped and read with the
//! sidecar's own reader); the real `distlogd` plays the new sidecar in
//! between. The client is this process (its runtime is per process), and
//! a copy of this test binary for the old client.

use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use distlog::proto::{self, ClientMsg, ProtoError, Receiver, SidecarMsg};
use distlog::raw;
use distlog::ring::{self, RawMemory, Reader, RingHeader};
use distlog::segment::Segment;
use distlog::wire::{self, compact, Field, Head, Level, Value};
use distlog_tests::*;

/// How a played sidecar answers a hello.
#[derive(Clone, Copy)]
enum Plays {
    /// A sidecar of version 1, as it was: other versions than 1 and 0 are
    /// refused.
    Old,
    /// A sidecar that speaks version 2: it answers the lower version.
    New,
}

/// What a played sidecar saw.
#[derive(Default)]
struct Seen {
    /// The versions of the hellos, in order.
    hellos: Vec<u16>,
    /// Every record's payload, in order.
    payloads: Vec<Vec<u8>>,
}

struct PlayedSidecar {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    socket: PathBuf,
}

impl PlayedSidecar {
    fn start(socket: &Path, plays: Plays) -> PlayedSidecar {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let stop: Arc<AtomicBool> = Arc::default();
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                if let Ok((s, _)) = listener.accept() {
                    if let Some(c) = hello(s, plays, &seen2) {
                        conns.push(c);
                    }
                }
                for c in &mut conns {
                    c.poll(&seen2);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            for c in &conns {
                let _ = c.sock.shutdown(std::net::Shutdown::Both);
            }
        });
        PlayedSidecar {
            seen,
            stop,
            thread: Some(thread),
            socket: socket.to_owned(),
        }
    }

    fn hellos(&self) -> Vec<u16> {
        self.seen.lock().unwrap().hellos.clone()
    }

    fn take_payloads(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.seen.lock().unwrap().payloads)
    }
}

impl Drop for PlayedSidecar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// One client connection: its rings, read as the sidecar reads them.
struct Conn {
    sock: UnixStream,
    rx: Receiver,
    rings: Vec<(Segment, Reader<'static, RawMemory>)>,
}

fn hello(sock: UnixStream, plays: Plays, seen: &Mutex<Seen>) -> Option<Conn> {
    sock.set_nonblocking(false).unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut rx = Receiver::new();
    let (msg, _table) = rx.recv::<ClientMsg>(sock.as_fd()).ok()?;
    let ClientMsg::Hello { version, .. } = msg else {
        panic!("first message {msg:?}")
    };
    seen.lock().unwrap().hellos.push(version);
    let answer = match plays {
        Plays::Old if version > 1 => SidecarMsg::Refused {
            reason: format!(
                "protocol version {version} is not supported; this sidecar speaks 1 and 0"
            ),
        },
        Plays::Old => SidecarMsg::Welcome {
            version,
            sidecar_pid: std::process::id(),
        },
        Plays::New => SidecarMsg::Welcome {
            version: version.min(2),
            sidecar_pid: std::process::id(),
        },
    };
    // SAFETY: eventfd has no preconditions; the fd is new and ours.
    let wake = unsafe { OwnedFd::from_raw_fd(libc::eventfd(0, libc::EFD_CLOEXEC)) };
    let refused = matches!(answer, SidecarMsg::Refused { .. });
    proto::send(sock.as_fd(), &answer, &[wake.as_fd()]).unwrap();
    if refused {
        return None;
    }
    sock.set_nonblocking(true).unwrap();
    Some(Conn {
        sock,
        rx,
        rings: Vec::new(),
    })
}

impl Conn {
    /// Take new rings, read every ring, release what was read.
    fn poll(&mut self, seen: &Mutex<Seen>) {
        loop {
            match self.rx.recv::<ClientMsg>(self.sock.as_fd()) {
                Ok((ClientMsg::Ring { .. }, mut fds)) => {
                    let seg = Segment::accept(
                        fds.pop().expect("a ring carries its memfd"),
                        ring::HEADER_BYTES + ring::MIN_DATA_BYTES,
                        ring::HEADER_BYTES + ring::MAX_DATA_BYTES,
                    )
                    .unwrap();
                    // SAFETY: the mapping starts with the header (the client
                    // is this process: a trusted peer), and is moved with
                    // its segment into `rings`, which outlives the reader.
                    let hdr: &'static RingHeader = unsafe { &*(seg.as_ptr() as *const RingHeader) };
                    let data = seg.len() - ring::HEADER_BYTES;
                    let geo = ring::check_header(hdr, data).unwrap();
                    // SAFETY: the data region lies inside the mapping, which
                    // lives as long as the reader (see above).
                    let mem = unsafe { RawMemory::new(seg.as_ptr().add(ring::HEADER_BYTES), data) };
                    let reader = Reader::attach(hdr, mem, geo).unwrap();
                    self.rings.push((seg, reader));
                }
                Ok(other) => panic!("unexpected {other:?}"),
                Err(ProtoError::WouldBlock) => break,
                Err(ProtoError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => return,
            }
        }
        for (_, r) in &mut self.rings {
            r.poll(usize::MAX, |_, p| {
                seen.lock().unwrap().payloads.push(p.to_vec());
                true
            })
            .unwrap();
            r.release();
        }
    }
}

fn wait(what: &str, cond: impl Fn() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Write events `from..from + 5` of `site` (fields `n` and `s` by
/// position, so compact when negotiated) and wait until they were read.
fn write_events(site: u32, from: u64) {
    for n in from..from + 5 {
        raw::event(
            site,
            None,
            &[Field::Idx(0, Value::U64(n)), Field::Idx(1, Value::Str("é"))],
        );
    }
    assert!(raw::flush(DEADLINE), "the sidecar read the events");
}

/// The events among `payloads`: each payload's kind byte and its `n`
/// field (decoded as the sidecar decodes).
fn events(payloads: &[Vec<u8>], site: u32) -> Vec<(u8, u64)> {
    payloads
        .iter()
        .filter_map(|p| {
            let frame = wire::decode(p).expect("every record decodes");
            let Head::Event { callsite, .. } = frame.head else {
                return None;
            };
            (callsite == site).then(|| {
                assert_eq!(frame.fields[1], Field::Idx(1, Value::Str("é")));
                let Field::Idx(0, Value::U64(n)) = frame.fields[0] else {
                    panic!("{:?}", frame.fields)
                };
                (p[0], n)
            })
        })
        .collect()
}

/// Write `tracing` events through the layer, one with every value by
/// position (compact when negotiated) and one with a gap (always
/// postcard), and wait until they were read.
fn write_tracing_events(n: u64) {
    use tracing_subscriber::layer::SubscriberExt;
    let sub = tracing_subscriber::registry().with(distlog::DistlogLayer::default());
    tracing::subscriber::with_default(sub, || {
        tracing::info!(n, s = "é", "tracing");
        tracing::info!(n, gap = None::<u64>, s = "é", "tracing");
    });
    assert!(raw::flush(DEADLINE), "the sidecar read the events");
}

/// The kind bytes of the events [`write_tracing_events`] wrote, each
/// decoded as the sidecar decodes: the message, `n` and `s` by index.
fn tracing_kinds(payloads: &[Vec<u8>], n: u64) -> Vec<u8> {
    payloads
        .iter()
        .filter(|p| {
            let frame = wire::decode(p).expect("every record decodes");
            matches!(frame.head, Head::Event { .. })
                && frame.fields.first() == Some(&Field::Idx(0, Value::Str("tracing")))
        })
        .map(|p| {
            let frame = wire::decode(p).expect("decodes");
            assert!(
                frame.fields.contains(&Field::Idx(1, Value::U64(n))),
                "{frame:?}"
            );
            assert!(frame
                .fields
                .iter()
                .any(|f| matches!(f, Field::Idx(_, Value::Str("é")))));
            p[0]
        })
        .collect()
}

fn postcard(ns: std::ops::Range<u64>) -> Vec<(u8, u64)> {
    ns.map(|n| (0, n)).collect()
}

fn compact_kind(ns: std::ops::Range<u64>) -> Vec<(u8, u64)> {
    ns.map(|n| (compact::KIND, n)).collect()
}

fn reconnect_to<T>(start: impl FnOnce() -> T) -> T {
    wait("the client to notice the sidecar went away", || {
        !raw::connected()
    });
    let s = start();
    wait("the client to connect", raw::connected);
    s
}

#[test]
fn compact_records_only_to_sidecars_that_read_them() {
    if std::env::var_os("DISTLOG_NEGOTIATION_CHILD").is_some() {
        return;
    }
    let dir = TempDir::new("negotiation");
    let socket = dir.join("s.sock");

    // 1. An old sidecar: refuses version 2, welcomes the retry with 1; the
    // records are postcard.
    let old = PlayedSidecar::start(&socket, Plays::Old);
    distlog::builder("negotiation")
        .socket(&socket)
        .start()
        .unwrap();
    wait("the client to connect", raw::connected);
    assert_eq!(old.hellos(), [wire::PROTOCOL_VERSION, wire::LEGACY_VERSION]);
    let site = raw::register_event(Level::Info, "neg", "event", None, None, &["n", "s"]).unwrap();
    write_events(site, 0);
    assert_eq!(events(&old.take_payloads(), site), postcard(0..5));

    // 2. Restarted as a new sidecar (the real one): the same events arrive.
    drop(old);
    let real = reconnect_to(|| Sidecar::start(&socket));
    write_events(site, 5);
    let pid = std::process::id();
    let recs = real.wait_for("events 5..10", |r| of_pid(r, pid, "event").count() >= 5);
    let ns: Vec<u64> = of_pid(&recs, pid, "event")
        .map(|r| r["fields"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, (5..10).collect::<Vec<_>>());
    assert!(of_pid(&recs, pid, "event").all(|r| r["fields"]["s"] == "é"));
    // In a scope: the compact head carries its scope and trace.
    let ssite = raw::register_scope(Level::Info, "neg", "scope", None, None, &[]).unwrap();
    let scope = raw::Scope::open(ssite, None, &[]);
    let tp = scope.traceparent();
    write_events(site, 100);
    scope.close(wire::Outcome::Ok);
    let recs = real.wait_for("events in the scope", |r| {
        of_pid(r, pid, "event").count() >= 10
    });
    let (trace, span) = (&tp[3..35], &tp[36..52]);
    for r in of_pid(&recs, pid, "event").skip(5) {
        assert_eq!(r["trace_id"], trace, "{r}");
        assert_eq!(r["scope_id"], span, "{r}");
    }

    // 3. A new sidecar that shows what it reads: compact records.
    drop(real);
    let new = reconnect_to(|| PlayedSidecar::start(&socket, Plays::New));
    assert_eq!(new.hellos(), [wire::PROTOCOL_VERSION]);
    write_events(site, 10);
    assert_eq!(events(&new.take_payloads(), site), compact_kind(10..15));
    write_tracing_events(3);
    assert_eq!(tracing_kinds(&new.take_payloads(), 3), [compact::KIND, 0]);

    // 4. Back to an old sidecar: postcard again.
    drop(new);
    let old = reconnect_to(|| PlayedSidecar::start(&socket, Plays::Old));
    write_events(site, 15);
    assert_eq!(events(&old.take_payloads(), site), postcard(15..20));
    write_tracing_events(4);
    assert_eq!(tracing_kinds(&old.take_payloads(), 4), [0, 0]);

    // 5. An old client (version 1) and a new sidecar: postcard, read by the
    // real sidecar too.
    drop(old);
    let new = PlayedSidecar::start(&dir.join("child.sock"), Plays::New);
    run_old_client(&dir.join("child.sock"));
    assert_eq!(new.hellos(), [wire::LEGACY_VERSION]);
    let child_site = 0; // the child's first call site
    assert_eq!(events(&new.take_payloads(), child_site), postcard(0..5));
    drop(new);
    let real = Sidecar::start(&dir.join("child.sock"));
    let child = run_old_client(&dir.join("child.sock"));
    let recs = real.wait_for("the old client's events", |r| {
        of_pid(r, child, "event").count() >= 5
    });
    let ns: Vec<u64> = of_pid(&recs, child, "event")
        .map(|r| r["fields"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, (0..5).collect::<Vec<_>>());
}

/// Run [`old_client`] in a copy of this binary with version 1 pinned;
/// returns its pid.
fn run_old_client(socket: &Path) -> u32 {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "old_client", "--nocapture", "--test-threads=1"])
        .env("DISTLOG_NEGOTIATION_CHILD", socket)
        .env("DISTLOG_PROTOCOL_VERSION", "1")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success(), "the old client failed");
    pid
}

/// The old client (only as a child of the test above): five events.
#[test]
fn old_client() {
    let Some(socket) = std::env::var_os("DISTLOG_NEGOTIATION_CHILD") else {
        return;
    };
    distlog::builder("negotiation-old")
        .socket(PathBuf::from(socket))
        .start()
        .unwrap();
    wait("the old client to connect", raw::connected);
    let site = raw::register_event(Level::Info, "neg", "event", None, None, &["n", "s"]).unwrap();
    assert_eq!(site, 0);
    write_events(site, 0);
}

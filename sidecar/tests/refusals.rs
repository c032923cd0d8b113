//! What the sidecar refuses, and that a refusal or a hostile client costs
//! only that client.

mod common;

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;

use common::*;
use distlog::proto::{self, ClientMsg, Receiver, SidecarMsg};
use distlog::ring::{HEADER_BYTES, VALID};
use distlog::wire::{
    compact, Field, Level, Value, COMPACT_VERSION, LEGACY_VERSION, PROTOCOL_VERSION,
};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};

/// A good client that writes `n` events and checks they all arrive in order.
fn good_client_roundtrip(sc: &mut Sidecar, service: &str, n: u64) {
    let mut c = TestClient::connect(&sc.socket, service).expect("good client welcomed");
    let site = c.event_site(Level::Info, "good", 1, &["n"]);
    let ring = c.ring(MIN_DATA_BYTES * 16, 1);
    for i in 0..n {
        c.event(&ring, site, now_ns(), 1, &[Field::Idx(0, Value::U64(i))]);
    }
    let recs = sc.wait_for(n as usize, of(service));
    let got: Vec<u64> = recs
        .iter()
        .map(|r| r["fields"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(got, (0..n).collect::<Vec<_>>());
}

/// An unsealed, unallocated memfd of `len` bytes.
fn unsealed_memfd(len: i64) -> std::os::fd::OwnedFd {
    let fd = memfd_create(c"not-sealed", MemFdCreateFlag::MFD_CLOEXEC).unwrap();
    nix::unistd::ftruncate(&fd, len).unwrap();
    fd
}

#[test]
fn protocol_versions_are_negotiated_and_both_layouts_read() {
    let mut sc = Sidecar::start("version");
    // Any version is welcomed with the lower of the two (asserted by
    // `connect_with`): a newer client's, an older one's.
    for v in [PROTOCOL_VERSION + 5, LEGACY_VERSION, 0] {
        TestClient::connect_with(&sc.socket, "svc-v", v, new_table(8192), false)
            .unwrap_or_else(|e| panic!("version {v} refused: {e}"));
    }
    // A client that was welcomed with COMPACT_VERSION writes both layouts
    // into one ring; the sidecar reads them as the same records.
    let mut c = TestClient::connect_with(
        &sc.socket,
        "svc-compact",
        COMPACT_VERSION,
        new_table(64 << 10),
        false,
    )
    .unwrap();
    let site = c.event_site(Level::Info, "compact", 1, &["n", "s"]);
    let ring = c.ring(MIN_DATA_BYTES * 16, 1);
    for i in 0..4u64 {
        let fields = [Field::Idx(0, Value::U64(i)), Field::Idx(1, Value::Str("é"))];
        if i % 2 == 0 {
            c.event(&ring, site, now_ns(), 1, &fields);
        } else {
            let mut buf = [0u8; 128];
            let mut w = compact::Writer::new(&mut buf, site, now_ns(), 7, 0, None);
            for f in &fields {
                let Field::Idx(_, v) = f else { unreachable!() };
                w.value(v);
            }
            let n = w.finish().unwrap();
            ring.push_raw(c.wake.as_ref(), &buf[..n]);
        }
    }
    let recs = sc.wait_for(4, of("svc-compact"));
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["fields"]["n"].as_u64(), Some(i as u64), "{r}");
        assert_eq!(r["fields"]["s"].as_str(), Some("é"), "{r}");
    }
    assert_eq!(recs[1]["tid"].as_u64(), Some(7), "{}", recs[1]);
    good_client_roundtrip(&mut sc, "svc-after-version", 3);
    assert!(sc.terminate().success());
}

#[test]
fn bad_hellos_are_refused() {
    let mut sc = Sidecar::start("hello");
    // empty service name
    let err = TestClient::connect(&sc.socket, "").err().expect("refused");
    assert!(err.contains("service name"), "{err}");
    // a hello without the table
    let s = UnixStream::connect(&sc.socket).unwrap();
    s.set_read_timeout(Some(WATCHDOG)).unwrap();
    let hello = ClientMsg::Hello {
        version: PROTOCOL_VERSION,
        service: "x".into(),
        pid: 1,
        clock_tsc: false,
        library: "t".into(),
    };
    proto::send(s.as_fd(), &hello, &[]).unwrap();
    let (reply, _): (SidecarMsg, _) = Receiver::new().recv(s.as_fd()).unwrap();
    assert!(
        matches!(&reply, SidecarMsg::Refused { reason } if reason.contains("exactly one file descriptor")),
        "{reply:?}"
    );
    // a ring before the hello
    let s = UnixStream::connect(&sc.socket).unwrap();
    s.set_read_timeout(Some(WATCHDOG)).unwrap();
    proto::send(s.as_fd(), &ClientMsg::Ring { index: 1 }, &[]).unwrap();
    let (reply, _): (SidecarMsg, _) = Receiver::new().recv(s.as_fd()).unwrap();
    assert!(
        matches!(&reply, SidecarMsg::Refused { reason } if reason.contains("hello")),
        "{reply:?}"
    );
    // a connection that never says hello does not hold up anyone
    let _silent = UnixStream::connect(&sc.socket).unwrap();
    good_client_roundtrip(&mut sc, "svc-after-hellos", 3);
    assert!(sc.terminate().success());
}

#[test]
fn unsealed_table_is_refused_and_others_are_served() {
    let mut sc = Sidecar::start("unsealed-table");
    let s = UnixStream::connect(&sc.socket).unwrap();
    s.set_read_timeout(Some(WATCHDOG)).unwrap();
    let fd = unsealed_memfd(64 << 10);
    let hello = ClientMsg::Hello {
        version: PROTOCOL_VERSION,
        service: "svc-unsealed".into(),
        pid: std::process::id(),
        clock_tsc: false,
        library: "t".into(),
    };
    proto::send(s.as_fd(), &hello, &[fd.as_fd()]).unwrap();
    let (reply, _): (SidecarMsg, _) = Receiver::new().recv(s.as_fd()).unwrap();
    match reply {
        SidecarMsg::Refused { reason } => {
            assert!(
                reason.contains("call-site table refused") && reason.contains("not sealed"),
                "{reason}"
            )
        }
        other => panic!("not refused: {other:?}"),
    }
    good_client_roundtrip(&mut sc, "svc-after-unsealed", 5);
    assert!(sc.terminate().success());
}

#[test]
fn unsealed_or_bad_rings_close_only_that_connection() {
    let mut sc = Sidecar::start("bad-ring");
    // unsealed ring memfd
    let mut a = TestClient::connect(&sc.socket, "svc-unsealed-ring").expect("welcome");
    let fd = unsealed_memfd((HEADER_BYTES + MIN_DATA_BYTES) as i64);
    proto::send(a.sock.as_fd(), &ClientMsg::Ring { index: 4 }, &[fd.as_fd()]).unwrap();
    assert!(a.wait_closed(), "connection closed");
    // a sealed ring with a bad header (wrong magic)
    let mut b = TestClient::connect(&sc.socket, "svc-bad-magic").expect("welcome");
    let (seg, _) = new_ring_seg(MIN_DATA_BYTES, 2, 0);
    // SAFETY: the segment is ours and leaked; magic is the first word.
    unsafe { *(seg.as_ptr() as *mut u64) = 0xdead };
    b.hand(seg, 2);
    assert!(b.wait_closed(), "connection closed");
    // a ring message without an fd
    let mut c = TestClient::connect(&sc.socket, "svc-no-fd").expect("welcome");
    proto::send(c.sock.as_fd(), &ClientMsg::Ring { index: 1 }, &[]).unwrap();
    assert!(c.wait_closed(), "connection closed");
    good_client_roundtrip(&mut sc, "svc-after-bad-rings", 5);
    let err = sc.stderr();
    assert!(err.contains("ring 4 refused: segment not sealed"), "{err}");
    assert!(
        err.contains("ring 2 refused: bad ring header: magic"),
        "{err}"
    );
    assert!(sc.terminate().success());
}

/// xorshift64*: deterministic garbage.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn garbage_in_a_ring_cuts_off_that_client_only() {
    let mut sc = Sidecar::start("garbage");
    let mut good = TestClient::connect(&sc.socket, "svc-good").expect("welcome");
    let gsite = good.event_site(Level::Info, "good", 1, &["n"]);
    let gring = good.ring(MIN_DATA_BYTES * 16, 1);
    let mut n = 0u64;
    let good_event = |n: &mut u64| {
        good.event(&gring, gsite, now_ns(), 1, &[Field::Idx(0, Value::U64(*n))]);
        *n += 1;
    };

    // 1. undecodable payload (no such Head variant)
    let mut c1 = TestClient::connect(&sc.socket, "svc-bytes").expect("welcome");
    let s1 = c1.event_site(Level::Info, "bad", 1, &[]);
    let r1 = c1.ring(MIN_DATA_BYTES, 1);
    c1.event(&r1, s1, now_ns(), 1, &[]);
    r1.push_raw(c1.wake.as_ref(), &[9, 1, 2, 3, 0xff, 0xff]);
    good_event(&mut n);
    // 2. write position beyond the ring
    let mut c2 = TestClient::connect(&sc.socket, "svc-cursor").expect("welcome");
    let r2 = c2.ring(MIN_DATA_BYTES, 1);
    r2.hdr.prod.write_pos.store(1 << 40, Ordering::Release);
    good_event(&mut n);
    // 3. a record header longer than what was written
    let mut c3 = TestClient::connect(&sc.socket, "svc-length").expect("welcome");
    let r3 = c3.ring(MIN_DATA_BYTES, 1);
    distlog::ring::Memory::store_word(&r3.mem, 0, VALID | 3000, Ordering::Relaxed);
    r3.hdr.prod.write_pos.store(16, Ordering::Release);
    good_event(&mut n);
    // 4. a call site the table does not define
    let mut c4 = TestClient::connect(&sc.socket, "svc-callsite").expect("welcome");
    let r4 = c4.ring(MIN_DATA_BYTES, 1);
    c4.event(&r4, 999, now_ns(), 1, &[]);
    good_event(&mut n);
    // 5. a corrupt table (committed past its end), found when a record needs it
    let mut c5 = TestClient::connect(&sc.socket, "svc-table").expect("welcome");
    let r5 = c5.ring(MIN_DATA_BYTES, 1);
    // SAFETY: the table header is ours; `committed` is its last field (offset 24).
    unsafe {
        (*(c5.table_seg.as_ptr().add(24) as *const std::sync::atomic::AtomicU64))
            .store(1 << 30, Ordering::Release)
    };
    c5.event(&r5, 0, now_ns(), 1, &[]);
    good_event(&mut n);

    for (c, svc, why) in [
        (&mut c1, "svc-bytes", "undecodable record"),
        (&mut c2, "svc-cursor", "corrupt ring cursor"),
        (&mut c3, "svc-length", "length out of bounds"),
        (&mut c4, "svc-callsite", "call site 999"),
        (&mut c5, "svc-table", "corrupt call-site table"),
    ] {
        let ctl = sc.wait_for(1, |v| v["service"] == svc && v["kind"] == "control");
        assert_eq!(ctl[0]["level"], "ERROR");
        let msg = ctl[0]["message"].as_str().unwrap();
        assert!(msg.contains("cut off") && msg.contains(why), "{svc}: {msg}");
        assert!(c.wait_closed(), "{svc}: connection closed by the sidecar");
        sc.wait_stderr(&format!("({svc}): cut off: "));
    }
    // the first client's good record before the garbage still arrived
    assert_eq!(
        sc.seen
            .iter()
            .filter(|v| v["service"] == "svc-bytes" && v["kind"] == "event")
            .count(),
        1
    );

    // 6. random garbage: cursors, header words, bytes, in several rings
    let mut rng = Rng(0x5eed_1234_abcd_9876);
    let mut hostile = Vec::new();
    for k in 0..12 {
        let mut c = TestClient::connect(&sc.socket, &format!("svc-random-{k}")).expect("welcome");
        let site = c.event_site(Level::Info, "r", 1, &["x"]);
        let flags = if k % 2 == 0 { 0 } else { FLAG_SHARED };
        let (seg, _) = new_ring_seg(MIN_DATA_BYTES, 1, flags);
        c.hand(seg, 1);
        let ring = TestRing::over(seg);
        for _ in 0..4 {
            c.event(
                &ring,
                site,
                now_ns(),
                1,
                &[Field::Idx(0, Value::U64(rng.next()))],
            );
        }
        for _ in 0..8 {
            let off = (rng.next() as usize % (MIN_DATA_BYTES / 4)) * 4;
            distlog::ring::Memory::store_word(&ring.mem, off, rng.next() as u32, Ordering::Relaxed);
        }
        match rng.next() % 3 {
            0 => ring
                .hdr
                .prod
                .write_pos
                .store(rng.next() % (1 << 16), Ordering::Release),
            1 => {
                ring.hdr
                    .prod
                    .write_pos
                    .fetch_add(rng.next() % 64, Ordering::Release);
            }
            _ => {
                let mut junk = [0u8; 48];
                junk.iter_mut().for_each(|b| *b = rng.next() as u8);
                ring.push_raw(c.wake.as_ref(), &junk);
            }
        };
        if let Some(w) = &c.wake {
            let _ = nix::unistd::write(w, &1u64.to_ne_bytes());
        }
        hostile.push((c, ring));
        good_event(&mut n);
    }
    for _ in 0..20 {
        good_event(&mut n);
    }
    let recs = sc.wait_for(n as usize, of("svc-good"));
    let got: Vec<u64> = recs
        .iter()
        .map(|r| r["fields"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(
        got,
        (0..n).collect::<Vec<_>>(),
        "the good client lost nothing"
    );
    drop(hostile);
    assert!(
        sc.terminate().success(),
        "the sidecar survived: {}",
        sc.stderr()
    );
}

#[test]
fn a_silent_connection_is_closed_after_the_hello_timeout() {
    let mut sc = Sidecar::start("silent");
    let s = UnixStream::connect(&sc.socket).unwrap();
    s.set_read_timeout(Some(WATCHDOG)).unwrap();
    // half a hello: a length prefix and nothing more
    nix::unistd::write(&s, &100u32.to_le_bytes()).unwrap();
    let r = Receiver::new().recv::<SidecarMsg>(s.as_fd());
    assert!(
        matches!(r, Err(distlog::proto::ProtoError::Closed)),
        "closed by the sidecar: {r:?}"
    );
    sc.wait_stderr("no hello within");
    good_client_roundtrip(&mut sc, "svc-after-silent", 2);
    assert!(sc.terminate().success());
}

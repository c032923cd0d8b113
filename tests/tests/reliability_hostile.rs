//! Reliability: hostile clients that speak the protocol but lie. Each
//! costs only that client; the sidecar survives and keeps serving a good
//! client whose ledger stays intact. (Refusals already covered by
//! `sidecar/tests/refusals.rs` are not repeated here: wrong version, bad
//! hellos, unsealed table and rings, bad ring magic, garbage written once,
//! a hello never finished.)

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use distlog::proto::{self, ClientMsg, ProtoError, Receiver, SidecarMsg};
use distlog::ring::Memory as _;
use distlog::ring::{
    self, Push, RawMemory, Reader, RingHeader, Writer, FLAG_SHARED, HEADER_BYTES, MIN_DATA_BYTES,
};
use distlog::segment::Segment;
use distlog::table::{TableHeader, TableWriter, TABLE_HEADER_BYTES, TABLE_MAGIC, TABLE_VERSION};
use distlog::wire::{
    CallsiteDef, CallsiteKind, Encoder, Field, Head, Level, Value, PROTOCOL_VERSION,
};
use distlog_tests::reliability::*;
use distlog_tests::*;

// ---- a client made of the low-level modules --------------------------------

fn now_ns() -> u64 {
    realtime_ns() as u64
}

fn new_table(len: usize) -> &'static Segment {
    let seg: &'static Segment = Box::leak(Box::new(Segment::create("t", len).unwrap()));
    // SAFETY: fresh page-aligned mapping larger than a header; not shared yet.
    unsafe {
        std::ptr::write(
            seg.as_ptr() as *mut TableHeader,
            TableHeader {
                magic: TABLE_MAGIC,
                version: TABLE_VERSION,
                count: 0,
                total_bytes: len as u64,
                committed: AtomicU64::new(0),
            },
        )
    };
    seg
}

fn new_ring(data: usize, index: u32, flags: u32) -> &'static Segment {
    static ID: AtomicU64 = AtomicU64::new(1);
    let seg: &'static Segment =
        Box::leak(Box::new(Segment::create("r", HEADER_BYTES + data).unwrap()));
    let id = [now_ns(), ID.fetch_add(1, Ordering::Relaxed)];
    // SAFETY: as in `new_table`.
    unsafe {
        std::ptr::write(
            seg.as_ptr() as *mut RingHeader,
            RingHeader::new(data, id, flags, index),
        )
    };
    seg
}

struct Ring {
    hdr: &'static RingHeader,
    mem: RawMemory,
    w: Writer<'static, RawMemory>,
}

impl Ring {
    fn over(seg: &'static Segment) -> Ring {
        // SAFETY: the leaked segment starts with an initialised header.
        let hdr: &'static RingHeader = unsafe { &*(seg.as_ptr() as *const RingHeader) };
        // SAFETY: the data region lies inside the leaked mapping.
        let mem =
            unsafe { RawMemory::new(seg.as_ptr().add(HEADER_BYTES), seg.len() - HEADER_BYTES) };
        Ring {
            hdr,
            mem,
            w: Writer::new(hdr, mem),
        }
    }
    fn push(&self, b: &[u8]) -> Push {
        // SAFETY: one writer thread per exclusive ring in these tests.
        unsafe { self.w.push(b) }
    }
}

struct Low {
    sock: UnixStream,
    table: TableWriter<'static, RawMemory>,
    wake: Option<OwnedFd>,
}

fn hello(service: &str, pid: u32) -> ClientMsg {
    ClientMsg::Hello {
        version: PROTOCOL_VERSION,
        service: service.into(),
        pid,
        clock_tsc: false,
        library: "reliability".into(),
    }
}

impl Low {
    fn connect(sc: &LiveSidecar, service: &str) -> Result<Low, String> {
        Self::connect_seg(sc, &hello(service, std::process::id()), new_table(64 << 10))
    }
    fn connect_seg(
        sc: &LiveSidecar,
        h: &ClientMsg,
        table: &'static Segment,
    ) -> Result<Low, String> {
        let sock = UnixStream::connect(&sc.socket).map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(DEADLINE)).unwrap();
        proto::send(sock.as_fd(), h, &[table.fd()]).map_err(|e| e.to_string())?;
        let (reply, mut fds): (SidecarMsg, _) = Receiver::new()
            .recv(sock.as_fd())
            .map_err(|e| e.to_string())?;
        match reply {
            SidecarMsg::Welcome { .. } => {
                // SAFETY: the leaked table segment starts with its header.
                let hdr: &'static TableHeader = unsafe { &*(table.as_ptr() as *const TableHeader) };
                // SAFETY: entries region inside the leaked mapping.
                let mem = unsafe {
                    RawMemory::new(
                        table.as_ptr().add(TABLE_HEADER_BYTES),
                        table.len() - TABLE_HEADER_BYTES,
                    )
                };
                fds.truncate(1);
                Ok(Low {
                    sock,
                    table: TableWriter::new(hdr, mem),
                    wake: fds.pop(),
                })
            }
            SidecarMsg::Refused { reason } => Err(reason),
            other => Err(format!("{other:?}")),
        }
    }
    fn site(&mut self, name: &str, fields: &[&str]) -> u32 {
        let mut d = CallsiteDef {
            id: 0,
            kind: CallsiteKind::Event,
            level: Level::Info,
            name,
            target: "hostile",
            file: None,
            line: None,
            fields: fields.to_vec(),
            message: None,
        };
        self.table.append(&mut d).unwrap()
    }
    fn hand(&self, seg: &Segment, index: u32) {
        proto::send(self.sock.as_fd(), &ClientMsg::Ring { index }, &[seg.fd()]).unwrap();
    }
    fn ring(&self, data: usize, index: u32, flags: u32) -> Ring {
        let seg = new_ring(data, index, flags);
        self.hand(seg, index);
        Ring::over(seg)
    }
    fn wake(&self) {
        if let Some(w) = &self.wake {
            let _ = nix::unistd::write(w, &1u64.to_ne_bytes());
        }
    }
    /// Wait until the sidecar closes the connection; true if it did.
    fn closed(&self) -> bool {
        matches!(
            Receiver::new().recv::<SidecarMsg>(self.sock.as_fd()),
            Err(ProtoError::Closed) | Err(ProtoError::Io(_))
        )
    }
}

/// Push like an honest writer would, but with arithmetic that survives a
/// header someone else scribbles on (the library's writer trusts its
/// header: it is the client's own).
fn hostile_push(ring: &Ring, p: &[u8]) {
    let cap = ring::Memory::len(&ring.mem) as u64;
    let need = ring::record_bytes(p.len()) as u64;
    let w = ring
        .hdr
        .prod
        .write_pos
        .load(Ordering::Relaxed)
        .wrapping_add(7)
        & !7;
    let off = w & (cap - 1);
    if cap - off < need {
        ring::Memory::store_word(
            &ring.mem,
            off as usize,
            ring::PAD | (cap - off) as u32,
            Ordering::Release,
        );
        ring.hdr
            .prod
            .write_pos
            .store(w.wrapping_add(cap - off), Ordering::Release);
        return;
    }
    ring.mem.write(off as usize + 4, p);
    ring::Memory::store_word(
        &ring.mem,
        off as usize,
        ring::VALID | p.len() as u32,
        Ordering::Release,
    );
    ring.hdr.prod.written.fetch_add(1, Ordering::Relaxed);
    ring.hdr
        .prod
        .write_pos
        .store(w.wrapping_add(need), Ordering::Release);
}

/// Wait until a kept record satisfies `pred`.
fn wait_kept(sc: &LiveSidecar, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
    let end = Instant::now() + DEADLINE;
    while !sc.kept().iter().any(&pred) {
        assert!(
            Instant::now() < end,
            "timed out waiting for {what}: {}",
            sc.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn event(site: u32, fields: &[Field<'_>]) -> Vec<u8> {
    let mut buf = vec![0u8; 70_000];
    let mut e = Encoder::new(
        &mut buf,
        &Head::Event {
            callsite: site,
            ts: now_ns(),
            tid: 1,
            scope: 0,
            trace: None,
        },
    );
    for f in fields {
        e.field(f);
    }
    e.finish().unwrap().to_vec()
}

/// A good client: writes `n` sequenced events from a thread while the
/// hostile part runs; returns a handle that yields (written, dropped).
struct Good {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u64, u64)>>,
}

impl Good {
    fn start(sc: &LiveSidecar, service: &'static str) -> Good {
        let mut c = Low::connect(sc, service).expect("good client welcomed");
        let site = c.site("good", &["seq", "thread"]);
        let ring = c.ring(MIN_DATA_BYTES * 64, 1, 0);
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seq = 0u64;
            // At least 100 records, however quick the hostile part is.
            while seq < 100 || !s2.load(Ordering::Relaxed) {
                let p = event(
                    site,
                    &[Field::Idx(0, Value::U64(seq)), Field::Idx(1, Value::U64(0))],
                );
                if let Push::Done { wake: true } = ring.push(&p) {
                    c.wake();
                }
                seq += 1;
                std::thread::sleep(Duration::from_micros(500));
            }
            c.wake();
            let r = (
                ring.hdr.prod.written.load(Ordering::Relaxed),
                ring.hdr.prod.dropped.load(Ordering::Relaxed),
            );
            std::mem::forget(c);
            r
        });
        Good {
            stop,
            thread: Some(thread),
        }
    }

    /// Stop writing and check its ledger: nothing lost, in order.
    fn check(mut self, sc: &LiveSidecar, scenario: &str) {
        self.stop.store(true, Ordering::Relaxed);
        let (w, d) = self.thread.take().unwrap().join().unwrap();
        let pid = std::process::id();
        // This process's records: the good client is its only one that
        // writes `thread` fields, so its per-thread order is checked here.
        let t = sc.wait_pid(pid, "the good client's records", |t| {
            t.threads.get(&0).map_or(0, |s| s.count) >= w
        });
        assert_eq!(d, 0, "{scenario}: the good client's ring never filled");
        let s = t.threads.get(&0).copied().unwrap_or_default();
        assert_eq!(s.count, w, "{scenario}: every good record once");
        assert_eq!(s.skipped, 0, "{scenario}: none missing");
        assert_eq!(s.backwards, 0, "{scenario}: in order");
        figure(scenario, "good_client_records", w);
        figure(scenario, "good_client_lost", 0);
    }
}

fn sidecar(tag: &str) -> (TempDir, LiveSidecar) {
    let dir = TempDir::new(tag);
    let sc = LiveSidecar::start(&dir.join("s.sock"), |v| v["kind"] == "control");
    (dir, sc)
}

fn finish_ok(mut c: Child) -> String {
    let mut out = String::new();
    c.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let end = Instant::now() + DEADLINE * 3;
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            assert!(st.success(), "client failed: {st}");
            return out;
        }
        assert!(Instant::now() < end, "client did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---- the tests ---------------------------------------------------------------

/// Found by `fuzz/fuzz_targets/ring_reader.rs`: a ring whose `read_seq` is
/// near `u64::MAX` (or whose positions are near the top of the range) made
/// the reader's arithmetic overflow, which in a debug build panicked the
/// sidecar's drain thread and so stopped the whole sidecar.
#[test]
fn hostile_sequence_numbers_and_positions_do_not_overflow() {
    // The reader alone: records at honest positions, then cursors a
    // hostile client set.
    for (seq, pos) in [
        (u64::MAX - 1, None),
        (0, Some(u64::MAX - 7)),
        (u64::MAX, Some((1u64 << 62) + 8)),
    ] {
        let hdr = Box::new(RingHeader::new(MIN_DATA_BYTES, [1, 2], 0, 1));
        let mut buf = vec![0u64; MIN_DATA_BYTES / 8];
        // SAFETY: `buf` outlives `mem`, 8-aligned.
        let mem = unsafe { RawMemory::new(buf.as_mut_ptr() as *mut u8, MIN_DATA_BYTES) };
        let w = Writer::new(&hdr, mem);
        for _ in 0..3 {
            // SAFETY: one writer.
            unsafe { w.push(&[1u8; 20]) };
        }
        hdr.cons.read_seq.store(seq, Ordering::Relaxed);
        if let Some(p) = pos {
            hdr.cons.read_pos.store(p, Ordering::Relaxed);
            hdr.prod
                .write_pos
                .store(p.wrapping_add(72), Ordering::Relaxed);
        }
        let geo = ring::check_header(&hdr, MIN_DATA_BYTES).unwrap();
        if let Ok(mut r) = Reader::attach(&hdr, mem, geo) {
            let _ = r.poll(10, |_, _| true);
            r.release();
        }
        if pos.is_some() {
            // positions set at attach time, then moved to the top
            hdr.cons.read_pos.store(0, Ordering::Relaxed);
            hdr.prod.write_pos.store(72, Ordering::Relaxed);
            let mut r = Reader::attach(&hdr, mem, geo).unwrap();
            hdr.prod.write_pos.store(u64::MAX, Ordering::Relaxed);
            assert!(r.poll(10, |_, _| true).is_err());
        }
    }
    // End to end: the sidecar survives and reads on.
    let (_d, mut sc) = sidecar("rel-seq");
    let good = Good::start(&sc, "good-seq");
    let mut c = Low::connect(&sc, "svc-seq").unwrap();
    let site = c.site("x", &["n"]);
    let seg = new_ring(MIN_DATA_BYTES, 1, 0);
    let r = Ring::over(seg);
    r.hdr.cons.read_seq.store(u64::MAX - 1, Ordering::Relaxed);
    for n in 0..5u64 {
        r.push(&event(site, &[Field::Idx(0, Value::U64(n))]));
    }
    c.hand(seg, 1);
    c.wake();
    let pid = std::process::id();
    sc.wait_pid(pid, "the 5 records across the wrap", |t| t.events >= 5);
    good.check(&sc, "hostile_seq");
    assert!(sc.alive(), "{}", sc.stderr_text());
    assert!(sc.terminate(), "clean exit: {}", sc.stderr_text());
}

/// Loss counters a client sets to anything (here near `u64::MAX`, on two
/// rings): the sidecar's running totals saturate instead of overflowing
/// (which, in a debug build, panicked its drain thread).
#[test]
fn hostile_loss_counters_do_not_overflow() {
    let (_d, mut sc) = sidecar("rel-lossctr");
    let good = Good::start(&sc, "good-lossctr");
    let mut c = Low::connect(&sc, "svc-lossctr").unwrap();
    // Its events are thread 9 of this process (the good client is thread 0).
    let site = c.site("x", &["seq", "thread"]);
    let me = std::process::id();
    let mut seq = 0u64;
    let mut push = |ring: &Ring, c: &Low| {
        ring.push(&event(
            site,
            &[Field::Idx(0, Value::U64(seq)), Field::Idx(1, Value::U64(9))],
        ));
        c.wake();
        seq += 1;
        let n = seq;
        sc.wait_pid(me, "the event", |t| {
            t.threads.get(&9).is_some_and(|s| s.count >= n)
        });
    };
    for index in 1..=2u64 {
        let ring = c.ring(MIN_DATA_BYTES, index as u32, 0);
        ring.hdr.prod.dropped.store(u64::MAX - 1, Ordering::Relaxed);
        push(&ring, &c);
        // down (followed) and up again (reported again)
        ring.hdr.prod.dropped.store(0, Ordering::Relaxed);
        push(&ring, &c);
        ring.hdr.prod.dropped.store(u64::MAX, Ordering::Relaxed);
        push(&ring, &c);
        let _ = index;
    }
    let t = sc.tally(me);
    assert!(t.loss_records >= 4, "{t:?}");
    good.check(&sc, "loss_counters");
    assert!(sc.alive(), "{}", sc.stderr_text());
    assert!(sc.terminate(), "clean exit: {}", sc.stderr_text());
}

#[test]
fn absurd_sizes_are_refused() {
    let (_d, mut sc) = sidecar("rel-absurd");
    let good = Good::start(&sc, "good-absurd");
    let mut refused = 0;
    // 1. a ring memfd of 1 GiB (sparse: sealed, never allocated)
    let c = Low::connect(&sc, "svc-huge-ring").unwrap();
    let fd =
        nix::sys::memfd::memfd_create(c"huge", nix::sys::memfd::MemFdCreateFlag::MFD_ALLOW_SEALING)
            .unwrap();
    nix::unistd::ftruncate(&fd, 1 << 30).unwrap();
    nix::fcntl::fcntl(
        fd.as_raw_fd(),
        nix::fcntl::FcntlArg::F_ADD_SEALS(
            nix::fcntl::SealFlag::F_SEAL_SHRINK | nix::fcntl::SealFlag::F_SEAL_GROW,
        ),
    )
    .unwrap();
    proto::send(c.sock.as_fd(), &ClientMsg::Ring { index: 1 }, &[fd.as_fd()]).unwrap();
    assert!(c.closed());
    refused += 1;
    // 2. a ring whose header claims 1 TiB of data
    let c = Low::connect(&sc, "svc-claims").unwrap();
    let seg = new_ring(MIN_DATA_BYTES, 1, 0);
    // SAFETY: our own leaked mapping; data_bytes is a plain field.
    unsafe { (*(seg.as_ptr() as *mut RingHeader)).stat.data_bytes = 1 << 40 };
    c.hand(seg, 1);
    assert!(c.closed());
    refused += 1;
    // 3. a call-site table larger than MAX_TABLE_BYTES (sparse)
    let tfd = nix::sys::memfd::memfd_create(
        c"hugetable",
        nix::sys::memfd::MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
    .unwrap();
    nix::unistd::ftruncate(&tfd, (distlog::table::MAX_TABLE_BYTES + 4096) as i64).unwrap();
    nix::fcntl::fcntl(
        tfd.as_raw_fd(),
        nix::fcntl::FcntlArg::F_ADD_SEALS(
            nix::fcntl::SealFlag::F_SEAL_SHRINK | nix::fcntl::SealFlag::F_SEAL_GROW,
        ),
    )
    .unwrap();
    let s = UnixStream::connect(&sc.socket).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    proto::send(s.as_fd(), &hello("svc-huge-table", 1), &[tfd.as_fd()]).unwrap();
    let (reply, _): (SidecarMsg, _) = Receiver::new().recv(s.as_fd()).unwrap();
    assert!(
        matches!(&reply, SidecarMsg::Refused { reason } if reason.contains("size")),
        "{reply:?}"
    );
    refused += 1;
    // 4. a hello announcing a 4 GiB message
    let s = UnixStream::connect(&sc.socket).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    nix::unistd::write(&s, &u32::MAX.to_le_bytes()).unwrap();
    let r = Receiver::new().recv::<SidecarMsg>(s.as_fd());
    assert!(r.is_err(), "closed: {r:?}");
    refused += 1;
    good.check(&sc, "absurd_sizes");
    let err = sc.stderr_text();
    assert!(err.contains("ring 1 refused: segment size"), "{err}");
    assert!(err.contains("bad ring header: data size"), "{err}");
    figure("absurd_sizes", "refused", refused);
    assert!(sc.terminate(), "clean exit: {}", sc.stderr_text());
}

/// Clients whose rings are rewritten at random (cursors, counters, record
/// headers, payload bytes) by a second thread while a writer pushes and the
/// sidecar reads.
#[test]
fn rings_rewritten_at_random_while_read() {
    let (secs, clients) = if long() { (30.0, 16) } else { (2.0, 6) };
    let (_d, mut sc) = sidecar("rel-scribble");
    let good = Good::start(&sc, "good-scribble");
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let writes = Arc::new(AtomicU64::new(0));
    for k in 0..clients {
        let mut c = Low::connect(&sc, &format!("svc-scribble-{k}")).unwrap();
        let site = c.site("s", &["n", "s"]);
        let flags = if k % 2 == 0 { 0 } else { FLAG_SHARED };
        let ring = c.ring(MIN_DATA_BYTES * 4, 1, flags);
        let (hdr, mem) = (ring.hdr, ring.mem);
        let st = stop.clone();
        // the writer
        threads.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !st.load(Ordering::Relaxed) {
                let p = event(
                    site,
                    &[
                        Field::Idx(0, Value::U64(n)),
                        Field::Idx(1, Value::Str("payload")),
                    ],
                );
                hostile_push(&ring, &p);
                c.wake();
                n += 1;
                if n.is_multiple_of(64) {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            std::mem::forget(c);
        }));
        // the scribbler
        let st = stop.clone();
        let wr = writes.clone();
        threads.push(std::thread::spawn(move || {
            let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (k as u64 + 1);
            let mut next = || {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                x.wrapping_mul(0x2545_F491_4F6C_DD1D)
            };
            while !st.load(Ordering::Relaxed) {
                let r = next();
                match r % 8 {
                    0 => hdr
                        .prod
                        .write_pos
                        .store(next() % (1 << 20), Ordering::Release),
                    1 => hdr.cons.read_pos.store(next(), Ordering::Release),
                    2 => hdr.cons.read_seq.store(next(), Ordering::Release),
                    3 => hdr.prod.dropped.store(next(), Ordering::Release),
                    4 => hdr.prod.written.store(next(), Ordering::Release),
                    _ => {
                        let off = (next() as usize % (ring::Memory::len(&mem) / 4)) * 4;
                        ring::Memory::store_word(&mem, off, next() as u32, Ordering::Release);
                    }
                }
                wr.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(50));
            }
        }));
    }
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert!(sc.alive(), "the sidecar survived: {}", sc.stderr_text());
    good.check(&sc, "scribble");
    let cut = sc
        .kept()
        .iter()
        .filter(|v| {
            v["kind"] == "control" && v["message"].as_str().unwrap_or("").contains("cut off")
        })
        .count();
    let s = "scribble";
    figure(s, "hostile_clients", clients);
    figure(s, "seconds", secs);
    figure(s, "random_writes", writes.load(Ordering::Relaxed));
    figure(s, "cut_off", cut);
    assert!(sc.terminate(), "clean exit: {}", sc.stderr_text());
}

/// A million distinct call sites through the real client: its call-site
/// table (512 KiB) fills; every record whose call site could not be
/// defined is counted as dropped, never lost silently.
#[test]
fn callsite_flood_is_bounded_and_counted() {
    let count = if long() { 1_000_000u64 } else { 100_000 };
    let (_d, sc) = sidecar("rel-sites");
    let c = sc
        .client(&[
            "--service",
            "sites",
            "callsite-flood",
            "--count",
            &count.to_string(),
        ])
        .env("DISTLOG_RING_BYTES", "4m")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = c.id();
    let out = finish_ok(c);
    let l = parse_ledger(&out).unwrap();
    assert_eq!(
        l["attempted"],
        l["written"] + l["dropped"],
        "every record written or counted: {l:?}"
    );
    let t = sc.wait_pid(pid, "its ledger", |t| {
        t.stored + t.lost >= l["written"] + l["dropped"]
    });
    sc.wait_quiet(Duration::from_millis(300));
    let t2 = sc.tally(pid);
    check_ledger("callsite flood", l["written"], l["dropped"], &t2, 0).unwrap();
    let _ = t;
    let s = "callsite_flood";
    figure(s, "attempted", count);
    figure(s, "stored", t2.stored);
    figure(s, "counted_dropped", l["dropped"]);
}

/// The sidecar's own bound: a low-level client whose (16 MiB) table holds
/// more than `max_defs_per_client` definitions is cut off.
#[test]
fn more_definitions_than_the_limit_cut_off_only_that_client() {
    let (_d, mut sc) = sidecar("rel-defs");
    let good = Good::start(&sc, "good-defs");
    let table = new_table(4 << 20);
    let mut c = Low::connect_seg(&sc, &hello("svc-defs", 1), table).unwrap();
    let mut last = 0;
    for i in 0..70_000u32 {
        last = c.site(if i % 2 == 0 { "a" } else { "b" }, &[]);
    }
    let ring = c.ring(MIN_DATA_BYTES, 1, 0);
    ring.push(&event(last, &[]));
    c.wake();
    assert!(c.closed(), "cut off");
    wait_kept(&sc, "the cut-off record", |v| {
        v["service"] == "svc-defs" && v["message"].as_str().unwrap_or("").contains("table full")
    });
    good.check(&sc, "defs_limit");
    figure("defs_limit", "defs_offered", 70_000);
    assert!(sc.terminate(), "clean exit: {}", sc.stderr_text());
}

/// Giant fields through the real client are clipped (16 KiB per string),
/// not dropped; the records arrive and the ledger holds.
#[test]
fn giant_fields_are_clipped_and_arrive() {
    let (_d, sc) = sidecar("rel-giant");
    let dir = TempDir::new("rel-giant2");
    let sc2 = LiveSidecar::start(&dir.join("s.sock"), |v| v["service"] == "giant");
    drop(sc);
    let c = sc2
        .client(&[
            "--service",
            "giant",
            "giant",
            "--bytes",
            &(1 << 20).to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = c.id();
    let out = finish_ok(c);
    let l = parse_ledger(&out).unwrap();
    assert_eq!(l["attempted"], l["written"] + l["dropped"]);
    let t = sc2.wait_pid(pid, "3 records", |t| t.stored + t.lost >= 3);
    check_ledger("giant", l["written"], l["dropped"], &t, 0).unwrap();
    assert_eq!(t.events, 3, "clipped, not dropped");
    let recs = sc2.kept();
    let big = recs.iter().find(|v| v["message"] == "giant field").unwrap();
    let n = big["fields"]["big"].as_str().unwrap().len();
    assert!(n <= 16 << 10 && n > 1000, "clipped to {n}");
    figure("giant", "field_bytes_offered", 1 << 20);
    figure("giant", "field_bytes_stored", n);
}

/// Invalid UTF-8 where the protocol promises UTF-8: in a record's string,
/// in a call-site definition, in a hello. Each costs only that client.
#[test]
fn invalid_utf8_costs_only_that_client() {
    let (_d, mut sc) = sidecar("rel-utf8");
    let good = Good::start(&sc, "good-utf8");
    // 1. a record's string field
    let mut c = Low::connect(&sc, "svc-utf8-record").unwrap();
    let site = c.site("u", &["s"]);
    let ring = c.ring(MIN_DATA_BYTES, 1, 0);
    let mut p = event(site, &[Field::Idx(0, Value::Str("ab"))]);
    let at = p.windows(2).rposition(|w| w == b"ab").unwrap();
    p[at] = 0xff;
    p[at + 1] = 0xfe;
    ring.push(&p);
    c.wake();
    assert!(c.closed(), "record: cut off");
    // 2. a call-site definition
    let table = new_table(64 << 10);
    let mut c = Low::connect_seg(&sc, &hello("svc-utf8-def", 1), table).unwrap();
    let site = c.site("zz", &[]);
    // SAFETY: our own table mapping; rewrite the name bytes "zz" in place.
    unsafe {
        let base = table.as_ptr().add(TABLE_HEADER_BYTES);
        let bytes = std::slice::from_raw_parts_mut(base, 256);
        let at = bytes.windows(2).position(|w| w == b"zz").unwrap();
        bytes[at] = 0xc0;
        bytes[at + 1] = 0x80;
    }
    let ring = c.ring(MIN_DATA_BYTES, 1, 0);
    ring.push(&event(site, &[]));
    c.wake();
    assert!(c.closed(), "definition: cut off");
    // 3. a hello whose service name is not UTF-8
    let s = UnixStream::connect(&sc.socket).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut body = postcard::to_allocvec(&hello("svcXY", 1)).unwrap();
    let at = body.windows(2).position(|w| w == b"XY").unwrap();
    body[at] = 0xff;
    body[at + 1] = 0xff;
    let mut msg = (body.len() as u32).to_le_bytes().to_vec();
    msg.extend_from_slice(&body);
    let t = new_table(64 << 10);
    nix::sys::socket::sendmsg::<()>(
        s.as_raw_fd(),
        &[std::io::IoSlice::new(&msg)],
        &[nix::sys::socket::ControlMessage::ScmRights(&[t
            .fd()
            .as_raw_fd()])],
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .unwrap();
    assert!(
        Receiver::new().recv::<SidecarMsg>(s.as_fd()).is_err(),
        "hello: closed"
    );
    good.check(&sc, "invalid_utf8");
    figure("invalid_utf8", "clients_cut_off", 3);
    assert!(sc.terminate(), "clean exit: {}", sc.stderr_text());
}

/// A hello that claims another pid: records carry the kernel's pid.
#[test]
fn a_claimed_pid_is_ignored() {
    let (_d, mut sc) = sidecar("rel-pid");
    let mut c = Low::connect_seg(&sc, &hello("svc-liar", 1), new_table(64 << 10)).unwrap();
    let site = c.site("x", &["seq", "thread"]);
    let ring = c.ring(MIN_DATA_BYTES, 1, 0);
    ring.push(&event(
        site,
        &[Field::Idx(0, Value::U64(0)), Field::Idx(1, Value::U64(7))],
    ));
    c.wake();
    let me = std::process::id();
    sc.wait_pid(me, "the record under the real pid", |t| t.events >= 1);
    assert_eq!(sc.tally(1).events, 0, "nothing under the claimed pid 1");
    figure("pid_claim", "records_under_kernel_pid", 1);
    assert!(sc.terminate());
}

/// Thousands of connections from one uid (that never say hello) do not
/// lock out another uid: each uid has `max_conns_per_uid` connections.
#[test]
fn thousands_of_connections_from_one_uid_do_not_lock_out_others() {
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: needs root to run a second uid (setpriv)");
        return;
    }
    let (_d, mut sc) = sidecar("rel-conns");
    let _ = std::fs::set_permissions(
        sc.socket.parent().unwrap(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    );
    let n = 5000u32;
    let mut holder = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(dl_client())
        .args(["connections", "--count", &n.to_string()])
        .env("DISTLOG_SOCKET", &sc.socket)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: Vec<u32> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(v.len(), 2, "{line}");
    let (held, refused) = (v[0], v[1]);
    // While they are held, a client of another uid is served.
    let good = Good::start(&sc, "good-conns");
    std::thread::sleep(Duration::from_millis(200));
    good.check(&sc, "connections");
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(refused > 0, "the uid's limit refused some of {n}: {line}");
    figure("connections", "opened_by_one_uid", n);
    figure("connections", "held", held);
    figure("connections", "refused", refused);
    assert!(sc.terminate(), "clean exit: {}", sc.stderr_text());
}

/// One uid handing thousands of rings (each an fd in the sidecar) is held
/// to `max_rings_per_uid`: the sidecar's descriptors stay bounded and
/// another uid is served.
#[test]
fn a_ring_flood_from_one_uid_is_bounded() {
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: needs root to run a second uid (setpriv)");
        return;
    }
    let dir = TempDir::new("rel-ringflood");
    let _ = std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o755));
    let limit = 1000usize;
    let mut cmd = std::process::Command::new(distlogd());
    cmd.env("DISTLOG_MAX_RINGS_PER_UID", limit.to_string());
    let mut sc = LiveSidecar::start_cmd(cmd, &dir.join("s.sock"), Arc::new(|_| false));
    let (conns, rings) = (12u32, 200u32);
    let mut flood = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(dl_client())
        .args([
            "rings-flood",
            "--conns",
            &conns.to_string(),
            "--rings",
            &rings.to_string(),
        ])
        .env("DISTLOG_SOCKET", &sc.socket)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(flood.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let fds = std::fs::read_dir(format!("/proc/{}/fd", sc.child.id()))
        .unwrap()
        .count();
    let good = Good::start(&sc, "good-ringflood");
    std::thread::sleep(Duration::from_millis(200));
    good.check(&sc, "ring_flood");
    let _ = flood.kill();
    let _ = flood.wait();
    assert!(
        fds < limit + 200,
        "the sidecar holds {fds} fds with a limit of {limit} rings per uid ({line})"
    );
    assert!(sc.alive(), "{}", sc.stderr_text());
    let s = "ring_flood";
    figure(s, "rings_offered", conns * rings);
    figure(s, "limit_per_uid", limit);
    figure(s, "sidecar_fds", fds);
    figure(s, "flood_report", line.trim().replace(' ', "_"));
    assert!(sc.terminate(), "clean exit: {}", sc.stderr_text());
}

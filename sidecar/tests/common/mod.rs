//! Test harness: the real `distlogd` binary on a temp socket, and a client
//! made of the low-level client modules (segments, ring writer, table
//! writer, socket protocol). Every wait has a deadline (a watchdog), and
//! nothing asserts a duration.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use distlog::proto::{self, ClientMsg, ProtoError, Receiver, SidecarMsg};
use distlog::ring::{self, Push, RawMemory, RingHeader, Writer, HEADER_BYTES};
use distlog::segment::Segment;
use distlog::table::{TableHeader, TableWriter, TABLE_HEADER_BYTES, TABLE_MAGIC, TABLE_VERSION};
use distlog::wire::{CallsiteDef, CallsiteKind, Encoder, Field, Head, Level, PROTOCOL_VERSION};
use serde_json::Value;

/// How long any single wait may take before the test fails.
pub const WATCHDOG: Duration = Duration::from_secs(20);

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh, unique directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let d = std::env::temp_dir().join(format!("distlogd-{tag}-{}-{n}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A unique ring id.
pub fn ring_id() -> [u64; 2] {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    [
        t ^ (u64::from(std::process::id()) << 32),
        n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
    ]
}

/// `CLOCK_REALTIME` in ns.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A running `distlogd run --stdout`.
pub struct Sidecar {
    child: Option<Child>,
    pub dir: PathBuf,
    pub socket: PathBuf,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Every record line seen so far, parsed.
    pub seen: Vec<Value>,
    own_dir: bool,
}

impl Sidecar {
    /// Start a sidecar in a new temp dir and wait until it listens.
    pub fn start(tag: &str) -> Sidecar {
        let dir = temp_dir(tag);
        let mut s = Sidecar::start_at(&dir.join("distlogd.sock")).expect("sidecar starts");
        s.own_dir = true;
        s
    }

    /// Start a sidecar on `socket`; `Err(stderr)` if it exits first.
    pub fn start_at(socket: &Path) -> Result<Sidecar, String> {
        Self::spawn(socket, true, &[])
    }

    /// Start a sidecar in a new temp dir under a wrapper command (e.g.
    /// `unshare --pid --fork`); `Err(stderr)` if it exits first.
    pub fn start_wrapped(tag: &str, wrapper: &[&str]) -> Result<Sidecar, String> {
        let dir = temp_dir(tag);
        let mut s = Sidecar::spawn(&dir.join("distlogd.sock"), true, wrapper)?;
        s.own_dir = true;
        Ok(s)
    }

    /// Start a sidecar whose stdout pipe is closed at once (a reader that
    /// went away).
    pub fn start_with_closed_stdout(tag: &str) -> Sidecar {
        let dir = temp_dir(tag);
        let mut s = Sidecar::spawn(&dir.join("distlogd.sock"), false, &[]).expect("sidecar starts");
        s.own_dir = true;
        s
    }

    fn spawn(socket: &Path, read_stdout: bool, wrapper: &[&str]) -> Result<Sidecar, String> {
        let bin = env!("CARGO_BIN_EXE_distlogd");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = cmd
            .args(["run", "--stdout", "--socket"])
            .arg(socket)
            // The store goes beside the socket, not to the user's data dir.
            .arg("--data-dir")
            .arg(socket.parent().unwrap_or(Path::new(".")).join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn distlogd");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        if !read_stdout {
            drop(out);
        } else {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().unwrap();
        let e2 = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut s = e2.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut s = Sidecar {
            child: Some(child),
            dir: socket.parent().unwrap().to_owned(),
            socket: socket.to_owned(),
            lines,
            stderr,
            seen: Vec::new(),
            own_dir: false,
        };
        let deadline = Instant::now() + WATCHDOG;
        loop {
            if s.stderr().contains("listening on") {
                return Ok(s);
            }
            if let Some(st) = s.child.as_mut().unwrap().try_wait().unwrap() {
                // All of stderr: its reader lets go of its clone at EOF (a
                // fixed sleep was too short on a loaded machine).
                while Arc::strong_count(&s.stderr) > 1 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                return Err(format!("exited {st}: {}", s.stderr()));
            }
            assert!(
                Instant::now() < deadline,
                "sidecar did not start: {}",
                s.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// What the sidecar wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Stderr once it contains `what` (its reader thread may lag behind
    /// the sidecar on a loaded machine); panics at the watchdog.
    pub fn wait_stderr(&self, what: &str) -> String {
        let deadline = Instant::now() + WATCHDOG;
        loop {
            let s = self.stderr();
            if s.contains(what) {
                return s;
            }
            assert!(Instant::now() < deadline, "no {what:?} in stderr: {s}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Read records until `done(&all records so far)` holds; panics at the
    /// watchdog. Every stdout line must be a JSON object.
    pub fn wait_until(&mut self, what: &str, done: impl Fn(&[Value]) -> bool) -> &[Value] {
        let deadline = Instant::now() + WATCHDOG;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let v: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("stdout line {line:?}: {e}"));
                    assert!(v.is_object(), "{line}");
                    // every line also parses as the sidecar's own Record
                    distlogd::record::Record::from_json(&line)
                        .unwrap_or_else(|e| panic!("{line}: {e}"));
                    self.seen.push(v);
                }
                Err(_) => panic!(
                    "watchdog: waiting for {what}; got {} records:\n{}\nstderr:\n{}",
                    self.seen.len(),
                    self.seen
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join("\n"),
                    self.stderr()
                ),
            }
        }
        &self.seen
    }

    /// Wait until at least `n` records satisfy `pred`; return those.
    pub fn wait_for(&mut self, n: usize, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.wait_until(&format!("{n} matching records"), |all| {
            all.iter().filter(|v| pred(v)).count() >= n
        });
        self.seen.iter().filter(|v| pred(v)).cloned().collect()
    }

    /// Take every line that arrives within `quiet` (for "nothing more came").
    pub fn drain_quiet(&mut self, quiet: Duration) {
        while let Ok(line) = self.lines.recv_timeout(quiet) {
            self.seen.push(serde_json::from_str(&line).unwrap());
        }
    }

    /// SIGTERM and wait for the exit (watchdog); reads remaining stdout.
    pub fn terminate(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::SIGTERM,
        )
        .unwrap();
        let st = self.wait_exit();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(serde_json::from_str(&line).unwrap());
        }
        st
    }

    /// Wait for the process to exit (watchdog).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WATCHDOG;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "sidecar did not exit: {}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.own_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Records whose service is `svc`.
pub fn of(svc: &str) -> impl Fn(&Value) -> bool + '_ {
    move |v| v["service"] == svc
}

/// A client made of the low-level modules. Segments are leaked (a test
/// process is short-lived) so writers can borrow them for `'static`.
pub struct TestClient {
    pub sock: UnixStream,
    pub table_seg: &'static Segment,
    table: TableWriter<'static, RawMemory>,
    pub wake: Option<OwnedFd>,
    pub service: String,
    pub clock_tsc: bool,
    rx: Receiver,
}

/// A ring of a test client.
pub struct TestRing {
    pub seg: &'static Segment,
    pub hdr: &'static RingHeader,
    pub mem: RawMemory,
    writer: Writer<'static, RawMemory>,
    pub index: u32,
}

/// Make a table segment (header initialised).
pub fn new_table(len: usize) -> &'static Segment {
    let seg: &'static Segment = Box::leak(Box::new(Segment::create("distlog-table", len).unwrap()));
    let hdr = TableHeader {
        magic: TABLE_MAGIC,
        version: TABLE_VERSION,
        count: 0,
        total_bytes: len as u64,
        committed: std::sync::atomic::AtomicU64::new(0),
    };
    // SAFETY: the fresh mapping is page-aligned and larger than a header;
    // nobody else sees it yet.
    unsafe { std::ptr::write(seg.as_ptr() as *mut TableHeader, hdr) };
    seg
}

/// Make a ring segment (header initialised).
pub fn new_ring_seg(data_bytes: usize, index: u32, flags: u32) -> (&'static Segment, [u64; 2]) {
    let seg: &'static Segment = Box::leak(Box::new(
        Segment::create("distlog-ring", HEADER_BYTES + data_bytes).unwrap(),
    ));
    let id = ring_id();
    // SAFETY: as in `new_table`.
    unsafe {
        std::ptr::write(
            seg.as_ptr() as *mut RingHeader,
            RingHeader::new(data_bytes, id, flags, index),
        )
    };
    (seg, id)
}

impl TestRing {
    /// A ring over an initialised segment.
    pub fn over(seg: &'static Segment) -> TestRing {
        // SAFETY: the segment holds an initialised RingHeader and lives forever.
        let hdr: &'static RingHeader = unsafe { &*(seg.as_ptr() as *const RingHeader) };
        // SAFETY: the data region is inside the leaked mapping.
        let mem =
            unsafe { RawMemory::new(seg.as_ptr().add(HEADER_BYTES), seg.len() - HEADER_BYTES) };
        TestRing {
            seg,
            hdr,
            mem,
            writer: Writer::new(hdr, mem),
            index: hdr.stat.index,
        }
    }

    /// Push a raw payload; signal the sidecar if it sleeps.
    pub fn push_raw(&self, wake: Option<&OwnedFd>, payload: &[u8]) -> Push {
        // SAFETY: one writer thread per test ring.
        let p = unsafe { self.writer.push(payload) };
        if let (Push::Done { wake: true }, Some(fd)) = (p, wake) {
            let _ = nix::unistd::write(fd, &1u64.to_ne_bytes());
        }
        p
    }
}

impl TestClient {
    /// Connect and say hello; `Err(reason)` if refused.
    pub fn connect(socket: &Path, service: &str) -> Result<TestClient, String> {
        Self::connect_with(
            socket,
            service,
            PROTOCOL_VERSION,
            new_table(64 << 10),
            false,
        )
    }

    /// Connect with a given version and table segment.
    pub fn connect_with(
        socket: &Path,
        service: &str,
        version: u16,
        table_seg: &'static Segment,
        clock_tsc: bool,
    ) -> Result<TestClient, String> {
        let sock = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
        sock.set_read_timeout(Some(WATCHDOG)).unwrap();
        let hello = ClientMsg::Hello {
            version,
            service: service.into(),
            pid: std::process::id(),
            clock_tsc,
            library: "distlogd tests".into(),
        };
        proto::send(sock.as_fd(), &hello, &[table_seg.fd()])
            .map_err(|e| format!("send hello: {e}"))?;
        let mut rx = Receiver::new();
        let (reply, mut fds): (SidecarMsg, _) = match rx.recv(sock.as_fd()) {
            Ok(r) => r,
            Err(ProtoError::WouldBlock) => panic!("watchdog: no reply to hello"),
            Err(e) => return Err(format!("recv: {e}")),
        };
        match reply {
            SidecarMsg::Welcome { version: v, .. } => {
                assert_eq!(
                    v,
                    version.min(PROTOCOL_VERSION),
                    "the sidecar answers the lower of the two versions"
                );
                assert_eq!(
                    fds.len(),
                    2,
                    "welcome carries the wake eventfd and the control segment"
                );
                // The control segment (second) is not used here.
                fds.truncate(1);
                // SAFETY: the header is at the start of the leaked mapping.
                let hdr: &'static TableHeader =
                    unsafe { &*(table_seg.as_ptr() as *const TableHeader) };
                // SAFETY: the entry region is inside the leaked mapping.
                let mem = unsafe {
                    RawMemory::new(
                        table_seg.as_ptr().add(TABLE_HEADER_BYTES),
                        table_seg.len() - TABLE_HEADER_BYTES,
                    )
                };
                Ok(TestClient {
                    sock,
                    table_seg,
                    table: TableWriter::new(hdr, mem),
                    wake: fds.pop(),
                    service: service.into(),
                    clock_tsc,
                    rx,
                })
            }
            SidecarMsg::Refused { reason } => Err(reason),
            other => panic!("unexpected reply to hello: {other:?}"),
        }
    }

    /// Define an event call site; returns its id.
    pub fn event_site(&mut self, level: Level, target: &str, line: u32, fields: &[&str]) -> u32 {
        self.site(CallsiteKind::Event, level, "event", target, line, fields)
    }

    /// Define a call site.
    pub fn site(
        &mut self,
        kind: CallsiteKind,
        level: Level,
        name: &str,
        target: &str,
        line: u32,
        fields: &[&str],
    ) -> u32 {
        let mut def = CallsiteDef {
            id: 0,
            kind,
            level,
            name,
            target,
            file: Some("tests/x.rs"),
            line: Some(line),
            fields: fields.to_vec(),
            message: None,
        };
        self.table.append(&mut def).unwrap()
    }

    /// Make a ring and hand it to the sidecar.
    pub fn ring(&self, data_bytes: usize, index: u32) -> TestRing {
        let (seg, _) = new_ring_seg(data_bytes, index, 0);
        self.hand(seg, index);
        TestRing::over(seg)
    }

    /// Hand an existing ring segment (again).
    pub fn hand(&self, seg: &Segment, index: u32) {
        proto::send(self.sock.as_fd(), &ClientMsg::Ring { index }, &[seg.fd()]).unwrap();
    }

    /// Push an event with the given head values and fields.
    pub fn event(&self, ring: &TestRing, callsite: u32, ts: u64, tid: u32, fields: &[Field<'_>]) {
        self.frame(
            ring,
            &Head::Event {
                callsite,
                ts,
                tid,
                scope: 0,
                trace: None,
            },
            fields,
        );
    }

    /// Push any frame.
    pub fn frame(&self, ring: &TestRing, head: &Head, fields: &[Field<'_>]) {
        let mut buf = [0u8; 4096];
        let mut e = Encoder::new(&mut buf, head);
        for f in fields {
            e.field(f);
        }
        let bytes = e.finish().expect("fits");
        let p = ring.push_raw(self.wake.as_ref(), bytes);
        assert!(matches!(p, Push::Done { .. }), "push: {p:?}");
    }

    /// Wait until the sidecar closes the connection (watchdog); true if it did.
    pub fn wait_closed(&mut self) -> bool {
        matches!(
            self.rx.recv::<SidecarMsg>(self.sock.as_fd()),
            Err(ProtoError::Closed) | Err(ProtoError::Io(_))
        )
    }
}

/// Kernel thread id of the caller.
pub fn gettid() -> u32 {
    nix::unistd::gettid().as_raw() as u32
}

#[allow(unused_imports)]
pub use ring::{FLAG_SHARED, MIN_DATA_BYTES};

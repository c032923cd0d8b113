//! The reliability suite's harness (`tests/tests/reliability*.rs`).
//!
//! # The ledger
//!
//! For every client ring, what the client wrote equals what the sidecar
//! stored (or forwarded) plus what was counted as lost:
//!
//! ```text
//! written + dropped  ==  stored + lost   (+ unfinished, see below)
//! ```
//!
//! `written` and `dropped` are the ring's own counters in shared memory
//! (`prod.written`, `prod.dropped`), read here through the client's memfds
//! (`/proc/<pid>/fd/<n>`, held open so they can be read after a `kill -9`)
//! or printed by `dl-client` itself (`LEDGER ...` lines). `stored` and
//! `lost` come from the sidecar's output: ring records (`event`,
//! `scope_open`, `scope_record`, and `scope_close` except the `abandoned`
//! ones the sidecar makes) and the `fields.lost` of `loss` records.
//! `unfinished` is a record a writer of the shared ring reserved and was
//! killed before counting: the sidecar steps over it and reports it lost,
//! so the right side may exceed the left by at most the number of writers
//! that can be killed mid-record.
//!
//! Where the sidecar's records are read is one function,
//! [`LiveSidecar::tally`]: today its stdout JSON lines, later its store.
//!
//! # Figures
//!
//! [`figure`] prints `RELIABILITY scenario.name=value` and appends the line
//! to `target/reliability/figures.txt`; `scripts/reliability` turns them
//! into `docs/RELIABILITY.md`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use distlog::ring::RingHeader;
use serde_json::Value;

use crate::DEADLINE;

/// `target/` of this build (tests run from `target/<profile>/deps/`, the
/// client from `target/<profile>/`).
pub fn target_root() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut p = exe.parent().expect("dir").to_path_buf();
    if p.ends_with("deps") {
        p.pop();
    }
    p.pop();
    p
}

/// Print a figure and append it to `target/reliability/figures.txt`.
pub fn figure(scenario: &str, name: &str, value: impl std::fmt::Display) {
    let line = format!("RELIABILITY {scenario}.{name}={value}");
    println!("{line}");
    let dir = target_root().join("reliability");
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("figures.txt"))
    {
        let _ = writeln!(f, "{line}");
    }
}

/// Whether the long forms run (`DISTLOG_LONG=1`).
pub fn long() -> bool {
    std::env::var_os("DISTLOG_LONG").is_some_and(|v| v != "0" && !v.is_empty())
}

/// One ring of another process (or this one), mapped read-only through its
/// memfd: its counters stay readable after the process died.
pub struct HeldRing {
    _file: File,
    ptr: *const RingHeader,
}

// SAFETY: a read-only mapping; only atomics are read through it.
unsafe impl Send for HeldRing {}

impl HeldRing {
    fn hdr(&self) -> &RingHeader {
        // SAFETY: `ptr` is a live read-only mapping of the ring's first page
        // (made in `hold_rings`, unmapped never: the test process is short)
        // and a RingHeader fits in a page.
        unsafe { &*self.ptr }
    }
    /// Index in its process (0 = shared overflow ring).
    pub fn index(&self) -> u32 {
        self.hdr().stat.index
    }
    /// `prod.written`.
    pub fn written(&self) -> u64 {
        self.hdr().prod.written.load(Ordering::Acquire)
    }
    /// `prod.dropped`.
    pub fn dropped(&self) -> u64 {
        self.hdr().prod.dropped.load(Ordering::Acquire)
    }
    /// Bytes reserved so far (`prod.write_pos`).
    pub fn write_pos(&self) -> u64 {
        self.hdr().prod.write_pos.load(Ordering::Acquire)
    }
    /// Bytes the sidecar released so far (`cons.read_pos`).
    pub fn read_pos(&self) -> u64 {
        self.hdr().cons.read_pos.load(Ordering::Acquire)
    }
}

/// Open and map every ring memfd (`memfd:distlog-ring-*`) process `pid`
/// holds now.
pub fn hold_rings(pid: u32) -> Vec<HeldRing> {
    let dir = format!("/proc/{pid}/fd");
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(link) = std::fs::read_link(e.path()) else {
            continue;
        };
        if !link.to_string_lossy().starts_with("/memfd:distlog-ring-") {
            continue;
        }
        let Ok(file) = File::open(e.path()) else {
            continue;
        };
        // SAFETY: a fresh read-only shared mapping of one page of a file we
        // hold; it affects no existing memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            continue;
        }
        out.push(HeldRing {
            _file: file,
            ptr: p as *const RingHeader,
        });
    }
    // The same memfd may be open twice (the client keeps a copy to hand
    // over again): count each ring once.
    out.sort_by_key(|r| r.hdr().stat.ring_id);
    out.dedup_by_key(|r| r.hdr().stat.ring_id);
    out
}

/// Sum of `written` and of `dropped` over rings.
pub fn ring_totals(rings: &[HeldRing]) -> (u64, u64) {
    rings
        .iter()
        .fold((0, 0), |(w, d), r| (w + r.written(), d + r.dropped()))
}

/// What the sidecar's records say about one process.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Ring records stored (events and scope records from the ring).
    pub stored: u64,
    /// Events only.
    pub events: u64,
    /// Sum of `fields.lost` of its loss records.
    pub lost: u64,
    /// Number of loss records.
    pub loss_records: u64,
    /// `control` records about it (e.g. cut off).
    pub control: Vec<String>,
    /// Scopes the sidecar closed as abandoned.
    pub abandoned: u64,
    /// Per `fields.thread`: records seen, last `fields.seq`, and how often
    /// a seq did not follow the one before it (a gap or a step back).
    pub threads: HashMap<u64, ThreadSeq>,
}

/// Sequence bookkeeping of one writer thread.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadSeq {
    /// Records seen.
    pub count: u64,
    /// Last seq seen.
    pub last: Option<u64>,
    /// Seqs skipped forward (records missing between two seen).
    pub skipped: u64,
    /// A seq at or below the one before (duplicate or reordered).
    pub backwards: u64,
}

/// The ledger check: `written + dropped + unfinished_max >= stored + lost
/// >= written + dropped`. `Err` explains the difference.
pub fn check_ledger(
    what: &str,
    written: u64,
    dropped: u64,
    t: &Tally,
    unfinished_max: u64,
) -> Result<(), String> {
    let left = written + dropped;
    let right = t.stored + t.lost;
    if right < left || right > left + unfinished_max {
        return Err(format!(
            "{what}: ledger broken: written {written} + dropped {dropped} = {left}, \
             stored {} + lost {} = {right} (tolerance {unfinished_max})",
            t.stored, t.lost
        ));
    }
    Ok(())
}

/// A latency sample: a record carrying `fields.sent_ns` (client realtime)
/// seen by the test at `seen_ns` (test realtime).
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    /// Its pid.
    pub pid: u32,
    /// `seen_ns - sent_ns`.
    pub ns: i64,
}

#[derive(Default)]
struct Seen {
    by_pid: HashMap<u32, Tally>,
    latencies: Vec<Latency>,
    kept: Vec<Value>,
    lines: u64,
}

/// A `distlogd run --stdout` whose records are tallied as they arrive (a
/// load test makes millions; none is kept unless `keep` asks for it).
pub struct LiveSidecar {
    /// The process.
    pub child: Child,
    /// Its data socket.
    pub socket: PathBuf,
    seen: Arc<Mutex<Seen>>,
    /// stderr lines.
    pub stderr: Arc<Mutex<Vec<String>>>,
    keep: Arc<dyn Fn(&Value) -> bool + Send + Sync>,
    done_reading: Arc<AtomicBool>,
}

/// Current `CLOCK_REALTIME` in ns.
pub fn realtime_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl LiveSidecar {
    /// Start on `socket`; records for which `keep` holds are kept whole.
    pub fn start(socket: &Path, keep: impl Fn(&Value) -> bool + Send + Sync + 'static) -> Self {
        Self::start_cmd(Command::new(crate::distlogd()), socket, Arc::new(keep))
    }

    /// Start from a prepared command (e.g. under `setpriv`); `run --socket
    /// <socket> --stdout` is appended.
    pub fn start_cmd(
        cmd: Command,
        socket: &Path,
        keep: Arc<dyn Fn(&Value) -> bool + Send + Sync>,
    ) -> Self {
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let stderr: Arc<Mutex<Vec<String>>> = Arc::default();
        let (child, done_reading) = spawn(cmd, socket, &keep, &seen, &stderr);
        LiveSidecar {
            child,
            socket: socket.to_owned(),
            seen,
            stderr,
            keep,
            done_reading,
        }
    }

    /// `kill -9` it and start another on the same socket; the tallies go on.
    pub fn kill9_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let end = Instant::now() + DEADLINE;
        while !self.done_reading.load(Ordering::Acquire) {
            assert!(
                Instant::now() < end,
                "stdout of the killed sidecar did not end"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = std::fs::remove_file(&self.socket);
        let (child, done) = spawn(
            Command::new(crate::distlogd()),
            &self.socket,
            &self.keep,
            &self.seen,
            &self.stderr,
        );
        self.child = child;
        self.done_reading = done;
    }

    /// The records' verdict on process `pid` (the ledger's source).
    pub fn tally(&self, pid: u32) -> Tally {
        self.seen
            .lock()
            .unwrap()
            .by_pid
            .get(&pid)
            .cloned()
            .unwrap_or_default()
    }

    /// Records kept so far (see `keep`).
    pub fn kept(&self) -> Vec<Value> {
        self.seen.lock().unwrap().kept.clone()
    }

    /// Latency samples so far.
    pub fn latencies(&self) -> Vec<Latency> {
        self.seen.lock().unwrap().latencies.clone()
    }

    /// Lines read so far.
    pub fn lines(&self) -> u64 {
        self.seen.lock().unwrap().lines
    }

    /// Wait until `pred(tally of pid)` holds; panics at the deadline.
    pub fn wait_pid(&self, pid: u32, what: &str, pred: impl Fn(&Tally) -> bool) -> Tally {
        let end = Instant::now() + DEADLINE;
        loop {
            let t = self.tally(pid);
            if pred(&t) {
                return t;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what} of pid {pid}: {t:?}\nstderr:\n{}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until no line arrived for `quiet` (or the deadline).
    pub fn wait_quiet(&self, quiet: Duration) {
        let end = Instant::now() + DEADLINE;
        let mut last = self.lines();
        let mut since = Instant::now();
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
            let n = self.lines();
            if n != last {
                last = n;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return;
            }
        }
    }

    /// Its stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A `dl-client` command aimed at this sidecar.
    pub fn client(&self, args: &[&str]) -> Command {
        let mut c = Command::new(crate::dl_client());
        c.args(args)
            .env("DISTLOG_SOCKET", &self.socket)
            .env_remove("RUST_LOG")
            .env_remove("DISTLOG_LOG");
        c
    }

    /// SIGTERM, wait for the exit (deadline); true if it exited 0.
    pub fn terminate(&mut self) -> bool {
        // SAFETY: kill(2) on our child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + DEADLINE;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                let end = Instant::now() + DEADLINE;
                while !self.done_reading.load(Ordering::Acquire) && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(5));
                }
                return st.success();
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Start `cmd run --socket S --stdout`; its records go into `seen`, its
/// stderr into `stderr`; returns when it listens.
fn spawn(
    mut cmd: Command,
    socket: &Path,
    keep: &Arc<dyn Fn(&Value) -> bool + Send + Sync>,
    seen: &Arc<Mutex<Seen>>,
    stderr: &Arc<Mutex<Vec<String>>>,
) -> (Child, Arc<AtomicBool>) {
    let listening_before = stderr
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("listening on"))
        .count();
    let mut child = cmd
        .arg("run")
        .arg("--socket")
        .arg(socket)
        .arg("--stdout")
        // The store of this test only, beside its socket.
        .arg("--data-dir")
        .arg(socket.parent().expect("socket in a directory").join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start distlogd");
    let done_reading = Arc::new(AtomicBool::new(false));
    let out = child.stdout.take().unwrap();
    let (s2, k2, d2) = (seen.clone(), keep.clone(), done_reading.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("sidecar stdout is not JSON lines: {e}: {line}"));
            let now = realtime_ns();
            let mut s = s2.lock().unwrap();
            s.lines += 1;
            tally_one(&mut s, &v, now);
            if k2(&v) {
                s.kept.push(v);
            }
        }
        d2.store(true, Ordering::Release);
    });
    let err = child.stderr.take().unwrap();
    let e2 = stderr.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if std::env::var_os("DISTLOG_TEST_VERBOSE").is_some() {
                eprintln!("[distlogd] {line}");
            }
            e2.lock().unwrap().push(line);
        }
    });
    let end = Instant::now() + DEADLINE;
    loop {
        let n = stderr
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("listening on"))
            .count();
        if n > listening_before {
            break;
        }
        if let Ok(Some(st)) = child.try_wait() {
            std::thread::sleep(Duration::from_millis(50));
            panic!(
                "sidecar exited ({st}): {}",
                stderr.lock().unwrap().join("\n")
            );
        }
        assert!(
            Instant::now() < end,
            "sidecar did not start: {}",
            stderr.lock().unwrap().join("\n")
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    (child, done_reading)
}

impl Drop for LiveSidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tally_one(s: &mut Seen, v: &Value, now: i64) {
    let Some(pid) = v["pid"].as_u64() else { return };
    let pid = pid as u32;
    let t = s.by_pid.entry(pid).or_default();
    match v["kind"].as_str().unwrap_or("") {
        "event" => {
            t.stored += 1;
            t.events += 1;
            if let (Some(th), Some(seq)) =
                (v["fields"]["thread"].as_u64(), v["fields"]["seq"].as_u64())
            {
                let e = t.threads.entry(th).or_default();
                e.count += 1;
                match e.last {
                    Some(l) if seq <= l => e.backwards += 1,
                    Some(l) => e.skipped += seq - l - 1,
                    None => e.skipped += seq,
                }
                e.last = Some(seq);
            }
            if let Some(sent) = v["fields"]["sent_ns"].as_i64() {
                s.latencies.push(Latency {
                    pid,
                    ns: now - sent,
                });
            }
        }
        "scope_open" | "scope_record" => t.stored += 1,
        "scope_close" => {
            if v["outcome"] == "abandoned" {
                t.abandoned += 1;
            } else {
                t.stored += 1;
            }
        }
        "loss" => {
            t.loss_records += 1;
            t.lost = t
                .lost
                .saturating_add(v["fields"]["lost"].as_u64().unwrap_or(0));
        }
        "control" => t
            .control
            .push(v["message"].as_str().unwrap_or("").to_owned()),
        _ => {}
    }
}

/// Peak memory of a process, sampled from `/proc/<pid>/status`.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemPeak {
    /// Largest `VmRSS` seen, KiB.
    pub vm_rss_kib: u64,
    /// Largest `RssAnon` seen, KiB (the process's own heap; mapped client
    /// rings count as `RssShmem`).
    pub rss_anon_kib: u64,
    /// Samples taken.
    pub samples: u64,
}

/// Samples a process's memory every 50 ms until dropped.
pub struct MemSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<Mutex<MemPeak>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}

impl MemSampler {
    /// Start sampling `pid`.
    pub fn start(pid: u32) -> MemSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak: Arc<Mutex<MemPeak>> = Arc::default();
        let (s2, p2) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                let rss = status_kib(pid, "VmRSS:");
                let anon = status_kib(pid, "RssAnon:");
                {
                    let mut p = p2.lock().unwrap();
                    p.vm_rss_kib = p.vm_rss_kib.max(rss.unwrap_or(0));
                    p.rss_anon_kib = p.rss_anon_kib.max(anon.unwrap_or(0));
                    p.samples += 1;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        MemSampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// The peak so far.
    pub fn peak(&self) -> MemPeak {
        *self.peak.lock().unwrap()
    }
}

impl Drop for MemSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// CPU time (user + system) a process used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| f.get(*i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz
}

/// Parse `LEDGER key=value ...` from a client's stdout.
pub fn parse_ledger(out: &str) -> Option<HashMap<String, u64>> {
    let line = out.lines().rev().find(|l| l.starts_with("LEDGER "))?;
    Some(
        line.split_whitespace()
            .skip(1)
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
            .collect(),
    )
}

/// p-th percentile (0..=100) of sorted values.
pub fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A counter shared by the threads of `dl-client` subcommands.
pub static ATTEMPTED: AtomicU64 = AtomicU64::new(0);

/// `LEDGER attempted=.. written=.. dropped=..` for this process, from its
/// own rings (what `dl-client` prints before it exits).
pub fn own_ledger_line(attempted: u64) -> String {
    let rings = hold_rings(std::process::id());
    let (w, d) = ring_totals(&rings);
    format!(
        "LEDGER attempted={attempted} written={w} dropped={d} rings={}",
        rings.len()
    )
}

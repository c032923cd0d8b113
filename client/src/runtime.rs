//! The process's client state: call-site table, ring pool, connection.
//!
//! # Shape
//!
//! One [`Process`] per process, leaked (it lives until exit) and reached
//! through an atomic pointer. A thread's first record claims a ring from the
//! pool (or makes one, up to `max_rings`); the ring goes back to the pool
//! when the thread exits (TLS destructor), so thousands of short threads
//! need no more rings than were alive at once. Threads beyond `max_rings`,
//! and records written while a thread is being torn down, go to the shared
//! overflow ring (index 0).
//!
//! A background thread connects to the sidecar, says hello, hands over the
//! table and every ring, and reconnects with backoff when the sidecar goes
//! away; the rings (and what is in them) survive, so the next sidecar goes
//! on where the last one stopped.
//!
//! Each hello negotiates the record layout (see [`crate::wire::compact`]):
//! compact records (events, scope opens and closes) are written only while connected to a sidecar
//! that welcomed us with version ≥ [`COMPACT_VERSION`]; while disconnected,
//! and with an older sidecar, the postcard layout every sidecar reads. A
//! sidecar replaced by an older one is the one case this cannot cover:
//! compact records the new one had not read yet when it stopped reach the
//! old one, which treats them as a hostile client's and cuts the client
//! off at the first (on every reconnect: the record stays unread). Even a
//! clean stop, which drains the rings, leaves the records written between
//! its drain and the client noticing the disconnect. So downgrading the
//! sidecar under running clients needs them restarted after it, or
//! started with `DISTLOG_PROTOCOL_VERSION=1` before it.
//!
//! After `fork()` the child must not write into its parent's rings: an
//! `atfork` child handler forgets the thread's ring, and the next record
//! finds the pid changed and builds a new `Process` for the child (the call
//! site table is copied, so ids stay valid).

use std::cell::{Cell, UnsafeCell};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use crate::callsite::{DynMap, DynSite, StaticMap};
use crate::proto::{self, ClientMsg, SidecarMsg};
use crate::ring::{self, Push, RawMemory, RingHeader, Writer};
use crate::scope::Current;
use crate::segment::Segment;
// The ring header's atomics (loom's under the loom model).
use crate::sync::{AtomicU32 as RingU32, AtomicU64 as RingU64};
use crate::table::{TableHeader, TableWriter, TABLE_HEADER_BYTES, TABLE_MAGIC, TABLE_VERSION};
use crate::wire::{COMPACT_VERSION, LEGACY_VERSION, PROTOCOL_VERSION};

/// Default size of one thread's ring. At a burst of one million records a
/// second of ~80 bytes each (a message, two integers and a short string in
/// the compact layout), 256 KiB absorbs a 3 ms stall of the sidecar
/// (a store commit, a descheduling on a busy host) without a drop, and 16
/// threads' rings cost 4 MiB per process.
pub const DEFAULT_RING_BYTES: usize = 256 << 10;
/// Default number of rings a process makes before threads share the
/// overflow ring.
pub const DEFAULT_MAX_RINGS: usize = 16;

/// Settings of the client runtime.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub service: String,
    pub socket: PathBuf,
    pub ring_bytes: usize,
    pub max_rings: usize,
    pub library: String,
}

/// One ring and its segment; never freed (rings are pooled).
pub(crate) struct RingSlot {
    _seg: Segment,
    pub writer: Writer<'static, RawMemory>,
    pub in_use: AtomicBool,
    pub index: u32,
    fd: OwnedFd,
}

impl RingSlot {
    fn create(
        index: u32,
        data_bytes: usize,
        shared: bool,
    ) -> Result<&'static RingSlot, crate::Error> {
        let seg = Segment::create(
            &format!("distlog-ring-{index}"),
            ring::HEADER_BYTES + data_bytes,
        )?;
        let mut flags = if shared { ring::FLAG_SHARED } else { 0 };
        if crate::clock::uses_tsc() {
            flags |= ring::FLAG_CLOCK_TSC;
        }
        let id = random_u128();
        let hdr = RingHeader::new(data_bytes, [id as u64, (id >> 64) as u64], flags, index);
        let hp = seg.as_ptr() as *mut RingHeader;
        // SAFETY: the segment is page-aligned, at least HEADER_BYTES long
        // (asserted at compile time to hold a RingHeader), freshly made and
        // not yet shared, so nobody else reads it while we write.
        unsafe { hp.write(hdr) };
        // SAFETY: the slot (and so the segment) is leaked below and never
        // unmapped, so the header reference is valid for 'static.
        let hdr: &'static RingHeader = unsafe { &*hp };
        populate(seg.as_ptr(), ring::HEADER_BYTES + data_bytes);
        // SAFETY: the data region lies inside the mapping, is 8-aligned
        // (page offset 4096) and lives for 'static like the header.
        let mem = unsafe { RawMemory::new(seg.as_ptr().add(ring::HEADER_BYTES), data_bytes) };
        let fd = seg
            .fd()
            .try_clone_to_owned()
            .map_err(|e| crate::Error::Io(e.to_string()))?;
        Ok(Box::leak(Box::new(RingSlot {
            _seg: seg,
            writer: Writer::new(hdr, mem),
            in_use: AtomicBool::new(false),
            index,
            fd,
        })))
    }

    pub fn header(&self) -> &RingHeader {
        self.writer.header()
    }
}

/// Fault a fresh ring's pages in now, at the thread's first record (already
/// the slow path: a memfd, a mapping, a message to the sidecar), instead of
/// one page fault per 4 KiB of records on the first lap of the hot path
/// (~1-2 us each on a VM: with 64-byte records, a fault every 64 records,
/// +15-30 ns on a typical record). The ring is as large as it was asked to
/// be; it becomes resident at once instead of after its first lap. Kernels
/// before 5.14 refuse the advice: then the pages fault in as before.
fn populate(base: *mut u8, len: usize) {
    // SAFETY: [base, base + len) is one whole mapping of ours (the segment
    // just created); MADV_POPULATE_WRITE only faults its pages in (they are
    // zero-filled memfd pages), it changes no byte and no mapping.
    let _ = unsafe { libc::madvise(base.cast(), len, libc::MADV_POPULATE_WRITE) };
}

/// The call-site table of a process.
pub(crate) struct Table {
    seg: Segment,
    pub writer: Mutex<TableWriter<'static, RawMemory>>,
}

impl Table {
    fn create(bytes: usize, copy_from: Option<&Table>) -> Result<&'static Table, crate::Error> {
        let seg = Segment::create("distlog-callsites", bytes)?;
        let hp = seg.as_ptr() as *mut TableHeader;
        let mut next_id = 0;
        let mut committed = 0u64;
        if let Some(old) = copy_from {
            // The parent's table, inherited across fork: copy what it
            // committed so every id this process knows stays valid.
            // Acquire pairs with the Release store in TableWriter::append.
            committed = old.header().committed.load(Ordering::Acquire);
            let n = (committed as usize).min(bytes - TABLE_HEADER_BYTES);
            committed = n as u64;
            // SAFETY: both ranges lie inside their mappings (n is bounded
            // by our size and by what the old table committed) and do not
            // overlap (two different mappings).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    old.seg.as_ptr().add(TABLE_HEADER_BYTES),
                    seg.as_ptr().add(TABLE_HEADER_BYTES),
                    n,
                )
            };
            next_id = count_entries(&seg.as_ptr(), n);
        }
        // SAFETY: the segment is page-aligned and larger than the header,
        // fresh and not yet shared.
        unsafe {
            hp.write(TableHeader {
                magic: TABLE_MAGIC,
                version: TABLE_VERSION,
                count: 0,
                total_bytes: bytes as u64,
                committed: crate::sync::AtomicU64::new(committed),
            })
        };
        // SAFETY: the table is leaked below; the mapping lives for 'static.
        let hdr: &'static TableHeader = unsafe { &*hp };
        // SAFETY: entries region inside the mapping, 8-aligned, 'static.
        let mem = unsafe {
            RawMemory::new(
                seg.as_ptr().add(TABLE_HEADER_BYTES),
                bytes - TABLE_HEADER_BYTES,
            )
        };
        let mut w = TableWriter::new(hdr, mem);
        w.set_next_id(next_id);
        Ok(Box::leak(Box::new(Table {
            seg,
            writer: Mutex::new(w),
        })))
    }

    fn header(&self) -> &TableHeader {
        // SAFETY: written in `create` before the table was shared; lives as
        // long as the mapping, which is never unmapped.
        unsafe { &*(self.seg.as_ptr() as *const TableHeader) }
    }
}

fn count_entries(base: &*mut u8, n: usize) -> u32 {
    let mut pos = 0usize;
    let mut count = 0;
    while pos + 4 <= n {
        let mut w = [0u8; 4];
        // SAFETY: pos + 4 <= n, inside the copied entries region.
        unsafe {
            std::ptr::copy_nonoverlapping(base.add(TABLE_HEADER_BYTES + pos), w.as_mut_ptr(), 4)
        };
        let len = u32::from_le_bytes(w) as usize;
        pos += ring::record_bytes(len);
        count += 1;
    }
    count
}

/// Everything a process needs to log.
pub(crate) struct Process {
    pub pid: u32,
    pub generation: u64,
    pub cfg: Config,
    pub table: &'static Table,
    pub statics: &'static StaticMap,
    pub dynamic: DynMap,
    pub rings: Mutex<Vec<&'static RingSlot>>,
    pub overflow: &'static RingSlot,
    conn: Mutex<Option<UnixStream>>,
    connected: AtomicBool,
    /// Wake-up eventfd of the sidecar; the number stays the same across
    /// reconnects (dup2), so a writer never writes to a reused number.
    wake_fd: AtomicI32,
    /// The sidecar refused us and we said so on stderr (once).
    pub refused_reported: AtomicBool,
    /// The version this client offers in its hello: [`PROTOCOL_VERSION`],
    /// or lower when `DISTLOG_PROTOCOL_VERSION` says so (to pin the
    /// postcard layout, and to test an old client against a new sidecar).
    offer: u16,
    /// The connected sidecar reads compact records (it welcomed us
    /// with a version ≥ [`COMPACT_VERSION`]). False while disconnected:
    /// records written then may be read by whichever sidecar comes next,
    /// possibly an older one.
    compact: AtomicBool,
    /// This client's control segment from the sidecar (read-only).
    control: Mutex<Option<Segment>>,
}

static PROCESS: AtomicPtr<Process> = AtomicPtr::new(std::ptr::null_mut());
static INIT_LOCK: Mutex<()> = Mutex::new(());
static GENERATION: AtomicU64 = AtomicU64::new(1);
static ATFORK: Once = Once::new();

/// The current process state, rebuilt after a fork. `None` before init.
#[inline]
pub(crate) fn process() -> Option<&'static Process> {
    // Acquire pairs with the Release store in `install`: the Process is
    // fully built before we see the pointer.
    let p = PROCESS.load(Ordering::Acquire);
    if p.is_null() {
        None
    } else {
        // SAFETY: non-null pointers in PROCESS come from Box::leak and are
        // never freed.
        Some(unsafe { &*p })
    }
}

/// Build the runtime for this process (idempotent: a second call keeps the
/// first configuration and returns it).
pub(crate) fn install(cfg: Config) -> Result<&'static Process, crate::Error> {
    let _g = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = process() {
        if p.pid == std::process::id() {
            return Ok(p);
        }
    }
    let p = build(cfg, None)?;
    ATFORK.call_once(|| {
        // SAFETY: registering a handler has no preconditions; the handler
        // only touches this thread's TLS and atomics.
        unsafe { libc::pthread_atfork(None, None, Some(atfork_child)) };
    });
    Ok(p)
}

fn build(cfg: Config, parent: Option<&'static Process>) -> Result<&'static Process, crate::Error> {
    let table = Table::create(table_bytes(), parent.map(|p| p.table))?;
    let overflow = RingSlot::create(0, cfg.ring_bytes, true)?;
    let statics: &'static StaticMap = match parent {
        // The map lives in process memory, which fork copied: ours now.
        Some(p) => p.statics,
        None => Box::leak(Box::new(StaticMap::new())),
    };
    let proc = Box::leak(Box::new(Process {
        pid: std::process::id(),
        generation: GENERATION.fetch_add(1, Ordering::Relaxed) + 1,
        cfg,
        table,
        statics,
        dynamic: Mutex::new(Default::default()),
        rings: Mutex::new(Vec::new()),
        overflow,
        conn: Mutex::new(None),
        connected: AtomicBool::new(false),
        wake_fd: AtomicI32::new(-1),
        refused_reported: AtomicBool::new(false),
        offer: offered_version(),
        compact: AtomicBool::new(false),
        control: Mutex::new(None),
    }));
    // Release pairs with the Acquire load in `process()`.
    PROCESS.store(proc, Ordering::Release);
    let p: &'static Process = proc;
    // Connect once now, so a short-lived program that finds its sidecar
    // hands its rings over before it can exit; then keep trying in the
    // background.
    let first = p.connect_once();
    std::thread::Builder::new()
        .name("distlog-conn".into())
        .spawn(move || p.connection_loop(first))
        .map_err(|e| crate::Error::Io(e.to_string()))?;
    Ok(p)
}

/// [`PROTOCOL_VERSION`], or the lower version `DISTLOG_PROTOCOL_VERSION`
/// names (a higher or unreadable one is ignored).
fn offered_version() -> u16 {
    std::env::var("DISTLOG_PROTOCOL_VERSION")
        .ok()
        .and_then(|v| v.trim().parse::<u16>().ok())
        .map_or(PROTOCOL_VERSION, |v| v.min(PROTOCOL_VERSION))
}

fn table_bytes() -> usize {
    crate::table::DEFAULT_TABLE_BYTES
}

extern "C" fn atfork_child() {
    // Only the forking thread exists in the child. Forget its ring so its
    // next record goes to the slow path, which sees the new pid.
    let _ = LOCAL.try_with(|l| {
        l.slot.set(None);
        l.window.close();
        l.window.busy.set(false);
        l.tid.set(0);
        // The child must not repeat the parent's trace and scope ids.
        l.rng.iter().for_each(|r| r.set(0));
    });
}

/// The process state for the calling process, rebuilding it after a fork.
#[cold]
#[inline(never)]
pub(crate) fn process_checked() -> Option<&'static Process> {
    let p = process()?;
    if p.pid == std::process::id() {
        return Some(p);
    }
    let _g = INIT_LOCK.try_lock().ok()?;
    let p = process()?;
    if p.pid == std::process::id() {
        return Some(p);
    }
    // Our copy of the parent's connection must not be used: close our fd
    // only (no shutdown, which would cut the parent's connection too).
    if let Ok(mut c) = p.conn.try_lock() {
        if let Some(s) = c.take() {
            drop(OwnedFd::from(s));
        }
    }
    build(p.cfg.clone(), Some(p)).ok()
}

fn random_u128() -> u128 {
    let mut b = [0u8; 16];
    if getrandom::getrandom(&mut b).is_err() {
        let t = crate::clock::realtime_ns() as u128;
        return t ^ (u128::from(std::process::id()) << 64) ^ 0x9E37_79B9_7F4A_7C15;
    }
    u128::from_le_bytes(b)
}

impl Process {
    /// Register a dynamic call site (slow path).
    pub(crate) fn register_dyn(&self, site: &DynSite<'_>) -> Option<u32> {
        if let Some(id) = crate::callsite::cached_dyn(self.generation, site) {
            return Some(id);
        }
        if self.pid != std::process::id() {
            // Forked: never append to the parent's table.
            return process_checked()?.register_dyn(site);
        }
        let key = crate::callsite::dyn_key(site);
        let mut map = self.dynamic.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = map.get(&key) {
            crate::callsite::remember_dyn(self.generation, site, *id);
            return Some(*id);
        }
        let mut def = site.def();
        let id = self
            .table
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .append(&mut def)
            .ok()?;
        map.insert(key, id);
        crate::callsite::remember_dyn(self.generation, site, id);
        Some(id)
    }

    /// Register a static call site keyed by `key` (an address that lives
    /// for the program), unless it is registered already.
    pub(crate) fn register_static(&self, key: usize, site: &DynSite<'_>) -> Option<u32> {
        if let Some(id) = self.statics.get(key) {
            return Some(id);
        }
        if self.pid != std::process::id() {
            return process_checked()?.register_static(key, site);
        }
        let mut w = self.table.writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = self.statics.get(key) {
            return Some(id);
        }
        let mut def = site.def();
        let id = w.append(&mut def).ok()?;
        self.statics.insert(key, id);
        Some(id)
    }

    /// A ring for the calling thread (slow path: first record of a thread).
    fn claim_ring(&'static self, tid: u32) -> &'static RingSlot {
        let mut rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
        for r in rings.iter() {
            // Acquire pairs with the Release store in `Local::drop`: the
            // previous owner's writes to the ring are complete.
            if r.in_use
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                r.header().prod.owner_tid.store(tid, Ordering::Relaxed);
                return r;
            }
        }
        if rings.len() >= self.cfg.max_rings {
            return self.overflow;
        }
        let Ok(slot) = RingSlot::create(rings.len() as u32 + 1, self.cfg.ring_bytes, false) else {
            return self.overflow;
        };
        slot.in_use.store(true, Ordering::Relaxed);
        slot.header().prod.owner_tid.store(tid, Ordering::Relaxed);
        rings.push(slot);
        drop(rings);
        // Hand it over now if connected (the connection thread hands every
        // ring over on each connect; a duplicate is ignored by the sidecar).
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = conn.as_ref() {
            let _ = proto::send(
                s.as_fd(),
                &ClientMsg::Ring { index: slot.index },
                &[slot.fd.as_fd()],
            );
        }
        slot
    }

    /// Tell the sidecar a ring has records (it said it sleeps).
    #[cold]
    pub(crate) fn wake(&self, slot: &RingSlot) {
        // Relaxed: one writer clearing it is enough to stop others from
        // signalling again before the sidecar looks.
        slot.header().wake.sleeping.store(0, Ordering::Relaxed);
        let fd = self.wake_fd.load(Ordering::Relaxed);
        if fd >= 0 {
            let one = 1u64.to_ne_bytes();
            // SAFETY: fd is our eventfd (its number never changes once set,
            // see `wake_fd`); writing 8 bytes from a valid buffer.
            unsafe { libc::write(fd, one.as_ptr().cast(), 8) };
        }
    }

    fn all_rings(&self) -> Vec<&'static RingSlot> {
        let mut v = vec![self.overflow];
        v.extend(
            self.rings
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .copied(),
        );
        v
    }

    /// Whether a sidecar has our rings now.
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Wait until the sidecar has read everything written so far, or the
    /// timeout passes. Returns whether everything was read.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if self.is_connected() {
                let pending = self.all_rings().iter().any(|r| {
                    let h = r.header();
                    // Acquire pairs with the sidecar's Release store of read_pos.
                    h.cons.read_pos.load(Ordering::Acquire)
                        < h.prod.write_pos.load(Ordering::Relaxed)
                });
                if !pending {
                    return true;
                }
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Connect, say hello and hand the rings over. A sidecar from before
    /// version negotiation refuses a hello with a version above its own:
    /// then once more with [`LEGACY_VERSION`], whose records it reads.
    fn connect_once(&self) -> Option<UnixStream> {
        match self.hello(self.offer) {
            Err(Some(_)) if self.offer > LEGACY_VERSION => self.hello(LEGACY_VERSION).ok(),
            r => r.ok(),
        }
    }

    /// One connection attempt offering `version`; `Err(Some(reason))` when
    /// the sidecar refused it.
    fn hello(&self, version: u16) -> Result<UnixStream, Option<String>> {
        let stream = UnixStream::connect(&self.cfg.socket).map_err(|_| None)?;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let hello = ClientMsg::Hello {
            version,
            service: self.cfg.service.clone(),
            pid: self.pid,
            clock_tsc: crate::clock::uses_tsc(),
            library: self.cfg.library.clone(),
        };
        proto::send(stream.as_fd(), &hello, &[self.table.seg.fd()]).map_err(|_| None)?;
        let mut rx = proto::Receiver::new();
        // What the sidecar reads: the lower of the two versions (a sidecar
        // must not answer more than we offered; if it did, ours holds).
        let speaks = match rx.recv::<SidecarMsg>(stream.as_fd()) {
            Ok((SidecarMsg::Welcome { version: v, .. }, fds)) => {
                let mut fds = fds.into_iter();
                if let Some(fd) = fds.next() {
                    self.install_wake_fd(fd);
                }
                let ctl = fds.next().and_then(|fd| {
                    Segment::accept_readonly(
                        fd,
                        crate::control::CONTROL_BYTES,
                        crate::control::CONTROL_BYTES,
                    )
                    .ok()
                });
                *self.control.lock().unwrap_or_else(|e| e.into_inner()) = ctl;
                crate::filter::forget_seq();
                self.check_directives();
                v.min(version)
            }
            Ok((SidecarMsg::Directives { .. }, _)) => return Err(None),
            Ok((SidecarMsg::Refused { reason }, _)) => {
                // Refused for our version by an old sidecar: the caller
                // tries the legacy version before anything is said.
                if version <= LEGACY_VERSION && !self.refused_reported.swap(true, Ordering::Relaxed)
                {
                    eprintln!(
                        "distlog: the sidecar at {} refused this client: {reason}",
                        self.cfg.socket.display()
                    );
                }
                return Err(Some(reason));
            }
            Err(_) => return Err(None),
        };
        let _ = stream.set_read_timeout(None);
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        for r in self.all_rings() {
            proto::send(
                stream.as_fd(),
                &ClientMsg::Ring { index: r.index },
                &[r.fd.as_fd()],
            )
            .map_err(|_| None)?;
        }
        *conn = Some(stream.try_clone().map_err(|_| None)?);
        self.connected.store(true, Ordering::Relaxed);
        // Relaxed: the flag publishes no memory, only which layout this
        // sidecar reads; a writer that sees it late writes the postcard
        // layout, which every sidecar reads.
        self.compact
            .store(speaks >= COMPACT_VERSION, Ordering::Relaxed);
        Ok(stream)
    }

    /// Whether the connected sidecar reads compact records.
    #[inline]
    pub(crate) fn compact(&self) -> bool {
        // Relaxed: see where it is stored.
        self.compact.load(Ordering::Relaxed)
    }

    /// Apply the sidecar's directives if they changed since we last looked.
    fn check_directives(&self) {
        let ctl = self.control.lock().unwrap_or_else(|e| e.into_inner());
        let Some(seg) = ctl.as_ref() else { return };
        let hp = seg.as_ptr() as *const crate::control::ControlHeader;
        // SAFETY: the segment is mapped (read-only) for as long as `ctl` is
        // borrowed and is at least CONTROL_BYTES long (checked on accept).
        let hdr = unsafe { &*hp };
        if crate::control::check(hdr, seg.len()).is_err() {
            return;
        }
        // SAFETY: the payload region lies inside the mapping; we only read.
        let mem = unsafe {
            RawMemory::new(
                seg.as_ptr().add(crate::control::CONTROL_HEADER_BYTES),
                seg.len() - crate::control::CONTROL_HEADER_BYTES,
            )
        };
        if let Some((seq, d)) = crate::control::read(hdr, &mem) {
            drop(ctl);
            let _ = crate::filter::apply(seq, &d);
        }
    }

    fn install_wake_fd(&self, fd: OwnedFd) {
        let cur = self.wake_fd.load(Ordering::Relaxed);
        if cur < 0 {
            self.wake_fd
                .store(std::os::fd::IntoRawFd::into_raw_fd(fd), Ordering::Relaxed);
        } else {
            // SAFETY: dup2 onto our own fd number atomically replaces what
            // it refers to; writers racing with it write to the old or the
            // new eventfd, never to an unrelated file.
            unsafe { libc::dup2(fd.as_raw_fd(), cur) };
        }
    }

    fn connection_loop(&'static self, mut first: Option<UnixStream>) {
        let mut backoff = Duration::from_millis(10);
        loop {
            if self.pid != std::process::id() {
                return;
            }
            let stream = first.take().or_else(|| self.connect_once());
            match stream {
                Some(s) => {
                    backoff = Duration::from_millis(10);
                    // The sidecar nudges us when our directives change; a
                    // periodic look at the control segment is the backstop.
                    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
                    let mut rx = proto::Receiver::new();
                    loop {
                        match rx.recv::<SidecarMsg>(s.as_fd()) {
                            Ok((SidecarMsg::Directives { .. }, _)) => self.check_directives(),
                            Ok(_) => {}
                            Err(proto::ProtoError::WouldBlock) => self.check_directives(),
                            Err(proto::ProtoError::Io(e))
                                if e.kind() == std::io::ErrorKind::WouldBlock
                                    || e.kind() == std::io::ErrorKind::TimedOut =>
                            {
                                self.check_directives()
                            }
                            Err(_) => break,
                        }
                    }
                    // Before anything else: the next sidecar may be older.
                    // Records written compact before this store, and not
                    // read by the sidecar that went away, reach an older
                    // next sidecar as undecodable records, which it
                    // counts and skips (see `wire::compact`).
                    self.compact.store(false, Ordering::Relaxed);
                    self.connected.store(false, Ordering::Relaxed);
                    *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                None => {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

/// Free bytes below which a ring counts as full before a record is encoded
/// (a typical record is 48..128 bytes). The C header's inline writer
/// leaves the window to the library at the same room
/// (`DISTLOG_INTERNAL_MIN_ROOM`).
pub const DROP_EARLY_BYTES: u64 = 256;

/// Size of the per-thread encode buffer (the shared ring's records, and
/// those that miss the window before an exclusive ring's end); larger
/// records take the heap path.
pub(crate) const STACK_RECORD: usize = 2048;

/// Per-thread state. `#[repr(C)]` with the [`Window`] first: the C
/// header's call sites cache a pointer to it, which is both this thread's
/// `Local` (for the library) and its window (for the inline writer).
#[repr(C)]
pub(crate) struct Local {
    pub window: Window,
    pub slot: Cell<Option<&'static RingSlot>>,
    pub tid: Cell<u32>,
    pub buf: UnsafeCell<[u8; STACK_RECORD]>,
    pub big: UnsafeCell<Vec<u8>>,
    pub scratch: UnsafeCell<String>,
    pub scopes: UnsafeCell<ScopeStack>,
    /// Two generators seeded independently, so a trace id (one output of
    /// each) carries 128 bits of the OS's entropy, not 64.
    pub rng: [Cell<u64>; 2],
}

/// Version of [`Window`]'s layout, which `include/distlog.h` compiles in
/// (`DISTLOG_INTERNAL_WINDOW_ABI`): a header of another number never gets
/// a window (`distlog_event_kv_w` takes the call instead).
pub const WINDOW_ABI: u32 = 1;

/// What the C header's inline event writer reads to write a compact event
/// into this thread's ring from the caller's code (the header's
/// `distlog_internal_window`; the layout test compares the two). The
/// library fills it when the thread claims an exclusive ring and closes it
/// (`ready` 0) when the ring goes (thread exit, fork); the inline writer
/// does exactly what [`Writer::push_in_place`] does at the same
/// [`ring::Cursor`], and leaves everything else (a window worked out
/// again, a full ring, a wake-up) to the library. Process-private memory
/// only: nothing here is reachable by the consumer.
#[repr(C)]
pub(crate) struct Window {
    /// [`WINDOW_ABI`].
    abi: u32,
    /// 1 while the inline writer may write: an exclusive ring is this
    /// thread's and timestamps are TSC ticks.
    ready: Cell<u32>,
    /// This thread's kernel id.
    tid: Cell<u32>,
    /// Set while this thread is inside a log call: a nested call (from a
    /// `Debug` impl, a `Drop`, a signal handler) is dropped and counted.
    /// The inline writer sets it too.
    pub busy: Cell<bool>,
    /// The process's "the sidecar reads compact records" flag (a `bool`).
    compact: Cell<*const AtomicBool>,
    /// The filter epoch (call sites cache their verdict under it).
    epoch: Cell<*const AtomicU64>,
    /// The thread's innermost scope ([`ScopeTop`]).
    top: Cell<*const ScopeTop>,
    /// The ring's position and cached window.
    cursor: Cell<*const ring::Cursor>,
    /// The ring's data region, its size − 1, and the largest record window.
    data: Cell<*mut u8>,
    mask: Cell<u64>,
    max_window: Cell<u64>,
    /// The ring header's `write_pos`, `written` and wake `sleeping`.
    write_pos: Cell<*const RingU64>,
    written: Cell<*const RingU64>,
    sleeping: Cell<*const RingU32>,
    /// The ring header's `dropped`, and the consumer's `read_pos`: with
    /// fewer than `DROP_EARLY_BYTES` left in the window, the inline writer
    /// loads the consumer's position as [`Writer::push_in_place`] does and
    /// drops and counts the event itself when the ring is full (a full
    /// ring costs no call: overload never costs more than an event).
    dropped: Cell<*const RingU64>,
    read_pos: Cell<*const RingU64>,
}

impl Window {
    const fn new() -> Window {
        Window {
            abi: WINDOW_ABI,
            ready: Cell::new(0),
            tid: Cell::new(0),
            busy: Cell::new(false),
            compact: Cell::new(std::ptr::null()),
            epoch: Cell::new(std::ptr::null()),
            top: Cell::new(std::ptr::null()),
            cursor: Cell::new(std::ptr::null()),
            data: Cell::new(std::ptr::null_mut()),
            mask: Cell::new(0),
            max_window: Cell::new(0),
            write_pos: Cell::new(std::ptr::null()),
            written: Cell::new(std::ptr::null()),
            sleeping: Cell::new(std::ptr::null()),
            dropped: Cell::new(std::ptr::null()),
            read_pos: Cell::new(std::ptr::null()),
        }
    }

    /// Open the window on `slot`, the ring `l` (whose window this is) just
    /// claimed; it stays closed for a shared ring or a clock other than
    /// the TSC (the inline writer reads the TSC).
    fn open(l: &Local, proc: &'static Process, slot: &'static RingSlot) {
        let w = &l.window;
        let hdr = slot.header();
        w.tid.set(l.tid.get());
        w.compact.set(&proc.compact);
        w.epoch.set(&crate::filter::EPOCH);
        // SAFETY: only this thread touches its scope stack, and no borrow
        // of it is live here; the address of its top stays valid as long
        // as the thread's `Local`.
        w.top.set(unsafe { &(*l.scopes.get()).top });
        w.cursor.set(slot.writer.cursor());
        w.data.set(slot.writer.memory().as_ptr());
        w.mask.set(hdr.stat.data_bytes - 1);
        w.max_window.set(slot.writer.max_window());
        w.write_pos.set(&hdr.prod.write_pos);
        w.written.set(&hdr.prod.written);
        w.sleeping.set(&hdr.wake.sleeping);
        w.dropped.set(&hdr.prod.dropped);
        w.read_pos.set(&hdr.cons.read_pos);
        let inline = !slot.writer.is_shared() && crate::clock::uses_tsc();
        w.ready.set(u32::from(inline));
    }

    /// The ring went (thread exit, fork): the inline writer takes the call.
    fn close(&self) {
        self.ready.set(0);
    }
}

/// [`Window`]'s layout for the test that compares it with the header's
/// `distlog_internal_window`: its size, alignment and each member's
/// offset in declaration order.
pub const WINDOW_LAYOUT: [usize; 18] = {
    use std::mem::{align_of, offset_of, size_of};
    [
        size_of::<Window>(),
        align_of::<Window>(),
        offset_of!(Window, abi),
        offset_of!(Window, ready),
        offset_of!(Window, tid),
        offset_of!(Window, busy),
        offset_of!(Window, compact),
        offset_of!(Window, epoch),
        offset_of!(Window, top),
        offset_of!(Window, cursor),
        offset_of!(Window, data),
        offset_of!(Window, mask),
        offset_of!(Window, max_window),
        offset_of!(Window, write_pos),
        offset_of!(Window, written),
        offset_of!(Window, sleeping),
        offset_of!(Window, dropped),
        offset_of!(Window, read_pos),
    ]
};

/// [`ScopeTop`]'s layout, as [`WINDOW_LAYOUT`].
pub const TOP_LAYOUT: [usize; 5] = {
    use std::mem::{align_of, offset_of, size_of};
    [
        size_of::<ScopeTop>(),
        align_of::<ScopeTop>(),
        offset_of!(ScopeTop, scope),
        offset_of!(ScopeTop, trace),
        offset_of!(ScopeTop, has_trace),
    ]
};

// The window is where the cached pointer points: the start of `Local`.
const _: () = assert!(std::mem::offset_of!(Local, window) == 0);
// The inline writer reads `busy` and `compact` as bytes holding 0 or 1
// (and writes `busy`).
const _: () = assert!(std::mem::size_of::<Cell<bool>>() == 1);
const _: () = assert!(std::mem::size_of::<AtomicBool>() == 1);

/// The thread's innermost entered scope as the C header's inline writer
/// reads it (`distlog_internal_top`): a compact event's scope and trace.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScopeTop {
    scope: u64,
    trace: crate::wire::TraceId,
    /// 1 when there is a scope (the record carries its trace), else 0.
    has_trace: u8,
}

impl ScopeTop {
    const NONE: ScopeTop = ScopeTop {
        scope: 0,
        trace: [0; 16],
        has_trace: 0,
    };
}

/// The thread's stack of entered scopes: a `Vec` that keeps a copy of its
/// top where the C inline writer reads it ([`ScopeTop`]). Reads go
/// through the slice (`last`, `iter`); every change goes through the
/// methods below, which update the copy.
pub(crate) struct ScopeStack {
    top: ScopeTop,
    v: Vec<Current>,
}

impl ScopeStack {
    const fn new() -> ScopeStack {
        ScopeStack {
            top: ScopeTop::NONE,
            v: Vec::new(),
        }
    }

    pub fn push(&mut self, c: Current) {
        self.v.push(c);
        self.sync();
    }

    pub fn pop(&mut self) -> Option<Current> {
        let c = self.v.pop();
        self.sync();
        c
    }

    pub fn remove(&mut self, i: usize) -> Current {
        let c = self.v.remove(i);
        self.sync();
        c
    }

    /// The copy says what [`crate::scope::top`] says: an entry of a span
    /// without a scope (scope 0: no runtime, a full call-site table) at
    /// the top is no scope, not a zero trace.
    #[inline]
    fn sync(&mut self) {
        self.top = crate::scope::top(&self.v).map_or(ScopeTop::NONE, |c| ScopeTop {
            scope: c.scope,
            trace: c.trace,
            has_trace: 1,
        });
    }
}

impl std::ops::Deref for ScopeStack {
    type Target = [Current];
    fn deref(&self) -> &[Current] {
        &self.v
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // `take`: a caller's per-thread cache of this Local (`local_ptr`)
        // can outlive it until the thread ends (a C destructor that logs);
        // with no slot, `write_compact_in` leaves such a call to the
        // general path, which finds the thread's state gone and writes to
        // the shared ring (`write_torn_down`), not to the released one.
        self.window.close();
        if let Some(slot) = self.slot.take() {
            if let Some(p) = process() {
                if std::ptr::eq(slot, p.overflow) {
                    return;
                }
            }
            slot.header().prod.owner_tid.store(0, Ordering::Relaxed);
            // Release pairs with the Acquire CAS in `claim_ring`.
            slot.in_use.store(false, Ordering::Release);
        }
    }
}

thread_local! {
    pub(crate) static LOCAL: Local = const {
        Local {
            window: Window::new(),
            slot: Cell::new(None),
            tid: Cell::new(0),
            buf: UnsafeCell::new([0; STACK_RECORD]),
            big: UnsafeCell::new(Vec::new()),
            scratch: UnsafeCell::new(String::new()),
            scopes: UnsafeCell::new(ScopeStack::new()),
            rng: [Cell::new(0), Cell::new(0)],
        }
    };
}

/// What the encode callback gets: a buffer and the thread id; for an
/// event ([`write_event`]) the thread's current scope and whether the
/// sidecar reads the compact layout.
pub(crate) struct Ctx<'a> {
    pub buf: &'a mut [u8],
    pub scratch: &'a mut String,
    pub tid: u32,
    pub cur: Option<Current>,
    pub compact: bool,
}

#[cold]
#[inline(never)]
fn first_use(l: &Local) -> Option<(&'static Process, &'static RingSlot)> {
    let p = process_checked()?;
    if l.tid.get() == 0 {
        // SAFETY: gettid has no preconditions.
        l.tid.set(unsafe { libc::gettid() } as u32);
    }
    let slot = p.claim_ring(l.tid.get());
    l.slot.set(Some(slot));
    Window::open(l, p, slot);
    Some((p, slot))
}

/// Holds a thread's `busy` flag; clears it even when a `Debug` impl the
/// record calls panics, so the thread can log again afterwards.
struct Busy<'a>(&'a Cell<bool>);

impl<'a> Busy<'a> {
    #[inline]
    fn enter(c: &'a Cell<bool>) -> Self {
        c.set(true);
        Busy(c)
    }
}

impl Drop for Busy<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// Encode a record with `f` and push it into this thread's ring. Never
/// blocks; drops and counts when it cannot write.
#[inline]
pub(crate) fn write_record(f: impl Fn(&mut Ctx<'_>) -> Option<usize>) {
    write_in::<false>(f)
}

/// This thread's ring and process when a compact record may go straight
/// into the ring ([`write_compact_in`], [`write_scope_compact`]): not the
/// thread's first record, not a nested call, an exclusive ring, a sidecar
/// that reads the compact layout.
#[inline(always)]
fn compact_ring(l: &Local) -> Option<(&'static Process, &'static RingSlot)> {
    let slot = l.slot.get()?;
    if l.window.busy.get() || slot.writer.is_shared() {
        return None;
    }
    // As in `write_in`: `slot` is cleared after a fork, before the
    // process pointer changes.
    let proc = process()?;
    proc.compact().then_some((proc, slot))
}

/// The end of a record written in place by [`compact_ring`]'s caller:
/// wake the sidecar if it asked; `false` when the window was too short
/// and the general path must take the record.
#[inline(always)]
fn pushed_in_place(proc: &Process, slot: &RingSlot, res: Option<Push>) -> bool {
    match res {
        Some(Push::Done { wake }) => {
            if wake {
                proc.wake(slot);
            }
            true
        }
        Some(_) => true,
        None => false,
    }
}

/// A scope's open or close record in the compact layout, straight into
/// this thread's exclusive ring in one thread-local access and no [`Ctx`]
/// (`f` gets the free bytes and the thread id). `false`, having written
/// and counted nothing, when [`write_record`] must take the record
/// instead: the thread's first record, a nested call, the postcard
/// layout, a shared ring, a window too short before the ring's end.
/// The general path's `Ctx`, scope-stack read and closure call were ~40
/// instructions of a scope's two records.
#[inline(always)]
pub(crate) fn write_scope_compact(f: impl FnOnce(&mut [u8], u32) -> Option<usize>) -> bool {
    LOCAL.try_with(|l| {
        let Some((proc, slot)) = compact_ring(l) else {
            return false;
        };
        let _busy = Busy::enter(&l.window.busy);
        let tid = l.tid.get();
        // SAFETY: an exclusive ring is written only by the thread that
        // claimed it (its Local holds it until the thread exits).
        let res = unsafe {
            slot.writer.push_in_place(
                DROP_EARLY_BYTES,
                #[inline(always)]
                |buf| f(buf, tid),
            )
        };
        pushed_in_place(proc, slot, res)
    }) == Ok(true)
}

/// [`write_record`] for an event: `f` also gets the current scope (read
/// in the same thread-local access) and the layout flag.
#[inline]
pub(crate) fn write_event(f: impl Fn(&mut Ctx<'_>) -> Option<usize>) {
    write_in::<true>(f)
}

/// A compact event straight into this thread's exclusive ring, in one
/// thread-local access and no [`Ctx`]: the common case of an enabled C
/// or `tracing` event. `values` appends the call site's values after the head and says
/// whether it could (`false`: the event has something only the general
/// path writes). Returns `false`, having written and counted nothing, when
/// [`write_event`] must take the event instead: the thread's first record,
/// a nested call, the postcard layout, a shared ring, a window too short
/// before the ring's end. `ts` gives the event's time: the caller picks
/// where the clock is read, which changes the event's cost more than the
/// read itself (the `tracing` layer reads it first thing in `on_event`:
/// paired rounds, 53.2 -> 48.4 ns; see also
/// [`crate::raw::try_event_compact`]).
#[inline(always)]
pub(crate) fn write_compact(
    callsite: u32,
    ts: impl FnOnce() -> u64,
    values: impl FnOnce(&mut crate::wire::compact::Writer<'_>) -> bool,
) -> bool {
    LOCAL.try_with(|l| write_compact_in(l, callsite, ts, values)) == Ok(true)
}

/// This thread's [`Local`] for a cache the caller keeps per thread
/// ([`write_compact_in`]); null once the thread's state is gone (it is
/// exiting). Its address stays valid until the thread ends.
pub(crate) fn local_ptr() -> *const Local {
    LOCAL
        .try_with(|l| l as *const Local)
        .unwrap_or(std::ptr::null())
}

/// Wake the sidecar for `l`'s ring: the C inline writer committed a record
/// and found the consumer asleep. Clears the flag as [`Process::wake`].
#[cold]
#[inline(never)]
pub(crate) fn wake_local(l: &Local) {
    if let (Some(slot), Some(p)) = (l.slot.get(), process()) {
        p.wake(slot);
    }
}

/// [`write_compact`] with this thread's [`Local`] at hand: the C header's
/// call sites cache it in a thread-local of their own, which costs C one
/// instruction to read where ours, in a shared library, is a call to
/// `__tls_get_addr` (the event took 8 % less time without it).
#[inline(always)]
pub(crate) fn write_compact_in(
    l: &Local,
    callsite: u32,
    ts: impl FnOnce() -> u64,
    values: impl FnOnce(&mut crate::wire::compact::Writer<'_>) -> bool,
) -> bool {
    {
        let Some((proc, slot)) = compact_ring(l) else {
            return false;
        };
        let _busy = Busy::enter(&l.window.busy);
        // SAFETY: as in `write_in` (only this thread touches its scope
        // stack, no borrow of it is live; the top is copied out).
        let cur = crate::scope::top(unsafe { &*l.scopes.get() });
        let tid = l.tid.get();
        // SAFETY: an exclusive ring is written only by the thread that
        // claimed it (its Local holds it until the thread exits).
        let res = unsafe {
            slot.writer.push_in_place(
                DROP_EARLY_BYTES,
                // Inlined: else a call with its captures in memory (as the
                // write path's closure, see `event_compact`).
                #[inline(always)]
                |buf| {
                    let (scope, trace) = cur.map_or((0, None), |c| (c.scope, Some(c.trace)));
                    let mut w = crate::wire::compact::Writer::new(
                        buf,
                        callsite,
                        ts(),
                        tid,
                        scope,
                        trace.as_ref(),
                    );
                    if !values(&mut w) {
                        return None;
                    }
                    w.finish()
                },
            )
        };
        pushed_in_place(proc, slot, res)
    }
}

#[inline(always)]
fn write_in<const EVENT: bool>(f: impl Fn(&mut Ctx<'_>) -> Option<usize>) {
    let done = LOCAL.try_with(|l| {
        if l.window.busy.get() {
            if let Some(s) = l.slot.get() {
                s.header().prod.dropped.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        let _busy = Busy::enter(&l.window.busy);
        let (proc, slot) = match l.slot.get() {
            // Relaxed-load fast path; the process pointer only changes
            // after a fork, when atfork_child cleared `slot`.
            Some(s) => match process() {
                Some(p) => (p, s),
                None => return,
            },
            None => match first_use(l) {
                Some(x) => x,
                None => return,
            },
        };
        let (cur, compact) = if EVENT {
            // Only this thread touches its scope stack, and no borrow of it
            // is live here (push/pop/top are short and do not call out).
            // SAFETY: as said; the top is copied out.
            let stack = unsafe { &*l.scopes.get() };
            (crate::scope::top(stack), proc.compact())
        } else {
            // Scope heads have a compact form too (`wire::compact`).
            (None, proc.compact())
        };
        if slot.writer.is_shared() {
            write_staged(l, proc, slot, cur, compact, &f);
            return;
        }
        // SAFETY: `busy` makes this the only live borrow of the scratch
        // string on this thread (a nested call returns above).
        let scratch = unsafe { &mut *l.scratch.get() };
        let tid = l.tid.get();
        // A (nearly) full ring drops and counts before encoding, so overload
        // never costs an encoding.
        // SAFETY: an exclusive ring is written only by the thread that
        // claimed it (its Local holds it until the thread exits).
        let res = unsafe {
            slot.writer.push_in_place(DROP_EARLY_BYTES, |buf| {
                f(&mut Ctx {
                    buf,
                    scratch: &mut *scratch,
                    tid,
                    cur,
                    compact,
                })
            })
        };
        match res {
            Some(Push::Done { wake: true }) => proc.wake(slot),
            Some(_) => {}
            None => write_staged(l, proc, slot, cur, compact, &f),
        }
    });
    if done.is_err() {
        write_torn_down(&f);
    }
}

/// The thread is being torn down: the shared ring still works.
#[cold]
#[inline(never)]
fn write_torn_down(f: &dyn Fn(&mut Ctx<'_>) -> Option<usize>) {
    {
        if let Some(p) = process_checked() {
            let mut buf = [0u8; 1024];
            let mut s = String::new();
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() } as u32;
            // No thread-local scope stack any more, and the postcard layout
            // (the connection may be going too).
            let mut ctx = Ctx {
                buf: &mut buf,
                scratch: &mut s,
                tid,
                cur: None,
                compact: false,
            };
            match f(&mut ctx) {
                Some(n) => {
                    push(p, p.overflow, &buf[..n]);
                }
                None => {
                    p.overflow
                        .header()
                        .prod
                        .dropped
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Encode into this thread's buffer (the heap one when the stack one is
/// too small) and push: the shared ring, which reserves by exact size, and
/// a record that did not fit the free bytes before an exclusive ring's end.
#[cold]
#[inline(never)]
fn write_staged(
    l: &Local,
    proc: &Process,
    slot: &RingSlot,
    cur: Option<Current>,
    compact: bool,
    f: &dyn Fn(&mut Ctx<'_>) -> Option<usize>,
) {
    // A (nearly) full ring: drop and count before encoding, as on the
    // in-place path.
    if !slot.writer.has_room(DROP_EARLY_BYTES) {
        slot.header().prod.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // SAFETY: the caller holds `busy`, so this is the only live borrow of
    // the buffers on this thread.
    let (buf, scratch) = unsafe { (&mut *l.buf.get(), &mut *l.scratch.get()) };
    let mut ctx = Ctx {
        buf,
        scratch,
        tid: l.tid.get(),
        cur,
        compact,
    };
    if let Some(n) = f(&mut ctx) {
        push(proc, slot, &ctx.buf[..n]);
        return;
    }
    // Did not fit the stack buffer: once more on the heap.
    // SAFETY: as above, guarded by `busy`.
    let big = unsafe { &mut *l.big.get() };
    if big.len() < ring::MAX_RECORD {
        big.resize(ring::MAX_RECORD, 0);
    }
    let mut ctx = Ctx {
        buf: &mut big[..],
        scratch: ctx.scratch,
        tid: l.tid.get(),
        cur,
        compact,
    };
    match f(&mut ctx) {
        Some(n) => {
            push(proc, slot, &ctx.buf[..n]);
        }
        None => {
            slot.header().prod.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Count one record as dropped on this thread's ring without writing it
/// (its call site could not be defined: the call-site table is full), so
/// the loss reaches the sidecar as a loss record instead of vanishing.
#[cold]
pub(crate) fn count_dropped() {
    // An encoder that never fits takes the drop-and-count path.
    write_record(|_| None);
}

#[inline]
fn push(proc: &Process, slot: &RingSlot, bytes: &[u8]) -> Push {
    // SAFETY: an exclusive ring is used only by the thread that claimed it
    // (its Local holds it until the thread exits); the overflow ring is
    // shared and reserves by CAS.
    let r = unsafe { slot.writer.push(bytes) };
    if let Push::Done { wake: true } = r {
        proc.wake(slot);
    }
    r
}

/// A random non-zero u64 from this thread's generator `which` (0 or 1;
/// xorshift, seeded from the OS once per thread and again after a fork).
pub(crate) fn random_u64(which: usize) -> u64 {
    LOCAL
        .try_with(|l| next_random(&l.rng[which & 1]))
        .unwrap_or_else(|_| random_fallback())
}

/// The next output of one of a thread's generators (see [`random_u64`]).
#[inline(always)]
pub(crate) fn next_random(r: &Cell<u64>) -> u64 {
    let mut x = r.get();
    if x == 0 {
        x = (random_u128() as u64) | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    r.set(x);
    x
}

/// A random non-zero u64 for a thread whose generators are gone (it is
/// being torn down).
#[cold]
pub(crate) fn random_fallback() -> u64 {
    (random_u128() as u64) | 1
}

/// This thread's kernel id, for a caller already in its `Local`.
#[inline(always)]
pub(crate) fn local_tid(l: &Local) -> u32 {
    if l.tid.get() == 0 {
        // SAFETY: gettid has no preconditions.
        l.tid.set(unsafe { libc::gettid() } as u32);
    }
    l.tid.get()
}

/// The process state without the fork check (the write path checks).
#[inline]
pub(crate) fn process_fast() -> Option<&'static Process> {
    process()
}

/// Run `f` with this thread's encode buffer and scratch string, outside a
/// record write (a nested call is skipped).
pub(crate) fn write_scratch(f: impl FnOnce(&mut [u8], &mut String)) {
    let _ = LOCAL.try_with(|l| {
        if l.window.busy.get() {
            return;
        }
        let _busy = Busy::enter(&l.window.busy);
        // SAFETY: guarded by `busy`, as in write_record.
        let (buf, scratch) = unsafe { (&mut *l.buf.get(), &mut *l.scratch.get()) };
        f(buf, scratch);
    });
}

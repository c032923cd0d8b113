//! Per-client state: who it is, its call-site table, its rings, its open
//! scopes, its counters.
//!
//! # Mappings that borrow from themselves
//!
//! [`distlog::ring::Reader`] and [`distlog::table::TableReader`] borrow the
//! header they read from the mapping. Here the mapping (a
//! [`Segment`]) and its reader live in one struct: the reader is built over a
//! `'static` view of the mapping and is declared *before* the segment, so it
//! is dropped first; a `Segment` unmaps only on drop, and moving the struct
//! does not move the mapping. These structs never hand out the `'static`
//! references, only borrows of themselves.

use std::collections::HashMap;
use std::os::fd::OwnedFd;

use distlog::ring::{self, Geometry, RawMemory, Reader, RingError, RingHeader, Stop, HEADER_BYTES};
use distlog::segment::{Segment, SegmentError};
use distlog::table::{self, OwnedDef, TableError, TableHeader, TableReader, TABLE_HEADER_BYTES};
use distlog::wire::TraceId;

use crate::Shutdown;

/// Who a client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Process id: from `SO_PEERCRED`, or from the hello if the kernel
    /// reported 0 (another pid namespace; then `pid_unverified`).
    pub pid: u32,
    /// `pid` came from the client, not the kernel.
    pub pid_unverified: bool,
    /// User id (`SO_PEERCRED`).
    pub uid: u32,
    /// Group id (`SO_PEERCRED`).
    pub gid: u32,
    /// Service name from the hello.
    pub service: String,
    /// Library from the hello (e.g. `rust 0.1.0`).
    pub library: String,
    /// Protocol version the client speaks.
    pub version: u16,
    /// Its timestamps are TSC ticks (else realtime ns).
    pub clock_tsc: bool,
}

/// Why a client's segment was refused.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The memfd failed the segment checks (seals, tmpfs, size).
    #[error("{0}")]
    Segment(#[from] SegmentError),
    /// The ring header is not one we can read.
    #[error("{0}")]
    Ring(#[from] RingError),
    /// The table header is not one we can read.
    #[error("{0}")]
    Table(#[from] TableError),
}

/// A call-site table segment, checked and mapped.
pub struct ClientTable {
    reader: TableReader<'static, RawMemory>,
    // Declared after `reader`: dropped (unmapped) after it.
    _seg: Segment,
}

impl std::fmt::Debug for ClientTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTable")
            .field("defs", &self.reader.defs.len())
            .finish()
    }
}

impl ClientTable {
    /// Check the memfd (seals, tmpfs, size `TABLE_HEADER_BYTES + 4096 ..=
    /// MAX_TABLE_BYTES`) and the table header, then map it.
    pub fn accept(fd: OwnedFd) -> Result<ClientTable, AcceptError> {
        let seg = Segment::accept(fd, TABLE_HEADER_BYTES + 4096, table::MAX_TABLE_BYTES)?;
        // The client may change the header at any time: the reader trusts
        // none of it beyond `check_table`'s checks and its own bounds checks.
        // It stays mapped as long as `_seg`, which outlives `reader`.
        // SAFETY: page-aligned, ≥ TABLE_HEADER_BYTES + 4096 long (`accept`):
        // a TableHeader (64 bytes, align 8) fits at its start.
        let hdr: &'static TableHeader = unsafe { &*(seg.as_ptr() as *const TableHeader) };
        table::check_table(hdr, seg.len())?;
        // SAFETY: the entry region lies inside the mapping (len >= 64 + 4096),
        // starts 64 bytes in (8-aligned) and lives as long as `_seg`.
        let mem = unsafe {
            RawMemory::new(
                seg.as_ptr().add(TABLE_HEADER_BYTES),
                seg.len() - TABLE_HEADER_BYTES,
            )
        };
        Ok(ClientTable {
            reader: TableReader::new(hdr, mem),
            _seg: seg,
        })
    }

    /// The definition of call site `id`, reading the table again (up to
    /// `max_defs` definitions) if it is not known yet.
    pub fn def(&mut self, id: u32, max_defs: usize) -> Result<&OwnedDef, CutOff> {
        let i = id as usize;
        if i >= self.reader.defs.len() {
            self.reader.refresh(max_defs)?;
        }
        self.reader.defs.get(i).ok_or(CutOff::UnknownCallsite(id))
    }

    /// The definition of call site `id` if already known (no refresh).
    pub fn known(&self, id: u32) -> Option<&OwnedDef> {
        self.reader.defs.get(id as usize)
    }

    /// Number of definitions read so far.
    pub fn len(&self) -> usize {
        self.reader.defs.len()
    }

    /// Whether no definition was read yet.
    pub fn is_empty(&self) -> bool {
        self.reader.defs.is_empty()
    }
}

/// A ring segment, checked and mapped but not yet read.
pub struct RingSegment {
    geo: Geometry,
    seg: Segment,
}

impl std::fmt::Debug for RingSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingSegment")
            .field("geo", &self.geo)
            .finish()
    }
}

impl RingSegment {
    /// Check the memfd (seals, tmpfs, size `HEADER_BYTES + MIN_DATA_BYTES
    /// ..= HEADER_BYTES + MAX_DATA_BYTES`) and the ring header, then map it.
    pub fn accept(fd: OwnedFd) -> Result<RingSegment, AcceptError> {
        let seg = Segment::accept(
            fd,
            HEADER_BYTES + ring::MIN_DATA_BYTES,
            HEADER_BYTES + ring::MAX_DATA_BYTES,
        )?;
        let geo = ring::check_header(Self::header_of(&seg), seg.len() - HEADER_BYTES)?;
        Ok(RingSegment { geo, seg })
    }

    fn header_of(seg: &Segment) -> &RingHeader {
        // The client may write the header concurrently: readers copy the
        // geometry once (`check_header`) and treat cursors as hostile.
        // SAFETY: page-aligned and longer than HEADER_BYTES (`accept`), a
        // RingHeader fits in HEADER_BYTES; the borrow is tied to `seg`.
        unsafe { &*(seg.as_ptr() as *const RingHeader) }
    }

    /// The geometry read at accept time.
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// Start reading: resumes at the ring's `read_pos` (a ring handed again
    /// after a reconnect or a sidecar restart continues where the last
    /// reader released).
    pub fn attach(self) -> Result<AttachedRing, RingError> {
        // SAFETY: as in `header_of`; the 'static lifetime is sound because
        // `reader` is stored next to `seg` in `AttachedRing` and dropped
        // before it (field order), and never leaves it.
        let hdr: &'static RingHeader = unsafe { &*(self.seg.as_ptr() as *const RingHeader) };
        // SAFETY: the data region is inside the mapping (offset HEADER_BYTES,
        // page-aligned, length checked by `check_header`) and lives as long
        // as `seg`, which outlives the reader.
        let mem = unsafe {
            RawMemory::new(
                self.seg.as_ptr().add(HEADER_BYTES),
                self.seg.len() - HEADER_BYTES,
            )
        };
        let reader = Reader::attach(hdr, mem, self.geo)?;
        Ok(AttachedRing {
            reader,
            _seg: self.seg,
            ledger: Ledger::default(),
            last_stop: Stop::Empty,
            busy_since: None,
            writer_gone: false,
            gaps_unreported: 0,
        })
    }
}

/// What the sidecar counted for one ring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Records read (and handed to the sinks).
    pub read: u64,
    /// Last value of the ring's `dropped` counter reported as a loss.
    pub dropped_seen: u64,
    /// Records reported lost.
    pub lost: u64,
}

/// A ring being read.
pub struct AttachedRing {
    reader: Reader<'static, RawMemory>,
    // Declared after `reader`: dropped (unmapped) after it.
    _seg: Segment,
    /// Counters.
    pub ledger: Ledger,
    /// Why the last poll stopped.
    pub last_stop: Stop,
    /// Where and since when the reader waits for an unfinished record.
    busy_since: Option<(u64, std::time::Instant)>,
    /// The writing process is gone: an unfinished record never finishes.
    pub writer_gone: bool,
    /// Records stepped over unfinished, not yet reported as lost.
    pub gaps_unreported: u64,
}

/// How long an unfinished record of a shared ring may stay unfinished while
/// its process lives before the reader steps over it (a thread that died
/// mid-record, e.g. killed by a signal).
pub const BUSY_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

impl std::fmt::Debug for AttachedRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachedRing")
            .field("reader", &self.reader)
            .field("ledger", &self.ledger)
            .finish()
    }
}

impl AttachedRing {
    /// Geometry (ring id, index, flags).
    pub fn geometry(&self) -> &Geometry {
        self.reader.geometry()
    }

    /// Read up to `budget` records (see [`Reader::poll`]).
    pub fn poll(
        &mut self,
        budget: usize,
        f: impl FnMut(u64, &[u8]) -> bool,
    ) -> Result<Stop, RingError> {
        let r = self.reader.poll(budget, f);
        if let Ok(stop) = r {
            self.last_stop = stop;
            if stop != Stop::Busy {
                self.busy_since = None;
                return r;
            }
            let pos = self.reader.pos();
            match self.busy_since {
                Some((p, t)) if p == pos && (self.writer_gone || t.elapsed() >= BUSY_GRACE) => {
                    if !self.reader.skip_busy() {
                        // The rest of the ring cannot be read: count what
                        // its writers committed behind the unreadable slot
                        // (their own `written` counter, a hint) as lost,
                        // so the loss is reported, not silent.
                        // Relaxed: a counter read as a hint.
                        let written = self
                            .reader
                            .header()
                            .prod
                            .written
                            .load(std::sync::atomic::Ordering::Relaxed);
                        self.gaps_unreported += written.saturating_sub(self.ledger.read);
                        return Err(RingError::BadRecord {
                            pos,
                            why: "a record was reserved by a writer that died before writing its length",
                        });
                    }
                    self.gaps_unreported += 1;
                    self.busy_since = None;
                    // More may follow it: poll again.
                    self.last_stop = Stop::Budget;
                    return Ok(Stop::Budget);
                }
                Some((p, _)) if p == pos => {}
                _ => {
                    self.busy_since = Some((pos, std::time::Instant::now()));
                    if self.writer_gone {
                        // Poll once more right away: it will step over it.
                        self.last_stop = Stop::Budget;
                        return Ok(Stop::Budget);
                    }
                }
            }
        }
        r
    }

    /// Give the space read so far back to the producer.
    pub fn release(&mut self) {
        self.reader.release();
    }

    /// Set the ring's "consumer sleeps" flag.
    pub fn set_sleeping(&self, sleeping: bool) {
        self.reader.set_sleeping(sleeping);
    }

    /// The ring's `dropped` counter (a hint: the client may write anything).
    pub fn dropped(&self) -> u64 {
        // Relaxed: a counter read as a hint; nothing is published through it
        // (the producer's `fetch_add(Relaxed)` in `Writer::push` is its
        // only writer).
        self.reader
            .header()
            .prod
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes written and not yet read (a hint).
    pub fn backlog(&self) -> u64 {
        self.reader.backlog()
    }

    /// The ring's current owner thread (a hint).
    pub fn owner_tid(&self) -> u32 {
        // Relaxed: a hint for messages; pairs with nothing.
        self.reader
            .header()
            .prod
            .owner_tid
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Why a client is cut off.
#[derive(Debug, thiserror::Error)]
pub enum CutOff {
    /// A ring read failed its checks.
    #[error("{0}")]
    Ring(#[from] RingError),
    /// A record did not decode.
    #[error("{0}")]
    Decode(#[from] distlog::wire::DecodeError),
    /// The call-site table is corrupt or too large.
    #[error("{0}")]
    Table(#[from] TableError),
    /// A record names a call site the table does not define.
    #[error("record names call site {0}, which its table does not define")]
    UnknownCallsite(u32),
    /// A ring was refused or could not be attached.
    #[error("{0}")]
    Refused(String),
}

/// A scope seen opening and not yet closed.
#[derive(Debug, Clone, Copy)]
pub struct OpenScope {
    /// Raw timestamp of the open (client clock).
    pub raw_ts: u64,
    /// Call site of the scope.
    pub callsite: u32,
    /// Trace id.
    pub trace: TraceId,
    /// Parent scope id (0 = none).
    pub parent: u64,
    /// Thread that opened it.
    pub tid: u32,
}

/// What decoding a client's records needs besides the open scopes: its
/// identity and call sites (see `convert.rs` for the conversion itself).
#[derive(Debug)]
pub struct Context {
    /// Connection number (as [`Client::id`]).
    pub id: u64,
    /// Who it is.
    pub identity: Identity,
    /// Its call-site table.
    pub table: ClientTable,
}

/// Whose scopes are whose: the open scopes of a process are shared by all
/// its connections (a reconnecting process closes on its new connection
/// what it opened on the old one). A process is its kernel pid and uid; a
/// client whose pid is unverified is a process of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessKey {
    /// Pid and uid from `SO_PEERCRED`.
    Process {
        /// Pid.
        pid: u32,
        /// Uid.
        uid: u32,
    },
    /// The connection of a client with an unverified pid.
    Connection(u64),
}

/// The open scopes of one process, bounded by
/// `Limits::max_open_scopes_per_client`.
#[derive(Debug, Default)]
pub struct Scopes {
    /// Open scopes by id.
    pub open: HashMap<u64, OpenScope>,
    /// Scopes opened while the map was full (not remembered).
    pub untracked: u64,
}

/// Everything the drain thread keeps about one client connection.
#[derive(Debug)]
pub struct Client {
    /// Connection number (unique in this sidecar).
    pub id: u64,
    /// The process it belongs to (for its open scopes).
    pub key: ProcessKey,
    /// Its rings.
    pub rings: Vec<AttachedRing>,
    /// Identity and call-site table.
    pub ctx: Context,
    /// Records read from all its rings.
    pub records: u64,
    /// The connection ended; drain what is left, then drop.
    pub gone: bool,
    /// Cut off: read no more.
    pub cut_off: bool,
    /// Gone and drained: drop it after this round.
    pub finished: bool,
    /// Closes the connection (cut-off).
    pub closer: Shutdown,
}

impl Client {
    /// A client with no rings yet.
    pub fn new(id: u64, identity: Identity, table: ClientTable, closer: Shutdown) -> Client {
        let key = if identity.pid_unverified {
            ProcessKey::Connection(id)
        } else {
            ProcessKey::Process {
                pid: identity.pid,
                uid: identity.uid,
            }
        };
        Client {
            id,
            key,
            rings: Vec::new(),
            ctx: Context {
                id,
                identity,
                table,
            },
            records: 0,
            gone: false,
            cut_off: false,
            finished: false,
            closer,
        }
    }
}

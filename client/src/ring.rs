//! The ring: one byte queue between a client thread and the sidecar.
//!
//! # Why it looks like this
//!
//! A log call must not lock, allocate, make a system call or wait. So each
//! client thread owns a ring of its own (single producer) and the sidecar is
//! the single consumer; threads beyond the number of owned rings share one
//! *overflow* ring, reserved with a compare-and-swap (multi producer). Both
//! kinds use the same layout and the same reader.
//!
//! The ring logic works over anything that implements [`Memory`], so `loom`
//! and Miri can test it over ordinary heap memory; [`crate::segment`] is the
//! thin layer that puts it in a sealed `memfd`.
//!
//! # Layout
//!
//! A [`RingHeader`] (one page, `#[repr(C)]`, fields on separate cache lines
//! by writer) followed by `data_bytes` of data, a power of two. Positions are
//! byte counters that only grow; `pos & (data_bytes - 1)` is the offset.
//! A record is a `u32` header word followed by its payload, padded to 8
//! bytes; it never straddles the end: when it does not fit, the producer
//! writes a *pad* record to the end and starts again at offset 0.
//!
//! Header word: bits 0..29 the payload length, [`VALID`] once committed,
//! [`BUSY`] while the payload is being written (shared ring only), [`PAD`]
//! for padding (then bits 0..30 are its length). Zero means "not
//! written yet": the reader of a shared ring zeroes what it consumed, so a
//! stale header from the previous lap can never look committed.
//!
//! # The reader trusts nothing
//!
//! The sidecar reads memory the client can change at any moment. Every
//! position and length is checked against the ring's geometry, which the
//! reader took once at attach time; a record is copied out before it is
//! decoded. A violation is a [`RingError`]: that ring (and only that client)
//! is cut off.

use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// `"DLOGRING"` in little-endian ASCII; the first word of every ring.
pub const RING_MAGIC: u64 = u64::from_le_bytes(*b"DLOGRING");
/// Layout version of [`RingHeader`]; bumped on any incompatible change.
pub const RING_LAYOUT_VERSION: u32 = 1;
/// Size of the header in front of the data: one page keeps the data aligned.
pub const HEADER_BYTES: usize = 4096;
/// Smallest data region a ring may have.
pub const MIN_DATA_BYTES: usize = 4096;
/// Largest data region a ring may have (the sidecar refuses larger ones).
pub const MAX_DATA_BYTES: usize = 64 << 20;
/// Largest payload of one record.
pub const MAX_RECORD: usize = 64 << 10;

/// Header word flag: reserved, payload still being written.
pub const BUSY: u32 = 1 << 31;
/// Header word flag: padding to the end of the data region.
pub const PAD: u32 = 1 << 30;
/// Header word flag: a committed record (so no committed header is zero,
/// even for an empty payload).
pub const VALID: u32 = 1 << 29;
const LEN_MASK: u32 = VALID - 1;

/// Ring flag: several threads write this ring (reserve by CAS); the reader
/// zeroes what it consumed.
pub const FLAG_SHARED: u32 = 1;
/// Ring flag: timestamps are raw TSC ticks (else `CLOCK_REALTIME` ns).
pub const FLAG_CLOCK_TSC: u32 = 2;

/// Largest position a reader accepts (2^62 bytes: 14 years at 10 GB/s), so
/// position arithmetic on hostile cursors cannot overflow; the sequence
/// number, which a client may set to anything, wraps.
pub const MAX_POS: u64 = 1 << 62;

/// Bytes a record of `payload` bytes takes in the ring.
#[inline]
pub const fn record_bytes(payload: usize) -> usize {
    (4 + payload + 7) & !7
}

/// Written once by the creator before the ring is shared; read-only after.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct StaticLine {
    /// [`RING_MAGIC`].
    pub magic: u64,
    /// [`RING_LAYOUT_VERSION`].
    pub version: u32,
    /// [`HEADER_BYTES`]: where the data starts.
    pub header_bytes: u32,
    /// Size of the data region, a power of two.
    pub data_bytes: u64,
    /// Random id of this ring: the sidecar knows it again after a reconnect.
    pub ring_id: [u64; 2],
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Index of this ring in its process (0 = shared overflow ring).
    pub index: u32,
}

/// Written by producers only.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct ProducerLine {
    /// Bytes reserved so far. Only grows. In a shared ring it may run ahead
    /// of what is committed (see [`BUSY`]).
    pub write_pos: AtomicU64,
    /// Records committed so far (the ledger's "written").
    pub written: AtomicU64,
    /// Records dropped because the ring was full (the ledger's "lost").
    pub dropped: AtomicU64,
    /// Kernel tid of the thread that owns the ring now (0 when shared/free).
    pub owner_tid: AtomicU32,
}

/// Written by the consumer only.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct ConsumerLine {
    /// Bytes consumed *and stored*; only grows. The producer may overwrite
    /// everything before it.
    pub read_pos: AtomicU64,
    /// Records consumed and stored: the sequence number of the record at
    /// `read_pos`, so a restarted sidecar knows where it is.
    pub read_seq: AtomicU64,
}

/// Written by the consumer when it goes to sleep, cleared by the producer
/// that wakes it. Its own line: producers read it on every record.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct WakeLine {
    /// Non-zero: the consumer sleeps and wants a signal.
    pub sleeping: AtomicU32,
}

/// The first page of every ring.
#[repr(C)]
#[derive(Debug)]
pub struct RingHeader {
    /// Geometry and identity.
    pub stat: StaticLine,
    /// Producer cursors and counters.
    pub prod: ProducerLine,
    /// Consumer cursors.
    pub cons: ConsumerLine,
    /// The sleep flag.
    pub wake: WakeLine,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<RingHeader>() <= HEADER_BYTES);

impl RingHeader {
    /// A fresh header for a ring with `data_bytes` of data.
    pub fn new(data_bytes: usize, ring_id: [u64; 2], flags: u32, index: u32) -> Self {
        RingHeader {
            stat: StaticLine {
                magic: RING_MAGIC,
                version: RING_LAYOUT_VERSION,
                header_bytes: HEADER_BYTES as u32,
                data_bytes: data_bytes as u64,
                ring_id,
                flags,
                index,
            },
            prod: ProducerLine {
                write_pos: AtomicU64::new(0),
                written: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                owner_tid: AtomicU32::new(0),
            },
            cons: ConsumerLine {
                read_pos: AtomicU64::new(0),
                read_seq: AtomicU64::new(0),
            },
            wake: WakeLine {
                sleeping: AtomicU32::new(0),
            },
        }
    }
}

/// The data region of a ring.
///
/// # Safety
///
/// Implementors guarantee that offsets `0..len()` are valid for the
/// accesses below for as long as the value lives, and that `load_word` and
/// `store_word` are atomic at 4-aligned offsets.
pub unsafe trait Memory {
    /// Size of the region in bytes.
    fn len(&self) -> usize;
    /// Whether the region is empty (never, for a valid ring).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Atomic load of the header word at `off` (4-aligned, `off + 4 <= len`).
    fn load_word(&self, off: usize, order: Ordering) -> u32;
    /// Atomic store of the header word at `off`.
    fn store_word(&self, off: usize, val: u32, order: Ordering);
    /// Copy `src` to `off..off + src.len()`. The caller holds the reservation.
    fn write(&self, off: usize, src: &[u8]);
    /// Copy `off..off + dst.len()` to `dst`.
    fn read(&self, off: usize, dst: &mut [u8]);
    /// Zero `off..off + n`.
    fn zero(&self, off: usize, n: usize);
    /// Let `f` write up to `len` bytes at `off` and say how many it wrote
    /// (`None`: it needed more; what it wrote is left unpublished). The
    /// caller holds the reservation of the range. The default stages the
    /// bytes and copies them in, for memories that cannot lend a slice
    /// (loom's atomics); a mapping lends its bytes, so a record is encoded
    /// where the reader will find it.
    fn write_with(
        &self,
        off: usize,
        len: usize,
        f: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<usize> {
        let mut tmp = vec![0u8; len];
        let n = f(&mut tmp)?;
        self.write(off, tmp.get(..n)?);
        Some(n)
    }
}

/// A data region at a raw address: the mapped `memfd`, or a heap buffer.
#[derive(Debug, Clone, Copy)]
pub struct RawMemory {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: all access goes through atomics or through ranges that the ring
// protocol gives to one side at a time; the region itself is plain memory.
unsafe impl Send for RawMemory {}
// SAFETY: as above.
unsafe impl Sync for RawMemory {}

impl RawMemory {
    /// # Safety
    ///
    /// `ptr..ptr + len` must be valid for reads and writes, 8-aligned, and
    /// outlive every use of the returned value.
    pub unsafe fn new(ptr: *mut u8, len: usize) -> Self {
        debug_assert_eq!(ptr as usize % 8, 0);
        RawMemory { ptr, len }
    }

    /// The region's first byte.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    #[inline]
    fn word(&self, off: usize) -> &std::sync::atomic::AtomicU32 {
        debug_assert!(off.is_multiple_of(4) && off + 4 <= self.len);
        // SAFETY: in bounds and 4-aligned (checked by callers, asserted
        // above); AtomicU32 has the layout of u32 and the region lives as
        // long as `self` (contract of `new`).
        unsafe { &*(self.ptr.add(off) as *const std::sync::atomic::AtomicU32) }
    }
}

#[inline]
fn std_order(o: Ordering) -> std::sync::atomic::Ordering {
    // Under loom the facade's Ordering is std's; this is the identity.
    o
}

// SAFETY: `new`'s contract gives valid memory for `len` bytes; every method
// below is only called with ranges inside it (checked by the ring).
unsafe impl Memory for RawMemory {
    #[inline]
    fn len(&self) -> usize {
        self.len
    }
    #[inline]
    fn load_word(&self, off: usize, order: Ordering) -> u32 {
        self.word(off).load(std_order(order))
    }
    #[inline]
    fn store_word(&self, off: usize, val: u32, order: Ordering) {
        self.word(off).store(val, std_order(order))
    }
    #[inline]
    fn write(&self, off: usize, src: &[u8]) {
        assert!(off + src.len() <= self.len);
        // SAFETY: in bounds (asserted); the producer holds the reservation
        // of this range, so nobody following the protocol reads it now.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(off), src.len()) }
    }
    #[inline]
    fn read(&self, off: usize, dst: &mut [u8]) {
        assert!(off + dst.len() <= self.len);
        // SAFETY: in bounds (asserted). A hostile producer may write the
        // range concurrently; we only copy bytes out (no reference into
        // shared memory escapes) and decode the copy.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(off), dst.as_mut_ptr(), dst.len()) }
    }
    #[inline]
    fn zero(&self, off: usize, n: usize) {
        assert!(off + n <= self.len);
        // SAFETY: in bounds (asserted); the range was consumed and is not
        // yet released to producers (read_pos not yet advanced past it).
        unsafe { std::ptr::write_bytes(self.ptr.add(off), 0, n) }
    }
    #[inline(always)]
    fn write_with(
        &self,
        off: usize,
        len: usize,
        f: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<usize> {
        assert!(off + len <= self.len);
        // The producer holds the reservation of this range: an honest
        // consumer neither reads nor writes bytes beyond write_pos, so the
        // slice is ours until the commit. A hostile consumer writing into it
        // can only change this record's bytes: the encoder never branches on
        // what it reads back, and the reader checks every record anyway.
        // SAFETY: in bounds (asserted), and reserved for us (above).
        let buf = unsafe { std::slice::from_raw_parts_mut(self.ptr.add(off), len) };
        let n = f(buf)?;
        (n <= len).then_some(n)
    }
}

/// What [`Writer::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Committed. `wake`: the consumer sleeps, signal it.
    Done {
        /// The consumer asked to be woken.
        wake: bool,
    },
    /// No room: dropped and counted in `dropped`.
    Full,
    /// Larger than [`MAX_RECORD`] or than the ring: dropped and counted.
    TooLarge,
}

/// An exclusive ring's producer position and cached window, `#[repr(C)]`:
/// the C header's inline writer (through `runtime::Window`) reads and
/// moves the same two words as [`Writer::push_in_place`], so both write
/// at one position. Process-private memory: the consumer cannot change
/// either.
#[repr(C)]
#[derive(Debug)]
pub struct Cursor {
    /// The producer's own `write_pos` (the header's is its published copy,
    /// which a hostile consumer could change: the producer never reads it
    /// back). Relaxed everywhere: one thread writes the ring at a time,
    /// and a ring passes to another thread through the slot's `in_use`
    /// Release/Acquire.
    pub pos: AtomicU64,
    /// [`Writer::push_in_place`]'s window, cached: the position it may
    /// write up to without looking again, neither past the region's end
    /// nor into bytes the consumer has not released (by the read position
    /// it last loaded with Acquire). A multiple of 8, at least `pos` (any
    /// other push sets it to `pos`). Relaxed as `pos`.
    pub limit: AtomicU64,
}

/// The producer side of one ring.
pub struct Writer<'a, M: Memory> {
    hdr: &'a RingHeader,
    mem: M,
    mask: u64,
    cap: u64,
    shared: bool,
    /// Producer-local copy of `read_pos`; refreshed only when it says the
    /// ring is full, so the consumer's line is not read on every record
    /// (rtrb's `cached_head`). Exclusive rings only.
    cached_read: AtomicU64,
    /// Exclusive rings: the producer's position and cached window
    /// ([`Cursor`]); the C header's inline writer moves the same one.
    cursor: Cursor,
    /// Largest window one in-place record gets (as `push` accepts: at most
    /// half the ring, a payload of at most [`MAX_RECORD`]).
    max_window: u64,
}

impl<M: Memory> std::fmt::Debug for Writer<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("cap", &self.cap)
            .field("shared", &self.shared)
            .finish()
    }
}

impl<'a, M: Memory> Writer<'a, M> {
    /// A writer over a header this process created (so it is trusted).
    pub fn new(hdr: &'a RingHeader, mem: M) -> Self {
        let cap = hdr.stat.data_bytes;
        debug_assert!(cap.is_power_of_two() && cap as usize == mem.len());
        Writer {
            hdr,
            mem,
            mask: cap - 1,
            cap,
            shared: hdr.stat.flags & FLAG_SHARED != 0,
            // pairs with nothing: initial value, refreshed with Acquire below.
            cached_read: AtomicU64::new(hdr.cons.read_pos.load(Ordering::Relaxed)),
            cursor: Cursor {
                // Relaxed: a header this process created, not yet written.
                pos: AtomicU64::new(hdr.prod.write_pos.load(Ordering::Relaxed)),
                // No window yet: the first in-place push computes it.
                limit: AtomicU64::new(hdr.prod.write_pos.load(Ordering::Relaxed)),
            },
            max_window: (cap / 2).min(4 + MAX_RECORD as u64),
        }
    }

    /// The header.
    pub fn header(&self) -> &RingHeader {
        self.hdr
    }

    /// Whether several threads write this ring.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// The position and cached window ([`Cursor`]).
    pub fn cursor(&self) -> &Cursor {
        &self.cursor
    }

    /// The data region.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// The largest window one in-place record gets.
    pub fn max_window(&self) -> u64 {
        self.max_window
    }

    /// Append one record.
    ///
    /// # Safety
    ///
    /// For an exclusive ring (not [`FLAG_SHARED`]) the caller must be the
    /// only thread calling `push` on it; a shared ring has no such rule.
    #[inline]
    pub unsafe fn push(&self, payload: &[u8]) -> Push {
        if payload.len() > MAX_RECORD || record_bytes(payload.len()) as u64 > self.cap / 2 {
            self.hdr.prod.dropped.fetch_add(1, Ordering::Relaxed);
            return Push::TooLarge;
        }
        if self.shared {
            self.push_shared(payload)
        } else {
            self.push_exclusive(payload)
        }
    }

    /// Whether `need` bytes are free now (padding at the end of the region
    /// not counted): the producer asks before it encodes, so a full ring
    /// costs a load and a compare, not an encoding. Refreshes the cached
    /// read position only when the cached one says no.
    #[inline]
    pub fn has_room(&self, need: u64) -> bool {
        // Relaxed: only producers write write_pos; a stale value only makes
        // the answer approximate (push checks exactly).
        let w = self.hdr.prod.write_pos.load(Ordering::Relaxed);
        if (w + need).wrapping_sub(self.cached_read.load(Ordering::Relaxed)) <= self.cap {
            return true;
        }
        // Acquire pairs with the Release store of `read_pos` in
        // `Reader::release`, as in push_exclusive.
        let r = self.hdr.cons.read_pos.load(Ordering::Acquire);
        self.cached_read.store(r, Ordering::Relaxed);
        (w + need).wrapping_sub(r) <= self.cap
    }

    /// Room left before `pos` for a record of `need` bytes; returns the
    /// padding to the end of the region (0 if the record fits where it is).
    #[inline]
    fn pad_for(&self, pos: u64, need: u64) -> u64 {
        let off = pos & self.mask;
        let tail = self.cap - off;
        if need > tail {
            tail
        } else {
            0
        }
    }

    #[inline]
    fn push_exclusive(&self, payload: &[u8]) -> Push {
        let need = record_bytes(payload.len()) as u64;
        // Relaxed: see `Cursor::pos`.
        let w = self.cursor.pos.load(Ordering::Relaxed);
        let pad = self.pad_for(w, need);
        let end = w + pad + need;
        if end - self.cached_read.load(Ordering::Relaxed) > self.cap {
            // Acquire pairs with the Release store of `read_pos` in
            // `Reader::release`: the consumer is done with (and, for a shared
            // ring, has zeroed) everything before it, so we may overwrite.
            let r = self.hdr.cons.read_pos.load(Ordering::Acquire);
            self.cached_read.store(r, Ordering::Relaxed);
            if end.wrapping_sub(r) > self.cap {
                self.hdr.prod.dropped.fetch_add(1, Ordering::Relaxed);
                return Push::Full;
            }
        }
        let mut off = (w & self.mask) as usize;
        if pad != 0 {
            self.mem
                .store_word(off, PAD | pad as u32, Ordering::Relaxed);
            off = 0;
        }
        self.mem.write(off + 4, payload);
        self.mem
            .store_word(off, VALID | payload.len() as u32, Ordering::Relaxed);
        let written = self.hdr.prod.written.load(Ordering::Relaxed);
        self.hdr.prod.written.store(written + 1, Ordering::Relaxed);
        // Relaxed: see `Cursor`; the window is computed again
        // (this push may have padded into the next lap).
        self.cursor.pos.store(end, Ordering::Relaxed);
        self.cursor.limit.store(end, Ordering::Relaxed);
        // Release pairs with the Acquire load of `write_pos` in
        // `Reader::poll`: the pad word, payload and header word above are
        // visible to a reader that sees the new position.
        self.hdr.prod.write_pos.store(end, Ordering::Release);
        // Relaxed: a stale 0 only delays the wake-up until the consumer's
        // timed wait ends (the backstop; no fence on the hot path).
        let wake = self.hdr.wake.sleeping.load(Ordering::Relaxed) != 0;
        Push::Done { wake }
    }

    /// Append one record that `f` encodes straight into the ring (no
    /// staging buffer, no copy): `f` gets the free bytes after the record's
    /// header word, up to the end of the region or the consumer, and
    /// returns the payload's length. The commit is `push_exclusive`'s: the
    /// header word, then `write_pos` with one Release store; the framing
    /// is the same, so the reader cannot tell the two apart.
    ///
    /// The window is cached (`limit`): a record only subtracts two
    /// positions, and the bounds are worked out again (the consumer's
    /// position loaded anew) once fewer than `min_room` bytes are left in
    /// it, about once a lap while the consumer keeps up.
    ///
    /// `Some(Push::Full)` (dropped and counted) when fewer than `min_room`
    /// bytes are free, before `f` runs: a full ring costs a compare, not an
    /// encoding. `None` when `f` returned `None` (the window was too short:
    /// the region's end is near, the record is large, or the cached window
    /// is older than the consumer's last release): nothing was published or
    /// counted, and the caller pushes the record the ordinary way, which
    /// pads or drops.
    ///
    /// # Safety
    ///
    /// Exclusive rings only (not [`FLAG_SHARED`]), and the caller must be
    /// the only thread writing the ring, as for [`Writer::push`].
    #[inline(always)]
    pub unsafe fn push_in_place(
        &self,
        min_room: u64,
        f: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<Push> {
        debug_assert!(!self.shared && min_room <= self.cap);
        // Relaxed: see `Cursor`.
        let w = self.cursor.pos.load(Ordering::Relaxed);
        // wrapping: never below `w` (see `Cursor::limit`); were it, the window
        // would still be cut to `max_window` and checked by `write_with`.
        let mut room = self.cursor.limit.load(Ordering::Relaxed).wrapping_sub(w);
        if room <= min_room {
            let Some(r) = self.window(w, min_room) else {
                return Some(Push::Full);
            };
            room = r;
        }
        // `limit` is a multiple of 8 (as is `w`) and not past the region's
        // end, so the padded record stays inside; at most what `push`
        // accepts.
        let max = room.min(self.max_window) as usize - 4;
        let off = (w & self.mask) as usize;
        let n = self.mem.write_with(off + 4, max, f)?;
        self.mem
            .store_word(off, VALID | n as u32, Ordering::Relaxed);
        let written = self.hdr.prod.written.load(Ordering::Relaxed);
        self.hdr.prod.written.store(written + 1, Ordering::Relaxed);
        // At most `room` (4 + n <= room, both multiples of 8 rounded up).
        let end = w + record_bytes(n) as u64;
        // Relaxed: see `Cursor::pos`.
        self.cursor.pos.store(end, Ordering::Relaxed);
        // Release pairs with the Acquire load of `write_pos` in
        // `Reader::poll`: the payload and header word above are visible to
        // a reader that sees the new position.
        self.hdr.prod.write_pos.store(end, Ordering::Release);
        // Relaxed: see push_exclusive.
        let wake = self.hdr.wake.sleeping.load(Ordering::Relaxed) != 0;
        Some(Push::Done { wake })
    }

    /// `push_in_place`'s window at `w` worked out again (the cached one
    /// has at most `min_room` bytes left) with the consumer's position
    /// loaded anew, and cached: its bytes, at least 8 (the header word
    /// fits). `None`, the record dropped and counted, when fewer than
    /// `min_room` (or 8) bytes are free. Out of line: about once a lap.
    #[cold]
    #[inline(never)]
    fn window(&self, w: u64, min_room: u64) -> Option<u64> {
        // wrapping_sub: a hostile consumer's read_pos beyond write_pos
        // makes `used` huge, so the ring counts as full.
        let used = w.wrapping_sub(self.refresh_read());
        if used > self.cap - min_room.max(8) {
            self.hdr.prod.dropped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        // Neither past the region's end (no straddling) nor into bytes the
        // consumer has not released; whole 8-byte units (a hostile
        // read_pos need not be one).
        let room = (self.cap - (w & self.mask)).min(self.cap - used) & !7;
        // Relaxed: see `Cursor::limit`.
        self.cursor.limit.store(w + room, Ordering::Relaxed);
        Some(room)
    }

    /// The consumer's position, loaded anew (the cached one says the ring
    /// is (nearly) full, or a window is worked out). Out of line: the
    /// common record never gets here.
    #[cold]
    #[inline(never)]
    fn refresh_read(&self) -> u64 {
        // Acquire pairs with the Release store of `read_pos` in
        // `Reader::release`, as in push_exclusive.
        let r = self.hdr.cons.read_pos.load(Ordering::Acquire);
        self.cached_read.store(r, Ordering::Relaxed);
        r
    }

    fn push_shared(&self, payload: &[u8]) -> Push {
        let need = record_bytes(payload.len()) as u64;
        // Relaxed: the CAS below validates it.
        let mut w = self.hdr.prod.write_pos.load(Ordering::Relaxed);
        let (pad, end) = loop {
            let pad = self.pad_for(w, need);
            let end = w + pad + need;
            // Acquire pairs with the Release store of `read_pos` in
            // `Reader::release` (the range before it is consumed and zeroed).
            let r = self.hdr.cons.read_pos.load(Ordering::Acquire);
            if end.wrapping_sub(r) > self.cap {
                self.hdr.prod.dropped.fetch_add(1, Ordering::Relaxed);
                return Push::Full;
            }
            // Relaxed on success: the reader learns nothing from write_pos
            // alone in a shared ring; it waits for each header word, whose
            // Release store below publishes the payload. Relaxed on failure:
            // we only retry.
            match self.hdr.prod.write_pos.compare_exchange_weak(
                w,
                end,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break (pad, end),
                Err(now) => w = now,
            }
        };
        let _ = end;
        let mut off = (w & self.mask) as usize;
        if pad != 0 {
            // Release pairs with the Acquire header load in `Reader::poll`.
            self.mem
                .store_word(off, PAD | pad as u32, Ordering::Release);
            off = 0;
        }
        // BUSY first, so a reader that finds this slot knows its length
        // even if we die before committing.
        self.mem
            .store_word(off, BUSY | payload.len() as u32, Ordering::Relaxed);
        self.mem.write(off + 4, payload);
        self.hdr.prod.written.fetch_add(1, Ordering::Relaxed);
        // Release pairs with the Acquire header load in `Reader::poll`: the
        // payload is visible to a reader that sees the header without BUSY.
        self.mem
            .store_word(off, VALID | payload.len() as u32, Ordering::Release);
        // Relaxed: see push_exclusive.
        let wake = self.hdr.wake.sleeping.load(Ordering::Relaxed) != 0;
        Push::Done { wake }
    }
}

/// Why a ring was given up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The header does not describe a ring we can read.
    #[error("bad ring header: {0}")]
    BadHeader(&'static str),
    /// A cursor moved in a way no honest producer moves it.
    #[error("corrupt ring cursor: {0}")]
    BadCursor(&'static str),
    /// A record header is out of bounds.
    #[error("corrupt record at position {pos}: {why}")]
    BadRecord {
        /// Ring position of the record.
        pos: u64,
        /// What was wrong.
        why: &'static str,
    },
}

/// Why [`Reader::poll`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Nothing more is committed.
    Empty,
    /// The record budget was used up; more may be waiting.
    Budget,
    /// The next record is reserved but not committed yet (shared ring).
    Busy,
    /// The callback asked to stop.
    Callback,
}

/// The geometry a reader took at attach time; it never re-reads it.
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    /// Data bytes (power of two).
    pub cap: u64,
    /// `FLAG_*`.
    pub flags: u32,
    /// Ring id.
    pub ring_id: [u64; 2],
    /// Index of the ring in its process.
    pub index: u32,
}

/// Check a header a client gave us. `data_len` is what we actually mapped.
pub fn check_header(hdr: &RingHeader, data_len: usize) -> Result<Geometry, RingError> {
    // Plain reads of fields the creator wrote before handing the ring over;
    // we copy them once and never trust them again.
    let s = &hdr.stat;
    if s.magic != RING_MAGIC {
        return Err(RingError::BadHeader("magic"));
    }
    if s.version != RING_LAYOUT_VERSION {
        return Err(RingError::BadHeader("layout version"));
    }
    if s.header_bytes as usize != HEADER_BYTES {
        return Err(RingError::BadHeader("header size"));
    }
    let cap = s.data_bytes;
    if !cap.is_power_of_two()
        || (cap as usize) < MIN_DATA_BYTES
        || cap as usize > MAX_DATA_BYTES
        || cap as usize != data_len
    {
        return Err(RingError::BadHeader("data size"));
    }
    Ok(Geometry {
        cap,
        flags: s.flags,
        ring_id: s.ring_id,
        index: s.index,
    })
}

/// The consumer side of one ring. Trusts nothing it reads.
pub struct Reader<'a, M: Memory> {
    hdr: &'a RingHeader,
    mem: M,
    geo: Geometry,
    /// Where the next record starts (ours; never re-read from the ring).
    pos: u64,
    /// Sequence number of the record at `pos`.
    seq: u64,
    /// Position and sequence last published to the producer.
    released: (u64, u64),
    scratch: Vec<u8>,
}

impl<M: Memory> std::fmt::Debug for Reader<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("geo", &self.geo)
            .field("pos", &self.pos)
            .finish()
    }
}

impl<'a, M: Memory> Reader<'a, M> {
    /// Attach to a ring whose header was checked by [`check_header`].
    /// Resumes where the last consumer released (`read_pos`, `read_seq`):
    /// a restarted sidecar continues after what its predecessor stored.
    pub fn attach(hdr: &'a RingHeader, mem: M, geo: Geometry) -> Result<Self, RingError> {
        // Acquire pairs with the Release stores of the producer: we see
        // everything up to the write position we read.
        let w = hdr.prod.write_pos.load(Ordering::Acquire);
        let r = hdr.cons.read_pos.load(Ordering::Acquire);
        let seq = hdr.cons.read_seq.load(Ordering::Relaxed);
        if r > w || w - r > geo.cap || !r.is_multiple_of(8) || w > MAX_POS {
            return Err(RingError::BadCursor(
                "read position outside the written range",
            ));
        }
        Ok(Reader {
            hdr,
            mem,
            geo,
            pos: r,
            seq,
            released: (r, seq),
            scratch: Vec::with_capacity(1024),
        })
    }

    /// The geometry taken at attach.
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// The header (hostile: read its counters as hints only).
    pub fn header(&self) -> &RingHeader {
        self.hdr
    }

    /// Sequence number of the next record to be read.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Position of the next record to be read.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// Bytes committed or reserved but not yet read (a hint).
    pub fn backlog(&self) -> u64 {
        self.hdr
            .prod
            .write_pos
            .load(Ordering::Relaxed)
            .saturating_sub(self.pos)
    }

    /// Read up to `budget` records, handing each payload (a private copy)
    /// and its sequence number to `f`; `f` returns `false` to stop. Nothing
    /// is released to the producer until [`Reader::release`].
    pub fn poll(
        &mut self,
        budget: usize,
        mut f: impl FnMut(u64, &[u8]) -> bool,
    ) -> Result<Stop, RingError> {
        let cap = self.geo.cap;
        let mask = cap - 1;
        // Acquire pairs with the Release store of `write_pos` in
        // `Writer::push_exclusive`: records below it are complete.
        let w = self.hdr.prod.write_pos.load(Ordering::Acquire);
        if w < self.pos || w - self.pos > cap || w > MAX_POS {
            return Err(RingError::BadCursor(
                "write position moved backwards or past the ring",
            ));
        }
        let mut n = 0;
        while self.pos < w {
            if n == budget {
                return Ok(Stop::Budget);
            }
            let off = self.pos & mask;
            // Acquire pairs with the Release header store in
            // `Writer::push_shared` (the payload is complete when BUSY is
            // clear); for exclusive rings the write_pos Acquire already did.
            let word = self.mem.load_word(off as usize, Ordering::Acquire);
            if word == 0 || word & BUSY != 0 {
                if self.geo.flags & FLAG_SHARED == 0 {
                    // An exclusive ring publishes write_pos after the
                    // record: nothing below it is ever unfinished.
                    return Err(RingError::BadRecord {
                        pos: self.pos,
                        why: "unfinished record below the write position",
                    });
                }
                return Ok(Stop::Busy);
            }
            let len = u64::from(word & LEN_MASK);
            if word & PAD != 0 {
                let len = u64::from(word & (PAD - 1));
                if len != cap - off || self.pos + len > w {
                    return Err(RingError::BadRecord {
                        pos: self.pos,
                        why: "bad padding",
                    });
                }
                self.pos += len;
                continue;
            }
            let total = record_bytes(len as usize) as u64;
            if word & VALID == 0
                || len as usize > MAX_RECORD
                || total > cap - off
                || self.pos + total > w
            {
                return Err(RingError::BadRecord {
                    pos: self.pos,
                    why: "length out of bounds",
                });
            }
            // The copy's room only grows (to the longest record read): a
            // resize per record zeroed every record's bytes before the copy
            // overwrote them (~25 instructions a record in the drain).
            let len = len as usize;
            if self.scratch.len() < len {
                self.scratch.resize(len, 0);
            }
            let copy = &mut self.scratch[..len];
            self.mem.read(off as usize + 4, copy);
            let seq = self.seq;
            self.pos += total;
            self.seq = self.seq.wrapping_add(1);
            n += 1;
            if !f(seq, copy) {
                return Ok(Stop::Callback);
            }
        }
        Ok(Stop::Empty)
    }

    /// Step over a record of a shared ring that was reserved but never
    /// committed (its writer died between reserving and committing). The
    /// caller decides when waiting has become pointless (a grace period);
    /// returns false when the record's length is not known (a writer that
    /// died before writing even the BUSY word), in which case the ring
    /// cannot be read further.
    pub fn skip_busy(&mut self) -> bool {
        let off = self.pos & (self.geo.cap - 1);
        let word = self.mem.load_word(off as usize, Ordering::Acquire);
        if word & BUSY == 0 || word & PAD != 0 {
            return false;
        }
        let len = (word & LEN_MASK) as usize;
        let total = record_bytes(len) as u64;
        if len > MAX_RECORD || total > self.geo.cap - off {
            return false;
        }
        self.pos += total;
        self.seq = self.seq.wrapping_add(1);
        true
    }

    /// Give everything read so far back to the producer. Call it only after
    /// the records are stored: a restarted sidecar resumes from here.
    pub fn release(&mut self) {
        let (from, _) = self.released;
        if from == self.pos {
            return;
        }
        if self.geo.flags & FLAG_SHARED != 0 {
            // Zero what we consumed so a stale header can never look
            // committed to us on the next lap (see the module docs).
            let mask = self.geo.cap - 1;
            let mut p = from;
            while p < self.pos {
                let off = p & mask;
                let n = (self.geo.cap - off).min(self.pos - p);
                self.mem.zero(off as usize, n as usize);
                p += n;
            }
        }
        self.hdr.cons.read_seq.store(self.seq, Ordering::Relaxed);
        // Release pairs with the Acquire loads of `read_pos` in the writer:
        // our copies (and zeroing) are done before the space is reused.
        self.hdr.cons.read_pos.store(self.pos, Ordering::Release);
        self.released = (self.pos, self.seq);
    }

    /// Tell producers we sleep and want a signal (see [`WakeLine`]).
    pub fn set_sleeping(&self, sleeping: bool) {
        // SeqCst: orders this store before the emptiness re-check the
        // caller makes next, so at most a producer whose commit raced with
        // it misses the flag; the timed wait covers that one.
        self.hdr
            .wake
            .sleeping
            .store(u32::from(sleeping), Ordering::SeqCst);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A heap ring for tests (and Miri).
    pub(crate) struct HeapRing {
        pub hdr: Box<RingHeader>,
        buf: Vec<u64>,
    }

    impl HeapRing {
        pub fn new(cap: usize, flags: u32) -> Self {
            HeapRing {
                hdr: Box::new(RingHeader::new(cap, [1, 2], flags, 1)),
                buf: vec![0u64; cap / 8],
            }
        }
        pub fn mem(&mut self) -> RawMemory {
            let len = self.buf.len() * 8;
            // SAFETY: the Vec lives as long as the HeapRing, 8-aligned.
            unsafe { RawMemory::new(self.buf.as_mut_ptr() as *mut u8, len) }
        }
    }

    fn drain<M: Memory>(r: &mut Reader<'_, M>) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        r.poll(usize::MAX, |s, p| {
            out.push((s, p.to_vec()));
            true
        })
        .unwrap();
        r.release();
        out
    }

    #[test]
    fn roundtrip_and_wrap() {
        // An exclusive ring written in place, as the client writes it, too.
        for (flags, in_place) in [(0, false), (FLAG_SHARED, false), (0, true)] {
            let mut ring = HeapRing::new(4096, flags);
            let mem = ring.mem();
            let w = Writer::new(&ring.hdr, mem);
            let geo = check_header(&ring.hdr, 4096).unwrap();
            let mut r = Reader::attach(&ring.hdr, mem, geo).unwrap();
            let mut expect = 0u64;
            for round in 0..200u32 {
                for i in 0..7u32 {
                    let len = ((round * 7 + i) % 90) as usize;
                    let p = vec![(i as u8).wrapping_add(round as u8); len];
                    let res = if in_place {
                        push_either(&w, &p)
                    } else {
                        // SAFETY: single writer in this test.
                        unsafe { w.push(&p) }
                    };
                    assert!(matches!(res, Push::Done { .. }));
                }
                for (seq, p) in drain(&mut r) {
                    assert_eq!(seq, expect);
                    expect += 1;
                    assert!(p.iter().all(|b| *b == p.first().copied().unwrap_or(0)));
                }
            }
            assert_eq!(ring.hdr.prod.written.load(Ordering::Relaxed), expect);
        }
    }

    #[test]
    fn full_ring_drops_and_counts() {
        let mut ring = HeapRing::new(4096, 0);
        let mem = ring.mem();
        let w = Writer::new(&ring.hdr, mem);
        let mut ok = 0;
        let mut full = 0;
        for _ in 0..1000 {
            // SAFETY: single writer.
            match unsafe { w.push(&[7u8; 60]) } {
                Push::Done { .. } => ok += 1,
                Push::Full => full += 1,
                Push::TooLarge => unreachable!(),
            }
        }
        assert_eq!(ok, 4096 / record_bytes(60));
        assert_eq!(ring.hdr.prod.dropped.load(Ordering::Relaxed), full);
        let geo = check_header(&ring.hdr, 4096).unwrap();
        let mut r = Reader::attach(&ring.hdr, mem, geo).unwrap();
        assert_eq!(drain(&mut r).len(), ok);
        // SAFETY: single writer.
        assert!(matches!(unsafe { w.push(&[1u8; 60]) }, Push::Done { .. }));
        // SAFETY: single writer.
        assert_eq!(unsafe { w.push(&[0u8; 3000]) }, Push::TooLarge);
    }

    /// Append `p` in place, or the ordinary way when the window before the
    /// region's end is too short (what the client's write path does).
    fn push_either<M: Memory>(w: &Writer<'_, M>, p: &[u8]) -> Push {
        let f = |buf: &mut [u8]| {
            buf.get_mut(..p.len())?.copy_from_slice(p);
            Some(p.len())
        };
        // SAFETY: exclusive rings get one writer in these tests.
        unsafe { w.push_in_place(0, f).unwrap_or_else(|| w.push(p)) }
    }

    #[test]
    fn in_place_short_window_and_full() {
        let mut ring = HeapRing::new(4096, 0);
        let mem = ring.mem();
        let w = Writer::new(&ring.hdr, mem);
        let geo = check_header(&ring.hdr, 4096).unwrap();
        let mut r = Reader::attach(&ring.hdr, mem, geo).unwrap();
        // A window too short publishes and counts nothing.
        let before = ring.hdr.prod.write_pos.load(Ordering::Relaxed);
        // SAFETY: single writer.
        assert_eq!(unsafe { w.push_in_place(0, |_| None) }, None);
        assert_eq!(ring.hdr.prod.write_pos.load(Ordering::Relaxed), before);
        assert_eq!(ring.hdr.prod.dropped.load(Ordering::Relaxed), 0);
        // Fill it: in place until fewer than `min_room` bytes are free,
        // then dropped and counted before the encoder runs.
        let mut ok = 0u64;
        let mut full = 0u64;
        for _ in 0..100 {
            // SAFETY: single writer.
            match unsafe { w.push_in_place(256, |b| Some(b.len().min(60))) } {
                Some(Push::Done { .. }) => ok += 1,
                Some(Push::Full) => full += 1,
                other => panic!("{other:?}"),
            }
        }
        assert!(ok > 0 && full > 0);
        assert_eq!(ring.hdr.prod.dropped.load(Ordering::Relaxed), full);
        assert_eq!(drain(&mut r).len() as u64, ok);
        // A consumer position beyond the producer's (hostile) is a full ring.
        ring.hdr.cons.read_pos.store(1 << 40, Ordering::Relaxed);
        // SAFETY: single writer.
        let res = unsafe { w.push_in_place(256, |_| panic!("encoded into a full ring")) };
        assert_eq!(res, Some(Push::Full));
    }

    #[test]
    fn in_place_window_follows_the_consumer() {
        // The cached window never runs past the consumer's release or the
        // region's end: a reader that takes a few records at a time finds
        // every record whole and in order, the writer writing in place
        // (`min_room` 0 and the client's 256) records of many sizes into a
        // ring that is often full.
        for min_room in [0, 256] {
            let mut ring = HeapRing::new(4096, 0);
            let mem = ring.mem();
            let w = Writer::new(&ring.hdr, mem);
            let geo = check_header(&ring.hdr, 4096).unwrap();
            let mut r = Reader::attach(&ring.hdr, mem, geo).unwrap();
            let mut sent = std::collections::VecDeque::new();
            let (mut done, mut full) = (0u64, 0u64);
            let n = if cfg!(miri) { 300 } else { 20_000 };
            for i in 0..n {
                let p = vec![i as u8; (i * 37 % 301) as usize];
                let f = |buf: &mut [u8]| {
                    buf.get_mut(..p.len())?.copy_from_slice(&p);
                    Some(p.len())
                };
                // SAFETY: single writer.
                let res = unsafe { w.push_in_place(min_room, f).unwrap_or_else(|| w.push(&p)) };
                match res {
                    Push::Done { .. } => {
                        done += 1;
                        sent.push_back(p);
                    }
                    Push::Full => full += 1,
                    Push::TooLarge => unreachable!(),
                }
                if i % 5 == 0 {
                    r.poll(i as usize % 7, |_, got| {
                        assert_eq!(Some(got), sent.pop_front().as_deref());
                        true
                    })
                    .unwrap();
                    r.release();
                }
                let (wp, rp) = (
                    ring.hdr.prod.write_pos.load(Ordering::Relaxed),
                    ring.hdr.cons.read_pos.load(Ordering::Relaxed),
                );
                assert!(wp - rp <= 4096, "{wp} {rp}");
            }
            for (_, got) in drain(&mut r) {
                assert_eq!(Some(got), sent.pop_front());
            }
            assert!(sent.is_empty());
            assert!(done > 0 && full > 0, "{done} {full}");
            assert_eq!(ring.hdr.prod.written.load(Ordering::Relaxed), done);
            assert_eq!(ring.hdr.prod.dropped.load(Ordering::Relaxed), full);
        }
    }

    #[test]
    fn hostile_cursors_and_lengths_are_errors() {
        let mut ring = HeapRing::new(4096, 0);
        let mem = ring.mem();
        let w = Writer::new(&ring.hdr, mem);
        // SAFETY: single writer.
        unsafe { w.push(&[1u8; 16]) };
        let geo = check_header(&ring.hdr, 4096).unwrap();
        let mut r = Reader::attach(&ring.hdr, mem, geo).unwrap();
        // length past write_pos
        mem.store_word(0, VALID | 2000, Ordering::Relaxed);
        assert!(matches!(
            r.poll(10, |_, _| true),
            Err(RingError::BadRecord { .. })
        ));
        // write_pos far beyond the ring
        ring.hdr.prod.write_pos.store(1 << 40, Ordering::Relaxed);
        assert!(matches!(
            r.poll(10, |_, _| true),
            Err(RingError::BadCursor(_))
        ));
        // bad geometry
        let mut bad = HeapRing::new(4096, 0);
        bad.hdr.stat.data_bytes = 5000;
        assert!(check_header(&bad.hdr, 4096).is_err());
        bad.hdr.stat.data_bytes = 4096;
        bad.hdr.stat.magic = 0;
        assert!(check_header(&bad.hdr, 4096).is_err());
    }

    #[test]
    fn shared_ring_busy_record_stops_reader() {
        let mut ring = HeapRing::new(4096, FLAG_SHARED);
        let mem = ring.mem();
        let w = Writer::new(&ring.hdr, mem);
        // SAFETY: shared ring, any thread may push.
        unsafe { w.push(&[3u8; 10]) };
        // simulate a writer that reserved and died before committing
        ring.hdr
            .prod
            .write_pos
            .fetch_add(record_bytes(12) as u64, Ordering::Relaxed);
        mem.store_word(record_bytes(10), BUSY | 12, Ordering::Relaxed);
        let geo = check_header(&ring.hdr, 4096).unwrap();
        let mut r = Reader::attach(&ring.hdr, mem, geo).unwrap();
        let mut n = 0;
        assert_eq!(
            r.poll(10, |_, _| {
                n += 1;
                true
            })
            .unwrap(),
            Stop::Busy
        );
        assert_eq!(n, 1);
        // after a grace period the reader steps over it
        assert!(r.skip_busy());
        assert_eq!(r.poll(10, |_, _| true).unwrap(), Stop::Empty);
    }

    #[test]
    fn threads_exclusive_and_shared() {
        for flags in [0, FLAG_SHARED] {
            let mut ring = HeapRing::new(8192, flags);
            let mem = ring.mem();
            let hdr: &RingHeader = &ring.hdr;
            let writers: u32 = if flags == FLAG_SHARED { 3 } else { 1 };
            let per = if cfg!(miri) { 60 } else { 5000 };
            let w = Writer::new(hdr, mem);
            let geo = check_header(hdr, 8192).unwrap();
            let mut r = Reader::attach(hdr, mem, geo).unwrap();
            std::thread::scope(|s| {
                for t in 0..writers {
                    let w = &w;
                    s.spawn(move || {
                        let mut i = 0u32;
                        while i < per {
                            let mut p = [0u8; 12];
                            p[..4].copy_from_slice(&t.to_le_bytes());
                            p[4..8].copy_from_slice(&i.to_le_bytes());
                            let res = if flags == FLAG_SHARED {
                                // SAFETY: a shared ring takes any writer.
                                unsafe { w.push(&p) }
                            } else {
                                push_either(w, &p)
                            };
                            if let Push::Done { .. } = res {
                                i += 1;
                            } else {
                                std::thread::yield_now();
                            }
                        }
                    });
                }
                let mut next = vec![0u32; writers as usize];
                let mut total = 0;
                while total < per * writers {
                    r.poll(64, |_, p| {
                        let t = u32::from_le_bytes(p[..4].try_into().unwrap()) as usize;
                        let i = u32::from_le_bytes(p[4..8].try_into().unwrap());
                        assert_eq!(i, next[t], "per-thread order");
                        next[t] += 1;
                        total += 1;
                        true
                    })
                    .unwrap();
                    r.release();
                    std::thread::yield_now();
                }
            });
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// A data region of loom atomics, so loom sees every access.
    struct LoomMem(Arc<Vec<AtomicU32>>);
    impl Clone for LoomMem {
        fn clone(&self) -> Self {
            LoomMem(self.0.clone())
        }
    }
    // SAFETY: every access is bounds-checked by the Vec and atomic.
    unsafe impl Memory for LoomMem {
        fn len(&self) -> usize {
            self.0.len() * 4
        }
        fn load_word(&self, off: usize, order: Ordering) -> u32 {
            self.0[off / 4].load(order)
        }
        fn store_word(&self, off: usize, val: u32, order: Ordering) {
            self.0[off / 4].store(val, order)
        }
        fn write(&self, off: usize, src: &[u8]) {
            for (i, c) in src.chunks(4).enumerate() {
                let mut b = [0u8; 4];
                b[..c.len()].copy_from_slice(c);
                self.0[off / 4 + i].store(u32::from_le_bytes(b), Ordering::Relaxed);
            }
        }
        fn read(&self, off: usize, dst: &mut [u8]) {
            for (i, c) in dst.chunks_mut(4).enumerate() {
                let b = self.0[off / 4 + i].load(Ordering::Relaxed).to_le_bytes();
                let n = c.len();
                c.copy_from_slice(&b[..n]);
            }
        }
        fn zero(&self, off: usize, n: usize) {
            for i in 0..n / 4 {
                self.0[off / 4 + i].store(0, Ordering::Relaxed);
            }
        }
    }

    fn model(flags: u32, writers: u32, per: u32) {
        loom::model(move || {
            // 64 bytes: 4 records of 12 bytes payload (16 each) fill it, so
            // the model also wraps and runs full.
            let hdr = Arc::new(RingHeader::new(64, [0, 0], flags, 0));
            let mem = LoomMem(Arc::new((0..16).map(|_| AtomicU32::new(0)).collect()));
            let mut hs = Vec::new();
            for t in 0..writers {
                let hdr = hdr.clone();
                let mem = mem.clone();
                hs.push(loom::thread::spawn(move || {
                    let w = Writer::new(&hdr, mem);
                    for i in 0..per {
                        let mut p = [0u8; 12];
                        p[0] = t as u8;
                        p[4..8].copy_from_slice(&(i + 100).to_le_bytes());
                        p[8..12].copy_from_slice(&(i + 200).to_le_bytes());
                        let f = |buf: &mut [u8]| {
                            buf.get_mut(..12)?.copy_from_slice(&p);
                            Some(12)
                        };
                        // Exclusive rings are written in place, as the
                        // client writes them (the ordinary push where the
                        // region's end is near).
                        // SAFETY: an exclusive ring has one writer thread
                        // here; a shared ring takes any writer.
                        let _ = unsafe {
                            if flags & FLAG_SHARED == 0 {
                                w.push_in_place(0, f).unwrap_or_else(|| w.push(&p))
                            } else {
                                w.push(&p)
                            }
                        };
                    }
                }));
            }
            let geo = Geometry {
                cap: 64,
                flags,
                ring_id: [0, 0],
                index: 0,
            };
            let mut r = Reader::attach(&hdr, mem.clone(), geo).unwrap();
            let mut seen = 0;
            for _ in 0..3 {
                r.poll(8, |_, p| {
                    // a record is seen whole or not at all
                    let i = u32::from_le_bytes(p[4..8].try_into().unwrap());
                    let j = u32::from_le_bytes(p[8..12].try_into().unwrap());
                    assert_eq!(i + 100, j);
                    seen += 1;
                    true
                })
                .unwrap();
                r.release();
                loom::thread::yield_now();
            }
            for h in hs {
                h.join().unwrap();
            }
            r.poll(8, |_, _| {
                seen += 1;
                true
            })
            .unwrap();
            let written = hdr.prod.written.load(Ordering::Relaxed);
            let dropped = hdr.prod.dropped.load(Ordering::Relaxed);
            assert_eq!(written + dropped, u64::from(writers * per));
            assert_eq!(seen, written);
        });
    }

    #[test]
    fn loom_exclusive() {
        model(0, 1, 5);
    }

    #[test]
    fn loom_shared() {
        model(FLAG_SHARED, 2, 1);
    }
}

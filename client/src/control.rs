//! The control segment: verbosity directives the sidecar writes for one
//! client, read by the client without a system call on its hot path.
//!
//! The sidecar makes one sealed `memfd` per client (sealed against shrink,
//! grow and, once the sidecar has mapped it, any new writable mapping: the
//! client can only read it) and hands it over with the welcome. It writes a
//! [`Directives`] under a sequence lock: `seq` is odd while it writes, and
//! every completed write makes it even and larger. The client re-reads when
//! `seq` changed (told by a [`crate::proto::SidecarMsg::Directives`] nudge on
//! the socket, or noticed by a periodic check), and rebuilds its filters;
//! `tracing`'s interest cache is rebuilt with them, so a disabled call site
//! still costs one load and a compare.

use serde::{Deserialize, Serialize};

use crate::ring::Memory;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::wire::{Level, TraceId};

/// `"DLOGCTRL"`.
pub const CONTROL_MAGIC: u64 = u64::from_le_bytes(*b"DLOGCTRL");
/// Layout version.
pub const CONTROL_VERSION: u32 = 1;
/// Size of a control segment.
pub const CONTROL_BYTES: usize = 64 << 10;
/// Where the payload starts.
pub const CONTROL_HEADER_BYTES: usize = 64;

/// Front of the control segment.
#[repr(C)]
#[derive(Debug)]
pub struct ControlHeader {
    /// [`CONTROL_MAGIC`].
    pub magic: u64,
    /// [`CONTROL_VERSION`].
    pub version: u32,
    /// Reserved.
    pub reserved: u32,
    /// Size of the segment.
    pub total_bytes: u64,
    /// Sequence lock: odd while the sidecar writes.
    pub seq: AtomicU64,
    /// Length of the encoded [`Directives`].
    pub len: AtomicU32,
}

impl ControlHeader {
    /// A fresh header.
    pub fn new(total: usize) -> Self {
        ControlHeader {
            magic: CONTROL_MAGIC,
            version: CONTROL_VERSION,
            reserved: 0,
            total_bytes: total as u64,
            seq: AtomicU64::new(0),
            len: AtomicU32::new(0),
        }
    }
}

/// What the sidecar wants this client to record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Directives {
    /// Directives (`EnvFilter` syntax) replacing the client's own start-up
    /// filter while they live; `None`: the start-up filter.
    pub filter: Option<String>,
    /// Traces to record at a level of their own, in every scope of them.
    pub traces: Vec<(TraceId, Level)>,
}

/// Why a control segment could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ControlError {
    /// Not a control segment.
    #[error("bad control segment: {0}")]
    Bad(&'static str),
    /// The directives do not fit.
    #[error("directives too large ({0} bytes)")]
    TooLarge(usize),
}

/// Check a control header against the mapped size.
pub fn check(hdr: &ControlHeader, seg_len: usize) -> Result<(), ControlError> {
    if hdr.magic != CONTROL_MAGIC || hdr.version != CONTROL_VERSION {
        return Err(ControlError::Bad("magic or version"));
    }
    if hdr.total_bytes as usize != seg_len || seg_len <= CONTROL_HEADER_BYTES {
        return Err(ControlError::Bad("size"));
    }
    Ok(())
}

/// Write directives (the sidecar; one writer per segment).
pub fn write<M: Memory>(hdr: &ControlHeader, mem: &M, d: &Directives) -> Result<u64, ControlError> {
    let bytes = postcard::to_allocvec(d).map_err(|_| ControlError::TooLarge(0))?;
    if bytes.len() > mem.len() {
        return Err(ControlError::TooLarge(bytes.len()));
    }
    // Relaxed: we are the only writer of seq.
    let s = hdr.seq.load(Ordering::Relaxed);
    let odd = s | 1;
    hdr.seq.store(odd, Ordering::Relaxed);
    // Release fence: the odd seq is visible before any payload byte, so a
    // reader that sees new bytes also sees the odd (or a later) seq on its
    // second load (pairs with the Acquire fence in `read`).
    std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
    mem.write(0, &bytes);
    hdr.len.store(bytes.len() as u32, Ordering::Relaxed);
    // Release pairs with the Acquire load of seq in `read`: the payload is
    // complete when the even seq is seen.
    hdr.seq.store(odd + 1, Ordering::Release);
    Ok(odd + 1)
}

/// The sequence number now (cheap; compare with the last one read).
pub fn seq(hdr: &ControlHeader) -> u64 {
    // Acquire pairs with the Release store in `write`.
    hdr.seq.load(Ordering::Acquire)
}

/// Read the directives (the client). `None` when the sidecar is mid-write
/// for too long or the bytes are not valid; the caller keeps what it had.
pub fn read<M: Memory>(hdr: &ControlHeader, mem: &M) -> Option<(u64, Directives)> {
    let mut buf = Vec::new();
    for _ in 0..100 {
        // Acquire pairs with the Release store of the even seq in `write`.
        let s1 = hdr.seq.load(Ordering::Acquire);
        if s1 & 1 == 1 {
            std::thread::yield_now();
            continue;
        }
        let len = hdr.len.load(Ordering::Relaxed) as usize;
        if len > mem.len() {
            return None;
        }
        buf.clear();
        buf.resize(len, 0);
        mem.read(0, &mut buf);
        // Acquire fence pairs with the Release fence in `write`: if we read
        // bytes of a newer write, the seq load below sees it changed.
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        if hdr.seq.load(Ordering::Relaxed) != s1 {
            continue;
        }
        if s1 == 0 {
            return Some((0, Directives::default()));
        }
        return postcard::from_bytes(&buf).ok().map(|d| (s1, d));
    }
    None
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::ring::RawMemory;

    #[test]
    fn write_then_read() {
        let hdr = ControlHeader::new(4096 + 64);
        let mut buf = vec![0u64; 512];
        // SAFETY: buf outlives the view, 8-aligned.
        let mem = unsafe { RawMemory::new(buf.as_mut_ptr() as *mut u8, 4096) };
        assert_eq!(read(&hdr, &mem), Some((0, Directives::default())));
        let d = Directives {
            filter: Some("debug,a=trace".into()),
            traces: vec![([1; 16], Level::Debug)],
        };
        let s = write(&hdr, &mem, &d).unwrap();
        assert_eq!(read(&hdr, &mem), Some((s, d)));
        let huge = Directives {
            filter: Some("x".repeat(5000)),
            traces: vec![],
        };
        assert!(write(&hdr, &mem, &huge).is_err());
    }
}

//! The call-site table: static data of each call site, written once.
//!
//! # Why a side table and not the ring
//!
//! Definitions must survive what records do not: a full ring (the event is
//! dropped, its definition must not be lost for good) and a sidecar restart
//! (the new sidecar resumes in the middle of a ring, after the definitions
//! its predecessor read). So each process keeps one append-only table in a
//! sealed segment of its own, handed to the sidecar with the hello. A
//! definition is appended (and its end published with a Release store)
//! before the first record that names it is pushed into a ring; the sidecar
//! sees the ring record with Acquire, so when it then reads the table the
//! definition is there. An id the table does not hold is a protocol error.
//!
//! Layout: [`TableHeader`] (64 bytes), then entries from offset 64, each a
//! `u32` length and a `postcard` [`CallsiteDef`],
//! padded to 8 bytes. Entry `i` defines call site id `i`.

use crate::ring::Memory;
use crate::sync::{AtomicU64, Ordering};
use crate::wire::CallsiteDef;

/// `"DLOGSITE"`.
pub const TABLE_MAGIC: u64 = u64::from_le_bytes(*b"DLOGSITE");
/// Layout version.
pub const TABLE_VERSION: u32 = 1;
/// Where entries start.
pub const TABLE_HEADER_BYTES: usize = 64;
/// Largest call-site table the sidecar maps.
pub const MAX_TABLE_BYTES: usize = 16 << 20;
/// Default size of the table: ~5000 call sites of ~100 bytes.
pub const DEFAULT_TABLE_BYTES: usize = 512 << 10;
/// Largest single definition.
pub const MAX_DEF_BYTES: usize = 8 << 10;

/// Front of the table segment.
#[repr(C)]
#[derive(Debug)]
pub struct TableHeader {
    /// [`TABLE_MAGIC`].
    pub magic: u64,
    /// [`TABLE_VERSION`].
    pub version: u32,
    /// Number of entries committed (a hint: the reader counts itself).
    pub count: u32,
    /// Size of the whole segment.
    pub total_bytes: u64,
    /// Bytes of entries committed (from [`TABLE_HEADER_BYTES`]). Only grows.
    pub committed: AtomicU64,
}

/// Why the table refused or failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TableError {
    /// No room for another definition.
    #[error("call-site table full")]
    Full,
    /// The table's bytes are not a valid table.
    #[error("corrupt call-site table: {0}")]
    Corrupt(&'static str),
}

/// Appends definitions. One writer at a time (the caller holds a lock:
/// registration is the slow path).
#[derive(Debug)]
pub struct TableWriter<'a, M: Memory> {
    hdr: &'a TableHeader,
    mem: M,
    next_id: u32,
}

impl<'a, M: Memory> TableWriter<'a, M> {
    /// `mem` is the segment after the header.
    pub fn new(hdr: &'a TableHeader, mem: M) -> Self {
        TableWriter {
            hdr,
            mem,
            next_id: 0,
        }
    }

    /// Continue after `n` entries already in the table (a copy made after
    /// fork).
    pub fn set_next_id(&mut self, n: u32) {
        self.next_id = n;
    }

    /// Next id that [`TableWriter::append`] will hand out.
    pub fn next_id(&self) -> u32 {
        self.next_id
    }

    /// Append a definition; its `id` is overwritten with the next id, which
    /// is returned.
    pub fn append(&mut self, def: &mut CallsiteDef<'_>) -> Result<u32, TableError> {
        def.id = self.next_id;
        let bytes = postcard::to_allocvec(def).map_err(|_| TableError::Full)?;
        if bytes.len() > MAX_DEF_BYTES {
            return Err(TableError::Full);
        }
        let at = self.hdr.committed.load(Ordering::Relaxed) as usize;
        let need = crate::ring::record_bytes(bytes.len());
        if at + need > self.mem.len() {
            return Err(TableError::Full);
        }
        self.mem.write(at + 4, &bytes);
        self.mem
            .store_word(at, bytes.len() as u32, Ordering::Relaxed);
        // Release pairs with the Acquire load of `committed` in
        // `TableReader::refresh`: the entry is complete when it is counted.
        self.hdr
            .committed
            .store((at + need) as u64, Ordering::Release);
        self.next_id += 1;
        Ok(def.id)
    }
}

/// Reads definitions from a table another process writes. Trusts nothing.
#[derive(Debug)]
pub struct TableReader<'a, M: Memory> {
    hdr: &'a TableHeader,
    mem: M,
    pos: usize,
    /// Owned copies of the definitions, indexed by id.
    pub defs: Vec<OwnedDef>,
}

/// A definition copied out of shared memory.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedDef {
    /// Event or scope.
    pub kind: crate::wire::CallsiteKind,
    /// Level.
    pub level: crate::wire::Level,
    /// Name.
    pub name: String,
    /// Target.
    pub target: String,
    /// File.
    pub file: Option<String>,
    /// Line.
    pub line: Option<u32>,
    /// Field names.
    pub fields: Vec<String>,
    /// The static message of the call site, if any.
    pub message: Option<String>,
}

/// Check a table header; returns the entry region's length.
pub fn check_table(hdr: &TableHeader, seg_len: usize) -> Result<(), TableError> {
    if hdr.magic != TABLE_MAGIC {
        return Err(TableError::Corrupt("magic"));
    }
    if hdr.version != TABLE_VERSION {
        return Err(TableError::Corrupt("version"));
    }
    if hdr.total_bytes as usize != seg_len {
        return Err(TableError::Corrupt("size"));
    }
    Ok(())
}

impl<'a, M: Memory> TableReader<'a, M> {
    /// A reader over a checked table.
    pub fn new(hdr: &'a TableHeader, mem: M) -> Self {
        TableReader {
            hdr,
            mem,
            pos: 0,
            defs: Vec::new(),
        }
    }

    /// Read entries committed since the last call. `max_defs` bounds how
    /// many a client may define.
    pub fn refresh(&mut self, max_defs: usize) -> Result<(), TableError> {
        // Acquire pairs with the Release store in `TableWriter::append`.
        let end = self.hdr.committed.load(Ordering::Acquire) as usize;
        if end > self.mem.len() || end < self.pos {
            return Err(TableError::Corrupt("committed length"));
        }
        let mut buf = Vec::new();
        while self.pos < end {
            if self.defs.len() >= max_defs {
                return Err(TableError::Full);
            }
            if self.pos + 4 > end {
                return Err(TableError::Corrupt("entry header"));
            }
            let len = self.mem.load_word(self.pos, Ordering::Relaxed) as usize;
            let total = crate::ring::record_bytes(len);
            if len > MAX_DEF_BYTES || self.pos + total > end {
                return Err(TableError::Corrupt("entry length"));
            }
            buf.clear();
            buf.resize(len, 0);
            self.mem.read(self.pos + 4, &mut buf);
            let def: CallsiteDef<'_> =
                postcard::from_bytes(&buf).map_err(|_| TableError::Corrupt("undecodable entry"))?;
            if def.id as usize != self.defs.len() {
                return Err(TableError::Corrupt("entry id out of order"));
            }
            self.defs.push(OwnedDef {
                kind: def.kind,
                level: def.level,
                name: def.name.to_owned(),
                target: def.target.to_owned(),
                file: def.file.map(str::to_owned),
                line: def.line,
                fields: def.fields.iter().map(|s| (*s).to_owned()).collect(),
                message: def.message.map(str::to_owned),
            });
            self.pos += total;
        }
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::ring::RawMemory;
    use crate::wire::{CallsiteKind, Level};

    #[test]
    fn append_and_read() {
        let hdr = TableHeader {
            magic: TABLE_MAGIC,
            version: TABLE_VERSION,
            count: 0,
            total_bytes: 4096 + 64,
            committed: AtomicU64::new(0),
        };
        let mut buf = vec![0u64; 512];
        // SAFETY: buf outlives the memory view, 8-aligned.
        let mem = unsafe { RawMemory::new(buf.as_mut_ptr() as *mut u8, 4096) };
        let mut w = TableWriter::new(&hdr, mem);
        let mut r = TableReader::new(&hdr, mem);
        for i in 0..10u32 {
            let name = format!("site{i}");
            let mut d = CallsiteDef {
                id: 99,
                kind: CallsiteKind::Event,
                level: Level::Info,
                name: &name,
                target: "t",
                file: None,
                line: Some(i),
                fields: vec!["message", "x"],
                message: None,
            };
            assert_eq!(w.append(&mut d).unwrap(), i);
        }
        r.refresh(1000).unwrap();
        assert_eq!(r.defs.len(), 10);
        assert_eq!(r.defs[3].name, "site3");
        assert_eq!(r.refresh(5), Ok(()));
        // corrupt: committed beyond the region
        hdr.committed.store(1 << 20, Ordering::Relaxed);
        assert!(r.refresh(1000).is_err());
    }
}

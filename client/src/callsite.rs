//! Call-site ids: each call site's static data goes to the table once; the
//! hot path finds its id again without a lock.
//!
//! `tracing` call sites are keyed by the address of their `&'static
//! Metadata` in a fixed open-addressing table of atomics: a lookup is a
//! hash and one or two loads. Call sites known only at run time (`log`
//! records, the C API's runtime targets) are keyed by their content, first
//! in a thread-local cache, then in a locked map (slow path, once per thread
//! and site).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::wire::{CallsiteKind, Level};

const SLOTS: usize = 1 << 14;

/// Lock-free map from a static key (an address) to a call-site id.
pub(crate) struct StaticMap {
    keys: Box<[AtomicUsize]>,
    ids: Box<[AtomicU32]>,
}

impl StaticMap {
    pub(crate) fn new() -> Self {
        StaticMap {
            keys: (0..SLOTS).map(|_| AtomicUsize::new(0)).collect(),
            ids: (0..SLOTS).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    #[inline]
    fn slot(key: usize) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (usize::BITS - 14)) % SLOTS
    }

    /// The id of `key`, if inserted.
    #[inline]
    pub(crate) fn get(&self, key: usize) -> Option<u32> {
        let mut i = Self::slot(key);
        for _ in 0..SLOTS {
            // Acquire pairs with the Release store of the key in `insert`:
            // the id stored before it is visible.
            let k = self.keys[i].load(Ordering::Acquire);
            if k == key {
                return Some(self.ids[i].load(Ordering::Relaxed));
            }
            if k == 0 {
                return None;
            }
            i = (i + 1) % SLOTS;
        }
        None
    }

    /// Insert; the caller serialises inserts (registration lock). Returns
    /// false when the map is full (the site then goes through the dynamic
    /// path).
    pub(crate) fn insert(&self, key: usize, id: u32) -> bool {
        let mut i = Self::slot(key);
        for _ in 0..SLOTS {
            // Relaxed: inserts are serialised by the caller's lock.
            let k = self.keys[i].load(Ordering::Relaxed);
            if k == 0 || k == key {
                self.ids[i].store(id, Ordering::Relaxed);
                // Release pairs with the Acquire load in `get`.
                self.keys[i].store(key, Ordering::Release);
                return true;
            }
            i = (i + 1) % SLOTS;
        }
        false
    }
}

/// Content of a call site known only at run time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct DynKey {
    pub kind: u8,
    pub level: u8,
    pub name: String,
    pub target: String,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub fields: Vec<String>,
    pub message: Option<String>,
}

/// Process-wide map of dynamic call sites (slow path).
pub(crate) type DynMap = Mutex<HashMap<DynKey, u32>>;

/// Content hash → the sites with that hash and their ids. Both hashes are
/// foldhash, not SipHash: the cache is per thread and looked up on every
/// `log` record (SipHash over target and file was ~11 % of that path's
/// time); the keys come from the program itself, not from outside.
type DynCache = HashMap<u64, Vec<(DynKey, u32)>, foldhash::fast::FixedState>;

thread_local! {
    /// Per-thread cache in front of the locked map: (generation, map).
    static DYN_CACHE: RefCell<(u64, DynCache)> =
        RefCell::new((0, HashMap::with_hasher(foldhash::fast::FixedState::default())));
}

/// A call site described at run time.
#[derive(Debug, Clone, Copy)]
pub struct DynSite<'a> {
    /// Event or scope.
    pub kind: CallsiteKind,
    /// Level.
    pub level: Level,
    /// Name.
    pub name: &'a str,
    /// Target.
    pub target: &'a str,
    /// File.
    pub file: Option<&'a str>,
    /// Line.
    pub line: Option<u32>,
    /// Field names.
    pub fields: &'a [&'a str],
    /// The static message, if the call site has one.
    pub message: Option<&'a str>,
}

impl<'a> DynSite<'a> {
    /// A content hash that needs no allocation.
    fn hash(&self) -> u64 {
        use std::hash::{BuildHasher, Hash, Hasher};
        let mut h = foldhash::fast::FixedState::default().build_hasher();
        (
            self.kind as u8,
            self.level as u8,
            self.name,
            self.target,
            self.file,
            self.line,
        )
            .hash(&mut h);
        self.fields.hash(&mut h);
        self.message.hash(&mut h);
        h.finish()
    }

    fn matches(&self, k: &DynKey) -> bool {
        k.level == self.level as u8
            && k.kind == self.kind as u8
            && k.line == self.line
            && k.target == self.target
            && k.name == self.name
            && k.file.as_deref() == self.file
            && k.message.as_deref() == self.message
            && k.fields.len() == self.fields.len()
            && k.fields.iter().zip(self.fields).all(|(a, b)| a == b)
    }

    /// The table entry for this site (its id is set by the table).
    pub(crate) fn def(&self) -> crate::wire::CallsiteDef<'a> {
        crate::wire::CallsiteDef {
            id: 0,
            kind: self.kind,
            level: self.level,
            name: self.name,
            target: self.target,
            file: self.file,
            line: self.line,
            fields: self.fields.to_vec(),
            message: self.message,
        }
    }

    fn key(&self) -> DynKey {
        DynKey {
            kind: self.kind as u8,
            level: self.level as u8,
            name: self.name.to_owned(),
            target: self.target.to_owned(),
            file: self.file.map(str::to_owned),
            line: self.line,
            fields: self.fields.iter().map(|s| (*s).to_owned()).collect(),
            message: self.message.map(str::to_owned),
        }
    }
}

/// Look a dynamic site up in this thread's cache; `generation` changes when
/// the process's table is replaced (after a fork), which empties the cache.
pub(crate) fn cached_dyn(generation: u64, site: &DynSite<'_>) -> Option<u32> {
    DYN_CACHE
        .try_with(|c| {
            let c = c.borrow();
            if c.0 != generation {
                return None;
            }
            // Look up without allocating: hash, then compare the bucket.
            c.1.get(&site.hash())?
                .iter()
                .find(|(k, _)| site.matches(k))
                .map(|(_, id)| *id)
        })
        .ok()
        .flatten()
}

/// Remember a dynamic site in this thread's cache.
pub(crate) fn remember_dyn(generation: u64, site: &DynSite<'_>, id: u32) {
    let _ = DYN_CACHE.try_with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != generation {
            c.0 = generation;
            c.1.clear();
        }
        if c.1.len() < 4096 {
            c.1.entry(site.hash()).or_default().push((site.key(), id));
        }
    });
}

/// The key for the locked map.
pub(crate) fn dyn_key(site: &DynSite<'_>) -> DynKey {
    site.key()
}

//! Scopes: ids, the per-thread stack of entered scopes, W3C `traceparent`.
//!
//! A scope is a `tracing` span (or a C API scope). It has a 64-bit id (the
//! W3C span id), belongs to a 128-bit trace, and has a parent: the scope it
//! was opened in, or a scope in another process named by a `traceparent`.
//!
//! The open record is written lazily, when the scope is first entered,
//! gets a child or an event, or closes: so [`crate::continue_from`] can still
//! give a freshly made span its remote parent before anything was written.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;

use smallvec::SmallVec;

use crate::runtime::LOCAL;
pub(crate) use crate::span_table::SpanTable;
use crate::wire::{Level, TraceId};

/// An entry of the thread's stack of entered scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Current {
    /// Who pushed it: a `tracing` span id, or a C scope's address.
    pub key: u64,
    /// Scope id.
    pub scope: u64,
    /// Trace id.
    pub trace: TraceId,
    /// Records up to this level are written in this scope whatever the
    /// directives say (0 = no boost); see [`crate::filter`].
    pub boost: u8,
    /// The [`crate::Subscriber`] that pushed it (its `current_span` looks
    /// for its own entries); 0 for everyone else.
    pub owner: u32,
}

/// The innermost scope of a stack. A span that has no scope (no runtime,
/// or the call-site table was full) is pushed as a copy of the entry below
/// it, or with scope 0 on an empty stack: none then.
#[inline(always)]
pub(crate) fn top(stack: &[Current]) -> Option<Current> {
    stack.last().copied().filter(|c| c.scope != 0)
}

/// Encoded field bytes a scope keeps without a heap allocation.
pub(crate) const INLINE_FIELDS: usize = 64;

/// What the client keeps of an open scope.
///
/// Shared by every thread that enters the scope, and read without a lock
/// (see [`ScopeTable`]): what [`crate::continue_from`] may change after the
/// scope was made (trace, parent, boost) is atomic, the rest is fixed at
/// creation.
#[derive(Debug)]
pub(crate) struct ScopeData {
    pub scope: u64,
    /// The trace id, as two big-endian halves.
    trace: [AtomicU64; 2],
    parent: AtomicU64,
    remote: AtomicBool,
    pub callsite: u32,
    pub created: u64,
    pub tid: u32,
    /// The open record is written (or being written).
    pub opened: AtomicBool,
    /// An error-level event happened in it, or the user marked it.
    pub error: AtomicBool,
    /// Encoded fields given at creation, written with the open record.
    /// Inline up to [`INLINE_FIELDS`] bytes (a few integers and short
    /// strings): no allocation of its own for a typical scope.
    pub fields: SmallVec<[u8; INLINE_FIELDS]>,
    /// Encoded fields added after creation (a malformed `traceparent`),
    /// written after `fields`. Set at most once.
    pub extra: OnceLock<Vec<u8>>,
    /// See [`Current::boost`].
    boost: AtomicU8,
}

// Relaxed for trace, parent, remote and boost: they change only before
// the open record is written (`continue_from` on a fresh span), and a
// thread that reads them got the span through something that synchronised
// with the thread that changed them (the span's handle moved or was
// shared); the atomics only keep a misuse (the span entered on another
// thread at that very moment) from being a data race.
impl ScopeData {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        scope: u64,
        trace: Halves,
        parent: u64,
        callsite: u32,
        created: u64,
        tid: u32,
        fields: SmallVec<[u8; INLINE_FIELDS]>,
        boost: u8,
    ) -> Self {
        ScopeData {
            scope,
            trace: [AtomicU64::new(trace[0]), AtomicU64::new(trace[1])],
            parent: AtomicU64::new(parent),
            remote: AtomicBool::new(false),
            callsite,
            created,
            tid,
            opened: AtomicBool::new(false),
            error: AtomicBool::new(false),
            fields,
            extra: OnceLock::new(),
            boost: AtomicU8::new(boost),
        }
    }

    #[inline]
    pub(crate) fn trace(&self) -> TraceId {
        join_trace(self.trace_halves())
    }

    /// [`ScopeData::trace`] as its two halves.
    #[inline]
    pub(crate) fn trace_halves(&self) -> Halves {
        [
            self.trace[0].load(Ordering::Relaxed),
            self.trace[1].load(Ordering::Relaxed),
        ]
    }

    #[inline]
    pub(crate) fn parent(&self) -> u64 {
        self.parent.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn remote(&self) -> bool {
        self.remote.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn boost(&self) -> u8 {
        self.boost.load(Ordering::Relaxed)
    }

    /// Make the scope a child of a scope in another process; returns the
    /// boost it has now.
    pub(crate) fn set_remote_parent(&self, trace: &TraceId, parent: u64, boost: u8) -> u8 {
        let [hi, lo] = split_trace(trace);
        self.trace[0].store(hi, Ordering::Relaxed);
        self.trace[1].store(lo, Ordering::Relaxed);
        self.parent.store(parent, Ordering::Relaxed);
        self.remote.store(true, Ordering::Relaxed);
        self.boost.fetch_max(boost, Ordering::Relaxed).max(boost)
    }

    pub(crate) fn current(&self, key: u64) -> Current {
        Current {
            key,
            scope: self.scope,
            trace: self.trace(),
            boost: self.boost(),
            owner: 0,
        }
    }

    /// Whether this call should write the open record (only the first).
    pub(crate) fn take_open(&self) -> bool {
        // Relaxed: the flag elects one writer; the data it writes was set
        // before the scope was shared (see `ScopeTable` and the extension
        // insert: both happen-before any other thread has the span).
        // The load first: once open (every close, event and re-entry after
        // the first), a plain load instead of a locked read-modify-write.
        !self.opened.load(Ordering::Relaxed) && !self.opened.swap(true, Ordering::Relaxed)
    }
}

/// A trace id as two big-endian halves: how the layer carries one between
/// the generators, [`ScopeData`] and the record. Handing the 16 bytes
/// around instead cost a store-forwarding stall a span (two 8-byte stores
/// read back by one 16-byte load, ~20 % of `on_new_span`'s time by `perf`).
pub(crate) type Halves = [u64; 2];

#[inline]
pub(crate) fn split_trace(t: &TraceId) -> Halves {
    let mut hi = [0u8; 8];
    let mut lo = [0u8; 8];
    hi.copy_from_slice(&t[..8]);
    lo.copy_from_slice(&t[8..]);
    [u64::from_be_bytes(hi), u64::from_be_bytes(lo)]
}

#[inline]
pub(crate) fn join_trace(h: Halves) -> TraceId {
    (u128::from(h[0]) << 64 | u128::from(h[1])).to_be_bytes()
}

/// The scopes of one layer, keyed by `tracing` span id (see
/// [`SpanTable`]).
pub(crate) type ScopeTable = SpanTable<ScopeData, 1024>;

/// The innermost entered scope of this thread.
#[inline]
pub(crate) fn current() -> Option<Current> {
    LOCAL
        .try_with(|l| {
            // SAFETY: the stack is only touched by this thread, and never
            // while another borrow of it is live (push/pop/top are short
            // and do not call out).
            top(unsafe { &*l.scopes.get() })
        })
        .ok()
        .flatten()
}

pub(crate) fn push(c: Current) {
    let _ = LOCAL.try_with(|l| {
        // SAFETY: see `current`.
        unsafe { (*l.scopes.get()).push(c) }
    });
}

/// Take the innermost entry of `key` pushed by anyone but a
/// [`crate::Subscriber`] (the layer, a C scope) off the stack.
pub(crate) fn pop(key: u64) {
    pop_owned(key, 0);
}

/// Take the innermost entry of `key` pushed by `owner` off the stack: two
/// distlog subscribers on one thread (one global, one scoped) hand out the
/// same ids.
#[inline]
pub(crate) fn pop_owned(key: u64, owner: u32) {
    let _ = LOCAL.try_with(|l| {
        // SAFETY: see `current`.
        let v = unsafe { &mut *l.scopes.get() };
        let mine = |c: &Current| c.key == key && c.owner == owner;
        // Usually the top (a pop, not `remove`'s call to memmove for no
        // bytes); async code may exit out of order.
        if v.last().is_some_and(mine) {
            v.pop();
        } else if let Some(i) = v.iter().rposition(mine) {
            v.remove(i);
        }
    });
}

/// The key of the innermost entry `owner` pushed.
pub(crate) fn top_key(owner: u32) -> Option<u64> {
    LOCAL
        .try_with(|l| {
            // SAFETY: see `current`.
            let v = unsafe { &*l.scopes.get() };
            v.iter().rev().find(|c| c.owner == owner).map(|c| c.key)
        })
        .ok()
        .flatten()
}

/// What a new scope takes from its thread, read in one thread-local
/// access (see [`fresh`]).
pub(crate) struct Fresh {
    /// The thread's innermost entered scope, when asked for.
    pub cur: Option<Current>,
    /// The new scope's id.
    pub scope: u64,
    /// A new trace id when the scope starts one, else zeros.
    pub trace: Halves,
    /// This thread's kernel id.
    pub tid: u32,
}

/// A new scope's id, its thread's id and (`contextual`) the thread's
/// innermost scope; a new trace id when the scope has no parent
/// (`has_parent` false and, if contextual, no current scope).
///
/// The ids come from the thread's two xorshift generators, seeded from the
/// OS once per thread (and again in a forked child): a trace id takes one
/// output of each, so it carries 128 bits of the OS's entropy. Ids stay
/// unique within a process while the seeds differ (a generator does not
/// repeat within 2^64 − 1 outputs).
#[inline]
pub(crate) fn fresh(contextual: bool, has_parent: bool) -> Fresh {
    use crate::runtime::{local_tid, next_random, random_fallback};
    LOCAL
        .try_with(|l| {
            let cur = if contextual {
                // SAFETY: see `current`.
                top(unsafe { &*l.scopes.get() })
            } else {
                None
            };
            let trace = if !has_parent && cur.is_none() {
                [next_random(&l.rng[0]), next_random(&l.rng[1])]
            } else {
                [0; 2]
            };
            Fresh {
                cur,
                scope: next_random(&l.rng[0]),
                trace,
                tid: local_tid(l),
            }
        })
        .unwrap_or_else(|_| Fresh {
            cur: None,
            scope: random_fallback(),
            trace: if has_parent {
                [0; 2]
            } else {
                split_trace(&new_trace())
            },
            // SAFETY: gettid has no preconditions.
            tid: unsafe { libc::gettid() } as u32,
        })
}

/// A new trace id.
pub(crate) fn new_trace() -> TraceId {
    let a = crate::runtime::random_u64(0);
    let b = crate::runtime::random_u64(1);
    let mut t = [0u8; 16];
    t[..8].copy_from_slice(&a.to_be_bytes());
    t[8..].copy_from_slice(&b.to_be_bytes());
    t
}

/// A new scope id (never 0).
pub(crate) fn new_scope_id() -> u64 {
    crate::runtime::random_u64(0)
}

/// The `tracestate` member distlog uses: `distlog=<level>` asks every
/// service that continues the trace to record it at that level.
pub fn format_tracestate(boost: u8) -> Option<String> {
    Level::from_u8(boost).map(|l| format!("distlog={}", l.as_str().to_ascii_lowercase()))
}

/// The boost level a W3C `tracestate` header asks for (0 = none).
/// Unknown members and malformed entries are ignored.
pub fn parse_tracestate(s: &str) -> u8 {
    s.split(',')
        .filter_map(|m| m.trim().split_once('='))
        .filter(|(k, _)| k.trim() == "distlog")
        .filter_map(|(_, v)| match v.trim().to_ascii_lowercase().as_str() {
            "error" => Some(Level::Error),
            "warn" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            "trace" => Some(Level::Trace),
            _ => None,
        })
        .map(|l| l as u8)
        .max()
        .unwrap_or(0)
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

/// A W3C `traceparent` string for a scope.
pub fn format_traceparent(trace: &TraceId, scope: u64) -> String {
    format!("00-{}-{}-01", hex(trace), hex(&scope.to_be_bytes()))
}

/// A parsed `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// Trace id.
    pub trace: TraceId,
    /// The remote parent's span id.
    pub parent: u64,
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

/// Parse a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`). Returns a
/// message saying what is wrong otherwise.
pub fn parse_traceparent(s: &str) -> Result<TraceParent, &'static str> {
    let s = s.trim();
    let parts: Vec<&str> = s.split('-').collect();
    if parts.len() < 4 {
        return Err("expected version-traceid-parentid-flags");
    }
    let (ver, tr, sp, fl) = (parts[0], parts[1], parts[2], parts[3]);
    if ver.len() != 2
        || !ver.bytes().all(|b| b.is_ascii_hexdigit())
        || ver.eq_ignore_ascii_case("ff")
    {
        return Err("bad version");
    }
    if ver == "00" && parts.len() != 4 {
        return Err("version 00 has exactly four parts");
    }
    let trace = unhex::<16>(tr).ok_or("trace id is not 32 hex digits")?;
    if trace == [0; 16] {
        return Err("trace id is all zero");
    }
    let parent = u64::from_be_bytes(unhex::<8>(sp).ok_or("parent id is not 16 hex digits")?);
    if parent == 0 {
        return Err("parent id is zero");
    }
    let flags = unhex::<1>(fl).ok_or("flags are not 2 hex digits")?[0];
    Ok(TraceParent {
        trace,
        parent,
        flags,
    })
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, c) in s.as_bytes().chunks(2).enumerate() {
        let d = |b: u8| (b as char).to_digit(16);
        out[i] = (d(c[0])? * 16 + d(c[1])?) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_roundtrip() {
        let t = [
            0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
            0x47, 0x36,
        ];
        let s = format_traceparent(&t, 0x00f0_67aa_0ba9_02b7);
        assert_eq!(s, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let p = parse_traceparent(&s).unwrap();
        assert_eq!(
            p,
            TraceParent {
                trace: t,
                parent: 0x00f0_67aa_0ba9_02b7,
                flags: 1
            }
        );
    }

    #[test]
    fn tracestate() {
        assert_eq!(
            parse_tracestate("congo=t61rcWkgMzE, distlog=debug"),
            Level::Debug as u8
        );
        assert_eq!(parse_tracestate("distlog=loud"), 0);
        assert_eq!(parse_tracestate(""), 0);
        assert_eq!(
            format_tracestate(Level::Trace as u8).as_deref(),
            Some("distlog=trace")
        );
        assert_eq!(format_tracestate(0), None);
    }

    #[test]
    fn malformed_traceparents() {
        for bad in [
            "",
            "00-abc-def-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(parse_traceparent(bad).is_err(), "{bad}");
        }
    }
}

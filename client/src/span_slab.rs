//! The spans of [`crate::Subscriber`]: a slab that hands out the span ids
//! itself, so no `Registry` (and no hash of someone else's id) sits between
//! a `tracing` callback and a span's data.
//!
//! An id is a slot's index plus one (low 32 bits, never 0) and the slot's
//! generation (high 32 bits): unique among the open spans, and a stale or
//! made-up id is told apart from the slot's current span by the generation,
//! so every entry point takes any id without undefined behaviour (the
//! `Registry` panics on some of them).
//!
//! A slot's `state` is its generation and its count of handles (`tracing`'s
//! `Span` clones): [`SpanSlab::insert_with`] makes it 1,
//! [`SpanSlab::clone_ref`] adds one, [`SpanSlab::release`] takes one away and
//! the one that takes the last closes the span: once, from whichever thread
//! drops the last handle (as the `Registry`'s `CloseGuard` does). A close
//! bumps the generation before the slot is free again.
//!
//! Readers that hold no handle ([`SpanSlab::with`]: an entered id, an
//! event's explicit parent, `Dispatch::record`) meet the close on one
//! atomic, the slot's reader count with its `CLOSING` bit, the protocol of
//! [`crate::span_table`]: a reader counted before the close's `CLOSING` is
//! waited for, one counted after sees the bit and backs off; no
//! store-then-load pair that only `SeqCst` would order.
//!
//! Slots live in buckets that double in size and are never freed while the
//! slab lives (so a stale index is always memory one may read); free slots
//! are a lock-free stack whose head carries a tag against ABA. A new span
//! is a pop and a release store, a close a locked decrement, the reader
//! handshake and a push; growing (more spans open at once than ever
//! before) takes a lock.

use std::mem::MaybeUninit;

use crate::span_table::Readers;
use crate::sync::{AtomicPtr, AtomicU32, AtomicU64, Mutex, Ordering, UnsafeCell};

/// Buckets: bucket `b` holds `FIRST << b` slots, so 24 buckets of a
/// 256-slot first one reach 2^32 − 256 slots, every index + 1 a `u32`.
const BUCKETS: usize = 24;

/// `T` for every open span; `FIRST` (a power of two) slots in the first
/// bucket.
pub(crate) struct SpanSlab<T, const FIRST: usize = 256> {
    buckets: [AtomicPtr<Slot<T>>; BUCKETS],
    /// Free slots: the tag (high 32 bits, changed by every push and pop)
    /// and the top's index + 1 (0: empty).
    free: AtomicU64,
    /// Buckets made so far; held while one is made.
    grown: Mutex<usize>,
}

struct Slot<T> {
    /// Generation (high 32 bits) and handles (low 32).
    state: AtomicU64,
    /// Readers without a handle in the slot now, and whether it closes.
    readers: Readers,
    /// The next free slot's index + 1 while this one is free.
    next: AtomicU32,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: `value` is written only by the thread that popped the slot off
// the free stack, before the state publishes it; dropped only by the close,
// once no reader is in it; between those only read, from any thread: so
// `T` must be `Sync` (shared reads) and `Send` (dropped on any thread).
unsafe impl<T: Send + Sync> Sync for Slot<T> {}
// SAFETY: as above; the slab owns its values.
unsafe impl<T: Send + Sync, const FIRST: usize> Send for SpanSlab<T, FIRST> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync, const FIRST: usize> Sync for SpanSlab<T, FIRST> {}

#[inline(always)]
fn generation(state: u64) -> u64 {
    state >> 32
}

#[inline(always)]
fn handles(state: u64) -> u32 {
    state as u32
}

impl<T> Slot<T> {
    fn new() -> Self {
        Slot {
            state: AtomicU64::new(0),
            readers: Readers::new(),
            next: AtomicU32::new(0),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }
}

impl<T, const FIRST: usize> SpanSlab<T, FIRST> {
    const SHIFT: u32 = {
        assert!(FIRST.is_power_of_two() && FIRST >= 2);
        FIRST.trailing_zeros()
    };

    pub(crate) fn new() -> Self {
        let _ = Self::SHIFT;
        SpanSlab {
            buckets: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            free: AtomicU64::new(0),
            grown: Mutex::new(0),
        }
    }

    /// The bucket and the place in it of slot `idx`.
    #[inline(always)]
    fn locate(idx: u32) -> (usize, usize) {
        let n = idx as usize + FIRST;
        let b = (usize::BITS - 1 - n.leading_zeros() - Self::SHIFT) as usize;
        (b, n - (FIRST << b))
    }

    /// Slot `idx`, if its bucket exists.
    #[inline(always)]
    fn slot(&self, idx: u32) -> Option<&Slot<T>> {
        let (b, off) = Self::locate(idx);
        // Acquire pairs with the Release that published the bucket in
        // `grow`: its slots' initial values are seen.
        let p = self.buckets.get(b)?.load(Ordering::Acquire);
        if p.is_null() {
            return None;
        }
        // SAFETY: bucket `b` holds `FIRST << b` slots and `off` is below
        // that (`locate`); buckets live as long as the slab.
        Some(unsafe { &*p.add(off) })
    }

    /// The slot of span `id`, if the id can name one.
    #[inline(always)]
    fn slot_of(&self, id: u64) -> Option<&Slot<T>> {
        self.slot((id as u32).checked_sub(1)?)
    }

    /// Take a free slot off the stack.
    #[inline]
    fn pop(&self) -> Option<u32> {
        // Acquire pairs with the Release of the push that put the top
        // there: its `next` and the previous occupant's drop are seen.
        let mut head = self.free.load(Ordering::Acquire);
        loop {
            let top = head as u32;
            let s = self.slot(top.checked_sub(1)?)?;
            // Relaxed: a `next` changed since `head` was read comes with a
            // changed tag, and the exchange below fails.
            let next = s.next.load(Ordering::Relaxed);
            let new = (generation(head).wrapping_add(1) << 32) | u64::from(next);
            // Acquire on success: the head this takes was put there by a
            // push (or this RMW continues its release sequence), so that
            // push's emptying of the slot happens-before the caller fills
            // it; on failure, as the load above.
            match self
                .free
                .compare_exchange_weak(head, new, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => return Some(top - 1),
                Err(h) => head = h,
            }
        }
    }

    /// Put slots `first..=last` (linked through `next` from `first` to
    /// `last`) on the stack.
    fn push(&self, first: u32, last: &Slot<T>) {
        let mut head = self.free.load(Ordering::Relaxed);
        loop {
            // Relaxed: published by the Release exchange below.
            last.next.store(head as u32, Ordering::Relaxed);
            let new = (generation(head).wrapping_add(1) << 32) | u64::from(first + 1);
            // Release: the slot's emptying (the drop, the new generation)
            // happens-before its next pop.
            match self
                .free
                .compare_exchange_weak(head, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    /// A new bucket: its first slot for the caller, the rest on the stack.
    #[cold]
    #[inline(never)]
    fn grow(&self) -> u32 {
        let mut grown = self.grown.lock().unwrap_or_else(|e| e.into_inner());
        // Another thread may have grown (or closed spans) meanwhile.
        if let Some(idx) = self.pop() {
            return idx;
        }
        let b = *grown;
        assert!(b < BUCKETS, "distlog: more than 2^32 spans open at once");
        let len = FIRST << b;
        let base = (FIRST * ((1 << b) - 1)) as u32;
        let slots: Box<[Slot<T>]> = (0..len).map(|_| Slot::new()).collect();
        // Free slots 1..len, linked in order (the last one's `next` is set
        // by the push).
        for (i, s) in slots.iter().enumerate().take(len - 1).skip(1) {
            // Relaxed: published by the bucket's Release store below.
            s.next.store(base + i as u32 + 2, Ordering::Relaxed);
        }
        let p = Box::into_raw(slots) as *mut Slot<T>;
        // Release pairs with the Acquire in `slot`.
        self.buckets[b].store(p, Ordering::Release);
        *grown = b + 1;
        if len > 1 {
            // SAFETY: just made, `len` slots; lives as long as the slab.
            let last = unsafe { &*p.add(len - 1) };
            self.push(base + 1, last);
        }
        base
    }

    /// A new span: the value `make` returns, completed by `fill`, both
    /// where it stays (not built elsewhere and moved in). Returns its id.
    /// `make` must not panic (the slot would be lost); `fill` may: the
    /// value is dropped and the slot freed.
    #[inline]
    pub(crate) fn insert_with(&self, make: impl FnOnce() -> T, fill: impl FnOnce(&mut T)) -> u64 {
        let idx = self.pop().unwrap_or_else(|| self.grow());
        let Some(s) = self.slot(idx) else {
            unreachable!("a slot off the free stack is in a bucket")
        };
        // SAFETY: the slot is ours (off the free stack; readers find no
        // handle in its state and back off).
        let v: *mut T = s.value.with_mut(|p| unsafe { (*p).write(make()) });
        let undo = Unclaim { slab: self, idx };
        // SAFETY: written just above; nobody else reaches it before the
        // state publishes it below.
        fill(unsafe { &mut *v });
        std::mem::forget(undo);
        // Relaxed: only a close changes the generation, and that close's
        // push happens-before the pop above.
        let g = generation(s.state.load(Ordering::Relaxed));
        // Release pairs with the readers' Acquire loads of the state: who
        // sees the handle sees the value.
        s.state.store(g << 32 | 1, Ordering::Release);
        g << 32 | u64::from(idx + 1)
    }

    /// One more handle to span `id`; false when `id` is not open.
    #[inline]
    pub(crate) fn clone_ref(&self, id: u64) -> bool {
        let Some(s) = self.slot_of(id) else {
            return false;
        };
        // Relaxed: a new handle is made from an existing one, which keeps
        // the span open (as `Arc::clone`); the generation check needs no
        // order, the exchange fails if the state changed.
        let mut st = s.state.load(Ordering::Relaxed);
        loop {
            if generation(st) != generation(id) || handles(st) == 0 || handles(st) == u32::MAX {
                return false;
            }
            match s
                .state
                .compare_exchange_weak(st, st + 1, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(x) => st = x,
            }
        }
    }

    /// Drop a handle to span `id`; the last one calls `last` on the value
    /// (while readers may still look at it), then drops it and frees the
    /// slot. Returns whether the span closed.
    #[inline]
    pub(crate) fn release(&self, id: u64, last: impl FnOnce(&T)) -> bool {
        let Some(s) = self.slot_of(id) else {
            return false;
        };
        let mut st = s.state.load(Ordering::Relaxed);
        loop {
            if generation(st) != generation(id) || handles(st) == 0 {
                return false;
            }
            // Release: this handle's uses happen-before the close; Acquire
            // (for the last one): every other handle's uses happen-before
            // it (their Release decrements are in this RMW chain), as in
            // `Arc`'s drop.
            match s
                .state
                .compare_exchange_weak(st, st - 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(x) => st = x,
            }
        }
        if handles(st) != 1 {
            return false;
        }
        self.close(s, id, last);
        true
    }

    #[inline]
    fn close(&self, s: &Slot<T>, id: u64, last: impl FnOnce(&T)) {
        // SAFETY: the value was published with the handle just taken away;
        // readers only read it.
        s.value.with(|p| last(unsafe { (*p).assume_init_ref() }));
        s.readers.close();
        // SAFETY: no reader is in the slot (counted ones left, new ones
        // back off on `CLOSING`), and no handle is left.
        s.value.with_mut(|p| unsafe { (*p).assume_init_drop() });
        // Relaxed: ordered before the Release clearing of `CLOSING` below,
        // which a later reader synchronises with; the id's generation no
        // longer matches from then on.
        s.state.store(
            (generation(id).wrapping_add(1) & 0xffff_ffff) << 32,
            Ordering::Relaxed,
        );
        // A reader counted in after this sees the drop and the new
        // generation.
        s.readers.closed();
        self.push((id as u32) - 1, s);
    }

    /// `f` on the value of span `id` if it is open, for a caller that may
    /// hold no handle (the span may be closing on another thread).
    #[inline]
    pub(crate) fn with<R>(&self, id: u64, f: impl FnOnce(&T) -> R) -> Option<R> {
        let s = self.slot_of(id)?;
        if !s.readers.enter() {
            return None;
        }
        let _left = Leave(&s.readers);
        // Acquire pairs with the Release store publishing the value in
        // `insert_with`. A handle count of 0: free, being filled, or
        // closing (that close waits for this reader).
        let st = s.state.load(Ordering::Acquire);
        if generation(st) != generation(id) || handles(st) == 0 {
            return None;
        }
        // SAFETY: published (a handle is counted, the generation is the
        // id's), and a close drops it only once this reader has left.
        Some(s.value.with(|p| f(unsafe { (*p).assume_init_ref() })))
    }
}

/// Counts a reader out of a slot (also when its `f` unwinds: a close would
/// wait for it for good).
struct Leave<'a>(&'a Readers);

impl Drop for Leave<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// Frees a slot whose value's `fill` unwound (see
/// [`SpanSlab::insert_with`]).
struct Unclaim<'a, T, const FIRST: usize> {
    slab: &'a SpanSlab<T, FIRST>,
    idx: u32,
}

impl<T, const FIRST: usize> Drop for Unclaim<'_, T, FIRST> {
    fn drop(&mut self) {
        if let Some(s) = self.slab.slot(self.idx) {
            // SAFETY: the slot is this thread's (off the free stack, no
            // handle: readers back off) and holds the value `make` returned.
            s.value.with_mut(|p| unsafe { (*p).assume_init_drop() });
            self.slab.push(self.idx, s);
        }
    }
}

impl<T, const FIRST: usize> Drop for SpanSlab<T, FIRST> {
    fn drop(&mut self) {
        for (b, bucket) in self.buckets.iter().enumerate() {
            // Relaxed: `&mut self`, nobody else uses the slab.
            let p = bucket.load(Ordering::Relaxed);
            if p.is_null() {
                continue;
            }
            let len = FIRST << b;
            // SAFETY: made in `grow` as a boxed slice of `len` slots, and
            // nobody else uses the slab.
            let slots = unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, len)) };
            for s in slots.iter() {
                if handles(s.state.load(Ordering::Relaxed)) != 0 {
                    // SAFETY: a slot with handles holds its value.
                    s.value.with_mut(|p| unsafe { (*p).assume_init_drop() });
                }
            }
        }
    }
}

impl<T, const FIRST: usize> std::fmt::Debug for SpanSlab<T, FIRST> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanSlab").finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::span_table::Counted;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[test]
    fn handles_close_once_and_ids_do_not_come_back() {
        let drops = Arc::new(AtomicUsize::new(0));
        let t: SpanSlab<Counted, 2> = SpanSlab::new();
        let a = t.insert_with(|| Counted(1, drops.clone()), |_| ());
        assert_ne!(a, 0);
        assert_eq!(t.with(a, |c| c.0), Some(1));
        assert!(t.clone_ref(a));
        let mut closed = 0;
        assert!(!t.release(a, |_| closed += 1));
        assert_eq!(t.with(a, |c| c.0), Some(1));
        assert!(t.release(a, |c| closed += c.0));
        assert_eq!((closed, drops.load(Ordering::Relaxed)), (1, 1));
        // The id is dead: every entry point refuses it.
        assert_eq!(t.with(a, |c| c.0), None);
        assert!(!t.clone_ref(a));
        assert!(!t.release(a, |_| panic!("closed twice")));
        // The slot comes back with another generation: another id.
        let b = t.insert_with(|| Counted(2, drops.clone()), |c| c.0 += 40);
        assert_eq!(b as u32, a as u32);
        assert_ne!(b, a);
        assert_eq!(t.with(a, |c| c.0), None);
        assert_eq!(t.with(b, |c| c.0), Some(42));
        // Made-up ids: index 0 (id 0), beyond every bucket, never given.
        for id in [0, u64::from(u32::MAX), 1 << 32 | 7, 3] {
            assert_eq!(t.with(id, |c| c.0), None, "{id:#x}");
            assert!(!t.clone_ref(id));
            assert!(!t.release(id, |_| ()));
        }
        drop(t);
        assert_eq!(drops.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn grows_past_its_first_buckets_and_reuses_slots() {
        let drops = Arc::new(AtomicUsize::new(0));
        let t: SpanSlab<Counted, 4> = SpanSlab::new();
        let n = if cfg!(miri) { 40 } else { 5000 };
        let ids: Vec<u64> = (0..n)
            .map(|i| t.insert_with(|| Counted(i, drops.clone()), |_| ()))
            .collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "ids unique among open spans");
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(t.with(*id, |c| c.0), Some(i as u64));
        }
        for id in &ids[..ids.len() / 2] {
            assert!(t.release(*id, |_| ()));
        }
        // Reused: no slot index beyond what was made.
        let most = ids.iter().map(|id| *id as u32).max();
        for i in 0..n / 2 {
            let id = t.insert_with(|| Counted(i, drops.clone()), |_| ());
            assert!(Some(id as u32) <= most);
        }
        drop(t);
        assert_eq!(drops.load(Ordering::Relaxed) as u64, n + n / 2);
    }

    #[test]
    fn a_fill_that_unwinds_frees_its_slot() {
        let drops = Arc::new(AtomicUsize::new(0));
        let t: SpanSlab<Counted, 2> = SpanSlab::new();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            t.insert_with(|| Counted(4, drops.clone()), |_| panic!("a field's Debug"))
        }));
        assert!(r.is_err());
        assert_eq!(drops.load(Ordering::Relaxed), 1, "dropped once");
        let a = t.insert_with(|| Counted(5, drops.clone()), |_| ());
        assert_eq!(a as u32, 1, "the slot came back");
        assert_eq!(t.with(a, |c| c.0), Some(5));
    }

    /// Spans made, shared, read and closed on several threads: the last
    /// handle closes, on whichever thread drops it, exactly once; readers
    /// racing the closes read intact values (Miri checks the accesses).
    #[test]
    fn threads_share_and_close_while_others_read() {
        let drops = Arc::new(AtomicUsize::new(0));
        let closes = Arc::new(AtomicUsize::new(0));
        let t: Arc<SpanSlab<Counted, 2>> = Arc::new(SpanSlab::new());
        let rounds: u64 = if cfg!(miri) { 20 } else { 3000 };
        let shared: Arc<Vec<AtomicU64>> = Arc::new((0..4).map(|_| AtomicU64::new(0)).collect());
        let hs: Vec<_> = (0..3u64)
            .map(|th| {
                let (t, drops, closes, shared) =
                    (t.clone(), drops.clone(), closes.clone(), shared.clone());
                std::thread::spawn(move || {
                    for r in 0..rounds {
                        let v = th << 40 | r;
                        let id = t.insert_with(|| Counted(v, drops.clone()), |_| ());
                        // A second handle, given away to whoever comes next.
                        assert!(t.clone_ref(id));
                        let slot = &shared[(r % 4) as usize];
                        let old = slot.swap(id, Ordering::AcqRel);
                        let close = |id| {
                            t.release(id, |_| {
                                closes.fetch_add(1, Ordering::Relaxed);
                            })
                        };
                        if old != 0 {
                            // Someone else's span, perhaps closing: read it
                            // without a handle, then drop the one given.
                            let _ = t.with(old, |c| assert!(c.0 >> 40 < 3));
                            close(old);
                        }
                        close(id);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        for s in shared.iter() {
            let id = s.load(Ordering::Relaxed);
            if id != 0 {
                assert!(t.release(id, |_| {
                    closes.fetch_add(1, Ordering::Relaxed);
                }));
            }
        }
        let made = 3 * rounds as usize;
        assert_eq!(closes.load(Ordering::Relaxed), made);
        assert_eq!(drops.load(Ordering::Relaxed), made);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// The last handle dropped on one thread while another reads the span
    /// without a handle and a third makes a span (perhaps in the freed
    /// slot): the read never overlaps the drop or the new value's write.
    #[test]
    fn loom_slab_close_read_reuse() {
        loom::model(|| {
            let t: Arc<SpanSlab<u64, 2>> = Arc::new(SpanSlab::new());
            let a = t.insert_with(|| 7, |_| ());
            assert!(t.clone_ref(a));
            let t1 = t.clone();
            let closer = loom::thread::spawn(move || t1.release(a, |v| assert_eq!(*v, 7)));
            let t2 = t.clone();
            let reader = loom::thread::spawn(move || {
                if let Some(v) = t2.with(a, |v| *v) {
                    assert_eq!(v, 7);
                }
            });
            let maker = t.insert_with(|| 9, |_| ());
            let closed_here = t.release(a, |v| assert_eq!(*v, 7));
            let closed_there = closer.join().unwrap();
            reader.join().unwrap();
            assert!(closed_here ^ closed_there, "closed exactly once");
            assert_eq!(t.with(maker, |v| *v), Some(9));
            assert_eq!(t.with(a, |v| *v), None);
        });
    }
}

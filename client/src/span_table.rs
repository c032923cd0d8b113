//! A lock-free table of per-span data, keyed by `tracing` span id: what the
//! layer keeps of an open scope, found without the `Registry`.
//!
//! A lookup is a hash and one or two loads, where the `Registry`'s
//! extensions cost a slab reference (two locked instructions), a read lock
//! (two more), a map lookup, and on creation a `Box` and on close its
//! `free`. More spans at once than slots (or two whose ids collide) live in
//! the span's extensions instead: [`SpanTable::insert`] gives the data back.
//!
//! A slot's id is 0 when free, [`BUSY`] while being filled or emptied. The
//! thread that makes a span claims a slot (0 → `BUSY`), writes the data,
//! then publishes the id; `on_close` (the span's last callback) marks it
//! `BUSY`, waits for guarded readers (below), drops the data and frees it.
//! A span id is unique among the open spans of one `Registry`, and a table
//! belongs to one layer, which belongs to one subscriber (the layer is not
//! `Copy`, and a clone gets a table of its own).
//!
//! A lookup for a span the `Registry` holds open (the parent of a span
//! being made, a span whose handle the caller holds) reads without a guard:
//! it cannot close meanwhile. Any other id (entered: the `Registry` takes
//! no reference and `Dispatch::enter` accepts any id; an event's explicit
//! parent, `Dispatch::record`, a key from the thread's scope stack) may
//! name a span closing on another thread: [`SpanTable::with_guarded`]
//! counts itself a reader so the close waits for it.
//!
//! The close and the guarded readers meet on one atomic, the slot's reader
//! count (a `CLOSING` bit and the number of readers in the slot), so the
//! protocol needs only acquire/release: no store-then-load (Dekker) pair
//! that only `SeqCst` would order.
//!
//! The atomics and the data cell come from [`crate::sync`], so the `loom`
//! tests below check these orderings and that no read of a slot's data
//! races with its drop or its next occupant's write.

use std::mem::MaybeUninit;

use crate::sync::{AtomicU32, AtomicU64, Ordering, UnsafeCell};

/// A slot being filled or emptied (never a `Registry` id: `insert` refuses
/// it, and a slab cannot reach it).
const BUSY: u64 = u64::MAX;

/// The bit of a slot's reader count that says its span is closing: new
/// guarded readers back off (see [`SpanTable::remove`]).
const CLOSING: u32 = 1 << 31;

/// A slot's guarded readers and its close, meeting on one atomic (the
/// protocol in the module docs; [`crate::span_slab`] uses it too).
pub(crate) struct Readers(AtomicU32);

impl Readers {
    pub(crate) fn new() -> Self {
        Readers(AtomicU32::new(0))
    }

    /// Count a reader in; false (and counted out again) when the slot is
    /// closing. All on one location, so its modification order decides,
    /// with no store-load (Dekker) pattern: a close whose `CLOSING` comes
    /// after this increment counts this reader and waits for it; one whose
    /// `CLOSING` came before is seen here. Acquire: if this increment comes
    /// after a close's clearing of `CLOSING` (a Release RMW), everything
    /// that close did before (the drop, the slot's new id or generation)
    /// happens-before the caller's checks of the slot.
    #[inline(always)]
    pub(crate) fn enter(&self) -> bool {
        if self.0.fetch_add(1, Ordering::Acquire) & CLOSING == 0 {
            return true;
        }
        // Relaxed: this reader read nothing of the slot's data.
        self.0.fetch_sub(1, Ordering::Relaxed);
        false
    }

    /// Count a reader out.
    #[inline(always)]
    pub(crate) fn leave(&self) {
        // Release: this reader's reads happen-before the drop of a close
        // that sees the count fall.
        self.0.fetch_sub(1, Ordering::Release);
    }

    /// Mark the slot closing and wait until the readers in it left: then
    /// nobody reads its data until [`Readers::closed`].
    pub(crate) fn close(&self) {
        // Acquire: a reader counted before this that has already left
        // (Release decrement) read the data before the caller's drop.
        // An add, not an or: the bit is clear here (only a close sets it,
        // and the last one cleared it before the slot was reused), and an
        // add is one `lock xadd` where an or whose result is read is a
        // compare-exchange loop.
        let mut n = self.0.fetch_add(CLOSING, Ordering::Acquire);
        // A reader is in for a few hundred instructions; one that was
        // preempted in there gets the core back instead of a spin.
        let mut spins = 0u32;
        while n & !CLOSING != 0 {
            spins += 1;
            if spins < 64 {
                crate::sync::spin_loop();
            } else {
                crate::sync::yield_now();
            }
            // Acquire pairs with the readers' Release decrements: their
            // reads happen-before the caller's drop.
            n = self.0.load(Ordering::Acquire);
        }
    }

    /// The close is done: a reader whose increment comes after this sees
    /// what the close did before it (Release; see [`Readers::enter`]).
    pub(crate) fn closed(&self) {
        self.0.fetch_and(!CLOSING, Ordering::Release);
    }
}

/// `SLOTS` (a power of two) slots of `T`.
pub(crate) struct SpanTable<T, const SLOTS: usize> {
    /// An array, not a slice: its length is known where a hash indexes
    /// it, so the index needs no bounds check.
    slots: Box<[Slot<T>; SLOTS]>,
}

struct Slot<T> {
    id: AtomicU64,
    /// Guarded readers in this slot now (see `with_guarded`).
    readers: Readers,
    data: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: `data` is written only by the thread that claimed the slot,
// before the id is published, and dropped only by `remove` once no guarded
// reader is in it (the other readers hold the span open); between those it
// is only read, from any thread: so `T` must be `Sync` (shared reads) and
// `Send` (dropped by whichever thread closes the span).
unsafe impl<T: Send + Sync> Sync for Slot<T> {}

impl<T, const SLOTS: usize> SpanTable<T, SLOTS> {
    const BITS: u32 = {
        assert!(SLOTS.is_power_of_two() && SLOTS >= 2);
        SLOTS.trailing_zeros()
    };

    #[cfg(not(loom))]
    pub(crate) fn new() -> Self {
        let _ = Self::BITS;
        SpanTable {
            // Zeroed pages: a free slot is all zeros, and untouched slots
            // cost no memory.
            // SAFETY: all-zero bytes are a valid `Slot` (id 0 = free, no
            // readers; the cell is `repr(transparent)` over a
            // `MaybeUninit`, which may hold any bytes).
            slots: unsafe { Box::<[Slot<T>; SLOTS]>::new_zeroed().assume_init() },
        }
    }

    /// Loom's atomics are not plain memory: made one by one.
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        let _ = Self::BITS;
        let slots: Box<[Slot<T>]> = (0..SLOTS)
            .map(|_| Slot {
                id: AtomicU64::new(0),
                readers: Readers::new(),
                data: UnsafeCell::new(MaybeUninit::uninit()),
            })
            .collect();
        SpanTable {
            slots: slots.try_into().ok().expect("SLOTS slots"),
        }
    }

    /// The two slots `id` may live in.
    #[inline]
    fn slots_of(&self, id: u64) -> [&Slot<T>; 2] {
        // Fibonacci hashing: span ids of one thread are near each other.
        let i = (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (u64::BITS - Self::BITS)) as usize;
        [&self.slots[i % SLOTS], &self.slots[(i ^ 1) % SLOTS]]
    }

    /// Keep `data` for the new span `id` (which nobody else has yet);
    /// gives it back when both its slots are taken.
    #[cfg(test)]
    pub(crate) fn insert(&self, id: u64, data: T) -> Option<T> {
        self.insert_with(id, || data, |_| ())
    }

    /// [`SpanTable::insert`] of the value `make` returns, completed by
    /// `fill`, both where it stays once its slot is claimed (not built
    /// elsewhere and moved in). `make` must not panic (the slot would stay
    /// taken for good); `fill` may: the value is dropped and the slot freed.
    #[inline]
    pub(crate) fn insert_with(
        &self,
        id: u64,
        make: impl FnOnce() -> T,
        fill: impl FnOnce(&mut T),
    ) -> Option<T> {
        let claimed = if id == BUSY || id == 0 {
            None
        } else {
            // Acquire pairs with the Release that freed the slot in
            // `remove`: the last occupant's drop happens-before this write.
            self.slots_of(id).into_iter().find(|s| {
                s.id.compare_exchange(0, BUSY, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            })
        };
        let Some(s) = claimed else {
            let mut data = make();
            fill(&mut data);
            return Some(data);
        };
        // SAFETY: the slot is ours (claimed above; readers compare ids and
        // skip `BUSY`).
        let data: *mut T = s.data.with_mut(|p| unsafe { (*p).write(make()) });
        let undo = Unclaim(s);
        // SAFETY: written just above; nobody else reaches it before the id
        // is published below.
        fill(unsafe { &mut *data });
        std::mem::forget(undo);
        // Release pairs with the Acquire loads in `get` and `with_guarded`:
        // who sees the id sees the data.
        s.id.store(id, Ordering::Release);
        None
    }

    /// The data of span `id`, if it is in the table.
    ///
    /// # Safety
    ///
    /// The `Registry` must hold the span open while the reference lives
    /// (see the module docs), and this must not be its `on_close`.
    #[inline]
    pub(crate) unsafe fn get(&self, id: u64) -> Option<&T> {
        for s in self.slots_of(id) {
            // Acquire pairs with the Release publishing the id in `insert`.
            if s.id.load(Ordering::Acquire) == id {
                // SAFETY: written before the id was published; dropped only
                // when the span closes, which the contract rules out.
                return Some(s.data.with(|p| unsafe { (*p).assume_init_ref() }));
            }
        }
        None
    }

    /// `f` on the data of span `id` if it is in the table, for an id that
    /// may name a span closing meanwhile.
    #[inline]
    pub(crate) fn with_guarded<R>(&self, id: u64, f: impl FnOnce(&T) -> R) -> Option<R> {
        let s = self.slots_of(id).into_iter().find(|s| {
            if !s.readers.enter() {
                return false;
            }
            // Acquire pairs with the Release publishing the id in `insert`;
            // after a close, `enter` saw its `BUSY` (or the slot's next id).
            let here = s.id.load(Ordering::Acquire) == id;
            if !here {
                s.readers.leave();
            }
            here
        })?;
        // SAFETY: the id is published (data written), and `remove` drops it
        // only once the count of readers is back to 0.
        let r = s.data.with(|p| f(unsafe { (*p).assume_init_ref() }));
        s.readers.leave();
        Some(r)
    }

    /// Take the data of span `id` out (it closes): `f` sees it last.
    /// Returns false when it is not in the table.
    ///
    /// # Safety
    ///
    /// Only from the span's `on_close`.
    pub(crate) unsafe fn remove(&self, id: u64, f: impl FnOnce(&T)) -> bool {
        for s in self.slots_of(id) {
            // Relaxed: this thread closes the span, so it saw its creation
            // (through the `Registry`); only `remove` changes a published id.
            if s.id.load(Ordering::Relaxed) != id {
                continue;
            }
            // SAFETY: the slot holds this span's data (the id says so).
            s.data.with(|p| f(unsafe { (*p).assume_init_ref() }));
            // Unguarded readers (`get`) need the span open, so none is left;
            // new guarded ones see `BUSY` or `CLOSING` from here on.
            // Relaxed: ordered before the clearing of `CLOSING` (Release)
            // below, which is what a later reader synchronises with.
            s.id.store(BUSY, Ordering::Relaxed);
            s.readers.close();
            // SAFETY: no reader is in the slot (guarded ones left and new
            // ones back off on `CLOSING`; the others need the span open).
            s.data.with_mut(|p| unsafe { (*p).assume_init_drop() });
            // Before the id is freed, so a new span's readers never see a
            // stale `CLOSING`.
            s.readers.closed();
            // Release pairs with the Acquire claim in `insert`.
            s.id.store(0, Ordering::Release);
            return true;
        }
        false
    }
}

/// Frees a slot whose value's `fill` unwound (see
/// [`SpanTable::insert_with`]): drops the value, gives the slot back.
struct Unclaim<'a, T>(&'a Slot<T>);

impl<T> Drop for Unclaim<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the slot is claimed by this thread (`BUSY`: no reader
        // looks at it) and holds the value `make` returned.
        self.0.data.with_mut(|p| unsafe { (*p).assume_init_drop() });
        // Release pairs with the Acquire claim in `insert_with`.
        self.0.id.store(0, Ordering::Release);
    }
}

impl<T, const SLOTS: usize> Drop for SpanTable<T, SLOTS> {
    fn drop(&mut self) {
        for s in self.slots.iter() {
            // Relaxed: `&mut self`, nobody else uses the table.
            let id = s.id.load(Ordering::Relaxed);
            if id != 0 && id != BUSY {
                // SAFETY: a slot with an id holds initialised data, and
                // `&mut self` means nobody else uses the table.
                s.data.with_mut(|p| unsafe { (*p).assume_init_drop() });
            }
        }
    }
}

impl<T, const SLOTS: usize> std::fmt::Debug for SpanTable<T, SLOTS> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanTable").field("slots", &SLOTS).finish()
    }
}

/// Counts its drops, so a test sees each value dropped exactly once (the
/// span table's and the span slab's tests).
#[cfg(all(test, not(loom)))]
pub(crate) struct Counted(pub u64, pub std::sync::Arc<std::sync::atomic::AtomicUsize>);

#[cfg(all(test, not(loom)))]
impl Drop for Counted {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[test]
    fn insert_get_remove() {
        let drops = Arc::new(AtomicUsize::new(0));
        let t: SpanTable<Counted, 8> = SpanTable::new();
        assert!(t.insert(7, Counted(70, drops.clone())).is_none());
        // SAFETY: span 7 is open (never removed before this).
        assert_eq!(unsafe { t.get(7) }.map(|c| c.0), Some(70));
        assert_eq!(t.with_guarded(7, |c| c.0), Some(70));
        assert_eq!(t.with_guarded(8, |c| c.0), None);
        let mut seen = 0;
        // SAFETY: this is span 7's close.
        assert!(unsafe { t.remove(7, |c| seen = c.0) });
        assert_eq!(seen, 70);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        // SAFETY: as above; 7 is gone.
        assert!(unsafe { t.get(7) }.is_none());
        // SAFETY: as above.
        let again = unsafe { t.remove(7, |_| ()) };
        assert!(!again);
    }

    #[test]
    fn full_slots_give_the_data_back_and_reserved_ids_are_refused() {
        let drops = Arc::new(AtomicUsize::new(0));
        let t: SpanTable<Counted, 2> = SpanTable::new();
        // Two slots: both ids hash to the pair {0, 1}.
        assert!(t.insert(1, Counted(1, drops.clone())).is_none());
        assert!(t.insert(2, Counted(2, drops.clone())).is_none());
        let back = t.insert(3, Counted(3, drops.clone()));
        assert_eq!(back.as_ref().map(|c| c.0), Some(3));
        drop(back);
        assert!(t.insert(BUSY, Counted(0, drops.clone())).is_some());
        assert!(t.insert(0, Counted(0, drops.clone())).is_some());
        assert_eq!(drops.load(Ordering::Relaxed), 3);
        // The table drops what it still holds.
        drop(t);
        assert_eq!(drops.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn a_fill_that_unwinds_frees_its_slot() {
        let drops = Arc::new(AtomicUsize::new(0));
        let t: SpanTable<Counted, 2> = SpanTable::new();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            t.insert_with(
                4,
                || Counted(4, drops.clone()),
                |_| panic!("a field's Debug"),
            )
        }));
        assert!(r.is_err());
        assert_eq!(drops.load(Ordering::Relaxed), 1, "dropped once");
        // SAFETY: span 4 never made it into the table.
        assert!(unsafe { t.get(4) }.is_none());
        // Both slots are free again.
        assert!(t.insert(1, Counted(1, drops.clone())).is_none());
        assert!(t.insert(2, Counted(2, drops.clone())).is_none());
        // A fill that returns completes the value in place.
        let t2: SpanTable<u64, 4> = SpanTable::new();
        assert!(t2.insert_with(9, || 1, |v| *v += 89).is_none());
        assert_eq!(t2.with_guarded(9, |v| *v), Some(90));
    }

    /// Spans made, read and closed on several threads, readers racing the
    /// closes with ids that may be closing: every value is read intact and
    /// dropped exactly once (Miri checks the accesses).
    #[test]
    fn threads_close_while_others_read() {
        let drops = Arc::new(AtomicUsize::new(0));
        let t: Arc<SpanTable<Counted, 16>> = Arc::new(SpanTable::new());
        let rounds: u64 = if cfg!(miri) { 20 } else { 2000 };
        let hs: Vec<_> = (0..3u64)
            .map(|th| {
                let t = t.clone();
                let drops = drops.clone();
                std::thread::spawn(move || {
                    for r in 0..rounds {
                        let id = 1 + th * 1_000_000 + r;
                        let kept = t.insert(id, Counted(id * 3, drops.clone())).is_none();
                        // Another thread's span, perhaps closing now.
                        let other = 1 + ((th + 1) % 3) * 1_000_000 + r;
                        if let Some(v) = t.with_guarded(other, |c| c.0) {
                            assert_eq!(v, other * 3);
                        }
                        if kept {
                            // SAFETY: this thread made span `id` and this is
                            // its close.
                            assert!(unsafe { t.remove(id, |c| assert_eq!(c.0, id * 3)) });
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(drops.load(Ordering::Relaxed) as u64, 3 * rounds);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// A reader with an id that may be closing, against the close: the
    /// reader sees the data whole or not at all, never after its drop
    /// (loom's cell reports a read racing the drop).
    #[test]
    fn loom_guarded_read_races_close() {
        loom::model(|| {
            let t: Arc<SpanTable<u64, 2>> = Arc::new(SpanTable::new());
            assert!(t.insert(5, 50).is_none());
            let r = {
                let t = t.clone();
                loom::thread::spawn(move || t.with_guarded(5, |v| *v))
            };
            // SAFETY: this is span 5's close, on the thread that made it.
            assert!(unsafe { t.remove(5, |v| assert_eq!(*v, 50)) });
            let seen = r.join().unwrap();
            assert!(seen.is_none() || seen == Some(50));
        });
    }

    /// A slot freed by one span's close and claimed by a new span on
    /// another thread, while a third reads the closing span: the free
    /// (Release) orders the drop before the new occupant's write, and the
    /// publish (Release) orders that write before the new span's reads.
    #[test]
    fn loom_close_and_reuse() {
        loom::model(|| {
            let t: Arc<SpanTable<u64, 2>> = Arc::new(SpanTable::new());
            // Both slots taken: a new span gets one only once 9 is freed.
            assert!(t.insert(9, 90).is_none());
            assert!(t.insert(7, 70).is_none());
            let maker = {
                let t = t.clone();
                loom::thread::spawn(move || {
                    if t.insert(11, 110).is_some() {
                        return None;
                    }
                    let seen = t.with_guarded(11, |v| *v);
                    // SAFETY: span 11's close, on the thread that made it.
                    assert!(unsafe { t.remove(11, |v| assert_eq!(*v, 110)) });
                    seen
                })
            };
            let reader = {
                let t = t.clone();
                loom::thread::spawn(move || t.with_guarded(9, |v| *v))
            };
            // SAFETY: span 9's close.
            assert!(unsafe { t.remove(9, |v| assert_eq!(*v, 90)) });
            let made = maker.join().unwrap();
            assert!(made.is_none() || made == Some(110));
            let seen = reader.join().unwrap();
            assert!(seen.is_none() || seen == Some(90));
        });
    }
}

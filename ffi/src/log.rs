//! Events: `distlog_log` (runtime strings) and the static call sites behind
//! the `DISTLOG_EVENT` / `DISTLOG_INFO`... macros.
//!
//! A C macro expansion owns one `static distlog_callsite`. Its first use
//! registers it with the client (keyed by its address) and caches the id in
//! the struct itself. `DISTLOG_EVENT`'s (a `distlog_event_callsite`) also
//! registers the field keys of its first call: later calls send the values
//! of the same keys by position, without the keys. A key is the same when
//! it has the same text; a literal (a key the first call passed from
//! read-only memory of the call site's own object, see `rodata.rs`) is also
//! the same by its address alone, since its text cannot change while the
//! call site exists. A printf macro's site
//! (`DISTLOG_CALLSITE_FORMATTED`) registers one field, `message`: each
//! event's formatted text goes by position too, its length from `snprintf`
//! (`distlog_callsite_log_text`).
//!
//! `distlog_log` has no static to cache in: a small per-thread cache maps
//! its target's text to the same three things (verdict, id, keys).
//!
//! The directives' verdict is cached in the call site together with the
//! filter epoch it was computed under ([`distlog::raw::filter_epoch`]): the
//! sidecar may change the directives at any time, which moves the epoch and
//! makes every call site ask again once. A call site the directives disable
//! can still be enabled for one request (a boosted scope), so that case
//! asks [`distlog::raw::boosted`], a thread-local look at the current scope.

use std::borrow::Cow;
use std::cell::RefCell;
use std::ffi::{c_void, CStr, CString};
use std::os::raw::{c_char, c_int};
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use distlog::wire::{compact, CallsiteKind, Level, Value};

use crate::conv::{self, distlog_field, distlog_kv, Keys};
use crate::init::{level_on, level_on_raw};
use crate::panic::ffi_panic_boundary;

/// `flags` bit: `message` is a printf template; the text is formatted by
/// the macro and passed to `distlog_callsite_log`.
pub const DISTLOG_CALLSITE_FORMATTED: u32 = 1;

/// The static part of a C call site, one per macro expansion (see the
/// header's `distlog_callsite`). C initialises it statically and never
/// writes it; the library writes only the two atomics.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug)]
pub struct distlog_callsite {
    /// Call-site id + 1; 0 = not registered yet. Written by the library.
    id_plus_one: AtomicU32,
    /// Cached verdict of the directives: `(epoch << 1) | enabled`, 0 =
    /// never computed. Written by the library.
    interest: AtomicU32,
    /// A `distlog_level` number.
    pub level: c_int,
    /// `DISTLOG_CALLSITE_*` bits.
    pub flags: u32,
    /// `__LINE__`.
    pub line: u32,
    /// The target (a string literal).
    pub target: *const c_char,
    /// The message, or the printf template when `FORMATTED`.
    pub message: *const c_char,
    /// `__FILE__`.
    pub file: *const c_char,
}

/// Whether a call site at `level` is enabled, its directives' verdict
/// cached in `interest` as `(epoch << 1) | enabled` (0 = never computed):
/// `directives_allow` runs only when the directives changed since (the
/// filter epoch moved). A site the directives disable can still be enabled
/// for one request (a boosted scope, a thread-local look).
#[inline]
fn cached_verdict(
    interest: &AtomicU32,
    level: Level,
    directives_allow: impl FnOnce() -> bool,
) -> bool {
    let epoch = epoch_tag();
    // Relaxed: the cache only ever holds a verdict computed under the
    // epoch stored with it; a stale read just recomputes.
    let cached = interest.load(Ordering::Relaxed);
    let by_directives = if cached & !1 == epoch {
        cached & 1 == 1
    } else {
        let on = directives_allow();
        // Relaxed: see above.
        interest.store(epoch | u32::from(on), Ordering::Relaxed);
        on
    };
    by_directives || distlog::raw::boosted(level)
}

/// The filter epoch as `interest` stores it: its low 31 bits shifted left
/// (it starts at 1, so 0 = "not computed" until it wraps after 2^31
/// directive changes).
#[inline(always)]
fn epoch_tag() -> u32 {
    (distlog::raw::filter_epoch() as u32) << 1
}

impl distlog_callsite {
    /// Whether the call site is on by the verdict it cached under the
    /// current filter epoch, and by the global level gate (which also
    /// closes at shutdown). Only a call site whose level was valid ever
    /// cached a verdict, so the level needs no conversion here; `false`
    /// (ask [`Self::enabled`]) for anything else.
    #[inline(always)]
    fn cached_on(&self) -> bool {
        self.cached_verdict_on() && level_on_raw(self.level)
    }

    /// [`Self::cached_on`] without the global level gate, for a caller that
    /// has just checked it (the macros: `DISTLOG_LEVEL_ON`).
    #[inline(always)]
    fn cached_verdict_on(&self) -> bool {
        // Relaxed: as in `cached_verdict`.
        self.interest.load(Ordering::Relaxed) == epoch_tag() | 1
    }

    /// The level and whether the filter lets this call site through.
    ///
    /// # Safety
    ///
    /// The string fields are NULL or NUL-terminated strings living for the
    /// program (string literals).
    #[inline]
    unsafe fn enabled(&self) -> Option<Level> {
        let level = conv::level(self.level)?;
        if !level_on(level) {
            return None;
        }
        // SAFETY: forwarded from our caller.
        unsafe { self.evaluate(level) }.then_some(level)
    }

    /// # Safety
    ///
    /// As [`Self::enabled`].
    #[inline]
    unsafe fn evaluate(&self, level: Level) -> bool {
        // SAFETY: forwarded from our caller.
        cached_verdict(&self.interest, level, || unsafe {
            self.directives_allow(level)
        })
    }

    /// # Safety
    ///
    /// As [`Self::enabled`].
    #[cold]
    #[inline(never)]
    unsafe fn directives_allow(&self, level: Level) -> bool {
        // SAFETY: forwarded from our caller.
        match unsafe { conv::cstr(self.target) } {
            Some(t) => distlog::raw::enabled_by_directives(level, &t),
            None => false,
        }
    }

    /// Whether `message` is a printf template (each event carries its
    /// text, as field 0 of the call site).
    #[inline]
    fn formatted(&self) -> bool {
        self.flags & DISTLOG_CALLSITE_FORMATTED != 0
    }

    /// The call-site id, registering on first use.
    ///
    /// # Safety
    ///
    /// As [`Self::enabled`]; `self` lives for the program (a `static`).
    #[inline]
    unsafe fn id(&self, level: Level) -> Option<u32> {
        // Acquire pairs with the Release store below (the id itself is all
        // that is published; the table entry is ordered by the client).
        match self.id_plus_one.load(Ordering::Acquire) {
            0 => {
                // A printf site's text goes by position: index 0 of its
                // field list (as `distlog_log`'s message).
                let fields: &[&str] = if self.formatted() { &["message"] } else { &[] };
                // SAFETY: forwarded from our caller.
                let id = unsafe { self.register(level, fields) }?;
                // Release pairs with the Acquire load above.
                self.id_plus_one
                    .store(id.wrapping_add(1), Ordering::Release);
                Some(id)
            }
            n => Some(n - 1),
        }
    }

    /// # Safety
    ///
    /// As [`Self::id`].
    #[cold]
    #[inline(never)]
    unsafe fn register(&self, level: Level, fields: &[&str]) -> Option<u32> {
        // SAFETY: NULL or a literal, forwarded from our caller.
        let target = unsafe { conv::cstr(self.target) }?;
        // SAFETY: as above.
        let file = unsafe { conv::cstr(self.file) };
        // SAFETY: as above.
        let message = unsafe { conv::cstr(self.message) };
        // Named as `tracing` names events, unless the site is a template.
        let name: Cow<'_, str> = match (&message, self.formatted()) {
            (Some(m), true) => Cow::Borrowed(m),
            _ => Cow::Owned(format!(
                "event {}:{}",
                file.as_deref().unwrap_or("?"),
                self.line
            )),
        };
        distlog::raw::register_static(
            self as *const Self as usize,
            CallsiteKind::Event,
            level,
            &target,
            &name,
            file.as_deref(),
            file.as_ref().map(|_| self.line),
            fields,
            // A literal message belongs to the call site; a printf template
            // is the site's name and each event carries its text.
            if self.formatted() {
                None
            } else {
                message.as_deref()
            },
        )
    }
}

/// The static part of a `DISTLOG_EVENT` call site (the header's
/// `distlog_event_callsite`): a [`distlog_callsite`] and the field keys of
/// its first call. Those keys become the field list of the call site's
/// definition, so a later call whose key at position `i` is the same text
/// sends its value as `Field::Idx(i)` (no key in the record); any other key
/// goes by name. A separate type (not a member added to
/// `distlog_callsite`) so that programs built against the old header,
/// whose call sites are smaller, keep calling the old functions safely.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug)]
pub struct distlog_event_callsite {
    /// The call site.
    pub cs: distlog_callsite,
    /// The first call's keys (a leaked `Box<Keys>`, never freed: the call
    /// site is a static); NULL = not registered yet. Written by the
    /// library, once.
    keys: AtomicPtr<Keys>,
}

impl distlog_event_callsite {
    /// The call-site id and its registered keys, registering on first use.
    ///
    /// # Safety
    ///
    /// As [`distlog_callsite::id`]; `fields` as for [`conv::encode_fields`].
    #[inline]
    unsafe fn id_keys(&self, level: Level, fields: &[distlog_field]) -> Option<(u32, &Keys)> {
        match self.registered() {
            Some(x) => Some(x),
            // SAFETY: forwarded from our caller.
            None => unsafe { self.register_keys(level, fields) },
        }
    }

    /// The call-site id and its registered keys, once the first call
    /// registered them.
    #[inline(always)]
    fn registered(&self) -> Option<(u32, &Keys)> {
        // Acquire pairs with the Release store of the id in
        // `register_keys`, which comes after the keys were published.
        let id = self.cs.id_plus_one.load(Ordering::Acquire);
        // Acquire pairs with the Release half of the compare-exchange in
        // `register_keys` (the `Keys` it points to is complete).
        let keys = self.keys.load(Ordering::Acquire);
        if id == 0 || keys.is_null() {
            return None;
        }
        // SAFETY: non-null, a leaked Box published once and never freed.
        Some((id - 1, unsafe { &*keys }))
    }

    /// # Safety
    ///
    /// As [`Self::id_keys`].
    #[cold]
    #[inline(never)]
    unsafe fn register_keys(&self, level: Level, fields: &[distlog_field]) -> Option<(u32, &Keys)> {
        // SAFETY: the keys are NULL or strings valid for the call (caller).
        let mine = Box::into_raw(Box::new(unsafe {
            Keys::of(fields, Some(self as *const Self as usize))
        }));
        // Threads racing on a first call agree on the first keys published,
        // so the definition's names are the ones every caller compares to.
        // AcqRel: the Release half publishes our `Keys`; Acquire (also on
        // failure) pairs with the winner's Release and lets us read its.
        let keys = match self.keys.compare_exchange(
            std::ptr::null_mut(),
            mine,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => mine,
            Err(won) => {
                // SAFETY: `mine` came from Box::into_raw above and was not
                // published.
                drop(unsafe { Box::from_raw(mine) });
                won
            }
        };
        // SAFETY: non-null, published once and never freed.
        let keys = unsafe { &*keys };
        let names = keys.names();
        let names: Vec<&str> = names.iter().map(|n| &**n).collect();
        // SAFETY: as `distlog_callsite::id`, forwarded from our caller.
        let id = unsafe { self.cs.register(level, &names) }?;
        // Release pairs with the Acquire load in `id_keys`.
        self.cs
            .id_plus_one
            .store(id.wrapping_add(1), Ordering::Release);
        Some((id, keys))
    }
}

/// Write an event of the `DISTLOG_EVENT` call site `cs` with the call
/// site's own message (what the macro calls). Bad arguments (NULL `cs`,
/// `fields` NULL with `nfields > 0`, `nfields > DISTLOG_MAX_FIELDS`) drop
/// the record.
///
/// # Safety
///
/// `cs` is NULL or points to a `distlog_event_callsite` initialised with
/// `DISTLOG_EVENT_CALLSITE_INIT` that lives for the program (a `static`);
/// `fields` is NULL or points to `nfields` fields whose strings are valid
/// for the call.
#[no_mangle]
pub unsafe extern "C" fn distlog_event_callsite_log(
    cs: *const distlog_event_callsite,
    fields: *const distlog_field,
    nfields: usize,
) {
    ffi_panic_boundary! {
        // SAFETY: forwarded (contract); no cache.
        unsafe { event_fields::<false>(std::ptr::null_mut(), cs, fields, nfields) }
    }
}

/// [`distlog_event_callsite_log`] with the call site's per-thread cache of
/// the library's thread state (what `DISTLOG_EVENT` calls where the
/// compiler has thread-locals and the field count is not a small
/// constant), as [`distlog_event_kv_tl`]: the caller has checked the
/// global level gate just before, so the common case does not ask it
/// again.
///
/// # Safety
///
/// As [`distlog_event_callsite_log`]; `tl` as for [`distlog_event_kv_tl`].
#[no_mangle]
pub unsafe extern "C" fn distlog_event_callsite_log_tl(
    tl: *mut *const c_void,
    cs: *const distlog_event_callsite,
    fields: *const distlog_field,
    nfields: usize,
) {
    ffi_panic_boundary! {
        // SAFETY: forwarded (contract).
        unsafe { event_fields::<true>(tl, cs, fields, nfields) }
    }
}

/// The start of both events' common case: the call site, its `n` fields
/// (`None`: a NULL call site or too many fields, the event dropped) and
/// whether the site's cached verdict says on. With `CACHED` the verdict
/// alone: the macro that passes a cache has just checked the level gate.
///
/// # Safety
///
/// `cs` NULL or a static call site, `p` NULL or `n` fields (as for
/// [`distlog_event_callsite_log`] and [`distlog_event_kv`]).
#[inline(always)]
unsafe fn site_and_fields<'a, T, const CACHED: bool>(
    cs: *const distlog_event_callsite,
    p: *const T,
    n: usize,
) -> Option<(&'a distlog_event_callsite, &'a [T], bool)> {
    // SAFETY: NULL or a valid static call site, per the contract.
    let site = unsafe { cs.as_ref() }?;
    // SAFETY: NULL or `n` fields, per the contract.
    let fields = unsafe { conv::fields_slice(p, n) }.ok()?;
    let on = if CACHED {
        site.cs.cached_verdict_on()
    } else {
        site.cs.cached_on()
    };
    Some((site, fields, on))
}

/// The two entry points of `DISTLOG_EVENT`'s event: `CACHED`, with the
/// caller's cache `tl` (as [`event_kv`]).
///
/// # Safety
///
/// As [`distlog_event_callsite_log_tl`].
#[inline(always)]
unsafe fn event_fields<const CACHED: bool>(
    tl: *mut *const c_void,
    cs: *const distlog_event_callsite,
    fields: *const distlog_field,
    nfields: usize,
) {
    // SAFETY: forwarded (contract).
    let Some((site, fields, on)) = (unsafe { site_and_fields::<_, CACHED>(cs, fields, nfields) })
    else {
        return;
    };
    // The common case, as in `event_kv`: on by its cached verdict and
    // registered; anything else asks the filter in full.
    if on {
        if let Some((id, keys)) = site.registered() {
            let state = if CACHED {
                // SAFETY: the caller's cache (contract).
                unsafe { cached_state(tl) }
            } else {
                distlog::raw::thread_state()
            };
            // The clock read where the write needs it (as before): read
            // first, as `event_kv` does, it measured slower here (round 5).
            let write = || {
                // SAFETY: `state` is non-null (checked below) and this
                // thread's (`cached_state`, `thread_state`); the strings
                // are valid for the call (contract).
                unsafe {
                    distlog::raw::try_event_compact_in(
                        state,
                        id,
                        distlog::raw::now,
                        // Inlined (as in `event_kv`): else called with
                        // its writer in memory.
                        #[inline(always)]
                        |w| conv::compact_fields(w, keys, fields),
                    )
                }
            };
            if !state.is_null() && write() {
                return;
            }
        }
    }
    // SAFETY: fields valid for the call, the caller's cache and a static
    // call site (contract).
    unsafe { fields_general::<CACHED>(tl, site, fields) };
}

/// [`event_fields`] when the call site is not on by its cached verdict or
/// not registered yet: the whole filter, then the write.
///
/// # Safety
///
/// As [`log_fields`].
#[cold]
#[inline(never)]
unsafe fn fields_general<const CACHED: bool>(
    tl: *mut *const c_void,
    site: &distlog_event_callsite,
    fields: &[distlog_field],
) {
    // SAFETY: the string fields are literals (our caller).
    let Some(level) = (unsafe { site.cs.enabled() }) else {
        return;
    };
    // SAFETY: forwarded from our caller.
    unsafe { log_fields::<CACHED>(tl, site, level, fields) };
}

/// An event of the enabled `DISTLOG_EVENT` call site `site` at `level`.
///
/// # Safety
///
/// `site` is a static call site (as for [`distlog_event_callsite_log`]);
/// the fields' strings are valid for the call.
#[inline(always)]
unsafe fn log_fields<const CACHED: bool>(
    tl: *mut *const c_void,
    site: &distlog_event_callsite,
    level: Level,
    fields: &[distlog_field],
) {
    // SAFETY: forwarded from our caller.
    let Some((id, keys)) = (unsafe { site.id_keys(level, fields) }) else {
        return;
    };
    // SAFETY: the fields' strings are valid for the call.
    let postcard =
        |enc: &mut distlog::wire::Encoder<'_>| unsafe { conv::encode_fields(enc, keys, 0, fields) };
    if CACHED {
        // SAFETY: the caller's cache (forwarded), filled on this thread;
        // the fields' strings are valid for the call.
        unsafe {
            distlog::raw::event_compact_in(
                cached_state(tl),
                id,
                // Inlined (as the write path's closure, see
                // `event_compact`): else called with its writer in memory.
                #[inline(always)]
                |w| conv::compact_fields(w, keys, fields),
                postcard,
            )
        };
    } else {
        distlog::raw::event_compact(
            id,
            // As above.
            #[inline(always)]
            // SAFETY: the fields' strings are valid for the call.
            |w| unsafe { conv::compact_fields(w, keys, fields) },
            postcard,
        );
    }
}

/// This thread's state from the caller's cache `tl` (NULL: no cache),
/// filled on the thread's first call; null when the thread's state is gone
/// (it is exiting), which is not cached.
///
/// # Safety
///
/// `tl` is NULL or points to a thread-local of the calling thread that
/// holds NULL or what this function stored there.
#[inline(always)]
unsafe fn cached_state(tl: *mut *const c_void) -> *const () {
    if tl.is_null() {
        return distlog::raw::thread_state();
    }
    // SAFETY: the caller's thread-local (our caller).
    let cached = unsafe { *tl };
    if !cached.is_null() {
        return cached.cast();
    }
    let state = distlog::raw::thread_state();
    // SAFETY: as above.
    unsafe { *tl = state.cast() };
    state
}

/// Write an event of the `DISTLOG_EVENT_KV` call site `cs` with the call
/// site's own message (what the macro calls): as
/// [`distlog_event_callsite_log`], each string with its length. Bad
/// arguments (NULL `cs`, `kv` NULL with `nkv > 0`,
/// `nkv > DISTLOG_MAX_FIELDS`) drop the record.
///
/// # Safety
///
/// `cs` as for [`distlog_event_callsite_log`]; `kv` is NULL or points to
/// `nkv` fields whose strings are valid for the call, each
/// `DISTLOG_FIELD_TYPE_STR` one NULL or `len` bytes followed by a NUL.
#[no_mangle]
pub unsafe extern "C" fn distlog_event_kv(
    cs: *const distlog_event_callsite,
    kv: *const distlog_kv,
    nkv: usize,
) {
    ffi_panic_boundary! {
        // SAFETY: forwarded (contract); no cache.
        unsafe { event_kv::<false>(std::ptr::null_mut(), cs, kv, nkv) }
    }
}

/// [`distlog_event_kv`] with the call site's per-thread cache of the
/// library's thread state (what `DISTLOG_EVENT_KV` calls): `tl` points to
/// a thread-local pointer of the caller's, NULL until the first call of
/// each thread, which only the library writes. A NULL `tl` is no cache.
///
/// The caller (the macro) has checked the global level gate for the call
/// site's level (`DISTLOG_LEVEL_ON`) just before: the common case does not
/// ask it again.
///
/// # Safety
///
/// As [`distlog_event_kv`]; `tl` is NULL or points to a thread-local of
/// the calling thread that holds NULL or what this function stored there
/// on this thread.
#[no_mangle]
pub unsafe extern "C" fn distlog_event_kv_tl(
    tl: *mut *const c_void,
    cs: *const distlog_event_callsite,
    kv: *const distlog_kv,
    nkv: usize,
) {
    ffi_panic_boundary! {
        // SAFETY: forwarded (contract).
        unsafe { event_kv::<true>(tl, cs, kv, nkv) }
    }
}

/// [`distlog_event_kv_tl`] for a header with the inline event writer
/// (what `DISTLOG_EVENT_KV` calls when its inline write declines: the
/// thread's first event, a call site not registered or not on by its
/// cached verdict, a key not the registered literal, a window to work out
/// again, a nested call, ...). `abi` is the header's
/// `DISTLOG_INTERNAL_WINDOW_ABI`: when it is this library's, `*tl` gets
/// this thread's state, whose first member is its window
/// (`distlog_internal_window`); else `tl` is not used (no cache, no
/// window: the header's inline writer never runs, every event is a call).
///
/// # Safety
///
/// As [`distlog_event_kv_tl`].
#[no_mangle]
pub unsafe extern "C" fn distlog_event_kv_window(
    tl: *mut *const c_void,
    abi: u32,
    cs: *const distlog_event_callsite,
    kv: *const distlog_kv,
    nkv: usize,
) {
    ffi_panic_boundary! {
        let tl = if abi == distlog::raw::C_WINDOW_ABI { tl } else { std::ptr::null_mut() };
        // SAFETY: forwarded (contract); NULL is no cache.
        unsafe { event_kv::<true>(tl, cs, kv, nkv) }
    }
}

/// Wake the sidecar for the calling thread's ring: the header's inline
/// writer committed an event and found the consumer asleep (the ring
/// header's `sleeping`). A cold call, as the library's own wake-up.
///
/// # Safety
///
/// `w` is what [`distlog_event_kv_window`] stored in the caller's cache on
/// this thread (NULL: nothing happens).
#[no_mangle]
pub unsafe extern "C" fn distlog_internal_window_wake(w: *const c_void) {
    ffi_panic_boundary! {
        if !w.is_null() {
            // SAFETY: this thread's state (contract).
            unsafe { distlog::raw::wake_in(w.cast()) }
        }
    }
}

/// The two entry points of `DISTLOG_EVENT_KV`'s event: `CACHED`, with the
/// caller's cache `tl` (NULL: none); else (`tl` unused) the thread-local
/// access of [`distlog::raw::try_event_compact`]. One write path in each
/// (two in one function kept LLVM from inlining either's closures).
///
/// # Safety
///
/// As [`distlog_event_kv_tl`].
#[inline(always)]
unsafe fn event_kv<const CACHED: bool>(
    tl: *mut *const c_void,
    cs: *const distlog_event_callsite,
    kv: *const distlog_kv,
    nkv: usize,
) {
    // SAFETY: forwarded (contract).
    let Some((site, kv, on)) = (unsafe { site_and_fields::<_, CACHED>(cs, kv, nkv) }) else {
        return;
    };
    // The common case: on by its cached verdict, registered, every key
    // the registered one, the compact layout, room in the ring.
    if on {
        // The clock before anything else of the write (see
        // `try_event_compact`).
        let ts = distlog::raw::now();
        if let Some((id, keys)) = site.registered() {
            if !CACHED {
                // SAFETY: the strings are valid for the call, `len` bytes.
                let values =
                    |w: &mut compact::Writer<'_>| unsafe { conv::compact_fields(w, keys, kv) };
                if distlog::raw::try_event_compact(id, move || ts, values) {
                    return;
                }
            } else {
                // SAFETY: the caller's cache (contract).
                let state = unsafe { cached_state(tl) };
                if !state.is_null() {
                    // SAFETY: `state` is this thread's `thread_state` (the cache
                    // only we write); strings valid for the call (contract).
                    let done = unsafe {
                        distlog::raw::try_event_compact_in(
                            state.cast(),
                            id,
                            move || ts,
                            // Inlined (as in `log_fields`): else called with its
                            // writer in memory.
                            #[inline(always)]
                            |w| conv::compact_fields(w, keys, kv),
                        )
                    };
                    if done {
                        return;
                    }
                }
            }
        }
    }
    // SAFETY: the string fields are literals (contract).
    let Some(level) = (unsafe { site.cs.enabled() }) else {
        return;
    };
    // SAFETY: as above.
    unsafe { kv_general(site, level, kv) };
}

/// [`distlog_event_kv`] by [`distlog_event_callsite_log`]'s path: the
/// first call (which registers the keys), keys by name, text that is not
/// UTF-8 (converted lossily), the general write path.
///
/// # Safety
///
/// As [`log_fields`] for `site`; `kv`'s strings are NUL-terminated and
/// valid for the call.
#[cold]
#[inline(never)]
unsafe fn kv_general(site: &distlog_event_callsite, level: Level, kv: &[distlog_kv]) {
    let none = distlog_field {
        key: std::ptr::null(),
        r#type: 0,
        value: conv::distlog_value { u64: 0 },
    };
    let mut fields = [none; conv::MAX_FIELDS];
    // `fields_slice` bounded `kv` by MAX_FIELDS.
    let fields = &mut fields[..kv.len()];
    for (f, k) in fields.iter_mut().zip(kv) {
        *f = k.field();
    }
    // SAFETY: forwarded from our caller.
    unsafe { log_fields::<false>(std::ptr::null_mut(), site, level, fields) };
}

/// Whether the call site `cs` is enabled now (1) or not (0). The printf
/// macros call it before formatting.
///
/// # Safety
///
/// `cs` is NULL or points to a `distlog_callsite` initialised with
/// `DISTLOG_CALLSITE_INIT` that lives for the program (a `static`).
#[no_mangle]
pub unsafe extern "C" fn distlog_callsite_enabled(cs: *const distlog_callsite) -> c_int {
    ffi_panic_boundary! {
        // SAFETY: NULL or a valid static call site, per the contract.
        let Some(cs) = (unsafe { cs.as_ref() }) else { return 0 };
        // SAFETY: the string fields are literals, per the contract.
        c_int::from(unsafe { cs.enabled() }.is_some())
    }
}

/// Write an event of the static call site `cs` (what the macros call).
/// `message` NULL means the call site's own message; the printf macros pass
/// the formatted text. Bad arguments (NULL `cs`, `fields` NULL with
/// `nfields > 0`, `nfields > DISTLOG_MAX_FIELDS`) drop the record.
///
/// # Safety
///
/// `cs` as for [`distlog_callsite_enabled`]; `message` is NULL or a
/// NUL-terminated string; `fields` is NULL or points to `nfields` fields
/// whose strings are valid for the call.
#[no_mangle]
pub unsafe extern "C" fn distlog_callsite_log(
    cs: *const distlog_callsite,
    message: *const c_char,
    fields: *const distlog_field,
    nfields: usize,
) {
    ffi_panic_boundary! {
        // SAFETY: NULL or a valid static call site, per the contract.
        let Some(cs) = (unsafe { cs.as_ref() }) else { return };
        // SAFETY: the string fields are literals (contract).
        let Some(level) = (unsafe { cs.enabled() }) else { return };
        // SAFETY: as above, and `cs` is a static (contract).
        let Some(id) = (unsafe { cs.id(level) }) else { return };
        // SAFETY: NULL or `nfields` fields, per the contract.
        let Ok(fields) = (unsafe { conv::fields_slice(fields, nfields) }) else { return };
        // NULL: the call site's own message, which the sidecar renders from
        // the call-site table (not copied per event).
        // SAFETY: NULL or a string valid for the call.
        let msg = unsafe { conv::cstr(message) };
        if cs.formatted() {
            // SAFETY: the fields' strings are valid for the call.
            unsafe { log_formatted(id, msg.as_deref(), fields) };
            return;
        }
        // SAFETY: the fields' strings are valid for the call.
        unsafe { conv::with_fields(fields, |f| distlog::raw::event(id, msg.as_deref(), f)) };
    }
}

/// An event of a printf call site `id`: the text by position (field 0 of
/// the site, named "message"), any fields by name.
///
/// # Safety
///
/// As [`conv::encode_fields`] for `fields`.
#[inline]
unsafe fn log_formatted(id: u32, text: Option<&str>, fields: &[distlog_field]) {
    distlog::raw::event_compact(
        id,
        // Compact when the text is all there is (fields go by name).
        #[inline(always)]
        |w| match text {
            Some(m) if fields.is_empty() => {
                w.text(compact::STR, distlog::raw::clip(m));
                true
            }
            _ => false,
        },
        |enc| {
            if let Some(m) = text {
                enc.field_idx(0, &Value::Str(distlog::raw::clip(m)));
            }
            // SAFETY: the fields' strings are valid for the call (caller).
            unsafe { conv::encode_fields(enc, &Keys::none(), 0, fields) }
        },
    );
}

/// Write an event of the printf call site `cs` (what `DISTLOG_LOGF` calls
/// once `distlog_callsite_enabled(cs)` returned 1 and the text is
/// formatted): `text` is `len` bytes (no NUL needed), the formatted
/// message. It does not ask the filter again (the macro just did); it
/// drops the record for a NULL `cs` or `text`, a call site that is not a
/// printf one, or a bad level.
///
/// # Safety
///
/// `cs` as for [`distlog_callsite_enabled`]; `text` is NULL or points to
/// `len` bytes valid for the call.
#[no_mangle]
pub unsafe extern "C" fn distlog_callsite_log_text(
    cs: *const distlog_callsite,
    text: *const c_char,
    len: usize,
) {
    ffi_panic_boundary! {
        // SAFETY: NULL or a valid static call site, per the contract.
        let Some(cs) = (unsafe { cs.as_ref() }) else { return };
        // A site registered without the message as field 0 must not get
        // one by index.
        if !cs.formatted() {
            return;
        }
        let Some(level) = conv::level(cs.level) else { return };
        // SAFETY: the string fields are literals, `cs` a static (contract).
        let Some(id) = (unsafe { cs.id(level) }) else { return };
        // SAFETY: NULL or `len` bytes valid for the call (contract).
        let Some(text) = (unsafe { conv::cstr_len(text, len) }) else { return };
        // SAFETY: no fields.
        unsafe { log_formatted(id, Some(&text), &[]) };
    }
}

/// One `distlog_log` call site as this thread last saw it: its level and
/// target, the directives' verdict, and once enabled its id and the keys
/// of its first enabled call. Its field list is `message` then those keys,
/// so the message and the fields go by position (as for `DISTLOG_EVENT`).
#[derive(Debug)]
struct RuntimeSite {
    level: Level,
    target: CString,
    /// As `distlog_callsite::interest`.
    interest: AtomicU32,
    registered: Option<(u32, Keys)>,
}

/// Slots of the per-thread cache of `distlog_log` call sites (direct
/// mapped by the target's address and level; a collision just looks the
/// site up again).
const RUNTIME_SLOTS: usize = 16;

thread_local! {
    static RUNTIME_SITES: RefCell<[Option<RuntimeSite>; RUNTIME_SLOTS]> =
        const { RefCell::new([const { None }; RUNTIME_SLOTS]) };
}

impl RuntimeSite {
    /// # Safety
    ///
    /// `target` is a NUL-terminated string valid for the call.
    unsafe fn new(level: Level, target: *const c_char) -> RuntimeSite {
        RuntimeSite {
            level,
            // SAFETY: forwarded from our caller.
            target: unsafe { CStr::from_ptr(target) }.into(),
            interest: AtomicU32::new(0),
            registered: None,
        }
    }

    /// The id and keys, registering on the first enabled call.
    ///
    /// # Safety
    ///
    /// As [`conv::encode_fields`] for `fields`.
    unsafe fn registered(&mut self, fields: &[distlog_field]) -> Option<(u32, &Keys)> {
        if self.registered.is_none() {
            // SAFETY: forwarded from our caller.
            // No static to anchor to: keys are compared by text.
            let keys = unsafe { Keys::of(fields, None) };
            let names = keys.names();
            // The message first: sent by index, the sidecar shows a field
            // named "message" as the record's message.
            let names: Vec<&str> = std::iter::once("message")
                .chain(names.iter().map(|n| &**n))
                .collect();
            let target = self.target.to_string_lossy();
            let id =
                distlog::raw::register_event(self.level, &target, "event", None, None, &names)?;
            self.registered = Some((id, keys));
        }
        self.registered.as_ref().map(|(id, keys)| (*id, keys))
    }
}

/// Write an event described at run time: the convenient, slower path (the
/// call site is found by its target's text in a small per-thread cache,
/// and registered by content on a miss). `message` may be NULL (no
/// message). Bad arguments (level outside 1..=5, NULL target, `fields`
/// NULL with `nfields > 0`, `nfields > DISTLOG_MAX_FIELDS`) drop the record.
///
/// # Safety
///
/// `target` and `message` are NULL or NUL-terminated strings; `fields` is
/// NULL or points to `nfields` fields whose strings are valid for the call.
#[no_mangle]
pub unsafe extern "C" fn distlog_log(
    level: c_int,
    target: *const c_char,
    message: *const c_char,
    fields: *const distlog_field,
    nfields: usize,
) {
    ffi_panic_boundary! {
        let Some(level) = conv::level(level) else { return };
        if !level_on(level) || target.is_null() {
            return;
        }
        // SAFETY: NULL or `nfields` fields, per the contract.
        let Ok(fields) = (unsafe { conv::fields_slice(fields, nfields) }) else { return };
        let slot = ((target as usize >> 3) ^ level as usize) % RUNTIME_SLOTS;
        let cached = RUNTIME_SITES.try_with(|sites| {
            // Busy when this thread is already inside distlog_log (a signal
            // handler); gone while the thread exits: the uncached path.
            let Ok(mut sites) = sites.try_borrow_mut() else { return false };
            let site = match &mut sites[slot] {
                // SAFETY: target is non-null and a string (contract).
                Some(s) if s.level == level && unsafe { conv::same_text(target, &s.target) } => s,
                // SAFETY: as above.
                other => other.insert(unsafe { RuntimeSite::new(level, target) }),
            };
            let allow = || distlog::raw::enabled_by_directives(level, &site.target.to_string_lossy());
            if !cached_verdict(&site.interest, level, allow) {
                return true;
            }
            // SAFETY: the fields' strings are valid for the call.
            let Some((id, keys)) = (unsafe { site.registered(fields) }) else { return true };
            // SAFETY: NULL or a string, per the contract.
            let msg = unsafe { conv::cstr(message) };
            distlog::raw::event_compact(
                id,
                // The message is field 0: without one, the fields' positions
                // have a gap, which only the postcard layout carries.
                #[inline(always)]
                |w| match &msg {
                    Some(m) => {
                        w.text(compact::STR, distlog::raw::clip(m));
                        // SAFETY: the fields' strings are valid for the call.
                        unsafe { conv::compact_fields(w, keys, fields) }
                    }
                    None => false,
                },
                |enc| {
                if let Some(m) = &msg {
                    enc.field_idx(0, &Value::Str(distlog::raw::clip(m)));
                }
                // SAFETY: the fields' strings are valid for the call.
                unsafe { conv::encode_fields(enc, keys, 1, fields) }
            },
            );
            true
        });
        if cached != Ok(true) {
            // SAFETY: forwarded from our caller (contract).
            unsafe { log_uncached(level, target, message, fields) };
        }
    }
}

/// `distlog_log` without the per-thread cache: the call site looked up by
/// content, fields by name. The write path then counts a nested record as
/// dropped, and writes a thread's last records while it exits.
///
/// # Safety
///
/// As [`distlog_log`]; `target` is non-null.
#[cold]
#[inline(never)]
unsafe fn log_uncached(
    level: Level,
    target: *const c_char,
    message: *const c_char,
    fields: &[distlog_field],
) {
    // SAFETY: a string, per our caller.
    let Some(target) = (unsafe { conv::cstr(target) }) else {
        return;
    };
    if !distlog::raw::enabled(level, &target) {
        return;
    }
    let Some(id) = distlog::raw::register_event(level, &target, "event", None, None, &[]) else {
        return;
    };
    // SAFETY: NULL or a string, per our caller.
    let msg = unsafe { conv::cstr(message) };
    // SAFETY: the fields' strings are valid for the call.
    unsafe { conv::with_fields(fields, |f| distlog::raw::event(id, msg.as_deref(), f)) };
}

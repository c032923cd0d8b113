//! The client below `tracing`: call sites, events and scopes by id. The C
//! API (`distlog-ffi`) is built on this; Rust code uses `tracing`.
//!
//! # Examples
//!
//! ```no_run
//! use distlog::raw;
//! use distlog::wire::{Field, Level, Value};
//! distlog::builder("svc").start().unwrap();
//! let site = raw::register_event(Level::Info, "svc::db", "query", None, None, &["rows"]).unwrap();
//! if raw::enabled(Level::Info, "svc::db") {
//!     raw::event(site, None, &[Field::Idx(0, Value::U64(3))]);
//! }
//! ```

use crate::callsite::DynSite;
use crate::runtime::{self, process_checked};
use crate::scope::{self, Current};
use crate::wire::{compact, CallsiteKind, Encoder, Field, Head, Level, Outcome, TraceId};

/// Register (or find) an event call site described at run time.
pub fn register_event(
    level: Level,
    target: &str,
    name: &str,
    file: Option<&str>,
    line: Option<u32>,
    fields: &[&str],
) -> Option<u32> {
    register_dyn(CallsiteKind::Event, level, target, name, file, line, fields)
}

/// Register (or find) a scope call site described at run time.
pub fn register_scope(
    level: Level,
    target: &str,
    name: &str,
    file: Option<&str>,
    line: Option<u32>,
    fields: &[&str],
) -> Option<u32> {
    register_dyn(CallsiteKind::Scope, level, target, name, file, line, fields)
}

fn register_dyn(
    kind: CallsiteKind,
    level: Level,
    target: &str,
    name: &str,
    file: Option<&str>,
    line: Option<u32>,
    fields: &[&str],
) -> Option<u32> {
    let site = DynSite {
        kind,
        level,
        name,
        target,
        file,
        line,
        fields,
        message: None,
    };
    runtime::process()?.register_dyn(&site)
}

/// Register a call site that lives for the program under `key` (the address
/// of a static in the caller): after the first call, a lock-free lookup.
/// `message`, when given, is the site's static message: events of it that
/// carry no `message` field are shown with it (the sidecar renders it; the
/// text is not copied per event).
#[allow(clippy::too_many_arguments)]
pub fn register_static(
    key: usize,
    kind: CallsiteKind,
    level: Level,
    target: &str,
    name: &str,
    file: Option<&str>,
    line: Option<u32>,
    fields: &[&str],
    message: Option<&str>,
) -> Option<u32> {
    let p = runtime::process()?;
    p.register_static(
        key,
        &DynSite {
            kind,
            level,
            name,
            target,
            file,
            line,
            fields,
            message,
        },
    )
}

/// Whether a record at `level` for `target` would be written.
#[inline]
pub fn enabled(level: Level, target: &str) -> bool {
    crate::filter::enabled(level, target)
}

/// Write an event of call site `callsite` in the calling thread's current
/// scope. `message`, when given, is written as field `message`.
pub fn event(callsite: u32, message: Option<&str>, fields: &[Field<'_>]) {
    let values = |w: &mut compact::Writer<'_>| {
        if message.is_some() {
            return false;
        }
        for (i, f) in fields.iter().enumerate() {
            match clip_field(f) {
                Field::Idx(j, v) if usize::from(j) == i && compact::value_bytes(&v).is_some() => {
                    w.value(&v)
                }
                _ => return false,
            }
        }
        true
    };
    event_compact(callsite, values, |enc| {
        if let Some(m) = message {
            enc.field(&Field::Named(
                "message",
                crate::wire::Value::Str(crate::layer::clip(m)),
            ));
        }
        for f in fields {
            enc.field(&clip_field(f));
        }
    });
}

/// Write an event of call site `callsite` in the calling thread's current
/// scope, its fields appended by `fields` straight into the record (no
/// `Field` array in between: the C API's static call sites). `fields` may
/// run twice (once more with a bigger buffer when the record did not fit
/// the stack one), and should cut long strings with [`clip`].
#[inline]
pub fn event_with(callsite: u32, fields: impl Fn(&mut Encoder<'_>)) {
    runtime::write_event(|ctx| postcard_event(ctx, callsite, &fields));
}

/// [`event_with`], in the compact layout ([`crate::wire::compact`]) when
/// the sidecar reads it: `values` appends the call site's fields 0, 1, ...
/// in order and returns `true`, or returns `false` when this event has
/// something the compact layout does not carry (a field by name, a gap, a
/// 128-bit value); then `fields` writes the event the postcard way. Either
/// may run more than once (as for [`event_with`]).
#[inline(always)]
pub fn event_compact(
    callsite: u32,
    values: impl Fn(&mut compact::Writer<'_>) -> bool,
    fields: impl Fn(&mut Encoder<'_>),
) {
    // The common case straight-line (one thread-local access, no write
    // context, no postcard closure); the rest out of line.
    if !try_event_compact(callsite, now, &values) {
        event_general(callsite, &values, &fields);
    }
}

/// The common case of [`event_compact`] alone: `true` when the event was
/// written (or dropped and counted: the ring was full), `false` when
/// nothing was done and the caller must write it the general way
/// ([`event_compact`]): the thread's first record, a nested call, the
/// postcard layout, a shared ring, a window too short, or `values`
/// returned `false`. `ts` gives the event's time, called where the head
/// is written: [`now`] itself, or (`move || t`) a time the caller read
/// earlier. Where the read goes changes the time, not the instructions:
/// the TSC read is slow (~36 cycles) but depends on nothing, and whether
/// out-of-order execution hides it behind the checks and the thread-local
/// access depends on the code around it (`distlog_event_kv` reading it
/// first took 6 % less time, paired rounds against the late read;
/// `distlog_event_callsite_log` 6 % more).
#[inline(always)]
pub fn try_event_compact(
    callsite: u32,
    ts: impl FnOnce() -> u64,
    values: impl FnOnce(&mut compact::Writer<'_>) -> bool,
) -> bool {
    runtime::write_compact(callsite, ts, values)
}

/// The calling thread's state as an opaque pointer, for a cache the caller
/// keeps per thread and hands to [`try_event_compact_in`]; null when the
/// thread is exiting (its state is gone: do not cache).
#[inline]
pub fn thread_state() -> *const () {
    runtime::local_ptr().cast()
}

/// The layout version of the window [`thread_state`]'s pointer leads to
/// (the C header's `distlog_internal_window`, its inline event writer).
pub const C_WINDOW_ABI: u32 = runtime::WINDOW_ABI;

/// Longest string value a record carries (longer ones are cut).
pub const MAX_STR: usize = crate::layer::MAX_STR;

/// The window's layout (size, alignment, member offsets in the header's
/// order), for the test that compares it with the header's.
pub const C_WINDOW_LAYOUT: [usize; 18] = runtime::WINDOW_LAYOUT;

/// Room (bytes) in the window at or below which a record written in place
/// leaves it to the general path (which works the window out again).
pub const C_MIN_ROOM: u64 = runtime::DROP_EARLY_BYTES;

/// The window's scope (`distlog_internal_top`) layout, as
/// [`C_WINDOW_LAYOUT`].
pub const C_TOP_LAYOUT: [usize; 5] = runtime::TOP_LAYOUT;

/// Wake the sidecar for the ring of the thread whose state is `state`
/// (the C inline writer found the consumer asleep after a commit).
///
/// # Safety
///
/// As [`try_event_compact_in`].
#[cold]
#[inline(never)]
pub unsafe fn wake_in(state: *const ()) {
    // SAFETY: this thread's Local (our caller).
    runtime::wake_local(unsafe { &*state.cast::<runtime::Local>() });
}

/// [`try_event_compact`] with the calling thread's state from the caller's
/// cache (one thread-local access less).
///
/// # Safety
///
/// `state` is a non-null value [`thread_state`] returned on the calling
/// thread.
#[inline(always)]
pub unsafe fn try_event_compact_in(
    state: *const (),
    callsite: u32,
    ts: impl FnOnce() -> u64,
    values: impl FnOnce(&mut compact::Writer<'_>) -> bool,
) -> bool {
    // SAFETY: this thread's Local (our caller), whose storage lives until
    // the thread ends; once it is dropped its slot is empty and the write
    // declines.
    let l = unsafe { &*state.cast::<runtime::Local>() };
    runtime::write_compact_in(l, callsite, ts, values)
}

/// [`event_compact`] with the calling thread's state from the caller's
/// cache ([`try_event_compact_in`]; null: the general path).
///
/// # Safety
///
/// `state` is null or a value [`thread_state`] returned on the calling
/// thread.
#[inline(always)]
pub unsafe fn event_compact_in(
    state: *const (),
    callsite: u32,
    values: impl Fn(&mut compact::Writer<'_>) -> bool,
    fields: impl Fn(&mut Encoder<'_>),
) {
    // SAFETY: non-null, as our caller promises.
    if state.is_null() || !unsafe { try_event_compact_in(state, callsite, now, &values) } {
        event_general(callsite, &values, &fields);
    }
}

/// Now, in the clock events carry (the TSC where it is invariant; see
/// [`try_event_compact`]).
#[inline(always)]
pub fn now() -> u64 {
    crate::clock::now()
}

/// [`event_compact`] by the general write path: the thread's first
/// record, a nested call, the postcard layout, a shared ring, a window too
/// short before the ring's end.
#[cold]
#[inline(never)]
fn event_general(
    callsite: u32,
    values: &impl Fn(&mut compact::Writer<'_>) -> bool,
    fields: &impl Fn(&mut Encoder<'_>),
) {
    runtime::write_event(|ctx| {
        if ctx.compact {
            let (scope, trace) = ctx.cur.map_or((0, None), |c| (c.scope, Some(c.trace)));
            let mut w = compact::Writer::new(
                ctx.buf,
                callsite,
                crate::clock::now(),
                ctx.tid,
                scope,
                trace.as_ref(),
            );
            if values(&mut w) {
                // `None`: the window was too short; the write path runs us
                // again with a bigger buffer.
                return w.finish();
            }
        }
        postcard_event(ctx, callsite, fields)
    });
}

#[inline(always)]
fn postcard_event(
    ctx: &mut runtime::Ctx<'_>,
    callsite: u32,
    fields: &impl Fn(&mut Encoder<'_>),
) -> Option<usize> {
    let head = Head::Event {
        callsite,
        ts: crate::clock::now(),
        tid: ctx.tid,
        scope: ctx.cur.map_or(0, |c| c.scope),
        trace: ctx.cur.map(|c| c.trace),
    };
    let mut enc = Encoder::new(ctx.buf, &head);
    fields(&mut enc);
    enc.finish().map(|b| b.len())
}

/// `s` cut to the longest string value a record carries (16 KiB, at a
/// char boundary), so one giant field cannot cost the whole record.
#[inline]
pub fn clip(s: &str) -> &str {
    // The common case inline: `layer::clip` is a call.
    if s.len() <= crate::layer::MAX_STR {
        return s;
    }
    crate::layer::clip(s)
}

/// Cut long string values (see `layer::MAX_STR`), so one giant field
/// cannot cost the whole record.
fn clip_field<'a>(f: &Field<'a>) -> Field<'a> {
    use crate::layer::clip;
    use crate::wire::Value;
    let v = |v: &Value<'a>| match *v {
        Value::Str(s) => Value::Str(clip(s)),
        Value::Debug(s) => Value::Debug(clip(s)),
        other => other,
    };
    match f {
        Field::Idx(i, x) => Field::Idx(*i, v(x)),
        Field::Named(n, x) => Field::Named(clip(n), v(x)),
    }
}

/// A scope opened through this API: entered on the opening thread until
/// closed.
#[derive(Debug)]
pub struct Scope {
    key: u64,
    scope: u64,
    trace: TraceId,
    boost: u8,
    error: std::sync::atomic::AtomicBool,
}

impl Scope {
    /// Open a scope of call site `callsite` (kind `Scope`) and enter it on
    /// the calling thread. Its parent is `traceparent` when given and valid,
    /// else the thread's current scope. A malformed `traceparent` starts a
    /// new trace and is recorded as field `distlog.bad_traceparent`.
    pub fn open(callsite: u32, traceparent: Option<&str>, fields: &[Field<'_>]) -> Box<Scope> {
        Self::open_with_state(callsite, traceparent, None, fields)
    }

    /// [`Scope::open`] with the W3C `tracestate` that came with the
    /// `traceparent`: `distlog=<level>` in it records this scope (and its
    /// children) at that level.
    pub fn open_with_state(
        callsite: u32,
        traceparent: Option<&str>,
        tracestate: Option<&str>,
        fields: &[Field<'_>],
    ) -> Box<Scope> {
        let mut bad = None;
        let (parent, trace, remote, mut boost) = match traceparent.map(scope::parse_traceparent) {
            Some(Ok(tp)) => (
                tp.parent,
                tp.trace,
                true,
                tracestate.map_or(0, scope::parse_tracestate),
            ),
            other => {
                if let Some(Err(e)) = other {
                    bad = Some(e);
                }
                match scope::current() {
                    Some(c) => (c.scope, c.trace, false, c.boost),
                    None => (0, scope::new_trace(), false, 0),
                }
            }
        };
        boost = boost.max(crate::filter::trace_boost(&trace));
        if boost > 0 {
            crate::filter::raise_boost_cap(boost);
        }
        let s = Box::new(Scope {
            key: 0,
            scope: scope::new_scope_id(),
            trace,
            boost,
            error: Default::default(),
        });
        let key = &*s as *const Scope as u64;
        let tp_text = traceparent.unwrap_or("");
        runtime::write_record(|ctx| {
            let ts = crate::clock::now();
            // The compact head when the sidecar reads it; the fields are
            // postcard after either head.
            let (n, mut enc) = if ctx.compact {
                let n = compact::write_open(
                    ctx.buf, callsite, ts, ctx.tid, s.scope, parent, &trace, remote,
                )?;
                (n, Encoder::fields_only(&mut ctx.buf[n..]))
            } else {
                let head = Head::ScopeOpen {
                    callsite,
                    ts,
                    tid: ctx.tid,
                    scope: s.scope,
                    parent,
                    trace,
                    remote_parent: remote,
                };
                (0, Encoder::new(ctx.buf, &head))
            };
            for f in fields {
                enc.field(&clip_field(f));
            }
            if let Some(why) = bad {
                enc.field(&Field::Named(
                    "distlog.bad_traceparent",
                    crate::wire::Value::Str(crate::layer::clip(tp_text)),
                ));
                enc.field(&Field::Named(
                    "distlog.bad_traceparent_reason",
                    crate::wire::Value::Str(why),
                ));
            }
            enc.finish().map(|b| n + b.len())
        });
        let mut s = s;
        s.key = key;
        scope::push(Current {
            key,
            scope: s.scope,
            trace: s.trace,
            boost: s.boost,
            owner: 0,
        });
        s
    }

    /// The W3C `traceparent` naming this scope.
    pub fn traceparent(&self) -> String {
        scope::format_traceparent(&self.trace, self.scope)
    }

    /// The W3C `tracestate` to send beside [`Scope::traceparent`], when the
    /// scope is recorded at a raised level (`None` otherwise).
    pub fn tracestate(&self) -> Option<String> {
        scope::format_tracestate(self.boost)
    }

    /// Mark the scope failed (its close then says `error`).
    pub fn mark_error(&self) {
        self.error.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Close the scope (leaving it on this thread).
    #[allow(clippy::boxed_local)]
    pub fn close(self: Box<Self>, outcome: Outcome) {
        scope::pop(self.key);
        let outcome = if self.error.load(std::sync::atomic::Ordering::Relaxed) {
            Outcome::Error
        } else {
            outcome
        };
        let id = self.scope;
        runtime::write_record(|ctx| {
            let ts = crate::clock::now();
            if ctx.compact {
                return compact::write_close(ctx.buf, id, ts, ctx.tid, outcome);
            }
            let head = Head::ScopeClose {
                scope: id,
                ts,
                tid: ctx.tid,
                outcome,
            };
            Encoder::new(&mut ctx.buf[..], &head)
                .finish()
                .map(|s| s.len())
        });
    }
}

/// Wait until the sidecar has read what this process wrote (bounded).
/// Returns whether everything was read in time.
pub fn flush(timeout: std::time::Duration) -> bool {
    match process_checked() {
        Some(p) => p.flush(timeout),
        None => true,
    }
}

/// The most verbose level the directives enable anywhere: a C macro
/// compares a call site's level against it (one load and a compare) before
/// anything else.
pub fn max_level() -> &'static std::sync::atomic::AtomicU8 {
    &crate::filter::MAX_LEVEL
}

/// A number that changes whenever the directives or boosts change: a C
/// call site may cache [`enabled_by_directives`] together with it and ask
/// again only when it moved.
#[inline]
pub fn filter_epoch() -> u64 {
    crate::filter::EPOCH.load(std::sync::atomic::Ordering::Acquire)
}

/// Whether the directives alone (no per-request boost) enable `level` for
/// `target`.
pub fn enabled_by_directives(level: Level, target: &str) -> bool {
    crate::filter::enabled_by_directives(level, target)
}

/// Whether the calling thread's current scope is boosted to `level` or
/// more (see `distlog::tracestate`).
#[inline]
pub fn boosted(level: Level) -> bool {
    crate::filter::boosted(level as u8)
}

/// Whether the runtime is started and connected to a sidecar.
pub fn connected() -> bool {
    runtime::process().is_some_and(|p| p.is_connected())
}

//! The `tracing` side: the record writing for spans and events (one set of
//! functions behind [`Spans`], used by [`crate::Subscriber`] and by
//! [`DistlogLayer`], a [`Layer`] for `Registry` stacks), and `log` records
//! through `tracing-log` for stacks that install `LogTracer` themselves
//! ([`crate::init`] sets its own `log` logger: `crate::log_bridge`).
//!
//! Filtering is not done here: [`crate::init`] puts the filter (an
//! `EnvFilter`) in front, so a disabled call site never reaches this code
//! and costs what `tracing`'s interest cache costs.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use tracing_core::field::{Field as TField, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Metadata, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::callsite::DynSite;
use crate::runtime::{self, Ctx, Process};
use crate::scope::{self, ScopeData, ScopeTable, INLINE_FIELDS};
use crate::wire::{compact, CallsiteKind, Encoder, Field, Head, Level, Outcome, Value};
use smallvec::SmallVec;

/// Longest string value kept; longer ones are cut (at a char boundary) and
/// marked, so one giant field cannot cost the record.
pub(crate) const MAX_STR: usize = 16 << 10;

/// The distlog layer, for a `tracing_subscriber::Registry` stack of one's
/// own (other layers beside it). [`crate::init`] installs
/// [`crate::Subscriber`] instead: the same records, without the
/// `Registry`'s span bookkeeping.
///
/// # Examples
///
/// ```no_run
/// use tracing_subscriber::prelude::*;
/// let layer = distlog::builder("checkout").layer().expect("distlog runtime");
/// tracing_subscriber::registry()
///     .with(tracing_subscriber::EnvFilter::new("info"))
///     .with(layer)
///     .init();
/// ```
#[derive(Debug)]
pub struct DistlogLayer {
    /// Per-span data of the spans open in this layer's subscriber.
    scopes: ScopeTable,
}

impl DistlogLayer {
    pub(crate) fn new() -> Self {
        DistlogLayer {
            scopes: ScopeTable::new(),
        }
    }

    /// `f` on the scope data of span `id`: from the table, else from the
    /// span's extensions (both its table slots were taken).
    #[inline]
    fn with_data<S, R>(
        &self,
        id: &Id,
        ctx: &Context<'_, S>,
        held: Held,
        f: impl FnOnce(&ScopeData) -> R,
    ) -> Option<R>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let mut f = Some(f);
        if let Some(r) = self.in_table(id, held, &mut f) {
            return Some(r);
        }
        let span = ctx.span(id)?;
        let ext = span.extensions();
        ext.get::<ScopeData>().map(f?)
    }

    /// `f` (taken out of its `Option`) on span `id`'s data when it is in
    /// the table.
    #[inline(always)]
    fn in_table<R>(
        &self,
        id: &Id,
        held: Held,
        f: &mut Option<impl FnOnce(&ScopeData) -> R>,
    ) -> Option<R> {
        let key = id.into_u64();
        let mut run = |d: &ScopeData| f.take().map(|f| f(d));
        match held {
            // SAFETY: `Held::Open` says the Registry holds the span open
            // meanwhile, and no caller is its on_close.
            Held::Open => unsafe { self.scopes.get(key) }.map(&mut run),
            Held::Maybe => self.scopes.with_guarded(key, &mut run),
        }
        .flatten()
    }
}

/// An event through [`runtime::write_event`]: an explicit parent, the
/// thread's first record, a nested call, a `log` record, the postcard
/// layout (`try_compact` false: a `log` record or a value with no compact
/// form; or the sidecar does not read it).
#[inline]
fn write_event_general(
    event: &Event<'_>,
    ts: u64,
    callsite: u32,
    log: bool,
    explicit: Option<Option<scope::Current>>,
    try_compact: bool,
) {
    write_event_with(
        callsite,
        ts,
        explicit,
        try_compact,
        |w| visit_compact(w, event),
        |ctx, head| encode(ctx, head, log, &|v| event.record(v)),
    );
}

/// An event by the general write path, in scope `explicit` (`None`: the
/// thread's current one): in the compact layout when the sidecar reads it
/// and `try_compact` (`values` appends the values, `false`: they have no
/// compact form), else `postcard` encodes it after `head`.
#[inline(always)]
pub(crate) fn write_event_with(
    callsite: u32,
    ts: u64,
    explicit: Option<Option<scope::Current>>,
    try_compact: bool,
    values: impl Fn(&mut compact::Writer<'_>) -> bool,
    postcard: impl Fn(&mut Ctx<'_>, &Head) -> Option<usize>,
) {
    runtime::write_event(|ctx| {
        let (scope, trace) = match explicit.unwrap_or(ctx.cur) {
            Some(c) => (c.scope, Some(c.trace)),
            None => (0, None),
        };
        if try_compact && ctx.compact {
            let mut w = compact::Writer::new(ctx.buf, callsite, ts, ctx.tid, scope, trace.as_ref());
            if values(&mut w) {
                return w.finish();
            }
        }
        let head = Head::Event {
            callsite,
            ts,
            tid: ctx.tid,
            scope,
            trace,
        };
        postcard(ctx, &head)
    });
}

/// Span data found by id: the layer's table (the `Registry`'s extensions
/// behind it) or [`crate::Subscriber`]'s slab. The record writing below
/// is the same for both.
pub(crate) trait Spans {
    /// `f` on the data of span `id`, which may be closing on another
    /// thread meanwhile; `None` when it has none.
    fn with<R>(&self, id: &Id, f: impl FnOnce(&ScopeData) -> R) -> Option<R>;
}

/// The layer's view of its spans inside one callback.
struct InLayer<'a, 'c, S> {
    layer: &'a DistlogLayer,
    ctx: &'a Context<'c, S>,
}

impl<S> Spans for InLayer<'_, '_, S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    #[inline(always)]
    fn with<R>(&self, id: &Id, f: impl FnOnce(&ScopeData) -> R) -> Option<R> {
        self.layer.with_data(id, self.ctx, Held::Maybe, f)
    }
}

/// Whether a span is known to stay open during a lookup (see
/// [`ScopeTable`]).
#[derive(Clone, Copy)]
enum Held {
    /// The Registry holds it: the parent of a span being made (the child
    /// holds a reference to it).
    Open,
    /// Any other id (entered, an event's explicit parent,
    /// `Dispatch::record`, a key from the scope stack): the Registry takes
    /// these as given, and the span may be closing on another thread.
    Maybe,
}

impl Default for DistlogLayer {
    fn default() -> Self {
        Self::new()
    }
}

/// A clone has a table of its own: a table must belong to one subscriber
/// (span ids are unique only within one `Registry`).
impl Clone for DistlogLayer {
    fn clone(&self) -> Self {
        Self::new()
    }
}

fn site_of<'a>(meta: &'a Metadata<'a>, names: &'a [&'a str]) -> DynSite<'a> {
    DynSite {
        kind: if meta.is_span() {
            CallsiteKind::Scope
        } else {
            CallsiteKind::Event
        },
        level: Level::from_tracing(meta.level()),
        name: meta.name(),
        target: meta.target(),
        file: meta.file(),
        line: meta.line(),
        fields: names,
        message: None,
    }
}

#[cold]
#[inline(never)]
fn register_meta(p: &Process, meta: &'static Metadata<'static>) -> Option<u32> {
    let names: Vec<&str> = meta.fields().iter().map(|f| f.name()).collect();
    p.register_static(meta as *const _ as usize, &site_of(meta, &names))
}

#[inline]
fn callsite_id(p: &Process, meta: &'static Metadata<'static>) -> Option<u32> {
    match p.statics.get(meta as *const _ as usize) {
        Some(id) => Some(id),
        None => register_meta(p, meta),
    }
}

/// Cut a string to at most [`MAX_STR`] bytes at a char boundary.
pub(crate) fn clip(s: &str) -> &str {
    if s.len() <= MAX_STR {
        return s;
    }
    let mut end = MAX_STR;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// How field names are written: by index in the call site's field list
/// (`LOG == false`), or for a `log` record through tracing-log (`LOG`):
/// `message` is field 0 of the dynamic call site and `log.*` fields are
/// metadata, skipped. A const parameter, so each `record_*` of the common
/// case is compiled without the other's branches.
struct Visitor<'a, 'b, const LOG: bool> {
    enc: &'a mut Encoder<'b>,
    scratch: &'a mut String,
}

impl<const LOG: bool> Visitor<'_, '_, LOG> {
    // Inlined into every `record_*`, so each gets an encoder specialised for
    // its value kind (no match on `Field`/`Value` at run time).
    #[inline(always)]
    fn put(&mut self, f: &TField, v: Value<'_>) {
        if !LOG {
            self.enc.field_idx(f.index() as u16, &v);
            return;
        }
        let n = f.name();
        if n == "message" {
            self.enc.field_idx(0, &v);
        } else if !n.starts_with("log.") {
            self.enc.field(&Field::Named(n, v));
        }
    }

    /// `v` formatted into the scratch string, then written as a `Debug`
    /// value (`debug`) or a string.
    fn put_formatted(&mut self, f: &TField, v: std::fmt::Arguments<'_>, debug: bool) {
        self.scratch.clear();
        let _ = self.scratch.write_fmt(v);
        let s = std::mem::take(self.scratch);
        let text = clip(&s);
        self.put(
            f,
            if debug {
                Value::Debug(text)
            } else {
                Value::Str(text)
            },
        );
        *self.scratch = s;
    }
}

impl<const LOG: bool> Visit for Visitor<'_, '_, LOG> {
    fn record_i64(&mut self, f: &TField, v: i64) {
        self.put(f, Value::I64(v));
    }
    fn record_u64(&mut self, f: &TField, v: u64) {
        self.put(f, Value::U64(v));
    }
    fn record_i128(&mut self, f: &TField, v: i128) {
        self.put(f, Value::I128(v));
    }
    fn record_u128(&mut self, f: &TField, v: u128) {
        self.put(f, Value::U128(v));
    }
    fn record_f64(&mut self, f: &TField, v: f64) {
        self.put(f, Value::F64(v));
    }
    fn record_bool(&mut self, f: &TField, v: bool) {
        self.put(f, Value::Bool(v));
    }
    fn record_str(&mut self, f: &TField, v: &str) {
        self.put(f, Value::Str(clip(v)));
    }
    fn record_error(&mut self, f: &TField, v: &(dyn std::error::Error + 'static)) {
        self.put_formatted(f, format_args!("{v}"), false);
    }
    fn record_debug(&mut self, f: &TField, v: &dyn std::fmt::Debug) {
        // `message` is format_args!: its Debug is the formatted text, written
        // straight into the record (no String in between).
        if f.name() == "message" {
            let idx = if LOG { 0 } else { f.index() as u16 };
            self.enc.field_idx_fmt(idx, v, MAX_STR);
            return;
        }
        self.put_formatted(f, format_args!("{v:?}"), true);
    }
}

/// Writes an event's values in the compact layout, where a value's
/// position is its field's index: a value out of place (a gap: an `Option`
/// field that was `None`, a `tracing::field::Empty`) or a 128-bit one has
/// no compact form. Then the visitor writes nothing more (`next` becomes
/// [`CompactVisitor::MISS`]) and the event is encoded again in the
/// postcard layout.
struct CompactVisitor<'a, 'b> {
    w: &'a mut compact::Writer<'b>,
    next: usize,
}

impl CompactVisitor<'_, '_> {
    /// `next` once a value could not be written (no field has this index).
    const MISS: usize = usize::MAX;

    /// Whether `f` is the next position (and count it).
    #[inline(always)]
    fn at(&mut self, f: &TField) -> bool {
        if f.index() == self.next {
            self.next += 1;
            return true;
        }
        self.next = Self::MISS;
        false
    }

    #[inline(always)]
    fn num(&mut self, f: &TField, tag: u8, raw: u64) {
        if self.at(f) {
            self.w.num(tag, raw);
        }
    }

    #[inline(always)]
    fn text_fmt(&mut self, f: &TField, tag: u8, args: std::fmt::Arguments<'_>) {
        if self.at(f) {
            self.w.text_fmt(tag, args, MAX_STR);
        }
    }
}

impl Visit for CompactVisitor<'_, '_> {
    fn record_i64(&mut self, f: &TField, v: i64) {
        self.num(f, compact::I64, v as u64);
    }
    fn record_u64(&mut self, f: &TField, v: u64) {
        self.num(f, compact::U64, v);
    }
    fn record_i128(&mut self, _f: &TField, _v: i128) {
        self.next = Self::MISS;
    }
    fn record_u128(&mut self, _f: &TField, _v: u128) {
        self.next = Self::MISS;
    }
    fn record_f64(&mut self, f: &TField, v: f64) {
        self.num(f, compact::F64, v.to_bits());
    }
    fn record_bool(&mut self, f: &TField, v: bool) {
        self.num(f, compact::BOOL, v as u64);
    }
    fn record_str(&mut self, f: &TField, v: &str) {
        if self.at(f) {
            self.w.text(compact::STR, clip(v));
        }
    }
    fn record_error(&mut self, f: &TField, v: &(dyn std::error::Error + 'static)) {
        self.text_fmt(f, compact::STR, format_args!("{v}"));
    }
    fn record_debug(&mut self, f: &TField, v: &dyn std::fmt::Debug) {
        // `message` is format_args!: its Debug is the formatted text, a
        // string (as in the postcard layout).
        let tag = if f.name() == "message" {
            compact::STR
        } else {
            compact::DEBUG
        };
        self.text_fmt(f, tag, format_args!("{v:?}"));
    }
}

/// Append `event`'s values to `w`; `false` when one has no compact form.
#[inline(always)]
fn visit_compact(w: &mut compact::Writer<'_>, event: &Event<'_>) -> bool {
    let mut v = CompactVisitor { w, next: 0 };
    event.record(&mut v);
    v.next != CompactVisitor::MISS
}

#[inline(always)]
fn encode(
    ctx: &mut Ctx<'_>,
    head: &Head,
    log: bool,
    record: &dyn Fn(&mut dyn Visit),
) -> Option<usize> {
    let mut enc = Encoder::new(ctx.buf, head);
    let scratch = &mut *ctx.scratch;
    if log {
        record(&mut Visitor::<true> {
            enc: &mut enc,
            scratch,
        });
    } else {
        record(&mut Visitor::<false> {
            enc: &mut enc,
            scratch,
        });
    }
    enc.finish().map(|b| b.len())
}

/// Encode fields alone (no head) into `out` (empty), for a scope's deferred
/// open: straight into the scope's inline bytes (no thread-local buffer, no
/// allocation for a typical scope), through the thread's big buffer when
/// they do not fit.
fn encode_fields(out: &mut SmallVec<[u8; INLINE_FIELDS]>, record: &dyn Fn(&mut dyn Visit)) {
    fn run(buf: &mut [u8], scratch: &mut String, record: &dyn Fn(&mut dyn Visit)) -> Option<usize> {
        let mut enc = Encoder::fields_only(buf);
        record(&mut Visitor::<false> {
            enc: &mut enc,
            scratch,
        });
        enc.finish().map(<[u8]>::len)
    }
    *out = SmallVec::from_buf([0; INLINE_FIELDS]);
    if let Some(n) = run(out, &mut String::new(), record) {
        out.truncate(n);
        return;
    }
    out.clear();
    runtime::write_scratch(|buf, scratch| {
        if let Some(n) = run(buf, scratch, record) {
            out.extend_from_slice(&buf[..n]);
        }
    });
}

/// Write the open record of a scope if nobody did yet.
#[inline(always)]
pub(crate) fn ensure_open(d: &ScopeData) {
    if d.take_open() {
        write_open(d);
    }
}

/// The open record (once per scope, see [`ensure_open`]): out of line, so
/// the callers that find it written (a close, an event, a re-entry) do not
/// pay for its frame.
#[inline(never)]
fn write_open(d: &ScopeData) {
    let (parent, trace, remote_parent) = (d.parent(), d.trace(), d.remote());
    let extra = d.extra.get().map_or(&[][..], Vec::as_slice);
    // The head, then the fields encoded at creation and any added since.
    let open = |buf: &mut [u8], compact: bool| -> Option<usize> {
        let mut n = if compact {
            compact::write_open(
                buf,
                d.callsite,
                d.created,
                d.tid,
                d.scope,
                parent,
                &trace,
                remote_parent,
            )?
        } else {
            let head = Head::ScopeOpen {
                callsite: d.callsite,
                ts: d.created,
                tid: d.tid,
                scope: d.scope,
                parent,
                trace,
                remote_parent,
            };
            Encoder::new(buf, &head).finish()?.len()
        };
        for part in [&d.fields[..], extra] {
            if part.is_empty() {
                continue;
            }
            let end = n + part.len();
            if end > buf.len() {
                return None;
            }
            buf[n..end].copy_from_slice(part);
            n = end;
        }
        Some(n)
    };
    if !runtime::write_scope_compact(|buf, _| open(buf, true)) {
        runtime::write_record(|ctx| open(ctx.buf, ctx.compact));
    }
}

pub(crate) fn close_record(d: &ScopeData) {
    ensure_open(d);
    let outcome = if d.error.load(Ordering::Relaxed) {
        Outcome::Error
    } else {
        Outcome::Ok
    };
    let close = |buf: &mut [u8], tid: u32, compact: bool| {
        let ts = crate::clock::now();
        if compact {
            return compact::write_close(buf, d.scope, ts, tid, outcome);
        }
        let head = Head::ScopeClose {
            scope: d.scope,
            ts,
            tid,
            outcome,
        };
        Encoder::new(buf, &head).finish().map(|s| s.len())
    };
    if !runtime::write_scope_compact(|buf, tid| close(buf, tid, true)) {
        runtime::write_record(|ctx| close(ctx.buf, ctx.tid, ctx.compact));
    }
}

/// The call site of an event not in the static map yet, or from the `log`
/// crate (then a dynamic site made of the record's target and place).
#[cold]
#[inline(never)]
fn event_site_slow(p: &Process, event: &Event<'_>) -> Option<(u32, bool)> {
    let found = if event.is_log() {
        let nm = event.normalized_metadata()?;
        let site = DynSite {
            kind: CallsiteKind::Event,
            level: Level::from_tracing(nm.level()),
            name: "log",
            target: nm.target(),
            file: nm.file(),
            line: nm.line(),
            fields: &["message"],
            message: None,
        };
        p.register_dyn(&site).map(|id| (id, true))
    } else {
        register_meta(p, event.metadata()).map(|id| (id, false))
    };
    if found.is_none() {
        // The call-site table is full: the event is dropped and counted.
        runtime::count_dropped();
    }
    found
}

/// A call site seen for the first time: its id made now, off the hot path.
pub(crate) fn register(meta: &'static Metadata<'static>) -> tracing_core::Interest {
    if let Some(p) = runtime::process() {
        let _ = callsite_id(p, meta);
    }
    tracing_core::Interest::always()
}

/// What a new span's data takes from its parent: scope id, trace, boost.
pub(crate) type Parent = (u64, scope::Halves, u8);

/// [`Parent`] of a span that gets a child (its open record first: the
/// child's names it).
#[inline(always)]
pub(crate) fn as_parent(d: &ScopeData) -> Parent {
    ensure_open(d);
    (d.scope, d.trace_halves(), d.boost())
}

/// A new span's data before it has a place: [`NewScope::make`] and
/// [`NewScope::fill`] build it where it stays (no copy of bytes just
/// written: a store-forwarding stall each).
pub(crate) struct NewScope {
    scope: u64,
    trace: scope::Halves,
    parent: u64,
    callsite: u32,
    created: u64,
    tid: u32,
    boost: u8,
}

impl NewScope {
    /// `None` without a runtime, or when the call-site table is full (the
    /// open is dropped and counted). `parent` looks up an explicit parent.
    #[inline(always)]
    pub(crate) fn of(
        attrs: &Attributes<'_>,
        parent: impl FnOnce(&Id) -> Option<Parent>,
    ) -> Option<NewScope> {
        let p = runtime::process_fast()?;
        let Some(callsite) = callsite_id(p, attrs.metadata()) else {
            runtime::count_dropped();
            return None;
        };
        let explicit = attrs.parent().and_then(parent);
        let contextual = attrs.parent().is_none() && attrs.is_contextual();
        let fresh = scope::fresh(contextual, explicit.is_some());
        let (parent, trace, boost) = explicit
            .or(fresh
                .cur
                .map(|c| (c.scope, scope::split_trace(&c.trace), c.boost)))
            .unwrap_or((0, fresh.trace, 0));
        let boost = boost.max(crate::filter::trace_boost_halves(trace));
        Some(NewScope {
            scope: fresh.scope,
            trace,
            parent,
            callsite,
            created: crate::clock::now(),
            tid: fresh.tid,
            boost,
        })
    }

    #[inline(always)]
    pub(crate) fn make(&self) -> ScopeData {
        ScopeData::new(
            self.scope,
            self.trace,
            self.parent,
            self.callsite,
            self.created,
            self.tid,
            SmallVec::new(),
            self.boost,
        )
    }

    /// The span's fields, encoded into its data.
    #[inline(always)]
    pub(crate) fn fill(d: &mut ScopeData, attrs: &Attributes<'_>) {
        if !attrs.fields().is_empty() {
            encode_fields(&mut d.fields, &|v| attrs.record(v));
        }
    }
}

/// `Dispatch::record` on span `id`.
pub(crate) fn record(spans: &impl Spans, id: &Id, values: &Record<'_>) {
    // Visited before the lookup: nothing but our own code runs while a
    // slot is read (its close waits for the reader).
    let mut m = ErrorMark(false);
    values.record(&mut m);
    let Some(scope) = spans.with(id, |d| {
        ensure_open(d);
        if m.0 {
            d.error.store(true, Ordering::Relaxed);
        }
        d.scope
    }) else {
        return;
    };
    runtime::write_record(|ctx| {
        let head = Head::ScopeRecord {
            scope,
            ts: crate::clock::now(),
        };
        encode(ctx, &head, false, &|v| values.record(v))
    });
}

/// An event.
#[inline(always)]
pub(crate) fn event(spans: &impl Spans, event: &Event<'_>) {
    // The TSC first: read here, before the lookups and the ring
    // write, it costs the event ~5 ns less than in the middle of
    // them (paired rounds, 53.2 -> 48.4 ns).
    let ts = crate::clock::now();
    let Some(p) = runtime::process_fast() else {
        return;
    };
    let meta = event.metadata();
    // A `tracing` call site is in the static map after its first event;
    // tracing-log's metadata never is (its call sites are not
    // registered, so `register_callsite` never sees them), so asking
    // `is_log` only on a miss keeps it off the hot path.
    let (callsite, log) = match p.statics.get(meta as *const _ as usize) {
        Some(id) => (id, false),
        None => match event_site_slow(p, event) {
            Some(x) => x,
            None => return,
        },
    };
    // The scope an explicit parent names (`None` for an explicit
    // root); for a contextual event (the common case) the thread's
    // current scope, which `write_event` reads in its own thread-local
    // access.
    let explicit = if let Some(pid) = event.parent() {
        Some(spans.with(pid, |d| {
            ensure_open(d);
            d.current(pid.into_u64())
        }))
    } else if event.is_contextual() {
        None
    } else {
        Some(None)
    };
    // The common case (a contextual `tracing` event, the sidecar reads
    // the compact layout) in one thread-local access, without a `Ctx`.
    // `false` from it: the general path below takes the event, and
    // skips the compact layout when a value had no compact form.
    let mut compact = !log && p.compact();
    let done = compact
        && explicit.is_none()
        && runtime::write_compact(
            callsite,
            || ts,
            |w| {
                compact = visit_compact(w, event);
                compact
            },
        );
    if !done {
        write_event_general(event, ts, callsite, log, explicit, compact);
    }
    if *meta.level() == tracing_core::Level::ERROR {
        if let Some(c) = explicit.unwrap_or_else(scope::current) {
            spans.with(&Id::from_u64(c.key), |d| {
                d.error.store(true, Ordering::Relaxed)
            });
        }
    }
}

/// What entering a span pushes on the thread's scope stack (its open
/// record first).
#[inline(always)]
pub(crate) fn entered(d: &ScopeData, key: u64) -> scope::Current {
    ensure_open(d);
    d.current(key)
}

impl<S> Layer<S> for DistlogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> tracing_core::Interest {
        register(meta)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(new) = NewScope::of(attrs, |pid| {
            self.with_data(pid, &ctx, Held::Open, as_parent)
        }) else {
            return;
        };
        let fill = |d: &mut ScopeData| NewScope::fill(d, attrs);
        if let Some(data) = self.scopes.insert_with(id.into_u64(), || new.make(), fill) {
            if let Some(span) = ctx.span(id) {
                span.extensions_mut().insert(data);
            }
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        record(
            &InLayer {
                layer: self,
                ctx: &ctx,
            },
            id,
            values,
        );
    }

    fn on_event(&self, e: &Event<'_>, ctx: Context<'_, S>) {
        event(
            &InLayer {
                layer: self,
                ctx: &ctx,
            },
            e,
        );
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        // Maybe: the Registry's `enter` takes no reference, and
        // `Dispatch::enter` takes any id, even a closed span's.
        if let Some(c) = self.with_data(id, &ctx, Held::Maybe, |d| entered(d, id.into_u64())) {
            scope::push(c);
        }
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        scope::pop(id.into_u64());
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        // SAFETY: this is the span's on_close: nobody uses the id any more.
        if unsafe { self.scopes.remove(id.into_u64(), close_record) } {
            return;
        }
        let Some(span) = ctx.span(&id) else { return };
        let ext = span.extensions();
        if let Some(d) = ext.get::<ScopeData>() {
            close_record(d);
        }
    }
}

/// Looks for `error = true` / `outcome = "error"` recorded on a span.
struct ErrorMark(bool);

impl Visit for ErrorMark {
    fn record_bool(&mut self, f: &TField, v: bool) {
        if f.name() == "error" && v {
            self.0 = true;
        }
    }
    fn record_str(&mut self, f: &TField, v: &str) {
        if f.name() == "outcome" && v == "error" {
            self.0 = true;
        }
    }
    fn record_debug(&mut self, _f: &TField, _v: &dyn std::fmt::Debug) {}
}

/// Find a span's scope data through the current dispatcher (which must be
/// built on a `tracing_subscriber::Registry`).
pub(crate) fn with_scope<R>(span: &tracing::Span, f: impl FnOnce(&ScopeData) -> R) -> Option<R> {
    span.with_subscriber(|(id, dispatch)| scope_in(dispatch, id, Held::Open, f))
        .flatten()
}

/// `f` on the data of span `id` of `dispatch`; `held`: whether the span is
/// known to stay open meanwhile ([`Held::Open`]: a handle to it is held).
fn scope_in<R>(
    dispatch: &tracing::Dispatch,
    id: &Id,
    held: Held,
    f: impl FnOnce(&ScopeData) -> R,
) -> Option<R> {
    if let Some(sub) = dispatch.downcast_ref::<crate::Subscriber>() {
        return sub.with_data(id, f);
    }
    let mut f = Some(f);
    if let Some(layer) = dispatch.downcast_ref::<DistlogLayer>() {
        if let Some(r) = layer.in_table(id, held, &mut f) {
            return Some(r);
        }
    }
    let reg = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
    let s = reg.span(id)?;
    let ext = s.extensions();
    ext.get::<ScopeData>().map(f?)
}

/// An error record outside `tracing` (a `log` record): the thread's
/// current scope ends as an error, as it does for a `tracing` error event.
#[cold]
#[inline(never)]
pub(crate) fn mark_current_error() {
    let Some(c) = scope::current() else { return };
    tracing::dispatcher::get_default(|dispatch| {
        // Maybe: the key may be a C scope's, or a span closing elsewhere.
        scope_in(dispatch, &Id::from_u64(c.key), Held::Maybe, |d| {
            d.error.store(true, Ordering::Relaxed)
        })
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_core::callsite::Callsite as _;
    use tracing_core::field::Value as TValue;

    /// `event` through the postcard visitor and through the compact one
    /// (`None`: a value had no compact form), each decoded.
    fn both_layouts(
        event: &Event<'_>,
    ) -> (
        crate::wire::Frame<'static>,
        Option<crate::wire::Frame<'static>>,
    ) {
        let head = Head::Event {
            callsite: 7,
            ts: 1 << 40,
            tid: 3,
            scope: 0,
            trace: None,
        };
        let mut buf = vec![0u8; 64 << 10];
        let mut enc = Encoder::new(&mut buf, &head);
        event.record(&mut Visitor::<false> {
            enc: &mut enc,
            scratch: &mut String::new(),
        });
        let postcard = enc.finish().expect("fits").to_vec().leak();
        let mut buf = vec![0u8; 64 << 10];
        let mut w = compact::Writer::new(&mut buf, 7, 1 << 40, 3, 0, None);
        let ok = visit_compact(&mut w, event);
        let n = w.finish();
        let compact = ok.then(|| {
            let n = n.expect("fits");
            assert_eq!(buf[0], compact::KIND);
            crate::wire::decode(buf[..n].to_vec().leak()).expect("compact decodes")
        });
        (
            crate::wire::decode(postcard).expect("postcard decodes"),
            compact,
        )
    }

    /// Writes `ok`, then fails: a `Debug` impl that returns an error of its
    /// own.
    struct Failing;

    impl std::fmt::Debug for Failing {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("ok")?;
            Err(std::fmt::Error)
        }
    }

    #[test]
    fn compact_events_decode_as_postcard() {
        let cs = tracing::callsite! {
            name: "e",
            kind: tracing::metadata::Kind::EVENT,
            fields: message, i, u, f, b, s, d, e, wide
        };
        let fs = cs.metadata().fields();
        let f = |n: &str| fs.field(n).expect("field");
        let (message, i, u, fl, b, s, d, e, wide) = (
            f("message"),
            f("i"),
            f("u"),
            f("f"),
            f("b"),
            f("s"),
            f("d"),
            f("e"),
            f("wide"),
        );
        let err = std::io::Error::other("bad");
        let err: &(dyn std::error::Error + 'static) = &err;
        let medium = "z".repeat(100);
        let long = format!("{}é", "x".repeat(MAX_STR - 1));
        let dbg = tracing::field::debug(Failing);
        // Every value kind, a formatted message, a longer one, a cut one, a
        // failing Debug.
        let texts = [
            format_args!("message {}", 5),
            format_args!("{medium}"),
            format_args!("{long}"),
        ];
        for text in texts {
            let values: [(&TField, Option<&dyn TValue>); 8] = [
                (&message, Some(&text)),
                (&i, Some(&-5i64)),
                (&u, Some(&u64::MAX)),
                (&fl, Some(&2.5f64)),
                (&b, Some(&true)),
                (&s, Some(&"short")),
                (&d, Some(&dbg)),
                (&e, Some(&err)),
            ];
            let vs = fs.value_set(&values);
            let (postcard, compact) = both_layouts(&Event::new(cs.metadata(), &vs));
            assert_eq!(Some(&postcard), compact.as_ref());
            let Field::Idx(0, Value::Str(m)) = postcard.fields[0] else {
                panic!("{:?}", postcard.fields[0])
            };
            assert!([9, 100, MAX_STR - 1].contains(&m.len()), "{}", m.len());
            assert_eq!(postcard.fields[6], Field::Idx(6, Value::Debug("ok")));
        }
        // A gap (a `None`, or a field left out) and a 128-bit value have no
        // compact form: the postcard layout takes the event.
        let none: Option<i64> = None;
        let cases: [&[(&TField, Option<&dyn TValue>)]; 3] = [
            &[(&message, Some(&"m")), (&i, Some(&none)), (&u, Some(&1u64))],
            &[(&message, Some(&"m")), (&u, Some(&1u64))],
            &[(&message, Some(&"m")), (&wide, Some(&u128::MAX))],
        ];
        for values in cases {
            let vs = match values.len() {
                2 => fs.value_set(<&[_; 2]>::try_from(values).expect("2")),
                _ => fs.value_set(<&[_; 3]>::try_from(values).expect("3")),
            };
            let (postcard, compact) = both_layouts(&Event::new(cs.metadata(), &vs));
            assert!(compact.is_none(), "{postcard:?}");
            assert!(!postcard.fields.is_empty());
        }
    }

    #[test]
    fn compact_event_too_long_for_the_buffer_fails_softly() {
        let cs = tracing::callsite! {
            name: "e",
            kind: tracing::metadata::Kind::EVENT,
            fields: message, s
        };
        let fs = cs.metadata().fields();
        let (message, s) = (fs.field("message").expect("m"), fs.field("s").expect("s"));
        let text = format_args!("{}", "y".repeat(100));
        let values: [(&TField, Option<&dyn TValue>); 2] =
            [(&message, Some(&text)), (&s, Some(&"short"))];
        let vs = fs.value_set(&values);
        let event = Event::new(cs.metadata(), &vs);
        for len in [0, 10, 30, 60, 130, 137] {
            let mut buf = vec![0u8; len];
            let mut w = compact::Writer::new(&mut buf, 7, 1, 3, 0, None);
            assert!(visit_compact(&mut w, &event));
            assert_eq!(w.finish(), None, "{len}");
        }
    }

    #[test]
    fn scope_fields_inline_and_past_it() {
        let cs = tracing::callsite! {
            name: "t",
            kind: tracing::metadata::Kind::SPAN,
            fields: s
        };
        let f = cs.metadata().fields().field("s").expect("field s");
        // Inline, and too long for the inline bytes (through the thread's
        // buffer): the same bytes as the encoder writes for the field alone.
        for len in [3, INLINE_FIELDS, 300] {
            let text = "x".repeat(len);
            let mut got = SmallVec::new();
            encode_fields(&mut got, &|v| v.record_str(&f, &text));
            let mut want = [0u8; 512];
            let mut e = Encoder::fields_only(&mut want);
            e.field(&Field::Idx(0, Value::Str(&text)));
            assert_eq!(&got[..], e.finish().expect("fits"), "{len}");
        }
    }
}

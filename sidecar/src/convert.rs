//! Ring payloads to [`Record`]s: call sites, field names, scopes.
//!
//! An event takes level, target, file and line from its call site; a field
//! named by index takes its name from the call site's field list (an index
//! the list does not have becomes `field<idx>`: robust, not fatal). The
//! field named `message` becomes the record's `message`.
//!
//! Scopes: each process's open scopes are remembered (bounded) from their
//! `ScopeOpen` to their `ScopeClose`, which then gets its `duration_ns`; an
//! event in a scope gets the scope's parent; a process whose last
//! connection went away with scopes open gets a `scope_close` with outcome
//! `abandoned` for each.

use distlog::wire::{self, compact, Head, Key, Level, Value};

use crate::client::{Context, CutOff, OpenScope, Scopes};
use crate::clock::Clock;
use crate::drain::Batch;
use distlog::table::OwnedDef;

use crate::record::{set_opt_str, set_str, Kind, Outcome, Record, RouteKey, ScopeId, TraceId};
use crate::timestamp::Timestamp;
use crate::Limits;

/// What conversion needs from the sidecar.
#[derive(Debug)]
pub(crate) struct Env<'a> {
    pub clock: &'a Clock,
    pub host: &'a str,
    pub limits: &'a Limits,
}

/// A wire value as JSON (see the schema in [`crate::record`]).
pub(crate) fn json_value(v: &Value<'_>) -> serde_json::Value {
    use serde_json::Value as J;
    match *v {
        Value::I64(n) => J::from(n),
        Value::U64(n) => J::from(n),
        Value::F64(x) if x.is_finite() => J::from(x),
        Value::F64(x) if x.is_nan() => J::from("NaN"),
        Value::F64(x) => J::from(if x > 0.0 { "inf" } else { "-inf" }),
        Value::Bool(b) => J::from(b),
        Value::Str(s) | Value::Debug(s) => J::from(s),
        Value::I128(n) => match (i64::try_from(n), u64::try_from(n)) {
            (Ok(n), _) => J::from(n),
            (_, Ok(n)) => J::from(n),
            _ => J::from(n.to_string()),
        },
        Value::U128(n) => match u64::try_from(n) {
            Ok(n) => J::from(n),
            Err(_) => J::from(n.to_string()),
        },
    }
}

/// Append a wire value as message text to `out`.
fn push_text(out: &mut String, v: &Value<'_>) {
    use std::fmt::Write;
    // Writing into a String cannot fail.
    let _ = match *v {
        Value::Str(s) | Value::Debug(s) => {
            out.push_str(s);
            Ok(())
        }
        Value::I64(n) => write!(out, "{n}"),
        Value::U64(n) => write!(out, "{n}"),
        Value::F64(x) => write!(out, "{x}"),
        Value::Bool(b) => write!(out, "{b}"),
        Value::I128(n) => write!(out, "{n}"),
        Value::U128(n) => write!(out, "{n}"),
    };
}

/// Overwrite the record's message with `v` as text.
fn set_message(message: &mut Option<String>, v: &Value<'_>) {
    let m = message.get_or_insert_with(String::new);
    m.clear();
    push_text(m, v);
}

/// Overwrite the string `slot` holds with what `put` writes, reusing its
/// allocation (a `String` made when it holds another kind).
#[inline(always)]
fn text(slot: &mut serde_json::Value, put: impl FnOnce(&mut String)) {
    match slot {
        serde_json::Value::String(s) => {
            s.clear();
            put(s);
        }
        _ => {
            let mut s = String::new();
            put(&mut s);
            *slot = serde_json::Value::String(s);
        }
    }
}

/// Overwrite `slot` with the number `n`, in place when it holds one.
#[inline(always)]
fn number(slot: &mut serde_json::Value, n: serde_json::Number) {
    match slot {
        serde_json::Value::Number(x) => *x = n,
        _ => *slot = serde_json::Value::Number(n),
    }
}

/// Overwrite `slot` with `v` as JSON (as [`json_value`] makes it), reusing
/// the slot's string when both are strings: a recycled record's fields
/// allocate nothing. A number or string over one of its kind is written
/// in place (no drop of the old value: ~40 instructions a field).
fn set_json(slot: &mut serde_json::Value, v: &Value<'_>) {
    use std::fmt::Write;
    match *v {
        Value::Str(s) | Value::Debug(s) => text(slot, |o| o.push_str(s)),
        Value::I64(n) => number(slot, n.into()),
        Value::U64(n) => number(slot, n.into()),
        Value::I128(n) if i64::try_from(n).is_err() && u64::try_from(n).is_err() => {
            text(slot, |o| {
                let _ = write!(o, "{n}");
            })
        }
        Value::U128(n) if u64::try_from(n).is_err() => text(slot, |o| {
            let _ = write!(o, "{n}");
        }),
        _ => *slot = json_value(v),
    }
}

/// A compact value straight into a field's slot, as [`set_json`] writes it.
struct JsonSlot<'s>(&'s mut serde_json::Value);

impl<'a> compact::Visit<'a> for JsonSlot<'_> {
    #[inline(always)]
    fn value(self, v: Value<'a>) {
        set_json(self.0, &v);
    }
    #[inline(always)]
    fn i64(self, v: i64) {
        number(self.0, v.into());
    }
    #[inline(always)]
    fn u64(self, v: u64) {
        number(self.0, v.into());
    }
    #[inline(always)]
    fn str(self, v: &'a str, _debug: bool) {
        text(self.0, |o| set_str(o, v));
    }
}

/// A compact value straight into the record's message, as [`set_message`]
/// writes it.
struct MessageText<'s>(&'s mut Option<String>);

impl<'a> compact::Visit<'a> for MessageText<'_> {
    #[inline(always)]
    fn value(self, v: Value<'a>) {
        set_message(self.0, &v);
    }
    #[inline(always)]
    fn str(self, v: &'a str, _debug: bool) {
        set_str(self.0.get_or_insert_with(String::new), v);
    }
}

/// Where the last conversion into a recycled record put its fields: the
/// k-th field read was `Idx(entries[k].0)` and went to live position
/// `entries[k].1` of the record's fields ([`MESSAGE`]: the message), which
/// then held `live` entries. A next record of the same call site whose
/// fields come in the same order overwrites those values in place: its
/// keys are already there, in order (~70 instructions a field for the
/// key compares and copies of [`Fields::slot`](crate::record::Fields)).
/// Only valid for a record of the [`Site`] it was recorded for, `site`
/// (the record's keys are those it left: a record without fields, a
/// `scope_close`, of another call site may have come in between).
#[derive(Debug, Default)]
pub(crate) struct Layout {
    site: Option<Site>,
    entries: Vec<(u16, u16)>,
    live: usize,
    /// Usable: every field was named by a known index.
    ok: bool,
    /// The k-th field read was `Idx(k)` for every k (a compact record's
    /// fields are: [`put_compact`] reads them by position).
    by_position: bool,
    /// Every field of the call site came, each at least once, and no other:
    /// the record's field names are the call site's.
    full: bool,
}

impl Layout {
    /// Whether a record of call site `site` can write where this says.
    fn usable_for(&self, site: Site) -> bool {
        self.site == Some(site) && self.ok
    }
}

/// [`Layout`] position of the message.
const MESSAGE: u16 = u16::MAX;

/// What a recycled record slot holds: whose strings, and its fields'
/// layout. `site` `None`: unknown (the layout is then unused).
#[derive(Debug, Default)]
pub(crate) struct Held {
    site: Option<Site>,
    layout: Layout,
}

/// What [`put_fields`] found.
struct Put {
    /// One was the message.
    message: bool,
    /// As [`Layout::full`].
    full: bool,
}

/// [`put_fields`]' short way: the values of a compact record (by position)
/// of the call site `layout` holds, in its order, each decoded straight
/// into the slot the last record of that call site left it in (no key, no
/// [`Value`], no layout compare per field). `None`, part written, when the
/// record does not fit the layout (another count, an undecodable value):
/// the long way then overwrites all of it and reports any error.
#[inline]
fn put_compact(rec: &mut Record, layout: &Layout, mut values: &[u8]) -> Option<bool> {
    // A layout of this call site read from a postcard record may name its
    // fields in another order.
    if !layout.by_position {
        return None;
    }
    let mut slots = rec.fields.reuse(layout.live);
    let mut message = false;
    for &(_, pos) in &layout.entries {
        let b = &mut values;
        let read = if pos == MESSAGE {
            message = true;
            compact::visit_value(b, MessageText(&mut rec.message))
        } else {
            compact::visit_value(b, JsonSlot(slots.get(usize::from(pos))?))
        };
        read.ok()?;
    }
    values.is_empty().then_some(message)
}

/// [`put_fields`], the short way ([`put_compact`]) when it applies, in
/// line: an event's call of `put_fields` and its `Result` in memory cost
/// ~30 instructions.
#[inline(always)]
fn put_event_fields(
    rec: &mut Record,
    names: &[String],
    fields: &wire::FieldIter<'_>,
    layout: &mut Layout,
    site: Site,
) -> Result<Put, CutOff> {
    if layout.usable_for(site) {
        if let Some(message) = fields
            .compact_values()
            .and_then(|v| put_compact(rec, layout, v))
        {
            return Ok(Put {
                message,
                full: layout.full,
            });
        }
    }
    put_fields(rec, names, fields, layout, site)
}

/// Put the decoded `fields` of a record of call site `site` into `rec`,
/// naming indexed ones from `names`, and record where they went in
/// `layout`. When `layout` is of the same call site, fields in its order
/// overwrite the values at its positions.
fn put_fields(
    rec: &mut Record,
    names: &[String],
    start: &wire::FieldIter<'_>,
    layout: &mut Layout,
    site: Site,
) -> Result<Put, CutOff> {
    let mut in_place = layout.usable_for(site);
    // One loop for both ways, with one call of the (inlined) decoder.
    let mut fields = start.clone();
    let mut message;
    let mut seen;
    'again: loop {
        message = false;
        seen = 0u64;
        if in_place {
            rec.fields.reuse(layout.live);
        } else {
            rec.fields.clear();
            layout.site = None;
            layout.entries.clear();
            layout.ok = true;
        }
        let mut k = 0;
        // The value is only ever borrowed where the decoder wrote it:
        // copying it (32 bytes, read back with wider loads than it was
        // written with) stalls on store forwarding (perf: ~8% of the
        // drain's time on one such copy).
        let mut value = Value::Bool(false);
        while let Some(key) = fields.next_into(&mut value) {
            let v = &value;
            let idx = match key {
                Key::Idx(i) => Some(i),
                Key::Named(_) => None,
            };
            if in_place {
                let want = layout.entries.get(k).copied();
                k += 1;
                let written = match (idx, want) {
                    (Some(i), Some((idx, pos))) if i == idx => {
                        if pos == MESSAGE {
                            set_message(&mut rec.message, v);
                            message = true;
                            true
                        } else if let Some(slot) = rec.fields.value_mut(usize::from(pos)) {
                            set_json(slot, v);
                            true
                        } else {
                            false
                        }
                    }
                    _ => false,
                };
                if written {
                    continue;
                }
                // Another order or other fields: from scratch.
                in_place = false;
                fields = start.clone();
                continue 'again;
            }
            let name: std::borrow::Cow<'_, str> = match key {
                Key::Idx(i) => match names.get(usize::from(i)) {
                    Some(n) => {
                        layout.entries.push((i, 0));
                        seen |= 1u64.checked_shl(u32::from(i)).unwrap_or(0);
                        n.as_str().into()
                    }
                    None => {
                        layout.ok = false;
                        format!("field{i}").into()
                    }
                },
                Key::Named(n) => {
                    layout.ok = false;
                    n.into()
                }
            };
            if name == "message" {
                set_message(&mut rec.message, v);
                message = true;
            } else {
                set_json(rec.fields.slot(&name), v);
            }
        }
        if in_place && k != layout.entries.len() {
            in_place = false;
            fields = start.clone();
            continue 'again;
        }
        break;
    }
    fields.finish()?;
    if in_place {
        return Ok(Put {
            message,
            full: layout.full,
        });
    }
    // Positions are final only now (a later key can sort before an earlier).
    let mut ok = layout.ok;
    for e in layout.entries.iter_mut() {
        let name = names[usize::from(e.0)].as_str();
        e.1 = if name == "message" {
            MESSAGE
        } else if let Some(p) = rec
            .fields
            .position(name)
            .and_then(|p| u16::try_from(p).ok())
        {
            p
        } else {
            ok = false;
            MESSAGE
        };
    }
    layout.ok = ok;
    layout.live = rec.fields.len();
    // More than 64 names: not worth tracking which came.
    let all = 1u64.checked_shl(names.len() as u32).map(|b| b - 1);
    layout.full = layout.ok && all == Some(seen);
    layout.by_position = (0..).zip(&layout.entries).all(|(k, e)| e.0 == k);
    layout.site = Some(site);
    Ok(Put {
        message,
        full: layout.full,
    })
}

fn nonzero(id: u64) -> Option<ScopeId> {
    (id != 0).then_some(ScopeId(id))
}

/// Whose strings a recycled record holds: its `service` and `host` are
/// those of connection `conn`, its `name`, `target` and `file` those of
/// call site `callsite` of that connection (with `name` if `named`). A
/// record converted from the same call site again skips copying them
/// (~200 instructions a record); a call site's definition never changes
/// once read. `callsite` `None`: a scope's record whose call site is not
/// known (those strings are absent).
///
/// The call site, whether it is known and `named` packed in one word: the
/// drain compares a record's `Site` two or three times (~10 instructions
/// a record fewer than comparing the three fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Site {
    conn: u64,
    /// `callsite | known << 32 | named << 33`.
    at: u64,
}

impl Site {
    fn new(conn: u64, callsite: Option<u32>, named: bool) -> Site {
        let known = callsite.map_or(0, |c| u64::from(c) | 1 << 32);
        Site {
            conn,
            at: known | u64::from(named) << 33,
        }
    }
}

/// An event's head, as [`Head::Event`] (the trace borrowed: copied only in
/// a scope).
#[derive(Clone, Copy)]
struct EventHead<'t> {
    callsite: u32,
    ts: u64,
    tid: u32,
    scope: u64,
    trace: Option<&'t wire::TraceId>,
}

/// Fill what is known about a scope from its open and call site.
/// `same`: as for [`set_site`].
fn describe_scope(r: &mut Record, open: Option<OpenScope>, def: Option<&OwnedDef>, same: bool) {
    if let Some(o) = open {
        r.trace_id = Some(TraceId(o.trace));
        r.parent_id = nonzero(o.parent);
    }
    set_site(r, def, true, same);
}

/// Level, name (scope records only), target, file and line from a call
/// site; what is not known is left out. `same`: the record already holds
/// this call site's strings.
#[inline]
fn set_site(r: &mut Record, def: Option<&OwnedDef>, named: bool, same: bool) {
    if let Some(d) = def {
        r.level = d.level;
    }
    r.line = def.and_then(|d| d.line);
    if same {
        return;
    }
    set_opt_str(&mut r.name, def.filter(|_| named).map(|d| d.name.as_str()));
    set_opt_str(&mut r.target, def.map(|d| d.target.as_str()));
    set_opt_str(&mut r.file, def.and_then(|d| d.file.as_deref()));
}

impl Context {
    /// A record of this client with nothing but the basics.
    pub(crate) fn base(&self, env: &Env<'_>, kind: Kind, ts: Timestamp, level: Level) -> Record {
        let mut r = Record::new(kind, ts, level);
        self.fill_base(&mut r, env, kind, ts, level, false);
        r
    }

    /// Overwrite `r` with the basics of a record of this client, keeping
    /// its allocations; its target, file, name and message are the
    /// caller's to set. `same`: it holds this client's service and host.
    #[inline(always)]
    fn fill_base(
        &self,
        r: &mut Record,
        env: &Env<'_>,
        kind: Kind,
        ts: Timestamp,
        level: Level,
        same: bool,
    ) {
        r.kind = kind;
        r.ts = ts;
        r.level = level;
        if !same {
            set_str(&mut r.service, &self.identity.service);
            set_str(&mut r.host, env.host);
        }
        r.pid = self.identity.pid;
        r.pid_unverified = self.identity.pid_unverified;
        r.tid = None;
        r.line = None;
        r.fields.clear();
        r.trace_id = None;
        r.scope_id = None;
        r.parent_id = None;
        r.remote_parent = false;
        r.outcome = None;
        r.duration_ns = None;
        r.origin = None;
        r.route_key = None;
    }

    /// The [`RouteKey`] of a record of call site `callsite` whose fields
    /// were the call site's (`full`), else none.
    fn route_key(&self, full: bool, callsite: u32, kind: Kind) -> Option<RouteKey> {
        full.then_some(RouteKey {
            conn: self.id,
            callsite,
            kind,
        })
    }

    fn ts(&self, env: &Env<'_>, raw: u64) -> Timestamp {
        env.clock.to_timestamp(raw, self.identity.clock_tsc)
    }

    /// An event into `r` (see [`Context::convert`]); `held`: whose strings
    /// `r` holds.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn event(
        &mut self,
        scopes: &Scopes,
        env: &Env<'_>,
        r: &mut Record,
        slot: &mut Held,
        held: Option<Site>,
        head: EventHead<'_>,
        fields: &wire::FieldIter<'_>,
    ) -> Result<(), CutOff> {
        let same_conn = held.is_some_and(|s| s.conn == self.id);
        self.fill_base(
            r,
            env,
            Kind::Event,
            self.ts(env, head.ts),
            Level::Info,
            same_conn,
        );
        let now = Site::new(self.id, Some(head.callsite), false);
        let def = self
            .table
            .def(head.callsite, env.limits.max_defs_per_client)?;
        set_site(r, Some(def), false, held == Some(now));
        r.tid = Some(head.tid);
        let put = put_event_fields(r, &def.fields, fields, &mut slot.layout, now)?;
        if !put.message {
            set_opt_str(&mut r.message, def.message.as_deref());
        }
        r.route_key = self.route_key(put.full, head.callsite, Kind::Event);
        if head.scope != 0 {
            r.scope_id = Some(ScopeId(head.scope));
            let open = scopes.open.get(&head.scope);
            r.trace_id = head.trace.copied().or(open.map(|o| o.trace)).map(TraceId);
            r.parent_id = open.and_then(|o| nonzero(o.parent));
        }
        slot.site = Some(now);
        Ok(())
    }

    /// Decode one payload (a private copy) into `r`, overwriting all of it
    /// (a recycled record: its strings' allocations are reused, and not
    /// even rewritten where `site` says they hold the same), and track the
    /// process's open `scopes`. An error cuts the client off (and leaves
    /// `site` empty: `r` is then half written).
    pub(crate) fn convert(
        &mut self,
        scopes: &mut Scopes,
        env: &Env<'_>,
        payload: &[u8],
        r: &mut Record,
        slot: &mut Held,
    ) -> Result<(), CutOff> {
        let held = slot.site.take();
        // The common record, a compact event, decoded in line: its head
        // goes from the bytes to the record in registers (through
        // `decode_head`'s `Result` in memory, ~40 instructions a record).
        // Anything else, an undecodable one too, takes the long way.
        if let Some((&compact::KIND, b)) = payload.split_first() {
            if let Ok((
                Head::Event {
                    callsite,
                    ts,
                    tid,
                    scope,
                    trace,
                },
                fields,
            )) = compact::decode_head(b)
            {
                let head = EventHead {
                    callsite,
                    ts,
                    tid,
                    scope,
                    trace: trace.as_ref(),
                };
                return self.event(scopes, env, r, slot, held, head, &fields);
            }
        }
        let same_conn = held.is_some_and(|s| s.conn == self.id);
        let key = |callsite: Option<u32>, named| Site::new(self.id, callsite, named);
        // Borrowed where decode_head returned them: moving them out of the
        // `Result` copied them with wider loads than they were written
        // with (a store-forwarding stall, ~20% of this function's samples).
        let decoded = wire::decode_head(payload);
        let (head, fields) = match &decoded {
            Ok((head, fields)) => (head, fields),
            Err(e) => return Err(e.clone().into()),
        };
        let max_defs = env.limits.max_defs_per_client;
        match *head {
            Head::Event {
                callsite,
                ts,
                tid,
                scope,
                // Read only in a scope (its copy stalled like the head's).
                ref trace,
            } => {
                let head = EventHead {
                    callsite,
                    ts,
                    tid,
                    scope,
                    trace: trace.as_ref(),
                };
                self.event(scopes, env, r, slot, held, head, fields)?;
            }
            Head::ScopeOpen {
                callsite,
                ts,
                tid,
                scope,
                parent,
                trace,
                remote_parent,
            } => {
                self.fill_base(
                    r,
                    env,
                    Kind::ScopeOpen,
                    self.ts(env, ts),
                    Level::Info,
                    same_conn,
                );
                let now = key(Some(callsite), true);
                let def = self.table.def(callsite, max_defs)?;
                set_site(r, Some(def), true, held == Some(now));
                r.tid = Some(tid);
                let put = put_fields(r, &def.fields, fields, &mut slot.layout, now)?;
                if !put.message {
                    r.message = None;
                }
                r.route_key = self.route_key(put.full, callsite, Kind::ScopeOpen);
                r.scope_id = Some(ScopeId(scope));
                r.parent_id = nonzero(parent);
                r.trace_id = Some(TraceId(trace));
                r.remote_parent = remote_parent;
                let open = OpenScope {
                    raw_ts: ts,
                    callsite,
                    trace,
                    parent,
                    tid,
                };
                if scopes.open.len() < env.limits.max_open_scopes_per_client
                    || scopes.open.contains_key(&scope)
                {
                    scopes.open.insert(scope, open);
                } else {
                    scopes.untracked += 1;
                }
                slot.site = Some(now);
            }
            Head::ScopeRecord { scope, ts } => {
                self.fill_base(
                    r,
                    env,
                    Kind::ScopeRecord,
                    self.ts(env, ts),
                    Level::Info,
                    same_conn,
                );
                r.scope_id = Some(ScopeId(scope));
                let open = scopes.open.get(&scope).copied();
                // Opened maybe on another connection of the process (a
                // reconnect): this one may not have read that call site yet.
                let def = open.and_then(|o| self.table.def(o.callsite, max_defs).ok());
                let now = key(open.filter(|_| def.is_some()).map(|o| o.callsite), true);
                describe_scope(r, open, def, held == Some(now));
                let names = def.map_or(&[][..], |d| &d.fields[..]);
                if !put_fields(r, names, fields, &mut slot.layout, now)?.message {
                    r.message = None;
                }
                slot.site = Some(now);
            }
            Head::ScopeClose {
                scope,
                ts,
                tid,
                outcome,
            } => {
                // Its fields (none are written) must still decode.
                for f in fields.clone() {
                    f?;
                }
                self.fill_base(
                    r,
                    env,
                    Kind::ScopeClose,
                    self.ts(env, ts),
                    Level::Info,
                    same_conn,
                );
                r.message = None;
                r.scope_id = Some(ScopeId(scope));
                r.tid = Some(tid);
                r.outcome = Some(match outcome {
                    wire::Outcome::Ok => Outcome::Ok,
                    wire::Outcome::Error => Outcome::Error,
                });
                let open = scopes.open.remove(&scope);
                // Opened maybe on another connection of the process (a
                // reconnect): this one may not have read that call site yet.
                let def = open.and_then(|o| self.table.def(o.callsite, max_defs).ok());
                let now = key(open.filter(|_| def.is_some()).map(|o| o.callsite), true);
                describe_scope(r, open, def, held == Some(now));
                if let Some(o) = open {
                    r.duration_ns =
                        Some(env.clock.duration_ns(o.raw_ts, ts, self.identity.clock_tsc));
                }
                slot.site = Some(now);
            }
        }
        Ok(())
    }

    /// `scope_close` records (outcome `abandoned`) for every scope still
    /// open; forgets them.
    pub(crate) fn abandon_scopes(&mut self, scopes: &mut Scopes, env: &Env<'_>, out: &mut Batch) {
        let now = Timestamp::now();
        let mut open: Vec<(u64, OpenScope)> = scopes.open.drain().collect();
        open.sort_by_key(|(_, o)| o.raw_ts);
        for (scope, o) in open {
            let mut r = self.base(env, Kind::ScopeClose, now, Level::Info);
            r.scope_id = Some(ScopeId(scope));
            r.tid = Some(o.tid);
            r.outcome = Some(Outcome::Abandoned);
            // Opened maybe on another connection of the process, which
            // left first: this one may not have read that call site yet.
            let def = self
                .table
                .def(o.callsite, env.limits.max_defs_per_client)
                .ok();
            describe_scope(&mut r, Some(o), def, false);
            let opened = self.ts(env, o.raw_ts);
            r.duration_ns = Some(now.0.saturating_sub(opened.0));
            out.push(r);
        }
    }

    /// A `loss` record: `lost` records dropped by ring `index` of thread `tid`.
    pub(crate) fn loss(&self, env: &Env<'_>, lost: u64, index: u32, tid: u32) -> Record {
        let mut r = self.base(env, Kind::Loss, Timestamp::now(), Level::Warn);
        r.tid = Some(tid);
        r.target = Some("distlog".into());
        r.message = Some(format!(
            "{lost} records lost by pid {} thread {tid} (ring full)",
            self.identity.pid
        ));
        r.fields.insert("lost".into(), lost.into());
        r.fields.insert("ring".into(), index.into());
        r
    }

    /// A `control` record about this client.
    pub(crate) fn control(&self, env: &Env<'_>, level: Level, message: String) -> Record {
        let mut r = self.base(env, Kind::Control, Timestamp::now(), level);
        r.target = Some("distlogd".into());
        r.message = Some(message);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use distlog::wire::Field;
    use serde_json::json;

    #[test]
    fn values() {
        assert_eq!(json_value(&Value::I64(i64::MIN)), json!(i64::MIN));
        assert_eq!(json_value(&Value::U64(u64::MAX)), json!(u64::MAX));
        assert_eq!(json_value(&Value::I128(-5)), json!(-5));
        assert_eq!(
            json_value(&Value::I128(i128::from(u64::MAX))),
            json!(u64::MAX)
        );
        assert_eq!(
            json_value(&Value::I128(i128::MIN)),
            json!(i128::MIN.to_string())
        );
        assert_eq!(
            json_value(&Value::U128(u128::MAX)),
            json!(u128::MAX.to_string())
        );
        assert_eq!(json_value(&Value::F64(1.5)), json!(1.5));
        assert_eq!(json_value(&Value::F64(f64::NAN)), json!("NaN"));
        assert_eq!(json_value(&Value::F64(f64::NEG_INFINITY)), json!("-inf"));
        assert_eq!(
            json_value(&Value::Debug("Foo { a: 1 }")),
            json!("Foo { a: 1 }")
        );
    }

    /// Encode `fields` after a scope record's head and put them into `r`.
    fn put(r: &mut Record, names: &[String], layout: &mut Layout, fields: &[Field<'_>]) -> Put {
        let mut buf = [0u8; 256];
        let mut e = wire::Encoder::new(&mut buf, &Head::ScopeRecord { scope: 1, ts: 2 });
        for f in fields {
            e.field(f);
        }
        let (_, iter) = wire::decode_head(e.finish().unwrap()).unwrap();
        r.fields.clear();
        let site = Site::new(1, Some(0), false);
        put_fields(r, names, &iter, layout, site).unwrap()
    }

    #[test]
    fn field_names() {
        let names = vec!["message".to_owned(), "a".to_owned()];
        let mut layout = Layout::default();
        let mut put =
            |r: &mut Record, fields: &[Field<'_>]| put(r, &names, &mut layout, fields).message;
        let mut r = Record::new(Kind::Event, Timestamp(0), Level::Info);
        let fields = [
            Field::Named("z", Value::U128(u128::MAX)),
            Field::Idx(0, Value::Debug("hi")),
            Field::Idx(1, Value::Bool(true)),
            Field::Idx(9, Value::I64(3)),
            Field::Named("k", Value::Str("v")),
            Field::Named("k", Value::Str("w")),
        ];
        assert!(put(&mut r, &fields));
        assert_eq!(r.message.as_deref(), Some("hi"));
        let want = json!({"a": true, "field9": 3, "k": "w", "z": u128::MAX.to_string()});
        assert_eq!(serde_json::to_value(&r.fields).unwrap(), want);
        // A recycled record: the same fields again, then others, in place.
        assert!(put(&mut r, &fields));
        assert_eq!(serde_json::to_value(&r.fields).unwrap(), want);
        assert!(!put(
            &mut r,
            &[
                Field::Named("z", Value::F64(f64::NAN)),
                Field::Named("k", Value::I128(-1)),
            ]
        ));
        assert_eq!(
            serde_json::to_value(&r.fields).unwrap(),
            json!({"k": -1, "z": "NaN"})
        );
        assert_eq!(r.fields.clone(), r.fields);
    }

    /// A recycled record of the same call site, whose fields take the
    /// positions the last ones took when they come in the same order, ends
    /// up as a fresh record would, whatever came before and now.
    #[test]
    fn fields_in_place_as_fresh() {
        let names: Vec<String> = ["message", "b", "a", "c", "b"].map(String::from).into();
        let v = |n: u64| Value::U64(n);
        let cases: Vec<Vec<Field<'_>>> = vec![
            vec![],
            vec![
                Field::Idx(0, Value::Str("m")),
                Field::Idx(1, v(1)),
                Field::Idx(2, v(2)),
                Field::Idx(3, v(3)),
            ],
            vec![
                Field::Idx(1, v(1)),
                Field::Idx(2, Value::Str("s")),
                Field::Idx(3, v(3)),
                Field::Idx(0, Value::Str("m")),
            ],
            vec![
                Field::Idx(3, v(3)),
                Field::Idx(2, v(2)),
                Field::Idx(1, v(1)),
            ],
            vec![Field::Idx(1, v(1)), Field::Idx(2, v(2))],
            vec![
                Field::Idx(1, v(1)),
                Field::Idx(2, v(2)),
                Field::Idx(3, v(3)),
                Field::Idx(4, v(4)),
            ],
            vec![
                Field::Idx(0, Value::Str("m")),
                Field::Idx(1, v(1)),
                Field::Idx(2, v(2)),
                Field::Idx(3, v(3)),
                Field::Idx(4, v(4)),
            ],
            vec![
                Field::Idx(1, v(1)),
                Field::Idx(2, v(2)),
                Field::Idx(9, v(9)),
            ],
            vec![Field::Idx(1, v(1)), Field::Named("a", v(7))],
            vec![
                Field::Idx(2, Value::Bool(false)),
                Field::Idx(2, Value::Str("again")),
            ],
        ];
        for (i, first) in cases.iter().enumerate() {
            for (j, then) in cases.iter().enumerate() {
                let mut r = Record::new(Kind::Event, Timestamp(0), Level::Info);
                let mut layout = Layout::default();
                put(&mut r, &names, &mut layout, first);
                r.message = None;
                let got = put(&mut r, &names, &mut layout, then);
                let mut fresh = Record::new(Kind::Event, Timestamp(0), Level::Info);
                let want = put(&mut fresh, &names, &mut Layout::default(), then);
                assert_eq!(
                    (got.message, got.full),
                    (want.message, want.full),
                    "{i} then {j}"
                );
                assert_eq!(r.fields, fresh.fields, "{i} then {j}");
                if got.message {
                    assert_eq!(r.message, fresh.message, "{i} then {j}");
                }
                // And once more, now surely in place.
                let again = put(&mut r, &names, &mut layout, then);
                assert_eq!(
                    (again.message, again.full),
                    (want.message, want.full),
                    "{i} then {j} again"
                );
                assert_eq!(r.fields, fresh.fields, "{i} then {j} again");
            }
        }
        // Only the full lists (each name once or more, nothing else) are full.
        let full: Vec<bool> = cases
            .iter()
            .map(|c| {
                put(
                    &mut Record::new(Kind::Event, Timestamp(0), Level::Info),
                    &names,
                    &mut Layout::default(),
                    c,
                )
                .full
            })
            .collect();
        assert_eq!(
            full,
            [false, false, false, false, false, false, true, false, false, false]
        );
    }
}

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

use distlog::wire::{self, Field, Head, Level, Value};

use crate::client::{Context, CutOff, OpenScope, Scopes};
use crate::clock::Clock;
use crate::record::{Kind, Outcome, Record, ScopeId, TraceId};
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

/// A wire value as message text.
fn text(v: &Value<'_>) -> String {
    match *v {
        Value::Str(s) | Value::Debug(s) => s.to_owned(),
        Value::I64(n) => n.to_string(),
        Value::U64(n) => n.to_string(),
        Value::F64(x) => x.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::I128(n) => n.to_string(),
        Value::U128(n) => n.to_string(),
    }
}

/// Put `fields` into `rec`, naming indexed ones from `names`.
fn put_fields(rec: &mut Record, names: &[String], fields: &[Field<'_>]) {
    for f in fields {
        let (name, v): (std::borrow::Cow<'_, str>, &Value<'_>) = match f {
            Field::Idx(i, v) => match names.get(usize::from(*i)) {
                Some(n) => (n.as_str().into(), v),
                None => (format!("field{i}").into(), v),
            },
            Field::Named(n, v) => ((*n).into(), v),
        };
        if name == "message" {
            rec.message = Some(text(v));
        } else {
            rec.fields.insert(name.into_owned(), json_value(v));
        }
    }
}

fn nonzero(id: u64) -> Option<ScopeId> {
    (id != 0).then_some(ScopeId(id))
}

impl Context {
    /// A record of this client with nothing but the basics.
    pub(crate) fn base(&self, env: &Env<'_>, kind: Kind, ts: Timestamp, level: Level) -> Record {
        let mut r = Record::new(kind, ts, level);
        r.service.clone_from(&self.identity.service);
        env.host.clone_into(&mut r.host);
        r.pid = self.identity.pid;
        r.pid_unverified = self.identity.pid_unverified;
        r
    }

    fn ts(&self, env: &Env<'_>, raw: u64) -> Timestamp {
        env.clock.to_timestamp(raw, self.identity.clock_tsc)
    }

    /// Decode one payload (a private copy) into a record, tracking the
    /// process's open `scopes`. An error cuts the client off.
    pub(crate) fn convert(
        &mut self,
        scopes: &mut Scopes,
        env: &Env<'_>,
        payload: &[u8],
    ) -> Result<Record, CutOff> {
        let frame = wire::decode(payload)?;
        let max_defs = env.limits.max_defs_per_client;
        match frame.head {
            Head::Event {
                callsite,
                ts,
                tid,
                scope,
                trace,
            } => {
                let mut r = self.base(env, Kind::Event, self.ts(env, ts), Level::Info);
                let def = self.table.def(callsite, max_defs)?;
                r.level = def.level;
                r.target = Some(def.target.clone());
                r.file.clone_from(&def.file);
                r.line = def.line;
                r.tid = Some(tid);
                put_fields(&mut r, &def.fields, &frame.fields);
                if r.message.is_none() {
                    r.message.clone_from(&def.message);
                }
                if scope != 0 {
                    r.scope_id = Some(ScopeId(scope));
                    let open = scopes.open.get(&scope);
                    r.trace_id = trace.or(open.map(|o| o.trace)).map(TraceId);
                    r.parent_id = open.and_then(|o| nonzero(o.parent));
                }
                Ok(r)
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
                let mut r = self.base(env, Kind::ScopeOpen, self.ts(env, ts), Level::Info);
                let def = self.table.def(callsite, max_defs)?;
                r.level = def.level;
                r.name = Some(def.name.clone());
                r.target = Some(def.target.clone());
                r.file.clone_from(&def.file);
                r.line = def.line;
                r.tid = Some(tid);
                put_fields(&mut r, &def.fields, &frame.fields);
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
                Ok(r)
            }
            Head::ScopeRecord { scope, ts } => {
                let mut r = self.base(env, Kind::ScopeRecord, self.ts(env, ts), Level::Info);
                r.scope_id = Some(ScopeId(scope));
                let open = scopes.open.get(&scope).copied();
                let def = open.and_then(|o| self.table.known(o.callsite));
                self.describe_scope(&mut r, open, def);
                put_fields(&mut r, def.map_or(&[], |d| &d.fields[..]), &frame.fields);
                Ok(r)
            }
            Head::ScopeClose {
                scope,
                ts,
                tid,
                outcome,
            } => {
                let mut r = self.base(env, Kind::ScopeClose, self.ts(env, ts), Level::Info);
                r.scope_id = Some(ScopeId(scope));
                r.tid = Some(tid);
                r.outcome = Some(match outcome {
                    wire::Outcome::Ok => Outcome::Ok,
                    wire::Outcome::Error => Outcome::Error,
                });
                let open = scopes.open.remove(&scope);
                let def = open.and_then(|o| self.table.known(o.callsite));
                self.describe_scope(&mut r, open, def);
                if let Some(o) = open {
                    r.duration_ns =
                        Some(env.clock.duration_ns(o.raw_ts, ts, self.identity.clock_tsc));
                }
                Ok(r)
            }
        }
    }

    /// Fill what is known about a scope from its open and call site.
    fn describe_scope(
        &self,
        r: &mut Record,
        open: Option<OpenScope>,
        def: Option<&distlog::table::OwnedDef>,
    ) {
        if let Some(o) = open {
            r.trace_id = Some(TraceId(o.trace));
            r.parent_id = nonzero(o.parent);
        }
        if let Some(d) = def {
            r.level = d.level;
            r.name = Some(d.name.clone());
            r.target = Some(d.target.clone());
            r.file.clone_from(&d.file);
            r.line = d.line;
        }
    }

    /// `scope_close` records (outcome `abandoned`) for every scope still
    /// open; forgets them.
    pub(crate) fn abandon_scopes(&self, scopes: &mut Scopes, env: &Env<'_>, out: &mut Vec<Record>) {
        let now = Timestamp::now();
        let mut open: Vec<(u64, OpenScope)> = scopes.open.drain().collect();
        open.sort_by_key(|(_, o)| o.raw_ts);
        for (scope, o) in open {
            let mut r = self.base(env, Kind::ScopeClose, now, Level::Info);
            r.scope_id = Some(ScopeId(scope));
            r.tid = Some(o.tid);
            r.outcome = Some(Outcome::Abandoned);
            let def = self.table.known(o.callsite);
            self.describe_scope(&mut r, Some(o), def);
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

    #[test]
    fn field_names() {
        let mut r = Record::new(Kind::Event, Timestamp(0), Level::Info);
        let names = vec!["message".to_owned(), "a".to_owned()];
        put_fields(
            &mut r,
            &names,
            &[
                Field::Idx(0, Value::Debug("hi")),
                Field::Idx(1, Value::Bool(true)),
                Field::Idx(9, Value::I64(3)),
                Field::Named("k", Value::Str("v")),
            ],
        );
        assert_eq!(r.message.as_deref(), Some("hi"));
        assert_eq!(
            serde_json::Value::Object(r.fields),
            json!({"a": true, "field9": 3, "k": "v"})
        );
    }
}

//! The stored form of a record (schema 2): the columns SQL filters on, plus
//! a postcard blob of everything else.
//!
//! Schema 1 files kept the whole record as JSON text in the `json` column;
//! writing that JSON was ~15 % of ingest and made rows ~2.5× larger (the
//! field names and hex ids spelled out), and bytes written are what bounds
//! ingest on a real disk. Schema 2 puts a [`Body`] blob in the same column:
//! SQLite types values per row, so one file may hold both, and the reader
//! tells them apart by the value's type (text: JSON, blob: this).
//!
//! The blob starts with a version byte ([`VERSION`]); a blob of another
//! version, or one that does not decode, is skipped by the reader like an
//! unparseable JSON row. Enums are stored as explicit numbers (not postcard's
//! variant index) so that reordering a Rust enum cannot change what old
//! files mean.

use std::borrow::Cow;

use distlog::wire::Level;
use serde::{Deserialize, Serialize};

use crate::record::{Fields, Kind, Outcome, Record, ScopeId, TraceId};
use crate::timestamp::Timestamp;

/// First byte of every schema 2 blob.
pub(crate) const VERSION: u8 = 1;

/// A field value. Arrays and objects (rare in records) keep their JSON text.
#[derive(Serialize, Deserialize)]
enum Val<'a> {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(#[serde(borrow)] Cow<'a, str>),
    Json(String),
}

/// The part of a record that has no column of its own.
#[derive(Serialize, Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    host: Cow<'a, str>,
    pid_unverified: bool,
    tid: Option<u32>,
    #[serde(borrow)]
    target: Option<Cow<'a, str>>,
    #[serde(borrow)]
    file: Option<Cow<'a, str>>,
    line: Option<u32>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    fields: Vec<(Cow<'a, str>, Val<'a>)>,
    trace_id: Option<[u8; 16]>,
    parent_id: Option<u64>,
    remote_parent: bool,
    /// 1 ok, 2 error, 3 abandoned.
    outcome: Option<u8>,
    duration_ns: Option<u64>,
}

/// The columns of a row (schema 1 and 2 alike), as the reader gets them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Columns<'a> {
    pub ts: i64,
    pub kind: &'a str,
    pub level: i64,
    pub service: &'a str,
    pub pid: i64,
    pub scope: Option<i64>,
}

fn borrow(s: &Option<String>) -> Option<Cow<'_, str>> {
    s.as_deref().map(Cow::Borrowed)
}

/// Append the blob of `r` to `out` (cleared first).
pub(crate) fn encode(r: &Record, out: &mut Vec<u8>) {
    let fields = r
        .fields
        .iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::Null => Val::Null,
                serde_json::Value::Bool(b) => Val::Bool(*b),
                serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                    (Some(i), _, _) => Val::I64(i),
                    (_, Some(u), _) => Val::U64(u),
                    (_, _, Some(f)) => Val::F64(f),
                    _ => Val::Json(n.to_string()),
                },
                serde_json::Value::String(s) => Val::Str(Cow::Borrowed(s)),
                other => Val::Json(other.to_string()),
            };
            (Cow::Borrowed(k.as_str()), v)
        })
        .collect();
    let body = Body {
        host: Cow::Borrowed(&r.host),
        pid_unverified: r.pid_unverified,
        tid: r.tid,
        target: borrow(&r.target),
        file: borrow(&r.file),
        line: r.line,
        name: borrow(&r.name),
        message: borrow(&r.message),
        fields,
        trace_id: r.trace_id.map(|t| t.0),
        parent_id: r.parent_id.map(|p| p.0),
        remote_parent: r.remote_parent,
        outcome: r.outcome.map(|o| match o {
            Outcome::Ok => 1,
            Outcome::Error => 2,
            Outcome::Abandoned => 3,
        }),
        duration_ns: r.duration_ns,
    };
    out.clear();
    out.push(VERSION);
    // Writing into a Vec fails only on allocation failure, which aborts
    // anyway; an empty blob would be skipped by the reader.
    if postcard::to_io(&body, &mut *out).is_err() {
        out.clear();
    }
}

/// The record of a schema 2 row; `None` if the blob is not one we wrote.
pub(crate) fn decode(c: Columns<'_>, blob: &[u8]) -> Option<Record> {
    let (&v, rest) = blob.split_first()?;
    if v != VERSION {
        return None;
    }
    let b: Body<'_> = postcard::from_bytes(rest).ok()?;
    let kind = kind_from_name(c.kind);
    let level = Level::from_u8(u8::try_from(c.level).ok()?)?;
    let mut r = Record::new(kind, Timestamp(u64::try_from(c.ts).ok()?), level);
    r.service = c.service.to_owned();
    r.host = b.host.into_owned();
    r.pid = u32::try_from(c.pid).ok()?;
    r.pid_unverified = b.pid_unverified;
    r.tid = b.tid;
    r.target = b.target.map(Cow::into_owned);
    r.file = b.file.map(Cow::into_owned);
    r.line = b.line;
    r.name = b.name.map(Cow::into_owned);
    r.message = b.message.map(Cow::into_owned);
    let mut fields = Fields::new();
    for (k, v) in b.fields {
        let v = match v {
            Val::Null => serde_json::Value::Null,
            Val::Bool(b) => b.into(),
            Val::I64(i) => i.into(),
            Val::U64(u) => u.into(),
            Val::F64(f) => f.into(),
            Val::Str(s) => s.into_owned().into(),
            Val::Json(text) => serde_json::from_str(&text).ok()?,
        };
        fields.insert(k.into_owned(), v);
    }
    r.fields = fields;
    r.trace_id = b.trace_id.map(TraceId);
    r.scope_id = c.scope.map(|s| ScopeId(s as u64));
    r.parent_id = b.parent_id.map(ScopeId);
    r.remote_parent = b.remote_parent;
    r.outcome = match b.outcome {
        None => None,
        Some(1) => Some(Outcome::Ok),
        Some(2) => Some(Outcome::Error),
        Some(3) => Some(Outcome::Abandoned),
        Some(_) => return None,
    };
    r.duration_ns = b.duration_ns;
    Some(r)
}

/// The schema name of a kind (`event`, `scope_open`, ...), as stored in the
/// `kind` column.
pub(crate) fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Event => "event",
        Kind::ScopeOpen => "scope_open",
        Kind::ScopeRecord => "scope_record",
        Kind::ScopeClose => "scope_close",
        Kind::Loss => "loss",
        Kind::Control => "control",
        Kind::Other => "other",
    }
}

fn kind_from_name(s: &str) -> Kind {
    [
        Kind::Event,
        Kind::ScopeOpen,
        Kind::ScopeRecord,
        Kind::ScopeClose,
        Kind::Loss,
        Kind::Control,
    ]
    .into_iter()
    .find(|k| kind_name(*k) == s)
    .unwrap_or(Kind::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut r = Record::new(Kind::ScopeClose, Timestamp(1_764_000_000_123), Level::Warn);
        r.service = "svc".into();
        r.host = "h".into();
        r.pid = 42;
        r.pid_unverified = true;
        r.tid = Some(7);
        r.target = Some("a::b".into());
        r.file = Some("f.rs".into());
        r.line = Some(9);
        r.name = Some("scope".into());
        r.message = Some("héllo \"x\"".into());
        for (k, v) in [
            ("n", serde_json::json!(null)),
            ("b", serde_json::json!(true)),
            ("i", serde_json::json!(-3)),
            ("u", serde_json::json!(u64::MAX)),
            ("f", serde_json::json!(1.5)),
            ("s", serde_json::json!("text")),
            ("a", serde_json::json!([1, "two", {"three": 3}])),
        ] {
            r.fields.insert(k.into(), v);
        }
        r.trace_id = Some(TraceId([7; 16]));
        r.scope_id = Some(ScopeId(u64::MAX));
        r.parent_id = Some(ScopeId(5));
        r.remote_parent = true;
        r.outcome = Some(Outcome::Abandoned);
        r.duration_ns = Some(1000);
        let mut blob = Vec::new();
        encode(&r, &mut blob);
        let c = Columns {
            ts: r.ts.0 as i64,
            kind: kind_name(r.kind),
            level: r.level as i64,
            service: &r.service,
            pid: r.pid.into(),
            scope: r.scope_id.map(|s| s.0 as i64),
        };
        let back = decode(c, &blob).expect("decodes");
        assert_eq!(back.to_json_line(), r.to_json_line());
        // Another version, or garbage, is refused rather than misread.
        blob[0] = VERSION + 1;
        assert!(decode(c, &blob).is_none());
        assert!(decode(c, &[VERSION, 0xff, 0xff]).is_none());
        assert!(decode(c, &[]).is_none());
    }
}

//! The record: what every sink receives and what `--stdout` prints.
//!
//! One [`Record`] per event, scope transition, loss report or control
//! message. It is the schema of the JSON lines on stdout and of every later
//! sink (store, tail, collector), so field names are part of the interface:
//!
//! | field | type | when |
//! |---|---|---|
//! | `kind` | `"event"`, `"scope_open"`, `"scope_record"`, `"scope_close"`, `"loss"`, `"control"` | always |
//! | `ts` | RFC 3339 UTC, 9 fractional digits | always |
//! | `level` | `"ERROR"` .. `"TRACE"` | always |
//! | `service`, `host`, `pid` | string, string, number | always |
//! | `pid_unverified` | `true` | the kernel reported no pid (another pid namespace): `pid` is what the client said |
//! | `tid` | number | the thread that wrote it, when known |
//! | `target`, `file`, `line` | string, string, number | from the call site, when known |
//! | `name` | string | scope records: the scope's name |
//! | `message` | string | the field named `message`, taken out of `fields` |
//! | `fields` | object | always (maybe empty); integers over the full `i64`/`u64` range, 128-bit integers as numbers when they fit 64 bits else as strings, floats (non-finite as the strings `"NaN"`, `"inf"`, `"-inf"`), booleans, strings; `Debug` values as strings |
//! | `trace_id` | 32 lowercase hex | in a scope |
//! | `scope_id` | 16 lowercase hex | in a scope |
//! | `parent_id` | 16 lowercase hex | the scope's parent, when it has one and it is known |
//! | `remote_parent` | `true` | scope opens whose parent lives in another process |
//! | `outcome` | `"ok"`, `"error"`, `"abandoned"` | `scope_close` |
//! | `duration_ns` | number | `scope_close`, when its open was seen |
//!
//! Absent values are left out of the JSON rather than written as `null`;
//! reading accepts both.

use std::fmt;

use distlog::wire::Level;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::timestamp::Timestamp;

/// Field values, by name: a map with the API (and the JSON, keys in byte
/// order) of the `serde_json::Map` it replaced.
///
/// Kept as a vector sorted by key, because records carry a handful of
/// fields and the drain thread fills millions a second: a lookup is a
/// binary search over a few entries, and [`Fields::clear`] keeps the
/// entries' strings as spares that the next record's fields reuse (no
/// allocation per field once the drain's records are recycled, see
/// `drain.rs`).
#[derive(Default)]
pub struct Fields {
    /// `entries[..len]`: the fields, sorted by key, keys unique.
    /// `entries[len..]`: spares, kept for their allocations.
    entries: Vec<(String, serde_json::Value)>,
    len: usize,
}

/// What `fields["missing"]` is, as for a `serde_json::Value`.
static NULL: serde_json::Value = serde_json::Value::Null;

impl Fields {
    /// No fields.
    pub fn new() -> Fields {
        Fields::default()
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn live(&self) -> &[(String, serde_json::Value)] {
        &self.entries[..self.len]
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.live()
            .binary_search_by(|(k, _)| key_cmp(k.as_bytes(), key.as_bytes()))
    }

    /// Where `key` is. A few fields are the rule: comparing lengths first
    /// rejects most keys without comparing bytes (the router asks every
    /// record for keys it rarely has).
    pub(crate) fn position(&self, key: &str) -> Option<usize> {
        if self.len > 16 {
            return self.find(key).ok();
        }
        self.live().iter().position(|(k, _)| k == key)
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.position(key).map(|i| &self.entries[i].1)
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    /// Set `key`; the value it had before.
    pub fn insert(&mut self, key: String, value: serde_json::Value) -> Option<serde_json::Value> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                self.len += 1;
                None
            }
        }
    }

    /// The value slot of `key` for `set` to overwrite, created (from a
    /// spare entry when there is one, whose value `set` overwrites in
    /// place: its string's allocation can be reused) if absent.
    pub(crate) fn slot(&mut self, key: &str) -> &mut serde_json::Value {
        // Fast path: call sites mostly list their fields in key order, so
        // a key usually goes at the end; a recycled record of the same call
        // site even has it there already, as a spare.
        let after_last = self.len == 0
            || key_cmp(self.entries[self.len - 1].0.as_bytes(), key.as_bytes()).is_lt();
        let i = if after_last {
            self.len
        } else {
            match self.find(key) {
                Ok(i) => return &mut self.entries[i].1,
                Err(i) => i,
            }
        };
        if self.len == self.entries.len() {
            self.entries.push((String::new(), serde_json::Value::Null));
        }
        if self.entries[self.len].0 != key {
            set_str(&mut self.entries[self.len].0, key);
        }
        if i < self.len {
            // Move the spare to its place in the sorted part.
            self.entries[i..=self.len].rotate_right(1);
        }
        self.len += 1;
        &mut self.entries[i].1
    }

    /// Remove every field (keeping their allocations as spares).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Make the first `n` entries live again after [`Fields::clear`], with
    /// their keys as they were: for the drain's converter, which knows the
    /// record held exactly these keys (sorted, unique) before and
    /// overwrites their values through the returned [`ValuesMut`] or
    /// [`Fields::value_mut`] without comparing a key (see `convert.rs`,
    /// `Layout`).
    pub(crate) fn reuse(&mut self, n: usize) -> ValuesMut<'_> {
        self.len = n.min(self.entries.len());
        ValuesMut(&mut self.entries[..self.len])
    }

    /// The value of live entry `i` (in key order), to overwrite.
    pub(crate) fn value_mut(&mut self, i: usize) -> Option<&mut serde_json::Value> {
        self.entries[..self.len].get_mut(i).map(|e| &mut e.1)
    }

    /// The fields in key order.
    pub fn iter(&self) -> FieldsIter<'_> {
        FieldsIter(self.live().iter())
    }
}

/// The live values of [`Fields`] after [`Fields::reuse`], by position (one
/// bounds check a value).
pub(crate) struct ValuesMut<'f>(&'f mut [(String, serde_json::Value)]);

impl ValuesMut<'_> {
    /// The value of live entry `i` (in key order), to overwrite.
    #[inline]
    pub(crate) fn get(&mut self, i: usize) -> Option<&mut serde_json::Value> {
        self.0.get_mut(i).map(|e| &mut e.1)
    }
}

/// Iterator over [`Fields`] in key order.
#[derive(Debug, Clone)]
pub struct FieldsIter<'a>(std::slice::Iter<'a, (String, serde_json::Value)>);

impl<'a> Iterator for FieldsIter<'a> {
    type Item = (&'a String, &'a serde_json::Value);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (k, v))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for FieldsIter<'_> {}

impl<'a> IntoIterator for &'a Fields {
    type Item = (&'a String, &'a serde_json::Value);
    type IntoIter = FieldsIter<'a>;

    fn into_iter(self) -> FieldsIter<'a> {
        self.iter()
    }
}

impl FromIterator<(String, serde_json::Value)> for Fields {
    fn from_iter<I: IntoIterator<Item = (String, serde_json::Value)>>(it: I) -> Fields {
        let mut f = Fields::new();
        for (k, v) in it {
            f.insert(k, v);
        }
        f
    }
}

impl From<serde_json::Map<String, serde_json::Value>> for Fields {
    fn from(m: serde_json::Map<String, serde_json::Value>) -> Fields {
        m.into_iter().collect()
    }
}

impl std::ops::Index<&str> for Fields {
    type Output = serde_json::Value;

    /// `Null` for a missing key, as `serde_json::Value` indexes.
    fn index(&self, key: &str) -> &serde_json::Value {
        self.get(key).unwrap_or(&NULL)
    }
}

impl Clone for Fields {
    fn clone(&self) -> Fields {
        Fields {
            entries: self.live().to_vec(),
            len: self.len,
        }
    }
}

impl PartialEq for Fields {
    fn eq(&self, other: &Fields) -> bool {
        self.live() == other.live()
    }
}

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Fields {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Through the map it replaced: the same keys win on duplicates.
        serde_json::Map::deserialize(d).map(Fields::from)
    }
}

/// `a.cmp(b)` (byte order, as `str`'s), inline: keys are short, and a
/// `memcmp` call costs more than comparing them here.
fn key_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// Overwrite `s` with `v`, reusing its allocation. A string of 4 to 16
/// bytes that fits is copied as two overlapping words: `push_str`'s call
/// to `memcpy` (a length known only at run time) and its capacity check
/// cost ~30 instructions, and the drain writes two or three such strings
/// a record (a field's text, the message).
#[inline]
pub(crate) fn set_str(s: &mut String, v: &str) {
    let n = v.len();
    if (4..=16).contains(&n) && n <= s.capacity() {
        let src = v.as_ptr();
        // The two words cover bytes 0..n (4 <= n <= 8: [0, 4) and
        // [n-4, n); 8 <= n <= 16: [0, 8) and [n-8, n)), both loaded before
        // either is stored; writes go through the buffer's pointer, not a
        // slice, so no reference to uninitialized bytes is made.
        // SAFETY: `src` is valid for `n` bytes, the buffer for `capacity()
        // >= n`, the borrows do not overlap; `set_len(n)` exposes only
        // bytes copied from `v` (covered, above): valid UTF-8.
        unsafe {
            let b = s.as_mut_vec();
            let dst = b.as_mut_ptr();
            if n >= 8 {
                let x = src.cast::<u64>().read_unaligned();
                let y = src.add(n - 8).cast::<u64>().read_unaligned();
                dst.cast::<u64>().write_unaligned(x);
                dst.add(n - 8).cast::<u64>().write_unaligned(y);
            } else {
                let x = src.cast::<u32>().read_unaligned();
                let y = src.add(n - 4).cast::<u32>().read_unaligned();
                dst.cast::<u32>().write_unaligned(x);
                dst.add(n - 4).cast::<u32>().write_unaligned(y);
            }
            b.set_len(n);
        }
        return;
    }
    s.clear();
    s.push_str(v);
}

/// Overwrite `s` with `v`, reusing its allocation when both are `Some`.
pub(crate) fn set_opt_str(s: &mut Option<String>, v: Option<&str>) {
    match (s.as_mut(), v) {
        (Some(s), Some(v)) => set_str(s, v),
        (_, v) => *s = v.map(str::to_owned),
    }
}

/// What a record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A log event.
    Event,
    /// A scope opened.
    ScopeOpen,
    /// Fields recorded on an open scope.
    ScopeRecord,
    /// A scope closed (or was abandoned).
    ScopeClose,
    /// Records were lost (a ring was full).
    Loss,
    /// A message of the sidecar about a client (e.g. it was cut off).
    Control,
    /// A kind this version does not know (reading newer records).
    #[serde(other)]
    Other,
}

/// How a scope ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Closed normally.
    Ok,
    /// Closed with an error.
    Error,
    /// Its process went away with it still open.
    Abandoned,
}

/// A 128-bit trace id; JSON: 32 lowercase hex digits (W3C `traceparent`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceId(pub [u8; 16]);

/// A 64-bit scope (span) id; JSON: 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ScopeId(pub u64);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for ScopeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for ScopeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScopeId({self})")
    }
}

/// Why an id string is not hex of the right length (upper case is
/// accepted on read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("want {0} lowercase hex digits")]
pub struct ParseIdError(usize);

impl std::str::FromStr for TraceId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(ParseIdError(32));
        }
        let n = u128::from_str_radix(s, 16).map_err(|_| ParseIdError(32))?;
        Ok(TraceId(n.to_be_bytes()))
    }
}

impl std::str::FromStr for ScopeId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(ParseIdError(16));
        }
        u64::from_str_radix(s, 16)
            .map(ScopeId)
            .map_err(|_| ParseIdError(16))
    }
}

macro_rules! serde_via_str {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_via_str!(TraceId);
serde_via_str!(ScopeId);

/// `Level` as `"ERROR"` .. `"TRACE"`.
mod level_name {
    use super::*;

    pub fn serialize<S: Serializer>(l: &Level, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(l.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Level, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse_level(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown level {s:?}")))
    }
}

/// A level from its name, any case (`"warn"`, `"WARN"`, `"Warning"`).
pub fn parse_level(s: &str) -> Option<Level> {
    Some(match s.to_ascii_uppercase().as_str() {
        "ERROR" => Level::Error,
        "WARN" | "WARNING" => Level::Warn,
        "INFO" => Level::Info,
        "DEBUG" => Level::Debug,
        "TRACE" => Level::Trace,
        _ => return None,
    })
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One record. See the [module docs](self) for the JSON schema.
///
/// # Examples
///
/// ```
/// use distlogd::record::{Kind, Record};
/// use distlogd::timestamp::Timestamp;
/// use distlog::wire::Level;
///
/// let mut r = Record::new(Kind::Event, Timestamp(0), Level::Info);
/// r.service = "svc".into();
/// r.message = Some("hello".into());
/// r.fields.insert("n".into(), 7.into());
/// let line = r.to_json_line();
/// assert!(line.starts_with(r#"{"kind":"event","ts":"1970-01-01T00:00:00.000000000Z","level":"INFO""#));
/// assert_eq!(Record::from_json(&line).unwrap(), r);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// What it says.
    pub kind: Kind,
    /// When (wall clock, UTC).
    pub ts: Timestamp,
    /// Severity.
    #[serde(with = "level_name")]
    pub level: Level,
    /// Service name from the client's hello.
    #[serde(default)]
    pub service: String,
    /// Host name of the sidecar that read it.
    #[serde(default)]
    pub host: String,
    /// Process id (from the kernel unless `pid_unverified`).
    #[serde(default)]
    pub pid: u32,
    /// `pid` is what the client claimed; the kernel did not say.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pid_unverified: bool,
    /// Kernel thread id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<u32>,
    /// Target (module path or what the user set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Source file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Source line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// Scope name (scope records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The message (the field named `message`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The other fields.
    #[serde(default)]
    pub fields: Fields,
    /// Trace the record belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<TraceId>,
    /// Scope the record was written in (or that it opens/closes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_id: Option<ScopeId>,
    /// Parent of that scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<ScopeId>,
    /// The parent lives in another process (scope opens).
    #[serde(default, skip_serializing_if = "is_false")]
    pub remote_parent: bool,
    /// How the scope ended (`scope_close`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// How long the scope was open (`scope_close`, when its open was seen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ns: Option<u64>,
    /// Where in which ring the record was read (not part of the schema):
    /// the store keeps a per-ring high-water mark with it, for exactly-once
    /// across a sidecar crash. `None` for records the sidecar made itself.
    #[serde(skip)]
    pub origin: Option<Origin>,
    /// Whose routing decision this record shares (not part of the schema):
    /// set by the drain when every record with this key has the same
    /// service, target, level, kind and set of field names, so that the
    /// router can decide once per key (see `routing.rs`). `None`: decide
    /// from the record.
    #[serde(skip)]
    pub route_key: Option<RouteKey>,
}

/// A client connection's call site and record kind, as [`Record::route_key`].
/// Connection numbers are not reused within a sidecar's run and a call
/// site's definition never changes once read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteKey {
    /// Connection number.
    pub(crate) conn: u64,
    /// Call site index in that connection's table.
    pub(crate) callsite: u32,
    /// The record's kind.
    pub(crate) kind: Kind,
}

/// A record's place in its ring: the ring's id and the record's sequence
/// number there (see `distlog::ring::Reader::seq`). Both survive a sidecar
/// restart: the client hands the same ring again and the reader resumes at
/// the released sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin {
    /// `Geometry::ring_id`.
    pub ring_id: [u64; 2],
    /// Sequence number of the record in that ring.
    pub seq: u64,
}

impl Record {
    /// A record with the given kind, time and level and nothing else.
    pub fn new(kind: Kind, ts: Timestamp, level: Level) -> Record {
        Record {
            kind,
            ts,
            level,
            service: String::new(),
            host: String::new(),
            pid: 0,
            pid_unverified: false,
            tid: None,
            target: None,
            file: None,
            line: None,
            name: None,
            message: None,
            fields: Fields::new(),
            trace_id: None,
            scope_id: None,
            parent_id: None,
            remote_parent: false,
            outcome: None,
            duration_ns: None,
            origin: None,
            route_key: None,
        }
    }

    /// Append the record as one JSON line (with its `\n`) to `out`.
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        // Serializing this struct into a Vec cannot fail: every key is a
        // string and no Serialize impl here returns an error.
        if serde_json::to_writer(&mut *out, self).is_ok() {
            out.push(b'\n');
        }
    }

    /// The record as one JSON line (with its `\n`).
    pub fn to_json_line(&self) -> String {
        let mut v = Vec::with_capacity(256);
        self.write_json_line(&mut v);
        String::from_utf8(v).unwrap_or_default()
    }

    /// Parse one JSON line (trailing whitespace allowed).
    pub fn from_json(line: &str) -> serde_json::Result<Record> {
        serde_json::from_str(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length around the word copies' bounds, over strings shorter,
    /// as long and longer than the new one, with and without room.
    #[test]
    fn set_str_writes_exactly_the_new_string() {
        let text = "abcdefghijklmnopqrstuvwxyzé";
        for n in 0..=20 {
            let v = &text[..n];
            for old in 0..=20 {
                for room in [0, 4, 16] {
                    let mut s = String::with_capacity(old + room);
                    s.push_str(&"0123456789ABCDEFGHIJ"[..old]);
                    set_str(&mut s, v);
                    assert_eq!(s, v, "{n} over {old} (+{room})");
                }
            }
        }
        let mut s = String::from("xxxxxxxxxxxxxxxxxxxx");
        set_str(&mut s, "é-é-é");
        assert_eq!(s, "é-é-é");
    }

    #[test]
    fn ids_hex() {
        let t = TraceId([0xab; 16]);
        assert_eq!(t.to_string(), "abababababababababababababababab");
        assert_eq!(t.to_string().parse::<TraceId>().unwrap(), t);
        let mut b = [0u8; 16];
        b[15] = 1;
        assert_eq!(TraceId(b).to_string(), "00000000000000000000000000000001");
        assert_eq!(ScopeId(0x1f).to_string(), "000000000000001f");
        assert_eq!(
            "000000000000001f".parse::<ScopeId>().unwrap(),
            ScopeId(0x1f)
        );
        assert!("1f".parse::<ScopeId>().is_err());
        assert!("+00000000000001f".parse::<ScopeId>().is_err());
    }

    #[test]
    fn full_roundtrip_and_names() {
        let mut r = Record::new(Kind::ScopeClose, Timestamp(1), Level::Warn);
        r.pid_unverified = true;
        r.tid = Some(9);
        r.trace_id = Some(TraceId([1; 16]));
        r.scope_id = Some(ScopeId(2));
        r.parent_id = Some(ScopeId(3));
        r.outcome = Some(Outcome::Abandoned);
        r.duration_ns = Some(u64::MAX);
        r.fields
            .insert("big".into(), serde_json::Value::from(u64::MAX));
        r.fields
            .insert("neg".into(), serde_json::Value::from(i64::MIN));
        let line = r.to_json_line();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["kind"], "scope_close");
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["outcome"], "abandoned");
        assert_eq!(v["pid_unverified"], true);
        assert_eq!(v["trace_id"], "01010101010101010101010101010101");
        assert_eq!(v["fields"]["big"].as_u64(), Some(u64::MAX));
        assert_eq!(v["fields"]["neg"].as_i64(), Some(i64::MIN));
        assert_eq!(Record::from_json(&line).unwrap(), r);
        // absent optional fields are omitted; nulls are accepted on read
        let plain = Record::new(Kind::Event, Timestamp(1), Level::Info).to_json_line();
        assert!(!plain.contains("null") && !plain.contains("pid_unverified"));
        let with_null = plain.replace("\"fields\":{}", "\"fields\":{},\"tid\":null");
        assert!(Record::from_json(&with_null).is_ok());
        assert_eq!(
            Record::from_json(&plain.replace("\"event\"", "\"future\""))
                .unwrap()
                .kind,
            Kind::Other
        );
    }
}

//! The record wire format, shared by every client (Rust, C) and the sidecar.
//!
//! # Why it looks like this
//!
//! What is static about a call site (level, target, file, line, name, field
//! names) is written once, as a [`CallsiteDef`] in the process's call-site
//! table (see [`crate::table`]); a record in a ring carries the call site's
//! id, a timestamp, the thread, the scope, and the *values* only.
//!
//! A ring record's payload is a [`Head`] followed by zero or more [`Field`]s
//! up to the end of the payload, each encoded with `postcard` one after the
//! other. Appending fields one by one lets the client encode straight from
//! `tracing`'s visitor into a stack buffer, without collecting them first.
//!
//! Fields are named by their index in the call site's field list
//! ([`Field::Idx`]) or, for names known only at run time (the C API's
//! `distlog_log`, `log` key-values), by name ([`Field::Named`]).
//!
//! Decoding ([`decode`]) borrows from a private copy of the payload that the
//! sidecar made out of shared memory; it never panics on any input (fuzzed).

use serde::{Deserialize, Serialize};

/// Version of the hello protocol and of the frames below. The sidecar
/// accepts this version and the one before it.
pub const PROTOCOL_VERSION: u16 = 1;

/// Level, most severe first; the numbers are the C API's too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Level {
    /// ERROR
    Error = 1,
    /// WARN
    Warn = 2,
    /// INFO
    Info = 3,
    /// DEBUG
    Debug = 4,
    /// TRACE
    Trace = 5,
}

impl Level {
    /// Upper-case name, as in the record schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        }
    }

    /// From the C API's number.
    pub fn from_u8(n: u8) -> Option<Level> {
        Some(match n {
            1 => Level::Error,
            2 => Level::Warn,
            3 => Level::Info,
            4 => Level::Debug,
            5 => Level::Trace,
            _ => return None,
        })
    }

    /// From a `tracing` level.
    pub fn from_tracing(l: &tracing_core::Level) -> Level {
        match *l {
            tracing_core::Level::ERROR => Level::Error,
            tracing_core::Level::WARN => Level::Warn,
            tracing_core::Level::INFO => Level::Info,
            tracing_core::Level::DEBUG => Level::Debug,
            _ => Level::Trace,
        }
    }
}

/// What a call site makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallsiteKind {
    /// Events (log records).
    Event,
    /// Scopes (spans).
    Scope,
}

/// The static part of a call site, written once to the call-site table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallsiteDef<'a> {
    /// Id events name it by: its index in the table.
    pub id: u32,
    /// Event or scope.
    pub kind: CallsiteKind,
    /// Level.
    pub level: Level,
    /// Scope name (for events `tracing`'s generated name).
    #[serde(borrow)]
    pub name: &'a str,
    /// Target (module path or what the user set).
    pub target: &'a str,
    /// Source file, if known.
    pub file: Option<&'a str>,
    /// Source line, if known.
    pub line: Option<u32>,
    /// Field names, indexed by [`Field::Idx`].
    pub fields: Vec<&'a str>,
}

/// 128-bit trace id, big-endian bytes as in W3C `traceparent`.
pub type TraceId = [u8; 16];

/// Outcome of a closed scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Finished normally.
    Ok,
    /// An error-level event happened in it, or the user marked it.
    Error,
}

/// The fixed front of every ring record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Head {
    /// A log record.
    Event {
        /// Call site id.
        callsite: u32,
        /// Timestamp (TSC ticks or realtime ns, see the ring's clock flag).
        ts: u64,
        /// Kernel thread id.
        tid: u32,
        /// Scope it was written in, 0 = none.
        scope: u64,
        /// Trace of that scope (absent outside scopes).
        trace: Option<TraceId>,
    },
    /// A scope opened. Fields follow.
    ScopeOpen {
        /// Call site id (kind `Scope`).
        callsite: u32,
        /// Timestamp.
        ts: u64,
        /// Thread that opened it.
        tid: u32,
        /// The new scope's id (W3C span id).
        scope: u64,
        /// Parent scope id, 0 = root of this process.
        parent: u64,
        /// Trace id.
        trace: TraceId,
        /// The parent lives in another process (imported traceparent).
        remote_parent: bool,
    },
    /// Fields recorded on an open scope later (`span.record`). Fields follow.
    ScopeRecord {
        /// Scope id.
        scope: u64,
        /// Timestamp.
        ts: u64,
    },
    /// A scope closed.
    ScopeClose {
        /// Scope id.
        scope: u64,
        /// Timestamp.
        ts: u64,
        /// Thread that closed it.
        tid: u32,
        /// How it ended.
        outcome: Outcome,
    },
}

/// A typed value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Value<'a> {
    /// Signed integer.
    I64(i64),
    /// Unsigned integer.
    U64(u64),
    /// Float.
    F64(f64),
    /// Boolean.
    Bool(bool),
    /// String.
    #[serde(borrow)]
    Str(&'a str),
    /// A `Debug`-formatted value (formatted in the client).
    Debug(&'a str),
    /// 128-bit integers.
    I128(i128),
    /// 128-bit unsigned integers.
    U128(u128),
}

/// One field of a record.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Field<'a> {
    /// Named by index into the call site's field list.
    Idx(u16, #[serde(borrow)] Value<'a>),
    /// Named at run time.
    Named(&'a str, Value<'a>),
}

/// A decoded record payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame<'a> {
    /// The fixed front.
    pub head: Head,
    /// The fields, in the order written.
    pub fields: Vec<Field<'a>>,
}

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("undecodable record: {0}")]
pub struct DecodeError(#[from] postcard::Error);

/// Most fields a record may carry (the decoder stops there: a bound on work
/// per record for hostile input).
pub const MAX_FIELDS: usize = 256;

/// Decode one payload. Never panics.
pub fn decode(payload: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let (head, mut rest) = postcard::take_from_bytes::<Head>(payload)?;
    let mut fields = Vec::new();
    while !rest.is_empty() {
        if fields.len() == MAX_FIELDS {
            return Err(DecodeError(postcard::Error::DeserializeBadEncoding));
        }
        let (f, r) = postcard::take_from_bytes::<Field<'_>>(rest)?;
        fields.push(f);
        rest = r;
    }
    Ok(Frame { head, fields })
}

/// Encodes a record into a caller-provided buffer (a stack array on the hot
/// path). Fails softly: an overflow marks the record truncated-away and the
/// caller drops and counts it.
#[derive(Debug)]
pub struct Encoder<'b> {
    buf: &'b mut [u8],
    len: usize,
    overflow: bool,
}

impl<'b> Encoder<'b> {
    /// Start a record with its head.
    pub fn new(buf: &'b mut [u8], head: &Head) -> Self {
        let mut e = Encoder {
            buf,
            len: 0,
            overflow: false,
        };
        e.put(head);
        e
    }

    #[inline]
    fn put<T: Serialize + ?Sized>(&mut self, v: &T) {
        if self.overflow {
            return;
        }
        match postcard::to_slice(v, &mut self.buf[self.len..]) {
            Ok(s) => self.len += s.len(),
            Err(_) => self.overflow = true,
        }
    }

    /// Append a field.
    #[inline]
    pub fn field(&mut self, f: &Field<'_>) {
        self.put(f);
    }

    /// Whether a field did not fit.
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    /// The encoded bytes, or `None` if something did not fit.
    pub fn finish(self) -> Option<&'b [u8]> {
        if self.overflow {
            None
        } else {
            Some(&self.buf[..self.len])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = (u8, i64, u64, f64, bool, String)> {
        (
            any::<u8>(),
            any::<i64>(),
            any::<u64>(),
            any::<f64>(),
            any::<bool>(),
            ".{0,40}",
        )
    }

    proptest! {
        #[test]
        fn roundtrip(callsite in any::<u32>(), ts in any::<u64>(), tid in any::<u32>(),
                     scope in any::<u64>(), vals in proptest::collection::vec(value(), 0..20)) {
            let head = Head::Event { callsite, ts, tid, scope, trace: if scope % 2 == 0 { None } else { Some([7; 16]) } };
            let fields: Vec<Field<'_>> = vals.iter().enumerate().map(|(i, (k, a, b, c, d, s))| {
                let v = match k % 6 { 0 => Value::I64(*a), 1 => Value::U64(*b), 2 => Value::F64(*c),
                    3 => Value::Bool(*d), 4 => Value::Str(s), _ => Value::Debug(s) };
                if i % 2 == 0 { Field::Idx(i as u16, v) } else { Field::Named(s, v) }
            }).collect();
            let mut buf = [0u8; 8192];
            let mut e = Encoder::new(&mut buf, &head);
            for f in &fields { e.field(f); }
            let bytes = e.finish().unwrap();
            let frame = decode(bytes).unwrap();
            prop_assert_eq!(frame.head, head);
            prop_assert_eq!(frame.fields.len(), fields.len());
            for (a, b) in frame.fields.iter().zip(&fields) {
                match (a, b) {
                    (Field::Idx(_, Value::F64(x)), Field::Idx(_, Value::F64(y)))
                    | (Field::Named(_, Value::F64(x)), Field::Named(_, Value::F64(y))) =>
                        prop_assert!(x.to_bits() == y.to_bits()),
                    _ => prop_assert_eq!(a, b),
                }
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn callsite_def_roundtrip(name in ".{0,20}", target in ".{0,20}", line in any::<Option<u32>>(),
                                  fields in proptest::collection::vec(".{0,10}", 0..8)) {
            let def = CallsiteDef { id: 3, kind: CallsiteKind::Scope, level: Level::Warn, name: &name,
                target: &target, file: Some("a.rs"), line, fields: fields.iter().map(|s| s.as_str()).collect() };
            let bytes = postcard::to_allocvec(&def).unwrap();
            let back: CallsiteDef<'_> = postcard::from_bytes(&bytes).unwrap();
            prop_assert_eq!(back, def);
        }
    }

    #[test]
    fn overflow_is_reported() {
        let mut buf = [0u8; 16];
        let mut e = Encoder::new(&mut buf, &Head::ScopeRecord { scope: 1, ts: 2 });
        e.field(&Field::Named(
            "x",
            Value::Str("a long string that does not fit"),
        ));
        assert!(e.finish().is_none());
    }
}

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
//! `tracing`'s visitor into the ring, without collecting them first.
//!
//! Fields are named by their index in the call site's field list
//! ([`Field::Idx`]) or, for names known only at run time (the C API's
//! `distlog_log`, `log` key-values), by name ([`Field::Named`]).
//!
//! A second layout, the compact event ([`compact`]), carries an event's
//! head and its values by position in fixed-width little-endian fields
//! (no varints, no per-field index): the C API's hot path and the
//! `tracing` layer write it when the sidecar said it reads it (protocol
//! version ≥ [`COMPACT_VERSION`]); the layer, visiting values one by one,
//! writes each in place (a formatted text's length is stored after it).
//! It decodes into the same [`Head::Event`] and [`Field::Idx`] items.
//!
//! Decoding ([`decode`]) borrows from a private copy of the payload that the
//! sidecar made out of shared memory; it never panics on any input (fuzzed).

use serde::{Deserialize, Serialize};

/// Version of the hello protocol and of the frames below. A client says
/// its version in its hello, the sidecar answers the lower of its own and
/// the client's, and the client writes what that version reads.
///
/// - 1: the postcard layout ([`Head`] and [`Field`]s).
/// - 2: also the compact event layout ([`compact`]), which a client writes
///   only after a welcome with version ≥ [`COMPACT_VERSION`].
pub const PROTOCOL_VERSION: u16 = 2;

/// The first version whose sidecar reads compact records (events, scope opens and closes).
pub const COMPACT_VERSION: u16 = 2;

/// The version before negotiation existed: a sidecar of that version
/// refuses a hello with a higher one, so a client that was refused says
/// hello again with this one.
pub const LEGACY_VERSION: u16 = 1;

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
    /// The message when it is static (a literal at the call site): written
    /// once here and rendered by the sidecar for every event of the site
    /// that carries no `message` field of its own.
    pub message: Option<&'a str>,
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
#[derive(Debug, Clone, thiserror::Error)]
#[error("undecodable record: {0}")]
pub struct DecodeError(#[from] postcard::Error);

/// Most fields a record may carry (the decoder stops there: a bound on work
/// per record for hostile input).
pub const MAX_FIELDS: usize = 256;

/// Decode one payload. Never panics.
pub fn decode(payload: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let (head, rest) = decode_head(payload)?;
    let fields = rest.collect::<Result<Vec<_>, _>>()?;
    Ok(Frame { head, fields })
}

/// Decode one payload's head; its fields follow, decoded one by one as the
/// returned iterator is read (no `Vec` per record: the sidecar's drain
/// decodes millions a second). Accepts and rejects exactly what [`decode`]
/// did through `postcard` (a test compares the two on arbitrary bytes);
/// never panics.
pub fn decode_head(payload: &[u8]) -> Result<(Head, FieldIter<'_>), DecodeError> {
    let mut b = payload;
    let head = match take_variant(&mut b)? {
        0 => Head::Event {
            callsite: take_u32(&mut b)?,
            ts: take_u64_long(&mut b)?,
            tid: take_u32(&mut b)?,
            scope: take_u64(&mut b)?,
            trace: match take_u8(&mut b)? {
                0 => None,
                1 => Some(take_trace(&mut b)?),
                _ => return Err(DecodeError(postcard::Error::DeserializeBadOption)),
            },
        },
        1 => Head::ScopeOpen {
            callsite: take_u32(&mut b)?,
            ts: take_u64_long(&mut b)?,
            tid: take_u32(&mut b)?,
            scope: take_u64(&mut b)?,
            parent: take_u64(&mut b)?,
            trace: take_trace(&mut b)?,
            remote_parent: take_bool(&mut b)?,
        },
        2 => Head::ScopeRecord {
            scope: take_u64(&mut b)?,
            ts: take_u64_long(&mut b)?,
        },
        3 => Head::ScopeClose {
            scope: take_u64(&mut b)?,
            ts: take_u64_long(&mut b)?,
            tid: take_u32(&mut b)?,
            outcome: match take_variant(&mut b)? {
                0 => Outcome::Ok,
                1 => Outcome::Error,
                _ => return Err(bad_variant()),
            },
        },
        // compact::KIND, KIND_OPEN, KIND_CLOSE
        4 => return compact::decode_head(b),
        5 => return compact::decode_open(b),
        6 => return compact::decode_close(b),
        _ => return Err(bad_variant()),
    };
    Ok((head, FieldIter::new(b, false)))
}

/// The fields of a payload after its head (see [`decode_head`]). Yields an
/// error at most once, then ends; more than [`MAX_FIELDS`] fields is an
/// error.
#[derive(Debug, Clone)]
pub struct FieldIter<'a> {
    rest: &'a [u8],
    n: usize,
    /// Why [`FieldIter::next_field`] stopped early.
    error: Option<DecodeError>,
    /// The fields are a compact record's values by position.
    compact: bool,
}

impl<'a> FieldIter<'a> {
    fn new(rest: &'a [u8], compact: bool) -> Self {
        FieldIter {
            rest,
            n: 0,
            error: None,
            compact,
        }
    }

    /// The next field, without a `Result` per field (the sidecar's drain
    /// loop: moving `Option<Result<Field>>` around cost ~100 instructions
    /// a record); after `None`, [`FieldIter::finish`] says whether the
    /// fields ended or were undecodable.
    #[inline]
    pub fn next_field(&mut self) -> Option<Field<'a>> {
        let mut v = Value::Bool(false);
        let key = self.next_into(&mut v)?;
        Some(key.with(v))
    }

    /// As [`FieldIter::next_field`], the value written into `value` (left
    /// as it was at `None`). For the sidecar's drain: a `Field` returned
    /// from the decoder's many branches was put together in memory with
    /// 8-byte stores and copied with a 16-byte load, which cannot be
    /// forwarded from them (perf: a third of the field loop's time on that
    /// one load); each branch here stores its value where the caller reads
    /// it.
    #[inline]
    pub fn next_into(&mut self, value: &mut Value<'a>) -> Option<Key<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        match self.field_into(value) {
            Ok(k) => Some(k),
            Err(e) => {
                self.rest = &[];
                self.error = Some(e);
                None
            }
        }
    }

    /// The values of a compact record (by position, see
    /// [`compact::visit_value`]) when none has been read yet: for a reader
    /// that knows the call site's layout. `None` for a postcard record or
    /// an iterator read from.
    #[inline]
    pub fn compact_values(&self) -> Option<&'a [u8]> {
        (self.compact && self.n == 0 && self.error.is_none()).then_some(self.rest)
    }

    /// After [`FieldIter::next_field`] returned `None`: the error that
    /// stopped it, if any.
    pub fn finish(self) -> Result<(), DecodeError> {
        self.error.map_or(Ok(()), Err)
    }

    #[inline]
    fn field(&mut self) -> Result<Field<'a>, DecodeError> {
        let mut v = Value::Bool(false);
        let key = self.field_into(&mut v)?;
        Ok(key.with(v))
    }

    #[inline]
    fn field_into(&mut self, value: &mut Value<'a>) -> Result<Key<'a>, DecodeError> {
        if self.n == MAX_FIELDS {
            return Err(DecodeError(postcard::Error::DeserializeBadEncoding));
        }
        self.n += 1;
        if self.compact {
            compact::take_value(&mut self.rest, value)?;
            // n <= MAX_FIELDS (256): the position fits 16 bits.
            return Ok(Key::Idx((self.n - 1) as u16));
        }
        let b = &mut self.rest;
        Ok(match take_variant(b)? {
            0 => {
                // The bound on the last byte keeps it within 16 bits.
                let i = take_varint(b, 3, 0b11)? as u16;
                take_value(b, value)?;
                Key::Idx(i)
            }
            1 => {
                let name = take_str(b)?;
                take_value(b, value)?;
                Key::Named(name)
            }
            _ => return Err(bad_variant()),
        })
    }
}

/// What names a field: [`Field`] without its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Key<'a> {
    /// By index into the call site's field list.
    Idx(u16),
    /// By name, given at run time.
    Named(&'a str),
}

impl<'a> Key<'a> {
    /// The field of this key and value `v`.
    pub fn with(self, v: Value<'a>) -> Field<'a> {
        match self {
            Key::Idx(i) => Field::Idx(i, v),
            Key::Named(n) => Field::Named(n, v),
        }
    }
}

impl<'a> Iterator for FieldIter<'a> {
    type Item = Result<Field<'a>, DecodeError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let r = self.field();
        if r.is_err() {
            self.rest = &[];
        }
        Some(r)
    }
}

// postcard's encoding, read by hand (see `Encoder` for the format). Every
// reader takes from the front of `b` and fails on a short input.

fn bad_variant() -> DecodeError {
    DecodeError(postcard::Error::DeserializeBadEnum)
}

#[inline]
fn take_n<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
    if b.len() < n {
        return Err(DecodeError(postcard::Error::DeserializeUnexpectedEnd));
    }
    let (x, rest) = b.split_at(n);
    *b = rest;
    Ok(x)
}

#[inline]
fn take_u8(b: &mut &[u8]) -> Result<u8, DecodeError> {
    let (&v, rest) = b
        .split_first()
        .ok_or(DecodeError(postcard::Error::DeserializeUnexpectedEnd))?;
    *b = rest;
    Ok(v)
}

#[inline]
fn take_bool(b: &mut &[u8]) -> Result<bool, DecodeError> {
    match take_u8(b)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError(postcard::Error::DeserializeBadBool)),
    }
}

/// A LEB128 varint of at most `max` bytes whose last byte is at most `last`
/// (postcard's rule: the value fits the type; non-minimal forms are
/// accepted). `max` ≤ 10, so the value fits 64 bits.
// Always inlined: the head's `scope` was read through a call (the slice
// kept in memory, the result through memory too): ~15 instructions a
// record more. Its slow loop out of line instead cost ~85 more (the
// fields' 2- and 3-byte varints then all went through the call).
#[inline(always)]
fn take_varint(b: &mut &[u8], max: usize, last: u8) -> Result<u64, DecodeError> {
    // Most varints here (variants, small ints, lengths) are one byte.
    if let Some((&v, rest)) = b.split_first() {
        if v & 0x80 == 0 {
            *b = rest;
            return Ok(u64::from(v));
        }
    }
    let mut out = 0u64;
    for i in 0..max {
        let v = take_u8(b)?;
        out |= u64::from(v & 0x7f) << (7 * i);
        if v & 0x80 == 0 {
            if i == max - 1 && v > last {
                break;
            }
            return Ok(out);
        }
    }
    Err(DecodeError(postcard::Error::DeserializeBadVarint))
}

/// The value of the (up to 8) LEB128 bytes of `w`, little-endian, the
/// bytes past the varint's last already zero: each byte's 7 value bits
/// packed together by halving the gaps (8 → 16 → 32 → 64-bit lanes).
#[inline(always)]
fn varint_word(w: u64) -> u64 {
    let x = w & 0x7f7f_7f7f_7f7f_7f7f;
    let x = (x & 0x007f_007f_007f_007f) | ((x & 0x7f00_7f00_7f00_7f00) >> 1);
    let x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x3fff_0000_3fff_0000) >> 2);
    (x & 0x0000_0000_0fff_ffff) | ((x & 0x0fff_ffff_0000_0000) >> 4)
}

fn take_u128(b: &mut &[u8]) -> Result<u128, DecodeError> {
    let mut out = 0u128;
    for i in 0..19 {
        let v = take_u8(b)?;
        out |= u128::from(v & 0x7f) << (7 * i);
        if v & 0x80 == 0 {
            if i == 18 && v > 0b11 {
                break;
            }
            return Ok(out);
        }
    }
    Err(DecodeError(postcard::Error::DeserializeBadVarint))
}

#[inline]
fn take_u32(b: &mut &[u8]) -> Result<u32, DecodeError> {
    // The bound on the last byte keeps it within 32 bits.
    take_varint(b, 5, 0b1111).map(|v| v as u32)
}

#[inline]
fn take_u64(b: &mut &[u8]) -> Result<u64, DecodeError> {
    take_varint(b, 10, 1)
}

/// A `u64` that is rarely short (a timestamp: a TSC reading is 6 to 10
/// bytes of varint), a word at a time when 8 bytes are there to read:
/// ~20 instructions where the byte loop takes ~6 a byte. Only for those:
/// on the fields' mostly short varints it cost more than it saved.
// Always inlined: called, it kept `b` in memory, and the head's 16-byte
// copy of it for the FieldIter could not be forwarded from the two 8-byte
// stores that wrote it (perf: a third of decode_head's time on that load).
#[inline(always)]
fn take_u64_long(b: &mut &[u8]) -> Result<u64, DecodeError> {
    let (max, last) = (10, 1);
    if let Some(w) = b.first_chunk::<8>() {
        let w = u64::from_le_bytes(*w);
        let stops = !w & 0x8080_8080_8080_8080;
        // Bytes up to and including the first without a continuation bit,
        // 9 when none of the 8 has one.
        let len = stops.trailing_zeros() as usize / 8 + 1;
        if len <= 8 {
            *b = &b[len..];
            return Ok(varint_word(w & (u64::MAX >> (64 - 8 * len))));
        }
        let mut out = varint_word(w);
        let mut rest = &b[8..];
        for i in 8..max {
            let v = take_u8(&mut rest)?;
            out |= u64::from(v & 0x7f) << (7 * i);
            if v & 0x80 == 0 {
                if i == max - 1 && v > last {
                    break;
                }
                *b = rest;
                return Ok(out);
            }
        }
        return Err(DecodeError(postcard::Error::DeserializeBadVarint));
    }
    take_u64(b)
}

#[inline]
fn take_variant(b: &mut &[u8]) -> Result<u32, DecodeError> {
    take_u32(b)
}

fn take_trace(b: &mut &[u8]) -> Result<TraceId, DecodeError> {
    let mut t = [0u8; 16];
    t.copy_from_slice(take_n(b, 16)?);
    Ok(t)
}

// Always inlined: called, it took the FieldIter's slice by address, which
// kept the slice in memory for the whole field loop (two stores a byte).
#[inline(always)]
fn take_str<'a>(b: &mut &'a [u8]) -> Result<&'a str, DecodeError> {
    let n = take_u64(b)?;
    let n =
        usize::try_from(n).map_err(|_| DecodeError(postcard::Error::DeserializeUnexpectedEnd))?;
    utf8(take_n(b, n)?)
}

/// Whether every byte is below 0x80: `[u8]::is_ascii` for the short strings
/// of records, a word or two (overlapping) instead of a loop of bytes up to
/// 16 (callgrind: ~15 instructions a string less in the drain).
#[inline]
fn ascii(b: &[u8]) -> bool {
    if let (Some(a), Some(z)) = (b.first_chunk::<8>(), b.last_chunk::<8>()) {
        if b.len() > 16 {
            return b.is_ascii();
        }
        return (u64::from_le_bytes(*a) | u64::from_le_bytes(*z)) & 0x8080_8080_8080_8080 == 0;
    }
    if let (Some(a), Some(z)) = (b.first_chunk::<4>(), b.last_chunk::<4>()) {
        return (u32::from_le_bytes(*a) | u32::from_le_bytes(*z)) & 0x8080_8080 == 0;
    }
    b.iter().all(|&c| c < 0x80)
}

#[inline]
fn utf8(bytes: &[u8]) -> Result<&str, DecodeError> {
    if ascii(bytes) {
        // SAFETY: ASCII bytes are valid UTF-8. Most strings here are ASCII
        // and this check costs a fraction of `from_utf8` on short strings
        // (callgrind: ~110 instructions a string in the sidecar's drain).
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).map_err(|_| DecodeError(postcard::Error::DeserializeBadUtf8))
}

/// One value into `out` (left as it was on an error). Each branch stores
/// its own (see [`FieldIter::next_into`]).
#[inline(always)]
fn take_value<'a>(b: &mut &'a [u8], out: &mut Value<'a>) -> Result<(), DecodeError> {
    let zigzag = |v: u64| (v >> 1) as i64 ^ -((v & 1) as i64);
    match take_variant(b)? {
        0 => *out = Value::I64(zigzag(take_u64(b)?)),
        1 => *out = Value::U64(take_u64(b)?),
        2 => {
            let mut x = [0u8; 8];
            x.copy_from_slice(take_n(b, 8)?);
            *out = Value::F64(f64::from_le_bytes(x));
        }
        3 => *out = Value::Bool(take_bool(b)?),
        4 => *out = Value::Str(take_str(b)?),
        5 => *out = Value::Debug(take_str(b)?),
        6 => {
            let v = take_u128(b)?;
            *out = Value::I128((v >> 1) as i128 ^ -((v & 1) as i128));
        }
        7 => *out = Value::U128(take_u128(b)?),
        _ => return Err(bad_variant()),
    }
    Ok(())
}

/// The compact event layout (protocol version ≥ [`COMPACT_VERSION`]).
///
/// ```text
/// kind u8 = 4 | callsite u32 | ts u64 | tid u32 | scope u64 |
/// trace flag u8 (0 or 1) [| trace 16 bytes when 1] | value*
/// value = tag u8 (I64, U64, F64, BOOL) | 8 bytes
///       | tag u8 (STR, DEBUG) | len u32 | len bytes (UTF-8)
/// ```
///
/// Every number is little-endian and fixed-width: the writer stores each
/// one with a single move instead of a varint loop (~6 instructions a
/// byte; a TSC timestamp is 9 bytes of varint), and knows the record's size
/// before it writes (head + 9 per number + 5 + len per string), so it
/// checks for room once. The values are the call site's fields by position
/// (the `i`th value is `Field::Idx(i)`), all positions from 0: a record
/// with a field by name, a gap, or a 128-bit value uses the postcard
/// layout. Kind 4 follows [`Head`]'s four variants, so both layouts share
/// their first byte's meaning; a sidecar before version 2 rejects it as an
/// unknown variant (it is never sent one: see [`COMPACT_VERSION`]).
///
/// Scope opens and closes have compact heads too (kinds 5 and 6, see
/// [`compact::KIND_OPEN`]): the same fields as [`Head::ScopeOpen`] and
/// [`Head::ScopeClose`], fixed-width, which the layer writes with a few
/// moves where the varints of the postcard head cost ~250 instructions a
/// scope (its ~58 bytes, ~6 instructions a byte).
pub mod compact {
    use super::{take_n, take_trace, take_u8, utf8, DecodeError, FieldIter, Head, TraceId, Value};

    /// The kind byte.
    pub const KIND: u8 = 4;
    /// The kind byte of a compact scope open: `callsite u32 | ts u64 |
    /// tid u32 | scope u64 | parent u64 | trace 16 bytes | remote u8`, then
    /// the scope's fields in the postcard layout (they are encoded once,
    /// when the scope is made, and copied into the record as they are).
    pub const KIND_OPEN: u8 = 5;
    /// The kind byte of a compact scope close: `scope u64 | ts u64 |
    /// tid u32 | outcome u8` (0 ok, 1 error).
    pub const KIND_CLOSE: u8 = 6;
    /// Bytes of a compact scope open's head.
    pub const OPEN_BYTES: usize = 50;
    /// Bytes of a compact scope close.
    pub const CLOSE_BYTES: usize = 22;

    /// Write a compact scope open's head (the fields follow) into `out`;
    /// its length, or `None` when `out` is shorter.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn write_open(
        out: &mut [u8],
        callsite: u32,
        ts: u64,
        tid: u32,
        scope: u64,
        parent: u64,
        trace: &TraceId,
        remote_parent: bool,
    ) -> Option<usize> {
        let h = out.get_mut(..OPEN_BYTES)?;
        h[0] = KIND_OPEN;
        h[1..5].copy_from_slice(&callsite.to_le_bytes());
        h[5..13].copy_from_slice(&ts.to_le_bytes());
        h[13..17].copy_from_slice(&tid.to_le_bytes());
        h[17..25].copy_from_slice(&scope.to_le_bytes());
        h[25..33].copy_from_slice(&parent.to_le_bytes());
        h[33..49].copy_from_slice(trace);
        h[49] = remote_parent as u8;
        Some(OPEN_BYTES)
    }

    /// Write a compact scope close into `out`; its length, or `None` when
    /// `out` is shorter.
    #[inline(always)]
    pub fn write_close(
        out: &mut [u8],
        scope: u64,
        ts: u64,
        tid: u32,
        outcome: super::Outcome,
    ) -> Option<usize> {
        let h = out.get_mut(..CLOSE_BYTES)?;
        h[0] = KIND_CLOSE;
        h[1..9].copy_from_slice(&scope.to_le_bytes());
        h[9..17].copy_from_slice(&ts.to_le_bytes());
        h[17..21].copy_from_slice(&tid.to_le_bytes());
        h[21] = match outcome {
            super::Outcome::Ok => 0,
            super::Outcome::Error => 1,
        };
        Some(CLOSE_BYTES)
    }
    /// Value tags (the numbers of [`Value`]'s variants).
    pub const I64: u8 = 0;
    /// See [`I64`].
    pub const U64: u8 = 1;
    /// See [`I64`].
    pub const F64: u8 = 2;
    /// See [`I64`]; the 8 bytes are 0 or 1.
    pub const BOOL: u8 = 3;
    /// See [`I64`]; a `u32` length and the bytes follow.
    pub const STR: u8 = 4;
    /// See [`STR`].
    pub const DEBUG: u8 = 5;
    /// Bytes of a number value.
    pub const NUM_BYTES: usize = 9;

    /// Bytes of the head, with or without a trace.
    #[inline(always)]
    pub const fn head_bytes(trace: bool) -> usize {
        26 + if trace { 16 } else { 0 }
    }

    /// Bytes of a string value of `len` bytes.
    #[inline(always)]
    pub const fn str_bytes(len: usize) -> usize {
        5 + len
    }

    /// Bytes of `v` as a compact value; `None` for the 128-bit integers,
    /// which only the postcard layout carries.
    #[inline]
    pub fn value_bytes(v: &Value<'_>) -> Option<usize> {
        match *v {
            Value::I64(_) | Value::U64(_) | Value::F64(_) | Value::Bool(_) => Some(NUM_BYTES),
            Value::Str(s) | Value::Debug(s) => Some(str_bytes(s.len())),
            Value::I128(_) | Value::U128(_) => None,
        }
    }

    /// Writes one compact record into a buffer sized for it. A write that
    /// does not fit marks the record failed instead of panicking (the size
    /// is computed by the caller; a wrong one loses the record, nothing
    /// else).
    #[derive(Debug)]
    pub struct Writer<'b> {
        out: &'b mut [u8],
        at: usize,
        overflow: bool,
    }

    impl<'b> Writer<'b> {
        /// Start a record with its head.
        #[inline(always)]
        pub fn new(
            out: &'b mut [u8],
            callsite: u32,
            ts: u64,
            tid: u32,
            scope: u64,
            trace: Option<&TraceId>,
        ) -> Self {
            let mut w = Writer {
                out,
                at: 0,
                overflow: false,
            };
            let n = head_bytes(trace.is_some());
            let Some(h) = w.out.get_mut(..n) else {
                w.overflow = true;
                return w;
            };
            h[0] = KIND;
            h[1..5].copy_from_slice(&callsite.to_le_bytes());
            h[5..13].copy_from_slice(&ts.to_le_bytes());
            h[13..17].copy_from_slice(&tid.to_le_bytes());
            h[17..25].copy_from_slice(&scope.to_le_bytes());
            match trace {
                None => h[25] = 0,
                Some(t) => {
                    h[25] = 1;
                    h[26..42].copy_from_slice(t);
                }
            }
            w.at = n;
            w
        }

        /// Append a number value: `tag` and its 8 raw bytes.
        #[inline(always)]
        pub fn num(&mut self, tag: u8, raw: u64) {
            let Some(out) = self.out.get_mut(self.at..self.at + NUM_BYTES) else {
                self.overflow = true;
                return;
            };
            out[0] = tag;
            out[1..].copy_from_slice(&raw.to_le_bytes());
            self.at += NUM_BYTES;
        }

        /// Append a string value (`STR` or `DEBUG`), already clipped to a
        /// record's longest string (so its length fits the `u32`).
        #[inline(always)]
        pub fn text(&mut self, tag: u8, s: &str) {
            let Some((head, body)) = self
                .out
                .get_mut(self.at..)
                .and_then(<[u8]>::split_first_chunk_mut::<5>)
            else {
                self.overflow = true;
                return;
            };
            let Some(dst) = body.get_mut(..s.len()) else {
                self.overflow = true;
                return;
            };
            head[0] = tag;
            head[1..].copy_from_slice(&(s.len() as u32).to_le_bytes());
            self.at += str_bytes(s.len());
            // Last: a long text's `memcpy` is a tail call, and the short
            // path saves no registers.
            copy_bytes(dst, s.as_bytes());
        }

        /// Append a string value (`STR` or `DEBUG`): the text `args`
        /// formats to, written straight into the record (no `String` in
        /// between), cut at `max` bytes (at a char boundary). Unlike the
        /// postcard layout's varint, the length has a fixed width: it is
        /// stored after the text without moving it.
        #[inline(always)]
        pub fn text_fmt(&mut self, tag: u8, args: std::fmt::Arguments<'_>, max: usize) {
            let Some((head, body)) = self
                .out
                .get_mut(self.at..)
                .and_then(<[u8]>::split_first_chunk_mut::<5>)
            else {
                self.overflow = true;
                return;
            };
            let cut = max <= body.len();
            let room = body.len().min(max);
            let mut sink = super::TextSink {
                out: &mut body[..room],
                n: 0,
                cut,
                full: false,
            };
            // An error of the value's own (not of the sink) keeps the text
            // written before it, as a `String` would.
            if std::fmt::write(&mut sink, args).is_err() && sink.full {
                self.overflow = true;
                return;
            }
            let n = sink.n;
            head[0] = tag;
            head[1..].copy_from_slice(&(n as u32).to_le_bytes());
            self.at += 5 + n;
        }

        /// Append a string value (`STR` or `DEBUG`) of the bytes `b` when
        /// they are short (at most 16 bytes) and ASCII: checked and copied
        /// in one pass, each piece loaded once. `false`, having written
        /// nothing, for anything else: then check `b` as UTF-8 and use
        /// [`Self::text`]. A value that does not fit fails the record (and
        /// counts as written).
        #[inline(always)]
        pub fn short_ascii(&mut self, tag: u8, b: &[u8]) -> bool {
            let n = b.len();
            // Each arm loads the bytes that cover `b` (overlapping), checks
            // their high bits, then stores the same pieces.
            match n {
                8..=16 => self.ascii_words::<8>(tag, b),
                4..=7 => self.ascii_words::<4>(tag, b),
                // Positions 0, n/2 and n-1 cover every byte of 1 to 3.
                1..=3 => {
                    let (x, y, z) = (b[0], b[n / 2], b[n - 1]);
                    if (x | y | z) & 0x80 != 0 {
                        return false;
                    }
                    if let Some(out) = self.str_room(tag, n) {
                        out[0] = x;
                        out[n / 2] = y;
                        out[n - 1] = z;
                    }
                    true
                }
                0 => {
                    self.str_room(tag, 0);
                    true
                }
                _ => false,
            }
        }

        /// [`Self::short_ascii`] of `N` to `2 N` bytes: the first and the
        /// last `N`.
        #[inline(always)]
        fn ascii_words<const N: usize>(&mut self, tag: u8, b: &[u8]) -> bool {
            let n = b.len();
            let (x, y) = (word::<N>(&b[..N]), word::<N>(&b[n - N..]));
            // Zero-extended to 8 bytes: one check for both widths.
            let wide = |w: [u8; N]| {
                let mut e = [0u8; 8];
                e[..N].copy_from_slice(&w);
                u64::from_le_bytes(e)
            };
            if (wide(x) | wide(y)) & 0x8080_8080_8080_8080 != 0 {
                return false;
            }
            if let Some(out) = self.str_room(tag, n) {
                out[..N].copy_from_slice(&x);
                out[n - N..].copy_from_slice(&y);
            }
            true
        }

        /// Room for a string value of `n` bytes: writes its tag and length
        /// and returns the bytes' room, or marks the record failed.
        #[inline(always)]
        fn str_room(&mut self, tag: u8, n: usize) -> Option<&mut [u8]> {
            let Some(out) = self.out.get_mut(self.at..self.at + str_bytes(n)) else {
                self.overflow = true;
                return None;
            };
            out[0] = tag;
            out[1..5].copy_from_slice(&(n as u32).to_le_bytes());
            self.at += str_bytes(n);
            Some(&mut out[5..])
        }

        /// Append `v`; a 128-bit value fails the record (see
        /// [`value_bytes`]).
        #[inline(always)]
        pub fn value(&mut self, v: &Value<'_>) {
            match *v {
                Value::I64(x) => self.num(I64, x as u64),
                Value::U64(x) => self.num(U64, x),
                Value::F64(x) => self.num(F64, x.to_bits()),
                Value::Bool(x) => self.num(BOOL, x as u64),
                Value::Str(s) => self.text(STR, s),
                Value::Debug(s) => self.text(DEBUG, s),
                Value::I128(_) | Value::U128(_) => self.overflow = true,
            }
        }

        /// The record's length, or `None` if something did not fit.
        #[inline(always)]
        pub fn finish(self) -> Option<usize> {
            (!self.overflow).then_some(self.at)
        }
    }

    /// `dst.copy_from_slice(src)` (same lengths), short values by
    /// overlapping word copies: a copy of a length not known at compile
    /// time is a call to `memcpy`, several times the cost of a short
    /// string's bytes.
    #[inline(always)]
    fn copy_bytes(dst: &mut [u8], src: &[u8]) {
        let n = src.len();
        if dst.len() != n {
            return dst.copy_from_slice(src);
        }
        match n {
            0 => {}
            // Positions 0, n/2 and n-1 cover every byte of 1 to 3.
            1..=3 => {
                dst[0] = src[0];
                dst[n / 2] = src[n / 2];
                dst[n - 1] = src[n - 1];
            }
            // Both words loaded before either is stored, as integers: as
            // two slice copies LLVM merged their tails into one `memcpy`
            // call of a variable length.
            4..=7 => {
                let (a, b) = (word::<4>(&src[..4]), word::<4>(&src[n - 4..]));
                dst[..4].copy_from_slice(&a);
                dst[n - 4..].copy_from_slice(&b);
            }
            8..=16 => {
                let (a, b) = (word::<8>(&src[..8]), word::<8>(&src[n - 8..]));
                dst[..8].copy_from_slice(&a);
                dst[n - 8..].copy_from_slice(&b);
            }
            _ => dst.copy_from_slice(src),
        }
    }

    /// `b` (N bytes long) as an array.
    #[inline(always)]
    fn word<const N: usize>(b: &[u8]) -> [u8; N] {
        b.try_into().unwrap_or([0; N])
    }

    #[inline(always)]
    fn take8(b: &mut &[u8]) -> Result<[u8; 8], DecodeError> {
        let mut x = [0u8; 8];
        x.copy_from_slice(take_n(b, 8)?);
        Ok(x)
    }

    #[inline(always)]
    fn take4(b: &mut &[u8]) -> Result<[u8; 4], DecodeError> {
        let mut x = [0u8; 4];
        x.copy_from_slice(take_n(b, 4)?);
        Ok(x)
    }

    /// A compact event's head after its kind byte ([`KIND`]); the values
    /// follow. As [`super::decode_head`] of the whole payload (which calls
    /// it), for a reader that tells the common record by its first byte
    /// and decodes it in line (the sidecar's drain: through the dispatch,
    /// a call and a copy of the result, ~40 instructions a record).
    #[inline]
    pub fn decode_head(mut b: &[u8]) -> Result<(Head, FieldIter<'_>), DecodeError> {
        let b = &mut b;
        let callsite = u32::from_le_bytes(take4(b)?);
        let ts = u64::from_le_bytes(take8(b)?);
        let tid = u32::from_le_bytes(take4(b)?);
        let scope = u64::from_le_bytes(take8(b)?);
        let trace = match take_u8(b)? {
            0 => None,
            1 => Some(take_trace(b)?),
            _ => return Err(DecodeError(postcard::Error::DeserializeBadOption)),
        };
        let head = Head::Event {
            callsite,
            ts,
            tid,
            scope,
            trace,
        };
        Ok((head, FieldIter::new(b, true)))
    }

    /// A compact scope open after its kind byte; its postcard fields follow.
    pub(super) fn decode_open(mut b: &[u8]) -> Result<(Head, FieldIter<'_>), DecodeError> {
        let b = &mut b;
        let head = Head::ScopeOpen {
            callsite: u32::from_le_bytes(take4(b)?),
            ts: u64::from_le_bytes(take8(b)?),
            tid: u32::from_le_bytes(take4(b)?),
            scope: u64::from_le_bytes(take8(b)?),
            parent: u64::from_le_bytes(take8(b)?),
            trace: take_trace(b)?,
            remote_parent: match take_u8(b)? {
                0 => false,
                1 => true,
                _ => return Err(DecodeError(postcard::Error::DeserializeBadBool)),
            },
        };
        Ok((head, FieldIter::new(b, false)))
    }

    /// A compact scope close after its kind byte (no fields may follow).
    pub(super) fn decode_close(mut b: &[u8]) -> Result<(Head, FieldIter<'_>), DecodeError> {
        let b = &mut b;
        let head = Head::ScopeClose {
            scope: u64::from_le_bytes(take8(b)?),
            ts: u64::from_le_bytes(take8(b)?),
            tid: u32::from_le_bytes(take4(b)?),
            outcome: match take_u8(b)? {
                0 => super::Outcome::Ok,
                1 => super::Outcome::Error,
                _ => return Err(super::bad_variant()),
            },
        };
        Ok((head, FieldIter::new(b, false)))
    }

    /// Where [`visit_value`] hands a value: each kind straight to where it
    /// goes, no [`Value`] in memory in between (a reader that knows where
    /// each value of a call site goes, the sidecar's drain, skips the
    /// `Value` and the dispatch on it). Each kind's method defaults to
    /// [`Visit::value`]; a visitor overrides those it writes its own way.
    pub trait Visit<'a>: Sized {
        /// Any value (each kind's method hands it here unless overridden).
        fn value(self, v: Value<'a>);
        /// An [`I64`] value.
        #[inline(always)]
        fn i64(self, v: i64) {
            self.value(Value::I64(v));
        }
        /// A [`U64`] value.
        #[inline(always)]
        fn u64(self, v: u64) {
            self.value(Value::U64(v));
        }
        /// An [`F64`] value.
        #[inline(always)]
        fn f64(self, v: f64) {
            self.value(Value::F64(v));
        }
        /// A [`BOOL`] value.
        #[inline(always)]
        fn bool(self, v: bool) {
            self.value(Value::Bool(v));
        }
        /// A [`STR`] (`debug` false) or [`DEBUG`] value.
        #[inline(always)]
        fn str(self, v: &'a str, debug: bool) {
            self.value(if debug {
                Value::Debug(v)
            } else {
                Value::Str(v)
            });
        }
    }

    /// Read one value from `b` and hand it to `to` (nothing handed on an
    /// error). The one reader of a compact value: [`FieldIter`] reads
    /// through it too.
    #[inline(always)]
    pub fn visit_value<'a>(b: &mut &'a [u8], to: impl Visit<'a>) -> Result<(), DecodeError> {
        match take_u8(b)? {
            I64 => to.i64(i64::from_le_bytes(take8(b)?)),
            U64 => to.u64(u64::from_le_bytes(take8(b)?)),
            F64 => to.f64(f64::from_le_bytes(take8(b)?)),
            BOOL => match u64::from_le_bytes(take8(b)?) {
                0 => to.bool(false),
                1 => to.bool(true),
                _ => return Err(DecodeError(postcard::Error::DeserializeBadBool)),
            },
            tag @ (STR | DEBUG) => {
                let n = u32::from_le_bytes(take4(b)?) as usize;
                let s = utf8(take_n(b, n)?)?;
                to.str(s, tag == DEBUG);
            }
            _ => return Err(super::bad_variant()),
        }
        Ok(())
    }

    /// [`Visit`] into a [`Value`], each branch storing its own (see
    /// [`FieldIter::next_into`]).
    struct Store<'v, 'a>(&'v mut Value<'a>);

    impl<'a> Visit<'a> for Store<'_, 'a> {
        #[inline(always)]
        fn value(self, v: Value<'a>) {
            *self.0 = v;
        }
    }

    /// One value into `out`, as [`super::take_value`].
    #[inline(always)]
    pub(super) fn take_value<'a>(b: &mut &'a [u8], out: &mut Value<'a>) -> Result<(), DecodeError> {
        visit_value(b, Store(out))
    }
}

/// Encodes a record into a caller-provided buffer (a stack array on the hot
/// path). Fails softly: an overflow marks the record truncated-away and the
/// caller drops and counts it.
///
/// The bytes are exactly what `postcard` writes for [`Head`] and [`Field`]
/// (the decoder is postcard's; a test compares the two), written by hand:
/// serde's generic layers cost more than the encoding itself on the hot
/// path (serde's encoding of an event was ~66 ns where this takes ~26,
/// `bench-runner encode`). postcard's format here: an enum variant is a varint of its
/// index; integers are LEB128 varints (`i64`/`i128` zigzag first); `bool`
/// one byte; `f64` 8 bytes little-endian; `&str` a varint length and the
/// bytes; `Option` a 0/1 byte and the value; `[u8; 16]` the 16 bytes.
#[derive(Debug)]
pub struct Encoder<'b> {
    buf: &'b mut [u8],
    len: usize,
    overflow: bool,
}

/// LEB128 of `v` into `out` (at least 10 bytes); returns the bytes written.
///
/// An iterator over the 10 bytes instead of an index: no bounds check per
/// byte (timestamps and random scope ids take 8 to 10 of them).
#[inline(always)]
fn put_varint(out: &mut [u8], mut v: u64) -> usize {
    for (i, b) in out[..10].iter_mut().enumerate() {
        if v < 0x80 {
            *b = v as u8;
            return i + 1;
        }
        *b = v as u8 | 0x80;
        v >>= 7;
    }
    // Not reached: after nine 7-bit groups a u64 has one bit left.
    10
}

/// `dst.copy_from_slice(src)` without a call to `memcpy` for the short
/// texts most fields carry (two overlapping fixed-width moves up to 16
/// bytes).
#[inline(always)]
fn copy_short(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    if n > 16 || dst.len() != n {
        dst.copy_from_slice(src);
    } else if n >= 8 {
        dst[..8].copy_from_slice(&src[..8]);
        dst[n - 8..].copy_from_slice(&src[n - 8..]);
    } else if n >= 4 {
        dst[..4].copy_from_slice(&src[..4]);
        dst[n - 4..].copy_from_slice(&src[n - 4..]);
    } else if n > 0 {
        // 1 to 3 bytes: first, middle and last cover them all.
        dst[0] = src[0];
        dst[n / 2] = src[n / 2];
        dst[n - 1] = src[n - 1];
    }
}

/// Where [`Encoder::field_idx_fmt`] formats to: the text's room in the
/// record. A piece that fits is one bounds check and a copy; the rest (the
/// cut at the limit, or an overflow) is out of line.
struct TextSink<'e> {
    out: &'e mut [u8],
    n: usize,
    /// `out` ends at the cut (past it text is dropped), not at the end of
    /// the buffer (past it the record does not fit).
    cut: bool,
    /// The text did not fit the record.
    full: bool,
}

impl TextSink<'_> {
    #[cold]
    #[inline(never)]
    fn past_end(&mut self, s: &str) -> std::fmt::Result {
        if !self.cut {
            self.full = true;
            return Err(std::fmt::Error);
        }
        let mut end = self.out.len() - self.n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.out[self.n..self.n + end].copy_from_slice(&s.as_bytes()[..end]);
        self.n += end;
        // Nothing fits after a cut mid-character either.
        self.out = &mut std::mem::take(&mut self.out)[..self.n];
        Ok(())
    }
}

/// A longer piece's copy, out of line: a tail call, so that the common
/// short piece's `write_str` saves no registers.
#[inline(never)]
fn copy_long(dst: &mut [u8], src: &[u8]) -> std::fmt::Result {
    dst.copy_from_slice(src);
    Ok(())
}

impl std::fmt::Write for TextSink<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let b = s.as_bytes();
        match self
            .out
            .get_mut(self.n..)
            .and_then(|r| r.get_mut(..b.len()))
        {
            Some(dst) if b.len() <= 16 => {
                self.n += b.len();
                copy_short(dst, b);
                Ok(())
            }
            Some(dst) => {
                self.n += b.len();
                copy_long(dst, b)
            }
            None => self.past_end(s),
        }
    }
}

impl<'b> Encoder<'b> {
    /// Start a record with its head.
    #[inline(always)]
    pub fn new(buf: &'b mut [u8], head: &Head) -> Self {
        let mut e = Encoder {
            buf,
            len: 0,
            overflow: false,
        };
        e.head(head);
        e
    }

    /// Start a record without a head (a scope's fields, kept for its open
    /// record).
    #[inline]
    pub fn fields_only(buf: &'b mut [u8]) -> Self {
        Encoder {
            buf,
            len: 0,
            overflow: false,
        }
    }

    /// Room for `n` more bytes, or mark the overflow.
    #[inline(always)]
    fn room(&mut self, n: usize) -> Option<&mut [u8]> {
        // No test of `overflow`: `fail` leaves no room, so once a field did
        // not fit no later one does (and nothing is written past a gap).
        if self.buf[self.len..].len() < n {
            self.fail();
            return None;
        }
        Some(&mut self.buf[self.len..][..n])
    }

    /// Mark the record as not fitting; no room is left after this.
    #[cold]
    fn fail(&mut self) {
        self.overflow = true;
        self.len = self.buf.len();
    }

    #[inline(always)]
    fn varint(&mut self, v: u64) {
        if let Some(out) = self.room(10) {
            let n = put_varint(out, v);
            self.len += n;
        }
    }

    #[inline(always)]
    fn byte(&mut self, b: u8) {
        if let Some(out) = self.room(1) {
            out[0] = b;
            self.len += 1;
        }
    }

    #[inline(always)]
    fn bytes(&mut self, b: &[u8]) {
        if let Some(out) = self.room(b.len()) {
            out.copy_from_slice(b);
            self.len += b.len();
        }
    }

    #[inline(always)]
    fn str(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.bytes(s.as_bytes());
    }

    // Inlined where the head is built, so the match on its kind folds away.
    #[inline(always)]
    fn head(&mut self, h: &Head) {
        match *h {
            Head::Event {
                callsite,
                ts,
                tid,
                scope,
                ref trace,
            } => {
                // One bounds check for the whole head (at most 48 bytes).
                let Some(out) = self.room(48) else { return };
                out[0] = 0;
                let mut i = 1;
                i += put_varint(&mut out[i..], callsite as u64);
                i += put_varint(&mut out[i..], ts);
                i += put_varint(&mut out[i..], tid as u64);
                i += put_varint(&mut out[i..], scope);
                match trace {
                    None => {
                        out[i] = 0;
                        i += 1;
                    }
                    Some(t) => {
                        out[i] = 1;
                        out[i + 1..i + 17].copy_from_slice(t);
                        i += 17;
                    }
                }
                self.len += i;
            }
            Head::ScopeOpen {
                callsite,
                ts,
                tid,
                scope,
                parent,
                ref trace,
                remote_parent,
            } => {
                // At most 1 + 5 + 10 + 5 + 10 + 10 + 16 + 1 = 58 bytes, under
                // one bounds check (every `put_varint` below has its 10).
                let Some(out) = self.room(58) else { return };
                out[0] = 1;
                let mut i = 1;
                i += put_varint(&mut out[i..], callsite as u64);
                i += put_varint(&mut out[i..], ts);
                i += put_varint(&mut out[i..], tid as u64);
                i += put_varint(&mut out[i..], scope);
                i += put_varint(&mut out[i..], parent);
                out[i..i + 16].copy_from_slice(trace);
                out[i + 16] = remote_parent as u8;
                self.len += i + 17;
            }
            Head::ScopeRecord { scope, ts } => {
                self.byte(2);
                self.varint(scope);
                self.varint(ts);
            }
            Head::ScopeClose {
                scope,
                ts,
                tid,
                outcome,
            } => {
                // At most 1 + 10 + 10 + 5 + 1 = 27 bytes; 32 so that the
                // last `put_varint` has its 10 bytes of room.
                let Some(out) = self.room(32) else { return };
                out[0] = 3;
                let mut i = 1;
                i += put_varint(&mut out[i..], scope);
                i += put_varint(&mut out[i..], ts);
                i += put_varint(&mut out[i..], tid as u64);
                out[i] = match outcome {
                    Outcome::Ok => 0,
                    Outcome::Error => 1,
                };
                self.len += i + 1;
            }
        }
    }

    #[inline(always)]
    fn value(&mut self, v: &Value<'_>) {
        match *v {
            Value::I64(x) => {
                self.byte(0);
                self.varint(((x << 1) ^ (x >> 63)) as u64);
            }
            Value::U64(x) => {
                self.byte(1);
                self.varint(x);
            }
            Value::F64(x) => {
                self.byte(2);
                self.bytes(&x.to_le_bytes());
            }
            Value::Bool(b) => {
                self.byte(3);
                self.byte(b as u8);
            }
            Value::Str(s) => {
                self.byte(4);
                self.str(s);
            }
            Value::Debug(s) => {
                self.byte(5);
                self.str(s);
            }
            Value::I128(x) => {
                self.byte(6);
                self.varint128(((x << 1) ^ (x >> 127)) as u128);
            }
            Value::U128(x) => {
                self.byte(7);
                self.varint128(x);
            }
        }
    }

    fn varint128(&mut self, mut v: u128) {
        let Some(out) = self.room(19) else { return };
        let mut i = 0;
        while v >= 0x80 {
            out[i] = v as u8 | 0x80;
            v >>= 7;
            i += 1;
        }
        out[i] = v as u8;
        self.len += i + 1;
    }

    /// Append a field.
    #[inline]
    pub fn field(&mut self, f: &Field<'_>) {
        match *f {
            Field::Idx(idx, ref v) => self.field_idx(idx, v),
            Field::Named(name, ref v) => {
                self.byte(1);
                self.str(name);
                self.value(v);
            }
        }
    }

    /// Append `Field::Idx(idx, v)`, with one bounds check for an integer or
    /// a string value. Always inlined: the C API's per-field loop calls it
    /// directly, where [`Self::field`]'s whole body is not inlined, and each
    /// of the layer's `record_*` gets it specialised for its value kind.
    #[inline(always)]
    pub fn field_idx(&mut self, idx: u16, v: &Value<'_>) {
        match *v {
            Value::I64(x) => self.field_int(idx, 0, ((x << 1) ^ (x >> 63)) as u64),
            Value::U64(x) => self.field_int(idx, 1, x),
            Value::Str(s) => self.field_text(idx, 4, s.as_bytes()),
            Value::Debug(s) => self.field_text(idx, 5, s.as_bytes()),
            _ => {
                self.byte(0);
                self.varint(idx as u64);
                self.value(v);
            }
        }
    }

    /// `Field::Idx` of an integer value: variant, index, value tag `tag`,
    /// the varint `raw` (at most 1 + 3 + 1 + 10 bytes).
    #[inline(always)]
    fn field_int(&mut self, idx: u16, tag: u8, raw: u64) {
        let Some(out) = self.room(16) else { return };
        out[0] = 0;
        // A call site has few fields (`tracing` allows 32): a one-byte
        // index, and every offset after it a constant (no bounds checks).
        let n = if idx < 0x80 {
            out[1] = idx as u8;
            out[2] = tag;
            3 + put_varint(&mut out[3..], raw)
        } else {
            let i = 1 + put_varint(&mut out[1..], idx as u64);
            out[i] = tag;
            i + 1 + put_varint(&mut out[i + 1..], raw)
        };
        self.len += n;
    }

    /// `Field::Idx` of a string value: variant, index, value tag `tag`,
    /// the length varint and the text.
    #[inline(always)]
    fn field_text(&mut self, idx: u16, tag: u8, text: &[u8]) {
        let Some(out) = self.room(16 + text.len()) else {
            return;
        };
        out[0] = 0;
        // The common case (a short text of one of the first 128 fields):
        // four bytes at constant offsets, then the text.
        let i = if idx < 0x80 && text.len() < 0x80 {
            out[1] = idx as u8;
            out[2] = tag;
            out[3] = text.len() as u8;
            4
        } else {
            let mut i = 1 + put_varint(&mut out[1..], idx as u64);
            out[i] = tag;
            i += 1 + put_varint(&mut out[i + 1..], text.len() as u64);
            i
        };
        copy_short(&mut out[i..i + text.len()], text);
        self.len += i + text.len();
    }

    /// Append `Field::Idx(idx, Value::Str(text))` where the text is what
    /// `text` formats to, written straight into the buffer (no String in
    /// between), cut at `max` bytes (at a char boundary).
    #[inline(always)]
    pub fn field_idx_fmt(&mut self, idx: u16, text: &dyn std::fmt::Debug, max: usize) {
        // Variant, index, tag and one length byte (the common case: shorter
        // than 128; moved right below when the text turns out longer) under
        // one bounds check: at most 1 + 3 + 1 + 1 bytes, 1 + 10 for the
        // index's `put_varint`.
        let Some(out) = self.room(16) else { return };
        out[0] = 0;
        let i = if idx < 0x80 {
            out[1] = idx as u8;
            2
        } else {
            1 + put_varint(&mut out[1..], idx as u64)
        };
        out[i] = 4;
        out[i + 1] = 0;
        let at = self.len + i + 1;
        let start = at + 1;
        // The text's room: up to `max`, or to the end of the buffer (then
        // more text is an overflow, not a cut).
        let rest = self.buf.len() - start;
        let mut w = TextSink {
            out: &mut self.buf[start..start + rest.min(max)],
            n: 0,
            cut: max <= rest,
            full: false,
        };
        if std::fmt::write(&mut w, format_args!("{text:?}")).is_err() {
            self.fail();
            return;
        }
        let n = w.n;
        self.len = start + n;
        if n < 0x80 {
            self.buf[at] = n as u8;
            return;
        }
        let mut lenb = [0u8; 10];
        let k = put_varint(&mut lenb, n as u64);
        if self.buf.len() - self.len < k - 1 {
            self.fail();
            return;
        }
        self.buf.copy_within(start..self.len, at + k);
        self.buf[at..at + k].copy_from_slice(&lenb[..k]);
        self.len += k - 1;
    }

    /// Whether a field did not fit.
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    /// The encoded bytes, or `None` if something did not fit.
    #[inline]
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
        fn varint_is_postcards(shift in 0u32..64, v in any::<u64>(), i in any::<i64>()) {
            // Every length: `shift` sweeps the top bit through all 64 places.
            for v in [v >> shift, v, u64::MAX >> shift] {
                let mut buf = [0u8; 64];
                let n = put_varint(&mut buf, v);
                prop_assert_eq!(&buf[..n], &postcard::to_allocvec(&v).unwrap()[..]);
            }
            let mut buf = [0u8; 64];
            let mut e = Encoder::fields_only(&mut buf);
            let f = Field::Idx(300, Value::I64(i >> shift));
            e.field(&f);
            prop_assert_eq!(e.finish().unwrap(), &postcard::to_allocvec(&f).unwrap()[..]);
        }

        #[test]
        fn varint_decodes_as_postcard(bytes in proptest::collection::vec(any::<u8>(), 0..14),
                                      cont in 0usize..12, v in any::<u64>(), shift in 0u32..64) {
            // Arbitrary bytes, and ones whose first `cont` bytes carry a
            // continuation bit (every length the word path of
            // `take_u64_long` reads, each with and without 8 bytes after
            // it), and real varints of every length.
            let mut long = bytes.clone();
            for x in long.iter_mut().take(cont) { *x |= 0x80; }
            let mut real = postcard::to_allocvec(&(v >> shift)).unwrap();
            real.extend_from_slice(&bytes);
            for input in [&bytes, &long, &real] {
                for n in 0..=input.len() {
                    let b = &input[..n];
                    let theirs = postcard::take_from_bytes::<u64>(b).map(|(v, r)| (v, r.len()));
                    let theirs = format!("{:?}", theirs.map_err(DecodeError));
                    let mut r = b;
                    let ours = take_u64(&mut r).map(|v| (v, r.len()));
                    prop_assert_eq!(&format!("{ours:?}"), &theirs);
                    let mut r = b;
                    let ours = take_u64_long(&mut r).map(|v| (v, r.len()));
                    prop_assert_eq!(&format!("{ours:?}"), &theirs);
                    let mut r = b;
                    let ours = take_u32(&mut r).map(|v| (v, r.len()));
                    let theirs = postcard::take_from_bytes::<u32>(b).map(|(v, r)| (v, r.len()));
                    prop_assert_eq!(format!("{ours:?}"), format!("{:?}", theirs.map_err(DecodeError)));
                    let mut r = b;
                    let ours = take_varint(&mut r, 3, 0b11).map(|v| (v as u16, r.len()));
                    let theirs = postcard::take_from_bytes::<u16>(b).map(|(v, r)| (v, r.len()));
                    prop_assert_eq!(format!("{ours:?}"), format!("{:?}", theirs.map_err(DecodeError)));
                }
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decodes_as_postcard(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(debug_of(decode(&bytes)), debug_of(decode_postcard(&bytes)));
            prop_assert_eq!(debug_of(decode_by_next_field(&bytes)), debug_of(decode_postcard(&bytes)));
        }

        #[test]
        fn decodes_damaged_as_postcard(vals in proptest::collection::vec(value(), 0..6),
                                       at in any::<usize>(), byte in any::<u8>(), cut in any::<bool>()) {
            let head = Head::ScopeOpen { callsite: 9, ts: 1 << 40, tid: 3, scope: 5, parent: 0,
                trace: [2; 16], remote_parent: false };
            let mut buf = [0u8; 4096];
            let mut e = Encoder::new(&mut buf, &head);
            for (i, (k, a, b, c, d, s)) in vals.iter().enumerate() {
                let v = match k % 8 { 0 => Value::I64(*a), 1 => Value::U64(*b), 2 => Value::F64(*c),
                    3 => Value::Bool(*d), 4 => Value::Str(s), 5 => Value::Debug(s),
                    6 => Value::I128(i128::from(*a) << 64), _ => Value::U128(u128::from(*b) << 60) };
                e.field(&if i % 2 == 0 { Field::Idx(u16::from(*k) * 250, v) } else { Field::Named(s, v) });
            }
            let mut bytes = e.finish().unwrap().to_vec();
            let at = at % bytes.len().max(1);
            if cut { bytes.truncate(at); } else { bytes[at] = byte; }
            prop_assert_eq!(debug_of(decode(&bytes)), debug_of(decode_postcard(&bytes)));
            prop_assert_eq!(debug_of(decode_by_next_field(&bytes)), debug_of(decode_postcard(&bytes)));
        }

        #[test]
        fn callsite_def_roundtrip(name in ".{0,20}", target in ".{0,20}", line in any::<Option<u32>>(),
                                  fields in proptest::collection::vec(".{0,10}", 0..8)) {
            let def = CallsiteDef { id: 3, kind: CallsiteKind::Scope, level: Level::Warn, name: &name,
                target: &target, file: Some("a.rs"), line, fields: fields.iter().map(|s| s.as_str()).collect(), message: Some("m") };
            let bytes = postcard::to_allocvec(&def).unwrap();
            let back: CallsiteDef<'_> = postcard::from_bytes(&bytes).unwrap();
            prop_assert_eq!(back, def);
        }
    }

    /// The reference the hand-written decoder must agree with: postcard's
    /// serde deserializer for the postcard layout (the decoder as it was),
    /// [`decode_compact_plainly`] for the compact one.
    fn decode_postcard(payload: &[u8]) -> Result<Frame<'_>, DecodeError> {
        if payload.first() == Some(&compact::KIND) {
            return decode_compact_plainly(payload)
                .ok_or(DecodeError(postcard::Error::DeserializeBadEncoding));
        }
        let (head, mut rest) = match payload.first() {
            Some(&(compact::KIND_OPEN | compact::KIND_CLOSE)) => {
                compact_scope_head_plainly(payload)
                    .ok_or(DecodeError(postcard::Error::DeserializeBadEncoding))?
            }
            _ => postcard::take_from_bytes::<Head>(payload)?,
        };
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

    /// A compact scope head read by offsets, as `compact::KIND_OPEN` and
    /// `KIND_CLOSE` draw it; the postcard fields follow.
    fn compact_scope_head_plainly(p: &[u8]) -> Option<(Head, &[u8])> {
        let le = |a: usize, n: usize| -> Option<u64> {
            let b = p.get(a..a + n)?;
            Some(b.iter().rev().fold(0u64, |acc, &x| acc << 8 | u64::from(x)))
        };
        if p[0] == compact::KIND_OPEN {
            let head = Head::ScopeOpen {
                callsite: le(1, 4)? as u32,
                ts: le(5, 8)?,
                tid: le(13, 4)? as u32,
                scope: le(17, 8)?,
                parent: le(25, 8)?,
                trace: <[u8; 16]>::try_from(p.get(33..49)?).ok()?,
                remote_parent: match *p.get(49)? {
                    0 => false,
                    1 => true,
                    _ => return None,
                },
            };
            return Some((head, &p[50..]));
        }
        let head = Head::ScopeClose {
            scope: le(1, 8)?,
            ts: le(9, 8)?,
            tid: le(17, 4)? as u32,
            outcome: match *p.get(21)? {
                0 => Outcome::Ok,
                1 => Outcome::Error,
                _ => return None,
            },
        };
        Some((head, &p[22..]))
    }

    /// The compact layout read by offsets, as its doc draws it.
    fn decode_compact_plainly(p: &[u8]) -> Option<Frame<'_>> {
        let le = |a: usize, n: usize| -> Option<u64> {
            let b = p.get(a..a + n)?;
            Some(b.iter().rev().fold(0u64, |acc, &x| acc << 8 | u64::from(x)))
        };
        let mut at = 26;
        let trace = match *p.get(25)? {
            0 => None,
            1 => {
                at += 16;
                Some(<[u8; 16]>::try_from(p.get(26..42)?).ok()?)
            }
            _ => return None,
        };
        let head = Head::Event {
            callsite: le(1, 4)? as u32,
            ts: le(5, 8)?,
            tid: le(13, 4)? as u32,
            scope: le(17, 8)?,
            trace,
        };
        let mut fields = Vec::new();
        while at < p.len() {
            if fields.len() == MAX_FIELDS {
                return None;
            }
            let raw = le(at + 1, 8);
            let v = match p[at] {
                0 => Value::I64(raw? as i64),
                1 => Value::U64(raw?),
                2 => Value::F64(f64::from_bits(raw?)),
                3 if raw? < 2 => Value::Bool(raw? == 1),
                t @ (4 | 5) => {
                    let n = le(at + 1, 4)? as usize;
                    let s = std::str::from_utf8(p.get(at + 5..at + 5 + n)?).ok()?;
                    at += 5 + n;
                    fields.push(Field::Idx(
                        fields.len() as u16,
                        if t == 4 {
                            Value::Str(s)
                        } else {
                            Value::Debug(s)
                        },
                    ));
                    continue;
                }
                _ => return None,
            };
            at += 9;
            fields.push(Field::Idx(fields.len() as u16, v));
        }
        Some(Frame { head, fields })
    }

    /// A compact record of `vals` (as in [`value`]: kinds 0 to 5).
    fn compact_record(head: (u32, u64, u32, u64, Option<TraceId>), vals: &[Value<'_>]) -> Vec<u8> {
        let (callsite, ts, tid, scope, trace) = head;
        let n = compact::head_bytes(trace.is_some())
            + vals
                .iter()
                .map(|v| compact::value_bytes(v).unwrap())
                .sum::<usize>();
        let mut buf = vec![0u8; n];
        let mut w = compact::Writer::new(&mut buf, callsite, ts, tid, scope, trace.as_ref());
        for v in vals {
            w.value(v);
        }
        assert_eq!(w.finish(), Some(n));
        buf
    }

    fn value_of<'a>((k, a, b, c, d, s): &'a (u8, i64, u64, f64, bool, String)) -> Value<'a> {
        match k % 6 {
            0 => Value::I64(*a),
            1 => Value::U64(*b),
            2 => Value::F64(*c),
            3 => Value::Bool(*d),
            4 => Value::Str(s),
            _ => Value::Debug(s),
        }
    }

    proptest! {
        #[test]
        fn compact_roundtrip(callsite in any::<u32>(), ts in any::<u64>(), tid in any::<u32>(),
                             scope in any::<u64>(), trace in any::<Option<[u8; 16]>>(),
                             vals in proptest::collection::vec(value(), 0..20)) {
            let vals: Vec<Value<'_>> = vals.iter().map(value_of).collect();
            let bytes = compact_record((callsite, ts, tid, scope, trace), &vals);
            let frame = decode(&bytes).unwrap();
            prop_assert_eq!(&frame.head, &Head::Event { callsite, ts, tid, scope, trace });
            prop_assert_eq!(frame.fields.len(), vals.len());
            for (i, (f, v)) in frame.fields.iter().zip(&vals).enumerate() {
                prop_assert_eq!(format!("{f:?}"), format!("{:?}", Field::Idx(i as u16, *v)));
            }
            prop_assert_eq!(debug_of(decode_by_next_field(&bytes)), debug_of(Ok(frame.clone())));
            prop_assert_eq!(debug_of(decode_postcard(&bytes)), debug_of(Ok(frame)));
        }

        #[test]
        fn compact_damaged_decodes_as_reference(vals in proptest::collection::vec(value(), 0..6),
                                                trace in any::<Option<[u8; 16]>>(),
                                                at in any::<usize>(), byte in any::<u8>(), cut in any::<bool>()) {
            let vals: Vec<Value<'_>> = vals.iter().map(value_of).collect();
            let mut bytes = compact_record((7, 1 << 40, 3, 9, trace), &vals);
            let at = at % bytes.len();
            if cut { bytes.truncate(at); } else { bytes[at] = byte; }
            prop_assert_eq!(debug_of(decode(&bytes)), debug_of(decode_postcard(&bytes)));
            prop_assert_eq!(debug_of(decode_by_next_field(&bytes)), debug_of(decode_postcard(&bytes)));
        }

        #[test]
        fn compact_scope_heads_roundtrip(callsite in any::<u32>(), ts in any::<u64>(), tid in any::<u32>(),
                                         scope in any::<u64>(), parent in any::<u64>(), trace in any::<[u8; 16]>(),
                                         remote in any::<bool>(), error in any::<bool>(),
                                         vals in proptest::collection::vec(value(), 0..4)) {
            let mut buf = vec![0u8; 4096];
            let n = compact::write_open(&mut buf, callsite, ts, tid, scope, parent, &trace, remote).unwrap();
            prop_assert_eq!(n, compact::OPEN_BYTES);
            // The scope's fields follow in the postcard layout, as the layer
            // copies them.
            let fields: Vec<Field<'_>> = vals.iter().enumerate().map(|(i, v)| {
                if i % 2 == 0 { Field::Idx(i as u16, value_of(v)) } else { Field::Named("k", value_of(v)) }
            }).collect();
            let mut e = Encoder::fields_only(&mut buf[n..]);
            for f in &fields {
                e.field(f);
            }
            let m = e.finish().unwrap().len();
            let frame = decode(&buf[..n + m]).unwrap();
            prop_assert_eq!(frame.head, Head::ScopeOpen { callsite, ts, tid, scope, parent, trace, remote_parent: remote });
            prop_assert_eq!(format!("{:?}", frame.fields), format!("{fields:?}"));
            prop_assert_eq!(debug_of(decode_postcard(&buf[..n + m])), debug_of(decode(&buf[..n + m])));
            let outcome = if error { Outcome::Error } else { Outcome::Ok };
            let n = compact::write_close(&mut buf, scope, ts, tid, outcome).unwrap();
            prop_assert_eq!(n, compact::CLOSE_BYTES);
            let frame = decode(&buf[..n]).unwrap();
            prop_assert_eq!(frame.head, Head::ScopeClose { scope, ts, tid, outcome });
            prop_assert!(frame.fields.is_empty());
            // One byte short: the writers refuse, the decoder errs.
            prop_assert_eq!(compact::write_close(&mut buf[..n - 1], scope, ts, tid, outcome), None);
            prop_assert!(decode(&buf[..n - 1]).is_err());
        }

        #[test]
        fn compact_scope_arbitrary_decodes_as_reference(open in any::<bool>(),
                                                        bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let mut bytes = bytes;
            bytes.insert(0, if open { compact::KIND_OPEN } else { compact::KIND_CLOSE });
            prop_assert_eq!(debug_of(decode(&bytes)), debug_of(decode_postcard(&bytes)));
            prop_assert_eq!(debug_of(decode_by_next_field(&bytes)), debug_of(decode_postcard(&bytes)));
        }

        #[test]
        fn compact_short_ascii_writes_what_text_writes(b in proptest::collection::vec(prop_oneof![0x20u8..0x7f, any::<u8>()], 0..24),
                                                       room in 26usize..64) {
            // `room` from the head alone to more than any value here needs:
            // a value that does not fit fails both writers' records alike.
            let (mut by_ascii, mut by_text) = (vec![0xEEu8; room], vec![0xEEu8; room]);
            let mut w = compact::Writer::new(&mut by_ascii, 1, 2, 3, 4, None);
            let took = w.short_ascii(compact::STR, &b);
            prop_assert_eq!(took, b.len() <= 16 && b.is_ascii());
            let mut v = compact::Writer::new(&mut by_text, 1, 2, 3, 4, None);
            if took {
                v.text(compact::STR, std::str::from_utf8(&b).unwrap());
            }
            // Refused: nothing written.
            prop_assert_eq!(w.finish(), v.finish());
            prop_assert_eq!(by_ascii, by_text);
        }

        #[test]
        fn compact_arbitrary_decodes_as_reference(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut bytes = bytes;
            bytes.insert(0, compact::KIND);
            prop_assert_eq!(debug_of(decode(&bytes)), debug_of(decode_postcard(&bytes)));
            prop_assert_eq!(debug_of(decode_by_next_field(&bytes)), debug_of(decode_postcard(&bytes)));
        }
    }

    #[test]
    fn compact_strings_of_every_short_length() {
        // The word copies of `copy_bytes` at and around each length class.
        let text: String = (0..40u8).map(|i| char::from(b'a' + i % 26)).collect();
        for n in 0..=text.len() {
            let s = &text[..n];
            let bytes = compact_record((1, 2, 3, 4, None), &[Value::Str(s), Value::U64(9)]);
            let frame = decode(&bytes).unwrap();
            assert_eq!(
                format!("{:?}", frame.fields),
                format!(
                    "{:?}",
                    [Field::Idx(0, Value::Str(s)), Field::Idx(1, Value::U64(9))]
                ),
                "{n}"
            );
        }
    }

    #[test]
    fn compact_same_bytes_as_drawn() {
        let bytes = compact_record(
            (
                0x0403_0201,
                0x0807_0605_0403_0201,
                7,
                0x11,
                Some([0xAB; 16]),
            ),
            &[Value::I64(-2), Value::Str("hé"), Value::Bool(true)],
        );
        let mut want = vec![4, 1, 2, 3, 4, 1, 2, 3, 4, 5, 6, 7, 8, 7, 0, 0, 0];
        want.extend([0x11, 0, 0, 0, 0, 0, 0, 0, 1]);
        want.extend([0xAB; 16]);
        want.extend([0, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        want.extend([4, 3, 0, 0, 0, b'h', 0xC3, 0xA9]);
        want.extend([3, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes, want);
        // A buffer one byte short, and a 128-bit value, fail the record.
        let mut short = vec![0u8; want.len() - 1];
        let mut w = compact::Writer::new(&mut short, 1, 2, 3, 4, Some(&[0xAB; 16]));
        w.value(&Value::I64(-2));
        w.value(&Value::Str("hé"));
        w.value(&Value::Bool(true));
        assert_eq!(w.finish(), None);
        let mut buf = [0u8; 64];
        let mut w = compact::Writer::new(&mut buf, 1, 2, 3, 4, None);
        w.value(&Value::U128(1));
        assert_eq!(w.finish(), None);
        assert_eq!(compact::value_bytes(&Value::I128(1)), None);
    }

    #[test]
    fn compact_many_fields_are_refused() {
        let vals = vec![Value::Bool(true); MAX_FIELDS + 1];
        let bytes = compact_record((1, 2, 3, 0, None), &vals);
        assert!(decode(&bytes).is_err() && decode_postcard(&bytes).is_err());
        assert!(decode(&compact_record((1, 2, 3, 0, None), &vals[..MAX_FIELDS])).is_ok());
    }

    /// [`decode`] through [`FieldIter::next_field`] and
    /// [`FieldIter::finish`], as the sidecar reads.
    fn decode_by_next_field(payload: &[u8]) -> Result<Frame<'_>, DecodeError> {
        let (head, mut iter) = decode_head(payload)?;
        let mut fields = Vec::new();
        while let Some(f) = iter.next_field() {
            fields.push(f);
        }
        iter.finish()?;
        Ok(Frame { head, fields })
    }

    /// A decode result to compare: `Ok` with its frame (floats by their
    /// `Debug` text, so NaN equals NaN) or just "error" (the two decoders
    /// may name an error differently).
    fn debug_of(r: Result<Frame<'_>, DecodeError>) -> String {
        r.map_or_else(|_| "error".into(), |f| format!("{f:?}"))
    }

    #[test]
    fn many_fields_are_refused() {
        let mut buf = vec![0u8; 8192];
        let mut e = Encoder::new(&mut buf, &Head::ScopeRecord { scope: 1, ts: 2 });
        for i in 0..=MAX_FIELDS {
            e.field(&Field::Idx(i as u16, Value::Bool(true)));
        }
        let bytes = e.finish().unwrap();
        assert!(decode(bytes).is_err() && decode_postcard(bytes).is_err());
        let (_, mut fields) = decode_head(bytes).unwrap();
        assert_eq!(
            fields
                .by_ref()
                .take(MAX_FIELDS)
                .filter(Result::is_ok)
                .count(),
            MAX_FIELDS
        );
        assert!(fields.next().unwrap().is_err());
        assert!(fields.next().is_none());
        assert!(decode_by_next_field(bytes).is_err());
    }

    #[test]
    fn ascii_is_is_ascii() {
        for len in 0..40 {
            let mut b = vec![b'a'; len];
            assert!(ascii(&b));
            for at in 0..len {
                for hi in [0x80, 0xc3, 0xff] {
                    b[at] = hi;
                    assert!(!ascii(&b), "{len} {at}");
                    b[at] = b'a';
                }
            }
        }
    }

    #[test]
    fn varint_every_width_boundary() {
        for k in 0..64 {
            for v in [
                (1u64 << k) - 1,
                1u64 << k,
                (1u64 << k) + 1,
                u64::MAX - (1u64 << k),
            ] {
                let mut buf = [0xAAu8; 10];
                let n = put_varint(&mut buf, v);
                assert_eq!(&buf[..n], &postcard::to_allocvec(&v).unwrap()[..], "{v:#x}");
            }
        }
    }

    #[test]
    fn same_bytes_as_postcard() {
        let long = "x".repeat(300);
        let heads = [
            Head::Event {
                callsite: 70000,
                ts: u64::MAX,
                tid: 4_000_000,
                scope: 1 << 40,
                trace: Some([9; 16]),
            },
            Head::Event {
                callsite: 0,
                ts: 0,
                tid: 0,
                scope: 0,
                trace: None,
            },
            Head::ScopeOpen {
                callsite: 5,
                ts: 1 << 50,
                tid: 77,
                scope: u64::MAX,
                parent: 3,
                trace: [1; 16],
                remote_parent: true,
            },
            Head::ScopeOpen {
                callsite: u32::MAX,
                ts: u64::MAX,
                tid: u32::MAX,
                scope: u64::MAX,
                parent: u64::MAX,
                trace: [0xff; 16],
                remote_parent: false,
            },
            Head::ScopeRecord { scope: 300, ts: 9 },
            Head::ScopeRecord {
                scope: u64::MAX,
                ts: u64::MAX,
            },
            Head::ScopeClose {
                scope: 1,
                ts: 2,
                tid: 3,
                outcome: Outcome::Error,
            },
            Head::ScopeClose {
                scope: u64::MAX,
                ts: u64::MAX,
                tid: u32::MAX,
                outcome: Outcome::Ok,
            },
            Head::Event {
                callsite: u32::MAX,
                ts: u64::MAX,
                tid: u32::MAX,
                scope: u64::MAX,
                trace: Some([0xff; 16]),
            },
        ];
        for h in &heads {
            let mut a = [0u8; 128];
            let want = postcard::to_slice(h, &mut a).unwrap().to_vec();
            let mut b = [0u8; 128];
            assert_eq!(
                Encoder::new(&mut b, h).finish().unwrap(),
                &want[..],
                "{h:?}"
            );
        }
        for s in ["", "short", long.as_str()] {
            let vals = [
                Value::I64(i64::MIN),
                Value::I64(-65),
                Value::I64(64),
                Value::U64(u64::MAX),
                Value::U64(128),
                Value::F64(1.5),
                Value::Bool(true),
                Value::Str(s),
                Value::Debug(s),
                Value::I128(i128::MIN),
                Value::U128(u128::MAX),
            ];
            for (i, v) in vals.iter().enumerate() {
                let mut a = [0u8; 1024];
                let want = postcard::to_slice(&Field::Idx(i as u16 * 97, *v), &mut a)
                    .unwrap()
                    .to_vec();
                let mut b = [0u8; 1024];
                let mut e = Encoder::fields_only(&mut b);
                e.field_idx(i as u16 * 97, v);
                assert_eq!(e.finish().unwrap(), &want[..], "field_idx {v:?}");
                for f in [Field::Idx(i as u16 * 97, *v), Field::Named(s, *v)] {
                    let mut a = [0u8; 1024];
                    let want = postcard::to_slice(&f, &mut a).unwrap().to_vec();
                    let mut b = [0u8; 1024];
                    let mut e = Encoder::fields_only(&mut b);
                    e.field(&f);
                    assert_eq!(e.finish().unwrap(), &want[..], "{f:?}");
                }
            }
            let mut a = [0u8; 1024];
            let want = postcard::to_slice(&Field::Idx(3, Value::Str(s)), &mut a)
                .unwrap()
                .to_vec();
            let mut b = [0u8; 1024];
            let mut e = Encoder::fields_only(&mut b);
            e.field_idx_fmt(3, &format_args!("{s}"), 1 << 14);
            assert_eq!(e.finish().unwrap(), &want[..]);
        }
    }

    /// Texts of every short length (each width of the fixed-width copies),
    /// multi-byte characters, formatted in two pieces: the same bytes as
    /// postcard, cut at a char boundary at `max`, and either the exact
    /// record or an overflow in a buffer too small.
    #[test]
    fn short_texts_cuts_and_overflows() {
        fn postcard_of(idx: u16, s: &str) -> Vec<u8> {
            let mut a = [0u8; 256];
            postcard::to_slice(&Field::Idx(idx, Value::Str(s)), &mut a)
                .unwrap()
                .to_vec()
        }
        let base = "a\u{e9}\u{20ac}\u{1d11e}bcdefghijklmnopqrstuvwxyz0123456789";
        for len in (0..=base.len()).filter(|&n| base.is_char_boundary(n)) {
            let s = &base[..len];
            let mut b = [0u8; 256];
            let mut e = Encoder::fields_only(&mut b);
            e.field_idx(200, &Value::Str(s));
            assert_eq!(e.finish().unwrap(), &postcard_of(200, s)[..], "{s:?}");
            let mid = (len / 2..=len).find(|&m| s.is_char_boundary(m)).unwrap();
            let (x, y) = s.split_at(mid);
            for max in 0..=len + 1 {
                let mut end = max.min(len);
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                let want = postcard_of(3, &s[..end]);
                for room in 0..want.len() + 20 {
                    let mut b = vec![0u8; room];
                    let mut e = Encoder::fields_only(&mut b);
                    e.field_idx_fmt(3, &format_args!("{x}{y}"), max);
                    match e.finish() {
                        Some(got) => assert_eq!(got, &want[..], "{s:?} max {max} room {room}"),
                        None => assert!(room < want.len() + 16, "{s:?} max {max} room {room}"),
                    }
                }
            }
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

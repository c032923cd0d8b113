//! A prototype of a hand-written encoder for the ring wire format, kept
//! here to measure the change proposed for `client/src/wire.rs`: it writes
//! the *same bytes* as `postcard::to_slice` of `distlog::wire::Head` and
//! `Field` (checked by the tests below), without serde's generic layers.
//!
//! postcard's format, as used by those types: an enum variant is a varint
//! of its index; `u16`/`u32`/`u64` are LEB128 varints; `i64` is zigzag then
//! varint; `bool` one byte; `f64` 8 bytes little-endian; `&str` a varint
//! length and the bytes; `Option` a 0/1 byte and the value; `[u8; 16]` the
//! 16 bytes.

use distlog::wire::{Head, Value};

/// LEB128 into `out` (at least 10 bytes); returns the bytes written.
#[inline(always)]
fn put_varint(out: &mut [u8], mut v: u64) -> usize {
    let out = &mut out[..10];
    let mut i = 0;
    while v >= 0x80 {
        out[i] = v as u8 | 0x80;
        v >>= 7;
        i += 1;
    }
    out[i] = v as u8;
    i + 1
}

/// Encodes into a caller's buffer; an overflow makes [`FastEncoder::finish`]
/// return `None` (the caller drops and counts the record).
#[derive(Debug)]
pub struct FastEncoder<'b> {
    buf: &'b mut [u8],
    len: usize,
    overflow: bool,
}

impl<'b> FastEncoder<'b> {
    /// An empty record.
    #[inline]
    pub fn new(buf: &'b mut [u8]) -> Self {
        FastEncoder {
            buf,
            len: 0,
            overflow: false,
        }
    }

    /// Room for `n` more bytes, or mark the overflow.
    #[inline(always)]
    fn room(&mut self, n: usize) -> Option<&mut [u8]> {
        if self.overflow || self.buf.len() - self.len < n {
            self.overflow = true;
            return None;
        }
        Some(&mut self.buf[self.len..self.len + n])
    }

    #[inline(always)]
    fn varint(&mut self, v: u64) {
        let Some(out) = self.room(10) else { return };
        let n = put_varint(out, v);
        self.len += n;
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

    /// The record's head (only `Head::Event` has a fast form here; the
    /// others are rare and go through postcard).
    #[inline]
    pub fn head(&mut self, h: &Head) {
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
                let mut i = 1;
                out[0] = 0;
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
            ref other => {
                let rest = &mut self.buf[self.len..];
                match postcard::to_slice(other, rest) {
                    Ok(s) => self.len += s.len(),
                    Err(_) => self.overflow = true,
                }
            }
        }
    }

    /// `Field::Idx(idx, v)`.
    #[inline]
    pub fn field_idx(&mut self, idx: u16, v: &Value<'_>) {
        // Variant, index (<= 3 bytes) and the value's fixed part in one check.
        let Some(out) = self.room(24) else { return };
        out[0] = 0;
        let mut i = 1 + put_varint(&mut out[1..], idx as u64);
        match *v {
            Value::I64(x) => {
                out[i] = 0;
                i += 1 + put_varint(&mut out[i + 1..], ((x << 1) ^ (x >> 63)) as u64);
            }
            Value::U64(x) => {
                out[i] = 1;
                i += 1 + put_varint(&mut out[i + 1..], x);
            }
            _ => {
                self.len += i;
                self.value(v);
                return;
            }
        }
        self.len += i;
    }

    /// `Field::Named(name, v)`.
    #[inline]
    pub fn field_named(&mut self, name: &str, v: &Value<'_>) {
        self.byte(1);
        self.str(name);
        self.value(v);
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

    /// The bytes, or `None` after an overflow.
    #[inline]
    pub fn finish(self) -> Option<&'b [u8]> {
        if self.overflow {
            None
        } else {
            Some(&self.buf[..self.len])
        }
    }
}

/// The benchmark event through distlog's current encoder (postcard).
#[inline(never)]
pub fn encode_postcard(buf: &mut [u8], ts: u64, a: i64) -> usize {
    use distlog::wire::{Encoder, Field};
    let head = Head::Event {
        callsite: 3,
        ts,
        tid: 12345,
        scope: 0,
        trace: None,
    };
    let mut e = Encoder::new(buf, &head);
    e.field(&Field::Idx(0, Value::Str("message text")));
    e.field(&Field::Idx(1, Value::I64(a)));
    e.field(&Field::Idx(2, Value::U64(42)));
    e.field(&Field::Idx(3, Value::Str("short")));
    e.finish().map_or(0, |b| b.len())
}

/// The same event through [`FastEncoder`].
#[inline(never)]
pub fn encode_fast(buf: &mut [u8], ts: u64, a: i64) -> usize {
    let head = Head::Event {
        callsite: 3,
        ts,
        tid: 12345,
        scope: 0,
        trace: None,
    };
    let mut e = FastEncoder::new(buf);
    e.head(&head);
    e.field_idx(0, &Value::Str("message text"));
    e.field_idx(1, &Value::I64(a));
    e.field_idx(2, &Value::U64(42));
    e.field_idx(3, &Value::Str("short"));
    e.finish().map_or(0, |b| b.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use distlog::wire::Field;

    fn values(s: &str) -> Vec<Value<'_>> {
        let mut v = Vec::new();
        for x in [0i64, 1, -1, 63, 64, -64, -65, 300, i64::MAX, i64::MIN] {
            v.push(Value::I64(x));
        }
        for x in [0u64, 127, 128, 16383, 16384, u64::MAX] {
            v.push(Value::U64(x));
        }
        v.extend([
            Value::F64(1.5),
            Value::F64(f64::NAN),
            Value::Bool(true),
            Value::Bool(false),
            Value::Str(s),
            Value::Debug(s),
            Value::I128(i128::MIN),
            Value::I128(-3),
            Value::U128(u128::MAX),
        ]);
        v
    }

    #[test]
    fn same_bytes_as_postcard() {
        let long = "x".repeat(300);
        for s in ["", "short", long.as_str()] {
            for (i, v) in values(s).iter().enumerate() {
                for f in [Field::Idx(i as u16 * 97, *v), Field::Named(s, *v)] {
                    let mut a = [0u8; 1024];
                    let want = postcard::to_slice(&f, &mut a).unwrap().to_vec();
                    let mut b = [0u8; 1024];
                    let mut e = FastEncoder::new(&mut b);
                    match f {
                        Field::Idx(i, ref v) => e.field_idx(i, v),
                        Field::Named(n, ref v) => e.field_named(n, v),
                    }
                    assert_eq!(e.finish().unwrap(), &want[..], "{f:?}");
                }
            }
        }
        for trace in [None, Some([9u8; 16])] {
            for ts in [0u64, 1 << 40, u64::MAX] {
                let h = Head::Event {
                    callsite: 70000,
                    ts,
                    tid: 4_000_000,
                    scope: ts / 3,
                    trace,
                };
                let mut a = [0u8; 128];
                let want = postcard::to_slice(&h, &mut a).unwrap().to_vec();
                let mut b = [0u8; 128];
                let mut e = FastEncoder::new(&mut b);
                e.head(&h);
                assert_eq!(e.finish().unwrap(), &want[..]);
            }
        }
        let mut a = [0u8; 128];
        let mut b = [0u8; 128];
        let (na, nb) = (
            encode_postcard(&mut a, 1 << 50, -5),
            encode_fast(&mut b, 1 << 50, -5),
        );
        assert_eq!(a[..na], b[..nb]);
    }

    #[test]
    fn overflow_is_none() {
        let mut b = [0u8; 8];
        let mut e = FastEncoder::new(&mut b);
        e.field_idx(0, &Value::Str("a long string that does not fit"));
        assert!(e.finish().is_none());
    }
}

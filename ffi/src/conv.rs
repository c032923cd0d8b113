//! The few typed helpers every conversion from C goes through: C strings
//! to `&str` (lossy), pointer + length to a slice, numbers to levels, C
//! fields to wire fields. No other module casts raw pointers.

use std::borrow::Cow;
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int};

use distlog::wire::{compact, Encoder, Field, Level, Value};

use crate::result::distlog_result;

/// Most fields one call may pass (`DISTLOG_MAX_FIELDS` in the header). The
/// decoder in the sidecar stops at `distlog::wire::MAX_FIELDS` (256) per
/// record, and a record also carries `message` and, for scopes, up to two
/// `distlog.*` fields: 128 keeps well clear of it.
pub const MAX_FIELDS: usize = 128;

/// The type tag of a [`distlog_field`] (`distlog_field_type` in C).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum distlog_field_type {
    /// `int64_t`, in `value.i64`.
    DISTLOG_FIELD_TYPE_I64 = 1,
    /// `uint64_t`, in `value.u64`.
    DISTLOG_FIELD_TYPE_U64 = 2,
    /// `double`, in `value.f64`.
    DISTLOG_FIELD_TYPE_F64 = 3,
    /// boolean (`int`, nonzero = true), in `value.boolean`.
    DISTLOG_FIELD_TYPE_BOOL = 4,
    /// NUL-terminated string, in `value.str`.
    DISTLOG_FIELD_TYPE_STR = 5,
}

/// The value of a [`distlog_field`]; which member is read is decided by
/// its `type`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy)]
pub union distlog_value {
    /// `DISTLOG_FIELD_TYPE_I64`
    pub i64: i64,
    /// `DISTLOG_FIELD_TYPE_U64`
    pub u64: u64,
    /// `DISTLOG_FIELD_TYPE_F64`
    pub f64: f64,
    /// `DISTLOG_FIELD_TYPE_BOOL`
    pub boolean: c_int,
    /// `DISTLOG_FIELD_TYPE_STR`
    pub str: *const c_char,
}

/// One typed key/value pair, built by the C macros `DISTLOG_FIELD_*`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy)]
pub struct distlog_field {
    /// NUL-terminated key; a field with a NULL key is skipped.
    pub key: *const c_char,
    /// A `distlog_field_type` number; unknown numbers skip the field.
    pub r#type: c_int,
    /// The value.
    pub value: distlog_value,
}

impl std::fmt::Debug for distlog_field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The value is a union whose valid member only `type` tells, and
        // the key may dangle: show the raw parts only.
        f.debug_struct("distlog_field")
            .field("key", &self.key)
            .field("type", &self.r#type)
            .finish_non_exhaustive()
    }
}

/// One field of `DISTLOG_EVENT_KV` (the header's `distlog_kv`): a
/// [`distlog_field`] that also carries its string's length, computed by
/// the C compiler (a constant for a literal), so the hot path neither
/// scans for the NUL nor copies with a call to `memcpy`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy)]
pub struct distlog_kv {
    /// NUL-terminated key; a field with a NULL key is skipped.
    pub key: *const c_char,
    /// A `distlog_field_type` number; unknown numbers skip the field.
    pub r#type: u32,
    /// `DISTLOG_FIELD_TYPE_STR`: the bytes of `value.str` before its NUL.
    pub len: u32,
    /// The value.
    pub value: distlog_value,
}

impl std::fmt::Debug for distlog_kv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // As for `distlog_field`: the raw parts only.
        f.debug_struct("distlog_kv")
            .field("key", &self.key)
            .field("type", &self.r#type)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl distlog_kv {
    /// The same field without its length (the general path, which reads
    /// the string to its NUL).
    pub(crate) fn field(&self) -> distlog_field {
        distlog_field {
            key: self.key,
            // An out-of-range number is as unknown as any other.
            r#type: c_int::try_from(self.r#type).unwrap_or(0),
            value: self.value,
        }
    }
}

/// A C field as [`compact_fields`] reads it: a [`distlog_field`], or a
/// [`distlog_kv`] whose strings come with their length.
pub(crate) trait CField {
    /// The key pointer.
    fn key(&self) -> *const c_char;
    /// The `distlog_field_type` number.
    fn kind(&self) -> u32;
    /// The value.
    fn value(&self) -> &distlog_value;
    /// The string value's bytes (a `DISTLOG_FIELD_TYPE_STR` field), NUL
    /// excluded; `None` for NULL.
    ///
    /// # Safety
    ///
    /// The field is a string field whose string is valid for `'a` (as the
    /// header describes the type).
    unsafe fn bytes<'a>(&self) -> Option<&'a [u8]>;
}

impl CField for distlog_field {
    #[inline(always)]
    fn key(&self) -> *const c_char {
        self.key
    }
    #[inline(always)]
    fn kind(&self) -> u32 {
        // Negative numbers are unknown types too.
        self.r#type as u32
    }
    #[inline(always)]
    fn value(&self) -> &distlog_value {
        &self.value
    }
    #[inline(always)]
    unsafe fn bytes<'a>(&self) -> Option<&'a [u8]> {
        // SAFETY: the field is a string field (our caller).
        let p = unsafe { self.value.str };
        // SAFETY: non-null, a NUL-terminated string valid for 'a (our
        // caller).
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_bytes())
    }
}

impl CField for distlog_kv {
    #[inline(always)]
    fn key(&self) -> *const c_char {
        self.key
    }
    #[inline(always)]
    fn kind(&self) -> u32 {
        self.r#type
    }
    #[inline(always)]
    fn value(&self) -> &distlog_value {
        &self.value
    }
    #[inline(always)]
    unsafe fn bytes<'a>(&self) -> Option<&'a [u8]> {
        // SAFETY: the field is a string field (our caller).
        let p = unsafe { self.value.str };
        if p.is_null() {
            return None;
        }
        // SAFETY: non-null, `len` readable bytes valid for 'a (our caller);
        // a u32 length fits an isize.
        Some(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), self.len as usize) })
    }
}

/// A C string as `&str`: borrowed when it is UTF-8, else converted lossily
/// (U+FFFD for bad bytes). `None` for NULL.
///
/// # Safety
///
/// `p` is NULL or points to a NUL-terminated string that stays valid and
/// unchanged for `'a`.
#[inline]
pub(crate) unsafe fn cstr<'a>(p: *const c_char) -> Option<Cow<'a, str>> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null, and the caller promises a NUL-terminated string
    // valid for 'a.
    Some(text(unsafe { CStr::from_ptr(p) }.to_bytes()))
}

/// The C text `p[..len]` as `&str`, as [`cstr`] (no NUL needed). `None`
/// for NULL.
///
/// # Safety
///
/// `p` is NULL or points to `len` bytes that stay valid and unchanged for
/// `'a`.
#[inline]
pub(crate) unsafe fn cstr_len<'a>(p: *const c_char, len: usize) -> Option<Cow<'a, str>> {
    if p.is_null() || len > isize::MAX as usize {
        return None;
    }
    // SAFETY: non-null, `len` readable bytes valid for 'a (caller); a
    // `c_char` is a byte.
    Some(text(unsafe {
        std::slice::from_raw_parts(p.cast::<u8>(), len)
    }))
}

/// Bytes from C as `&str`: borrowed when UTF-8, else converted lossily.
#[inline]
fn text(b: &[u8]) -> Cow<'_, str> {
    // Short ASCII text (keys, most values) is checked inline; the general
    // UTF-8 check, and the lossy one after it, cost several times more.
    if short_ascii(b) {
        // SAFETY: ASCII is UTF-8.
        return Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(b) });
    }
    match std::str::from_utf8(b) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    }
}

/// Whether `b` is at most 32 bytes, all ASCII: two word loads that
/// overlap cover any length in a range, instead of `is_ascii`'s byte loop
/// on short text.
#[inline(always)]
fn short_ascii(b: &[u8]) -> bool {
    const HI: u64 = 0x8080_8080_8080_8080;
    let n = b.len();
    let w8 = |w: &[u8]| u64::from_le_bytes(w.try_into().unwrap_or([0x80; 8]));
    let w4 = |w: &[u8]| u64::from(u32::from_le_bytes(w.try_into().unwrap_or([0x80; 4])));
    let hi = match n {
        0 => 0,
        // Positions 0, n/2 and n-1 cover every byte of 1 to 3.
        1..=3 => u64::from(b[0] | b[n / 2] | b[n - 1]),
        4..=7 => w4(&b[..4]) | w4(&b[n - 4..]),
        8..=16 => w8(&b[..8]) | w8(&b[n - 8..]),
        17..=32 => w8(&b[..8]) | w8(&b[8..16]) | w8(&b[n - 16..n - 8]) | w8(&b[n - 8..]),
        _ => HI,
    };
    hi & HI == 0
}

/// A C string as `&str` only when it is valid UTF-8 (no allocation).
///
/// # Safety
///
/// As [`cstr`].
unsafe fn cstr_utf8<'a>(p: *const c_char) -> Result<&'a str, ()> {
    // SAFETY: non-null checked by the callers, string promised by ours.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| ())
}

/// The array `p[0..n]`, checked: `(NULL, 0)` is the empty slice, NULL with
/// `n > 0` is `DISTLOG_NULL_PARAMETER`, `n > MAX_FIELDS` is
/// `DISTLOG_INVALID_ARGUMENT`.
///
/// # Safety
///
/// When `p` is non-null it points to `n` initialised, properly aligned `T`s
/// that stay valid and unchanged for `'a`.
pub(crate) unsafe fn fields_slice<'a, T>(p: *const T, n: usize) -> Result<&'a [T], distlog_result> {
    if n > MAX_FIELDS {
        return Err(distlog_result::DISTLOG_INVALID_ARGUMENT);
    }
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(distlog_result::DISTLOG_NULL_PARAMETER);
    }
    if !p.is_aligned() {
        return Err(distlog_result::DISTLOG_INVALID_ARGUMENT);
    }
    // SAFETY: non-null and aligned (checked), n elements valid for 'a
    // (caller), n <= MAX_FIELDS so the byte size cannot overflow isize.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// Write `s` and a NUL into the C buffer `buf` of `len` bytes; nothing is
/// written unless it fits.
///
/// # Safety
///
/// `buf` is NULL or points to `len` writable bytes.
pub(crate) unsafe fn write_cstr(s: &str, buf: *mut c_char, len: usize) -> distlog_result {
    if buf.is_null() {
        return distlog_result::DISTLOG_NULL_PARAMETER;
    }
    if s.len() >= len {
        return distlog_result::DISTLOG_BUFFER_TOO_SMALL;
    }
    // SAFETY: buf is non-null with `len` writable bytes (contract) and we
    // write s.len() + 1 <= len bytes; a Rust string does not overlap a
    // caller's buffer.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), s.len());
        *buf.add(s.len()) = 0;
    }
    distlog_result::DISTLOG_OK
}

/// A level from the C number, `None` outside 1..=5.
pub(crate) fn level(n: c_int) -> Option<Level> {
    u8::try_from(n).ok().and_then(Level::from_u8)
}

/// A field's value with its string (if any) still a C pointer.
enum Raw {
    Num(Value<'static>),
    Str(*const c_char),
}

/// The key pointer and the value of a field, `None` for a NULL key or an
/// unknown type (the field is skipped).
///
/// # Safety
///
/// `f` was initialised by C as the header describes: the union member named
/// by `type` is the one written.
unsafe fn raw_field(f: &distlog_field) -> Option<(*const c_char, Raw)> {
    if f.key.is_null() {
        return None;
    }
    // SAFETY: in every arm, `type` names the member the caller wrote.
    let v = unsafe {
        match f.r#type {
            1 => Raw::Num(Value::I64(f.value.i64)),
            2 => Raw::Num(Value::U64(f.value.u64)),
            3 => Raw::Num(Value::F64(f.value.f64)),
            4 => Raw::Num(Value::Bool(f.value.boolean != 0)),
            5 => Raw::Str(f.value.str),
            _ => return None,
        }
    };
    Some((f.key, v))
}

const NULL_STR: &str = "(null)";

/// Convert C fields to wire fields (named) and call `f` with them. Fields
/// with a NULL key or an unknown type are skipped; a NULL string value is
/// written as `"(null)"`; strings that are not UTF-8 are converted lossily.
/// Up to 16 UTF-8 fields are converted on the stack, without allocating.
///
/// # Safety
///
/// Every key and string value in `fields` is NULL or a NUL-terminated
/// string valid for the duration of the call, and each field's union member
/// matches its type.
pub(crate) unsafe fn with_fields<R>(
    fields: &[distlog_field],
    f: impl FnOnce(&[Field<'_>]) -> R,
) -> R {
    const STACK: usize = 16;
    if fields.len() <= STACK {
        let mut buf = [Field::Named("", Value::Bool(false)); STACK];
        let mut n = 0;
        let mut utf8 = true;
        for fl in fields {
            // SAFETY: forwarded from our caller.
            let Some((k, v)) = (unsafe { raw_field(fl) }) else {
                continue;
            };
            // SAFETY: k non-null (raw_field), string promised by our caller.
            let Ok(key) = (unsafe { cstr_utf8(k) }) else {
                utf8 = false;
                break;
            };
            let value = match v {
                Raw::Num(v) => v,
                Raw::Str(p) if p.is_null() => Value::Str(NULL_STR),
                // SAFETY: p non-null, string promised by our caller.
                Raw::Str(p) => match unsafe { cstr_utf8(p) } {
                    Ok(s) => Value::Str(s),
                    Err(()) => {
                        utf8 = false;
                        break;
                    }
                },
            };
            buf[n] = Field::Named(key, value);
            n += 1;
        }
        if utf8 {
            return f(&buf[..n]);
        }
    }
    // The slow path: many fields, or some not UTF-8. A string value is kept
    // as `Err(text)` until the wire fields borrow it.
    type Owned<'a> = (Cow<'a, str>, Result<Value<'static>, Cow<'a, str>>);
    let owned: Vec<Owned<'_>> = fields
        .iter()
        .filter_map(|fl| {
            // SAFETY: forwarded from our caller.
            let (k, v) = unsafe { raw_field(fl) }?;
            // SAFETY: k non-null, string promised by our caller.
            let key = unsafe { cstr(k) }?;
            let value = match v {
                Raw::Num(v) => Ok(v),
                // SAFETY: NULL or a string promised by our caller.
                Raw::Str(p) => Err(unsafe { cstr(p) }.unwrap_or(Cow::Borrowed(NULL_STR))),
            };
            Some((key, value))
        })
        .collect();
    let wire: Vec<Field<'_>> = owned
        .iter()
        .map(|(k, v)| {
            Field::Named(
                k,
                match v {
                    Ok(v) => *v,
                    Err(s) => Value::Str(s),
                },
            )
        })
        .collect();
    f(&wire)
}

/// The field keys a `DISTLOG_EVENT` call site registered on its first call,
/// by position; `None` where that call skipped the field (a NULL key or an
/// unknown type): that position always goes by name.
///
/// `#[repr(C)]` with a prefix the C header's inline writer reads
/// (`distlog_internal_keys`, behind the call site's `internal_keys`):
/// `fixed`'s address and length, so a call whose every key is the literal
/// registered at its position is written from the caller's code.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Keys {
    /// `fixed.as_ptr()` (the boxed slice does not move with `Keys`).
    c_fixed: *const usize,
    /// `fixed.len()`.
    c_len: usize,
    keys: Box<[Option<Key>]>,
    /// Each position's `Key::fixed`, `NOT_FIXED` where there is none: the
    /// hot path's compare, one load from a flat array.
    fixed: Box<[usize]>,
}

// The header's `distlog_internal_keys`: `{ const uintptr_t *fixed; size_t n; }`.
const _: () = assert!(std::mem::offset_of!(Keys, c_fixed) == 0);
const _: () = assert!(std::mem::offset_of!(Keys, c_len) == std::mem::size_of::<usize>());

/// No address: a C string cannot start at the last byte of the address
/// space (it needs its NUL after it), and NULL is not a key.
const NOT_FIXED: usize = usize::MAX;

/// One registered key.
#[derive(Debug)]
struct Key {
    text: CString,
    /// The first call's key pointer when it lies in read-only memory of the
    /// call site's own object (a literal: its text cannot change while the
    /// call site exists), else 0. A later key at this address has this
    /// text without reading it.
    fixed: usize,
}

impl Keys {
    /// No registered keys: every field goes by name (no allocation).
    pub(crate) fn none() -> Keys {
        Keys::new(Box::default(), Box::default())
    }

    fn new(keys: Box<[Option<Key>]>, fixed: Box<[usize]>) -> Keys {
        Keys {
            c_fixed: fixed.as_ptr(),
            c_len: fixed.len(),
            keys,
            fixed,
        }
    }

    /// The keys of `fields`, copied; `anchor` is an address in the object
    /// of the call site that keeps them (its static), when it has one.
    ///
    /// # Safety
    ///
    /// As [`with_fields`].
    pub(crate) unsafe fn of(fields: &[distlog_field], anchor: Option<usize>) -> Keys {
        let keys: Box<[Option<Key>]> = fields
            .iter()
            .map(|f| {
                // SAFETY: forwarded from our caller.
                let (k, _) = unsafe { raw_field(f) }?;
                // SAFETY: non-null (raw_field), a string valid for the
                // call (caller).
                let text = CString::from(unsafe { CStr::from_ptr(k) });
                let (start, len) = (k as usize, text.as_bytes_with_nul().len());
                let fixed = match anchor {
                    Some(a) if crate::rodata::read_only_beside(a, start, start + len) => start,
                    _ => 0,
                };
                Some(Key { text, fixed })
            })
            .collect();
        let fixed = keys
            .iter()
            .map(|k| match k {
                Some(Key { fixed, .. }) if *fixed != 0 => *fixed,
                _ => NOT_FIXED,
            })
            .collect();
        Keys::new(keys, fixed)
    }

    /// The names for the call site's definition (lossy UTF-8, as the
    /// same key sent by name would be; "" where there is no key, a position
    /// never sent by index).
    pub(crate) fn names(&self) -> Vec<Cow<'_, str>> {
        self.keys
            .iter()
            .map(|k| {
                k.as_ref()
                    .map_or(Cow::Borrowed(""), |k| k.text.to_string_lossy())
            })
            .collect()
    }

    /// Whether `key` (non-null) has the text registered at position `i`:
    /// the same read-only address, or else the same text.
    ///
    /// # Safety
    ///
    /// `key` is a NUL-terminated string valid for the call.
    #[inline]
    unsafe fn is(&self, i: usize, key: *const c_char) -> bool {
        let Some(Some(want)) = self.keys.get(i) else {
            return false;
        };
        // SAFETY: forwarded from our caller.
        key as usize == want.fixed || unsafe { same_text(key, &want.text) }
    }
}

/// Whether the C string `p` has the text of `want`. Not a pointer compare:
/// the contract lets a string be a buffer whose text changes between calls.
///
/// # Safety
///
/// `p` is a NUL-terminated string valid for the call.
#[inline]
pub(crate) unsafe fn same_text(p: *const c_char, want: &CStr) -> bool {
    let want = want.to_bytes_with_nul();
    // Past a few bytes libc's vector `strcmp` wins over the loop below
    // (`distlog_log`'s targets: ~40 instructions for "bench::c" by the loop).
    if want.len() > 8 {
        // SAFETY: both are NUL-terminated strings valid for the call
        // (`want` a CStr's bytes, `p` by our caller).
        return unsafe { libc::strcmp(p, want.as_ptr().cast()) } == 0;
    }
    // Byte by byte, NUL included, stopping at the first difference: a byte
    // of `p` is read only when all before it matched `want`'s, which hold
    // no NUL, so the read stays inside `p`'s string.
    want.iter()
        .enumerate()
        // SAFETY: see above; `j` is at most the length of `p`.
        .all(|(j, &b)| unsafe { *p.add(j) } as u8 == b)
}

/// Append `fields` to `enc`, each by its position in `keys` when its key
/// is the one registered there (sent as index `first + position`: the call
/// site's field list may start with names of its own), else by name.
/// Skipped, `(null)` and lossy as in [`with_fields`]; long strings clipped.
///
/// # Safety
///
/// As [`with_fields`].
#[inline(always)]
pub(crate) unsafe fn encode_fields(
    enc: &mut Encoder<'_>,
    keys: &Keys,
    first: u16,
    fields: &[distlog_field],
) {
    for (i, fl) in fields.iter().enumerate() {
        if fl.key.is_null() {
            continue;
        }
        // SAFETY: the key is non-null, a string promised by our caller.
        let by_idx = unsafe { keys.is(i, fl.key) };
        // At most MAX_FIELDS (128) fields after `first` (0 or 1), so the
        // index fits.
        let idx = first + i as u16;
        // One arm per type, each with its own copy of the encoding (`put`
        // is inlined with the value's variant known).
        // SAFETY: in every arm, `type` names the union member the caller
        // wrote; the key as above.
        unsafe {
            match fl.r#type {
                1 => put(enc, by_idx, idx, fl.key, Value::I64(fl.value.i64)),
                2 => put(enc, by_idx, idx, fl.key, Value::U64(fl.value.u64)),
                3 => put(enc, by_idx, idx, fl.key, Value::F64(fl.value.f64)),
                4 => put(enc, by_idx, idx, fl.key, Value::Bool(fl.value.boolean != 0)),
                5 => {
                    let p = fl.value.str;
                    let text = if p.is_null() {
                        Cow::Borrowed(NULL_STR)
                    } else {
                        // The string is valid for the call (caller).
                        cstr(p).unwrap_or_default()
                    };
                    put(
                        enc,
                        by_idx,
                        idx,
                        fl.key,
                        Value::Str(distlog::raw::clip(&text)),
                    )
                }
                _ => {}
            }
        }
    }
}

/// Append `fields` as compact values ([`distlog::wire::compact`]) when
/// every one is by position: its key is the one `keys` registered there
/// and its type is known. `false` (the caller writes the record with
/// [`encode_fields`]) for anything else: a key by name, a skipped field,
/// a string that is not UTF-8. Strings as in [`encode_fields`].
///
/// # Safety
///
/// As [`with_fields`].
#[inline(always)]
pub(crate) unsafe fn compact_fields(
    w: &mut compact::Writer<'_>,
    keys: &Keys,
    fields: &[impl CField],
) -> bool {
    // A field past the registered keys goes by name: not here. Checked
    // once, so the loop reads each position's address without a bound.
    let Some(fixed) = keys.fixed.get(..fields.len()) else {
        return false;
    };
    for (i, (fl, &at)) in fields.iter().zip(fixed).enumerate() {
        let key = fl.key();
        // The literal's address first; NULL is no registered key.
        // SAFETY: non-null, a string (our caller).
        if key as usize != at && (key.is_null() || !unsafe { keys.is(i, key) }) {
            return false;
        }
        let v = fl.value();
        // The three 8-byte numbers are one branch, not a jump table: their
        // C types (1, 2, 3) are the compact tags plus one, and their union
        // members are the same 8 bytes (`to_bits` of an f64 is its u64).
        let tag = fl.kind().wrapping_sub(1);
        if tag <= u32::from(compact::F64) {
            // SAFETY: the type names an 8-byte member the caller wrote.
            w.num(tag as u8, unsafe { v.u64 });
        } else if tag == u32::from(compact::BOOL) {
            // SAFETY: as above, for BOOL's member.
            w.num(compact::BOOL, u64::from(unsafe { v.boolean } != 0));
        } else if tag == u32::from(compact::STR) {
            // SAFETY: a string field, valid for the call (caller).
            let Some(b) = (unsafe { fl.bytes() }) else {
                w.text(compact::STR, NULL_STR);
                continue;
            };
            // Short ASCII (most values) checked and copied in one pass;
            // anything else is checked as UTF-8 (text that is not takes
            // the lossy path) and cut if long.
            if !w.short_ascii(compact::STR, b) {
                let Ok(text) = std::str::from_utf8(b) else {
                    return false;
                };
                w.text(compact::STR, distlog::raw::clip(text));
            }
        } else {
            return false;
        }
    }
    true
}

/// One field: by index, or by its key's name.
///
/// # Safety
///
/// `key` is a non-null NUL-terminated string valid for the call.
#[inline(always)]
unsafe fn put(enc: &mut Encoder<'_>, by_idx: bool, idx: u16, key: *const c_char, v: Value<'_>) {
    if by_idx {
        enc.field_idx(idx, &v);
    } else {
        // SAFETY: forwarded from our caller.
        unsafe { put_named(enc, key, v) }
    }
}

/// # Safety
///
/// As [`put`].
#[inline(never)]
unsafe fn put_named(enc: &mut Encoder<'_>, key: *const c_char, v: Value<'_>) {
    // SAFETY: forwarded from our caller.
    let name = unsafe { cstr(key) }.unwrap_or_default();
    enc.field(&Field::Named(distlog::raw::clip(&name), v));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(key: &CStr, t: c_int, value: distlog_value) -> distlog_field {
        distlog_field {
            key: key.as_ptr(),
            r#type: t,
            value,
        }
    }

    #[test]
    fn slices_are_checked() {
        // SAFETY: NULL pointers and a valid one-element array.
        unsafe {
            assert!(fields_slice(std::ptr::null::<distlog_field>(), 0)
                .unwrap()
                .is_empty());
            assert_eq!(
                fields_slice(std::ptr::null::<distlog_kv>(), 1).unwrap_err(),
                distlog_result::DISTLOG_NULL_PARAMETER
            );
            let f = [field(c"k", 1, distlog_value { i64: 1 })];
            assert_eq!(
                fields_slice(f.as_ptr(), MAX_FIELDS + 1).unwrap_err(),
                distlog_result::DISTLOG_INVALID_ARGUMENT
            );
            assert_eq!(
                fields_slice(f.as_ptr(), usize::MAX).unwrap_err(),
                distlog_result::DISTLOG_INVALID_ARGUMENT
            );
            assert_eq!(fields_slice(f.as_ptr(), 1).unwrap().len(), 1);
        }
    }

    #[test]
    fn same_text_short_and_long() {
        let cases: [(&CStr, &CStr, bool); 8] = [
            (c"a", c"a", true),
            (c"a", c"b", false),
            (c"ab", c"a", false),
            (c"a", c"ab", false),
            (c"bench::c", c"bench::c", true),
            (c"bench::c", c"bench::d", false),
            (c"bench::", c"bench::c", false),
            (c"bench::cc", c"bench::c", false),
        ];
        for (p, want, same) in cases {
            // SAFETY: a C string valid for the call.
            let got = unsafe { same_text(p.as_ptr(), want) };
            assert_eq!(got, same, "{p:?} {want:?}");
        }
    }

    #[test]
    fn short_ascii_is_is_ascii_up_to_32() {
        for n in 0..=40usize {
            for bad in 0..=n {
                // `bad == n`: all ASCII; else a high byte at `bad`.
                let b: Vec<u8> = (0..n)
                    .map(|i| {
                        if i == bad {
                            0xC3
                        } else {
                            b'a' + (i % 26) as u8
                        }
                    })
                    .collect();
                assert_eq!(short_ascii(&b), n <= 32 && b.is_ascii(), "{n} {bad}");
            }
        }
    }

    #[test]
    fn levels() {
        assert_eq!(level(0), None);
        assert_eq!(level(1), Some(Level::Error));
        assert_eq!(level(5), Some(Level::Trace));
        assert_eq!(level(6), None);
        assert_eq!(level(-1), None);
        assert_eq!(level(257), None);
    }

    #[test]
    fn fields_convert_fast_and_slow() {
        let bad = [b'x', 0xff, 0];
        let bad = CStr::from_bytes_with_nul(&bad).unwrap();
        let mut fs = vec![
            field(c"i", 1, distlog_value { i64: -1 }),
            field(c"u", 2, distlog_value { u64: u64::MAX }),
            field(c"f", 3, distlog_value { f64: 0.5 }),
            field(c"b", 4, distlog_value { boolean: 9 }),
            field(
                c"s",
                5,
                distlog_value {
                    str: c"text".as_ptr(),
                },
            ),
            field(
                c"n",
                5,
                distlog_value {
                    str: std::ptr::null(),
                },
            ),
            field(c"skip", 99, distlog_value { i64: 0 }),
            distlog_field {
                key: std::ptr::null(),
                r#type: 1,
                value: distlog_value { i64: 0 },
            },
        ];
        let want = vec![
            Field::Named("i", Value::I64(-1)),
            Field::Named("u", Value::U64(u64::MAX)),
            Field::Named("f", Value::F64(0.5)),
            Field::Named("b", Value::Bool(true)),
            Field::Named("s", Value::Str("text")),
            Field::Named("n", Value::Str("(null)")),
        ];
        // SAFETY: every pointer is a static C string or NULL.
        unsafe { with_fields(&fs, |f| assert_eq!(f, &want[..])) };
        // Not UTF-8: the slow path, lossy.
        fs.push(field(bad, 5, distlog_value { str: bad.as_ptr() }));
        let mut want2 = want.clone();
        want2.push(Field::Named("x\u{FFFD}", Value::Str("x\u{FFFD}")));
        // SAFETY: as above.
        unsafe { with_fields(&fs, |f| assert_eq!(f, &want2[..])) };
        // More than fit on the stack: the slow path too.
        let many: Vec<_> = (0..40)
            .map(|i| field(c"k", 1, distlog_value { i64: i }))
            .collect();
        // SAFETY: as above.
        unsafe {
            with_fields(&many, |f| {
                assert_eq!(f.len(), 40);
                assert_eq!(f[39], Field::Named("k", Value::I64(39)));
            })
        };
    }
}

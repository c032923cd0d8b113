//! The record decoder: any bytes a client puts in a ring record's payload.
//! `decode` must never panic; what it accepts must encode back to a frame
//! that decodes the same (round trip), and a call-site definition must
//! decode or fail cleanly. A compact record (protocol version 2) also
//! re-encodes compact to the very bytes it was read from.
#![no_main]

use distlog::wire::{compact, decode, CallsiteDef, Encoder, Field, Head, Value};
use libfuzzer_sys::fuzz_target;

fn same(a: &Field<'_>, b: &Field<'_>) -> bool {
    // NaN != NaN: compare floats by bits.
    let v = |x: &Value<'_>, y: &Value<'_>| match (x, y) {
        (Value::F64(p), Value::F64(q)) => p.to_bits() == q.to_bits(),
        _ => x == y,
    };
    match (a, b) {
        (Field::Idx(i, x), Field::Idx(j, y)) => i == j && v(x, y),
        (Field::Named(n, x), Field::Named(m, y)) => n == m && v(x, y),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = decode(data) {
        // Room for the postcard form: a compact number (9 bytes) can take
        // up to 15 there (variant, 3-byte index, tag, 10-byte varint), and
        // a compact head is smaller than its postcard form too.
        let mut buf = vec![0u8; data.len() * 2 + 64];
        let mut e = Encoder::new(&mut buf, &frame.head);
        for f in &frame.fields {
            e.field(f);
        }
        let bytes = e
            .finish()
            .expect("a decoded frame re-encodes within its size");
        let again = decode(bytes).expect("a re-encoded frame decodes");
        assert_eq!(again.head, frame.head);
        assert_eq!(again.fields.len(), frame.fields.len());
        assert!(again
            .fields
            .iter()
            .zip(&frame.fields)
            .all(|(a, b)| same(a, b)));
        if data.first() == Some(&compact::KIND) {
            // The compact layout has one encoding per record: writing what
            // was read gives back the input.
            let Head::Event {
                callsite,
                ts,
                tid,
                scope,
                trace,
            } = frame.head
            else {
                panic!("a compact record decodes as an event");
            };
            let mut buf = vec![0u8; data.len()];
            let mut w = compact::Writer::new(&mut buf, callsite, ts, tid, scope, trace.as_ref());
            for (i, f) in frame.fields.iter().enumerate() {
                let Field::Idx(j, v) = f else {
                    panic!("compact values are by position")
                };
                assert_eq!(usize::from(*j), i);
                w.value(v);
            }
            assert_eq!(w.finish(), Some(data.len()));
            assert_eq!(buf, data);
        }
    }
    let _ = postcard::from_bytes::<CallsiteDef<'_>>(data);
});

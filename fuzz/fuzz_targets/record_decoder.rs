//! The record decoder: any bytes a client puts in a ring record's payload.
//! `decode` must never panic; what it accepts must encode back to a frame
//! that decodes the same (round trip), and a call-site definition must
//! decode or fail cleanly.
#![no_main]

use distlog::wire::{decode, CallsiteDef, Encoder, Field, Value};
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
        let mut buf = vec![0u8; data.len() + 64];
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
    }
    let _ = postcard::from_bytes::<CallsiteDef<'_>>(data);
});

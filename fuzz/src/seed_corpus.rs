//! Writes the seed corpus (`fuzz/corpus/<target>/`): a handful of valid
//! inputs per target, made with the real encoders and writers, so the
//! fuzzer starts from inputs that get past the first checks.
//!
//! `cd fuzz && cargo run --bin seed_corpus`

use std::path::Path;
use std::sync::atomic::Ordering;

use distlog::proto::{ClientMsg, SidecarMsg};
use distlog::ring::{RawMemory, RingHeader, Writer, FLAG_SHARED, MIN_DATA_BYTES};
use distlog::wire::{
    compact, CallsiteDef, CallsiteKind, Encoder, Field, Head, Level, Outcome, Value,
};

fn put(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn frames() -> Vec<Vec<u8>> {
    let heads = [
        Head::Event {
            callsite: 3,
            ts: 1_700_000_000_000_000_000,
            tid: 42,
            scope: 0,
            trace: None,
        },
        Head::Event {
            callsite: 0,
            ts: 5,
            tid: 1,
            scope: 9,
            trace: Some([7; 16]),
        },
        Head::ScopeOpen {
            callsite: 1,
            ts: 10,
            tid: 2,
            scope: 77,
            parent: 0,
            trace: [1; 16],
            remote_parent: true,
        },
        Head::ScopeRecord { scope: 77, ts: 11 },
        Head::ScopeClose {
            scope: 77,
            ts: 12,
            tid: 2,
            outcome: Outcome::Error,
        },
    ];
    let fields = [
        Field::Idx(0, Value::U64(u64::MAX)),
        Field::Idx(1, Value::I64(-5)),
        Field::Named("f", Value::F64(2.5)),
        Field::Named("b", Value::Bool(true)),
        Field::Idx(2, Value::Str("text é")),
        Field::Named("d", Value::Debug("[1, 2]")),
        Field::Idx(3, Value::I128(-1)),
        Field::Idx(4, Value::U128(u128::MAX)),
    ];
    let mut frames: Vec<Vec<u8>> = heads
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let mut buf = [0u8; 512];
            let mut e = Encoder::new(&mut buf, h);
            for f in fields.iter().take(i * 2) {
                e.field(f);
            }
            e.finish().unwrap().to_vec()
        })
        .collect();
    // Compact events (protocol version 2): without a trace and no values,
    // with one and every value type the layout carries.
    let values = [
        Value::I64(-5),
        Value::U64(u64::MAX),
        Value::F64(2.5),
        Value::Bool(true),
        Value::Str("text é"),
        Value::Debug("[1, 2]"),
    ];
    for (trace, n) in [(None, 0), (Some([7u8; 16]), values.len())] {
        let mut buf = [0u8; 512];
        let mut w = compact::Writer::new(&mut buf, 3, 1 << 40, 42, 9, trace.as_ref());
        for v in &values[..n] {
            w.value(v);
        }
        let len = w.finish().unwrap();
        frames.push(buf[..len].to_vec());
    }
    frames
}

fn main() {
    let frames = frames();
    for (i, f) in frames.iter().enumerate() {
        put("record_decoder", &format!("frame-{i}"), f);
    }
    let def = CallsiteDef {
        id: 0,
        kind: CallsiteKind::Event,
        level: Level::Info,
        name: "event",
        target: "svc::db",
        file: Some("src/db.rs"),
        line: Some(12),
        fields: vec!["message", "rows"],
        message: Some("query"),
    };
    let def_bytes = postcard::to_allocvec(&def).unwrap();
    put("record_decoder", "callsite-def", &def_bytes);

    // Rings: real writers, exclusive and shared, one wrapped with padding,
    // one with an unfinished record.
    for (name, flags, laps, busy) in [
        ("exclusive", 0u32, 1usize, false),
        ("shared", FLAG_SHARED, 1, false),
        ("wrapped", 0, 40, false),
        ("shared-busy", FLAG_SHARED, 1, true),
    ] {
        let hdr = Box::new(RingHeader::new(MIN_DATA_BYTES, [1, 2], flags, 1));
        let mut buf = vec![0u64; MIN_DATA_BYTES / 8];
        // SAFETY: `buf` outlives `mem` and the writer, 8-aligned.
        let mem = unsafe { RawMemory::new(buf.as_mut_ptr() as *mut u8, MIN_DATA_BYTES) };
        let w = Writer::new(&hdr, mem);
        for lap in 0..laps {
            for f in &frames {
                // SAFETY: one writer thread.
                unsafe { w.push(f) };
            }
            if lap + 1 < laps {
                // consume everything (as a reader that released it)
                let wp = hdr.prod.write_pos.load(Ordering::Relaxed);
                hdr.cons.read_pos.store(wp, Ordering::Relaxed);
            }
        }
        if busy {
            let wp = hdr.prod.write_pos.load(Ordering::Relaxed);
            let off = (wp as usize) % MIN_DATA_BYTES;
            distlog::ring::Memory::store_word(
                &mem,
                off,
                distlog::ring::BUSY | 20,
                Ordering::Relaxed,
            );
            hdr.prod.write_pos.store(wp + 24, Ordering::Relaxed);
        }
        let mut input = vec![flags as u8];
        input.extend_from_slice(&hdr.prod.write_pos.load(Ordering::Relaxed).to_le_bytes());
        input.extend_from_slice(&hdr.cons.read_pos.load(Ordering::Relaxed).to_le_bytes());
        input.extend_from_slice(&hdr.cons.read_seq.load(Ordering::Relaxed).to_le_bytes());
        // SAFETY: `buf` is MIN_DATA_BYTES of initialised memory.
        let data = unsafe { std::slice::from_raw_parts(buf.as_ptr() as *const u8, MIN_DATA_BYTES) };
        // Trailing zeros add nothing: the target zero-pads.
        let end = data.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
        input.extend_from_slice(&data[..end]);
        put("ring_reader", name, &input);
    }

    // Protocol: framed messages for the receiver, bare ones for postcard,
    // a control segment, a call-site table.
    let hello = ClientMsg::Hello {
        version: distlog::wire::PROTOCOL_VERSION,
        service: "checkout".into(),
        pid: 1234,
        clock_tsc: true,
        library: "rust 0.1.0".into(),
    };
    let mut framed = vec![0u8];
    for m in [
        hello.clone(),
        ClientMsg::Ring { index: 1 },
        ClientMsg::Ring { index: 2 },
    ] {
        let b = postcard::to_allocvec(&m).unwrap();
        framed.extend_from_slice(&(b.len() as u32).to_le_bytes());
        framed.extend_from_slice(&b);
    }
    put("protocol", "framed-hello-rings", &framed);
    let mut bare = vec![1u8];
    bare.extend(postcard::to_allocvec(&hello).unwrap());
    put("protocol", "bare-hello", &bare);
    let mut bare = vec![1u8];
    bare.extend(
        postcard::to_allocvec(&SidecarMsg::Refused {
            reason: "too many clients".into(),
        })
        .unwrap(),
    );
    put("protocol", "bare-refused", &bare);
    let d = distlog::control::Directives {
        filter: Some("info,checkout::db=debug".into()),
        traces: vec![([3; 16], Level::Debug)],
    };
    let db = postcard::to_allocvec(&d).unwrap();
    let mut ctl = vec![2u8];
    ctl.extend_from_slice(&2u32.to_le_bytes());
    ctl.extend_from_slice(&(db.len() as u32).to_le_bytes());
    ctl.extend_from_slice(&db);
    put("protocol", "control", &ctl);
    let mut table = vec![3u8];
    let entry_len = def_bytes.len();
    let total = (4 + entry_len + 7) & !7;
    table.extend_from_slice(&(total as u32).to_le_bytes());
    table.extend_from_slice(&(entry_len as u32).to_le_bytes());
    table.extend_from_slice(&def_bytes);
    table.resize(1 + 4 + total, 0);
    put("protocol", "table", &table);

    for (i, s) in [
        "info",
        "info,checkout::db=debug",
        "warn,[request{order=42}]=trace",
        "my_crate::module[span_name{field=\"value\"}]=debug",
        "off,a=error,b::c=TRACE",
    ]
    .iter()
    .enumerate()
    {
        put("directives", &format!("d{i}"), s.as_bytes());
    }
}

//! The ring reader over a ring a hostile client wrote: a `RingHeader` with
//! fuzzed cursors and flags, and a fuzzed data region. The reader must
//! never panic, never read out of bounds (ASan), never loop forever, and
//! every record it hands out must be inside the ring and no longer than
//! `MAX_RECORD`; every payload goes through the decoder as the sidecar
//! does it.
//!
//! Input: `flags: u8`, `write_pos: u64`, `read_pos: u64`, `read_seq: u64`
//! (little-endian), then the data region (zero-padded or cut to 4 KiB).
#![no_main]

use std::sync::atomic::Ordering;

use distlog::ring::{
    check_header, RawMemory, Reader, RingHeader, Stop, MAX_RECORD, MIN_DATA_BYTES,
};
use libfuzzer_sys::fuzz_target;

const CAP: usize = MIN_DATA_BYTES;

fn u64_at(d: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = d.get(at..at + 8) {
        b.copy_from_slice(s);
    }
    u64::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 25 {
        return;
    }
    let flags = u32::from(data[0] & 3);
    let hdr = Box::new(RingHeader::new(CAP, [1, 2], flags, 1));
    hdr.prod.write_pos.store(u64_at(data, 1), Ordering::Relaxed);
    hdr.cons.read_pos.store(u64_at(data, 9), Ordering::Relaxed);
    hdr.cons.read_seq.store(u64_at(data, 17), Ordering::Relaxed);
    let mut buf = vec![0u64; CAP / 8];
    let rest = &data[25..];
    let n = rest.len().min(CAP);
    // SAFETY: `buf` is CAP bytes of u64s; we copy at most CAP bytes.
    unsafe { std::ptr::copy_nonoverlapping(rest.as_ptr(), buf.as_mut_ptr() as *mut u8, n) };
    // SAFETY: `buf` lives until the end of this closure, 8-aligned, CAP bytes.
    let mem = unsafe { RawMemory::new(buf.as_mut_ptr() as *mut u8, CAP) };
    let geo = check_header(&hdr, CAP).expect("the header we built is valid");
    let Ok(mut r) = Reader::attach(&hdr, mem, geo) else {
        return;
    };
    // Bounded: each round reads at most 64 records or steps over one
    // unfinished record; a ring of 4 KiB holds at most 512 records.
    for _ in 0..64 {
        let start = r.pos();
        let res = r.poll(64, |_, payload| {
            assert!(payload.len() <= MAX_RECORD);
            let _ = distlog::wire::decode(payload);
            true
        });
        assert!(r.pos() >= start);
        match res {
            Ok(Stop::Busy) => {
                if !r.skip_busy() {
                    break;
                }
            }
            Ok(Stop::Budget) => {}
            Ok(_) | Err(_) => break,
        }
        r.release();
    }
    r.release();
    let _ = r.backlog();
});

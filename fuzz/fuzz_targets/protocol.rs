//! The socket and shared-segment protocols a client speaks to the sidecar:
//!
//! - byte 0 = 0: the rest is sent through a Unix socket pair into
//!   `proto::Receiver` (framing, lengths, partial messages), as the
//!   sidecar's connection task reads a hello and ring messages;
//! - 1: `postcard::from_bytes::<ClientMsg>` / `<SidecarMsg>` directly;
//! - 2: a control segment (`control::read`, the client's side);
//! - 3: a call-site table (`TableReader::refresh`, the sidecar's side).
#![no_main]

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;

use distlog::control::{self, ControlHeader};
use distlog::proto::{ClientMsg, ProtoError, Receiver, SidecarMsg};
use distlog::ring::RawMemory;
use distlog::table::{TableHeader, TableReader, TABLE_MAGIC, TABLE_VERSION};
use libfuzzer_sys::fuzz_target;

const REGION: usize = 4096;

fn region(bytes: &[u8]) -> Vec<u64> {
    let mut buf = vec![0u64; REGION / 8];
    let n = bytes.len().min(REGION);
    // SAFETY: `buf` holds REGION bytes; we copy at most REGION.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.as_mut_ptr() as *mut u8, n) };
    buf
}

fn u32_at(d: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    let n = d.len().min(4);
    b[..n].copy_from_slice(&d[..n]);
    u32::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            let (a, b) = UnixStream::pair().expect("socketpair");
            b.set_nonblocking(true).expect("non-blocking");
            use std::io::Write;
            let _ = (&a).write_all(rest);
            drop(a);
            let mut rx = Receiver::new();
            // Each message consumes at least its 4-byte length: bounded.
            for _ in 0..=rest.len() / 4 + 1 {
                match rx.recv::<ClientMsg>(b.as_fd()) {
                    Ok(_) => continue,
                    Err(ProtoError::WouldBlock) | Err(_) => break,
                }
            }
        }
        1 => {
            let _ = postcard::from_bytes::<ClientMsg>(rest);
            let _ = postcard::from_bytes::<SidecarMsg>(rest);
            let _ = postcard::from_bytes::<control::Directives>(rest);
        }
        2 => {
            let hdr = ControlHeader::new(REGION + control::CONTROL_HEADER_BYTES);
            hdr.seq
                .store(u64::from(u32_at(rest)) & !1, Ordering::Relaxed);
            hdr.len
                .store(u32_at(rest.get(4..).unwrap_or(&[])), Ordering::Relaxed);
            let mut buf = region(rest.get(8..).unwrap_or(&[]));
            // SAFETY: `buf` lives until the end of this arm, 8-aligned.
            let mem = unsafe { RawMemory::new(buf.as_mut_ptr() as *mut u8, REGION) };
            let _ = control::check(&hdr, REGION + control::CONTROL_HEADER_BYTES);
            let _ = control::read(&hdr, &mem);
        }
        _ => {
            let hdr = TableHeader {
                magic: TABLE_MAGIC,
                version: TABLE_VERSION,
                count: 0,
                total_bytes: (REGION + 64) as u64,
                committed: std::sync::atomic::AtomicU64::new(u64::from(u32_at(rest))),
            };
            let mut buf = region(rest.get(4..).unwrap_or(&[]));
            // SAFETY: as above.
            let mem = unsafe { RawMemory::new(buf.as_mut_ptr() as *mut u8, REGION) };
            let mut r = TableReader::new(&hdr, mem);
            let _ = r.refresh(1000);
            let _ = r.refresh(1000);
        }
    }
});

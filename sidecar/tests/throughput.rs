//! A throughput probe, not a test: `cargo test -p distlogd --release --test
//! throughput -- --ignored --nocapture`. Prints records per second through
//! `distlogd run --stdout > /dev/null`; asserts only that nothing is lost.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Instant;

use common::*;
use distlog::ring::Push;
use distlog::wire::{Encoder, Field, Head, Level, Value};

#[test]
#[ignore = "a probe: run by hand with --ignored --nocapture"]
fn drain_throughput() {
    let dir = temp_dir("throughput");
    let socket = dir.join("s.sock");
    let mut child = Command::new(
        std::env::var_os("DISTLOGD_BIN").unwrap_or(env!("CARGO_BIN_EXE_distlogd").into()),
    )
    .args(["run", "--stdout", "--socket"])
    .arg(&socket)
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + WATCHDOG;
    while TestClient::connect(&socket, "probe").is_err() {
        assert!(Instant::now() < deadline, "sidecar did not start");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut c = TestClient::connect(&socket, "svc-throughput").unwrap();
    let site = c.event_site(Level::Info, "bench", 1, &["message", "n", "s"]);
    let rings: Vec<TestRing> = (0..4).map(|i| c.ring(1 << 20, i + 1)).collect();
    let per_ring = 250_000u64;
    let start = Instant::now();
    std::thread::scope(|s| {
        for ring in &rings {
            let c = &c;
            s.spawn(move || {
                let mut buf = [0u8; 256];
                for n in 0..per_ring {
                    let head = Head::Event {
                        callsite: site,
                        ts: n,
                        tid: ring.index,
                        scope: 0,
                        trace: None,
                    };
                    let mut e = Encoder::new(&mut buf, &head);
                    e.field(&Field::Idx(0, Value::Str("request served")));
                    e.field(&Field::Idx(1, Value::U64(n)));
                    e.field(&Field::Idx(2, Value::Str("GET /index.html")));
                    let bytes = e.finish().unwrap();
                    loop {
                        match ring.push_raw(c.wake.as_ref(), bytes) {
                            Push::Done { .. } => break,
                            _ => {
                                ring.hdr.prod.dropped.fetch_sub(1, Ordering::Relaxed);
                                std::thread::yield_now();
                            }
                        }
                    }
                }
            });
        }
    });
    for r in &rings {
        while r.hdr.cons.read_pos.load(Ordering::Acquire)
            != r.hdr.prod.write_pos.load(Ordering::Acquire)
        {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(600),
                "watchdog"
            );
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let total = per_ring * rings.len() as u64;
    println!(
        "{total} records in {secs:.3} s: {:.0} records/s through --stdout > /dev/null",
        total as f64 / secs
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

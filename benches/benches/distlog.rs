//! distlog: the enabled event, the disabled call site and a scope, with a
//! real sidecar draining the rings (`target/release/distlogd`, or
//! `$DISTLOGD`; `cargo build --release -p distlogd` first). Without the
//! binary the records wait in 64 MiB rings and, once those are full, this
//! measures the drop path: it says so on stderr.
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

fn start_sidecar() -> Option<std::process::Child> {
    let bin = std::env::var("DISTLOGD").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/distlogd").into()
    });
    let dir = std::env::temp_dir().join(format!("distlog-criterion-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let sock = dir.join("d.sock");
    let cfg = dir.join("bench.toml");
    // One route that matches nothing: no disk store, only `--stdout`.
    std::fs::write(
        &cfg,
        "[[route]]\nsink = \"stdout\"\nservice = [\"no-such-service\"]\n",
    )
    .ok()?;
    let child = Command::new(&bin)
        .args(["run", "--stdout", "--socket"])
        .arg(&sock)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let end = Instant::now() + Duration::from_secs(10);
    while !sock.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::env::set_var("DISTLOG_SOCKET", &sock);
    Some(child)
}

fn bench(c: &mut Criterion) {
    std::env::set_var("DISTLOG_RING_BYTES", "64m");
    std::env::set_var("DISTLOG_LOG", "info,bench::off=warn");
    let mut sidecar = start_sidecar();
    if sidecar.is_none() {
        eprintln!("distlog bench: no distlogd binary; without a sidecar this measures the drop path once 64 MiB are written");
    }
    let _g = distlog::init("criterion").expect("distlog::init");
    let end = Instant::now() + Duration::from_secs(5);
    while sidecar.is_some() && !distlog::raw::connected() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut i = 0u64;
    c.bench_function("distlog/enabled", |b| {
        b.iter(|| {
            i += 1;
            distlog_benches::tracing_event!(i)
        })
    });
    c.bench_function("distlog/disabled-level", |b| {
        b.iter(|| tracing::debug!(target: "bench", a = 1i64, "message text"))
    });
    c.bench_function("distlog/disabled-target", |b| {
        b.iter(|| tracing::info!(target: "bench::off", a = 1i64, "message text"))
    });
    c.bench_function("distlog/scope", |b| {
        b.iter(|| {
            let s = tracing::info_span!(target: "bench", "work", a = 1i64);
            let e = s.enter();
            drop(e);
            drop(s);
        })
    });
    distlog::flush(Duration::from_secs(10));
    if let Some(c) = sidecar.as_mut() {
        // SAFETY: kill has no memory preconditions; the pid is our child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let _ = c.wait();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

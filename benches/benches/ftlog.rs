//! The event through `log` into ftlog (formatting on ftlog's thread).
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("distlog-criterion-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let guard = ftlog::builder()
        .max_log_level(ftlog::LevelFilter::Info)
        .bounded(100_000, false)
        .root(ftlog::appender::FileAppender::new(dir.join("ftlog.log")))
        .try_init()
        .expect("ftlog");
    let mut i = 0i64;
    c.bench_function("ftlog/enabled", |b| {
        b.iter(|| {
            i += 1;
            log::info!(target: "bench", "message text a={} b={} s={}", i, 42u64, "short")
        })
    });
    drop(guard);
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);

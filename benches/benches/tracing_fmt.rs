//! The event into `tracing-subscriber`'s JSON formatter with
//! `tracing-appender`'s non-blocking writer to a file.
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("distlog-criterion-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (nb, guard) =
        tracing_appender::non_blocking(tracing_appender::rolling::never(&dir, "fmt.log"));
    tracing_subscriber::fmt().json().with_writer(nb).init();
    let mut i = 0u64;
    c.bench_function("tracing-fmt-json-non_blocking/enabled", |b| {
        b.iter(|| {
            i += 1;
            distlog_benches::tracing_event!(i)
        })
    });
    drop(guard);
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);

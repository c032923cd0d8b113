//! The floor: a TSC read and 32 bytes into a thread-local buffer with a
//! release store (see `distlog_benches::floor`).
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let mut i = 0u64;
    c.bench_function("floor", |b| {
        b.iter(|| {
            i += 1;
            distlog_benches::floor::op(i, 42, 7)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

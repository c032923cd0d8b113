//! fastrace span costs: `LocalSpan` (thread-local, its fast path) and
//! `Span` (the thread-safe kind), under a root that is renewed every 1000
//! spans so collected spans do not pile up. Criterion's time is per 1000
//! spans (one iteration); `bench-runner fastrace` reports per span.
use criterion::{criterion_group, criterion_main, Criterion};
use fastrace::prelude::*;

struct NullReporter;
impl fastrace::collector::Reporter for NullReporter {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        std::hint::black_box(spans);
    }
}

fn bench(c: &mut Criterion) {
    fastrace::set_reporter(NullReporter, fastrace::collector::Config::default());
    c.bench_function("fastrace/LocalSpan", |b| {
        b.iter_batched(
            || Span::root("root", SpanContext::random()),
            |root| {
                let _g = root.set_local_parent();
                for _ in 0..1000 {
                    drop(std::hint::black_box(LocalSpan::enter_with_local_parent(
                        "work",
                    )));
                }
            },
            criterion::BatchSize::SmallInput,
        )
    });
    c.bench_function("fastrace/Span", |b| {
        b.iter_batched(
            || Span::root("root", SpanContext::random()),
            |root| {
                let _g = root.set_local_parent();
                for _ in 0..1000 {
                    let s = Span::enter_with_local_parent("work");
                    let g = s.set_local_parent();
                    drop(g);
                    drop(std::hint::black_box(s));
                }
            },
            criterion::BatchSize::SmallInput,
        )
    });
    fastrace::flush();
}

criterion_group!(benches, bench);
criterion_main!(benches);

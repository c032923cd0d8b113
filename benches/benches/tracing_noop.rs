//! The event into a `tracing` subscriber that says "enabled" and does
//! nothing: the cost of `tracing` itself.
use criterion::{criterion_group, criterion_main, Criterion};
use tracing_core::{span, Event, Interest, Metadata, Subscriber};

struct NoopEnabled;

impl Subscriber for NoopEnabled {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::always()
    }
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, e: &Event<'_>) {
        std::hint::black_box(e);
    }
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

fn bench(c: &mut Criterion) {
    tracing::subscriber::set_global_default(NoopEnabled).expect("first subscriber");
    let mut i = 0u64;
    c.bench_function("tracing-noop/enabled", |b| {
        b.iter(|| {
            i += 1;
            distlog_benches::tracing_event!(i)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

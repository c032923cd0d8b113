//! The event through `log` into the simplest file logger (a mutex around a
//! `BufWriter<File>`).
use std::io::Write as _;
use std::sync::Mutex;

use criterion::{criterion_group, criterion_main, Criterion};

struct FileLogger(Mutex<std::io::BufWriter<std::fs::File>>);

impl log::Log for FileLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record<'_>) {
        let mut w = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(
            w,
            "{} {} {} {}",
            distlog_benches::realtime_ns(),
            r.level(),
            r.target(),
            r.args()
        );
    }
    fn flush(&self) {
        let _ = self.0.lock().unwrap_or_else(|e| e.into_inner()).flush();
    }
}

fn bench(c: &mut Criterion) {
    let path = std::env::temp_dir().join(format!("distlog-criterion-{}.log", std::process::id()));
    let f = std::fs::File::create(&path).expect("log file");
    let logger: &'static FileLogger =
        Box::leak(Box::new(FileLogger(Mutex::new(std::io::BufWriter::new(f)))));
    log::set_logger(logger).expect("first logger");
    log::set_max_level(log::LevelFilter::Info);
    let mut i = 0i64;
    c.bench_function("log-file/enabled", |b| {
        b.iter(|| {
            i += 1;
            log::info!(target: "bench", "message text a={} b={} s={}", i, 42u64, "short")
        })
    });
    log::logger().flush();
    let _ = std::fs::remove_file(path);
}

criterion_group!(benches, bench);
criterion_main!(benches);

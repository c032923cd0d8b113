//! The process's start-up filter for records that do not come through
//! `tracing` (the C API's runtime targets): the same directive string as the
//! `EnvFilter` in front of the layer, read as `tracing-subscriber`'s
//! `filter::Targets` (target and level only; span-field directives need
//! `tracing` spans and do not apply here).

use std::sync::OnceLock;

use tracing_subscriber::filter::Targets;

use crate::wire::Level;

static TARGETS: OnceLock<Targets> = OnceLock::new();

/// Set the directives for non-`tracing` records (first call wins).
pub(crate) fn set(directives: &str) {
    let t = directives
        .split(',')
        .filter(|d| !d.contains('[') && !d.trim().is_empty())
        .collect::<Vec<_>>()
        .join(",")
        .parse::<Targets>()
        .unwrap_or_else(|_| Targets::new().with_default(tracing_core::LevelFilter::INFO));
    let _ = TARGETS.set(t);
}

fn to_tracing(l: Level) -> tracing_core::Level {
    match l {
        Level::Error => tracing_core::Level::ERROR,
        Level::Warn => tracing_core::Level::WARN,
        Level::Info => tracing_core::Level::INFO,
        Level::Debug => tracing_core::Level::DEBUG,
        Level::Trace => tracing_core::Level::TRACE,
    }
}

/// Whether `level` is enabled for `target`.
pub(crate) fn enabled(level: Level, target: &str) -> bool {
    match TARGETS.get() {
        Some(t) => t.would_enable(target, &to_tracing(level)),
        None => level <= Level::Info,
    }
}

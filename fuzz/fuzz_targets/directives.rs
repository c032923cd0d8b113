//! The directive parser: verbosity directives arrive from `distlogd ctl`
//! (validated by the sidecar with `distlog::directive_parser()`, piece by
//! piece for its error message) and are parsed again by every client. Any
//! text must parse or fail, never panic or hang (`scripts/fuzz` gives every
//! input 10 s: the regex-compiling parser once spent minutes and 1.5 GB on
//! one directive, which is why `directive_parser` matches field values
//! literally).
//!
//! The upstream parser (tracing-subscriber 0.3.23) panics on some text: a
//! multi-byte character where it slices a string (every build), and a
//! `debug_assert` in its directive ordering (debug builds). distlog parses
//! directives only under `catch_unwind` (the sidecar's `directives::parse`,
//! the client's `filter::parse_env` and `targets_of`), so this target does
//! the same and fails only on a panic outside it, a hang (10 s per input)
//! or memory growth.
#![no_main]

use std::cell::Cell;

use libfuzzer_sys::fuzz_target;
use tracing_subscriber::filter::Targets;

thread_local! {
    /// Inside a guarded parse: a panic there is caught, not a crash.
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

fn guarded<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Option<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(Cell::get) {
                abort(info);
            }
        }));
    });
    GUARDED.with(|g| g.set(true));
    let r = std::panic::catch_unwind(f).ok();
    GUARDED.with(|g| g.set(false));
    r
}

fn parse(text: &str) {
    let _ = guarded(|| distlog::directive_parser().parse(text));
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    parse(text);
    for piece in text.split(',') {
        parse(piece);
    }
    // The client's fast filter: target directives without span fields.
    let targets: Vec<&str> = text
        .split(',')
        .filter(|d| !d.contains('[') && !d.trim().is_empty())
        .collect();
    let joined = targets.join(",");
    let _ = guarded(|| joined.parse::<Targets>());
});

//! The directive parser: verbosity directives arrive from `distlogd ctl`
//! (validated by the sidecar with `EnvFilter::builder().parse`, piece by
//! piece for its error message) and are parsed again by every client. Any
//! text must parse or fail, never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracing_subscriber::filter::{Directive, EnvFilter, Targets};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = EnvFilter::builder().parse(text);
    for piece in text.split(',') {
        let _ = EnvFilter::builder().parse(piece);
        let _ = piece.parse::<Directive>();
    }
    // The client's fast filter: target directives without span fields.
    let targets: Vec<&str> = text
        .split(',')
        .filter(|d| !d.contains('[') && !d.trim().is_empty())
        .collect();
    let _ = targets.join(",").parse::<Targets>();
});

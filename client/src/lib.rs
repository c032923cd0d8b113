//! distlog client: records from `tracing` and `log` into shared-memory rings
//! read by the per-host `distlogd` sidecar.
//!
//! # Use
//!
//! ```no_run
//! fn main() -> Result<(), distlog::Error> {
//!     let _guard = distlog::init("checkout")?;
//!     tracing::info!(order = 42, "paid");
//!     log::warn!("from the log crate too");
//!     Ok(())
//! }
//! ```
//!
//! [`init`] installs a global `tracing` subscriber (distlog's own
//! [`Subscriber`] under an `EnvFilter`) and a `log` logger of its own that
//! writes `log` records straight into the rings, under the same
//! directives (targets and levels; span-field directives apply to
//! `tracing` records only). It
//! succeeds when no sidecar runs yet: records wait in the rings (up to their
//! size; beyond that they are dropped and counted) and a background thread
//! connects, and reconnects whenever the sidecar restarts.
//!
//! # Configuration (environment wins over code where both are given)
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `DISTLOG_SERVICE` | service name | the name given in code |
//! | `DISTLOG_SOCKET` | the sidecar's socket | `$XDG_RUNTIME_DIR/distlog/distlogd.sock`, else `/run/distlog/distlogd.sock` |
//! | `DISTLOG_LOG`, then `RUST_LOG` | filter directives (`EnvFilter` syntax) | `info` |
//! | `DISTLOG_RING_BYTES` | data bytes of one thread's ring (rounded up to a power of two, 4 KiB..64 MiB) | 256 KiB ([`DEFAULT_RING_BYTES`]) |
//! | `DISTLOG_MAX_RINGS` | rings before threads share the overflow ring | 16 |
//! | `DISTLOG_PROTOCOL_VERSION` | the highest protocol version offered to the sidecar (`1` pins the postcard record layout, see [`wire::PROTOCOL_VERSION`]) | [`wire::PROTOCOL_VERSION`] |
//!
//! # The hot path
//!
//! An enabled event: a lock-free lookup of its call-site id, a TSC read, a
//! `postcard` encoding of the values straight into the thread's own ring
//! and one release store. No lock, no system call, no
//! allocation (once the thread has its ring). A full ring drops the record
//! and counts it; the sidecar turns the count into a `loss` record.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]

mod callsite;
pub mod clock;
pub mod control;
mod filter;
mod layer;
mod log_bridge;
pub mod paths;
pub mod proto;
pub mod raw;
pub mod ring;
mod runtime;
pub mod scope;
pub mod segment;
mod span_slab;
mod span_table;
mod subscriber;
pub(crate) mod sync;
pub mod table;
pub mod wire;

use std::path::PathBuf;
use std::time::Duration;

pub use layer::DistlogLayer;
pub use runtime::{DEFAULT_MAX_RINGS, DEFAULT_RING_BYTES};
pub use subscriber::Subscriber;
use tracing_subscriber::layer::SubscriberExt;

/// Why the client could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another global `tracing` subscriber or `log` logger is installed.
    #[error("a global subscriber is already installed: {0}")]
    AlreadyInstalled(String),
    /// The filter directives do not parse.
    #[error("bad filter directives {directives:?}: {msg}")]
    BadFilter {
        /// What was given.
        directives: String,
        /// What the parser said.
        msg: String,
    },
    /// A setting has a value we cannot use.
    #[error("bad setting {name}: {msg}")]
    Config {
        /// The setting (environment variable or builder method).
        name: &'static str,
        /// Why.
        msg: String,
    },
    /// Shared memory could not be set up.
    #[error("shared memory: {0}")]
    Segment(#[from] segment::SegmentError),
    /// Another system call failed.
    #[error("{0}")]
    Io(String),
}

/// Start distlog for this process with default settings and install it as
/// the global `tracing` subscriber and `log` logger.
///
/// Keep the returned [`Guard`] alive in `main`: dropping it waits (at most
/// two seconds) until the sidecar has read every record written so far.
/// Records are not lost without it either (the sidecar holds the rings and
/// drains them after the process exits), the guard only makes the wait
/// explicit.
pub fn init(service: &str) -> Result<Guard, Error> {
    builder(service).install()
}

/// The parser for filter directives (`EnvFilter` syntax) that distlog uses
/// everywhere: the client's start-up filter, the sidecar's validation of
/// `distlogd ctl` directives, and the client applying them.
///
/// Field values in span-field directives (`[span{field=value}]=trace`)
/// match literally, not as regular expressions: compiling a regular
/// expression can take exponential time and memory (the fuzzer found a
/// directive that ran for minutes and grew past 1.5 GB), and directives
/// reach every client of a host from the control socket.
///
/// # Examples
///
/// ```
/// let f = distlog::directive_parser().parse("info,[checkout{order=42}]=trace").unwrap();
/// assert!(f.to_string().contains("checkout"));
/// ```
pub fn directive_parser() -> tracing_subscriber::filter::Builder {
    tracing_subscriber::EnvFilter::builder().with_regex(false)
}

/// A [`Builder`] to configure the client before starting it.
pub fn builder(service: &str) -> Builder {
    Builder {
        service: service.to_owned(),
        socket: None,
        ring_bytes: None,
        max_rings: None,
        filter: None,
        library: format!("rust distlog {}", env!("CARGO_PKG_VERSION")),
    }
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct Builder {
    service: String,
    socket: Option<PathBuf>,
    ring_bytes: Option<usize>,
    max_rings: Option<usize>,
    filter: Option<String>,
    library: String,
}

fn env_usize(name: &'static str) -> Result<Option<usize>, Error> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => parse_size(v.trim()).map(Some).ok_or(Error::Config {
            name,
            msg: format!("{v:?} is not a size (e.g. 262144, 256k, 1m)"),
        }),
        _ => Ok(None),
    }
}

fn parse_size(s: &str) -> Option<usize> {
    let s = s.to_ascii_lowercase();
    let (num, mul) = match s.as_bytes().last()? {
        b'k' => (&s[..s.len() - 1], 1 << 10),
        b'm' => (&s[..s.len() - 1], 1 << 20),
        _ => (&s[..], 1),
    };
    num.parse::<usize>().ok()?.checked_mul(mul)
}

impl Builder {
    /// The sidecar's socket (default: see [`paths::default_socket`]).
    pub fn socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.socket = Some(path.into());
        self
    }

    /// Data bytes of one thread's ring (rounded up to a power of two).
    pub fn ring_bytes(mut self, n: usize) -> Self {
        self.ring_bytes = Some(n);
        self
    }

    /// Rings made before further threads share the overflow ring.
    pub fn max_rings(mut self, n: usize) -> Self {
        self.max_rings = Some(n);
        self
    }

    /// Filter directives (`EnvFilter` syntax), used when neither
    /// `DISTLOG_LOG` nor `RUST_LOG` is set.
    pub fn filter(mut self, directives: &str) -> Self {
        self.filter = Some(directives.to_owned());
        self
    }

    /// Name of the library for the sidecar's status (the C API sets it).
    #[doc(hidden)]
    pub fn library(mut self, name: &str) -> Self {
        self.library = name.to_owned();
        self
    }

    fn directives(&self) -> String {
        for v in ["DISTLOG_LOG", "RUST_LOG"] {
            if let Ok(d) = std::env::var(v) {
                if !d.trim().is_empty() {
                    return d;
                }
            }
        }
        self.filter.clone().unwrap_or_else(|| "info".to_owned())
    }

    fn config(&self) -> Result<runtime::Config, Error> {
        let service = std::env::var("DISTLOG_SERVICE")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| self.service.clone());
        let ring = env_usize("DISTLOG_RING_BYTES")?
            .or(self.ring_bytes)
            .unwrap_or(DEFAULT_RING_BYTES);
        let ring = ring
            .clamp(ring::MIN_DATA_BYTES, ring::MAX_DATA_BYTES)
            .next_power_of_two();
        let max_rings = env_usize("DISTLOG_MAX_RINGS")?
            .or(self.max_rings)
            .unwrap_or(DEFAULT_MAX_RINGS);
        Ok(runtime::Config {
            service,
            socket: self.socket.clone().unwrap_or_else(paths::default_socket),
            ring_bytes: ring,
            max_rings: max_rings.min(1024),
            library: self.library.clone(),
        })
    }

    /// Start the runtime only (rings, connection), without a subscriber:
    /// for the C API and for [`raw`] users.
    pub fn start(self) -> Result<(), Error> {
        filter::set(&self.directives());
        runtime::install(self.config()?)?;
        Ok(())
    }

    /// Start the runtime and return the layer, for a subscriber stack of
    /// your own (it must be built on `tracing_subscriber::Registry`).
    pub fn layer(self) -> Result<DistlogLayer, Error> {
        self.start()?;
        Ok(DistlogLayer::new())
    }

    /// Start the runtime and return distlog's own subscriber (no
    /// `Registry`; put a filter layer on it with
    /// `tracing_subscriber::layer::SubscriberExt::with`). For other layers
    /// next to distlog's, see [`Builder::layer`].
    pub fn subscriber(self) -> Result<Subscriber, Error> {
        self.start()?;
        Ok(Subscriber::new())
    }

    /// Start and install as the global `tracing` subscriber and `log`
    /// logger.
    pub fn install(self) -> Result<Guard, Error> {
        let directives = self.directives();
        let env = filter::parse_env(&directives).map_err(|msg| Error::BadFilter {
            directives: directives.clone(),
            msg,
        })?;
        let sub = self.subscriber()?;
        let verbosity = filter::Verbosity::new(env);
        let cell = verbosity.clone();
        filter::set_reloader(Box::new(move |env| {
            cell.set(env);
            // Outside the lock: every call site asks the filter again.
            tracing_core::callsite::rebuild_interest_cache();
            Ok(())
        }));
        let sub = sub.with(verbosity);
        tracing::subscriber::set_global_default(sub)
            .map_err(|e| Error::AlreadyInstalled(e.to_string()))?;
        // `log` records straight into the rings (not through tracing: see
        // `log_bridge`); a logger installed before us is not an error for
        // tracing records, so say it and go on.
        match log::set_logger(&log_bridge::LOGGER) {
            Ok(()) => filter::follow_in_log(),
            Err(e) => eprintln!("distlog: log crate records are not captured: {e}"),
        }
        Ok(Guard { _priv: () })
    }
}

/// Returned by [`init`]; dropping it flushes (see [`init`]).
#[must_use = "dropping the guard at once flushes at once; keep it until the end of main"]
#[derive(Debug)]
pub struct Guard {
    _priv: (),
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = raw::flush(Duration::from_secs(2));
    }
}

/// The W3C `traceparent` of the current scope, to pass to another service;
/// `None` outside any scope.
///
/// # Examples
///
/// ```no_run
/// let _g = distlog::init("checkout").unwrap();
/// let span = tracing::info_span!("checkout", order = 42);
/// let _e = span.enter();
/// let tp = distlog::traceparent().unwrap(); // "00-<trace>-<span>-01"
/// ```
pub fn traceparent() -> Option<String> {
    scope::current().map(|c| scope::format_traceparent(&c.trace, c.scope))
}

/// Make `span` continue the trace named by a W3C `traceparent` from another
/// process: the span's parent is the remote scope. Call it on a fresh span,
/// before entering it. A malformed `traceparent` leaves the span the root
/// of a new trace and records the bad value in the field
/// `distlog.bad_traceparent`; it never panics.
///
/// # Examples
///
/// ```no_run
/// let _g = distlog::init("payments").unwrap();
/// let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let span = distlog::continue_from(tp, tracing::info_span!("charge"));
/// let _e = span.enter();
/// ```
pub fn continue_from(traceparent: &str, span: tracing::Span) -> tracing::Span {
    continue_from_with_state(traceparent, None, span)
}

/// [`continue_from`] with the W3C `tracestate` that came beside the
/// `traceparent`: when it carries `distlog=<level>` (see [`tracestate`]),
/// this process records the request at that level too, whatever its own
/// directives say.
pub fn continue_from_with_state(
    traceparent: &str,
    tracestate: Option<&str>,
    span: tracing::Span,
) -> tracing::Span {
    let parsed = scope::parse_traceparent(traceparent);
    let mut raise = 0;
    layer::with_scope(&span, |d| {
        if d.opened.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        match parsed {
            Ok(tp) => {
                let boost = tracestate
                    .map_or(0, scope::parse_tracestate)
                    .max(filter::trace_boost(&tp.trace));
                raise = d.set_remote_parent(&tp.trace, tp.parent, boost);
            }
            Err(why) => {
                let v = layer::clip(traceparent);
                let mut extra = Vec::new();
                for f in [
                    wire::Field::Named("distlog.bad_traceparent", wire::Value::Str(v)),
                    wire::Field::Named("distlog.bad_traceparent_reason", wire::Value::Str(why)),
                ] {
                    if let Ok(b) = postcard::to_allocvec(&f) {
                        extra.extend_from_slice(&b);
                    }
                }
                // The first bad value is kept if there are more.
                let _ = d.extra.set(extra);
            }
        }
    });
    if raise > 0 {
        // Outside every lock of the subscriber: rebuilds the interest cache.
        filter::raise_boost_cap(raise);
    }
    span
}

/// The W3C `tracestate` to send beside [`traceparent`]: `distlog=<level>`
/// when the current request is recorded at a raised level (by
/// `distlogd ctl level set LEVEL --trace ID`, or because it arrived with
/// such a `tracestate`), so the next service records it the same way.
/// `None` when there is nothing to pass on.
pub fn tracestate() -> Option<String> {
    scope::current().and_then(|c| scope::format_tracestate(c.boost))
}

/// Mark a span failed: its close record says `error`. (An error-level event
/// inside it, or recording `error = true` on it, does the same.)
pub fn mark_error(span: &tracing::Span) {
    layer::with_scope(span, |d| {
        d.error.store(true, std::sync::atomic::Ordering::Relaxed)
    });
}

/// Wait until the sidecar has read everything written so far, at most
/// `timeout`. Returns whether it did.
pub fn flush(timeout: Duration) -> bool {
    raw::flush(timeout)
}

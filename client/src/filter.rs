//! Verbosity: which records are written, changed while the process runs.
//!
//! # Layers of a decision
//!
//! 1. The client's start-up directives (`DISTLOG_LOG`, `RUST_LOG`, code),
//!    `EnvFilter` syntax, default `info`.
//! 2. Directives from the sidecar (`distlogd ctl level set`), replacing the
//!    start-up ones while they live (see [`crate::control`]).
//! 3. A *boost* for one request: a scope whose trace the sidecar names
//!    (`ctl level set debug --trace ID`), or which continued a trace whose
//!    W3C `tracestate` carries `distlog=<level>`, records everything up to
//!    that level, and so do its children, in this process and (through
//!    [`crate::tracestate`]) in every process the request reaches.
//!
//! For `tracing`, 1 and 2 are an `EnvFilter` that is swapped in place: a
//! change rebuilds `tracing-core`'s interest cache, so a disabled call site
//! costs one load and a compare. 3 makes call sites up to the highest boost
//! level "sometimes" interesting, checked against the current scope. For
//! the C API the same directives are read as `filter::Targets`.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use tracing_core::{Interest, LevelFilter, Metadata, Subscriber};
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::{Context, Layer};

use crate::control::Directives;
use crate::wire::{Level, TraceId};

/// Highest boost level any scope of this process may have (0 = none). Call
/// sites above it are decided by the directives alone.
static BOOST_CAP: AtomicU8 = AtomicU8::new(0);

/// Whether the sidecar named any trace to boost: a new scope looks its
/// trace up (under `STATE`'s lock) only then. Relaxed: a scope made while
/// directives change may miss a boost named at that moment, as if it was
/// made just before.
static ANY_TRACES: AtomicBool = AtomicBool::new(false);

/// Bumped (Release) after every change of directives, `MAX_LEVEL` or the
/// boost cap; caches of filter results compare against it (Acquire).
pub static EPOCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn bump() {
    // Release pairs with the Acquire load in `raw::filter_epoch`: a cache
    // that sees the new epoch sees the new directives' effects.
    EPOCH.fetch_add(1, Ordering::Release);
}

/// The most verbose level the C API's runtime filter enables: the C macros
/// compare against it before anything else. Changed only through
/// [`set_max`] / [`raise_max`], which pass it on to `log`.
pub static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Whether distlog is the `log` crate's logger: then `log`'s max level
/// follows [`MAX_LEVEL`], so a disabled `log` call costs `log`'s own
/// compare. Relaxed: set once, before `log` can call us.
static LOG_FOLLOWS: AtomicBool = AtomicBool::new(false);

fn set_max(level: u8) {
    MAX_LEVEL.store(level, Ordering::Relaxed);
    publish_max();
}

fn raise_max(level: u8) {
    MAX_LEVEL.fetch_max(level, Ordering::Relaxed);
    publish_max();
}

/// `log`'s max level from [`MAX_LEVEL`]: read again after the store, so of
/// two threads changing it at once the last to store also stores last in
/// `log` (a stale store is seen and redone).
fn publish_max() {
    if !LOG_FOLLOWS.load(Ordering::Relaxed) {
        return;
    }
    loop {
        let m = MAX_LEVEL.load(Ordering::Relaxed);
        log::set_max_level(crate::log_bridge::level_filter(m));
        if MAX_LEVEL.load(Ordering::Relaxed) == m {
            return;
        }
    }
}

/// distlog became the `log` crate's logger: `log`'s max level follows ours.
pub(crate) fn follow_in_log() {
    LOG_FOLLOWS.store(true, Ordering::Relaxed);
    publish_max();
}

struct State {
    startup: String,
    /// The directives in force (the sidecar's, else `startup`).
    current: String,
    targets: Targets,
    traces: Vec<(TraceId, Level)>,
    applied_seq: u64,
}

static STATE: OnceLock<RwLock<State>> = OnceLock::new();
type Reloader = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;
static RELOAD: OnceLock<Reloader> = OnceLock::new();

fn to_tracing(l: Level) -> tracing_core::Level {
    match l {
        Level::Error => tracing_core::Level::ERROR,
        Level::Warn => tracing_core::Level::WARN,
        Level::Info => tracing_core::Level::INFO,
        Level::Debug => tracing_core::Level::DEBUG,
        Level::Trace => tracing_core::Level::TRACE,
    }
}

fn level_num(l: &tracing_core::Level) -> u8 {
    Level::from_tracing(l) as u8
}

/// `Targets` from `EnvFilter` directives, leaving out span-field
/// directives (they need `tracing` spans).
fn targets_of(directives: &str) -> Targets {
    let text = directives
        .split(',')
        .filter(|d| !d.contains('[') && !d.trim().is_empty())
        .collect::<Vec<_>>()
        .join(",");
    // Under catch_unwind: the upstream parser panics on some text (a
    // multi-byte character where it slices), found by the fuzzer.
    std::panic::catch_unwind(|| text.parse::<Targets>())
        .ok()
        .and_then(Result::ok)
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
}

fn max_of(t: &Targets) -> u8 {
    match Option::<tracing_core::Level>::from(
        t.iter()
            .map(|(_, l)| l)
            .chain(t.default_level())
            .max()
            .unwrap_or(LevelFilter::INFO),
    ) {
        Some(l) => level_num(&l),
        None => 0,
    }
}

/// Set the start-up directives (first call wins).
pub(crate) fn set(directives: &str) {
    let targets = targets_of(directives);
    set_max(max_of(&targets));
    let _ = STATE.set(RwLock::new(State {
        startup: directives.to_owned(),
        current: directives.to_owned(),
        targets,
        traces: Vec::new(),
        applied_seq: 0,
    }));
}

/// Parse directives under `catch_unwind`: tracing-subscriber 0.3.23's
/// parser panics on some text (a multi-byte character where it slices a
/// string, in every build; a `debug_assert` in its directive ordering that a
/// repeated literal field match trips, in debug builds), found by
/// `fuzz/fuzz_targets/directives.rs`. Bad directives must be an error, not
/// a panic in the user's process.
pub(crate) fn parse_env(text: &str) -> Result<EnvFilter, String> {
    match std::panic::catch_unwind(|| crate::directive_parser().parse(text)) {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("the directive parser failed on these directives".into()),
    }
}

/// Remember how to swap the `tracing` filter (set by `install`).
pub(crate) fn set_reloader(f: Reloader) {
    let _ = RELOAD.set(f);
    // Directives the sidecar gave before the reloader existed (the first
    // connect happens inside `start`, before `install` builds the filter)
    // must reach the `tracing` filter too. The read lock is held across the
    // reload: an `apply` that changes `current` meanwhile reloads after us,
    // so the newest filter wins (the reload does not touch STATE).
    let Some(state) = STATE.get() else { return };
    let st = state.read().unwrap_or_else(|e| e.into_inner());
    if let (Some(r), Ok(env)) = (RELOAD.get(), parse_env(&st.current)) {
        let _ = r(env);
    }
}

/// A new control segment (a new sidecar): whatever its sequence number
/// says is news.
pub(crate) fn forget_seq() {
    if let Some(state) = STATE.get() {
        state.write().unwrap_or_else(|e| e.into_inner()).applied_seq = u64::MAX;
    }
}

/// Apply directives from the sidecar. Returns an error text when they do
/// not parse (the sidecar validated them; then the old ones stay).
pub(crate) fn apply(seq: u64, d: &Directives) -> Result<(), String> {
    let Some(state) = STATE.get() else {
        return Ok(());
    };
    let mut st = state.write().unwrap_or_else(|e| e.into_inner());
    if seq == st.applied_seq {
        return Ok(());
    }
    let text = d.filter.clone().unwrap_or_else(|| st.startup.clone());
    let env = parse_env(&text)?;
    st.targets = targets_of(&text);
    st.current = text.clone();
    st.traces = d.traces.clone();
    ANY_TRACES.store(!st.traces.is_empty(), Ordering::Relaxed);
    st.applied_seq = seq;
    let boost = d.traces.iter().map(|(_, l)| *l as u8).max().unwrap_or(0);
    if boost > BOOST_CAP.load(Ordering::Relaxed) {
        BOOST_CAP.store(boost, Ordering::Relaxed);
    }
    set_max(max_of(&st.targets).max(boost));
    drop(st);
    bump();
    if let Some(r) = RELOAD.get() {
        // Rebuilds the interest cache of every call site.
        r(env)?;
    }
    Ok(())
}

/// The boost a new scope of `trace` gets from the sidecar's trace directives.
pub(crate) fn trace_boost(trace: &TraceId) -> u8 {
    // Relaxed: see ANY_TRACES.
    if !ANY_TRACES.load(Ordering::Relaxed) {
        return 0;
    }
    named_trace_boost(trace)
}

/// [`trace_boost`] of a trace as its two halves: the flag's load inlined,
/// the id put together (and the directives read) out of line, only when
/// the sidecar named traces at all.
#[inline(always)]
pub(crate) fn trace_boost_halves(trace: crate::scope::Halves) -> u8 {
    // Relaxed: see ANY_TRACES.
    if !ANY_TRACES.load(Ordering::Relaxed) {
        return 0;
    }
    named_trace_boost(&crate::scope::join_trace(trace))
}

#[cold]
#[inline(never)]
fn named_trace_boost(trace: &TraceId) -> u8 {
    let Some(state) = STATE.get() else { return 0 };
    let st = state.read().unwrap_or_else(|e| e.into_inner());
    st.traces
        .iter()
        .filter(|(t, _)| t == trace)
        .map(|(_, l)| *l as u8)
        .max()
        .unwrap_or(0)
}

/// A scope got a boost from a `tracestate`: make call sites up to that level
/// reachable (rare; rebuilds the interest cache).
pub(crate) fn raise_boost_cap(level: u8) {
    if level > BOOST_CAP.load(Ordering::Relaxed) {
        BOOST_CAP.store(level, Ordering::Relaxed);
        raise_max(level);
        bump();
        tracing_core::callsite::rebuild_interest_cache();
    }
}

#[inline]
pub(crate) fn boosted(level: u8) -> bool {
    crate::scope::current().is_some_and(|c| c.boost >= level)
}

/// Whether the directives alone enable `level` for `target`.
pub(crate) fn enabled_by_directives(level: Level, target: &str) -> bool {
    match STATE.get() {
        Some(s) => s
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .targets
            .would_enable(target, &to_tracing(level)),
        None => level <= Level::Info,
    }
}

/// Whether `level` is enabled for `target` (the C API's check).
pub(crate) fn enabled(level: Level, target: &str) -> bool {
    let lv = level as u8;
    if lv > MAX_LEVEL.load(Ordering::Relaxed) {
        return false;
    }
    enabled_by_directives(level, target) || boosted(lv)
}

/// The `tracing` filter: the current directives plus the per-request boost.
///
/// Not `tracing_subscriber::reload`: that takes its lock on every callback,
/// events included, and an `EnvFilter` has nothing to do for an event whose
/// call site it already let through. This one locks only where the filter
/// decides or tracks spans.
///
/// Span callbacks reach the `EnvFilter` only while its directives have span
/// or field parts (`target[span{field}]=level`): without them it tracks no
/// span and each callback would be a lock, a map lookup and nothing else.
#[derive(Clone)]
pub(crate) struct Verbosity {
    env: Arc<RwLock<EnvFilter>>,
    /// Whether the filter in `env` has span-field directives. Relaxed
    /// everywhere: a stale answer only means one span created during a swap
    /// is not tracked by the new filter, as if it was created before the
    /// swap (a new filter starts with no spans tracked either way).
    dynamic: Arc<AtomicBool>,
}

/// Whether an `EnvFilter` has directives that need span callbacks: its
/// `Display` writes `[` exactly for directives with a span name or fields
/// (the dynamic ones; a target cannot hold `[`, the parser splits there).
fn has_span_directives(env: &EnvFilter) -> bool {
    env.to_string().contains('[')
}

impl Verbosity {
    pub(crate) fn new(env: EnvFilter) -> Self {
        Verbosity {
            dynamic: Arc::new(AtomicBool::new(has_span_directives(&env))),
            env: Arc::new(RwLock::new(env)),
        }
    }

    /// Swap the filter in place (the sidecar's directives changed).
    pub(crate) fn set(&self, env: EnvFilter) {
        let dynamic = has_span_directives(&env);
        *self.env.write().unwrap_or_else(|e| e.into_inner()) = env;
        // Relaxed: see the field.
        self.dynamic.store(dynamic, Ordering::Relaxed);
    }

    #[inline]
    fn env(&self) -> std::sync::RwLockReadGuard<'_, EnvFilter> {
        self.env.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the filter tracks spans at all.
    #[inline(always)]
    fn tracks_spans(&self) -> bool {
        // Relaxed: see the field.
        self.dynamic.load(Ordering::Relaxed)
    }

    /// A span callback of the filter, under its read lock: out of line,
    /// see `on_new_span`.
    #[cold]
    #[inline(never)]
    fn span_cb(&self, f: impl FnOnce(&EnvFilter)) {
        f(&self.env())
    }
}

// No `LookupSpan` bound: the `EnvFilter` keeps its own span state, so
// the filter sits on distlog's `Subscriber` as well as on a `Registry`.
impl<S> Layer<S> for Verbosity
where
    S: Subscriber,
{
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        let i = <EnvFilter as Layer<S>>::register_callsite(&self.env(), meta);
        if !i.is_always() && level_num(meta.level()) <= BOOST_CAP.load(Ordering::Relaxed) {
            Interest::sometimes()
        } else {
            i
        }
    }
    fn enabled(&self, meta: &Metadata<'_>, cx: Context<'_, S>) -> bool {
        <EnvFilter as Layer<S>>::enabled(&self.env(), meta, cx) || boosted(level_num(meta.level()))
    }
    fn max_level_hint(&self) -> Option<LevelFilter> {
        let cap = BOOST_CAP.load(Ordering::Relaxed);
        let boost = Level::from_u8(cap).map(|l| LevelFilter::from_level(to_tracing(l)));
        let env = <EnvFilter as Layer<S>>::max_level_hint(&self.env());
        match (env, boost) {
            (Some(e), Some(b)) => Some(e.max(b)),
            (e, None) => e,
            (None, _) => None,
        }
    }
    // Each span callback is the flag's load, inlined into the stack's
    // dispatch; the filter's part out of line (`span_cb`), so a stack
    // without span directives pays no frame for it (it cost ~15
    // instructions a callback, ~64 a scope).
    #[inline(always)]
    fn on_new_span(
        &self,
        a: &tracing_core::span::Attributes<'_>,
        id: &tracing_core::span::Id,
        cx: Context<'_, S>,
    ) {
        if self.tracks_spans() {
            self.span_cb(|env| env.on_new_span(a, id, cx))
        }
    }
    #[inline(always)]
    fn on_record(
        &self,
        id: &tracing_core::span::Id,
        v: &tracing_core::span::Record<'_>,
        cx: Context<'_, S>,
    ) {
        if self.tracks_spans() {
            self.span_cb(|env| env.on_record(id, v, cx))
        }
    }
    #[inline(always)]
    fn on_enter(&self, id: &tracing_core::span::Id, cx: Context<'_, S>) {
        if self.tracks_spans() {
            self.span_cb(|env| <EnvFilter as Layer<S>>::on_enter(env, id, cx))
        }
    }
    #[inline(always)]
    fn on_exit(&self, id: &tracing_core::span::Id, cx: Context<'_, S>) {
        if self.tracks_spans() {
            self.span_cb(|env| <EnvFilter as Layer<S>>::on_exit(env, id, cx))
        }
    }
    #[inline(always)]
    fn on_close(&self, id: tracing_core::span::Id, cx: Context<'_, S>) {
        if self.tracks_spans() {
            self.span_cb(|env| <EnvFilter as Layer<S>>::on_close(env, id, cx))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_directives_are_seen() {
        for (text, dynamic) in [
            ("info", false),
            ("warn,checkout=debug", false),
            ("info,[checkout]=trace", true),
            ("info,[{order=42}]=trace", true),
            ("app[checkout{order=42}]=debug", true),
        ] {
            let env = parse_env(text).unwrap();
            assert_eq!(has_span_directives(&env), dynamic, "{text}");
        }
    }

    /// Counts the events that get through the filter.
    struct Count(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl<S: Subscriber> Layer<S> for Count {
        fn on_event(&self, _: &tracing_core::Event<'_>, _: Context<'_, S>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn span_directives_work_and_follow_a_swap() {
        use tracing_subscriber::layer::SubscriberExt;
        let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let v = Verbosity::new(parse_env("info").unwrap());
        let handle = v.clone();
        let sub = tracing_subscriber::registry()
            .with(v)
            .with(Count(n.clone()));
        let swap = |text| {
            handle.set(parse_env(text).unwrap());
            tracing_core::callsite::rebuild_interest_cache();
        };
        tracing::subscriber::with_default(sub, || {
            let seen = || n.load(Ordering::Relaxed);
            // No span directive: the filter tracks no span.
            tracing::info_span!("work").in_scope(|| tracing::debug!("hidden"));
            assert_eq!(seen(), 0);
            swap("info,[work]=debug");
            tracing::info_span!("work").in_scope(|| tracing::debug!("shown"));
            assert_eq!(seen(), 1);
            tracing::debug!("outside the span: hidden");
            tracing::info_span!("other").in_scope(|| tracing::debug!("hidden"));
            assert_eq!(seen(), 1);
            swap("info");
            tracing::info_span!("work").in_scope(|| tracing::debug!("hidden again"));
            assert_eq!(seen(), 1);
        });
    }

    #[test]
    fn text_that_panics_the_upstream_parser_is_an_error() {
        // Found by fuzz/fuzz_targets/directives.rs: tracing-subscriber 0.3.23
        // slices inside the multi-byte character and panics.
        let text = "$war,\n\n\n\n\n\n\n\nk\u{26d4}\u{18}\u{0}tr}]=";
        assert!(parse_env(text).is_err());
        let _ = targets_of(text);
    }
}

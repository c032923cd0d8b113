//! `log` crate records straight into the rings: distlog's own
//! [`log::Log`], which [`crate::Builder::install`] sets.
//!
//! Through `tracing-log` each record became a `tracing` event with
//! per-level metadata, normalized back into a target and place and looked
//! up by content in the dynamic call-site cache (~2,700 instructions a
//! record, slower than `log` with a plain file logger). Here a record is
//! one lookup in a small per-thread cache keyed by its place (file, line,
//! level, target), which also holds the filter's verdict under the filter
//! epoch, then a compact event: the message copied (a literal) or
//! formatted straight into the ring.
//!
//! The records are the ones `tracing-log` made: a dynamic call site named
//! `log` with the record's target, level, file and line, field `message`;
//! the thread's current scope as parent.

use std::cell::RefCell;
use std::sync::atomic::Ordering;

use crate::callsite::DynSite;
use crate::runtime::{self, Process};
use crate::wire::{compact, CallsiteKind, Encoder, Level};

/// The logger [`crate::Builder::install`] sets.
pub(crate) struct Logger;

pub(crate) static LOGGER: Logger = Logger;

/// `log`'s level as distlog's (the same order and numbers).
#[inline(always)]
fn level_of(l: log::Level) -> Level {
    match l {
        log::Level::Error => Level::Error,
        log::Level::Warn => Level::Warn,
        log::Level::Info => Level::Info,
        log::Level::Debug => Level::Debug,
        log::Level::Trace => Level::Trace,
    }
}

/// `log`'s level filter for a [`crate::filter::MAX_LEVEL`] value.
pub(crate) fn level_filter(max: u8) -> log::LevelFilter {
    match Level::from_u8(max) {
        None => log::LevelFilter::Off,
        Some(Level::Error) => log::LevelFilter::Error,
        Some(Level::Warn) => log::LevelFilter::Warn,
        Some(Level::Info) => log::LevelFilter::Info,
        Some(Level::Debug) => log::LevelFilter::Debug,
        Some(Level::Trace) => log::LevelFilter::Trace,
    }
}

/// A `log` call site this thread has seen: its place, the filter's verdict
/// and its distlog call-site id.
struct Site {
    level: Level,
    line: Option<u32>,
    /// The file's address when `log` gave it as `&'static str` (a static
    /// string's bytes never change, so the address identifies it), else 0.
    file_static: usize,
    file: Option<Box<str>>,
    /// Compared by text: a target need not be static (`target:
    /// &format!(..)`), and a freed one's address is reused.
    target: Box<str>,
    /// The filter epoch's low 31 bits shifted left, and the verdict in bit
    /// 0 (as the C call sites keep it); 0 = not decided yet (the epoch
    /// starts at 1).
    verdict: u32,
    /// The call-site id, and the [`Process::generation`] it belongs to
    /// (a fork replaces the table).
    id: Option<(u64, u32)>,
}

impl Site {
    #[inline(always)]
    fn is(&self, level: Level, r: &log::Record<'_>) -> bool {
        self.level == level
            && self.line == r.line()
            && match r.file_static() {
                Some(f) if self.file_static != 0 => {
                    self.file_static == f.as_ptr() as usize
                        && self.file.as_deref().map(str::len) == Some(f.len())
                }
                _ => self.file.as_deref() == r.file(),
            }
            && *self.target == *r.target()
    }

    fn new(level: Level, r: &log::Record<'_>) -> Site {
        Site {
            level,
            line: r.line(),
            file_static: r.file_static().map_or(0, |f| f.as_ptr() as usize),
            file: r.file().map(Box::from),
            target: r.target().into(),
            verdict: 0,
            id: None,
        }
    }

    /// Whether the filter lets the record through: the verdict cached
    /// under the current epoch, else asked again; then the boost.
    #[inline(always)]
    fn enabled(&mut self) -> bool {
        // Acquire pairs with the Release bump after a change of directives:
        // a verdict asked for under the new epoch sees the new directives.
        let epoch = (crate::filter::EPOCH.load(Ordering::Acquire) as u32) << 1;
        let on = if self.verdict & !1 == epoch {
            self.verdict & 1 == 1
        } else {
            let on = crate::filter::enabled_by_directives(self.level, &self.target);
            self.verdict = epoch | u32::from(on);
            on
        };
        on || crate::filter::boosted(self.level as u8)
    }

    /// The call-site id in `p`'s table, registered on the first record.
    #[inline(always)]
    fn id(&mut self, p: &Process) -> Option<u32> {
        match self.id {
            Some((g, id)) if g == p.generation => Some(id),
            _ => {
                let id = register(p, self.level, &self.target, self.file.as_deref(), self.line)?;
                self.id = Some((p.generation, id));
                Some(id)
            }
        }
    }
}

/// Slots of the per-thread cache (direct mapped by file address, line and
/// level; a collision just looks the site up again).
const SLOTS: usize = 32;

thread_local! {
    static SITES: RefCell<[Option<Site>; SLOTS]> = const { RefCell::new([const { None }; SLOTS]) };
}

#[inline(always)]
fn slot(level: Level, r: &log::Record<'_>) -> usize {
    let place = r.file_static().map_or(0, |f| f.as_ptr() as usize >> 3);
    let line = r.line().unwrap_or(0) as usize;
    (place ^ line.wrapping_mul(0x9E37) ^ level as usize) % SLOTS
}

/// The call site `tracing-log` records had: name `log`, field `message`.
#[cold]
#[inline(never)]
fn register(
    p: &Process,
    level: Level,
    target: &str,
    file: Option<&str>,
    line: Option<u32>,
) -> Option<u32> {
    let site = DynSite {
        kind: CallsiteKind::Event,
        level,
        name: "log",
        target,
        file,
        line,
        fields: &["message"],
        message: None,
    };
    let id = p.register_dyn(&site);
    if id.is_none() {
        // The call-site table is full: the record is dropped and counted.
        runtime::count_dropped();
    }
    id
}

/// The verdict and the id without the cache (this thread is inside a
/// record already, or exiting).
#[cold]
#[inline(never)]
fn uncached(p: &Process, level: Level, r: &log::Record<'_>) -> Option<u32> {
    if !crate::filter::enabled(level, r.target()) {
        return None;
    }
    register(p, level, r.target(), r.file(), r.line())
}

/// The record's message: a literal copied, else formatted into the ring.
#[inline(always)]
fn message(w: &mut compact::Writer<'_>, args: &std::fmt::Arguments<'_>) {
    match args.as_str() {
        Some(s) => w.text(compact::STR, crate::layer::clip(s)),
        None => w.text_fmt(compact::STR, *args, crate::layer::MAX_STR),
    }
}

/// The general write path: the thread's first record, the postcard layout,
/// a nested record, a window too short.
#[cold]
#[inline(never)]
fn write_general(callsite: u32, ts: u64, args: &std::fmt::Arguments<'_>) {
    crate::layer::write_event_with(
        callsite,
        ts,
        None,
        true,
        |w| {
            message(w, args);
            true
        },
        |ctx, head| {
            let mut enc = Encoder::new(ctx.buf, head);
            match args.as_str() {
                Some(s) => enc.field_idx(0, &crate::wire::Value::Str(crate::layer::clip(s))),
                // `Arguments`' Debug is its text.
                None => enc.field_idx_fmt(0, args, crate::layer::MAX_STR),
            }
            enc.finish().map(<[u8]>::len)
        },
    );
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        crate::filter::enabled(level_of(m.level()), m.target())
    }

    fn log(&self, r: &log::Record<'_>) {
        // The TSC first, as the `tracing` path does (see `layer::event`).
        let ts = crate::clock::now();
        let level = level_of(r.level());
        // `log` checks its own max level first; this one may be newer.
        if level as u8 > crate::filter::MAX_LEVEL.load(Ordering::Relaxed) {
            return;
        }
        let Some(p) = runtime::process_fast() else {
            return;
        };
        let found = SITES.try_with(|sites| {
            // Busy only if something below logs through `log` (a signal
            // handler, say): that record takes the uncached path.
            let Ok(mut sites) = sites.try_borrow_mut() else {
                return Err(());
            };
            let site = match &mut sites[slot(level, r)] {
                Some(s) if s.is(level, r) => s,
                other => other.insert(Site::new(level, r)),
            };
            Ok(if site.enabled() { site.id(p) } else { None })
        });
        let callsite = match found {
            Ok(Ok(id)) => id,
            _ => uncached(p, level, r),
        };
        let Some(callsite) = callsite else { return };
        let args = r.args();
        let done = p.compact()
            && runtime::write_compact(
                callsite,
                || ts,
                |w| {
                    message(w, args);
                    true
                },
            );
        if !done {
            write_general(callsite, ts, args);
        }
        if level == Level::Error {
            crate::layer::mark_current_error();
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `site` is a record's at `target`, file (static or not),
    /// `line`.
    fn check(
        site: &Site,
        target: &str,
        file: Option<&'static str>,
        dynamic: Option<&str>,
        line: u32,
    ) -> bool {
        let mut b = log::Record::builder();
        b.level(log::Level::Info).target(target).line(Some(line));
        match file {
            Some(f) => b.file_static(Some(f)),
            None => b.file(dynamic),
        };
        site.is(Level::Info, &b.args(format_args!("m")).build())
    }

    fn site(target: &str, file: &'static str, line: u32) -> Site {
        let r = log::Record::builder()
            .level(log::Level::Info)
            .target(target)
            .file_static(Some(file))
            .line(Some(line))
            .args(format_args!("m"))
            .build();
        Site::new(Level::Info, &r)
    }

    #[test]
    fn a_site_is_its_level_place_and_target_text() {
        let t = String::from("app::db");
        let s = site(&t, "src/db.rs", 7);
        assert!(check(&s, "app::db", Some("src/db.rs"), None, 7));
        // The same text at another address (a target built at run time).
        let other = String::from("app::db");
        assert!(check(&s, &other, Some("src/db.rs"), None, 7));
        // The file as a non-static string: compared by text.
        let f = String::from("src/db.rs");
        assert!(check(&s, "app::db", None, Some(&f), 7));
        assert!(!check(&s, "app::dc", Some("src/db.rs"), None, 7));
        assert!(!check(&s, "app::db", Some("src/db.rs"), None, 8));
        assert!(!check(&s, "app::db", None, Some("src/dc.rs"), 7));
        assert!(!check(&s, "app::db", None, None, 7));
        let r = log::Record::builder()
            .level(log::Level::Warn)
            .target("app::db")
            .file_static(Some("src/db.rs"))
            .line(Some(7))
            .args(format_args!("m"))
            .build();
        assert!(!s.is(Level::Warn, &r));
    }

    #[test]
    fn log_max_level_follows_ours() {
        assert_eq!(level_filter(0), log::LevelFilter::Off);
        for l in [
            log::Level::Error,
            log::Level::Warn,
            log::Level::Info,
            log::Level::Debug,
            log::Level::Trace,
        ] {
            assert_eq!(level_filter(level_of(l) as u8), l.to_level_filter());
        }
    }
}

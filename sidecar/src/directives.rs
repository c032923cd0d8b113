//! Verbosity directives set with `distlogd ctl level`: what they are, which
//! one a client gets, how they expire and how they outlive a restart.
//!
//! # Scopes and precedence
//!
//! A directive is `EnvFilter` text (`info,checkout::db=debug`, span-field
//! directives such as `[checkout{order=42}]=trace` included) for one
//! [`Scope`]: every client, one service, one process, or one request
//! (trace). A client's `filter` is the most specific that lives: its pid's,
//! else its service's, else the all-clients one, else none (`None`: the
//! client's own start-up filter). Every trace directive goes into every
//! client's `traces` list: a request is boosted wherever it goes.
//! Setting a scope again replaces its directive.
//!
//! # Validation
//!
//! The text is parsed here exactly as the client parses it
//! (`distlog::directive_parser()`: `EnvFilter` syntax, field values
//! matched literally); a malformed directive is rejected with
//! the parser's message and the byte offset of the piece that failed, and
//! nothing changes. A trace directive is a single level.
//!
//! # Time to live and restarts
//!
//! A directive may carry a deadline (wall clock, so it survives a restart
//! of the sidecar). The table is saved to `directives.json` in the data
//! directory (mode 0600, written to a temporary file and renamed) after
//! every change and loaded at start-up, dropping what expired meanwhile.

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use distlog::control::Directives;
use distlog::wire::Level;
use serde::{Deserialize, Serialize};

use crate::record::{parse_level, TraceId};
use crate::timestamp::Timestamp;

/// File name of the saved table in the data directory.
pub const FILE_NAME: &str = "directives.json";

/// Whom a directive is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum Scope {
    /// Every client.
    All,
    /// Every client of one service.
    Service {
        /// The service name.
        service: String,
    },
    /// One process.
    Pid {
        /// Its pid.
        pid: u32,
    },
    /// One request, in every process it reaches.
    Trace {
        /// Its trace id.
        trace: TraceId,
    },
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::All => f.write_str("all clients"),
            Scope::Service { service } => write!(f, "service {service}"),
            Scope::Pid { pid } => write!(f, "pid {pid}"),
            Scope::Trace { trace } => write!(f, "trace {trace}"),
        }
    }
}

/// One directive and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directive {
    /// Whom it is for.
    #[serde(flatten)]
    pub scope: Scope,
    /// `EnvFilter` text (a single level for a trace scope).
    pub directives: String,
    /// When it was set.
    pub set_at: Timestamp,
    /// When it reverts by itself, if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
    /// Uid of the `distlogd ctl` that set it.
    pub by_uid: u32,
    /// Pid of the `distlogd ctl` that set it.
    pub by_pid: u32,
}

impl Directive {
    /// Time left before it expires (`None`: no time to live).
    pub fn remaining(&self, now: Timestamp) -> Option<Duration> {
        self.expires
            .map(|e| Duration::from_nanos(e.0.saturating_sub(now.0)))
    }
}

/// Why a directive was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectiveError {
    /// Nothing given.
    #[error("empty directive: give e.g. 'info,checkout::db=debug'")]
    Empty,
    /// The `EnvFilter` parser refused one piece.
    #[error("malformed directive {piece:?} at byte {at} of {text:?}: {msg}")]
    Malformed {
        /// The whole text.
        text: String,
        /// The comma-separated piece that failed.
        piece: String,
        /// Its byte offset in `text`.
        at: usize,
        /// The parser's message.
        msg: String,
    },
    /// A trace directive that is not one level.
    #[error("a --trace directive is one level (error, warn, info, debug or trace), not {0:?}")]
    TraceLevel(String),
    /// Too long to fit a control segment.
    #[error("directive of {0} bytes is too long (at most {MAX_LEN})")]
    TooLong(usize),
}

/// Longest directive text accepted.
pub const MAX_LEN: usize = 4096;

/// Parse under `catch_unwind`: tracing-subscriber 0.3.23's parser panics on
/// some text (a multi-byte character where it slices; in debug builds also
/// a `debug_assert` in its directive ordering), found by
/// `fuzz/fuzz_targets/directives.rs`: a bad directive is refused, it never
/// takes the control task down.
fn parse(text: &str) -> Result<(), String> {
    match std::panic::catch_unwind(|| distlog::directive_parser().parse(text)) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the directive parser failed on this text".into()),
    }
}

/// Check `text` the way the client will parse it.
///
/// # Examples
///
/// ```
/// use distlogd::directives::validate;
/// assert!(validate("info,checkout::db=debug,[checkout{order=42}]=trace").is_ok());
/// let e = validate("info,db=loud").unwrap_err().to_string();
/// assert!(e.contains("at byte 5"), "{e}");
/// ```
pub fn validate(text: &str) -> Result<(), DirectiveError> {
    if text.trim().is_empty() {
        return Err(DirectiveError::Empty);
    }
    if text.len() > MAX_LEN {
        return Err(DirectiveError::TooLong(text.len()));
    }
    if let Err(e) = parse(text) {
        // The parser splits on ',' and parses each piece alone: find the
        // piece it refused, for its position.
        let mut at = 0;
        for piece in text.split(',') {
            if !piece.is_empty() {
                if let Err(pe) = parse(piece) {
                    return Err(DirectiveError::Malformed {
                        text: text.into(),
                        piece: piece.into(),
                        at,
                        msg: pe.to_string(),
                    });
                }
            }
            at += piece.len() + 1;
        }
        return Err(DirectiveError::Malformed {
            text: text.into(),
            piece: text.into(),
            at: 0,
            msg: e.to_string(),
        });
    }
    Ok(())
}

/// The level of a trace directive.
pub fn trace_level(text: &str) -> Result<Level, DirectiveError> {
    parse_level(text.trim()).ok_or_else(|| DirectiveError::TraceLevel(text.into()))
}

/// Parse a time to live: `90s`, `10m`, `1h30m`, `500ms`, `2d`; a bare
/// number is seconds.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use distlogd::directives::parse_ttl;
/// assert_eq!(parse_ttl("10m"), Ok(Duration::from_secs(600)));
/// assert_eq!(parse_ttl("1h30m"), Ok(Duration::from_secs(5400)));
/// assert_eq!(parse_ttl("250ms"), Ok(Duration::from_millis(250)));
/// assert!(parse_ttl("soon").is_err());
/// ```
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bad = || format!("bad duration {s:?}: write e.g. 30s, 10m, 1h30m, 500ms");
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let d = match &rest[..unit] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            _ => return Err(bad()),
        };
        rest = &rest[unit..];
        total = total.saturating_add(d);
    }
    if total.is_zero() {
        return Err(bad());
    }
    Ok(total)
}

/// A duration for people: `9m 58s`, `1h 2m`, `850ms`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) if s == 0 => format!("{m}m"),
        (0, _) => format!("{m}m {s}s"),
        _ if m == 0 => format!("{h}h"),
        _ => format!("{h}h {m}m"),
    }
}

/// The live directives, one per scope, most general scope first.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Table {
    entries: Vec<Directive>,
}

impl Scope {
    /// Sort key: all, services, pids, traces.
    fn rank(&self) -> u8 {
        match self {
            Scope::All => 0,
            Scope::Service { .. } => 1,
            Scope::Pid { .. } => 2,
            Scope::Trace { .. } => 3,
        }
    }
}

/// The file's shape.
#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    directives: Vec<Directive>,
}

impl Table {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every directive, most general scope first.
    pub fn iter(&self) -> impl Iterator<Item = &Directive> {
        self.entries.iter()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Set (or replace) the directive of its scope; the one replaced.
    pub fn set(&mut self, d: Directive) -> Option<Directive> {
        let old = self.remove(&d.scope);
        let at = self
            .entries
            .iter()
            .position(|e| e.scope.rank() > d.scope.rank())
            .unwrap_or(self.entries.len());
        self.entries.insert(at, d);
        old
    }

    fn get(&self, scope: &Scope) -> Option<&Directive> {
        self.entries.iter().find(|d| &d.scope == scope)
    }

    /// Remove the directive of `scope`.
    pub fn remove(&mut self, scope: &Scope) -> Option<Directive> {
        let i = self.entries.iter().position(|d| &d.scope == scope)?;
        Some(self.entries.remove(i))
    }

    /// Remove every directive; those removed.
    pub fn clear(&mut self) -> Vec<Directive> {
        std::mem::take(&mut self.entries)
    }

    /// Remove what expired at `now`; those removed.
    pub fn expire(&mut self, now: Timestamp) -> Vec<Directive> {
        let (gone, keep) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|d| d.expires.is_some_and(|e| e <= now));
        self.entries = keep;
        gone
    }

    /// The earliest deadline.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.entries.iter().filter_map(|d| d.expires).min()
    }

    /// What a client of `service` with `pid` gets.
    ///
    /// # Examples
    ///
    /// ```
    /// use distlogd::directives::{Directive, Scope, Table};
    /// use distlogd::timestamp::Timestamp;
    /// let mut t = Table::new();
    /// let d = |scope, text: &str| Directive {
    ///     scope, directives: text.into(), set_at: Timestamp(0), expires: None, by_uid: 0, by_pid: 1,
    /// };
    /// t.set(d(Scope::All, "warn"));
    /// t.set(d(Scope::Service { service: "checkout".into() }, "debug"));
    /// t.set(d(Scope::Pid { pid: 7 }, "trace"));
    /// assert_eq!(t.effective("checkout", 7).filter.as_deref(), Some("trace"));
    /// assert_eq!(t.effective("checkout", 8).filter.as_deref(), Some("debug"));
    /// assert_eq!(t.effective("web", 8).filter.as_deref(), Some("warn"));
    /// ```
    pub fn effective(&self, service: &str, pid: u32) -> Directives {
        let pick = |s: Scope| self.get(&s).map(|d| d.directives.clone());
        let filter = pick(Scope::Pid { pid })
            .or_else(|| {
                pick(Scope::Service {
                    service: service.into(),
                })
            })
            .or_else(|| pick(Scope::All));
        let traces = self
            .entries
            .iter()
            .filter_map(|d| match &d.scope {
                Scope::Trace { trace } => trace_level(&d.directives).ok().map(|l| (trace.0, l)),
                _ => None,
            })
            .collect();
        Directives { filter, traces }
    }

    /// Load the table saved in `path`, dropping what expired by `now`. A
    /// missing file is an empty table.
    pub fn load(path: &Path, now: Timestamp) -> Result<Table, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Table::new()),
            Err(e) => return Err(format!("read {}: {e}", path.display())),
        };
        let saved: Saved =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut t = Table::new();
        for d in saved.directives {
            let ok = match &d.scope {
                Scope::Trace { .. } => trace_level(&d.directives).is_ok(),
                _ => validate(&d.directives).is_ok(),
            };
            if ok {
                t.set(d);
            }
        }
        t.expire(now);
        Ok(t)
    }

    /// Save the table to `path` (mode 0600; its directory is made 0700 if
    /// missing), atomically.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let err = |op: &str, p: &Path, e: std::io::Error| format!("{op} {}: {e}", p.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| err("create directory", dir, e))?;
        }
        let saved = Saved {
            version: 1,
            directives: self.entries.clone(),
        };
        let mut body = serde_json::to_vec_pretty(&saved).map_err(|e| e.to_string())?;
        body.push(b'\n');
        let mut tmp = PathBuf::from(path.as_os_str());
        tmp.set_extension("json.tmp");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| err("create", &tmp, e))?;
        f.write_all(&body).map_err(|e| err("write", &tmp, e))?;
        f.sync_all().map_err(|e| err("sync", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| err("rename to", path, e))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_that_panics_the_upstream_parser_is_refused() {
        // Found by fuzz/fuzz_targets/directives.rs: tracing-subscriber 0.3.23
        // slices inside the multi-byte character and panics.
        let text = "$war,\n\n\n\n\n\n\n\nk\u{26d4}\u{18}\u{0}tr}]=";
        assert!(validate(text).is_err());
    }

    use super::*;

    fn d(scope: Scope, text: &str, expires: Option<u64>) -> Directive {
        Directive {
            scope,
            directives: text.into(),
            set_at: Timestamp(1),
            expires: expires.map(Timestamp),
            by_uid: 0,
            by_pid: 9,
        }
    }

    #[test]
    fn validation() {
        assert!(validate("debug").is_ok());
        assert!(validate("[checkout{order=42}]=trace").is_ok());
        assert_eq!(validate(" "), Err(DirectiveError::Empty));
        match validate("info,db=loud") {
            Err(DirectiveError::Malformed { piece, at, .. }) => {
                assert_eq!((piece.as_str(), at), ("db=loud", 5))
            }
            other => panic!("{other:?}"),
        }
        assert!(trace_level("debug").is_ok());
        assert!(trace_level("a=debug").is_err());
    }

    #[test]
    fn ttl() {
        assert_eq!(parse_ttl("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_ttl("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("5x").is_err());
        assert!(parse_ttl("m").is_err());
        assert_eq!(human_duration(Duration::from_secs(598)), "9m 58s");
        assert_eq!(human_duration(Duration::from_secs(600)), "10m");
        assert_eq!(human_duration(Duration::from_millis(850)), "850ms");
    }

    #[test]
    fn traces_and_expiry() {
        let mut t = Table::new();
        let tr = TraceId([7; 16]);
        t.set(d(Scope::Trace { trace: tr }, "debug", Some(100)));
        t.set(d(Scope::All, "warn", Some(50)));
        t.set(d(
            Scope::Service {
                service: "a".into(),
            },
            "info",
            None,
        ));
        let e = t.effective("b", 1);
        assert_eq!(e.filter.as_deref(), Some("warn"));
        assert_eq!(e.traces, vec![([7; 16], Level::Debug)]);
        assert_eq!(t.next_expiry(), Some(Timestamp(50)));
        assert_eq!(t.expire(Timestamp(60)).len(), 1);
        assert_eq!(t.effective("b", 1).filter, None);
        assert_eq!(t.effective("a", 1).filter.as_deref(), Some("info"));
        assert_eq!(t.next_expiry(), Some(Timestamp(100)));
    }

    #[test]
    fn save_and_load() {
        let dir = std::env::temp_dir().join(format!("distlogd-dirtest-{}", std::process::id()));
        let path = dir.join("sub").join(FILE_NAME);
        let mut t = Table::new();
        t.set(d(Scope::Pid { pid: 4 }, "trace", None));
        t.set(d(Scope::All, "debug", Some(10)));
        t.save(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let back = Table::load(&path, Timestamp(5)).unwrap();
        assert_eq!(back, t);
        let later = Table::load(&path, Timestamp(20)).unwrap();
        assert_eq!(later.iter().count(), 1);
        assert!(Table::load(&dir.join("none.json"), Timestamp(0))
            .unwrap()
            .is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

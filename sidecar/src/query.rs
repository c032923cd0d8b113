//! Record filters: what `distlogd tail` (history and live) and the store
//! select by.
//!
//! A [`Filter`] is a conjunction: a record matches when it passes *every*
//! criterion that is set. Within one criterion that takes several values
//! (`--service a --service b`) any value will do. The command-line form,
//! [`FilterArgs`], follows `journalctl`:
//!
//! | flag | matches |
//! |---|---|
//! | `--since T`, `--until T` | `ts >= since`, `ts <= until`; `T` is `30s`, `10m`, `1h`, `2d`, `1w` ago, `now`, `today`, `yesterday`, RFC 3339, `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DD` (UTC) |
//! | `-p LEVEL` | that level and more severe (`-p warn` = WARN and ERROR); syslog names too (`err`, `warning`, `notice`, `crit`, ...); `-p debug..warn` is a range |
//! | `--service S`, `--host H`, `--pid N` | equal |
//! | `--target T` | target starts with `T` |
//! | `--trace ID`, `--scope ID` | `trace_id` / `scope_id` equal |
//! | `--field k=v` | field `k` equals `v` (strings as written, numbers and booleans by their JSON text); repeatable, all must hold |
//! | `--grep S` | `S` is in the message; case-insensitive when `S` has no upper-case letter ("smart case", like journalctl) |
//! | `--kind K` | `event`, `scope_open`, `scope_close`, `scope_record`, `loss`, `control` |
//!
//! # Examples
//!
//! ```
//! use distlogd::query::Filter;
//! use distlogd::record::{Kind, Record};
//! use distlogd::timestamp::Timestamp;
//! use distlog::wire::Level;
//!
//! let mut r = Record::new(Kind::Event, Timestamp(1_000), Level::Warn);
//! r.service = "checkout".into();
//! r.message = Some("card Declined".into());
//! r.fields.insert("order".into(), 42.into());
//!
//! let mut f = Filter::default();
//! f.services = vec!["checkout".into()];
//! f.level = Some(Level::Warn);
//! f.fields = vec![("order".into(), "42".into())];
//! f.grep = Some("declined".into());
//! assert!(f.matches(&r));
//! f.level = Some(Level::Error);
//! assert!(!f.matches(&r));
//! ```

use std::time::Duration;

use clap::Args;
use distlog::wire::Level;

use crate::record::{parse_level, Kind, Record, ScopeId, TraceId};
use crate::timestamp::Timestamp;

const NS_PER_SEC: u64 = 1_000_000_000;

/// What records to select. Every set criterion must hold (AND); a list
/// criterion holds when any of its values does (OR). The default selects
/// everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Not before this instant (inclusive).
    pub since: Option<Timestamp>,
    /// Not after this instant (inclusive).
    pub until: Option<Timestamp>,
    /// Service is one of these.
    pub services: Vec<String>,
    /// Host is one of these.
    pub hosts: Vec<String>,
    /// Pid is one of these.
    pub pids: Vec<u32>,
    /// This level and more severe (journalctl `-p`): `Warn` = WARN, ERROR.
    pub level: Option<Level>,
    /// At most this severe (the lower end of a `-p FROM..TO` range):
    /// `Some(Warn)` excludes ERROR. Usually `None`.
    pub level_min: Option<Level>,
    /// Target starts with one of these.
    pub targets: Vec<String>,
    /// Trace id equals.
    pub trace_id: Option<TraceId>,
    /// Scope id equals.
    pub scope_id: Option<ScopeId>,
    /// Field `k` equals `v` (its text), every pair.
    pub fields: Vec<(String, String)>,
    /// Substring of the message (smart case: case-insensitive when it has
    /// no upper-case letter).
    pub grep: Option<String>,
    /// Kind is one of these.
    pub kinds: Vec<Kind>,
}

impl Filter {
    /// Whether `r` passes every criterion.
    pub fn matches(&self, r: &Record) -> bool {
        if self.since.is_some_and(|s| r.ts < s) || self.until.is_some_and(|u| r.ts > u) {
            return false;
        }
        // Level: Error = 1 .. Trace = 5; "warn and worse" is `<= Warn`.
        if self.level.is_some_and(|l| r.level > l) || self.level_min.is_some_and(|l| r.level < l) {
            return false;
        }
        if !self.services.is_empty() && !self.services.contains(&r.service) {
            return false;
        }
        if !self.hosts.is_empty() && !self.hosts.contains(&r.host) {
            return false;
        }
        if !self.pids.is_empty() && !self.pids.contains(&r.pid) {
            return false;
        }
        if !self.kinds.is_empty() && !self.kinds.contains(&r.kind) {
            return false;
        }
        if !self.targets.is_empty() {
            let t = r.target.as_deref().unwrap_or("");
            if !self.targets.iter().any(|p| t.starts_with(p.as_str())) {
                return false;
            }
        }
        if self.trace_id.is_some() && r.trace_id != self.trace_id {
            return false;
        }
        if self.scope_id.is_some() && r.scope_id != self.scope_id {
            return false;
        }
        for (k, v) in &self.fields {
            if !r.fields.get(k).is_some_and(|x| value_equals(x, v)) {
                return false;
            }
        }
        if let Some(g) = &self.grep {
            let m = r.message.as_deref().unwrap_or("");
            if !grep_matches(g, m) {
                return false;
            }
        }
        true
    }

    /// Whether only the time range is set (the store can answer it from
    /// partition names and the time index alone).
    pub fn is_time_only(&self) -> bool {
        *self
            == Filter {
                since: self.since,
                until: self.until,
                ..Filter::default()
            }
    }
}

/// A JSON field value compared with the text of `--field k=v`.
pub fn value_equals(x: &serde_json::Value, v: &str) -> bool {
    match x {
        serde_json::Value::String(s) => s == v,
        serde_json::Value::Number(n) => {
            if n.to_string() == v {
                return true;
            }
            // `--field ratio=0.5` against 0.50, `--field n=7` against 7.0.
            match (n.as_f64(), v.parse::<f64>()) {
                (Some(a), Ok(b)) => a == b && !n.is_u64() && !n.is_i64(),
                _ => false,
            }
        }
        serde_json::Value::Bool(b) => v == if *b { "true" } else { "false" },
        serde_json::Value::Null => v == "null" || v.is_empty(),
        other => serde_json::to_string(other).is_ok_and(|t| t == v),
    }
}

/// Smart-case substring match.
pub fn grep_matches(pattern: &str, text: &str) -> bool {
    if pattern.chars().any(char::is_uppercase) {
        text.contains(pattern)
    } else {
        text.to_lowercase().contains(pattern)
    }
}

/// A point in time on the command line: relative to now or absolute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSpec {
    /// This long before now.
    Ago(Duration),
    /// This instant.
    At(Timestamp),
    /// Midnight UTC, this many days before today.
    DaysAgoMidnight(u64),
}

impl TimeSpec {
    /// The instant, given the current time.
    pub fn resolve(self, now: Timestamp) -> Timestamp {
        match self {
            TimeSpec::Ago(d) => Timestamp(now.0.saturating_sub(d.as_nanos() as u64)),
            TimeSpec::At(t) => t,
            TimeSpec::DaysAgoMidnight(n) => {
                let day = 86_400 * NS_PER_SEC;
                Timestamp((now.0 / day).saturating_sub(n) * day)
            }
        }
    }
}

/// Why a time on the command line was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a time: want e.g. 30s, 10m, 1h, 2d, 1w (ago), now, today, yesterday, 2026-11-25T21:07:08Z, '2026-11-25 21:07:08' or 2026-11-25 (UTC)")]
pub struct ParseTimeError(String);

/// A duration like `30s`, `10m`, `1h`, `2d`, `1w`, `500ms`, `1h30m` (also
/// with an optional trailing ` ago` or a leading `-`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let s = s.strip_suffix("ago").unwrap_or(s).trim();
    let s = s.strip_prefix('-').unwrap_or(s).trim();
    if s.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u128 = rest[..digits].parse().ok()?;
        rest = rest[digits..].trim_start();
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let ns: u128 = match unit {
            "ns" => 1,
            "us" => 1_000,
            "ms" => 1_000_000,
            "" | "s" | "sec" | "secs" | "second" | "seconds" => 1_000_000_000,
            "m" | "min" | "mins" | "minute" | "minutes" => 60_000_000_000,
            "h" | "hr" | "hour" | "hours" => 3_600_000_000_000,
            "d" | "day" | "days" => 86_400_000_000_000,
            "w" | "week" | "weeks" => 7 * 86_400_000_000_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(ns)?)?;
    }
    let total = u64::try_from(total).ok()?;
    Some(Duration::from_nanos(total))
}

impl std::str::FromStr for TimeSpec {
    type Err = ParseTimeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseTimeError(s.to_string());
        let t = s.trim();
        match t {
            "now" => return Ok(TimeSpec::Ago(Duration::ZERO)),
            "today" => return Ok(TimeSpec::DaysAgoMidnight(0)),
            "yesterday" => return Ok(TimeSpec::DaysAgoMidnight(1)),
            _ => {}
        }
        if t.len() >= 10 && t.as_bytes()[4] == b'-' && t.as_bytes()[7] == b'-' {
            // Absolute: RFC 3339, or `YYYY-MM-DD[ HH:MM[:SS[.f]]]` in UTC.
            let mut full = t.to_string();
            if full.len() == 10 {
                full.push_str("T00:00:00");
            } else if full.len() == 16 {
                full.push_str(":00");
            }
            let last = full.as_bytes()[full.len() - 1];
            if !(last == b'Z'
                || last == b'z'
                || full.ends_with("+00:00")
                || full.ends_with("-00:00"))
            {
                full.push('Z');
            }
            return full.parse().map(TimeSpec::At).map_err(|_| err());
        }
        parse_duration(t).map(TimeSpec::Ago).ok_or_else(err)
    }
}

/// A level range from `-p`: `warn`, `3`, `err`, `debug..warn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    /// Least severe level accepted.
    pub least: Level,
    /// Most severe level accepted (ERROR unless a range).
    pub most: Level,
}

fn parse_priority_level(s: &str) -> Option<Level> {
    if let Some(l) = parse_level(s) {
        return Some(l);
    }
    Some(match s.to_ascii_lowercase().as_str() {
        // syslog names and numbers, as journalctl takes them
        "emerg" | "alert" | "crit" | "err" | "0" | "1" | "2" | "3" => Level::Error,
        "4" => Level::Warn,
        "notice" | "5" | "6" => Level::Info,
        "7" => Level::Debug,
        _ => return None,
    })
}

impl std::str::FromStr for Priority {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("{s:?} is not a level: want error, warn, info, debug, trace (or syslog names: err, warning, notice, ...), or a range like debug..warn")
        };
        if let Some((a, b)) = s.split_once("..") {
            let a = parse_priority_level(a).ok_or_else(bad)?;
            let b = parse_priority_level(b).ok_or_else(bad)?;
            // Either order: the range between them.
            Ok(Priority {
                least: a.max(b),
                most: a.min(b),
            })
        } else {
            let l = parse_priority_level(s).ok_or_else(bad)?;
            Ok(Priority {
                least: l,
                most: Level::Error,
            })
        }
    }
}

/// `--field k=v`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMatch(pub String, pub String);

impl std::str::FromStr for FieldMatch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok(FieldMatch(k.to_string(), v.to_string())),
            _ => Err(format!("{s:?}: want KEY=VALUE, e.g. order=42")),
        }
    }
}

fn parse_kind(s: &str) -> Result<Kind, String> {
    serde_json::from_value::<Kind>(serde_json::Value::String(s.to_string()))
        .ok()
        .filter(|k| *k != Kind::Other)
        .ok_or_else(|| {
            format!("{s:?}: want event, scope_open, scope_record, scope_close, loss or control")
        })
}

/// The filter flags of `distlogd tail` (history and `-f`), journalctl
/// style. Flatten it into a command's arguments with `#[command(flatten)]`.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Records at or after this time: 30s, 10m, 1h, 2d, 1w (ago), now,
    /// today, yesterday, RFC 3339 (2026-11-25T21:07:08Z), or
    /// "YYYY-MM-DD HH:MM:SS" / YYYY-MM-DD (UTC).
    #[arg(short = 'S', long, value_name = "TIME")]
    pub since: Option<TimeSpec>,

    /// Records at or before this time (same forms as --since).
    #[arg(short = 'U', long, value_name = "TIME")]
    pub until: Option<TimeSpec>,

    /// This level and more severe: -p warn shows WARN and ERROR. Also
    /// syslog names (err, warning, notice) and ranges (debug..warn).
    #[arg(short = 'p', long = "priority", value_name = "LEVEL")]
    pub priority: Option<Priority>,

    /// Only this service (repeatable: any of them).
    #[arg(long, value_name = "NAME")]
    pub service: Vec<String>,

    /// Only this host (repeatable).
    #[arg(long, value_name = "NAME")]
    pub host: Vec<String>,

    /// Only this process id (repeatable).
    #[arg(long, value_name = "PID")]
    pub pid: Vec<u32>,

    /// Only targets starting with this (repeatable), e.g. myapp::db.
    #[arg(long, value_name = "PREFIX")]
    pub target: Vec<String>,

    /// Only this trace (32 hex digits).
    #[arg(long, value_name = "TRACE_ID")]
    pub trace: Option<TraceId>,

    /// Only records written in this scope (16 hex digits).
    #[arg(long, value_name = "SCOPE_ID")]
    pub scope: Option<ScopeId>,

    /// Only records whose field KEY equals VALUE (repeatable: all must hold).
    #[arg(long = "field", value_name = "KEY=VALUE")]
    pub field: Vec<FieldMatch>,

    /// Only messages containing this text (case-insensitive unless it has
    /// an upper-case letter).
    #[arg(short = 'g', long, value_name = "TEXT")]
    pub grep: Option<String>,

    /// Only this kind of record (repeatable): event, scope_open,
    /// scope_record, scope_close, loss, control.
    #[arg(long, value_name = "KIND", value_parser = parse_kind)]
    pub kind: Vec<Kind>,
}

impl FilterArgs {
    /// The filter, with relative times counted back from now.
    pub fn to_filter(&self) -> Filter {
        self.to_filter_at(Timestamp::now())
    }

    /// The filter, with relative times counted back from `now`.
    pub fn to_filter_at(&self, now: Timestamp) -> Filter {
        Filter {
            since: self.since.map(|t| t.resolve(now)),
            until: self.until.map(|t| t.resolve(now)),
            services: self.service.clone(),
            hosts: self.host.clone(),
            pids: self.pid.clone(),
            level: self.priority.map(|p| p.least),
            level_min: self.priority.map(|p| p.most).filter(|l| *l != Level::Error),
            targets: self.target.clone(),
            trace_id: self.trace,
            scope_id: self.scope,
            fields: self
                .field
                .iter()
                .map(|FieldMatch(k, v)| (k.clone(), v.clone()))
                .collect(),
            grep: self.grep.clone(),
            kinds: self.kind.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        f: FilterArgs,
    }

    fn rec() -> Record {
        let mut r = Record::new(Kind::Event, Timestamp(100 * NS_PER_SEC), Level::Info);
        r.service = "checkout".into();
        r.host = "h1".into();
        r.pid = 311;
        r.target = Some("shop::pay".into());
        r.message = Some("card declined".into());
        r.fields.insert("order".into(), 42.into());
        r.fields.insert("ok".into(), false.into());
        r.fields.insert("who".into(), "bob".into());
        r.trace_id = Some(TraceId([7; 16]));
        r.scope_id = Some(ScopeId(9));
        r
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("1 h ago"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("-5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn times() {
        let now = Timestamp(1_700_000_000 * NS_PER_SEC);
        let p = |s: &str| s.parse::<TimeSpec>().unwrap().resolve(now);
        assert_eq!(p("1h").0, now.0 - 3600 * NS_PER_SEC);
        assert_eq!(p("now"), now);
        assert_eq!(p("2023-11-14 22:13:20"), now);
        assert_eq!(p("2023-11-14T22:13:20Z"), now);
        assert_eq!(p("2023-11-14T22:13:20.000+00:00"), now);
        assert_eq!(
            p("2023-11-14").to_string(),
            "2023-11-14T00:00:00.000000000Z"
        );
        assert_eq!(p("today").to_string(), "2023-11-14T00:00:00.000000000Z");
        assert_eq!(p("yesterday").to_string(), "2023-11-13T00:00:00.000000000Z");
        assert!("2023-13-14".parse::<TimeSpec>().is_err());
        assert!("soon".parse::<TimeSpec>().is_err());
    }

    #[test]
    fn priorities() {
        let p: Priority = "warn".parse().unwrap();
        assert_eq!((p.least, p.most), (Level::Warn, Level::Error));
        let p: Priority = "err".parse().unwrap();
        assert_eq!(p.least, Level::Error);
        let p: Priority = "warn..debug".parse().unwrap();
        assert_eq!((p.least, p.most), (Level::Debug, Level::Warn));
        assert!("loud".parse::<Priority>().is_err());
    }

    #[test]
    fn each_criterion() {
        let r = rec();
        let yes = |f: Filter| assert!(f.matches(&r), "{f:?}");
        let no = |f: Filter| assert!(!f.matches(&r), "{f:?}");
        let d = Filter::default;
        yes(d());
        yes(Filter {
            since: Some(Timestamp(100 * NS_PER_SEC)),
            ..d()
        });
        no(Filter {
            since: Some(Timestamp(100 * NS_PER_SEC + 1)),
            ..d()
        });
        yes(Filter {
            until: Some(Timestamp(100 * NS_PER_SEC)),
            ..d()
        });
        no(Filter {
            until: Some(Timestamp(99 * NS_PER_SEC)),
            ..d()
        });
        yes(Filter {
            services: vec!["x".into(), "checkout".into()],
            ..d()
        });
        no(Filter {
            services: vec!["x".into()],
            ..d()
        });
        yes(Filter {
            hosts: vec!["h1".into()],
            ..d()
        });
        no(Filter {
            hosts: vec!["h2".into()],
            ..d()
        });
        yes(Filter {
            pids: vec![311],
            ..d()
        });
        no(Filter {
            pids: vec![312],
            ..d()
        });
        yes(Filter {
            level: Some(Level::Info),
            ..d()
        });
        yes(Filter {
            level: Some(Level::Trace),
            ..d()
        });
        no(Filter {
            level: Some(Level::Warn),
            ..d()
        });
        no(Filter {
            level_min: Some(Level::Debug),
            ..d()
        });
        yes(Filter {
            targets: vec!["shop".into()],
            ..d()
        });
        no(Filter {
            targets: vec!["shop::db".into()],
            ..d()
        });
        yes(Filter {
            trace_id: Some(TraceId([7; 16])),
            ..d()
        });
        no(Filter {
            trace_id: Some(TraceId([8; 16])),
            ..d()
        });
        yes(Filter {
            scope_id: Some(ScopeId(9)),
            ..d()
        });
        no(Filter {
            scope_id: Some(ScopeId(8)),
            ..d()
        });
        yes(Filter {
            fields: vec![("order".into(), "42".into())],
            ..d()
        });
        yes(Filter {
            fields: vec![("ok".into(), "false".into()), ("who".into(), "bob".into())],
            ..d()
        });
        no(Filter {
            fields: vec![("order".into(), "43".into())],
            ..d()
        });
        no(Filter {
            fields: vec![("missing".into(), "1".into())],
            ..d()
        });
        yes(Filter {
            grep: Some("DECLINED".to_lowercase()),
            ..d()
        });
        no(Filter {
            grep: Some("Declined".into()),
            ..d()
        });
        yes(Filter {
            kinds: vec![Kind::Event],
            ..d()
        });
        no(Filter {
            kinds: vec![Kind::Loss],
            ..d()
        });
    }

    #[test]
    fn args() {
        let t = T::parse_from([
            "t",
            "--since",
            "1h",
            "--until",
            "now",
            "-p",
            "warning",
            "--service",
            "a",
            "--service",
            "b",
            "--pid",
            "7",
            "--target",
            "x::y",
            "--trace",
            "0123456789abcdef0123456789abcdef",
            "--scope",
            "0123456789abcdef",
            "--field",
            "order=42",
            "--field",
            "k=a=b",
            "--grep",
            "declined",
            "--kind",
            "scope_open",
        ]);
        let now = Timestamp(10_000 * NS_PER_SEC);
        let f = t.f.to_filter_at(now);
        assert_eq!(f.since, Some(Timestamp(6_400 * NS_PER_SEC)));
        assert_eq!(f.until, Some(now));
        assert_eq!(f.level, Some(Level::Warn));
        assert_eq!(f.level_min, None);
        assert_eq!(f.services, ["a", "b"]);
        assert_eq!(f.pids, [7]);
        assert_eq!(f.fields[1], ("k".to_string(), "a=b".to_string()));
        assert_eq!(f.kinds, [Kind::ScopeOpen]);
        assert!(T::try_parse_from(["t", "--field", "novalue"]).is_err());
        assert!(T::try_parse_from(["t", "--kind", "nope"]).is_err());
        assert!(T::try_parse_from(["t", "--since", "later"]).is_err());
    }
}

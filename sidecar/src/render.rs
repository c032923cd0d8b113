//! How `distlogd tail` and `distlogd tree` print records.
//!
//! Three forms (`-o`):
//!
//! - `short` (default): one line per record for people,
//!   `2026-11-25 21:07:08.123456 INFO  checkout[311] shop::pay: paid  order=42`;
//!   level colours when stdout is a terminal (and `NO_COLOR` is not set),
//!   plain text otherwise. Scope records are lines of their own: `▶ charge`
//!   when a scope opens (with its fields), `◀ charge 8.1 ms error` when it
//!   closes; events inside a known scope show its path (`{checkout>charge}`).
//! - `json`: exactly the record schema, one object per line.
//! - `cat`: the message only.
//!
//! Times are UTC.

use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};

use distlog::wire::Level;

use crate::record::{Kind, Outcome, Record, ScopeId};

/// `-o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// One line per record, for people.
    #[default]
    Short,
    /// The record schema, one JSON object per line.
    Json,
    /// The message only.
    Cat,
}

/// How to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutputOpts {
    /// The form.
    pub format: Format,
    /// ANSI colours.
    pub color: bool,
}

impl OutputOpts {
    /// `format`, with colour when stdout is a terminal and `NO_COLOR` is
    /// unset.
    pub fn for_stdout(format: Format) -> OutputOpts {
        OutputOpts {
            format,
            color: color_for_stdout(),
        }
    }
}

/// Whether stdout wants colours: a terminal, and `NO_COLOR` unset or empty.
pub fn color_for_stdout() -> bool {
    io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub(crate) struct Paint {
    pub on: bool,
}

impl Paint {
    pub fn wrap(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    pub fn level(&self, l: Level) -> String {
        let code = match l {
            Level::Error => "1;31",
            Level::Warn => "33",
            Level::Info => "32",
            Level::Debug => "34",
            Level::Trace => "2",
        };
        self.wrap(code, l.as_str())
    }

    /// The level name padded to 5 columns (padding outside the colour).
    pub fn level_padded(&self, l: Level) -> String {
        format!("{}{}", self.level(l), " ".repeat(5 - l.as_str().len()))
    }

    pub fn dim(&self, s: &str) -> String {
        self.wrap("2", s)
    }

    pub fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }

    pub fn outcome(&self, o: Option<&str>) -> String {
        match o {
            Some("ok") => self.wrap("32", "ok"),
            Some("error") => self.wrap("1;31", "error"),
            Some(x) => self.wrap("33", x),
            None => self.wrap("33", "open"),
        }
    }
}

/// A field value as `key=value` shows it: numbers and booleans bare,
/// strings bare when they are one plain word, else quoted.
pub fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => {
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_alphanumeric() || "-_./:@+".contains(c))
            {
                s.clone()
            } else {
                format!("{s:?}")
            }
        }
        other => other.to_string(),
    }
}

/// `k=v k=v` of a field map.
pub fn fields_text(f: &crate::record::Fields) -> String {
    f.iter()
        .map(|(k, v)| format!("{k}={}", value_text(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A duration for people: `850 ns`, `12.4 µs`, `8.1 ms`, `1.20 s`, `3m05s`.
pub fn duration_text(ns: u64) -> String {
    let f = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", f / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.1} ms", f / 1e6)
    } else if ns < 60_000_000_000 {
        format!("{:.2} s", f / 1e9)
    } else {
        let s = ns / 1_000_000_000;
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

fn outcome_name(o: Option<Outcome>) -> Option<&'static str> {
    o.map(|o| match o {
        Outcome::Ok => "ok",
        Outcome::Error => "error",
        Outcome::Abandoned => "abandoned",
    })
}

/// `2026-11-25 21:07:08.123456`.
fn time_text(r: &Record) -> String {
    let s = r.ts.to_string(); // 2026-11-25T21:07:08.123456789Z
    format!("{} {}", &s[0..10], &s[11..26])
}

/// Prints records one after another, remembering scope names so that events
/// show the path of the scope they were written in.
#[derive(Debug, Default)]
pub struct Printer {
    opts: OutputOpts,
    /// scope id -> (name, parent)
    scopes: HashMap<ScopeId, (String, Option<ScopeId>)>,
    line: String,
}

impl Printer {
    /// A printer.
    pub fn new(opts: OutputOpts) -> Printer {
        Printer {
            opts,
            scopes: HashMap::new(),
            line: String::new(),
        }
    }

    /// Print one record to `out`.
    pub fn print(&mut self, r: &Record, out: &mut impl Write) -> io::Result<()> {
        match self.opts.format {
            Format::Json => out.write_all(r.to_json_line().as_bytes()),
            Format::Cat => {
                let m = r.message.as_deref().or(r.name.as_deref()).unwrap_or("");
                writeln!(out, "{m}")
            }
            Format::Short => {
                self.short(r);
                self.line.push('\n');
                out.write_all(self.line.as_bytes())
            }
        }
    }

    fn path(&self, mut id: Option<ScopeId>) -> Option<String> {
        let mut names = Vec::new();
        while let Some(s) = id {
            let Some((name, parent)) = self.scopes.get(&s) else {
                break;
            };
            names.push(name.as_str());
            id = *parent;
            if names.len() > 32 {
                break;
            }
        }
        if names.is_empty() {
            return None;
        }
        names.reverse();
        Some(names.join(">"))
    }

    fn short(&mut self, r: &Record) {
        let p = Paint {
            on: self.opts.color,
        };
        if r.kind == Kind::ScopeOpen {
            if let (Some(id), Some(name)) = (r.scope_id, &r.name) {
                if self.scopes.len() > 100_000 {
                    self.scopes.clear();
                }
                self.scopes.insert(id, (name.clone(), r.parent_id));
            }
        }
        let mut l = format!(
            "{} {} {}[{}]",
            p.dim(&time_text(r)),
            p.level_padded(r.level),
            p.bold(&r.service),
            r.pid
        );
        let name = r.name.as_deref().unwrap_or("?");
        match r.kind {
            Kind::ScopeOpen => {
                l.push_str(&format!(" ▶ {}", p.bold(name)));
                if let Some(path) = self.path(r.parent_id) {
                    l.push_str(&format!(" {}", p.dim(&format!("in {{{path}}}"))));
                }
            }
            Kind::ScopeClose => {
                l.push_str(&format!(" ◀ {}", p.bold(name)));
                if let Some(d) = r.duration_ns {
                    l.push_str(&format!(" {}", duration_text(d)));
                }
                l.push_str(&format!(" {}", p.outcome(outcome_name(r.outcome))));
            }
            Kind::ScopeRecord => {
                l.push_str(&format!(" · {}", p.bold(name)));
            }
            Kind::Loss => {
                l.push_str(&format!(" {}", p.wrap("1;31", "LOSS")));
            }
            Kind::Control => {
                l.push_str(&format!(" {}", p.wrap("35", "CONTROL")));
            }
            Kind::Event | Kind::Other => {
                if let Some(path) = self.path(r.scope_id) {
                    l.push_str(&format!(" {}", p.dim(&format!("{{{path}}}"))));
                }
            }
        }
        if matches!(
            r.kind,
            Kind::Event | Kind::Loss | Kind::Control | Kind::Other
        ) {
            if let Some(t) = &r.target {
                l.push_str(&format!(" {}", p.dim(&format!("{t}:"))));
            }
            if let Some(m) = &r.message {
                l.push(' ');
                l.push_str(m);
            }
        }
        if !r.fields.is_empty() {
            l.push_str("  ");
            l.push_str(&p.dim(&fields_text(&r.fields)).replace('\n', "\\n"));
        }
        if r.kind == Kind::ScopeOpen {
            if let Some(t) = r.trace_id {
                l.push_str(&format!("  {}", p.dim(&format!("trace={t}"))));
            }
        }
        self.line = l;
    }
}

/// Print one record to stdout in the given form (no scope-path memory: use
/// a [`Printer`] for a stream of records). For `tail -f`.
pub fn print_record(r: &Record, opts: &OutputOpts) -> io::Result<()> {
    let mut p = Printer::new(*opts);
    let out = io::stdout();
    let mut out = out.lock();
    p.print(r, &mut out)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timestamp::Timestamp;

    #[test]
    fn durations() {
        assert_eq!(duration_text(850), "850 ns");
        assert_eq!(duration_text(12_400), "12.4 µs");
        assert_eq!(duration_text(12_400_000), "12.4 ms");
        assert_eq!(duration_text(1_200_000_000), "1.20 s");
        assert_eq!(duration_text(185_000_000_000), "3m05s");
    }

    #[test]
    fn short_plain() {
        let mut r = Record::new(
            Kind::Event,
            Timestamp(1_700_000_000_123_456_789),
            Level::Warn,
        );
        r.service = "checkout".into();
        r.pid = 311;
        r.target = Some("shop::pay".into());
        r.message = Some("declined".into());
        r.fields
            .insert("reason".into(), "insufficient funds".into());
        r.fields.insert("order".into(), 42.into());
        let mut p = Printer::new(OutputOpts::default());
        let mut out = Vec::new();
        p.print(&r, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2023-11-14 22:13:20.123456 WARN  checkout[311] shop::pay: declined  order=42 reason=\"insufficient funds\"\n"
        );
    }
}

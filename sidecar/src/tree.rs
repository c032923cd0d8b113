//! `distlogd tree TRACE_ID`: one request as a tree of scopes across
//! processes, from the store.
//!
//! # How the tree is made
//!
//! From the trace's records: `scope_open` makes a scope (name, fields,
//! parent, service, host, pid, start); `scope_record` merges later fields
//! into it; `scope_close` gives its duration and outcome (a close whose open
//! was not stored, e.g. expired, still makes the scope, starting at
//! `close.ts - duration`). Events, losses and control records attach to
//! the scope they were written in. A scope goes under its `parent_id`,
//! never under a scope chosen by time; a scope whose parent is not in the
//! store is shown at the top level and marked (`parent … not found`).
//! Within a scope, its events and child scopes are in time order.
//!
//! ```text
//! checkout  [checkout pid 311]  12.4 ms  ok   order=42
//! ├─ INFO paid
//! └─ charge  [payments pid 498]  8.1 ms  error   card=visa
//!    └─ ERROR declined  reason="insufficient funds"
//! ```
//!
//! `--json` prints one object: `trace_id`, `scopes` (the top-level scopes),
//! `events` (records of the trace outside any scope). Each scope has
//! `name`, `scope_id`, `parent_id`, `parent_missing`, `service`, `host`,
//! `pid`, `start`, `duration_ns`, `outcome` (`ok`, `error`, `abandoned`,
//! `open`), `fields`, `events` (records in the record schema) and
//! `children` (scopes).

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use crate::record::{Fields, Kind, Outcome, Record, ScopeId, TraceId};
use crate::render::{duration_text, fields_text, Paint};
use crate::timestamp::Timestamp;

/// Arguments of `distlogd tree`.
#[derive(Debug, Clone, Args)]
pub struct TreeArgs {
    /// The trace (32 hex digits, as in `trace_id` or a W3C traceparent).
    #[arg(value_name = "TRACE_ID")]
    pub trace: TraceId,

    /// The sidecar's data directory (where its store is). Default: the
    /// sidecar's default ($XDG_STATE_HOME/distlog, ~/.local/state/distlog,
    /// /var/lib/distlog for root).
    #[arg(long, env = "DISTLOG_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Nested JSON instead of the drawing.
    #[arg(long)]
    pub json: bool,
}

/// One scope of the tree.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Scope {
    /// Its name.
    pub name: String,
    /// Its id.
    pub scope_id: ScopeId,
    /// Its parent's id.
    pub parent_id: Option<ScopeId>,
    /// It has a parent id but that scope is not in the store.
    pub parent_missing: bool,
    /// Service of the process it ran in.
    pub service: String,
    /// Host.
    pub host: String,
    /// Process.
    pub pid: u32,
    /// When it opened.
    pub start: Timestamp,
    /// How long it was open, when it closed.
    pub duration_ns: Option<u64>,
    /// `ok`, `error`, `abandoned`, or `open` (no close stored).
    pub outcome: &'static str,
    /// Its fields (at open, then recorded later).
    pub fields: Fields,
    /// Records written in it.
    pub events: Vec<Record>,
    /// Scopes opened in it.
    pub children: Vec<Scope>,
}

/// A whole trace.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Tree {
    /// The trace.
    pub trace_id: TraceId,
    /// Top-level scopes (roots, and scopes whose parent is missing).
    pub scopes: Vec<Scope>,
    /// Records of the trace written outside any scope known here.
    pub events: Vec<Record>,
}

/// Build the tree of one trace from its records (any order).
pub fn build(trace_id: TraceId, records: Vec<Record>) -> Tree {
    let mut scopes: HashMap<ScopeId, Scope> = HashMap::new();
    let mut order: Vec<ScopeId> = Vec::new();
    let mut loose: Vec<Record> = Vec::new();
    let mut records = records;
    records.sort_by_key(|r| r.ts);
    let new_scope = |r: &Record, id: ScopeId| Scope {
        name: r.name.clone().unwrap_or_default(),
        scope_id: id,
        parent_id: r.parent_id,
        parent_missing: false,
        service: r.service.clone(),
        host: r.host.clone(),
        pid: r.pid,
        start: r.ts,
        duration_ns: None,
        outcome: "open",
        fields: Fields::new(),
        events: Vec::new(),
        children: Vec::new(),
    };
    let mut events: Vec<Record> = Vec::new();
    for r in records {
        let Some(id) = r.scope_id else {
            loose.push(r);
            continue;
        };
        match r.kind {
            Kind::ScopeOpen | Kind::ScopeRecord | Kind::ScopeClose => {
                let s = scopes.entry(id).or_insert_with(|| {
                    order.push(id);
                    new_scope(&r, id)
                });
                if s.name.is_empty() {
                    if let Some(n) = &r.name {
                        s.name = n.clone();
                    }
                }
                if s.parent_id.is_none() {
                    s.parent_id = r.parent_id;
                }
                match r.kind {
                    Kind::ScopeOpen => {
                        s.start = r.ts;
                        for (k, v) in &r.fields {
                            s.fields.insert(k.clone(), v.clone());
                        }
                    }
                    Kind::ScopeRecord => {
                        for (k, v) in &r.fields {
                            s.fields.insert(k.clone(), v.clone());
                        }
                    }
                    _ => {
                        s.duration_ns = r.duration_ns;
                        if let Some(d) = r.duration_ns {
                            if s.start >= r.ts {
                                s.start = Timestamp(r.ts.0.saturating_sub(d));
                            }
                        }
                        s.outcome = match r.outcome {
                            Some(Outcome::Ok) | None => "ok",
                            Some(Outcome::Error) => "error",
                            Some(Outcome::Abandoned) => "abandoned",
                        };
                    }
                }
            }
            _ => events.push(r),
        }
    }
    for e in events {
        match e.scope_id.and_then(|id| scopes.get_mut(&id)) {
            Some(s) => s.events.push(e),
            None => loose.push(e),
        }
    }
    // Attach children to parents, deepest first: process scopes so that a
    // child is moved into its parent before the parent moves.
    let ids: Vec<ScopeId> = order;
    let parent_of: HashMap<ScopeId, Option<ScopeId>> =
        ids.iter().map(|id| (*id, scopes[id].parent_id)).collect();
    let depth = |mut id: ScopeId| {
        let mut d = 0usize;
        while let Some(Some(p)) = parent_of.get(&id) {
            if !parent_of.contains_key(p) || d > ids.len() {
                break;
            }
            id = *p;
            d += 1;
        }
        d
    };
    let mut by_depth: Vec<(usize, ScopeId)> = ids.iter().map(|id| (depth(*id), *id)).collect();
    by_depth.sort_by_key(|d| std::cmp::Reverse(d.0));
    let mut roots = Vec::new();
    for (d, id) in by_depth {
        let Some(mut s) = scopes.remove(&id) else {
            continue;
        };
        s.children.sort_by_key(|c| c.start);
        match s.parent_id {
            Some(p) if d > 0 && scopes.contains_key(&p) => {
                if let Some(parent) = scopes.get_mut(&p) {
                    parent.children.push(s);
                }
            }
            Some(_) => {
                s.parent_missing = true;
                roots.push(s);
            }
            None => roots.push(s),
        }
    }
    roots.sort_by_key(|s| s.start);
    loose.sort_by_key(|r| r.ts);
    Tree {
        trace_id,
        scopes: roots,
        events: loose,
    }
}

/// Draw the tree (colours when `color`).
pub fn draw(t: &Tree, color: bool, out: &mut impl Write) -> io::Result<()> {
    let p = Paint { on: color };
    let pids: std::collections::HashSet<&str> = all_scopes(&t.scopes)
        .iter()
        .map(|s| s.host.as_str())
        .collect();
    let show_host = pids.len() > 1;
    for s in &t.scopes {
        draw_scope(s, "", None, &p, show_host, out)?;
    }
    if !t.events.is_empty() {
        writeln!(out, "{}", p.dim("(outside any scope)"))?;
        let n = t.events.len();
        for (i, e) in t.events.iter().enumerate() {
            writeln!(
                out,
                "{}{}",
                if i + 1 == n { "└─ " } else { "├─ " },
                event_text(e, &p)
            )?;
        }
    }
    Ok(())
}

fn all_scopes(v: &[Scope]) -> Vec<&Scope> {
    let mut out = Vec::new();
    let mut stack: Vec<&Scope> = v.iter().collect();
    while let Some(s) = stack.pop() {
        out.push(s);
        stack.extend(s.children.iter());
    }
    out
}

fn event_text(e: &Record, p: &Paint) -> String {
    let mut l = p.level(e.level);
    match e.kind {
        Kind::Loss => l.push_str(&format!(" {}", p.wrap("1;31", "LOSS"))),
        Kind::Control => l.push_str(&format!(" {}", p.wrap("35", "CONTROL"))),
        _ => {}
    }
    if let Some(m) = &e.message {
        l.push(' ');
        l.push_str(m);
    }
    if !e.fields.is_empty() {
        l.push_str("  ");
        l.push_str(&fields_text(&e.fields));
    }
    l.replace('\n', "\\n")
}

fn scope_head(s: &Scope, p: &Paint, show_host: bool) -> String {
    let who = if show_host {
        format!("[{}@{} pid {}]", s.service, s.host, s.pid)
    } else {
        format!("[{} pid {}]", s.service, s.pid)
    };
    let mut l = format!("{}  {}", p.bold(&s.name), p.dim(&who));
    if let Some(d) = s.duration_ns {
        l.push_str(&format!("  {}", duration_text(d)));
    }
    let outcome = if s.outcome == "open" {
        None
    } else {
        Some(s.outcome)
    };
    l.push_str(&format!("  {}", p.outcome(outcome)));
    if !s.fields.is_empty() {
        l.push_str(&format!("   {}", fields_text(&s.fields)));
    }
    if s.parent_missing {
        if let Some(pid) = s.parent_id {
            l.push_str(&format!(
                "  {}",
                p.dim(&format!("(parent {pid} not found)"))
            ));
        }
    }
    l.replace('\n', "\\n")
}

enum Item<'a> {
    Event(&'a Record),
    Child(&'a Scope),
}

fn draw_scope(
    s: &Scope,
    prefix: &str,
    last: Option<bool>,
    p: &Paint,
    show_host: bool,
    out: &mut impl Write,
) -> io::Result<()> {
    let (branch, child_prefix) = match last {
        None => (String::new(), prefix.to_string()),
        Some(true) => (format!("{prefix}└─ "), format!("{prefix}   ")),
        Some(false) => (format!("{prefix}├─ "), format!("{prefix}│  ")),
    };
    writeln!(out, "{branch}{}", scope_head(s, p, show_host))?;
    let mut items: Vec<(Timestamp, Item<'_>)> = s
        .events
        .iter()
        .map(|e| (e.ts, Item::Event(e)))
        .chain(s.children.iter().map(|c| (c.start, Item::Child(c))))
        .collect();
    items.sort_by_key(|(t, _)| *t);
    let n = items.len();
    for (i, (_, item)) in items.iter().enumerate() {
        let is_last = i + 1 == n;
        match item {
            Item::Event(e) => writeln!(
                out,
                "{child_prefix}{}{}",
                if is_last { "└─ " } else { "├─ " },
                event_text(e, p)
            )?,
            Item::Child(c) => draw_scope(c, &child_prefix, Some(is_last), p, show_host, out)?,
        }
    }
    Ok(())
}

/// `distlogd tree`: read the trace from the store and print it. Unknown
/// trace: an error (exit code 1).
pub fn run(args: &TreeArgs) -> anyhow::Result<()> {
    let data = args
        .data_dir
        .clone()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(crate::default_data_dir);
    let store = crate::store::store_dir(&data);
    let filter = crate::query::Filter {
        trace_id: Some(args.trace),
        ..Default::default()
    };
    let mut recs = Vec::new();
    let stats = crate::store::query(&store, &filter, &Default::default(), |r| {
        recs.push(r);
        true
    })?;
    for s in &stats.skipped {
        diag!("skipped {s}");
    }
    if recs.is_empty() {
        anyhow::bail!(
            "trace {} not found in the store at {}",
            args.trace,
            store.display()
        );
    }
    let tree = build(args.trace, recs);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let res = if args.json {
        serde_json::to_writer_pretty(&mut out, &tree)
            .map_err(io::Error::from)
            .and_then(|_| writeln!(out))
    } else {
        draw(&tree, crate::render::color_for_stdout(), &mut out)
    };
    match res.and_then(|_| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use distlog::wire::Level;

    fn rec(kind: Kind, ts: u64, scope: u64, parent: Option<u64>, svc: &str, pid: u32) -> Record {
        let mut r = Record::new(kind, Timestamp(ts), Level::Info);
        r.service = svc.into();
        r.pid = pid;
        r.trace_id = Some(TraceId([1; 16]));
        r.scope_id = Some(ScopeId(scope));
        r.parent_id = parent.map(ScopeId);
        r
    }

    #[test]
    fn example_drawing() {
        let mut v = Vec::new();
        let mut o = rec(Kind::ScopeOpen, 1_000, 1, None, "checkout", 311);
        o.name = Some("checkout".into());
        o.fields.insert("order".into(), 42.into());
        v.push(o);
        let mut e = rec(Kind::Event, 2_000, 1, None, "checkout", 311);
        e.message = Some("paid".into());
        v.push(e);
        let mut o2 = rec(Kind::ScopeOpen, 3_000, 2, Some(1), "payments", 498);
        o2.name = Some("charge".into());
        o2.remote_parent = true;
        v.push(o2);
        let mut sr = rec(Kind::ScopeRecord, 3_500, 2, Some(1), "payments", 498);
        sr.name = Some("charge".into());
        sr.fields.insert("card".into(), "visa".into());
        v.push(sr);
        let mut e2 = rec(Kind::Event, 4_000, 2, Some(1), "payments", 498);
        e2.level = Level::Error;
        e2.message = Some("declined".into());
        e2.fields
            .insert("reason".into(), "insufficient funds".into());
        v.push(e2);
        let mut c2 = rec(Kind::ScopeClose, 11_100_000, 2, Some(1), "payments", 498);
        c2.name = Some("charge".into());
        c2.outcome = Some(Outcome::Error);
        c2.duration_ns = Some(8_100_000);
        v.push(c2);
        let mut c1 = rec(Kind::ScopeClose, 12_401_000, 1, None, "checkout", 311);
        c1.name = Some("checkout".into());
        c1.outcome = Some(Outcome::Ok);
        c1.duration_ns = Some(12_400_000);
        v.push(c1);
        // an orphan: parent 99 is not there
        let mut o3 = rec(Kind::ScopeOpen, 5_000, 3, Some(99), "mailer", 77);
        o3.name = Some("notify".into());
        v.push(o3);
        v.reverse();
        let t = build(TraceId([1; 16]), v);
        let mut out = Vec::new();
        draw(&t, false, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "checkout  [checkout pid 311]  12.4 ms  ok   order=42\n\
             ├─ INFO paid\n\
             └─ charge  [payments pid 498]  8.1 ms  error   card=visa\n\
             \u{20}  └─ ERROR declined  reason=\"insufficient funds\"\n\
             notify  [mailer pid 77]  open  (parent 0000000000000063 not found)\n"
        );
        let j = serde_json::to_value(&t).unwrap();
        assert_eq!(j["scopes"][0]["children"][0]["name"], "charge");
        assert_eq!(j["scopes"][0]["children"][0]["outcome"], "error");
        assert_eq!(j["scopes"][1]["parent_missing"], true);
    }
}

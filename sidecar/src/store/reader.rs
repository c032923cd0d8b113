//! The store's read side: records matching a [`Filter`], in time order,
//! across partitions and classes, from files opened read-only.
//!
//! Partitions are pruned by the time range in their names. A record lies in
//! its partition's range, so partitions whose ranges do not overlap are read
//! one group after another, and only the partitions of one group (usually
//! one per class for the same hour) are open at once; within a group their
//! rows are merged by `(ts, id)`, fetched in pages (keyset pagination).
//! What SQL can check (time, service, host, pid, level, kind, target
//! prefix, trace, scope, case-sensitive message text) is checked there,
//! with the trace index for `--trace`; every row is then decoded and checked
//! with [`Filter::matches`], which is the definition.
//!
//! For the last `n` records the groups are read newest first and reading
//! stops after `n` matches.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};

use super::{list_partitions, trace_key, Partition, StoreError};
use crate::query::Filter;
use crate::record::Record;

const PAGE: usize = 512;

/// How to read.
#[derive(Debug, Clone, Default)]
pub struct QueryOptions {
    /// Only the last `n` matching records (still printed oldest first).
    pub last: Option<usize>,
    /// Only these classes (empty: all).
    pub classes: Vec<String>,
}

/// What a query saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryStats {
    /// Partition files read.
    pub partitions: usize,
    /// Records handed to the callback.
    pub matched: u64,
    /// Files skipped (unreadable or corrupt), with why.
    pub skipped: Vec<String>,
}

/// Call `each` with every record under `store` that `filter` matches,
/// oldest first (with `opts.last`, the last `n` of them, oldest first).
/// `each` returns `false` to stop. A missing store directory is an error
/// ([`StoreError::NoStore`]); unreadable files are skipped and listed in
/// the stats.
///
/// # Examples
///
/// ```no_run
/// use distlogd::query::Filter;
/// use distlogd::store::{query, QueryOptions};
/// let dir = std::path::Path::new("/var/lib/distlog/store");
/// query(dir, &Filter::default(), &QueryOptions { last: Some(10), ..Default::default() }, |r| {
///     print!("{}", r.to_json_line());
///     true
/// })?;
/// # Ok::<(), distlogd::store::StoreError>(())
/// ```
pub fn query(
    store: &Path,
    filter: &Filter,
    opts: &QueryOptions,
    mut each: impl FnMut(Record) -> bool,
) -> Result<QueryStats, StoreError> {
    if !store.is_dir() {
        return Err(StoreError::NoStore(store.to_owned()));
    }
    let mut parts: Vec<Partition> = list_partitions(store)?
        .into_iter()
        .filter(|p| opts.classes.is_empty() || opts.classes.contains(&p.class))
        .filter(|p| filter.since.is_none_or(|s| p.end_ns > s.0))
        .filter(|p| filter.until.is_none_or(|u| p.start_ns <= u.0))
        .collect();
    parts.sort_by_key(|p| (p.start_ns, p.end_ns));
    let groups = overlapping_groups(&parts);
    let desc = opts.last.is_some();
    let mut stats = QueryStats::default();
    let where_sql = Where::new(filter);
    let mut kept: Vec<Record> = Vec::new();
    let order: Box<dyn Iterator<Item = &std::ops::Range<usize>>> = if desc {
        Box::new(groups.iter().rev())
    } else {
        Box::new(groups.iter())
    };
    'groups: for g in order {
        let mut cursors = Vec::new();
        for p in &parts[g.clone()] {
            match Cursor::open(p, &where_sql, desc) {
                Ok(Some(c)) => cursors.push(c),
                Ok(None) => {}
                Err(why) => stats.skipped.push(why),
            }
        }
        stats.partitions += cursors.len();
        loop {
            // The cursor whose head comes next.
            let mut best: Option<(usize, (i64, i64))> = None;
            for (i, c) in cursors.iter_mut().enumerate() {
                if let Err(why) = c.fill() {
                    stats.skipped.push(why);
                    c.done = true;
                    c.buf.clear();
                }
                if let Some(&(ts, id, _)) = c.buf.front() {
                    // Ties between files: the file order decides.
                    let k = (ts, id);
                    let better = match best {
                        None => true,
                        Some((_, b)) => {
                            if desc {
                                k > b
                            } else {
                                k < b
                            }
                        }
                    };
                    if better {
                        best = Some((i, k));
                    }
                }
            }
            let Some((i, _)) = best else { break };
            let Some((_, _, json)) = cursors[i].buf.pop_front() else {
                break;
            };
            let Ok(r) = Record::from_json(&json) else {
                continue;
            };
            if !filter.matches(&r) {
                continue;
            }
            stats.matched += 1;
            if let Some(n) = opts.last {
                kept.push(r);
                if kept.len() >= n {
                    break 'groups;
                }
            } else if !each(r) {
                break 'groups;
            }
        }
    }
    if desc {
        for r in kept.into_iter().rev() {
            if !each(r) {
                break;
            }
        }
    }
    Ok(stats)
}

/// Ranges of `parts` (sorted by start) whose time ranges overlap.
fn overlapping_groups(parts: &[Partition]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        let mut end = parts[i].end_ns;
        let mut j = i + 1;
        while j < parts.len() && parts[j].start_ns < end {
            end = end.max(parts[j].end_ns);
            j += 1;
        }
        out.push(i..j);
        i = j;
    }
    out
}

/// The SQL conditions a filter allows, with their parameters.
#[derive(Debug, Clone)]
struct Where {
    sql: String,
    params: Vec<Value>,
    /// `trace` column value to look up with the trace index.
    trace: Option<i64>,
}

impl Where {
    fn new(f: &Filter) -> Where {
        let mut conds: Vec<String> = Vec::new();
        let mut params: Vec<Value> = Vec::new();
        let mut push = |cond: &str, vals: Vec<Value>| {
            let mut c = cond.to_string();
            for v in vals {
                params.push(v);
                let n = params.len();
                c = c.replacen("?", &format!("?{n}"), 1);
            }
            conds.push(c);
        };
        if let Some(s) = f.since {
            push("ts >= ?", vec![Value::Integer(s.0 as i64)]);
        }
        if let Some(u) = f.until {
            push("ts <= ?", vec![Value::Integer(u.0 as i64)]);
        }
        if let Some(l) = f.level {
            push("level <= ?", vec![Value::Integer(l as i64)]);
        }
        if let Some(l) = f.level_min {
            push("level >= ?", vec![Value::Integer(l as i64)]);
        }
        let mut any_of = |col: &str, vals: Vec<Value>| {
            if !vals.is_empty() {
                let qs = vec!["?"; vals.len()].join(",");
                push(&format!("{col} IN ({qs})"), vals);
            }
        };
        any_of(
            "service",
            f.services.iter().map(|s| Value::Text(s.clone())).collect(),
        );
        any_of(
            "pid",
            f.pids.iter().map(|p| Value::Integer(*p as i64)).collect(),
        );
        any_of(
            "kind",
            f.kinds
                .iter()
                .map(|k| Value::Text(super::writer::kind_name(*k).into()))
                .collect(),
        );
        if let Some(s) = f.scope_id {
            push("scope = ?", vec![Value::Integer(s.0 as i64)]);
        }
        Where {
            sql: if conds.is_empty() {
                String::new()
            } else {
                format!("({}) AND ", conds.join(" AND "))
            },
            params,
            trace: f.trace_id.as_ref().map(trace_key),
        }
    }
}

/// Rows of one partition, a page at a time.
struct Cursor {
    conn: Connection,
    /// The first page's query and the next pages'.
    sql: [String; 2],
    params: Vec<Value>,
    /// Last (ts, id) fetched.
    after: Option<(i64, i64)>,
    buf: VecDeque<(i64, i64, String)>,
    done: bool,
    /// The first query returns everything (trace lookups).
    single_page: bool,
    path: String,
}

impl Cursor {
    /// Open a partition read-only; `None` for a file without records yet.
    fn open(part: &Partition, w: &Where, desc: bool) -> Result<Option<Cursor>, String> {
        let path = part.path.as_path();
        let show = path.display().to_string();
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| format!("{show}: {e}"))?;
        let _ = conn.busy_timeout(Duration::from_secs(5));
        let has_table: Result<i64, _> = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'records'",
            [],
            |r| r.get(0),
        );
        match has_table {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(format!("{show}: {e}")),
        }
        let dir = if desc { "DESC" } else { "ASC" };
        let n = w.params.len();
        if let Some(t) = w.trace {
            // One seek per second of the partition in the (second, trace)
            // index (CROSS JOIN: SQLite keeps this loop order, rather than
            // scanning the index and probing the seconds); a trace has few
            // records: one page, sorted here.
            let sql = format!(
                "WITH RECURSIVE s(x) AS (SELECT ?{lo} UNION ALL SELECT x + 1 FROM s WHERE x < ?{hi}) \
                 SELECT ts, id, json FROM s CROSS JOIN records INDEXED BY records_trace \
                 WHERE ts / 1000000000 = s.x AND trace = ?{t} AND {} 1 ORDER BY ts {dir}, id {dir}",
                w.sql,
                lo = n + 1,
                hi = n + 2,
                t = n + 3,
            );
            let mut params = w.params.clone();
            params.push(Value::Integer((part.start_ns / 1_000_000_000) as i64));
            params.push(Value::Integer(
                (part.end_ns / 1_000_000_000).saturating_sub(1) as i64,
            ));
            params.push(Value::Integer(t));
            return Ok(Some(Cursor {
                conn,
                sql: [sql.clone(), sql],
                params,
                after: None,
                buf: VecDeque::new(),
                done: false,
                single_page: true,
                path: show,
            }));
        }
        let (cmp, dir) = if desc { ("<", "DESC") } else { (">", "ASC") };
        let n = w.params.len();
        // Later pages: (ts, id) after the last row fetched (a row-value
        // comparison, which seeks in the (ts) index: it ends in the rowid).
        let first = format!(
            "SELECT ts, id, json FROM records WHERE {} 1 ORDER BY ts {dir}, id {dir} LIMIT {PAGE}",
            w.sql,
        );
        let next = format!(
            "SELECT ts, id, json FROM records WHERE {} (ts, id) {cmp} (?{t}, ?{i}) ORDER BY ts {dir}, id {dir} LIMIT {PAGE}",
            w.sql,
            t = n + 1,
            i = n + 2,
        );
        Ok(Some(Cursor {
            conn,
            sql: [first, next],
            params: w.params.clone(),
            after: None,
            buf: VecDeque::new(),
            done: false,
            single_page: false,
            path: show,
        }))
    }

    /// Fetch the next page if the buffer is empty.
    fn fill(&mut self) -> Result<(), String> {
        if self.done || !self.buf.is_empty() {
            return Ok(());
        }
        let err = |e: rusqlite::Error| format!("{}: {e}", self.path);
        let mut st = self
            .conn
            .prepare_cached(&self.sql[usize::from(self.after.is_some())])
            .map_err(err)?;
        let mut params = self.params.clone();
        if let Some((t, i)) = self.after {
            params.push(Value::Integer(t));
            params.push(Value::Integer(i));
        }
        let rows = st
            .query_map(rusqlite::params_from_iter(params), |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(err)?;
        for row in rows {
            self.buf.push_back(row.map_err(err)?);
        }
        if self.single_page || self.buf.len() < PAGE {
            self.done = true;
        }
        if let Some(&(t, i, _)) = self.buf.back() {
            self.after = Some((t, i));
        }
        Ok(())
    }
}

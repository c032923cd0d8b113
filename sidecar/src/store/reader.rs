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

use std::collections::{HashMap, VecDeque};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags};

use super::compact::Columns;
use super::{list_partitions, trace_key, Partition, StoreError};
use crate::query::Filter;
use crate::record::Record;

const PAGE: usize = 512;

/// What every query selects; [`decode_row`] reads it.
const COLUMNS: &str = "ts, id, json, kind, level, service, pid, scope";

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
    query_rows(store, filter, opts, |r, _| each(r))
}

/// Where a record read from the store is: its partition file and row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored<'a> {
    /// The partition file.
    pub partition: &'a Path,
    /// Its inode when it was opened (a file renamed aside and started
    /// again under the same name is another file).
    pub inode: u64,
    /// The row id: the writer appends rows with increasing ids and never
    /// deletes one, so a larger id was committed later.
    pub id: i64,
}

/// [`query`], telling `each` where every record is stored.
pub fn query_rows(
    store: &Path,
    filter: &Filter,
    opts: &QueryOptions,
    mut each: impl FnMut(Record, Stored<'_>) -> bool,
) -> Result<QueryStats, StoreError> {
    let parts = selected(store, filter, opts)?;
    let groups = overlapping_groups(&parts);
    let desc = opts.last.is_some();
    let mut stats = QueryStats::default();
    let where_sql = Where::new(filter);
    // (record, partition index, inode, id)
    let mut kept: Vec<(Record, usize, u64, i64)> = Vec::new();
    let order: Box<dyn Iterator<Item = &std::ops::Range<usize>>> = if desc {
        Box::new(groups.iter().rev())
    } else {
        Box::new(groups.iter())
    };
    let at = |p: usize, inode: u64, id: i64| Stored {
        partition: &parts[p].path,
        inode,
        id,
    };
    'groups: for g in order {
        let mut cursors = Vec::new();
        for (pi, p) in parts.iter().enumerate().take(g.end).skip(g.start) {
            match Cursor::open(p, &where_sql, desc) {
                Ok(Some(mut c)) => {
                    c.part = pi;
                    cursors.push(c)
                }
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
            let (part, inode) = (cursors[i].part, cursors[i].inode);
            let Some((_, id, r)) = cursors[i].buf.pop_front() else {
                break;
            };
            // A row neither form decodes is skipped (as if filtered out).
            let Some(r) = r else {
                continue;
            };
            if !filter.matches(&r) {
                continue;
            }
            stats.matched += 1;
            if let Some(n) = opts.last {
                kept.push((r, part, inode, id));
                if kept.len() >= n {
                    break 'groups;
                }
            } else if !each(r, at(part, inode, id)) {
                break 'groups;
            }
        }
    }
    if desc {
        for (r, part, inode, id) in kept.into_iter().rev() {
            if !each(r, at(part, inode, id)) {
                break;
            }
        }
    }
    Ok(stats)
}

/// The partitions a query reads, sorted by start.
fn selected(
    store: &Path,
    filter: &Filter,
    opts: &QueryOptions,
) -> Result<Vec<Partition>, StoreError> {
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
    Ok(parts)
}

/// The rows the partitions a query would read hold now: by file, its
/// inode and largest row id. A row [`query_rows`] reads later with an id
/// above its file's mark (or from a file not here, or another file under
/// the same name) was committed after this call. A file that cannot be
/// read is left out (as if empty: the conservative answer).
pub fn marks(
    store: &Path,
    filter: &Filter,
    opts: &QueryOptions,
) -> Result<HashMap<PathBuf, (u64, i64)>, StoreError> {
    let mut out = HashMap::new();
    let inode = |p: &Path| std::fs::metadata(p).map(|m| m.ino()).ok();
    for p in selected(store, filter, opts)? {
        let Some(before) = inode(&p.path) else {
            continue;
        };
        let Ok(conn) = Connection::open_with_flags(
            &p.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        ) else {
            continue;
        };
        let _ = conn.busy_timeout(Duration::from_secs(5));
        // No `records` table yet: an error, left out like an empty file.
        let Ok(max) = conn.query_row("SELECT max(id) FROM records", [], |r| {
            r.get::<_, Option<i64>>(0)
        }) else {
            continue;
        };
        // Renamed aside and started again meanwhile: which file the mark
        // is of is unknown.
        if inode(&p.path) == Some(before) {
            out.insert(p.path, (before, max.unwrap_or(0)));
        }
    }
    Ok(out)
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
                .map(|k| Value::Text(super::compact::kind_name(*k).into()))
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

/// The record of a row of [`COLUMNS`]: schema 1 rows hold JSON text, schema 2 rows a blob
/// ([`super::compact`]).
fn decode_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<Record>> {
    Ok(match r.get_ref(2)? {
        ValueRef::Text(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|t| Record::from_json(t).ok()),
        ValueRef::Blob(b) => {
            let c = Columns {
                ts: r.get(0)?,
                kind: r.get_ref(3)?.as_str()?,
                level: r.get(4)?,
                service: r.get_ref(5)?.as_str()?,
                pid: r.get(6)?,
                scope: r.get(7)?,
            };
            super::compact::decode(c, b)
        }
        _ => None,
    })
}

/// Rows of one partition, a page at a time.
struct Cursor {
    conn: Connection,
    /// The first page's query and the next pages'.
    sql: [String; 2],
    params: Vec<Value>,
    /// Last (ts, id) fetched.
    after: Option<(i64, i64)>,
    /// (ts, id, the decoded record if it decodes).
    buf: VecDeque<(i64, i64, Option<Record>)>,
    done: bool,
    /// The first query returns everything (trace lookups).
    single_page: bool,
    path: String,
    /// Index of its partition in the query's list.
    part: usize,
    /// The file's inode, just after it was opened.
    inode: u64,
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
        let inode = std::fs::metadata(path)
            .map(|m| m.ino())
            .map_err(|e| format!("{show}: {e}"))?;
        // Which schema: no `records` table yet (a file being created), the
        // trace index of schema 2 (by row segment) or of schema 1 (by second).
        let names: Result<Vec<String>, _> = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE name IN \
                 ('records', 'records_seg_trace', 'records_trace')",
            )
            .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect());
        let names = names.map_err(|e| format!("{show}: {e}"))?;
        if !names.iter().any(|n| n == "records") {
            return Ok(None);
        }
        let dir = if desc { "DESC" } else { "ASC" };
        let n = w.params.len();
        if let Some(t) = w.trace {
            // One seek per segment (schema 2) or second (schema 1) in the
            // trace index (CROSS JOIN: SQLite keeps this loop order, rather
            // than scanning the index and probing the segments); a trace has
            // few records: one page, sorted here.
            let (index, key, lo, hi) = if names.iter().any(|n| n == "records_seg_trace") {
                let max_id: Option<i64> = conn
                    .query_row("SELECT max(id) FROM records", [], |r| r.get(0))
                    .map_err(|e| format!("{show}: {e}"))?;
                let seg = super::TRACE_SEGMENT as i64;
                (
                    "records_seg_trace",
                    format!("id / {seg}"),
                    0,
                    max_id.unwrap_or(0) / seg,
                )
            } else {
                (
                    "records_trace",
                    "ts / 1000000000".to_string(),
                    (part.start_ns / 1_000_000_000) as i64,
                    (part.end_ns / 1_000_000_000).saturating_sub(1) as i64,
                )
            };
            let sql = format!(
                "WITH RECURSIVE s(x) AS (SELECT ?{lo} UNION ALL SELECT x + 1 FROM s WHERE x < ?{hi}) \
                 SELECT {COLUMNS} FROM s CROSS JOIN records INDEXED BY {index} \
                 WHERE {key} = s.x AND trace = ?{t} AND {} 1 ORDER BY ts {dir}, id {dir}",
                w.sql,
                lo = n + 1,
                hi = n + 2,
                t = n + 3,
            );
            let mut params = w.params.clone();
            params.push(Value::Integer(lo));
            params.push(Value::Integer(hi));
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
                part: 0,
                inode,
            }));
        }
        let (cmp, dir) = if desc { ("<", "DESC") } else { (">", "ASC") };
        let n = w.params.len();
        // Later pages: (ts, id) after the last row fetched (a row-value
        // comparison, which seeks in the (ts) index: it ends in the rowid).
        let first = format!(
            "SELECT {COLUMNS} FROM records WHERE {} 1 ORDER BY ts {dir}, id {dir} LIMIT {PAGE}",
            w.sql,
        );
        let next = format!(
            "SELECT {COLUMNS} FROM records WHERE {} (ts, id) {cmp} (?{t}, ?{i}) ORDER BY ts {dir}, id {dir} LIMIT {PAGE}",
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
            part: 0,
            inode,
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
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, decode_row(r)?))
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

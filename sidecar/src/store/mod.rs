//! The embedded store: every record the routing sends to it, on local disk,
//! queryable by `distlogd tail` and `distlogd tree` with or without a
//! running sidecar.
//!
//! # Layout
//!
//! ```text
//! <data dir>/                       0700
//!   store/                          0700
//!     <class>/                      0700   log, usage, perf, or a class of the config
//!       20261125T210000-3600.db     0600   one SQLite file per class per time partition
//!       20261125T210000-3600.db-wal        (SQLite's write-ahead log, same mode)
//! ```
//!
//! A partition file holds the records whose `ts` lies in
//! `[start, start + width)`; the name says both (start in UTC, width in
//! seconds; default 3600: one file per class per hour). Retention
//! ([`retention`]) reclaims disk by deleting whole files: the oldest first,
//! when older than the class's max age or when the class is over its max
//! size. Nothing is ever deleted row by row.
//!
//! The data directory defaults to `$XDG_STATE_HOME/distlog`, else
//! `~/.local/state/distlog`, and `/var/lib/distlog` for root
//! ([`crate::default_data_dir`]); `--data-dir` or `DISTLOG_DATA_DIR` move it.
//! Directories are made 0700 and files 0600: records are readable only by the
//! sidecar's user (and root), and `distlogd tail` must run as that user.
//!
//! # One partition file
//!
//! ```sql
//! records(id INTEGER PRIMARY KEY, ts, kind, level, service, pid, trace,
//!         scope, json)
//!   index (ts); partial index (id / 16384, trace) WHERE trace IS NOT NULL
//! rings(ring_hi, ring_lo, seq)      -- per-ring high-water mark
//! PRAGMA user_version = 2
//! ```
//!
//! The columns are what SQL filters on; `json` (named for schema 1) holds
//! the rest of the record as a compact blob (`store::compact`): schema 1 files
//! held the whole record as JSON text there, and are still read (a row's
//! value type says which form it is) and converted when the writer opens
//! one (its per-second trace index is replaced). `trace` is the first 64
//! bits of the trace id (a small index; the exact id is checked on the
//! decoded record). The trace index leads with the row's segment of 16384
//! rows (`TRACE_SEGMENT`): a commit then dirties only the index pages of
//! the last segment (≤ ~100), not a random page per record (which made
//! every commit rewrite thousands of pages into the WAL); a lookup seeks
//! once per segment (611 seeks among 10 M records: 4-8 ms; 4096-row
//! segments took 10-30 ms and ingested no faster).
//!
//! SQLite runs with WAL and `synchronous=NORMAL`; the writer commits one
//! transaction per partition per drained batch with prepared statements.
//! Checkpoints (copying the WAL into the database file, with its `fsync`)
//! run on a thread of their own every ~8 MiB of rows, so the drain thread
//! does not wait for them; the writer checkpoints itself only if the WAL
//! reaches 64 MiB. The page cache is 2 MiB per open partition.
//!
//! # Durability and exactly once
//!
//! The drain thread releases a ring's space only after the sinks returned,
//! and the store returns only after its transaction committed: a record the
//! store took survives `kill -9` of the sidecar (a commit in WAL mode is in
//! the file before `COMMIT` returns; with `synchronous=NORMAL` a power loss
//! may still take the last commits before a checkpoint).
//!
//! Every record read from a ring has a ring id and a sequence number
//! ([`crate::record::Origin`]). Each partition stores, in the same
//! transaction as the records, the highest sequence number per ring it
//! holds. A restarted sidecar re-reads what its predecessor read but did not
//! release; a record at or below the mark of the partition it goes to is
//! already there and is skipped. So every record from a ring is stored
//! exactly once across a `kill -9` of the sidecar. (Records the sidecar makes
//! itself, e.g. `abandoned` closes and loss reports, have no origin and are
//! not deduplicated.)
//!
//! # Failures
//!
//! A full disk, an unwritable directory or a corrupt file never stops the
//! drain: the records of the failed transaction are dropped and counted
//! ([`StoreStats`]), one line goes to stderr (then one every 10 s while it
//! lasts), the router reports the loss as a `loss` record to the other sinks
//! and to the store once it writes again. A file that is not a database or
//! is corrupt is renamed aside (`<name>.corrupt-<unix seconds>`) and a new
//! one is started; readers skip such files with a warning. The first time
//! the writer opens a partition it runs `PRAGMA quick_check` (before the
//! first write up to 64 MiB, in the background above: a 2.5 GB file took
//! 13 s), so damage is found before records pile onto it; what failed is
//! said on stderr.

pub mod bench;
pub(crate) mod compact;
pub mod reader;
pub mod retention;
pub mod writer;

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::time::Duration;

pub use reader::{marks, query, query_rows, QueryOptions, Stored};
pub use writer::StoreWriter;

const NS_PER_SEC: u64 = 1_000_000_000;

/// Why the store could not do something.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("{}: {err}", path.display())]
    Sqlite {
        /// The partition file.
        path: PathBuf,
        /// The error.
        err: rusqlite::Error,
    },
    /// A file system call failed.
    #[error("{op} {}: {err}", path.display())]
    Io {
        /// What we tried.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        err: std::io::Error,
    },
    /// The store directory does not exist.
    #[error("no store at {} (start `distlogd run` with this --data-dir, or pass the sidecar's --data-dir)", .0.display())]
    NoStore(PathBuf),
}

/// Retention limits of one class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassLimits {
    /// Partitions whose newest possible record is older than this go.
    pub max_age: Duration,
    /// When the class's files take more bytes than this, its oldest
    /// partitions go until they do not.
    pub max_size: u64,
}

/// The built-in classes and their limits: `log` 7 days / 1 GiB, `usage`
/// and `perf` 180 days / 4 GiB.
pub fn default_classes() -> Vec<(String, ClassLimits)> {
    let day = Duration::from_secs(86_400);
    vec![
        (
            "log".into(),
            ClassLimits {
                max_age: day * 7,
                max_size: 1 << 30,
            },
        ),
        (
            "usage".into(),
            ClassLimits {
                max_age: day * 180,
                max_size: 4 << 30,
            },
        ),
        (
            "perf".into(),
            ClassLimits {
                max_age: day * 180,
                max_size: 4 << 30,
            },
        ),
    ]
}

/// Counters of the store, shared between the writer and whoever reports.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Records committed.
    pub stored: AtomicU64,
    /// Records skipped as already stored (re-read after a restart).
    pub duplicates: AtomicU64,
    /// Records dropped because a write failed.
    pub lost: AtomicU64,
    /// Partition files deleted by retention.
    pub expired_files: AtomicU64,
    /// Files renamed aside as corrupt.
    pub corrupt_files: AtomicU64,
}

/// `<data dir>/store`.
pub fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("store")
}

/// Create `dir` with mode 0700 if missing; missing parents get the default
/// mode (the data socket may live in one of them: 0700 there would lock
/// other users' clients out).
pub(crate) fn make_private_dir(dir: &Path) -> Result<(), StoreError> {
    let io = |err| StoreError::Io {
        op: "create directory",
        path: dir.to_owned(),
        err,
    };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(io(e)),
        _ => Ok(()),
    }
}

/// A class name usable as a directory name: `[A-Za-z0-9_-]`, 1..=64 bytes.
pub fn valid_class_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// One partition file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Its class (the directory name).
    pub class: String,
    /// The file.
    pub path: PathBuf,
    /// First instant it may hold (ns since the epoch).
    pub start_ns: u64,
    /// First instant after it (exclusive).
    pub end_ns: u64,
}

/// File name of the partition starting at `start_s` (Unix seconds) of
/// `width_s` seconds: `20261125T210000-3600.db`.
///
/// # Examples
///
/// ```
/// use distlogd::store::{partition_name, parse_partition_name};
/// assert_eq!(partition_name(1_764_104_400, 3600), "20251125T210000-3600.db");
/// assert_eq!(parse_partition_name("20251125T210000-3600.db"), Some((1_764_104_400, 3600)));
/// ```
pub fn partition_name(start_s: u64, width_s: u64) -> String {
    let t = crate::timestamp::Timestamp(start_s * NS_PER_SEC).to_string();
    // 2025-11-25T21:00:00.000000000Z -> 20251125T210000
    let b = t.as_bytes();
    let pick = |r: std::ops::Range<usize>| &t[r];
    debug_assert!(b.len() >= 19);
    format!(
        "{}{}{}T{}{}{}-{width_s}.db",
        pick(0..4),
        pick(5..7),
        pick(8..10),
        pick(11..13),
        pick(14..16),
        pick(17..19)
    )
}

/// (start in Unix seconds, width in seconds) of a partition file name.
pub fn parse_partition_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".db")?;
    let (when, width) = stem.split_once('-')?;
    let width: u64 = width.parse().ok().filter(|w| *w > 0)?;
    let b = when.as_bytes();
    if b.len() != 15 || b[8] != b'T' {
        return None;
    }
    let iso = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &when[0..4],
        &when[4..6],
        &when[6..8],
        &when[9..11],
        &when[11..13],
        &when[13..15]
    );
    let ts: crate::timestamp::Timestamp = iso.parse().ok()?;
    Some((ts.0 / NS_PER_SEC, width))
}

/// Every partition file under `store` (all classes), oldest first. A
/// missing store directory is an empty list.
pub fn list_partitions(store: &Path) -> Result<Vec<Partition>, StoreError> {
    let mut out = Vec::new();
    let classes = match std::fs::read_dir(store) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(err) => {
            return Err(StoreError::Io {
                op: "read directory",
                path: store.to_owned(),
                err,
            })
        }
    };
    for c in classes.flatten() {
        let Ok(class) = c.file_name().into_string() else {
            continue;
        };
        if !valid_class_name(&class) || !c.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(files) = std::fs::read_dir(c.path()) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name();
            let Some((start, width)) = name.to_str().and_then(parse_partition_name) else {
                continue;
            };
            out.push(Partition {
                class: class.clone(),
                path: f.path(),
                start_ns: start.saturating_mul(NS_PER_SEC),
                end_ns: (start + width).saturating_mul(NS_PER_SEC),
            });
        }
    }
    out.sort_by(|a, b| (a.start_ns, &a.class).cmp(&(b.start_ns, &b.class)));
    Ok(out)
}

/// Bytes a partition takes on disk (the file, its WAL and shared memory).
pub fn partition_bytes(path: &Path) -> u64 {
    companions(path)
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// The file and SQLite's companions (`-wal`, `-shm`, `-journal`).
pub(crate) fn companions(path: &Path) -> [PathBuf; 4] {
    let with = |suffix: &str| {
        let mut s = path.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    [
        path.to_owned(),
        with("-wal"),
        with("-shm"),
        with("-journal"),
    ]
}

/// Rows per segment of the trace index (schema 2): the index key is
/// `(id / TRACE_SEGMENT, trace)`, so one commit inserts into the last
/// segment only (a few pages) instead of at random places of the whole
/// second (which rewrote thousands of index pages per commit in the WAL).
pub(crate) const TRACE_SEGMENT: u64 = 16384;

/// The partition schema (2); idempotent. A schema 1 file opened for writing
/// is converted by [`CONVERT_V1`] first.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records(
  id INTEGER PRIMARY KEY,
  ts INTEGER NOT NULL,
  kind TEXT NOT NULL,
  level INTEGER NOT NULL,
  service TEXT NOT NULL,
  pid INTEGER NOT NULL,
  trace INTEGER,
  scope INTEGER,
  json NOT NULL
);
CREATE INDEX IF NOT EXISTS records_ts ON records(ts);
CREATE INDEX IF NOT EXISTS records_seg_trace ON records(id / 16384, trace) WHERE trace IS NOT NULL;
CREATE TABLE IF NOT EXISTS rings(
  ring_hi INTEGER NOT NULL,
  ring_lo INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  PRIMARY KEY(ring_hi, ring_lo)
) WITHOUT ROWID;
PRAGMA user_version = 2;
";

/// Schema 1 to 2: the per-second trace index goes (SCHEMA then builds the
/// segment index over the old rows too); the JSON text rows stay as they
/// are, the reader decodes both forms.
pub(crate) const CONVERT_V1: &str = "DROP INDEX IF EXISTS records_trace;";

/// The schema 1 DDL, to test reading and converting files of the previous
/// version (a frozen copy: it must not follow changes to [`SCHEMA`]).
#[cfg(test)]
pub(crate) const SCHEMA_V1: &str = "
CREATE TABLE records(
  id INTEGER PRIMARY KEY,
  ts INTEGER NOT NULL,
  kind TEXT NOT NULL,
  level INTEGER NOT NULL,
  service TEXT NOT NULL,
  pid INTEGER NOT NULL,
  trace INTEGER,
  scope INTEGER,
  json TEXT NOT NULL
);
CREATE INDEX records_ts ON records(ts);
CREATE INDEX records_trace ON records(ts / 1000000000, trace) WHERE trace IS NOT NULL;
CREATE TABLE rings(
  ring_hi INTEGER NOT NULL,
  ring_lo INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  PRIMARY KEY(ring_hi, ring_lo)
) WITHOUT ROWID;
";

/// The first 64 bits of a trace id, as stored in the `trace` column.
pub(crate) fn trace_key(t: &crate::record::TraceId) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&t.0[..8]);
    i64::from_be_bytes(b)
}

/// Whether an SQLite error means the file is not a usable database.
pub(crate) fn is_corrupt(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

/// Rename a corrupt partition (and its companions) aside to
/// `<name>.corrupt-<unix seconds>`; returns the new name of the main file.
pub(crate) fn rename_aside(path: &Path) -> std::io::Result<PathBuf> {
    let secs = crate::timestamp::Timestamp::now().0 / NS_PER_SEC;
    let mut main = None;
    for p in companions(path) {
        if !p.exists() {
            continue;
        }
        let mut to = p.as_os_str().to_owned();
        to.push(format!(".corrupt-{secs}"));
        std::fs::rename(&p, &to)?;
        main.get_or_insert(PathBuf::from(to));
    }
    Ok(main.unwrap_or_else(|| path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(partition_name(0, 3600), "19700101T000000-3600.db");
        for s in [0u64, 3600, 1_764_104_400, 1_764_104_401] {
            for w in [1u64, 60, 3600] {
                assert_eq!(parse_partition_name(&partition_name(s, w)), Some((s, w)));
            }
        }
        for bad in [
            "x.db",
            "20251125T210000.db",
            "20251125T210000-0.db",
            "20251125X210000-3600.db",
            "20251125T210000-3600.db-wal",
            "20251125T210000-3600.db.corrupt-1",
        ] {
            assert_eq!(parse_partition_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn trace_segment_matches_the_schema() {
        assert!(SCHEMA.contains(&format!("(id / {TRACE_SEGMENT}, trace)")));
    }

    fn rec(i: u64, t0: u64) -> crate::record::Record {
        use crate::record::{Kind, Record, TraceId};
        let mut r = Record::new(
            Kind::Event,
            crate::timestamp::Timestamp(t0 + i),
            distlog::wire::Level::Info,
        );
        r.service = "svc".into();
        r.message = Some(format!("m{i}"));
        r.fields.insert("i".into(), i.into());
        r.trace_id = Some(TraceId([(i % 2) as u8 + 1; 16]));
        r
    }

    /// A partition of the previous version (JSON text rows, per-second trace
    /// index) is read as it is, and converted when the writer opens it:
    /// old and new rows then read alike, by time and by trace.
    #[test]
    fn schema_1_files_are_read_and_converted() {
        let dir = std::env::temp_dir().join(format!("distlogd-v1-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = store_dir(&dir);
        let t0 = 1_764_104_400 * NS_PER_SEC;
        let file = store
            .join("log")
            .join(partition_name(t0 / NS_PER_SEC, 3600));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        {
            let c = rusqlite::Connection::open(&file).unwrap();
            c.execute_batch(SCHEMA_V1).unwrap();
            for i in 0..4 {
                let r = rec(i, t0);
                let mut json = r.to_json_line();
                json.pop();
                c.execute(
                    "INSERT INTO records(ts, kind, level, service, pid, trace, scope, json) \
                     VALUES (?1, 'event', 3, 'svc', 0, ?2, NULL, ?3)",
                    rusqlite::params![r.ts.0 as i64, r.trace_id.as_ref().map(trace_key), json],
                )
                .unwrap();
            }
        }
        let read = |f: &crate::query::Filter| {
            let mut got = Vec::new();
            query(&store, f, &QueryOptions::default(), |r| {
                got.push(r.message.unwrap_or_default());
                true
            })
            .unwrap();
            got
        };
        let by_trace = crate::query::Filter {
            trace_id: Some(crate::record::TraceId([2; 16])),
            ..Default::default()
        };
        assert_eq!(read(&Default::default()), ["m0", "m1", "m2", "m3"]);
        assert_eq!(read(&by_trace), ["m1", "m3"], "schema 1 trace index");
        let mut w = writer::hourly_writer(&store);
        let new: Vec<_> = (4..8).map(|i| rec(i, t0)).collect();
        let out = w.write(new.iter().map(|r| (r, "log")));
        assert_eq!(out.stored, 4, "{:?}", out.error);
        w.close_all();
        let all: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
        assert_eq!(read(&Default::default()), all);
        assert_eq!(read(&by_trace), ["m1", "m3", "m5", "m7"], "converted");
        let c = rusqlite::Connection::open(&file).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Rows stored after `marks` are the ones `query_rows` finds above
    /// their file's mark; a file created after it has none.
    #[test]
    fn marks_split_earlier_rows_from_later_ones() {
        let dir = std::env::temp_dir().join(format!("distlogd-marks-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = store_dir(&dir);
        let t0 = 1_764_104_400 * NS_PER_SEC;
        let mut w = writer::hourly_writer(&store);
        let early: Vec<_> = (0..4).map(|i| rec(i, t0)).collect();
        assert_eq!(w.write(early.iter().map(|r| (r, "log"))).stored, 4);
        let q = QueryOptions::default();
        let m = marks(&store, &Default::default(), &q).unwrap();
        assert_eq!(m.len(), 1);
        // Later: the same file, and a file of the next hour.
        let late: Vec<_> = (4..6)
            .map(|i| rec(i, t0))
            .chain((6..8).map(|i| rec(i, t0 + 3600 * NS_PER_SEC)))
            .collect();
        assert_eq!(w.write(late.iter().map(|r| (r, "log"))).stored, 4);
        w.close_all();
        let mut later = Vec::new();
        query_rows(&store, &Default::default(), &q, |r, at| {
            if m.get(at.partition)
                .is_none_or(|&(inode, max)| inode != at.inode || at.id > max)
            {
                later.push(r.message.unwrap_or_default());
            }
            true
        })
        .unwrap();
        assert_eq!(later, ["m4", "m5", "m6", "m7"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn class_names() {
        assert!(valid_class_name("log"));
        assert!(valid_class_name("my-class_2"));
        assert!(!valid_class_name(""));
        assert!(!valid_class_name("../x"));
        assert!(!valid_class_name("a b"));
    }
}

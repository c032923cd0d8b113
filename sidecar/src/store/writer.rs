//! The store's write side, used by the router on the drain thread.
//!
//! [`StoreWriter::write`] takes a batch of (record, class) pairs, groups them
//! by partition, and writes each group in one transaction together with the
//! group's per-ring high-water marks (see the [store docs](super)). A
//! partition stays open (one connection) while consecutive batches write
//! it; one that a batch did not write is closed after that batch, so
//! retention may delete it. (The current partition stays open while the
//! sidecar is idle.)
//! Partitions open for writing are listed in a set shared with retention,
//! which never deletes one of them.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags};

use super::compact::kind_name;
use super::{
    is_corrupt, make_private_dir, partition_name, rename_aside, trace_key, StoreError, StoreStats,
    CONVERT_V1, NS_PER_SEC, SCHEMA,
};
use crate::record::Record;

/// Partition files open for writing; retention leaves these alone.
pub type BusySet = Arc<Mutex<HashSet<PathBuf>>>;

const UPSERT_RING: &str = "INSERT INTO rings(ring_hi, ring_lo, seq) VALUES (?1, ?2, ?3)
  ON CONFLICT(ring_hi, ring_lo) DO UPDATE SET seq = max(seq, excluded.seq)";

/// What one [`StoreWriter::write`] did.
#[derive(Debug, Default)]
pub struct WriteOutcome {
    /// Records committed.
    pub stored: u64,
    /// Records skipped: already stored before a restart.
    pub duplicates: u64,
    /// Records dropped because their transaction failed.
    pub lost: u64,
    /// The first failure, if any.
    pub error: Option<StoreError>,
}

struct Open {
    conn: Connection,
    path: PathBuf,
    /// Highest sequence number stored here, per ring.
    hwm: HashMap<[u64; 2], u64>,
    last_used: Instant,
    /// Bytes of rows committed since the checkpointer was last asked.
    unchecked: usize,
}

/// Writes records into partition files under `<data dir>/store`.
pub struct StoreWriter {
    dir: PathBuf,
    partition_ns: u64,
    open: HashMap<(String, u64), Open>,
    busy: BusySet,
    stats: Arc<StoreStats>,
    /// A partition not written for this long is closed.
    pub idle_close: Duration,
    /// The blobs of one multi-row insert (reused).
    bufs: Vec<Vec<u8>>,
    checkpointer: Checkpointer,
    /// Partitions this writer has opened (and so checked) before.
    checked: HashSet<PathBuf>,
    /// Partitions a background check found damaged.
    condemned: Arc<Mutex<HashSet<PathBuf>>>,
    /// Files up to this size are checked before the first write, bigger
    /// ones in the background (`SYNC_CHECK_BYTES`).
    pub sync_check_bytes: u64,
}

impl std::fmt::Debug for StoreWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreWriter")
            .field("dir", &self.dir)
            .field("open", &self.open.len())
            .finish()
    }
}

impl StoreWriter {
    /// A writer for the store directory `dir` (`<data dir>/store`, created
    /// 0700 with its parents if missing), with partitions `partition` wide
    /// (whole seconds, at least 1).
    pub fn new(
        dir: PathBuf,
        partition: Duration,
        busy: BusySet,
        stats: Arc<StoreStats>,
    ) -> Result<StoreWriter, StoreError> {
        if let Some(parent) = dir.parent() {
            make_private_dir(parent)?;
        }
        make_private_dir(&dir)?;
        Ok(StoreWriter {
            dir,
            partition_ns: partition.as_secs().max(1) * NS_PER_SEC,
            open: HashMap::new(),
            busy,
            stats,
            idle_close: Duration::from_secs(10),
            bufs: vec![Vec::new(); ROWS_PER_INSERT],
            checkpointer: Checkpointer::spawn()?,
            checked: HashSet::new(),
            condemned: Arc::default(),
            sync_check_bytes: SYNC_CHECK_BYTES,
        })
    }

    /// Change the partition width (from a reloaded config). Open partitions
    /// are closed; later records go to partitions of the new width.
    pub fn set_partition(&mut self, partition: Duration) {
        let ns = partition.as_secs().max(1) * NS_PER_SEC;
        if ns != self.partition_ns {
            self.close_all();
            self.partition_ns = ns;
        }
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<StoreStats> {
        &self.stats
    }

    /// Write a batch: every record into the partition of its class and time,
    /// one transaction per partition. Failed transactions drop (and count)
    /// their records; the others are stored.
    pub fn write<'a>(
        &mut self,
        batch: impl IntoIterator<Item = (&'a Record, &'a str)>,
    ) -> WriteOutcome {
        let mut out = WriteOutcome::default();
        // Group by partition, keeping the batch order within a group.
        let mut groups: Vec<((&str, u64), Vec<&Record>)> = Vec::new();
        for (r, class) in batch {
            let start = r.ts.0 - r.ts.0 % self.partition_ns;
            match groups.iter_mut().find(|(k, _)| *k == (class, start)) {
                Some((_, v)) => v.push(r),
                None => groups.push(((class, start), vec![r])),
            }
        }
        let touched: Vec<(String, u64)> = groups
            .iter()
            .map(|((c, s), _)| (c.to_string(), *s))
            .collect();
        for ((class, start), recs) in groups {
            match self.write_group(class, start, &recs) {
                Ok((stored, dups)) => {
                    out.stored += stored;
                    out.duplicates += dups;
                }
                Err(e) => {
                    out.lost += recs.len() as u64;
                    if out.error.is_none() {
                        out.error = Some(e);
                    }
                }
            }
        }
        self.stats.stored.fetch_add(out.stored, Ordering::Relaxed);
        self.stats
            .duplicates
            .fetch_add(out.duplicates, Ordering::Relaxed);
        self.stats.lost.fetch_add(out.lost, Ordering::Relaxed);
        self.close_untouched(&touched);
        out
    }

    fn write_group(
        &mut self,
        class: &str,
        start: u64,
        recs: &[&Record],
    ) -> Result<(u64, u64), StoreError> {
        let key = (class.to_string(), start);
        // A partition file removed under us (the data dir deleted by hand)
        // would silently swallow every later write: start a new file.
        if self.open.get(&key).is_some_and(|o| !o.path.exists()) {
            if let Some(o) = self.open.remove(&key) {
                diag!(
                    "store: {} was removed; starting a new one",
                    o.path.display()
                );
                self.release(o);
            }
        }
        // A file the background check found damaged: aside, and a new one.
        if self
            .open
            .get(&key)
            .is_some_and(|o| self.is_condemned(&o.path))
        {
            if let Some(o) = self.open.remove(&key) {
                let path = o.path.clone();
                self.release(o);
                self.set_aside(&path);
            }
        }
        if !self.open.contains_key(&key) {
            let o = self.open_partition(class, start)?;
            self.open.insert(key.clone(), o);
        }
        let Some(o) = self.open.get_mut(&key) else {
            unreachable!("inserted above")
        };
        o.last_used = Instant::now();
        let r = insert_all(o, recs, &mut self.bufs);
        match r {
            Ok(x) => {
                if o.unchecked >= CHECKPOINT_BYTES {
                    o.unchecked = 0;
                    self.checkpointer.nudge(&o.path);
                }
                Ok(x)
            }
            Err(err) => {
                // Start over with a fresh connection next time (after a full
                // disk, an I/O error, a file changed under us).
                let corrupt = is_corrupt(&err);
                if let Some(o) = self.open.remove(&key) {
                    self.release(o);
                }
                let path = self.partition_path(class, start);
                if corrupt {
                    self.set_aside(&path);
                }
                Err(StoreError::Sqlite { path, err })
            }
        }
    }

    fn partition_path(&self, class: &str, start: u64) -> PathBuf {
        self.dir.join(class).join(partition_name(
            start / NS_PER_SEC,
            self.partition_ns / NS_PER_SEC,
        ))
    }

    fn set_aside(&self, path: &Path) {
        self.stats.corrupt_files.fetch_add(1, Ordering::Relaxed);
        match rename_aside(path) {
            Ok(to) => diag!(
                "store: {} is corrupt; moved aside to {}, starting a new one",
                path.display(),
                to.display()
            ),
            Err(e) => diag!(
                "store: {} is corrupt and could not be moved aside: {e}",
                path.display()
            ),
        }
    }

    fn open_partition(&mut self, class: &str, start: u64) -> Result<Open, StoreError> {
        let path = self.partition_path(class, start);
        if let Some(d) = path.parent() {
            make_private_dir(d)?;
        }
        // Registered before the file can exist: retention never deletes a
        // file being opened for writing.
        self.busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.clone());
        // Small files are checked before use; a big one (seconds of reading)
        // in the background, so the drain does not stall.
        let check = !self.checked.contains(&path);
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        let in_background = check && size > self.sync_check_bytes;
        let opened = match open_rw(&path, check && !in_background) {
            Ok(o) => Ok(o),
            Err(StoreError::Sqlite { err, .. }) if is_corrupt(&err) => {
                self.set_aside(&path);
                open_rw(&path, false).inspect_err(|_| self.unbusy(&path))
            }
            Err(e) => {
                self.unbusy(&path);
                Err(e)
            }
        };
        if opened.is_ok() {
            if in_background {
                self.check_in_background(path.clone());
            }
            self.checked.insert(path);
        }
        opened
    }

    fn is_condemned(&self, path: &Path) -> bool {
        self.condemned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(path)
    }

    /// `PRAGMA quick_check` of `path` on a thread of its own (read-only
    /// connection); a damaged file is condemned: the next batch for it
    /// moves it aside and starts a new one.
    fn check_in_background(&self, path: PathBuf) {
        let condemned = self.condemned.clone();
        let spawned = std::thread::Builder::new()
            .name("distlogd-check".into())
            .spawn(move || {
                let conn = Connection::open_with_flags(
                    &path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                );
                if let Err(e) = conn.and_then(|c| quick_check(&c, &path)) {
                    if is_corrupt(&e) {
                        condemned
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(path);
                    } else {
                        diag!("store: could not check {}: {e}", path.display());
                    }
                }
            });
        if let Err(e) = spawned {
            diag!("store: no thread to check a partition: {e}");
        }
    }

    fn unbusy(&self, path: &Path) {
        self.busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(path);
    }

    fn release(&self, o: Open) {
        let path = o.path.clone();
        drop(o); // closes the connection (and checkpoints the WAL)
        self.unbusy(&path);
    }

    /// Close the partitions this batch did not write (so that retention
    /// may delete them), and those idle for `idle_close`.
    fn close_untouched(&mut self, touched: &[(String, u64)]) {
        let now = Instant::now();
        let idle = self.idle_close;
        let stale: Vec<_> = self
            .open
            .iter()
            .filter(|(k, o)| !touched.contains(k) || now.duration_since(o.last_used) >= idle)
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            if let Some(o) = self.open.remove(&k) {
                self.release(o);
            }
        }
    }

    /// Close every open partition.
    pub fn close_all(&mut self) {
        for (_, o) in std::mem::take(&mut self.open) {
            self.release(o);
        }
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        self.close_all();
    }
}

/// Files up to this size are checked before the first write (reading them
/// takes ~0.3 s at the ~200 MB/s measured here); bigger ones in the
/// background (a 2.5 GB file of 10 M records took 13 s).
const SYNC_CHECK_BYTES: u64 = 64 << 20;

/// Ask for a checkpoint after about this many bytes of rows: the WAL then
/// stays around this size (plus what is written while a checkpoint runs).
const CHECKPOINT_BYTES: usize = 8 << 20;

/// The writer's own automatic checkpoint, in pages, only a bound for when
/// the checkpoint thread does not keep up (it runs on the drain thread and
/// waits for the disk).
const WAL_LIMIT_PAGES: u32 = 16384;

/// Checkpoints WAL files on its own thread, so the drain thread never waits
/// for the copy into the database file and its `fsync`.
///
/// `PRAGMA wal_checkpoint(PASSIVE)` on a connection of its own: it copies
/// what is committed without blocking the writer (SQLite allows one writer
/// and one checkpointer at a time); the writer starts the WAL over at its
/// next transaction once a checkpoint copied everything. A connection is
/// opened per checkpoint, without `CREATE` (a partition retention deleted is
/// not made again) and closed at once, so the writer's connection stays the
/// last one and its close removes the WAL.
struct Checkpointer {
    tx: std::sync::mpsc::SyncSender<PathBuf>,
}

impl Checkpointer {
    fn spawn() -> Result<Checkpointer, StoreError> {
        // A few pending requests are plenty: a nudge that does not fit is
        // dropped (the next one or the writer's own bound does the work).
        let (tx, rx) = std::sync::mpsc::sync_channel::<PathBuf>(4);
        std::thread::Builder::new()
            .name("distlogd-checkpoint".into())
            .spawn(move || {
                for path in rx {
                    if let Err(e) = checkpoint(&path) {
                        // A partition closed or removed meanwhile is fine;
                        // the writer reports real write failures itself.
                        if path.exists() {
                            diag!("store: checkpoint of {}: {e}", path.display());
                        }
                    }
                }
            })
            .map_err(|err| StoreError::Io {
                op: "start checkpoint thread",
                path: PathBuf::new(),
                err,
            })?;
        Ok(Checkpointer { tx })
    }

    fn nudge(&self, path: &Path) {
        let _ = self.tx.try_send(path.to_owned());
    }
}

fn checkpoint(path: &Path) -> rusqlite::Result<()> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

/// Open (creating with mode 0600) a partition for writing and read its
/// high-water marks. With `check`, `PRAGMA quick_check` first: a file whose
/// pages are damaged (a crash of the disk, not of the sidecar, or someone
/// else's write) would otherwise take records until SQLite trips over the
/// damage, and they would go down with it; a failed check is reported as
/// corrupt (the caller moves the file aside). The check reads the whole
/// file, so it runs once per file per writer (the first open after a
/// start, or of a file the writer has not seen), not on every reopen, and
/// the caller checks big files in the background instead
/// ([`SYNC_CHECK_BYTES`]).
fn open_rw(path: &Path, check: bool) -> Result<Open, StoreError> {
    let sql = |err| StoreError::Sqlite {
        path: path.to_owned(),
        err,
    };
    // Create the file ourselves so it is 0600 from the start; SQLite gives
    // its -wal and -shm files the mode of the database file.
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|err| StoreError::Io {
            op: "create",
            path: path.to_owned(),
            err,
        })?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
    // journal_mode returns a row; the others do not.
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
        .map_err(sql)?;
    conn.execute_batch(
        "PRAGMA synchronous=NORMAL; PRAGMA cache_size=-2048; PRAGMA temp_store=MEMORY;",
    )
    .map_err(sql)?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_LIMIT_PAGES)
        .map_err(sql)?;
    if check {
        quick_check(&conn, path).map_err(sql)?;
    }
    conn.execute_batch(CONVERT_V1).map_err(sql)?;
    conn.execute_batch(SCHEMA).map_err(sql)?;
    let mut hwm = HashMap::new();
    {
        let mut st = conn
            .prepare("SELECT ring_hi, ring_lo, seq FROM rings")
            .map_err(sql)?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    [r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64],
                    r.get::<_, i64>(2)? as u64,
                ))
            })
            .map_err(sql)?;
        for row in rows {
            let (k, v) = row.map_err(sql)?;
            hwm.insert(k, v);
        }
    }
    Ok(Open {
        conn,
        path: path.to_owned(),
        hwm,
        last_used: Instant::now(),
        unchecked: 0,
    })
}

/// `PRAGMA quick_check`; its complaints (the first few) as an
/// `SQLITE_CORRUPT` error.
fn quick_check(conn: &Connection, path: &Path) -> rusqlite::Result<()> {
    let mut st = conn.prepare("PRAGMA quick_check(5)")?;
    let found: Vec<String> = st
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<_>>()?;
    if found.len() == 1 && found[0] == "ok" {
        return Ok(());
    }
    let what = found.join("; ");
    diag!(
        "store: {} failed its integrity check: {what}",
        path.display()
    );
    Err(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
        Some(format!("integrity check: {what}")),
    ))
}

/// Insert the group in one transaction, skipping records at or below their
/// ring's mark, and raise the marks in the same transaction.
fn insert_all(
    o: &mut Open,
    recs: &[&Record],
    bufs: &mut [Vec<u8>],
) -> rusqlite::Result<(u64, u64)> {
    let mut dups = 0u64;
    let mut marks: Vec<([u64; 2], u64)> = Vec::new();
    let mut fresh: Vec<&Record> = Vec::with_capacity(recs.len());
    for r in recs {
        if let Some(origin) = r.origin {
            if o.hwm.get(&origin.ring_id).is_some_and(|m| origin.seq <= *m) {
                dups += 1;
                continue;
            }
            match marks.iter_mut().find(|(id, _)| *id == origin.ring_id) {
                Some((_, s)) => *s = (*s).max(origin.seq),
                None => marks.push((origin.ring_id, origin.seq)),
            }
        }
        fresh.push(r);
    }
    let tx = o.conn.transaction()?;
    {
        let mut chunks = fresh.chunks_exact(ROWS_PER_INSERT);
        if chunks.len() > 0 {
            let mut ins = tx.prepare_cached(&insert_sql(ROWS_PER_INSERT))?;
            for chunk in chunks.by_ref() {
                o.unchecked += bind_rows(&mut ins, chunk, bufs)?;
                ins.raw_execute()?;
            }
        }
        let mut one = tx.prepare_cached(&insert_sql(1))?;
        for r in chunks.remainder() {
            o.unchecked += bind_rows(&mut one, std::slice::from_ref(r), bufs)?;
            one.raw_execute()?;
        }
        let mut up = tx.prepare_cached(UPSERT_RING)?;
        for (id, seq) in &marks {
            up.execute(params![id[0] as i64, id[1] as i64, *seq as i64])?;
        }
    }
    tx.commit()?;
    for (id, seq) in marks {
        let m = o.hwm.entry(id).or_insert(seq);
        *m = (*m).max(seq);
    }
    Ok((fresh.len() as u64, dups))
}

/// Rows per multi-row `INSERT`: one statement execution for that many
/// rows (8 parameters each, well under SQLite's limit of 32 766).
const ROWS_PER_INSERT: usize = 32;

/// `INSERT INTO records ... VALUES (...), (...)` for `rows` rows.
fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO records (ts, kind, level, service, pid, trace, scope, json) VALUES ",
    );
    for i in 0..rows {
        let p = i * 8;
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&format!(
            "(?{},?{},?{},?{},?{},?{},?{},?{})",
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 5,
            p + 6,
            p + 7,
            p + 8
        ));
    }
    sql
}

/// Bind `rows` to the parameters of an [`insert_sql`] statement, encoding
/// the blobs into `bufs` (one per row: SQLite reads them at execution);
/// returns roughly the bytes the rows take (blob, columns, index entries).
fn bind_rows(
    st: &mut rusqlite::CachedStatement<'_>,
    rows: &[&Record],
    bufs: &mut [Vec<u8>],
) -> rusqlite::Result<usize> {
    let mut bytes = 0;
    for (i, (r, buf)) in rows.iter().zip(bufs.iter_mut()).enumerate() {
        let p = i * 8;
        super::compact::encode(r, buf);
        st.raw_bind_parameter(p + 1, r.ts.0 as i64)?;
        st.raw_bind_parameter(p + 2, kind_name(r.kind))?;
        st.raw_bind_parameter(p + 3, r.level as u8)?;
        st.raw_bind_parameter(p + 4, &r.service)?;
        st.raw_bind_parameter(p + 5, r.pid)?;
        st.raw_bind_parameter(p + 6, r.trace_id.as_ref().map(trace_key))?;
        st.raw_bind_parameter(p + 7, r.scope_id.map(|s| s.0 as i64))?;
        st.raw_bind_parameter(p + 8, &buf[..])?;
        bytes += buf.len() + 64;
    }
    Ok(bytes)
}

/// A writer of hourly partitions under `store`, with its own counters.
#[cfg(test)]
pub(crate) fn hourly_writer(store: &Path) -> StoreWriter {
    StoreWriter::new(
        store.to_owned(),
        Duration::from_secs(3600),
        Arc::new(Mutex::new(Default::default())),
        Arc::default(),
    )
    .expect("a store writer")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Kind;
    use crate::timestamp::Timestamp;
    use distlog::wire::Level;

    fn records(t0: u64, n: u64, tag: &str) -> Vec<Record> {
        (0..n)
            .map(|i| {
                let mut r = Record::new(Kind::Event, Timestamp(t0 + i), Level::Info);
                r.service = tag.into();
                r.message = Some(format!("{tag} {i} {}", "x".repeat(100)));
                r
            })
            .collect()
    }

    /// A partition whose pages were damaged while the sidecar was down is
    /// caught by the check on open (before the first write for a small
    /// file, in the background for a big one), moved aside (kept, not
    /// deleted), and a fresh file takes the new records.
    fn damaged_partition_is_moved_aside(sync_check_bytes: u64) {
        let dir = std::env::temp_dir().join(format!(
            "distlogd-qc-{}-{sync_check_bytes}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let store = dir.join("store");
        let t0 = 1_764_104_400 * NS_PER_SEC;
        let writer = || {
            let mut w = hourly_writer(&store);
            w.sync_check_bytes = sync_check_bytes;
            w
        };
        let mut w = writer();
        let old = records(t0, 3000, "old");
        assert_eq!(w.write(old.iter().map(|r| (r, "log"))).stored, 3000);
        drop(w);
        let file = store
            .join("log")
            .join(partition_name(t0 / NS_PER_SEC, 3600));
        let mut bytes = std::fs::read(&file).unwrap();
        assert!(bytes.len() > 40 * 4096, "{} bytes", bytes.len());
        // Pages 10..20: records and index pages; page 1 (the schema) intact,
        // so the file still opens and only the check sees the damage.
        bytes[10 * 4096..20 * 4096].fill(0xA5);
        std::fs::write(&file, &bytes).unwrap();

        let mut w = writer();
        // In the background, batches may land in the damaged file (or fail
        // on it) until the verdict; then the file goes aside.
        let end = Instant::now() + Duration::from_secs(60);
        while w.stats().corrupt_files.load(Ordering::Relaxed) == 0 {
            assert!(Instant::now() < end, "the damage was not found");
            let early = records(t0 + 5_000, 1, "early");
            let _ = w.write(early.iter().map(|r| (r, "log")));
            std::thread::sleep(Duration::from_millis(10));
        }
        let new = records(t0 + 10_000, 10, "new");
        let out = w.write(new.iter().map(|r| (r, "log")));
        assert_eq!(out.stored, 10, "{:?}", out.error);
        assert_eq!(w.stats().corrupt_files.load(Ordering::Relaxed), 1);
        drop(w);
        let aside: Vec<_> = std::fs::read_dir(store.join("log"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "moved aside, not deleted: {aside:?}");
        let mut got = Vec::new();
        super::super::query(&store, &Default::default(), &Default::default(), |r| {
            got.push(r.service);
            true
        })
        .unwrap();
        // The fresh file: no record of the damaged one; `early` ones only
        // if they came after the move.
        got.retain(|s| s != "early");
        assert_eq!(got, vec!["new".to_string(); 10], "the fresh file");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn damaged_partition_is_moved_aside_on_open() {
        damaged_partition_is_moved_aside(SYNC_CHECK_BYTES);
    }

    #[test]
    fn damaged_big_partition_is_moved_aside_after_a_background_check() {
        damaged_partition_is_moved_aside(0);
    }
}

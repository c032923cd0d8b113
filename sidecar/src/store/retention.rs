//! Expiry: a background thread that deletes whole partition files.
//!
//! Every `every` (default 60 s) it lists each class's partitions and
//! deletes, oldest first,
//!
//! 1. every partition whose end is older than the class's `max_age`, then
//! 2. the oldest partitions while the class's files (with their `-wal` and
//!    `-shm`) take more than `max_size` bytes.
//!
//! A partition open for writing (the [`BusySet`]) is never deleted; the
//! writer closes partitions it has not written for a while, so they become
//! deletable. The thread takes the busy set's lock while it deletes, and the
//! writer registers a file there before it opens it, so a file is never
//! deleted under the writer. Ingest never waits for expiry beyond that lock
//! (held for one `unlink` at a time). Directories of classes not in the
//! configuration are kept by the limits of `log`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::writer::BusySet;
use super::{companions, list_partitions, partition_bytes, ClassLimits, StoreStats};
use crate::timestamp::Timestamp;

/// The classes' limits, shared with whoever reloads the configuration.
pub type SharedLimits = Arc<Mutex<RetentionConfig>>;

/// What retention works by.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// Limits by class name.
    pub classes: HashMap<String, ClassLimits>,
    /// Time between passes.
    pub every: Duration,
}

/// What one pass deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Files deleted because of age.
    pub aged: usize,
    /// Files deleted because of size.
    pub sized: usize,
    /// Bytes reclaimed.
    pub bytes: u64,
}

/// One retention pass over `store` (`<data dir>/store`), at time `now`.
pub fn pass(
    store: &std::path::Path,
    cfg: &RetentionConfig,
    busy: &BusySet,
    now: Timestamp,
) -> PassReport {
    let mut report = PassReport::default();
    let Ok(parts) = list_partitions(store) else {
        return report;
    };
    let mut by_class: HashMap<&str, Vec<&super::Partition>> = HashMap::new();
    for p in &parts {
        by_class.entry(p.class.as_str()).or_default().push(p);
    }
    let fallback = cfg
        .classes
        .get("log")
        .copied()
        .unwrap_or(super::default_classes()[0].1);
    for (class, parts) in by_class {
        let limits = cfg.classes.get(class).copied().unwrap_or(fallback);
        let cutoff = now
            .0
            .saturating_sub(limits.max_age.as_nanos().min(u64::MAX as u128) as u64);
        // oldest first (list_partitions sorts by start)
        let mut sizes: Vec<(PathBuf, u64, bool)> = parts
            .iter()
            .map(|p| (p.path.clone(), partition_bytes(&p.path), p.end_ns <= cutoff))
            .collect();
        let mut total: u64 = sizes.iter().map(|s| s.1).sum();
        let busy = busy.lock().unwrap_or_else(|e| e.into_inner());
        for (path, bytes, old) in sizes.iter_mut() {
            if busy.contains(path) {
                continue;
            }
            let by_size = total > limits.max_size;
            if !(*old || by_size) {
                continue;
            }
            if remove(path) {
                total = total.saturating_sub(*bytes);
                report.bytes += *bytes;
                if *old {
                    report.aged += 1;
                } else {
                    report.sized += 1;
                }
            }
        }
    }
    report
}

fn remove(path: &std::path::Path) -> bool {
    let mut ok = true;
    for p in companions(path) {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                diag!("store: retention could not remove {}: {e}", p.display());
                ok = false;
            }
        }
    }
    ok
}

/// The running retention thread; stops when dropped or [`Retention::stop`]ped.
#[derive(Debug)]
pub struct Retention {
    stop: Arc<(Mutex<bool>, std::sync::Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Retention {
    /// Start the thread. It runs a pass at once, then every `cfg.every`
    /// (read again before each wait, so a reload changes it).
    pub fn spawn(
        store: PathBuf,
        cfg: SharedLimits,
        busy: BusySet,
        stats: Arc<StoreStats>,
    ) -> std::io::Result<Retention> {
        let stop = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("distlogd-retention".into())
            .spawn(move || loop {
                let c = cfg.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if store.is_dir() {
                    let r = pass(&store, &c, &busy, Timestamp::now());
                    let n = (r.aged + r.sized) as u64;
                    if n > 0 {
                        stats.expired_files.fetch_add(n, Ordering::Relaxed);
                        diag!(
                            "store: retention removed {} partition(s) by age, {} by size ({} bytes)",
                            r.aged,
                            r.sized,
                            r.bytes
                        );
                    }
                }
                let (lock, cv) = &*s;
                let stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                let (stopped, _) = cv
                    .wait_timeout_while(stopped, c.every, |st| !*st)
                    .unwrap_or_else(|e| e.into_inner());
                if *stopped {
                    return;
                }
            })?;
        Ok(Retention {
            stop,
            thread: Some(thread),
        })
    }

    /// Stop the thread and wait for it.
    pub fn stop(&mut self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Retention {
    fn drop(&mut self) {
        self.stop();
    }
}

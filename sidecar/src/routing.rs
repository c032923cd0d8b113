//! Retention classes and routing: which class a record belongs to and which
//! sinks it goes to, from the `--config` TOML file (see
//! `sidecar/distlogd.example.toml`).
//!
//! # Classes
//!
//! Every record has one class, the first that applies of:
//!
//! 1. its field `class`, when it names a configured class;
//! 2. its field `kind` = `usage` or `perf` (when that class is configured);
//! 3. the first `[[classify]]` rule whose criteria all hold (target prefix,
//!    service, level, a field value);
//! 4. `log`.
//!
//! Built-in classes: `log` (7 days, 1 GiB), `usage` and `perf` (180 days,
//! 4 GiB each); `[classes.NAME]` changes them or adds more.
//!
//! # Routes
//!
//! `[[route]]` entries send records to sinks: `store`, `stdout` (JSON lines)
//! or `file` (JSON lines appended to `path`), each with optional criteria
//! (class, service, level and more severe, target prefix) that must all
//! hold. A record goes to every sink some route selects; a record no route
//! selects is dropped. Without any `[[route]]` everything goes to the store;
//! `distlogd run --stdout` adds a route of everything to stdout.
//!
//! # Reload
//!
//! SIGHUP makes `distlogd run` read the file again. A file that does not
//! parse is reported and the old configuration stays. The new one takes
//! effect between two batches of the drain thread, so no record is lost or
//! routed half by the old and half by the new rules.
//!
//! # Failures of a sink
//!
//! A store write that fails drops that transaction's records, counts them,
//! and the router sends a `loss` record (service `distlogd`, field `lost`,
//! `reason`) to the other sinks at once and to the store when it writes
//! again. A stdout or file sink whose write fails is reported and retried
//! with the next batch (a closed pipe drops it for good).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use distlog::wire::Level;
use serde::Deserialize;

use crate::query::{parse_duration, Filter, Priority};
use crate::record::{Kind, Record, RouteKey};
use crate::sink::{Sink, SinkError, StdoutSink};
use crate::store::retention::{Retention, RetentionConfig, SharedLimits};
use crate::store::writer::BusySet;
use crate::store::{self, ClassLimits, StoreError, StoreStats, StoreWriter};
use crate::subscribe::Hub;
use crate::timestamp::Timestamp;

/// Why a configuration file is not usable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Could not read it.
    #[error("config {}: {err}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        err: std::io::Error,
    },
    /// Not TOML of the expected shape.
    #[error("config {}: {err}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        err: Box<toml::de::Error>,
    },
    /// A value is wrong.
    #[error("config {}: {what}", path.display())]
    Value {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// The `--config` file, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[store]`.
    #[serde(default)]
    pub store: StoreSection,
    /// `[classes.NAME]`.
    #[serde(default)]
    pub classes: BTreeMap<String, ClassSection>,
    /// `[[classify]]`.
    #[serde(default)]
    pub classify: Vec<ClassifyRule>,
    /// `[[route]]`.
    #[serde(default)]
    pub route: Vec<RouteSection>,
}

/// `[store]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// Width of one partition file, e.g. `"1h"` (default).
    pub partition: Option<String>,
    /// Time between retention passes, e.g. `"60s"` (default).
    pub expire_every: Option<String>,
}

/// `[classes.NAME]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassSection {
    /// e.g. `"7d"`.
    pub max_age: Option<String>,
    /// e.g. `"1GiB"`, `"500MB"`, `"1048576"`.
    pub max_size: Option<String>,
}

/// `[[classify]]`: records matching every criterion given get `class`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyRule {
    /// The class.
    pub class: String,
    /// Target starts with this.
    pub target: Option<String>,
    /// Service equals.
    pub service: Option<String>,
    /// This level and more severe (`warn`).
    pub level: Option<String>,
    /// A field equals a value: `"audit=true"`.
    pub field: Option<String>,
}

/// `[[route]]`: records matching every criterion given go to `sink`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// `store`, `stdout` or `file`.
    pub sink: String,
    /// For `file`: the file (JSON lines, appended, created 0600).
    pub path: Option<PathBuf>,
    /// Class is one of these.
    #[serde(default)]
    pub class: Vec<String>,
    /// Service is one of these.
    #[serde(default)]
    pub service: Vec<String>,
    /// This level and more severe.
    pub level: Option<String>,
    /// Target starts with one of these.
    #[serde(default)]
    pub target: Vec<String>,
}

/// A size like `1GiB`, `4 GiB`, `500MB`, `64k`, `1048576`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.bytes().take_while(|c| c.is_ascii_digit()).count();
    let n: u64 = s[..digits].parse().ok()?;
    let mul: u64 = match s[digits..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mul)
}

/// A destination, as the routes name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SinkKey {
    /// The store.
    Store,
    /// Standard output.
    Stdout,
    /// A file of JSON lines.
    File(PathBuf),
}

#[derive(Debug, Clone)]
struct Classify {
    class: usize,
    filter: Filter,
}

#[derive(Debug, Clone)]
struct Route {
    sink: SinkKey,
    classes: Vec<usize>,
    filter: Filter,
}

/// The checked configuration: classes, rules, routes.
#[derive(Debug, Clone)]
pub struct Routing {
    /// Class names; index 0 is `log`.
    classes: Vec<String>,
    limits: Vec<ClassLimits>,
    rules: Vec<Classify>,
    routes: Vec<Route>,
    /// Partition width.
    pub partition: Duration,
    /// Time between retention passes.
    pub expire_every: Duration,
    /// Every rule and route decides from service, target, level, kind and
    /// field values only (what a [`RouteKey`] pins down, field values
    /// aside): decisions can be cached per key.
    per_call_site: bool,
    /// The fields whose values decide: `class`, `kind` and those the
    /// rules compare. A record with none of them is decided by its key.
    value_keys: Vec<String>,
}

fn level_of(path: &Path, s: &str) -> Result<Level, ConfigError> {
    s.parse::<Priority>()
        .map(|p| p.least)
        .map_err(|what| ConfigError::Value {
            path: path.to_owned(),
            what,
        })
}

impl Routing {
    /// The defaults: the built-in classes, everything to the store (and to
    /// stdout with `stdout`).
    pub fn default_for(stdout: bool) -> Routing {
        Routing::from_file(&FileConfig::default(), Path::new("(defaults)"), stdout)
            .unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }

    /// Read and check a config file; `stdout` adds a route of everything to
    /// stdout (`--stdout`).
    pub fn load(path: &Path, stdout: bool) -> Result<Routing, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
            path: path.to_owned(),
            err,
        })?;
        let fc: FileConfig = toml::from_str(&text).map_err(|err| ConfigError::Parse {
            path: path.to_owned(),
            err: Box::new(err),
        })?;
        Routing::from_file(&fc, path, stdout)
    }

    /// Check a parsed config file.
    pub fn from_file(fc: &FileConfig, path: &Path, stdout: bool) -> Result<Routing, ConfigError> {
        let bad = |what: String| ConfigError::Value {
            path: path.to_owned(),
            what,
        };
        let mut classes: Vec<String> = Vec::new();
        let mut limits: Vec<ClassLimits> = Vec::new();
        for (name, l) in store::default_classes() {
            classes.push(name);
            limits.push(l);
        }
        for (name, c) in &fc.classes {
            if !store::valid_class_name(name) {
                return Err(bad(format!(
                    "class name {name:?}: use letters, digits, '_' and '-'"
                )));
            }
            let i = match classes.iter().position(|n| n == name) {
                Some(i) => i,
                None => {
                    classes.push(name.clone());
                    limits.push(store::default_classes()[0].1);
                    classes.len() - 1
                }
            };
            if let Some(a) = &c.max_age {
                limits[i].max_age = parse_duration(a)
                    .ok_or_else(|| bad(format!("classes.{name}.max_age {a:?}: want e.g. 7d")))?;
            }
            if let Some(s) = &c.max_size {
                limits[i].max_size = parse_size(s)
                    .ok_or_else(|| bad(format!("classes.{name}.max_size {s:?}: want e.g. 1GiB")))?;
            }
        }
        let class_index = |name: &str| {
            classes.iter().position(|c| c == name).ok_or_else(|| {
                bad(format!(
                    "unknown class {name:?}: add a [classes.{name}] table"
                ))
            })
        };
        let mut rules = Vec::new();
        for r in &fc.classify {
            let mut filter = Filter::default();
            if let Some(t) = &r.target {
                filter.targets.push(t.clone());
            }
            if let Some(s) = &r.service {
                filter.services.push(s.clone());
            }
            if let Some(l) = &r.level {
                filter.level = Some(level_of(path, l)?);
            }
            if let Some(f) = &r.field {
                let (k, v) = f
                    .split_once('=')
                    .ok_or_else(|| bad(format!("classify field {f:?}: want KEY=VALUE")))?;
                filter.fields.push((k.to_string(), v.to_string()));
            }
            rules.push(Classify {
                class: class_index(&r.class)?,
                filter,
            });
        }
        let mut routes = Vec::new();
        for r in &fc.route {
            let sink = match (r.sink.as_str(), &r.path) {
                ("store", None) => SinkKey::Store,
                ("stdout", None) => SinkKey::Stdout,
                ("file", Some(p)) => SinkKey::File(p.clone()),
                ("file", None) => return Err(bad("route to file: give its path".into())),
                ("store" | "stdout", Some(_)) => {
                    return Err(bad(format!("route to {}: no path expected", r.sink)))
                }
                (other, _) => {
                    return Err(bad(format!(
                        "route sink {other:?}: want store, stdout or file"
                    )))
                }
            };
            let mut filter = Filter {
                services: r.service.clone(),
                targets: r.target.clone(),
                ..Filter::default()
            };
            if let Some(l) = &r.level {
                filter.level = Some(level_of(path, l)?);
            }
            let classes = r
                .class
                .iter()
                .map(|c| class_index(c))
                .collect::<Result<_, _>>()?;
            routes.push(Route {
                sink,
                classes,
                filter,
            });
        }
        if routes.is_empty() {
            routes.push(Route {
                sink: SinkKey::Store,
                classes: Vec::new(),
                filter: Filter::default(),
            });
        }
        if stdout {
            routes.push(Route {
                sink: SinkKey::Stdout,
                classes: Vec::new(),
                filter: Filter::default(),
            });
        }
        let dur = |v: &Option<String>, name: &str, default: u64| -> Result<Duration, ConfigError> {
            match v {
                None => Ok(Duration::from_secs(default)),
                Some(s) => parse_duration(s)
                    .filter(|d| d.as_secs() >= 1)
                    .ok_or_else(|| bad(format!("store.{name} {s:?}: want e.g. 1h (at least 1s)"))),
            }
        };
        let per_call_site = rules
            .iter()
            .map(|r| &r.filter)
            .chain(routes.iter().map(|r| &r.filter))
            .all(|f| {
                Filter {
                    services: Vec::new(),
                    targets: Vec::new(),
                    level: None,
                    kinds: Vec::new(),
                    fields: Vec::new(),
                    ..f.clone()
                } == Filter::default()
            });
        let value_keys = ["class", "kind"]
            .into_iter()
            .map(String::from)
            .chain(
                rules
                    .iter()
                    .flat_map(|r| r.filter.fields.iter().map(|(k, _)| k.clone())),
            )
            .collect();
        Ok(Routing {
            classes,
            limits,
            rules,
            routes,
            per_call_site,
            value_keys,
            partition: dur(&fc.store.partition, "partition", 3600)?,
            expire_every: dur(&fc.store.expire_every, "expire_every", 60)?,
        })
    }

    /// The class of a record (see the [module docs](self)).
    pub fn class_of(&self, r: &Record) -> usize {
        self.class_index(r)
    }

    fn class_index(&self, r: &Record) -> usize {
        if let Some(serde_json::Value::String(c)) = r.fields.get("class") {
            if let Some(i) = self.classes.iter().position(|n| n == c) {
                return i;
            }
        }
        if let Some(serde_json::Value::String(k)) = r.fields.get("kind") {
            if k == "usage" || k == "perf" {
                if let Some(i) = self.classes.iter().position(|n| n == k) {
                    return i;
                }
            }
        }
        for rule in &self.rules {
            if rule.filter.matches(r) {
                return rule.class;
            }
        }
        0
    }

    /// Name of class `i`.
    pub fn class_name(&self, i: usize) -> &str {
        &self.classes[i]
    }

    /// Whether some route goes to the store.
    pub fn wants_store(&self) -> bool {
        self.routes.iter().any(|r| r.sink == SinkKey::Store)
    }

    /// The retention configuration of these classes.
    pub fn retention(&self) -> RetentionConfig {
        RetentionConfig {
            classes: self
                .classes
                .iter()
                .cloned()
                .zip(self.limits.iter().copied())
                .collect(),
            every: self.expire_every,
        }
    }

    fn sinks(&self) -> Vec<SinkKey> {
        let mut v: Vec<SinkKey> = Vec::new();
        for r in &self.routes {
            if !v.contains(&r.sink) {
                v.push(r.sink.clone());
            }
        }
        v
    }
}

/// JSON lines appended to a file (created 0600), one write per batch.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
}

impl FileSink {
    /// Open (create 0600, append) `path`.
    pub fn open(path: &Path) -> std::io::Result<FileSink> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        Ok(FileSink {
            path: path.to_owned(),
            file,
            buf: Vec::new(),
        })
    }
}

impl Sink for FileSink {
    fn name(&self) -> &str {
        self.path.to_str().unwrap_or("file")
    }

    fn write_batch(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        self.buf.clear();
        for r in batch {
            r.write_json_line(&mut self.buf);
        }
        self.file.write_all(&self.buf)?;
        Ok(())
    }
}

struct Slot {
    key: SinkKey,
    sink: Option<Box<dyn Sink>>,
    failing: bool,
}

/// The store's side of the router: writer, retention, counters.
struct StorePart {
    writer: StoreWriter,
    retention: SharedLimits,
    _thread: Retention,
    /// Records lost and not yet reported in the store itself.
    unreported: u64,
    failing_since: Option<Instant>,
    last_diag: Option<Instant>,
    lost_while_failing: u64,
}

/// The one sink the drain thread sees: classifies every record and hands it
/// to the sinks its routes select. Reloads its [`Routing`] between batches.
pub struct Router {
    routing: Routing,
    slots: Vec<Slot>,
    store: Option<StorePart>,
    store_dir: PathBuf,
    stats: Arc<StoreStats>,
    reload: Option<mpsc::Receiver<Routing>>,
    host: String,
    classes: Vec<usize>,
    masks: Vec<u64>,
    decided: Decided,
    /// Live subscribers, fed after the sinks (see [`crate::subscribe`]).
    hub: Option<Arc<Hub>>,
}

/// Class and sink mask by [`RouteKey`], for records whose decision their
/// key settles (see [`Routing::per_call_site`]): deciding costs ~250
/// instructions a record (field lookups, every route's filter), a hit
/// ~20. Direct-mapped and bounded: a collision only costs a decision.
/// Emptied whenever the routing or the sinks change.
struct Decided(Vec<Option<(RouteKey, usize, u64)>>);

impl Decided {
    const BITS: u32 = 8;

    fn new() -> Decided {
        Decided(vec![None; 1 << Decided::BITS])
    }

    fn index(k: &RouteKey) -> usize {
        let h = k.conn.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ u64::from(k.callsite).wrapping_mul(0xff51_afd7_ed55_8ccd)
            ^ k.kind as u64;
        (h >> (64 - Decided::BITS)) as usize
    }

    fn get(&self, k: &RouteKey) -> Option<(usize, u64)> {
        match self.0[Decided::index(k)] {
            Some((key, c, m)) if key == *k => Some((c, m)),
            _ => None,
        }
    }

    fn put(&mut self, k: RouteKey, class: usize, mask: u64) {
        self.0[Decided::index(&k)] = Some((k, class, mask));
    }

    fn clear(&mut self) {
        self.0.iter_mut().for_each(|e| *e = None);
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("routing", &self.routing)
            .finish()
    }
}

impl Router {
    /// A router with `routing`, its store (when a route wants one) under
    /// `data_dir/store`, and a retention thread. `reload` delivers new
    /// configurations (SIGHUP).
    pub fn new(
        routing: Routing,
        data_dir: &Path,
        reload: Option<mpsc::Receiver<Routing>>,
    ) -> Result<Router, StoreError> {
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut r = Router {
            routing: routing.clone(),
            slots: Vec::new(),
            store: None,
            store_dir: store::store_dir(data_dir),
            stats: Arc::new(StoreStats::default()),
            reload,
            host,
            classes: Vec::new(),
            masks: Vec::new(),
            decided: Decided::new(),
            hub: None,
        };
        r.apply(routing)?;
        Ok(r)
    }

    /// The store's counters.
    pub fn stats(&self) -> Arc<StoreStats> {
        self.stats.clone()
    }

    fn apply(&mut self, routing: Routing) -> Result<(), StoreError> {
        if routing.wants_store() && self.store.is_none() {
            let busy: BusySet = Arc::new(Mutex::new(Default::default()));
            let writer = StoreWriter::new(
                self.store_dir.clone(),
                routing.partition,
                busy.clone(),
                self.stats.clone(),
            )?;
            let limits: SharedLimits = Arc::new(Mutex::new(routing.retention()));
            let thread = Retention::spawn(
                self.store_dir.clone(),
                limits.clone(),
                busy,
                self.stats.clone(),
            )
            .map_err(|err| StoreError::Io {
                op: "start retention thread",
                path: self.store_dir.clone(),
                err,
            })?;
            self.store = Some(StorePart {
                writer,
                retention: limits,
                _thread: thread,
                unreported: 0,
                failing_since: None,
                last_diag: None,
                lost_while_failing: 0,
            });
        }
        if let Some(s) = &mut self.store {
            s.writer.set_partition(routing.partition);
            *s.retention.lock().unwrap_or_else(|e| e.into_inner()) = routing.retention();
        }
        // Keep sinks still named, open new ones, close the rest.
        let mut old: HashMap<SinkKey, Slot> =
            self.slots.drain(..).map(|s| (s.key.clone(), s)).collect();
        for key in routing.sinks().into_iter().take(64) {
            let slot = match old.remove(&key) {
                Some(s) => s,
                None => {
                    let sink: Option<Box<dyn Sink>> = match &key {
                        SinkKey::Store => None,
                        SinkKey::Stdout => Some(Box::new(StdoutSink::new())),
                        SinkKey::File(p) => match FileSink::open(p) {
                            Ok(f) => Some(Box::new(f)),
                            Err(e) => {
                                diag!(
                                    "route to file {}: {e}; records for it are dropped",
                                    p.display()
                                );
                                None
                            }
                        },
                    };
                    Slot {
                        key,
                        sink,
                        failing: false,
                    }
                }
            };
            self.slots.push(slot);
        }
        self.routing = routing;
        self.decided.clear();
        Ok(())
    }

    /// Hand `batch` to the live subscribers with the classes decided.
    /// Out of line: inlined, it changed how `write_batch`'s per-record
    /// loops compiled (+6 instructions a record, callgrind).
    #[inline(never)]
    fn publish(&self, batch: &[Record]) {
        if let Some(h) = &self.hub {
            let (routing, classes) = (&self.routing, &self.classes);
            h.publish(batch, |i, _| routing.class_name(classes[i]));
        }
    }

    /// Class and sink mask of every record of `batch`, into `classes` and
    /// `masks`.
    fn decide_all(&mut self, batch: &[Record]) {
        self.classes.clear();
        self.masks.clear();
        // A ring's records mostly come from one call site: the next record
        // of the last settled key takes its decision without hashing the
        // key (the routing and sinks change only between batches).
        let mut last: Option<(RouteKey, (usize, u64))> = None;
        for r in batch {
            let (c, m) = match (r.route_key, last) {
                (Some(k), Some((lk, d))) if k == lk => d,
                _ => {
                    let (d, settled) = self.decide_keyed(r);
                    if let Some(k) = settled {
                        last = Some((k, d));
                    }
                    d
                }
            };
            self.classes.push(c);
            self.masks.push(m);
        }
    }

    /// Class and sink mask of `r`.
    #[cfg(test)]
    fn decide(&mut self, r: &Record) -> (usize, u64) {
        self.decide_keyed(r).0
    }

    /// Class and sink mask of `r`, and the key (`r`'s) that settles them
    /// for every record of the key until the routing or the sinks change,
    /// if one does.
    #[inline]
    fn decide_keyed(&mut self, r: &Record) -> ((usize, u64), Option<RouteKey>) {
        let key = r.route_key.filter(|_| self.routing.per_call_site);
        if let Some(k) = key {
            if let Some(hit) = self.decided.get(&k) {
                return (hit, key);
            }
        }
        let c = self.routing.class_index(r);
        let mut m = 0u64;
        for route in &self.routing.routes {
            if (route.classes.is_empty() || route.classes.contains(&c)) && route.filter.matches(r) {
                if let Some(i) = self.slots.iter().position(|s| s.key == route.sink) {
                    m |= 1 << i;
                }
            }
        }
        if let Some(k) = key {
            // Records of this key have the same field names: without these
            // none of them has a value that could decide otherwise.
            if !self
                .routing
                .value_keys
                .iter()
                .any(|n| r.fields.contains_key(n))
            {
                self.decided.put(k, c, m);
                return ((c, m), key);
            }
        }
        ((c, m), None)
    }
}

impl Sink for Router {
    fn name(&self) -> &str {
        "router"
    }

    fn wants_whole_rounds(&self) -> bool {
        self.store.is_some()
    }

    fn feed_subscribers(&mut self, hub: &Arc<Hub>) -> bool {
        self.hub = Some(hub.clone());
        true
    }

    fn write_batch(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        if let Some(rx) = &self.reload {
            let mut newest = None;
            while let Ok(r) = rx.try_recv() {
                newest = Some(r);
            }
            if let Some(r) = newest {
                match self.apply(r) {
                    Ok(()) => diag!("configuration reloaded"),
                    Err(e) => diag!("configuration reload: {e}; store unchanged"),
                }
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        // Before the store commit (see `crate::subscribe`).
        if let Some(h) = &self.hub {
            h.begin_batch();
        }
        self.decide_all(batch);
        let mut losses: Vec<Record> = Vec::new();
        // The store first: its losses are reported to the other sinks.
        if let Some(si) = self.slots.iter().position(|s| s.key == SinkKey::Store) {
            if let Some(st) = &mut self.store {
                let bit = 1u64 << si;
                let routing = &self.routing;
                // Earlier losses go into the store with the first batch it
                // takes again.
                let pending = if st.unreported > 0 {
                    Some(self_loss(
                        &self.host,
                        st.unreported,
                        "earlier store write failures",
                    ))
                } else {
                    None
                };
                let items = batch
                    .iter()
                    .zip(self.classes.iter().zip(self.masks.iter()))
                    .filter(|(_, (_, m))| *m & bit != 0)
                    .map(|(r, (c, _))| (r, routing.class_name(*c)))
                    .chain(pending.as_ref().map(|r| (r, "log")));
                let out = st.writer.write(items);
                if pending.is_some() && out.error.is_none() {
                    st.unreported = 0;
                }
                // The pending loss record itself is not a lost record.
                let lost = out
                    .lost
                    .saturating_sub(u64::from(pending.is_some() && out.error.is_some()));
                let now = Instant::now();
                if let Some(e) = &out.error {
                    st.unreported += lost;
                    st.lost_while_failing += lost;
                    if st.failing_since.is_none() {
                        st.failing_since = Some(now);
                    }
                    if st
                        .last_diag
                        .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
                    {
                        diag!(
                            "store: write failed, {} records dropped so far (draining goes on): {e}",
                            st.lost_while_failing
                        );
                        st.last_diag = Some(now);
                    }
                    losses.push(self_loss(&self.host, lost, &e.to_string()));
                } else if st.failing_since.take().is_some() {
                    diag!(
                        "store: writing again; {} records were dropped",
                        st.lost_while_failing
                    );
                    st.lost_while_failing = 0;
                    st.last_diag = None;
                }
            }
        }
        let mut sub: Vec<Record> = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(sink) = &mut slot.sink else {
                continue;
            };
            let bit = 1u64 << i;
            let all = self.masks.iter().all(|m| m & bit != 0);
            let res = if all && losses.is_empty() {
                sink.write_batch(batch)
            } else {
                sub.clear();
                sub.extend(
                    batch
                        .iter()
                        .zip(self.masks.iter())
                        .filter(|(_, m)| *m & bit != 0)
                        .map(|(r, _)| r.clone()),
                );
                sub.extend(losses.iter().cloned());
                if sub.is_empty() {
                    continue;
                }
                sink.write_batch(&sub)
            };
            match res {
                Ok(()) => {
                    if slot.failing {
                        diag!("sink {}: writing again", sink.name());
                        slot.failing = false;
                    }
                }
                Err(e) => {
                    let closed = match &e {
                        SinkError::Closed => true,
                        SinkError::Io(io) => io.kind() == std::io::ErrorKind::BrokenPipe,
                    };
                    if closed {
                        diag!("sink {}: {e}; dropping it", sink.name());
                        slot.sink = None;
                    } else if !slot.failing {
                        diag!(
                            "sink {}: {e}; its records are dropped until it works again",
                            sink.name()
                        );
                        slot.failing = true;
                    }
                }
            }
        }
        // Last: a record is in the store before a subscriber sees it.
        if self.hub.is_some() {
            self.publish(batch);
        }
        Ok(())
    }
}

fn self_loss(host: &str, lost: u64, reason: &str) -> Record {
    let mut r = Record::new(Kind::Loss, Timestamp::now(), Level::Error);
    r.service = "distlogd".into();
    r.host = host.to_string();
    r.pid = std::process::id();
    r.target = Some("distlogd::store".into());
    r.message = Some(format!("{lost} records could not be stored: {reason}"));
    r.fields.insert("lost".into(), lost.into());
    r.fields.insert("reason".into(), reason.into());
    r
}

/// Build the router for `distlogd run`: the config file (if any) or the
/// defaults, the store under `data_dir`, and a SIGHUP handler thread that
/// reloads the file.
pub fn router_for_run(
    config: Option<&Path>,
    stdout: bool,
    data_dir: &Path,
) -> Result<Router, anyhow::Error> {
    let routing = match config {
        Some(p) => Routing::load(p, stdout)?,
        None => Routing::default_for(stdout),
    };
    let (tx, rx) = mpsc::channel();
    let path = config.map(Path::to_owned);
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
    std::thread::Builder::new()
        .name("distlogd-sighup".into())
        .spawn(move || {
            for _ in signals.forever() {
                let Some(p) = &path else {
                    diag!("SIGHUP: no --config file to reload");
                    continue;
                };
                match Routing::load(p, stdout) {
                    Ok(r) => {
                        if tx.send(r).is_err() {
                            return;
                        }
                        diag!("SIGHUP: {} read; applied with the next batch", p.display());
                    }
                    Err(e) => diag!("SIGHUP: {e}; keeping the old configuration"),
                }
            }
        })?;
    Ok(Router::new(routing, data_dir, Some(rx))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("4 GiB"), Some(4 << 30));
        assert_eq!(parse_size("500MB"), Some(500_000_000));
        assert_eq!(parse_size("64k"), Some(64_000));
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("1 parsec"), None);
    }

    #[test]
    fn example_file_parses() {
        let text = include_str!("../distlogd.example.toml");
        let fc: FileConfig = toml::from_str(text).unwrap();
        let r = Routing::from_file(&fc, Path::new("example"), false).unwrap();
        assert!(r.wants_store());
    }

    #[test]
    fn classes_and_routes() {
        let fc: FileConfig = toml::from_str(
            r#"
            [classes.log]
            max_age = "1d"
            [classes.audit]
            max_size = "10MiB"
            [[classify]]
            class = "usage"
            target = "billing::"
            [[classify]]
            class = "audit"
            field = "audit=true"
            [[route]]
            sink = "store"
            [[route]]
            sink = "stdout"
            level = "warn"
            "#,
        )
        .unwrap();
        let r = Routing::from_file(&fc, Path::new("t"), false).unwrap();
        let mut rec = Record::new(Kind::Event, Timestamp(0), Level::Info);
        assert_eq!(r.class_name(r.class_of(&rec)), "log");
        rec.target = Some("billing::meter".into());
        assert_eq!(r.class_name(r.class_of(&rec)), "usage");
        rec.target = None;
        rec.fields.insert("audit".into(), true.into());
        assert_eq!(r.class_name(r.class_of(&rec)), "audit");
        rec.fields.insert("kind".into(), "perf".into());
        assert_eq!(r.class_name(r.class_of(&rec)), "perf");
        rec.fields.insert("class".into(), "usage".into());
        assert_eq!(r.class_name(r.class_of(&rec)), "usage");
        let ret = r.retention();
        assert_eq!(ret.classes["log"].max_age, Duration::from_secs(86_400));
        assert_eq!(ret.classes["audit"].max_size, 10 << 20);
        assert_eq!(r.sinks(), [SinkKey::Store, SinkKey::Stdout]);
        for bad in [
            "bogus = 1",
            "[[route]]\nsink = \"file\"",
            "[[route]]\nsink = \"ftp\"",
            "[[classify]]\nclass = \"nope\"",
            "[classes.log]\nmax_age = \"forever\"",
            "[classes.\"a/b\"]",
        ] {
            let parsed: Result<FileConfig, _> = toml::from_str(bad);
            let ok = parsed
                .map(|fc| Routing::from_file(&fc, Path::new("t"), false).is_ok())
                .unwrap_or(false);
            assert!(!ok, "{bad}");
        }
    }

    /// Records with a route key are decided once per key, unless a field
    /// value can decide (`class`, `kind`, a rule's field); a reload forgets
    /// the decisions.
    #[test]
    fn decisions_by_route_key() {
        let routing = |text: &str| {
            let fc: FileConfig = toml::from_str(text).unwrap();
            Routing::from_file(&fc, Path::new("t"), false).unwrap()
        };
        let first = routing(
            r#"
            [classes.audit]
            [[classify]]
            class = "audit"
            field = "audit=true"
            [[route]]
            sink = "stdout"
            level = "warn"
            [[route]]
            sink = "stdout"
            class = ["audit"]
            "#,
        );
        assert!(first.per_call_site);
        let audit = first.classes.iter().position(|c| c == "audit").unwrap();
        let perf = first.classes.iter().position(|c| c == "perf").unwrap();
        let mut router = Router::new(first, Path::new("/nonexistent"), None).unwrap();
        let rec = |level, callsite, fields: &[(&str, serde_json::Value)]| {
            let mut r = Record::new(Kind::Event, Timestamp(0), level);
            r.route_key = Some(RouteKey {
                conn: 1,
                callsite,
                kind: Kind::Event,
            });
            for (k, v) in fields {
                r.fields.insert(k.to_string(), v.clone());
            }
            r
        };
        let warn = rec(Level::Warn, 1, &[("n", 1.into())]);
        let info = rec(Level::Info, 2, &[("n", 1.into())]);
        for _ in 0..2 {
            assert_eq!(router.decide(&warn), (0, 1));
            assert_eq!(router.decide(&info), (0, 0));
        }
        assert!(router.decided.get(&info.route_key.unwrap()).is_some());
        for (k, v, want) in [
            ("audit", true.into(), (audit, 1)),
            ("audit", false.into(), (0, 0)),
            ("audit", true.into(), (audit, 1)),
            ("kind", "perf".into(), (perf, 0)),
            ("kind", "other".into(), (0, 0)),
            ("class", "audit".into(), (audit, 1)),
            ("class", "log".into(), (0, 0)),
        ] {
            let r = rec(Level::Info, 3, &[(k, v)]);
            assert_eq!(router.decide(&r), want, "{k}");
            assert_eq!(router.decide(&r), want, "{k} again");
        }
        // In a batch, a record of the last settled key takes its decision
        // again; one that its values decide (audit) neither takes it nor
        // leaves its own for the next.
        let batch = [
            warn.clone(),
            rec(Level::Info, 3, &[("audit", true.into())]),
            warn.clone(),
            rec(Level::Info, 3, &[("audit", false.into())]),
            rec(Level::Info, 3, &[("audit", true.into())]),
            info.clone(),
            info.clone(),
        ];
        router.decide_all(&batch);
        let got: Vec<_> = router.classes.iter().zip(&router.masks).collect();
        let want = [
            (0, 1),
            (audit, 1),
            (0, 1),
            (0, 0),
            (audit, 1),
            (0, 0),
            (0, 0),
        ];
        assert_eq!(got, want.iter().map(|(c, m)| (c, m)).collect::<Vec<_>>());
        router
            .apply(routing("[[route]]\nsink = \"stdout\"\nlevel = \"info\""))
            .unwrap();
        assert_eq!(router.decide(&info), (0, 1));
    }
}

//! [`Control`]: the directive table, the connected clients' control
//! segments, and the changes between them.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use distlog::control::{
    self, ControlError, ControlHeader, Directives, CONTROL_BYTES, CONTROL_HEADER_BYTES,
};
use distlog::ring::RawMemory;
use distlog::segment::{Segment, SegmentError};
use distlog::wire::Level;
use serde_json::json;
use tokio::sync::Notify;

use super::Reply;
use crate::client::Identity;
use crate::directives::{self, human_duration, Directive, DirectiveError, Scope, Table};
use crate::drain::{DrainMsg, DrainSender};
use crate::record::{Kind, Record};
use crate::timestamp::Timestamp;
use crate::Config;

/// Who sent a control request (from `SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its uid.
    pub uid: u32,
    /// Its pid.
    pub pid: u32,
}

/// A control segment the sidecar writes and one client maps read-only.
struct ControlSegment {
    seg: Segment,
}

impl ControlSegment {
    /// A fresh segment with its header, not yet sealed against writes.
    fn create() -> Result<ControlSegment, SegmentError> {
        let seg = Segment::create_sealable("distlog-control", CONTROL_BYTES)?;
        // SAFETY: a fresh, private, page-aligned mapping of CONTROL_BYTES
        // (> CONTROL_HEADER_BYTES >= size_of::<ControlHeader>()); nobody else
        // has its fd yet, so nothing reads it while we write the header.
        unsafe {
            std::ptr::write(
                seg.as_ptr() as *mut ControlHeader,
                ControlHeader::new(CONTROL_BYTES),
            )
        };
        Ok(ControlSegment { seg })
    }

    /// Write directives under the sequence lock; the new sequence number.
    fn write(&self, d: &Directives) -> Result<u64, ControlError> {
        // Only we write the segment (the client's mapping is read-only:
        // F_SEAL_FUTURE_WRITE), only under the `Control` mutex, so
        // `control::write` has its single writer.
        // SAFETY: the header was written at offset 0 by `create` and lives
        // as long as `self.seg`.
        let hdr = unsafe { &*(self.seg.as_ptr() as *const ControlHeader) };
        // SAFETY: the payload region lies inside the mapping, starts
        // CONTROL_HEADER_BYTES (64, so 8-aligned) in, and lives as long as
        // `self.seg`, which outlives this call.
        let mem = unsafe {
            RawMemory::new(
                self.seg.as_ptr().add(CONTROL_HEADER_BYTES),
                CONTROL_BYTES - CONTROL_HEADER_BYTES,
            )
        };
        control::write(hdr, &mem, d)
    }
}

/// A connected client, as the control side knows it.
struct Live {
    id: u64,
    service: String,
    pid: u32,
    uid: u32,
    library: String,
    since: Timestamp,
    seg: ControlSegment,
    nudge: Arc<Notify>,
    current: Directives,
    seq: u64,
}

struct Inner {
    table: Table,
    clients: BTreeMap<u64, Live>,
}

/// The directives and the clients they apply to; shared by the data
/// connections, the control socket and its expiry timer.
pub struct Control {
    inner: Mutex<Inner>,
    /// Woken when the table changed (the expiry timer re-plans).
    pub(crate) changed: Notify,
    drain: DrainSender,
    host: String,
    file: PathBuf,
    started: Instant,
    pub(crate) config: Config,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").field("file", &self.file).finish()
    }
}

impl Control {
    /// Load the saved directives from the data directory (a file that
    /// cannot be read costs a stderr line and starts empty).
    pub fn new(config: &Config, drain: DrainSender, host: String) -> Arc<Control> {
        let file = config.data_dir.join(directives::FILE_NAME);
        let table = match Table::load(&file, Timestamp::now()) {
            Ok(t) => t,
            Err(e) => {
                diag!("directives: {e}; starting without saved directives");
                Table::new()
            }
        };
        if !table.is_empty() {
            diag!(
                "{} saved verbosity directive(s) from {}",
                table.iter().count(),
                file.display()
            );
        }
        Arc::new(Control {
            inner: Mutex::new(Inner {
                table,
                clients: BTreeMap::new(),
            }),
            changed: Notify::new(),
            drain,
            host,
            file,
            started: Instant::now(),
            config: config.clone(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new client: make its control segment with its directives, seal
    /// it, remember the client. Returns the fd to hand over with the
    /// welcome and what to wait on for nudges.
    pub fn attach(&self, id: u64, who: &Identity) -> Result<(OwnedFd, Arc<Notify>), String> {
        let seg = ControlSegment::create().map_err(|e| e.to_string())?;
        let mut inner = self.lock();
        let current = inner.table.effective(&who.service, who.pid);
        let seq = seg.write(&current).map_err(|e| e.to_string())?;
        seg.seg.seal_future_write().map_err(|e| e.to_string())?;
        let fd = seg
            .seg
            .fd()
            .try_clone_to_owned()
            .map_err(|e| e.to_string())?;
        let nudge = Arc::new(Notify::new());
        inner.clients.insert(
            id,
            Live {
                id,
                service: who.service.clone(),
                pid: who.pid,
                uid: who.uid,
                library: who.library.clone(),
                since: Timestamp::now(),
                seg,
                nudge: nudge.clone(),
                current,
                seq,
            },
        );
        Ok((fd, nudge))
    }

    /// The sequence number of client `id`'s segment (for its nudge).
    pub fn seq(&self, id: u64) -> Option<u64> {
        self.lock().clients.get(&id).map(|c| c.seq)
    }

    /// A client's connection ended.
    pub fn detach(&self, id: u64) {
        self.lock().clients.remove(&id);
    }

    /// Rewrite every segment whose directives changed and nudge its client.
    fn apply(inner: &mut Inner) {
        let Inner { table, clients } = inner;
        for c in clients.values_mut() {
            let want = table.effective(&c.service, c.pid);
            if want == c.current {
                continue;
            }
            match c.seg.write(&want) {
                Ok(seq) => {
                    c.seq = seq;
                    c.current = want;
                    c.nudge.notify_one();
                }
                Err(e) => diag!("pid {} ({}): directives not written: {e}", c.pid, c.service),
            }
        }
    }

    fn save(&self, inner: &Inner, notes: &mut Vec<String>) {
        if let Err(e) = inner.table.save(&self.file) {
            diag!("directives not saved: {e}");
            notes.push(format!(
                "not saved (it will not survive a restart of distlogd): {e}"
            ));
        }
    }

    /// A `control` record about a change, into the record stream.
    fn emit(&self, level: Level, message: String, fields: serde_json::Value) {
        let mut r = Record::new(Kind::Control, Timestamp::now(), level);
        r.service = "distlogd".into();
        r.host = self.host.clone();
        r.pid = std::process::id();
        r.target = Some("distlogd::ctl".into());
        r.message = Some(message);
        if let serde_json::Value::Object(m) = fields {
            r.fields = m.into();
        }
        self.drain.send(DrainMsg::Record(Box::new(r)));
    }

    fn matching(inner: &Inner, scope: &Scope) -> usize {
        inner
            .clients
            .values()
            .filter(|c| match scope {
                Scope::All | Scope::Trace { .. } => true,
                Scope::Service { service } => &c.service == service,
                Scope::Pid { pid } => c.pid == *pid,
            })
            .count()
    }

    /// `ctl level set`.
    pub fn set(&self, who: Peer, scope: Scope, text: String, ttl: Option<Duration>) -> Reply {
        let checked = match &scope {
            Scope::Trace { .. } => {
                directives::trace_level(&text).map(|l| l.as_str().to_ascii_lowercase())
            }
            _ => directives::validate(&text).map(|()| text.trim().to_owned()),
        };
        let text = match checked {
            Ok(t) => t,
            Err(e) => return Reply::error(e.to_string()),
        };
        let now = Timestamp::now();
        let expires = ttl.map(|t| {
            Timestamp(
                now.0
                    .saturating_add(t.as_nanos().min(u64::MAX as u128) as u64),
            )
        });
        let d = Directive {
            scope: scope.clone(),
            directives: text.clone(),
            set_at: now,
            expires,
            by_uid: who.uid,
            by_pid: who.pid,
        };
        let mut notes = Vec::new();
        let mut inner = self.lock();
        inner.table.set(d);
        Self::apply(&mut inner);
        let n = Self::matching(&inner, &scope);
        self.save(&inner, &mut notes);
        drop(inner);
        self.changed.notify_one();
        match &scope {
            Scope::Service { service } if n == 0 => notes.push(format!(
                "no client of service {service} is connected now; it applies when one connects"
            )),
            Scope::Pid { pid } if n == 0 => notes.push(format!(
                "no client with pid {pid} is connected now; it applies if it connects"
            )),
            _ => {}
        }
        let ttl_text = ttl
            .map(|t| format!(" ttl {}", human_duration(t)))
            .unwrap_or_default();
        let message = format!(
            "level set {text:?} for {scope}{ttl_text} by uid {} pid {}",
            who.uid, who.pid
        );
        self.emit(
            Level::Info,
            message.clone(),
            json!({
                "who": format!("uid {} pid {}", who.uid, who.pid),
                "uid": who.uid,
                "by_pid": who.pid,
                "action": "set",
                "directives": text,
                "scope": scope.to_string(),
                "ttl_ms": ttl.map(|t| t.as_millis() as u64),
                "clients": n,
            }),
        );
        let mut r = Reply::done(format!("{message} ({n} client(s) affected now)"));
        r.notes = notes;
        r.data = json!({ "scope": scope, "directives": text, "expires": expires, "clients": n });
        r
    }

    /// `ctl level reset`.
    pub fn reset(&self, who: Peer, scope: Scope, everything: bool) -> Reply {
        let mut notes = Vec::new();
        let mut inner = self.lock();
        let removed: Vec<Directive> = if everything {
            inner.table.clear()
        } else {
            inner.table.remove(&scope).into_iter().collect()
        };
        if removed.is_empty() {
            drop(inner);
            let what = if everything {
                "any scope".to_owned()
            } else {
                scope.to_string()
            };
            let mut r = Reply::done(format!("nothing to reset: no directive for {what}"));
            r.data = json!({ "removed": [] });
            return r;
        }
        Self::apply(&mut inner);
        self.save(&inner, &mut notes);
        drop(inner);
        self.changed.notify_one();
        let what = if everything {
            "every scope".to_owned()
        } else {
            scope.to_string()
        };
        let message = format!("level reset for {what} by uid {} pid {}", who.uid, who.pid);
        self.emit(
            Level::Info,
            message.clone(),
            json!({
                "who": format!("uid {} pid {}", who.uid, who.pid),
                "uid": who.uid,
                "by_pid": who.pid,
                "action": "reset",
                "scope": what,
                "directives": removed.iter().map(|d| d.directives.clone()).collect::<Vec<_>>(),
            }),
        );
        let mut r = Reply::done(message);
        r.notes = notes;
        r.data = json!({ "removed": removed });
        r
    }

    /// Remove what expired; the time until the next deadline.
    pub fn expire_due(&self) -> Option<Duration> {
        let now = Timestamp::now();
        let mut inner = self.lock();
        let gone = inner.table.expire(now);
        if !gone.is_empty() {
            Self::apply(&mut inner);
            let mut notes = Vec::new();
            self.save(&inner, &mut notes);
        }
        let next = inner.table.next_expiry();
        drop(inner);
        for d in gone {
            self.emit(
                Level::Info,
                format!("level {:?} for {} expired; reverted", d.directives, d.scope),
                json!({
                    "who": "ttl",
                    "action": "expire",
                    "directives": d.directives,
                    "scope": d.scope.to_string(),
                    "uid": d.by_uid,
                    "by_pid": d.by_pid,
                }),
            );
        }
        next.map(|n| Duration::from_nanos(n.0.saturating_sub(Timestamp::now().0)))
    }

    /// `ctl level show`.
    pub fn show(&self) -> Reply {
        let now = Timestamp::now();
        let inner = self.lock();
        let dirs: Vec<serde_json::Value> = inner
            .table
            .iter()
            .map(|d| {
                let mut v = serde_json::to_value(d).unwrap_or_default();
                v["remaining_ms"] = json!(d.remaining(now).map(|r| r.as_millis() as u64));
                v["clients"] = json!(Self::matching(&inner, &d.scope));
                v
            })
            .collect();
        let clients: Vec<serde_json::Value> = inner
            .clients
            .values()
            .map(|c| {
                let from = if inner
                    .table
                    .iter()
                    .any(|d| d.scope == Scope::Pid { pid: c.pid })
                {
                    Some(Scope::Pid { pid: c.pid })
                } else if inner.table.iter().any(|d| {
                    d.scope
                        == Scope::Service {
                            service: c.service.clone(),
                        }
                }) {
                    Some(Scope::Service {
                        service: c.service.clone(),
                    })
                } else if inner.table.iter().any(|d| d.scope == Scope::All) {
                    Some(Scope::All)
                } else {
                    None
                };
                json!({
                    "id": c.id,
                    "service": c.service,
                    "pid": c.pid,
                    "filter": c.current.filter,
                    "from": from.map(|s| s.to_string()),
                    "traces": c.current.traces.iter().map(|(t, l)| json!({
                        "trace": crate::record::TraceId(*t).to_string(),
                        "level": l.as_str(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        Reply::data(json!({ "directives": dirs, "clients": clients }))
    }

    /// The connected clients (for `ctl status`).
    pub(crate) fn clients(&self) -> Vec<serde_json::Value> {
        self.lock()
            .clients
            .values()
            .map(|c| {
                json!({
                    "id": c.id,
                    "service": c.service,
                    "pid": c.pid,
                    "uid": c.uid,
                    "library": c.library,
                    "connected_since": c.since,
                    "filter": c.current.filter,
                })
            })
            .collect()
    }

    /// Uptime of this sidecar.
    pub(crate) fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The drain thread's sender (status requests).
    pub(crate) fn drain(&self) -> &DrainSender {
        &self.drain
    }
}

impl From<DirectiveError> for Reply {
    fn from(e: DirectiveError) -> Reply {
        Reply::error(e.to_string())
    }
}

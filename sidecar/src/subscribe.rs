//! Live subscriptions (`distlogd tail -f`): records as the drain thread
//! writes them, to whoever asked on the control socket.
//!
//! # Never slows the drain
//!
//! The [`Hub`] is a [`Sink`]: the drain thread hands it every batch like
//! any other sink. For each subscriber it keeps a bounded queue
//! ([`QUEUE`] records) and `try_send`s the records that match the
//! subscriber's [`Filter`]; a full queue drops the record and counts it.
//! The subscriber's connection task writes the queue to its socket and,
//! before the next record it can send, a `loss` record saying how many it
//! missed. With no subscriber a batch costs one atomic load.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use distlog::wire::Level;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::query;
use crate::record::{parse_level, Kind, Record, ScopeId, TraceId};
use crate::sink::{Sink, SinkError};
use crate::timestamp::Timestamp;

/// Records queued per subscriber before it loses some.
pub const QUEUE: usize = 8192;

/// The wire form of a [`query::Filter`] (what `tail -f` sends): every
/// criterion optional; see [`query`] for what each one means.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Filter {
    /// Services (any of them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// Hosts (any).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Pids (any).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pids: Vec<u32>,
    /// This level and more severe (`"warn"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// At most this severe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level_min: Option<String>,
    /// Target prefixes (any).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// Trace id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<TraceId>,
    /// Scope id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_id: Option<ScopeId>,
    /// Field equalities (all).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<(String, String)>,
    /// Message substring (smart case).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grep: Option<String>,
    /// Kinds (any).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<Kind>,
}

impl Filter {
    /// The wire form of `f` (its time range is left out: a live
    /// subscription starts now).
    pub fn from_query(f: &query::Filter) -> Filter {
        let name = |l: Level| l.as_str().to_ascii_lowercase();
        Filter {
            services: f.services.clone(),
            hosts: f.hosts.clone(),
            pids: f.pids.clone(),
            level: f.level.map(name),
            level_min: f.level_min.map(name),
            targets: f.targets.clone(),
            trace_id: f.trace_id,
            scope_id: f.scope_id,
            fields: f.fields.clone(),
            grep: f.grep.clone(),
            kinds: f.kinds.clone(),
        }
    }

    /// The filter to match with; an unknown level name is an error.
    pub fn to_query(&self) -> Result<query::Filter, String> {
        let level = |s: &Option<String>| match s {
            None => Ok(None),
            Some(s) => parse_level(s)
                .map(Some)
                .ok_or_else(|| format!("unknown level {s:?}")),
        };
        Ok(query::Filter {
            services: self.services.clone(),
            hosts: self.hosts.clone(),
            pids: self.pids.clone(),
            level: level(&self.level)?,
            level_min: level(&self.level_min)?,
            targets: self.targets.clone(),
            trace_id: self.trace_id,
            scope_id: self.scope_id,
            fields: self.fields.clone(),
            grep: self.grep.clone(),
            kinds: self.kinds.clone(),
            ..query::Filter::default()
        })
    }
}

struct Subscriber {
    filter: query::Filter,
    tx: mpsc::Sender<Record>,
    lost: Arc<AtomicU64>,
}

/// The subscribers, and the sink that feeds them.
#[derive(Default)]
pub struct Hub {
    subs: Mutex<Vec<Subscriber>>,
    /// `subs.len()`, read without the lock.
    count: AtomicUsize,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("subscribers", &self.count.load(Ordering::Relaxed))
            .finish()
    }
}

/// One subscription: its records and how many it lost.
#[derive(Debug)]
pub struct Subscription {
    /// Matching records, in drain order.
    pub rx: mpsc::Receiver<Record>,
    /// Records dropped because the queue was full (take with `swap(0)`).
    pub lost: Arc<AtomicU64>,
}

impl Hub {
    /// A hub without subscribers.
    pub fn new() -> Arc<Hub> {
        Arc::new(Hub::default())
    }

    /// Subscribe with `filter`. Dropping the receiver unsubscribes (noticed
    /// at the next batch).
    pub fn subscribe(&self, filter: query::Filter) -> Subscription {
        let (tx, rx) = mpsc::channel(QUEUE);
        let lost = Arc::new(AtomicU64::new(0));
        let mut subs = self.subs.lock().unwrap_or_else(|e| e.into_inner());
        subs.push(Subscriber {
            filter,
            tx,
            lost: lost.clone(),
        });
        // Relaxed: a hint for the drain thread's fast path; a batch that
        // misses a new subscriber by a moment is fine (it subscribed "now").
        self.count.store(subs.len(), Ordering::Relaxed);
        Subscription { rx, lost }
    }

    /// The sink to give the drain thread.
    pub fn sink(self: &Arc<Hub>) -> HubSink {
        HubSink(self.clone())
    }

    fn publish(&self, batch: &[Record]) {
        // Relaxed: see `subscribe`.
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut subs = self.subs.lock().unwrap_or_else(|e| e.into_inner());
        subs.retain(|s| {
            for r in batch.iter().filter(|r| s.filter.matches(r)) {
                match s.tx.try_send(r.clone()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        // Relaxed: a counter; the reader swaps it.
                        s.lost.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            !s.tx.is_closed()
        });
        self.count.store(subs.len(), Ordering::Relaxed);
    }
}

/// The [`Hub`] as a sink (never fails, never blocks).
#[derive(Debug)]
pub struct HubSink(Arc<Hub>);

impl Sink for HubSink {
    fn name(&self) -> &str {
        "subscribers"
    }

    fn write_batch(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        self.0.publish(batch);
        Ok(())
    }
}

/// The `loss` record a subscriber gets when it missed `n` records.
pub fn loss_record(n: u64, host: &str) -> Record {
    let mut r = Record::new(Kind::Loss, Timestamp::now(), Level::Warn);
    r.service = "distlogd".into();
    r.host = host.into();
    r.pid = std::process::id();
    r.target = Some("distlogd::subscribe".into());
    r.message = Some(format!(
        "{n} records not shown: this subscriber read more slowly than they came"
    ));
    r.fields.insert("lost".into(), n.into());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(service: &str, level: Level) -> Record {
        let mut r = Record::new(Kind::Event, Timestamp(1), level);
        r.service = service.into();
        r
    }

    #[test]
    fn filter_roundtrip() {
        let f = Filter {
            services: vec!["a".into()],
            level: Some("warn".into()),
            ..Filter::default()
        };
        let q = f.to_query().unwrap();
        assert!(q.matches(&rec("a", Level::Error)));
        assert!(!q.matches(&rec("a", Level::Info)));
        assert!(!q.matches(&rec("b", Level::Error)));
        assert_eq!(Filter::from_query(&q), f);
        let j = serde_json::to_string(&f).unwrap();
        assert_eq!(j, r#"{"services":["a"],"level":"warn"}"#);
        assert!(serde_json::from_str::<Filter>(r#"{"nope":1}"#).is_err());
    }

    #[test]
    fn slow_subscriber_loses_and_is_told() {
        let hub = Hub::new();
        let mut sink = hub.sink();
        let mut sub = hub.subscribe(query::Filter::default());
        let batch: Vec<Record> = (0..QUEUE + 10).map(|_| rec("a", Level::Info)).collect();
        sink.write_batch(&batch).unwrap();
        assert_eq!(sub.lost.swap(0, Ordering::Relaxed), 10);
        let mut n = 0;
        while sub.rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, QUEUE);
        drop(sub);
        sink.write_batch(&batch[..1]).unwrap();
        assert_eq!(hub.count.load(Ordering::Relaxed), 0);
    }
}

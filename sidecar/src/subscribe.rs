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
//!
//! # Classes
//!
//! A subscriber may want only some retention classes (`tail -f --class`).
//! The class of a record is the router's decision
//! ([`crate::routing::Routing::class_of`]): the [`Router`](crate::routing::Router)
//! hands its batches to the hub itself, with the classes it decided
//! ([`Sink::feed_subscribers`]); without a router (a sidecar embedded with
//! sinks of its own) the hub is a sink of its own and classifies with the
//! default routing. The class is looked up only for a subscriber that asked
//! for classes, and only for the records its other criteria let through.
//!
//! # Subscribing between batches
//!
//! The router commits a batch to the store, then publishes it here; the
//! hub refuses a subscription while a batch is between the two
//! ([`Hub::try_subscribe`] returns `None`; the caller retries). So, for a
//! subscription, every stored record was either published before it (never
//! live) or committed after the moment it was accepted; `tail -f` relies on
//! it to keep only the second kind for its history/live dedupe (see
//! [`crate::tail`]).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use distlog::wire::Level;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::query;
use crate::record::{parse_level, Kind, Record, ScopeId, TraceId};
use crate::routing::Routing;
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
    /// Retention classes (any), as the sidecar's router decides them. Sent
    /// only when set: a sidecar older than this field refuses a request
    /// with it (unknown field) rather than ignore it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
}

impl Filter {
    /// The wire form of `f` and `classes` (its time range is left out: a
    /// live subscription starts now).
    pub fn from_query(f: &query::Filter, classes: &[String]) -> Filter {
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
            classes: classes.to_vec(),
        }
    }

    /// The filter to match with (without the classes); an unknown level
    /// name is an error.
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
    /// Classes wanted (empty: all).
    classes: Vec<String>,
    tx: mpsc::Sender<Record>,
    lost: Arc<AtomicU64>,
}

/// The subscribers, and the sink that feeds them.
#[derive(Default)]
pub struct Hub {
    subs: Mutex<Vec<Subscriber>>,
    /// `subs.len()`, read without the lock.
    count: AtomicUsize,
    /// A batch is committed to the store and not yet published (see the
    /// [module docs](self)).
    in_flight: AtomicBool,
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

    /// Subscribe to the records matching `filter` and of one of `classes`
    /// (empty: any), unless a batch is between its store commit and its
    /// publication: then `None`, try again shortly (see the [module
    /// docs](self)). Dropping the receiver unsubscribes (noticed at the
    /// next batch).
    pub fn try_subscribe(
        &self,
        filter: query::Filter,
        classes: Vec<String>,
    ) -> Option<Subscription> {
        let mut subs = self.subs.lock().unwrap_or_else(|e| e.into_inner());
        let (tx, rx) = mpsc::channel(QUEUE);
        let lost = Arc::new(AtomicU64::new(0));
        subs.push(Subscriber {
            filter,
            classes,
            tx,
            lost: lost.clone(),
        });
        // The subscriber counts first, then the batch flag is read; the
        // router sets the flag first, then reads the count (`publish`).
        // All four SeqCst: in their single total order one side sees the
        // other's store. Reading `false` here puts the next batch's
        // `begin_batch` later in that order, so its `publish` reads this
        // count (not 0) and then finds this subscriber under the lock: a
        // batch committed after this check is delivered live. (Checking
        // the flag before counting would let that batch's `publish` read
        // the old count 0 and skip it, while its commit could land after
        // the subscriber's reader of the store had looked.)
        self.count.store(subs.len(), Ordering::SeqCst);
        if self.in_flight.load(Ordering::SeqCst) {
            subs.pop();
            self.count.store(subs.len(), Ordering::SeqCst);
            return None;
        }
        Some(Subscription { rx, lost })
    }

    /// The router is about to commit a batch to the store; its
    /// [`Hub::publish`] ends it.
    pub fn begin_batch(&self) {
        // SeqCst: see `try_subscribe`; set before the commit starts.
        self.in_flight.store(true, Ordering::SeqCst);
    }

    /// The sink to give the drain thread.
    pub fn sink(self: &Arc<Hub>) -> HubSink {
        HubSink {
            hub: self.clone(),
            routing: Routing::default_for(false),
        }
    }

    /// Hand `batch` to the subscribers; `class_of(i, r)` is the class of
    /// `batch[i]` (`r`), looked up only for subscribers that want classes.
    /// Ends a [`Hub::begin_batch`].
    pub fn publish<'c>(&self, batch: &[Record], class_of: impl Fn(usize, &Record) -> &'c str) {
        // SeqCst: see `try_subscribe` (a plain load on x86).
        if self.count.load(Ordering::SeqCst) == 0 {
            // SeqCst: see `try_subscribe` (the batch is published: nobody
            // to give it to).
            self.in_flight.store(false, Ordering::SeqCst);
            return;
        }
        let mut subs = self.subs.lock().unwrap_or_else(|e| e.into_inner());
        subs.retain(|s| {
            let wanted = |(i, r): &(usize, &Record)| {
                s.filter.matches(r)
                    && (s.classes.is_empty() || s.classes.iter().any(|c| c == class_of(*i, r)))
            };
            for (_, r) in batch.iter().enumerate().filter(wanted) {
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
        // SeqCst: see `try_subscribe`; under the lock, after every
        // subscriber got the batch.
        self.in_flight.store(false, Ordering::SeqCst);
    }
}

/// The [`Hub`] as a sink of its own (never fails, never blocks), for a
/// drain without a [`Router`](crate::routing::Router): records are
/// classified with the default routing.
#[derive(Debug)]
pub struct HubSink {
    hub: Arc<Hub>,
    routing: Routing,
}

impl Sink for HubSink {
    fn name(&self) -> &str {
        "subscribers"
    }

    fn write_batch(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        let routing = &self.routing;
        self.hub
            .publish(batch, |_, r| routing.class_name(routing.class_of(r)));
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
        assert_eq!(Filter::from_query(&q, &[]), f);
        let j = serde_json::to_string(&f).unwrap();
        assert_eq!(j, r#"{"services":["a"],"level":"warn"}"#);
        assert!(serde_json::from_str::<Filter>(r#"{"nope":1}"#).is_err());
    }

    #[test]
    fn slow_subscriber_loses_and_is_told() {
        let hub = Hub::new();
        let mut sink = hub.sink();
        let mut sub = hub
            .try_subscribe(query::Filter::default(), Vec::new())
            .unwrap();
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

    #[test]
    fn classes_filter_and_no_subscription_mid_batch() {
        let hub = Hub::new();
        let mut usage = hub
            .try_subscribe(query::Filter::default(), vec!["usage".into()])
            .unwrap();
        let mut all = hub
            .try_subscribe(query::Filter::default(), Vec::new())
            .unwrap();
        let mut metered = rec("a", Level::Info);
        metered.fields.insert("class".into(), "usage".into());
        let batch = [rec("a", Level::Info), metered];
        let classes = ["log", "usage"];
        hub.begin_batch();
        assert!(hub
            .try_subscribe(query::Filter::default(), Vec::new())
            .is_none());
        hub.publish(&batch, |i, _| classes[i]);
        assert!(hub
            .try_subscribe(query::Filter::default(), Vec::new())
            .is_some());
        assert_eq!(usage.rx.try_recv().unwrap().fields["class"], "usage");
        assert!(usage.rx.try_recv().is_err());
        assert_eq!(std::iter::from_fn(|| all.rx.try_recv().ok()).count(), 2);
        // Without a router: the default routing decides (the `class` field).
        hub.sink().write_batch(&batch).unwrap();
        assert_eq!(usage.rx.try_recv().unwrap().fields["class"], "usage");
        assert!(usage.rx.try_recv().is_err());
    }
}

//! The drain thread: reads every ring, hands records to the sinks, gives
//! ring space back.
//!
//! # Shape
//!
//! One dedicated OS thread (not a tokio task: it spins through shared
//! memory and sleeps on an eventfd) owns every mapped segment and reader.
//! The server tells it about clients, rings and disconnects with
//! [`DrainMsg`]s over a channel and writes the [wake-up eventfd](crate::wake)
//! after each message, so a sleeping drain thread notices them.
//!
//! A *round* polls every ring of every client once, at most
//! `Limits::ring_budget` records each, so a flooding client cannot starve the
//! others. The round's records go to every sink as one batch; only when the
//! sinks returned does the thread `release` the rings (durability: a ring's
//! read position never passes a record that was not written).
//!
//! # Sleeping
//!
//! After a round that found nothing, the thread sets every ring's sleep
//! flag, checks all rings once more (a record committed before the flag was
//! visible is found here), and waits on the eventfd with a
//! `Limits::idle_backstop` timeout (bounding the delay of a wake-up a client
//! missed, as it checks the flag without a fence), doubled after each quiet
//! timeout up to `Limits::idle_backstop_max`. It stays in that loop, flags
//! set, until a round finds something or a message arrives.
//!
//! # Failures
//!
//! A ring error, an undecodable record or an unknown call site cuts that
//! client off: one stderr line, one `control` record, its connection closed
//! (through its closer), its rings dropped after the round's records were
//! written. A sink that fails is dropped.
//!
//! # Gone clients
//!
//! A client whose connection ended is read until none of its rings has
//! more (records written before a `kill -9` arrive), then dropped. Open
//! scopes are kept per process (kernel pid and uid), not per connection: a
//! process that reconnects closes on its new connection what it opened on
//! the old one; when the last connection of a process is gone, its open
//! scopes are closed with outcome `abandoned`.
//!
//! # Ring ids
//!
//! A ring handed again (same `ring_id`) on the same connection is ignored.
//! Handed by another connection of the same process (a reconnect whose old
//! connection's end was not processed yet) or while its old holder is gone,
//! the old reader is drained, released and dropped first, and the new reader
//! resumes where it released: no record is read twice. Any other process
//! handing a ring someone else holds is cut off.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use distlog::ring::Stop;
use distlog::wire::Level;

use std::collections::HashMap;

use crate::client::{
    AttachedRing, Client, ClientTable, Context, CutOff, Identity, ProcessKey, RingSegment, Scopes,
};
use crate::clock::Clock;
use crate::convert::{Env, Held};
use crate::record::{Kind, Record};
use crate::sink::Sink;
use crate::timestamp::Timestamp;
use crate::wake::Wake;
use crate::{Limits, Shutdown};

/// What the server tells the drain thread.
#[derive(Debug)]
pub enum DrainMsg {
    /// A client completed its hello.
    Client {
        /// Connection number.
        id: u64,
        /// Who it is.
        identity: Identity,
        /// Its call-site table.
        table: ClientTable,
        /// Triggered by the drain thread to close the connection.
        closer: Shutdown,
    },
    /// A client handed a ring.
    Ring {
        /// Connection number.
        id: u64,
        /// The checked, mapped ring.
        ring: RingSegment,
    },
    /// A client's connection ended.
    Gone {
        /// Connection number.
        id: u64,
    },
    /// A record of the sidecar's own (e.g. a verbosity change) for the
    /// sinks, written with the next round.
    Record(Box<Record>),
    /// Report every client's counters (`distlogd ctl status`).
    Status(tokio::sync::oneshot::Sender<Vec<ClientStats>>),
    /// Drain what is left and stop.
    Shutdown,
}

/// One client's counters, for `distlogd ctl status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClientStats {
    /// Connection number.
    pub id: u64,
    /// Records read from its rings.
    pub records: u64,
    /// Records it lost (its rings' `dropped` counters, as reported).
    pub dropped: u64,
    /// Its rings.
    pub rings: Vec<RingStats>,
}

/// One ring's use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RingStats {
    /// Its index in the client.
    pub index: u32,
    /// Bytes written and not yet read (a hint: the client writes it).
    pub used: u64,
    /// Its data capacity in bytes.
    pub capacity: u64,
    /// Its `dropped` counter.
    pub dropped: u64,
}

/// Counters over the drain thread's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainStats {
    /// Records handed to the sinks (including loss and control records).
    pub records: u64,
    /// Clients registered.
    pub clients: u64,
    /// Clients cut off.
    pub cut_off: u64,
    /// Records reported lost by clients.
    pub lost: u64,
}

/// Sends messages to the drain thread and wakes it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DrainSender {
    tx: mpsc::Sender<DrainMsg>,
    wake: Arc<Wake>,
}

impl DrainSender {
    /// Send a message and wake the drain thread. False if it is gone.
    pub fn send(&self, msg: DrainMsg) -> bool {
        let ok = self.tx.send(msg).is_ok();
        self.wake.notify();
        ok
    }
}

/// The running drain thread.
#[derive(Debug)]
pub struct DrainHandle {
    sender: DrainSender,
    thread: JoinHandle<DrainStats>,
}

impl DrainHandle {
    /// Start the drain thread. It calibrates the TSC (≈25 ms) before it
    /// reads anything; messages sent meanwhile wait in the channel.
    /// `exited` is dropped when the thread ends, however it ends.
    pub fn spawn(
        limits: Limits,
        sinks: Vec<Box<dyn Sink>>,
        wake: Arc<Wake>,
        host: String,
        exited: impl Send + 'static,
    ) -> std::io::Result<DrainHandle> {
        let (tx, rx) = mpsc::channel();
        let w = wake.clone();
        let thread = std::thread::Builder::new()
            .name("distlogd-drain".into())
            .spawn(move || {
                let _exited = exited;
                let drain = Drain {
                    rx,
                    wake: w,
                    clients: Vec::new(),
                    processes: HashMap::new(),
                    sinks,
                    batch: Batch::default(),
                    clock: Clock::calibrate(),
                    host,
                    limits,
                    shutting_down: false,
                    sleeping: false,
                    stats: DrainStats::default(),
                };
                drain.run()
            })?;
        Ok(DrainHandle {
            sender: DrainSender { tx, wake },
            thread,
        })
    }

    /// A sender for the server's tasks.
    pub fn sender(&self) -> DrainSender {
        self.sender.clone()
    }

    /// Tell the thread to drain what is left and stop; wait for it.
    pub fn finish(self) -> std::thread::Result<DrainStats> {
        self.sender.send(DrainMsg::Shutdown);
        self.thread.join()
    }
}

struct Drain {
    rx: mpsc::Receiver<DrainMsg>,
    wake: Arc<Wake>,
    clients: Vec<Client>,
    /// Open scopes by process.
    processes: HashMap<ProcessKey, Process>,
    sinks: Vec<Box<dyn Sink>>,
    batch: Batch,
    clock: Clock,
    host: String,
    limits: Limits,
    shutting_down: bool,
    /// Rings have their sleep flag set.
    sleeping: bool,
    stats: DrainStats,
}

/// Read one ring: up to `budget` records into `batch`, then a loss record
/// if its `dropped` counter grew (added to `lost_total`). Returns the
/// number of records read.
fn poll_ring(
    ring: &mut AttachedRing,
    ctx: &mut Context,
    scopes: &mut Scopes,
    env: &Env<'_>,
    budget: usize,
    batch: &mut Batch,
    lost_total: &mut u64,
) -> Result<u64, CutOff> {
    let mut n = 0u64;
    let mut bad = None;
    let ring_id = ring.geometry().ring_id;
    let stop = ring.poll(budget, |seq, payload| {
        let (r, held) = batch.next_slot();
        match ctx.convert(scopes, env, payload, r, held) {
            Ok(()) => {
                r.origin = Some(crate::record::Origin { ring_id, seq });
                batch.keep();
                n += 1;
                true
            }
            Err(e) => {
                bad = Some(e);
                false
            }
        }
    });
    ring.ledger.read += n;
    if ring.gaps_unreported > 0 {
        // Records a dead writer reserved and never finished: lost too.
        let gaps = std::mem::take(&mut ring.gaps_unreported);
        batch.push(ctx.loss(env, gaps, ring.geometry().index, ring.owner_tid()));
        ring.ledger.lost = ring.ledger.lost.saturating_add(gaps);
        *lost_total = lost_total.saturating_add(gaps);
    }
    let dropped = ring.dropped();
    if dropped > ring.ledger.dropped_seen {
        let lost = dropped - ring.ledger.dropped_seen;
        batch.push(ctx.loss(env, lost, ring.geometry().index, ring.owner_tid()));
        ring.ledger.lost = ring.ledger.lost.saturating_add(lost);
        *lost_total = lost_total.saturating_add(lost);
    }
    // A counter that went down is a hostile or restarted ring: follow it.
    ring.ledger.dropped_seen = dropped;
    if let Some(e) = bad {
        return Err(e);
    }
    stop?;
    Ok(n)
}

/// Cut a client off: read no more, report, close its connection.
fn cut_off(c: &mut Client, env: &Env<'_>, why: &CutOff, batch: &mut Batch) {
    if c.cut_off {
        return;
    }
    c.cut_off = true;
    let id = &c.ctx.identity;
    diag!("pid {} ({}): cut off: {why}", id.pid, id.service);
    batch.push(c.ctx.control(
        env,
        Level::Error,
        format!("client cut off by the sidecar: {why}"),
    ));
    c.closer.trigger();
}

/// A round's records, in a vector whose records outlive the round: the
/// next round overwrites them in place ([`Context::convert`] reuses their
/// strings' allocations), so a record in steady state allocates nothing.
/// Holding them costs no more memory than the largest batch already took;
/// the thread gives it back once idle for a backstop ([`Batch::shrink`]).
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// `recs[..len]`: this round's records; `recs[len..]`: for reuse.
    recs: Vec<Record>,
    /// What each record holds of its last conversion.
    held: Vec<Held>,
    len: usize,
}

impl Batch {
    /// Append a record.
    pub(crate) fn push(&mut self, r: Record) {
        if self.len < self.recs.len() {
            self.recs[self.len] = r;
            self.held[self.len] = Held::default();
        } else {
            self.recs.push(r);
            self.held.push(Held::default());
        }
        self.len += 1;
    }

    /// A record to overwrite completely (a recycled one, holding stale
    /// values) and what it holds of its last conversion; it joins the
    /// batch on [`Batch::keep`].
    #[inline]
    pub(crate) fn next_slot(&mut self) -> (&mut Record, &mut Held) {
        if self.len == self.recs.len() {
            self.recs
                .push(Record::new(Kind::Event, Timestamp(0), Level::Info));
            self.held.push(Held::default());
        }
        (&mut self.recs[self.len], &mut self.held[self.len])
    }

    /// Make the record [`Batch::next_slot`] handed out part of the batch.
    pub(crate) fn keep(&mut self) {
        self.len = (self.len + 1).min(self.recs.len());
    }

    /// This round's records.
    pub(crate) fn records(&self) -> &[Record] {
        &self.recs[..self.len]
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Start the next round, keeping the records for reuse.
    fn clear(&mut self) {
        self.len = 0;
    }

    /// Free the records kept for reuse.
    fn shrink(&mut self) {
        self.recs.truncate(self.len);
        self.recs.shrink_to_fit();
        self.held.truncate(self.len);
        self.held.shrink_to_fit();
    }
}

/// Records a round gathers before it hands them to the sinks mid-round,
/// unless one [wants whole rounds](Sink::wants_whole_rounds) (the rings
/// are released at the round's end all the same: a record is written
/// before its ring space is). A round of 5 full rings was ~1,300 records
/// whose memory (~1 KB each with their strings and fields) had left the
/// cache when the sinks read it; written every 256, the no-sink drain went
/// from 9.9-10.4 to 10.6-12.1 M records per CPU-second.
const WRITE_AT: usize = 256;

/// Hand the batch to every sink (one that fails is dropped) and empty it.
fn write_out(sinks: &mut Vec<Box<dyn Sink>>, batch: &mut Batch, stats: &mut DrainStats) {
    if batch.is_empty() {
        return;
    }
    let recs = batch.records();
    sinks.retain_mut(|s| match s.write_batch(recs) {
        Ok(()) => true,
        Err(e) => {
            diag!("sink {}: {e}; dropping it", s.name());
            false
        }
    });
    stats.records += recs.len() as u64;
    batch.clear();
}

/// The open scopes of one process and how many of its connections the
/// drain thread holds.
#[derive(Debug, Default)]
struct Process {
    scopes: Scopes,
    clients: usize,
}

impl Drain {
    fn run(mut self) -> DrainStats {
        let mut deadline: Option<Instant> = None;
        loop {
            let msgs = self.take_messages();
            self.clock.refine();
            let n = self.round();
            if self.shutting_down {
                let d =
                    *deadline.get_or_insert_with(|| Instant::now() + self.limits.shutdown_drain);
                if (n == 0 && !msgs) || Instant::now() >= d {
                    break;
                }
            } else if n == 0 && !msgs {
                self.idle();
            }
        }
        self.set_sleeping(false);
        self.stats
    }

    /// Sleep until a ring has records or a message arrives.
    ///
    /// The first timed wait is `Limits::idle_backstop`: it covers the only
    /// wake-up a well-behaved client can miss, one whose commit raced with
    /// the flags being set (its relaxed load saw them clear and our re-check
    /// did not see its record yet). Every later commit sees the flags and
    /// writes the eventfd, so each timeout doubles the wait, up to
    /// `Limits::idle_backstop_max` (the bound for clients that never signal),
    /// which keeps an idle sidecar near 0% CPU.
    fn idle(&mut self) {
        self.set_sleeping(true);
        let mut backstop = self.limits.idle_backstop;
        loop {
            // The re-check after setting the flags: anything committed
            // before a producer could see them is found here.
            let msgs = self.take_messages();
            let n = self.round();
            if n > 0 || msgs || self.shutting_down {
                break;
            }
            let woken = self.wake.wait(backstop);
            if !woken {
                // Quiet for a whole backstop: the records kept for reuse
                // are memory for nothing (a steady trickle keeps them).
                self.batch.shrink();
            }
            backstop = if woken {
                self.limits.idle_backstop
            } else {
                (backstop * 2).min(self.limits.idle_backstop_max.max(self.limits.idle_backstop))
            };
            self.clock.refine();
        }
        self.set_sleeping(false);
    }

    fn set_sleeping(&mut self, on: bool) {
        self.sleeping = on;
        for r in self.clients.iter().flat_map(|c| c.rings.iter()) {
            r.set_sleeping(on);
        }
    }

    /// Handle every waiting message; whether there was any.
    fn take_messages(&mut self) -> bool {
        let mut any = false;
        loop {
            match self.rx.try_recv() {
                Ok(m) => {
                    any = true;
                    self.on_message(m);
                }
                Err(mpsc::TryRecvError::Empty) => return any,
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.shutting_down = true;
                    return any;
                }
            }
        }
    }

    fn on_message(&mut self, m: DrainMsg) {
        match m {
            DrainMsg::Client {
                id,
                identity,
                table,
                closer,
            } => {
                self.stats.clients += 1;
                let c = Client::new(id, identity, table, closer);
                self.processes.entry(c.key).or_default().clients += 1;
                self.clients.push(c);
            }
            DrainMsg::Ring { id, ring } => self.add_ring(id, ring),
            DrainMsg::Gone { id } => {
                // On shutdown the clients live on (they reconnect to the
                // next sidecar): their scopes are not abandoned.
                if !self.shutting_down {
                    if let Some(c) = self.clients.iter_mut().find(|c| c.id == id) {
                        c.gone = true;
                    }
                }
            }
            DrainMsg::Record(r) => self.batch.push(*r),
            DrainMsg::Status(reply) => {
                let stats = self
                    .clients
                    .iter()
                    .map(|c| ClientStats {
                        id: c.id,
                        records: c.records,
                        dropped: c
                            .rings
                            .iter()
                            .map(|r| r.ledger.lost)
                            .fold(0, u64::saturating_add),
                        rings: c
                            .rings
                            .iter()
                            .map(|r| RingStats {
                                index: r.geometry().index,
                                used: r.backlog().min(r.geometry().cap),
                                capacity: r.geometry().cap,
                                dropped: r.dropped(),
                            })
                            .collect(),
                    })
                    .collect();
                let _ = reply.send(stats);
            }
            DrainMsg::Shutdown => self.shutting_down = true,
        }
    }

    fn add_ring(&mut self, id: u64, ring: RingSegment) {
        let Some(ci) = self.clients.iter().position(|c| c.id == id) else {
            return;
        };
        if self.clients[ci].cut_off {
            return;
        }
        let rid = ring.geometry().ring_id;
        let held = self.clients.iter().enumerate().find_map(|(i, c)| {
            c.rings
                .iter()
                .position(|r| r.geometry().ring_id == rid)
                .map(|j| (i, j))
        });
        if let Some((hi, rj)) = held {
            if hi == ci {
                return; // the same connection sent it twice
            }
            let (h, me) = (
                &self.clients[hi].ctx.identity,
                &self.clients[ci].ctx.identity,
            );
            let same_process = h.pid == me.pid && h.uid == me.uid;
            if !(self.clients[hi].gone || same_process) {
                let why = CutOff::Refused(format!(
                    "ring {:016x}{:016x} is already attached by pid {}",
                    rid[0], rid[1], h.pid
                ));
                self.cut_off_client(ci, &why);
                return;
            }
            self.retire_ring(hi, rj);
        }
        if self.clients[ci].rings.len() >= self.limits.max_rings_per_client {
            let why = CutOff::Refused(format!(
                "more than {} rings",
                self.limits.max_rings_per_client
            ));
            self.cut_off_client(ci, &why);
            return;
        }
        match ring.attach() {
            Ok(r) => {
                r.set_sleeping(self.sleeping);
                self.clients[ci].rings.push(r);
            }
            Err(e) => self.cut_off_client(ci, &e.into()),
        }
    }

    fn cut_off_client(&mut self, ci: usize, why: &CutOff) {
        let env = Env {
            clock: &self.clock,
            host: &self.host,
            limits: &self.limits,
        };
        if !self.clients[ci].cut_off {
            self.stats.cut_off += 1;
        }
        cut_off(&mut self.clients[ci], &env, why, &mut self.batch);
    }

    /// Read ring `rj` of client `hi` to its end, write and release, drop it.
    fn retire_ring(&mut self, hi: usize, rj: usize) {
        let env = Env {
            clock: &self.clock,
            host: &self.host,
            limits: &self.limits,
        };
        let c = &mut self.clients[hi];
        let scopes = &mut self.processes.entry(c.key).or_default().scopes;
        let ring = &mut c.rings[rj];
        ring.writer_gone = true;
        loop {
            match poll_ring(
                ring,
                &mut c.ctx,
                scopes,
                &env,
                self.limits.ring_budget,
                &mut self.batch,
                &mut self.stats.lost,
            ) {
                Ok(n) => {
                    c.records += n;
                    if ring.last_stop != Stop::Budget {
                        break;
                    }
                }
                Err(e) => {
                    self.stats.cut_off += u64::from(!c.cut_off);
                    cut_off(c, &env, &e, &mut self.batch);
                    break;
                }
            }
        }
        self.commit();
        drop(self.clients[hi].rings.remove(rj));
    }

    /// One pass over every ring; the number of ring records read.
    fn round(&mut self) -> u64 {
        let env = Env {
            clock: &self.clock,
            host: &self.host,
            limits: &self.limits,
        };
        let budget = self.limits.ring_budget;
        let write_at = if self.sinks.iter().any(|s| s.wants_whole_rounds()) {
            usize::MAX
        } else {
            WRITE_AT
        };
        let mut total = 0;
        for c in self.clients.iter_mut() {
            if c.cut_off {
                continue;
            }
            let scopes = &mut self.processes.entry(c.key).or_default().scopes;
            let mut failed = None;
            for ring in c.rings.iter_mut() {
                ring.writer_gone |= c.gone;
                match poll_ring(
                    ring,
                    &mut c.ctx,
                    scopes,
                    &env,
                    budget,
                    &mut self.batch,
                    &mut self.stats.lost,
                ) {
                    Ok(n) => {
                        c.records += n;
                        total += n;
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
                if self.batch.len >= write_at {
                    write_out(&mut self.sinks, &mut self.batch, &mut self.stats);
                }
            }
            if let Some(e) = failed {
                self.stats.cut_off += 1;
                cut_off(c, &env, &e, &mut self.batch);
            } else if c.gone && c.rings.iter().all(|r| r.last_stop != Stop::Budget) {
                c.finished = true;
            }
        }
        // Clients leaving after this round: the last connection of a process
        // that went away abandons its open scopes (a cut-off one does not:
        // its process may live on).
        for c in self.clients.iter_mut().filter(|c| c.cut_off || c.finished) {
            let Some(p) = self.processes.get_mut(&c.key) else {
                continue;
            };
            p.clients = p.clients.saturating_sub(1);
            if p.clients == 0 {
                if c.finished {
                    c.ctx.abandon_scopes(&mut p.scopes, &env, &mut self.batch);
                }
                self.processes.remove(&c.key);
            }
        }
        self.commit();
        // Rings were released in `commit`: dropping them now unmaps memory
        // whose records are all written.
        self.clients.retain(|c| !(c.cut_off || c.finished));
        total
    }

    /// Hand the batch to every sink, then release every ring.
    fn commit(&mut self) {
        write_out(&mut self.sinks, &mut self.batch, &mut self.stats);
        for r in self.clients.iter_mut().flat_map(|c| c.rings.iter_mut()) {
            r.release();
        }
    }
}

//! Where records go after the drain thread decoded them.
//!
//! The drain thread hands each [`Sink`] whole batches and releases the ring
//! space the batch came from only after *every* sink returned from
//! [`Sink::write_batch`]: that call is the durability point, so a sink must
//! have written (flushed) the batch to where it keeps records before it
//! returns. A sink that fails is reported once on stderr and dropped; the
//! others go on.

use std::io::Write;
use std::sync::mpsc;

use crate::record::Record;

/// Why a sink failed (it is then dropped).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The receiving side is gone.
    #[error("receiver closed")]
    Closed,
}

/// A destination for records.
pub trait Sink: Send {
    /// Short name for diagnostics (`stdout`, `store`, ...).
    fn name(&self) -> &str;

    /// Write a batch and make it as durable as this sink makes anything
    /// (flushed) before returning. An error drops the sink.
    fn write_batch(&mut self, batch: &[Record]) -> Result<(), SinkError>;

    /// Whether this sink wants a drain round's records in one batch: a
    /// store pays per transaction (its ingest fell ~25 % when rounds were
    /// written in batches of 256). Otherwise the drain writes mid-round
    /// every few hundred records, while they are still in cache.
    fn wants_whole_rounds(&self) -> bool {
        false
    }

    /// Offer to hand every batch to the live subscribers (`tail -f`)
    /// itself; `true` if taken (the router does: it knows each record's
    /// class and when a batch is in the store, see [`crate::subscribe`]).
    /// Otherwise the hub is a sink of its own.
    fn feed_subscribers(&mut self, _hub: &std::sync::Arc<crate::subscribe::Hub>) -> bool {
        false
    }
}

/// Records as JSON lines on standard output, one write per batch.
///
/// Stdout carries nothing else: the sidecar's own messages go to stderr. A
/// broken pipe is an error like any other: the sink is dropped, the sidecar
/// goes on (Rust ignores `SIGPIPE`, so it does not kill the process).
#[derive(Debug, Default)]
pub struct StdoutSink {
    buf: Vec<u8>,
}

impl StdoutSink {
    /// A stdout sink.
    pub fn new() -> Self {
        StdoutSink {
            buf: Vec::with_capacity(64 << 10),
        }
    }
}

impl Sink for StdoutSink {
    fn name(&self) -> &str {
        "stdout"
    }

    fn write_batch(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        for r in batch {
            r.write_json_line(&mut self.buf);
        }
        // `Stdout` is line-buffered: a buffer of whole lines goes out in one
        // write(2); the flush is for the (impossible) partial-line rest.
        let mut out = std::io::stdout().lock();
        out.write_all(&self.buf)?;
        out.flush()?;
        if self.buf.capacity() > 4 << 20 {
            self.buf = Vec::with_capacity(64 << 10);
        }
        Ok(())
    }
}

/// Records sent over a channel: for embedding the sidecar in tests or tools.
///
/// # Examples
///
/// ```
/// use distlogd::sink::{ChannelSink, Sink};
/// let (mut sink, rx) = ChannelSink::new();
/// sink.write_batch(&[]).unwrap();
/// drop(rx);
/// ```
#[derive(Debug)]
pub struct ChannelSink {
    tx: mpsc::Sender<Record>,
}

impl ChannelSink {
    /// A sink and the receiver of its records.
    pub fn new() -> (ChannelSink, mpsc::Receiver<Record>) {
        let (tx, rx) = mpsc::channel();
        (ChannelSink { tx }, rx)
    }
}

impl Sink for ChannelSink {
    fn name(&self) -> &str {
        "channel"
    }

    fn write_batch(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        for r in batch {
            self.tx.send(r.clone()).map_err(|_| SinkError::Closed)?;
        }
        Ok(())
    }
}

//! `distlogd bench-store` (hidden): how fast the store ingests and finds a
//! trace, measured in a scratch directory with the real writer and reader.
//!
//! It writes `--records` synthetic records (a service, a target, a message,
//! three fields, a trace of 8 records and a scope each, timestamps 1 µs
//! apart so they share one hourly partition) in batches of `--batch`
//! through [`StoreWriter`] (what the drain thread does), then looks up
//! `--queries` random traces with [`query`](super::query) and prints the
//! figures. Run it with `cargo run --release -p distlogd -- bench-store`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use distlog::wire::Level;

use super::{store_dir, StoreStats, StoreWriter};
use crate::query::Filter;
use crate::record::{Kind, Record, ScopeId, TraceId};
use crate::timestamp::Timestamp;

/// Arguments of `distlogd bench-store`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Records to write.
    #[arg(long, default_value_t = 2_000_000)]
    pub records: u64,
    /// Records per batch (one transaction).
    #[arg(long, default_value_t = 4096)]
    pub batch: usize,
    /// Trace lookups to time.
    #[arg(long, default_value_t = 20)]
    pub queries: usize,
    /// Scratch directory (default: a new one under the system temp dir,
    /// removed afterwards).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print the figures as one JSON object (for `bench-runner store`).
    #[arg(long)]
    pub json: bool,
}

fn trace_of(i: u64) -> TraceId {
    let t = i / 8;
    let x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5555;
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&x.to_be_bytes());
    b[8..].copy_from_slice(&t.to_be_bytes());
    TraceId(b)
}

fn record(i: u64, t0: u64) -> Record {
    let mut r = Record::new(Kind::Event, Timestamp(t0 + i * 1_000), Level::Info);
    r.service = ["checkout", "payments", "auth", "search"][(i % 4) as usize].into();
    r.host = "bench-host".into();
    r.pid = 1000 + (i % 16) as u32;
    r.tid = Some(2000 + (i % 64) as u32);
    r.target = Some("shop::checkout::payment".into());
    r.file = Some("src/payment.rs".into());
    r.line = Some(42);
    r.message = Some(format!("charged card for order {}", i % 100_000));
    r.fields.insert("order".into(), (i % 100_000).into());
    r.fields
        .insert("amount".into(), ((i % 997) as f64 * 1.25).into());
    r.fields.insert("currency".into(), "EUR".into());
    r.trace_id = Some(trace_of(i));
    r.scope_id = Some(ScopeId(i / 4 + 1));
    r.parent_id = Some(ScopeId(i / 8 + 1));
    r.origin = Some(crate::record::Origin {
        ring_id: [1, i % 8],
        seq: i,
    });
    r
}

/// Run the benchmark and print its figures.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let (dir, remove) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("distlog-bench-store-{}", std::process::id())),
            true,
        ),
    };
    let store = store_dir(&dir);
    let stats = Arc::new(StoreStats::default());
    let mut w = StoreWriter::new(
        store.clone(),
        Duration::from_secs(3600),
        Arc::new(Mutex::new(Default::default())),
        stats,
    )?;
    let hour = 3_600_000_000_000u64;
    let t0 = (Timestamp::now().0 / hour) * hour;
    let n = args.records.min(3_000_000_000); // one hour at 1 µs apart
    let mut batch: Vec<Record> = Vec::with_capacity(args.batch);
    let mut build = Duration::ZERO;
    let start = Instant::now();
    let mut i = 0;
    let mut stored = 0;
    while i < n {
        let b0 = Instant::now();
        batch.clear();
        let end = (i + args.batch as u64).min(n);
        batch.extend((i..end).map(|k| record(k, t0)));
        build += b0.elapsed();
        let out = w.write(batch.iter().map(|r| (r, "log")));
        if let Some(e) = out.error {
            anyhow::bail!("write failed: {e}");
        }
        stored += out.stored;
        i = end;
    }
    w.close_all();
    let total = start.elapsed();
    let ingest = total - build;
    let bytes = super::list_partitions(&store)?
        .iter()
        .map(|p| super::partition_bytes(&p.path))
        .sum::<u64>();
    let rate = stored as f64 / ingest.as_secs_f64();
    let per_record = bytes as f64 / stored.max(1) as f64;
    if !args.json {
        println!(
            "ingest: {stored} records in {:.2} s (store time, excluding making the records: {:.2} s) = {rate:.0} records/s; {per_record:.0} bytes/record on disk",
            total.as_secs_f64(),
            ingest.as_secs_f64(),
        );
    }
    let mut times = Vec::new();
    for q in 0..args.queries {
        let k = (q as u64).wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1);
        let f = Filter {
            trace_id: Some(trace_of(k)),
            ..Filter::default()
        };
        let t = Instant::now();
        let mut found = 0;
        super::query(&store, &f, &Default::default(), |_| {
            found += 1;
            true
        })?;
        times.push(t.elapsed());
        anyhow::ensure!(found > 0, "trace of record {k} not found");
    }
    times.sort();
    let ms = |d: Option<&Duration>| d.map(|d| d.as_secs_f64() * 1e3);
    let (median, max) = (ms(times.get(times.len() / 2)), ms(times.last()));
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "records": stored,
                "records_per_s": rate,
                "bytes_per_record": per_record,
                "trace_lookups": times.len(),
                "trace_median_ms": median,
                "trace_max_ms": max,
            })
        );
    } else if let (Some(median), Some(max)) = (median, max) {
        println!(
            "trace query: {} lookups among {stored} records: median {median:.2} ms, max {max:.2} ms",
            times.len(),
        );
    }
    if remove {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

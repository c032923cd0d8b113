//! `distlogd tail`: records from the store (history), then, with `-f`, the
//! live ones from the running sidecar, journalctl style.
//!
//! The history part reads the store files directly (read-only), with or
//! without a running sidecar. Filters combine with AND (see
//! [`crate::query`]). Without `-n` every matching record is printed, oldest
//! first (like journalctl); `-n N` prints the last N, `-n` alone the last 10.
//! With `-f` the last 10 (or `-n N`) are printed, then records as they
//! arrive, until interrupted.
//!
//! # The switch from history to live: no record twice, none missed
//!
//! `tail -f` subscribes first, then reads the store, then prints the live
//! records, skipping those it already printed from the store. No record is
//! missed: the sidecar's router commits every batch to the store before it
//! hands it to the subscribers, so a record published before the
//! subscription was committed before the store was read.
//!
//! A record committed after subscribing can be in both; it is recognised by
//! its whole JSON form (time to the ns, pid, tid, message, fields...) and
//! printed once. Records that were identical in every field are
//! indistinguishable here, and a later live one is taken for the stored
//! one (only among the history records kept, and only once each).
//!
//! Which history records are kept for that, so that `tail -f --since 30d
//! -n all` does not hold a month of records in memory: before subscribing,
//! `tail` notes each partition file's largest row id ([`store::marks`]).
//! The sidecar accepts a subscription only between two batches (never
//! between a batch's store commit and its publication, see
//! [`crate::subscribe`]), so a stored row at or below its file's mark was
//! published before the subscription and cannot come live; only rows above
//! it (or in files created or replaced since) are kept: the records that
//! reached the store while `tail` subscribed and read. With `-n N` for at
//! most [`KEEP_ALL_UP_TO`] records every printed one is kept (at most N;
//! the marks would cost a file open per partition), and so is every one
//! when the sidecar does not say it subscribes between batches (older than
//! this rule).
//!
//! Live records queue in the sidecar while the store is read (8192; more
//! are dropped and a `loss` line says how many).
//!
//! # Classes
//!
//! `--class` selects the history by the store's class directories and the
//! live records by the class the sidecar's router gives them (the same
//! decision that chose the directory). A sidecar too old to filter live
//! records by class refuses the subscription and `tail -f --class` fails
//! with an error saying so: only the sidecar knows a record's class (its
//! `--config`), so `tail` cannot filter them itself, and printing them
//! unfiltered would be wrong.

use std::collections::HashSet;
use std::io::{self, Write};
use std::path::PathBuf;

use clap::Args;

use crate::query::FilterArgs;
use crate::render::{Format, OutputOpts, Printer};
use crate::store::{self, QueryOptions};

/// With `-f -n N` up to this, every history record printed is kept to
/// skip its live copy (see the module docs); above (or `-n all`), only
/// those that reached the store after the marks.
pub const KEEP_ALL_UP_TO: usize = 1024;

/// Arguments of `distlogd tail`.
#[derive(Debug, Clone, Args)]
pub struct TailArgs {
    /// Which records.
    #[command(flatten)]
    pub filter: FilterArgs,

    /// Only the last N records (`-n` alone: 10; `-n all`: every one).
    /// Default: every matching record; with -f, the last 10.
    #[arg(short = 'n', long = "lines", value_name = "N", num_args = 0..=1, default_missing_value = "10")]
    pub lines: Option<String>,

    /// Keep printing records as they arrive (from the running sidecar's
    /// control socket). Subscribes before reading the store: no record is
    /// missed or printed twice between the history and the live part
    /// (tail remembers only the history records that reached the store
    /// after it started).
    #[arg(short = 'f', long)]
    pub follow: bool,

    /// Output: short (for people; coloured on a terminal), json (the record
    /// schema, one object per line), cat (messages only).
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Short)]
    pub output: Format,

    /// Only records of these retention classes (repeatable): log, usage,
    /// perf, or your own. With -f the live records too (as the sidecar
    /// classifies them; a sidecar too old to do so is an error).
    #[arg(long, value_name = "CLASS")]
    pub class: Vec<String>,

    /// The sidecar's data directory (where its store is). Default: the
    /// sidecar's default ($XDG_STATE_HOME/distlog, ~/.local/state/distlog,
    /// /var/lib/distlog for root).
    #[arg(long, env = "DISTLOG_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// With -f: the sidecar's data socket (its control socket is beside it).
    #[arg(long, env = "DISTLOG_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// With -f: the sidecar's control socket.
    #[arg(long, env = "DISTLOG_CTL_SOCKET", value_name = "PATH")]
    pub ctl_socket: Option<PathBuf>,
}

/// Parse `-n`.
fn lines(args: &TailArgs) -> anyhow::Result<Option<usize>> {
    match args.lines.as_deref() {
        None if args.follow => Ok(Some(10)),
        None | Some("all") => Ok(None),
        Some(n) => n
            .parse()
            .map(Some)
            .map_err(|_| anyhow::anyhow!("-n {n:?}: want a number or all")),
    }
}

/// Run `distlogd tail`.
pub fn run(args: &TailArgs) -> anyhow::Result<()> {
    let filter = args.filter.to_filter();
    let last = lines(args)?;
    let data = args
        .data_dir
        .clone()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(crate::default_data_dir);
    let store_dir = store::store_dir(&data);
    let opts = OutputOpts::for_stdout(args.output);
    let mut printer = Printer::new(opts);
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut write_err: Option<io::Error> = None;
    let q = QueryOptions {
        last,
        classes: args.class.clone(),
    };
    // Marks, then subscribe, then read the store (see the module docs).
    let marks = if args.follow && last.is_none_or(|n| n > KEEP_ALL_UP_TO) {
        match store::marks(&store_dir, &filter, &q) {
            Ok(m) => Some(m),
            // Nothing stored yet: every stored row will be a later one.
            Err(store::StoreError::NoStore(_)) => Some(Default::default()),
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    let (live, marks) = if args.follow {
        let ctl = crate::ctl::command::ctl_path(args.socket.as_deref(), args.ctl_socket.as_deref());
        let wire = crate::subscribe::Filter::from_query(&filter, &args.class);
        let (rd, info) = crate::ctl::command::subscribe(&ctl, wire)?;
        (Some((rd, ctl)), marks.filter(|_| info.between_batches))
    } else {
        (None, None)
    };
    // With -f: the JSON form of the history records printed that may come
    // live too, to skip their live copies.
    let mut printed: HashSet<String> = HashSet::new();
    let mut history = 0u64;
    if last != Some(0) {
        match store::query_rows(&store_dir, &filter, &q, |r, at| {
            history += 1;
            let later = || {
                marks.as_ref().is_none_or(|m| {
                    m.get(at.partition)
                        .is_none_or(|&(inode, max)| inode != at.inode || at.id > max)
                })
            };
            if live.is_some() && later() {
                printed.insert(r.to_json_line());
            }
            match printer.print(&r, &mut out) {
                Ok(()) => true,
                Err(e) => {
                    write_err = Some(e);
                    false
                }
            }
        }) {
            Ok(stats) => {
                for s in &stats.skipped {
                    diag!("skipped {s}");
                }
            }
            // Following a sidecar that has stored nothing yet is fine.
            Err(store::StoreError::NoStore(_)) if args.follow => {}
            Err(e) => return Err(e.into()),
        }
    }
    if live.is_some() && std::env::var_os("DISTLOG_TAIL_STATS").is_some() {
        // For tests and diagnosis: how many history records are held.
        diag!(
            "tail: {history} history records printed, {} kept to skip their live copies",
            printed.len()
        );
    }
    if let Some(e) = write_err {
        return if e.kind() == io::ErrorKind::BrokenPipe {
            Ok(())
        } else {
            Err(e.into())
        };
    }
    if let Err(e) = out.flush() {
        return if e.kind() == io::ErrorKind::BrokenPipe {
            Ok(())
        } else {
            Err(e.into())
        };
    }
    let Some((rd, ctl)) = live else {
        return Ok(());
    };
    crate::ctl::command::follow_on(&ctl, rd, |r| {
        if !printed.is_empty() && printed.remove(&r.to_json_line()) {
            return Ok(());
        }
        printer.print(r, &mut out)?;
        out.flush()
    })?;
    Ok(())
}

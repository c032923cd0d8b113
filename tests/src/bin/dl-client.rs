//! A client process for the end-to-end tests: writes records through
//! `tracing` and `log` in the shapes the tests need.

use std::io::{BufRead, Write};
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Args {
    /// Service name.
    #[arg(long, default_value = "testsvc")]
    service: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// THREADS threads each write RECORDS events `burst` with seq and thread.
    Burst {
        #[arg(long, default_value_t = 1)]
        threads: u32,
        #[arg(long, default_value_t = 1000)]
        records: u64,
        /// Then print "written" and sleep until killed.
        #[arg(long)]
        hang: bool,
        /// Exit with process::exit (no guard drop, no flush).
        #[arg(long)]
        hard_exit: bool,
    },
    /// Write one event per line read on stdin (the line is the message),
    /// printing "ok" after each; the line `!flush` waits for the sidecar
    /// to read the ring instead.
    Lines,
    /// Typed fields and the log crate.
    Fields,
    /// What the `Registry` used to do for distlog, now its own subscriber's
    /// work: a span cloned and closed on another thread, re-entered spans,
    /// exits out of order, `Span::current`, nested `in_scope`,
    /// `follows_from`, disabled spans, ids reused after closes. Asserts what
    /// it sees in-process; the records say the rest.
    SpanSemantics,
    /// Through `Builder::layer` in a stack of one's own: a `Registry`, a
    /// filter, a fmt layer (to stderr) and distlog's layer.
    Composed,
    /// SPANS spans open at once (more than the first slab buckets hold), each
    /// with a child by explicit parent, an event by explicit parent, a
    /// recorded field; every third marked failed (in turns: mark_error,
    /// `error = true`, an error event); one with a malformed traceparent;
    /// half closed on another thread.
    ManyScopes {
        #[arg(long, default_value_t = 1500)]
        spans: u64,
    },
    /// Fork: the parent and the child both write COUNT records.
    Fork {
        #[arg(long, default_value_t = 100)]
        count: u64,
    },
    /// One step of a request chain: open scope NAME (continuing the
    /// traceparent given, if any), log, print the traceparent, then run
    /// CHILD (if given) passing it on, and close.
    Chain {
        name: String,
        #[arg(long)]
        traceparent: Option<String>,
        /// W3C tracestate that came with the traceparent.
        #[arg(long)]
        tracestate: Option<String>,
        /// Log at debug too (seen only when the request is boosted).
        #[arg(long)]
        debug: bool,
        /// Fail this step (error event in the scope).
        #[arg(long)]
        fail: bool,
        /// Then hang inside the scope until killed.
        #[arg(long)]
        hang: bool,
        /// Further steps: each "name" (or "name:fail") runs as a child
        /// process of the one before, receiving its traceparent.
        #[arg(long)]
        next: Vec<String>,
    },
    /// Until killed: every INTERVAL ms write one record at each level
    /// (`tick` with a counter), targets `dl_client` and `dl_client::db`;
    /// inside a span `request{order=N}` whose order alternates 1, 2.
    Loop {
        #[arg(long, default_value_t = 5)]
        interval: u64,
    },
    /// Until killed: every INTERVAL ms a `tracing` `tick` (INFO, with a
    /// counter) and `log` crate records `log tick N` at INFO and DEBUG,
    /// target `dl_client::legacy`.
    LogLoop {
        #[arg(long, default_value_t = 5)]
        interval: u64,
    },
    /// `log` crate records inside a span `legacy`: a literal message, one
    /// with arguments, an error (the span ends as an error); then one
    /// outside any span and a DEBUG one (off by default).
    LogRecords,
    /// Tasks hopping between tokio worker threads inside instrumented spans.
    Async {
        #[arg(long, default_value_t = 8)]
        tasks: u32,
    },
    /// Reliability: THREADS threads write `flood{seq, thread}` at full speed
    /// for SECONDS, then print `LEDGER attempted= written= dropped=` (the
    /// rings' own counters). Prints "running" once every thread wrote.
    Flood {
        #[arg(long, default_value_t = 4)]
        threads: u32,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// Reliability: COUNT records `slow{seq, sent_ns}` (realtime ns when
    /// written), one every INTERVAL ms; then `LEDGER ...`.
    Slow {
        #[arg(long, default_value_t = 100)]
        count: u64,
        #[arg(long, default_value_t = 10)]
        interval: u64,
    },
    /// Reliability: COUNT `log` records, each from a call site of its own
    /// (distinct targets); then `LEDGER ...`.
    CallsiteFlood {
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
    },
    /// Reliability: a string field, a message and a Debug value of BYTES
    /// bytes each (3 records); then `LEDGER ...`.
    Giant {
        #[arg(long, default_value_t = 1 << 20)]
        bytes: usize,
    },
    /// Reliability: write `before`, then leave a record reserved and never
    /// committed (as a thread killed mid-record does) in ring INDEX (0 =
    /// the shared overflow ring: run with DISTLOG_MAX_RINGS=0), then write
    /// AFTER records `after{seq}`, print "stuck", then hang if asked.
    Stuck {
        #[arg(long, default_value_t = 0)]
        index: u32,
        #[arg(long, default_value_t = 10)]
        after: u64,
        #[arg(long)]
        hang: bool,
    },
    /// Reliability: open COUNT connections to the sidecar that never say
    /// hello, wait a moment, print `held N refused K` (K: closed by the
    /// sidecar with a refusal), then hold them until killed.
    Connections {
        #[arg(long, default_value_t = 1000)]
        count: u32,
    },
    /// Reliability: CONNS protocol-level connections, each handing RINGS
    /// minimal rings (closing its own copy of each memfd at once); print
    /// `sent N closed K` (K: connections the sidecar closed), then hold
    /// them until killed.
    RingsFlood {
        #[arg(long, default_value_t = 8)]
        conns: u32,
        #[arg(long, default_value_t = 256)]
        rings: u32,
    },
}

fn burst(threads: u32, records: u64) {
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..records {
                    tracing::info!(seq = i, thread = t, "burst");
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}

fn ledger(attempted: u64) {
    println!("{}", distlog_tests::reliability::own_ledger_line(attempted));
    std::io::stdout().flush().unwrap();
}

fn flood(threads: u32, seconds: f64) {
    let end = std::time::Instant::now() + Duration::from_secs_f64(seconds);
    let started = std::sync::Arc::new(std::sync::Barrier::new(threads as usize + 1));
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let started = started.clone();
            std::thread::spawn(move || {
                let mut i = 0u64;
                tracing::info!(seq = i, thread = t, "flood");
                i += 1;
                started.wait();
                while std::time::Instant::now() < end {
                    for _ in 0..64 {
                        tracing::info!(seq = i, thread = t, "flood");
                        i += 1;
                    }
                }
                i
            })
        })
        .collect();
    started.wait();
    println!("running");
    std::io::stdout().flush().unwrap();
    let attempted: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    ledger(attempted);
}

/// Leave a record reserved and never committed in ring `index` of this
/// process, as a writer killed between reserving and committing does.
fn leave_unfinished(index: u32) {
    use distlog::ring::{record_bytes, RingHeader, BUSY, HEADER_BYTES};
    use std::os::fd::AsRawFd;
    use std::sync::atomic::Ordering;
    let rd = std::fs::read_dir("/proc/self/fd").unwrap();
    for e in rd.flatten() {
        let Ok(link) = std::fs::read_link(e.path()) else {
            continue;
        };
        if !link
            .to_string_lossy()
            .starts_with(&format!("/memfd:distlog-ring-{index} "))
        {
            continue;
        }
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(e.path())
            .unwrap();
        let len = f.metadata().unwrap().len() as usize;
        // SAFETY: a new shared mapping of our own ring memfd; leaked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        // SAFETY: the mapping starts with the ring's header.
        let hdr = unsafe { &*(p as *const RingHeader) };
        let cap = hdr.stat.data_bytes;
        let need = record_bytes(20) as u64;
        let w = hdr.prod.write_pos.load(Ordering::Acquire);
        assert!(cap - (w & (cap - 1)) >= need, "no wrap in this test");
        let off = HEADER_BYTES + (w & (cap - 1)) as usize;
        // SAFETY: `off` is a 4-aligned header word inside the mapping.
        let word = unsafe { &*((p as *mut u8).add(off) as *const std::sync::atomic::AtomicU32) };
        if hdr.stat.flags & distlog::ring::FLAG_SHARED != 0 {
            // reserve (as the CAS in push_shared), mark BUSY, never commit
            hdr.prod.write_pos.store(w + need, Ordering::Relaxed);
            word.store(BUSY | 20, Ordering::Release);
        } else {
            // an exclusive ring whose position covers an unfinished record
            word.store(BUSY | 20, Ordering::Release);
            hdr.prod.write_pos.store(w + need, Ordering::Release);
        }
        std::mem::forget(f);
        return;
    }
    panic!("no ring {index} in this process");
}

/// Connect at the protocol level and hand `rings` minimal rings per
/// connection (see `Cmd::RingsFlood`).
fn rings_flood(conns: u32, rings: u32) -> ! {
    use distlog::proto::{self, ClientMsg, Receiver, SidecarMsg};
    use distlog::ring::{RingHeader, HEADER_BYTES, MIN_DATA_BYTES};
    use distlog::segment::Segment;
    use distlog::table::{TableHeader, TABLE_MAGIC, TABLE_VERSION};
    use std::os::fd::AsFd;
    let path = std::env::var_os("DISTLOG_SOCKET").expect("DISTLOG_SOCKET");
    let mut held = Vec::new();
    let mut sent = 0u64;
    for c in 0..conns {
        let Ok(sock) = std::os::unix::net::UnixStream::connect(&path) else {
            continue;
        };
        let table = Segment::create("t", 8192).unwrap();
        // SAFETY: a fresh page-aligned mapping larger than the header.
        unsafe {
            std::ptr::write(
                table.as_ptr() as *mut TableHeader,
                TableHeader {
                    magic: TABLE_MAGIC,
                    version: TABLE_VERSION,
                    count: 0,
                    total_bytes: 8192,
                    committed: std::sync::atomic::AtomicU64::new(0),
                },
            )
        };
        let hello = ClientMsg::Hello {
            version: distlog::wire::PROTOCOL_VERSION,
            service: "ringsflood".into(),
            pid: std::process::id(),
            clock_tsc: false,
            library: "dl-client".into(),
        };
        if proto::send(sock.as_fd(), &hello, &[table.fd()]).is_err() {
            continue;
        }
        match Receiver::new().recv::<SidecarMsg>(sock.as_fd()) {
            Ok((SidecarMsg::Welcome { .. }, _)) => {}
            _ => continue,
        }
        for r in 0..rings {
            let seg = Segment::create("r", HEADER_BYTES + MIN_DATA_BYTES).unwrap();
            let id = [
                u64::from(std::process::id()) << 32 | u64::from(c),
                u64::from(r) + 1,
            ];
            // SAFETY: as above.
            unsafe {
                std::ptr::write(
                    seg.as_ptr() as *mut RingHeader,
                    RingHeader::new(MIN_DATA_BYTES, id, 0, r + 1),
                )
            };
            let msg = ClientMsg::Ring { index: r + 1 };
            if proto::send(sock.as_fd(), &msg, &[seg.fd()]).is_err() {
                break;
            }
            sent += 1;
        }
        held.push((sock, table));
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut closed = 0;
    for (s, _) in &held {
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 64];
        match std::io::Read::read(&mut &*s, &mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => closed += 1,
        }
    }
    println!("sent {sent} closed {closed}");
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

fn main() {
    let args = Args::parse();
    let guard = if matches!(args.cmd, Cmd::Composed) {
        composed(&args.service);
        return;
    } else {
        distlog::init(&args.service).expect("distlog init")
    };
    match args.cmd {
        Cmd::Burst {
            threads,
            records,
            hang,
            hard_exit,
        } => {
            burst(threads, records);
            if hang {
                println!("written");
                std::io::stdout().flush().unwrap();
                loop {
                    std::thread::sleep(Duration::from_secs(60));
                }
            }
            if hard_exit {
                std::process::exit(0);
            }
        }
        Cmd::Lines => {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                let line = line.unwrap();
                // "!flush": wait until the sidecar has read the ring (no
                // record), so the next line finds room.
                if line == "!flush" {
                    distlog::flush(Duration::from_secs(30));
                } else {
                    tracing::info!(line = line.as_str(), "line");
                }
                println!("ok");
                std::io::stdout().flush().unwrap();
            }
        }
        Cmd::Fields => {
            tracing::info!(
                i = -5i64,
                u = u64::MAX,
                big = i64::MIN,
                f = 2.5f64,
                b = true,
                s = "text",
                d = ?vec![1, 2],
                "typed {}",
                "fields"
            );
            // Values with no compact form (a gap: the `None`; 128-bit
            // integers): these events take the postcard layout.
            tracing::info!(first = 1i64, gap = None::<i64>, after = 3u64, "gap");
            tracing::info!(wide = u128::MAX, neg = i128::MIN, small = 7i128, "wide");
            tracing::warn!(target: "custom::target", "literal");
            log::warn!(target: "thirdparty::db", "from log {}", 7);
            tracing::debug!("not recorded at the default level");
        }
        Cmd::Fork { count } => {
            // A scope before the fork seeds this thread's id generators:
            // the child must not repeat the parent's ids after it.
            tracing::info_span!("before_fork").in_scope(|| {
                for i in 0..count {
                    tracing::info!(seq = i, who = "parent-before", "fork");
                }
            });
            // SAFETY: the child only logs and exits.
            match unsafe { nix::unistd::fork() }.expect("fork") {
                nix::unistd::ForkResult::Child => {
                    tracing::info_span!("after_fork").in_scope(|| {
                        for i in 0..count {
                            tracing::info!(seq = i, who = "child", "fork");
                        }
                    });
                    distlog::flush(Duration::from_secs(10));
                    std::process::exit(0);
                }
                nix::unistd::ForkResult::Parent { child } => {
                    tracing::info_span!("after_fork").in_scope(|| {
                        for i in 0..count {
                            tracing::info!(seq = i, who = "parent-after", "fork");
                        }
                    });
                    nix::sys::wait::waitpid(child, None).unwrap();
                }
            }
        }
        Cmd::Chain {
            name,
            traceparent,
            tracestate,
            debug,
            fail,
            hang,
            next,
        } => {
            let span = tracing::info_span!("step", step = name.as_str());
            let span = match &traceparent {
                Some(tp) => distlog::continue_from_with_state(tp, tracestate.as_deref(), span),
                None => span,
            };
            let _e = span.enter();
            tracing::info!(at = name.as_str(), "working");
            tracing::debug!(at = name.as_str(), "debug detail");
            let _ = debug;
            let tp = distlog::traceparent().expect("in a scope");
            println!("{tp}");
            std::io::stdout().flush().unwrap();
            if let Some((first, rest)) = next.split_first() {
                let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
                let (svc, fail_next) = match first.split_once(':') {
                    Some((s, f)) => (s, f == "fail"),
                    None => (first.as_str(), false),
                };
                cmd.args(["--service", svc, "chain", svc, "--traceparent", &tp]);
                if fail_next {
                    cmd.arg("--fail");
                }
                if let Some(ts) = distlog::tracestate() {
                    cmd.args(["--tracestate", &ts]);
                }
                for r in rest {
                    cmd.args(["--next", r]);
                }
                let out = cmd.output().unwrap();
                std::io::stdout().write_all(&out.stdout).unwrap();
                assert!(out.status.success());
            }
            if fail {
                tracing::error!(reason = "insufficient funds", "declined");
            }
            if hang {
                loop {
                    std::thread::sleep(Duration::from_secs(60));
                }
            }
        }
        Cmd::Loop { interval } => {
            let mut n = 0u64;
            loop {
                let span = tracing::info_span!("request", order = n % 2 + 1);
                let _e = span.enter();
                tracing::error!(n, "tick");
                tracing::warn!(n, "tick");
                tracing::info!(n, "tick");
                tracing::debug!(n, "tick");
                tracing::trace!(n, "tick");
                tracing::debug!(target: "dl_client::db", n, "tick");
                drop(_e);
                n += 1;
                std::thread::sleep(Duration::from_millis(interval));
            }
        }
        Cmd::LogLoop { interval } => {
            for n in 0u64.. {
                tracing::info!(n, "tick");
                log::info!(target: "dl_client::legacy", "log tick {n}");
                log::debug!(target: "dl_client::legacy", "log tick {n}");
                std::thread::sleep(Duration::from_millis(interval));
            }
        }
        Cmd::LogRecords => {
            tracing::info_span!("legacy").in_scope(|| {
                log::info!(target: "dl_client::legacy", "literal log message");
                log::warn!(target: "dl_client::legacy", "formatted {} and {:?}", 7, "x");
                log::error!(target: "dl_client::legacy", "failed: {}", "disk full");
            });
            log::info!(target: "dl_client::legacy", "outside any span");
            log::debug!(target: "dl_client::legacy", "debug: off by default");
        }
        Cmd::ManyScopes { spans } => many_scopes(spans),
        Cmd::SpanSemantics => span_semantics(),
        Cmd::Composed => unreachable!("handled before init"),
        Cmd::Async { tasks } => {
            use tracing::Instrument;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut hs = Vec::new();
                for t in 0..tasks {
                    let span = tracing::info_span!("task", task = t);
                    hs.push(tokio::spawn(
                        async move {
                            // Enough steps that the tasks land on both
                            // workers even on a loaded machine.
                            for i in 0..25u32 {
                                tracing::info!(task = t, step = i, "tick");
                                tokio::time::sleep(Duration::from_millis(1)).await;
                                tokio::task::yield_now().await;
                            }
                        }
                        .instrument(span),
                    ));
                }
                for h in hs {
                    h.await.unwrap();
                }
            });
        }
        Cmd::Flood { threads, seconds } => flood(threads, seconds),
        Cmd::Slow { count, interval } => {
            for i in 0..count {
                let sent_ns = distlog_tests::reliability::realtime_ns();
                tracing::info!(seq = i, thread = 0u64, sent_ns, "slow");
                std::thread::sleep(Duration::from_millis(interval));
            }
            ledger(count);
        }
        Cmd::CallsiteFlood { count } => {
            for i in 0..count {
                let target = format!("site::n{i}");
                log::info!(target: target.as_str(), "callsite flood {i}");
            }
            ledger(count);
        }
        Cmd::Giant { bytes } => {
            let huge = "é".repeat(bytes / 2);
            tracing::info!(big = huge.as_str(), "giant field");
            tracing::info!("{huge}");
            tracing::info!(dbg = ?vec![7u8; bytes / 4], "giant debug");
            ledger(3);
        }
        Cmd::RingsFlood { conns, rings } => rings_flood(conns, rings),
        Cmd::Connections { count } => {
            use std::io::Read;
            let path = std::env::var_os("DISTLOG_SOCKET").expect("DISTLOG_SOCKET");
            let mut socks = Vec::new();
            let mut failed = 0;
            for _ in 0..count {
                match std::os::unix::net::UnixStream::connect(&path) {
                    Ok(s) => socks.push(s),
                    Err(_) => failed += 1,
                }
            }
            std::thread::sleep(Duration::from_millis(500));
            let mut refused = failed;
            for s in &socks {
                s.set_nonblocking(true).unwrap();
                let mut b = [0u8; 64];
                match (&*s).read(&mut b) {
                    Ok(_) => refused += 1, // a refusal, or closed
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => refused += 1,
                }
            }
            println!(
                "held {} refused {refused}",
                socks.len() as u32 + failed - refused
            );
            std::io::stdout().flush().unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        Cmd::Stuck { index, after, hang } => {
            tracing::info!(seq = 0u64, "before");
            distlog::flush(Duration::from_secs(10));
            leave_unfinished(index);
            for i in 0..after {
                tracing::info!(seq = i, "after");
            }
            println!("stuck");
            std::io::stdout().flush().unwrap();
            if hang {
                loop {
                    std::thread::sleep(Duration::from_secs(60));
                }
            }
            distlog::flush(Duration::from_secs(2));
            ledger(after + 1);
        }
    }
    drop(guard);
}

fn span_semantics() {
    use tracing::Span;
    // Cloned; the first handle dropped here, the last on another thread,
    // which still records in it: the close comes from there, once.
    let shared = tracing::info_span!("shared");
    let clone = shared.clone();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || {
        rx.recv().unwrap();
        clone.in_scope(|| tracing::info!("after the first handle dropped"));
        drop(clone);
    });
    drop(shared);
    tx.send(()).unwrap();
    other.join().unwrap();

    // Re-entered: the inner exit leaves it entered.
    let a = tracing::info_span!("reentered");
    {
        let _g1 = a.enter();
        {
            let _g2 = a.enter();
            tracing::info!("twice in");
        }
        tracing::info!("once in");
        assert_eq!(Span::current().id(), a.id());
    }
    assert!(Span::current().is_none());
    tracing::info!("out of reentered");

    // Exits out of order.
    let x = tracing::info_span!("x");
    let y = tracing::info_span!("y");
    let gx = x.enter();
    let gy = y.enter();
    drop(gx);
    assert_eq!(Span::current().id(), y.id());
    tracing::info!("in y after x exited");
    drop(gy);
    assert!(Span::current().is_none());
    tracing::info!("after out of order");

    // Nested in_scope; Span::current names the innermost.
    let outer = tracing::info_span!("nest_outer");
    outer.in_scope(|| {
        assert_eq!(
            Span::current().metadata().map(|m| m.name()),
            Some("nest_outer")
        );
        tracing::info_span!("nest_inner").in_scope(|| {
            assert_eq!(
                Span::current().metadata().map(|m| m.name()),
                Some("nest_inner")
            );
            tracing::info!("nested");
        });
        assert_eq!(Span::current().id(), outer.id());
    });
    // follows_from: accepted, nothing recorded (a scope has one parent).
    let f = tracing::info_span!("follower");
    f.follows_from(&outer);
    f.follows_from(Span::none());
    drop(outer);
    f.in_scope(|| tracing::info!("in follower"));
    drop(f);

    // Disabled by the filter: no span, no id; events go to the scope
    // around it.
    let d = tracing::debug_span!("disabled_span");
    assert!(d.is_disabled() && d.id().is_none());
    d.in_scope(|| {
        assert!(Span::current().is_none());
        tracing::info!("in a disabled span");
    });

    // Ids come back once closed: churning through spans does not grow the
    // table (the low 32 bits are the slot).
    let probe = tracing::info_span!("probe");
    let slot = |s: &Span| s.id().map(|i| i.into_u64() as u32);
    let first = slot(&probe);
    drop(probe);
    for i in 0..1000u64 {
        let s = tracing::info_span!("churn", i);
        assert_eq!(slot(&s), first, "a closed span's slot is reused");
    }
    println!("ok");
}

/// The `Composed` command: distlog's layer beside a fmt layer.
fn composed(service: &str) {
    use tracing_subscriber::prelude::*;
    let layer = distlog::builder(service).layer().expect("distlog runtime");
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(std::io::stderr),
        )
        .with(layer)
        .init();
    let span = tracing::info_span!("composed", order = 42);
    span.in_scope(|| {
        assert_eq!(
            tracing::Span::current().metadata().map(|m| m.name()),
            Some("composed")
        );
        println!("{}", distlog::traceparent().expect("a scope"));
        tracing::info!(n = 1, "through both layers");
        // `init()` of this stack installed tracing-log's `LogTracer`.
        log::info!(target: "composed::log", "through tracing-log {}", 1);
    });
    tracing::debug!("filtered out");
    drop(span);
    assert!(distlog::flush(Duration::from_secs(5)));
}

fn many_scopes(n: u64) {
    let mut open = Vec::new();
    for i in 0..n {
        let span = tracing::info_span!(
            "outer",
            i,
            done = tracing::field::Empty,
            error = tracing::field::Empty
        );
        let child = tracing::info_span!(parent: &span, "inner", i);
        tracing::info!(parent: &span, i, "under outer");
        span.record("done", true);
        match i % 9 {
            0 => distlog::mark_error(&span),
            3 => {
                span.record("error", true);
            }
            6 => span.in_scope(|| tracing::error!(i, "failed")),
            _ => {}
        }
        open.push((span, child));
    }
    let bad = distlog::continue_from("00-not-a-traceparent", tracing::info_span!("bad"));
    bad.in_scope(|| tracing::info!("in bad"));
    drop(bad);
    let rest = open.split_off(open.len() / 2);
    std::thread::spawn(move || drop(rest)).join().unwrap();
    drop(open);
}

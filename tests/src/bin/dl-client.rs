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
    /// printing "ok" after each.
    Lines,
    /// Typed fields and the log crate.
    Fields,
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
    /// Tasks hopping between tokio worker threads inside instrumented spans.
    Async {
        #[arg(long, default_value_t = 8)]
        tasks: u32,
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

fn main() {
    let args = Args::parse();
    let guard = distlog::init(&args.service).expect("distlog init");
    match args.cmd {
        Cmd::Burst { threads, records, hang, hard_exit } => {
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
                tracing::info!(line = line.as_str(), "line");
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
            tracing::warn!(target: "custom::target", "literal");
            log::warn!(target: "thirdparty::db", "from log {}", 7);
            tracing::debug!("not recorded at the default level");
        }
        Cmd::Fork { count } => {
            for i in 0..count {
                tracing::info!(seq = i, who = "parent-before", "fork");
            }
            // SAFETY: the child only logs and exits.
            match unsafe { nix::unistd::fork() }.expect("fork") {
                nix::unistd::ForkResult::Child => {
                    for i in 0..count {
                        tracing::info!(seq = i, who = "child", "fork");
                    }
                    distlog::flush(Duration::from_secs(10));
                    std::process::exit(0);
                }
                nix::unistd::ForkResult::Parent { child } => {
                    for i in 0..count {
                        tracing::info!(seq = i, who = "parent-after", "fork");
                    }
                    nix::sys::wait::waitpid(child, None).unwrap();
                }
            }
        }
        Cmd::Chain { name, traceparent, tracestate, debug, fail, hang, next } => {
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
        Cmd::Async { tasks } => {
            use tracing::Instrument;
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async {
                let mut hs = Vec::new();
                for t in 0..tasks {
                    let span = tracing::info_span!("task", task = t);
                    hs.push(tokio::spawn(
                        async move {
                            for i in 0..5u32 {
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
    }
    drop(guard);
}

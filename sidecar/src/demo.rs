//! `distlogd demo`: a sidecar on a private socket, demo services in Rust and
//! C handling requests across processes, their records shown live, a
//! verbosity change while they run, and one request shown as a tree.
//!
//! The services are this binary again (`distlogd demo-service ...`, hidden)
//! using the `distlog` client like any Rust service would, and, when given,
//! the C program `examples/c/bank.c` (built by `scripts/demo`). A request
//! goes `checkout` → `payments` → `bank`, each a process of its own, the
//! trace passed on as W3C `traceparent` (and `tracestate`).

use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::{DemoArgs, DemoServiceArgs};

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Writing to stdout, or starting a process, failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The sidecar did not come up.
    #[error("the demo sidecar did not start: {0}")]
    Sidecar(String),
    /// The client library failed.
    #[error("distlog: {0}")]
    Client(#[from] distlog::Error),
}

const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

fn banner(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "\n{BOLD}== {text}{RESET}");
}

/// One record as a line a person reads.
fn pretty(v: &serde_json::Value) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
    let ts = s("ts");
    let time = ts.get(11..23).unwrap_or(&ts).to_owned();
    let level = s("level");
    let colour = match level.as_str() {
        "ERROR" => "\x1b[31m",
        "WARN" => "\x1b[33m",
        "INFO" => "\x1b[32m",
        "DEBUG" => "\x1b[36m",
        _ => "\x1b[2m",
    };
    let who = format!("{}[{}]", s("service"), v["pid"]);
    let mut fields = String::new();
    if let Some(m) = v["fields"].as_object() {
        for (k, x) in m {
            fields.push_str(&format!(" {DIM}{k}={x}{RESET}"));
        }
    }
    let body = match s("kind").as_str() {
        "scope_open" => format!("┌ {}", s("name")),
        "scope_close" => format!(
            "└ {} {:.1} ms {}",
            s("name"),
            v["duration_ns"].as_f64().unwrap_or(0.0) / 1e6,
            s("outcome")
        ),
        _ => s("message"),
    };
    format!(
        "{DIM}{time}{RESET} {colour}{level:5}{RESET} {who:18} {DIM}{:14}{RESET} {body}{fields}",
        s("target")
    )
}

fn start_sidecar(exe: &Path, socket: &Path, data: &Path) -> Result<Child, DemoError> {
    let mut cmd = Command::new(exe);
    cmd.arg("run").arg("--socket").arg(socket).arg("--stdout");
    cmd.arg("--data-dir").arg(data);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let out = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                let _ = writeln!(std::io::stdout().lock(), "{}", pretty(&v));
            }
        }
    });
    let end = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        if Instant::now() > end {
            return Err(DemoError::Sidecar(format!(
                "no socket at {}",
                socket.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(child)
}

/// Run the demo.
pub fn run(args: &DemoArgs) -> Result<(), DemoError> {
    let exe = std::env::current_exe()?;
    let dir = std::env::temp_dir().join(format!("distlog-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("distlogd.sock");
    let data = dir.join("data");
    banner(&format!(
        "distlogd on {} — records from every service, live",
        socket.display()
    ));
    let mut sidecar = start_sidecar(&exe, &socket, &data)?;
    let c_service = args.c_service.clone().filter(|p| p.exists());
    if c_service.is_none() {
        banner(
            "no C service given (scripts/demo builds examples/c/bank.c): payments decides alone",
        );
    }
    let mut last_trace = None;
    for order in 1..=args.requests {
        if order == args.requests / 2 + 1 {
            banner("distlogd ctl level set debug --service payments --ttl 3s");
            let st = Command::new(&exe)
                .args([
                    "ctl",
                    "level",
                    "set",
                    "debug",
                    "--service",
                    "payments",
                    "--ttl",
                    "3s",
                    "--socket",
                ])
                .arg(&socket)
                .status();
            if !matches!(st, Ok(s) if s.success()) {
                banner("(the verbosity change failed; see above)");
            }
            std::thread::sleep(Duration::from_millis(150));
        }
        let mut cmd = Command::new(&exe);
        cmd.args(["demo-service", "checkout", "--order", &order.to_string()])
            .env("DISTLOG_SOCKET", &socket)
            .stdout(Stdio::piped());
        if let Some(c) = &c_service {
            cmd.arg("--c-service").arg(c);
        }
        let out = cmd.output()?;
        if let Some(tp) = String::from_utf8_lossy(&out.stdout).lines().next() {
            last_trace = tp.get(3..35).map(str::to_owned);
        }
        std::thread::sleep(Duration::from_millis(args.pause_ms));
    }
    std::thread::sleep(Duration::from_millis(300));
    if let Some(trace) = last_trace {
        banner(&format!(
            "distlogd tree {trace} — the last request across processes"
        ));
        let mut cmd = Command::new(&exe);
        cmd.args(["tree", &trace]);
        cmd.arg("--data-dir").arg(&data);
        if !matches!(cmd.status(), Ok(s) if s.success()) {
            banner("(no tree: see above)");
        }
    }
    // SIGTERM: the sidecar drains what is left and exits.
    // SAFETY: kill(2) on the pid of our own child.
    unsafe { libc::kill(sidecar.id() as i32, libc::SIGTERM) };
    let _ = sidecar.wait();
    if !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        banner(&format!("kept {}", dir.display()));
    }
    Ok(())
}

/// A demo service: `checkout` calls `payments` (a process), which calls the
/// C `bank` (a process).
/// Returns whether the request succeeded (the exit status tells the
/// caller, as a real service's response would).
pub fn service(args: &DemoServiceArgs) -> Result<bool, DemoError> {
    let _guard = distlog::init(&args.name)?;
    Ok(match args.name.as_str() {
        "checkout" => {
            checkout(args);
            true
        }
        _ => payments(args),
    })
}

fn checkout(args: &DemoServiceArgs) {
    let order = args.order;
    let span = tracing::info_span!("checkout", order);
    let _e = span.enter();
    println!("{}", distlog::traceparent().unwrap_or_default());
    let amount = 1000 + order * 250;
    tracing::info!(amount_cents = amount, items = order % 4 + 1, "cart priced");
    std::thread::scope(|s| {
        for part in ["stock", "shipping"] {
            let parent = tracing::Span::current();
            s.spawn(move || {
                let span = tracing::info_span!(parent: &parent, "reserve", part);
                let _e = span.enter();
                std::thread::sleep(Duration::from_millis(1 + order % 3));
                tracing::info!(part, "reserved");
            });
        }
    });
    let tp = distlog::traceparent().unwrap_or_default();
    let mut cmd = Command::new(std::env::current_exe().expect("exe"));
    cmd.args([
        "demo-service",
        "payments",
        "--order",
        &order.to_string(),
        "--traceparent",
        &tp,
    ]);
    if let Some(ts) = distlog::tracestate() {
        cmd.args(["--tracestate", &ts]);
    }
    if let Some(c) = &args.c_service {
        cmd.arg("--c-service").arg(c);
    }
    match cmd.status() {
        Ok(s) if s.success() => tracing::info!(order, "paid"),
        _ => tracing::warn!(order, "payment failed, order kept for retry"),
    }
}

fn payments(args: &DemoServiceArgs) -> bool {
    let order = args.order;
    let amount = 1000 + order * 250;
    let span = tracing::info_span!("charge", card = "visa", amount_cents = amount);
    let span = match &args.traceparent {
        Some(tp) => distlog::continue_from_with_state(tp, args.tracestate.as_deref(), span),
        None => span,
    };
    let _e = span.enter();
    tracing::debug!(target: "payments::risk", score = (order * 37) % 100, "risk scored");
    let declined = match &args.c_service {
        Some(bank) => {
            let mut cmd = Command::new(bank);
            cmd.arg(distlog::traceparent().unwrap_or_default());
            if let Some(ts) = distlog::tracestate() {
                cmd.arg(ts);
            }
            !matches!(cmd.arg(amount.to_string()).status(), Ok(s) if s.success())
        }
        None => amount.is_multiple_of(3),
    };
    if declined {
        tracing::error!(reason = "insufficient funds", "declined");
        return false;
    }
    tracing::info!("charged");
    true
}

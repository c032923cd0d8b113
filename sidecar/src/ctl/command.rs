//! `distlogd ctl ...` and the live part of `distlogd tail -f`: the client
//! side of the control socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::{Reply, Request, SubscribeInfo};
use crate::directives::{human_duration, parse_ttl, Scope};
use crate::record::{Record, TraceId};
use crate::subscribe::Filter;

/// Arguments of `distlogd ctl`.
#[derive(Debug, Clone, Args)]
pub struct CtlArgs {
    /// The sidecar's data socket; the control socket is found beside it
    /// (`distlogd.sock` -> `distlogd.ctl.sock`). Default:
    /// $XDG_RUNTIME_DIR/distlog/distlogd.sock, else /run/distlog/distlogd.sock.
    #[arg(long, env = "DISTLOG_SOCKET", value_name = "PATH", global = true)]
    pub socket: Option<PathBuf>,

    /// The control socket, if it is not beside the data socket.
    #[arg(long, env = "DISTLOG_CTL_SOCKET", value_name = "PATH", global = true)]
    pub ctl_socket: Option<PathBuf>,

    /// Print the sidecar's reply as one JSON object (for programs).
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// `distlogd ctl` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum CtlCommand {
    /// Verbosity of running clients: set, show, reset.
    #[command(subcommand)]
    Level(LevelCommand),
    /// Connected clients (service, pid, uid, library, since), records read,
    /// drops, ring use; the sidecar's pid, uptime and memory.
    Status,
}

/// `distlogd ctl level` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum LevelCommand {
    /// Set directives (tracing-subscriber EnvFilter syntax, e.g.
    /// 'info,checkout::db=debug' or '[checkout{order=42}]=trace') for all
    /// clients, one service, one pid, or one request (--trace: one level).
    /// The most specific wins for a client: pid, then service, then all.
    /// Takes effect in running clients within 100 ms.
    Set {
        /// The directives.
        directives: String,
        /// Whom for.
        #[command(flatten)]
        scope: ScopeArgs,
        /// Revert by itself after this long: 30s, 10m, 1h30m.
        #[arg(long, value_parser = parse_ttl, value_name = "DURATION")]
        ttl: Option<Duration>,
    },
    /// The directives in force (with time left) and what each connected
    /// client gets.
    Show,
    /// Remove the directives of a scope (default: the all-clients one);
    /// clients go back to the next less specific one, or their own.
    Reset {
        /// Whom for.
        #[command(flatten)]
        scope: ScopeArgs,
        /// Remove every directive of every scope.
        #[arg(long, conflicts_with_all = ["service", "pid", "trace"])]
        everything: bool,
    },
}

/// A directive's scope on the command line (none: all clients).
#[derive(Debug, Clone, Default, Args)]
#[group(multiple = false)]
pub struct ScopeArgs {
    /// Only clients of this service.
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// Only this process.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Only this request (32 hex digits), in every process it reaches.
    #[arg(long, value_name = "TRACE_ID")]
    pub trace: Option<TraceId>,
}

impl ScopeArgs {
    /// The scope.
    pub fn scope(&self) -> Scope {
        match (&self.service, self.pid, self.trace) {
            (Some(s), _, _) => Scope::Service { service: s.clone() },
            (_, Some(pid), _) => Scope::Pid { pid },
            (_, _, Some(trace)) => Scope::Trace { trace },
            _ => Scope::All,
        }
    }
}

/// Why talking to the sidecar failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Nobody listens.
    #[error("cannot reach distlogd: no control socket at {} ({err}); is distlogd running? (start it with `distlogd run`, or point --socket / DISTLOG_SOCKET at its data socket)", path.display())]
    NotRunning {
        /// The control socket.
        path: PathBuf,
        /// The error.
        err: std::io::Error,
    },
    /// Not allowed to.
    #[error("permission denied on {}: only the user distlogd runs as, and root, may control it", path.display())]
    Denied {
        /// The control socket.
        path: PathBuf,
    },
    /// The conversation failed.
    #[error("control socket {}: {msg}", path.display())]
    Io {
        /// The control socket.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },
    /// The sidecar said no.
    #[error("{0}")]
    Refused(String),
}

/// The control socket for `--socket` / `--ctl-socket` (either may be unset).
pub fn ctl_path(socket: Option<&Path>, ctl_socket: Option<&Path>) -> PathBuf {
    if let Some(p) = ctl_socket.filter(|p| !p.as_os_str().is_empty()) {
        return p.to_owned();
    }
    let data = socket
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_owned)
        .unwrap_or_else(distlog::paths::default_socket);
    distlog::paths::ctl_socket_for(&data)
}

/// Connect, send `req`, read the first reply. The stream is returned for
/// requests that go on (subscribe).
pub fn request(path: &Path, req: &Request) -> Result<(Reply, BufReader<UnixStream>), CtlError> {
    let io = |msg: String| CtlError::Io {
        path: path.to_owned(),
        msg,
    };
    let mut s = UnixStream::connect(path).map_err(|err| match err.kind() {
        std::io::ErrorKind::PermissionDenied => CtlError::Denied { path: path.into() },
        _ => CtlError::NotRunning {
            path: path.into(),
            err,
        },
    })?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut line = serde_json::to_string(req).map_err(|e| io(e.to_string()))?;
    line.push('\n');
    // A refused peer may be told so and closed before it writes: read the
    // reply even when the write fails.
    let wrote = s.write_all(line.as_bytes());
    let mut rd = BufReader::new(s);
    let mut reply = String::new();
    match rd.read_line(&mut reply) {
        Ok(0) | Err(_) if wrote.is_err() => {
            return Err(io(format!(
                "sending the request: {}",
                wrote.err().map(|e| e.to_string()).unwrap_or_default()
            )))
        }
        Ok(0) => {
            return Err(io(
                "the sidecar closed the connection without a reply".into()
            ))
        }
        Err(e) => return Err(io(format!("reading the reply: {e}"))),
        Ok(_) => {}
    }
    let reply: Reply =
        serde_json::from_str(&reply).map_err(|e| io(format!("unreadable reply ({e}): {reply}")))?;
    let _ = rd.get_ref().set_read_timeout(None);
    Ok((reply, rd))
}

/// Run `distlogd ctl`. Exits non-zero (through the error) when the
/// sidecar refused or could not be reached; with `--json` the reply is
/// printed either way.
pub fn run(args: &CtlArgs) -> anyhow::Result<()> {
    let path = ctl_path(args.socket.as_deref(), args.ctl_socket.as_deref());
    let req = match &args.command {
        CtlCommand::Level(LevelCommand::Set {
            directives,
            scope,
            ttl,
        }) => Request::LevelSet {
            directives: directives.clone(),
            scope: scope.scope(),
            ttl_ms: ttl.map(|t| t.as_millis().min(u128::from(u64::MAX)) as u64),
        },
        CtlCommand::Level(LevelCommand::Show) => Request::LevelShow,
        CtlCommand::Level(LevelCommand::Reset { scope, everything }) => Request::LevelReset {
            scope: scope.scope(),
            everything: *everything,
        },
        CtlCommand::Status => Request::Status,
    };
    let reply = match request(&path, &req) {
        Ok((r, _)) => r,
        Err(e) if args.json => {
            println!("{}", Reply::error(e.to_string()).to_line().trim_end());
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", reply.to_line().trim_end())?;
    } else if reply.ok {
        if let Some(m) = &reply.message {
            writeln!(out, "{m}")?;
        }
        match &args.command {
            CtlCommand::Level(LevelCommand::Show) => print_show(&mut out, &reply.data)?,
            CtlCommand::Status => print_status(&mut out, &reply.data)?,
            _ => {}
        }
    }
    if !args.json {
        for n in &reply.notes {
            crate::diag!("note: {n}");
        }
    }
    if !reply.ok {
        return Err(CtlError::Refused(reply.error.unwrap_or_else(|| "refused".into())).into());
    }
    Ok(())
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    }
}

fn print_show(out: &mut impl Write, d: &Value) -> std::io::Result<()> {
    let dirs = d["directives"].as_array().cloned().unwrap_or_default();
    if dirs.is_empty() {
        writeln!(
            out,
            "no directives: every client uses its own start-up filter"
        )?;
    } else {
        writeln!(out, "directives:")?;
        for x in &dirs {
            let scope = match x["scope"].as_str() {
                Some("all") => "all clients".to_owned(),
                Some("service") => format!("service {}", s(&x["service"])),
                Some("pid") => format!("pid {}", s(&x["pid"])),
                Some("trace") => format!("trace {}", s(&x["trace"])),
                other => other.unwrap_or("?").to_owned(),
            };
            let left = match x["remaining_ms"].as_u64() {
                Some(ms) => format!("{} left", human_duration(Duration::from_millis(ms))),
                None => "no ttl".into(),
            };
            writeln!(
                out,
                "  {scope:<24} {:<32} {left:<12} {} client(s) now; set {} by uid {} pid {}",
                format!("{:?}", s(&x["directives"])),
                s(&x["clients"]),
                s(&x["set_at"]),
                s(&x["by_uid"]),
                s(&x["by_pid"]),
            )?;
        }
    }
    let clients = d["clients"].as_array().cloned().unwrap_or_default();
    if clients.is_empty() {
        writeln!(out, "no clients connected")?;
        return Ok(());
    }
    writeln!(out, "clients:")?;
    for c in &clients {
        let filter = match c["filter"].as_str() {
            Some(f) => format!("{f:?} (from {})", s(&c["from"])),
            None => "its own start-up filter".into(),
        };
        writeln!(
            out,
            "  {:<16} pid {:<8} {filter}",
            s(&c["service"]),
            s(&c["pid"])
        )?;
        for t in c["traces"].as_array().into_iter().flatten() {
            writeln!(
                out,
                "  {:<16}     {:<8} + trace {} at {}",
                "",
                "",
                s(&t["trace"]),
                s(&t["level"])
            )?;
        }
    }
    Ok(())
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

fn print_status(out: &mut impl Write, d: &Value) -> std::io::Result<()> {
    let sc = &d["sidecar"];
    writeln!(
        out,
        "distlogd pid {} (uid {}), up {}, RSS {}",
        s(&sc["pid"]),
        s(&sc["uid"]),
        s(&sc["uptime"]),
        sc["rss_bytes"]
            .as_u64()
            .map(mib)
            .unwrap_or_else(|| "?".into()),
    )?;
    writeln!(out, "  data socket    {}", s(&sc["socket"]))?;
    writeln!(out, "  control socket {}", s(&sc["ctl_socket"]))?;
    writeln!(out, "  data dir       {}", s(&sc["data_dir"]))?;
    let t = &d["totals"];
    let clients = d["clients"].as_array().cloned().unwrap_or_default();
    writeln!(
        out,
        "{} client(s) connected, {} records read, {} dropped",
        clients.len(),
        s(&t["records"]),
        s(&t["dropped"])
    )?;
    if clients.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "{:<16} {:>8} {:>6} {:<20} {:<30} {:>10} {:>8}  RINGS used/capacity",
        "SERVICE", "PID", "UID", "LIBRARY", "CONNECTED SINCE", "RECORDS", "DROPPED"
    )?;
    for c in &clients {
        let rings: Vec<String> = c["rings"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                format!(
                    "#{} {}/{}",
                    s(&r["index"]),
                    r["used"].as_u64().unwrap_or(0),
                    r["capacity"].as_u64().unwrap_or(0)
                )
            })
            .collect();
        writeln!(
            out,
            "{:<16} {:>8} {:>6} {:<20} {:<30} {:>10} {:>8}  {}",
            s(&c["service"]),
            s(&c["pid"]),
            s(&c["uid"]),
            s(&c["library"]),
            s(&c["connected_since"]),
            s(&c["records"]),
            s(&c["dropped"]),
            rings.join(", ")
        )?;
    }
    Ok(())
}

/// Follow the live records matching `filter` (`distlogd tail -f`): call
/// `each` with every record as it comes, until the sidecar stops (`Ok`)
/// or `each` returns an error.
pub fn follow(
    ctl_socket: &Path,
    filter: Filter,
    each: impl FnMut(&Record) -> std::io::Result<()>,
) -> Result<(), CtlError> {
    let (rd, _) = subscribe(ctl_socket, filter)?;
    follow_on(ctl_socket, rd, each)
}

/// Subscribe to the live records matching `filter`; when this returns, the
/// sidecar publishes every record it drains from then on to the returned
/// stream (read it with [`follow_on`]), and has said what it guarantees.
///
/// A filter with classes fails with a clear error on a sidecar that cannot
/// filter by class (older than the field): the records it would send are
/// unfiltered, and only the sidecar's router knows a record's class (its
/// `--config`), so they cannot be filtered here.
pub fn subscribe(
    ctl_socket: &Path,
    filter: Filter,
) -> Result<(BufReader<UnixStream>, SubscribeInfo), CtlError> {
    let classes = !filter.classes.is_empty();
    let (reply, rd) = request(
        ctl_socket,
        &Request::Subscribe {
            filter: Box::new(filter),
        },
    )?;
    let info = SubscribeInfo::from_reply(&reply);
    let too_old = || {
        CtlError::Refused(
            "the running distlogd is too old to filter live records by class (--class); \
             upgrade it, or follow without --class"
                .into(),
        )
    };
    if !reply.ok {
        let error = reply.error.unwrap_or_else(|| "refused".into());
        if classes && error.contains("unknown field `classes`") {
            return Err(too_old());
        }
        return Err(CtlError::Refused(error));
    }
    if classes && !info.classes {
        return Err(too_old());
    }
    Ok((rd, info))
}

/// [`follow`] on a stream [`subscribe`] returned.
pub fn follow_on(
    ctl_socket: &Path,
    mut rd: BufReader<UnixStream>,
    mut each: impl FnMut(&Record) -> std::io::Result<()>,
) -> Result<(), CtlError> {
    let mut line = String::new();
    loop {
        line.clear();
        match rd.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => {
                return Err(CtlError::Io {
                    path: ctl_socket.into(),
                    msg: e.to_string(),
                })
            }
        }
        let Ok(r) = Record::from_json(&line) else {
            continue;
        };
        if let Err(e) = each(&r) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(CtlError::Io {
                path: ctl_socket.into(),
                msg: format!("writing: {e}"),
            });
        }
    }
}

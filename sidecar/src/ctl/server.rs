//! The control socket's listener, peer check, requests and the expiry
//! timer.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::task::JoinSet;

use super::{Control, Peer, Reply, Request};
use crate::directives::human_duration;
use crate::server::ServerError;
use crate::subscribe::Hub;
use crate::Shutdown;

/// Longest request line.
const MAX_REQUEST: u64 = 64 << 10;
/// Time a control connection has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The bound control socket.
#[derive(Debug)]
pub struct CtlListener {
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
    id: (u64, u64),
}

impl CtlListener {
    /// Bind `path` (mode 0600). A socket file nobody answers on is stale
    /// and replaced; one that answers belongs to another sidecar: error.
    /// Call with the data socket's lock held.
    pub fn bind(path: &Path) -> Result<CtlListener, ServerError> {
        let perr = |op: &'static str| {
            let path = path.to_owned();
            move |err: io::Error| ServerError::Path { op, path, err }
        };
        match std::fs::symlink_metadata(path) {
            Ok(md) if !md.file_type().is_socket() => {
                return Err(ServerError::NotASocket(path.into()))
            }
            Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(ServerError::AlreadyRunning {
                        path: path.into(),
                        why: "a sidecar answers on its control socket",
                    })
                }
                Err(_) => {
                    std::fs::remove_file(path).map_err(perr("remove stale control socket"))?
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(perr("stat")(e)),
        }
        // Bound and made 0600 under a temporary name, then renamed: the
        // path appears only once it listens with its final mode (a `ctl`
        // started the moment the file exists was refused under load).
        let tmp = path.with_file_name(format!(
            ".{}.{}.tmp",
            path.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        let _ = std::fs::remove_file(&tmp);
        let listener = std::os::unix::net::UnixListener::bind(&tmp).map_err(perr("bind"))?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .map_err(perr("chmod"))
            .and_then(|()| std::fs::rename(&tmp, path).map_err(perr("rename")));
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        listener
            .set_nonblocking(true)
            .map_err(perr("set non-blocking"))?;
        let md = std::fs::metadata(path).map_err(perr("stat"))?;
        Ok(CtlListener {
            listener,
            path: path.into(),
            id: (md.dev(), md.ino()),
        })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Serve the control socket and run the expiry timer until `shutdown`;
/// then remove the socket file (if still ours).
pub async fn serve(
    l: CtlListener,
    control: Arc<Control>,
    hub: Arc<Hub>,
    host: String,
    shutdown: Shutdown,
) {
    let CtlListener { listener, path, id } = l;
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            diag!(
                "control socket {}: {e}; distlogd ctl will not work",
                path.display()
            );
            return;
        }
    };
    let owner = nix::unistd::geteuid().as_raw();
    let mut tasks = JoinSet::new();
    // The next expiry, as a deadline (a loop turn for another reason must
    // not push it back).
    let plan = |d: Option<Duration>| {
        tokio::time::Instant::now()
            + d.unwrap_or(Duration::from_secs(3600))
                .min(Duration::from_secs(3600))
    };
    let mut deadline = plan(control.expire_due());
    loop {
        tokio::select! {
            _ = shutdown.triggered() => break,
            _ = control.changed.notified() => deadline = plan(control.expire_due()),
            _ = tokio::time::sleep_until(deadline) => deadline = plan(control.expire_due()),
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    tasks.spawn(connection(stream, owner, control.clone(), hub.clone(), host.clone(), shutdown.clone()));
                }
                Err(e) => {
                    diag!("control socket accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    if let Ok(md) = std::fs::symlink_metadata(&path) {
        if (md.dev(), md.ino()) == id {
            let _ = std::fs::remove_file(&path);
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

async fn connection(
    mut stream: UnixStream,
    owner: u32,
    control: Arc<Control>,
    hub: Arc<Hub>,
    host: String,
    shutdown: Shutdown,
) {
    let cred = match getsockopt(&stream, PeerCredentials) {
        Ok(c) => c,
        Err(e) => {
            diag!("control socket: SO_PEERCRED: {e}; closing");
            return;
        }
    };
    let peer = Peer {
        uid: cred.uid(),
        pid: cred.pid().max(0) as u32,
    };
    if peer.uid != owner && peer.uid != 0 {
        diag!(
            "control socket: refused uid {} pid {}: only uid {owner} (the sidecar's owner) and root may control it",
            peer.uid,
            peer.pid
        );
        let r = Reply::error(format!(
            "permission denied: uid {} may not control this distlogd (it runs as uid {owner}; only its owner and root may)",
            peer.uid
        ));
        let _ = stream.write_all(r.to_line().as_bytes()).await;
        return;
    }
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd.take(MAX_REQUEST));
    let mut line = String::new();
    let req = match tokio::time::timeout(REQUEST_TIMEOUT, rd.read_line(&mut line)).await {
        Err(_) => Err(format!("no request within {REQUEST_TIMEOUT:?}")),
        Ok(Err(e)) => Err(format!("reading the request: {e}")),
        Ok(Ok(0)) => return,
        Ok(Ok(_)) => serde_json::from_str::<Request>(&line).map_err(|e| {
            format!("not a request this distlogd understands ({e}); is distlogd older than this distlogd ctl?")
        }),
    };
    let req = match req {
        Ok(r) => r,
        Err(e) => {
            let _ = wr.write_all(Reply::error(e).to_line().as_bytes()).await;
            return;
        }
    };
    let reply = match req {
        Request::LevelSet {
            directives,
            scope,
            ttl_ms,
        } => control.set(peer, scope, directives, ttl_ms.map(Duration::from_millis)),
        Request::LevelShow => control.show(),
        Request::LevelReset { scope, everything } => control.reset(peer, scope, everything),
        Request::Status => status(&control).await,
        Request::Subscribe { filter } => {
            let classes = filter.classes.clone();
            let filter = match filter.to_query() {
                Ok(f) => f,
                Err(e) => {
                    let _ = wr.write_all(Reply::error(e).to_line().as_bytes()).await;
                    return;
                }
            };
            // Not while the drain thread is between a batch's store commit
            // and its publication (a commit takes milliseconds).
            let mut sub = loop {
                if let Some(s) = hub.try_subscribe(filter.clone(), classes.clone()) {
                    break s;
                }
                tokio::select! {
                    _ = shutdown.triggered() => return,
                    _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                }
            };
            let mut reply = Reply::done("subscribed");
            reply.data = super::SubscribeInfo::CURRENT.to_value();
            if wr.write_all(reply.to_line().as_bytes()).await.is_err() {
                return;
            }
            let mut buf = Vec::with_capacity(64 << 10);
            let mut probe = [0u8; 64];
            loop {
                tokio::select! {
                    _ = shutdown.triggered() => return,
                    // The subscriber closed (or wrote something): stop.
                    _ = rd.read(&mut probe) => return,
                    r = sub.rx.recv() => {
                        let Some(r) = r else { return };
                        buf.clear();
                        // Relaxed: a counter; pairs with nothing.
                        let lost = sub.lost.swap(0, Ordering::Relaxed);
                        if lost > 0 {
                            crate::subscribe::loss_record(lost, &host).write_json_line(&mut buf);
                        }
                        r.write_json_line(&mut buf);
                        while buf.len() < 60 << 10 {
                            match sub.rx.try_recv() {
                                Ok(r) => r.write_json_line(&mut buf),
                                Err(_) => break,
                            }
                        }
                        if wr.write_all(&buf).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    };
    let _ = wr.write_all(reply.to_line().as_bytes()).await;
}

/// Resident set size of this process, in bytes.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

async fn status(control: &Control) -> Reply {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let stats = if control.drain().send(crate::drain::DrainMsg::Status(tx)) {
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .ok()
            .and_then(Result::ok)
    } else {
        None
    };
    let mut notes = Vec::new();
    if stats.is_none() {
        notes.push("the drain thread did not answer: counters are missing".to_owned());
    }
    let stats = stats.unwrap_or_default();
    let mut clients = control.clients();
    let (mut records, mut dropped) = (0u64, 0u64);
    for c in clients.iter_mut() {
        let id = c["id"].as_u64();
        if let Some(s) = stats.iter().find(|s| Some(s.id) == id) {
            records += s.records;
            dropped += s.dropped;
            c["records"] = json!(s.records);
            c["dropped"] = json!(s.dropped);
            c["rings"] = json!(s.rings);
        }
    }
    let cfg = &control.config;
    let uptime = control.uptime();
    let mut r = Reply::data(json!({
        "sidecar": {
            "pid": std::process::id(),
            "uid": nix::unistd::geteuid().as_raw(),
            "uptime_s": uptime.as_secs(),
            "uptime": human_duration(uptime),
            "rss_bytes": rss_bytes(),
            "socket": cfg.socket,
            "ctl_socket": cfg.ctl_socket,
            "data_dir": cfg.data_dir,
        },
        "clients": clients,
        "totals": { "clients": clients.len(), "records": records, "dropped": dropped },
    }));
    r.notes = notes;
    r
}

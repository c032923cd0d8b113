//! The data socket: accept loop and per-connection handshake.
//!
//! # Per connection
//!
//! 0. At accept: at most `Limits::max_clients` connections, and at most
//!    `Limits::max_conns_per_uid` of one uid (from `SO_PEERCRED`), hello or
//!    not, so one uid cannot take every slot; beyond them `Refused` at once.
//!    A uid's connections hold at most `Limits::max_rings_per_uid` rings
//!    (each an open fd here); the connection handing one more is closed.
//! 1. Who: pid, uid, gid from `SO_PEERCRED`, never from the client. A pid of
//!    0 (the client is in another pid namespace) is replaced by the hello's
//!    pid and its records are marked `pid_unverified`.
//! 2. Hello, within `Limits::hello_timeout`: any version (this sidecar
//!    reads every record layout up to [`PROTOCOL_VERSION`]; it answers the
//!    lower of the two, and the client writes what that version reads), a
//!    service name, the
//!    call-site table memfd (checked: seals, tmpfs, size, header). Anything
//!    else is answered with `Refused` and a reason, and the connection is
//!    closed.
//! 3. `Welcome`, with the sidecar's wake-up eventfd attached.
//! 4. Any number of `Ring` messages (up to `Limits::max_rings_per_client`),
//!    each with a ring memfd (checked before it is mapped). A refused ring
//!    closes the connection (the drain thread drains what its other rings
//!    hold).
//! 5. End of the connection (EOF, error, cut-off by the drain thread): the
//!    drain thread is told the client is gone. Not on shutdown: the client
//!    lives on and reconnects to the next sidecar.
//!
//! # The socket file
//!
//! The parent directory is created (0755) if missing. A socket file that no
//! sidecar answers on is stale and replaced; one that answers means another
//! sidecar runs, and so does a held lock on `<socket>.lock` (a sidecar that
//! stopped listening but still drains): either is an error. The socket is
//! mode 0666 (any local process may log) and removed on shutdown if it is
//! still ours. The lock file is left in place (removing it would race).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use distlog::proto::{self, ClientMsg, ProtoError, Receiver, SidecarMsg};
use distlog::wire::PROTOCOL_VERSION;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use tokio::io::Interest;
use tokio::net::UnixStream;
use tokio::task::JoinSet;

use crate::client::{AcceptError, ClientTable, Identity, RingSegment};
use crate::drain::{DrainHandle, DrainMsg, DrainSender};
use crate::sink::Sink;
use crate::wake::Wake;
use crate::{Config, Limits, Shutdown};

/// Why the server could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A system call failed.
    #[error("{op}: {err}")]
    Io {
        /// What we tried.
        op: &'static str,
        /// The error.
        err: io::Error,
    },
    /// A system call on a path failed.
    #[error("{op} {}: {err}", path.display())]
    Path {
        /// What we tried.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        err: io::Error,
    },
    /// Another sidecar serves this socket.
    #[error("another distlogd is running on {} ({why}); stop it first or pick another --socket", path.display())]
    AlreadyRunning {
        /// The socket.
        path: PathBuf,
        /// How we know.
        why: &'static str,
    },
    /// The socket path is taken by something that is not a socket.
    #[error("{} exists and is not a socket; not touching it", .0.display())]
    NotASocket(PathBuf),
    /// The drain thread ended unexpectedly (a bug).
    #[error("the drain thread died")]
    DrainDied,
}

fn path_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ServerError {
    let path = path.to_owned();
    move |err| ServerError::Path { op, path, err }
}

/// A bound, not yet serving sidecar.
#[derive(Debug)]
pub struct Server {
    listener: std::os::unix::net::UnixListener,
    config: Config,
    /// (dev, ino) of our socket file, to remove only our own.
    socket_id: (u64, u64),
    /// The control socket (`distlogd ctl`, `tail -f`).
    ctl: crate::ctl::CtlListener,
    _lock: Flock<File>,
}

impl Server {
    /// Take the socket: create its directory, lock `<socket>.lock`, replace a
    /// stale socket file, bind, chmod 0666. Fails if another sidecar runs.
    pub fn bind(config: Config) -> Result<Server, ServerError> {
        let path = config.socket.clone();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(dir)
                    .map_err(path_err("create directory", dir))?;
            }
        }
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(&lock_path)
            .map_err(path_err("open lock file", &lock_path))?;
        let lock = match Flock::lock(lock_file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((_, nix::Error::EWOULDBLOCK)) => {
                return Err(ServerError::AlreadyRunning {
                    path,
                    why: "its lock file is held",
                })
            }
            Err((_, e)) => return Err(path_err("lock", &lock_path)(e.into())),
        };
        match std::fs::symlink_metadata(&path) {
            Ok(md) if !md.file_type().is_socket() => return Err(ServerError::NotASocket(path)),
            Ok(_) => match std::os::unix::net::UnixStream::connect(&path) {
                Ok(_) => {
                    return Err(ServerError::AlreadyRunning {
                        path,
                        why: "it answers on the socket",
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(&path).map_err(path_err("remove stale socket", &path))?;
                    diag!("removed stale socket {}", path.display());
                }
                Err(e) => return Err(path_err("probe existing socket", &path)(e)),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(path_err("stat", &path)(e)),
        }
        let listener =
            std::os::unix::net::UnixListener::bind(&path).map_err(path_err("bind", &path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
            .map_err(path_err("chmod", &path))?;
        listener
            .set_nonblocking(true)
            .map_err(path_err("set non-blocking", &path))?;
        let md = std::fs::metadata(&path).map_err(path_err("stat", &path))?;
        let ctl = crate::ctl::CtlListener::bind(&config.ctl_socket)?;
        Ok(Server {
            listener,
            config,
            socket_id: (md.dev(), md.ino()),
            ctl,
            _lock: lock,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.config.socket
    }

    /// Serve until `shutdown` is triggered, then: stop accepting, remove
    /// the socket file, close every connection, drain every ring, write
    /// every sink, and return. Must run inside a tokio runtime (any flavour).
    pub async fn run(
        self,
        mut sinks: Vec<Box<dyn Sink>>,
        shutdown: Shutdown,
    ) -> Result<(), ServerError> {
        let Server {
            listener,
            config,
            socket_id,
            ctl,
            _lock,
        } = self;
        // Live subscribers (`tail -f`): fed by the router, or like a sink.
        let hub = crate::subscribe::Hub::new();
        if !sinks.iter_mut().any(|s| s.feed_subscribers(&hub)) {
            sinks.push(Box::new(hub.sink()));
        }
        let path = config.socket.clone();
        let wake = Arc::new(Wake::new().map_err(|e| ServerError::Io {
            op: "eventfd",
            err: e.into(),
        })?);
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (exited_tx, mut exited_rx) = tokio::sync::oneshot::channel::<()>();
        let drain = DrainHandle::spawn(
            config.limits.clone(),
            sinks,
            wake.clone(),
            host.clone(),
            exited_tx,
        )
        .map_err(|err| ServerError::Io {
            op: "spawn drain thread",
            err,
        })?;
        let listener =
            tokio::net::UnixListener::from_std(listener).map_err(|err| ServerError::Io {
                op: "register listener",
                err,
            })?;
        diag!(
            "listening on {} (pid {})",
            path.display(),
            std::process::id()
        );

        let control = crate::ctl::Control::new(&config, drain.sender(), host.clone());
        let ctl_task = tokio::spawn(crate::ctl::serve(
            ctl,
            control.clone(),
            hub,
            host,
            shutdown.clone(),
        ));
        let ctx = Arc::new(ConnCtx {
            control,
            drain: drain.sender(),
            wake,
            limits: config.limits.clone(),
        });
        let mut conns = JoinSet::new();
        let per_uid: PerUid = Arc::default();
        let mut next_id = 0u64;
        let mut died = false;
        loop {
            tokio::select! {
                _ = shutdown.triggered() => break,
                _ = &mut exited_rx => { died = true; break }
                r = listener.accept() => match r {
                    Ok((stream, _)) => {
                        next_id += 1;
                        if conns.len() >= config.limits.max_clients {
                            refuse_now(&stream, "too many clients");
                            continue;
                        }
                        let uid = getsockopt(&stream, PeerCredentials).map_or(u32::MAX, |c| c.uid());
                        let Some(slot) = UidSlot::take(&per_uid, uid, config.limits.max_conns_per_uid) else {
                            refuse_now(&stream, &format!(
                                "too many connections from uid {uid} (limit {})",
                                config.limits.max_conns_per_uid
                            ));
                            continue;
                        };
                        conns.spawn(connection(stream, next_id, ctx.clone(), shutdown.clone(), slot));
                    }
                    Err(e) => {
                        // Out of fds or memory: back off instead of spinning.
                        diag!("accept: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        drop(listener);
        remove_if_ours(&path, socket_id);
        if died {
            shutdown.trigger();
        }
        while conns.join_next().await.is_some() {}
        let _ = ctl_task.await;
        drop(ctx);
        let stats = tokio::task::spawn_blocking(move || drain.finish())
            .await
            .map_err(|_| ServerError::DrainDied)?
            .map_err(|_| ServerError::DrainDied)?;
        if died {
            return Err(ServerError::DrainDied);
        }
        diag!(
            "stopped: {} records from {} clients ({} cut off, {} lost by clients)",
            stats.records,
            stats.clients,
            stats.cut_off,
            stats.lost
        );
        Ok(())
    }
}

fn remove_if_ours(path: &Path, id: (u64, u64)) {
    match std::fs::symlink_metadata(path) {
        Ok(md) if (md.dev(), md.ino()) == id => {
            if let Err(e) = std::fs::remove_file(path) {
                diag!("remove {}: {e}", path.display());
            }
        }
        _ => {}
    }
}

/// What the connections of one uid hold now.
#[derive(Debug, Default)]
struct UidUse {
    conns: usize,
    rings: usize,
}

/// Use per uid.
type PerUid = Arc<std::sync::Mutex<std::collections::HashMap<u32, UidUse>>>;

/// One connection's share of its uid's use (`Limits::max_conns_per_uid`,
/// `Limits::max_rings_per_uid`); given back on drop, however the
/// connection task ends.
#[derive(Debug)]
struct UidSlot {
    map: PerUid,
    uid: u32,
    held: usize,
}

impl UidSlot {
    fn take(map: &PerUid, uid: u32, limit: usize) -> Option<UidSlot> {
        let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
        let u = m.entry(uid).or_default();
        if u.conns >= limit {
            return None;
        }
        u.conns += 1;
        Some(UidSlot {
            map: map.clone(),
            uid,
            held: 0,
        })
    }

    /// Count one more ring for this uid; false if that is over `limit`.
    fn add_ring(&mut self, limit: usize) -> bool {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let u = m.entry(self.uid).or_default();
        if u.rings >= limit {
            return false;
        }
        u.rings += 1;
        self.held += 1;
        true
    }
}

impl Drop for UidSlot {
    fn drop(&mut self) {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(u) = m.get_mut(&self.uid) {
            u.conns = u.conns.saturating_sub(1);
            u.rings = u.rings.saturating_sub(self.held);
            if u.conns == 0 {
                m.remove(&self.uid);
            }
        }
    }
}

/// Send `Refused` without waiting (best effort) on a connection we drop.
fn refuse_now(stream: &UnixStream, reason: &str) {
    let _ = proto::send(
        stream.as_fd(),
        &SidecarMsg::Refused {
            reason: reason.into(),
        },
        &[],
    );
}

/// What every connection task shares.
#[derive(Debug)]
struct ConnCtx {
    control: Arc<crate::ctl::Control>,
    drain: DrainSender,
    wake: Arc<Wake>,
    limits: Limits,
}

/// Why a connection ended badly (one stderr line; only it is affected).
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("no hello within {0:?}")]
    HelloTimeout(std::time::Duration),
    #[error("refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Proto(#[from] ProtoError),
    #[error("SO_PEERCRED: {0}")]
    PeerCred(nix::Error),
    #[error("ring {index} refused: {err}")]
    Ring { index: u32, err: AcceptError },
    #[error("protocol violation: {0}")]
    Violation(&'static str),
    #[error("more than {0} rings")]
    TooManyRings(usize),
    #[error("its uid holds {0} rings already (--max-rings-per-uid)")]
    TooManyRingsForUid(usize),
}

/// Receive one message. Cancel-safe: the receiver keeps partial input.
async fn recv_msg(
    stream: &UnixStream,
    rx: &mut Receiver,
) -> Result<(ClientMsg, Vec<OwnedFd>), ProtoError> {
    // A whole message may already be buffered in `rx` while the socket has
    // nothing: try once without waiting for readiness.
    match rx.recv(stream.as_fd()) {
        Err(ProtoError::WouldBlock) => {}
        other => return other,
    }
    loop {
        stream.readable().await?;
        // `try_io` clears tokio's readiness only if the read inside it
        // returns WouldBlock, so no wake-up is lost between the two.
        let r = stream.try_io(Interest::READABLE, || match rx.recv(stream.as_fd()) {
            Err(ProtoError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            other => Ok(other),
        });
        match r {
            Ok(res) => return res,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

struct Conn {
    stream: UnixStream,
    id: u64,
    ctx: Arc<ConnCtx>,
    rx: Receiver,
    /// The drain thread knows this client (so it must hear it is gone).
    registered: bool,
    /// "pid N (service)" for messages.
    peer: String,
    rings: usize,
    /// Its uid's share of the per-uid limits.
    slot: UidSlot,
}

async fn connection(
    stream: UnixStream,
    id: u64,
    ctx: Arc<ConnCtx>,
    shutdown: Shutdown,
    slot: UidSlot,
) {
    let closer = Shutdown::new();
    let mut conn = Conn {
        stream,
        id,
        ctx,
        rx: Receiver::new(),
        registered: false,
        peer: String::new(),
        rings: 0,
        slot,
    };
    let result = tokio::select! {
        r = conn.serve(closer.clone()) => r,
        _ = shutdown.triggered() => Ok(()),
        _ = closer.triggered() => Ok(()),
    };
    if let Err(e) = result {
        let peer = if conn.peer.is_empty() {
            "client"
        } else {
            &conn.peer
        };
        diag!("{peer}: {e}; closing the connection");
    }
    // On shutdown the client lives on (it reconnects to the next sidecar):
    // it is not "gone", and its open scopes are not abandoned. The drain
    // thread reads its rings to the end all the same.
    if conn.registered && !shutdown.is_triggered() {
        conn.ctx.drain.send(DrainMsg::Gone { id: conn.id });
    }
    conn.ctx.control.detach(conn.id);
}

impl Conn {
    async fn serve(&mut self, closer: Shutdown) -> Result<(), ConnError> {
        let cred = getsockopt(&self.stream, PeerCredentials).map_err(ConnError::PeerCred)?;
        let (kpid, uid, gid) = (cred.pid(), cred.uid(), cred.gid());
        self.peer = format!("pid {kpid} uid {uid}");
        let limits = &self.ctx.limits;
        let hello =
            match tokio::time::timeout(limits.hello_timeout, recv_msg(&self.stream, &mut self.rx))
                .await
            {
                Err(_) => return Err(ConnError::HelloTimeout(limits.hello_timeout)),
                // Closed before a hello: a probe (e.g. another distlogd checking
                // whether we run). Not worth a line.
                Ok(Err(ProtoError::Closed)) => return Ok(()),
                Ok(r) => r?,
            };
        let (
            ClientMsg::Hello {
                version,
                service,
                pid,
                clock_tsc,
                library,
            },
            fds,
        ) = hello
        else {
            return self.refuse("the first message must be a hello".into());
        };
        // Every version is accepted: an older client's records are layouts
        // we read, and a newer client writes what our answer says.
        let version = version.min(PROTOCOL_VERSION);
        if service.is_empty() || service.len() > limits.max_service_len {
            return self.refuse(format!(
                "service name must be 1 to {} bytes",
                limits.max_service_len
            ));
        }
        let (pid, pid_unverified) = if kpid > 0 {
            (kpid as u32, false)
        } else {
            (pid, true)
        };
        self.peer = format!("pid {pid} ({service})");
        let fd = match <[OwnedFd; 1]>::try_from(fds) {
            Ok([fd]) => fd,
            Err(fds) => {
                return self.refuse(format!(
                    "a hello carries exactly one file descriptor (the call-site table), got {}",
                    fds.len()
                ))
            }
        };
        let table = match ClientTable::accept(fd) {
            Ok(t) => t,
            Err(e) => return self.refuse(format!("call-site table refused: {e}")),
        };
        let mut library = library;
        library.truncate(library.floor_char_boundary_compat(limits.max_service_len));
        let identity = Identity {
            pid,
            pid_unverified,
            uid,
            gid,
            service,
            library,
            version,
            clock_tsc,
        };
        if !self.ctx.drain.send(DrainMsg::Client {
            id: self.id,
            identity: identity.clone(),
            table,
            closer,
        }) {
            return self.refuse("the sidecar is shutting down".into());
        }
        self.registered = true;
        let welcome = SidecarMsg::Welcome {
            version,
            sidecar_pid: std::process::id(),
        };
        // The control segment, with this client's directives written
        // before the welcome; without one the client keeps its own filter.
        let (ctl_fd, nudge) = match self.ctx.control.attach(self.id, &identity) {
            Ok((fd, n)) => (Some(fd), n),
            Err(e) => {
                diag!(
                    "{}: no control segment ({e}); its verbosity cannot be changed",
                    self.peer
                );
                (None, Arc::new(tokio::sync::Notify::new()))
            }
        };
        let mut fds = vec![self.ctx.wake.fd()];
        fds.extend(ctl_fd.as_ref().map(|f| f.as_fd()));
        proto::send(self.stream.as_fd(), &welcome, &fds)?;
        drop(ctl_fd);
        loop {
            let next = tokio::select! {
                r = recv_msg(&self.stream, &mut self.rx) => r,
                _ = nudge.notified() => {
                    // This task owns the socket: the nudge cannot interleave
                    // with another message. A full socket buffer skips it
                    // (the client also looks every 50 ms).
                    if let Some(seq) = self.ctx.control.seq(self.id) {
                        match proto::send(self.stream.as_fd(), &SidecarMsg::Directives { seq }, &[]) {
                            Ok(()) | Err(ProtoError::WouldBlock) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                    continue;
                }
            };
            let (msg, fds) = match next {
                Err(ProtoError::Closed) => return Ok(()),
                r => r?,
            };
            match msg {
                ClientMsg::Ring { index } => {
                    let Ok([fd]) = <[OwnedFd; 1]>::try_from(fds) else {
                        return Err(ConnError::Violation(
                            "a ring message carries exactly one file descriptor",
                        ));
                    };
                    self.rings += 1;
                    if self.rings > self.ctx.limits.max_rings_per_client {
                        return Err(ConnError::TooManyRings(
                            self.ctx.limits.max_rings_per_client,
                        ));
                    }
                    if !self.slot.add_ring(self.ctx.limits.max_rings_per_uid) {
                        return Err(ConnError::TooManyRingsForUid(
                            self.ctx.limits.max_rings_per_uid,
                        ));
                    }
                    let ring =
                        RingSegment::accept(fd).map_err(|err| ConnError::Ring { index, err })?;
                    self.ctx.drain.send(DrainMsg::Ring { id: self.id, ring });
                }
                ClientMsg::Hello { .. } => return Err(ConnError::Violation("a second hello")),
            }
        }
    }

    fn refuse(&self, reason: String) -> Result<(), ConnError> {
        let _ = proto::send(
            self.stream.as_fd(),
            &SidecarMsg::Refused {
                reason: reason.clone(),
            },
            &[],
        );
        Err(ConnError::Refused(reason))
    }
}

/// `str::floor_char_boundary` is unstable: the largest char boundary <= n.
trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, n: usize) -> usize;
}

impl FloorCharBoundary for String {
    fn floor_char_boundary_compat(&self, n: usize) -> usize {
        if n >= self.len() {
            return self.len();
        }
        (0..=n)
            .rev()
            .find(|&i| self.is_char_boundary(i))
            .unwrap_or(0)
    }
}

//! What `distlogd run` needs to know, from the command line or a caller.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::RunArgs;

/// Configuration of a sidecar server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Path of the data socket.
    pub socket: PathBuf,
    /// Path of the control socket (`distlogd ctl`, `tail -f`); default:
    /// beside the data socket ([`distlog::paths::ctl_socket_for`]).
    pub ctl_socket: PathBuf,
    /// Where the sidecar keeps state (the directives of `distlogd ctl`,
    /// the store); default [`default_data_dir`].
    pub data_dir: PathBuf,
    /// Bounds on what one client may cost.
    pub limits: Limits,
}

impl Config {
    /// Defaults for a socket path.
    pub fn new(socket: PathBuf) -> Self {
        Config {
            ctl_socket: distlog::paths::ctl_socket_for(&socket),
            socket,
            data_dir: default_data_dir(),
            limits: Limits::default(),
        }
    }

    /// From `distlogd run`'s arguments: `--socket`, else `DISTLOG_SOCKET`,
    /// else [`distlog::paths::default_socket`].
    pub fn from_args(args: &RunArgs) -> Self {
        let socket = args
            .socket
            .clone()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(distlog::paths::default_socket);
        let mut c = Config::new(socket);
        if let Some(p) = args
            .ctl_socket
            .clone()
            .filter(|p| !p.as_os_str().is_empty())
        {
            c.ctl_socket = p;
        }
        if let Some(d) = args.data_dir.clone().filter(|p| !p.as_os_str().is_empty()) {
            c.data_dir = d;
        }
        if let Some(n) = args.max_rings_per_uid {
            c.limits.max_rings_per_uid = n;
        }
        c
    }
}

/// The default data directory: `$XDG_STATE_HOME/distlog`, else
/// `~/.local/state/distlog`; `/var/lib/distlog` for root.
pub fn default_data_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/distlog");
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("distlog");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(h) => PathBuf::from(h).join(".local/state/distlog"),
        None => PathBuf::from("/var/lib/distlog"),
    }
}

/// Limits that bound what one client (or the host) can make the sidecar do.
///
/// | limit | default | when exceeded |
/// |---|---|---|
/// | `hello_timeout` | 5 s | the connection is closed (costs only it) |
/// | `max_clients` | 4096 | the hello is refused ("too many clients") |
/// | `max_conns_per_uid` | 2048 | connections of one uid (hello or not) at once; more are refused ("too many connections from uid N"), so one uid cannot take every slot of `max_clients` from the others |
/// | `max_rings_per_client` | 256 | the client is cut off |
/// | `max_rings_per_uid` | 16 384 | rings (each an open fd in the sidecar) of all connections of one uid; the connection that hands one more is closed, so one uid cannot exhaust the sidecar's file descriptors (`RLIMIT_NOFILE`, raised to its hard limit at start) |
/// | `max_defs_per_client` | 65 536 | the client is cut off |
/// | `max_open_scopes_per_client` | 65 536 | (per process) further scopes are not remembered: their `scope_close` has no `duration_ns` and no `abandoned` close |
/// | `ring_budget` | 256 | records read from one ring per round, so a flooding client cannot starve the others |
/// | `idle_backstop` | 1 ms | first timed wait of the idle drain thread: bounds the delay of the one wake-up a client can miss (its commit raced with the sleep flags being set) |
/// | `idle_backstop_max` | 20 ms | longest timed wait once idle (doubling from `idle_backstop`): bounds the delay for a client that never writes the eventfd |
/// | `shutdown_drain` | 10 s | longest final drain on shutdown (a client that keeps writing cannot hold the exit) |
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time a new connection has to complete its hello.
    pub hello_timeout: Duration,
    /// Connected clients at once.
    pub max_clients: usize,
    /// Connections of one uid at once (including those still in hello).
    pub max_conns_per_uid: usize,
    /// Rings one client may hand over.
    pub max_rings_per_client: usize,
    /// Rings all connections of one uid may hold at once.
    pub max_rings_per_uid: usize,
    /// Call-site definitions one client may make.
    pub max_defs_per_client: usize,
    /// Open scopes remembered per client process (for durations and
    /// abandonment).
    pub max_open_scopes_per_client: usize,
    /// Records read from one ring per round.
    pub ring_budget: usize,
    /// First idle wait between checks of the rings.
    pub idle_backstop: Duration,
    /// Longest idle wait between checks of the rings.
    pub idle_backstop_max: Duration,
    /// Longest final drain on shutdown.
    pub shutdown_drain: Duration,
    /// Longest service name accepted in a hello, in bytes.
    pub max_service_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            hello_timeout: Duration::from_secs(5),
            max_clients: 4096,
            max_conns_per_uid: 2048,
            max_rings_per_client: 256,
            max_rings_per_uid: 16_384,
            max_defs_per_client: 65_536,
            max_open_scopes_per_client: 65_536,
            ring_budget: 256,
            idle_backstop: Duration::from_millis(1),
            idle_backstop_max: Duration::from_millis(20),
            shutdown_drain: Duration::from_secs(10),
            max_service_len: 256,
        }
    }
}

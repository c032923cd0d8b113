//! The command line. The doc comments below are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// distlogd: the distlog per-host sidecar. Collects the records of every
/// local process that logs through distlog, from shared-memory rings.
#[derive(Debug, Parser)]
#[command(name = "distlogd", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar: listen on the data socket and drain the clients'
    /// rings until SIGINT or SIGTERM, then drain what is left and exit.
    Run(RunArgs),
    /// Watch distlog work: start a sidecar on a private socket and demo
    /// services (Rust, and C when built) handling requests across
    /// processes; show their records live, change a service's verbosity
    /// while they run, and show the last request as a tree.
    Demo(DemoArgs),
    /// Talk to the running sidecar: change verbosity while everything runs
    /// (`ctl level set|show|reset`), see its clients (`ctl status`).
    Ctl(crate::ctl::command::CtlArgs),
    /// Show stored records (from the store, with or without a running
    /// sidecar), journalctl style: filters combine with AND; -n N for the
    /// last N; -f to go on with live records; -o json for the record schema.
    Tail(Box<crate::tail::TailArgs>),
    /// Show one request as a tree of scopes across processes, from the
    /// store, with durations and outcomes (--json: nested JSON).
    Tree(crate::tree::TreeArgs),
    /// One demo service (used by `demo`).
    #[command(hide = true)]
    DemoService(DemoServiceArgs),
    /// Measure the store's ingest and trace-query speed in a scratch
    /// directory (developer tool).
    #[command(hide = true)]
    BenchStore(crate::store::bench::BenchArgs),
}

/// Arguments of `distlogd run`.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// Path of the data socket clients connect to. Default:
    /// $XDG_RUNTIME_DIR/distlog/distlogd.sock, else /run/distlog/distlogd.sock.
    /// Its directory is created (mode 0755) if missing; the socket is made
    /// mode 0666 so every local process may log.
    #[arg(long, env = "DISTLOG_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Write every record to standard output, one JSON object per line.
    #[arg(long)]
    pub stdout: bool,

    /// Path of the control socket (`distlogd ctl`, `distlogd tail -f`),
    /// mode 0600, only for the sidecar's owner and root. Default: beside the
    /// data socket, `distlogd.sock` -> `distlogd.ctl.sock`.
    #[arg(long, env = "DISTLOG_CTL_SOCKET", value_name = "PATH")]
    pub ctl_socket: Option<PathBuf>,

    /// Directory for the sidecar's state (verbosity directives that outlive
    /// a restart, the store). Default: $XDG_STATE_HOME/distlog, else
    /// ~/.local/state/distlog; /var/lib/distlog for root.
    #[arg(long, env = "DISTLOG_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Most rings all clients of one uid may hand over at once (each costs
    /// the sidecar a file descriptor); the connection that hands one more
    /// is closed. Default 16384.
    #[arg(long, env = "DISTLOG_MAX_RINGS_PER_UID", value_name = "N")]
    pub max_rings_per_uid: Option<usize>,

    /// TOML file with retention classes and routing rules (see
    /// distlogd.example.toml); SIGHUP reloads it. Default: everything to the
    /// store under --data-dir.
    #[arg(long, env = "DISTLOG_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// Arguments of `distlogd demo`.
#[derive(Debug, Clone, Default, Args)]
pub struct DemoArgs {
    /// How many requests the demo services handle.
    #[arg(long, default_value_t = 6)]
    pub requests: u64,
    /// Pause between requests, in milliseconds.
    #[arg(long, default_value_t = 400)]
    pub pause_ms: u64,
    /// The C demo service (examples/c/bank.c, built by scripts/demo).
    #[arg(long, value_name = "PATH")]
    pub c_service: Option<std::path::PathBuf>,
    /// Keep the demo's directory (socket, data) afterwards.
    #[arg(long)]
    pub keep: bool,
}

/// Arguments of the hidden `distlogd demo-service`.
#[derive(Debug, Clone, Default, Args)]
pub struct DemoServiceArgs {
    /// `checkout` or `payments`.
    pub name: String,
    /// The order number.
    #[arg(long, default_value_t = 1)]
    pub order: u64,
    /// The caller's W3C traceparent.
    #[arg(long)]
    pub traceparent: Option<String>,
    /// The caller's W3C tracestate.
    #[arg(long)]
    pub tracestate: Option<String>,
    /// The C bank service to call.
    #[arg(long, value_name = "PATH")]
    pub c_service: Option<std::path::PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_flags() {
        let cli = Cli::parse_from(["distlogd", "run", "--socket", "/x/s.sock", "--stdout"]);
        match cli.command {
            Command::Run(a) => {
                assert_eq!(a.socket.as_deref(), Some(std::path::Path::new("/x/s.sock")));
                assert!(a.stdout);
            }
            _ => panic!("parsed as something else"),
        }
    }
}

//! `distlogd`: the per-host distlog sidecar.
//!
//! # What it does
//!
//! Client processes connect to a Unix stream socket, say hello and hand over
//! their call-site table and their rings as sealed `memfd` segments (see
//! [`distlog::proto`]). The sidecar maps them and a single *drain thread*
//! reads every ring round-robin, decodes each record against the client's
//! call-site table, turns it into a [`record::Record`] and hands batches to
//! the [sinks](sink). Only after every sink has written a batch does the
//! drain thread give the ring space back to the client (`release`), so a
//! sidecar that crashes loses nothing a restarted one cannot read again.
//!
//! ```text
//!  clients ──socket──▶ server (tokio: accept, SO_PEERCRED, hello, memfds)
//!                        │ DrainMsg over a channel + eventfd wake-up
//!                        ▼
//!  rings (shared memory) ──▶ drain thread ──▶ Record ──▶ sinks ──▶ release
//! ```
//!
//! # Trust
//!
//! Everything a client wrote is hostile: the segments are checked before
//! they are mapped, every ring read is bounds-checked by
//! [`distlog::ring::Reader`], and any violation (a bad cursor, an
//! undecodable record, an unknown call site) *cuts that client off*: one line
//! on stderr, one `control` record, its connection closed. It never costs
//! the sidecar or another client anything.
//!
//! # Diagnostics
//!
//! The sidecar's own messages go to stderr as plain lines prefixed with
//! `distlogd:`; stdout carries records only (with `--stdout`).
//!
//! # Embedding
//!
//! ```no_run
//! use distlogd::{server::Server, sink::{ChannelSink, Sink}, Config, Shutdown};
//!
//! # async fn demo() -> Result<(), distlogd::server::ServerError> {
//! let config = Config::new("/tmp/distlog-demo/distlogd.sock".into());
//! let server = Server::bind(config)?;
//! let (sink, records) = ChannelSink::new();
//! let shutdown = Shutdown::new();
//! let task = tokio::spawn(server.run(vec![Box::new(sink) as Box<dyn Sink>], shutdown.clone()));
//! // ... run clients, read `records` ...
//! shutdown.trigger();
//! task.await.expect("server task")?;
//! # drop(records);
//! # Ok(()) }
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]

/// One diagnostic line on stderr, prefixed `distlogd:`. Never panics (unlike
/// `eprintln!`, which panics when stderr is a broken pipe).
#[macro_export]
macro_rules! diag {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stderr().lock(), "distlogd: {}", ::std::format_args!($($arg)*));
    }};
}

pub mod cli;
pub mod client;
pub mod clock;
mod config;
mod convert;
pub mod ctl;
pub mod demo;
pub mod directives;
pub mod drain;
pub mod query;
pub mod record;
pub mod render;
pub mod routing;
pub mod server;
mod shutdown;
pub mod sink;
pub mod store;
pub mod subscribe;
pub mod tail;
pub mod timestamp;
pub mod tree;
pub mod wake;

pub use config::{default_data_dir, Config, Limits};
pub use shutdown::Shutdown;

/// Run `distlogd run` to completion: bind, serve until SIGINT or SIGTERM,
/// drain, flush, remove the socket. Blocks the calling thread (it builds its
/// own tokio runtime). A second signal during the drain exits at once.
pub fn run_daemon(args: &cli::RunArgs) -> Result<(), server::ServerError> {
    raise_nofile_limit();
    let config = Config::from_args(args);
    // Classes, routes (store, stdout, files) and the store, from --config.
    let router = routing::router_for_run(args.config.as_deref(), args.stdout, &config.data_dir)
        .map_err(|e| server::ServerError::Io {
            op: "store and routing",
            err: std::io::Error::other(format!("{e:#}")),
        })?;
    let sinks: Vec<Box<dyn sink::Sink>> = vec![Box::new(router)];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| server::ServerError::Io {
            op: "tokio runtime",
            err: e,
        })?;
    rt.block_on(async move {
        // Handlers first: a SIGTERM right after "listening" must drain.
        let shutdown = Shutdown::new();
        tokio::spawn(shutdown::on_signals(shutdown.clone()));
        let server = Server::bind(config)?;
        server.run(sinks, shutdown).await
    })
}

use server::Server;

/// Raise the soft `RLIMIT_NOFILE` to the hard limit: every client ring is
/// an open file descriptor here (see `Limits::max_rings_per_uid`).
fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

//! Harness of the `distlogd ctl` and `tail -f` tests: the real `distlogd`
//! on a temp socket with its own data directory, real clients (the tests
//! crate's `dl-client`), records read back from the sidecar's stdout.
//! Every wait has a deadline; nothing asserts a duration.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use serde_json::Value;

/// Longest wait for anything.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The sidecar binary.
pub fn distlogd() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_distlogd"))
}

/// The tests crate's client binary, built once (same profile).
pub fn dl_client() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = distlogd();
            let dir = exe.parent().expect("target/<profile>");
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args(["build", "-q", "-p", "distlog-tests", "--bin", "dl-client"]);
            if dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            assert!(
                cmd.status().expect("run cargo").success(),
                "building dl-client failed"
            );
            dir.join("dl-client")
        })
        .clone()
}

/// A fresh directory under the temp dir (removed by `Daemon`'s drop).
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("distlogd-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Proc {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `distlogd run --stdout` with its own data dir.
pub struct Daemon {
    child: Option<Child>,
    /// Its directory (socket, data).
    pub dir: PathBuf,
    /// The data socket.
    pub socket: PathBuf,
    /// Records seen (across restarts).
    pub records: Arc<Mutex<Vec<Value>>>,
    /// Its stderr.
    pub stderr: Arc<Mutex<String>>,
    keep_dir: bool,
}

impl Daemon {
    /// Start in a new temp dir.
    pub fn start(tag: &str) -> Daemon {
        let dir = temp_dir(tag);
        Self::start_in(&dir, Arc::default())
    }

    /// Start in `dir` (socket `dir/distlogd.sock`, data `dir/data`).
    pub fn start_in(dir: &Path, records: Arc<Mutex<Vec<Value>>>) -> Daemon {
        Self::start_with(dir, records, &[])
    }

    /// [`Daemon::start_in`] with more arguments for `distlogd run`.
    pub fn start_with(
        dir: &Path,
        records: Arc<Mutex<Vec<Value>>>,
        extra: &[&std::ffi::OsStr],
    ) -> Daemon {
        let socket = dir.join("distlogd.sock");
        let mut child = Command::new(distlogd())
            .args(["run", "--stdout"])
            .args(extra)
            .arg("--socket")
            .arg(&socket)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env_remove("DISTLOG_CTL_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn distlogd");
        let out = child.stdout.take().unwrap();
        let r = records.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line).expect("stdout is JSON lines");
                r.lock().unwrap().push(v);
            }
        });
        let stderr: Arc<Mutex<String>> = Arc::default();
        let e2 = stderr.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("DISTLOG_TEST_VERBOSE").is_some() {
                    eprintln!("[distlogd] {line}");
                }
                let mut s = e2.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let d = Daemon {
            child: Some(child),
            dir: dir.to_owned(),
            socket,
            records,
            stderr,
            keep_dir: false,
        };
        let ctl = distlog::paths::ctl_socket_for(&d.socket);
        let end = Instant::now() + DEADLINE;
        while !(d.socket.exists() && ctl.exists()) {
            assert!(
                Instant::now() < end,
                "distlogd did not create its sockets: {}",
                d.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        d
    }

    /// Stop it (SIGTERM, wait) and keep its directory for a restart.
    pub fn stop(mut self) -> (PathBuf, Arc<Mutex<Vec<Value>>>) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
        self.keep_dir = true;
        (self.dir.clone(), self.records.clone())
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// `distlogd ctl --socket <ours> ARGS...`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(distlogd())
            .arg("ctl")
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .env_remove("DISTLOG_CTL_SOCKET")
            .output()
            .expect("run distlogd ctl")
    }

    /// `ctl ARGS` that must succeed; its stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "ctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ctl ARGS --json` that must succeed; the reply.
    pub fn ctl_json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ctl_ok(&a)).expect("ctl --json prints JSON")
    }

    /// A `dl-client` with our socket, its own filter left at the default.
    pub fn client_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(dl_client());
        c.args(args)
            .env("DISTLOG_SOCKET", &self.socket)
            .env_remove("RUST_LOG")
            .env_remove("DISTLOG_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        c
    }

    /// Start `dl-client --service SERVICE loop --interval MS`.
    pub fn looping(&self, service: &str, interval_ms: u32) -> Proc {
        Proc(
            self.client_cmd(&[
                "--service",
                service,
                "loop",
                "--interval",
                &interval_ms.to_string(),
            ])
            .spawn()
            .expect("spawn dl-client"),
        )
    }

    /// A copy of the records so far.
    pub fn snapshot(&self) -> Vec<Value> {
        self.records.lock().unwrap().clone()
    }

    /// Wait until `pred` holds for the records, or panic at the deadline.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let end = Instant::now() + DEADLINE;
        loop {
            {
                let r = self.records.lock().unwrap();
                if pred(&r) {
                    return r.clone();
                }
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Events of `service` at `level`.
fn events_at<'a>(
    recs: &'a [Value],
    service: &'a str,
    level: &'a str,
) -> impl Iterator<Item = &'a Value> + 'a {
    recs.iter()
        .filter(move |r| r["kind"] == "event" && r["service"] == service && r["level"] == level)
}

/// `tick` events of `service` at `level`, as their counter `n`.
pub fn ticks<'a>(
    recs: &'a [Value],
    service: &'a str,
    level: &'a str,
) -> impl Iterator<Item = u64> + 'a {
    events_at(recs, service, level)
        .filter(|r| r["message"] == "tick")
        .filter_map(|r| r["fields"]["n"].as_u64())
}

/// `log` crate records `log tick N` (`dl-client log-loop`) of `service` at
/// `level`, as N.
pub fn log_ticks<'a>(
    recs: &'a [Value],
    service: &'a str,
    level: &'a str,
) -> impl Iterator<Item = u64> + 'a {
    events_at(recs, service, level)
        .filter(|r| r["target"] == "dl_client::legacy")
        .filter_map(|r| {
            r["message"]
                .as_str()?
                .strip_prefix("log tick ")?
                .parse()
                .ok()
        })
}

/// The largest tick counter of `service` at `level` (None: none yet).
pub fn last_tick(recs: &[Value], service: &str, level: &str) -> Option<u64> {
    ticks(recs, service, level).max()
}

/// Wait until `service` logged `level` ticks no more for a while: 20 INFO
/// ticks after its last `level` tick.
pub fn wait_quiet(d: &Daemon, service: &str, level: &str) {
    d.wait_for(&format!("{level} of {service} to stop"), |r| {
        let info = last_tick(r, service, "INFO").unwrap_or(0);
        info > last_tick(r, service, level).unwrap_or(0) + 20
    });
}

/// Wait until `service` logs `level` ticks.
pub fn wait_level(d: &Daemon, service: &str, level: &str) {
    d.wait_for(&format!("{level} ticks of {service}"), |r| {
        ticks(r, service, level).next().is_some()
    });
}

//! Harness for the end-to-end tests: a real `distlogd` on a private socket,
//! real client processes, records read back from the sidecar's stdout.
//!
//! Every wait has a deadline (a watchdog); no test asserts a duration.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub mod reliability;

pub use serde_json::Value;

/// Generous deadline for anything a test waits for.
pub const DEADLINE: Duration = Duration::from_secs(60);

fn target_dir() -> PathBuf {
    // tests run from target/<profile>/deps/<test-binary>
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// Path of a workspace binary, built on first use (same profile as the test).
pub fn workspace_bin(package: &str, bin: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut b = built.lock().unwrap();
    let dir = target_dir();
    let path = dir.join(bin);
    if !b.iter().any(|x| x == bin) {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-q", "-p", package, "--bin", bin]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("run cargo build");
        assert!(st.success(), "cargo build -p {package} failed");
        b.push(bin.to_owned());
    }
    path
}

/// The sidecar binary.
pub fn distlogd() -> PathBuf {
    workspace_bin("distlogd", "distlogd")
}

/// The test client binary.
pub fn dl_client() -> PathBuf {
    workspace_bin("distlog-tests", "dl-client")
}

/// A private temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new directory with a unique name.
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("distlog-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    /// Path inside.
    pub fn join(&self, s: &str) -> PathBuf {
        self.0.join(s)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running sidecar whose stdout records are collected.
pub struct Sidecar {
    /// The process.
    pub child: Child,
    /// Its data socket.
    pub socket: PathBuf,
    /// Records seen so far (this process and earlier ones of the same test).
    pub records: Arc<Mutex<Vec<Value>>>,
    /// Lines of stderr.
    pub stderr: Arc<Mutex<Vec<String>>>,
    extra: Vec<String>,
}

impl Sidecar {
    /// Start `distlogd run --stdout` on `socket`.
    pub fn start(socket: &Path) -> Sidecar {
        Self::start_with(socket, &[], Arc::default())
    }

    /// Start with extra arguments, appending records to `records`.
    pub fn start_with(socket: &Path, extra: &[&str], records: Arc<Mutex<Vec<Value>>>) -> Sidecar {
        let mut child = Command::new(distlogd())
            .arg("run")
            .arg("--socket")
            .arg(socket)
            .arg("--stdout")
            // The store and persisted directives of this test only (beside
            // its socket), never the machine's default data dir.
            .arg("--data-dir")
            .arg(socket.parent().expect("socket in a directory").join("data"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start distlogd");
        let out = child.stdout.take().unwrap();
        let r = records.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => r.lock().unwrap().push(v),
                    Err(e) => panic!("sidecar stdout is not JSON lines: {e}: {line}"),
                }
            }
        });
        let err = child.stderr.take().unwrap();
        let stderr: Arc<Mutex<Vec<String>>> = Arc::default();
        let e2 = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("DISTLOG_TEST_VERBOSE").is_some() {
                    eprintln!("[distlogd] {line}");
                }
                e2.lock().unwrap().push(line);
            }
        });
        let s = Sidecar {
            child,
            socket: socket.to_owned(),
            records,
            stderr,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        let end = Instant::now() + DEADLINE;
        while !socket.exists() {
            assert!(Instant::now() < end, "sidecar did not create its socket");
            std::thread::sleep(Duration::from_millis(5));
        }
        s
    }

    /// `kill -9` and start a new one on the same socket, keeping the records.
    pub fn kill9_and_restart(&mut self) {
        self.kill9();
        let _ = std::fs::remove_file(&self.socket);
        let extra: Vec<&str> = self.extra.iter().map(|s| s.as_str()).collect();
        let records = self.records.clone();
        let old = std::mem::replace(
            self,
            Sidecar::start_with(&self.socket.clone(), &extra, records),
        );
        drop(old);
    }

    /// `kill -9` the sidecar.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
            if Instant::now() > end {
                let r = self.records.lock().unwrap();
                panic!(
                    "timed out waiting for {what}; {} records; stderr:\n{}",
                    r.len(),
                    self.stderr.lock().unwrap().join("\n")
                );
            }
            // The predicate scans every record: not too often.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// This sidecar's data directory (store, persisted directives).
    pub fn data_dir(&self) -> PathBuf {
        self.socket
            .parent()
            .expect("socket in a directory")
            .join("data")
    }

    /// A `distlogd` command (tail, tree, ctl) aimed at this sidecar.
    pub fn distlogd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(distlogd());
        c.args(args)
            .env("DISTLOG_SOCKET", &self.socket)
            .env("DISTLOG_DATA_DIR", self.data_dir());
        c
    }

    /// A client command with `DISTLOG_SOCKET` set to this sidecar.
    pub fn client(&self, args: &[&str]) -> Command {
        let mut c = Command::new(dl_client());
        c.args(args)
            .env("DISTLOG_SOCKET", &self.socket)
            .env_remove("RUST_LOG")
            .env_remove("DISTLOG_LOG");
        c
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Records of `kind` from process `pid`.
pub fn of_pid<'a>(
    recs: &'a [Value],
    pid: u32,
    kind: &'a str,
) -> impl Iterator<Item = &'a Value> + 'a {
    recs.iter()
        .filter(move |r| r["pid"] == pid && r["kind"] == kind)
}

/// Run a command to completion under a deadline; returns its stdout.
pub fn run_ok(mut cmd: Command) -> String {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(Ok(out)) => {
            assert!(out.status.success(), "command failed: {:?}", out.status);
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
        _ => {
            // SAFETY: kill(2) on a pid we spawned.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("command did not finish before the deadline");
        }
    }
}

//! Reliability: "nobody let in". A client's ring cannot be opened by
//! another uid, nothing is left in `/dev/shm`, the socket directory and
//! files have safe modes, and the sidecar needs no root. (The control
//! socket refusing other uids: `sidecar/tests/ctl.rs::another_uid_is_refused`;
//! a claimed pid being ignored: `reliability_hostile::a_claimed_pid_is_ignored`
//! and `sidecar/tests/records.rs::pid_from_another_namespace_is_marked_unverified`.)
//!
//! Tests that need a second uid run as root (CI does) and use `setpriv`;
//! elsewhere they print why they skip.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::sync::Arc;

use distlog_tests::reliability::*;
use distlog_tests::*;

const NOBODY: u32 = 65534;

fn can_switch_uid() -> bool {
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: needs root to act as another uid");
        return false;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        println!("skipped: setpriv (util-linux) not installed");
        return false;
    }
    true
}

fn as_nobody() -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--",
    ]);
    c
}

fn shm_entries() -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A root client's ring memfds, as another uid sees them through /proc:
/// not openable (EACCES), and no object in /dev/shm to open instead.
#[test]
fn another_uid_cannot_open_a_clients_rings() {
    if !can_switch_uid() {
        return;
    }
    let dir = TempDir::new("rel-sec-fd");
    let sc = LiveSidecar::start(&dir.join("s.sock"), |_| false);
    let shm_before = shm_entries();
    let mut c = sc
        .client(&["--service", "secret", "lines"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = c.id();
    let mut stdin = c.stdin.take().unwrap();
    let mut out = BufReader::new(c.stdout.take().unwrap());
    writeln!(stdin, "a secret record").unwrap();
    let mut l = String::new();
    out.read_line(&mut l).unwrap();
    sc.wait_pid(pid, "the record", |t| t.events >= 1);
    let mut paths = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        if let Ok(link) = std::fs::read_link(e.path()) {
            if link.to_string_lossy().starts_with("/memfd:distlog-") {
                paths.push(e.path());
            }
        }
    }
    assert!(paths.len() >= 2, "table and rings: {paths:?}");
    let mut refused = 0;
    for p in &paths {
        for mode in ["r", "w"] {
            let probe = as_nobody()
                .args(["sh", "-c"])
                .arg(if mode == "r" {
                    format!("exec cat {} > /dev/null", p.display())
                } else {
                    format!("exec sh -c 'echo x >> {}'", p.display())
                })
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&probe.stderr);
            assert!(
                !probe.status.success() && err.contains("ermission denied"),
                "{mode} {}: {:?} {err}",
                p.display(),
                probe.status
            );
            refused += 1;
        }
    }
    // The sidecar's copies of the same memfds.
    let spid = sc.child.id();
    let probe = as_nobody()
        .args(["sh", "-c"])
        .arg(format!(
            "for f in /proc/{spid}/fd/*; do cat $f >/dev/null 2>&1 && echo OPENED $f; done; true"
        ))
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&probe.stdout).contains("OPENED"),
        "{}",
        String::from_utf8_lossy(&probe.stdout)
    );
    drop(stdin);
    c.wait().unwrap();
    let shm_after = shm_entries();
    let new: Vec<_> = shm_after.difference(&shm_before).collect();
    assert!(new.is_empty(), "new /dev/shm entries: {new:?}");
    figure("security", "memfds_probed", paths.len());
    figure("security", "opens_refused", refused);
    figure("security", "dev_shm_new_entries", 0);
}

/// The socket directory the sidecar creates is 0755, the data socket 0666
/// (any local process may log), the lock file 0644, the control socket
/// 0600; none is group- or world-writable except the data socket. The data
/// directory here lies inside the socket directory: the store, which
/// starts first, made every missing parent 0700, so clients of other uids
/// could not reach the socket (fixed: only the data dir itself is 0700).
#[test]
fn socket_directory_and_files_have_safe_modes() {
    let dir = TempDir::new("rel-sec-mode");
    let sock_dir = dir.join("run/distlog");
    let sock = sock_dir.join("distlogd.sock");
    let mut sc = LiveSidecar::start(&sock, |v| v["service"] == "otheruid");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let d = mode(&sock_dir);
    assert_eq!(d & 0o022, 0, "socket dir {d:o} is not group/world-writable");
    assert_eq!(mode(&sock), 0o666, "data socket");
    let lock = sock_dir.join("distlogd.sock.lock");
    assert_eq!(mode(&lock) & 0o022, 0, "lock file");
    let ctl = distlog::paths::ctl_socket_for(&sock);
    let end = std::time::Instant::now() + DEADLINE;
    while !ctl.exists() && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let c = mode(&ctl);
    assert_eq!(c, 0o600, "control socket");
    if can_switch_uid() {
        // another uid can log
        let st = as_nobody()
            .arg(dl_client())
            .args(["--service", "otheruid", "burst", "--records", "10"])
            .env("DISTLOG_SOCKET", &sock)
            .env("DISTLOG_RING_BYTES", "64k")
            .status()
            .unwrap();
        assert!(st.success());
        let end = std::time::Instant::now() + DEADLINE;
        while sc
            .kept()
            .iter()
            .filter(|v| v["service"] == "otheruid")
            .count()
            < 10
        {
            assert!(std::time::Instant::now() < end, "{}", sc.stderr_text());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    figure("security", "socket_dir_mode", format!("{d:o}"));
    figure("security", "data_socket_mode", "666");
    figure("security", "lock_file_mode", format!("{:o}", mode(&lock)));
    figure("security", "control_socket_mode", format!("{c:o}"));
    assert!(sc.terminate());
}

/// The sidecar needs no root: run as `nobody` on a socket directory owned
/// by nobody, it serves a root client (whose records carry uid 0 from the
/// kernel) and exits cleanly.
#[test]
fn the_sidecar_runs_as_nobody() {
    if !can_switch_uid() {
        return;
    }
    let dir = TempDir::new("rel-sec-nobody");
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    nix::unistd::chown(
        &run,
        Some(nix::unistd::Uid::from_raw(NOBODY)),
        Some(nix::unistd::Gid::from_raw(NOBODY)),
    )
    .unwrap();
    let sock = run.join("distlogd.sock");
    let mut cmd = as_nobody();
    cmd.arg(distlogd());
    let mut sc = LiveSidecar::start_cmd(cmd, &sock, Arc::new(|v| v["service"] == "rootclient"));
    assert_eq!(
        std::fs::metadata(&sock).unwrap().uid(),
        NOBODY,
        "socket made by nobody"
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", sc.child.id())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == "65534"),
        "{uid_line}"
    );
    let mut client = sc.client(&["--service", "rootclient", "burst", "--records", "100"]);
    client.env("DISTLOG_RING_BYTES", "64k");
    run_ok(client);
    let end = std::time::Instant::now() + DEADLINE;
    loop {
        let k = sc.kept();
        if k.iter().filter(|v| v["kind"] == "event").count() >= 100 {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "records: {}",
            sc.stderr_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(sc.terminate(), "clean exit: {}", sc.stderr_text());
    figure("security", "sidecar_as_nobody_records", 100);
}

//! `SIGHUP` reloads the routing config of a running `distlogd` during
//! ingest: the new rules apply from the next batch, and no record is lost
//! or stored twice across the switch.

mod ctl_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ctl_support::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn signal(p: &Proc, sig: Signal) {
    kill(Pid::from_raw(p.pid() as i32), sig).unwrap();
}

/// INFO `tick` counters of service `hup` in class `class` of the store.
fn stored_ticks(data: &Path, class: &str) -> Vec<u64> {
    let out = Command::new(distlogd())
        .args([
            "tail",
            "-n",
            "all",
            "-o",
            "json",
            "--service",
            "hup",
            "-p",
            "info",
        ])
        .args(["--class", class, "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    ticks(&recs, "hup", "INFO").collect()
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_during_ingest_applies_new_routing_without_losing_a_record() {
    let dir = temp_dir("sighup");
    let data = dir.join("data");
    let config = dir.join("distlogd.toml");
    std::fs::write(&config, "[[route]]\nsink = \"store\"\n").unwrap();
    let socket = dir.join("distlogd.sock");
    let mut sc = Proc(
        Command::new(distlogd())
            .args(["run", "--socket"])
            .arg(&socket)
            .arg("--data-dir")
            .arg(&data)
            .arg("--config")
            .arg(&config)
            .env_remove("DISTLOG_CTL_SOCKET")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_until("the socket", || socket.exists());
    let client = Proc(
        Command::new(dl_client())
            .args(["--service", "hup", "loop", "--interval", "1"])
            .env("DISTLOG_SOCKET", &socket)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("ticks stored as log", || {
        stored_ticks(&data, "log").len() > 30
    });
    // The same rules plus: this service is `usage` from now on.
    std::fs::write(
        &config,
        "[[classify]]\nclass = \"usage\"\nservice = \"hup\"\n[[route]]\nsink = \"store\"\n",
    )
    .unwrap();
    signal(&sc, Signal::SIGHUP);
    wait_until("ticks stored as usage", || {
        stored_ticks(&data, "usage").len() > 30
    });
    drop(client);
    // SIGTERM: the sidecar drains every ring before it exits.
    signal(&sc, Signal::SIGTERM);
    let status = sc.0.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut sc.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("configuration reloaded"), "{stderr}");

    let log = stored_ticks(&data, "log");
    let usage = stored_ticks(&data, "usage");
    // The switch is between two batches: every tick before it is `log`,
    // every tick after it `usage`.
    assert!(
        log.last() < usage.first(),
        "log up to {:?}, usage from {:?}",
        log.last(),
        usage.first()
    );
    let all: Vec<u64> = log.iter().chain(&usage).copied().collect();
    let want: Vec<u64> = (0..all.len() as u64).collect();
    assert_eq!(all, want, "every tick once, none missing: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

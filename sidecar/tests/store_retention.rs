//! Retention by class: old `log` partitions go, `usage` stays; a class over
//! its size loses its oldest partitions. Real sidecar with a `--config` file
//! (through `DISTLOG_CONFIG`, so this file holds one test).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use distlog::wire::{Field, Head, Level, Value};

const HOUR: u64 = 3_600_000_000_000;

fn partitions(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.ends_with(".db"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Bytes of the database files (not the open partition's `-wal`/`-shm`,
/// which grow with every commit of the current hour whatever retention
/// does; the closed partitions have none).
fn bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".db"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn old_log_partitions_go_usage_stays_perf_kept_to_size() {
    let dir = temp_dir("store-retention");
    let config = dir.join("distlogd.toml");
    std::fs::write(
        &config,
        r#"
[store]
partition = "1h"
expire_every = "1s"
[classes.log]
max_age = "2h"
[classes.perf]
max_size = "1"
"#,
    )
    .unwrap();
    std::env::set_var("DISTLOG_CONFIG", &config);
    let mut sc = Sidecar::start_at(&dir.join("distlogd.sock")).expect("sidecar starts");
    let store = dir.join("data").join("store");
    let mut c = TestClient::connect(&sc.socket, "svc-ret").expect("welcome");
    let site = c.event_site(Level::Info, "app", 1, &["message", "kind"]);
    let ring = c.ring(MIN_DATA_BYTES * 16, 1);
    let now = now_ns();
    let ev = |ts: u64, msg: &str, kind: &str| {
        c.frame(
            &ring,
            &Head::Event {
                callsite: site,
                ts,
                tid: 1,
                scope: 0,
                trace: None,
            },
            &[
                Field::Idx(0, Value::Str(msg)),
                Field::Idx(1, Value::Str(kind)),
            ],
        )
    };
    for i in 0..50 {
        let _ = i;
        ev(now - 5 * HOUR, "old log", "-");
        ev(now - 4 * HOUR, "older log", "-");
        ev(now - 5 * HOUR, "old usage", "usage");
        ev(now - 3 * HOUR, "old perf", "perf");
    }
    ev(now, "new log", "-");
    ev(now, "new perf", "perf");
    sc.wait_for(202, of("svc-ret"));
    // A batch of the current hour only: the writer closes the old
    // partitions, so retention may delete them.
    ev(now_ns(), "tick", "-");
    sc.wait_for(1, |v| v["message"] == "tick");
    let log_before = bytes(&store.join("log"));
    assert_eq!(partitions(&store.join("log")).len(), 3);
    assert_eq!(partitions(&store.join("usage")).len(), 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = partitions(&store.join("log"));
        let perf = partitions(&store.join("perf"));
        if log.len() == 1 && perf.len() <= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention did not run: log {log:?} perf {perf:?}; stderr:\n{}",
            sc.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        partitions(&store.join("usage")).len(),
        1,
        "usage is kept 180 days"
    );
    assert!(bytes(&store.join("log")) < log_before, "disk use dropped");
    let out = Command::new(env!("CARGO_BIN_EXE_distlogd"))
        .args(["tail", "--data-dir"])
        .arg(dir.join("data"))
        .args(["-o", "cat", "--service", "svc-ret"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut kinds: Vec<&str> = text.lines().collect();
    kinds.dedup();
    assert!(
        kinds.contains(&"old usage") && kinds.contains(&"new log"),
        "{text}"
    );
    assert!(
        !kinds.contains(&"old log") && !kinds.contains(&"older log"),
        "{text}"
    );
    assert!(!kinds.contains(&"old perf"), "perf over its size: {text}");
    sc.wait_stderr("retention removed");
    drop(c);
}

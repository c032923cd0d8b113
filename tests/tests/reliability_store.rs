//! Reliability: faults under the sidecar's store (a full data dir is
//! `sidecar/tests/store_diskfull.rs`). The sidecar stays up, the other
//! sinks (stdout here) keep every record, and the client's ledger holds.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use distlog_tests::reliability::*;
use distlog_tests::*;

fn finish(mut c: Child) -> String {
    let mut out = String::new();
    c.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            assert!(st.success(), "client failed: {st}");
            return out;
        }
        assert!(Instant::now() < end, "client did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn ledger_holds(sc: &LiveSidecar, pid: u32, out: &str) -> Tally {
    let l = parse_ledger(out).unwrap();
    assert_eq!(l["attempted"], l["written"] + l["dropped"]);
    sc.wait_pid(pid, "its ledger", |t| {
        t.stored + t.lost >= l["written"] + l["dropped"]
    });
    sc.wait_quiet(Duration::from_millis(200));
    let t = sc.tally(pid);
    check_ledger(&format!("pid {pid}"), l["written"], l["dropped"], &t, 0).unwrap();
    t
}

/// Records the store holds for `service` (`distlogd tail --data-dir`).
fn stored_in_store(data: &std::path::Path, service: &str) -> Option<usize> {
    let out = Command::new(distlogd())
        .args(["tail", "--data-dir"])
        .arg(data)
        .args(["-o", "json", "--service", service])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).lines().count())
}

fn store_losses(sc: &LiveSidecar) -> u64 {
    sc.kept()
        .iter()
        .filter(|v| v["kind"] == "loss" && v["service"] == "distlogd")
        .filter_map(|v| v["fields"]["lost"].as_u64())
        .sum()
}

#[test]
fn data_dir_removed_while_running() {
    let dir = TempDir::new("rel-store-rm");
    let sc = LiveSidecar::start(&dir.join("s.sock"), |v| v["service"] == "distlogd");
    let data = dir.join("data");
    let count = 1000u64;
    let c = sc
        .client(&[
            "--service",
            "rmdata",
            "slow",
            "--count",
            &count.to_string(),
            "--interval",
            "1",
        ])
        .env("DISTLOG_RING_BYTES", "4m")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = c.id();
    let at = sc
        .wait_pid(pid, "a third of its records", |t| t.events >= count / 3)
        .events;
    std::fs::remove_dir_all(&data).unwrap();
    let out = finish(c);
    let t = ledger_holds(&sc, pid, &out);
    assert_eq!(t.events, count, "stdout kept every record");
    let mut sc = sc;
    assert!(sc.alive(), "{}", sc.stderr_text());
    let lost = store_losses(&sc);
    let after = stored_in_store(&data, "rmdata");
    assert!(sc.terminate(), "clean exit: {}", sc.stderr_text());
    // What came after the removal is in a new store, or counted lost
    // there; it did not vanish into the removed file (it did before).
    let after_n = after.unwrap_or(0) as u64;
    assert!(
        after_n + lost >= (count - at) * 9 / 10,
        "{after_n} stored + {lost} lost after removing the data dir with {} to come",
        count - at
    );
    let s = "store_dir_removed";
    figure(s, "written_after_removal_about", count - at);
    figure(s, "records", count);
    figure(s, "stdout_delivered", t.events);
    figure(s, "store_loss_reported", lost);
    figure(
        s,
        "in_store_after",
        after.map_or("unreadable".to_string(), |n| n.to_string()),
    );
}

#[test]
fn corrupted_store_file_at_start() {
    let dir = TempDir::new("rel-store-corrupt");
    let sock = dir.join("s.sock");
    let data = dir.join("data");
    let mut sc = LiveSidecar::start(&sock, |v| v["service"] == "distlogd");
    let c = sc
        .client(&[
            "--service",
            "before",
            "slow",
            "--count",
            "50",
            "--interval",
            "1",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = c.id();
    let out = finish(c);
    ledger_holds(&sc, pid, &out);
    assert!(sc.terminate());
    // Garble every file of the store.
    let mut garbled = 0;
    let mut stack = vec![data.join("store")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0) as usize;
                std::fs::write(&p, vec![0xA5u8; len.clamp(1, 8192)]).unwrap();
                garbled += 1;
            }
        }
    }
    assert!(garbled > 0, "the store wrote files");
    let mut sc = LiveSidecar::start(&sock, |v| v["service"] == "distlogd");
    let c = sc
        .client(&[
            "--service",
            "after",
            "slow",
            "--count",
            "50",
            "--interval",
            "1",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = c.id();
    let out = finish(c);
    let t = ledger_holds(&sc, pid, &out);
    assert_eq!(t.events, 50);
    assert!(sc.alive(), "{}", sc.stderr_text());
    let stored_after = stored_in_store(&data, "after");
    let lost = store_losses(&sc);
    assert!(sc.terminate(), "clean exit: {}", sc.stderr_text());
    let s = "store_corrupt";
    figure(s, "files_garbled", garbled);
    figure(s, "stdout_delivered_after", t.events);
    figure(s, "store_loss_reported", lost);
    figure(
        s,
        "in_store_after",
        stored_after.map_or("unreadable".to_string(), |n| n.to_string()),
    );
}

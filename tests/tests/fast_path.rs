//! The fast path end to end: real sidecar, real client processes, real
//! memfd rings, real kill -9.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use distlog_tests::*;

fn events(recs: &[Value], pid: u32) -> Vec<&Value> {
    of_pid(recs, pid, "event").collect()
}

/// Sum of the `lost` counts in loss records of `pid`.
fn lost(recs: &[Value], pid: u32) -> u64 {
    of_pid(recs, pid, "loss")
        .map(|r| r["fields"]["lost"].as_u64().unwrap())
        .sum()
}

#[test]
fn two_processes_many_threads_every_record_once_in_order() {
    let dir = TempDir::new("many");
    let sc = Sidecar::start(&dir.join("s.sock"));
    let (threads, per) = (4u32, 25_000u64);
    let spawn = || {
        sc.client(&[
            "burst",
            "--threads",
            &threads.to_string(),
            "--records",
            &per.to_string(),
        ])
        .env("DISTLOG_RING_BYTES", "4m")
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
    };
    let (mut a, mut b) = (spawn(), spawn());
    let pids = [a.id(), b.id()];
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    let want = u64::from(threads) * per;
    let recs = sc.wait_for("all records of both clients", |r| {
        pids.iter().all(|p| events(r, *p).len() as u64 >= want)
    });
    for pid in pids {
        let ev = events(&recs, pid);
        assert_eq!(ev.len() as u64, want, "every record exactly once");
        assert_eq!(lost(&recs, pid), 0);
        let mut next: HashMap<u64, u64> = HashMap::new();
        let mut tids: HashMap<u64, u64> = HashMap::new();
        for r in ev {
            assert_eq!(r["service"], "testsvc");
            assert_eq!(r["message"], "burst");
            assert_eq!(r["level"], "INFO");
            let t = r["fields"]["thread"].as_u64().unwrap();
            let seq = r["fields"]["seq"].as_u64().unwrap();
            let n = next.entry(t).or_default();
            assert_eq!(seq, *n, "per-thread order");
            *n += 1;
            let tid = r["tid"].as_u64().unwrap();
            assert_eq!(*tids.entry(t).or_insert(tid), tid, "one tid per thread");
        }
    }
}

#[test]
fn tiny_ring_and_stalled_sidecar_drop_and_count() {
    let dir = TempDir::new("tiny");
    let sc = Sidecar::start(&dir.join("s.sock"));
    // The client connects, then the sidecar stops reading (SIGSTOP).
    let mut c = sc
        .client(&["lines"])
        .env("DISTLOG_RING_BYTES", "4096")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = c.id();
    let mut stdin = c.stdin.take().unwrap();
    let mut out = BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    writeln!(stdin, "hello").unwrap();
    out.read_line(&mut line).unwrap();
    sc.wait_for("first record", |r| events(r, pid).len() == 1);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sc.child.id() as i32),
        nix::sys::signal::SIGSTOP,
    )
    .unwrap();
    // 2000 records into a 4 KiB ring while nobody reads: the client is not
    // blocked (it answers every line), most are dropped and counted.
    let n = 2000;
    for i in 0..n {
        writeln!(stdin, "line {i}").unwrap();
        line.clear();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ok");
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sc.child.id() as i32),
        nix::sys::signal::SIGCONT,
    )
    .unwrap();
    // The sidecar reports the loss when it reads the ring again.
    sc.wait_for("a loss record", |r| lost(r, pid) > 0);
    // The loss record can be out before the ring's space is released.
    for l in ["!flush", "after"] {
        writeln!(stdin, "{l}").unwrap();
        line.clear();
        out.read_line(&mut line).unwrap();
    }
    drop(stdin);
    assert!(c.wait().unwrap().success());
    // hello + n lines + after: each delivered once or counted as lost.
    let total = n + 2;
    let recs = sc.wait_for("every record accounted for", |r| {
        events(r, pid).len() as u64 + lost(r, pid) >= total
    });
    let got = events(&recs, pid).len() as u64;
    let lost = lost(&recs, pid);
    assert!(lost > 0, "a 4 KiB ring cannot hold 2000 records");
    assert!(got > 2, "records that fitted were delivered");
    assert_eq!(
        got + lost,
        total,
        "every record is either delivered or counted as lost"
    );
    assert!(
        events(&recs, pid)
            .iter()
            .any(|e| e["fields"]["line"] == "after"),
        "the ring works again after the stall"
    );
}

#[test]
fn client_kill9_after_writing_loses_nothing() {
    let dir = TempDir::new("kill9");
    let sc = Sidecar::start(&dir.join("s.sock"));
    let mut c = sc
        .client(&["burst", "--threads", "2", "--records", "20000", "--hang"])
        .env("DISTLOG_RING_BYTES", "4m")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = c.id();
    let mut line = String::new();
    BufReader::new(c.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "written");
    c.kill().unwrap();
    c.wait().unwrap();
    let recs = sc.wait_for("40000 records of the killed client", |r| {
        events(r, pid).len() >= 40_000
    });
    assert_eq!(events(&recs, pid).len(), 40_000);
}

#[test]
fn hard_exit_without_flush_loses_nothing() {
    let dir = TempDir::new("exit");
    let sc = Sidecar::start(&dir.join("s.sock"));
    let c = sc
        .client(&["burst", "--records", "5000", "--hard-exit"])
        .env("DISTLOG_RING_BYTES", "1m")
        .spawn()
        .unwrap();
    let pid = c.id();
    assert!(c.wait_with_output().unwrap().status.success());
    let recs = sc.wait_for("5000 records", |r| events(r, pid).len() >= 5000);
    assert_eq!(events(&recs, pid).len(), 5000);
}

#[test]
fn sidecar_restart_client_reconnects_and_keeps_writing() {
    let dir = TempDir::new("restart");
    let mut sc = Sidecar::start(&dir.join("s.sock"));
    let mut c = sc
        .client(&["lines"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = c.id();
    let mut stdin = c.stdin.take().unwrap();
    let mut out = BufReader::new(c.stdout.take().unwrap());
    let mut say = |s: &str| {
        writeln!(stdin, "{s}").unwrap();
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
    };
    say("before");
    sc.wait_for("record before restart", |r| {
        events(r, pid)
            .iter()
            .any(|e| e["fields"]["line"] == "before")
    });
    sc.kill9();
    // Written while no sidecar runs: waits in the ring.
    say("while away");
    let _ = std::fs::remove_file(&sc.socket);
    sc.kill9_and_restart();
    say("after");
    let recs = sc.wait_for("records after restart", |r| {
        let ev = events(r, pid);
        ev.iter().any(|e| e["fields"]["line"] == "after")
            && ev.iter().any(|e| e["fields"]["line"] == "while away")
    });
    // at least once: "before" may be repeated only if the first sidecar died
    // between printing and releasing it.
    assert!(
        events(&recs, pid)
            .iter()
            .filter(|e| e["fields"]["line"] == "after")
            .count()
            == 1
    );
    drop(stdin);
    c.wait().unwrap();
}

#[test]
fn typed_fields_log_crate_and_schema() {
    let dir = TempDir::new("fields");
    let sc = Sidecar::start(&dir.join("s.sock"));
    let c = sc
        .client(&["--service", "checkout", "fields"])
        .spawn()
        .unwrap();
    let pid = c.id();
    assert!(c.wait_with_output().unwrap().status.success());
    let recs = sc.wait_for("5 records", |r| events(r, pid).len() >= 5);
    let ev = events(&recs, pid);
    assert_eq!(
        ev.len(),
        5,
        "the debug record is filtered out by default: {ev:?}"
    );
    let typed = ev
        .iter()
        .find(|r| r["message"] == "typed fields")
        .expect("typed record");
    let f = &typed["fields"];
    assert_eq!(f["i"], -5);
    assert_eq!(f["u"].as_u64(), Some(u64::MAX));
    assert_eq!(f["big"].as_i64(), Some(i64::MIN));
    assert_eq!(f["f"], 2.5);
    assert_eq!(f["b"], true);
    assert_eq!(f["s"], "text");
    assert_eq!(f["d"], "[1, 2]");
    for k in [
        "kind", "ts", "level", "service", "host", "pid", "tid", "target", "file", "line", "message",
    ] {
        assert!(!typed[k].is_null(), "schema field {k} missing in {typed}");
    }
    assert_eq!(typed["service"], "checkout");
    assert_eq!(typed["target"], "dl_client");
    assert!(typed["file"].as_str().unwrap().ends_with("dl-client.rs"));
    let ts = typed["ts"].as_str().unwrap();
    assert!(
        ts.ends_with('Z') && ts.len() == "2026-11-25T21:07:08.123456789Z".len(),
        "{ts}"
    );
    // The events with no compact form: every field under its own name.
    let gap = ev
        .iter()
        .find(|r| r["message"] == "gap")
        .expect("gap record");
    assert_eq!(gap["fields"]["first"], 1, "{gap}");
    assert_eq!(gap["fields"]["after"], 3, "{gap}");
    assert!(gap["fields"].get("gap").is_none(), "{gap}");
    let wide = ev
        .iter()
        .find(|r| r["message"] == "wide")
        .expect("wide record");
    assert_eq!(wide["fields"]["wide"], u128::MAX.to_string(), "{wide}");
    assert_eq!(wide["fields"]["neg"], i128::MIN.to_string(), "{wide}");
    assert_eq!(wide["fields"]["small"], 7, "{wide}");
    let lit = ev.iter().find(|r| r["target"] == "custom::target").unwrap();
    assert_eq!(lit["message"], "literal");
    assert_eq!(lit["level"], "WARN");
    let log = ev
        .iter()
        .find(|r| r["target"] == "thirdparty::db")
        .expect("log crate record");
    assert_eq!(log["message"], "from log 7");
    assert_eq!(log["level"], "WARN");
}

#[test]
fn fork_child_gets_its_own_ring() {
    let dir = TempDir::new("fork");
    let sc = Sidecar::start(&dir.join("s.sock"));
    let c = sc.client(&["fork", "--count", "500"]).spawn().unwrap();
    let pid = c.id();
    assert!(c.wait_with_output().unwrap().status.success());
    let recs = sc.wait_for("parent and child records", |r| {
        r.iter().filter(|e| e["message"] == "fork").count() >= 1500
    });
    let parent = events(&recs, pid);
    assert_eq!(parent.len(), 1000);
    assert!(parent.iter().all(|e| e["fields"]["who"] != "child"));
    let child: Vec<_> = recs
        .iter()
        .filter(|e| e["fields"]["who"] == "child")
        .collect();
    assert_eq!(child.len(), 500);
    let cpid = child[0]["pid"].as_u64().unwrap();
    assert_ne!(cpid, u64::from(pid));
    assert!(child.iter().all(|e| e["pid"] == cpid));
    // In order per process and thread.
    for (who, list) in [("parent-after", &parent), ("child", &child)] {
        let seqs: Vec<u64> = list
            .iter()
            .filter(|e| e["fields"]["who"] == who)
            .map(|e| e["fields"]["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (0..500).collect::<Vec<_>>(), "{who}");
    }
    // The scope each opened after the fork: its own trace and scope ids
    // (the child does not replay the parent's id generator).
    let ids = |who: &str| {
        let e = recs
            .iter()
            .find(|e| e["fields"]["who"] == who)
            .unwrap_or_else(|| panic!("no {who} record"));
        (e["trace_id"].clone(), e["scope_id"].clone())
    };
    let (child_ids, parent_ids) = (ids("child"), ids("parent-after"));
    assert!(
        child_ids.0.is_string() && child_ids.1.is_string(),
        "{child_ids:?}"
    );
    assert_ne!(
        child_ids.0, parent_ids.0,
        "same trace id in parent and child"
    );
    assert_ne!(
        child_ids.1, parent_ids.1,
        "same scope id in parent and child"
    );
}

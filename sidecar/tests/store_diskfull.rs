//! A full disk under the store: no crash, the loss is counted and reported
//! as a `loss` record on the other sinks, and storing resumes when space
//! returns. Needs root to mount a 2 MiB tmpfs; skipped (with the reason
//! printed) where that fails.

mod common;

use std::process::Command;

use common::*;
use distlog::wire::{Field, Head, Level, Value};

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn disk_full_counts_the_loss_and_recovers() {
    let dir = temp_dir("store-diskfull");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&data)
        .output();
    match mounted {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            println!(
                "SKIPPED: cannot mount a tmpfs (needs root): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return;
        }
        Err(e) => {
            println!("SKIPPED: cannot run mount: {e}");
            return;
        }
    }
    let _m = Mount(data.clone());
    // Leave the store about 300 KiB.
    let filler = data.join("filler");
    std::fs::write(&filler, vec![0u8; 1700 << 10]).unwrap();
    let mut sc = Sidecar::start_at(&dir.join("distlogd.sock")).expect("sidecar starts");
    let mut c = TestClient::connect(&sc.socket, "svc-full").expect("welcome");
    let site = c.event_site(Level::Info, "app", 1, &["message", "n"]);
    // Room for two rounds: a round's positions are released only after the
    // store has tried them, which may be after stdout has shown them.
    let ring = c.ring(MIN_DATA_BYTES * 256, 1);
    let big = "x".repeat(2000);
    let ev = |n: u64, msg: &str| {
        c.frame(
            &ring,
            &Head::Event {
                callsite: site,
                ts: now_ns(),
                tid: 1,
                scope: 0,
                trace: None,
            },
            &[Field::Idx(0, Value::Str(msg)), Field::Idx(1, Value::U64(n))],
        )
    };
    for round in 0..4u64 {
        for n in 0..100 {
            ev(round * 100 + n, &big);
        }
        // Every record still reaches stdout.
        let want = (round as usize + 1) * 100;
        sc.wait_until("this round on stdout", |v| {
            v.iter().filter(|r| r["service"] == "svc-full").count() >= want
        });
    }
    // The store's loss is reported there.
    let loss = sc.wait_for(1, |v| v["kind"] == "loss" && v["service"] == "distlogd");
    assert!(loss[0]["fields"]["lost"].as_u64().unwrap() > 0);
    sc.wait_stderr("store: write failed");

    // Space returns: storing resumes.
    std::fs::remove_file(&filler).unwrap();
    ev(1000, "after");
    sc.wait_for(1, |v| v["message"] == "after");
    let out = Command::new(env!("CARGO_BIN_EXE_distlogd"))
        .args(["tail", "--data-dir"])
        .arg(&data)
        .args(["-o", "json", "--grep", "after"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "stored after recovery: {text}");
    sc.wait_stderr("store: writing again");
    // The loss is in the store too, once it writes again.
    let out = Command::new(env!("CARGO_BIN_EXE_distlogd"))
        .args(["tail", "--data-dir"])
        .arg(&data)
        .args(["-o", "json", "--kind", "loss", "--service", "distlogd"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8(out.stdout).unwrap().is_empty(),
        "loss record stored"
    );
    drop(c);
    assert!(sc.terminate().success(), "{}", sc.stderr());
}

//! `distlogd ctl`: verbosity changed while clients run, scopes, time to
//! live, refusals, status; the real sidecar binary and real clients.

mod ctl_support;

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use ctl_support::*;

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn set_and_reset_reach_a_running_client() {
    let d = Daemon::start("ctl-set");
    let _c = d.looping("checkout", 5);
    d.wait_for("info ticks", |r| ticks(r, "checkout", "INFO").count() >= 5);
    assert!(
        ticks(&d.snapshot(), "checkout", "DEBUG").next().is_none(),
        "debug is off by default"
    );

    let out = d.ctl_ok(&["level", "set", "debug", "--service", "checkout"]);
    assert!(
        out.contains("level set \"debug\" for service checkout"),
        "{out}"
    );
    wait_level(&d, "checkout", "DEBUG");
    assert!(ticks(&d.snapshot(), "checkout", "TRACE").next().is_none());

    d.ctl_ok(&["level", "reset", "--service", "checkout"]);
    wait_quiet(&d, "checkout", "DEBUG");

    // both changes are records of their own, saying who did what
    let recs = d.snapshot();
    let control: Vec<&Value> = recs.iter().filter(|r| r["kind"] == "control").collect();
    assert!(control.iter().any(|r| r["fields"]["action"] == "set"
        && r["fields"]["directives"] == "debug"
        && r["fields"]["scope"] == "service checkout"
        && r["service"] == "distlogd"
        && r["level"] == "INFO"
        && r["fields"]["uid"].is_u64()));
    assert!(control.iter().any(|r| r["fields"]["action"] == "reset"));
}

/// `log` crate records obey `ctl` as `tracing` ones do: a target turned
/// up to DEBUG (`log`'s own max level must follow, or `log::debug!`
/// never reaches distlog), then off, then back to the start-up level.
#[test]
fn ctl_turns_a_log_crate_target_on_and_off() {
    let d = Daemon::start("ctl-log");
    let _c = Proc(
        d.client_cmd(&["--service", "legacy", "log-loop", "--interval", "5"])
            .spawn()
            .expect("spawn dl-client"),
    );
    d.wait_for("info log records", |r| {
        log_ticks(r, "legacy", "INFO").count() >= 5
    });
    assert!(log_ticks(&d.snapshot(), "legacy", "DEBUG").next().is_none());

    d.ctl_ok(&[
        "level",
        "set",
        "info,dl_client::legacy=debug",
        "--service",
        "legacy",
    ]);
    d.wait_for("debug log records", |r| {
        log_ticks(r, "legacy", "DEBUG").next().is_some()
    });

    d.ctl_ok(&[
        "level",
        "set",
        "info,dl_client::legacy=off",
        "--service",
        "legacy",
    ]);
    // 20 `tracing` ticks (its target is on) after the last `log` record.
    let quiet = |r: &[Value]| {
        let last = log_ticks(r, "legacy", "INFO")
            .chain(log_ticks(r, "legacy", "DEBUG"))
            .max()
            .unwrap_or(0);
        last_tick(r, "legacy", "INFO").unwrap_or(0) > last + 20
    };
    d.wait_for("log records to stop", quiet);
    let stopped = log_ticks(&d.snapshot(), "legacy", "INFO")
        .max()
        .unwrap_or(0);

    d.ctl_ok(&["level", "reset", "--service", "legacy"]);
    let recs = d.wait_for("info log records again", |r| {
        log_ticks(r, "legacy", "INFO").any(|n| n > stopped)
    });
    let from = log_ticks(&recs, "legacy", "INFO").max().unwrap_or(0);
    let recs = d.wait_for("more info log records", |r| {
        log_ticks(r, "legacy", "INFO").any(|n| n > from + 20)
    });
    // Back at the start-up level: no DEBUG record after the reset's first.
    assert!(
        log_ticks(&recs, "legacy", "DEBUG").all(|n| n < from),
        "debug after the reset"
    );
}

#[test]
fn ttl_reverts_by_itself() {
    let d = Daemon::start("ctl-ttl");
    let _c = d.looping("svc", 5);
    d.wait_for("info ticks", |r| ticks(r, "svc", "INFO").count() >= 5);
    d.ctl_ok(&["level", "set", "debug", "--ttl", "1s"]);
    wait_level(&d, "svc", "DEBUG");
    wait_quiet(&d, "svc", "DEBUG");
    d.wait_for("the expiry record", |r| {
        r.iter()
            .any(|x| x["kind"] == "control" && x["fields"]["action"] == "expire")
    });
    let show = d.ctl_json(&["level", "show"]);
    assert_eq!(
        show["data"]["directives"].as_array().map(Vec::len),
        Some(0),
        "{show}"
    );
}

#[test]
fn service_and_pid_scopes() {
    let d = Daemon::start("ctl-scopes");
    let a = d.looping("alpha", 5);
    let b = d.looping("beta", 5);
    d.wait_for("both log", |r| {
        ticks(r, "alpha", "INFO").count() > 3 && ticks(r, "beta", "INFO").count() > 3
    });
    let out = d.ctl(&["level", "set", "debug", "--service", "alpha"]);
    assert!(out.status.success());
    wait_level(&d, "alpha", "DEBUG");
    // beta goes on at its own level for a good while
    let from = last_tick(&d.snapshot(), "beta", "INFO").unwrap();
    d.wait_for("beta logs on", |r| {
        last_tick(r, "beta", "INFO").unwrap() > from + 30
    });
    assert!(ticks(&d.snapshot(), "beta", "DEBUG").next().is_none());

    // pid beats service beats all
    d.ctl_ok(&["level", "set", "warn"]);
    d.ctl_ok(&["level", "set", "trace", "--pid", &b.pid().to_string()]);
    wait_level(&d, "beta", "TRACE");
    wait_quiet(&d, "alpha", "TRACE"); // alpha never had trace: 20 info ticks on
    assert!(ticks(&d.snapshot(), "alpha", "TRACE").next().is_none());
    let show = d.ctl_json(&["level", "show"]);
    let clients = show["data"]["clients"].as_array().unwrap();
    let by_pid: HashMap<u64, &Value> = clients
        .iter()
        .map(|c| (c["pid"].as_u64().unwrap(), c))
        .collect();
    assert_eq!(by_pid[&u64::from(a.pid())]["filter"], "debug", "{show}");
    assert_eq!(by_pid[&u64::from(b.pid())]["filter"], "trace", "{show}");

    // a service nobody runs: allowed, with a note
    let out = d.ctl(&["level", "set", "debug", "--service", "nobody-runs-this"]);
    assert!(out.status.success());
    assert!(
        stderr_of(&out).contains("no client of service nobody-runs-this is connected now"),
        "{}",
        stderr_of(&out)
    );
    let j = d.ctl_json(&["level", "set", "debug", "--service", "nobody-runs-this"]);
    assert!(
        j["notes"][0]
            .as_str()
            .unwrap()
            .contains("no client of service"),
        "{j}"
    );
}

#[test]
fn span_field_directive_enables_one_request() {
    let d = Daemon::start("ctl-span");
    let _c = d.looping("spans", 5);
    d.ctl_ok(&[
        "level",
        "set",
        "info,[request{order=1}]=trace",
        "--service",
        "spans",
    ]);
    wait_level(&d, "spans", "TRACE");
    let from = last_tick(&d.snapshot(), "spans", "INFO").unwrap();
    let recs = d.wait_for("more ticks", |r| {
        last_tick(r, "spans", "INFO").unwrap() > from + 30
    });
    // the order of each scope, from its open record
    let order: HashMap<&str, u64> = recs
        .iter()
        .filter(|r| r["kind"] == "scope_open" && r["service"] == "spans")
        .filter_map(|r| Some((r["scope_id"].as_str()?, r["fields"]["order"].as_u64()?)))
        .collect();
    let mut seen = HashSet::new();
    for r in recs
        .iter()
        .filter(|r| r["service"] == "spans" && r["kind"] == "event" && r["level"] == "TRACE")
    {
        let o = order.get(r["scope_id"].as_str().unwrap()).copied();
        assert_eq!(o, Some(1), "trace only inside request{{order=1}}: {r}");
        seen.insert(r["fields"]["n"].as_u64().unwrap() % 2);
    }
    assert_eq!(seen, HashSet::from([0]), "order 1 is n even");
}

#[test]
fn trace_directive_boosts_one_request_across_processes() {
    let d = Daemon::start("ctl-trace");
    let trace = format!(
        "{:032x}",
        0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736u128 ^ u128::from(std::process::id())
    );
    let out = d.ctl_ok(&["level", "set", "debug", "--trace", &trace, "--ttl", "5m"]);
    assert!(out.contains(&trace), "{out}");
    let tp = format!("00-{trace}-00f067aa0ba902b7-01");
    let st = d
        .client_cmd(&[
            "--service",
            "a",
            "chain",
            "a",
            "--traceparent",
            &tp,
            "--next",
            "b",
            "--next",
            "c",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    // another request through the same services: not boosted
    let st = d
        .client_cmd(&["--service", "a", "chain", "a", "--next", "b", "--next", "c"])
        .status()
        .unwrap();
    assert!(st.success());
    let recs = d.wait_for("both chains closed", |r| {
        r.iter().filter(|x| x["kind"] == "scope_close").count() >= 6
    });
    let details: Vec<&Value> = recs
        .iter()
        .filter(|r| r["message"] == "debug detail")
        .collect();
    let services: HashSet<&str> = details
        .iter()
        .map(|r| r["service"].as_str().unwrap())
        .collect();
    assert_eq!(services, HashSet::from(["a", "b", "c"]), "{details:?}");
    for r in &details {
        assert_eq!(
            r["trace_id"],
            trace.as_str(),
            "debug only in the boosted request: {r}"
        );
    }
    let other: HashSet<&str> = recs
        .iter()
        .filter(|r| r["kind"] == "scope_open")
        .filter_map(|r| r["trace_id"].as_str())
        .filter(|t| *t != trace)
        .collect();
    assert_eq!(other.len(), 1, "the second request has a trace of its own");
}

#[test]
fn malformed_directive_is_refused_and_changes_nothing() {
    let d = Daemon::start("ctl-bad");
    d.ctl_ok(&["level", "set", "warn"]);
    let out = d.ctl(&["level", "set", "info,db=loud"]);
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(
        err.contains("malformed directive \"db=loud\" at byte 5"),
        "{err}"
    );
    let out = d.ctl(&["level", "set", "info,db=loud", "--json"]);
    assert!(!out.status.success());
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["ok"], false);
    assert!(j["error"].as_str().unwrap().contains("malformed"));
    let out = d.ctl(&[
        "level",
        "set",
        "info",
        "--trace",
        "0123456789abcdef0123456789abcdef",
    ]);
    assert!(out.status.success(), "a level is a trace directive");
    let out = d.ctl(&[
        "level",
        "set",
        "a=debug",
        "--trace",
        "0123456789abcdef0123456789abcdef",
    ]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("one level"), "{}", stderr_of(&out));
    let show = d.ctl_json(&["level", "show"]);
    let dirs: Vec<&str> = show["data"]["directives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["directives"].as_str().unwrap())
        .collect();
    assert_eq!(dirs, ["warn", "info"], "{show}");
}

#[test]
fn not_running_is_a_clear_error() {
    let dir = temp_dir("ctl-none");
    let sock = dir.join("distlogd.sock");
    for args in [&["ctl", "status"][..], &["ctl", "level", "set", "debug"]] {
        let out = Command::new(distlogd())
            .args(args)
            .arg("--socket")
            .arg(&sock)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = stderr_of(&out);
        assert!(err.contains("is distlogd running?"), "{err}");
        assert!(
            err.contains(&dir.join("distlogd.ctl.sock").display().to_string()),
            "{err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn another_uid_is_refused() {
    let runuser = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(runuser) = runuser else {
        println!("skipped: runuser is not installed");
        return;
    };
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: needs root to run a command as nobody");
        return;
    }
    let d = Daemon::start("ctl-uid");
    let as_nobody = |args: &[&str]| {
        Command::new(runuser)
            .args(["-u", "nobody", "--"])
            .arg(distlogd())
            .arg("ctl")
            .args(args)
            .arg("--socket")
            .arg(&d.socket)
            .output()
            .unwrap()
    };
    // The socket is 0600: the kernel refuses the connection.
    std::fs::set_permissions(&d.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = as_nobody(&["level", "set", "trace"]);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("permission denied"),
        "{}",
        stderr_of(&out)
    );
    // Made world-writable by mistake: the peer uid check still refuses.
    let ctl = distlog::paths::ctl_socket_for(&d.socket);
    std::fs::set_permissions(&ctl, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody(&["level", "set", "trace"]);
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(
        err.contains("permission denied: uid 65534 may not control"),
        "{err}"
    );
    d.wait_for("the refusal on stderr", |_| {
        d.stderr().contains("refused uid 65534")
    });
    let show = d.ctl_json(&["level", "show"]);
    assert_eq!(show["data"]["directives"].as_array().map(Vec::len), Some(0));
}

#[test]
fn status_lists_clients_and_counters() {
    let d = Daemon::start("ctl-status");
    let c = d.looping("stat", 5);
    d.wait_for("records", |r| ticks(r, "stat", "INFO").count() > 3);
    let s = d.ctl_json(&["status"]);
    assert_eq!(s["ok"], true);
    assert!(s["data"]["sidecar"]["pid"].as_u64().is_some());
    assert!(s["data"]["sidecar"]["rss_bytes"].as_u64().unwrap() > 0);
    let cl = &s["data"]["clients"][0];
    assert_eq!(cl["service"], "stat");
    assert_eq!(cl["pid"].as_u64(), Some(u64::from(c.pid())));
    assert_eq!(
        cl["uid"].as_u64(),
        Some(u64::from(nix::unistd::geteuid().as_raw()))
    );
    assert!(cl["library"].as_str().unwrap().contains("rust"));
    assert!(cl["records"].as_u64().unwrap() > 0);
    assert_eq!(cl["dropped"].as_u64(), Some(0));
    assert!(cl["rings"][0]["capacity"].as_u64().unwrap() > 0);
    let human = d.ctl_ok(&["status"]);
    assert!(
        human.contains("stat") && human.contains("RECORDS"),
        "{human}"
    );
}

#[test]
fn directives_survive_a_restart() {
    let d = Daemon::start("ctl-restart");
    d.ctl_ok(&[
        "level",
        "set",
        "debug",
        "--service",
        "later",
        "--ttl",
        "10m",
    ]);
    let file = d.dir.join("data").join("directives.json");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let (dir, records) = d.stop();
    let d = Daemon::start_in(&dir, records);
    let show = d.ctl_json(&["level", "show"]);
    let x = &show["data"]["directives"][0];
    assert_eq!(x["service"], "later", "{show}");
    assert!(x["remaining_ms"].as_u64().unwrap() > 0);
    // and a client that connects now gets it
    let _c = d.looping("later", 5);
    wait_level(&d, "later", "DEBUG");
}

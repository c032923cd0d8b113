//! Scopes across threads and processes, as the sidecar reports them.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Instant;

use distlog_tests::*;

fn by_kind<'a>(recs: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    recs.iter().filter(move |r| r["kind"] == kind)
}

#[test]
fn chain_of_three_processes_is_one_trace() {
    let dir = TempDir::new("chain");
    let sc = Sidecar::start(&dir.join("s.sock"));
    let started = Instant::now();
    let out = run_ok(sc.client(&[
        "--service",
        "checkout",
        "chain",
        "checkout",
        "--next",
        "payments:fail",
        "--next",
        "bank",
    ]));
    let wall = started.elapsed().as_nanos() as u64;
    let tps: Vec<&str> = out.lines().collect();
    assert_eq!(tps.len(), 3, "{out}");
    let trace = &tps[0][3..35];
    let recs = sc.wait_for("three closed scopes", |r| {
        by_kind(r, "scope_close").count() >= 3
    });
    let opens: Vec<_> = by_kind(&recs, "scope_open").collect();
    assert_eq!(opens.len(), 3);
    let svc_scope: HashMap<String, (String, Option<String>)> = opens
        .iter()
        .map(|o| {
            assert_eq!(o["trace_id"], trace, "one trace: {o}");
            (
                o["service"].as_str().unwrap().to_owned(),
                (
                    o["scope_id"].as_str().unwrap().to_owned(),
                    o["parent_id"].as_str().map(str::to_owned),
                ),
            )
        })
        .collect();
    let (a, a_parent) = &svc_scope["checkout"];
    let (b, b_parent) = &svc_scope["payments"];
    let (c, c_parent) = &svc_scope["bank"];
    assert!(a_parent.is_none(), "root has no parent");
    assert_eq!(b_parent.as_deref(), Some(a.as_str()));
    assert_eq!(c_parent.as_deref(), Some(b.as_str()));
    // each traceparent the process printed names its own scope
    for (tp, s) in tps.iter().zip([a, b, c]) {
        assert_eq!(&tp[36..52], s.as_str());
    }
    let closes: HashMap<&str, &Value> = by_kind(&recs, "scope_close")
        .map(|c| (c["scope_id"].as_str().unwrap(), c))
        .collect();
    assert_eq!(closes[a.as_str()]["outcome"], "ok");
    assert_eq!(closes[b.as_str()]["outcome"], "error");
    assert_eq!(closes[c.as_str()]["outcome"], "ok");
    for s in [a, b, c] {
        let d = closes[s.as_str()]["duration_ns"].as_u64().unwrap();
        assert!(
            d > 0 && d <= wall,
            "duration {d} within the wall time {wall}"
        );
    }
    // every event sits in its scope
    for e in by_kind(&recs, "event") {
        let svc = e["service"].as_str().unwrap();
        assert_eq!(e["scope_id"], svc_scope[svc].0.as_str(), "{e}");
        assert_eq!(e["trace_id"], trace);
    }
    let declined = by_kind(&recs, "event")
        .find(|e| e["message"] == "declined")
        .unwrap();
    assert_eq!(declined["service"], "payments");
    assert_eq!(declined["fields"]["reason"], "insufficient funds");

    // The same request as one tree, from the store, across the processes.
    let tree: Value =
        serde_json::from_str(&run_ok(sc.distlogd(&["tree", trace, "--json"]))).unwrap();
    assert_eq!(tree["trace_id"], trace);
    let roots = tree["scopes"].as_array().unwrap();
    assert_eq!(roots.len(), 1, "one root: {tree:#}");
    let root = &roots[0];
    assert_eq!(
        (root["service"].as_str(), root["scope_id"].as_str()),
        (Some("checkout"), Some(a.as_str()))
    );
    assert_eq!(root["outcome"], "ok");
    assert_eq!(root["name"], "step");
    assert_eq!(root["fields"]["step"], "checkout");
    let pay = &root["children"][0];
    assert_eq!(
        (pay["service"].as_str(), pay["scope_id"].as_str()),
        (Some("payments"), Some(b.as_str()))
    );
    assert_eq!(pay["parent_id"], a.as_str());
    assert_eq!(pay["outcome"], "error");
    let bank = &pay["children"][0];
    assert_eq!(
        (bank["service"].as_str(), bank["outcome"].as_str()),
        (Some("bank"), Some("ok"))
    );
    assert!(bank["children"].as_array().unwrap().is_empty());
    for (s, svc) in [(root, "checkout"), (pay, "payments"), (bank, "bank")] {
        assert_ne!(s["pid"], Value::Null);
        let d = s["duration_ns"].as_u64().unwrap();
        assert!(d > 0 && d <= wall);
        let evs = s["events"].as_array().unwrap();
        assert!(
            evs.iter()
                .any(|e| e["message"] == "working" && e["service"] == svc),
            "{s:#}"
        );
    }
    assert!(
        root["duration_ns"].as_u64() >= pay["duration_ns"].as_u64(),
        "the caller outlives its callee"
    );
    let pay_events = pay["events"].as_array().unwrap();
    assert!(pay_events
        .iter()
        .any(|e| e["message"] == "declined" && e["level"] == "ERROR"));
}

#[test]
fn killed_inside_a_scope_is_abandoned() {
    let dir = TempDir::new("abandon");
    let sc = Sidecar::start(&dir.join("s.sock"));
    let mut c = sc
        .client(&["chain", "stuck", "--hang"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut tp = String::new();
    BufReader::new(c.stdout.take().unwrap())
        .read_line(&mut tp)
        .unwrap();
    sc.wait_for("the scope opens", |r| by_kind(r, "scope_open").count() == 1);
    c.kill().unwrap();
    c.wait().unwrap();
    let recs = sc.wait_for("the scope closes", |r| {
        by_kind(r, "scope_close").count() == 1
    });
    let close = by_kind(&recs, "scope_close").next().unwrap();
    assert_eq!(close["outcome"], "abandoned");
    assert_eq!(close["scope_id"], &tp.trim()[36..52]);
}

#[test]
fn async_tasks_hopping_threads_keep_their_scope() {
    let dir = TempDir::new("async");
    let sc = Sidecar::start(&dir.join("s.sock"));
    run_ok(sc.client(&["async", "--tasks", "8"]));
    let recs = sc.wait_for("200 ticks", |r| {
        r.iter().filter(|e| e["message"] == "tick").count() >= 200
    });
    let task_of_scope: HashMap<&str, u64> = by_kind(&recs, "scope_open")
        .map(|o| {
            (
                o["scope_id"].as_str().unwrap(),
                o["fields"]["task"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(task_of_scope.len(), 8);
    let mut tids = std::collections::HashSet::new();
    for e in recs.iter().filter(|e| e["message"] == "tick") {
        let scope = e["scope_id"]
            .as_str()
            .expect("tick inside its task's scope");
        assert_eq!(
            task_of_scope[scope],
            e["fields"]["task"].as_u64().unwrap(),
            "{e}"
        );
        tids.insert(e["tid"].as_u64().unwrap());
    }
    assert!(tids.len() >= 2, "tasks ran on more than one worker thread");
}

/// More spans open at once than the subscriber's first slab buckets hold
/// (the slab grows): every one opens and closes once, with its child and
/// its event under it, failed exactly where it was marked.
#[test]
fn many_open_scopes_keep_parents_and_outcomes() {
    let dir = TempDir::new("many");
    let sc = Sidecar::start(&dir.join("s.sock"));
    let n = 1500u64;
    let mut cmd = sc.client(&["many-scopes", "--spans", &n.to_string()]);
    cmd.env("DISTLOG_RING_BYTES", "16m");
    run_ok(cmd);
    let recs = sc.wait_for("every scope closed", |r| {
        by_kind(r, "scope_close").count() as u64 > 2 * n
    });
    let opens: Vec<_> = by_kind(&recs, "scope_open").collect();
    assert_eq!(by_kind(&recs, "loss").count(), 0, "a ring big enough");
    assert_eq!(opens.len() as u64, 2 * n + 1);
    let mut outer = HashMap::new();
    for o in &opens {
        if o["name"] == "outer" {
            outer.insert(
                o["scope_id"].as_str().unwrap(),
                o["fields"]["i"].as_u64().unwrap(),
            );
        }
    }
    assert_eq!(outer.len() as u64, n);
    for o in opens.iter().filter(|o| o["name"] == "inner") {
        let parent = o["parent_id"].as_str().expect("inner has a parent");
        assert_eq!(outer[parent], o["fields"]["i"].as_u64().unwrap(), "{o}");
    }
    for e in recs.iter().filter(|e| e["message"] == "under outer") {
        let s = e["scope_id"].as_str().expect("event under its parent");
        assert_eq!(outer[s], e["fields"]["i"].as_u64().unwrap(), "{e}");
    }
    let closes: Vec<_> = by_kind(&recs, "scope_close").collect();
    let mut seen = std::collections::HashSet::new();
    for c in &closes {
        let id = c["scope_id"].as_str().unwrap();
        assert!(seen.insert(id), "closed once: {c}");
        if let Some(i) = outer.get(id) {
            let failed = c["outcome"] == "error";
            assert_eq!(failed, i % 3 == 0, "outcome of outer {i}: {c}");
        }
    }
    let bad = opens
        .iter()
        .find(|o| o["name"] == "bad")
        .expect("bad scope");
    assert!(bad["parent_id"].is_null(), "{bad}");
    assert_eq!(
        bad["fields"]["distlog.bad_traceparent"], "00-not-a-traceparent",
        "{bad}"
    );
}

/// What the `Registry` did for distlog, done by distlog's own subscriber
/// (the client asserts `Span::current` and id reuse itself): a span
/// cloned and closed on another thread closes once, from there, when its
/// last handle goes; re-entries, exits out of order, nested `in_scope`,
/// `follows_from` and disabled spans put each event in the right scope.
#[test]
fn the_subscriber_keeps_spans_as_the_registry_did() {
    let dir = TempDir::new("semantics");
    let sc = Sidecar::start(&dir.join("s.sock"));
    let out = run_ok(sc.client(&["span-semantics"]));
    assert_eq!(out.trim(), "ok");
    let recs = sc.wait_for("the churned scopes closed", |r| {
        by_kind(r, "scope_open")
            .filter(|o| o["name"] == "churn")
            .count()
            == 1000
            && by_kind(r, "scope_close").count() >= 1000 + 8
    });
    assert_eq!(by_kind(&recs, "loss").count(), 0);
    let open_of = |name: &str| {
        let v: Vec<_> = by_kind(&recs, "scope_open")
            .filter(|o| o["name"] == name)
            .collect();
        assert_eq!(v.len(), 1, "one open of {name}");
        v[0]
    };
    let id_of = |name: &str| open_of(name)["scope_id"].as_str().unwrap().to_owned();
    let closes_of = |id: &str| {
        by_kind(&recs, "scope_close")
            .filter(|c| c["scope_id"] == id)
            .collect::<Vec<_>>()
    };
    let event = |msg: &str| {
        let v: Vec<_> = by_kind(&recs, "event")
            .filter(|e| e["message"] == msg)
            .collect();
        assert_eq!(v.len(), 1, "one event {msg:?}");
        v[0]
    };
    let scope_of = |msg: &str| event(msg)["scope_id"].as_str().map(str::to_owned);

    let shared = id_of("shared");
    let late = event("after the first handle dropped");
    assert_eq!(late["scope_id"], shared.as_str());
    let closes = closes_of(&shared);
    assert_eq!(closes.len(), 1, "closed once: {closes:?}");
    assert_eq!(
        closes[0]["tid"], late["tid"],
        "closed by the last handle's thread"
    );
    assert_ne!(closes[0]["tid"], open_of("shared")["tid"]);

    let re = id_of("reentered");
    assert_eq!(scope_of("twice in").as_deref(), Some(re.as_str()));
    assert_eq!(scope_of("once in").as_deref(), Some(re.as_str()));
    assert_eq!(scope_of("out of reentered"), None);
    assert_eq!(closes_of(&re).len(), 1);

    assert_eq!(scope_of("in y after x exited"), Some(id_of("y")));
    assert_eq!(scope_of("after out of order"), None);

    let inner = open_of("nest_inner");
    assert_eq!(inner["parent_id"], id_of("nest_outer").as_str());
    assert_eq!(scope_of("nested").as_deref(), inner["scope_id"].as_str());

    let follower = open_of("follower");
    assert!(follower["parent_id"].is_null(), "{follower}");
    assert_eq!(
        scope_of("in follower").as_deref(),
        follower["scope_id"].as_str()
    );

    assert_eq!(scope_of("in a disabled span"), None);
    assert_eq!(
        by_kind(&recs, "scope_open")
            .filter(|o| o["name"] == "disabled_span")
            .count(),
        0
    );
    for name in ["x", "y", "nest_outer", "nest_inner", "follower", "probe"] {
        assert_eq!(closes_of(&id_of(name)).len(), 1, "{name} closed once");
    }
}

/// `Builder::layer` in a stack of one's own: a fmt layer beside distlog's
/// both get the span and the event; the filter in front holds for both.
#[test]
fn the_layer_composes_with_a_fmt_layer() {
    let dir = TempDir::new("composed");
    let sc = Sidecar::start(&dir.join("s.sock"));
    let mut cmd = sc.client(&["composed"]);
    cmd.stderr(Stdio::piped());
    let out = cmd.output().expect("run dl-client");
    assert!(out.status.success(), "{out:?}");
    let fmt = String::from_utf8_lossy(&out.stderr);
    assert!(
        fmt.contains("through both layers") && fmt.contains("composed{order=42}"),
        "{fmt}"
    );
    assert!(!fmt.contains("filtered out"), "{fmt}");
    let tp = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let recs = sc.wait_for("the scope closed", |r| {
        by_kind(r, "scope_close").count() >= 1
    });
    let open = by_kind(&recs, "scope_open").next().expect("an open");
    assert_eq!(open["name"], "composed");
    assert_eq!(open["fields"]["order"], 42);
    assert_eq!(open["scope_id"], &tp[36..52]);
    let e = by_kind(&recs, "event")
        .find(|e| e["message"] == "through both layers")
        .expect("the event");
    assert_eq!(e["scope_id"], open["scope_id"]);
    assert!(by_kind(&recs, "event").all(|e| e["message"] != "filtered out"));
    // A stack of one's own that installs `LogTracer` (here its `init()`):
    // `log` records through tracing-log, in the current scope.
    let log = by_kind(&recs, "event")
        .find(|e| e["target"] == "composed::log")
        .expect("the log record");
    assert_eq!(log["message"], "through tracing-log 1", "{log}");
    assert_eq!(log["level"], "INFO", "{log}");
    assert_eq!(log["scope_id"], open["scope_id"], "{log}");
    assert!(
        log["file"].as_str().unwrap().ends_with("dl-client.rs"),
        "{log}"
    );
}

/// `log` crate records through distlog's own logger (`init`): a literal
/// message and a formatted one inside a span have the span's scope as
/// parent, with their target, level, file and line; an error record ends
/// the scope as an error; a record outside any span has no scope; DEBUG is
/// off by default.
#[test]
fn log_crate_records_in_their_scope() {
    let dir = TempDir::new("logcrate");
    let sc = Sidecar::start(&dir.join("s.sock"));
    let out = sc.client(&["log-records"]).output().expect("run dl-client");
    assert!(out.status.success(), "{out:?}");
    let recs = sc.wait_for("the log records", |r| {
        by_kind(r, "event").any(|e| e["message"] == "outside any span")
            && by_kind(r, "scope_close").count() >= 1
    });
    let open = by_kind(&recs, "scope_open")
        .find(|o| o["name"] == "legacy")
        .expect("the span's open");
    let scope = open["scope_id"].as_str().unwrap();
    let logged: Vec<&Value> = by_kind(&recs, "event")
        .filter(|e| e["target"] == "dl_client::legacy")
        .collect();
    let find = |m: &str| {
        *logged
            .iter()
            .find(|e| e["message"] == m)
            .unwrap_or_else(|| panic!("{m:?} in {logged:?}"))
    };
    let mut lines = Vec::new();
    for (m, level) in [
        ("literal log message", "INFO"),
        ("formatted 7 and \"x\"", "WARN"),
        ("failed: disk full", "ERROR"),
    ] {
        let e = find(m);
        assert_eq!(e["level"], level, "{e}");
        assert_eq!(e["scope_id"], scope, "{e}");
        assert_eq!(e["trace_id"], open["trace_id"], "{e}");
        assert!(e["file"].as_str().unwrap().ends_with("dl-client.rs"), "{e}");
        lines.push(e["line"].as_u64().expect("a line"));
    }
    assert!(lines.windows(2).all(|w| w[0] < w[1]), "{lines:?}");
    let outside = find("outside any span");
    assert!(outside["scope_id"].is_null(), "{outside}");
    assert!(logged.iter().all(|e| e["level"] != "DEBUG"), "{logged:?}");
    let close = by_kind(&recs, "scope_close")
        .find(|c| c["scope_id"] == scope)
        .expect("the span's close");
    assert_eq!(close["outcome"], "error", "{close}");
}

//! `bench-runner pair`: target ratios measured paired, so that they
//! measure the code and not the VM's speed mode (see `benches/src/lib.rs`).
//!
//! ```text
//! bench-runner pair [--rounds K] [--round-us T] [--batch B]
//!     --proc KEY=COMMAND ...          a process serving rounds
//!     --pair ID=KEY:OP/KEY:OP ...     numerator / denominator
//! ```
//!
//! A process is `bench-runner serve KIND` or `harness serve`, started once
//! and kept until the end (one process can serve both sides of a pair and
//! sides of several pairs: the C harness has distlog, LTTng and the floor
//! in one binary). For each pair, after one warm-up round a side (which
//! sizes that side's rounds to about T µs, 50 to 5 000 batches of B
//! calls), K rounds alternate numerator and denominator (the order
//! flips every round, so neither side always runs first); each round's
//! ratio is numerator p50 / denominator p50, the two halves a few
//! milliseconds apart. One JSON line a pair: workload `pair`, the median
//! round ratio as `p50`, and in `extra` its quartiles, min and max and each
//! side's median and fast-mode (p10) round p50.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use distlog_benches::{Sample, Stats};

struct Proc {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
}

impl Proc {
    fn spawn(cmd: &str) -> Result<Proc, String> {
        let mut w = cmd.split_whitespace();
        let prog = w.next().ok_or("empty command")?;
        let mut child = Command::new(prog)
            .args(w)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{prog}: {e}"))?;
        let (Some(stdin), Some(out)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(format!("{prog}: no pipes"));
        };
        Ok(Proc {
            child,
            stdin,
            out: BufReader::new(out),
        })
    }

    /// One round of `op`: its p50 in ns/op.
    fn round(&mut self, op: &str, batches: usize, batch: usize) -> Result<f64, String> {
        writeln!(self.stdin, "{op} {batches} {batch}")
            .and_then(|_| self.stdin.flush())
            .map_err(|e| format!("{op}: {e}"))?;
        let mut line = String::new();
        self.out
            .read_line(&mut line)
            .map_err(|e| format!("{op}: {e}"))?;
        match line.trim().parse::<f64>() {
            Ok(v) if v > 0.0 => Ok(v),
            _ => Err(format!("{op}: no answer ({:?})", line.trim())),
        }
    }
}

/// Every value of a repeated option.
fn all(args: &[String], name: &str) -> Vec<String> {
    args.windows(2)
        .filter(|w| w[0] == name)
        .map(|w| w[1].clone())
        .collect()
}

/// `q`-quantile of sorted `v`.
fn q(v: &[f64], q: f64) -> f64 {
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

struct Side<'a> {
    key: &'a str,
    op: &'a str,
    /// Batches a round (from the warm-up round).
    batches: usize,
}

fn side(s: &str) -> Option<Side<'_>> {
    let (key, op) = s.split_once(':')?;
    Some(Side {
        key,
        op,
        batches: 50,
    })
}

pub fn main(args: &[String]) {
    let quick = super::quick();
    let rounds: usize = super::arg_or(args, "--rounds", if quick { 3 } else { 60 });
    let round_ns = 1e3 * super::arg_or(args, "--round-us", if quick { 50.0 } else { 3000.0 });
    let batch: usize = super::arg_or(args, "--batch", if quick { 32 } else { 100 });
    let cmds: HashMap<String, String> = all(args, "--proc")
        .iter()
        .filter_map(|p| p.split_once('='))
        .map(|(k, c)| (k.to_string(), c.to_string()))
        .collect();
    let mut procs: HashMap<String, Proc> = HashMap::new();
    for p in all(args, "--pair") {
        let parsed = p.split_once('=').and_then(|(id, s)| {
            let (a, b) = s.split_once('/')?;
            Some((id, side(a)?, side(b)?))
        });
        let Some((id, mut a, mut b)) = parsed else {
            super::die(&format!("pair: bad --pair {p:?} (ID=KEY:OP/KEY:OP)"))
        };
        let mut run = || -> Result<(), String> {
            for s in [&a, &b] {
                if !procs.contains_key(s.key) {
                    let cmd = cmds.get(s.key).ok_or(format!("no process {:?}", s.key))?;
                    procs.insert(s.key.to_string(), Proc::spawn(cmd)?);
                }
            }
            let mut ask = |s: &Side| -> Result<f64, String> {
                let p = procs.get_mut(s.key).ok_or("gone")?;
                p.round(s.op, s.batches, batch)
            };
            // Short rounds keep both halves in one speed mode; a few
            // milliseconds keep a round's p50 above one preemption.
            let lo = if quick { 5 } else { 50 };
            for s in [&mut a, &mut b] {
                let warm = ask(s)?;
                s.batches = ((round_ns / (warm * batch as f64)) as usize).clamp(lo, 5000);
            }
            let (mut ra, mut rb, mut ratio) = (vec![], vec![], vec![]);
            for r in 0..rounds {
                let (va, vb) = if r % 2 == 0 {
                    let va = ask(&a)?;
                    (va, ask(&b)?)
                } else {
                    let vb = ask(&b)?;
                    (ask(&a)?, vb)
                };
                ra.push(va);
                rb.push(vb);
                ratio.push(va / vb);
            }
            let (ra, rb) = (sorted(ra), sorted(rb));
            let mut st = Stats::of(&mut ratio);
            st.fast = st.p50;
            Sample::new("pair", id, st)
                .unit("ratio")
                .with("q1", q(&ratio, 0.25))
                .with("q3", q(&ratio, 0.75))
                .with("max", q(&ratio, 1.0))
                .with("rounds", rounds as u64)
                .with("num_ops_per_round", (a.batches * batch) as u64)
                .with("den_ops_per_round", (b.batches * batch) as u64)
                .with("num_p50", q(&ra, 0.5))
                .with("num_fast", q(&ra, 0.1))
                .with("den_p50", q(&rb, 0.5))
                .with("den_fast", q(&rb, 0.1))
                .emit();
            Ok(())
        };
        if let Err(e) = run() {
            eprintln!("bench-runner pair {id}: skipped: {e}");
        }
    }
    for (_, mut p) in procs {
        drop(p.stdin);
        let _ = p.child.wait();
    }
}
